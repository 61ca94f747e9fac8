/**
 * The Reverse Map Table of an AMD SEV-SNP host (platforms.md §2.1–§2.3, Appendix A.2): one entry
 * per host 4 KiB frame, checked by the CPU on every access, written by the hypervisor with
 * RMPUPDATE and PSMASH and by the PSP firmware (SNP_LAUNCH_UPDATE) and the guest (PVALIDATE).
 *
 * Reproduced here:
 * - the entry fields the model needs (linux arch/x86/virt/svm/sev.c `struct rmpentry`: assigned,
 *   pagesize, immutable, gpa, asid, vmsa, validated; the per-VMPL permission masks are not
 *   modelled);
 * - `rmpupdate()` with its two wrappers `rmp_make_private()` / `rmp_make_shared()`
 *   (arch/x86/virt/svm/sev.c), including `adjust_direct_map()`: before a 4K entry is written, the
 *   host's 2 MiB direct-map mapping containing the frame is split, because a host write through a
 *   2 MiB mapping that overlaps an assigned 4K frame raises an RMP #PF;
 * - `psmash()` of a 2 MiB entry;
 * - `snp_lookup_rmpentry()`: the authoritative entry of a frame and its size (the 2 MiB entry of
 *   the 2M-aligned frame when there is one, else the frame's own);
 * - the host-access check: a host write to an assigned frame, or through a 2 MiB direct-map
 *   mapping overlapping one, is an RMP #PF; host reads are not blocked (they read ciphertext).
 *
 * The instruction's failure codes (APM vol. 3 RMPUPDATE/PSMASH; linux asm/sev.h):
 * FAIL_INPUT (1) for a 2 MiB request on a frame that is not 2M-aligned, FAIL_PERMISSION (2) for an
 * immutable entry (only firmware, after SNP_PAGE_RECLAIM, may change it; platforms.md §2.2 marks
 * the code unverified), FAIL_INUSE (3) for PSMASH of a frame without a 2 MiB entry, FAIL_OVERLAP
 * (4) when a 2 MiB write meets 4K entries in its range or a 4K write lands inside a 2 MiB entry.
 * The kernel retries FAIL_OVERLAP and PSMASH's FAIL_INUSE in a loop because on hardware they are
 * transient (another CPU is mid-update); in the model nothing is concurrent, so the code is
 * returned: a retry would never end.
 *
 * State is kept as ranges of frames (a RangeMap keyed by pfn), never per-frame arrays: an absent
 * key is the all-zero Hypervisor state. A run of entries with the same fields and consecutive
 * GPAs is one range; a 2 MiB entry is a range of 512 frames with size '2M'.
 */
import { RangeMap, extentOps } from '../../base/ranges/range_map.js';
import type { Pfn } from '../../base/units.js';
import { NO_MUTANTS, type MutantSet } from '../../base/mutants.js';

/** Frames per 2 MiB entry (PTRS_PER_PMD). */
export const RMP_PAGES_2M = 512;

/** RMPUPDATE / PSMASH return codes (APM; linux arch/x86/include/asm/sev.h). */
export const RMP_RET = {
  SUCCESS: 0,
  FAIL_INPUT: 1,
  FAIL_PERMISSION: 2,
  FAIL_INUSE: 3,
  FAIL_OVERLAP: 4,
} as const;
export type RmpRet = (typeof RMP_RET)[keyof typeof RMP_RET];

export type RmpPageSize = '4K' | '2M';

/** One RMP entry as `snp_lookup_rmpentry()` and the platform see it. */
export interface RmpEntry {
  readonly assigned: boolean;
  /** The page size of the authoritative entry (a 4K frame inside a 2 MiB entry says '2M'). */
  readonly size: RmpPageSize;
  readonly immutable: boolean;
  /** RMP.GPA of this frame (page aligned; a frame inside a 2 MiB entry: its own 4K GPA). */
  readonly gpa: bigint;
  readonly asid: number;
  readonly validated: boolean;
  readonly vmsa: boolean;
}

/** The Hypervisor state: what every frame without an entry has. */
export const RMP_HYPERVISOR: RmpEntry = {
  assigned: false,
  size: '4K',
  immutable: false,
  gpa: 0n,
  asid: 0,
  validated: false,
  vmsa: false,
};

/**
 * A stored run of assigned entries: frames [start, end) of the map key hold GPA page
 * `base + (pfn - start)`, every other field equal.
 */
type RmpRun = {
  readonly base: number;
  readonly size: RmpPageSize;
  readonly immutable: boolean;
  readonly asid: number;
  readonly validated: boolean;
  readonly vmsa: boolean;
};

function makeRun(t: RmpRun, base: number): RmpRun {
  return {
    base,
    size: t.size,
    immutable: t.immutable,
    asid: t.asid,
    validated: t.validated,
    vmsa: t.vmsa,
  };
}

const rmpRunOps = extentOps<RmpRun>(
  (a, b) =>
    a.size === b.size &&
    a.immutable === b.immutable &&
    a.asid === b.asid &&
    a.validated === b.validated &&
    a.vmsa === b.vmsa,
  makeRun,
);

/** The hypervisor's RMPUPDATE input (linux `struct rmp_state`): what the new entry says. */
export interface RmpState {
  readonly assigned: boolean;
  readonly size: RmpPageSize;
  readonly immutable: boolean;
  /** Page-aligned GPA (2 MiB entries: the 2M-aligned GPA of the first frame). */
  readonly gpa: bigint;
  readonly asid: number;
}

function align2m(pfn: number): number {
  return pfn - (pfn % RMP_PAGES_2M);
}

export class Rmp {
  /** Assigned entries by pfn (absent: Hypervisor state). */
  private readonly entries = new RangeMap<RmpRun>(rmpRunOps);
  /** 2 MiB direct-map regions (by pfn / 512) that `adjust_direct_map()` split to 4K. */
  private readonly splitDirectMap = new RangeMap<true>();

  /** Injected bugs (the host's; set by Host): the seeded-bug benchmark only. */
  mutants: MutantSet = NO_MUTANTS;
  /** Bumped by every change to an entry (the invariant checker's change test). */
  private changes = 0;
  get generation(): number {
    return this.changes;
  }

  /** Number of stored runs (0: every frame is in the Hypervisor state). */
  get runs(): number {
    return this.entries.size;
  }

  /**
   * `snp_lookup_rmpentry()`: the authoritative entry of `pfn` — the 2 MiB entry covering it, or
   * its own 4K entry — with the size of that entry.
   */
  lookup(pfn: Pfn): RmpEntry {
    const e = this.entries.entryAt(pfn);
    if (e === undefined) return RMP_HYPERVISOR;
    const v = e.value;
    return {
      assigned: true,
      size: v.size,
      immutable: v.immutable,
      gpa: BigInt(v.base + (pfn - e.start)) << 12n,
      asid: v.asid,
      validated: v.validated,
      vmsa: v.vmsa,
    };
  }

  /** Whether any frame of [start, end) is assigned. */
  anyAssigned(start: number, end: number): boolean {
    return this.entries.anyIn(start, end);
  }

  /** Whether `adjust_direct_map()` split the 2 MiB direct-map region containing `pfn`. */
  directMapSplit(pfn: Pfn): boolean {
    return this.splitDirectMap.get(Math.floor(pfn / RMP_PAGES_2M)) === true;
  }

  /**
   * `adjust_direct_map()` (arch/x86/virt/svm/sev.c): before a 4K RMPUPDATE, split the host's
   * 2 MiB direct-map mapping of the frame to 4K (a 2 MiB RMPUPDATE covers the mapping whole).
   */
  private adjustDirectMap(pfn: number, size: RmpPageSize): void {
    if (size === '2M' || this.mutants.has('snp_rmp_no_direct_map_split')) return;
    const r = Math.floor(pfn / RMP_PAGES_2M);
    this.splitDirectMap.set(r, r + 1, true);
  }

  /**
   * RMPUPDATE of `pfn` with `state` (`rmpupdate()`): the new entry always has validated = 0 and
   * VMSA = 0. Refused without change: a 2 MiB request on an unaligned frame (FAIL_INPUT), an
   * immutable authoritative entry (FAIL_PERMISSION), a 2 MiB request over 4K entries or a 4K
   * request inside a 2 MiB entry (FAIL_OVERLAP).
   */
  rmpupdate(pfn: Pfn, state: RmpState): RmpRet {
    if (state.size === '2M' && pfn % RMP_PAGES_2M !== 0) return RMP_RET.FAIL_INPUT;
    const start: number = pfn;
    const end = state.size === '2M' ? pfn + RMP_PAGES_2M : pfn + 1;
    const cur = this.lookup(pfn);
    if (cur.immutable) return RMP_RET.FAIL_PERMISSION;
    if (state.size === '2M') {
      // Any 4K entry inside the range (or an immutable one) conflicts with a 2 MiB entry.
      let conflict: RmpRet = RMP_RET.SUCCESS;
      this.entries.forEachIn(start, end, (_s, _e, v) => {
        if (v.immutable) conflict = RMP_RET.FAIL_PERMISSION;
        else if (v.size === '4K') conflict = RMP_RET.FAIL_OVERLAP;
        return conflict === RMP_RET.SUCCESS;
      });
      if (conflict !== RMP_RET.SUCCESS) return conflict;
    } else if (cur.assigned && cur.size === '2M') {
      return RMP_RET.FAIL_OVERLAP;
    }
    this.adjustDirectMap(pfn, state.size);
    this.changes++;
    if (!state.assigned) {
      this.entries.delete(start, end);
      return RMP_RET.SUCCESS;
    }
    this.entries.set(start, end, {
      base: Number(state.gpa >> 12n),
      size: state.size,
      immutable: state.immutable,
      asid: state.asid,
      validated: false,
      vmsa: false,
    });
    return RMP_RET.SUCCESS;
  }

  /** `rmp_make_private()`: assigned to `asid` at `gpa`, at `size`. */
  makePrivate(pfn: Pfn, gpa: bigint, size: RmpPageSize, asid: number, immutable: boolean): RmpRet {
    return this.rmpupdate(pfn, { assigned: true, size, immutable, gpa: gpa & ~0xfffn, asid });
  }

  /** `rmp_make_shared()`: back to the Hypervisor state (every field 0) at `size`. */
  makeShared(pfn: Pfn, size: RmpPageSize): RmpRet {
    return this.rmpupdate(pfn, { assigned: false, size, immutable: false, gpa: 0n, asid: 0 });
  }

  /**
   * PSMASH of the 2 MiB entry at `pfn`: 512 4K entries with the same assigned, ASID, validated,
   * immutable and VMSA state and consecutive GPAs. FAIL_INPUT when `pfn` is not 2M-aligned,
   * FAIL_INUSE when the frame has no 2 MiB entry (the kernel calls it only after
   * `snp_lookup_rmpentry()` reported a 2 MiB level).
   */
  psmash(pfn: Pfn): RmpRet {
    if (pfn % RMP_PAGES_2M !== 0) return RMP_RET.FAIL_INPUT;
    const e = this.entries.entryAt(pfn);
    if (e === undefined || e.value.size !== '2M') return RMP_RET.FAIL_INUSE;
    const v = this.entries.get(pfn)!;
    this.changes++;
    this.entries.set(pfn, pfn + RMP_PAGES_2M, {
      base: v.base,
      size: '4K',
      immutable: v.immutable,
      asid: v.asid,
      validated: v.validated,
      vmsa: v.vmsa,
    });
    return RMP_RET.SUCCESS;
  }

  /**
   * Firmware and PVALIDATE write the validated and VMSA bits, and firmware clears immutable
   * (SNP_LAUNCH_UPDATE): `pfn`'s own entry (a 4K entry; for a frame inside a 2 MiB entry the
   * whole entry). Returns false when the frame is not assigned.
   */
  setFlags(pfn: Pfn, flags: { validated?: boolean; vmsa?: boolean; immutable?: boolean }): boolean {
    const e = this.entries.entryAt(pfn);
    if (e === undefined) return false;
    const v = e.value;
    const start = v.size === '2M' ? align2m(pfn) : pfn;
    const end = v.size === '2M' ? start + RMP_PAGES_2M : pfn + 1;
    const base = v.base + (start - e.start);
    this.changes++;
    this.entries.set(start, end, {
      base,
      size: v.size,
      immutable: flags.immutable ?? v.immutable,
      asid: v.asid,
      validated: flags.validated ?? v.validated,
      vmsa: flags.vmsa ?? v.vmsa,
    });
    return true;
  }

  /**
   * The RMP check of a host write to `pfn` (host reads are never blocked): an assigned frame
   * faults; through the direct map, so does a frame whose 2 MiB direct-map region was not split
   * while any frame of that region is assigned.
   */
  hostWriteFaults(pfn: Pfn, viaDirectMap: boolean): boolean {
    if (this.entries.get(pfn) !== undefined) return true;
    if (!viaDirectMap || this.directMapSplit(pfn)) return false;
    const r = align2m(pfn);
    return this.entries.anyIn(r, r + RMP_PAGES_2M);
  }

  /** Every stored run (inspection and tests). */
  dump(): Array<{ start: Pfn; end: Pfn; entry: RmpEntry }> {
    return [...this.entries.entries()].map((e) => ({
      start: e.start as Pfn,
      end: e.end as Pfn,
      entry: this.lookup(e.start as Pfn),
    }));
  }
}
