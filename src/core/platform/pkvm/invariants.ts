/**
 * The six pKVM memory invariants of platforms.md §3.5 as pure checks over a `PkvmHyp`'s state,
 * each returning its violations (page and reason); the invariant checker's pkvm-* invariants
 * (src/core/invariants/pkvm_*.ts) run them on the pages and VMs a step changed.
 *
 * 1. One owner per page: exactly one component (host, hyp, or one guest mapping) is OWNED or
 *    SHARED_OWNED; every other view is NOPAGE or SHARED_BORROWED.
 * 2. Borrowers match the owner: a SHARED_BORROWED view exists only while the owner is
 *    SHARED_OWNED, a SHARED_OWNED owner has a borrower (the hyp, guests, FF-A, or the host), and
 *    the guests borrowing a host page number `host_share_guest_count`.
 * 3. The host stage-2 maps (valid entry) only pages whose host state is not NOPAGE, and every
 *    NOPAGE page has an annotation naming its owner (the hyp; a guest with its VM handle and gfn).
 *    The map is lazy: a host-accessible page may also have an empty entry.
 * 4. A protected guest's OWNED page is mapped neither in the host stage-2 nor at EL2 (hyp state
 *    NOPAGE).
 * 5. Guest page tables, the VM pools, the vCPUs' memcaches and the VM/vCPU/pgd pages are hyp
 *    OWNED and host NOPAGE.
 * 6. A page the host regains access to from a guest or the hypervisor (a reclaim at teardown or a
 *    forced one, `__pkvm_hyp_donate_host()`) holds no data at that moment (the hypervisor logs
 *    every handover of a page with data: `PkvmHyp.dirtyHandovers`); in a full check also the
 *    pages the last call reclaimed, now.
 *
 * The checks walk segments of pfns over which every structure is uniform (`segmentPoints()`,
 * oracle.ts), not pages; a `PkvmCheckScope` limits them to some pfn ranges and VMs.
 */
import type { PkvmHyp } from './hyp.js';
import { annotationOf, GuestIndex, segmentPoints, type PkvmScope } from './oracle.js';
import type { PkvmVm } from './hyp.js';
import {
  PKVM_ID_GUEST,
  PKVM_ID_HYP,
  PKVM_NOPAGE,
  PKVM_PAGE_OWNED,
  PKVM_PAGE_SHARED_BORROWED,
  PKVM_PAGE_SHARED_OWNED,
  PKVM_STATE_NAMES,
} from './memory.js';
import { asPfn } from '../../base/units.js';

export interface PkvmViolation {
  /** 1..6: the invariant of §3.5. */
  readonly invariant: 1 | 2 | 3 | 4 | 5 | 6;
  readonly pfn: number;
  readonly reason: string;
  /** The guest concerned (VM handle, and the gfn where the page is mapped), when there is one. */
  readonly handle?: number;
  readonly gfn?: number;
}

/**
 * What a check looks at: the segments of `ranges` (PkvmScope; absent: all), the VMs `vms`
 * (handles; absent: all) for invariant 5, and whether invariant 6 also reads the pages the last
 * call reclaimed (`lastCall`, default true: right after a call; the checker, which runs after a
 * whole step, reads only the handover log).
 */
export interface PkvmCheckScope extends PkvmScope {
  readonly vms?: Iterable<number>;
  readonly lastCall?: boolean;
  /** Leave out invariants 1-4 (pages), 5 (VMs) or 6 (handovers). */
  readonly pages?: boolean;
  readonly vmPages?: boolean;
  readonly handovers?: boolean;
}

const st = (s: number): string => PKVM_STATE_NAMES[s] ?? String(s);
const owns = (s: number): boolean => s === PKVM_PAGE_OWNED || s === PKVM_PAGE_SHARED_OWNED;

/** Check the six invariants; returns every violation (one per segment and reason). */
export function checkPkvmInvariants(hyp: PkvmHyp, scope: PkvmCheckScope = {}): PkvmViolation[] {
  const out: PkvmViolation[] = [];
  if (scope.pages !== false) {
    const guests = GuestIndex.of(hyp);
    const protectedVm = new Set(
      [...hyp.vms.values()].filter((m) => m.isProtected).map((m) => m.handle),
    );
    for (const a of segmentPoints(hyp, guests, scope))
      checkPagePoint(hyp, guests, protectedVm, a, out);
  }
  if (scope.vmPages !== false) {
    if (scope.vms === undefined) for (const vm of hyp.vms.values()) checkVmPages(hyp, vm, out);
    else
      for (const h of scope.vms) {
        const vm = hyp.vms.get(h);
        if (vm !== undefined) checkVmPages(hyp, vm, out);
      }
  }
  if (scope.handovers !== false) checkHandovers(hyp, scope.lastCall ?? true, out);
  return out;
}

/** Invariants 1-4 at segment start `a`. */
export function checkPagePoint(
  hyp: PkvmHyp,
  guestIndex: GuestIndex,
  protectedVm: ReadonlySet<number>,
  a: number,
  out: PkvmViolation[],
): void {
  const v = (
    invariant: PkvmViolation['invariant'],
    pfn: number,
    reason: string,
    g?: { handle: number; gfn: number },
  ): void => {
    out.push(g === undefined ? { invariant, pfn, reason } : { invariant, pfn, reason, ...g });
  };
  if (!hyp.addrIsMemory(a)) {
    const pte = hyp.hostS2.get(a);
    if (pte?.t === 'annot') v(3, a, 'annotation on a non-memory page');
    return;
  }
  const p = hyp.vmemmap.get(a);
  const guests = guestIndex.viewsOf(a).filter((g) => g.state !== 4);
  const pte = hyp.hostS2.get(a);
  const ffa = hyp.ffaShared.get(a) === true;
  const first = guests[0];
  const g0 = first === undefined ? undefined : { handle: first.handle, gfn: first.gfn };

  // 1. One owner.
  const owners: string[] = [];
  if (owns(p.host)) owners.push('host');
  if (owns(p.hyp)) owners.push('hyp');
  for (const g of guests) if (owns(g.state)) owners.push(`guest ${g.handle}:${g.gfn}`);
  if (owners.length !== 1)
    v(1, a, owners.length === 0 ? 'no owner' : `owners: ${owners.join(', ')}`, g0);

  // 2. Borrowers.
  const guestSb = guests.filter((g) => g.state === PKVM_PAGE_SHARED_BORROWED);
  const guestOwner = guests.find((g) => owns(g.state));
  if (p.hyp === PKVM_PAGE_SHARED_BORROWED && p.host !== PKVM_PAGE_SHARED_OWNED)
    v(2, a, `hyp borrows, host is ${st(p.host)}`);
  if (guestSb.length !== p.shareGuestCount)
    v(2, a, `${guestSb.length} guests borrow, host_share_guest_count ${p.shareGuestCount}`, g0);
  if (guestSb.length > 0 && p.host !== PKVM_PAGE_SHARED_OWNED)
    v(2, a, `guests borrow, host is ${st(p.host)}`, g0);
  if (ffa && p.host !== PKVM_PAGE_SHARED_OWNED) v(2, a, `FF-A shared, host is ${st(p.host)}`);
  if (p.host === PKVM_PAGE_SHARED_BORROWED && guestOwner?.state !== PKVM_PAGE_SHARED_OWNED)
    v(2, a, 'host borrows, no guest shares it', g0);
  if (p.host === PKVM_PAGE_SHARED_OWNED) {
    const borrowers =
      (p.hyp === PKVM_PAGE_SHARED_BORROWED ? 1 : 0) + guestSb.length + (ffa ? 1 : 0);
    if (borrowers === 0) v(2, a, 'host SHARED_OWNED without a borrower');
    if (p.hyp === PKVM_PAGE_SHARED_BORROWED && (guestSb.length > 0 || ffa))
      v(2, a, 'shared with the hyp and with guests or FF-A', g0);
  }
  if (guestOwner?.state === PKVM_PAGE_SHARED_OWNED && p.host !== PKVM_PAGE_SHARED_BORROWED)
    v(2, a, `guest ${guestOwner.handle} shares, host is ${st(p.host)}`, guestOwner);

  // 3. Host stage-2.
  if (pte?.t === 'map' && p.host === PKVM_NOPAGE) v(3, a, 'host maps a NOPAGE page', g0);
  if (p.host !== PKVM_NOPAGE && pte?.t === 'annot') v(3, a, `annotated, host is ${st(p.host)}`);
  if (p.host === PKVM_NOPAGE) {
    const an = annotationOf(hyp, a);
    if (an === undefined) v(3, a, 'host NOPAGE without an annotation', g0);
    else if (p.hyp === PKVM_PAGE_OWNED && an.owner !== PKVM_ID_HYP)
      v(3, a, `hyp-owned, annotation owner ${an.owner}`);
    else if (guestOwner !== undefined) {
      if (
        an.owner !== PKVM_ID_GUEST ||
        an.handle !== guestOwner.handle ||
        an.gfn !== guestOwner.gfn
      )
        v(
          3,
          a,
          `guest ${guestOwner.handle}:${guestOwner.gfn}, annotation ${an.owner}/${an.handle}/${an.gfn}`,
          guestOwner,
        );
    }
  }

  // 4. Protected guests' pages are not mapped in host or hyp.
  for (const g of guests)
    if (g.state === PKVM_PAGE_OWNED && protectedVm.has(g.handle)) {
      if (pte?.t === 'map')
        v(4, a, `protected guest ${g.handle} page mapped in the host stage-2`, g);
      if (p.hyp !== PKVM_NOPAGE) v(4, a, `protected guest ${g.handle} page visible to hyp`, g);
    }
}

/** The pages the hypervisor holds for `vm` (invariant 5), with what each is. */
export function vmOwnPages(vm: PkvmVm): Array<[number, string]> {
  return [
    ...vm.stage2.tablePfns().map((x): [number, string] => [x, 'page table']),
    ...vm.pool.map((x): [number, string] => [x, 'pool page']),
    ...vm.pgdPages.map((x): [number, string] => [x, 'pgd page']),
    ...vm.vmPages.map((x): [number, string] => [x, 'VM struct page']),
    ...vm.vcpus.flatMap((c) => [
      [c.page, 'vCPU struct page'] as [number, string],
      ...c.memcache.map((x): [number, string] => [x, 'memcache page']),
    ]),
  ];
}

/** Invariant 5 for one VM. */
export function checkVmPages(hyp: PkvmHyp, vm: PkvmVm, out: PkvmViolation[]): void {
  for (const [pfn, what] of vmOwnPages(vm)) {
    const p = hyp.vmemmap.get(pfn);
    if (p.hyp !== PKVM_PAGE_OWNED || p.host !== PKVM_NOPAGE)
      out.push({
        invariant: 5,
        pfn,
        reason: `VM ${vm.handle} ${what}: host ${st(p.host)}, hyp ${st(p.hyp)}`,
        handle: vm.handle,
      });
  }
}

/** Invariant 6: the handover log (and, `lastCall`, the pages the last call reclaimed, now). */
export function checkHandovers(hyp: PkvmHyp, lastCall: boolean, out: PkvmViolation[]): void {
  for (const d of hyp.dirtyHandovers)
    out.push({
      invariant: 6,
      pfn: d.pfn,
      reason: `${d.what} gave the host a page holding data${d.handle === undefined ? '' : ` (VM ${d.handle} gfn ${d.gfn})`}`,
      ...(d.handle === undefined ? {} : { handle: d.handle, gfn: d.gfn! }),
    });
  if (!lastCall) return;
  for (const pfn of hyp.lastReclaimed) {
    if (hyp.frames.hasData(asPfn(pfn)))
      out.push({ invariant: 6, pfn, reason: 'reclaimed guest page not zeroed' });
    if (hyp.vmemmap.get(pfn).host !== PKVM_PAGE_OWNED)
      out.push({ invariant: 6, pfn, reason: "reclaimed page not the host's" });
  }
}
