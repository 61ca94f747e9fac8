/**
 * One guest's stage-2 page table as the pKVM hypervisor keeps it (`vm->pgt`; linux
 * `arch/arm64/kvm/hyp/nvhe/mem_protect.c`: `kvm_guest_prepare_stage2()`, `guest_s2_zalloc_page()`,
 * `guest_s2_put_page()`, `guest_get_page_state()`, `__guest_check_page_state_range()`;
 * `arch/arm64/kvm/hyp/pgtable.c`: `kvm_pgtable_stage2_map()` / `_unmap()` freeing empty tables;
 * platforms.md §3.1, §3.2).
 *
 * - **Leaves** by gfn: the pfn (an extent), the page state held in the PTE's software bits
 *   (OWNED, SHARED_OWNED, SHARED_BORROWED; an invalid entry is NOPAGE), the permissions and the
 *   mapping size (1 page, or 512 for the PMD-level blocks a non-protected guest may be given by
 *   `__pkvm_host_share_guest()`). The later tree adds poisoned invalid entries
 *   (`KVM_GUEST_INVALID_PTE_TYPE_POISONED`, state `PKVM_POISON`); they keep the pfn they replaced.
 * - **Table pages** per level (1, 2, 3 under the root at level 0, which lives in the pgd pages
 *   donated at VM creation): a table covers 512 entries of the level above. A map allocates the
 *   missing tables from the VM's hyp pool first, else from the vCPU's memcache (pages the host
 *   donated); an unmap frees a table whose last entry went, back into the VM's pool.
 */
import { RangeMap, extentOps, type RangeValueOps } from '../../base/ranges/range_map.js';
import { S2_LAST_LEVEL, S2_LEVEL_PAGES } from './host_stage2.js';
import {
  PKVM_NOPAGE,
  PKVM_POISON,
  runBoundariesIn,
  type OnChange,
  type PkvmGuestState,
  type PkvmPageState,
} from './memory.js';

/** `KVM_PGTABLE_PROT_{X,W,R}`. */
export const KVM_PGTABLE_PROT_X = 1;
export const KVM_PGTABLE_PROT_W = 2;
export const KVM_PGTABLE_PROT_R = 4;
export const KVM_PGTABLE_PROT_RWX = 7;

/** A stored run of guest stage-2 entries: gfn `start + i` maps pfn `base + i`. */
export interface GuestLeaf {
  readonly base: number;
  readonly state: PkvmPageState | typeof PKVM_POISON;
  readonly prot: number;
  /** Pages of the mapping the entry belongs to: 1 (PTE) or 512 (PMD block). */
  readonly pages: number;
}

/** One guest entry as a walk finds it. */
export interface GuestPte {
  readonly gfn: number;
  readonly pfn: number;
  readonly state: PkvmGuestState;
  readonly prot: number;
  readonly pages: number;
}

const leafOps = extentOps<GuestLeaf>(
  (a, b) => a.state === b.state && a.prot === b.prot && a.pages === b.pages,
  (t, base) => ({ base, state: t.state, prot: t.prot, pages: t.pages }),
);

/** One mapping of a page by this guest, in the reverse map (the gfn advances with the pfn). */
export interface PfnRef {
  readonly gfn: number;
  readonly state: PkvmGuestState;
}

const pfnRefOps: RangeValueOps<readonly PfnRef[]> = {
  shift: (v, d) => v.map((x) => ({ gfn: x.gfn + d, state: x.state })),
  canMerge: (a, len, b) =>
    a.length === b.length &&
    a.every((x, i) => b[i]!.gfn === x.gfn + len && b[i]!.state === x.state),
};

/** A table page's pfn, per table index. */
type TableRef = { readonly pfn: number };
const tableOps = { shift: (v: TableRef) => v, canMerge: () => false };

export class GuestStage2 {
  private readonly leaves = new RangeMap<GuestLeaf>(leafOps);
  /**
   * The reverse map, pfn → the gfns mapping it (usually one; a non-protected guest may be given
   * one page at two gfns): the model's, for the invariants (the hypervisor has none; its
   * donation annotations name one gfn per page).
   */
  private readonly byPfn = new RangeMap<readonly PfnRef[]>(pfnRefOps);
  /**
   * Told the pfn range of every leaf a write replaces or installs (PkvmHyp's change log: the
   * guest's view of those pages changed).
   */
  onChange: OnChange | undefined = undefined;
  /** Bumped by every leaf write (the invariants' pfn-to-guest index is rebuilt when it moved). */
  version = 0;

  /**
   * The leaves in [gfn, gfn + n) are about to be replaced or removed: tell `onChange` their
   * pfns, and take them out of the reverse map.
   */
  private changed(gfn: number, n: number): void {
    this.version++;
    const cb = this.onChange;
    const old: Array<[number, number, number]> = [];
    this.leaves.forEachIn(gfn, gfn + n, (s, e, v) => {
      old.push([s, e, v.base]);
    });
    for (const [s, e, base] of old) {
      cb?.(base, base + (e - s));
      const pieces: Array<[number, number, readonly PfnRef[]]> = [];
      this.byPfn.forEachIn(base, base + (e - s), (ps, pe, l) => {
        pieces.push([ps, pe, l.filter((x) => x.gfn !== s + (ps - base))]);
      });
      for (const [ps, pe, l] of pieces)
        if (l.length === 0) this.byPfn.delete(ps, pe);
        else this.byPfn.set(ps, pe, l);
    }
  }

  /** Add gfns [gfn, gfn + n) → pfns [pfn, pfn + n) with `state` to the reverse map. */
  private addRefs(gfn: number, pfn: number, n: number, state: PkvmGuestState): void {
    const pieces: Array<[number, number, readonly PfnRef[]]> = [];
    let pos = pfn;
    this.byPfn.forEachIn(pfn, pfn + n, (ps, pe, l) => {
      if (ps > pos) pieces.push([pos, ps, []]);
      pieces.push([ps, pe, l]);
      pos = pe;
    });
    if (pos < pfn + n) pieces.push([pos, pfn + n, []]);
    for (const [ps, pe, l] of pieces)
      this.byPfn.set(ps, pe, [...l, { gfn: gfn + (ps - pfn), state }]);
  }

  /** The guest's mappings of `pfn` (gfn and state), from the reverse map. */
  refsAt(pfn: number): readonly PfnRef[] {
    return this.byPfn.get(pfn) ?? [];
  }

  /** The reverse map's run boundaries in [s, e] (`runBoundariesIn`). */
  pfnBoundariesIn(s: number, e: number, add: (p: number) => void): void {
    runBoundariesIn(this.byPfn, s, e, add);
  }

  /** Every run boundary of the reverse map. */
  pfnBoundaries(add: (p: number) => void): void {
    for (const r of this.byPfn.entries()) {
      add(r.start);
      add(r.end);
    }
  }
  /** Tables at levels 1..3 (index 0 unused: the root), keyed by `gfn / pages covered`. */
  private readonly tables: Array<RangeMap<TableRef>> = [];

  constructor() {
    for (let l = 0; l <= S2_LAST_LEVEL; l++) this.tables.push(new RangeMap<TableRef>(tableOps));
  }

  /** The leaf at `gfn`, or undefined (an empty entry: NOPAGE). */
  leaf(gfn: number): GuestPte | undefined {
    const e = this.leaves.entryAt(gfn);
    if (e === undefined) return undefined;
    const v = e.value;
    return { gfn, pfn: v.base + (gfn - e.start), state: v.state, prot: v.prot, pages: v.pages };
  }

  /** `guest_get_page_state()` at `gfn`: NOPAGE for an empty entry. */
  state(gfn: number): PkvmGuestState {
    return this.leaf(gfn)?.state ?? PKVM_NOPAGE;
  }

  /**
   * `__guest_check_page_state_range()`: the first gfn of [gfn, gfn + n) whose state is not
   * `state`, or undefined.
   */
  firstNotIn(gfn: number, n: number, state: PkvmGuestState): number | undefined {
    let bad: number | undefined;
    let pos = gfn;
    const end = gfn + n;
    this.leaves.forEachIn(gfn, end, (s, e, v) => {
      if (s > pos && state !== PKVM_NOPAGE) {
        bad = pos;
        return false;
      }
      if (v.state !== state) {
        bad = s;
        return false;
      }
      pos = e;
      return true;
    });
    if (bad === undefined && pos < end && state !== PKVM_NOPAGE) bad = pos;
    return bad;
  }

  /** Table pages a map of [gfn, gfn + pages) would allocate (`kvm_pgtable_stage2_map()`). */
  tablesNeeded(gfn: number, pages: number): number {
    const leafLevel = pages === 1 ? 3 : 2;
    let n = 0;
    for (let l = 1; l <= leafLevel; l++)
      if (this.tables[l]!.get(Math.floor(gfn / S2_LEVEL_PAGES[l - 1]!)) === undefined) n++;
    return n;
  }

  /**
   * Map [gfn, gfn + pages) to [pfn, pfn + pages) as one mapping of `pages` with `state`, `prot`,
   * allocating missing tables with `alloc` (the VM pool, then the memcache). The caller has
   * checked that enough pages are at hand. Replacing an existing leaf of the same size needs no
   * table.
   */
  map(
    gfn: number,
    pfn: number,
    pages: number,
    state: PkvmPageState | typeof PKVM_POISON,
    prot: number,
    alloc: () => number,
  ): void {
    const leafLevel = pages === 1 ? 3 : 2;
    for (let l = 1; l <= leafLevel; l++) {
      const idx = Math.floor(gfn / S2_LEVEL_PAGES[l - 1]!);
      if (this.tables[l]!.get(idx) === undefined)
        this.tables[l]!.set(idx, idx + 1, { pfn: alloc() });
    }
    this.changed(gfn, pages);
    this.onChange?.(pfn, pfn + pages);
    this.addRefs(gfn, pfn, pages, state);
    this.leaves.set(gfn, gfn + pages, { base: pfn, state, prot, pages });
  }

  /** Replace the entry at `gfn` with a poisoned invalid entry (`kvm_pgtable_stage2_annotate()`). */
  poison(gfn: number): void {
    const l = this.leaf(gfn);
    if (l === undefined) return;
    this.changed(gfn, 1);
    this.addRefs(gfn, l.pfn, 1, PKVM_POISON);
    this.leaves.set(gfn, gfn + 1, { base: l.pfn, state: PKVM_POISON, prot: 0, pages: 1 });
  }

  /**
   * `kvm_pgtable_stage2_unmap()` of [gfn, gfn + n): the entries go, and every table left empty
   * is freed with `free` (`guest_s2_put_page()`: into the VM's pool), deepest level first.
   */
  unmap(gfn: number, n: number, free: (pfn: number) => void): void {
    this.changed(gfn, n);
    this.leaves.delete(gfn, gfn + n);
    for (let l = S2_LAST_LEVEL; l >= 1; l--) {
      const span = S2_LEVEL_PAGES[l - 1]!;
      const first = Math.floor(gfn / span);
      const last = Math.floor((gfn + n - 1) / span);
      for (let idx = first; idx <= last; idx++) {
        const t = this.tables[l]!.get(idx);
        if (t === undefined) continue;
        const s = idx * span;
        // Empty: no leaf under it, and no table of the next level under it.
        if (this.leaves.anyIn(s, s + span)) continue;
        if (l < S2_LAST_LEVEL) {
          const childSpan = S2_LEVEL_PAGES[l]!;
          if (this.tables[l + 1]!.anyIn(s / childSpan, (s + span) / childSpan)) continue;
        }
        this.tables[l]!.delete(idx, idx + 1);
        free(t.pfn);
      }
    }
  }

  /** Every stored leaf run (inspection, the invariants, the oracle's comparison). */
  leafRuns(): Array<{ start: number; end: number; leaf: GuestLeaf }> {
    return [...this.leaves.entries()].map((r) => ({ start: r.start, end: r.end, leaf: r.value }));
  }

  /** The pfns of every table page (levels 1..3). */
  tablePfns(): number[] {
    const out: number[] = [];
    for (let l = 1; l <= S2_LAST_LEVEL; l++)
      for (const r of this.tables[l]!.entries()) out.push(r.value.pfn);
    return out;
  }

  /** `kvm_pgtable_stage2_destroy()`: every leaf and table goes; the table pages are returned. */
  destroy(): number[] {
    const pfns = this.tablePfns();
    this.changed(0, Number.MAX_SAFE_INTEGER);
    this.byPfn.clear();
    this.leaves.clear();
    for (const t of this.tables) t.clear();
    return pfns;
  }
}
