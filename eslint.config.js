// ESLint flat config. Layering (imports point downwards only):
//   cli -> backends -> scenario -> trace -> core
// The op families (src/ops) stand beside this stack: each holds one op family's parser, text,
// model and /dev/kvm execution and fuzz generators, and the generic code of trace, backends and
// fuzz dispatches through src/ops/registry.ts. A family imports core, trace's building blocks
// and the kvm backend's helpers, never cli.
// src/core is pure: no node:* modules, no clocks, no unseeded randomness; inside it, base/
// imports nothing else of core.
import tseslint from 'typescript-eslint';

const nodeBuiltins = ['node:*', 'fs', 'path', 'os', 'child_process', 'process', 'crypto', 'util'];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'scripts/**', 'conformance/**'] },
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['src/core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            {
              group: ['**/trace/**', '**/backends/**', '**/cli/**', '**/scenario/**'],
              message: 'core imports only core.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'Date', message: 'core has no clocks' },
        { name: 'performance', message: 'core has no clocks' },
        { name: 'process', message: 'core has no Node APIs' },
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Math', property: 'random', message: 'use a seeded PRNG' },
      ],
    },
  },
  // Inside core, base/ is the ground floor: it imports nothing else of core.
  {
    files: ['src/core/base/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            { group: ['../*', '../**'], message: 'core/base imports only core/base.' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/core/base/*/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            { group: ['../../*', '../../**'], message: 'core/base imports only core/base.' },
          ],
        },
      ],
    },
  },
  // mm and vfs never import KVM: KVM reaches them through their seams (vm_operations installed
  // by a file's ->mmap(), mmu notifiers registered on the mm).
  {
    files: ['src/core/mm/**/*.ts', 'src/core/vfs/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            {
              group: ['../kvm/*', '../kvm/**', '../arch/*', '../arch/**', '../host.js'],
              message: 'mm and vfs do not import KVM or arch code.',
            },
          ],
        },
      ],
    },
  },
  // Generic KVM code reaches arch code only through its ops (kvm/arch_ops.ts, KernelCtx.arch).
  {
    files: ['src/core/kvm/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            {
              group: ['../arch/*', '../arch/**', '../../arch/*', '../../arch/**'],
              message: 'generic KVM code calls arch code only through KernelCtx.arch.',
            },
          ],
        },
      ],
    },
  },
  // A platform is per-frame state below the kernel: it imports only core/base.
  {
    files: ['src/core/platform/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            {
              group: [
                '../*.js',
                '../kvm/**',
                '../mm/**',
                '../vfs/**',
                '../arch/**',
                '../profiles/**',
                '../invariants/**',
              ],
              message: 'a platform imports only core/base.',
            },
          ],
        },
      ],
    },
  },
  // x86 code reaches the vendor modules (vmx/, svm/, pvm/) only through kvm_x86_ops (x86Ops()).
  {
    files: ['src/core/arch/x86/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
            {
              group: ['./vmx/*', './svm/*', './pvm/*', './tdx/*', './sev/*'],
              message: 'x86 code calls the vendor module only through x86Ops(k) (kvm_x86_ops).',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/trace/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/trace is pure.' },
            {
              group: ['**/backends/**', '**/cli/**', '**/scenario/**'],
              message: 'trace imports only core.',
            },
          ],
        },
      ],
    },
  },
  {
    files: ['src/scenario/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/scenario is pure.' },
            { group: ['**/backends/**', '**/cli/**'], message: 'scenario imports core and trace.' },
          ],
        },
      ],
    },
  },
  {
    files: ['src/ops/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/cli/**'], message: 'op families do not import cli.' }] },
      ],
    },
  },
  {
    files: ['src/backends/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [{ group: ['**/cli/**'], message: 'backends do not import cli.' }] },
      ],
    },
  },
);
