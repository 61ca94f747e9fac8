/**
 * mm/mmap.c and mm/vma.c: mmap(2) (ksys_mmap_pgoff(), do_mmap(), mmap_region(), the overcommit
 * heuristic __vm_enough_memory()), munmap(2) (__vm_munmap(), vms_gather_munmap_vmas(),
 * unmap_region(), free_pgtables()). The VMA tree merges equal neighbours itself (vmaOps,
 * mm_types.ts), as vma_merge() would.
 */
import {
  asHva,
  asHvpn,
  asPgOff,
  bytesToPagesN,
  hvaToHvpn,
  hvpnAdd,
  hvpnToPgOff,
  isPageAligned,
  pageAlignUp,
  type Hva,
  type PgOff,
} from '../base/units.js';
import type { Hvpn } from '../base/units.js';
import { type FileVmaKind, type KFile } from '../vfs/file.js';
import {
  LEGACY_MAP_MASK,
  MAP_ANONYMOUS,
  MAP_DROPPABLE,
  MAP_GROWSDOWN,
  MAP_HUGETLB,
  MAP_LOCKED,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MAP_STACK,
  MAP_TYPE,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from '../base/uapi.js';
import {
  MMAP_ARENA_END,
  hugetlbPageSize,
  mmapPlacedLength,
  nextArenaCursor,
} from './host_layout.js';
import {
  VMA_ACCOUNT,
  VMA_DONTDUMP,
  VMA_DROPPABLE,
  VMA_HUGETLB,
  VMA_HUGETLB_1G,
  VMA_NOHUGEPAGE,
  VMA_NORESERVE,
  VMA_WIPEONFORK,
  type MmStruct,
  type Vma,
  type VmaKind,
} from './mm_types.js';
import { OK_VOID, err, ok, type Result } from '../base/result.js';
import { ShmemObject, putShmem } from './shmem.js';
import { freeAnon } from './memory.js';
import { hugetlbSplitRefused } from './hugetlb.js';
import { populate } from './gup.js';

/**
 * mmap(2) at the arena cursor, as both backends place it (the real backend passes
 * MAP_FIXED_NOREPLACE). Reproduces ksys_mmap_pgoff() and do_mmap() checks in order; `file` is
 * undefined for MAP_ANONYMOUS, null when the fd is not open.
 */
export function doMmap(
  mm: MmStruct,
  file: KFile | null | undefined,
  length: bigint,
  prot: number,
  flags: number,
  offset: bigint,
  at?: Hva,
): Result<Hva> {
  // Placement first, as the backends do before calling mmap: the page-rounded mapping must fit
  // in what is left of the arena.
  if (at === undefined) {
    const r = mmapPlacedLength(length, flags, (flags & MAP_ANONYMOUS) !== 0);
    if (r === undefined || mm.cursor + r > MMAP_ARENA_END)
      return err('ENOMEM', 'trace arena: no room for the mapping');
  }
  // sys_mmap (x86): the byte offset must be page aligned.
  if (!isPageAligned(offset)) return err('EINVAL', 'mmap: offset not page aligned');
  const pgoffBig = bytesToPagesN(BigInt.asUintN(64, offset));
  const anonymous = (flags & MAP_ANONYMOUS) !== 0;
  // ksys_mmap_pgoff(): resolve the fd unless MAP_ANONYMOUS.
  if (!anonymous && file === null) return err('EBADF', 'mmap: fd not open');
  if (!anonymous && file === undefined) return err('EBADF', 'mmap: fd not open');
  const f = anonymous ? null : (file as KFile);
  // ksys_mmap_pgoff(): MAP_HUGETLB on a file that is not hugetlbfs is refused; an anonymous
  // MAP_HUGETLB becomes a hugetlbfs file of the selected huge page size, len aligned to it.
  const hugetlb = anonymous && (flags & MAP_HUGETLB) !== 0;
  const hugeSize = hugetlb ? hugetlbPageSize(flags) : undefined;
  if (f !== null && (flags & MAP_HUGETLB) !== 0)
    return err('EINVAL', 'ksys_mmap_pgoff: MAP_HUGETLB on a file that is not hugetlbfs');
  if (hugetlb && hugeSize === undefined)
    return err('EINVAL', 'ksys_mmap_pgoff: no hstate for the MAP_HUGE_* size');
  // do_mmap()
  if (length === 0n) return err('EINVAL', 'do_mmap: len == 0');
  const rounded = mmapPlacedLength(length, flags, anonymous);
  if (rounded === undefined || rounded === 0n)
    return err('ENOMEM', 'do_mmap: PAGE_ALIGN(len) overflows');
  const npagesBig = bytesToPagesN(rounded);
  if (pgoffBig + npagesBig > 0xffff_ffff_ffff_ffffn)
    return err('EOVERFLOW', 'do_mmap: pgoff + pages wraps');
  // `at`: a backend-internal mapping outside the trace arena (the trace code page).
  const addr = at ?? mm.cursor;
  // __get_unmapped_area() with a fixed address: the mapping must fit in the arena/TASK_SIZE.
  if (
    (at === undefined && addr + rounded > MMAP_ARENA_END) ||
    addr + rounded > mm.k.profile.taskSizeMax
  )
    return err('ENOMEM', 'get_unmapped_area: no room');
  // hugetlb_get_unmapped_area() with MAP_FIXED: the address must be huge page aligned.
  if (hugeSize !== undefined && addr % hugeSize !== 0n)
    return err('EINVAL', 'hugetlb_get_unmapped_area: address not huge page aligned');
  const npages = Number(npagesBig);
  const pgoff = asPgOff(Number(pgoffBig));
  let shared: boolean;
  let mayExec = true;
  const growsdown = (flags & MAP_GROWSDOWN) !== 0;
  if (f !== null || hugetlb) {
    // The file branch of do_mmap(), also taken for the hugetlbfs file behind an anonymous
    // MAP_HUGETLB. file_mmap_ok(): guest_memfd and hugetlbfs files are regular files (max size
    // MAX_LFS_FILESIZE); the vCPU's anonymous inode allows any unsigned long.
    const maxsize = f === null ? (1n << 63n) - 1n : f.mmapMaxBytes;
    if (rounded > maxsize || pgoffBig > bytesToPagesN(maxsize - rounded))
      return err('EOVERFLOW', 'file_mmap_ok: offset range too large');
    switch (flags & MAP_TYPE) {
      case MAP_SHARED:
      case MAP_SHARED_VALIDATE:
        // MAP_SHARED drops unknown bits; MAP_SHARED_VALIDATE rejects them (the backends place
        // MAP_SHARED_VALIDATE mappings with MAP_FIXED, the others with MAP_FIXED_NOREPLACE).
        if ((flags & MAP_TYPE) === MAP_SHARED_VALIDATE && (flags & ~LEGACY_MAP_MASK) !== 0)
          return err(
            'EOPNOTSUPP',
            'do_mmap: MAP_SHARED_VALIDATE with flags outside LEGACY_MAP_MASK',
          );
        shared = true;
        break;
      case MAP_PRIVATE:
        shared = false;
        break;
      default:
        return err('EINVAL', 'do_mmap: bad MAP_TYPE');
    }
    // noexec mount (anon inodes, guest_memfd; not hugetlbfs): PROT_EXEC is refused, VM_MAYEXEC
    // dropped.
    if (f !== null && f.noexec) {
      if ((prot & PROT_EXEC) !== 0) return err('EPERM', 'do_mmap: PROT_EXEC on a noexec mount');
      mayExec = false;
    }
    if (f !== null && !f.hasMmap) return err('ENODEV', 'do_mmap: file has no mmap');
    if (growsdown) return err('EINVAL', 'do_mmap: VM_GROWSDOWN on a file mapping');
  } else {
    switch (flags & MAP_TYPE) {
      case MAP_SHARED:
        if (growsdown) return err('EINVAL', 'do_mmap: VM_GROWSDOWN on a shared mapping');
        shared = true;
        break;
      case MAP_DROPPABLE:
        // A droppable mapping is private anonymous memory that is never charged (VM_NORESERVE)
        // and that the kernel may drop under memory pressure (never, on the modelled hosts).
        if ((flags & MAP_LOCKED) !== 0) return err('EINVAL', 'do_mmap: MAP_DROPPABLE|MAP_LOCKED');
        if (growsdown) return err('EINVAL', 'do_mmap: MAP_DROPPABLE|MAP_GROWSDOWN');
        shared = false;
        break;
      case MAP_PRIVATE:
        shared = false;
        break;
      default:
        return err('EINVAL', 'do_mmap: bad MAP_TYPE for an anonymous mapping');
    }
  }
  // Overcommit heuristic (vm.overcommit_memory = 0): a single accountable mapping larger than
  // RAM fails. Accountable: private writable, or shared anonymous, without MAP_NORESERVE.
  const droppable = f === null && !hugetlb && (flags & MAP_TYPE) === MAP_DROPPABLE;
  const accountable =
    !hugetlb &&
    !droppable &&
    ((f === null && shared) ||
      (!shared && (prot & PROT_WRITE) !== 0 && (f === null || f.chargesPrivateWrites)));
  if (accountable && (flags & MAP_NORESERVE) === 0 && npages > mm.k.profile.hostRamPages)
    return err('ENOMEM', '__vm_enough_memory: mapping larger than RAM');
  // ->mmap() of the file.
  if (hugeSize !== undefined) {
    // hugetlbfs_file_mmap(): the offset must be huge page aligned, and without MAP_NORESERVE
    // the pages are reserved now, which fails: the modelled hosts have no huge pages.
    if (offset % hugeSize !== 0n) return err('EINVAL', 'hugetlbfs_file_mmap: offset not aligned');
    if ((flags & MAP_NORESERVE) === 0)
      return err('ENOMEM', 'hugetlb_reserve_pages: no huge pages in the pool');
  }
  // mmap_region() → call_mmap(): the file's own ->mmap() (kvm_gmem_mmap(), kvm_vcpu_mmap()).
  let fileKind: FileVmaKind | undefined;
  if (f !== null) {
    const r = f.mmap(shared);
    if (!r.ok) return r;
    fileKind = r.value;
  }
  const startHvpn = hvaToHvpn(addr);
  let obj: ShmemObject | KFile | null = null;
  let kind: VmaKind;
  let base: PgOff;
  if (f === null) {
    if (shared && !hugetlb) {
      obj = new ShmemObject(mm.nextShmemId++, npages);
      kind = 'shmem';
      base = asPgOff(0);
    } else {
      kind = 'anon';
      base = hvpnToPgOff(startHvpn);
    }
  } else {
    obj = f;
    kind = fileKind!;
    base = pgoff;
  }
  const vma: Vma = {
    base,
    kind,
    obj,
    prot: prot & (PROT_READ | PROT_WRITE | PROT_EXEC),
    shared,
    mayExec,
    locked: (flags & MAP_LOCKED) !== 0,
    growsdown,
    // mmap_region(): accountable_mapping() (private writable, not NORESERVE) → VM_ACCOUNT.
    flags:
      ((flags & MAP_NORESERVE) !== 0 || droppable
        ? VMA_NORESERVE
        : !shared && (prot & PROT_WRITE) !== 0 && !hugetlb
          ? VMA_ACCOUNT
          : 0) |
      (droppable ? VMA_DROPPABLE | VMA_WIPEONFORK | VMA_DONTDUMP : 0) |
      // calc_vm_flag_bits(): MAP_STACK implies VM_NOHUGEPAGE.
      ((flags & MAP_STACK) !== 0 ? VMA_NOHUGEPAGE : 0) |
      (hugeSize === undefined ? 0 : VMA_HUGETLB | (hugeSize === 1n << 30n ? VMA_HUGETLB_1G : 0)),
  };
  mm.vmas.set(startHvpn, startHvpn + npages, vma);
  if (obj instanceof ShmemObject) obj.mappedPages += npages;
  else if (obj !== null) mm.k.getFileMapping(obj, npages);
  if (at === undefined) mm.cursor = asHva(nextArenaCursor(addr, rounded));
  if ((flags & MAP_POPULATE) !== 0 || (flags & MAP_LOCKED) !== 0) {
    // populate_vma_page_range(): fault every page in (FOLL_WRITE for private writable
    // mappings, which breaks copy-on-write now); errors are ignored.
    const write = !shared && (prot & PROT_WRITE) !== 0;
    populate(mm, startHvpn, hvpnAdd(startHvpn, npages), write);
  }
  return ok(addr);
}

/** munmap(2): `__vm_munmap()` checks, then unmap (mmu notifier first, then drop pages/refs). */
export function vmMunmap(mm: MmStruct, addr: Hva, length: bigint): Result<undefined> {
  if (!isPageAligned(addr)) return err('EINVAL', 'munmap: address not page aligned');
  const task = mm.k.profile.taskSizeMax;
  if (addr > task || length > task - addr) return err('EINVAL', 'munmap: range beyond TASK_SIZE');
  const rounded = pageAlignUp(length);
  if (rounded === 0n) return err('EINVAL', 'munmap: length 0');
  const s = hvaToHvpn(addr);
  const e = hvpnAdd(s, Number(bytesToPagesN(rounded)));
  // vms_gather_munmap_vmas(): the VMAs at both ends are split before anything is unmapped.
  for (const x of [mm.vmas.entryAt(s), mm.vmas.entryAt(e - 1)])
    if (x !== undefined && hugetlbSplitRefused(x.value, x, s, e))
      return err('EINVAL', 'hugetlb_vm_op_split: not at a huge page boundary');
  unmapRange(mm, s, e);
  return OK_VOID;
}

/** Remove every VMA page in [s, e), with the effects of unmap_region(). */
export function unmapRange(mm: MmStruct, s: Hvpn, e: Hvpn): void {
  if (!mm.vmas.anyIn(s, e)) return;
  mm.notifiers.invalidateRangeStart(s, e);
  const pieces = mm.vmas.piecesIn(s, e);
  mm.vmas.delete(s, e);
  // Unmapping is the only thing that removes guard markers.
  mm.guards.delete(s, e);
  mm.anonVmas.delete(s, e);
  mm.gmemPtes.delete(s, e);
  if (mm.cowFromParent.size !== 0) mm.cowFromParent.delete(s, e);
  for (const p of pieces) {
    const n = p.end - p.start;
    const v = p.value;
    // Private anonymous pages, and copy-on-write copies in private file mappings, are freed.
    if (!v.shared) freeAnon(mm, asHvpn(p.start), asHvpn(p.end));
    if (v.obj instanceof ShmemObject) putShmem(mm.k, v.obj, n);
    else if (v.obj !== null) mm.k.putFileMapping(v.obj, n);
  }
  // free_pgtables() (floor/ceiling = the neighbouring VMAs): a 2 MiB frame that no VMA
  // intersects any more loses its page table.
  if (mm.pteTables.size !== 0) {
    const inner0 = Math.ceil(s / 512) * 512;
    const inner1 = Math.floor(e / 512) * 512;
    if (inner0 < inner1) mm.pteTables.delete(inner0, inner1);
    for (const f of [Math.floor(s / 512) * 512, Math.floor((e - 1) / 512) * 512])
      if (!mm.vmas.anyIn(f, f + 512)) mm.pteTables.delete(f, f + 512);
  }
}
