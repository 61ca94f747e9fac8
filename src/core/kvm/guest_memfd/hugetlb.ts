/**
 * HugeTLB-backed guest_memfd (kernel-uapi.md §6.2, issue 14 item 4). The model follows the
 * newest code in the store: the wip tree that restructures the RFC v2 series on top of in-place
 * conversion (virt/kvm/guest_memfd.c with virt/kvm/guest_memfd_hugetlb.c, as carried by
 * AMDESE/linux-kvm and intel/tdx; "hugetlb_restructuring"), where it differs from RFC v2 (May
 * 2025, 51 patches on 6.15: the "guestmem_hugetlb" custom allocator, the page size in bits 63:58
 * of `flags`, KVM_GMEM_CONVERT_SHARED/PRIVATE):
 * - KVM_CREATE_GUEST_MEMFD takes the huge page order in its own `page_order` field;
 *   `gmem_hugetlb_valid_order()` accepts an order with an hstate (x86-64: 9 and 18); the size
 *   must be a multiple of the huge page size; HUGETLB with INIT_SHARED is EINVAL; the subpool
 *   reserves the whole file at creation (`gmem_hugetlb_setup()`: -ENOMEM).
 * - `kvm_gmem_get_folio()` allocates the huge folio of the index (`gmem_hugetlb_alloc_folio()`),
 *   and `__maybe_split_fresh_folio()` splits it to 4K at once unless every index it covers is
 *   private.
 * - A conversion (`__kvm_gmem_set_attributes()`) runs one huge page at a time
 *   (`kvm_gmem_convert()` per batch); `kvm_gmem_restructure()` splits the folio to order 0 on the
 *   way to shared, and merges it back to the huge order when the conversion to private leaves
 *   every index of the huge page private.
 * - fallocate's offset and length must be huge-page aligned (EINVAL); PUNCH_HOLE merges the
 *   folios of the range (`merge_truncate_range(..., require_merge)`: EAGAIN when a folio has
 *   extra references) and frees whole huge folios back to the subpool.
 * - The guest mapping order (`__kvm_gmem_get_pfn()`'s `max_order`) is the folio's order, so a
 *   split folio maps at 4K and a whole one up to its size.
 * Invariant of the design, which the model keeps and the invariants check: an allocated huge
 * page of the file is one huge folio exactly when all its indices are private.
 */
import type { KernelCtx } from '../../ctx.js';
import { asPgOff, type PgOff } from '../../base/units.js';
import type { GmemFile } from '../objects.js';

/** Indices per huge page of a HugeTLB file. */
export function gmemHugePages(f: GmemFile): number {
  return 2 ** f.pageOrder;
}

/** The first index of the huge page holding `index`. */
export function gmemHugeStart(f: GmemFile, index: number): PgOff {
  const n = gmemHugePages(f);
  return asPgOff(Math.floor(index / n) * n);
}

/** `kvm_gmem_range_has_attributes(..., PRIVATE)`: is every index of [start, end) private? */
function allPrivate(f: GmemFile, start: number, end: number): boolean {
  return f.attrs.covers(start, end);
}

/**
 * `gmem_hugetlb_alloc_folio()` then `__maybe_split_fresh_folio()`: the huge folio of the absent
 * huge page holding `index`, from the subpool's reservation (it cannot fail: the subpool
 * reserved the whole file at creation), in 2^pageOrder aligned contiguous frames, not up to
 * date; split to order 0 at once unless the whole huge page is private.
 */
export function gmemHugetlbAllocFolio(
  k: KernelCtx,
  f: GmemFile,
  index: number,
  via: 'fallocate' | 'guest_fault' | 'host_fault' | 'populate',
): void {
  const start = gmemHugeStart(f, index);
  const n = gmemHugePages(f);
  const end = asPgOff(start + n);
  const base = k.frames.allocAligned(n);
  f.pages.set(start, end, { base, state: 'allocated' });
  k.events.push({ kind: 'gmem_alloc', ino: f.ino, start, end, via });
  // __maybe_split_fresh_folio(): a fresh folio over a shared index is split right away.
  f.folioOrders.set(start, end, allPrivate(f, start, end) ? f.pageOrder : 0);
  if (f.folioOrders.get(start) === 0)
    k.events.push({ kind: 'gmem_restructure', ino: f.ino, start, end, order: 0 });
}

/**
 * The folio holding the allocated `index`: [start, end) and its order (a split huge page's
 * folios are single pages).
 */
export function gmemFolioAt(
  f: GmemFile,
  index: number,
): { readonly start: PgOff; readonly end: PgOff; readonly order: number } {
  const order = f.hugetlb ? (f.folioOrders.get(index) ?? 0) : 0;
  if (order === 0) return { start: asPgOff(index), end: asPgOff(index + 1), order: 0 };
  const start = gmemHugeStart(f, index);
  return { start, end: asPgOff(start + 2 ** order), order };
}

/**
 * `kvm_gmem_restructure()` for the huge pages [start, end) touches, after their attributes
 * changed to private (`toPrivate`) or shared: on the way to shared the folio is split to order 0;
 * on the way to private it is merged back to the huge order when every index of the huge page is
 * now private (the kernel looks at the indices outside the batch before storing the new
 * attributes; looking at the whole huge page after storing them is the same), else it stays
 * split. `hugetlb_restructuring_restructure_folio()` keeps the frames: only the folio boundaries
 * change. A huge page not allocated (`filemap_get_folio()` finds nothing) is left alone.
 */
export function gmemHugetlbRestructure(
  k: KernelCtx,
  f: GmemFile,
  start: PgOff,
  end: PgOff,
  toPrivate: boolean,
): void {
  const n = gmemHugePages(f);
  for (let h: number = gmemHugeStart(f, start); h < end; h += n) {
    const cur = f.folioOrders.get(h);
    if (cur === undefined) continue;
    let to = toPrivate && allPrivate(f, h, h + n) ? f.pageOrder : 0;
    // Injected bug: the merge looks only at the converted range, not the rest of the huge page.
    if (toPrivate && k.mutants.has('hugetlb_merge_with_shared')) to = f.pageOrder;
    if (cur === to) continue;
    f.folioOrders.set(h, h + n, to);
    // Injected bug: the split loses the last subpage (out of the file, its frame still allocated).
    if (to === 0 && k.mutants.has('hugetlb_split_loses_page')) {
      f.pages.delete(h + n - 1, h + n);
      f.folioOrders.delete(h + n - 1, h + n);
    }
    k.events.push({
      kind: 'gmem_restructure',
      ino: f.ino,
      start: asPgOff(h),
      end: asPgOff(h + n),
      order: to,
    });
  }
}

/** `merge_folios_in_range()` before a punch or the inode's final truncation: whole huge folios. */
export function gmemHugetlbMergeRange(k: KernelCtx, f: GmemFile, start: PgOff, end: PgOff): void {
  const n = gmemHugePages(f);
  for (const p of f.folioOrders.piecesIn(start, end)) {
    if (p.value === f.pageOrder) continue;
    for (let h: number = gmemHugeStart(f, p.start); h < p.end; h += n) {
      f.folioOrders.set(h, h + n, f.pageOrder);
      k.events.push({
        kind: 'gmem_restructure',
        ino: f.ino,
        start: asPgOff(h),
        end: asPgOff(h + n),
        order: f.pageOrder,
      });
    }
  }
}
