/**
 * pkvm-host-stage2-exact: the host stage-2 maps only pages the host may access and annotates every
 * page it may not with the right owner (platforms.md §3.5 invariant 3).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmHostStage2Exact = pkvmInvariant(3, {
  title:
    "The host stage-2 maps only the host's pages, and annotates every other page with its owner",
  statement:
    "The host's stage-2 identity map has a valid entry only for pages whose host state is not NOPAGE (it is built lazily, so a host page may also have an empty entry), and every page whose host state is NOPAGE has an invalid, non-zero annotation naming its owner: the hypervisor, or \u2014 for a page donated to a protected guest \u2014 PKVM_ID_GUEST with that guest's VM handle and gfn (which forced reclaim decodes). A host page never carries an annotation.",
  mechanism:
    'host_stage2_set_owner_locked() and, in the 2026 series, host_stage2_set_owner_metadata_locked() with host_stage2_encode_gfn_meta() write the annotation whenever the host gives a page away; host_stage2_idmap() (handle_host_mem_abort()) maps a faulting page only when its entry is empty and refuses an annotated one with -EPERM; __host_set_page_state_range() maps a page the host gets back (mem_protect.c).',
  origin: 'platforms.md \u00a73.1, \u00a73.2 (donation annotations), \u00a73.4, \u00a73.5 (3).',
});
