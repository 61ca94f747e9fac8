/**
 * snp-rmp-owner: an assigned RMP entry belongs to exactly one guest, and the GPA it names is the
 * gfn the guest maps the frame at through its guest_memfd binding.
 */
import { toKvmSevInfo } from '../arch/x86/svm/sev_common.js';
import { INITIAL_VMSA_GPA } from '../arch/x86/svm/sev_snp.js';
import { mappingsOf } from './stage2_coherent.js';
import { describeOwner } from './ownership.js';
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const snpRmpOwner: Invariant = {
  name: 'snp-rmp-owner',
  title: 'An assigned frame belongs to one SNP guest at one GPA',
  statement:
    "Every frame the RMP marks assigned belongs to exactly one guest: it is a page of a guest_memfd file of the live SNP VM whose ASID is the entry's ASID, or the VMSA page of one of that VM's vCPUs at INITIAL_VMSA_GPA; never anonymous or shmem memory of the VMM, nor a page of another guest. Where the guest reaches a guest_memfd page through its binding — a private stage-2 mapping of gfn G to the page — the entry's GPA is G. (A page only bound, not mapped, is not held to its binding's GPA: a memslot deleted and bound again elsewhere leaves an uptodate page with the GPA it was prepared at, as in the kernel.)",
  mechanism:
    'sev_gmem_prepare() and sev_gmem_post_populate() call rmp_make_private(pfn, gfn_to_gpa(gfn), level, sev->asid, ...) with the gfn kvm_gmem_get_pfn()/kvm_gmem_populate() resolved through the binding; snp_launch_update_vmsa() uses INITIAL_VMSA_GPA; sev_gmem_invalidate() (from kvm_gmem_free_folio) and sev_free_vcpu() make frames shared before they leave their owner; ASIDs are unique (sev_asid_new()).',
  origin:
    'platforms.md §2.1–§2.3, Appendix A.2 (RMP entry fields, RMPUPDATE); issue 11 item 6; arch/x86/kvm/svm/sev.c.',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    const rmp = s.host.platform.sevSnp?.rmp;
    if (rmp === undefined || rmp.runs === 0) return NO_VIOLATIONS;
    const o = s.ownership();
    let out: Violation[] | undefined;
    const bad = (pfn: number, message: string): void => {
      (out ??= []).push({
        invariant: 'snp-rmp-owner',
        object: `pfn ${hx(pfn)}`,
        message,
        focus: { pfn },
      });
    };
    // Frames on the free list are snp-reclaim-before-reuse's; others owned by nothing leaked.
    const unowned = (s0: number, e0: number, what: string): void => {
      for (let pfn = s0; pfn < e0; pfn++)
        if (!s.host.frames.isFree(pfn)) {
          bad(pfn, `frame ${what} is owned by no guest_memfd file and no vCPU`);
          return;
        }
    };
    for (const run of rmp.dump()) {
      const e = run.entry;
      const what = `assigned (ASID ${e.asid}, GPA ${hx(e.gpa)})`;
      let cur: number = run.start;
      for (const p of o.owners.piecesIn(run.start, run.end)) {
        if (p.start > cur) unowned(cur, p.start, what);
        cur = p.end;
        const own = p.value;
        if (own.kind === 'vcpu') {
          const sev = toKvmSevInfo(own.vm);
          if (own.vm.dead || sev.asid !== e.asid)
            bad(p.start, `frame ${what} is ${describeOwner(own)}, of another guest`);
          else if (rmp.lookup(p.start as never).gpa !== INITIAL_VMSA_GPA)
            bad(p.start, `vCPU page ${describeOwner(own)} is ${what}, not at INITIAL_VMSA_GPA`);
          continue;
        }
        if (own.kind !== 'gmem') {
          bad(p.start, `frame ${what} is ${describeOwner(own)}, not guest_memfd memory`);
          continue;
        }
        const f = own.file;
        const sev = toKvmSevInfo(f.vm);
        if (f.vm.dead || sev.asid !== e.asid) {
          bad(
            p.start,
            `frame ${what} is ${describeOwner(own)} of vm${f.vm.index} (ASID ${sev.asid}), another guest`,
          );
          continue;
        }
        // The entry's GPA against the binding of the page's index: only for the pages the
        // guest reached through their binding in this VM's stage-2 (see the statement).
        for (const m of mappingsOf(f.vm, s)) {
          if (!m.spte.private || m.slot === undefined || m.slot.gmem?.file !== f) continue;
          const lo = Math.max(m.spte.base, p.start);
          const hi = Math.min(m.spte.base + (m.end - m.start), p.end);
          for (let pfn = lo; pfn < hi; pfn++) {
            const gfn = m.start + (pfn - m.spte.base);
            const gpa = rmp.lookup(pfn as never).gpa;
            if (BigInt(gfn) << 12n !== gpa) {
              bad(
                pfn,
                `${describeOwner(own, pfn - p.start)} is mapped private at gfn ${hx(gfn)} but its RMP entry says GPA ${hx(gpa)}`,
              );
              break;
            }
          }
        }
      }
      if (cur < run.end) unowned(cur, run.end, what);
    }
    return out ?? NO_VIOLATIONS;
  },
};
