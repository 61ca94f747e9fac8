/**
 * tdx-remove-before-reuse: a frame the TDX module assigns to a TD goes back to the host only
 * after the module let go of it (PAGE.REMOVE after BLOCK and TRACK, or RECLAIM at teardown).
 */
import { kvmTdxIfAny } from '../arch/x86/vmx/tdx.js';
import { PT, PT_NAMES } from '../platform/tdx/pamt.js';
import type { Vm } from '../kvm/objects.js';
import { describeOwner } from './ownership.js';
import { tdxModuleOf } from './tdx_common.js';
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

const NAME = 'tdx-remove-before-reuse';

export const tdxRemoveBeforeReuse: Invariant = {
  name: NAME,
  title: 'A TD frame returns to the host only after REMOVE (BLOCK, TRACK) or RECLAIM',
  statement:
    "Every frame the TDX module's PAMT assigns to a TD (a PT_REG private page, an S-EPT page, the TDR, a TDCS, TDVPR or TDCX page) is still held by that TD's VM on the host side — a private page by one of the VM's guest_memfd files, a control or S-EPT page as a page KVM allocated for the VM — and is neither on the host's free list nor owned by anything else (another VM, the VMM's anonymous or shared memory). A frame returns to the host allocator, or to another owner, only once the module has let go of it: a private page after TDH.MEM.RANGE.BLOCK, TDH.MEM.TRACK (once the TD is RUNNABLE) and TDH.MEM.PAGE.REMOVE of its S-EPT entry, a control or S-EPT page after the TD's HKID was released (VPFLUSHDONE, CACHE.WB, KEY.FREEID) and TDH.PHYMEM.PAGE.RECLAIM; so never while the S-EPT still maps it (the S-EPT maps only PT_REG pages, tdx-private-owner).",
  mechanism:
    "tdx_sept_remove_private_spte() → tdx_sept_zap_private_spte() (TDH.MEM.RANGE.BLOCK), tdx_track() (TDH.MEM.TRACK and the kick out of guest mode), tdx_sept_drop_private_spte() (TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD, tdx_clear_page()) from the TDP MMU's zap of a mirror leaf, which kvm_gmem_invalidate_begin() runs before guest_memfd truncates the folio; tdx_mmu_release_hkid(), tdx_reclaim_page() before __free_page() in tdx_vcpu_free(), tdx_sept_free_private_spt() and tdx_reclaim_td_control_pages(), which leak a page the module refuses to reclaim (arch/x86/kvm/vmx/tdx.c v6.18); the module's PAGE.REMOVE refuses an unblocked or untracked entry in RUNNABLE (GPA_RANGE_NOT_BLOCKED, TLB_TRACKING_NOT_DONE; tdh_mem_page_remove.c).",
  origin:
    'platforms.md §1.3 (BLOCK/TRACK/REMOVE, is_tlb_tracked), §1.4 (teardown), §1.5 (zapping a private SPTE); issue 12 item 6 ("a frame returns to the host only after BLOCK, TRACK and REMOVE").',
  appliesTo: (p) => p.parts.platform === 'tdx',
  check(s) {
    const m = tdxModuleOf(s.host);
    if (m === undefined || m.pamt.runs === 0) return NO_VIOLATIONS;
    // The VM each TDR belongs to (live VMs only: a dead VM holds nothing).
    const vmOf = new Map<number, Vm>();
    for (const vm of s.host.vms) {
      const t = kvmTdxIfAny(vm);
      if (t?.tdr !== undefined) vmOf.set(t.tdr, vm);
    }
    const f = s.host.frames;
    let out: Violation[] | undefined;
    const bad = (pfn: number, message: string): void => {
      (out ??= []).push({ invariant: NAME, object: `pfn ${hx(pfn)}`, message, focus: { pfn } });
    };
    let own: ReturnType<typeof s.ownership> | undefined;
    for (const r of m.pamt.dump()) {
      const e = r.entry;
      const tdr = e.pt === PT.TDR ? r.start : e.owner;
      const what = `${PT_NAMES[e.pt]} of TDR ${hx(tdr)}`;
      if (f.anyFree(r.start, r.end - r.start)) {
        const pfn = f.freeIn(r.start, r.end)[0]!.start;
        bad(
          pfn,
          `frame ${hx(pfn)} is on the host's free list while the TDX module still has it as ${what} (never removed or reclaimed)`,
        );
        continue;
      }
      const vm = vmOf.get(tdr);
      own ??= s.ownership();
      for (const p of own.owners.piecesIn(r.start, r.end)) {
        const o = p.value;
        const ok =
          vm !== undefined &&
          (e.pt === PT.REG
            ? o.kind === 'gmem' && o.file.vm === vm
            : o.kind === 'vcpu' && o.vm === vm && o.what.startsWith('arch page'));
        if (ok) continue;
        bad(
          p.start,
          `frame ${hx(p.start)} is ${describeOwner(o)} while the TDX module still has it as ${what}${vm === undefined ? ' (a TD no live VM has)' : ` (vm${vm.index}'s TD)`}: it went to another owner without being removed or reclaimed`,
        );
        break;
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};
