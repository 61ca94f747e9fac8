/**
 * The TDX expectations of scenarios (docs/scenario-format.md, `hw_error` and `td`): their
 * file:line:field errors for bad input, and what they compare on the model (KVM's TD state,
 * nr_premapped, KVM_BUG_ON and vm_dead, the TDX module's epoch, S-EPT entry states and MRTD), passing and
 * failing with messages that say what came instead.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseScenario, type Scenario } from '../../src/scenario/scenario.js';
import { runScenario } from '../../src/scenario/run.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';

const HEAD = 'name: t\nkernel: linux-6.18-tdx\nsteps:\n';

function errors(text: string): string[] {
  return parseScenario(HEAD + text, 's.yaml').errors.map((e) => e.message);
}

/** A TD with 16 KiB of private memory at 2 GiB, INIT_VM'd, a vCPU with INIT_VCPU; then `rest`. */
const SETUP = [
  '  - { do: mmap, fd: null, length: 8 KiB, prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, as: params }',
  '  - { do: KVM_CREATE_VM, type: TDX, as: vm }',
  '  - { do: KVM_CREATE_GUEST_MEMFD, vm: vm, size: 16 KiB, flags: 0, as: gmem }',
  '  - { do: mmap, fd: null, length: 16 KiB, prot: PROT_READ | PROT_WRITE, flags: MAP_SHARED | MAP_ANONYMOUS, as: ram }',
  '  - { do: KVM_SET_USER_MEMORY_REGION2, vm: vm, slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 2 GiB, memory_size: 16 KiB, userspace_addr: ram, guest_memfd: gmem }',
  '  - { do: KVM_SET_MEMORY_ATTRIBUTES, vm: vm, address: 2 GiB, size: 16 KiB, attributes: PRIVATE }',
  '  - { do: KVM_MEMORY_ENCRYPT_OP, fd: vm, id: 1, data: { xfam: 3, cpuid: [{ function: 0x80000008, eax: 0x300000 }] }, data_addr: params }',
  '  - { do: KVM_ENABLE_CAP, fd: vm, cap: 121, args: [24] }',
  '  - { do: KVM_CREATE_VCPU, vm: vm, id: 0, as: cpu }',
  '  - { do: KVM_MEMORY_ENCRYPT_OP, fd: cpu, id: 2 }',
  '',
].join('\n');

function failures(text: string): string[] {
  const p = parseScenario(HEAD + SETUP + text, 's.yaml');
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  const b = new ModelBackend(getProfile('linux-6.18-tdx')!);
  const r = runScenario(p.scenario as Scenario, b, {
    drainEvents: () => b.host.events.drain(),
    host: () => b.host,
  });
  return r.outcomes.flatMap((o) =>
    o.kind === 'op' ? o.failures.map((f) => `${o.index}: ${f}`) : [],
  );
}

describe('scenario expectations for TDX', () => {
  test('bad input is a file:line:field error', () => {
    const err = (e: string): string[] =>
      errors(`  - do: KVM_CREATE_VM\n    type: TDX\n    expect:\n${e}`);
    assert.deepEqual(err('      td: { state: RUNABLE }\n'), [
      's.yaml:7: expect.td.state: unknown TD state (did you mean "RUNNABLE"?)',
    ]);
    assert.deepEqual(err('      td:\n        sept:\n          2 GiB: PENDNG\n'), [
      's.yaml:9: "expect.td.sept.2 GiB": unknown S-EPT state (did you mean "PENDING"?)',
    ]);
    assert.deepEqual(err('      td:\n        sept:\n          2 GiBB: FREE\n'), [
      's.yaml:9: "expect.td.sept.2 GiBB": "2 GiBB" is not an integer: unknown unit "GiBB" (did you mean "GiB"?)',
    ]);
    assert.deepEqual(err('      td:\n        nr_premaped: 1\n'), [
      's.yaml:8: expect.td.nr_premaped: unknown key (did you mean "nr_premapped"?)',
    ]);
    assert.deepEqual(err('      td: { epoch: -1 }\n'), [
      's.yaml:7: expect.td.epoch: expected a count (a non-negative integer up to 2^53)',
    ]);
    assert.deepEqual(err("      td: { mrtd: '00' }\n"), [
      's.yaml:7: expect.td.mrtd: expected the 48-byte MRTD as 96 hex digits',
    ]);
    assert.deepEqual(err('      td: { bugged: 1 }\n'), [
      's.yaml:7: expect.td.bugged: expected true or false',
    ]);
    assert.deepEqual(err('      td: 3\n'), [
      's.yaml:7: expect.td: expected a map (state, nr_premapped, bugged, dead, epoch, mrtd, sept)',
    ]);
    assert.deepEqual(err('      hw_eror: 0\n'), [
      's.yaml:7: expect.hw_eror: unknown key (did you mean "hw_error"?)',
    ]);
    assert.deepEqual(err('      hw_error: NOPE\n'), [
      's.yaml:7: expect.hw_error: "NOPE" is not an integer: unknown constant "NOPE"',
    ]);
  });

  test("a guest accept's size is the level name, 4K or 2M, where other sizes are bytes", () => {
    const p = parseScenario(
      HEAD +
        '  - do: KVM_RUN\n    vcpu: 3\n    guest:\n' +
        '      - accept: { gpa: 2 GiB, size: 2M }\n' +
        '      - repeat: 2\n        stride: { gpa: 4 KiB }\n        step: { accept: { gpa: 2 GiB, size: 4K } }\n' +
        '      - load: { gpa: 2 GiB, size: 4 }\n',
      's.yaml',
    );
    assert.deepEqual(
      p.errors.map((e) => e.message),
      [],
    );
    const st = p.scenario!.steps[0]!;
    assert.ok(st.kind === 'op' && st.op.op === 'KVM_RUN');
    assert.deepEqual(
      st.op.guest.map((g) => (g.kind === 'accept' ? `${g.size}@${g.gpa}` : g.kind)),
      ['2M@2147483648', '4K@2147483648', '4K@2147487744', 'load'],
    );
    assert.deepEqual(
      errors('  - do: KVM_RUN\n    vcpu: 3\n    guest:\n      - accept: { gpa: 0, size: 2 MiB }\n'),
      ['s.yaml:7: guest[0].accept.size: expected "4K" (0) or "2M" (1)'],
    );
  });

  test('td and hw_error pass on what the model holds', () => {
    assert.deepEqual(
      failures(
        [
          '  - do: KVM_MEMORY_ENCRYPT_OP',
          '    fd: cpu',
          '    id: 3',
          '    flags: 1',
          '    data: { source_addr: params, gpa: 2 GiB, nr_pages: 1 }',
          '    data_addr: params',
          '    expect: { ok: true, hw_error: 0, td: { state: INITIALIZED, nr_premapped: 0, bugged: false, dead: false, epoch: 0, sept: { 2 GiB: MAPPED, 2 GiB + 4 KiB: FREE } } }',
          '  - do: KVM_MEMORY_ENCRYPT_OP',
          '    fd: vm',
          '    id: 4',
          '    expect: { ok: true, td: { state: RUNNABLE } }',
          '  - do: KVM_PRE_FAULT_MEMORY',
          '    vcpu: cpu',
          '    gpa: 2 GiB + 4 KiB',
          '    size: 4 KiB',
          '    expect: { ok: true, td: { sept: { 2 GiB + 4 KiB: PENDING } } }',
          '  - do: KVM_SET_MEMORY_ATTRIBUTES',
          '    vm: vm',
          '    address: 2 GiB + 4 KiB',
          '    size: 4 KiB',
          '    attributes: 0',
          '    expect: { ok: true, td: { epoch: 1, sept: { 2 GiB + 4 KiB: FREE } } }',
          '  - do: fallocate',
          '    fd: gmem',
          '    mode: FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE',
          '    offset: 0',
          '    len: 4 KiB',
          '    expect: { ok: true, td: { epoch: 2, sept: { 2 GiB: FREE } } }',
          '',
        ].join('\n'),
      ),
      [],
    );
  });

  test('a mismatch says what came instead', () => {
    assert.deepEqual(
      failures(
        [
          '  - do: KVM_MEMORY_ENCRYPT_OP',
          '    fd: vm',
          '    id: 4',
          "    expect: { hw_error: 0, td: { state: INITIALIZED, mrtd: '" +
            '00'.repeat(48) +
            "' } }",
          '  - do: KVM_PRE_FAULT_MEMORY',
          '    vcpu: cpu',
          '    gpa: 2 GiB',
          '    size: 4 KiB',
          '    expect: { ok: true, td: { nr_premapped: 1, bugged: true, dead: true, sept: { 2 GiB: MAPPED } } }',
          '  - do: KVM_CREATE_VM',
          '    type: DEFAULT',
          '    as: dflt',
          '    expect: { td: { state: RUNNABLE } }',
          '  - do: KVM_CHECK_EXTENSION',
          '    fd: kvm',
          '    cap: KVM_CAP_GUEST_MEMFD',
          '    expect: { td: { state: RUNNABLE } }',
          '',
        ].join('\n'),
      ),
      [
        '11: expected hw_error 0x0, got a result without hw_error: {"ok":true}',
        '11: expected TD state INITIALIZED, got RUNNABLE',
        '11: expected MRTD 0000000000000000…, got 38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
        '12: expected TD nr_premapped 1, got 0',
        '12: expected the TD bugged (KVM_BUG_ON), got false',
        '12: expected the TD dead (kvm->vm_dead), got false',
        '12: expected S-EPT entry of GPA 0x80000000 MAPPED, got PENDING (level 0)',
        '13: expected a TD: the VM the op names is not a TD',
        '14: expected a TD: the op names no open VM, vCPU or guest_memfd fd',
      ],
    );
  });
});
