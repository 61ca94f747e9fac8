/**
 * VM_KVM_PROTECTED VMAs, design-2020-protnone-follkvm only: `__kvm_protect_memory()` of the "KVM
 * protected memory extension" RFC v2 (Kirill A. Shutemov, 2020-10-20, patch 11 "KVM: Protected
 * memory extension", virt/lib/mem_protected.c). KVM calls it with the VMM's mm for the hva range
 * of a memslot (or of the pages a guest shares or unshares); it walks the VMAs of the range and
 * runs `mprotect_fixup()` on each with VM_KVM_PROTECTED set or cleared, keeping VM_READ|VM_WRITE:
 * the protection lives in `vm_page_prot` (PAGE_NONE for a protected VMA), as NUMA balancing keeps
 * present-but-inaccessible PTEs. memory.ts gives the resulting faults (SIGBUS, -EFAULT, FOLL_KVM).
 */
import { ERRNO_NUMBERS } from '../base/errno.js';
import { asHvpn, hvpnAdd, type Hvpn } from '../base/units.js';
import { VMA_KVM_PROTECTED, type MmStruct } from './mm_types.js';
import { splitThp } from './huge_memory.js';

/**
 * `__kvm_protect_memory(start, end, protect)`: 0, or -ENOMEM when no VMA is at or after `s` or
 * the range has a hole (the VMAs before the hole stay changed, as the RFC's loop leaves them),
 * -EINVAL when the first VMA starts after `s`.
 */
export function kvmProtectVmas(mm: MmStruct, s: Hvpn, e: Hvpn, protect: boolean): number {
  // find_vma(): the first VMA ending after start.
  let first = mm.vmas.entryAt(s);
  if (first === undefined) {
    const next = mm.vmas.ceilEntry(s);
    if (next === undefined) return -ERRNO_NUMBERS.ENOMEM;
    first = next;
  }
  if (first.start > s) return -ERRNO_NUMBERS.EINVAL;
  let cur = s;
  while (cur < e) {
    const ent = mm.vmas.entryAt(cur);
    if (ent === undefined) return -ERRNO_NUMBERS.ENOMEM;
    const v = mm.vmas.get(cur)!;
    const pe = asHvpn(Math.min(ent.end, e));
    const flags = protect ? v.flags | VMA_KVM_PROTECTED : v.flags & ~VMA_KVM_PROTECTED;
    // "The VMA has been handled as part of other memslot": nothing to change.
    if (flags !== v.flags) {
      // mprotect_fixup() → change_protection() rewrites the PTEs in both directions and
      // notifies secondary MMUs each time (KVM zaps the guest's mappings, which its next fault
      // rebuilds).
      mm.notifiers.invalidateRangeStart(cur, pe);
      // A VMA split inside a THP splits its PMD mapping.
      if (cur % 512 !== 0) splitThp(mm, cur, hvpnAdd(cur, 1));
      if (pe % 512 !== 0) splitThp(mm, hvpnAdd(pe, -1), pe);
      mm.vmas.set(cur, pe, { ...v, flags });
    }
    cur = pe;
  }
  return 0;
}
