/**
 * pkvm-reclaim-zeroed: a page the host gets back from a guest or the hypervisor holds no data at
 * that moment (platforms.md §3.5 invariant 6).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmReclaimZeroed = pkvmInvariant(6, {
  title: 'A page the host gets back from a guest (reclaim) or the hypervisor is zeroed first',
  statement:
    "When the host regains access to a page another component owned \u2014 a protected guest's page reclaimed at teardown or by a forced reclaim, a VM's table, memcache or struct page returned by the hypervisor \u2014 the page holds only zeros at the moment of the handover: no guest secret or hypervisor state reaches the host. (A page the guest had shared with the host needs no zeroing: the host could read it already.)",
  mechanism:
    "__pkvm_host_reclaim_page_guest() and __pkvm_host_force_reclaim_page_guest() call hyp_poison_page() on a guest-OWNED page before host_stage2_set_owner_locked(PKVM_ID_HOST); teardown_donated_memory() zeroes every page before __pkvm_hyp_donate_host() (2026 series; pkvm.c). The model's hypervisor logs every handover of a page with data.",
  origin:
    'platforms.md \u00a73.3 (reclaim: poison page), \u00a73.5 (6); issue 13 item 7 ("teardown reclaims and zeroes every page").',
});
