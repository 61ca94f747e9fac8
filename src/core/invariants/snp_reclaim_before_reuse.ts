/**
 * snp-reclaim-before-reuse: a frame goes back to the hypervisor state before the host may reuse
 * it.
 */
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const snpReclaimBeforeReuse: Invariant = {
  name: 'snp-reclaim-before-reuse',
  title: 'A guest_memfd frame is shared again before it is freed',
  statement:
    "No frame the RMP assigns to a guest is on the host's free list: a guest_memfd page that is truncated (hole punch, last close) or a vCPU's VMSA that is freed first has its RMP entry returned to the hypervisor state, so the allocator never hands out a frame the next owner cannot write (an RMP #PF) and a page is never assigned to a guest it no longer belongs to.",
  mechanism:
    'kvm_gmem_free_folio() calls kvm_arch_gmem_invalidate() → sev_gmem_invalidate(), which rmp_make_shared()s every assigned frame of the folio (a whole 2M entry, or after PSMASH) before the folio is freed; sev_free_vcpu() makes the VMSA shared (after SNP_PAGE_RECLAIM when immutable) before __free_page(); snp_page_reclaim() on firmware failure (arch/x86/kvm/svm/sev.c).',
  origin:
    'platforms.md §2.2 (RMP state transitions), §2.4; issue 11 item 6; the "leaked RMP entries" warnings of sev_gmem_invalidate().',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    const rmp = s.host.platform.sevSnp?.rmp;
    if (rmp === undefined || rmp.runs === 0) return NO_VIOLATIONS;
    const f = s.host.frames;
    let out: Violation[] | undefined;
    for (const run of rmp.dump()) {
      if (!f.anyFree(run.start, run.end - run.start)) continue;
      const pfn = f.freeIn(run.start, run.end)[0]!.start;
      const e = rmp.lookup(pfn as never);
      (out ??= []).push({
        invariant: 'snp-reclaim-before-reuse',
        object: `pfn ${hx(pfn)}`,
        message: `frame ${hx(pfn)} was freed while the RMP still assigns it to ASID ${e.asid} at GPA ${hx(e.gpa)} (never made shared)`,
        focus: { pfn },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};
