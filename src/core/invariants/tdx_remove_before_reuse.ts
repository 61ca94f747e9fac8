/**
 * tdx-remove-before-reuse: a frame the TDX module assigns to a TD goes back to the host only
 * after the module let go of it (PAGE.REMOVE after BLOCK and TRACK, or RECLAIM at teardown).
 */
import { kvmTdxIfAny } from '../arch/x86/vmx/tdx.js';
import { PT, PT_NAMES } from '../platform/tdx/pamt.js';
import type { Vm } from '../kvm/objects.js';
import { describeOwner, type Owner } from './ownership.js';
import { liveTdVms, tdxModuleOf } from './tdx_common.js';
import type { TdxModule } from '../platform/tdx/module.js';
import { MAX_KEY, type RangeMap } from '../base/ranges/range_map.js';
import { hx, NO_VIOLATIONS, type CheckState, type Invariant, type Violation } from './types.js';

const NAME = 'tdx-remove-before-reuse';

/** The last verdict per module (change-driven checks only) and what it was computed from. */
const last = new WeakMap<
  TdxModule,
  {
    pamt: number;
    releases: number;
    allocated: number;
    vms: number;
    created: number;
    out: Violation[];
  }
>();

/**
 * The violations among the PAMT runs over [start, end): a run whose frames are free, or owned by
 * anything but its TD's VM (NO_VIOLATIONS when none).
 */
function scan(
  m: TdxModule,
  s: CheckState,
  start: number,
  end: number,
  vmOf: Map<number, Vm> | undefined,
): Violation[] {
  const f = s.host.frames;
  let out: Violation[] | undefined;
  const bad = (pfn: number, message: string): void => {
    (out ??= []).push({ invariant: NAME, object: `pfn ${hx(pfn)}`, message, focus: { pfn } });
  };
  let owners: RangeMap<Owner> | undefined;
  m.pamt.forEachRun(
    (rs, re, e) => {
      const tdr = e.pt === PT.TDR ? rs : e.owner;
      const what = `${PT_NAMES[e.pt]} of TDR ${hx(tdr)}`;
      if (f.anyFree(rs, re - rs)) {
        const pfn = f.freeIn(rs, re)[0]!.start;
        bad(
          pfn,
          `frame ${hx(pfn)} is on the host's free list while the TDX module still has it as ${what} (never removed or reclaimed)`,
        );
        return;
      }
      owners ??= s.ownership().owners;
      if (!owners.anyIn(rs, re)) return;
      if (vmOf === undefined) {
        // The VM each TDR belongs to (live VMs only: a dead VM holds nothing).
        vmOf = new Map();
        for (const vm of liveTdVms(s.host)) {
          const t = kvmTdxIfAny(vm);
          if (t?.tdr !== undefined) vmOf.set(t.tdr, vm);
        }
      }
      const vm = vmOf.get(tdr);
      for (const p of owners.piecesIn(rs, re)) {
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
    },
    start,
    end,
  );
  return out ?? NO_VIOLATIONS;
}

/** Whether a released range (or an unknown set of them) holds a frame the PAMT assigns. */
function releasedAssigned(m: TdxModule, rel: readonly number[] | undefined): boolean {
  if (rel === undefined) return true;
  for (let i = 0; i < rel.length; i += 2)
    if (m.pamt.firstAssignedIn(rel[i]!, rel[i]! + rel[i + 1]!) !== undefined) return true;
  return false;
}

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
    if (m === undefined) return NO_VIOLATIONS;
    const changes = m.pamt.takeChanges();
    if (m.pamt.runs === 0) return NO_VIOLATIONS;
    // The verdict moves only with the PAMT, a frame release or allocation, or a VM's creation
    // or death. After a clean verdict only what changed is looked at: the
    // PAMT ranges set since (their runs now) and the frames released in this step (none may be
    // the module's); an allocation takes a free frame, and frames change owners only through
    // the allocator in the model, so nothing else can have broken it.
    const f = s.host.frames;
    const tracked = s.mappings !== undefined;
    const key = last.get(m);
    if (tracked && key !== undefined) {
      // (A VM created since holds no frame of the module; one destroyed since leaves its
      // frames unowned, never free or another's, unless they changed: both were covered.)
      if (key.out.length === 0) {
        const rel = s.releasedRanges?.();
        let clean = rel !== undefined && changes !== undefined && !releasedAssigned(m, rel);
        for (let i = 0; clean && i < changes!.length; i += 2)
          clean = scan(m, s, changes![i]!, changes![i + 1]!, undefined) === NO_VIOLATIONS;
        if (clean) return NO_VIOLATIONS;
      } else if (
        key.vms === s.host.vms.size &&
        key.created === s.host.allVms.length &&
        key.pamt === m.pamt.version &&
        key.releases === f.releases &&
        key.allocated === f.allocated
      )
        return key.out;
    }
    const res = scan(m, s, 0, MAX_KEY, undefined);
    if (tracked)
      last.set(m, {
        pamt: m.pamt.version,
        releases: f.releases,
        allocated: f.allocated,
        vms: s.host.vms.size,
        created: s.host.allVms.length,
        out: res,
      });
    return res;
  },
};
