/**
 * The hypercall-history oracle (issue 13 item 4; platforms.md §3.3, §3.6): for every page the
 * history touched, recompute the expected (host, hyp, guest) triple, share count, pins and host
 * stage-2 annotation from the history alone (`expectedPage()`, history.ts) and compare it with the
 * stepwise state of `PkvmHyp`; pages the history never touched must still be in their boot state.
 * It works on segments of pages, never page by page over memory.
 * Any difference is returned (never thrown), ghost-spec style: the spec's post-state against the
 * abstraction of the implementation's.
 */
import type { PkvmHyp } from './hyp.js';
import { expectedPage, type Annotation, type GuestView } from './history.js';
import { PKVM_NOPAGE, PKVM_STATE_NAMES } from './memory.js';

/** One disagreement between the history and the stepwise state. */
export interface OracleDiff {
  readonly pfn: number;
  readonly field:
    'host' | 'hyp' | 'guests' | 'shareGuestCount' | 'pins' | 'ffa' | 'annotation' | 'history';
  readonly expected: string;
  readonly actual: string;
}

/** A guest mapping of a pfn range, from one VM's stage-2. */
interface GuestRun {
  readonly pfn: number;
  readonly end: number;
  readonly handle: number;
  readonly gfn: number;
  readonly state: number;
}

/** Every guest leaf of every live VM as pfn runs (the reverse map the hypervisor does not keep). */
export function guestRuns(hyp: PkvmHyp): GuestRun[] {
  const out: GuestRun[] = [];
  for (const vm of hyp.vms.values())
    for (const r of vm.stage2.leafRuns())
      out.push({
        pfn: r.leaf.base,
        end: r.leaf.base + (r.end - r.start),
        handle: vm.handle,
        gfn: r.start,
        state: r.leaf.state,
      });
  return out.sort((a, b) => a.pfn - b.pfn);
}

/** The guest views of `pfn` from `runs`, sorted by (handle, gfn). */
export function guestViewsOf(runs: readonly GuestRun[], pfn: number): GuestView[] {
  const out: GuestView[] = [];
  for (const r of runs) {
    if (r.pfn > pfn) break;
    if (pfn < r.end)
      out.push({ handle: r.handle, gfn: r.gfn + (pfn - r.pfn), state: r.state as never });
  }
  return out.sort((a, b) => a.handle - b.handle || a.gfn - b.gfn);
}

/** The host stage-2 annotation of `pfn` as an `Annotation`, or undefined. */
export function annotationOf(hyp: PkvmHyp, pfn: number): Annotation | undefined {
  const pte = hyp.hostS2.get(pfn);
  if (pte?.t !== 'annot') return undefined;
  return { owner: pte.owner, handle: pte.handle, gfn: pte.gfn };
}

const st = (s: number): string => PKVM_STATE_NAMES[s] ?? String(s);
const gv = (g: readonly GuestView[]): string =>
  g.map((x) => `${x.handle}:${x.gfn}:${st(x.state)}`).join(',') || '-';
const an = (a: Annotation | undefined): string =>
  a === undefined ? '-' : `owner ${a.owner} handle ${a.handle} gfn ${a.gfn}`;

/** Compare one page's expected state (from its history) with the stepwise state. */
function comparePage(
  hyp: PkvmHyp,
  runs: readonly GuestRun[],
  pfn: number,
  out: OracleDiff[],
): void {
  const exp = expectedPage(hyp.history.of(pfn), hyp.hypAtBoot(pfn) ? 'hyp' : 'host');
  const p = hyp.vmemmap.get(pfn);
  const push = (field: OracleDiff['field'], expected: string, actual: string): void => {
    if (expected !== actual) out.push({ pfn, field, expected, actual });
  };
  for (const pr of exp.problems) out.push({ pfn, field: 'history', expected: 'valid', actual: pr });
  push('host', st(exp.host), st(p.host));
  push('hyp', st(exp.hyp), st(p.hyp));
  push('guests', gv(exp.guests), gv(guestViewsOf(runs, pfn)));
  push('shareGuestCount', String(exp.shareGuestCount), String(p.shareGuestCount));
  push('pins', String(exp.pins), String(p.refcount));
  push('ffa', String(exp.ffa), String(hyp.ffaShared.get(pfn) === true));
  const actualAnnot = p.host === PKVM_NOPAGE ? annotationOf(hyp, pfn) : undefined;
  push('annotation', an(exp.annotation), an(actualAnnot));
}

/**
 * The oracle's check, over segments of pfns in which every structure is uniform (the boundaries
 * of the history runs, vmemmap runs, host stage-2 runs, guest leaf runs, FF-A runs and the boot
 * reservations): each segment's first page is compared — its history's expected state against
 * the stepwise state — and stands for the segment (gfns advance with the page on both sides).
 * Pages without a history must be in their boot state. Returns the differences (empty: the
 * history and the state agree). Cost: the number of runs, never the size of memory.
 */
export function checkHistory(hyp: PkvmHyp): OracleDiff[] {
  const out: OracleDiff[] = [];
  const runs = guestRuns(hyp);
  const cuts = new Set<number>();
  for (const r of hyp.history.runs()) cuts.add(r.start).add(r.end);
  for (const r of hyp.vmemmap.runs()) cuts.add(r.start).add(r.end);
  for (const r of hyp.hostS2.runs()) if (r.pte.t === 'annot') cuts.add(r.start).add(r.end);
  for (const r of runs) cuts.add(r.pfn).add(r.end);
  for (const r of hyp.ffaShared.entries()) cuts.add(r.start).add(r.end);
  for (const r of hyp.config.hypReserved) cuts.add(r.base).add(r.base + r.pages);
  const points = [...cuts].sort((a, b) => a - b);
  for (let i = 0; i + 1 < points.length; i++) comparePage(hyp, runs, points[i]!, out);
  return out;
}
