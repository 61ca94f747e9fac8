/**
 * The VMM process's address space: `HostMm` is the `struct mm_struct` (mm_types.ts) with the
 * entry points the rest of the model calls (the syscalls mmap/munmap/mprotect/madvise, the VMM's
 * own loads and stores, handle_mm_fault() and get_user_pages() for KVM, unmap_mapping_range() for
 * guest_memfd truncation). Each behaviour lives in the file named after the kernel's:
 *
 *   mm_types.ts     struct mm_struct, struct vm_area_struct, VM_* flags (include/linux/mm*.h)
 *   mmap.ts         mmap(2), munmap(2), overcommit (mm/mmap.c, mm/vma.c)
 *   mprotect.ts     mprotect(2) (mm/mprotect.c)
 *   mem_protected.ts VM_KVM_PROTECTED VMAs (design-2020-protnone-follkvm, virt/lib/mem_protected.c)
 *   madvise.ts      madvise(2) (mm/madvise.c)
 *   memory.ts       handle_mm_fault(), peek/poke, zapping, unmap_mapping_range() (mm/memory.c)
 *   gup.ts          populating a range (mm/gup.c)
 *   huge_memory.ts  THP faults and splits (mm/huge_memory.c)
 *   khugepaged.ts   MADV_COLLAPSE (mm/khugepaged.c)
 *   hugetlb.ts      VM_HUGETLB VMAs (mm/hugetlb.c)
 *   shmem.ts        shared anonymous memory (mm/shmem.c)
 *   rmap.ts         anon_vma_prepare() (mm/rmap.c)
 *   pgtable.ts      page-table pages of anonymous memory
 *   mmu_notifier.ts secondary MMUs (mm/mmu_notifier.c)
 *   fork.ts         a forked child's address space and its end (dup_mmap(), exit_mmap())
 *   address_space.ts an address space of no process (design-2020-separate-mm)
 */
import type { KFile } from '../vfs/file.js';
import type { Result } from '../base/result.js';
import {
  asHvpn,
  bytesToPagesN,
  hvaToHvpn,
  pageAlignUp,
  type Hva,
  type Hvpn,
  type PgOff,
  type Pfn,
} from '../base/units.js';
import { MmStruct, type Vma } from './mm_types.js';
import type { ShmemObject as ShmemObj } from './shmem.js';
import { doMmap, vmMunmap } from './mmap.js';
import { doMprotect } from './mprotect.js';
import { kvmProtectVmas } from './mem_protected.js';
import { doMadvise } from './madvise.js';
import {
  cpuAccess,
  handleMmFault,
  refuseCowAccess,
  unmapMappingRange,
  unmapMappingRangeAll,
  type UserAccess,
} from './memory.js';
import { dupMmap, exitMmap } from './fork.js';
import { populate } from './gup.js';
import { hostLevel } from './huge_memory.js';
import { markAnonVma } from './rmap.js';

// Where the invariant checkers and the x86 MMU import them from.
export { ZERO_PFN } from '../base/units.js';
export { ShmemObject } from './shmem.js';

export class HostMm extends MmStruct {
  /**
   * mmap(2) at the arena cursor, as both backends place it (the real backend passes
   * MAP_FIXED_NOREPLACE); `file` is undefined for MAP_ANONYMOUS, null when the fd is not open.
   */
  mmap(
    file: KFile | null | undefined,
    length: bigint,
    prot: number,
    flags: number,
    offset: bigint,
    at?: Hva,
  ): Result<Hva> {
    return doMmap(this, file, length, prot, flags, offset, at);
  }

  /** munmap(2). */
  munmap(addr: Hva, length: bigint): Result<undefined> {
    return vmMunmap(this, addr, length);
  }

  /** mprotect(2). */
  mprotect(addr: Hva, length: bigint, prot: number): Result<undefined> {
    return doMprotect(this, addr, length, prot);
  }

  /**
   * madvise(2). In a forked child, advice over private pages fork left copy-on-write is not
   * modelled (mm/fork.ts).
   */
  madvise(addr: Hva, length: bigint, advice: number): Result<undefined> {
    if (this.cowFromParent.size !== 0 && length > 0n) {
      const s = hvaToHvpn(addr);
      refuseCowAccess(this, s, asHvpn(s + Number(bytesToPagesN(pageAlignUp(length)))));
    }
    return doMadvise(this, addr, length, advice);
  }

  /** `unmap_mapping_range()` of file pages [startPgoff, endPgoff) (guest_memfd truncation). */
  unmapMappingRange(obj: KFile, startPgoff: PgOff, endPgoff: PgOff): void {
    unmapMappingRange(this, obj, startPgoff, endPgoff);
  }

  /** `unmap_mapping_range()` over this and the other address spaces `mms` (fork). */
  static unmapMappingRangeAll(
    mms: readonly HostMm[],
    obj: KFile | ShmemObj,
    startPgoff: PgOff,
    endPgoff: PgOff,
  ): void {
    unmapMappingRangeAll(mms, obj, startPgoff, endPgoff);
  }

  /** `dup_mmap()`: this (empty) address space becomes a forked child's copy of `parent`. */
  dupFrom(parent: HostMm): void {
    dupMmap(parent, this);
  }

  /** `exit_mmap()`: the process exits, every mapping goes. */
  exitMmap(): void {
    exitMmap(this);
  }

  /**
   * handle_mm_fault() for one host virtual page: CPU rules when `cpu`, get_user_pages() rules
   * (KVM's hva_to_pfn()) otherwise. KVM's GUP carries FOLL_KVM, which only a
   * design-2020-protnone-follkvm kernel knows (it lets KVM through VM_KVM_PROTECTED VMAs).
   */
  fault(
    hvpn: Hvpn,
    write: boolean,
    cpu: boolean,
  ): { pfn: Pfn; writable: boolean } | { signal: 'SIGSEGV' | 'SIGBUS' } {
    return handleMmFault(this, hvpn, write, cpu, !cpu);
  }

  /**
   * Set (`protect`) or clear VM_KVM_PROTECTED on [s, e) (design-2020-protnone-follkvm:
   * `__kvm_protect_memory()`); 0 or a negative errno.
   */
  kvmProtect(s: Hvpn, e: Hvpn, protect: boolean): number {
    return kvmProtectVmas(this, s, e, protect);
  }

  /** A CPU access by the VMM to [addr, addr+len) (peek when `write` is null, else poke). */
  access(addr: Hva, len: number, write: Uint8Array | null): UserAccess {
    return cpuAccess(this, addr, len, write);
  }

  /** Fault in [s, e) of one VMA (get_user_pages()); the first page not faulted in. */
  populate(s: Hvpn, e: Hvpn, write: boolean): Hvpn {
    return populate(this, s, e, write);
  }

  /** The host page-table level of a private anonymous page ('2M' when a THP maps it). */
  hostLevel(hvpn: Hvpn): '4K' | '2M' {
    return hostLevel(this, hvpn);
  }

  /** `anon_vma_prepare()`: the VMA containing hvpn now has an anon_vma. */
  markAnonVma(hvpn: Hvpn): void {
    markAnonVma(this, hvpn);
  }

  /** VMA at a host virtual page (value shifted to that page), for KVM's hva lookups. */
  vmaAt(hvpn: Hvpn): Vma | undefined {
    return this.vmas.get(hvpn);
  }
}
