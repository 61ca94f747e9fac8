/**
 * pkvm-one-owner: every physical page has exactly one owner among the host, the hypervisor and
 * the guests (platforms.md §3.5 invariant 1).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmOneOwner = pkvmInvariant(1, {
  title: 'Every page has exactly one owner: host, hypervisor or one guest mapping',
  statement:
    "For every physical page the pKVM hypervisor tracks, exactly one component is its owner \u2014 the host (hyp_page.host_state OWNED or SHARED_OWNED), the hypervisor (its state OWNED or SHARED_OWNED) or one guest mapping (the guest stage-2 PTE's software bits OWNED or SHARED_OWNED); every other view of the page is NOPAGE or SHARED_BORROWED. A page with two owners is one whose contents two parties believe they control; a page without one has leaked (a VM torn down before its pages were reclaimed).",
  mechanism:
    "The transitions of arch/arm64/kvm/hyp/nvhe/mem_protect.c check every party's state before they change any (__host_check_page_state_range(), __hyp_check_page_state_range(), __guest_check_page_state_range(); v6.18 and the 2026 protected-guest series): share moves the initiator OWNED\u2192SHARED_OWNED and the completer NOPAGE\u2192SHARED_BORROWED, donate the initiator OWNED\u2192NOPAGE and the completer NOPAGE\u2192OWNED; reclaim and forced reclaim (__pkvm_host_reclaim_page_guest(), __pkvm_host_force_reclaim_page_guest()) take the guest's entry away (or poison it) before the host owns the page again.",
  origin: 'platforms.md \u00a73.3, \u00a73.5 (1), Appendix A.3; issue 13 item 6.',
});
