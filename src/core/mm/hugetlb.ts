/**
 * mm/hugetlb.c: what a VM_HUGETLB VMA (an anonymous MAP_HUGETLB mapping, a hugetlbfs file) does
 * differently. The hugetlbfs ->mmap() checks (hugetlbfs_file_mmap(), hugetlb_reserve_pages())
 * are in mmap.ts with the rest of do_mmap(); the hugetlb advice rules in madvise.ts; faults on such
 * a VMA get SIGBUS (memory.ts: hugetlb_no_page() with an empty pool).
 */
import { GMEM_HUGETLB_ORDER_1G, GMEM_HUGETLB_ORDER_2M } from '../base/uapi.js';
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

/**
 * The hstates' free huge pages as HugeTLB guest_memfd sees them (kernel-uapi.md §6.2), per order
 * (9: 2M, 18: 1G). A guest_memfd's subpool reserves its whole size at creation
 * (`hugepage_new_subpool(h, hpages, hpages)` → `hugetlb_acct_memory()`: -ENOMEM when the hstate
 * has fewer unreserved free pages) and gives the reservation back when the inode is destroyed
 * (`hugepage_put_subpool()`). Folios are then allocated from the subpool's reservation
 * (`hugepage_subpool_get_pages()`), which cannot fail, so only the reservations are counted.
 * hugetlbfs and MAP_HUGETLB do not draw from here (the model keeps their pool empty).
 */
export class HugetlbPools {
  /** Unreserved free huge pages by order. */
  private readonly free = new Map<number, number>();
  constructor(pages2M: number, pages1G: number) {
    this.free.set(GMEM_HUGETLB_ORDER_2M, pages2M);
    this.free.set(GMEM_HUGETLB_ORDER_1G, pages1G);
  }
  /** Unreserved free huge pages of `order` (0 for an order without an hstate). */
  available(order: number): number {
    return this.free.get(order) ?? 0;
  }
  /** `hugetlb_acct_memory(h, hpages)`: reserve, or false (ENOMEM) when the pool lacks pages. */
  reserve(order: number, hpages: number): boolean {
    const f = this.free.get(order);
    if (f === undefined || f < hpages) return false;
    this.free.set(order, f - hpages);
    return true;
  }
  /** `hugepage_put_subpool()` → `hugetlb_acct_memory(h, -min_hpages)`. */
  unreserve(order: number, hpages: number): void {
    const f = this.free.get(order);
    if (f !== undefined) this.free.set(order, f + hpages);
  }
}
