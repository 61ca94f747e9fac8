/**
 * The pKVM hypervisor's memory-ownership state machine (src/core/platform/pkvm/): a table per
 * transition (each failing precondition → its errno and no state change; success → the new
 * (host, hyp, guest) triple), the host stage-2 fault, sequences (a protected guest boots by
 * donation, shares and unshares a virtio ring, the host touches a donated page, a non-protected
 * guest's page shared with two guests with the count gating its return, teardown reclaim with
 * zeroing, forced reclaim), the history oracle and the six invariants catching corrupted state,
 * and a seeded random walk of thousands of hypercalls after each of which the oracle agrees with
 * the stepwise state and the invariants hold.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameStore } from '../../src/core/base/frames.js';
import { asPfn } from '../../src/core/base/units.js';
import { Prng } from '../../src/fuzz/prng.js';
import {
  ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID as MEMINFO,
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID as MEM_SHARE,
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID as MEM_UNSHARE,
  PKVM_HANDLE_OFFSET,
  PkvmHyp,
  PkvmHypPanic,
  SMCCC_RET_INVALID_PARAMETER,
  type PkvmHypConfig,
} from '../../src/core/platform/pkvm/hyp.js';
import {
  E,
  PKVM_ID_GUEST,
  PKVM_ID_HYP,
  PKVM_NOPAGE as NOPAGE,
  PKVM_PAGE_OWNED as OWNED,
  PKVM_PAGE_SHARED_BORROWED as SB,
  PKVM_PAGE_SHARED_OWNED as SO,
  PKVM_POISON as POISON,
  PKVM_STATE_NAMES,
  retName,
} from '../../src/core/platform/pkvm/memory.js';
import { KVM_PGTABLE_PROT_RWX as RWX } from '../../src/core/platform/pkvm/guest_stage2.js';
import { expectedPage } from '../../src/core/platform/pkvm/history.js';
import { checkHistory } from '../../src/core/platform/pkvm/oracle.js';
import { checkPkvmInvariants } from '../../src/core/platform/pkvm/invariants.js';

// Memory: [16, 4096) normal, [4096, 4112) no-map, MMIO elsewhere; the hypervisor owns [16, 24).
const MEM: Partial<PkvmHypConfig> = {
  memory: [
    { base: 16, pages: 4080 },
    { base: 4096, pages: 16, nomap: true },
  ],
  hypReserved: [{ base: 16, pages: 8 }],
};
const NOMAP_PFN = 4100;
const MMIO_PFN = 5000;

/** A hypervisor with a protected VM (handle P, one vCPU) and a non-protected one (handle N). */
class Rig {
  readonly frames = new FrameStore();
  readonly h: PkvmHyp;
  /** Next free host page for metadata (VM structs, memcache): [3000, ...). */
  private meta = 3000;
  P = 0;
  N = 0;
  constructor(config: Partial<PkvmHypConfig> = {}) {
    this.h = new PkvmHyp(this.frames, { ...MEM, ...config });
  }
  page(): number {
    return this.meta++;
  }
  vm(isProtected: boolean, memcache = 3): number {
    const handle = this.h.initVm(isProtected, [this.page()], [this.page()]);
    assert.ok(handle >= PKVM_HANDLE_OFFSET, `initVm: ${retName(handle)}`);
    assert.equal(this.h.initVcpu(handle, this.page()), 0);
    this.topup(handle, memcache);
    return handle;
  }
  topup(handle: number, n: number): void {
    const pages: number[] = [];
    for (let i = 0; i < n; i++) pages.push(this.page());
    this.h.hostTopupMemcache(handle, 0, pages);
  }
  both(): this {
    this.P = this.vm(true);
    this.N = this.vm(false);
    return this;
  }
  /** (host, hyp) of `pfn` and the guest state at (handle, gfn). */
  triple(pfn: number, handle?: number, gfn?: number): string {
    const p = this.h.vmemmap.get(pfn);
    const g =
      handle === undefined
        ? ''
        : ` ${PKVM_STATE_NAMES[this.h.vms.get(handle)?.stage2.state(gfn!) ?? NOPAGE]}`;
    return `${PKVM_STATE_NAMES[p.host]} ${PKVM_STATE_NAMES[p.hyp]}${g}`;
  }
  /** Everything a failing call must leave unchanged. */
  snapshot(): string {
    const h = this.h;
    return JSON.stringify({
      vmemmap: h.vmemmap.runs(),
      hostS2: h.hostS2.runs(),
      ffa: [...h.ffaShared.entries()],
      history: h.history.events,
      vms: [...h.vms.values()].map((vm) => ({
        handle: vm.handle,
        dying: vm.dying,
        leaves: vm.stage2.leafRuns(),
        tables: vm.stage2.tablePfns(),
        pool: vm.pool,
        vcpus: vm.vcpus,
      })),
    });
  }
  /** The oracle and the invariants must both be clean. */
  clean(what = ''): void {
    assert.deepEqual(checkHistory(this.h), [], `oracle ${what}`);
    assert.deepEqual(checkPkvmInvariants(this.h), [], `invariants ${what}`);
  }
}

/** One row of a transition table: `setup` prepares, `call` returns the errno. */
interface Row {
  readonly name: string;
  readonly want: number;
  readonly setup?: (r: Rig) => void;
  readonly call: (r: Rig) => number;
  /** After a success: (pfn, VM handle, gfn) → the expected "host hyp [guest]" triple. */
  readonly then?: (r: Rig) => Array<[number, number | undefined, number | undefined, string]>;
}

/** Run a table: every failing row changes nothing; the history and the invariants stay clean. */
function table(title: string, rows: readonly Row[], config: Partial<PkvmHypConfig> = {}): void {
  describe(title, () => {
    for (const row of rows)
      test(`${row.name} → ${retName(row.want)}`, () => {
        const r = new Rig(config).both();
        row.setup?.(r);
        // The handlers' first step, pkvm_refill_memcache(), commits on its own: run it before the
        // snapshot so that the snapshot tests the transition's check-then-commit.
        for (const vm of r.h.vms.values())
          for (const v of vm.vcpus) r.h.refillMemcache(vm.handle, v.idx);
        r.clean('after setup');
        const before = r.snapshot();
        const ret = row.call(r);
        assert.equal(retName(ret), retName(row.want));
        if (row.want !== 0) assert.equal(r.snapshot(), before, 'a failing call changed state');
        else
          for (const [pfn, handle, gfn, want] of row.then?.(r) ?? [])
            assert.equal(r.triple(pfn, handle, gfn), want, `page ${pfn}`);
        r.clean('after the call');
      });
  });
}

const A = 100; // a host page
const B = 101;
const BLK = 1024; // a 2 MiB-aligned host block [1024, 1536)

table('__pkvm_host_share_hyp(pfn)', [
  { name: 'a page outside memory', want: E.EPERM, call: (r) => r.h.hostShareHyp(MMIO_PFN) },
  {
    name: 'a pfn past the PA limit (no pfn_range_is_valid() here)',
    want: E.EPERM,
    call: (r) => r.h.hostShareHyp(2 ** 36),
  },
  { name: 'a MEMBLOCK_NOMAP page', want: E.EPERM, call: (r) => r.h.hostShareHyp(NOMAP_PFN) },
  { name: 'the hypervisor’s own page', want: E.EPERM, call: (r) => r.h.hostShareHyp(17) },
  {
    name: 'already shared',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareHyp(A), 0),
    call: (r) => r.h.hostShareHyp(A),
  },
  {
    name: 'shared over FF-A (host SHARED_OWNED)',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareFfa(A, 1), 0),
    call: (r) => r.h.hostShareHyp(A),
  },
  {
    name: 'a host-owned page',
    want: 0,
    call: (r) => r.h.hostShareHyp(A),
    then: () => [[A, undefined, undefined, 'SHARED_OWNED SHARED_BORROWED']],
  },
]);

table('__pkvm_host_unshare_hyp(pfn)', [
  { name: 'not shared', want: E.EPERM, call: (r) => r.h.hostUnshareHyp(A) },
  {
    name: 'shared over FF-A, not with the hyp',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareFfa(A, 1), 0),
    call: (r) => r.h.hostUnshareHyp(A),
  },
  {
    name: 'pinned by the hypervisor',
    want: E.EBUSY,
    setup: (r) => {
      assert.equal(r.h.hostShareHyp(A), 0);
      assert.equal(r.h.hypPinSharedMem(A, 1), 0);
    },
    call: (r) => r.h.hostUnshareHyp(A),
  },
  {
    name: 'shared, pinned then unpinned',
    want: 0,
    setup: (r) => {
      assert.equal(r.h.hostShareHyp(A), 0);
      assert.equal(r.h.hypPinSharedMem(A, 1), 0);
      r.h.hypUnpinSharedMem(A, 1);
    },
    call: (r) => r.h.hostUnshareHyp(A),
    then: () => [[A, undefined, undefined, 'OWNED NOPAGE']],
  },
]);

table('__pkvm_host_donate_hyp(pfn, nr_pages) and __pkvm_hyp_donate_host', [
  {
    name: 'donate_hyp: one page of the range not the host’s',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareHyp(A + 2), 0),
    call: (r) => r.h.hostDonateHyp(A, 4),
  },
  {
    name: 'donate_hyp: a range past the PA limit (pfn_range_is_valid)',
    want: E.EINVAL,
    call: (r) => r.h.hostDonateHyp(2 ** 36 - 1, 2),
  },
  {
    name: 'donate_hyp: a range leaving its memory region',
    want: E.EINVAL,
    call: (r) => r.h.hostDonateHyp(4094, 4),
  },
  {
    name: 'donate_hyp: four host pages',
    want: 0,
    call: (r) => r.h.hostDonateHyp(A, 4),
    then: () => [
      [A, undefined, undefined, 'NOPAGE OWNED'],
      [A + 3, undefined, undefined, 'NOPAGE OWNED'],
    ],
  },
  { name: 'hyp_donate_host: a host page', want: E.EPERM, call: (r) => r.h.hypDonateHost(A, 1) },
  {
    name: 'hyp_donate_host: a donated page',
    want: 0,
    setup: (r) => assert.equal(r.h.hostDonateHyp(A, 1), 0),
    call: (r) => r.h.hypDonateHost(A, 1),
    then: () => [[A, undefined, undefined, 'OWNED NOPAGE']],
  },
]);

table('hyp_pin_shared_mem / __pkvm_host_share_ffa / __pkvm_host_unshare_ffa', [
  { name: 'pin: not shared', want: E.EPERM, call: (r) => r.h.hypPinSharedMem(A, 1) },
  {
    name: 'pin: shared with the hyp',
    want: 0,
    setup: (r) => assert.equal(r.h.hostShareHyp(A), 0),
    call: (r) => r.h.hypPinSharedMem(A, 1),
    then: () => [[A, undefined, undefined, 'SHARED_OWNED SHARED_BORROWED']],
  },
  {
    name: 'share_ffa: a page shared with the hyp',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareHyp(A), 0),
    call: (r) => r.h.hostShareFfa(A, 1),
  },
  {
    name: 'share_ffa: a host page',
    want: 0,
    call: (r) => r.h.hostShareFfa(A, 2),
    then: () => [
      [A, undefined, undefined, 'SHARED_OWNED NOPAGE'],
      [A + 1, undefined, undefined, 'SHARED_OWNED NOPAGE'],
    ],
  },
  { name: 'unshare_ffa: not shared', want: E.EPERM, call: (r) => r.h.hostUnshareFfa(A, 1) },
  {
    name: 'unshare_ffa: shared',
    want: 0,
    setup: (r) => assert.equal(r.h.hostShareFfa(A, 1), 0),
    call: (r) => r.h.hostUnshareFfa(A, 1),
    then: () => [[A, undefined, undefined, 'OWNED NOPAGE']],
  },
]);

table(
  '__pkvm_host_share_guest(pfn, gfn, nr_pages, vcpu, prot) (non-protected guest)',
  [
    { name: 'unknown VM', want: E.EINVAL, call: (r) => r.h.hostShareGuest(0x99, 0, A, 0, 1, RWX) },
    { name: 'no such vCPU', want: E.EINVAL, call: (r) => r.h.hostShareGuest(r.N, 5, A, 0, 1, RWX) },
    {
      name: 'a protected VM',
      want: E.EINVAL,
      call: (r) => r.h.hostShareGuest(r.P, 0, A, 0, 1, RWX),
    },
    {
      name: 'a dying VM (its vCPU cannot load)',
      want: E.EINVAL,
      setup: (r) => assert.equal(r.h.startTeardownVm(r.N), 0),
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX),
    },
    {
      name: 'prot beyond RWX',
      want: E.EINVAL,
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 1, 8),
    },
    {
      name: 'a pfn past the PA limit',
      want: E.EINVAL,
      call: (r) => r.h.hostShareGuest(r.N, 0, 2 ** 36, 0, 1, RWX),
    },
    {
      name: 'nr_pages neither 1 nor a PMD block',
      want: E.EINVAL,
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 2, RWX),
    },
    {
      name: 'a PMD block at an unaligned pfn',
      want: E.EINVAL,
      call: (r) => r.h.hostShareGuest(r.N, 0, BLK + 1, 0, 512, RWX),
    },
    {
      name: 'a page outside memory',
      want: E.EPERM,
      call: (r) => r.h.hostShareGuest(r.N, 0, MMIO_PFN, 0, 1, RWX),
    },
    {
      name: 'the gfn already mapped',
      want: E.EPERM,
      setup: (r) => assert.equal(r.h.hostShareGuest(r.N, 0, B, 7, 1, RWX), 0),
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 7, 1, RWX),
    },
    {
      name: 'a page shared with the hyp (count 0)',
      want: E.EPERM,
      setup: (r) => assert.equal(r.h.hostShareHyp(A), 0),
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX),
    },
    {
      name: 'a page donated to the hyp',
      want: E.EPERM,
      setup: (r) => assert.equal(r.h.hostDonateHyp(A, 1), 0),
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX),
    },
    {
      name: 'the share count at its maximum',
      want: E.EBUSY,
      setup: (r) => {
        assert.equal(r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX), 0);
        // Every share wants the minimum in the memcache, needed or not.
        r.topup(r.N, 3);
        assert.equal(r.h.hostShareGuest(r.N, 0, A, 1, 1, RWX), 0);
        r.topup(r.N, 3);
      },
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 2, 1, RWX),
    },
    {
      name: 'a memcache below kvm_mmu_cache_min_pages()',
      want: E.ENOMEM,
      setup: (r) => {
        r.N = r.vm(false, 2);
        // The handler's refill admits the two pages first (a committed side effect).
        assert.equal(r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX), E.ENOMEM);
      },
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX),
    },
    {
      name: 'a host memcache page the host does not own (refill_memcache)',
      want: E.ENOMEM,
      setup: (r) => {
        assert.equal(r.h.hostShareHyp(A + 50), 0);
        const n2 = r.h.initVm(false, [r.page()], [r.page()]);
        assert.equal(r.h.initVcpu(n2, r.page()), 0);
        r.h.hostTopupMemcache(n2, 0, [A + 50]);
        r.N = n2;
      },
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 0, 1, RWX),
    },
    {
      name: 'one page',
      want: 0,
      call: (r) => r.h.hostShareGuest(r.N, 0, A, 3, 1, RWX),
      then: (r) => [[A, r.N, 3, 'SHARED_OWNED NOPAGE SHARED_BORROWED']],
    },
    {
      name: 'a PMD block',
      want: 0,
      call: (r) => r.h.hostShareGuest(r.N, 0, BLK, 512, 512, RWX),
      then: (r) => [
        [BLK, r.N, 512, 'SHARED_OWNED NOPAGE SHARED_BORROWED'],
        [BLK + 511, r.N, 1023, 'SHARED_OWNED NOPAGE SHARED_BORROWED'],
      ],
    },
  ],
  { shareGuestCountMax: 2 },
);

table('__pkvm_host_unshare_guest(gfn, nr_pages, vm)', [
  { name: 'a protected VM', want: E.EINVAL, call: (r) => r.h.hostUnshareGuest(r.P, 0, 1) },
  { name: 'nothing mapped', want: E.ENOENT, call: (r) => r.h.hostUnshareGuest(r.N, 0, 1) },
  {
    name: 'one page of a PMD block',
    want: E.E2BIG,
    setup: (r) => assert.equal(r.h.hostShareGuest(r.N, 0, BLK, 512, 512, RWX), 0),
    call: (r) => r.h.hostUnshareGuest(r.N, 512, 1),
  },
  {
    name: 'a PMD block at an unaligned gfn',
    want: E.EINVAL,
    call: (r) => r.h.hostUnshareGuest(r.N, 3, 512),
  },
  {
    name: 'a shared page',
    want: 0,
    setup: (r) => assert.equal(r.h.hostShareGuest(r.N, 0, A, 3, 1, RWX), 0),
    call: (r) => r.h.hostUnshareGuest(r.N, 3, 1),
    then: (r) => [[A, r.N, 3, 'OWNED NOPAGE NOPAGE']],
  },
  {
    name: 'a PMD block',
    want: 0,
    setup: (r) => assert.equal(r.h.hostShareGuest(r.N, 0, BLK, 512, 512, RWX), 0),
    call: (r) => r.h.hostUnshareGuest(r.N, 512, 512),
    then: (r) => [
      [BLK, r.N, 512, 'OWNED NOPAGE NOPAGE'],
      [BLK + 511, r.N, 1023, 'OWNED NOPAGE NOPAGE'],
    ],
  },
]);

table('__pkvm_host_donate_guest(pfn, gfn, vcpu) (protected guest; later tree)', [
  { name: 'a non-protected VM', want: E.EINVAL, call: (r) => r.h.hostDonateGuest(r.N, 0, A, 0) },
  {
    name: 'a page outside memory',
    want: E.EPERM,
    call: (r) => r.h.hostDonateGuest(r.P, 0, MMIO_PFN, 0),
  },
  {
    name: 'a page the host shared with the hyp',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareHyp(A), 0),
    call: (r) => r.h.hostDonateGuest(r.P, 0, A, 0),
  },
  {
    name: 'the gfn already mapped',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostDonateGuest(r.P, 0, B, 4), 0),
    call: (r) => r.h.hostDonateGuest(r.P, 0, A, 4),
  },
  {
    name: 'a short memcache (-ENOMEM before any mutation, the 2026 fix)',
    want: E.ENOMEM,
    setup: (r) => {
      r.P = r.vm(true, 1);
      assert.equal(r.h.hostDonateGuest(r.P, 0, A, 0), E.ENOMEM); // the refill admits the page
    },
    call: (r) => r.h.hostDonateGuest(r.P, 0, A, 0),
  },
  {
    name: 'a host page',
    want: 0,
    call: (r) => r.h.hostDonateGuest(r.P, 0, A, 4),
    then: (r) => [[A, r.P, 4, 'NOPAGE NOPAGE OWNED']],
  },
]);

/** A protected guest with gfn 4 → page A donated. */
function donated(r: Rig): void {
  assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
}

table('__pkvm_guest_share_host / __pkvm_guest_unshare_host (the guest’s MEM_SHARE / MEM_UNSHARE)', [
  { name: 'share: nothing at the gfn', want: E.ENOENT, call: (r) => r.h.guestShareHost(r.P, 4) },
  {
    name: 'share: already shared',
    want: E.EPERM,
    setup: (r) => {
      donated(r);
      assert.equal(r.h.guestShareHost(r.P, 4), 0);
    },
    call: (r) => r.h.guestShareHost(r.P, 4),
  },
  {
    name: 'share: a poisoned entry',
    want: E.EHWPOISON,
    setup: (r) => {
      donated(r);
      assert.equal(r.h.hostForceReclaimPageGuest(A), 0);
    },
    call: (r) => r.h.guestShareHost(r.P, 4),
  },
  {
    name: 'share: a page the host shared to a non-protected guest (guest SHARED_BORROWED)',
    want: E.EPERM,
    setup: (r) => assert.equal(r.h.hostShareGuest(r.N, 0, A, 4, 1, RWX), 0),
    call: (r) => r.h.guestShareHost(r.N, 4),
  },
  {
    name: 'share: a PMD block leaf',
    want: E.E2BIG,
    setup: (r) => assert.equal(r.h.hostShareGuest(r.N, 0, BLK, 512, 512, RWX), 0),
    call: (r) => r.h.guestShareHost(r.N, 512),
  },
  {
    name: 'share: an owned page',
    want: 0,
    setup: donated,
    call: (r) => r.h.guestShareHost(r.P, 4),
    then: (r) => [[A, r.P, 4, 'SHARED_BORROWED NOPAGE SHARED_OWNED']],
  },
  {
    name: 'unshare: not shared',
    want: E.EPERM,
    setup: donated,
    call: (r) => r.h.guestUnshareHost(r.P, 4),
  },
  {
    name: 'unshare: shared',
    want: 0,
    setup: (r) => {
      donated(r);
      assert.equal(r.h.guestShareHost(r.P, 4), 0);
    },
    call: (r) => r.h.guestUnshareHost(r.P, 4),
    then: (r) => [[A, r.P, 4, 'NOPAGE NOPAGE OWNED']],
  },
]);

table(
  'teardown: __pkvm_start_teardown_vm, __pkvm_reclaim_dying_guest_page, __pkvm_finalize_teardown_vm',
  [
    { name: 'start: unknown handle', want: E.ENOENT, call: (r) => r.h.startTeardownVm(0x77) },
    {
      name: 'start: already dying',
      want: E.EINVAL,
      setup: (r) => assert.equal(r.h.startTeardownVm(r.P), 0),
      call: (r) => r.h.startTeardownVm(r.P),
    },
    {
      name: 'reclaim: VM not dying',
      want: E.EINVAL,
      setup: donated,
      call: (r) => r.h.reclaimDyingGuestPage(r.P, 4),
    },
    {
      name: 'reclaim: nothing at the gfn (get_valid_guest_pte(): -ENOENT)',
      want: E.ENOENT,
      setup: (r) => assert.equal(r.h.startTeardownVm(r.P), 0),
      call: (r) => r.h.reclaimDyingGuestPage(r.P, 4),
    },
    {
      name: 'reclaim: a poisoned entry (-EHWPOISON reads as success; nothing changes)',
      want: 0,
      setup: (r) => {
        donated(r);
        assert.equal(r.h.hostForceReclaimPageGuest(A), 0);
        assert.equal(r.h.startTeardownVm(r.P), 0);
      },
      call: (r) => r.h.reclaimDyingGuestPage(r.P, 4),
      then: (r) => [[A, r.P, 4, 'OWNED NOPAGE POISON']],
    },
    {
      name: 'reclaim: a page the host shares with a non-protected guest',
      want: E.EPERM,
      setup: (r) => {
        assert.equal(r.h.hostShareGuest(r.N, 0, A, 4, 1, RWX), 0);
        assert.equal(r.h.startTeardownVm(r.N), 0);
      },
      call: (r) => r.h.reclaimDyingGuestPage(r.N, 4),
    },
    {
      name: 'reclaim: an owned page',
      want: 0,
      setup: (r) => {
        donated(r);
        assert.equal(r.h.startTeardownVm(r.P), 0);
      },
      call: (r) => r.h.reclaimDyingGuestPage(r.P, 4),
      then: (r) => [[A, r.P, 4, 'OWNED NOPAGE NOPAGE']],
    },
    {
      name: 'reclaim: a page the guest shares with the host',
      want: 0,
      setup: (r) => {
        donated(r);
        assert.equal(r.h.guestShareHost(r.P, 4), 0);
        assert.equal(r.h.startTeardownVm(r.P), 0);
      },
      call: (r) => r.h.reclaimDyingGuestPage(r.P, 4),
      then: (r) => [[A, r.P, 4, 'OWNED NOPAGE NOPAGE']],
    },
    { name: 'finalize: not dying', want: E.EINVAL, call: (r) => r.h.finalizeTeardownVm(r.P) },
    {
      name: 'finalize: dying',
      want: 0,
      setup: (r) => assert.equal(r.h.startTeardownVm(r.P), 0),
      call: (r) => r.h.finalizeTeardownVm(r.P),
    },
  ],
);

table('__pkvm_host_force_reclaim_page_guest(phys)', [
  {
    name: 'a page outside memory',
    want: E.EINVAL,
    call: (r) => r.h.hostForceReclaimPageGuest(MMIO_PFN),
  },
  { name: 'a host page', want: E.EAGAIN, call: (r) => r.h.hostForceReclaimPageGuest(A) },
  { name: 'a hyp page', want: E.EPERM, call: (r) => r.h.hostForceReclaimPageGuest(17) },
  {
    name: 'a page the guest shares with the host',
    want: E.EAGAIN,
    setup: (r) => {
      donated(r);
      assert.equal(r.h.guestShareHost(r.P, 4), 0);
    },
    call: (r) => r.h.hostForceReclaimPageGuest(A),
  },
  {
    name: 'a donated page',
    want: 0,
    setup: donated,
    call: (r) => r.h.hostForceReclaimPageGuest(A),
    then: (r) => [[A, r.P, 4, 'OWNED NOPAGE POISON']],
  },
]);

describe('the effect of each successful transition on the (host, hyp, guest) triple', () => {
  test('host ↔ hyp', () => {
    const r = new Rig().both();
    assert.equal(r.triple(A), 'OWNED NOPAGE');
    assert.equal(r.h.hostShareHyp(A), 0);
    assert.equal(r.triple(A), 'SHARED_OWNED SHARED_BORROWED');
    assert.equal(r.h.hostUnshareHyp(A), 0);
    assert.equal(r.triple(A), 'OWNED NOPAGE');
    assert.equal(r.h.hostDonateHyp(A, 1), 0);
    assert.equal(r.triple(A), 'NOPAGE OWNED');
    assert.deepEqual(r.h.hostS2.get(A), { t: 'annot', owner: PKVM_ID_HYP, handle: 0, gfn: 0 });
    assert.equal(r.h.hypDonateHost(A, 1), 0);
    assert.equal(r.triple(A), 'OWNED NOPAGE');
    assert.equal(r.h.hostS2.get(A), undefined, 'v6.18 set_owner(HOST): an empty entry');
    r.clean();
  });

  test('host → protected guest, guest shares back and unshares', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    assert.equal(r.triple(A, r.P, 4), 'NOPAGE NOPAGE OWNED');
    assert.deepEqual(r.h.hostS2.get(A), { t: 'annot', owner: PKVM_ID_GUEST, handle: r.P, gfn: 4 });
    assert.equal(r.h.guestShareHost(r.P, 4), 0);
    assert.equal(r.triple(A, r.P, 4), 'SHARED_BORROWED NOPAGE SHARED_OWNED');
    assert.equal(r.h.hostS2.get(A)?.t, 'map');
    assert.equal(r.h.guestUnshareHost(r.P, 4), 0);
    assert.equal(r.triple(A, r.P, 4), 'NOPAGE NOPAGE OWNED');
    r.clean();
  });

  test('the memcache: refill donates the host’s pages; tables come from it, and go to the pool', () => {
    const r = new Rig().both();
    const vcpu = r.h.vms.get(r.N)!.vcpus[0]!;
    const hostMc = [...vcpu.hostMemcache];
    assert.equal(r.h.hostShareGuest(r.N, 0, A, 3, 1, RWX), 0);
    assert.deepEqual(vcpu.hostMemcache, [], 'refill_memcache() took every host page');
    for (const p of hostMc) assert.equal(r.triple(p), 'NOPAGE OWNED');
    const tables = r.h.vms.get(r.N)!.stage2.tablePfns();
    assert.equal(tables.length, 3, 'levels 1, 2 and 3');
    assert.equal(vcpu.memcache.length, 0);
    assert.equal(r.h.hostUnshareGuest(r.N, 3, 1), 0);
    assert.equal(r.h.vms.get(r.N)!.stage2.tablePfns().length, 0, 'empty tables freed');
    assert.deepEqual([...r.h.vms.get(r.N)!.pool].sort(), [...tables].sort(), 'into the VM pool');
    // The next share takes its tables from the pool, not the (empty) memcache; the memcache check
    // still wants the minimum, so the host tops up again.
    r.topup(r.N, 3);
    assert.equal(r.h.hostShareGuest(r.N, 0, A, 3, 1, RWX), 0);
    assert.equal(r.h.vms.get(r.N)!.pool.length, 0);
    assert.equal(vcpu.memcache.length, 3);
    r.clean();
  });

  test('refill_memcache() moves only what brings the hyp memcache to the host’s count', () => {
    const r = new Rig().both();
    const vcpu = r.h.vms.get(r.P)!.vcpus[0]!;
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    assert.equal(vcpu.memcache.length, 0);
    r.topup(r.P, 2); // host memcache 2, hyp 0: both move
    r.topup(r.P, 0);
    assert.equal(r.h.hostDonateGuest(r.P, 0, B, 5), E.ENOMEM, 'two pages are below the minimum');
    assert.equal(vcpu.memcache.length, 2, 'the two admitted pages stay');
    r.topup(r.P, 1); // host 1 < hyp 2: nothing moves, still short
    assert.equal(r.h.hostDonateGuest(r.P, 0, B, 5), E.ENOMEM);
    assert.equal(vcpu.hostMemcache.length, 1);
    r.topup(r.P, 2); // host 3 > hyp 2: one moves
    assert.equal(r.h.hostDonateGuest(r.P, 0, B, 5), 0);
    r.clean();
  });
});

describe('memory is ranges, never pages', () => {
  test('a million-page donation is a few runs in every structure, the oracle included', () => {
    const r = new Rig({ memory: [{ base: 0, pages: 2 ** 22 }], hypReserved: [] });
    assert.equal(r.h.hostDonateHyp(2 ** 20, 2 ** 20), 0);
    assert.equal(r.h.hypDonateHost(2 ** 20 + 5, 10), 0);
    assert.equal(r.h.hostShareFfa(2 ** 21, 2 ** 20), 0);
    assert.ok(r.h.vmemmap.size <= 4, `vmemmap runs ${r.h.vmemmap.size}`);
    assert.ok(r.h.hostS2.runs().length <= 3, 'host stage-2 runs');
    assert.ok(r.h.history.runs().length <= 4, 'history runs');
    assert.equal(r.h.history.of(2 ** 20 + 7).length, 2);
    // A fault past the donation maps a whole 1 GiB block.
    assert.deepEqual(r.h.handleHostMemAbort(3 * 2 ** 20 + 5), {
      kind: 'mapped',
      start: 3 * 2 ** 20,
      end: 3 * 2 ** 20 + 2 ** 18,
    });
    r.clean();
  });
});

describe('host stage-2 faults (handle_host_mem_abort)', () => {
  test('the lazy identity map: the largest empty block inside the memory region', () => {
    const r = new Rig();
    // [16, 4096) holds no whole 1 GiB block; 2 MiB blocks inside it are mapped whole.
    assert.deepEqual(r.h.handleHostMemAbort(600), { kind: 'mapped', start: 512, end: 1024 });
    assert.deepEqual(r.h.handleHostMemAbort(700), { kind: 'spurious' });
    // The first 2 MiB block holds the hyp's annotations: only the page is mapped.
    assert.deepEqual(r.h.handleHostMemAbort(40), { kind: 'mapped', start: 40, end: 41 });
    // MMIO beyond memory: a block of the gap.
    const m = r.h.handleHostMemAbort(MMIO_PFN);
    assert.equal(m.kind, 'mapped');
    r.clean();
  });

  test('a page written below a block breaks the block; the rest is rebuilt lazily', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostAccess(600), 'ok');
    assert.equal(r.h.hostS2.get(700)?.t, 'map');
    assert.equal(r.h.hostDonateGuest(r.P, 0, 600, 0), 0);
    assert.equal(r.h.hostS2.get(700), undefined, 'the 2 MiB block is gone');
    assert.equal(r.h.hostAccess(700), 'ok');
    assert.equal(r.h.hostS2.get(700)?.t, 'map');
    assert.equal(r.h.hostAccess(600), 'abort');
    r.clean();
  });

  test('the host touches a donated page: abort injected (later tree) or hyp panic (v6.18)', () => {
    for (const [mode, want] of [
      ['inject', 'abort-injected'],
      ['panic', 'hyp-panic'],
    ] as const) {
      const r = new Rig({ hostAbort: mode }).both();
      assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
      const before = r.snapshot();
      assert.equal(r.h.handleHostMemAbort(A).kind, want);
      assert.equal(r.snapshot(), before, 'the fault changes nothing');
      assert.equal(r.h.handleHostMemAbort(17).kind, want, 'the hypervisor’s own page');
    }
  });
});

describe('guest hypercalls (kvm_handle_pvm_hvc64)', () => {
  test('HYP_MEMINFO, MEM_SHARE and MEM_UNSHARE', () => {
    const r = new Rig().both();
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEMINFO, []), {
      kind: 'ret',
      a0: 4096,
      exitToHost: false,
    });
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEMINFO, [1]), {
      kind: 'ret',
      a0: SMCCC_RET_INVALID_PARAMETER,
      exitToHost: false,
    });
    // Not faulted in yet: a data abort to the host, which donates, then the guest retries.
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEM_SHARE, [4 * 4096]), { kind: 'mem-abort', gfn: 4 });
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEM_SHARE, [4 * 4096, 1]).kind, 'ret');
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEM_SHARE, [4 * 4096]), {
      kind: 'ret',
      a0: 0,
      exitToHost: true,
    });
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEM_SHARE, [4 * 4096]).kind, 'ret');
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEM_UNSHARE, [4 * 4096]), {
      kind: 'ret',
      a0: 0,
      exitToHost: true,
    });
    assert.deepEqual(r.h.guestHvc(r.N, 0, MEM_SHARE, [0]), { kind: 'to-host' });
    assert.equal(r.h.startTeardownVm(r.P), 0);
    assert.deepEqual(r.h.guestHvc(r.P, 0, MEMINFO, []), { kind: 'not-running' });
    r.clean();
  });
});

describe('sequences', () => {
  test('a protected guest boots with donated memory, shares a virtio ring, unshares it', () => {
    const r = new Rig().both();
    const image = [200, 201, 202, 203, 204, 205, 206, 207];
    // The VMM loads the image, then the faults donate it page by page.
    image.forEach((pfn, i) => r.frames.write(asPfn(pfn), 0, new Uint8Array([0x10 + i])));
    image.forEach((pfn, gfn) => {
      r.topup(r.P, 3);
      assert.equal(r.h.hostDonateGuest(r.P, 0, pfn, gfn), 0, `donate gfn ${gfn}`);
      assert.equal(r.h.hostAccess(pfn), 'abort');
    });
    for (const [gfn, pfn] of image.entries()) {
      const a = r.h.guestAccess(r.P, gfn);
      assert.deepEqual(a, { kind: 'ok', pfn, state: OWNED });
    }
    // The ring at gfn 6: shared, the host reads and writes it, unshared.
    const ring = image[6]!;
    assert.equal(r.h.guestHvc(r.P, 0, MEM_SHARE, [6 * 4096]).kind, 'ret');
    assert.equal(r.h.hostAccess(ring), 'ok');
    r.frames.write(asPfn(ring), 8, new Uint8Array([0xee]));
    r.clean('ring shared');
    assert.equal(r.h.guestHvc(r.P, 0, MEM_UNSHARE, [6 * 4096]).kind, 'ret');
    assert.equal(r.h.hostAccess(ring), 'abort', 'the host lost the ring');
    assert.equal(r.triple(ring, r.P, 6), 'NOPAGE NOPAGE OWNED');
    r.clean('ring unshared');
  });

  test('a host page shared with two non-protected guests: the count gates its return', () => {
    const r = new Rig().both();
    const N2 = r.vm(false);
    assert.equal(r.h.hostShareGuest(r.N, 0, A, 10, 1, RWX), 0);
    assert.equal(r.h.hostShareGuest(N2, 0, A, 20, 1, RWX), 0);
    assert.equal(r.h.vmemmap.get(A).shareGuestCount, 2);
    assert.equal(r.h.hostShareHyp(A), E.EPERM, 'not while guests borrow it');
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 0), E.EPERM);
    assert.equal(r.h.hostUnshareGuest(r.N, 10, 1), 0);
    assert.equal(r.triple(A), 'SHARED_OWNED NOPAGE', 'one share left');
    assert.equal(r.h.hostShareHyp(A), E.EPERM);
    assert.equal(r.h.hostUnshareGuest(N2, 20, 1), 0);
    assert.equal(r.triple(A), 'OWNED NOPAGE');
    assert.equal(r.h.hostShareHyp(A), 0, 'returned to the host');
    r.clean();
  });

  test('teardown reclaims and zeroes every guest page, then returns the metadata', () => {
    const r = new Rig().both();
    const pages = [300, 301, 302];
    pages.forEach((pfn, gfn) => {
      r.topup(r.P, 3);
      assert.equal(r.h.hostDonateGuest(r.P, 0, pfn, gfn), 0);
      r.frames.write(asPfn(pfn), 0, new Uint8Array([0xaa, gfn])); // the guest's secrets
    });
    assert.equal(r.h.guestShareHost(r.P, 1), 0);
    const vm = r.h.vms.get(r.P)!;
    const meta = [
      ...vm.vmPages,
      ...vm.pgdPages,
      ...vm.stage2.tablePfns(),
      ...vm.vcpus.flatMap((v) => [v.page, ...v.memcache]),
    ];
    assert.equal(r.h.startTeardownVm(r.P), 0);
    for (const gfn of [0, 1, 2]) {
      assert.equal(r.h.reclaimDyingGuestPage(r.P, gfn), 0);
      r.clean(`reclaim ${gfn}`);
    }
    assert.equal(r.frames.hasData(asPfn(300)), false, 'owned page zeroed');
    assert.equal(r.frames.hasData(asPfn(302)), false);
    assert.equal(r.frames.hasData(asPfn(301)), true, 'the shared page is returned as it is');
    for (const pfn of pages) assert.equal(r.triple(pfn), 'OWNED NOPAGE');
    assert.equal(r.h.finalizeTeardownVm(r.P), 0);
    for (const pfn of meta) assert.equal(r.triple(pfn), 'OWNED NOPAGE', `metadata page ${pfn}`);
    assert.equal(r.h.vms.has(r.P), false);
    r.clean();
  });

  test('forced reclaim poisons the guest entry; the guest faults; teardown cleans up', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    r.frames.write(asPfn(A), 0, new Uint8Array([0x5a]));
    assert.equal(r.h.hostForceReclaimPageGuest(A), 0);
    assert.equal(r.frames.hasData(asPfn(A)), false);
    assert.equal(r.triple(A, r.P, 4), 'OWNED NOPAGE POISON');
    assert.equal(r.h.vms.get(r.P)!.stage2.state(4), POISON);
    assert.deepEqual(r.h.guestAccess(r.P, 4), { kind: 'poison', gfn: 4 });
    assert.equal(r.h.hostAccess(A), 'ok');
    assert.equal(r.h.hostDonateGuest(r.P, 0, B, 4), E.EPERM, 'the poisoned gfn is not NOPAGE');
    r.clean();
    assert.equal(r.h.startTeardownVm(r.P), 0);
    // `return ret && ret != -EHWPOISON ? ret : 0` (2026 tree): a poisoned entry reclaims as 0.
    assert.equal(r.h.reclaimDyingGuestPage(r.P, 4), 0, 'poisoned: 0');
    assert.equal(r.h.finalizeTeardownVm(r.P), 0);
    r.clean();
  });

  test('a VM handle is reused after teardown; a stale annotation cannot be force-reclaimed', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    assert.equal(r.h.startTeardownVm(r.P), 0);
    assert.equal(r.h.finalizeTeardownVm(r.P), 0);
    // The host skipped the reclaim: the page stays owned by a VM that is gone.
    assert.equal(r.h.hostForceReclaimPageGuest(A), E.EAGAIN);
    const v = checkPkvmInvariants(r.h);
    assert.ok(
      v.some((x) => x.invariant === 1 && x.pfn === A),
      'leaked: no owner',
    );
  });
});

describe('the history oracle and the invariants catch a corrupted state', () => {
  test('a host state flipped behind the hypervisor’s back', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostShareHyp(A), 0);
    r.h.vmemmap.setHost(A, A + 1, OWNED);
    const d = checkHistory(r.h);
    assert.deepEqual(d, [{ pfn: A, field: 'host', expected: 'SHARED_OWNED', actual: 'OWNED' }]);
    assert.ok(checkPkvmInvariants(r.h).some((x) => x.invariant === 2 && x.pfn === A));
  });

  test('a page changed without a history', () => {
    const r = new Rig().both();
    r.h.vmemmap.setHyp(B, B + 1, SB);
    assert.deepEqual(checkHistory(r.h), [
      { pfn: B, field: 'hyp', expected: 'NOPAGE', actual: 'SHARED_BORROWED' },
    ]);
    assert.ok(checkPkvmInvariants(r.h).some((x) => x.invariant === 2));
  });

  test('a donated page left mapped in the host stage-2 (invariants 3 and 4)', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    r.h.hostS2.map_(A, A + 1, 1, false);
    const v = checkPkvmInvariants(r.h).map((x) => x.invariant);
    assert.ok(v.includes(3) && v.includes(4));
    assert.equal(checkHistory(r.h)[0]?.field, 'annotation');
  });

  test('a reclaimed page not zeroed (invariant 6)', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostDonateGuest(r.P, 0, A, 4), 0);
    assert.equal(r.h.hostForceReclaimPageGuest(A), 0);
    r.frames.write(asPfn(A), 0, new Uint8Array([1]));
    assert.deepEqual(
      checkPkvmInvariants(r.h).map((x) => x.invariant),
      [6],
    );
  });

  test('a page table handed back to the host (invariant 5)', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostShareGuest(r.N, 0, A, 3, 1, RWX), 0);
    const t = r.h.vms.get(r.N)!.stage2.tablePfns()[0]!;
    r.h.vmemmap.update(t, t + 1, (p) => ({ ...p, host: OWNED, hyp: NOPAGE }));
    assert.ok(checkPkvmInvariants(r.h).some((x) => x.invariant === 5 && x.pfn === t));
  });

  test('__pkvm_host_unshare_ffa checks only the host state (kept safe by the FF-A proxy)', () => {
    const r = new Rig().both();
    assert.equal(r.h.hostShareHyp(A), 0);
    assert.equal(r.h.hostUnshareFfa(A, 1), 0, 'the kernel function lets it through');
    assert.ok(checkPkvmInvariants(r.h).some((x) => x.invariant === 2));
    assert.ok(checkHistory(r.h).some((d) => d.field === 'history'));
  });

  test('the history fold reports a call its pre-state forbids', () => {
    const e = expectedPage([{ op: 'host_share_hyp' }, { op: 'host_share_hyp' }], 'host');
    assert.equal(e.problems.length, 2);
    assert.equal(e.host, SO);
    assert.equal(e.hyp, SB);
  });

  test('hyp_unpin_shared_mem on an unpinned page is a hyp panic', () => {
    const r = new Rig();
    assert.throws(() => r.h.hypUnpinSharedMem(A, 1), PkvmHypPanic);
  });
});

/**
 * A host that follows the kernel's protocol (as arch/arm64/kvm/pkvm.c and ffa.c do): it tops up
 * the memcache before a map, unpins only pinned pages, unshares over FF-A only what it shared,
 * reclaims or unshares every guest page before finalizing a teardown — and otherwise calls
 * anything with any arguments (pfns outside memory, no-map and hyp pages included).
 */
function randomWalk(seed: number, steps: number): { ok: number; failed: number } {
  const rng = new Prng(seed);
  const r = new Rig({
    memory: [
      { base: 16, pages: 112 },
      { base: 200, pages: 8, nomap: true },
    ],
    hypReserved: [{ base: 16, pages: 4 }],
  });
  const h = r.h;
  const pfn = (): number => (rng.chance(0.03) ? 200 + rng.int(8) : 14 + rng.int(118));
  const gfn = (): number => rng.int(24);
  const pick = <T>(xs: readonly T[]): T | undefined =>
    xs.length === 0 ? undefined : xs[rng.int(xs.length)];
  /** Mostly a page the host owns (what a well-behaved host passes), sometimes any. */
  const hostPfn = (): number => {
    for (let i = 0; i < 8; i++) {
      const p = pfn();
      if (h.addrIsMemory(p) && h.vmemmap.get(p).host === OWNED) return p;
    }
    return pfn();
  };
  const newVm = (): void => {
    const handle = h.initVm(rng.chance(0.5), [hostPfn()], [hostPfn()]);
    if (handle > 0) h.initVcpu(handle, hostPfn());
  };
  for (let i = 0; i < 3; i++) newVm();
  const anyVm = (): number | undefined => pick([...h.vms.keys()]);
  /** Mostly a live VM of the kind the call is for, sometimes any VM. */
  const vmOf = (isProtected: boolean): number | undefined => {
    if (rng.chance(0.1)) return anyVm();
    return pick(
      [...h.vms.values()]
        .filter((m) => m.isProtected === isProtected && !m.dying)
        .map((m) => m.handle),
    );
  };
  const topup = (handle: number | undefined): void => {
    if (handle !== undefined && rng.chance(0.8))
      h.hostTopupMemcache(handle, 0, [hostPfn(), hostPfn(), hostPfn()]);
  };
  /** A mapped gfn of the VM (mostly), or any gfn. */
  const leafGfn = (handle: number): number => {
    const x = rng.chance(0.8) ? pick(h.vms.get(handle)?.stage2.leafRuns() ?? []) : undefined;
    return x === undefined ? gfn() : x.start + rng.int(Math.min(x.end - x.start, 4));
  };
  const sharedPfn = (): number | undefined =>
    pick(h.vmemmap.runs().filter((x) => x.page.shareGuestCount > 0))?.start;
  const annotatedPfn = (): number | undefined =>
    pick(h.hostS2.runs().filter((x) => x.pte.t === 'annot'))?.start;
  const memcaches = (): string =>
    JSON.stringify([...h.vms.values()].map((m) => m.vcpus.map((c) => c.memcache.length)));

  let ok = 0;
  let failed = 0;
  for (let step = 0; step < steps; step++) {
    const kind = rng.int(20);
    // The host's part before a map: pick the VM, top up its memcache (host memory only).
    const target =
      kind === 6 || kind === 7 ? vmOf(false) : kind === 9 || kind === 10 ? vmOf(true) : undefined;
    topup(target);
    const before = r.snapshot();
    const mcBefore = memcaches();
    let ret: number | undefined;
    let name = '';
    switch (kind) {
      case 0:
        name = 'host_share_hyp';
        ret = h.hostShareHyp(hostPfn());
        break;
      case 1:
        name = 'host_unshare_hyp';
        ret = h.hostUnshareHyp(pfn());
        break;
      case 2:
        name = 'hyp_pin';
        ret = h.hypPinSharedMem(pfn(), 1 + rng.int(2));
        break;
      case 3: {
        name = 'hyp_unpin';
        const x = pick(h.vmemmap.runs().filter((y) => y.page.refcount > 0));
        if (x !== undefined) h.hypUnpinSharedMem(x.start, 1);
        break;
      }
      case 4:
        name = 'host_share_ffa';
        ret = h.hostShareFfa(pfn(), 1 + rng.int(2));
        break;
      case 5: {
        name = 'host_unshare_ffa';
        const x = pick([...h.ffaShared.entries()]);
        if (x !== undefined) ret = h.hostUnshareFfa(x.start, 1);
        break;
      }
      case 6:
      case 7: {
        name = 'host_share_guest';
        const m = target;
        const p = rng.chance(0.3) ? (sharedPfn() ?? hostPfn()) : hostPfn();
        const n = rng.chance(0.05) ? 512 : 1;
        if (m !== undefined)
          ret = h.hostShareGuest(
            m,
            rng.chance(0.95) ? 0 : 1,
            p,
            gfn(),
            n,
            rng.chance(0.95) ? RWX : 9,
          );
        break;
      }
      case 8: {
        name = 'host_unshare_guest';
        const m = vmOf(false);
        if (m !== undefined) ret = h.hostUnshareGuest(m, leafGfn(m), rng.chance(0.95) ? 1 : 512);
        break;
      }
      case 9:
      case 10: {
        name = 'host_donate_guest';
        const m = target;
        if (m !== undefined) ret = h.hostDonateGuest(m, 0, hostPfn(), gfn());
        break;
      }
      case 11:
      case 12: {
        name = 'mem_share/unshare';
        const m = vmOf(true);
        const func = rng.chance(0.5) ? MEM_SHARE : MEM_UNSHARE;
        if (m !== undefined) h.guestHvc(m, 0, func, [leafGfn(m) * 4096]);
        break;
      }
      case 13: {
        name = 'host_access';
        const p = pfn();
        if (h.hostAccess(p) === 'ok' && h.addrIsMemory(p))
          r.frames.write(asPfn(p), 0, new Uint8Array([1]));
        break;
      }
      case 14: {
        name = 'guest_write';
        const m = anyVm();
        if (m === undefined) break;
        const a = h.guestAccess(m, leafGfn(m));
        if (a.kind === 'ok') r.frames.write(asPfn(a.pfn), 0, new Uint8Array([2]));
        break;
      }
      case 15:
        name = 'force_reclaim';
        ret = h.hostForceReclaimPageGuest(rng.chance(0.6) ? (annotatedPfn() ?? pfn()) : pfn());
        break;
      case 16: {
        name = 'start_teardown';
        const m = anyVm();
        if (m !== undefined && rng.chance(0.15)) ret = h.startTeardownVm(m);
        break;
      }
      case 17:
      case 18: {
        name = 'reclaim_or_unshare_dying';
        const m = pick([...h.vms.values()].filter((x) => x.dying));
        if (m === undefined) break;
        const g = leafGfn(m.handle);
        if (m.isProtected) ret = h.reclaimDyingGuestPage(m.handle, g);
        else {
          ret = h.hostUnshareGuest(m.handle, g, 1);
          if (ret !== 0) ret = h.hostUnshareGuest(m.handle, g - (g % 512), 512);
        }
        break;
      }
      case 19: {
        name = 'finalize_teardown';
        const m = pick([...h.vms.values()].filter((x) => x.dying));
        if (m === undefined) {
          if (h.vms.size < 4) newVm();
          break;
        }
        if (!m.stage2.leafRuns().some((x) => x.leaf.state !== POISON)) {
          ret = h.finalizeTeardownVm(m.handle);
          newVm();
        }
        break;
      }
    }
    if (ret !== undefined) {
      if (ret === 0) ok++;
      else {
        failed++;
        // A refused share/donation may still have refilled the memcache (the handler's first step).
        if (memcaches() === mcBefore)
          assert.equal(r.snapshot(), before, `step ${step} ${name}: ${retName(ret)} changed state`);
      }
    }
    const d = checkHistory(h);
    if (d.length > 0)
      assert.fail(`seed ${seed} step ${step} ${name}: ${JSON.stringify(d.slice(0, 3))}`);
    const v = checkPkvmInvariants(h);
    if (v.length > 0)
      assert.fail(`seed ${seed} step ${step} ${name}: ${JSON.stringify(v.slice(0, 3))}`);
  }
  return { ok, failed };
}

describe('seeded random walk of hypercalls: oracle and stepwise state agree, invariants hold', () => {
  for (const seed of [1, 2, 3, 0xc0ffee]) {
    test(`seed ${seed}: 3000 steps`, () => {
      const res = randomWalk(seed, 3000);
      assert.ok(res.ok > 200, `${res.ok} successful calls`);
      assert.ok(res.failed > 300, `${res.failed} refused calls`);
    });
  }
});
