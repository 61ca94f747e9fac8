/**
 * Invariants of page pins and IOMMU mappings (issue 14 item 6), on profiles whose guest_memfd
 * design is not 6.18's (the in-place conversion series: `parts.gmem` other than 'linux-6.18').
 *
 * - iommu-no-private: no guest_memfd index that is private is mapped by an IOMMU domain (unless
 *   the domain is a private-capable TEE-IO device's), and every frame an IOMMU domain maps is
 *   pinned (an IOMMU entry to an unpinned frame is the stale-DMA bug: the frame may be freed
 *   and reused while the device still reaches it). Nor does it map the shared zero page: a
 *   read-only long-term pin of an untouched private page unshares it first (`gup_must_unshare()`,
 *   FAULT_FLAG_UNSHARE), so the device reads the page the process maps and sees its later writes
 *   (review F7: a zero-page pin is stale from the process's first write on).
 * - no-private-with-references: no private guest_memfd index has a folio with references beyond
 *   guest_memfd's own (pins, vmsplice references): the conversion to private refuses while they
 *   are held, and no new one can be taken on a private index (host faults SIGBUS), so a
 *   conversion never completes while a pin is held.
 */
import type { Owner } from './ownership.js';
import type { KernelProfile } from '../profiles/profile.js';
import { NO_VIOLATIONS, hx, type Invariant, type Violation } from './types.js';
import { ZERO_PFN } from '../base/units.js';

/** Profiles with a guest_memfd design beyond 6.18's (in-place conversion). */
export function nextGmem(p: KernelProfile): boolean {
  return (p.parts.gmem as string) !== 'linux-6.18';
}

/**
 * Whether a guest_memfd owner's index is private: 6.18 files are private unless INIT_SHARED;
 * with in-place conversion the file's attributes say it per index.
 */
export function gmemIndexPrivate(own: Owner): boolean {
  if (own.kind !== 'gmem') return false;
  const attrs = (own.file as { attrs?: { get(k: number): unknown } }).attrs;
  return attrs !== undefined ? attrs.get(own.base) !== undefined : !own.file.initShared;
}

export const iommuNoPrivate: Invariant = {
  name: 'iommu-no-private',
  title: 'No IOMMU domain maps private memory or an unpinned page',
  statement:
    'Every frame an IOMMU domain (a VFIO type1 container) maps is pinned, none is the shared zero page, and none is a guest_memfd page whose index is private — unless the domain belongs to a private-capable (TEE-IO) device.',
  mechanism:
    'VFIO_IOMMU_MAP_DMA pins each page with FOLL_LONGTERM before mapping it (vfio_pin_pages_remote) and UNMAP_DMA unmaps before unpinning (vfio_unmap_unpin); a private guest_memfd index has no host mapping to pin, and the in-place conversion refuses to make a pinned folio private (kvm_gmem_is_safe_for_conversion: EAGAIN).',
  origin:
    'issue 14 items 3 and 6; vmm-ecosystem.md §6 I3 (no IOMMU mapping points at a private or discarded page) and the stale-IOMMU-mapping sequence of §1.1 (Michael Roth, Mar 2024).',
  appliesTo: nextGmem,
  check(s) {
    const domains = s.host.iommuDomains;
    if (domains.size === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    const o = s.ownership();
    const frames = s.host.frames;
    for (const d of domains) {
      for (const e of d.iopt.entries()) {
        const n = e.end - e.start;
        for (let i = 0; i < n; i++) {
          const pfn = e.value.base + i;
          const iova = BigInt(e.start + i) << 12n;
          if (pfn === ZERO_PFN) {
            (out ??= []).push({
              invariant: this.name,
              object: `IOVA ${hx(iova)}`,
              message: `the IOMMU maps the shared zero page at IOVA ${hx(iova)} (a long-term pin must unshare it: gup_must_unshare)`,
              focus: { pfn },
            });
            continue;
          }
          if (!frames.maybeDmaPinned(pfn)) {
            (out ??= []).push({
              invariant: this.name,
              object: `IOVA ${hx(iova)}`,
              message: `the IOMMU maps pfn ${hx(pfn)} at IOVA ${hx(iova)} without a pin (the frame may be freed and reused while the device reaches it)`,
              focus: { pfn },
            });
            continue;
          }
          if (d.teeIo) continue;
          const own = o.owners.get(pfn);
          if (own !== undefined && gmemIndexPrivate(own))
            (out ??= []).push({
              invariant: this.name,
              object: `guest_memfd #${(own as { file: { ino: number } }).file.ino} index ${hx(own.base)}`,
              message: `the IOMMU maps a private guest_memfd page at IOVA ${hx(iova)}`,
              focus: { pfn },
            });
        }
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const noPrivateWithReferences: Invariant = {
  name: 'no-private-with-references',
  title: 'A private guest_memfd page holds no pin or extra reference',
  statement:
    'No guest_memfd index that is private has a folio with references beyond guest_memfd’s own (a GUP pin, a vmsplice reference): a conversion to private never completes while one is held.',
  mechanism:
    'kvm_gmem_is_safe_for_conversion() (in-place conversion series v7): the folio refcount must be exactly the filemap’s and the scan’s after one lru_add_drain_all(), else EAGAIN with error_offset; a private index has no host mapping, so GUP cannot take a new reference.',
  origin:
    'issue 14 items 2 and 6; kernel-uapi.md §6.1 (elevated_refcount); vmm-ecosystem.md §6 I4.',
  appliesTo: nextGmem,
  check(s) {
    const frames = s.host.frames;
    if (frames.refs.size === 0 && frames.pins.size === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const vm of s.host.allVms) {
      if (vm.dead) continue;
      for (const f of vm.gmemFiles)
        for (const p of f.pages.entries()) {
          const pfn = frames.firstReferenced(p.value.base, p.end - p.start);
          if (pfn === undefined) continue;
          const index = p.start + (pfn - p.value.base);
          const own: Owner = { kind: 'gmem', file: f, base: index, state: p.value.state };
          if (!gmemIndexPrivate(own)) continue;
          (out ??= []).push({
            invariant: this.name,
            object: `guest_memfd #${f.ino} index ${hx(index)}`,
            message: `private index ${hx(index)} has a folio with ${frames.maybeDmaPinned(pfn) ? 'a pin' : 'an extra reference'} (pfn ${hx(pfn)})`,
            focus: { ino: f.ino, index, pfn },
          });
        }
    }
    return out ?? NO_VIOLATIONS;
  },
};
