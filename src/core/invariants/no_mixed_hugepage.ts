/**
 * no-mixed-hugepage: no huge stage-2 mapping spans mixed attributes or memslot edges.
 */
import { LEVEL_PAGES } from '../base/units.js';
import { mappingsOf } from './stage2_coherent.js';
import type { Vm } from '../kvm/objects.js';
import {
  checkEveryVm,
  hx,
  NO_VIOLATIONS,
  type CheckState,
  type Invariant,
  type PerVm,
  type Violation,
} from './types.js';

const perVm: PerVm = {
  vms: 'live',
  mappings: true,
  vm(vm: Vm, s: CheckState): Violation[] {
    let out: Violation[] | undefined;
    const ms = mappingsOf(vm, s);
    for (let i = 0; i < ms.length; i++) {
      const { start: g0, end: g1, spte, slot } = ms[i]!;
      if (spte.level === '4K') continue;
      const L = LEVEL_PAGES[spte.level];
      for (let f = Math.floor(g0 / L) * L; f < g1; f += L) {
        const bad =
          slot === undefined || f < slot.baseGfn || f + L > slot.endGfn
            ? 'crosses a memslot edge'
            : vm.attrs.anyIn(f, f + L) && !vm.attrs.covers(f, f + L)
              ? 'spans shared and private gfns'
              : vm.attrs.piecesIn(f, f + L).some((p, _i, a) => p.value !== a[0]!.value)
                ? 'spans different attributes'
                : undefined;
        if (bad !== undefined) {
          (out ??= []).push({
            invariant: 'no-mixed-hugepage',
            object: `vm${vm.index} ${spte.level} frame at gfn ${hx(f)}`,
            message: `huge mapping ${bad}`,
            focus: { vm: vm.index, gfn: f },
          });
          break;
        }
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const noMixedHugepage: Invariant = {
  name: 'no-mixed-hugepage',
  title: 'No hugepage over mixed memory',
  statement:
    'A 2 MiB or 1 GiB stage-2 mapping only covers gfns that all have the same memory attributes, lie in one memslot, and (for guest_memfd) are all bound: a shared hugepage never maps over a private gfn and vice versa.',
  mechanism:
    'lpage_info: KVM_LPAGE_MIXED_FLAG, maintained by kvm_arch_post_set_memory_attributes() and kvm_mmu_init_memslot_memory_attributes(), plus disallow_lpage for head/tail frames of a memslot; kvm_mmu_max_mapping_level() consults them.',
  origin:
    'kernel-uapi.md §3.4; issue #4 ("no huge mapping spans mixed attributes or a partially bound range").',
  perVm,
  check(s) {
    return checkEveryVm(perVm, s);
  },
};
