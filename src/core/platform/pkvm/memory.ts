/**
 * pKVM's per-physical-page bookkeeping at EL2 (linux `arch/arm64/kvm/hyp/include/nvhe/memory.h`,
 * `struct hyp_page` in the hypervisor's vmemmap; platforms.md §3.1, §3.2): the host's and the
 * hypervisor's page state, `host_share_guest_count` (shares with non-protected guests) and
 * `refcount` (hyp pins, `hyp_pin_shared_mem()`), plus the component ids (`enum
 * pkvm_component_id`, `mem_protect.h`) and the errno values the transitions return.
 *
 * - **States** (`enum pkvm_page_state`): OWNED = 0, SHARED_OWNED = 1, SHARED_BORROWED = 2,
 *   NOPAGE = 3. The kernel stores the hyp state complemented (`__hyp_state_comp`) so that an
 *   all-zero `struct hyp_page` reads host OWNED, hyp NOPAGE: here an absent key is exactly that.
 *   The guest's state lives in its stage-2 PTE software bits (guest_stage2.ts).
 * - **Storage** as ranges of frames (`RangeMap` keyed by pfn): a run of frames with equal fields
 *   is one entry, so the cost is the number of distinct runs, never the size of memory.
 */
import { RangeMap, type RangeValueOps } from '../../base/ranges/range_map.js';
import { ERRNO_NUMBERS } from '../../base/errno.js';

/** `enum pkvm_page_state` (memory.h). */
export const PKVM_PAGE_OWNED = 0;
export const PKVM_PAGE_SHARED_OWNED = 1;
export const PKVM_PAGE_SHARED_BORROWED = 2;
export const PKVM_NOPAGE = 3;
export type PkvmPageState = 0 | 1 | 2 | 3;
/**
 * The guest-only meta state of the later tree (`PKVM_POISON`, BIT(2)): an invalid guest stage-2
 * entry of type `KVM_GUEST_INVALID_PTE_TYPE_POISONED`, left by a forced reclaim.
 */
export const PKVM_POISON = 4;
export type PkvmGuestState = PkvmPageState | typeof PKVM_POISON;

export const PKVM_STATE_NAMES: Readonly<Record<number, string>> = {
  0: 'OWNED',
  1: 'SHARED_OWNED',
  2: 'SHARED_BORROWED',
  3: 'NOPAGE',
  4: 'POISON',
};

/** `enum pkvm_component_id` (mem_protect.h; also the lock order). */
export const PKVM_ID_HOST = 0;
export const PKVM_ID_HYP = 1;
export const PKVM_ID_GUEST = 2;
export type PkvmComponentId = 0 | 1 | 2;

/** Negative errno values, as the EL2 functions return them (`-EPERM`, ...). */
export const E = {
  EPERM: -ERRNO_NUMBERS.EPERM,
  ENOENT: -ERRNO_NUMBERS.ENOENT,
  E2BIG: -ERRNO_NUMBERS.E2BIG,
  EAGAIN: -ERRNO_NUMBERS.EAGAIN,
  ENOMEM: -ERRNO_NUMBERS.ENOMEM,
  EFAULT: -ERRNO_NUMBERS.EFAULT,
  EBUSY: -ERRNO_NUMBERS.EBUSY,
  EEXIST: -ERRNO_NUMBERS.EEXIST,
  EINVAL: -ERRNO_NUMBERS.EINVAL,
  EHWPOISON: -ERRNO_NUMBERS.EHWPOISON,
  ERANGE: -ERRNO_NUMBERS.ERANGE,
} as const;

/** "-EPERM" for -1, "0" for 0 (messages and test titles). */
export function retName(ret: number): string {
  if (ret === 0) return '0';
  for (const [k, v] of Object.entries(E)) if (v === ret) return `-${k}`;
  return String(ret);
}

/** One `struct hyp_page` as the transitions read it. */
export interface HypPage {
  /** `host_state` (guarded by the host stage-2 lock). */
  readonly host: PkvmPageState;
  /** `get_hyp_state()`: the complement of `__hyp_state_comp` (guarded by `pkvm_pgd_lock`). */
  readonly hyp: PkvmPageState;
  /** `host_share_guest_count`: shares of this page with non-protected guests (u32). */
  readonly shareGuestCount: number;
  /** `refcount`: hyp pins of a page the host shared with the hypervisor. */
  readonly refcount: number;
}

/** The all-zero `struct hyp_page`: host OWNED, hyp NOPAGE. */
export const HYP_PAGE_ZERO: HypPage = {
  host: PKVM_PAGE_OWNED,
  hyp: PKVM_NOPAGE,
  shareGuestCount: 0,
  refcount: 0,
};

function samePage(a: HypPage, b: HypPage): boolean {
  return (
    a.host === b.host &&
    a.hyp === b.hyp &&
    a.shareGuestCount === b.shareGuestCount &&
    a.refcount === b.refcount
  );
}

const hypPageOps: RangeValueOps<HypPage> = {
  shift: (v) => v,
  canMerge: (a, _len, b) => samePage(a, b),
};

/** A callback told every range of frames a structure changed (the hypervisor's change log). */
export type OnChange = (start: number, end: number) => void;

/**
 * The run boundaries of `m` (unclipped starts and ends of its stored entries) that lie in
 * [s, e] (both ends included), each passed to `add`: the cuts a segment walk over `m` uses.
 */
export function runBoundariesIn<V>(
  m: RangeMap<V>,
  s: number,
  e: number,
  add: (p: number) => void,
): void {
  const at = m.entryAt(s);
  if (at !== undefined ? at.start === s : s > 0 && m.entryAt(s - 1) !== undefined) add(s);
  m.forEachIn(s, e + 1, (cs, ce) => {
    if (cs > s) add(cs);
    if (ce <= e) add(ce);
  });
}

/** The hypervisor's vmemmap (`hyp_vmemmap`): one `struct hyp_page` per memory frame, as ranges. */
export class HypVmemmap {
  private readonly map = new RangeMap<HypPage>(hypPageOps);
  /** Told every range `update` rewrites (PkvmHyp's change log). */
  onChange: OnChange | undefined = undefined;

  /** `hyp_phys_to_page(pfn)`. */
  get(pfn: number): HypPage {
    return this.map.get(pfn) ?? HYP_PAGE_ZERO;
  }

  /** Rewrite every page of [start, end) with `f(old)` (one write per stored run). */
  update(start: number, end: number, f: (p: HypPage) => HypPage): void {
    this.onChange?.(start, end);
    const pieces: Array<{ start: number; end: number; value: HypPage }> = [];
    let pos = start;
    this.map.forEachIn(start, end, (s, e, v) => {
      if (s > pos) pieces.push({ start: pos, end: s, value: HYP_PAGE_ZERO });
      pieces.push({ start: s, end: e, value: v });
      pos = e;
    });
    if (pos < end) pieces.push({ start: pos, end, value: HYP_PAGE_ZERO });
    for (const p of pieces) {
      const n = f(p.value);
      if (samePage(n, HYP_PAGE_ZERO)) this.map.delete(p.start, p.end);
      else this.map.set(p.start, p.end, n);
    }
  }

  /** `set_host_state()` over [start, end). */
  setHost(start: number, end: number, host: PkvmPageState): void {
    this.update(start, end, (p) => ({ ...p, host }));
  }

  /** `set_hyp_state()` over [start, end). */
  setHyp(start: number, end: number, hyp: PkvmPageState): void {
    this.update(start, end, (p) => ({ ...p, hyp }));
  }

  /** Whether `pred` holds for every page of [start, end) (checked per run). */
  every(start: number, end: number, pred: (p: HypPage, pfn: number) => boolean): boolean {
    let ok = true;
    let pos = start;
    this.map.forEachIn(start, end, (s, e, v) => {
      if (s > pos && !pred(HYP_PAGE_ZERO, pos)) return (ok = false);
      ok = pred(v, s);
      pos = e;
      return ok;
    });
    if (ok && pos < end) ok = pred(HYP_PAGE_ZERO, pos);
    return ok;
  }

  /** The first page of [start, end) (in pfn order) failing `pred`, or undefined. */
  firstFailing(start: number, end: number, pred: (p: HypPage) => boolean): number | undefined {
    let bad: number | undefined;
    let pos = start;
    this.map.forEachIn(start, end, (s, e, v) => {
      if (s > pos && !pred(HYP_PAGE_ZERO)) {
        bad = pos;
        return false;
      }
      if (!pred(v)) {
        bad = s;
        return false;
      }
      pos = e;
      return true;
    });
    if (bad === undefined && pos < end && !pred(HYP_PAGE_ZERO)) bad = pos;
    return bad;
  }

  /** Every stored run (pages not listed are all-zero). */
  runs(): Array<{ start: number; end: number; page: HypPage }> {
    return [...this.map.entries()].map((r) => ({ start: r.start, end: r.end, page: r.value }));
  }

  /** Number of stored runs. */
  get size(): number {
    return this.map.size;
  }

  /** The run boundaries in [s, e] (`runBoundariesIn`). */
  boundariesIn(s: number, e: number, add: (p: number) => void): void {
    runBoundariesIn(this.map, s, e, add);
  }
}
