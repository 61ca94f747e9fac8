/**
 * The six pKVM memory invariants of platforms.md §3.5 as pure checks over a `PkvmHyp`'s state,
 * each returning its violations (page and reason); not yet wired into src/core/invariants.
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
 * 6. A guest page a reclaim (at teardown, or forced) gave back to the host is zeroed before the
 *    host can access it (checked on the pages the last call reclaimed).
 *
 * The checks walk segments of pfns over which every structure is uniform (boundaries of the
 * vmemmap runs, host stage-2 runs, guest leaf runs and FF-A runs), not pages.
 */
import type { PkvmHyp } from './hyp.js';
import { annotationOf, guestRuns, guestViewsOf } from './oracle.js';
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
}

const st = (s: number): string => PKVM_STATE_NAMES[s] ?? String(s);
const owns = (s: number): boolean => s === PKVM_PAGE_OWNED || s === PKVM_PAGE_SHARED_OWNED;

/** Check the six invariants; returns every violation (one per segment and reason). */
export function checkPkvmInvariants(hyp: PkvmHyp): PkvmViolation[] {
  const out: PkvmViolation[] = [];
  const v = (invariant: PkvmViolation['invariant'], pfn: number, reason: string): void => {
    out.push({ invariant, pfn, reason });
  };
  const runs = guestRuns(hyp);
  const protectedVm = new Set(
    [...hyp.vms.values()].filter((m) => m.isProtected).map((m) => m.handle),
  );

  // Segment boundaries.
  const cuts = new Set<number>();
  for (const r of hyp.vmemmap.runs()) cuts.add(r.start).add(r.end);
  for (const r of hyp.hostS2.runs()) cuts.add(r.start).add(r.end);
  for (const r of runs) cuts.add(r.pfn).add(r.end);
  for (const r of hyp.ffaShared.entries()) cuts.add(r.start).add(r.end);
  const points = [...cuts].sort((a, b) => a - b);

  for (let i = 0; i + 1 < points.length; i++) {
    const a = points[i]!;
    if (!hyp.addrIsMemory(a)) {
      const pte = hyp.hostS2.get(a);
      if (pte?.t === 'annot') v(3, a, 'annotation on a non-memory page');
      continue;
    }
    const p = hyp.vmemmap.get(a);
    const guests = guestViewsOf(runs, a).filter((g) => g.state !== 4);
    const pte = hyp.hostS2.get(a);
    const ffa = hyp.ffaShared.get(a) === true;

    // 1. One owner.
    const owners: string[] = [];
    if (owns(p.host)) owners.push('host');
    if (owns(p.hyp)) owners.push('hyp');
    for (const g of guests) if (owns(g.state)) owners.push(`guest ${g.handle}:${g.gfn}`);
    if (owners.length !== 1)
      v(1, a, owners.length === 0 ? 'no owner' : `owners: ${owners.join(', ')}`);

    // 2. Borrowers.
    const guestSb = guests.filter((g) => g.state === PKVM_PAGE_SHARED_BORROWED);
    const guestOwner = guests.find((g) => owns(g.state));
    if (p.hyp === PKVM_PAGE_SHARED_BORROWED && p.host !== PKVM_PAGE_SHARED_OWNED)
      v(2, a, `hyp borrows, host is ${st(p.host)}`);
    if (guestSb.length !== p.shareGuestCount)
      v(2, a, `${guestSb.length} guests borrow, host_share_guest_count ${p.shareGuestCount}`);
    if (guestSb.length > 0 && p.host !== PKVM_PAGE_SHARED_OWNED)
      v(2, a, `guests borrow, host is ${st(p.host)}`);
    if (ffa && p.host !== PKVM_PAGE_SHARED_OWNED) v(2, a, `FF-A shared, host is ${st(p.host)}`);
    if (p.host === PKVM_PAGE_SHARED_BORROWED && guestOwner?.state !== PKVM_PAGE_SHARED_OWNED)
      v(2, a, 'host borrows, no guest shares it');
    if (p.host === PKVM_PAGE_SHARED_OWNED) {
      const borrowers =
        (p.hyp === PKVM_PAGE_SHARED_BORROWED ? 1 : 0) + guestSb.length + (ffa ? 1 : 0);
      if (borrowers === 0) v(2, a, 'host SHARED_OWNED without a borrower');
      if (p.hyp === PKVM_PAGE_SHARED_BORROWED && (guestSb.length > 0 || ffa))
        v(2, a, 'shared with the hyp and with guests or FF-A');
    }
    if (guestOwner?.state === PKVM_PAGE_SHARED_OWNED && p.host !== PKVM_PAGE_SHARED_BORROWED)
      v(2, a, `guest ${guestOwner.handle} shares, host is ${st(p.host)}`);

    // 3. Host stage-2.
    if (pte?.t === 'map' && p.host === PKVM_NOPAGE) v(3, a, 'host maps a NOPAGE page');
    if (p.host !== PKVM_NOPAGE && pte?.t === 'annot') v(3, a, `annotated, host is ${st(p.host)}`);
    if (p.host === PKVM_NOPAGE) {
      const an = annotationOf(hyp, a);
      if (an === undefined) v(3, a, 'host NOPAGE without an annotation');
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
          );
      }
    }

    // 4. Protected guests' pages are not mapped in host or hyp.
    for (const g of guests)
      if (g.state === PKVM_PAGE_OWNED && protectedVm.has(g.handle)) {
        if (pte?.t === 'map')
          v(4, a, `protected guest ${g.handle} page mapped in the host stage-2`);
        if (p.hyp !== PKVM_NOPAGE) v(4, a, `protected guest ${g.handle} page visible to hyp`);
      }
  }

  // 5. The guests' page tables and the hypervisor's metadata pages.
  for (const vm of hyp.vms.values()) {
    const pages: Array<[number, string]> = [
      ...vm.stage2.tablePfns().map((x): [number, string] => [x, 'page table']),
      ...vm.pool.map((x): [number, string] => [x, 'pool page']),
      ...vm.pgdPages.map((x): [number, string] => [x, 'pgd page']),
      ...vm.vmPages.map((x): [number, string] => [x, 'VM struct page']),
      ...vm.vcpus.flatMap((c) => [
        [c.page, 'vCPU struct page'] as [number, string],
        ...c.memcache.map((x): [number, string] => [x, 'memcache page']),
      ]),
    ];
    for (const [pfn, what] of pages) {
      const p = hyp.vmemmap.get(pfn);
      if (p.hyp !== PKVM_PAGE_OWNED || p.host !== PKVM_NOPAGE)
        v(5, pfn, `VM ${vm.handle} ${what}: host ${st(p.host)}, hyp ${st(p.hyp)}`);
    }
  }

  // 6. Reclaimed pages are zeroed before the host gets them.
  for (const pfn of hyp.lastReclaimed) {
    if (hyp.frames.hasData(asPfn(pfn))) v(6, pfn, 'reclaimed guest page not zeroed');
    if (hyp.vmemmap.get(pfn).host !== PKVM_PAGE_OWNED) v(6, pfn, "reclaimed page not the host's");
  }
  return out;
}
