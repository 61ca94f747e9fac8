/**
 * pkvm-protected-unmapped: a protected guest's own page is mapped neither in the host stage-2 nor at
 * EL2 (platforms.md §3.5 invariant 4).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmProtectedUnmapped = pkvmInvariant(4, {
  title: "A protected guest's OWNED page is mapped neither in the host stage-2 nor at EL2",
  statement:
    "A page a protected VM's stage-2 maps OWNED (donated to it, not shared back) has no valid entry in the host's stage-2 and is not mapped by the hypervisor (hyp state NOPAGE): neither the host kernel nor the hypervisor can read or write a protected guest's private memory. Only the guest's MEM_SHARE makes it host-accessible (SHARED_BORROWED).",
  mechanism:
    "__pkvm_host_donate_guest() replaces the host's entry by a donation annotation before mapping the page in the guest, __pkvm_guest_unshare_host() does it again when the guest unshares, and handle_host_mem_abort() refuses to map an annotated page (the 2026 tree injects an abort into the host, v6.18 panics).",
  origin:
    'platforms.md \u00a73.3, \u00a73.4, \u00a73.5 (4); issue 13 item 7 ("the host touches a page it gave away").',
});
