/**
 * `struct file` and the file operations mm needs (include/linux/fs.h; the folder is vfs/, not fs/,
 * so that no import path looks like Node's fs module): what do_mmap() asks of a
 * file (file_mmap_ok()'s size limit, the mount's noexec, ->mmap() itself) and the vm_operations
 * its ->mmap() installs. The files KVM creates (VM, vCPU, guest_memfd) subclass it in
 * kvm/objects.ts; mm sees only this.
 */
import { extentOps } from '../base/ranges/range_map.js';
import { err, type Result } from '../base/result.js';
import type { PgOff, Pfn } from '../base/units.js';

export type FileKind =
  | 'kvm'
  | 'vm'
  | 'vcpu'
  | 'gmem'
  | 'std'
  | 'sev'
  | 'pipe'
  | 'vfio'
  /** design-2023-restrictedmem: a memfd_restricted() file (kvm/restrictedmem.ts). */
  | 'restrictedmem'
  /** design-2020-separate-mm: an address_space_create() fd (mm/address_space.ts). */
  | 'address_space';

/** The kind of VMA a file's ->mmap() makes (mm keeps per-kind page-table state). */
export type FileVmaKind = 'gmem' | 'vcpu';

/** An extent of anonymous, shmem or file pages backed by consecutive frames. */
export type PageExtent = { readonly base: Pfn };
export const pageExtentOps = extentOps<PageExtent>(() => true);

/**
 * `struct vm_operations_struct` (include/linux/mm.h), the part this model needs: a file's ->mmap()
 * installs its operations on the VMA, and mm reaches the file's pages only through them
 * (handle_mm_fault() → vma->vm_ops->fault()). mm does not know which subsystem is behind a file.
 */
export interface VmOperations {
  /** `->fault()` for the file page `pgoff`: its pfn, or the signal the access gets. */
  fault(pgoff: PgOff): { readonly pfn: Pfn } | { readonly signal: 'SIGBUS' | 'SIGSEGV' };
  /**
   * `->fault()` on `count` consecutive pages from `pgoff` (MADV_POPULATE_*, MAP_POPULATE), as a
   * range: how many pages were faulted in before the first that would get a signal. Without it,
   * mm faults the pages one by one.
   */
  populate?(pgoff: PgOff, count: number): number;
}

/** Base of everything an fd can refer to. */
export abstract class KFile {
  abstract readonly kind: FileKind;
  /** fds referring to this open file. */
  fdRefs = 0;
  /** host mappings (pages of VMAs) referring to this file. */
  mappedPages = 0;
  released = false;
  /** The `vm_operations` its ->mmap() installs (files that can be mapped page by page). */
  vmOps: VmOperations | undefined;
  constructor(readonly ino: number) {}
  get refs(): number {
    return this.fdRefs + (this.mappedPages > 0 ? 1 : 0);
  }
  /**
   * file_mmap_ok(): the largest file offset + length a mapping may reach. Regular files stop at
   * MAX_LFS_FILESIZE; an anonymous inode allows any unsigned long.
   */
  get mmapMaxBytes(): bigint {
    return (1n << 64n) - 1n;
  }
  /** The file's mount is noexec (anon inodes, guest_memfd): PROT_EXEC is refused. */
  get noexec(): boolean {
    return false;
  }
  /**
   * `mapping_no_direct_map()`: the file's folios are not in the kernel's direct map
   * (AS_NO_DIRECT_MAP, "mm: introduce AS_NO_DIRECT_MAP" of the NO_DIRECT_MAP series, kernel-uapi.md
   * §6.3). GUP refuses its VMAs (`check_vma_flags()`: `vma_has_no_direct_map()` → -EFAULT).
   */
  get noDirectMap(): boolean {
    return false;
  }
  /** A private writable mapping of the file is charged to the commit limit (VM_ACCOUNT). */
  get chargesPrivateWrites(): boolean {
    return true;
  }
  /** Whether the file has an `f_op->mmap()`: without one, do_mmap() fails with ENODEV. */
  get hasMmap(): boolean {
    return false;
  }
  /**
   * `f_op->mmap()`, called only when `hasMmap`: the file's own checks, and the kind of VMA it
   * makes. (A prototype method, not a per-file closure: KVM creates files on hot paths.)
   */
  mmap(_shared: boolean): Result<FileVmaKind> {
    return err('ENODEV', 'do_mmap: file has no mmap');
  }
}
