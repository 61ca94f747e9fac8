/**
 * The arm64 trace ops (src/ops/arm64.ts): KVM_ARM_PREFERRED_TARGET, KVM_ARM_VCPU_INIT and
 * KVM_ARM_VCPU_FINALIZE parse (feature and target names, bit numbers), format and round-trip,
 * their malformed fields are `file:line: field: message` errors, the strace text, a replay on
 * `linux-6.18-arm64-pkvm` (a protected guest booting, sharing and unsharing a page, the VMM's
 * access and its SIGSEGV), the VCPU_INIT semantics the trace reaches (POWER_OFF is ephemeral and
 * stops the vCPU, PTRAUTH in pairs, FINALIZE before INIT), the pKVM names of the VM type and the
 * vendor hypercalls, the x86 profiles' answers, and on a usable /dev/kvm the kernel's own answers
 * equal to the model's (skipped with the reason without one).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseTrace, TraceInputError } from '../../src/trace/parse.js';
import { formatOp, formatResult, resultToJson } from '../../src/trace/format.js';
import { renderOp, renderResult } from '../../src/trace/strace.js';
import { runTrace } from '../../src/trace/runner.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import type { TraceOp } from '../../src/trace/types.js';
import { backendOrSkip, liveKernelOf, runLines } from '../kvm/helpers.js';
import { parseScenario } from '../../src/scenario/scenario.js';
import { runScenario } from '../../src/scenario/run.js';

const PKVM = getProfile('linux-6.18-arm64-pkvm')!;

function ops(text: string): TraceOp[] {
  const { ops: o, errors } = parseTrace(text, 't.jsonl');
  assert.deepEqual(
    errors.map((e) => e.message),
    [],
  );
  return o;
}

function replay(text: string, profile = PKVM): Record<string, unknown>[] {
  return runTrace(ops(text), new ModelBackend(profile, { events: false })).map(
    (r) => JSON.parse(JSON.stringify(resultToJson(r))) as Record<string, unknown>,
  );
}

function parseError(line: string): string {
  const { errors } = parseTrace(line, 'bad.jsonl');
  assert.equal(errors.length, 1, line);
  assert.ok(errors[0] instanceof TraceInputError);
  return errors[0]!.message;
}

const lines = (...o: object[]): string => o.map((x) => JSON.stringify(x)).join('\n');

describe('arm64 ops: parsing and formatting', () => {
  test('features are names (with or without KVM_ARM_VCPU_) or bit numbers, kept sorted and once', () => {
    const [op] = ops(
      lines({
        op: 'KVM_ARM_VCPU_INIT',
        vcpu: 3,
        target: 'KVM_ARM_TARGET_GENERIC_V8',
        features: ['SVE', 'KVM_ARM_VCPU_PSCI_0_2', 2, '0x21', 4],
      }),
    );
    assert.deepEqual(op, {
      line: 1,
      op: 'KVM_ARM_VCPU_INIT',
      vcpu: { kind: 'raw', value: 3n },
      target: 5n,
      features: ['PSCI_0_2', 'SVE', 33],
    });
    const text = formatOp(op!);
    assert.equal(
      text,
      '{"op":"KVM_ARM_VCPU_INIT","vcpu":3,"target":5,"features":["PSCI_0_2","SVE",33]}',
    );
    assert.deepEqual(ops(text)[0], op);
  });

  test('defaults: target GENERIC_V8, no features; FINALIZE takes a name or an int', () => {
    const [init, fin, fin2] = ops(
      lines(
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3 },
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 3, feature: 'SVE' },
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 3, feature: -1 },
      ),
    );
    assert.equal((init as { target: bigint }).target, 5n);
    assert.deepEqual((init as unknown as { features: unknown[] }).features, []);
    assert.equal((fin as { feature: bigint }).feature, 4n);
    assert.equal(formatOp(fin!), '{"op":"KVM_ARM_VCPU_FINALIZE","vcpu":3,"feature":4}');
    assert.equal((fin2 as { feature: bigint }).feature, -1n);
  });

  test('malformed fields name the file, line and field', () => {
    const cases: Array<[object, string]> = [
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, features: ['SVEE'] },
        'bad.jsonl:1: features[0]: unknown feature "SVEE" (did you mean "SVE"?)',
      ],
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, features: ['PSCI_0_2', 'FOO'] },
        'bad.jsonl:1: features[1]: unknown feature "FOO" (features: POWER_OFF, EL1_32BIT, PSCI_0_2, PMU_V3, SVE, PTRAUTH_ADDRESS, PTRAUTH_GENERIC, HAS_EL2, HAS_EL2_E2H0, or a bit number)',
      ],
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, features: [224] },
        'bad.jsonl:1: features[0]: 224: a feature is a bit number of features[7] (0..223)',
      ],
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, features: 20 },
        'bad.jsonl:1: features: expected a list of feature names or bit numbers, such as ["PSCI_0_2", "SVE"] (not a bitmask)',
      ],
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, target: 'GENERIC_V9' },
        'bad.jsonl:1: target: unknown target "GENERIC_V9" (did you mean "GENERIC_V8"?)',
      ],
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, target: -1 },
        'bad.jsonl:1: target: -1: the target is a __u32 (0 .. 2^32-1)',
      ],
      [
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 3, target: '0x100000000' },
        "bad.jsonl:1: target: 0x100000000 does not fit the field's 32-bit C type (-2^31 .. 2^32-1)",
      ],
      [
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 3, feature: 'SEV' },
        'bad.jsonl:1: feature: unknown feature "SEV" (did you mean "SVE"?)',
      ],
      [
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 3 },
        'bad.jsonl:1: feature: missing required field (the feature to finalize: SVE)',
      ],
      [
        { op: 'KVM_ARM_PREFERRED_TARGET', vm: 3, target: 5 },
        'bad.jsonl:1: target: unknown field "target" for KVM_ARM_PREFERRED_TARGET',
      ],
    ];
    for (const [o, msg] of cases) assert.equal(parseError(JSON.stringify(o)), msg);
  });

  test('strace text: names for targets, features and the pKVM hypercalls', () => {
    const [pt, init, fin, run] = ops(
      lines(
        { op: 'KVM_ARM_PREFERRED_TARGET', vm: 3 },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 4, target: 2, features: ['POWER_OFF', 9] },
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 4, feature: 'SVE' },
        {
          op: 'KVM_RUN',
          vcpu: 4,
          guest: [{ hypercall: { nr: 'MEM_SHARE', args: [4096] } }, { hypercall: { nr: 12 } }],
        },
      ),
    );
    assert.equal(renderOp(pt!), 'KVM_ARM_PREFERRED_TARGET(3)');
    assert.equal(
      renderResult(pt!, { ok: true, init: { target: 5n, features: [] } }),
      '= 0  {target=GENERIC_V8, features=[]}',
    );
    assert.equal(
      renderOp(init!),
      'KVM_ARM_VCPU_INIT(4, {target=CORTEX_A57, features=[POWER_OFF, bit 9]})',
    );
    assert.equal(renderOp(fin!), 'KVM_ARM_VCPU_FINALIZE(4, [SVE])');
    assert.equal(
      renderOp(run!),
      'KVM_RUN(4, [hvc MEM_SHARE(0x1000, 0x0, 0x0); vmcall 12(0x0, 0x0, 0x0)])',
    );
  });

  test('the pKVM names: ARM_PROTECTED (bit 31, with an IPA size), MEM_SHARE, MEM_UNSHARE, HYP_MEMINFO', () => {
    const [vm, run] = ops(
      lines(
        { op: 'KVM_CREATE_VM', type: 'ARM_PROTECTED | 40', as: 'vm' },
        {
          op: 'KVM_RUN',
          vcpu: 4,
          guest: [
            { hypercall: { nr: 'HYP_MEMINFO' } },
            { hypercall: { nr: 'MEM_SHARE' } },
            { hypercall: { nr: 'ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID' } },
          ],
        },
      ),
    );
    assert.equal((vm as { type: bigint }).type, 0x8000_0028n);
    assert.deepEqual(
      (run as unknown as { guest: Array<{ nr: bigint }> }).guest.map((s) => s.nr),
      [0xc6000002n, 0xc6000003n, 0xc6000004n],
    );
  });
});

describe('arm64 ops on linux-6.18-arm64-pkvm', () => {
  test('a scenario writes the names bare: ARM_PROTECTED, GENERIC_V8, [PSCI_0_2, SVE], MEM_SHARE', () => {
    const yaml = [
      'name: arm64 names',
      'kernel: linux-6.18-arm64-pkvm',
      'steps:',
      '  - { do: KVM_CREATE_VM, type: ARM_PROTECTED | 40, as: vm, expect: ok }',
      '  - { do: mmap, fd: null, length: 8 KiB, prot: PROT_READ | PROT_WRITE, flags: MAP_SHARED | MAP_ANONYMOUS, as: ram }',
      '  - { do: KVM_SET_USER_MEMORY_REGION, vm: vm, slot: 0, guest_phys_addr: 0, memory_size: 8 KiB, userspace_addr: ram }',
      '  - { do: KVM_CREATE_VCPU, vm: vm, id: 0, as: cpu, expect: ok }',
      '  - { do: KVM_ARM_VCPU_INIT, vcpu: cpu, target: GENERIC_V8, features: [PSCI_0_2, SVE], expect: ok }',
      '  - { do: KVM_RUN, vcpu: cpu, expect: EPERM }',
      '  - { do: KVM_ARM_VCPU_FINALIZE, vcpu: cpu, feature: SVE, expect: ok }',
      '  - do: KVM_RUN',
      '    vcpu: cpu',
      '    guest: [{ hypercall: { nr: HYP_MEMINFO } }, { hypercall: { nr: MEM_SHARE, args: [0x1000] } }]',
      "    expect: { exits: [{ hex: '0010000000000000' }, { hex: '0000000000000000' }] }",
      '  - { do: KVM_ARM_VCPU_INIT, vcpu: cpu, features: [SVEE] }',
    ].join('\n');
    const bad = parseScenario(yaml, 's.yaml');
    assert.match(
      bad.errors[0]!.message,
      /features\[0\]: unknown feature "SVEE" \(did you mean "SVE"\?\)/,
    );
    const p = parseScenario(yaml.split('\n').slice(0, -1).join('\n'), 's.yaml');
    assert.deepEqual(
      p.errors.map((e) => e.message),
      [],
    );
    const run = runScenario(p.scenario!, new ModelBackend(PKVM));
    const failures = run.outcomes.flatMap((o) => (o.kind === 'op' ? o.failures : []));
    assert.deepEqual(failures, []);
    assert.equal(run.failedSteps, 0);
  });

  test("the document's example (trace-format.md, arm64 / pKVM) gives the documented results", () => {
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
    const doc = readFileSync(join(root, 'docs/trace-format.md'), 'utf8');
    const at = doc.indexOf('A protected guest boots, shares a page with the VMM and takes it back');
    assert.ok(at >= 0, 'the example is in docs/trace-format.md');
    const blocks = [...doc.slice(at).matchAll(/```jsonl\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
    const b = new ModelBackend(PKVM, { events: false });
    assert.deepEqual(runTrace(ops(blocks[0]!), b).map(formatResult), blocks[1]!.split('\n'));
  });

  test('a protected guest: preferred target, init, a donated page shared with the VMM and unshared', () => {
    const results = replay(
      lines(
        { op: 'KVM_CREATE_VM', type: 'ARM_PROTECTED', as: 'vm' },
        { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'vm' },
        { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 16384, flags: 3, as: 'gmem' },
        {
          op: 'KVM_SET_USER_MEMORY_REGION2',
          vm: 'vm',
          slot: 0,
          flags: 4,
          guest_phys_addr: 0,
          memory_size: 16384,
          userspace_addr: 0,
          guest_memfd: 'gmem',
          guest_memfd_offset: 0,
        },
        { op: 'mmap', fd: 'gmem', length: 16384, prot: 3, flags: 1, offset: 0, as: 'ram' },
        { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [] },
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 'cpu', feature: 'SVE' },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'cpu', target: 'GENERIC_V8', features: ['PSCI_0_2'] },
        { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 'cpu', feature: 'SVE' },
        {
          op: 'KVM_RUN',
          vcpu: 'cpu',
          guest: [
            { store: { gpa: 4096, hex: 'aa' } },
            { hypercall: { nr: 'HYP_MEMINFO' } },
            { hypercall: { nr: 'MEM_SHARE', args: [4096] } },
          ],
        },
        { op: 'peek', addr: 'ram+4096', len: 1 },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ hypercall: { nr: 'MEM_UNSHARE', args: [4096] } }] },
        { op: 'peek', addr: 'ram+4096', len: 1 },
      ),
    );
    assert.deepEqual(results, [
      { ok: true },
      { ok: true, init: { target: 5, features: [] } },
      { ok: true },
      { ok: true },
      { ok: true },
      { ok: true },
      { ok: false, errno: 'ENOEXEC', exits: [] },
      { ok: false, errno: 'ENOEXEC' },
      { ok: true },
      { ok: false, errno: 'EINVAL' },
      {
        ok: true,
        exits: [
          { reason: 'HYPERCALL_RET', hex: '0010000000000000' },
          { reason: 'HYPERCALL_RET', hex: '0000000000000000' },
        ],
      },
      { ok: true, value: 'aa' },
      { ok: true, exits: [{ reason: 'HYPERCALL_RET', hex: '0000000000000000' }] },
      { ok: false, fault: 'SIGSEGV' },
    ]);
  });

  test('VCPU_INIT: POWER_OFF is ephemeral and stops the vCPU; PTRAUTH in pairs; features fixed per VM', () => {
    const results = replay(
      lines(
        { op: 'KVM_CREATE_VM', as: 'vm' },
        { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'c0' },
        { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 1, as: 'c1' },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c0', features: ['PTRAUTH_ADDRESS'] },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c0', features: ['PSCI_0_2', 'POWER_OFF'] },
        // The secondary vCPU without POWER_OFF has the VM's features: accepted.
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c1', features: ['PSCI_0_2'] },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c1', features: ['PSCI_0_2', 'PMU_V3'] },
        { op: 'KVM_RUN', vcpu: 'c0', guest: [] },
        { op: 'KVM_RUN', vcpu: 'c1', guest: [] },
        // A repeated init without POWER_OFF makes it runnable.
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c0', features: ['PSCI_0_2'] },
        { op: 'KVM_RUN', vcpu: 'c0', guest: [] },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c0', target: 'CORTEX_A53' },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c0', features: [31] },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'c0', features: [32] },
        { op: 'KVM_ARM_VCPU_INIT', vcpu: 'vm' },
        { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'c0' },
        { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'kvm' },
      ),
    );
    assert.deepEqual(
      results.map((r) => r['errno'] ?? 'ok'),
      [
        'ok',
        'ok',
        'ok',
        'EINVAL',
        'ok',
        'ok',
        'EINVAL',
        'EINTR',
        'ok',
        'ok',
        'ok',
        'EINVAL',
        'ENOENT',
        'ENOENT',
        'EINVAL',
        'EINVAL',
        'EINVAL',
      ],
    );
  });

  test('on the x86 profiles the ops get the x86 answers (VM ENOTTY, vCPU EINVAL, /dev/kvm EINVAL)', () => {
    const trace = lines(
      { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'kvm' },
      { op: 'KVM_CREATE_VM', as: 'vm' },
      { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'vm' },
      { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
      { op: 'KVM_ARM_VCPU_INIT', vcpu: 'cpu', features: ['PSCI_0_2'] },
      { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 'cpu', feature: 'SVE' },
      { op: 'KVM_ARM_VCPU_INIT', vcpu: 'vm' },
      { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 1, feature: 4 },
      { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'cpu' },
    );
    const want = ['EINVAL', 'ok', 'ENOTTY', 'ok', 'EINVAL', 'EINVAL', 'ENOTTY', 'ENOTTY', 'EINVAL'];
    for (const p of ['linux-6.18', 'linux-6.18-pvm', 'linux-6.18-snp', 'linux-6.18-tdx'])
      assert.deepEqual(
        replay(trace, getProfile(p)!).map((r) => r['errno'] ?? 'ok'),
        want,
        p,
      );
  });

  test('the kvm backend runs them for real and gets what the model of its kernel answers', (t) => {
    const b = backendOrSkip(t);
    if (b === undefined) return;
    const trace = [
      { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'kvm' },
      { op: 'KVM_CREATE_VM', as: 'vm' },
      { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'vm' },
      { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
      { op: 'KVM_ARM_VCPU_INIT', vcpu: 'cpu', features: ['PSCI_0_2', 'SVE'] },
      { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 'cpu', feature: 'SVE' },
      { op: 'KVM_ARM_VCPU_INIT', vcpu: 'vm' },
      { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'cpu' },
    ].map((o) => JSON.stringify(o));
    const real = runLines(b, trace);
    // Every x86 profile answers these alike; the one of this machine when it has one.
    const profile = liveKernelOf(b).profile ?? getProfile('linux-6.18')!;
    assert.deepEqual(real, replay(trace.join('\n'), profile));
  });
});
