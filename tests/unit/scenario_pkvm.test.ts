/**
 * The pKVM expectation of scenarios (docs/scenario-format.md, `pkvm`): its file:line:field errors
 * for bad input, and what it compares on the model — the page at `gpa` of the op's VM or at
 * `uaddr` of the VMM (host, hyp and guest states, share count, pins, zero), the hypervisor's VM
 * count, the history oracle and the six invariants — passing and failing with messages that say
 * what came instead; on another profile and without a model it says why it cannot check.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseScenario, type Scenario } from '../../src/scenario/scenario.js';
import { runScenario } from '../../src/scenario/run.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { PKVM_PAGE_SHARED_OWNED } from '../../src/core/platform/pkvm/memory.js';

const HEAD = 'name: t\nkernel: linux-6.18-arm64-pkvm\nsteps:\n';

function errors(text: string): string[] {
  return parseScenario(HEAD + text, 's.yaml').errors.map((e) => e.message);
}

/** A protected VM with 16 KiB of guest_memfd at GPA 0 mapped at `ram`, an initialised vCPU. */
const SETUP = [
  '  - { do: KVM_CREATE_VM, type: ARM_PROTECTED, as: vm }',
  '  - { do: KVM_CREATE_GUEST_MEMFD, vm: vm, size: 16 KiB, flags: MMAP | INIT_SHARED, as: gmem }',
  '  - { do: KVM_SET_USER_MEMORY_REGION2, vm: vm, slot: 0, flags: KVM_MEM_GUEST_MEMFD, guest_phys_addr: 0, memory_size: 16 KiB, userspace_addr: 0, guest_memfd: gmem }',
  '  - { do: mmap, fd: gmem, length: 16 KiB, prot: PROT_READ | PROT_WRITE, flags: MAP_SHARED, as: ram }',
  '  - { do: KVM_CREATE_VCPU, vm: vm, id: 0, as: cpu }',
  '  - { do: KVM_ARM_VCPU_INIT, vcpu: cpu, features: [PSCI_0_2] }',
  '',
].join('\n');

function run(
  text: string,
  opts: { profile?: string; noHost?: boolean; before?: (b: ModelBackend) => void } = {},
): string[] {
  const p = parseScenario(
    (opts.profile === undefined ? HEAD : HEAD.replace('linux-6.18-arm64-pkvm', opts.profile)) +
      text,
    's.yaml',
  );
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  const b = new ModelBackend(getProfile(opts.profile ?? 'linux-6.18-arm64-pkvm')!);
  const r = runScenario(
    p.scenario as Scenario,
    b,
    opts.noHost === true
      ? {}
      : {
          drainEvents: () => b.host.events.drain(),
          host: () => {
            opts.before?.(b);
            return b.host;
          },
        },
  );
  return r.outcomes.flatMap((o) =>
    o.kind === 'op' ? o.failures.map((f) => `${o.index}: ${f}`) : [],
  );
}

describe('scenario expectation pkvm', () => {
  test('bad input is a file:line:field error', () => {
    const err = (e: string): string[] =>
      errors(`  - do: KVM_CREATE_VM\n    type: ARM_PROTECTED\n    expect:\n${e}`);
    assert.deepEqual(err('      pkvm: { gpa: 0, host: OWNNED }\n'), [
      's.yaml:7: expect.pkvm.host: unknown page state (did you mean "OWNED"?)',
    ]);
    assert.deepEqual(err('      pkvm: { gpa: 0, hyp: POISON }\n'), [
      's.yaml:7: expect.pkvm.hyp: unknown page state (known: OWNED, SHARED_OWNED, SHARED_BORROWED, NOPAGE)',
    ]);
    assert.deepEqual(err('      pkvm: { gpa: 0, sharecount: 1 }\n'), [
      's.yaml:7: expect.pkvm.sharecount: unknown key (did you mean "share_count"?)',
    ]);
    assert.deepEqual(err('      pkvm: { host: OWNED }\n'), [
      's.yaml:7: expect.pkvm.host: which page? name it with gpa (of the VM the op names) or uaddr',
    ]);
    assert.deepEqual(err('      pkvm: { gpa: 0, uaddr: ram }\n'), [
      's.yaml:7: expect.pkvm.uaddr: a page is named by gpa or by uaddr, not both',
    ]);
    assert.deepEqual(err('      pkvm: [{ vms: 1 }, { uaddr: ram+0x1000, zero: 1 }]\n'), [
      's.yaml:7: expect.pkvm[1].zero: expected true or false',
    ]);
    assert.deepEqual(err('      pkvm: { uaddr: "ram+bogus" }\n'), [
      's.yaml:7: expect.pkvm.uaddr: "bogus" is not an integer: unknown constant "bogus"',
    ]);
    assert.deepEqual(err('      pkvm: 3\n'), [
      's.yaml:7: expect.pkvm: expected a map (gpa or uaddr, host, hyp, guest, share_count, pins, zero; vms), or a list of them',
    ]);
    assert.deepEqual(err('      pkvm: { vms: -1 }\n'), [
      's.yaml:7: expect.pkvm.vms: expected a count (a non-negative integer up to 2^53)',
    ]);
  });

  test('states of a donated page, by gpa and by uaddr, pass; wrong ones say what came', () => {
    const steps =
      SETUP +
      [
        '  - do: KVM_RUN',
        '    vcpu: cpu',
        "    guest: [{ store: { gpa: 0x1000, hex: 'aa' } }]",
        '    expect:',
        '      pkvm:',
        '        - { vms: 1 }',
        '        - { gpa: 0x1000, host: NOPAGE, hyp: NOPAGE, guest: OWNED, share_count: 0, pins: 0, zero: false }',
        '        - { uaddr: ram+0x1000, host: NOPAGE, guest: OWNED }',
        '        - { uaddr: 0x400000001000, host: NOPAGE }',
        '  - do: KVM_RUN',
        '    vcpu: cpu',
        '    guest: []',
        '    expect:',
        '      pkvm:',
        '        - { vms: 2 }',
        '        - { gpa: 0x1000, host: OWNED, guest: SHARED_OWNED, share_count: 1, zero: true }',
        '        - { gpa: 0x3000, host: OWNED }',
        '        - { gpa: 0x9000, host: OWNED }',
        '  - { do: peek, addr: ram+0x1000, len: 1, expect: { fault: SIGSEGV, pkvm: { uaddr: ram+0x1000, guest: OWNED } } }',
        '  - { do: poke, addr: ram+0x2000, hex: bb, expect: { pkvm: { uaddr: ram+0x2000, host: OWNED, zero: false } } }',
        '  - { do: peek, addr: ram+0x3000, len: 1, expect: { pkvm: { uaddr: ram+0x3000, host: OWNED, zero: true } } }',
        '  - { do: peek, addr: 0x10, len: 1, expect: { fault: SIGSEGV, pkvm: { uaddr: 0x10 } } }',
        '',
      ].join('\n');
    assert.deepEqual(run(steps), [
      '8: expected the hypervisor to hold 2 VM(s), got 1',
      '8: gpa 0x1000 (pfn 0x7): expected host OWNED, got NOPAGE',
      '8: gpa 0x1000 (pfn 0x7): expected guest SHARED_OWNED, got OWNED',
      '8: gpa 0x1000 (pfn 0x7): expected share_count 1, got 0',
      '8: gpa 0x1000 (pfn 0x7): expected all zero, got data',
      '8: expected a page: gpa 0x3000: its memslot has no page there yet',
      '8: expected a page: gpa 0x9000: no memslot of the VM holds it',
      '9: uaddr ram+0x1000 (pfn 0x7): expected guest OWNED: the op names no VM whose stage-2 to read',
      '12: expected a page: uaddr 0x10: the VMM has no page there (not mapped, or never touched)',
    ]);
  });

  test('a corrupted hypervisor fails every pkvm expectation with the differences the oracle finds', () => {
    let corrupt = false;
    const f = run(
      SETUP +
        [
          "  - { do: KVM_RUN, vcpu: cpu, guest: [{ store: { gpa: 0x1000, hex: 'aa' } }], expect: { pkvm: { vms: 1 } } }",
          '  - { do: KVM_RUN, vcpu: cpu, guest: [], expect: { pkvm: { vms: 1 } } }',
          '',
        ].join('\n'),
      {
        // Once the page is donated (after step 7's op), the host's state of it is made
        // SHARED_OWNED, which no call in its history gave it.
        before: (b) => {
          const hyp = b.host.platform.pkvm!.hyp;
          const leaf = [...hyp.vms.values()][0]?.stage2.leaf(1);
          if (corrupt || leaf === undefined) return;
          hyp.vmemmap.setHost(leaf.pfn, leaf.pfn + 1, PKVM_PAGE_SHARED_OWNED);
          corrupt = true;
        },
      },
    );
    assert.ok(corrupt);
    for (const step of [7, 8])
      assert.ok(
        f.some((x) => x.startsWith(`${step}: pKVM history oracle: pfn 0x7: `)),
        f.join('\n'),
      );
    assert.ok(
      f.every((x) => /^[78]: pKVM (history oracle|invariant \d): pfn 0x7: /.test(x)),
      f.join('\n'),
    );
  });

  test('another profile, and a backend without a model, say why they cannot check', () => {
    const step = '  - { do: KVM_CREATE_VM, as: vm, expect: { ok: true, pkvm: { vms: 0 } } }\n';
    assert.deepEqual(run(step, { profile: 'linux-6.18' }), [
      '1: expected a pKVM host: the profile linux-6.18 has no pKVM hypervisor',
    ]);
    assert.deepEqual(run(step, { noHost: true }), [
      '1: pkvm cannot be checked on this backend (no model)',
    ]);
  });
});
