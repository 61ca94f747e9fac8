/**
 * tdx-shared-ept-no-private: no frame the TDX module owns is reachable through a TD's shared
 * (shared-bit) GPAs.
 */
import { PT_NAMES } from '../platform/tdx/pamt.js';
import { mappingsOf } from './stage2_coherent.js';
import { liveTd, tdxModuleOf, TdCache } from './tdx_common.js';
import { checkEveryVm, hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

const NAME = 'tdx-shared-ept-no-private';
const cache = new TdCache();

export const tdxSharedEptNoPrivate: Invariant = {
  name: NAME,
  title: "A TD's shared EPT never maps a frame the TDX module owns",
  statement:
    "Every shared mapping of a TD — what KVM's shared (direct) EPT, the one the CPU walks for GPAs with the shared bit set, maps — points to a frame the TDX module's PAMT does not assign (PT_NDA): never to a private page of this or another TD (PT_REG), nor to an S-EPT or TD control page. So the TD cannot reach private memory through a shared-bit alias (where it would read and write it with the host's KeyID 0, around the S-EPT and the TD's key).",
  mechanism:
    "A TD's private faults go to the mirror root only (kvm_tdp_mmu_map() with fault->is_private from the GPA's shared bit, tdx_handle_ept_violation()); its shared faults are served from the memslot's userspace_addr (never guest_memfd: a TD's guest_memfd is not INIT_SHARED), whose pages the module does not own: KVM gives the module only guest_memfd pages (PAGE.ADD/AUG) and pages it allocated itself, and a frame the module owned returns to the host only after REMOVE or RECLAIM (tdx-remove-before-reuse); an attribute change zaps both roots (kvm_arch_pre_set_memory_attributes()).",
  origin:
    'platforms.md §1.1 (shared EPT), §1.2 (shared bit), §1.6 (host access to private memory); issue 12 item 6 ("no private page is reachable through a shared-bit GPA").',
  appliesTo: (p) => p.parts.platform === 'tdx',
  perVm: {
    vms: 'live',
    mappings: true,
    own: true,
    vm(vm, s) {
      const m = tdxModuleOf(s.host);
      if (m === undefined || m.pamt.runs === 0) return NO_VIOLATIONS;
      const x = liveTd(m, vm);
      if (x === undefined) return NO_VIOLATIONS;
      const maps = mappingsOf(vm, s);
      const tracked = s.mappings === undefined ? undefined : maps;
      const hit = cache.get(m, x, tracked);
      if (hit !== undefined) return hit;
      let found: Violation[] | undefined;
      for (const mp of maps) {
        if (mp.spte.private) continue;
        const a = m.pamt.firstAssignedIn(mp.spte.base, mp.spte.base + (mp.end - mp.start));
        if (a === undefined) continue;
        const gfn = mp.start + (a.pfn - mp.spte.base);
        (found ??= []).push({
          invariant: NAME,
          object: `vm${vm.index} gfn ${hx(gfn)}`,
          message: `the TD's shared EPT maps gfn ${hx(gfn)} (shared-bit GPA) to frame ${hx(a.pfn)}, which the TDX module has as ${PT_NAMES[a.entry.pt]} of TDR ${hx(a.entry.owner === 0 ? a.pfn : a.entry.owner)}`,
          focus: { vm: vm.index, gfn, pfn: a.pfn },
        });
      }
      const v = found ?? NO_VIOLATIONS;
      cache.set(m, x, tracked, v);
      return v;
    },
  },
  check(s) {
    return checkEveryVm(this.perVm!, s);
  },
};
