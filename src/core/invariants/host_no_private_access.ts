/**
 * host-no-private-access: the VMM never reads or writes a private guest page, through any path.
 */
import { describeOwner } from './ownership.js';
import { NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const hostNoPrivateAccess: Invariant = {
  name: 'host-no-private-access',
  title: 'The host never touches private memory',
  statement:
    "No page of a guest_memfd file that holds private memory (a file created without GUEST_MEMFD_FLAG_INIT_SHARED; with in-place conversion, an index whose attributes are PRIVATE at the time) is ever read or written on behalf of the host: not by a VMM load or store through a mapping, not by read()/pread(), not by get_user_pages() for a shared stage-2 fault or KVM's own uaccess.",
  mechanism:
    'guest_memfd has no read/write file operations (pread → ESPIPE), refuses mmap without GUEST_MEMFD_FLAG_MMAP (ENODEV), and its fault handler kvm_gmem_fault_user_mapping() returns VM_FAULT_SIGBUS for files without INIT_SHARED; KVM never GUPs guest_memfd for private faults (kvm_mmu_faultin_pfn_gmem).',
  origin:
    'kernel-uapi.md §1.3, §2.3; the 2022 "fd-based private memory" design goal; vmm-ecosystem.md §6 I1.',
  // design-2023-restrictedmem defines private memory its own way
  // (host-no-private-access-restrictedmem).
  appliesTo: (p) => p.design !== 'restrictedmem',
  check(s) {
    if (s.hostAccesses.length === 0) return NO_VIOLATIONS;
    const o = s.ownership();
    const out: Violation[] = [];
    for (const a of s.hostAccesses) {
      // A frame released after the access in the same step met the owner it had then, which
      // the ownership map no longer shows (freed: no owner; reused: the next one's).
      if (a.freedLater === true) continue;
      const own = o.owners.get(a.pfn);
      // Private: the file's attribute at that index (GmemFile.attrs). In 6.18 it is set once,
      // from INIT_SHARED, for the whole file; with in-place conversion it changes per index.
      if (own === undefined || own.kind !== 'gmem' || own.file.attrs.get(own.base) === undefined)
        continue;
      out.push({
        invariant: this.name,
        object: `guest_memfd #${own.file.ino} index 0x${own.base.toString(16)}`,
        message: `host ${a.write ? 'write to' : 'read of'} a private page (${describeOwner(own)}) through ${a.path === 'vmm' ? 'a VMM mapping' : a.path === 'gup' ? 'get_user_pages' : a.path === 'dma' ? 'a device DMA (IOMMU)' : "KVM's uaccess"}`,
        focus: { ino: own.file.ino, index: own.base, pfn: a.pfn },
      });
    }
    return out;
  },
};
