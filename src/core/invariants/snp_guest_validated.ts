/**
 * snp-guest-validated: an SEV-SNP guest never consumes a page it has not validated.
 */
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const snpGuestValidated: Invariant = {
  name: 'snp-guest-validated',
  title: 'An SNP guest never consumes an unvalidated page',
  statement:
    "Every data access an SEV-SNP guest makes with the C-bit set (a private access) that completes — a load that returns data or a store that lands — reached a frame the RMP assigns to that guest's ASID with the validated bit set. An access to a page the guest has not PVALIDATEd (a page the hypervisor assigned or swapped behind its back) raises #VC instead, never returns its contents or takes the guest's data.",
  mechanism:
    'The CPU\'s RMP check on every guest access with C=1 (APM vol. 2 "RMP and VMPL access checks"): an assigned entry of the guest\'s ASID at the GPA and page size, and Validated = 1, else #VC (page not validated) or #NPF (RMP); RMPUPDATE clears Validated whenever the hypervisor reassigns a frame.',
  origin:
    'platforms.md §2.2, §2.3 (PVALIDATE, the access check); issue 11 item 6; the SNP threat model (a hypervisor remapping a validated GPA to another frame).',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    if (s.guestAccesses.length === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const a of s.guestAccesses) {
      if (a.assigned && a.asid === a.guestAsid && a.validated) continue;
      (out ??= []).push({
        invariant: 'snp-guest-validated',
        object: `vm${a.vm} gfn ${hx(a.gfn)}`,
        message: `a private guest ${a.write ? 'store' : 'load'} completed on frame ${hx(a.pfn)}, which the RMP ${!a.assigned ? 'does not assign to any guest' : a.asid !== a.guestAsid ? `assigns to ASID ${a.asid}, not the guest's ${a.guestAsid}` : 'has not validated'}`,
        focus: { vm: a.vm, gfn: a.gfn, pfn: a.pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};
