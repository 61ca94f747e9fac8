/**
 * Page-table pages of private anonymous memory: `__pte_alloc()` (mm/memory.c) when a fault needs a
 * page table, and the table deposited with a huge PMD (pgtable_trans_huge_deposit(),
 * mm/pgtable-generic.c) that a split installs. Which 2 MiB frames have one matters to
 * MADV_COLLAPSE and to where a read fault may map the huge zero page.
 */
import type { Hvpn } from '../base/units.js';
import type { MmStruct } from './mm_types.js';

/** The 2 MiB frames over host pages [s, e) get a page table (a fault, or a THP split). */
export function notePteTable(mm: MmStruct, s: Hvpn, e: Hvpn): void {
  const f0 = Math.floor(s / 512) * 512;
  const f1 = Math.ceil(e / 512) * 512;
  if (!mm.pteTables.covers(f0, f1)) mm.pteTables.set(f0, f1, true);
}
