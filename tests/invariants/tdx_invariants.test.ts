/**
 * The Intel TDX invariants (tdx-private-owner, tdx-remove-before-reuse, tdx-shared-ept-no-private,
 * tdx-mrtd-measured) on linux-6.18-tdx: they hold through a faithful TD build (INIT_VM, a measured
 * INIT_MEM_REGION, FINALIZE), pre-fault (PAGE.AUG), punches (BLOCK/TRACK/REMOVE) and teardown;
 * each TDX mutant is caught by its invariant on a hand-written trace; a state that breaks the
 * shared-EPT rule is reported; and the change-driven checker reports what a full check reports
 * after every op of these traces.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBackend } from '../../src/backends/model.js';
import { mutantsFor } from '../../src/core/base/mutants.js';
import { asPfn } from '../../src/core/base/units.js';
import { InvariantChecker, INVARIANTS, type Violation } from '../../src/core/invariants/index.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { runChecked } from '../../src/check/checked_run.js';
import { parseTrace } from '../../src/trace/parse.js';
import { HandleTable, stepTrace } from '../../src/trace/runner.js';
import type { TraceOp } from '../../src/trace/types.js';
import { kvmMmuDoPageFault } from '../../src/core/arch/x86/mmu.js';
import { asGfn } from '../../src/core/base/units.js';
import { toKvmTdx } from '../../src/core/arch/x86/vmx/tdx.js';

const TDX = getProfile('linux-6.18-tdx')!;
const TDX_INVARIANTS = [
  'tdx-private-owner',
  'tdx-remove-before-reuse',
  'tdx-shared-ept-no-private',
  'tdx-mrtd-measured',
  'tdx-guest-accepted',
  'tdx-map-gpa-exit-matches-request',
];
/** The TD's guest: accept the pre-faulted page, store and load it, load an added page. */
const GUEST_RUN =
  '{"op":"KVM_RUN","vcpu":"cpu0","guest":[{"accept":{"gpa":"0x3000"}},{"store":{"gpa":"0x3000","hex":"11223344"}},{"load":{"gpa":"0x3000"}},{"load":{"gpa":0}},{"accept":{"gpa":"0x3000"}}]}';
/** MapGPA exits enabled; the guest converts [0x3000, 0x5000) to shared and back (the VMM converts). */
const MAP_GPA = [
  '{"op":"KVM_ENABLE_CAP","fd":"vm","cap":201,"args":[4096]}',
  '{"op":"KVM_RUN","vcpu":"cpu0","map_gpa_range":"convert","guest":[{"map_gpa":{"gpa":"0x3000","size":"0x2000","shared":1}},{"store":{"gpa":"0x3000","hex":"aa","shared":1}},{"map_gpa":{"gpa":"0x3000","size":"0x2000","shared":0}},{"accept":{"gpa":"0x3000"}}]}',
];
/** The TD's guest loads the pre-faulted page without accepting it. */
const LOAD_PENDING = '{"op":"KVM_RUN","vcpu":"cpu0","guest":[{"load":{"gpa":"0x3000"}}]}';

/**
 * A TD build (docs/trace-format.md's example, shortened): a 2 MiB private guest_memfd slot, one
 * vCPU, two measured pages at gpa 0 (their source has data), FINALIZE, a pre-fault (PAGE.AUG) at
 * 0x3000; then `tail`.
 */
const BUILD = [
  '{"op":"KVM_CREATE_VM","type":5,"as":"vm"}',
  '{"op":"mmap","fd":-1,"length":"0x200000","prot":3,"flags":"0x22","offset":0,"as":"ram"}',
  '{"op":"mmap","fd":-1,"length":8192,"prot":3,"flags":"0x22","offset":0,"as":"params"}',
  '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","id":1,"data":{"attributes":"0x10000000","xfam":3,"cpuid":[{"function":"0x80000008","eax":"0x300000"}]},"data_addr":"params"}',
  '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"0x200000","flags":0,"as":"gmem"}',
  '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":"0x200000","userspace_addr":"ram","guest_memfd":"gmem","guest_memfd_offset":0}',
  '{"op":"KVM_SET_MEMORY_ATTRIBUTES","vm":"vm","address":0,"size":"0x200000","attributes":8,"flags":0}',
  '{"op":"KVM_ENABLE_CAP","fd":"vm","cap":121,"flags":0,"args":[24]}',
  '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu0"}',
  '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"cpu0","id":2}',
  '{"op":"poke","addr":"ram","hex":"f4f4f4f4"}',
  '{"op":"poke","addr":"ram+0x1100","hex":"0102"}',
  '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"cpu0","id":3,"flags":1,"data":{"source_addr":"ram","gpa":0,"nr_pages":2},"data_addr":"params"}',
  '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","id":4}',
  '{"op":"KVM_PRE_FAULT_MEMORY","vcpu":"cpu0","gpa":"0x3000","size":"0x1000","flags":0}',
];
/** Punches of the pre-faulted (PENDING) page and an added (MAPPED) one; a memslot delete; closes. */
const ZAPS = [
  '{"op":"fallocate","fd":"gmem","mode":3,"offset":"0x3000","len":4096}',
  '{"op":"KVM_PRE_FAULT_MEMORY","vcpu":"cpu0","gpa":"0x3000","size":"0x2000","flags":0}',
  '{"op":"fallocate","fd":"gmem","mode":3,"offset":0,"len":4096}',
  '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":0,"userspace_addr":"ram","guest_memfd":"gmem","guest_memfd_offset":0}',
  '{"op":"close","fd":"cpu0"}',
  '{"op":"close","fd":"gmem"}',
  '{"op":"close","fd":"vm"}',
  '{"op":"mmap","fd":-1,"length":"0x10000","prot":3,"flags":"0x22","offset":0,"as":"more"}',
  '{"op":"poke","addr":"more","hex":"ff"}',
];

function ops(lines: readonly string[]): TraceOp[] {
  const p = parseTrace(lines.join('\n') + '\n', 'tdx.jsonl');
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  return p.ops;
}

/** The (op index, invariant) pairs of a checked run's violations. */
function caught(lines: readonly string[], mutants: string[] = []): Array<[number, string]> {
  const r = runChecked(ops(lines), TDX, { mutants });
  assert.equal(r.ran, lines.length, 'every op ran');
  return r.failures.flatMap((f) =>
    f.violations.map((v) => [f.index, v.invariant] as [number, string]),
  );
}

/** Two models in lockstep, one checked incrementally from the first op, one in full. */
function lockstep(lines: readonly string[], mutants: string[]): Violation[][] {
  const inc = new ModelBackend(TDX, { mutants, events: false });
  const full = new ModelBackend(TDX, { mutants, events: false });
  const ti = new HandleTable(inc.begin());
  const tf = new HandleTable(full.begin());
  const ci = new InvariantChecker(inc.host, undefined, { incremental: true });
  const cf = new InvariantChecker(full.host, undefined, { incremental: false });
  const seen: Violation[][] = [];
  for (const [i, op] of ops(lines).entries()) {
    stepTrace(op, inc, ti);
    stepTrace(op, full, tf);
    const a = ci.check();
    assert.deepEqual(a, cf.check(), `op ${i} (${op.op}): incremental and full checks differ`);
    seen.push(a);
  }
  return seen;
}

describe('TDX invariants', () => {
  test('are in the catalogue for the tdx platform only', () => {
    for (const name of TDX_INVARIANTS) {
      const inv = INVARIANTS.find((i) => i.name === name);
      assert.ok(inv !== undefined, name);
      assert.equal(inv.appliesTo?.(TDX), true, name);
      for (const p of ['linux-6.18', 'linux-6.18-snp'])
        assert.equal(inv.appliesTo?.(getProfile(p)!), false, `${name} on ${p}`);
    }
    assert.deepEqual(
      mutantsFor('tdx')
        .filter((m) => m.platform === 'tdx')
        .map((m) => m.name),
      [
        'tdx_zap_no_track',
        'tdx_measure_skips_extend',
        'tdx_extend_two_pass',
        'tdx_page_add_swapped',
        'tdx_pending_access_allowed',
        'tdx_map_gpa_keeps_shared_bit',
      ],
    );
    assert.equal(
      mutantsFor('none').some((m) => m.platform === 'tdx'),
      false,
    );
  });

  test('hold through a faithful TD build, AUG, a guest run, punches (BLOCK, TRACK, REMOVE) and teardown', () => {
    assert.deepEqual(caught([...BUILD, GUEST_RUN, ...MAP_GPA, ...ZAPS]), []);
    // The same ops checked incrementally from the first op agree with a full check.
    assert.ok(
      lockstep([...BUILD, GUEST_RUN, ...MAP_GPA, ...ZAPS], []).every((v) => v.length === 0),
    );
    // A load before accept (SEPT_VE_DISABLE set): the VM is dead, nothing consumed.
    assert.deepEqual(caught([...BUILD, LOAD_PENDING]), []);
  });

  test('tdx_map_gpa_keeps_shared_bit: the MapGPA exit names the shared alias', () => {
    const c = caught([...BUILD, ...MAP_GPA], ['tdx_map_gpa_keeps_shared_bit']);
    assert.deepEqual(c[0], [BUILD.length + 1, 'tdx-map-gpa-exit-matches-request']);
  });

  test('tdx_pending_access_allowed: the guest loads a page it never accepted', () => {
    const c = caught([...BUILD, LOAD_PENDING], ['tdx_pending_access_allowed']);
    assert.deepEqual(c, [[BUILD.length, 'tdx-guest-accepted']]);
    const r = runChecked(ops([...BUILD, LOAD_PENDING]), TDX, {
      mutants: ['tdx_pending_access_allowed'],
    });
    assert.match(r.failures[0]!.violations[0]!.message, /PENDING \(not accepted\)/);
  });

  test('tdx_zap_no_track: the punched page is freed while the S-EPT maps it (blocked)', () => {
    const c = caught([...BUILD, ...ZAPS.slice(0, 1)], ['tdx_zap_no_track']);
    const punch = BUILD.length;
    assert.deepEqual(c, [
      [punch, 'tdx-private-owner'],
      [punch, 'tdx-remove-before-reuse'],
    ]);
    // Before finalize no TRACK is needed: the mutant changes nothing there.
    assert.deepEqual(caught([...BUILD.slice(0, 13), ZAPS[2]!], ['tdx_zap_no_track']), []);
  });

  test('tdx_measure_skips_extend: the MRTD at FINALIZE is not the measurement of the pages added', () => {
    assert.deepEqual(caught(BUILD, ['tdx_measure_skips_extend']), [[13, 'tdx-mrtd-measured']]);
    // Without the measure flag the mutant has nothing to skip.
    const unmeasured = BUILD.map((l) => l.replace('"id":3,"flags":1', '"id":3,"flags":0'));
    assert.deepEqual(caught(unmeasured, ['tdx_measure_skips_extend']), []);
  });

  test('tdx_extend_two_pass: ADD, ADD, EXTEND x32 is not the single-pass MRTD', () => {
    assert.deepEqual(caught(BUILD, ['tdx_extend_two_pass']), [[13, 'tdx-mrtd-measured']]);
    // A one-page region is the same in both orders.
    const onePage = BUILD.map((l) => l.replace('"nr_pages":2', '"nr_pages":1'));
    assert.deepEqual(caught(onePage, ['tdx_extend_two_pass']), []);
  });

  test('tdx_page_add_swapped: the S-EPT maps the VMM page, the mirror the guest_memfd page', () => {
    const c = caught(BUILD, ['tdx_page_add_swapped']);
    assert.deepEqual(c[0], [12, 'tdx-private-owner']);
    assert.ok(c.some(([i, n]) => i === 12 && n === 'tdx-remove-before-reuse'));
  });

  test('each mutant: the change-driven checker reports what a full check reports', () => {
    for (const m of mutantsFor('tdx').filter((x) => x.platform === 'tdx')) {
      // (A load before accept kills the faithful TD: only the mutant that lets it through gets it.)
      const guest =
        m.name === 'tdx_pending_access_allowed' ? [LOAD_PENDING] : [...MAP_GPA, GUEST_RUN];
      const seen = lockstep([...BUILD, ...guest, ...ZAPS.slice(0, 4)], [m.name]);
      assert.ok(
        seen.some((v) => v.some((x) => TDX_INVARIANTS.includes(x.invariant))),
        `${m.name} is seen`,
      );
    }
  });

  test("tdx-shared-ept-no-private: a shared mapping of a TD's private page is reported", () => {
    const b = new ModelBackend(TDX, { events: false });
    const t = new HandleTable(b.begin());
    for (const op of ops(BUILD)) stepTrace(op, b, t);
    const checker = new InvariantChecker(b.host, TDX_INVARIANTS, { incremental: false });
    assert.deepEqual(checker.check(), []);
    const vm = [...b.host.vms][0]!;
    // The private page at gfn 0 (PAGE.ADDed, MAPPED) as if KVM's shared EPT mapped it at gfn 0x10.
    const priv = vm.stage2[0]!.get(0)!;
    vm.stage2[0]!.set(0x10, 0x11, {
      ...priv,
      base: asPfn(priv.base),
      private: false,
      source: 'hva',
    });
    const v = checker.check();
    assert.deepEqual(
      v.map((x) => [x.invariant, x.object]),
      [['tdx-shared-ept-no-private', 'vm0 gfn 0x10']],
    );
    assert.match(v[0]!.message, /PT_REG of TDR/);
  });

  test('tdx-private-owner: nr_premapped must count the mirror leaves the S-EPT lacks', () => {
    const b = new ModelBackend(TDX, { events: false });
    const t = new HandleTable(b.begin());
    for (const op of ops(BUILD.slice(0, 13))) stepTrace(op, b, t);
    const checker = new InvariantChecker(b.host, TDX_INVARIANTS, { incremental: false });
    assert.deepEqual(checker.check(), []);
    const vm = [...b.host.vms][0]!;
    const priv = vm.stage2[0]!.get(0)!;
    // A private leaf at gfn 0x20 that KVM neither counted nor PAGE.ADDed.
    vm.stage2[0]!.set(0x20, 0x21, { ...priv, base: asPfn(0x7000) });
    const v = checker.check().map((x) => x.message);
    assert.equal(v.length, 2, v.join('\n'));
    assert.match(v[0]!, /nr_premapped is 0 but 1 private leaf/);
    assert.match(v[1]!, /mirror root has 3 private leaves but its record .* has 2/);
  });

  test('tdx-private-owner: a premapped leaf is allowed before finalize only', () => {
    const b = new ModelBackend(TDX, { events: false });
    const t = new HandleTable(b.begin());
    for (const op of ops(BUILD.slice(0, 13))) stepTrace(op, b, t);
    const checker = new InvariantChecker(b.host, TDX_INVARIANTS, { incremental: false });
    const vm = [...b.host.vms][0]!;
    // A private fault before finalize (what INIT_MEM_REGION's kvm_tdp_map_page() does before its
    // PAGE.ADD) leaves the leaf premapped: counted in nr_premapped, no S-EPT entry.
    assert.equal(typeof kvmMmuDoPageFault(b.host, vm, asGfn(5), false, true), 'number');
    assert.equal(toKvmTdx(vm).nrPremapped, 1);
    assert.deepEqual(checker.check(), []);
    // A TD made RUNNABLE with it (what a FINALIZE that ignored nr_premapped would leave).
    toKvmTdx(vm).state = 'TD_STATE_RUNNABLE';
    const v = checker.check();
    assert.deepEqual(
      v.map((x) => [x.invariant, x.object]),
      [['tdx-private-owner', 'vm0 gfn 0x5']],
    );
    assert.match(v[0]!.message, /RUNNABLE but 1 private leaf/);
  });
});
