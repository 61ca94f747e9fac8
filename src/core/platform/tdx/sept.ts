/**
 * The Secure EPT of one TD as the Intel TDX module keeps it (intel/tdx-module
 * `src/common/memory_handlers/sept_manager.{h,c}`, `include/auto_gen/sept_state_lookup.{h,c}`;
 * platforms.md §1.3).
 *
 * - **Entry states** as data: the module's 16 states with their 7-bit encodings and lookup index,
 *   the per-state flags the SEAMCALLs test (`leaf`, `any_blocked`, `tlb_tracking_required`,
 *   guest-accessible, public state), and the "allowed states" table per SEAMCALL / TDCALL leaf
 *   (`seamcall_sept_state_lookup`, `tdcall_sept_state_lookup`). The model produces only the eight
 *   states without live migration (FREE, REMOVED, NL_MAPPED, NL_BLOCKED, MAPPED, BLOCKED,
 *   PENDING, PENDING_BLOCKED); the migration states are names in the tables. REMOVED is written
 *   only by an import in progress (`septe_set_free_or_removed_and_release_locks()`), so nothing in
 *   the model reaches it: PAGE.REMOVE and SEPT.REMOVE leave FREE.
 * - **The tree** by level (0 = 4 KiB PT entry, 1 = PD (2 MiB), 2 = PDPT (1 GiB), 3 = PML4,
 *   4 = PML5): one range map per level keyed by the entry's index (`gpa >> (12 + 9 * level)`),
 *   whose value is the state and the frame the entry points to (a leaf: the first frame of the
 *   page; a non-leaf: the S-EPT page holding the next level). An absent index is FREE. A run of
 *   entries in one state pointing to consecutive frames is one range, so the cost is the number of
 *   distinct runs, never the guest's size. The root table (level `pwl`) lives in the TDCS and is
 *   always present.
 * - **The walk** (`secure_ept_walk()`): from the root down; it stops at the requested level, or
 *   earlier at an entry that is a leaf or has no RWX permission (FREE, REMOVED, NL_BLOCKED and
 *   every blocked or pending state). The level where it stopped is what callers compare.
 */
import { RangeMap, extentOps } from '../../base/ranges/range_map.js';

/** S-EPT entry states, in the module's lookup-index order (`sept_special_flags_lookup[].index`). */
export const SEPT_STATES = [
  'FREE',
  'REMOVED',
  'NL_MAPPED',
  'NL_BLOCKED',
  'MAPPED',
  'BLOCKED',
  'BLOCKEDW',
  'EXPORTED_BLOCKEDW',
  'EXPORTED_DIRTY',
  'EXPORTED_DIRTY_BLOCKEDW',
  'PENDING',
  'PENDING_BLOCKED',
  'PENDING_BLOCKEDW',
  'PENDING_EXPORTED_BLOCKEDW',
  'PENDING_EXPORTED_DIRTY',
  'PENDING_EXPORTED_DIRTY_BLOCKEDW',
] as const;
export type SeptStateName = (typeof SEPT_STATES)[number];
/** The states the model's S-EPT holds (no live migration). */
export type SeptState =
  | 'FREE'
  | 'REMOVED'
  | 'NL_MAPPED'
  | 'NL_BLOCKED'
  | 'MAPPED'
  | 'BLOCKED'
  | 'PENDING'
  | 'PENDING_BLOCKED';

/** Per-state facts from `sept_special_flags_lookup` (sept_state_lookup.c). */
export interface SeptStateInfo {
  readonly index: number;
  /** The 7-bit encoding (SEPT_STATE_*_ENCODING). */
  readonly encoding: number;
  /** The public state the module reports in RDX bits 15:8 (`set_arch_septe_details_in_vmm_regs()`). */
  readonly publicState: number;
  /** The entry's PS (leaf) bit, part of the encoding (bit 6). */
  readonly leaf: boolean;
  /** RWX set: the walk may go through it, the CPU may access it (`cached_sept_entry->rwx`). */
  readonly rwx: boolean;
  readonly anyBlocked: boolean;
  readonly anyPending: boolean;
  readonly tlbTrackingRequired: boolean;
  /** `guest_accessible_leaf`: MAPPED, BLOCKEDW and the EXPORTED states. */
  readonly guestAccessibleLeaf: boolean;
}

function info(
  index: number,
  encoding: number,
  publicState: number,
  rwx: boolean,
  anyBlocked: boolean,
  tlbTrackingRequired: boolean,
  guestAccessibleLeaf: boolean,
): SeptStateInfo {
  return {
    index,
    encoding,
    publicState,
    leaf: (encoding & 0x40) !== 0,
    rwx,
    anyBlocked,
    anyPending: index >= 10,
    tlbTrackingRequired,
    guestAccessibleLeaf,
  };
}

/** The table of sept_state_lookup.c for the 16 states (public states, flags, encodings). */
export const SEPT_STATE_INFO: Readonly<Record<SeptStateName, SeptStateInfo>> = {
  FREE: info(0, 0x0e, 0, false, false, false, false),
  REMOVED: info(1, 0x0c, 5, false, false, false, false),
  NL_MAPPED: info(2, 0x00, 132, true, false, true, false),
  NL_BLOCKED: info(3, 0x08, 129, false, true, true, false),
  MAPPED: info(4, 0x60, 4, true, false, true, true),
  BLOCKED: info(5, 0x68, 1, false, true, true, false),
  BLOCKEDW: info(6, 0x64, 8, true, false, true, true),
  EXPORTED_BLOCKEDW: info(7, 0x66, 9, true, false, false, true),
  EXPORTED_DIRTY: info(8, 0x63, 11, true, false, true, true),
  EXPORTED_DIRTY_BLOCKEDW: info(9, 0x67, 12, true, false, true, true),
  PENDING: info(10, 0x70, 2, false, false, true, false),
  PENDING_BLOCKED: info(11, 0x78, 3, false, true, true, false),
  PENDING_BLOCKEDW: info(12, 0x74, 16, false, false, true, false),
  PENDING_EXPORTED_BLOCKEDW: info(13, 0x76, 17, false, false, false, false),
  PENDING_EXPORTED_DIRTY: info(14, 0x73, 19, false, false, true, false),
  PENDING_EXPORTED_DIRTY_BLOCKEDW: info(15, 0x77, 20, false, false, true, false),
};

/** SEAMCALL leaf numbers (`seamcall_leaf_opcode_t`, include/tdx_api_defs.h) the model uses. */
export const SEAMCALL_LEAF = {
  TDH_VP_ENTER: 0,
  TDH_MNG_ADDCX: 1,
  TDH_MEM_PAGE_ADD: 2,
  TDH_MEM_SEPT_ADD: 3,
  TDH_VP_ADDCX: 4,
  TDH_MEM_PAGE_AUG: 6,
  TDH_MEM_RANGE_BLOCK: 7,
  TDH_MNG_KEY_CONFIG: 8,
  TDH_MNG_CREATE: 9,
  TDH_VP_CREATE: 10,
  TDH_MR_EXTEND: 16,
  TDH_MR_FINALIZE: 17,
  TDH_VP_FLUSH: 18,
  TDH_MNG_VPFLUSHDONE: 19,
  TDH_MNG_KEY_FREEID: 20,
  TDH_MNG_INIT: 21,
  TDH_VP_INIT: 22,
  TDH_PHYMEM_PAGE_RECLAIM: 28,
  TDH_MEM_PAGE_REMOVE: 29,
  TDH_MEM_SEPT_REMOVE: 30,
  TDH_MEM_TRACK: 38,
  TDH_MEM_RANGE_UNBLOCK: 39,
  TDH_PHYMEM_CACHE_WB: 40,
  TDH_PHYMEM_PAGE_WBINVD: 41,
} as const;
/** TDCALL leaf of TDG.MEM.PAGE.ACCEPT. */
export const TDG_MEM_PAGE_ACCEPT_LEAF = 6;

/** Bit i: state with lookup index i allowed. */
function mask(bits: readonly number[]): number {
  let m = 0;
  bits.forEach((b, i) => {
    if (b) m |= 1 << i;
  });
  return m;
}

/**
 * `seamcall_sept_state_lookup[leaf]` for the leaves the model implements (one bit per state in
 * lookup-index order, written as the module's rows).
 */
export const SEAMCALL_SEPT_ALLOWED: Readonly<Record<number, number>> = {
  [SEAMCALL_LEAF.TDH_MEM_PAGE_ADD]: mask([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_SEPT_ADD]: mask([1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_PAGE_AUG]: mask([1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_RANGE_BLOCK]: mask([0, 0, 1, 0, 1, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MR_EXTEND]: mask([0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_PAGE_REMOVE]: mask([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_SEPT_REMOVE]: mask([0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_RANGE_UNBLOCK]: mask([0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0]),
};
/** `tdcall_sept_state_lookup[TDG_MEM_PAGE_ACCEPT_LEAF]`. */
export const ACCEPT_SEPT_ALLOWED = mask([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0]);

/** `sept_state_is_seamcall_leaf_allowed()`. */
export function septAllowed(leaf: number, state: SeptStateName): boolean {
  const m = SEAMCALL_SEPT_ALLOWED[leaf];
  if (m === undefined) throw new Error(`no S-EPT state table for SEAMCALL leaf ${leaf}`);
  return (m & (1 << SEPT_STATE_INFO[state].index)) !== 0;
}

/** Levels: 0 = 4 KiB, 1 = 2 MiB, 2 = 1 GiB, 3 = PML4, 4 = PML5. */
export type SeptLevel = 0 | 1 | 2 | 3 | 4;
/** 4 KiB pages covered by one entry at `level`. */
export function pagesAtLevel(level: number): number {
  return 512 ** level;
}

/** The index of the entry at `level` covering guest frame `gfn`. */
export function indexAt(gfn: number, level: number): number {
  // A shift when gfn is a small non-negative integer (every guest frame below 8 TiB): the same
  // value without floating-point intermediates, which the interpreter boxes on every call.
  if (gfn >= 0 && gfn < 0x8000_0000 && Number.isInteger(gfn)) {
    const shift = 9 * level;
    return shift < 31 ? gfn >>> shift : 0;
  }
  return Math.floor(gfn / pagesAtLevel(level));
}

/** A stored run of entries of one level (level 0: entry `i` points to frame `base + (i - start)`). */
type SeptRun = { readonly base: number; readonly state: SeptState };

/** One entry as the walk reads it. */
export interface SeptEntry {
  readonly level: number;
  readonly index: number;
  readonly state: SeptState;
  /** The frame the entry points to: the page's first frame (leaf) or the S-EPT page (non-leaf); -1 if FREE. */
  readonly pfn: number;
}

/** The result of a walk toward `level`: the entry where it stopped. */
export interface SeptWalk {
  /** Level of the entry the walk stopped at (== the requested one on success). */
  readonly level: number;
  readonly entry: SeptEntry;
}

export class SeptTree {
  /**
   * One range map per level, keyed by entry index. Level 0 merges runs of 4 KiB entries in one
   * state pointing to consecutive frames (an extent: entry i points to `base + (i - start)`);
   * the upper levels store one entry per index (their frames are S-EPT pages or huge pages, and
   * there are few of them).
   */
  private readonly levels: Array<RangeMap<SeptRun>> = [];
  /** Bumped by every `set` (the invariant checker re-reads the tree only when it moved). */
  version = 0;

  constructor(readonly pwl: number) {
    for (let l = 0; l <= pwl; l++) {
      this.levels.push(
        new RangeMap<SeptRun>(
          l === 0
            ? extentOps<SeptRun>((a, b) => a.state === b.state)
            : {
                shift: (v) => v,
                canMerge: () => false,
              },
        ),
      );
    }
  }

  /** The entry at (`level`, `index`); FREE when absent. */
  entry(level: number, index: number): SeptEntry {
    const e = this.levels[level]!.entryAt(index);
    if (e === undefined) return { level, index, state: 'FREE', pfn: -1 };
    const pfn = level === 0 ? e.value.base + (index - e.start) : e.value.base;
    return { level, index, state: e.value.state, pfn };
  }

  /** Write (`level`, `index`) (FREE deletes it). */
  set(level: number, index: number, state: SeptState, pfn: number): void {
    const m = this.levels[level]!;
    this.version++;
    if (state === 'FREE') m.delete(index, index + 1);
    else m.set(index, index + 1, { base: pfn, state });
  }

  /**
   * `secure_ept_walk()` for guest frame `gfn` toward `level`: from the root down, stopping at the
   * requested level or at a leaf or an entry without RWX.
   */
  walk(gfn: number, level: number): SeptWalk {
    for (let l = this.pwl; ; l--) {
      // The entry object is made only where the walk stops (a walk runs for every SEAMCALL on
      // a GPA: 16 per page measured).
      const index = indexAt(gfn, l);
      if (l !== level && l !== 0) {
        // Above level 0 a stored run is one entry, its value unshifted: `get` reads it in place.
        const v = this.levels[l]!.get(index);
        const inf = SEPT_STATE_INFO[v === undefined ? 'FREE' : v.state];
        if (inf.rwx && !inf.leaf) continue;
      }
      return { level: l, entry: this.entry(l, index) };
    }
  }

  /** Whether every one of the 512 entries under the non-leaf entry (`level`, `index`) is FREE. */
  childrenFree(level: number, index: number): boolean {
    const child = level - 1;
    return !this.levels[child]!.anyIn(index * 512, index * 512 + 512);
  }

  /**
   * The level-0 (4 KiB) entries over guest frames [start, end) that are not FREE, as runs clipped
   * to the range: `cb(s, e, pfn, state)` with `pfn` the frame entry `s` points to (the rest of the
   * run point to the frames after it).
   */
  leafPiecesIn(
    start: number,
    end: number,
    cb: (s: number, e: number, pfn: number, state: SeptState) => void,
  ): void {
    const m = this.levels[0]!;
    if (m.size === 0) return;
    m.forEachIn(start, end, (s, e, v) => {
      cb(s, e, v.base, v.state);
    });
  }

  /** Each stored run (level, [start, end) of indices, state, first frame): ranges, not entries. */
  runs(): Array<{ level: number; start: number; end: number; state: SeptState; pfn: number }> {
    const out: Array<{ level: number; start: number; end: number; state: SeptState; pfn: number }> =
      [];
    this.levels.forEach((m, level) => {
      for (const r of m.entries())
        out.push({ level, start: r.start, end: r.end, state: r.value.state, pfn: r.value.base });
    });
    return out;
  }
}
