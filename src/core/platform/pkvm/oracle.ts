/**
 * The hypercall-history oracle (issue 13 item 4; platforms.md §3.3, §3.6): for every page the
 * history touched, recompute the expected (host, hyp, guest) triple, share count, pins and host
 * stage-2 annotation from the history alone (`expectedPage()`, history.ts) and compare it with the
 * stepwise state of `PkvmHyp`; pages the history never touched must still be in their boot state.
 * Any difference is returned (never thrown), ghost-spec style: the spec's post-state against the
 * abstraction of the implementation's.
 */
import type { PkvmHyp } from './hyp.js';
import { expectedPage, type Annotation, type GuestView } from './history.js';
import { HYP_PAGE_ZERO, PKVM_NOPAGE, PKVM_PAGE_OWNED, PKVM_STATE_NAMES } from './memory.js';

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
 * The oracle's check: every page with a history, and every page whose stepwise state differs
 * from the boot state (which must then have a history), compared field by field. Returns the
 * differences (empty: the history and the state agree).
 */
export function checkHistory(hyp: PkvmHyp): OracleDiff[] {
  const out: OracleDiff[] = [];
  const runs = guestRuns(hyp);
  const seen = new Set<number>();
  for (const pfn of hyp.history.touched()) {
    seen.add(pfn);
    comparePage(hyp, runs, pfn, out);
  }
  // Pages with state but no history: they must be exactly in their boot state.
  const extra = (pfn: number): void => {
    if (seen.has(pfn)) return;
    seen.add(pfn);
    comparePage(hyp, runs, pfn, out);
  };
  for (const r of hyp.vmemmap.runs()) {
    const boot = hyp.hypAtBoot(r.start);
    const isBoot =
      boot &&
      r.page.host === PKVM_NOPAGE &&
      r.page.hyp === PKVM_PAGE_OWNED &&
      r.page.refcount === 0 &&
      r.page.shareGuestCount === 0;
    if (isBoot || r.page === HYP_PAGE_ZERO) continue;
    for (let pfn = r.start; pfn < r.end; pfn++) extra(pfn);
  }
  for (const r of hyp.hostS2.runs()) {
    if (r.pte.t !== 'annot' || hyp.hypAtBoot(r.start)) continue;
    for (let pfn = r.start; pfn < r.end; pfn++) extra(pfn);
  }
  for (const r of runs) for (let pfn = r.pfn; pfn < r.end; pfn++) extra(pfn);
  return out.sort((a, b) => a.pfn - b.pfn);
}
