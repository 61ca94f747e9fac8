/**
 * zero-before-use: a page's previous contents are never observed by its next user.
 */
import { describeOwner } from './ownership.js';
import { NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const zeroBeforeUse: Invariant = {
  name: 'zero-before-use',
  title: 'Every page is first seen as zeros',
  statement:
    "A page that is freed and handed out again is never read by its new user (guest load, VMM load, KVM copy) before it has been zeroed or completely overwritten: no one ever observes the previous owner's data. Every guest_memfd page becomes visible as zeros first, and keeps its content until a hole is punched.",
  mechanism:
    'kvm_gmem_prepare_folio() / kvm_gmem_fault_user_mapping() clear_highpage() a folio that is not up-to-date before it is mapped; fallocate allocates without zeroing and leaves the folio !uptodate; anonymous faults map zeroed pages (alloc_zeroed_user_highpage).',
  origin:
    'kernel-uapi.md §1.3 ("every page first becomes visible as all-zero"); COCONUT-SVSM page-scrubbing discussions (vmm-ecosystem.md §3.3).',
  check(s) {
    if (s.staleReads.length === 0) return NO_VIOLATIONS;
    const o = s.ownership();
    const out: Violation[] = [];
    const seen = new Set<number>();
    for (const pfn of s.staleReads) {
      if (seen.has(pfn)) continue;
      seen.add(pfn);
      const own = o.owners.get(pfn);
      out.push({
        invariant: this.name,
        object: `pfn 0x${pfn.toString(16)}`,
        message: `a read returned the previous owner's data from a page that was never zeroed (${own === undefined ? 'a free page' : `now ${describeOwner(own)}`})`,
        focus: own?.kind === 'gmem' ? { pfn, ino: own.file.ino, index: own.base } : { pfn },
      });
    }
    return out;
  },
};
