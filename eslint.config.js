// ESLint flat config. Layering (imports point downwards only):
//   cli -> backends -> scenario -> trace -> core
// The op families (src/ops) stand beside this stack: each holds one op family's parser, text,
// model and /dev/kvm execution and fuzz generators, and the generic code of trace, backends and
// fuzz dispatches through src/ops/registry.ts. Across trace, backends, fuzz and ops the op layers
// are, bottom up (README, Architecture: Op families):
//   1. building blocks (BUILDING_BLOCKS): import core and one another only;
//   2. the families (src/ops/* but registry.ts): import core, the building blocks, spec.ts and
//      one another;
//   3. src/ops/registry.ts: lists the families and composes TraceOp;
//   4. the dispatching modules (trace/types, parse, strace, runner; the backends; trace_gen,
//      shrink; cli): import the registry.
// Layers 1 and 2 may not import layers 3 and 4 (belowRegistry), so the op imports have no circle.
// src/core is pure: no node:* modules, no clocks, no unseeded randomness; inside it, base/
// imports nothing else of core.
import tseslint from 'typescript-eslint';

// Bare module names, anchored ('/crypto'), so that a project folder of the same name (core/base/crypto)
// is not taken for the Node module.
const nodeBuiltins = [
  'node:*',
  '/fs',
  '/path',
  '/os',
  '/child_process',
  '/process',
  '/crypto',
  '/util',
];

/** The op layers' bottom: modules that know no op list (no TraceOp, no registry, no family). */
const BUILDING_BLOCKS = [
  'src/trace/base_types.ts',
  'src/trace/field_reader.ts',
  'src/trace/text.ts',
  'src/trace/format.ts',
  'src/trace/json.ts',
  'src/trace/suggest.ts',
  'src/trace/constants.ts',
  'src/backends/model_args.ts',
  'src/backends/kvm/context.ts',
  'src/backends/kvm/outcome.ts',
  'src/backends/kvm/libc.ts',
  'src/backends/kvm/structs.ts',
  'src/backends/kvm/rules.ts',
  'src/backends/kvm/arena.ts',
  'src/backends/kvm/maps.ts',
  'src/backends/kvm/host_facts.ts',
  'src/backends/kvm/guest_code.ts',
  'src/fuzz/gen_state.ts',
  'src/fuzz/prng.ts',
];
const TRACE_BLOCKS = BUILDING_BLOCKS.filter((f) => f.startsWith('src/trace/'));
const BACKEND_BLOCKS = BUILDING_BLOCKS.filter((f) => f.startsWith('src/backends/'));
const FUZZ_BLOCKS = BUILDING_BLOCKS.filter((f) => f.startsWith('src/fuzz/'));

/**
 * Below the registry: every project import is restricted but core's and the building blocks'
 * (by file name: the building blocks' names are unique in src), plus `also` (gitignore patterns,
 * applied after). The registry, TraceOp (trace/types.ts) and the dispatching modules stay out.
 */
const belowRegistry = (also = []) => ({
  group: [
    '**/*.js',
    '!**/core/**/*.js',
    ...BUILDING_BLOCKS.map((f) => `!**/${f.slice(f.lastIndexOf('/') + 1, -3)}.js`),
    ...also,
  ],
  message:
    'below the op registry (README, Architecture: Op families): import core and the building blocks ' +
    '(families also spec.ts and one another), never the registry, trace/types.ts or a module that ' +
    'dispatches through the registry.',
});
/** src/core's own import rules: pure, and it imports only core. */
const corePure = [
  { group: nodeBuiltins, message: 'src/core is pure: no Node APIs.' },
  {
    group: ['**/trace/**', '**/backends/**', '**/cli/**', '**/scenario/**'],
    message: 'core imports only core.',
  },
];
/**
 * A layering rule for a folder of core. A later block of the same rule replaces the earlier ones
 * for its files, so each keeps core's own rules (corePure) beside its layer's.
 */
const coreLayer = (files, group, message) => ({
  files,
  rules: { 'no-restricted-imports': ['error', { patterns: [...corePure, { group, message }] }] },
});
const tracePatterns = [
  { group: nodeBuiltins, message: 'src/trace is pure.' },
  {
    group: ['**/backends/**', '**/cli/**', '**/scenario/**'],
    message: 'trace imports only core.',
  },
];
const noCli = (who) => ({ group: ['**/cli/**'], message: `${who} do not import cli.` });

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
          patterns: corePure,
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
  coreLayer(['src/core/base/*.ts'], ['../*', '../**'], 'core/base imports only core/base.'),
  coreLayer(
    ['src/core/base/*/**/*.ts'],
    ['../../*', '../../**'],
    'core/base imports only core/base.',
  ),
  // mm and vfs never import KVM: KVM reaches them through their seams (vm_operations installed
  // by a file's ->mmap(), mmu notifiers registered on the mm).
  coreLayer(
    ['src/core/mm/**/*.ts', 'src/core/vfs/**/*.ts'],
    ['../kvm/*', '../kvm/**', '../arch/*', '../arch/**', '../host.js'],
    'mm and vfs do not import KVM or arch code.',
  ),
  // Generic KVM code reaches arch code only through its ops (kvm/arch_ops.ts, KernelCtx.arch).
  coreLayer(
    ['src/core/kvm/**/*.ts'],
    ['../arch/*', '../arch/**', '../../arch/*', '../../arch/**'],
    'generic KVM code calls arch code only through KernelCtx.arch.',
  ),
  // A platform is per-frame state below the kernel: it imports only core/base.
  coreLayer(
    ['src/core/platform/**/*.ts'],
    [
      '../*.js',
      '../kvm/**',
      '../mm/**',
      '../vfs/**',
      '../arch/**',
      '../profiles/**',
      '../invariants/**',
    ],
    'a platform imports only core/base.',
  ),
  // A platform's own folder (platform/sev_snp/) imports core/base and its platform's interface.
  coreLayer(
    ['src/core/platform/*/**/*.ts'],
    [
      '../../*.js',
      '../../kvm/**',
      '../../mm/**',
      '../../vfs/**',
      '../../arch/**',
      '../../profiles/**',
      '../../invariants/**',
    ],
    'a platform imports only core/base and platform/platform.ts.',
  ),
  // x86 code reaches the vendor modules (vmx/, svm/, pvm/) only through kvm_x86_ops (x86Ops()).
  coreLayer(
    ['src/core/arch/x86/*.ts'],
    ['./vmx/*', './svm/*', './pvm/*', './tdx/*', './sev/*'],
    'x86 code calls the vendor module only through x86Ops(k) (kvm_x86_ops).',
  ),
  // The VMM's side of a confidential launch (src/vmm: firmware parsing, VMSAs, launch plans) is
  // pure like the core, so a browser can measure too: no Node APIs, and it imports only core.
  {
    files: ['src/vmm/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: nodeBuiltins, message: 'src/vmm is pure: no Node APIs.' },
            {
              group: [
                '**/trace/**',
                '**/backends/**',
                '**/cli/**',
                '**/scenario/**',
                '**/ops/**',
                '**/fuzz/**',
                '**/check/**',
              ],
              message: 'vmm imports only core.',
            },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        { name: 'process', message: 'src/vmm has no Node APIs' },
        { name: 'Buffer', message: 'src/vmm has no Node APIs' },
      ],
    },
  },
  {
    files: ['src/trace/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: tracePatterns,
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
      'no-restricted-imports': ['error', { patterns: [noCli('op families')] }],
    },
  },
  {
    files: ['src/backends/**/*.ts'],
    rules: {
      'no-restricted-imports': ['error', { patterns: [noCli('backends')] }],
    },
  },
  // The op layers (see the top): blocks of the same rule replace the ones above for these files,
  // so each repeats its folder's patterns.
  {
    files: TRACE_BLOCKS,
    rules: {
      'no-restricted-imports': ['error', { patterns: [...tracePatterns, belowRegistry()] }],
    },
  },
  {
    files: BACKEND_BLOCKS,
    rules: {
      'no-restricted-imports': ['error', { patterns: [noCli('backends'), belowRegistry()] }],
    },
  },
  {
    files: FUZZ_BLOCKS,
    rules: { 'no-restricted-imports': ['error', { patterns: [belowRegistry()] }] },
  },
  {
    files: ['src/ops/**/*.ts'],
    ignores: ['src/ops/registry.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        { patterns: [noCli('op families'), belowRegistry(['!./*.js', './registry.js'])] },
      ],
    },
  },
);
