/**
 * guest_memfd memory attributes: the in-place conversion series v7 (kernel-uapi.md §6.1; S8:
 * googleprodkernel/linux-cc branch guest_memfd-inplace-conversion-v7, lore
 * 20260522-gmem-inplace-conversion-v7-0-2f0fae496530@google.com, patches 01, 05, 09-16, 19).
 *
 * Attributes live in the inode (`GmemFile.attrs`: the maple tree over `[0, i_size / 4K)`, all
 * PRIVATE at creation unless INIT_SHARED). `KVM_SET_MEMORY_ATTRIBUTES2` on the guest_memfd fd
 * changes them (`kvm_gmem_set_attributes()`); it exists only while `kvm.vm_memory_attributes` is 0
 * (`kvm_gmem_ioctl()`: -ENOTTY otherwise; the caller, Host, decides).
 *
 * KVM's view. With `vm_memory_attributes=0` the static call `kvm_get_memory_attributes()` is
 * `kvm_gmem_get_memory_attributes()` (v7 patch 05): gfn → memslot (address space 0) → the bound
 * file's index; no memslot, or a memslot without a live guest_memfd file → 0 (shared). The model
 * keeps that function's values in `vm.attrs` (the map every KVM consumer of attributes already
 * reads: the fault path, pre-fault, populate, hugepage mixed tracking, the invariants), recomputed
 * wherever one of its inputs changes: a conversion, a binding made (`kvm_gmem_bind()`), a binding
 * gone (`kvm_gmem_unbind()`, `kvm_gmem_release()`). So no lookup is added to the fault path.
 * Two deliberate differences from the v7 text, both documented in README ("linux-next-gmem"):
 * - only VMs with private memory see the file's attributes: in v7 `kvm_mem_is_private()` is not yet
 *   gated by `kvm_arch_has_private_mem()` (v8's "Provide generic interface for checking memory
 *   private/shared status" gates it), which would make a DEFAULT VM's accesses to a non-INIT_SHARED
 *   file memory-fault exits; the model follows v8 there;
 * - hugepage mixed tracking (`kvm_arch_post_set_memory_attributes()`) follows the file's
 *   attributes; v7 never calls it on a guest_memfd conversion (only the per-VM ioctl does), which
 *   matters only for hybrid (non-MMAP) slots: gmem-only slots map order-0 folios at 4K anyway.
 */
import type { KernelCtx } from '../../ctx.js';
import type { Errno } from '../../base/errno.js';
import { err, OK_VOID, type Result } from '../../base/result.js';
import {
  asGfn,
  asPgOff,
  isPageAligned,
  pfnAdd,
  pgoffToBytes,
  type Gfn,
  type PgOff,
} from '../../base/units.js';
import { GMEM_ATTR_PRIVATE, gmemIndexToGfn, type GmemFile, type Memslot } from '../objects.js';
import { gmemHugePages, gmemHugetlbRestructure } from './hugetlb.js';

/** struct kvm_memory_attributes2 as the ioctl reads it (after copy_from_user). */
export type KvmMemoryAttributes2 = {
  /** Union with `address` (the VM ioctl's name); a byte offset into the file here. */
  readonly offset: bigint;
  readonly size: bigint;
  readonly attributes: bigint;
  readonly flags: bigint;
  /** `reserved[11]`, each must be 0. */
  readonly reserved: readonly bigint[];
};

/**
 * The ioctl's outcome. `errorOffset` is set when the kernel writes the struct back
 * (`kvm_gmem_set_attributes()`: on any error from `__kvm_gmem_set_attributes()`, i.e. EAGAIN from
 * the conversion check and ENOMEM from the maple tree preallocation): the byte offset of the
 * index it failed at.
 */
export type GmemSetAttributesOutcome = {
  readonly result: Result<undefined>;
  readonly errorOffset?: bigint;
};

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * `kvm_gmem_set_attributes()` after copy_from_user: the checks in kernel order (v7 patches 09,
 * 10), then `__kvm_gmem_set_attributes()`.
 */
export function kvmGmemSetAttributes(
  k: KernelCtx,
  f: GmemFile,
  a: KvmMemoryAttributes2,
): GmemSetAttributesOutcome {
  const fail = (errno: Errno, check: string): GmemSetAttributesOutcome => ({
    result: err(errno, check),
  });
  // attrs.flags != 0 → EINVAL
  if (a.flags !== 0n) return fail('EINVAL', 'kvm_gmem_set_attributes: flags != 0');
  // any reserved[i] != 0 → EINVAL
  if (a.reserved.some((r) => r !== 0n))
    return fail('EINVAL', 'kvm_gmem_set_attributes: reserved != 0');
  // attributes & ~kvm_supported_mem_attributes(f->kvm) → EINVAL
  if ((a.attributes & ~(f.vm.spec.gmemMemAttributes ?? 0n)) !== 0n)
    return fail('EINVAL', 'kvm_gmem_set_attributes: unsupported attributes');
  // size == 0 || offset + size wraps → EINVAL
  if (a.size === 0n || a.offset + a.size > U64_MAX)
    return fail('EINVAL', 'kvm_gmem_set_attributes: size 0 or offset + size wraps');
  // !PAGE_ALIGNED(offset) || !PAGE_ALIGNED(size) → EINVAL
  if (!isPageAligned(a.offset) || !isPageAligned(a.size))
    return fail('EINVAL', 'kvm_gmem_set_attributes: offset or size unaligned');
  // offset >= i_size || offset + size > i_size → EINVAL
  if (a.offset >= f.size || a.offset + a.size > f.size)
    return fail('EINVAL', 'kvm_gmem_set_attributes: range beyond i_size');
  const start = asPgOff(Number(a.offset >> 12n));
  const end = asPgOff(Number((a.offset + a.size) >> 12n));
  const refused = kvmGmemSetAttributesRange(k, f, start, end, Number(a.attributes));
  if (refused === undefined) return { result: OK_VOID };
  return { result: err(refused.errno, refused.check), errorOffset: pgoffToBytes(refused.index) };
}

/** `kvm_gmem_range_has_attributes()`: does every index of [start, end) have exactly `attrs`? */
export function kvmGmemRangeHasAttributes(
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  attrs: number,
): boolean {
  if (attrs === 0) return !f.attrs.anyIn(start, end);
  return attrs === GMEM_ATTR_PRIVATE && f.attrs.covers(start, end);
}

/**
 * `kvm_gmem_is_safe_for_conversion()` (v7 patches 10, 14): every folio in [start, end) must hold
 * only guest_memfd's own references (`folio_ref_count() == folio_nr_pages() + 1`, the filemap's
 * and the scan's); on a mismatch the per-CPU LRU-add batches are drained once
 * (`lru_add_drain_all()`) and the folio re-checked. Returns the index to report (`max(start,
 * folio->index)`) for the first folio still elevated, or undefined when the range is safe.
 *
 * Page references and pins (issue 14 item 2) are the frame store's (`FrameStore.refs` / `.pins`:
 * vmsplice references, GUP and VFIO pins); host mappings were unmapped by the caller, so they do
 * not count. The model's folios are order 0: the first elevated folio's index is the index to
 * report. The model keeps no per-CPU LRU-add batch references (a folio's batch reference is
 * dropped by the drain before the re-check in the kernel too), so the drain changes nothing and
 * the re-check gives the first check's answer.
 */
export function gmemSafeForConversion(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
): PgOff | undefined {
  const frames = k.frames;
  if (frames.refs.size === 0 && frames.pins.size === 0) return undefined;
  // Injected bug: the conversion ignores the references (a pinned page goes private).
  if (k.mutants.has('conversion_ignores_pin')) return undefined;
  if (gmemFirstElevated(k, f, start, end) === undefined) return undefined;
  // lru_add_drain_all(), once, then the folios are checked again.
  return gmemFirstElevated(k, f, start, end);
}

/**
 * The first index of [start, end) whose frame has references beyond guest_memfd's own
 * (`kvm_gmem_has_safe_refcount()`'s per-folio test, reported at the page), or undefined.
 */
export function gmemFirstElevated(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
): PgOff | undefined {
  const frames = k.frames;
  if (frames.refs.size === 0 && frames.pins.size === 0) return undefined;
  for (const p of f.pages.piecesIn(start, end)) {
    const pfn = frames.firstReferenced(p.value.base, p.end - p.start);
    if (pfn !== undefined) return asPgOff(p.start + (pfn - p.value.base));
  }
  return undefined;
}

/**
 * `__kvm_gmem_set_attributes()` (v7 patches 09-12, 16): set [start, end) of the file to `attrs`.
 * Returns undefined on success (or when the range already has `attrs`), else the errno and the
 * index to report in `error_offset`.
 */
export function kvmGmemSetAttributesRange(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  attrs: number,
): { readonly errno: Errno; readonly check: string; readonly index: PgOff } | undefined {
  // Nothing to do if the range already has the requested attributes (patch 12).
  if (kvmGmemRangeHasAttributes(f, start, end, attrs)) return undefined;
  if (!f.hugetlb) return kvmGmemConvert(k, f, start, end, attrs);
  // HugeTLB (guest_memfd/hugetlb.ts): "for page_order > 0, convert one huge page at a time"; a
  // batch that fails ends the ioctl with the batches before it converted.
  const n = gmemHugePages(f);
  for (let b: number = start; b < end;) {
    const be = asPgOff(Math.min((Math.floor(b / n) + 1) * n, end));
    const r = kvmGmemConvert(k, f, asPgOff(b), be, attrs);
    if (r !== undefined) return r;
    b = be;
  }
  return undefined;
}

/**
 * `kvm_gmem_convert()`: one conversion of [start, end) to `attrs` (the whole range, or on a
 * HugeTLB file one batch within a huge page).
 */
function kvmGmemConvert(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  attrs: number,
): { readonly errno: Errno; readonly check: string; readonly index: PgOff } | undefined {
  // kvm_gmem_mas_preallocate(): the model's range map never fails to allocate (no ENOMEM).
  const toPrivate = (attrs & GMEM_ATTR_PRIVATE) !== 0;
  if (toPrivate) {
    // unmap_mapping_pages(): no host page table maps the range any more, in every process that
    // mapped the file (a forked child's too). It stays unmapped even when the check below
    // refuses. Injected bug: only the calling process's mappings go.
    if (k.mutants.has('conversion_unmaps_current_mm')) k.mm.unmapMappingRange(f, start, end);
    else k.unmapMappingRange(f, start, end);
    const bad = gmemSafeForConversion(k, f, start, end);
    if (bad !== undefined)
      return {
        errno: 'EAGAIN',
        check: 'kvm_gmem_is_safe_for_conversion: a folio has unexpected references',
        index: bad,
      };
  }
  // HugeTLB, to shared: kvm_gmem_split_private() first splits the private huge guest mappings
  // that cross the range's ends (kvm_split_cross_boundary_leafs()), so the zap below takes only
  // the converted pages and the rest of the huge page stays mapped at 4K.
  if (!toPrivate && f.hugetlb)
    for (const b of f.bindings.piecesIn(start, end)) {
      const slot = b.value;
      if (slot.gmem === null) continue;
      const pgoff = slot.gmem.pgoff;
      k.arch.splitHugeLeafs?.(
        k,
        f.vm,
        slot.asId,
        gmemIndexToGfn(slot, pgoff, asPgOff(b.start)),
        gmemIndexToGfn(slot, pgoff, asPgOff(b.end)),
      );
    }
  // From here on the conversion cannot fail. kvm_gmem_invalidate_begin(): zap the guest mappings
  // of [start, end) in every bound memslot. The filter (kvm_gmem_get_invalidate_filter(), patch
  // 16: PRIVATE, SHARED or both from the attributes in range) restricts the zap only for VMs with
  // mirrored page tables; x86 without them zaps the whole range, as the model does.
  for (const b of k.mutants.has('attr_change_no_zap') ? [] : f.bindings.piecesIn(start, end)) {
    const slot = b.value;
    if (slot.gmem === null) continue;
    const pgoff = slot.gmem.pgoff;
    k.arch.invalidateGfnRange(
      k,
      f.vm,
      slot.asId,
      gmemIndexToGfn(slot, pgoff, asPgOff(b.start)),
      gmemIndexToGfn(slot, pgoff, asPgOff(b.end)),
      'set_memory_attributes',
    );
  }
  // To shared: kvm_gmem_invalidate() (patch 11), the arch invalidate hook for every folio in
  // range (SNP: RMP reclaim). Page contents are kept either way.
  if (!toPrivate) {
    for (const p of f.pages.piecesIn(start, end))
      k.arch.gmemInvalidate(k, p.value.base, pfnAdd(p.value.base, p.end - p.start));
  }
  // mas_store_prealloc()
  if (toPrivate) f.attrs.set(start, end, GMEM_ATTR_PRIVATE);
  else f.attrs.delete(start, end);
  // HugeTLB: kvm_gmem_restructure() splits (to shared) or merges (all private again).
  if (f.hugetlb) gmemHugetlbRestructure(k, f, start, end, toPrivate);
  // kvm_gmem_invalidate_end(); KVM's view through kvm_gmem_get_memory_attributes() changes with
  // the file for every binding in range.
  for (const b of f.bindings.piecesIn(start, end))
    gmemSyncKvmAttributes(k, b.value, asPgOff(b.start), asPgOff(b.end), true);
  return undefined;
}

/**
 * KVM's attributes (`kvm_get_memory_attributes()` = `kvm_gmem_get_memory_attributes()` with
 * `vm_memory_attributes=0`) for the gfns of `slot` bound to indices [start, end) of its file:
 * the file's attributes while `bound` (the memslot points at a live file), else shared. Kept in
 * `vm.attrs` (see the file comment); hugepage mixed tracking follows (`notifyArch`: not at bind
 * time, when the new memslot's metadata is computed from `vm.attrs` next). A no-op unless the
 * profile has per-guest_memfd attributes and the VM has private memory.
 */
export function gmemSyncKvmAttributes(
  k: KernelCtx,
  slot: Memslot,
  start: PgOff,
  end: PgOff,
  bound: boolean,
  notifyArch = true,
): void {
  const g = slot.gmem;
  if (k.profile.gmemMemoryAttributes !== true || g === null || end <= start) return;
  const f = g.file;
  if (f === null) return;
  const vm = f.vm;
  // gfn_to_memslot() looks in address space 0 only; VMs with private memory have no other.
  if (!vm.spec.hasPrivateMem || slot.asId !== 0) return;
  const g0 = gmemIndexToGfn(slot, g.pgoff, start);
  const g1 = gmemIndexToGfn(slot, g.pgoff, end);
  vm.attrs.delete(g0, g1);
  if (bound) {
    for (const p of f.attrs.piecesIn(start, end))
      vm.attrs.set(
        gmemIndexToGfn(slot, g.pgoff, asPgOff(p.start)),
        gmemIndexToGfn(slot, g.pgoff, asPgOff(p.end)),
        p.value,
      );
  }
  vm.mmuInvalidateSeq++;
  // One event per uniform run of the new view.
  let at = g0;
  vm.attrs.forEachIn(g0, g1, (s, e, v) => {
    if (s > at) pushAttrs(k, vm.index, at, asGfnKey(s), 0);
    pushAttrs(k, vm.index, asGfnKey(s), asGfnKey(e), v);
    at = asGfnKey(e);
    return true;
  });
  if (at < g1) pushAttrs(k, vm.index, at, g1, 0);
  if (notifyArch) k.arch.postSetMemoryAttributes(k, vm, slot, g0, g1);
}

const asGfnKey = asGfn;

function pushAttrs(k: KernelCtx, vm: number, start: Gfn, end: Gfn, attrs: number): void {
  k.events.push({ kind: 'attributes', vm, start, end, attributes: BigInt(attrs) });
}
