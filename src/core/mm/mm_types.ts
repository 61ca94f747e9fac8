/**
 * include/linux/mm_types.h and the VM_* flags of include/linux/mm.h: `struct vm_area_struct`
 * (`Vma`, one extent of the VMA tree) and `struct mm_struct` (`MmStruct`: the state of the VMM
 * process's address space that the mm/*.c files of this folder act on, as free functions taking
 * the mm, like the kernel's).
 *
 * Host PTEs of file mappings are not tracked: whether a PTE is present is never observable — a
 * later access refaults against the page cache, which is the state that matters. Private
 * anonymous memory *is* its page table, so `anon` is keyed by host virtual page.
 */
import type { MmCtx } from './mm_ctx.js';
import { RangeMap, extentOps } from '../base/ranges/range_map.js';
import { pageExtentOps, type FileVmaKind, type KFile, type PageExtent } from '../vfs/file.js';
import { MMAP_ARENA_BASE } from './host_layout.js';
import { asHva, type Hva, type PgOff } from '../base/units.js';
import { MmuNotifierList } from './mmu_notifier.js';
import type { ShmemObject } from './shmem.js';

export type VmaKind = 'anon' | 'shmem' | FileVmaKind;

/** VMA flags that matter for merging and behaviour (madvise-set, and commit accounting). */
export const VMA_HUGEPAGE = 1;
export const VMA_NOHUGEPAGE = 2;
export const VMA_DONTFORK = 4;
export const VMA_DONTDUMP = 8;
export const VMA_WIPEONFORK = 16;
export const VMA_MERGEABLE = 32;
/** VM_ACCOUNT: the mapping's pages are charged to the commit limit (private writable). */
export const VMA_ACCOUNT = 64;
/** VM_NORESERVE: MAP_NORESERVE (never charged). */
export const VMA_NORESERVE = 128;
/** VM_RAND_READ / VM_SEQ_READ: MADV_RANDOM / MADV_SEQUENTIAL (they split VMAs like any flag). */
export const VMA_RAND_READ = 256;
export const VMA_SEQ_READ = 512;
/**
 * VM_HUGETLB: an anonymous MAP_HUGETLB mapping (a hugetlbfs file), 2 MiB pages, or 1 GiB ones
 * with VMA_HUGETLB_1G. The modelled hosts have no huge pages in the pool, so such a mapping exists
 * only with MAP_NORESERVE and every access to it gets SIGBUS.
 */
export const VMA_HUGETLB = 1024;
export const VMA_HUGETLB_1G = 2048;
/** VM_DROPPABLE (MAP_DROPPABLE): comes with VM_WIPEONFORK and VM_DONTDUMP, which stay. */
export const VMA_DROPPABLE = 4096;
/**
 * VM_KVM_PROTECTED (design-2020-protnone-follkvm only: the "KVM protected memory extension" RFC
 * v2, Kirill Shutemov, Oct 2020): guest RAM that a protected VM's KVM turned PROT_NONE in the
 * VMM's page tables while vm_flags keep VM_READ|VM_WRITE (the NUMA-balancing trick). A CPU access
 * gets SIGBUS, get_user_pages() without FOLL_KVM -EFAULT; KVM's own GUP (FOLL_KVM) succeeds.
 * Never set on other profiles.
 */
export const VMA_KVM_PROTECTED = 8192;

/**
 * A VMA extent. `base` is the file page offset (vm_pgoff) of the extent's first page; for
 * private anonymous memory it is the virtual page number, as in Linux.
 */
export type Vma = {
  readonly base: PgOff;
  readonly kind: VmaKind;
  readonly obj: ShmemObject | KFile | null;
  /** PROT_READ | PROT_WRITE | PROT_EXEC currently granted. */
  readonly prot: number;
  /** VM_SHARED. */
  readonly shared: boolean;
  /** VM_MAYEXEC (cleared for files on noexec mounts: guest_memfd). */
  readonly mayExec: boolean;
  readonly locked: boolean;
  readonly growsdown: boolean;
  readonly flags: number;
};

export const vmaOps = extentOps<Vma>(
  (a, b) =>
    a.kind === b.kind &&
    a.obj === b.obj &&
    a.prot === b.prot &&
    a.shared === b.shared &&
    a.mayExec === b.mayExec &&
    a.locked === b.locked &&
    a.growsdown === b.growsdown &&
    a.flags === b.flags,
);

/** `struct mm_struct`: the VMM process's address space. */
export class MmStruct {
  /** The secondary MMUs (each VM's stage-2) that hear about changes to this mm. */
  readonly notifiers = new MmuNotifierList();
  /** VMAs by host virtual page number. */
  readonly vmas = new RangeMap<Vma>(vmaOps);
  /** Private anonymous pages by host virtual page number (the page table of anonymous memory). */
  readonly anon = new RangeMap<PageExtent>(pageExtentOps);
  /** 2 MiB frames (by host virtual page) backed by a transparent huge page, PMD-mapped. */
  readonly thp = new RangeMap<true>();
  /**
   * 2 MiB frames of private anonymous memory that have a page table (any fault in the frame made
   * one, zero-page reads included). MADV_COLLAPSE collapses such a frame even when every PTE is
   * none or the zero page, and refuses a frame without one (SCAN_PMD_NULL) [verified].
   */
  readonly pteTables = new RangeMap<true>();
  /**
   * 2 MiB frames where a read fault mapped the huge zero page (a PMD, no page table):
   * do_huge_pmd_anonymous_page() on a THP-enabled frame with use_zero_page. MADV_COLLAPSE takes
   * such a frame as already PMD-mapped; a write replaces it with a THP; a split turns it into a
   * page table of zero-page PTEs [verified with MADV_COLLAPSE].
   */
  readonly hugeZero = new RangeMap<true>();
  /** MADV_GUARD_INSTALL markers by host virtual page: any access to them faults (SIGSEGV). */
  readonly guards = new RangeMap<true>();
  /**
   * Host pages whose VMA has an anon_vma (`anon_vma_prepare()` marks the whole VMA). Kept apart
   * from the VMA value: the halves of a split share the anon_vma, and VMAs that differ only in
   * having one merge (is_mergeable_anon_vma()), the merged VMA having it.
   */
  readonly anonVmas = new RangeMap<true>();
  /** Pages of guest_memfd mappings whose PTE is present (a fault or populate mapped the folio). */
  readonly gmemPtes = new RangeMap<true>();
  /**
   * A forked child's private pages that fork made copy-on-write with its parent's (dup_mmap() →
   * copy_page_range() write-protects both PTEs and shares the frame). The model does not share
   * frames between address spaces: the child's access to such a page is refused as not modelled
   * (mm/fork.ts). Empty in a process that was not forked.
   */
  readonly cowFromParent = new RangeMap<true>();
  /** Next address the trace arena hands out. */
  cursor: Hva = asHva(MMAP_ARENA_BASE);
  nextShmemId = 1;

  constructor(readonly k: MmCtx) {}
}
