/**
 * `struct vm_operations_struct`, the part this model needs: a file's ->mmap() installs its
 * operations on the VMA, and mm reaches the file's pages only through them (handle_mm_fault() →
 * vma->vm_ops->fault()). mm does not know which subsystem is behind a file.
 */
import type { Pfn } from '../base/units.js';

export interface VmOperations {
  /** `->fault()` for the file page `pgoff`: its pfn, or the signal the access gets. */
  fault(pgoff: number): { readonly pfn: Pfn } | { readonly signal: 'SIGBUS' | 'SIGSEGV' };
  /**
   * `->fault()` on `count` consecutive pages from `pgoff` (MADV_POPULATE_*, MAP_POPULATE), as a
   * range: how many pages were faulted in before the first that would get a signal. Without it,
   * mm faults the pages one by one.
   */
  populate?(pgoff: number, count: number): number;
}
