/**
 * "The host cannot reach private memory" as each historical design defines it (issue 15: every
 * design runs with its own definition, so a forbidden access that the design lets happen shows as
 * a violation, never silently). The base invariant (host_no_private_access.ts) defines private
 * memory as guest_memfd pages; a design that keeps guest memory elsewhere defines it here.
 *
 * - host-no-private-access-protnone-follkvm (design-2020-protnone-follkvm): private memory is
 *   every page a VM_KVM_PROTECTED VMA maps, anonymous or shmem, whatever else maps or pins it.
 *   KVM may reach it (the design's FOLL_KVM GUP maps it into the guest, and KVM's own copies go
 *   through FOLL_KVM too); the VMM's loads and stores and a device's DMA may not. The mm refuses
 *   the VMM's protected mapping (SIGBUS) and new GUP pins (-EFAULT), but the RFC protects the
 *   VMM's VMAs, not the pages (its cover letter admits file-backed pages stay reachable): a page
 *   DMA-mapped before the guest enabled protection, or a shmem page a forked child maps, stays
 *   reachable, and each such access is a violation (the design's real hole, kept reported).
 * - host-no-private-access-separate-mm (design-2020-separate-mm): private memory is every
 *   anonymous page of an address space of no process (address_space_mmap() with no source):
 *   the design's own definition, "nothing other than KVM will ever reference the PTEs". KVM's
 *   hva_to_pfn() and uaccess in that mm are the design's path into the guest; a VMM load or
 *   store, or a device's DMA, reaching such a frame is a violation. Shared memory mapped there from the VMM's own
 *   MAP_SHARED mapping is the VMM's as well and is not private.
 * - host-no-private-access-restrictedmem (design-2023-restrictedmem): private memory is every
 *   page of a restricted fd, whatever its attributes (shared memory lives at userspace_addr,
 *   never in the fd), and nothing on the host reaches it: not the VMM (no mmap, no read), not
 *   GUP (no mapping to pin), not KVM's uaccess (private faults go to the fd), not a device. On
 *   this profile every guest_memfd file object is a restricted fd's pages (kvm/restrictedmem.ts:
 *   KVM_CREATE_GUEST_MEMFD does not exist there), so the base invariant's guest_memfd test
 *   becomes "any page of the file"; the base invariant stands aside on this profile.
 * - host-no-private-access-shmem-exclusive-pin (design-2024-shmem-exclusive-pin): private memory
 *   is every page KVM holds with an exclusive pin (not the other pages of its folio, which the
 *   pin keeps from devices but which the guest may use as shared pages). KVM's own stage-2 GUP may reach it; a VMM
 *   load or store, KVM's uaccess and a device's DMA may not. The pin keeps every other pin away
 *   (so no device can be given the page), but on a host without pKVM's or Gunyah's hypervisor
 *   nothing stops the VMM's own loads and stores through its mapping: those are violations.
 */
import { RangeMap, extentOps } from '../base/ranges/range_map.js';
import type { Host } from '../host.js';
import { VMA_KVM_PROTECTED } from '../mm/mm_types.js';
import type { ShmemObject } from '../mm/shmem.js';
import { NO_VIOLATIONS, hx, type Invariant, type Violation } from './types.js';

/** Whether host virtual page `hvpn` lies in a VM_KVM_PROTECTED VMA. */
function kvmProtectedAt(h: Host, hvpn: number): boolean {
  const v = h.mm.vmas.get(hvpn);
  return v !== undefined && (v.flags & VMA_KVM_PROTECTED) !== 0;
}

/**
 * Whether page `index` of shmem object `obj` is mapped by a VM_KVM_PROTECTED VMA of any live
 * process (the VMM's guest RAM may be shmem, and the protection is a property of the VMM's VMA,
 * not of the page: another mapping of the same page stays open).
 */
function shmemProtected(h: Host, obj: ShmemObject, index: number): boolean {
  for (const mm of h.allMms())
    for (const e of mm.vmas.entries()) {
      const v = e.value;
      if (v.obj !== obj || (v.flags & VMA_KVM_PROTECTED) === 0) continue;
      if (index >= v.base && index < v.base + (e.end - e.start)) return true;
    }
  return false;
}

export const hostNoPrivateAccessProtnone: Invariant = {
  name: 'host-no-private-access-protnone-follkvm',
  title: 'design-2020-protnone-follkvm: the host never touches protected guest RAM',
  statement:
    "No page that a VM_KVM_PROTECTED VMA maps (a protected VM's memory the guest has not shared, anonymous or shmem) is read or written by a VMM load or store or by a device's DMA, through any mapping or pin; only KVM reaches it (get_user_pages() with FOLL_KVM, KVM's own copies).",
  mechanism:
    "The KVM protected memory extension RFC v2: KVM_HC_ENABLE_MEM_PROTECTED and KVM_HC_MEM_UNSHARE set VM_KVM_PROTECTED on the memslots' VMAs (__kvm_protect_memory → mprotect_fixup, vm_page_prot PAGE_NONE as NUMA hinting makes PTEs); do_numa_page() turns a user fault on them into VM_FAULT_SIGBUS and a GUP that honors NUMA hinting faults into -EFAULT, while FOLL_KVM follows the PTEs. The protection is on the VMM's VMAs, not the pages: pins taken before it and other processes' mappings of shmem guest RAM stay open.",
  origin:
    'seed 002 (the RFCv2 thread, Oct 2020); the RFC\'s cover letter ("any userspace access ... SIGBUS, any GUP access without FOLL_KVM ... -EFAULT"); issue 15 item 1.',
  appliesTo: (p) => p.design === 'protnone-follkvm',
  check(s) {
    if (s.hostAccesses.length === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    let o: ReturnType<typeof s.ownership> | undefined;
    for (const a of s.hostAccesses) {
      if (a.freedLater === true) continue;
      // KVM's own paths are the design's: it maps protected memory into the guest.
      if (a.path !== 'vmm' && a.path !== 'dma') continue;
      o ??= s.ownership();
      const own = o.owners.get(a.pfn);
      if (own === undefined) continue;
      let what: string;
      if (own.kind === 'anon' && kvmProtectedAt(s.host, own.base))
        what = `anonymous memory at host page ${hx(own.base)}`;
      else if (own.kind === 'shmem' && shmemProtected(s.host, own.obj, own.base))
        what = `shmem object ${own.obj.id} page ${hx(own.base)}`;
      else continue;
      (out ??= []).push({
        invariant: this.name,
        object:
          own.kind === 'anon'
            ? `host page ${hx(own.base)}`
            : `shmem ${own.obj.id} page ${hx(own.base)}`,
        message: `${a.path === 'dma' ? 'a device DMA (IOMMU)' : 'a VMM'} ${a.write ? 'write to' : 'read of'} protected guest RAM (${what}, pfn ${hx(a.pfn)}, mapped by a VM_KVM_PROTECTED VMA): the RFC protects the VMM's mappings, not the pages`,
        focus: { pfn: a.pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const hostNoPrivateAccessRestrictedmem: Invariant = {
  name: 'host-no-private-access-restrictedmem',
  title: "design-2023-restrictedmem: the host never touches a restricted fd's pages",
  statement:
    "No page of a restricted fd (memfd_restricted()) is read or written on behalf of the host: not by a VMM load or store, not by read(), not by get_user_pages(), not by KVM's uaccess, not by a device's DMA. The private half of a KVM_MEM_PRIVATE memslot is reached only by the guest.",
  mechanism:
    "restrictedmem_fops has no mmap, read or write (mmap → ENODEV, pread → ESPIPE), so no host page table and no GUP reaches the pages; KVM gets them with restrictedmem_get_page() for private faults only, and the shared half of the memslot is the VMM's own memory at userspace_addr.",
  origin:
    'seed 004 (the UPM v10 thread, Jan 2023: "userspace is restricted to access the bookmarked memory in the fd"); issue 15 item 1.',
  appliesTo: (p) => p.design === 'restrictedmem',
  check(s) {
    if (s.hostAccesses.length === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    let o: ReturnType<typeof s.ownership> | undefined;
    for (const a of s.hostAccesses) {
      if (a.freedLater === true) continue;
      o ??= s.ownership();
      const own = o.owners.get(a.pfn);
      if (own === undefined || own.kind !== 'gmem') continue;
      (out ??= []).push({
        invariant: this.name,
        object: `restricted fd #${own.file.ino} page ${hx(own.base)}`,
        message: `host ${a.write ? 'write to' : 'read of'} a restricted fd's page (#${own.file.ino} index ${hx(own.base)}, pfn ${hx(a.pfn)}) through ${a.path === 'vmm' ? 'the VMM (a load or store, or a read())' : a.path === 'gup' ? 'get_user_pages' : a.path === 'dma' ? 'a device DMA (IOMMU)' : "KVM's uaccess"}`,
        focus: { ino: own.file.ino, index: own.base, pfn: a.pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const hostNoPrivateAccessExclusivePin: Invariant = {
  name: 'host-no-private-access-shmem-exclusive-pin',
  title: 'design-2024-shmem-exclusive-pin: the host never touches an exclusively pinned page',
  statement:
    "No page that KVM holds with an exclusive pin (a guest page made private) is read or written by a VMM load or store, by KVM's uaccess or by a device's DMA; only the guest, through KVM's stage-2 mapping, reaches it.",
  mechanism:
    'The exclusive GUP pinning RFC: KVM pins a private page with FOLL_PIN | FOLL_LONGTERM | FOLL_EXCLUSIVE, which fails while its folio has another pin and refuses every later FOLL_PIN of the folio (-EBUSY), so no device is given the page; keeping the host CPU away is left to the hypervisor of pKVM or Gunyah (its stage-2 unmaps the page from the host), which this host does not have.',
  origin:
    'seed 003 (the June 2024 thread: "who would get the exclusive PIN and for which reason? When would we pin, when would we unpin?"); issue 15 item 1.',
  appliesTo: (p) => p.design === 'shmem-exclusive-pin',
  check(s) {
    if (s.hostAccesses.length === 0) return NO_VIOLATIONS;
    // The guest's private pages (KVM's exclusive pins, by pfn): not every frame of an exclusively
    // pinned folio, whose other pages a THP may give the guest as shared pages.
    if (s.host.frames.exclusive.size === 0) return NO_VIOLATIONS;
    const priv = new RangeMap<true>();
    for (const vm of s.host.vms)
      if (vm.exclusivePins !== undefined)
        for (const e of vm.exclusivePins.entries())
          priv.set(e.value.base, e.value.base + (e.end - e.start), true);
    let out: Violation[] | undefined;
    for (const a of s.hostAccesses) {
      if (a.freedLater === true || a.path === 'gup') continue;
      if (priv.get(a.pfn) === undefined) continue;
      (out ??= []).push({
        invariant: this.name,
        object: `pfn ${hx(a.pfn)}`,
        message: `${a.path === 'dma' ? 'a device DMA (IOMMU)' : a.path === 'vmm' ? 'a VMM' : "KVM's uaccess"} ${a.write ? 'write to' : 'read of'} a private guest page (pfn ${hx(a.pfn)}, pinned exclusively by KVM): nothing but a hypervisor's stage-2 keeps the host CPU away, and this host has none`,
        focus: { pfn: a.pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};

/** The frames of every anonymous page of an address space of no process, by pfn. */
function guestMmPrivateFrames(h: Host): RangeMap<{ readonly base: number }> | undefined {
  let out: RangeMap<{ readonly base: number }> | undefined;
  for (const mm of h.guestMms.keys())
    for (const e of mm.anon.entries()) {
      out ??= new RangeMap<{ readonly base: number }>(hvpnAtOps);
      out.set(e.value.base, e.value.base + (e.end - e.start), { base: e.start });
    }
  return out;
}

/** pfn extents whose value is the host page (of the guest address space) of their first frame. */
const hvpnAtOps = extentOps<{ readonly base: number }>(() => true);

export const hostNoPrivateAccessSeparateMm: Invariant = {
  name: 'host-no-private-access-separate-mm',
  title:
    'design-2020-separate-mm: nothing but KVM reaches memory mapped only in a guest address space',
  statement:
    "No frame of private memory in an address space of no process (an anonymous page that address_space_mmap() put there) is read or written by a VMM load or store or by a device's DMA; only KVM reaches it (hva_to_pfn() and its uaccess in that address space).",
  mechanism:
    "Andy Lutomirski's separate mm (reply to the RFCv2, Oct 2020): the memory is mapped only in an mm_struct that no CPU loads in CR3, so no task's page table and no get_user_pages() of a process (vmsplice, VFIO_IOMMU_MAP_DMA, O_DIRECT) can name it; the address-space fd has no read, write or mmap; KVM references the mm as it references the VMM's today.",
  origin:
    'seed 002 (Lutomirski, 2020-10-26: "nothing other than KVM will ever reference the PTEs"); issue 15 item 1.',
  appliesTo: (p) => p.design === 'separate-mm',
  check(s) {
    const h = s.host;
    if (h.guestMms.size === 0) return NO_VIOLATIONS;
    if (s.hostAccesses.length === 0) return NO_VIOLATIONS;
    const priv = guestMmPrivateFrames(h);
    if (priv === undefined) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const a of s.hostAccesses) {
      if (a.freedLater === true) continue;
      // KVM's own paths (its GUP and uaccess in the address space) are the design's.
      if (a.path !== 'vmm' && a.path !== 'dma') continue;
      const at = priv.entryAt(a.pfn);
      if (at === undefined) continue;
      const hv = at.value.base + (a.pfn - at.start);
      (out ??= []).push({
        invariant: this.name,
        object: `pfn ${hx(a.pfn)}`,
        message: `${a.path === 'dma' ? 'a device DMA (IOMMU)' : 'a VMM'} ${a.write ? 'write to' : 'read of'} private memory of a guest address space (anonymous page at its host page ${hx(hv)}, pfn ${hx(a.pfn)})`,
        focus: { pfn: a.pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};
