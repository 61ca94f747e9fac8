/**
 * pKVM walks in the model-based fuzzer (`pkvmWalk` in src/fuzz/pkvm_walk.ts, called by the trace
 * generator on profiles with the pkvm platform): on linux-6.18-arm64-pkvm the generator builds
 * protected and non-protected arm64 VMs (guest_memfd slots, anonymous slots, one host page in two
 * VMs), runs their guests (loads, stores, HYP_MEMINFO / MEM_SHARE / MEM_UNSHARE valid and invalid),
 * touches the VMM's mappings and tears everything down in random orders. The traces round-trip
 * through the text format, replay, are checked clean (change-driven checking = full checking),
 * are the same for the same seed, take most of a trace's ops, and reach every transition of the
 * hypervisor (`PkvmHyp`) that KVM drives — counted per method by a test-only observer, so a
 * generator change cannot lose one silently. A finding on this profile shrinks. Plus what the
 * first pKVM fuzz runs found (regressions).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateTrace, type GenOptions } from '../../src/fuzz/trace_gen.js';
import { breaks, newCoverage, runModelFuzz } from '../../src/fuzz/model_fuzz.js';
import { runChecked } from '../../src/check/checked_run.js';
import { ModelBackend } from '../../src/backends/model.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { Host, type IoctlArg } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
} from '../../src/core/base/uapi.js';
import { KVM_ARM_IOCTL, KVM_VM_TYPE_ARM_PROTECTED } from '../../src/core/base/uapi_arm64.js';
import { guestLoad, guestStore } from '../../src/core/arch/x86/kvm_run.js';
import { PkvmHyp, type PkvmVm } from '../../src/core/platform/pkvm/hyp.js';
import { PKVM_POISON } from '../../src/core/platform/pkvm/memory.js';
import { formatOp } from '../../src/trace/format.js';
import { parseTrace } from '../../src/trace/parse.js';
import { HandleTable, runTrace, stepTrace } from '../../src/trace/runner.js';
import { BackendRefusal, type ResultLine, type TraceOp } from '../../src/trace/types.js';
import { NotModelled } from '../../src/core/base/not_modelled.js';
import type { Result } from '../../src/core/base/result.js';

const PKVM = getProfile('linux-6.18-arm64-pkvm')!;
const OPTS: GenOptions = { ops: 60, feedback: PKVM, privateMemory: PKVM.memoryAttributesConfig };
const SEEDS = 60;
const PAGE = 4096n;

const lines = (ops: readonly TraceOp[]): string[] => ops.map(formatOp);

/** The walk's handle an op acts on or binds (the walk names its handles a*), if any. */
function walkHandle(op: TraceOp): string | undefined {
  const re = /^a(vm|cpu|g|m|a)\d+$/;
  if (op.as !== undefined && re.test(op.as)) return op.as;
  const o = op as unknown as Record<string, { kind?: string; name?: string } | undefined>;
  for (const f of ['fd', 'vm', 'vcpu', 'addr']) {
    const a = o[f];
    if (a?.kind === 'handle' && re.test(a.name!)) return a.name;
  }
  return undefined;
}

/** A result as a count key: ok, the errno, or the fault. */
const outcome = (r: ResultLine): string => ('fault' in r ? r.fault : r.ok ? 'ok' : r.errno);

/** Run `ops` checked change-driven and fully in lockstep; the violations seen (must agree). */
function lockstepViolations(ops: readonly TraceOp[]): number {
  const inc = new ModelBackend(PKVM, { events: false });
  const full = new ModelBackend(PKVM, { events: false });
  const ti = new HandleTable(inc.begin());
  const tf = new HandleTable(full.begin());
  const ci = new InvariantChecker(inc.host, undefined, { incremental: true });
  const cf = new InvariantChecker(full.host, undefined, { incremental: false });
  let seen = 0;
  for (const [i, op] of ops.entries()) {
    stepTrace(op, inc, ti);
    stepTrace(op, full, tf);
    const a = ci.check();
    assert.deepEqual(a, cf.check(), `op ${i + 1} (${op.op}): change-driven and full checks differ`);
    seen += a.length;
  }
  return seen;
}

/**
 * The transitions of `PkvmHyp` that KVM drives (arch/arm64/pkvm.ts, mmu.ts, run.ts and the host's
 * stage-2 faults): each must be called by the walks, with the outcomes listed.
 */
const REACHED = [
  'reserveVm',
  'unreserveVm',
  'initVm',
  'initVcpu',
  'hostTopupMemcache',
  'refill',
  'hostDonateHyp',
  'hypDonateHost',
  'hostShareGuest',
  'hostUnshareGuest',
  'hostDonateGuest',
  'guestShareHost',
  'guestUnshareHost',
  'guestHvc',
  'startTeardownVm',
  'reclaimDyingGuestPage',
  'hostForceReclaimPageGuest',
  'finalizeTeardownVm',
  'handleHostMemAbort',
  'hostStage2Idmap',
  'hostAccess',
];
/**
 * Methods no KVM path calls: the host kernel's own sharing with the hypervisor and its pins
 * (`__pkvm_host_share_hyp` & co. serve hyp-side data structures KVM's modelled ioctls do not
 * create), FF-A (no trace op reaches the secure world), `refillMemcache` (the share and donate
 * handlers refill through `refill`), `guestAccess` (arm64's abort path reads the guest stage-2
 * itself). Anything else on the class must be in REACHED or here (a new transition is
 * classified, not silently unfuzzed).
 */
const NOT_DRIVEN_BY_KVM = [
  'hostShareHyp',
  'hostUnshareHyp',
  'hypPinSharedMem',
  'hypUnpinSharedMem',
  'hostShareFfa',
  'hostUnshareFfa',
  'refillMemcache',
  'guestAccess',
];
/** Helpers of the class that are checks, queries or bookkeeping, not transitions. */
const QUERIES = [
  'hypAtBoot',
  'rec',
  'findMemRange',
  'addrIsMemory',
  'rangeIsMemory',
  'checkRangeAllowedMemory',
  'pfnRangeIsValid',
  'hostCheckPageStateRange',
  'hypCheckPageStateRange',
  'hostSetPageStateRange',
  'hostStage2SetOwnerLocked',
  'hostStage2SetGuestOwner',
  'must',
  'loadedVcpu',
  'guestCheckPgtableMemcache',
  'tableAlloc',
  'transitionSize',
  'validGuestPte',
  // The change log the checker's pKVM invariants read.
  'noteChange',
  'noteVm',
  'takeChanges',
  'handover',
  // hyp_poison_page(): the clearing step of reclaim and forced reclaim (counted through them).
  'hypPoisonPage',
];

/** An outcome key of a hypervisor call: the method and what it returned. */
function callKey(name: string, ret: unknown, self: PkvmHyp, args: unknown[]): string[] {
  const keys = [name];
  if (typeof ret === 'number') keys.push(`${name} ${ret === 0 ? 'ok' : ret > 0 ? 'ok' : ret}`);
  else if (typeof ret === 'string') keys.push(`${name} ${ret}`);
  else if (ret !== null && typeof ret === 'object' && 'kind' in ret) {
    const r = ret as { kind: string; a0?: number };
    keys.push(`${name} ${r.kind}${r.a0 !== undefined ? ` ${r.a0}` : ''}`);
  }
  // One host page shared with more than one guest.
  if (name === 'hostShareGuest' && ret === 0) {
    const c = self.vmemmap.get(args[2] as number).shareGuestCount;
    if (c > 1) keys.push('hostShareGuest count>1');
  }
  return keys;
}

describe('pKVM walks in the trace generator (linux-6.18-arm64-pkvm)', () => {
  const traces = Array.from({ length: SEEDS }, (_, i) => generateTrace(i + 1, OPTS));

  test('the same seed gives the same trace; traces round-trip through the text format', () => {
    for (const seed of [1, 2, 77, 4242]) {
      const a = lines(generateTrace(seed, OPTS));
      assert.deepEqual(lines(generateTrace(seed, OPTS)), a, `seed ${seed}`);
    }
    traces.forEach((ops, i) => {
      const text = lines(ops).join('\n') + '\n';
      const parsed = parseTrace(text, `pkvm-${i + 1}.jsonl`);
      assert.deepEqual(
        parsed.errors.map((e) => e.message),
        [],
      );
      assert.deepEqual(parsed.ops, ops, `seed ${i + 1}`);
    });
  });

  test('walks take most of the ops and reach their VMs, guests, calls and teardowns', () => {
    const count = new Map<string, number>();
    const bump = (k: string): void => void count.set(k, (count.get(k) ?? 0) + 1);
    let walkOps = 0;
    let all = 0;
    for (const ops of traces) {
      const res = runTrace(ops, new ModelBackend(PKVM, { events: false }));
      ops.forEach((op, i) => {
        all++;
        if (walkHandle(op) === undefined) return;
        walkOps++;
        const r = res[i]!;
        if (op.op === 'KVM_CREATE_VM') {
          const prot = (op.type & KVM_VM_TYPE_ARM_PROTECTED) !== 0n;
          bump(`${prot ? 'protected' : 'non-protected'} VM ${outcome(r)}`);
        } else bump(`${op.op} ${outcome(r)}`);
        if (op.op === 'KVM_RUN') {
          for (const s of op.guest)
            bump(s.kind === 'hypercall' ? `hvc ${s.nr.toString(16)}` : `step ${s.kind}`);
          if (!('fault' in r))
            for (const e of r.exits ?? [])
              bump(`exit ${e.reason}${e.reason === 'HYPERCALL_RET' ? ` ${e.hex}` : ''}`);
        }
      });
    }
    assert.ok(walkOps > 0.6 * all, `walk ops ${walkOps} of ${all}`);
    const need = [
      'protected VM ok',
      'non-protected VM ok',
      'KVM_CREATE_GUEST_MEMFD ok',
      'KVM_SET_USER_MEMORY_REGION2 ok',
      'KVM_SET_USER_MEMORY_REGION2 EINVAL', // a guest_memfd slot that is not gmem-only
      'KVM_SET_USER_MEMORY_REGION ok',
      'KVM_CREATE_VCPU ok',
      'KVM_ARM_VCPU_INIT ok',
      'KVM_ARM_VCPU_INIT ENOENT',
      'KVM_ARM_VCPU_INIT EINVAL',
      'KVM_ARM_VCPU_FINALIZE ok',
      'KVM_RUN ok',
      'KVM_RUN EFAULT',
      'KVM_RUN EPERM',
      'step load',
      'step store',
      'hvc c6000002',
      'hvc c6000003',
      'hvc c6000004',
      'exit LOAD',
      'exit MMIO',
      'exit HYPERCALL_RET 0000000000000000', // SMCCC_RET_SUCCESS
      'exit HYPERCALL_RET 0010000000000000', // HYP_MEMINFO: 4096
      'exit HYPERCALL_RET fdffffffffffffff', // INVALID_PARAMETER
      'exit HYPERCALL_RET ffffffffffffffff', // NOT_SUPPORTED
      'peek ok',
      'poke ok',
      'poke SIGSEGV', // the VMM touching a donated page
      'fallocate ok',
      'munmap ok',
      'mmap ok',
      'close ok',
    ];
    for (const k of need) assert.ok((count.get(k) ?? 0) > 0, `${k}: ${JSON.stringify([...count])}`);
  });

  describe('every hypervisor transition KVM drives is reached', () => {
    const calls = new Map<string, number>();
    const proto = PkvmHyp.prototype as unknown as Record<string, unknown>;
    const saved = new Map<string, (...a: unknown[]) => unknown>();
    before(() => {
      for (const name of Object.getOwnPropertyNames(PkvmHyp.prototype)) {
        const d = Object.getOwnPropertyDescriptor(PkvmHyp.prototype, name)!;
        if (name === 'constructor' || typeof d.value !== 'function') continue;
        const f = d.value as (...a: unknown[]) => unknown;
        saved.set(name, f);
        proto[name] = function (this: PkvmHyp, ...args: unknown[]): unknown {
          // An unshare from one of two guests: the page stays shared (the count gates it).
          const pfn =
            name === 'hostUnshareGuest'
              ? this.vms.get(args[0] as number)?.stage2.leaf(args[1] as number)?.pfn
              : undefined;
          const ret = f.apply(this, args);
          for (const k of callKey(name, ret, this, args)) calls.set(k, (calls.get(k) ?? 0) + 1);
          if (ret === 0 && pfn !== undefined && this.vmemmap.get(pfn).shareGuestCount > 0)
            calls.set('hostUnshareGuest still shared', 1);
          return ret;
        };
      }
    });
    after(() => {
      for (const [name, f] of saved) proto[name] = f;
    });

    test('each method of PkvmHyp is classified', () => {
      const known = new Set([...REACHED, ...NOT_DRIVEN_BY_KVM, ...QUERIES]);
      const methods = [...saved.keys()];
      assert.deepEqual(
        methods.filter((m) => !known.has(m)),
        [],
        'a new PkvmHyp method: add it to REACHED (and the walk) or to NOT_DRIVEN_BY_KVM',
      );
      assert.deepEqual(
        [...known].filter((m) => !methods.includes(m)),
        [],
      );
    });

    test('over seeded traces the walks call each of them, with their outcomes', () => {
      calls.clear();
      for (let seed = 1; seed <= SEEDS; seed++) {
        const ops = generateTrace(seed, OPTS);
        runTrace(ops, new ModelBackend(PKVM, { events: false }));
      }
      const need = [
        ...REACHED,
        'initVm ok',
        'initVcpu ok',
        'hostShareGuest ok',
        'hostShareGuest count>1', // one host page shared with two guests
        'hostShareGuest -1', // EPERM: a page another VM's guest owns or borrows
        'hostUnshareGuest ok',
        'hostUnshareGuest still shared', // count 2 → 1: the host does not get it back yet
        'hostDonateGuest ok',
        'hostDonateGuest -1', // EPERM: the host page is not the host's alone
        'guestShareHost ok',
        'guestShareHost -1', // EPERM: already shared
        'guestShareHost -2', // ENOENT: no page there yet (the host donates it, the guest retries)
        'guestUnshareHost ok',
        'guestUnshareHost -1', // EPERM: owned, not shared
        'guestHvc ret 0',
        'guestHvc ret 4096',
        'guestHvc ret -3',
        'guestHvc mem-abort',
        'guestHvc to-host',
        'startTeardownVm ok',
        'reclaimDyingGuestPage ok',
        'hostForceReclaimPageGuest ok',
        'finalizeTeardownVm ok',
        'handleHostMemAbort mapped',
        'handleHostMemAbort abort-injected',
        'hostAccess ok',
        'hostAccess abort',
      ];
      const missing = need.filter((k) => (calls.get(k) ?? 0) === 0);
      assert.deepEqual(missing, [], JSON.stringify([...calls].sort()));
      for (const m of NOT_DRIVEN_BY_KVM)
        assert.equal(calls.get(m) ?? 0, 0, `${m} is called: move it to REACHED`);
    });
  });

  test('walks are checked clean, and change-driven checking finds what full checking finds', () => {
    for (const ops of traces.slice(0, 30)) {
      const r = runChecked(ops, PKVM, { endAtRefusal: true });
      assert.deepEqual(
        r.failures.map((f) => f.violations.map((v) => v.message)),
        [],
      );
    }
    for (let seed = 1; seed <= 10; seed++) {
      const ops = generateTrace(seed, { ...OPTS, ops: 150 });
      assert.equal(lockstepViolations(ops), 0, `seed ${seed}`);
    }
  });

  test('model-based fuzzing of pKVM VMs is deterministic for a seed and finds nothing', () => {
    const run = (): string => {
      const coverage = newCoverage();
      const r = runModelFuzz({
        seed: 7,
        profile: PKVM,
        coverage,
        shouldContinue: (p) => p.ops < 4000,
      });
      return JSON.stringify({
        p: r.progress,
        f: r.found.length,
        ops: [...coverage.ops].sort(),
        errnos: [...coverage.errnos].sort(),
      });
    };
    const a = run();
    assert.equal(run(), a);
    assert.match(a, /"violations":0/);
    assert.match(a, /"KVM_ARM_VCPU_INIT"/);
  });

  test('a finding on this profile is shrunk to a small trace that breaks only with the bug', () => {
    // punch_no_zap: a punch leaves the stage-2 mapping of a non-protected VM's guest_memfd page.
    const mutants = ['punch_no_zap'];
    const r = runModelFuzz({
      seed: 1,
      profile: PKVM,
      mutants,
      shouldContinue: (p) => p.ops < 20_000,
    });
    assert.equal(r.found.length, 1);
    const f = r.found[0]!;
    assert.ok(f.ops.length < f.originalOps && f.ops.length <= 12, `${f.ops.length} ops`);
    assert.ok(breaks(f.ops, PKVM, mutants, f.invariant));
    assert.ok(!breaks(f.ops, PKVM, [], f.invariant));
    assert.ok(
      f.ops.some((op) => op.op === 'KVM_ARM_VCPU_INIT'),
      lines(f.ops).join('\n'),
    );
  });
});

describe('regression: found by the first pKVM fuzz runs', () => {
  const ok = <T>(r: Result<T>): T => {
    if (!r.ok) assert.fail(`expected success, got ${r.errno} (${r.check})`);
    return r.value;
  };
  const init: IoctlArg = {
    kind: 'buffer',
    bytes: Uint8Array.of(5, ...new Array<number>(31).fill(0)),
  };

  /** A protected (or not) VM with a gmem-only slot of `pages` at gpa 0 and one vCPU, initialised. */
  function vm(h: Host, prot: boolean, pages: bigint) {
    const kvm = h.openDevKvm();
    const v = ok(h.kvmCreateVm(kvm, prot ? KVM_VM_TYPE_ARM_PROTECTED : 0n));
    const g = ok(
      h.kvmCreateGuestMemfd(v, pages * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED),
    );
    const slot = {
      slot: 0n,
      flags: KVM_MEM_GUEST_MEMFD,
      guest_phys_addr: 0n,
      memory_size: pages * PAGE,
      userspace_addr: 0n,
      guest_memfd_offset: 0n,
    };
    ok(h.kvmSetUserMemoryRegion(v, slot, g, false));
    const c = ok(h.kvmCreateVcpu(v, 0n));
    ok(h.kvmArchIoctl(c, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, init));
    return { v, g, c };
  }

  /**
   * `gmemlab fuzz --kernel linux-6.18-arm64-pkvm --seed 1` (first walks) reported
   * stage2-coherent and freed-page-unmapped (7 ops): a punch of a guest_memfd page donated to a
   * protected guest force-reclaims it (zeroed, freed, the guest's entry at EL2 poisoned), but the
   * host's record of the guest's mapping stayed, and the guest's next load and store went
   * through it to the freed frame (KVM_RUN ok) instead of taking the poison fault (-EFAULT).
   */
  test('a protected guest touching a force-reclaimed page faults (EFAULT); the freed frame is untouched', () => {
    const h = new Host(PKVM, { parts: ALL_PARTS });
    const chk = new InvariantChecker(h, undefined, { incremental: false });
    const { g, c } = vm(h, true, 4n);
    assert.equal(h.kvmRun(c, [guestStore(0n, Uint8Array.of(1, 2, 3, 4))]).errno, undefined);
    const hyp = h.platform.pkvm!.hyp;
    const hvm: PkvmVm = [...hyp.vms.values()][0]!;
    const pfn = hvm.stage2.leaf(0)!.pfn;
    ok(h.fallocate(g, 3, 0n, PAGE));
    assert.equal(hvm.stage2.leaf(0)?.state, PKVM_POISON);
    assert.deepEqual(chk.check(), []);
    for (const step of [guestLoad(0n, 4), guestStore(0n, Uint8Array.of(9, 9, 9, 9))])
      assert.equal(h.kvmRun(c, [step]).errno, 'EFAULT');
    const b = new Uint8Array(4096);
    h.frames.read(pfn as never, 0, b);
    assert.ok(b.every((x) => x === 0));
    assert.deepEqual(chk.check(), []);
  });

  /**
   * `__fput()` runs `->release()` — `kvm_gmem_release()`, which ends with `kvm_put_kvm()` — before
   * the inode's eviction frees the pages. With the model's earlier order (pages first) a
   * protected VM whose last reference was its guest_memfd lost every page to forced reclaim and
   * `__pkvm_reclaim_dying_guest_page` was never reached; a page the guest shared with the host
   * (not force-reclaimable) was freed while the guest still owned it.
   */
  test('the guest_memfd as last reference: the VM is torn down (reclaim) before the pages are freed', () => {
    const h = new Host(PKVM, { parts: ALL_PARTS });
    const chk = new InvariantChecker(h, undefined, { incremental: false });
    const { v, g, c } = vm(h, true, 4n);
    const share = { kind: 'hypercall' as const, nr: 0xc6000003n, args: [PAGE, 0n, 0n] as const };
    const r = h.kvmRun(c, [guestStore(0n, Uint8Array.of(1)), share]);
    assert.equal(r.errno, undefined);
    const hyp = h.platform.pkvm!.hyp;
    const calls: string[] = [];
    const orig = { reclaim: hyp.reclaimDyingGuestPage, force: hyp.hostForceReclaimPageGuest };
    hyp.reclaimDyingGuestPage = (...a) => (calls.push('reclaim'), orig.reclaim.apply(hyp, a));
    hyp.hostForceReclaimPageGuest = (...a) => (calls.push('force'), orig.force.apply(hyp, a));
    ok(h.close(c));
    ok(h.close(v));
    ok(h.close(g));
    assert.deepEqual(calls, ['reclaim', 'reclaim']);
    assert.equal(hyp.vms.size, 0);
    assert.deepEqual(chk.check(), []);
  });

  test('guest_memfd freeing a page the protected guest shares with the host is not modelled', () => {
    const h = new Host(PKVM, { parts: ALL_PARTS });
    const { g, c } = vm(h, true, 4n);
    const share = { kind: 'hypercall' as const, nr: 0xc6000003n, args: [PAGE, 0n, 0n] as const };
    assert.equal(h.kvmRun(c, [share]).errno, undefined);
    assert.throws(() => h.fallocate(g, 3, PAGE, PAGE), NotModelled);
    // Through a backend: a refusal naming the op.
    const t = parseTrace(
      [
        '{"op":"KVM_CREATE_VM","fd":"kvm","type":"0x80000000","as":"vm"}',
        '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":16384,"flags":3,"as":"g"}',
        '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":16384,"userspace_addr":0,"guest_memfd":"g","guest_memfd_offset":0}',
        '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"c"}',
        '{"op":"KVM_ARM_VCPU_INIT","vcpu":"c","target":5,"features":[]}',
        '{"op":"KVM_RUN","vcpu":"c","guest":[{"hypercall":{"nr":"0xc6000003","args":[4096,0,0]}}]}',
        '{"op":"fallocate","fd":"g","mode":3,"offset":4096,"len":4096}',
      ].join('\n'),
      'shared_punch.jsonl',
    );
    assert.deepEqual(t.errors, []);
    assert.throws(
      () => runTrace(t.ops, new ModelBackend(PKVM, { events: false })),
      (e: unknown) =>
        e instanceof BackendRefusal && /^fallocate: .*shares it with the host/.test(e.message),
    );
  });

  /**
   * The same run reported memory-accounting on traces past 64 ops (where checking turns
   * change-driven): a pKVM VM's first KVM_RUN, an ioctl on the vCPU fd, donates the hyp VM, pgd
   * and vCPU pages (`Vm.archPages`), which the change tracker re-read only after ops on the VM fd
   * or for a VM that had arch pages already. A false positive of the checker.
   */
  test("a pKVM VM's first KVM_RUN: its arch pages are owned, checked either way", () => {
    const hosts = [new Host(PKVM, { parts: ALL_PARTS }), new Host(PKVM, { parts: ALL_PARTS })];
    const checkers = hosts.map(
      (h, i) => new InvariantChecker(h, undefined, { incremental: i === 0 }),
    );
    for (const [i, h] of hosts.entries()) {
      const { c } = vm(h, false, 2n);
      assert.deepEqual(checkers[i]!.check(), []);
      assert.equal(h.kvmRun(c, [guestStore(0n, Uint8Array.of(7))]).errno, undefined);
      assert.deepEqual(checkers[i]!.check(), [], i === 0 ? 'change-driven' : 'full');
    }
  });
});
