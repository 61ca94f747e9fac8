/**
 * The VMM process's address space (mm/mmap.c, mm/mprotect.c, mm/madvise.c and the page-fault
 * paths the model needs): VMAs, private anonymous pages, shmem objects behind MAP_SHARED
 * anonymous mappings, file mappings of guest_memfd and vCPU fds, and the two ways memory is
 * touched: a CPU access by the VMM (peek/poke: SIGSEGV/SIGBUS) and get_user_pages() by KVM.
 *
 * Host PTEs of file mappings are not tracked: whether a PTE is present is never observable — a
 * later access refaults against the page cache, which is the state that matters. Private
 * anonymous memory *is* its page table, so `anon` is keyed by host virtual page.
 */
import type { MmCtx } from './mm_ctx.js';
import { RangeMap, extentOps } from '../base/ranges/range_map.js';
import { KFile, pageExtentOps, type FileVmaKind, type PageExtent } from '../vfs/file.js';
import { err, ok, OK_VOID, type Result } from '../base/result.js';
import {
  MADV_COLD,
  MADV_COLLAPSE,
  MADV_DODUMP,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
  MADV_DOFORK,
  MADV_DONTDUMP,
  MADV_DONTFORK,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_HUGEPAGE,
  MADV_KEEPONFORK,
  MADV_MERGEABLE,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_RANDOM,
  MADV_REMOVE,
  MADV_SEQUENTIAL,
  MADV_UNMERGEABLE,
  MADV_WILLNEED,
  MADV_WIPEONFORK,
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
  PROT_GROWSDOWN,
  PROT_GROWSUP,
  PROT_READ,
  PROT_SEM,
  PROT_WRITE,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  LEGACY_MAP_MASK,
} from '../base/uapi.js';
import {
  MMAP_ARENA_END,
  hugetlbPageSize,
  mmapPlacedLength,
  nextArenaCursor,
  MMAP_ARENA_BASE,
} from './host_layout.js';
import { PAGE_SIZE, ZERO_PFN, type Pfn } from '../base/units.js';
import { MmuNotifierList } from './mmu_notifier.js';
import { hostAccessFrame } from './host_access.js';

export { ZERO_PFN };

/** Object behind a MAP_SHARED|MAP_ANONYMOUS mapping (a shmem file of the mapping's size). */
export class ShmemObject {
  readonly pages = new RangeMap<PageExtent>(pageExtentOps);
  mappedPages = 0;
  constructor(
    readonly id: number,
    readonly npages: number,
  ) {}
}

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

/** Base pages per huge page of a hugetlb VMA (0 for any other VMA). */
function hugetlbPages(v: Vma): number {
  if ((v.flags & VMA_HUGETLB) === 0) return 0;
  return (v.flags & VMA_HUGETLB_1G) !== 0 ? 1 << 18 : 512;
}

/** __split_vma() → hugetlb_vm_op_split(): a hugetlb VMA splits only at huge page boundaries. */
function hugetlbSplitRefused(
  v: Vma,
  ent: { start: number; end: number },
  s: number,
  e: number,
): boolean {
  const hp = hugetlbPages(v);
  return hp !== 0 && ((s > ent.start && s % hp !== 0) || (e < ent.end && e % hp !== 0));
}

/**
 * A VMA extent. `base` is the file page offset (vm_pgoff) of the extent's first page; for
 * private anonymous memory it is the virtual page number, as in Linux.
 */
export type Vma = {
  readonly base: number;
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

export type UserAccess =
  | { readonly ok: true; readonly data?: Uint8Array }
  | { readonly ok: false; readonly fault: 'SIGSEGV' | 'SIGBUS' };

export class HostMm {
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
  /** Next address the trace arena hands out. */
  cursor = MMAP_ARENA_BASE;
  private nextShmemId = 1;

  constructor(private readonly k: MmCtx) {}

  // ---------------------------------------------------------------------------------------------
  // mmap / munmap / mprotect / madvise

  /**
   * mmap(2) at the arena cursor, as both backends place it (the real backend passes
   * MAP_FIXED_NOREPLACE). Reproduces ksys_mmap_pgoff() and do_mmap() checks in order; `file` is
   * undefined for MAP_ANONYMOUS, null when the fd is not open.
   */
  mmap(
    file: KFile | null | undefined,
    length: bigint,
    prot: number,
    flags: number,
    offset: bigint,
    at?: bigint,
  ): Result<bigint> {
    // Placement first, as the backends do before calling mmap: the page-rounded mapping must fit
    // in what is left of the arena.
    if (at === undefined) {
      const r = mmapPlacedLength(length, flags, (flags & MAP_ANONYMOUS) !== 0);
      if (r === undefined || this.cursor + r > MMAP_ARENA_END)
        return err('ENOMEM', 'trace arena: no room for the mapping');
    }
    // sys_mmap (x86): the byte offset must be page aligned.
    if ((offset & 4095n) !== 0n) return err('EINVAL', 'mmap: offset not page aligned');
    const pgoffBig = BigInt.asUintN(64, offset) >> 12n;
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
    const npagesBig = rounded >> 12n;
    if (pgoffBig + npagesBig > 0xffff_ffff_ffff_ffffn)
      return err('EOVERFLOW', 'do_mmap: pgoff + pages wraps');
    // `at`: a backend-internal mapping outside the trace arena (the trace code page).
    const addr = at ?? this.cursor;
    // __get_unmapped_area() with a fixed address: the mapping must fit in the arena/TASK_SIZE.
    if (
      (at === undefined && addr + rounded > MMAP_ARENA_END) ||
      addr + rounded > this.k.profile.taskSizeMax
    )
      return err('ENOMEM', 'get_unmapped_area: no room');
    // hugetlb_get_unmapped_area() with MAP_FIXED: the address must be huge page aligned.
    if (hugeSize !== undefined && addr % hugeSize !== 0n)
      return err('EINVAL', 'hugetlb_get_unmapped_area: address not huge page aligned');
    const npages = Number(npagesBig);
    const pgoff = Number(pgoffBig);
    let shared: boolean;
    let mayExec = true;
    const growsdown = (flags & MAP_GROWSDOWN) !== 0;
    if (f !== null || hugetlb) {
      // The file branch of do_mmap(), also taken for the hugetlbfs file behind an anonymous
      // MAP_HUGETLB. file_mmap_ok(): guest_memfd and hugetlbfs files are regular files (max size
      // MAX_LFS_FILESIZE); the vCPU's anonymous inode allows any unsigned long.
      const maxsize = f === null ? (1n << 63n) - 1n : f.mmapMaxBytes;
      if (rounded > maxsize || pgoffBig > (maxsize - rounded) >> 12n)
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
    if (accountable && (flags & MAP_NORESERVE) === 0 && npages > this.k.profile.hostRamPages)
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
    const startHvpn = Number(addr >> 12n);
    let obj: ShmemObject | KFile | null = null;
    let kind: VmaKind;
    let base: number;
    if (f === null) {
      if (shared && !hugetlb) {
        obj = new ShmemObject(this.nextShmemId++, npages);
        kind = 'shmem';
        base = 0;
      } else {
        kind = 'anon';
        base = startHvpn;
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
    this.vmas.set(startHvpn, startHvpn + npages, vma);
    if (obj instanceof ShmemObject) obj.mappedPages += npages;
    else if (obj !== null) this.k.getFileMapping(obj, npages);
    if (at === undefined) this.cursor = nextArenaCursor(addr, rounded);
    if ((flags & MAP_POPULATE) !== 0 || (flags & MAP_LOCKED) !== 0) {
      // populate_vma_page_range(): fault every page in (FOLL_WRITE for private writable
      // mappings, which breaks copy-on-write now); errors are ignored.
      const write = !shared && (prot & PROT_WRITE) !== 0;
      this.populate(startHvpn, startHvpn + npages, write);
    }
    return ok(addr);
  }

  /** munmap(2): `__vm_munmap()` checks, then unmap (mmu notifier first, then drop pages/refs). */
  munmap(addr: bigint, length: bigint): Result<undefined> {
    if ((addr & 4095n) !== 0n) return err('EINVAL', 'munmap: address not page aligned');
    const task = this.k.profile.taskSizeMax;
    if (addr > task || length > task - addr) return err('EINVAL', 'munmap: range beyond TASK_SIZE');
    const rounded = (length + 4095n) & ~4095n;
    if (rounded === 0n) return err('EINVAL', 'munmap: length 0');
    const s = Number(addr >> 12n);
    const e = s + Number(rounded >> 12n);
    // vms_gather_munmap_vmas(): the VMAs at both ends are split before anything is unmapped.
    for (const x of [this.vmas.entryAt(s), this.vmas.entryAt(e - 1)])
      if (x !== undefined && hugetlbSplitRefused(x.value, x, s, e))
        return err('EINVAL', 'hugetlb_vm_op_split: not at a huge page boundary');
    this.unmapRange(s, e);
    return OK_VOID;
  }

  /**
   * `unmap_mapping_range()` as truncation reaches it (truncate_cleanup_folio() on a mapped
   * folio): remove the PTEs of file pages [startPgoff, endPgoff) from every VMA that maps them,
   * each removal notifying KVM for the host pages concerned. The VMAs stay.
   */
  unmapMappingRange(obj: KFile, startPgoff: number, endPgoff: number): void {
    if (obj.mappedPages === 0) return;
    const views: Array<{ s: number; e: number; lo: number }> = [];
    // unmap_mapping_folio() runs only for folios mapped somewhere, and it drops guard markers
    // (ZAP_FLAG_DROP_MARKER) over the folio in every mapping of the file [verified].
    const mapped = new RangeMap<true>();
    for (const v of this.vmas.entries()) {
      if (v.value.obj !== obj) continue;
      const lo = Math.max(startPgoff, v.value.base);
      const hi = Math.min(endPgoff, v.value.base + (v.end - v.start));
      if (lo >= hi) continue;
      const view = { s: v.start + (lo - v.value.base), e: v.start + (hi - v.value.base), lo };
      views.push(view);
      if (this.gmemPtes.size !== 0)
        for (const p of this.gmemPtes.piecesIn(view.s, view.e))
          mapped.set(lo + (p.start - view.s), lo + (p.end - view.s), true);
    }
    for (const view of views) {
      this.notifiers.invalidateRangeStart(view.s, view.e);
      if (this.gmemPtes.size !== 0) this.gmemPtes.delete(view.s, view.e);
      if (this.guards.size === 0 || mapped.size === 0) continue;
      for (const m of mapped.piecesIn(view.lo, view.lo + (view.e - view.s)))
        this.guards.delete(view.s + (m.start - view.lo), view.s + (m.end - view.lo));
    }
  }

  /** Remove every VMA page in [s, e), with the effects of unmap_region(). */
  private unmapRange(s: number, e: number): void {
    if (!this.vmas.anyIn(s, e)) return;
    this.notifiers.invalidateRangeStart(s, e);
    const pieces = this.vmas.piecesIn(s, e);
    this.vmas.delete(s, e);
    // Unmapping is the only thing that removes guard markers.
    this.guards.delete(s, e);
    this.anonVmas.delete(s, e);
    this.gmemPtes.delete(s, e);
    for (const p of pieces) {
      const n = p.end - p.start;
      const v = p.value;
      // Private anonymous pages, and copy-on-write copies in private file mappings, are freed.
      if (!v.shared) this.freeAnon(p.start, p.end);
      if (v.obj instanceof ShmemObject) this.putShmem(v.obj, n);
      else if (v.obj !== null) this.k.putFileMapping(v.obj, n);
    }
    // free_pgtables() (floor/ceiling = the neighbouring VMAs): a 2 MiB frame that no VMA
    // intersects any more loses its page table.
    if (this.pteTables.size !== 0) {
      const inner0 = Math.ceil(s / 512) * 512;
      const inner1 = Math.floor(e / 512) * 512;
      if (inner0 < inner1) this.pteTables.delete(inner0, inner1);
      for (const f of [Math.floor(s / 512) * 512, Math.floor((e - 1) / 512) * 512])
        if (!this.vmas.anyIn(f, f + 512)) this.pteTables.delete(f, f + 512);
    }
  }

  /** The 2 MiB frames over host pages [s, e) get a page table (a fault, or a THP split). */
  private notePteTable(s: number, e: number): void {
    const f0 = Math.floor(s / 512) * 512;
    const f1 = Math.ceil(e / 512) * 512;
    if (!this.pteTables.covers(f0, f1)) this.pteTables.set(f0, f1, true);
  }

  private freeAnon(s: number, e: number): void {
    this.splitThp(s, e);
    const pages = this.anon.piecesIn(s, e);
    if (pages.length === 0) return;
    this.anon.delete(s, e);
    for (const p of pages) {
      this.k.frames.release(p.value.base, p.end - p.start);
      this.k.events.push({ kind: 'anon_free', hvpn: p.start, pages: p.end - p.start });
    }
  }

  private putShmem(obj: ShmemObject, pages: number): void {
    obj.mappedPages -= pages;
    if (obj.mappedPages > 0) return;
    for (const p of obj.pages.entries()) {
      this.k.frames.release(p.value.base, p.end - p.start);
      this.k.events.push({ kind: 'shmem_free', obj: obj.id, start: p.start, end: p.end });
    }
    obj.pages.clear();
  }

  /**
   * mprotect(2) (do_mprotect_pkey): validate, then change VMAs from `start` while they are
   * contiguous; a hole gives ENOMEM after the VMAs before it were changed.
   */
  mprotect(addr: bigint, length: bigint, prot: number): Result<undefined> {
    const grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
    if (grows === (PROT_GROWSDOWN | PROT_GROWSUP))
      return err('EINVAL', 'mprotect: both GROWSDOWN and GROWSUP');
    if ((addr & 4095n) !== 0n) return err('EINVAL', 'mprotect: address not page aligned');
    if (length === 0n) return OK_VOID;
    const rounded = (length + 4095n) & ~4095n;
    const end = addr + rounded;
    if (rounded === 0n || end <= addr || end > 0xffff_ffff_ffff_ffffn)
      return err('ENOMEM', 'mprotect: range wraps');
    if (
      (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP)) !==
      0
    )
      return err('EINVAL', 'mprotect: unknown prot bits');
    const newProt = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
    if (addr >= this.k.profile.taskSizeMax) return err('ENOMEM', 'mprotect: no VMA');
    let s = Number(addr >> 12n);
    const e = Math.min(Number(end >> 12n), Number(this.k.profile.taskSizeMax >> 12n) + 1);
    // do_mprotect_pkey(): vma_find() takes the first VMA that intersects [start, end).
    let first = this.vmas.entryAt(s);
    if (first === undefined) {
      const next = this.vmas.ceilEntry(s);
      if (next !== undefined && next.start < e) first = next;
    }
    if (first === undefined) return err('ENOMEM', 'mprotect: no VMA in range');
    if ((grows & PROT_GROWSDOWN) !== 0) {
      // PROT_GROWSDOWN moves the start to that VMA's start (down into it, or up over a hole
      // before it); only a growsdown VMA accepts it.
      if (!first.value.growsdown)
        return err('EINVAL', 'mprotect: PROT_GROWSDOWN on a non-growsdown VMA');
      s = first.start;
    } else {
      if (first.start > s) return err('ENOMEM', 'mprotect: no VMA at start');
      // x86 has no VM_GROWSUP.
      if ((grows & PROT_GROWSUP) !== 0)
        return err('EINVAL', 'mprotect: PROT_GROWSUP on a non-growsup VMA');
    }
    let cur = s;
    const changes: Array<{ s: number; e: number; v: Vma }> = [];
    let result: Result<undefined> = OK_VOID;
    while (cur < e) {
      const ent = this.vmas.entryAt(cur);
      if (ent === undefined) {
        result = err('ENOMEM', 'mprotect: hole in range');
        break;
      }
      const v = this.vmas.get(cur)!;
      // VM_MAY* checks: exec on a noexec file mapping → EACCES.
      if ((newProt & PROT_EXEC) !== 0 && !v.mayExec) {
        result = err('EACCES', 'mprotect: PROT_EXEC without VM_MAYEXEC');
        break;
      }
      const pe = Math.min(ent.end, e);
      if (newProt !== v.prot && hugetlbSplitRefused(v, ent, cur, pe)) {
        result = err('EINVAL', 'hugetlb_vm_op_split: not at a huge page boundary');
        break;
      }
      // mprotect_fixup(): making a private mapping writable charges its pages to the commit
      // limit (security_vm_enough_memory_mm, the overcommit heuristic: more than RAM fails, and
      // this VMA and those after it stay unchanged); a write-less anonymous VMA that never got
      // an anon_vma gives its charge back.
      let flags = v.flags;
      if ((newProt & PROT_WRITE) !== 0) {
        if (
          (v.prot & PROT_WRITE) === 0 &&
          !v.shared &&
          (v.flags & (VMA_ACCOUNT | VMA_NORESERVE)) === 0
        ) {
          if (pe - cur > this.k.profile.hostRamPages) {
            result = err('ENOMEM', 'mprotect_fixup: __vm_enough_memory refuses the charge');
            break;
          }
          flags |= VMA_ACCOUNT;
        }
      } else if ((flags & VMA_ACCOUNT) !== 0 && v.kind === 'anon' && !this.hasAnonVma(cur))
        flags &= ~VMA_ACCOUNT;
      changes.push({ s: cur, e: pe, v: { ...v, prot: newProt, flags } });
      cur = pe;
    }
    for (const c of changes) {
      const old = this.vmas.get(c.s)!;
      if (old.prot === c.v.prot && old.flags === c.v.flags) continue;
      // change_protection() notifies secondary MMUs when permissions are reduced.
      if ((old.prot & ~c.v.prot) !== 0) this.notifiers.invalidateRangeStart(c.s, c.e);
      // A VMA split inside a THP splits its PMD mapping.
      if (c.s % 512 !== 0) this.splitThp(c.s, c.s + 1);
      if (c.e % 512 !== 0) this.splitThp(c.e - 1, c.e);
      this.vmas.set(c.s, c.e, c.v);
    }
    return result;
  }

  /** madvise(2): the behaviours in MADV_KNOWN; per-VMA checks as in mm/madvise.c. */
  madvise(addr: bigint, length: bigint, advice: number): Result<undefined> {
    if (!MADV_KNOWN.has(advice)) return err('EINVAL', 'madvise: unknown advice');
    if ((addr & 4095n) !== 0n) return err('EINVAL', 'madvise: start not page aligned');
    const rounded = (length + 4095n) & ~4095n;
    if (length !== 0n && rounded === 0n) return err('EINVAL', 'madvise: length overflows');
    if (rounded > 0xffff_ffff_ffff_ffffn) return err('EINVAL', 'madvise: length overflows');
    const end = addr + rounded;
    if (end > 0xffff_ffff_ffff_ffffn) return err('EINVAL', 'madvise: end wraps');
    if (end === addr) return OK_VOID;
    if (addr >= this.k.profile.taskSizeMax) return err('ENOMEM', 'madvise: no VMA');
    const s = Number(addr >> 12n);
    const e = Math.min(Number(end >> 12n), Number(this.k.profile.taskSizeMax >> 12n));
    // madvise_walk_vmas(): act on each VMA piece; remember an unmapped gap as ENOMEM.
    // madvise_populate() instead faults from the start and stops at the first gap
    // (__get_user_pages() with FOLL_MADV_POPULATE: no VMA → ENOMEM).
    const populate = advice === MADV_POPULATE_READ || advice === MADV_POPULATE_WRITE;
    let unmappedError = false;
    let cur = s;
    while (cur < e) {
      const ent = this.vmas.entryAt(cur);
      if (ent === undefined) {
        if (populate) return err('ENOMEM', 'madvise_populate: no VMA');
        unmappedError = true;
        const next = this.vmas.ceilEntry(cur);
        if (next === undefined || next.start >= e) break;
        cur = next.start;
        continue;
      }
      const pe = Math.min(ent.end, e);
      const v = this.vmas.get(cur)!;
      const r = this.madviseVma(cur, pe, v, advice);
      if (!r.ok) return r;
      cur = pe;
    }
    return unmappedError ? err('ENOMEM', 'madvise: range has unmapped pages') : OK_VOID;
  }

  private setVmaFlags(s: number, e: number, v: Vma, set: number, clear: number): Result<undefined> {
    const flags = (v.flags | set) & ~clear;
    if (flags === v.flags) return OK_VOID;
    if (hugetlbSplitRefused(v, this.vmas.entryAt(s)!, s, e))
      return err('EINVAL', 'hugetlb_vm_op_split: not at a huge page boundary');
    // A VMA split inside a THP splits its PMD mapping (vma_adjust_trans_huge()).
    if (s % 512 !== 0) this.splitThp(s, s + 1);
    if (e % 512 !== 0) this.splitThp(e - 1, e);
    this.vmas.set(s, e, { ...v, flags });
    return OK_VOID;
  }

  private madviseVma(s: number, e: number, v: Vma, advice: number): Result<undefined> {
    if ((v.flags & VMA_HUGETLB) !== 0) {
      // hugetlb VMAs [each verified on both a private and a shared mapping]: there is nothing to
      // free, drop, collapse or guard; the flag-setting advice splits only at huge page
      // boundaries (setVmaFlags).
      switch (advice) {
        case MADV_FREE:
        case MADV_WIPEONFORK:
        case MADV_COLD:
        case MADV_PAGEOUT:
        case MADV_COLLAPSE:
        case MADV_GUARD_INSTALL:
        case MADV_GUARD_REMOVE:
          return err('EINVAL', 'madvise: not for a hugetlb VMA');
        case MADV_DONTNEED:
        case MADV_DONTNEED_LOCKED:
          // madvise_dontneed_free_valid_vma(): the start must be huge page aligned (the end is
          // rounded down); VM_LOCKED does not matter here.
          if (s % hugetlbPages(v) !== 0)
            return err('EINVAL', 'madvise_dontneed_free_valid_vma: hugetlb start not aligned');
          return OK_VOID;
        case MADV_REMOVE:
          if (v.locked) return err('EINVAL', 'madvise_remove: VM_LOCKED');
          if (!v.shared) return err('EACCES', 'madvise_remove: not a shared mapping');
          return OK_VOID;
        case MADV_MERGEABLE:
          // ksm_madvise() leaves VM_HUGETLB VMAs alone.
          return this.k.profile.ksm ? OK_VOID : err('EINVAL', 'madvise: KSM not configured');
      }
    }
    switch (advice) {
      case MADV_NORMAL:
        return this.setVmaFlags(s, e, v, 0, VMA_RAND_READ | VMA_SEQ_READ);
      case MADV_RANDOM:
        return this.setVmaFlags(s, e, v, VMA_RAND_READ, VMA_SEQ_READ);
      case MADV_SEQUENTIAL:
        return this.setVmaFlags(s, e, v, VMA_SEQ_READ, VMA_RAND_READ);
      case MADV_WILLNEED:
      case MADV_COLD:
      case MADV_PAGEOUT:
        if ((advice === MADV_COLD || advice === MADV_PAGEOUT) && v.locked)
          return err('EINVAL', 'madvise: COLD/PAGEOUT on VM_LOCKED');
        // Reclaim discards droppable pages instead of swapping them: the data is gone.
        if (advice === MADV_PAGEOUT && (v.flags & VMA_DROPPABLE) !== 0) {
          this.notifiers.invalidateRangeStart(s, e);
          this.freeAnon(s, e);
        }
        return OK_VOID;
      case MADV_DONTNEED:
      case MADV_DONTNEED_LOCKED:
        if (advice === MADV_DONTNEED && v.locked)
          return err('EINVAL', 'madvise_dontneed_free_valid_vma: VM_LOCKED');
        // zap_page_range_single(): notify KVM, then drop PTEs. Private anonymous pages are freed
        // (the next access sees zeros); shared and file pages stay in their page cache.
        this.notifiers.invalidateRangeStart(s, e);
        if (!v.shared) this.freeAnon(s, e);
        if (v.kind === 'gmem' && this.gmemPtes.size !== 0) this.gmemPtes.delete(s, e);
        // zap_pte_range() with reclaim_pt (CONFIG_PT_RECLAIM): a page table whose whole 2 MiB the
        // zap covers, now all none, is freed.
        if (v.kind === 'anon' && this.pteTables.size !== 0) {
          const f0 = Math.ceil(s / 512) * 512;
          const f1 = Math.floor(e / 512) * 512;
          if (f0 < f1) this.pteTables.delete(f0, f1);
        }
        return OK_VOID;
      case MADV_FREE:
        if (v.kind !== 'anon') return err('EINVAL', 'madvise_free: not anonymous');
        if (v.locked) return err('EINVAL', 'madvise_free: VM_LOCKED');
        // Lazy free: without memory pressure the pages (and their contents) stay.
        return OK_VOID;
      case MADV_REMOVE: {
        if (v.locked) return err('EINVAL', 'madvise_remove: VM_LOCKED');
        if (v.kind === 'anon') return err('EINVAL', 'madvise_remove: no file');
        // vma_is_shared_maywrite(): VM_SHARED and VM_MAYWRITE (every file here is open O_RDWR).
        if (!v.shared) return err('EACCES', 'madvise_remove: not a shared mapping');
        const offset = BigInt(v.base) << 12n;
        const len = BigInt(e - s) << 12n;
        if (v.obj instanceof ShmemObject) {
          this.notifiers.invalidateRangeStart(s, e);
          this.shmemPunch(v.obj, v.base, v.base + (e - s));
          return OK_VOID;
        }
        return this.k.vfsFallocate(
          v.obj!,
          FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
          offset,
          len,
          'madv_remove',
        );
      }
      case MADV_DONTFORK:
        return this.setVmaFlags(s, e, v, VMA_DONTFORK, 0);
      case MADV_DOFORK:
        return this.setVmaFlags(s, e, v, 0, VMA_DONTFORK);
      case MADV_DONTDUMP:
        return this.setVmaFlags(s, e, v, VMA_DONTDUMP, 0);
      case MADV_DODUMP:
        if ((v.flags & VMA_DROPPABLE) !== 0)
          return err('EINVAL', 'madvise: DODUMP on VM_DROPPABLE');
        return this.setVmaFlags(s, e, v, 0, VMA_DONTDUMP);
      case MADV_WIPEONFORK:
        if (v.kind !== 'anon')
          return err('EINVAL', 'madvise: WIPEONFORK on a file or shared mapping');
        return this.setVmaFlags(s, e, v, VMA_WIPEONFORK, 0);
      case MADV_KEEPONFORK:
        if ((v.flags & VMA_DROPPABLE) !== 0)
          return err('EINVAL', 'madvise: KEEPONFORK on VM_DROPPABLE');
        return this.setVmaFlags(s, e, v, 0, VMA_WIPEONFORK);
      case MADV_HUGEPAGE:
        return this.setVmaFlags(s, e, v, VMA_HUGEPAGE, VMA_NOHUGEPAGE);
      case MADV_NOHUGEPAGE:
        return this.setVmaFlags(s, e, v, VMA_NOHUGEPAGE, VMA_HUGEPAGE);
      case MADV_MERGEABLE:
        if (!this.k.profile.ksm) return err('EINVAL', 'madvise: KSM not configured');
        if (v.kind === 'anon') this.setVmaFlags(s, e, v, VMA_MERGEABLE, 0);
        return OK_VOID;
      case MADV_UNMERGEABLE:
        if (!this.k.profile.ksm) return err('EINVAL', 'madvise: KSM not configured');
        return this.setVmaFlags(s, e, v, 0, VMA_MERGEABLE);
      case MADV_GUARD_INSTALL:
        // madvise_guard_install(): not on VM_LOCKED (or special) VMAs. Existing pages are zapped
        // (private anonymous memory is freed; file pages stay in their page cache).
        if (v.locked) return err('EINVAL', 'madvise_guard_install: VM_LOCKED');
        this.notifiers.invalidateRangeStart(s, e);
        if (v.kind === 'gmem' && this.gmemPtes.size !== 0) this.gmemPtes.delete(s, e);
        if (v.kind === 'anon') {
          this.freeAnon(s, e);
          // anon_vma_prepare(), and page tables to hold the markers.
          this.markAnonVma(s);
          this.notePteTable(s, e);
        }
        this.guards.set(s, e, true);
        return OK_VOID;
      case MADV_GUARD_REMOVE:
        this.guards.delete(s, e);
        return OK_VOID;
      case MADV_COLLAPSE: {
        // thp_vma_allowable_order(TVA_FORCED_COLLAPSE): guest_memfd and vCPU mappings are
        // refused, and so is an anonymous VMA without an anon_vma (no page was ever written in
        // it); shmem is accepted, and so are VM_LOCKED VMAs [verified].
        if (v.kind === 'gmem' || v.kind === 'vcpu')
          return err('EINVAL', 'madvise_collapse: VMA not eligible');
        // vma_thp_disabled(): VM_NOHUGEPAGE (MADV_NOHUGEPAGE, MAP_STACK) refuses even a forced
        // collapse.
        if ((v.flags & VMA_NOHUGEPAGE) !== 0)
          return err('EINVAL', 'madvise_collapse: VM_NOHUGEPAGE');
        if (v.kind === 'anon' && !this.hasAnonVma(s))
          return err('EINVAL', 'madvise_collapse: anonymous VMA without anon_vma');
        // thp_vma_suitable_order(): the VMA must be able to hold a PMD-aligned huge page.
        const whole = this.vmas.entryAt(s)!;
        if (Math.ceil(whole.start / 512) * 512 + 512 > whole.end)
          return err('EINVAL', 'madvise_collapse: VMA cannot hold a huge page');
        // The PMD-aligned chunks inside the range: hstart rounds up, hend rounds down, and the
        // call succeeds only if every chunk collapses (thps == (hend - hstart) / PMD, unsigned, so
        // a range inside one PMD that contains no boundary fails). An empty chunk (SCAN_PMD_NULL)
        // fails with EINVAL.
        const hs = Math.ceil(s / 512) * 512;
        const he = Math.floor(e / 512) * 512;
        if (he < hs) return err('EINVAL', 'madvise_collapse: range inside one PMD');
        for (let c = hs; c < he; c += 512) {
          // A guard marker in the chunk fails its scan (anonymous and shmem alike) [verified].
          if (this.guards.size !== 0 && this.guards.anyIn(c, c + 512))
            return err('EINVAL', 'madvise_collapse: guard marker in the PMD range');
          const populated =
            v.kind === 'anon'
              ? this.anon.anyIn(c, c + 512) ||
                this.pteTables.get(c) !== undefined ||
                this.hugeZero.get(c) !== undefined
              : (v.obj as ShmemObject).pages.anyIn(v.base + (c - s), v.base + (c - s) + 512);
          if (!populated) return err('EINVAL', 'madvise_collapse: empty PMD');
        }
        return OK_VOID;
      }
      case MADV_POPULATE_READ:
      case MADV_POPULATE_WRITE: {
        const write = advice === MADV_POPULATE_WRITE;
        // madvise_populate(): permission mismatches are EINVAL, fault failures EFAULT.
        if (write ? (v.prot & PROT_WRITE) === 0 : (v.prot & PROT_READ) === 0)
          return err('EINVAL', 'madvise_populate: permission');
        if (this.populate(s, e, write) < e) return err('EFAULT', 'madvise_populate: fault failed');
        return OK_VOID;
      }
      default:
        return err('EINVAL', 'madvise: advice not modelled');
    }
  }

  /** Punch [start, end) page offsets out of a shmem object. */
  private shmemPunch(obj: ShmemObject, start: number, end: number): void {
    const pieces = obj.pages.piecesIn(start, end);
    if (pieces.length === 0) return;
    obj.pages.delete(start, end);
    for (const p of pieces) {
      this.k.frames.release(p.value.base, p.end - p.start);
      this.k.events.push({ kind: 'shmem_free', obj: obj.id, start: p.start, end: p.end });
    }
  }

  // ---------------------------------------------------------------------------------------------
  // page faults

  /**
   * Resolve one host virtual page for an access. `cpu` selects the CPU page-fault rules (a read
   * is allowed on any of R/W/X, as x86 access_error() does) versus get_user_pages() rules (a read
   * needs VM_READ). Returns the frame (ZERO_PFN for an untouched anonymous page read) or the
   * signal/errno the access gets.
   */
  fault(
    hvpn: number,
    write: boolean,
    cpu: boolean,
  ): { pfn: Pfn; writable: boolean } | { signal: 'SIGSEGV' | 'SIGBUS' } {
    const v = this.vmas.get(hvpn);
    if (v === undefined) return { signal: 'SIGSEGV' };
    if (this.guards.size !== 0 && this.guards.get(hvpn) !== undefined) return { signal: 'SIGSEGV' };
    if (write) {
      if ((v.prot & PROT_WRITE) === 0) return { signal: 'SIGSEGV' };
    } else if (cpu) {
      if ((v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) === 0) return { signal: 'SIGSEGV' };
      // An execute-only mapping carries the execute-only protection key: data reads fault.
      if (v.prot === PROT_EXEC && this.k.profile.execOnlyPkey) return { signal: 'SIGSEGV' };
    } else if ((v.prot & PROT_READ) === 0) return { signal: 'SIGSEGV' };
    const writable = (v.prot & PROT_WRITE) !== 0;
    // hugetlb_no_page(): no huge page can be allocated (empty pool, MAP_NORESERVE).
    if ((v.flags & VMA_HUGETLB) !== 0) return { signal: 'SIGBUS' };
    switch (v.kind) {
      case 'anon': {
        const ex = this.anon.get(hvpn);
        if (ex !== undefined) return { pfn: ex.base, writable };
        // __handle_mm_fault(): a huge PMD is tried only while the frame has none (no page table).
        const pmdNone = this.pteTables.size === 0 || this.pteTables.get(hvpn) === undefined;
        const hugeZero = this.hugeZero.size !== 0 && this.hugeZero.get(hvpn) !== undefined;
        const h0 = Math.floor(hvpn / 512) * 512;
        if (!write) {
          if (!hugeZero && pmdNone && this.thpAllowed(hvpn, v)) {
            // do_huge_pmd_anonymous_page() prepares the anon_vma before it maps the zero page.
            this.markAnonVma(hvpn);
            this.hugeZero.set(h0, h0 + 512, true);
          } else if (!hugeZero) this.notePteTable(hvpn, hvpn + 1);
          return { pfn: ZERO_PFN, writable: false };
        }
        // do_huge_pmd_anonymous_page() / do_huge_zero_wp_pmd(): an eligible, completely empty
        // 2 MiB frame (or one mapping the huge zero page) gets a THP.
        if (pmdNone) {
          const huge = this.tryThp(hvpn, v);
          if (huge !== undefined) {
            if (hugeZero) this.hugeZero.delete(h0, h0 + 512);
            return { pfn: huge, writable };
          }
        }
        if (hugeZero) this.splitThp(hvpn, hvpn + 1);
        this.notePteTable(hvpn, hvpn + 1);
        // Replacing the zero page (or nothing) with a new page notifies secondary MMUs.
        this.notifiers.invalidateRangeStart(hvpn, hvpn + 1);
        const pfn = this.k.frames.allocOne();
        if (!this.k.mutants.has('anon_fault_no_zero')) this.k.frames.zero(pfn, 1);
        this.anon.set(hvpn, hvpn + 1, { base: pfn });
        this.markAnonVma(hvpn);
        this.k.events.push({ kind: 'anon_alloc', hvpn, pages: 1 });
        return { pfn, writable };
      }
      case 'shmem': {
        const obj = v.obj as ShmemObject;
        const idx = v.base;
        if (idx >= obj.npages) return { signal: 'SIGBUS' };
        const ex = obj.pages.get(idx);
        if (ex !== undefined) return { pfn: ex.base, writable };
        const pfn = this.k.frames.allocOne();
        this.k.frames.zero(pfn, 1);
        obj.pages.set(idx, idx + 1, { base: pfn });
        this.k.events.push({ kind: 'shmem_alloc', obj: obj.id, start: idx, end: idx + 1 });
        return { pfn, writable };
      }
      case 'gmem': {
        // handle_mm_fault() → vma->vm_ops->fault()
        const r = (v.obj as KFile).vmOps!.fault(v.base);
        if ('signal' in r) return r;
        this.gmemPtes.set(hvpn, hvpn + 1, true);
        return { pfn: r.pfn, writable };
      }
      case 'vcpu': {
        // A MAP_PRIVATE mapping reads the file page until the first write copies it (CoW).
        if (!v.shared) {
          const copy = this.anon.get(hvpn);
          if (copy !== undefined) return { pfn: copy.base, writable };
        }
        // kvm_vcpu_fault() through the file's vm_ops; mm does the copy-on-write.
        const f = (v.obj as KFile).vmOps!.fault(v.base);
        if ('signal' in f) return f;
        const r = f.pfn;
        if (v.shared || !write) return { pfn: r, writable: writable && v.shared };
        this.notifiers.invalidateRangeStart(hvpn, hvpn + 1);
        const pfn = this.k.frames.allocOne();
        this.k.frames.copy(r, pfn);
        this.anon.set(hvpn, hvpn + 1, { base: pfn });
        this.markAnonVma(hvpn);
        this.k.events.push({ kind: 'anon_alloc', hvpn, pages: 1 });
        return { pfn, writable };
      }
    }
  }

  /**
   * A CPU access by the VMM to [addr, addr+len): bytes move in address order and the access
   * stops at the first page that faults, so a poke across into a bad page writes its first part.
   */
  access(addr: bigint, len: number, write: Uint8Array | null): UserAccess {
    const out = write === null ? new Uint8Array(len) : undefined;
    let done = 0;
    while (done < len) {
      const a = addr + BigInt(done);
      if (a >= this.k.profile.taskSizeMax) return { ok: false, fault: 'SIGSEGV' };
      const hvpn = Number(a >> 12n);
      const off = Number(a & 4095n);
      const n = Math.min(len - done, PAGE_SIZE - off);
      const r = this.fault(hvpn, write !== null, true);
      if ('signal' in r) return { ok: false, fault: r.signal };
      const denied = hostAccessFrame(this.k, r.pfn, write !== null, 'vmm');
      if (denied !== undefined) return { ok: false, fault: denied };
      if (write !== null) this.k.frames.write(r.pfn, off, write, done, n);
      else this.k.frames.read(r.pfn, off, out!, done, n);
      done += n;
    }
    return out === undefined ? { ok: true } : { ok: true, data: out };
  }

  /**
   * Fault in [s, e) of one VMA in page order, as get_user_pages() does, without a per-page loop
   * for ranges (so a populated terabyte costs what its extents cost). Returns the first page that
   * could not be faulted in (e when all were).
   */
  populate(s: number, e: number, write: boolean): number {
    const v = this.vmas.get(s);
    if (v === undefined) return s;
    // populate_vma_page_range() reads with FOLL_FORCE, so write-only mappings populate too;
    // PROT_NONE does not, nor does an execute-only mapping whose protection key forbids reads
    // [verified with MADV_COLLAPSE]. madvise(POPULATE_*) checked the permissions before.
    if (
      write
        ? (v.prot & PROT_WRITE) === 0
        : v.prot === 0 || (v.prot === PROT_EXEC && this.k.profile.execOnlyPkey)
    )
      return s;
    // hugetlb: the first fault gets SIGBUS (empty pool).
    if ((v.flags & VMA_HUGETLB) !== 0) return s;
    const g = this.guards.size === 0 ? undefined : this.guards.piecesIn(s, e)[0];
    const end = g === undefined ? e : g.start;
    switch (v.kind) {
      case 'anon': {
        this.notePteTable(s, end);
        if (write) {
          const gaps = this.anon.gapsIn(s, end);
          if (gaps.length > 0) {
            this.notifiers.invalidateRangeStart(s, end);
            for (const gap of gaps) {
              let p = gap.start;
              for (const run of this.k.frames.alloc(gap.end - gap.start)) {
                this.k.frames.zero(run.base, run.count);
                this.anon.set(p, p + run.count, { base: run.base });
                p += run.count;
              }
              this.k.events.push({
                kind: 'anon_alloc',
                hvpn: gap.start,
                pages: gap.end - gap.start,
              });
            }
            this.markAnonVma(s);
          }
        }
        return end;
      }
      case 'shmem': {
        const obj = v.obj as ShmemObject;
        const last = Math.min(end, s + Math.max(0, obj.npages - v.base));
        for (const gap of obj.pages.gapsIn(v.base, v.base + (last - s))) {
          let p = gap.start;
          for (const run of this.k.frames.alloc(gap.end - gap.start)) {
            this.k.frames.zero(run.base, run.count);
            obj.pages.set(p, p + run.count, { base: run.base });
            p += run.count;
          }
          this.k.events.push({ kind: 'shmem_alloc', obj: obj.id, start: gap.start, end: gap.end });
        }
        return last;
      }
      case 'gmem': {
        const n = (v.obj as KFile).vmOps!.populate!(v.base, end - s);
        if (n > 0) this.gmemPtes.set(s, s + n, true);
        return s + n;
      }
      case 'vcpu': {
        for (let p = s; p < end; p++) if ('signal' in this.fault(p, write, false)) return p;
        return end;
      }
    }
  }

  /**
   * A write fault on an empty private anonymous frame: allocate a THP when THP is enabled for
   * the VMA (profile thp mode and MADV_HUGEPAGE/NOHUGEPAGE) and the VMA covers the whole 2 MiB
   * frame. Returns the pfn for hvpn, or undefined (no THP).
   */
  private tryThp(hvpn: number, v: Vma): Pfn | undefined {
    if ((v.prot & PROT_WRITE) === 0 || !this.thpAllowed(hvpn, v)) return undefined;
    const h0 = Math.floor(hvpn / 512) * 512;
    if (this.anon.anyIn(h0, h0 + 512)) return undefined;
    const runs = this.k.frames.alloc(512);
    if (runs.length !== 1) {
      for (const r of runs) this.k.frames.release(r.base, r.count);
      return undefined;
    }
    const base = runs[0]!.base;
    this.notifiers.invalidateRangeStart(h0, h0 + 512);
    if (!this.k.mutants.has('anon_fault_no_zero')) this.k.frames.zero(base, 512);
    this.anon.set(h0, h0 + 512, { base });
    this.thp.set(h0, h0 + 512, true);
    this.markAnonVma(hvpn);
    this.k.events.push({ kind: 'anon_alloc', hvpn: h0, pages: 512 });
    return (base + (hvpn - h0)) as Pfn;
  }

  /**
   * THP enabled for the 2 MiB frame of hvpn: the profile's thp mode with MADV_HUGEPAGE /
   * NOHUGEPAGE (MAP_STACK), a VMA covering the whole frame, and no guard marker in it.
   */
  private thpAllowed(hvpn: number, v: Vma): boolean {
    const mode = this.k.profile.thp;
    if (mode === 'never' || v.locked || (v.flags & (VMA_NOHUGEPAGE | VMA_HUGETLB)) !== 0)
      return false;
    if (mode === 'madvise' && (v.flags & VMA_HUGEPAGE) === 0) return false;
    const h0 = Math.floor(hvpn / 512) * 512;
    const ent = this.vmas.entryAt(hvpn)!;
    if (ent.start > h0 || ent.end < h0 + 512) return false;
    return this.guards.size === 0 || !this.guards.anyIn(h0, h0 + 512);
  }

  /**
   * Split the PMD mapping of every THP (and huge zero page) overlapping [s, e): the pages stay,
   * mapped by PTEs.
   */
  private splitThp(s: number, e: number): void {
    for (const pmds of [this.hugeZero, this.thp]) {
      if (pmds.size === 0 || !pmds.anyIn(s, e)) continue;
      const h0 = Math.floor(s / 512) * 512;
      const h1 = Math.ceil(e / 512) * 512;
      // __split_huge_pmd() notifies secondary MMUs over each huge page it splits, so KVM drops a
      // 2M stage-2 mapping built on it.
      for (const p of pmds.piecesIn(h0, h1)) {
        this.notifiers.invalidateRangeStart(p.start, p.end);
        // The split installs the page table deposited when the huge PMD was mapped.
        this.notePteTable(p.start, p.end);
      }
      pmds.delete(h0, h1);
    }
  }

  /** The host page-table level of a private anonymous page ('2M' when a THP maps it). */
  hostLevel(hvpn: number): '4K' | '2M' {
    return this.thp.size !== 0 && this.thp.get(hvpn) !== undefined ? '2M' : '4K';
  }

  /** `anon_vma_prepare()`: the VMA containing hvpn now has an anon_vma. */
  markAnonVma(hvpn: number): void {
    const ent = this.vmas.entryAt(hvpn)!;
    if (!this.anonVmas.covers(ent.start, ent.end)) this.anonVmas.set(ent.start, ent.end, true);
  }

  /** `vma->anon_vma` of the VMA containing hvpn. */
  private hasAnonVma(hvpn: number): boolean {
    const ent = this.vmas.entryAt(hvpn);
    return ent !== undefined && this.anonVmas.anyIn(ent.start, ent.end);
  }

  /** VMA at a host virtual page (value shifted to that page), for KVM's hva lookups. */
  vmaAt(hvpn: number): Vma | undefined {
    return this.vmas.get(hvpn);
  }
}

/** Advice values madvise_behavior_valid() accepts on the modelled kernels. */
export const MADV_KNOWN = new Set<number>([
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MADV_DONTNEED,
  MADV_FREE,
  MADV_REMOVE,
  MADV_DONTFORK,
  MADV_DOFORK,
  MADV_MERGEABLE,
  MADV_UNMERGEABLE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_DONTDUMP,
  MADV_DODUMP,
  MADV_WIPEONFORK,
  MADV_KEEPONFORK,
  MADV_COLD,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_DONTNEED_LOCKED,
  MADV_COLLAPSE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
]);
