/**
 * guest_memfd (virt/kvm/guest_memfd.c, Linux 6.18): creation, fallocate (allocate and punch
 * hole), host mmap faults, memslot binding, the fault-path lookup `kvm_gmem_get_pfn()` and
 * release of the last file reference.
 *
 * Contract of the page states (kernel-uapi.md §1.3): fallocate creates `allocated` folios and
 * never zeroes; the first guest fault or host fault zeroes a non-up-to-date folio and marks it
 * `prepared` (up-to-date); punch hole and release return indices to absent. So every page is
 * first seen as zeros, and content persists until a hole is punched.
 */
import { NotModelled } from '../../base/not_modelled.js';
import type { KernelCtx } from '../../ctx.js';
import {
  GmemFile,
  gfnToGmemIndex,
  gmemExtentShape,
  gmemIndexToGfn,
  type GmemExtent,
  type Memslot,
  type Vm,
} from '../objects.js';
import { rangeHasAttributes } from '../mem_attributes.js';
import { gmemFirstElevated, gmemSyncKvmAttributes } from './attributes.js';
import {
  gmemFolioAt,
  gmemHugePages,
  gmemHugeStart,
  gmemHugetlbAllocFolio,
  gmemHugetlbMergeRange,
} from './hugetlb.js';
import {
  GMEM_HUGETLB_ORDER_1G,
  GMEM_HUGETLB_ORDER_2M,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_INIT_SHARED,
} from '../../base/uapi.js';
import { err, ok, OK_VOID, type Result } from '../../base/result.js';
import type { Errno } from '../../base/errno.js';
import {
  asPfn,
  asPgOff,
  bytesToPagesN,
  bytesToPgOff,
  gfnAdd,
  isPageAligned,
  pagesToBytes,
  pfnAdd,
  pgoffAdd,
  type Gfn,
  type PgOff,
  type Pfn,
} from '../../base/units.js';

/**
 * KVM_CREATE_GUEST_MEMFD after copy_from_user: `kvm_gmem_create()` checks in kernel order, then
 * `__kvm_gmem_create()`. `reserved[]` is not checked in 6.18. `pageOrder` is the HugeTLB wip
 * tree's `page_order` byte (kernel-uapi.md §6.2; guest_memfd/hugetlb.ts): read only by kernels
 * with HugeTLB guest_memfd (`profile.gmemHugetlb`), a reserved byte to the others.
 */
export function kvmGmemCreate(
  k: KernelCtx,
  vm: Vm,
  size: bigint,
  flags: bigint,
  ino: number,
  pageOrder = 0,
): Result<GmemFile> {
  // flags & ~kvm_gmem_get_supported_flags(kvm) → EINVAL
  if ((flags & ~vm.spec.gmemFlags) !== 0n)
    return err('EINVAL', 'kvm_gmem_create: unsupported flags');
  let order = 0;
  if (k.profile.gmemHugetlb !== undefined) {
    const hugetlb = (flags & GUEST_MEMFD_FLAG_HUGETLB) !== 0n;
    // args->page_order && !(flags & GUEST_MEMFD_FLAG_HUGETLB) → EINVAL
    if (pageOrder !== 0 && !hugetlb)
      return err('EINVAL', 'kvm_gmem_create: page_order without GUEST_MEMFD_FLAG_HUGETLB');
    if (hugetlb) {
      // HUGETLB with INIT_SHARED → EINVAL (a fresh file is private: huge folios stay whole).
      if ((flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0n)
        return err('EINVAL', 'kvm_gmem_create: HUGETLB with INIT_SHARED');
      // !gmem_hugetlb_valid_order(page_order) → EINVAL (x86-64: the 2M and 1G hstates).
      if (pageOrder !== GMEM_HUGETLB_ORDER_2M && pageOrder !== GMEM_HUGETLB_ORDER_1G)
        return err('EINVAL', 'kvm_gmem_create: page_order has no hstate');
      order = pageOrder;
    }
  }
  // size <= 0 as loff_t, or not aligned to PAGE_SIZE << page_order → EINVAL
  const ssize = BigInt.asIntN(64, size);
  if (ssize <= 0n || ssize % (4096n << BigInt(order)) !== 0n)
    return err(
      'EINVAL',
      order === 0
        ? 'kvm_gmem_create: size <= 0 or unaligned'
        : 'kvm_gmem_create: size <= 0 or not a multiple of the huge page size',
    );
  const npages = Number(bytesToPagesN(ssize));
  // kvm_gmem_init_inode() → gmem_hugetlb_init() → gmem_hugetlb_setup(): the subpool reserves
  // every huge page of the file now (hugepage_new_subpool(h, hpages, hpages) →
  // hugetlb_acct_memory()), -ENOMEM when the hstate has fewer free unreserved pages. (The
  // hugetlb cgroup charge before it is not modelled: no cgroup limits.)
  if (order !== 0 && !k.hugetlbPools.reserve(order, npages / 2 ** order))
    return err('ENOMEM', 'gmem_hugetlb_setup: the hstate cannot reserve the file');
  const f = new GmemFile(ino, vm, ssize, npages, flags, order);
  // kvm_gmem_mmap() installs kvm_gmem_vm_ops: host faults on a mapping come back here.
  f.vmOps = {
    fault: (pgoff) => kvmGmemFaultUserMapping(k, f, pgoff),
    populate: (pgoff, count) => kvmGmemPopulateUserRange(k, f, pgoff, count),
  };
  // kvm_get_kvm(): the file pins the VM.
  vm.refs++;
  vm.gmemFiles.add(f);
  return ok(f);
}

/** `kvm_gmem_fallocate()` — called after the generic vfs_fallocate() checks. */
export function kvmGmemFallocate(
  k: KernelCtx,
  f: GmemFile,
  mode: number,
  offset: bigint,
  len: bigint,
  via: 'fallocate' | 'madv_remove',
): Result<undefined> {
  if ((mode & 1) === 0)
    return err('EOPNOTSUPP', 'kvm_gmem_fallocate: FALLOC_FL_KEEP_SIZE required');
  if ((mode & ~3) !== 0)
    return err('EOPNOTSUPP', 'kvm_gmem_fallocate: mode other than KEEP_SIZE|PUNCH_HOLE');
  if (!isPageAligned(offset) || !isPageAligned(len))
    return err('EINVAL', 'kvm_gmem_fallocate: offset or len not page aligned');
  // HugeTLB: offset and len must be aligned to PAGE_SIZE << page_order.
  if (f.hugetlb) {
    const huge = 4096n << BigInt(f.pageOrder);
    if (offset % huge !== 0n || len % huge !== 0n)
      return err('EINVAL', 'kvm_gmem_fallocate: offset or len not huge page aligned');
  }
  const r =
    (mode & 2) !== 0
      ? kvmGmemPunchHole(k, f, offset, len, via)
      : kvmGmemAllocate(k, f, offset, len);
  if (r.ok) f.modifications++;
  return r;
}

/**
 * `kvm_gmem_punch_hole()`: for every memslot bound to an index in the range, invalidate and zap
 * the corresponding gfns, flush; then truncate the folios (which also removes them from every
 * host mapping). No bound check: ranges past i_size are no-ops.
 */
export function kvmGmemPunchHole(
  k: KernelCtx,
  f: GmemFile,
  offset: bigint,
  len: bigint,
  via: 'fallocate' | 'madv_remove',
): Result<undefined> {
  const start = bytesToPgOff(offset);
  const end = bytesToPgOff(offset + len);
  if (end <= start) return OK_VOID;
  if (!k.mutants.has('punch_no_zap'))
    kvmGmemInvalidate(k, f, start, end, via === 'fallocate' ? 'punch_hole' : 'madv_remove');
  if (f.hugetlb) {
    // merge_truncate_range(..., require_merge = true): unmap every host mapping of the range,
    // then merge its folios, which needs every folio free of extra references
    // (kvm_gmem_has_safe_refcount()): -EAGAIN otherwise, with the guest and host mappings gone
    // and nothing freed. Every process's mappings, as truncatePages() and the conversion do.
    k.unmapMappingRange(f, start, end);
    if (gmemFirstElevated(k, f, start, end) !== undefined)
      return err('EAGAIN', 'merge_truncate_range: a folio in range has extra references');
    gmemHugetlbMergeRange(k, f, start, end);
  }
  truncatePages(k, f, start, end, via === 'fallocate' ? 'punch_hole' : 'madv_remove');
  return OK_VOID;
}

/** Free the folios of [start, end) (truncate_inode_pages_range). */
function truncatePages(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  via: 'punch_hole' | 'madv_remove' | 'inode_evict',
): void {
  const pieces = f.pages.piecesIn(start, end);
  if (pieces.length === 0) return;
  // truncate_cleanup_folio(): a folio still mapped by the VMM is unmapped first, and the PTE
  // zap notifies KVM (stage-2 mappings made through userspace_addr go with it); every process
  // mapping the file loses its PTEs (a forked child's too).
  for (const p of pieces) k.unmapMappingRange(f, asPgOff(p.start), asPgOff(p.end));
  f.pages.delete(start, end);
  // HugeTLB: whole huge folios leave the file (free_huge_folio() gives each back to the subpool).
  if (f.hugetlb) f.folioOrders.delete(start, end);
  for (const p of pieces) {
    if (!k.mutants.has('punch_keeps_frames')) {
      // kvm_gmem_free_folio() → kvm_arch_gmem_invalidate(), then the page allocator.
      const base = p.value.base;
      // NO_DIRECT_MAP: kvm_gmem_folio_restore_direct_map() of a folio that left the direct map
      // (->free_folio runs when the folio leaves the page cache, whoever still holds a reference).
      if (f.noDirectMap && !k.mutants.has('nodmap_free_keeps_zapped'))
        k.frames.restoreDirectMap(base, p.end - p.start);
      k.arch.gmemInvalidate(k, base, pfnAdd(base, p.end - p.start));
      k.frames.release(base, p.end - p.start);
    }
    k.events.push({
      kind: 'gmem_free',
      ino: f.ino,
      start: asPgOff(p.start),
      end: asPgOff(p.end),
      via,
    });
  }
}

/**
 * `kvm_gmem_invalidate_begin()/end()` over the bindings of [start, end): zap the gfns of every
 * bound memslot and flush TLBs if anything was zapped. On x86 without mirror page tables the
 * attribute filter does not restrict the zap.
 */
export function kvmGmemInvalidate(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  source: 'punch_hole' | 'madv_remove' | 'gmem_release' | 'memory_failure',
): void {
  for (const b of f.bindings.piecesIn(start, end)) {
    const slot = b.value;
    if (slot.gmem === null) continue;
    const pgoff = slot.gmem.pgoff;
    const gStart = gmemIndexToGfn(slot, pgoff, asPgOff(b.start));
    const gEnd = gmemIndexToGfn(slot, pgoff, asPgOff(b.end));
    k.arch.invalidateGfnRange(k, f.vm, slot.asId, gStart, gEnd, source);
  }
}

/**
 * `kvm_gmem_get_folio()`'s folio order at the absent `index`, as the backing design decides it
 * (6.18: always 0, `__filemap_get_folio()` without an order). The model keeps order-0 folios
 * only, so a design asking for larger ones stops here with an error naming it: not an errno
 * the kernel would return, a limit of the model.
 */
function checkFolioOrder(k: KernelCtx, f: GmemFile, index: PgOff): void {
  const order = k.gmemBacking.folioOrder(f, index);
  // HugeTLB folios are represented (guest_memfd/hugetlb.ts): their allocation takes whole huge
  // pages, below.
  if (f.hugetlb && order === f.pageOrder) return;
  if (order !== 0)
    throw new NotModelled(
      `guest_memfd backing '${k.gmemBacking.name}': kvm_gmem_get_folio() at index ${index} of ` +
        `inode ${f.ino} wants an order-${order} folio; the model represents order-0 folios only`,
    );
}

/**
 * `filemap_grab_folio()` over [start, end): a new, not up-to-date folio for every absent index
 * (contents not zeroed: that happens when the folio is prepared).
 */
function allocateAbsent(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  via: 'fallocate' | 'host_fault',
): void {
  if (f.hugetlb) {
    // kvm_gmem_get_folio() for each absent index: the whole huge page holding it (an allocated
    // huge page is never partly absent: punch and truncation take whole huge pages).
    const n = gmemHugePages(f);
    for (const gap of f.pages.gapsIn(start, end))
      for (let h: number = gmemHugeStart(f, gap.start); h < gap.end; h += n) {
        checkFolioOrder(k, f, asPgOff(h));
        gmemHugetlbAllocFolio(k, f, h, via);
      }
    return;
  }
  for (const gap of f.pages.gapsIn(start, end)) {
    checkFolioOrder(k, f, asPgOff(gap.start));
    let idx = gap.start;
    for (const run of k.frames.alloc(gap.end - gap.start)) {
      f.pages.set(idx, idx + run.count, { base: run.base, state: 'allocated' });
      idx += run.count;
    }
    k.events.push({
      kind: 'gmem_alloc',
      ino: f.ino,
      start: asPgOff(gap.start),
      end: asPgOff(gap.end),
      via,
    });
  }
}

/** `kvm_gmem_allocate()`: allocate absent folios in range, no zeroing, no guest mapping. */
function kvmGmemAllocate(
  k: KernelCtx,
  f: GmemFile,
  offset: bigint,
  len: bigint,
): Result<undefined> {
  if (offset + len > f.size) return err('EINVAL', 'kvm_gmem_allocate: offset + len > i_size');
  const start = bytesToPgOff(offset);
  const end = bytesToPgOff(offset + len);
  allocateAbsent(k, f, start, end, 'fallocate');
  return OK_VOID;
}

/**
 * `filemap_grab_folio()` then, for a folio that is not up-to-date, `clear_highpage()` and
 * `kvm_gmem_mark_prepared()`: the folio at `index`, allocated if absent and zeroed on first use.
 * A guest fault (`gfn` given) also runs the arch prepare hook between zeroing and marking the folio
 * up-to-date (`kvm_gmem_prepare_folio()` → `kvm_arch_gmem_prepare()`); when it fails the folio
 * stays not up-to-date (zeroed again on the next try) and the fault fails with its errno. Host
 * faults only zero (`kvm_gmem_fault_user_mapping()`).
 * An absent folio is inserted directly as prepared (one map update on the fault hot path).
 */
function getPreparedFolio(
  k: KernelCtx,
  f: GmemFile,
  index: PgOff,
  via: 'guest_fault' | 'host_fault',
  gfn?: Gfn,
): Pfn | 'poisoned' | { readonly prepareFailed: Errno } {
  if (f.hugetlb) return getPreparedHugetlbFolio(k, f, index, via, gfn);
  const ex = f.pages.get(index);
  const zero = !k.mutants.has('gmem_no_zero_on_prepare');
  if (ex !== undefined) {
    if (ex.state === 'prepared') {
      // Preparation left to the arch (kvm/next): kvm_gmem_get_pfn() prepares an up-to-date
      // private folio again on every guest fault (SNP: a no-op once the RMP assigns it).
      if (gfn === undefined || k.gmemBacking.preparation !== 'private-by-arch') return ex.base;
      return prepareFolio(k, f, index, ex.base, gfn, false);
    }
    if (ex.state === 'poisoned') return 'poisoned';
    if (zero) k.frames.zero(ex.base, 1);
    k.events.push({ kind: 'gmem_zero', ino: f.ino, start: index, end: pgoffAdd(index, 1), via });
    return prepareFolio(k, f, index, ex.base, gfn, false);
  }
  checkFolioOrder(k, f, index);
  const pfn = k.frames.allocOne();
  if (zero) k.frames.zero(pfn, 1);
  if (k.events.enabled) {
    k.events.push({ kind: 'gmem_alloc', ino: f.ino, start: index, end: pgoffAdd(index, 1), via });
    k.events.push({ kind: 'gmem_zero', ino: f.ino, start: index, end: pgoffAdd(index, 1), via });
  }
  return prepareFolio(k, f, index, pfn, gfn, true);
}

/**
 * `getPreparedFolio()` for a HugeTLB file: `kvm_gmem_get_folio()` allocates the huge page holding
 * an absent `index` (split at once unless all private), then the folio holding `index` (the huge
 * folio, or its own 4K folio after a split) is zeroed if not up to date, prepared by the arch hook
 * (guest faults: `kvm_gmem_prepare_folio()` with the folio's head and order) and marked up to
 * date as a whole. The wip tree's `kvm_gmem_get_pfn()` clears only the folio's first page
 * (`clear_highpage(folio_page(folio, 0))`, kept from the order-0 code); the model zeroes every
 * page of the folio that is not up to date, as first use must (zero-before-use).
 */
function getPreparedHugetlbFolio(
  k: KernelCtx,
  f: GmemFile,
  index: PgOff,
  via: 'guest_fault' | 'host_fault',
  gfn?: Gfn,
): Pfn | 'poisoned' | { readonly prepareFailed: Errno } {
  let ex = f.pages.get(index);
  if (ex === undefined) {
    checkFolioOrder(k, f, index);
    gmemHugetlbAllocFolio(k, f, index, via);
    ex = f.pages.get(index)!;
  }
  if (ex.state === 'poisoned') return 'poisoned';
  const folio = gmemFolioAt(f, index);
  if (ex.state === 'prepared' && folio.order === 0) return ex.base;
  // A huge folio is up to date only when every page of it is: one merged from 4K folios of which
  // some were never used (a host fault on one shared page of a split huge page, then the page
  // made private again and merged) has pages still to zero. The sources are silent on the merged
  // folio's up-to-date flag (hugetlb_restructuring); the model zeroes the pages never zeroed and
  // keeps the others' contents.
  const zero = !k.mutants.has('gmem_no_zero_on_prepare');
  const stale = f.pages
    .piecesIn(folio.start, folio.end)
    .filter((p) => p.value.state === 'allocated');
  if (stale.length === 0 && ex.state === 'prepared') return ex.base;
  for (const p of stale) {
    if (zero) k.frames.zero(p.value.base, p.end - p.start);
    k.events.push({
      kind: 'gmem_zero',
      ino: f.ino,
      start: asPgOff(p.start),
      end: asPgOff(p.end),
      via,
    });
  }
  if (gfn !== undefined) {
    const off = index - folio.start;
    const e = k.arch.gmemPrepare(k, f.vm, pfnAdd(ex.base, -off), gfnAdd(gfn, -off), folio.order);
    if (e !== undefined) return { prepareFailed: e };
  }
  for (const p of stale) f.pages.set(p.start, p.end, { base: p.value.base, state: 'prepared' });
  return ex.base;
}

/**
 * The tail of `kvm_gmem_prepare_folio()` for a zeroed folio: the arch prepare hook (guest faults
 * only), then `kvm_gmem_mark_prepared()`. A folio that was absent (`inserted`) goes into the file
 * here: as prepared, or as allocated when the hook fails (zeroed again on the next try).
 */
/** The record prepareFolio() hands to the page map (which copies it if it keeps it). */
const scratchExtent: { -readonly [F in keyof GmemExtent]: GmemExtent[F] } = {
  base: asPfn(0),
  state: 'prepared',
};
/** The page map's shape key of a prepared folio's record (what the map would compute). */
const PREPARED_SHAPE = gmemExtentShape.key(scratchExtent);

function prepareFolio(
  k: KernelCtx,
  f: GmemFile,
  index: PgOff,
  pfn: Pfn,
  gfn: Gfn | undefined,
  inserted: boolean,
): Pfn | { readonly prepareFailed: Errno } {
  if (gfn !== undefined) {
    // kvm/next (preparation left to the arch): kvm_gmem_get_pfn() marks the zeroed folio up to
    // date first, then `if (kvm_gmem_is_private_mem(inode, index)) kvm_gmem_prepare_folio()`
    // (in-place conversion v7 patch 07: a shared folio of a CoCo VM is never prepared).
    const byArch = k.gmemBacking.preparation === 'private-by-arch';
    if (!byArch || f.attrs.get(index) !== undefined) {
      const e = k.arch.gmemPrepare(k, f.vm, pfn, gfn, 0);
      if (e !== undefined) {
        if (byArch) f.pages.set(index, index + 1, { base: pfn, state: 'prepared' });
        else if (inserted) f.pages.set(index, index + 1, { base: pfn, state: 'allocated' });
        return { prepareFailed: e };
      }
    }
  }
  // The page map copies the record only when it stores a new entry.
  const e = scratchExtent;
  e.base = pfn;
  e.state = 'prepared';
  f.pages.setTransient(index, index + 1, e, PREPARED_SHAPE);
  return pfn;
}

/**
 * `kvm_gmem_folio_zap_direct_map()` (NO_DIRECT_MAP series v12, kernel-uapi.md §6.3, "KVM:
 * guest_memfd: Add flag to remove from direct map"): a folio of a GUEST_MEMFD_FLAG_NO_DIRECT_MAP
 * file leaves the kernel's direct map right before it is first mapped to the guest
 * (`kvm_gmem_get_pfn()`) or to host userspace (`kvm_gmem_fault_user_mapping()`); a folio already
 * removed stays so. Shared and private folios alike; a folio `kvm_gmem_populate()` filled is
 * removed at its first `kvm_gmem_get_pfn()`. `folio_zap_direct_map()` fails only when splitting a
 * large direct-map page cannot allocate a page table (-ENOMEM: VM_FAULT_OOM for the host fault,
 * the error of get_pfn); the model allocates no direct-map page tables, so the zap never fails.
 */
function zapDirectMap(k: KernelCtx, f: GmemFile, pfn: Pfn, count: number): void {
  if (f.noDirectMap) k.frames.zapDirectMap(pfn, count);
}

/**
 * `kvm_gmem_fault_user_mapping()`: a host page fault on a guest_memfd mapping at page `pgoff`.
 */
export function kvmGmemFaultUserMapping(
  k: KernelCtx,
  f: GmemFile,
  pgoff: PgOff,
): { pfn: Pfn } | { signal: 'SIGBUS' } {
  if (pgoff >= f.npages) return { signal: 'SIGBUS' };
  if (!k.gmemBacking.hostFaultAllowed(f, pgoff) && !k.mutants.has('gmem_host_fault_ignores_shared'))
    return { signal: 'SIGBUS' };
  const pfn = getPreparedFolio(k, f, pgoff, 'host_fault');
  if (typeof pfn !== 'number') return { signal: 'SIGBUS' };
  zapDirectMap(k, f, pfn, 1);
  return { pfn };
}

/**
 * Host faults on `count` consecutive pages from `pgoff` (populate / MADV_POPULATE_*), as a range:
 * the same rules as `kvmGmemFaultUserMapping`, stopping at the first page that would SIGBUS.
 * Returns the number of pages faulted in.
 */
export function kvmGmemPopulateUserRange(
  k: KernelCtx,
  f: GmemFile,
  pgoff: PgOff,
  count: number,
): number {
  const allowed = k.mutants.has('gmem_host_fault_ignores_shared')
    ? count
    : k.gmemBacking.hostFaultAllowedRun(f, pgoff, count);
  const end = asPgOff(Math.min(pgoff + allowed, f.npages));
  if (end <= pgoff) return 0;
  allocateAbsent(k, f, pgoff, end, 'host_fault');
  for (const p of f.pages.piecesIn(pgoff, end)) {
    if (p.value.state === 'poisoned') return p.start - pgoff;
    zapDirectMap(k, f, p.value.base, p.end - p.start);
    if (p.value.state === 'allocated') {
      if (!k.mutants.has('gmem_no_zero_on_prepare')) k.frames.zero(p.value.base, p.end - p.start);
      f.pages.set(p.start, p.end, { base: p.value.base, state: 'prepared' });
      k.events.push({
        kind: 'gmem_zero',
        ino: f.ino,
        start: asPgOff(p.start),
        end: asPgOff(p.end),
        via: 'host_fault',
      });
    }
  }
  return end - pgoff;
}

/**
 * `kvm_gmem_bind()` (virt/kvm/guest_memfd.c): bind [offset, offset + slot size) of the file to
 * the new memslot. `file` is what fget(fd) found: undefined when the fd is not open.
 */
export function kvmGmemBind(
  k: KernelCtx,
  vm: Vm,
  slot: Memslot,
  file: GmemFile | 'other' | undefined,
  offset: bigint,
): Result<undefined> {
  if (file === undefined) return err('EBADF', 'kvm_gmem_bind: fd not open');
  if (file === 'other') return err('EINVAL', 'kvm_gmem_bind: not a guest_memfd');
  if (file.vm !== vm) return err('EINVAL', 'kvm_gmem_bind: guest_memfd belongs to another VM');
  const size = pagesToBytes(slot.npages);
  // Up to 6.18 `offset + size > i_size_read(inode)` is computed in loff_t: the kernel builds
  // with -fno-strict-overflow, so a sum past 2^63 wraps negative and passes the check. Later
  // kernels take offset and size as unsigned (no negative check; a u64 wrap was refused by
  // kvm_set_memory_region() before, so the sum is exact here).
  const soff = k.profile.gmemBindOffsetUnsigned
    ? BigInt.asUintN(64, offset)
    : BigInt.asIntN(64, offset);
  const end64 = k.profile.gmemBindOffsetUnsigned ? soff + size : BigInt.asIntN(64, soff + size);
  if (soff < 0n || !isPageAligned(soff) || end64 > file.size)
    return err('EINVAL', 'kvm_gmem_bind: offset out of range');
  const start = bytesToPgOff(soff);
  const end = pgoffAdd(start, slot.npages);
  if (file.bindings.anyIn(start, end) && !k.mutants.has('gmem_bind_overlap_allowed'))
    return err(k.profile.gmemBindOverlapErrno, 'kvm_gmem_bind: range already bound');
  slot.gmem = { file, pgoff: start };
  slot.gmemOnly = file.mmapAllowed;
  file.bindings.set(start, end, slot);
  k.events.push({ kind: 'gmem_bind', ino: file.ino, vm: vm.index, slot: slot.id, start, end });
  // In-place conversion with per-guest_memfd attributes: KVM now sees the file's attributes at
  // the slot's gfns (the new memslot's hugepage metadata is computed from them next).
  gmemSyncKvmAttributes(k, slot, start, end, true, false);
  return OK_VOID;
}

/** `kvm_gmem_unbind()`: nothing to do when the file was already released. */
export function kvmGmemUnbind(k: KernelCtx, slot: Memslot): void {
  const g = slot.gmem;
  if (g === null || g.file === null || g.file.released) return;
  const start = g.pgoff;
  const end = pgoffAdd(start, slot.npages);
  // Per-guest_memfd attributes: without the binding the gfns are shared to KVM (no memslot).
  gmemSyncKvmAttributes(k, slot, start, end, false, false);
  g.file.bindings.delete(start, end);
  k.events.push({
    kind: 'gmem_unbind',
    ino: g.file.ino,
    vm: g.file.vm.index,
    slot: slot.id,
    start,
    end,
  });
  g.file = null;
}

/**
 * `kvm_gmem_release()`: clear `gmem.file` in every bound slot, zap all bound ranges; returns the
 * VM whose reference it drops (`kvm_put_kvm()`, the caller's). The inode (and its memory) goes
 * with the file in 6.18, after the release: `kvmGmemEvict()`.
 */
export function kvmGmemRelease(k: KernelCtx, f: GmemFile): Vm {
  // Per-guest_memfd attributes: a memslot whose file is gone reads shared
  // (kvm_gmem_get_memory_attributes(): no file → 0).
  if (k.profile.gmemMemoryAttributes === true && !k.mutants.has('release_keeps_slot_file'))
    for (const b of f.bindings.entries())
      gmemSyncKvmAttributes(k, b.value, asPgOff(b.start), asPgOff(b.end), false);
  f.released = true;
  const slots = new Set<Memslot>();
  for (const b of f.bindings.entries()) slots.add(b.value);
  if (!k.mutants.has('release_keeps_slot_file')) {
    for (const s of slots) if (s.gmem !== null) s.gmem.file = null;
  }
  // kvm_gmem_invalidate_begin(gmem, 0, -1ul): zap every bound range.
  if (!k.mutants.has('gmem_release_no_zap')) {
    for (const b of f.bindings.entries()) {
      const slot = b.value;
      const pgoff = slot.gmem?.pgoff ?? asPgOff(b.start);
      k.arch.invalidateGfnRange(
        k,
        f.vm,
        slot.asId,
        gmemIndexToGfn(slot, pgoff, asPgOff(b.start)),
        gmemIndexToGfn(slot, pgoff, asPgOff(b.end)),
        'gmem_release',
      );
    }
  }
  f.bindings.clear();
  f.vm.gmemFiles.delete(f);
  k.events.push({ kind: 'gmem_release', ino: f.ino, vm: f.vm.index });
  return f.vm;
}

/**
 * The inode's eviction with its only file (`__fput()`: `dput()` → `iput()` after `->release()`):
 * `truncate_inode_pages_final()`. After `kvm_gmem_release()`'s `kvm_put_kvm()`, so a VM whose last
 * reference was the file is destroyed before the file's pages are freed (on pKVM: its teardown
 * reclaims what the guest owns before guest_memfd frees the pages).
 */
export function kvmGmemEvict(k: KernelCtx, f: GmemFile): void {
  const last = f.pages.last();
  // HugeTLB: merge_truncate_range(..., require_merge = false) merges what it can and truncates
  // everything; the model's folios always merge here (a folio with extra references is freed by
  // its last reference, FrameStore.held).
  if (last !== undefined && f.hugetlb) gmemHugetlbMergeRange(k, f, asPgOff(0), asPgOff(last.end));
  if (last !== undefined) truncatePages(k, f, asPgOff(0), asPgOff(last.end), 'inode_evict');
  // kvm_gmem_destroy_inode() → gmem_hugetlb_teardown(): the subpool's reservation goes back to
  // the hstate.
  if (f.hugetlb) k.hugetlbPools.unreserve(f.pageOrder, f.npages / gmemHugePages(f));
}

/**
 * `kvm_gmem_get_pfn()`: the guest_memfd side of a guest fault at `gfn` in `slot`: the frame (a
 * number), or the errno the kernel returns (a string; the fault hot path allocates no result
 * object). EFAULT: file released (or not the slot's); EIO: binding mismatch; EHWPOISON: poisoned
 * folio; an arch prepare failure: its errno.
 * A folio that is not up-to-date is zeroed and prepared (arch hook) before it is returned.
 */
export function kvmGmemGetPfn(k: KernelCtx, slot: Memslot, gfn: Gfn): Pfn | Errno {
  const g = slot.gmem;
  if (g === null || g.file === null || g.file.released) return 'EFAULT';
  const f = g.file;
  const index = gfnToGmemIndex(slot, g.pgoff, gfn);
  if (f.bindings.get(index) !== slot) return 'EIO';
  const pfn = getPreparedFolio(k, f, index, 'guest_fault', gfn);
  if (typeof pfn === 'number') {
    // Only NO_DIRECT_MAP files zap: test the flag before the mutant set (6.18's fault path).
    if (f.noDirectMap && !k.mutants.has('nodmap_guest_map_no_zap')) k.frames.zapDirectMap(pfn, 1);
    return pfn;
  }
  return pfn === 'poisoned' ? 'EHWPOISON' : pfn.prepareFailed;
}

/**
 * The arch callback of `kvm_gmem_populate()` (`kvm_gmem_populate_cb`): fill and prepare the folio
 * of 2^order pages at `pfn` for gfns from `gfn`, from the user source `src` (undefined: NULL).
 * An errno fails the page; undefined lets guest_memfd mark the folio prepared.
 */
export type GmemPostPopulate = (
  gfn: Gfn,
  pfn: Pfn,
  src: bigint | undefined,
  order: number,
) => Errno | undefined;

/**
 * `kvm_gmem_populate()` (virt/kvm/guest_memfd.c, 6.18): the arch population path
 * (SNP_LAUNCH_UPDATE, TDX INIT_MEM_REGION; kernel-uapi.md §3.7). `npages` <= 0 is EINVAL; the
 * gfn's memslot must have guest_memfd (EINVAL) whose file is alive (EFAULT); the count is clipped
 * to the slot. Then per page, in order: `__kvm_gmem_get_pfn()` (EFAULT: not the slot's file;
 * EIO: binding mismatch; EHWPOISON), the folio allocated if absent but not zeroed (the callback
 * writes it); an up-to-date (prepared) folio is EEXIST (6.18 only: the in-place design's kvm/next
 * base populates it, in place from its contents — `GmemBacking.preparation`); the gfn must be
 * PRIVATE by attributes
 * (EINVAL); then the callback, and the folio is marked prepared when it succeeds. Returns how
 * many pages were populated, or the first page's error when none was. (No signal is ever
 * pending in the model: no EINTR.)
 */
export function kvmGmemPopulate(
  k: KernelCtx,
  vm: Vm,
  startGfn: Gfn,
  src: bigint | undefined,
  npages: number,
  postPopulate: GmemPostPopulate,
): number | Errno {
  if (npages <= 0) return 'EINVAL';
  const slot = vm.slotsByGfn[0]!.get(startGfn);
  if (slot === undefined || !slot.isGuestMemfd) return 'EINVAL';
  const g = slot.gmem;
  if (g === null || g.file === null || g.file.released) return 'EFAULT';
  const f = g.file;
  const n = Math.min(slot.npages - (startGfn - slot.baseGfn), npages);
  let ret: Errno | undefined;
  let i = 0;
  for (; i < n; i++) {
    const gfn = gfnAdd(startGfn, i);
    const index = gfnToGmemIndex(slot, g.pgoff, gfn);
    // __kvm_gmem_get_pfn()
    if (f.bindings.get(index) !== slot) {
      ret = 'EIO';
      break;
    }
    let ex = f.pages.get(index);
    if (ex === undefined && f.hugetlb) {
      // kvm_gmem_get_folio(): the huge page holding the index (split unless all private).
      gmemHugetlbAllocFolio(k, f, index, 'populate');
      ex = f.pages.get(index);
    }
    if (ex === undefined) {
      checkFolioOrder(k, f, index);
      ex = { base: k.frames.allocOne(), state: 'allocated' };
      f.pages.set(index, index + 1, ex);
      k.events.push({
        kind: 'gmem_alloc',
        ino: f.ino,
        start: index,
        end: pgoffAdd(index, 1),
        via: 'populate',
      });
    }
    if (ex.state === 'poisoned') {
      ret = 'EHWPOISON';
      break;
    }
    // 6.18 tracks preparation here; kvm/next (the in-place series' base) does not: there an
    // up-to-date folio is populated too (in place, from its current contents), and SNP's RMP
    // check is the EEXIST (sev_gmem_post_populate()).
    if (ex.state === 'prepared' && k.gmemBacking.preparation !== 'private-by-arch') {
      ret = 'EEXIST';
      break;
    }
    // kvm_range_has_memory_attributes(gfn, gfn + 1, PRIVATE, PRIVATE) at order 0 (v7 patch 06,
    // kvm_gmem_range_is_private(): the file's attributes with vm_memory_attributes=0, which
    // vm.attrs mirrors for a bound memslot).
    if (!rangeHasAttributes(vm, gfn, gfnAdd(gfn, 1), 8)) {
      ret = 'EINVAL';
      break;
    }
    ret = postPopulate(gfn, ex.base, src === undefined ? undefined : src + BigInt(i) * 4096n, 0);
    if (ret !== undefined) break;
    // kvm_gmem_mark_prepared()
    f.pages.set(index, index + 1, { base: ex.base, state: 'prepared' });
  }
  return ret !== undefined && i === 0 ? ret : i;
}
