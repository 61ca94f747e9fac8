/**
 * snp-validate-once: a page is validated at most once per assignment.
 */
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const snpValidateOnce: Invariant = {
  name: 'snp-validate-once',
  title: 'A page is validated at most once per assignment',
  statement:
    "A PVALIDATE that reports success without CF (a state change) really changed the RMP entry's validated bit: validating a page that is already validated (or rescinding one that is not) reports CF = 1 (Linux's PVALIDATE_FAIL_NOUPDATE) and changes nothing. So a guest that validates each page once and treats NOUPDATE as an attack (a hypervisor that remapped a validated GPA, then let the guest validate the new frame again) can tell; the only way back to an unvalidated page is RMPUPDATE by the hypervisor (a new assignment) or the guest's own rescind.",
  mechanism:
    "PVALIDATE (APM vol. 3): when the entry's Validated bit already equals the requested state, rFLAGS.CF = 1 and the entry is left as is; RMPUPDATE clears Validated (rmp_make_private / rmp_make_shared), so every assignment starts unvalidated.",
  origin:
    'platforms.md §2.2 (PVALIDATE, NOUPDATE); issue 11 item 6; arch/x86/coco/sev (the guest panics on an unexpected NOUPDATE in pvalidate_pages()).',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    if (s.pvalidates.length === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const p of s.pvalidates) {
      if (p.ret !== 0 || p.cf !== 0 || p.before !== p.validate) continue;
      (out ??= []).push({
        invariant: 'snp-validate-once',
        object: `vm${p.vm} gfn ${hx(p.gfn)}`,
        message: `PVALIDATE ${p.validate ? 'validated' : 'rescinded'} frame ${hx(p.pfn)} again: it was already ${p.validate ? 'validated' : 'unvalidated'}, yet the instruction reported a change (CF = 0, not NOUPDATE)`,
        focus: { vm: p.vm, gfn: p.gfn, pfn: p.pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};
