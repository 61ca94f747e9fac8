/**
 * snp-no-host-write: no host write reaches a frame assigned to a guest.
 */
import { RMP_PAGES_2M } from '../platform/sev_snp/rmp.js';
import type { Pfn } from '../base/units.js';
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const snpNoHostWrite: Invariant = {
  name: 'snp-no-host-write',
  title: 'No host write reaches an assigned frame',
  statement:
    "On an SEV-SNP host, every write the host makes to a frame the RMP assigns to a guest — a VMM store through its page tables, get_user_pages() for a write, KVM's uaccess through userspace_addr — is refused by the platform's RMP check (an RMP #PF, SIGBUS to the user access); reads are allowed (they see ciphertext). And the kernel's own direct map can never write an assigned frame by accident: every 2 MiB direct-map region that holds a frame with a 4 KiB assigned entry has been split to 4 KiB mappings.",
  mechanism:
    'The CPU checks the RMP on every host write (RMP.assigned = 1 → #PF with the RMP bit); adjust_direct_map() (called by rmpupdate() for every 4K RMPUPDATE) splits the 2 MiB direct-map mapping first, since a write through a large mapping overlapping an assigned 4K frame faults even when it targets a shared neighbour (arch/x86/virt/svm/sev.c).',
  origin:
    'platforms.md §2.1, §2.3 (host access rules, the direct-map split); issue 11 items 2 and 6.',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    const rmp = s.host.platform.sevSnp?.rmp;
    if (rmp === undefined) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const a of s.hostAccesses) {
      if (!a.write || a.refused !== false || a.assigned !== true) continue;
      (out ??= []).push({
        invariant: 'snp-no-host-write',
        object: `pfn ${hx(a.pfn)}`,
        message: `a host write through ${a.path === 'vmm' ? 'a VMM mapping' : a.path === 'gup' ? 'get_user_pages' : a.path === 'dma' ? 'a device DMA (IOMMU)' : "KVM's uaccess"} reached a frame assigned to a guest (the RMP check let it through)`,
        focus: { pfn: a.pfn },
      });
    }
    if (rmp.runs === 0) return out ?? NO_VIOLATIONS;
    let lastRegion = -1;
    for (const run of rmp.dump()) {
      if (run.entry.size !== '4K') continue;
      const r0 = Math.max(Math.floor(run.start / RMP_PAGES_2M), lastRegion + 1);
      const r1 = Math.floor((run.end - 1) / RMP_PAGES_2M);
      for (let r = r0; r <= r1; r++) {
        lastRegion = r;
        if (rmp.directMapSplit((r * RMP_PAGES_2M) as Pfn)) continue;
        const pfn = Math.max(run.start, r * RMP_PAGES_2M);
        (out ??= []).push({
          invariant: 'snp-no-host-write',
          object: `pfn ${hx(pfn)}`,
          message: `frame ${hx(pfn)} has a 4K assigned RMP entry but its 2 MiB direct-map region (from pfn ${hx(r * RMP_PAGES_2M)}) was never split: a kernel write to any frame of that region takes an RMP #PF`,
          focus: { pfn },
        });
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};
