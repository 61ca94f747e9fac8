/**
 * pkvm-borrowers-match: a borrowed page's owner is SHARED_OWNED, and host_share_guest_count counts
 * the guests borrowing a host page (platforms.md §3.5 invariant 2).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmBorrowersMatch = pkvmInvariant(2, {
  title:
    'A SHARED_BORROWED view exists only while the owner is SHARED_OWNED, and host_share_guest_count counts the borrowing guests',
  statement:
    "A page is SHARED_BORROWED by the hypervisor, a guest or the host only while its owner holds it SHARED_OWNED; a SHARED_OWNED page has a borrower (the hypervisor, guests, the secure world over FF-A, or the host for a guest's share), is not shared with the hypervisor and with guests or FF-A at once, and the number of non-protected guest mappings borrowing a host page equals hyp_page.host_share_guest_count. So the page goes back to its owner (host OWNED) exactly when its last borrower lets go.",
  mechanism:
    '__pkvm_host_share_guest() increments host_share_guest_count for every share (a second share of a SHARED_OWNED page only when the count is non-zero: pages shared with the hypervisor or FF-A are -EPERM), __pkvm_host_unshare_guest() decrements it and sets the host state OWNED only when it reaches zero (mem_protect.c v6.18); __pkvm_guest_share_host()/__pkvm_guest_unshare_host() move guest and host together (2026 series).',
  origin:
    'platforms.md \u00a73.2 (host_share_guest_count), \u00a73.3, \u00a73.5 (2); issue 13 item 6 ("a non-protected guest shares one host page with two guests and the count gates its return").',
});
