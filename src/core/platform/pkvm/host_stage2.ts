/**
 * The host's stage-2 page table as pKVM keeps it (linux `arch/arm64/kvm/hyp/nvhe/mem_protect.c`:
 * `host_stage2_idmap()`, `host_stage2_adjust_range()`, `host_stage2_idmap_locked()`,
 * `host_stage2_set_owner_locked()`, `host_stage2_force_pte_cb()`; platforms.md §3.1, §3.4).
 *
 * - An **identity map** (IPA = PA) built lazily: an entry that was never written is empty (a zero
 *   PTE) and the host's first access faults into `handle_host_mem_abort()`, which maps the
 *   largest block (1 GiB, 2 MiB or 4 KiB) that lies in one memory region (or one MMIO gap) and
 *   whose table entry is empty.
 * - **Annotations**: a page the host does not own holds an invalid, non-zero entry naming its
 *   owner (`host_stage2_set_owner_locked()`; in the tree that donates to protected guests, an
 *   entry of type `KVM_HOST_INVALID_PTE_TYPE_DONATION` whose metadata is the VM handle (bits 15:0)
 *   and the gfn (bits 55:16), `host_stage2_encode_gfn_meta()`). Annotations are page-level (the
 *   kernel forces PTEs for them).
 * - Writing a page inside a valid block mapping replaces the whole block (the rest of the block is
 *   rebuilt lazily by later faults), as the comment of `host_stage2_force_pte_cb()` says.
 *
 * Stored as ranges of pfns. Valid entries carry the size of the mapping they belong to (its block
 * is the aligned range of that size around a pfn); guest annotations are extents in the gfn.
 *
 * **Approximation** (errs towards larger blocks): the kernel's walk stops at the deepest table
 * that exists; the model takes a table to exist exactly while some entry lies under it, so a table
 * that the kernel keeps after its last entry went away is not remembered here.
 */
import { RangeMap, type RangeValueOps } from '../../base/ranges/range_map.js';
import { PKVM_ID_GUEST, PKVM_ID_HYP, runBoundariesIn, type OnChange } from './memory.js';

/** 4 KiB pages per entry at stage-2 levels 0..3 (4 KiB granule). */
export const S2_LEVEL_PAGES = [2 ** 27, 2 ** 18, 512, 1] as const;
/** `KVM_PGTABLE_LAST_LEVEL`. */
export const S2_LAST_LEVEL = 3;

/** One host stage-2 entry. */
export type HostPte =
  /** A valid identity mapping, part of a mapping of `pages` pages (1, 512 or 2^18). */
  | { readonly t: 'map'; readonly pages: number; readonly mmio: boolean }
  /**
   * An invalid annotated entry: the page belongs to `owner` (PKVM_ID_HYP or PKVM_ID_GUEST); for a
   * guest, the VM `handle` and the `gfn` it has at this pfn (an extent: gfn + offset).
   */
  | { readonly t: 'annot'; readonly owner: number; readonly handle: number; readonly gfn: number };

const hostPteOps: RangeValueOps<HostPte> = {
  shift: (v, d) => (v.t === 'annot' && v.owner === PKVM_ID_GUEST ? { ...v, gfn: v.gfn + d } : v),
  canMerge: (a, len, b) => {
    if (a.t === 'map' && b.t === 'map') return a.pages === b.pages && a.mmio === b.mmio;
    if (a.t === 'annot' && b.t === 'annot') {
      if (a.owner !== b.owner || a.handle !== b.handle) return false;
      return a.owner !== PKVM_ID_GUEST || b.gfn === a.gfn + len;
    }
    return false;
  },
};

export class HostStage2 {
  private readonly map = new RangeMap<HostPte>(hostPteOps);
  /** Told every range an entry write changes, broken blocks included (PkvmHyp's change log). */
  onChange: OnChange | undefined = undefined;

  /** The entry of `pfn` (undefined: an empty PTE). */
  get(pfn: number): HostPte | undefined {
    return this.map.get(pfn);
  }

  /** Whether every entry of the level-`level` table granule containing `pfn` is empty. */
  private granuleEmpty(pfn: number, level: number): boolean {
    const n = S2_LEVEL_PAGES[level]!;
    const s = pfn - (pfn % n);
    return !this.map.anyIn(s, s + n);
  }

  /**
   * `kvm_pgtable_get_leaf()` on an empty entry: the level where the walk stops, i.e. the
   * shallowest level whose granule around `pfn` holds nothing (no table below it).
   */
  emptyLeafLevel(pfn: number): number {
    for (let l = 0; l <= S2_LAST_LEVEL; l++) if (this.granuleEmpty(pfn, l)) return l;
    return S2_LAST_LEVEL;
  }

  /**
   * Remove every valid block mapping that overlaps [start, end) without lying inside it: a
   * write below a block replaces the block (`kvm_pgtable_stage2_map()` / `_set_owner()`).
   */
  private breakBlocks(start: number, end: number): void {
    const cut: Array<[number, number]> = [];
    this.map.forEachIn(start, end, (s, _e, v) => {
      if (v.t !== 'map' || v.pages === 1) return;
      const bs = s - (s % v.pages);
      if (bs < start || bs + v.pages > end) cut.push([bs, bs + v.pages]);
    });
    for (const [s, e] of cut) {
      this.onChange?.(s, e);
      this.map.delete(s, e);
    }
  }

  /** Install a valid identity mapping of [start, end) as one mapping of `pages`-page blocks. */
  map_(start: number, end: number, pages: number, mmio: boolean): void {
    this.onChange?.(start, end);
    this.breakBlocks(start, end);
    this.map.set(start, end, { t: 'map', pages, mmio });
  }

  /** Page-level annotations of [start, end) for `owner` (guest: `handle`, first `gfn`). */
  annotate(start: number, end: number, owner: number, handle = 0, gfn = 0): void {
    this.onChange?.(start, end);
    this.breakBlocks(start, end);
    if (owner === PKVM_ID_HYP) this.map.set(start, end, { t: 'annot', owner, handle: 0, gfn: 0 });
    else this.map.set(start, end, { t: 'annot', owner, handle, gfn });
  }

  /** Write empty (zero) entries over [start, end): the host's next access maps them again. */
  clear(start: number, end: number): void {
    this.onChange?.(start, end);
    this.breakBlocks(start, end);
    this.map.delete(start, end);
  }

  /** Every stored run (inspection, the invariants). */
  runs(): Array<{ start: number; end: number; pte: HostPte }> {
    return [...this.map.entries()].map((r) => ({ start: r.start, end: r.end, pte: r.value }));
  }

  /** The run boundaries in [s, e] (`runBoundariesIn`). */
  boundariesIn(s: number, e: number, add: (p: number) => void): void {
    runBoundariesIn(this.map, s, e, add);
  }

  /** The stored pieces of [start, end) (clipped). */
  piecesIn(start: number, end: number): Array<{ start: number; end: number; pte: HostPte }> {
    return this.map.piecesIn(start, end).map((r) => ({ start: r.start, end: r.end, pte: r.value }));
  }
}
