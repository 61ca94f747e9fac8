/**
 * mm/huge_memory.c: transparent huge pages of private anonymous memory. The THP write fault
 * (do_huge_pmd_anonymous_page(), do_huge_zero_wp_pmd()), whether THP is enabled for a frame
 * (thp_vma_allowable_order()), the PMD split (__split_huge_pmd()) and the host page-table level
 * KVM reads when it picks a stage-2 mapping level.
 */
import { PROT_WRITE } from '../base/uapi.js';
import {
  asHvpn,
  hvpnAdd,
  hvpnAlignDown,
  hvpnAlignUp,
  hvpnDiff,
  pfnAdd,
  type Hvpn,
  type Pfn,
} from '../base/units.js';
import { VMA_HUGEPAGE, VMA_HUGETLB, VMA_NOHUGEPAGE } from './mm_types.js';
import { markAnonVma } from './rmap.js';
import { notePteTable } from './pgtable.js';
import type { MmStruct, Vma } from './mm_types.js';

/**
 * A write fault on an empty private anonymous frame: allocate a THP when THP is enabled for
 * the VMA (profile thp mode and MADV_HUGEPAGE/NOHUGEPAGE) and the VMA covers the whole 2 MiB
 * frame. Returns the pfn for hvpn, or undefined (no THP).
 */
export function tryThp(mm: MmStruct, hvpn: Hvpn, v: Vma): Pfn | undefined {
  if ((v.prot & PROT_WRITE) === 0 || !thpAllowed(mm, hvpn, v)) return undefined;
  const h0 = hvpnAlignDown(hvpn, 512);
  if (mm.anon.anyIn(h0, h0 + 512)) return undefined;
  const runs = mm.k.frames.alloc(512);
  if (runs.length !== 1) {
    for (const r of runs) mm.k.frames.release(r.base, r.count);
    return undefined;
  }
  const base = runs[0]!.base;
  mm.notifiers.invalidateRangeStart(h0, hvpnAdd(h0, 512));
  if (!mm.k.mutants.has('anon_fault_no_zero')) mm.k.frames.zero(base, 512);
  mm.anon.set(h0, h0 + 512, { base });
  mm.thp.set(h0, h0 + 512, true);
  markAnonVma(mm, hvpn);
  mm.k.events.push({ kind: 'anon_alloc', hvpn: h0, pages: 512 });
  return pfnAdd(base, hvpnDiff(hvpn, h0));
}

/**
 * THP enabled for the 2 MiB frame of hvpn: the profile's thp mode with MADV_HUGEPAGE /
 * NOHUGEPAGE (MAP_STACK), a VMA covering the whole frame, and no guard marker in it.
 */
export function thpAllowed(mm: MmStruct, hvpn: Hvpn, v: Vma): boolean {
  const mode = mm.k.profile.thp;
  if (mode === 'never' || v.locked || (v.flags & (VMA_NOHUGEPAGE | VMA_HUGETLB)) !== 0)
    return false;
  if (mode === 'madvise' && (v.flags & VMA_HUGEPAGE) === 0) return false;
  const h0 = hvpnAlignDown(hvpn, 512);
  const ent = mm.vmas.entryAt(hvpn)!;
  if (ent.start > h0 || ent.end < h0 + 512) return false;
  return mm.guards.size === 0 || !mm.guards.anyIn(h0, h0 + 512);
}

/**
 * Split the PMD mapping of every THP (and huge zero page) overlapping [s, e): the pages stay,
 * mapped by PTEs.
 */
export function splitThp(mm: MmStruct, s: Hvpn, e: Hvpn): void {
  for (const pmds of [mm.hugeZero, mm.thp]) {
    if (pmds.size === 0 || !pmds.anyIn(s, e)) continue;
    const h0 = hvpnAlignDown(s, 512);
    const h1 = hvpnAlignUp(e, 512);
    // __split_huge_pmd() notifies secondary MMUs over each huge page it splits, so KVM drops a
    // 2M stage-2 mapping built on it.
    for (const p of pmds.piecesIn(h0, h1)) {
      mm.notifiers.invalidateRangeStart(asHvpn(p.start), asHvpn(p.end));
      // The split installs the page table deposited when the huge PMD was mapped.
      notePteTable(mm, asHvpn(p.start), asHvpn(p.end));
    }
    pmds.delete(h0, h1);
  }
}

/** The host page-table level of a private anonymous page ('2M' when a THP maps it). */
export function hostLevel(mm: MmStruct, hvpn: Hvpn): '4K' | '2M' {
  return mm.thp.size !== 0 && mm.thp.get(hvpn) !== undefined ? '2M' : '4K';
}
