/**
 * mm/hugetlb.c: what a VM_HUGETLB VMA (an anonymous MAP_HUGETLB mapping, a hugetlbfs file) does
 * differently. The hugetlbfs ->mmap() checks (hugetlbfs_file_mmap(), hugetlb_reserve_pages())
 * are in mmap.ts with the rest of do_mmap(); the hugetlb advice rules in madvise.ts; faults on such
 * a VMA get SIGBUS (memory.ts: hugetlb_no_page() with an empty pool).
 */
import { VMA_HUGETLB, VMA_HUGETLB_1G, type Vma } from './mm_types.js';
import type { Hvpn } from '../base/units.js';

/** Base pages per huge page of a hugetlb VMA (0 for any other VMA). */
export function hugetlbPages(v: Vma): number {
  if ((v.flags & VMA_HUGETLB) === 0) return 0;
  return (v.flags & VMA_HUGETLB_1G) !== 0 ? 1 << 18 : 512;
}

/** __split_vma() → hugetlb_vm_op_split(): a hugetlb VMA splits only at huge page boundaries. */
export function hugetlbSplitRefused(
  v: Vma,
  ent: { start: number; end: number },
  s: Hvpn,
  e: Hvpn,
): boolean {
  const hp = hugetlbPages(v);
  return hp !== 0 && ((s > ent.start && s % hp !== 0) || (e < ent.end && e % hp !== 0));
}
