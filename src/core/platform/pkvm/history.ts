/**
 * The hypercall history of each physical page and the pure function that recomputes the page's
 * expected state from it alone (platforms.md §3.3 "Hypercall history view", §3.6): the same idea
 * as the Cambridge ghost specification of pKVM (rems-project/linux
 * `arch/arm64/kvm/hyp/nvhe/ghost/ghost_spec.c`), where a C function per hypercall
 * (`compute_new_abstract_state_handle___pkvm_host_share_hyp`, ...) computes the expected abstract
 * post-state from the pre-state and the call, and a diff flags any mismatch with the abstraction
 * of the real page tables. Here the "call data" is the record of a call that succeeded; the fold
 * below is the spec, `PkvmHyp` (hyp.ts) the implementation, and oracle.ts compares the two.
 *
 * The fold does not re-run the implementation's checks: it applies each call's documented effect
 * (§3.3) and reports a *problem* whenever the call's documented precondition does not hold in the
 * state it computed so far (a history the spec says could not have succeeded) — the page's own
 * states, and the VM's: the history also keeps each VM's life (created protected or not, dying,
 * gone) in the same order as the page calls, so a call the VM's state forbids (a donation to a
 * non-protected VM, a share with a protected one, a reclaim before the teardown started, a call
 * on a VM that is gone) is reported too. A call is allowed only when the spec says it may
 * proceed; its post-state is computed from the pre-state.
 *
 * Storage: ranges of pages sharing one immutable list of calls (`PkvmHistory`), so memory is
 * proportional to the calls and the runs they cut, never to the size of memory.
 */
import { RangeMap } from '../../base/ranges/range_map.js';
import {
  PKVM_ID_GUEST,
  PKVM_ID_HYP,
  PKVM_NOPAGE,
  PKVM_PAGE_OWNED,
  PKVM_PAGE_SHARED_BORROWED,
  PKVM_PAGE_SHARED_OWNED,
  PKVM_POISON,
  PKVM_STATE_NAMES,
  runBoundariesIn,
  type PkvmGuestState,
  type PkvmPageState,
} from './memory.js';

/** One successful call, as it concerns one page. */
export type PageEvent =
  | { readonly op: 'host_share_hyp' }
  | { readonly op: 'host_unshare_hyp' }
  | { readonly op: 'host_donate_hyp' }
  | { readonly op: 'hyp_donate_host' }
  | { readonly op: 'hyp_pin' }
  | { readonly op: 'hyp_unpin' }
  | { readonly op: 'host_share_ffa' }
  | { readonly op: 'host_unshare_ffa' }
  | { readonly op: 'host_share_guest'; readonly handle: number; readonly gfn: number }
  | { readonly op: 'host_unshare_guest'; readonly handle: number; readonly gfn: number }
  | { readonly op: 'host_donate_guest'; readonly handle: number; readonly gfn: number }
  | { readonly op: 'guest_share_host'; readonly handle: number; readonly gfn: number }
  | { readonly op: 'guest_unshare_host'; readonly handle: number; readonly gfn: number }
  | { readonly op: 'host_reclaim_page_guest'; readonly handle: number; readonly gfn: number }
  | { readonly op: 'host_force_reclaim_page_guest'; readonly handle: number; readonly gfn: number }
  /** `__pkvm_finalize_teardown_vm()` destroyed a guest stage-2 that still mapped the page. */
  | { readonly op: 'guest_stage2_destroyed'; readonly handle: number; readonly gfn: number };

/** A guest's view of a page: which VM, at which gfn, in which state. */
export interface GuestView {
  readonly handle: number;
  readonly gfn: number;
  readonly state: PkvmGuestState;
}

/** The host stage-2 annotation of a page the host does not own. */
export interface Annotation {
  readonly owner: number;
  readonly handle: number;
  readonly gfn: number;
}

/** What the history says a page looks like. */
export interface ExpectedPage {
  readonly host: PkvmPageState;
  readonly hyp: PkvmPageState;
  /** Guest mappings of the page, sorted by (handle, gfn). */
  readonly guests: readonly GuestView[];
  readonly shareGuestCount: number;
  readonly pins: number;
  /** Shared with the secure world over FF-A (no counterpart state in the hypervisor). */
  readonly ffa: boolean;
  /** The annotation the host stage-2 must hold (host NOPAGE), or undefined. */
  readonly annotation: Annotation | undefined;
  /** Whether the last guest-to-host return of the page required it zeroed (reclaims). */
  readonly mustBeZero: boolean;
  /** Preconditions the history broke, in order ("event 3 host_share_hyp: host is NOPAGE"). */
  readonly problems: readonly string[];
}

/** The initial owner of a page: the host, or the hypervisor (its own memory at boot). */
export type InitialOwner = 'host' | 'hyp';

/** A page event with its place in the hypervisor's order of calls (`PkvmHistory.of`). */
export type SeqEvent = PageEvent & { readonly seq?: number };

/** A VM as the history knows it at one point of the order of calls. */
export interface VmAt {
  readonly isProtected: boolean;
  readonly dying: boolean;
}

/** What the fold needs beyond a page's own events. */
export interface FoldContext {
  /** The VM `handle` names just before call `seq` (undefined: none); absent: not checked. */
  readonly vmAt?: (handle: number, seq: number) => VmAt | undefined;
  /** The largest `host_share_guest_count` (`U32_MAX`). */
  readonly shareGuestCountMax?: number;
}

function sortGuests(g: GuestView[]): GuestView[] {
  return g.sort((a, b) => a.handle - b.handle || a.gfn - b.gfn);
}

const n = (s: number): string => PKVM_STATE_NAMES[s] ?? String(s);

/**
 * The expected state of a page after `events`, computed from the history alone (the "ghost"
 * post-state of each call from its pre-state). Pure.
 */
export function expectedPage(
  events: readonly SeqEvent[],
  initial: InitialOwner,
  ctx: FoldContext = {},
): ExpectedPage {
  return foldPage(events, initial, ctx).expected;
}

/**
 * The fold's state after some of a page's events: `expectedPage()` resumes from it when the
 * history only grew (PkvmHistory.expectedOf), so a check costs the new calls, not the history.
 */
interface FoldState {
  readonly host: PkvmPageState;
  readonly hyp: PkvmPageState;
  readonly guests: readonly GuestView[];
  readonly count: number;
  readonly pins: number;
  readonly ffa: boolean;
  readonly annotation: Annotation | undefined;
  readonly mustBeZero: boolean;
  readonly problems: readonly string[];
  /** Events folded so far (the next event's index in the problems' messages). */
  readonly folded: number;
}

/** `expectedPage()` of `from`'s events followed by `events` (from the boot state without `from`). */
function foldPage(
  events: readonly SeqEvent[],
  initial: InitialOwner,
  ctx: FoldContext,
  from?: FoldState,
): { expected: ExpectedPage; state: FoldState } {
  let host: PkvmPageState = from?.host ?? (initial === 'host' ? PKVM_PAGE_OWNED : PKVM_NOPAGE);
  let hyp: PkvmPageState = from?.hyp ?? (initial === 'host' ? PKVM_NOPAGE : PKVM_PAGE_OWNED);
  let guests: GuestView[] = [...(from?.guests ?? [])];
  let count = from?.count ?? 0;
  let pins = from?.pins ?? 0;
  let ffa = from?.ffa ?? false;
  let annotation: Annotation | undefined =
    from !== undefined
      ? from.annotation
      : initial === 'host'
        ? undefined
        : { owner: PKVM_ID_HYP, handle: 0, gfn: 0 };
  let mustBeZero = from?.mustBeZero ?? false;
  const problems: string[] = [...(from?.problems ?? [])];
  const base = from?.folded ?? 0;

  // The call being folded (the helpers below read it).
  let ev: SeqEvent = { op: 'hyp_pin' };
  let i = 0;
  /** Record a problem unless `cond` (the message is built only then). */
  const need = (cond: boolean, what: string | (() => string)): void => {
    if (!cond)
      problems.push(`event ${base + i} ${ev.op}: ${typeof what === 'string' ? what : what()}`);
  };
  const findGuest = (handle: number, gfn: number): GuestView | undefined =>
    guests.find((g) => g.handle === handle && g.gfn === gfn);
  const setGuest = (handle: number, gfn: number, state: PkvmGuestState | undefined): void => {
    guests = guests.filter((g) => !(g.handle === handle && g.gfn === gfn));
    if (state !== undefined) guests.push({ handle, gfn, state });
  };
  // The VM's state when the call ran (pkvm_load_hyp_vcpu(), get_vm_by_handle(), the
  // protected-VM tests of the handlers): `want` lists what the call needs.
  const vmNeeds = (handle: number, want: { protected?: boolean; dying?: boolean }): void => {
    if (ctx.vmAt === undefined || ev.seq === undefined) return;
    const vm = ctx.vmAt(handle, ev.seq);
    if (vm === undefined) {
      problems.push(`event ${base + i} ${ev.op}: VM handle ${handle} does not exist`);
      return;
    }
    if (want.protected !== undefined)
      need(
        vm.isProtected === want.protected,
        () => `VM ${handle} is ${vm.isProtected ? '' : 'not '}protected`,
      );
    if (want.dying !== undefined)
      need(vm.dying === want.dying, () => `VM ${handle} is ${vm.dying ? '' : 'not '}dying`);
  };
  for (i = 0; i < events.length; i++) {
    ev = events[i]!;
    switch (ev.op) {
      case 'host_share_hyp':
        need(host === PKVM_PAGE_OWNED, () => `host is ${n(host)}, not OWNED`);
        need(hyp === PKVM_NOPAGE, () => `hyp is ${n(hyp)}, not NOPAGE`);
        host = PKVM_PAGE_SHARED_OWNED;
        hyp = PKVM_PAGE_SHARED_BORROWED;
        break;
      case 'host_unshare_hyp':
        need(host === PKVM_PAGE_SHARED_OWNED, () => `host is ${n(host)}, not SHARED_OWNED`);
        need(hyp === PKVM_PAGE_SHARED_BORROWED, () => `hyp is ${n(hyp)}, not SHARED_BORROWED`);
        need(pins === 0, () => `pinned ${pins} times`);
        host = PKVM_PAGE_OWNED;
        hyp = PKVM_NOPAGE;
        break;
      case 'host_donate_hyp':
        need(host === PKVM_PAGE_OWNED, () => `host is ${n(host)}, not OWNED`);
        need(hyp === PKVM_NOPAGE, () => `hyp is ${n(hyp)}, not NOPAGE`);
        host = PKVM_NOPAGE;
        hyp = PKVM_PAGE_OWNED;
        annotation = { owner: PKVM_ID_HYP, handle: 0, gfn: 0 };
        break;
      case 'hyp_donate_host':
        need(hyp === PKVM_PAGE_OWNED, () => `hyp is ${n(hyp)}, not OWNED`);
        need(host === PKVM_NOPAGE, () => `host is ${n(host)}, not NOPAGE`);
        host = PKVM_PAGE_OWNED;
        hyp = PKVM_NOPAGE;
        annotation = undefined;
        mustBeZero = false;
        break;
      case 'hyp_pin':
        need(host === PKVM_PAGE_SHARED_OWNED && hyp === PKVM_PAGE_SHARED_BORROWED, 'not shared');
        pins++;
        break;
      case 'hyp_unpin':
        need(pins > 0, 'not pinned');
        pins--;
        break;
      case 'host_share_ffa':
        need(host === PKVM_PAGE_OWNED, () => `host is ${n(host)}, not OWNED`);
        host = PKVM_PAGE_SHARED_OWNED;
        ffa = true;
        break;
      case 'host_unshare_ffa':
        need(host === PKVM_PAGE_SHARED_OWNED, () => `host is ${n(host)}, not SHARED_OWNED`);
        need(ffa, 'not shared over FF-A');
        host = PKVM_PAGE_OWNED;
        ffa = false;
        break;
      case 'host_share_guest':
        need(
          host === PKVM_PAGE_OWNED || (host === PKVM_PAGE_SHARED_OWNED && count > 0),
          () => `host is ${n(host)} with ${count} guest shares`,
        );
        need(findGuest(ev.handle, ev.gfn) === undefined, 'guest gfn already mapped');
        need(
          count < (ctx.shareGuestCountMax ?? Number.MAX_SAFE_INTEGER),
          () => `host_share_guest_count ${count} at its maximum`,
        );
        vmNeeds(ev.handle, { protected: false, dying: false });
        host = PKVM_PAGE_SHARED_OWNED;
        count++;
        setGuest(ev.handle, ev.gfn, PKVM_PAGE_SHARED_BORROWED);
        mustBeZero = false;
        break;
      case 'host_unshare_guest':
        need(
          findGuest(ev.handle, ev.gfn)?.state === PKVM_PAGE_SHARED_BORROWED,
          'guest does not borrow it',
        );
        need(
          host === PKVM_PAGE_SHARED_OWNED && count > 0,
          () => `host is ${n(host)}, count ${count}`,
        );
        vmNeeds(ev.handle, { protected: false });
        setGuest(ev.handle, ev.gfn, undefined);
        count--;
        if (count === 0) host = PKVM_PAGE_OWNED;
        break;
      case 'host_donate_guest':
        need(host === PKVM_PAGE_OWNED, () => `host is ${n(host)}, not OWNED`);
        need(findGuest(ev.handle, ev.gfn) === undefined, 'guest gfn already mapped');
        vmNeeds(ev.handle, { protected: true, dying: false });
        host = PKVM_NOPAGE;
        annotation = { owner: PKVM_ID_GUEST, handle: ev.handle, gfn: ev.gfn };
        setGuest(ev.handle, ev.gfn, PKVM_PAGE_OWNED);
        mustBeZero = false;
        break;
      case 'guest_share_host':
        need(findGuest(ev.handle, ev.gfn)?.state === PKVM_PAGE_OWNED, 'guest does not own it');
        need(host === PKVM_NOPAGE, () => `host is ${n(host)}, not NOPAGE`);
        vmNeeds(ev.handle, { protected: true, dying: false });
        setGuest(ev.handle, ev.gfn, PKVM_PAGE_SHARED_OWNED);
        host = PKVM_PAGE_SHARED_BORROWED;
        annotation = undefined;
        break;
      case 'guest_unshare_host':
        need(
          findGuest(ev.handle, ev.gfn)?.state === PKVM_PAGE_SHARED_OWNED,
          'guest has not shared it',
        );
        need(host === PKVM_PAGE_SHARED_BORROWED, () => `host is ${n(host)}, not SHARED_BORROWED`);
        vmNeeds(ev.handle, { protected: true, dying: false });
        setGuest(ev.handle, ev.gfn, PKVM_PAGE_OWNED);
        host = PKVM_NOPAGE;
        annotation = { owner: PKVM_ID_GUEST, handle: ev.handle, gfn: ev.gfn };
        break;
      case 'host_reclaim_page_guest': {
        const g = findGuest(ev.handle, ev.gfn);
        need(g !== undefined, 'guest does not map it');
        vmNeeds(ev.handle, { dying: true });
        if (g?.state === PKVM_PAGE_OWNED) {
          need(host === PKVM_NOPAGE, () => `host is ${n(host)}, not NOPAGE`);
          host = PKVM_PAGE_OWNED;
          annotation = undefined;
          mustBeZero = true;
        } else if (g?.state === PKVM_PAGE_SHARED_OWNED) {
          need(host === PKVM_PAGE_SHARED_BORROWED, () => `host is ${n(host)}, not SHARED_BORROWED`);
          host = PKVM_PAGE_OWNED;
        } else if (g !== undefined)
          // SHARED_BORROWED (a non-protected VM's page) and POISON (a forced reclaim's entry)
          // are -EPERM: only a page the guest owns comes back this way.
          need(false, () => `guest state ${n(g.state)}, not OWNED or SHARED_OWNED`);
        setGuest(ev.handle, ev.gfn, undefined);
        break;
      }
      case 'host_force_reclaim_page_guest':
        need(findGuest(ev.handle, ev.gfn)?.state === PKVM_PAGE_OWNED, 'guest does not own it');
        need(host === PKVM_NOPAGE, () => `host is ${n(host)}, not NOPAGE`);
        vmNeeds(ev.handle, {});
        setGuest(ev.handle, ev.gfn, PKVM_POISON);
        host = PKVM_PAGE_OWNED;
        annotation = undefined;
        mustBeZero = true;
        break;
      case 'guest_stage2_destroyed': {
        const g = findGuest(ev.handle, ev.gfn);
        need(g !== undefined, 'guest does not map it');
        vmNeeds(ev.handle, { dying: true });
        if (g?.state === PKVM_PAGE_SHARED_BORROWED) {
          // The share is never returned: the count stays (the kernel leaks it the same way).
        }
        setGuest(ev.handle, ev.gfn, undefined);
        break;
      }
    }
  }
  const state: FoldState = {
    host,
    hyp,
    guests: [...guests],
    count,
    pins,
    ffa,
    annotation,
    mustBeZero,
    problems: [...problems],
    folded: base + events.length,
  };
  const expected: ExpectedPage = {
    host,
    hyp,
    guests: sortGuests(guests),
    shareGuestCount: count,
    pins,
    ffa,
    annotation: host === PKVM_NOPAGE ? annotation : undefined,
    mustBeZero,
    problems,
  };
  return { expected, state };
}

/** One recorded call: the event as its first page `pfn0` saw it (gfns advance with the page). */
interface HistoryNode {
  readonly ev: PageEvent;
  readonly pfn0: number;
  /** Its place in the order of every call and VM event. */
  readonly seq: number;
  readonly prev: HistoryNode | undefined;
  /**
   * The fold of one page's history up to this call (the last page `expectedOf` folded here), to
   * resume from: nodes are immutable and the fold of calls already made never changes (a VM's
   * later life does not change what `vmAt` says of an earlier call).
   */
  memo?: { readonly pfn: number; readonly state: FoldState };
}

/** One VM's life: created (protected or not) at `born`, dying from `dying`, gone from `gone`. */
interface VmLife {
  readonly handle: number;
  readonly isProtected: boolean;
  readonly born: number;
  dying: number;
  gone: number;
}

/** A run of pages sharing one history (the newest call first, as an immutable list). */
type HistoryRun = { readonly head: HistoryNode };

/**
 * The per-page history: every successful call, in order, for each page it touched — stored as
 * ranges of pages that share one immutable list of calls (a call over n pages appends one node
 * per stored run it covers, never one per page), so a donation of a million pages costs what a
 * donation of one does.
 */
export class PkvmHistory {
  private readonly map = new RangeMap<HistoryRun>({
    shift: (v) => v,
    canMerge: (a, _len, b) => a.head === b.head,
  });
  /** Number of calls recorded. */
  events = 0;
  /** The next place in the order of calls and VM events. */
  private seq = 0;
  /** Every VM's life, by handle (a handle is reused after a VM is gone: newest last). */
  private readonly lives = new Map<number, VmLife[]>();

  /** `__pkvm_init_vm()` made VM `handle`. */
  vmCreated(handle: number, isProtected: boolean): void {
    const l = this.lives.get(handle) ?? [];
    l.push({ handle, isProtected, born: this.seq++, dying: Infinity, gone: Infinity });
    this.lives.set(handle, l);
  }

  /** `__pkvm_start_teardown_vm()` on VM `handle`. */
  vmDying(handle: number): void {
    const v = this.lives.get(handle)?.at(-1);
    if (v !== undefined && v.gone === Infinity) v.dying = this.seq++;
  }

  /** `__pkvm_finalize_teardown_vm()`: VM `handle` is gone. */
  vmGone(handle: number): void {
    const v = this.lives.get(handle)?.at(-1);
    if (v !== undefined && v.gone === Infinity) v.gone = this.seq++;
  }

  /** The VM `handle` named just before call `seq`, or undefined. */
  vmAt(handle: number, seq: number): VmAt | undefined {
    const l = this.lives.get(handle);
    if (l === undefined) return undefined;
    for (let i = l.length - 1; i >= 0; i--) {
      const v = l[i]!;
      if (v.born > seq) continue;
      if (v.gone < seq) return undefined;
      return { isProtected: v.isProtected, dying: v.dying < seq };
    }
    return undefined;
  }

  /**
   * Append `ev` to the history of pages [pfn, pfn + pages); for page `pfn + i` the event's gfn
   * (when it has one) is `ev.gfn + i`.
   */
  record(pfn: number, pages: number, ev: PageEvent): void {
    const end = pfn + pages;
    const pieces: Array<{ start: number; end: number; prev: HistoryNode | undefined }> = [];
    let pos = pfn;
    this.map.forEachIn(pfn, end, (s, e, v) => {
      if (s > pos) pieces.push({ start: pos, end: s, prev: undefined });
      pieces.push({ start: s, end: e, prev: v.head });
      pos = e;
    });
    if (pos < end) pieces.push({ start: pos, end, prev: undefined });
    const seq = this.seq++;
    for (const p of pieces)
      this.map.set(p.start, p.end, { head: { ev, pfn0: pfn, seq, prev: p.prev } });
    this.events++;
  }

  /** The history of `pfn`, oldest first (empty if nothing happened to it). */
  of(pfn: number): PageEvent[] {
    const out: PageEvent[] = [];
    for (let n = this.map.get(pfn)?.head; n !== undefined; n = n.prev) {
      const ev = n.ev;
      out.push('gfn' in ev ? { ...ev, gfn: ev.gfn + (pfn - n.pfn0) } : ev);
    }
    return out.reverse();
  }

  /** The history of `pfn` with each call's place in the order (`expectedPage` with `vmAt`). */
  ofWithSeq(pfn: number): SeqEvent[] {
    const out: SeqEvent[] = [];
    for (let n = this.map.get(pfn)?.head; n !== undefined; n = n.prev) {
      const ev = n.ev;
      out.push(
        'gfn' in ev ? { ...ev, gfn: ev.gfn + (pfn - n.pfn0), seq: n.seq } : { ...ev, seq: n.seq },
      );
    }
    return out.reverse();
  }

  /**
   * `expectedPage(this.ofWithSeq(pfn), initial, ctx)`, resumed from the last fold of `pfn` on its
   * history (the memo on a node): the cost is the calls made since, so a page converted 10,000
   * times is not refolded from its first call at every check. `ctx` must be the same at every
   * call for one history (the oracle's).
   */
  expectedOf(pfn: number, initial: InitialOwner, ctx: FoldContext): ExpectedPage {
    const head = this.map.get(pfn)?.head;
    const fresh: HistoryNode[] = [];
    let n = head;
    for (; n !== undefined && n.memo?.pfn !== pfn; n = n.prev) fresh.push(n);
    const events: SeqEvent[] = [];
    for (let i = fresh.length - 1; i >= 0; i--) {
      const x = fresh[i]!;
      const ev = x.ev;
      events.push(
        'gfn' in ev ? { ...ev, gfn: ev.gfn + (pfn - x.pfn0), seq: x.seq } : { ...ev, seq: x.seq },
      );
    }
    const r = foldPage(events, initial, ctx, n?.memo?.state);
    if (head !== undefined) head.memo = { pfn, state: r.state };
    return r.expected;
  }

  /** The run boundaries in [s, e] (`runBoundariesIn`). */
  boundariesIn(s: number, e: number, add: (p: number) => void): void {
    runBoundariesIn(this.map, s, e, add);
  }

  /** The runs of pages that have a history (each run shares one list of calls). */
  runs(): Array<{ start: number; end: number }> {
    return [...this.map.entries()].map((r) => ({ start: r.start, end: r.end }));
  }
}
