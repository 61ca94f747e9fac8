/**
 * pkvm-history-agrees: the hypercall-history oracle — every page's state equals the state its call
 * history computes, and every call in that history was allowed (issue 13 item 4; platforms.md
 * §3.3 "hypercall history view", §3.6).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmHistoryAgrees = pkvmInvariant(0, {
  title:
    "Every page's state is what its call history computes, and every call in the history was allowed",
  statement:
    "For every physical page, the hypervisor's stepwise state (host and hyp state, the guests' mappings and states, host_share_guest_count, pins, the FF-A share, the host stage-2 annotation) equals the state recomputed from the page's own history of successful calls alone, starting from its boot state (host OWNED, or hyp OWNED for the hypervisor's memory), and every call of that history was allowed in the pre-state the history computes \u2014 the page's states, and the VM's (protected or not, dying, gone) when the call ran. A difference is a transition that changed state it should not have, or a call that succeeded where the specification says it must fail.",
  mechanism:
    'The check-then-commit structure of mem_protect.c (every precondition before any mutation, mutations WARN-guarded), which the Cambridge executable specification of pKVM (rems-project/linux ghost_spec.c: compute_new_abstract_state_handle_*() from the pre-state and the call, diffed against the abstraction of the real page tables) checks inside the hypervisor.',
  origin: 'platforms.md \u00a73.3, \u00a73.6; issue 13 item 4.',
});
