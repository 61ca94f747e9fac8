/**
 * The hypercall-history oracle (issue 13 item 4; platforms.md §3.3, §3.6): for every page the
 * history touched, recompute the expected (host, hyp, guest) triple, share count, pins and host
 * stage-2 annotation from the history alone (`expectedPage()`, history.ts) and compare it with the
 * stepwise state of `PkvmHyp`; pages the history never touched must still be in their boot state.
 * It works on segments of pages, never page by page over memory, and can be limited to the
 * segments of some pfn ranges (`PkvmScope`: the change-driven checker's, after a step that
 * touched only those).
 * Any difference is returned (never thrown), ghost-spec style: the spec's post-state against the
 * abstraction of the implementation's.
 */
import type { PkvmHyp } from './hyp.js';
import { type Annotation, type GuestView } from './history.js';
import { PKVM_NOPAGE, PKVM_STATE_NAMES, runBoundariesIn } from './memory.js';

/** One disagreement between the history and the stepwise state. */
export interface OracleDiff {
  readonly pfn: number;
  readonly field:
    'host' | 'hyp' | 'guests' | 'shareGuestCount' | 'pins' | 'ffa' | 'annotation' | 'history';
  readonly expected: string;
  readonly actual: string;
}

/** A guest mapping of a pfn range, from one VM's stage-2. */
export interface GuestRun {
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

/**
 * The guests' mappings by pfn, from the live VMs' reverse maps (`GuestStage2.refsAt`): the views
 * of a page, and the boundaries of the runs over which they are uniform. Lookups are O(VMs ·
 * log runs); nothing is rebuilt when a guest stage-2 changes.
 */
export class GuestIndex {
  private constructor(private readonly hyp: PkvmHyp) {}

  /** The index of `hyp`'s guests. */
  static of(hyp: PkvmHyp): GuestIndex {
    return new GuestIndex(hyp);
  }

  /** The guest views of `pfn`, sorted by (handle, gfn). */
  viewsOf(pfn: number): GuestView[] {
    const out: GuestView[] = [];
    for (const vm of this.hyp.vms.values())
      for (const r of vm.stage2.refsAt(pfn))
        out.push({ handle: vm.handle, gfn: r.gfn, state: r.state });
    return out.sort((a, b) => a.handle - b.handle || a.gfn - b.gfn);
  }

  /** The boundaries in [s, e]. */
  boundariesIn(s: number, e: number, add: (p: number) => void): void {
    for (const vm of this.hyp.vms.values()) vm.stage2.pfnBoundariesIn(s, e, add);
  }

  /** Every boundary. */
  all(add: (p: number) => void): void {
    for (const vm of this.hyp.vms.values()) vm.stage2.pfnBoundaries(add);
  }
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

/**
 * Which pages a check looks at: `ranges` ((start, end) pairs): only the segments that start in
 * one of them or at its end (the only ones a change confined to those ranges can have changed
 * or created); absent: every segment.
 */
export interface PkvmScope {
  readonly ranges?: readonly number[];
}

/**
 * The segment starts of `hyp`'s state in `scope`, sorted: the boundaries of every run of every
 * structure — the history, the vmemmap, the host stage-2, the guests' mappings, the FF-A shares
 * and the boot reservations. Over a segment every structure is uniform (gfns advance with the
 * page), so its first page stands for it.
 */
export function segmentPoints(hyp: PkvmHyp, guests: GuestIndex, scope: PkvmScope = {}): number[] {
  const cuts = new Set<number>();
  const add = (p: number): void => {
    cuts.add(p);
  };
  const r = scope.ranges;
  if (r === undefined) {
    for (const x of hyp.history.runs()) cuts.add(x.start).add(x.end);
    for (const x of hyp.vmemmap.runs()) cuts.add(x.start).add(x.end);
    for (const x of hyp.hostS2.runs()) cuts.add(x.start).add(x.end);
    guests.all(add);
    for (const x of hyp.ffaShared.entries()) cuts.add(x.start).add(x.end);
    for (const x of hyp.config.hypReserved) cuts.add(x.base).add(x.base + x.pages);
  } else
    for (let i = 0; i < r.length; i += 2) {
      const s = r[i]!;
      const e = r[i + 1]!;
      hyp.history.boundariesIn(s, e, add);
      hyp.vmemmap.boundariesIn(s, e, add);
      hyp.hostS2.boundariesIn(s, e, add);
      guests.boundariesIn(s, e, add);
      runBoundariesIn(hyp.ffaShared, s, e, add);
      for (const x of hyp.config.hypReserved) {
        if (x.base >= s && x.base <= e) cuts.add(x.base);
        if (x.base + x.pages >= s && x.base + x.pages <= e) cuts.add(x.base + x.pages);
      }
    }
  return [...cuts].sort((a, b) => a - b);
}

const st = (s: number): string => PKVM_STATE_NAMES[s] ?? String(s);
const gv = (g: readonly GuestView[]): string =>
  g.map((x) => `${x.handle}:${x.gfn}:${st(x.state)}`).join(',') || '-';
const an = (a: Annotation | undefined): string =>
  a === undefined ? '-' : `owner ${a.owner} handle ${a.handle} gfn ${a.gfn}`;

/** Compare one page's expected state (from its history) with the stepwise state. */
export function comparePage(
  hyp: PkvmHyp,
  guests: GuestIndex,
  pfn: number,
  out: OracleDiff[],
): void {
  const exp = hyp.history.expectedOf(pfn, hyp.hypAtBoot(pfn) ? 'hyp' : 'host', {
    vmAt: (h, seq) => hyp.history.vmAt(h, seq),
    shareGuestCountMax: hyp.config.shareGuestCountMax,
  });
  const p = hyp.vmemmap.get(pfn);
  const push = (field: OracleDiff['field'], expected: string, actual: string): void => {
    if (expected !== actual) out.push({ pfn, field, expected, actual });
  };
  for (const pr of exp.problems) out.push({ pfn, field: 'history', expected: 'valid', actual: pr });
  push('host', st(exp.host), st(p.host));
  push('hyp', st(exp.hyp), st(p.hyp));
  push('guests', gv(exp.guests), gv(guests.viewsOf(pfn)));
  push('shareGuestCount', String(exp.shareGuestCount), String(p.shareGuestCount));
  push('pins', String(exp.pins), String(p.refcount));
  push('ffa', String(exp.ffa), String(hyp.ffaShared.get(pfn) === true));
  const actualAnnot = p.host === PKVM_NOPAGE ? annotationOf(hyp, pfn) : undefined;
  push('annotation', an(exp.annotation), an(actualAnnot));
}

/**
 * The oracle's check, over segments of pfns in which every structure is uniform
 * (`segmentPoints()`): each segment's first page is compared — its history's expected state,
 * and whether each of its calls was allowed, against the stepwise state — and stands for the
 * segment. Pages without a history must be in their boot state. Returns the differences (empty:
 * the history and the state agree). Cost: the number of runs (in `scope`), never the size of
 * memory.
 */
export function checkHistory(hyp: PkvmHyp, scope: PkvmScope = {}): OracleDiff[] {
  const out: OracleDiff[] = [];
  const guests = GuestIndex.of(hyp);
  for (const p of segmentPoints(hyp, guests, scope)) comparePage(hyp, guests, p, out);
  return out;
}
