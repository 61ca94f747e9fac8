/**
 * Invariants of GUEST_MEMFD_FLAG_NO_DIRECT_MAP (issue 14 items 5 and 6; kernel-uapi.md §6.3, the
 * NO_DIRECT_MAP series v12), on profiles whose guest_memfd design is not 6.18's (the only ones
 * that offer the flag). Both cost nothing until a frame leaves the direct map or a file with the
 * flag exists.
 *
 * - nodmap-freed-in-direct-map: a frame is out of the kernel's direct map only while it is a page
 *   of a NO_DIRECT_MAP guest_memfd; once the folio is freed (punch, truncation, the file's last
 *   reference) it is back in the direct map, before the page allocator can hand it to anyone.
 * - nodmap-mapped-not-in-direct-map: a page of a NO_DIRECT_MAP guest_memfd that a guest (stage 2)
 *   or host userspace (a PTE of an mmap of the file) maps is absent from the direct map.
 */
import { mappingsOf } from './stage2_coherent.js';
import { describeOwner } from './ownership.js';
import type { KernelProfile } from '../profiles/profile.js';
import type { GmemFile } from '../kvm/objects.js';
import type { Host } from '../host.js';
import { NO_VIOLATIONS, hx, type Invariant, type Violation } from './types.js';

/** Profiles with a guest_memfd design beyond 6.18's (the NO_DIRECT_MAP flag is offered there). */
function nextGmem(p: KernelProfile): boolean {
  return (p.parts.gmem as string) !== 'linux-6.18';
}

/** Whether a live VM has a guest_memfd with GUEST_MEMFD_FLAG_NO_DIRECT_MAP. */
function anyNoDirectMapFile(h: Host): boolean {
  for (const vm of h.vms) for (const f of vm.gmemFiles) if (f.noDirectMap) return true;
  return false;
}

export const nodmapFreedInDirectMap: Invariant = {
  name: 'nodmap-freed-in-direct-map',
  title: 'A freed guest_memfd folio is back in the direct map',
  statement:
    'A frame is absent from the kernel direct map only while it is a page of a guest_memfd created with GUEST_MEMFD_FLAG_NO_DIRECT_MAP: when the folio is freed (hole punch, truncation, release of the file) its direct-map entries are restored before the page allocator can hand the frame to another owner.',
  mechanism:
    'kvm_gmem_free_folio() (->free_folio, called by filemap_free_folio() when the folio leaves the page cache) runs kvm_gmem_folio_restore_direct_map() → folio_restore_direct_map() for a folio marked KVM_GMEM_FOLIO_NO_DIRECT_MAP, before kvm_arch_gmem_invalidate() and the folio_put() that frees it.',
  origin:
    'issue 14 items 5 and 6 ("a freed folio is back in the direct map"); kernel-uapi.md §6.3; the review of v9/v10 (a restore that is not called, or called after folio->mapping is gone, leaves the kernel faulting on the next owner of the page: Brendan Jackman\'s oops report on v6).',
  appliesTo: nextGmem,
  check(s) {
    const frames = s.host.frames;
    const out = frames.noDirectMap;
    if (out.size === 0) return NO_VIOLATIONS;
    let vs: Violation[] | undefined;
    const owners = s.ownership().owners;
    for (const e of out.entries()) {
      let at = e.start;
      const report = (pfn: number, what: string): void => {
        (vs ??= []).push({
          invariant: this.name,
          object: `pfn ${hx(pfn)}`,
          message: `pfn ${hx(pfn)} is not in the kernel direct map but ${what}`,
          focus: { pfn },
        });
      };
      for (const p of owners.piecesIn(e.start, e.end)) {
        if (p.start > at) report(at, 'is free (freed without folio_restore_direct_map())');
        const o = p.value;
        if (o.kind !== 'gmem' || !o.file.noDirectMap)
          report(p.start, `belongs to ${describeOwner(o)}, not to a NO_DIRECT_MAP guest_memfd`);
        at = p.end;
      }
      if (at < e.end) report(at, 'is free (freed without folio_restore_direct_map())');
    }
    return vs ?? NO_VIOLATIONS;
  },
};

/** The first page of `f` in indexes [start, end) whose frame is still in the direct map. */
function firstInDirectMap(
  h: Host,
  f: GmemFile,
  start: number,
  end: number,
): { index: number; pfn: number } | undefined {
  for (const p of f.pages.piecesIn(start, end)) {
    const n = p.end - p.start;
    const base: number = p.value.base;
    if (h.frames.noDirectMap.countIn(base, base + n) === n) continue;
    for (let i = 0; i < n; i++)
      if (h.frames.inDirectMap(base + i)) return { index: p.start + i, pfn: base + i };
  }
  return undefined;
}

export const nodmapMappedNotInDirectMap: Invariant = {
  name: 'nodmap-mapped-not-in-direct-map',
  title: 'A mapped NO_DIRECT_MAP page is out of the direct map',
  statement:
    "Every page of a guest_memfd created with GUEST_MEMFD_FLAG_NO_DIRECT_MAP that a guest maps at stage 2 or host userspace maps through an mmap of the file is absent from the kernel direct map (shared and private pages alike): guest data is never reachable through the kernel's own mapping, where transient-execution attacks could read it.",
  mechanism:
    "kvm_gmem_get_pfn() (the KVM MMU) and kvm_gmem_fault_user_mapping() (the host fault) call kvm_gmem_folio_zap_direct_map() → folio_zap_direct_map() before they hand the folio out, and a zap failure fails the fault; GUP refuses the file's VMAs (check_vma_flags(): AS_NO_DIRECT_MAP → -EFAULT), so no other path maps the page.",
  origin:
    'issue 14 items 5 and 6; kernel-uapi.md §6.3 (folios leave the direct map right before they are first mapped to the guest or to host userspace; populate-path folios at their first get_pfn).',
  appliesTo: nextGmem,
  check(s) {
    const h = s.host;
    if (!anyNoDirectMapFile(h)) return NO_VIOLATIONS;
    const frames = h.frames;
    let vs: Violation[] | undefined;
    // Stage 2: a mapping of a NO_DIRECT_MAP file's frame (whichever VM maps it).
    const owners = s.ownership().owners;
    for (const vm of h.vms) {
      const ms = mappingsOf(vm, s);
      for (let i = 0; i < ms.length; i++) {
        const { start: g0, end: g1, spte } = ms[i]!;
        if (spte.base === 0) continue;
        const n = g1 - g0;
        for (const p of owners.piecesIn(spte.base, spte.base + n)) {
          const o = p.value;
          if (o.kind !== 'gmem' || !o.file.noDirectMap) continue;
          if (frames.noDirectMap.countIn(p.start, p.end) === p.end - p.start) continue;
          let pfn = p.start;
          while (!frames.inDirectMap(pfn)) pfn++;
          const gfn = g0 + (pfn - spte.base);
          (vs ??= []).push({
            invariant: this.name,
            object: `vm${vm.index} gfn ${hx(gfn)}`,
            message: `stage 2 maps pfn ${hx(pfn)} of NO_DIRECT_MAP guest_memfd #${o.file.ino}, which is still in the kernel direct map`,
            focus: { vm: vm.index, gfn, pfn, ino: o.file.ino },
          });
        }
      }
    }
    // Host userspace: the present PTEs of guest_memfd mappings.
    const mm = h.mm;
    if (mm.gmemPtes.size !== 0)
      for (const e of mm.gmemPtes.entries())
        for (const v of mm.vmas.piecesIn(e.start, e.end)) {
          const f = v.value.obj as GmemFile | null;
          if (f === null || !f.noDirectMap) continue;
          const first = firstInDirectMap(h, f, v.value.base, v.value.base + (v.end - v.start));
          if (first === undefined) continue;
          (vs ??= []).push({
            invariant: this.name,
            object: `guest_memfd #${f.ino} index ${hx(first.index)}`,
            message: `a VMM page table entry (host page ${hx(v.start + (first.index - v.value.base))}) maps pfn ${hx(first.pfn)} of NO_DIRECT_MAP guest_memfd #${f.ino}, which is still in the kernel direct map`,
            focus: { ino: f.ino, index: first.index, pfn: first.pfn },
          });
        }
    return vs ?? NO_VIOLATIONS;
  },
};
