/**
 * freed-page-unmapped: a freed page is mapped nowhere.
 */
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
  // Stage-2 mappings of one VM.
  vm(vm: Vm, s: CheckState): Violation[] {
    let out: Violation[] | undefined;
    const f = s.host.frames;
    const ms = mappingsOf(vm, s);
    for (let i = 0; i < ms.length; i++) {
      const { start: g0, end: g1, spte } = ms[i]!;
      if (spte.base === 0) continue;
      if (f.anyFree(spte.base, g1 - g0))
        (out ??= []).push({
          invariant: 'freed-page-unmapped',
          object: `vm${vm.index} gfn ${hx(g0)}`,
          message: `stage-2 mapping points at freed page(s) from pfn ${hx(spte.base)}`,
          focus: { vm: vm.index, gfn: g0, pfn: spte.base },
        });
    }
    return out ?? NO_VIOLATIONS;
  },
  // The host page tables of private anonymous memory: the VMM's, every forked child's and every
  // address space of no process (design-2020-separate-mm).
  host(s: CheckState): Violation[] {
    let out: Violation[] | undefined;
    const f = s.host.frames;
    const mms = s.host.manyMms ? s.host.allMms() : [s.host.mm];
    for (const mm of mms)
      for (const e of mm.anon.entries())
        if (f.anyFree(e.value.base, e.end - e.start))
          (out ??= []).push({
            invariant: 'freed-page-unmapped',
            object: `host page ${hx(e.start)}${mm === s.host.mm ? '' : ` of ${s.host.mmName(mm)}`}`,
            message: `a VMM page table entry points at a freed page (pfn ${hx(e.value.base)})`,
            focus: { pfn: e.value.base },
          });
    return out ?? NO_VIOLATIONS;
  },
};

export const freedPageUnmapped: Invariant = {
  name: 'freed-page-unmapped',
  title: 'A freed page is mapped nowhere',
  statement:
    'Once a page has been freed (hole punch, guest_memfd release, munmap, MADV_DONTNEED/REMOVE), no stage-2 mapping of any VM and no host page table still points at it: a guest can never reach a page that the allocator may give to someone else.',
  mechanism:
    'truncate_inode_pages_range() runs between kvm_gmem_invalidate_begin() and _end(), so SPTEs are zapped before folios are freed; mmu_notifier_invalidate_range_start() zaps KVM mappings before zap_page_range frees anonymous pages; TLB flushes complete before the free.',
  origin:
    'issue #4 ("can a guest reach a freed page through a stale stage-2 mapping"); kernel-uapi.md §2.4, §3.5.',
  perVm,
  check(s) {
    return checkEveryVm(perVm, s);
  },
};
