/**
 * snp-rmp-owner: an assigned RMP entry belongs to exactly one guest, and a guest reaches the
 * frame only at the GPA the entry names.
 *
 * The GPA is a property of the guest's accesses, not of the stage-2 state. KVM (6.18 and
 * linux-next) writes RMP.GPA once, when it prepares a page: `kvm_gmem_get_pfn()` calls
 * `kvm_gmem_prepare_folio()` → `sev_gmem_prepare()` only for a folio that is not up to date, and
 * `sev_gmem_prepare()` leaves an already-assigned entry alone. A memslot deleted and created
 * again at another GPA over the same guest_memfd range therefore leaves the page assigned at the
 * GPA it was prepared at, and the next private fault at the new gfn maps it there anyway. The
 * guest's access then fails the CPU's RMP check (GPA mismatch: #NPF with the RMP bit), KVM's
 * `sev_handle_rmp_fault()` finds a 4K entry and changes nothing, and the access faults again
 * forever: the guest cannot use the page, the host cannot either (it stays assigned to the
 * guest's ASID until the file frees it, `sev_gmem_invalidate()`), and nothing leaks. So the
 * mapping is not a violation; an access completed at a GPA other than the entry's would be.
 */
import { toKvmSevInfo } from '../arch/x86/svm/sev_common.js';
import { INITIAL_VMSA_GPA } from '../arch/x86/svm/sev_snp.js';
import { describeOwner } from './ownership.js';
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const snpRmpOwner: Invariant = {
  name: 'snp-rmp-owner',
  title: 'An assigned frame belongs to one SNP guest at one GPA',
  statement:
    "Every frame the RMP marks assigned belongs to exactly one guest: it is a page of a guest_memfd file of the live SNP VM whose ASID is the entry's ASID, or the VMSA page of one of that VM's vCPUs at INITIAL_VMSA_GPA; never anonymous or shmem memory of the VMM, nor a page of another guest. A private access the guest completes at gfn G reached a frame whose entry names GPA G. (A stage-2 mapping of gfn G to a page whose entry names another GPA is not a violation: a memslot deleted and created again elsewhere over the same guest_memfd range leaves an up-to-date page with the GPA it was prepared at, KVM maps it at the new gfn, and the guest's access there faults forever instead of completing.)",
  mechanism:
    "sev_gmem_prepare() and sev_gmem_post_populate() call rmp_make_private(pfn, gfn_to_gpa(gfn), level, sev->asid, ...) with the gfn kvm_gmem_get_pfn()/kvm_gmem_populate() resolved through the binding (sev_gmem_prepare() skips an entry already assigned); snp_launch_update_vmsa() uses INITIAL_VMSA_GPA; sev_gmem_invalidate() (from kvm_gmem_free_folio) and sev_free_vcpu() make frames shared before they leave their owner; ASIDs are unique (sev_asid_new()); the CPU's RMP check of a C=1 access compares the entry's GPA with the access's (APM vol. 2 \"RMP and VMPL access checks\"), and sev_handle_rmp_fault() does nothing for a mismatched 4K entry.",
  origin:
    'platforms.md §2.1–§2.3, Appendix A.2 (RMP entry fields, RMPUPDATE); issue 11 item 6; arch/x86/kvm/svm/sev.c.',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    let out: Violation[] | undefined;
    // The GPA: each private access completed during the step, with the entry as it found it.
    for (const a of s.guestAccesses) {
      if (!a.assigned || a.gpa === BigInt(a.gfn) << 12n) continue;
      (out ??= []).push({
        invariant: 'snp-rmp-owner',
        object: `vm${a.vm} gfn ${hx(a.gfn)}`,
        message: `a private guest ${a.write ? 'store' : 'load'} at gfn ${hx(a.gfn)} completed on frame ${hx(a.pfn)}, whose RMP entry says GPA ${hx(a.gpa)}`,
        focus: { vm: a.vm, gfn: a.gfn, pfn: a.pfn },
      });
    }
    const rmp = s.host.platform.sevSnp?.rmp;
    if (rmp === undefined || rmp.runs === 0) return out ?? NO_VIOLATIONS;
    const o = s.ownership();
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
        if (f.vm.dead || sev.asid !== e.asid)
          bad(
            p.start,
            `frame ${what} is ${describeOwner(own)} of vm${f.vm.index} (ASID ${sev.asid}), another guest`,
          );
      }
      if (cur < run.end) unowned(cur, run.end, what);
    }
    return out ?? NO_VIOLATIONS;
  },
};
