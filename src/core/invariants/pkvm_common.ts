/**
 * What the pKVM invariants share (profiles whose platform is 'pkvm'): one evaluation per
 * hypervisor state of the six §3.5 checks (platform/pkvm/invariants.ts) and the history oracle
 * (platform/pkvm/oracle.ts), split among the seven pkvm-* invariants, and kept change-driven.
 *
 * **Change-driven.** `PkvmHyp.version` moves with every change of the hypervisor's state and
 * its change log names the pfn ranges and VMs changed (`takeChanges()`). A check after a step
 * that did not touch the hypervisor answers the last result (O(1)); after one that did, only
 * the segments starting in the changed ranges (or at their ends) are re-evaluated — a page's
 * verdict depends only on the state at that page — and only the changed VMs' own pages, plus
 * the VMs one of whose pages lies in a changed range (an index of every VM's own pages). The
 * results are kept per segment start and per VM. The full checker (`InvariantChecker.fullCheck`,
 * no `s.mappings`) evaluates everything afresh whenever the version moved (once for the seven),
 * so the lockstep tests compare the two.
 */
import type { Host } from '../host.js';
import { arm64State } from '../arch/arm64/state.js';
import { RangeMap } from '../base/ranges/range_map.js';
import type { PkvmHyp } from '../platform/pkvm/hyp.js';
import {
  checkHandovers,
  checkPagePoint,
  checkVmPages,
  vmOwnPages,
  type PkvmViolation,
} from '../platform/pkvm/invariants.js';
import {
  annotationOf,
  comparePage,
  GuestIndex,
  segmentPoints,
  type OracleDiff,
} from '../platform/pkvm/oracle.js';
import { PKVM_STATE_NAMES } from '../platform/pkvm/memory.js';
import type { PageEvent } from '../platform/pkvm/history.js';
import { hx, NO_VIOLATIONS, type CheckState, type Invariant, type Violation } from './types.js';

/** The hypervisor of a pKVM host (undefined elsewhere). */
export function pkvmHypOf(h: Host): PkvmHyp | undefined {
  return h.platform.pkvm?.hyp;
}

/** The invariants' names, by §3.5 number (0: the history oracle). */
export const PKVM_INVARIANT_NAMES = [
  'pkvm-history-agrees',
  'pkvm-one-owner',
  'pkvm-borrowers-match',
  'pkvm-host-stage2-exact',
  'pkvm-protected-unmapped',
  'pkvm-guest-tables-hyp-owned',
  'pkvm-reclaim-zeroed',
] as const;

/** The violations of one segment start. */
type PointResult = { readonly inv: PkvmViolation[]; readonly diffs: OracleDiff[] };

/** One hypervisor's kept results (the change-driven checker's). */
class PkvmResults {
  /** `hyp.version` the results are for (-1: none yet). */
  version = -1;
  /** Segment starts with a violation. */
  readonly points = new RangeMap<PointResult>({ shift: (v) => v, canMerge: () => false });
  /** Invariant 5's violations per VM handle (VMs without any left out). */
  readonly vms = new Map<number, PkvmViolation[]>();
  /**
   * Every VM's own pages (pfn → the handles holding it: one, unless a bug gave a page to two),
   * and each VM's list (to take them out again).
   */
  readonly own = new RangeMap<readonly number[]>({ shift: (v) => v, canMerge: () => false });
  readonly ownOf = new Map<number, number[]>();
  /** The result per invariant (PKVM_INVARIANT_NAMES order). */
  out: Violation[][] = [];
}

const RESULTS = new WeakMap<PkvmHyp, PkvmResults>();
/** The full evaluations' last result per hypervisor (the seven invariants share one). */
const FULL = new WeakMap<PkvmHyp, { version: number; out: Violation[][] }>();

/** Evaluate segment starts `points` into `r.points` (their old results are gone already). */
function evalPoints(hyp: PkvmHyp, r: PkvmResults, points: readonly number[]): void {
  const guests = GuestIndex.of(hyp);
  const prot = new Set<number>();
  for (const vm of hyp.vms.values()) if (vm.isProtected) prot.add(vm.handle);
  for (const a of points) {
    const inv: PkvmViolation[] = [];
    const diffs: OracleDiff[] = [];
    checkPagePoint(hyp, guests, prot, a, inv);
    comparePage(hyp, guests, a, diffs);
    if (inv.length > 0 || diffs.length > 0) r.points.set(a, a + 1, { inv, diffs });
  }
}

/** Re-evaluate invariant 5 for VM `handle` and (`index`) re-index its own pages. */
function evalVm(hyp: PkvmHyp, r: PkvmResults, handle: number, index = true): void {
  for (const p of r.ownOf.get(handle) ?? []) {
    const hs = r.own.get(p)?.filter((x) => x !== handle);
    if (hs === undefined || hs.length === 0) r.own.delete(p, p + 1);
    else r.own.set(p, p + 1, hs);
  }
  r.ownOf.delete(handle);
  r.vms.delete(handle);
  const vm = hyp.vms.get(handle);
  if (vm === undefined) return;
  const out: PkvmViolation[] = [];
  checkVmPages(hyp, vm, out);
  if (out.length > 0) r.vms.set(handle, out);
  if (!index) return;
  const pages = vmOwnPages(vm).map(([p]) => p);
  for (const p of pages) {
    const hs = r.own.get(p) ?? [];
    if (!hs.includes(handle)) r.own.set(p, p + 1, [...hs, handle]);
  }
  r.ownOf.set(handle, pages);
}

/** Everything afresh into `r` (`index`: keep the own-page index for later changes). */
function evalAll(hyp: PkvmHyp, r: PkvmResults, index = true): void {
  r.points.clear();
  r.vms.clear();
  r.own.clear();
  r.ownOf.clear();
  evalPoints(hyp, r, segmentPoints(hyp, GuestIndex.of(hyp)));
  for (const handle of hyp.vms.keys()) evalVm(hyp, r, handle, index);
}

/** Only what the change log names. */
function evalChanged(
  hyp: PkvmHyp,
  r: PkvmResults,
  ranges: readonly number[],
  vms: ReadonlySet<number>,
): void {
  const dirtyVms = new Set(vms);
  for (let i = 0; i < ranges.length; i += 2) {
    const s = ranges[i]!;
    const e = ranges[i + 1]!;
    r.points.delete(s, e + 1);
    r.own.forEachIn(s, e, (_s, _e, hs) => {
      for (const handle of hs) dirtyVms.add(handle);
    });
  }
  evalPoints(hyp, r, segmentPoints(hyp, GuestIndex.of(hyp), { ranges }));
  for (const handle of dirtyVms) evalVm(hyp, r, handle);
}

/** The pKVM results of `s`'s host now, per invariant (PKVM_INVARIANT_NAMES order). */
export function pkvmResults(s: CheckState): readonly Violation[][] | undefined {
  const h = s.host;
  const hyp = pkvmHypOf(h);
  if (hyp === undefined) return undefined;
  if (s.mappings === undefined) {
    // A full check: everything afresh (once per state: the seven invariants share it, and an op
    // that did not reach EL2 left the version where it was).
    const f = FULL.get(hyp);
    if (f !== undefined && f.version === hyp.version) return f.out;
    const r = new PkvmResults();
    evalAll(hyp, r, false);
    const out = render(h, hyp, r);
    FULL.set(hyp, { version: hyp.version, out });
    return out;
  }
  let r = RESULTS.get(hyp);
  if (r === undefined) RESULTS.set(hyp, (r = new PkvmResults()));
  if (r.version === hyp.version) return r.out;
  const ch = hyp.takeChanges();
  if (r.version !== ch.since || ch.ranges === undefined) evalAll(hyp, r);
  else evalChanged(hyp, r, ch.ranges, ch.vms);
  r.version = hyp.version;
  r.out = render(h, hyp, r);
  return r.out;
}

// ---- violations as the checker reports them ------------------------------------------------------

const st = (x: number): string => PKVM_STATE_NAMES[x] ?? String(x);

/** The KVM VM whose pKVM handle is `handle` (live VMs), for the focus. */
function vmIndexOf(h: Host, handle: number | undefined): number | undefined {
  if (handle === undefined) return undefined;
  for (const vm of h.vms) if (arm64State(h).vm(vm).handle === handle) return vm.index;
  return undefined;
}

/** One line of the page's state at EL2, for a violation's message. */
export function pkvmPageState(hyp: PkvmHyp, pfn: number): string {
  const p = hyp.vmemmap.get(pfn);
  const pte = hyp.hostS2.get(pfn);
  const an = annotationOf(hyp, pfn);
  const s2 =
    pte === undefined
      ? 'empty'
      : pte.t === 'map'
        ? 'valid'
        : `annotated owner ${an!.owner === 1 ? 'hyp' : an!.owner === 2 ? `guest (handle ${hx(an!.handle)}, gfn ${hx(an!.gfn)})` : an!.owner}`;
  const guests = GuestIndex.of(hyp)
    .viewsOf(pfn)
    .map((g) => `handle ${hx(g.handle)} gfn ${hx(g.gfn)} ${st(g.state)}`);
  return `host ${st(p.host)}, hyp ${st(p.hyp)}, host stage-2 ${s2}, guests ${guests.length === 0 ? 'none' : guests.join('; ')}, host_share_guest_count ${p.shareGuestCount}, pins ${p.refcount}`;
}

/** A call of a page's history, as a message shows it. */
export function pkvmEventText(e: PageEvent): string {
  return 'handle' in e ? `${e.op}(handle ${hx(e.handle)}, gfn ${hx(e.gfn)})` : e.op;
}

/** The last calls of `pfn`'s history, oldest first. */
export function pkvmHistoryText(hyp: PkvmHyp, pfn: number, last = 6): string {
  const ev = hyp.history.of(pfn);
  if (ev.length === 0) return 'no call';
  const shown = ev.slice(-last).map(pkvmEventText);
  return (ev.length > last ? `… ${ev.length - last} earlier, ` : '') + shown.join(', ');
}

function render(h: Host, hyp: PkvmHyp, r: PkvmResults): Violation[][] {
  const out: Violation[][] = PKVM_INVARIANT_NAMES.map(() => []);
  const fromPkvm = (v: PkvmViolation): Violation => {
    const vm = vmIndexOf(h, v.handle);
    const guest =
      v.handle === undefined
        ? ''
        : ` [pKVM VM handle ${hx(v.handle)}${vm === undefined ? '' : ` = vm${vm}`}${v.gfn === undefined ? '' : `, gfn ${hx(v.gfn)}`}]`;
    const state = v.invariant === 6 ? '' : ` (${pkvmPageState(hyp, v.pfn)})`;
    return {
      invariant: PKVM_INVARIANT_NAMES[v.invariant],
      object: `pfn ${hx(v.pfn)}`,
      message: `${v.reason}${guest}${state}`,
      focus: {
        pfn: v.pfn,
        ...(vm === undefined ? {} : { vm }),
        ...(v.gfn === undefined || vm === undefined ? {} : { gfn: v.gfn }),
      },
    };
  };
  for (const e of r.points.entries()) {
    for (const v of e.value.inv) out[v.invariant]!.push(fromPkvm(v));
    for (const d of e.value.diffs)
      out[0]!.push({
        invariant: PKVM_INVARIANT_NAMES[0],
        object: `pfn ${hx(d.pfn)}`,
        message:
          (d.field === 'history'
            ? `a call the history says could not have succeeded: ${d.actual}`
            : `${d.field}: the call history says ${d.expected}, the hypervisor has ${d.actual}`) +
          ` (history: ${pkvmHistoryText(hyp, d.pfn)})`,
        focus: { pfn: d.pfn },
      });
  }
  for (const handle of hyp.vms.keys())
    for (const v of r.vms.get(handle) ?? []) out[5]!.push(fromPkvm(v));
  const ho: PkvmViolation[] = [];
  checkHandovers(hyp, false, ho);
  for (const v of ho) out[6]!.push(fromPkvm(v));
  return out.map((l) => (l.length === 0 ? NO_VIOLATIONS : l));
}

/** A pkvm-* invariant: the `n`th list of `pkvmResults()` (n: the §3.5 number, 0 the oracle). */
export function pkvmInvariant(
  n: number,
  doc: Pick<Invariant, 'title' | 'statement' | 'mechanism' | 'origin'>,
): Invariant {
  return {
    name: PKVM_INVARIANT_NAMES[n]!,
    ...doc,
    appliesTo: (p) => p.parts.platform === 'pkvm',
    check: (s) => pkvmResults(s)?.[n] ?? NO_VIOLATIONS,
  };
}
