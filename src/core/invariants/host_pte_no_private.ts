/**
 * host-pte-no-private: no host page table — the VMM's or a forked child's — maps a private
 * guest_memfd index (issue 14 items 1 and 6; kernel-uapi.md §6.1 forked_accesses).
 */
import { GmemFile } from '../kvm/objects.js';
import { nextGmem } from './pins_iommu.js';
import { NO_VIOLATIONS, hx, type Invariant, type Violation } from './types.js';

export const hostPteNoPrivate: Invariant = {
  name: 'host-pte-no-private',
  title: 'No process maps a private guest_memfd page',
  statement:
    'No present PTE of any process’s address space — the VMM’s or a forked child’s — maps a guest_memfd index whose attributes are private: a conversion to private removes the page from every mapping of the file, and a host fault on a private index gets SIGBUS.',
  mechanism:
    'The in-place conversion (series v7) calls unmap_mapping_pages() on the range before it stores PRIVATE: the file’s i_mmap tree holds the VMAs of every mm that maps it, a forked child’s included; kvm_gmem_fault_user_mapping() refuses private indices (VM_FAULT_SIGBUS). Punching a hole unmaps the same way (truncate_inode_pages_range()).',
  origin:
    'issue 14 items 1 and 6 ("no private index is mapped by any host page table"); kernel-uapi.md §6.1, the forked_accesses selftest (the child’s mapping goes on conversion; Sean Christopherson asked for the fork-then-convert case, Oct 2025).',
  appliesTo: nextGmem,
  check(s) {
    let out: Violation[] | undefined;
    const mms = s.host.allMms();
    for (let i = 0; i < mms.length; i++) {
      const mm = mms[i]!;
      if (mm.gmemPtes.size === 0) continue;
      for (const pte of mm.gmemPtes.entries())
        mm.vmas.forEachIn(pte.start, pte.end, (vs, ve, vma) => {
          const f = vma.obj;
          if (!(f instanceof GmemFile)) return true;
          const lo = vma.base;
          const hi = vma.base + (ve - vs);
          const priv = f.attrs.piecesIn(lo, hi)[0];
          if (priv === undefined) return true;
          const index = Math.max(priv.start, lo);
          (out ??= []).push({
            invariant: 'host-pte-no-private',
            object: `guest_memfd #${f.ino} index ${hx(index)}`,
            message: `${i === 0 ? 'the VMM' : `process ${s.host.procPid(mm)}`} maps private index ${hx(index)} at host page ${hx(vs + (index - lo))}`,
            focus: { ino: f.ino, index },
          });
          return true;
        });
    }
    return out ?? NO_VIOLATIONS;
  },
};
