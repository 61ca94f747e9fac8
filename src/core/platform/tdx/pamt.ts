/**
 * The Physical Address Metadata Table of the Intel TDX module: one entry per physical page
 * (intel/tdx-module `src/common/memory_handlers/pamt_manager.{h,c}`; platforms.md §1.1): the
 * page type, the owner TDR and BEPOCH (the TD epoch at which the page's S-EPT mapping was
 * blocked). A page is 4 KiB, or 2 MiB when PAGE.AUG added a 2 MiB private page (the module then
 * keeps the entry at the 2 MiB PAMT level, and a walk of any of its 512 frames finds it).
 *
 * Stored as ranges of frames (a `RangeMap` keyed by pfn); an absent frame is PT_NDA (free, not
 * directly assigned) with owner 0. Every frame of the model's host is inside a TDMR (the model
 * has no memory outside the PAMT, so `TDX_OPERAND_ADDR_RANGE_ERROR` is never returned).
 */
import { MAX_KEY, RangeMap, type RangeValueOps } from '../../base/ranges/range_map.js';

/** PAMT page types (`page_type_t`, pamt_manager.h). */
export const PT = {
  NDA: 0,
  RSVD: 1,
  REG: 3,
  TDR: 4,
  TDCX: 5,
  TDVPR: 6,
  EPT: 8,
} as const;
export type PageType = (typeof PT)[keyof typeof PT];
export const PT_NAMES: Readonly<Record<number, string>> = {
  0: 'PT_NDA',
  1: 'PT_RSVD',
  3: 'PT_REG',
  4: 'PT_TDR',
  5: 'PT_TDCX',
  6: 'PT_TDVPR',
  8: 'PT_EPT',
};

/** One PAMT entry as a walk sees it. */
export interface PamtEntry {
  readonly pt: PageType;
  /** The owner TDR's frame (0 for NDA pages and for a TDR itself). */
  readonly owner: number;
  readonly bepoch: number;
  /** The PAMT level of the entry: '2M' for a 2 MiB private page, else '4K'. */
  readonly size: '4K' | '2M';
}

export const PAMT_NDA: PamtEntry = { pt: PT.NDA, owner: 0, bepoch: 0, size: '4K' };

const pamtOps: RangeValueOps<PamtEntry> = {
  shift: (v) => v,
  canMerge: (a, _len, b) =>
    a.pt === b.pt && a.owner === b.owner && a.bepoch === b.bepoch && a.size === b.size,
};

export class Pamt {
  private readonly map = new RangeMap<PamtEntry>(pamtOps);
  /** Bumped by every `set` (the invariant checker re-reads the PAMT only when it moved). */
  version = 0;
  /**
   * The frame ranges `set` since the last `takeChanges()`, as (start, end) pairs, up to a bound
   * (past it only "too many" is kept, so a host nobody checks keeps no growing log).
   */
  private changes: number[] = [];
  private changesOverflow = false;

  /** The ranges set since the last call (undefined: too many to list), and forget them. */
  takeChanges(): readonly number[] | undefined {
    const c = this.changesOverflow ? undefined : this.changes;
    this.changes = [];
    this.changesOverflow = false;
    return c;
  }

  /** `pamt_walk()`: the entry covering `pfn` (a 2 MiB entry for any of its frames). */
  get(pfn: number): PamtEntry {
    return this.map.get(pfn) ?? PAMT_NDA;
  }

  /** The first frame of the page `pfn` belongs to (its 2 MiB page's first frame, or itself). */
  pageBase(pfn: number): number {
    return this.get(pfn).size === '2M' ? pfn - (pfn % 512) : pfn;
  }

  /** Set the entry of the 4 KiB page `pfn`, or of the 2 MiB page starting at `pfn`. */
  set(pfn: number, e: PamtEntry): void {
    const end = pfn + (e.size === '2M' ? 512 : 1);
    this.version++;
    if (!this.changesOverflow) {
      if (this.changes.length >= 256) this.changesOverflow = true;
      else this.changes.push(pfn, end);
    }
    if (e.pt === PT.NDA) this.map.delete(pfn, end);
    else this.map.set(pfn, end, e);
  }

  /** `pamt_is_2mb_range_free()`: no frame of [pfn, pfn + 512) is assigned. */
  rangeFree(pfn: number, pages: number): boolean {
    return !this.map.anyIn(pfn, pfn + pages);
  }

  /** Whether every frame of [start, end) has an entry satisfying `pred` (checked per run). */
  uniform(start: number, end: number, pred: (e: PamtEntry) => boolean): boolean {
    if (!this.map.covers(start, end)) return false;
    let ok = true;
    this.map.forEachIn(start, end, (_s, _e, v) => (ok = pred(v)));
    return ok;
  }

  /** The first frame of [start, end) that is not PT_NDA, with its entry (undefined: none). */
  firstAssignedIn(start: number, end: number): { pfn: number; entry: PamtEntry } | undefined {
    if (this.map.size === 0 || !this.map.anyIn(start, end)) return undefined;
    let out: { pfn: number; entry: PamtEntry } | undefined;
    this.map.forEachIn(start, end, (s, _e, v) => {
      out ??= { pfn: s, entry: v };
      return false;
    });
    return out;
  }

  /** Number of stored runs (0: every frame is PT_NDA). */
  get runs(): number {
    return this.map.size;
  }

  /** Frames of owner `tdr` (its TDR page excluded), counted over ranges. */
  framesOwnedBy(tdr: number): number {
    let n = 0;
    for (const r of this.map.entries()) if (r.value.owner === tdr) n += r.end - r.start;
    return n;
  }

  /** Calls `cb` for every stored run over [start, end) (default: all), clipped, in pfn order. */
  forEachRun(
    cb: (start: number, end: number, e: PamtEntry) => void,
    start = 0,
    end = MAX_KEY,
  ): void {
    if (this.map.size !== 0) this.map.forEachIn(start, end, cb);
  }

  /** Every stored run (inspection, tests, the consistency checks). */
  dump(): Array<{ start: number; end: number; entry: PamtEntry }> {
    return [...this.map.entries()].map((r) => ({ start: r.start, end: r.end, entry: r.value }));
  }
}
