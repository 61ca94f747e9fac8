/**
 * tdx-guest-accepted: a TD guest's private access completes only on a page it accepted, and an
 * ACCEPT that reports success accepted a PENDING page.
 */
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

const NAME = 'tdx-guest-accepted';

export const tdxGuestAccepted: Invariant = {
  name: NAME,
  title: 'A TD guest only consumes pages it has accepted',
  statement:
    "Every private data access a TD guest makes that completes — a load that returns data or a store that lands — reached a frame through an S-EPT leaf in the MAPPED state, i.e. a page PAGE.ADDed at build time or PAGE.AUGed and then accepted with TDG.MEM.PAGE.ACCEPT, and the frame is the one that leaf maps; an access to a PENDING page (AUGed, not accepted) raises #VE in the guest (or, with SEPT_VE_DISABLE, an EPT-violation exit KVM treats as fatal), never returns the page's contents or takes the guest's data. And a TDG.MEM.PAGE.ACCEPT that returns TDX_SUCCESS changed a PENDING leaf to MAPPED (an already accepted page answers PAGE_ALREADY_ACCEPTED).",
  mechanism:
    'The CPU\'s S-EPT walk on a private GPA (platforms.md §1.6): only a leaf with RWX (MAPPED) translates; PENDING has no permissions, so the access is an EPT violation the TDX module turns into #VE (SEPT_VE_DISABLE clear) or a TD exit; KVM\'s tdx_handle_ept_violation() marks the VM dead on "Guest access before accepting" (tdx_is_sept_violation_unexpected_pending()); tdg_mem_page_accept.c zeroes the page and sets MAPPED only for a PENDING leaf at the requested level (check_tdaccept_failure()).',
  origin:
    'platforms.md §1.3 (ACCEPT), §1.6 (guest access semantics), Appendix A.1; issue 12 item 6 ("the guest never reads a page that is not accepted").',
  appliesTo: (p) => p.parts.platform === 'tdx',
  check(s) {
    const g = s.tdxGuest;
    if (g.length === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    const bad = (vm: number, gfn: number, message: string, pfn?: number): void => {
      (out ??= []).push({
        invariant: NAME,
        object: `vm${vm} gfn ${hx(gfn)}`,
        message,
        focus: { vm, gfn, ...(pfn === undefined ? {} : { pfn }) },
      });
    };
    for (const a of g) {
      if (a.kind === 'access') {
        if (a.shared || (a.septState === 'MAPPED' && a.septPfn === a.pfn)) continue;
        bad(
          a.vm,
          a.gfn,
          `a private guest ${a.write ? 'store' : 'load'} of gfn ${hx(a.gfn)} completed on frame ${hx(a.pfn)} while the S-EPT leaf there is ${a.septState}${a.septState === 'MAPPED' ? ` to frame ${hx(a.septPfn ?? -1)}` : ' (not accepted)'}`,
          a.pfn,
        );
      } else if (a.kind === 'accept') {
        if (a.status !== 0n || (a.before === 'PENDING' && a.after === 'MAPPED')) continue;
        bad(
          a.vm,
          a.gfn,
          `TDG.MEM.PAGE.ACCEPT of gfn ${hx(a.gfn)} returned TDX_SUCCESS but its S-EPT leaf went ${a.before} -> ${a.after}, not PENDING -> MAPPED`,
        );
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};
