/**
 * freed-page-unmapped: a freed page is mapped nowhere.
 */
import { forEachMapping } from './stage2_coherent.js';
import { hx, type Invariant, type Violation } from './types.js';

export const freedPageUnmapped: Invariant = {
  name: 'freed-page-unmapped',
  title: 'A freed page is mapped nowhere',
  statement:
    'Once a page has been freed (hole punch, guest_memfd release, munmap, MADV_DONTNEED/REMOVE), no stage-2 mapping of any VM and no host page table still points at it: a guest can never reach a page that the allocator may give to someone else.',
  mechanism:
    'truncate_inode_pages_range() runs between kvm_gmem_invalidate_begin() and _end(), so SPTEs are zapped before folios are freed; mmu_notifier_invalidate_range_start() zaps KVM mappings before zap_page_range frees anonymous pages; TLB flushes complete before the free.',
  origin:
    'issue #4 ("can a guest reach a freed page through a stale stage-2 mapping"); kernel-uapi.md §2.4, §3.5.',
  check(s) {
    const out: Violation[] = [];
    const f = s.host.frames;
    for (const vm of s.host.vms) {
      forEachMapping(vm, (_as, g0, g1, spte) => {
        if (spte.base === 0) return;
        if (f.anyFree(spte.base, g1 - g0))
          out.push({
            invariant: this.name,
            object: `vm${vm.index} gfn ${hx(g0)}`,
            message: `stage-2 mapping points at freed page(s) from pfn ${hx(spte.base)}`,
            focus: { vm: vm.index, gfn: g0, pfn: spte.base },
          });
      });
    }
    for (const e of s.host.mm.anon.entries())
      if (f.anyFree(e.value.base, e.end - e.start))
        out.push({
          invariant: this.name,
          object: `host page ${hx(e.start)}`,
          message: `a VMM page table entry points at a freed page (pfn ${hx(e.value.base)})`,
          focus: { pfn: e.value.base },
        });
    return out;
  },
};
