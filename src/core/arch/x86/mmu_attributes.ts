/**
 * x86's memory-attribute handlers (arch/x86/kvm/mmu/mmu.c): `kvm_arch_pre_set_memory_attributes()`
 * zaps the mappings of the old kind; hugepage "mixed" tracking (lpage_info's
 * KVM_LPAGE_MIXED_FLAG, kernel-uapi.md §3.4) — `kvm_arch_post_set_memory_attributes()` after each
 * change and `kvm_mmu_init_memslot_memory_attributes()` when a memslot is created or moved — which
 * `lpageAllowed()` (mmu.ts) consults before mapping a huge page.
 */
import type { KernelCtx } from '../../ctx.js';
import { RangeMap } from '../../base/ranges/range_map.js';
import type { Memslot, Vm } from '../../kvm/objects.js';
import { rangeHasAttributes } from '../../kvm/mem_attributes.js';
import { LEVEL_PAGES, asGfn, gfnAdd, gfnAlignDown, type Gfn } from '../../base/units.js';
import { kvmUnmapGfnRange } from './mmu.js';

/**
 * `kvm_arch_pre_set_memory_attributes()` for one memslot range: on x86 without mirror page
 * tables every mapping in the range is zapped (huge ones whole), whatever its kind. Returns how
 * many pages were zapped; the caller flushes.
 */
export function kvmArchPreSetMemoryAttributes(
  k: KernelCtx,
  vm: Vm,
  as: number,
  start: Gfn,
  end: Gfn,
): number {
  return kvmUnmapGfnRange(k, vm, as, start, end, 'set_memory_attributes');
}

/** Is gfn range [s, e) uniform in attributes? */
function attrsUniform(vm: Vm, s: Gfn, e: Gfn): boolean {
  const first = vm.attrs.get(s) ?? 0;
  return rangeHasAttributes(vm, s, e, first);
}

/**
 * Re-evaluate the mixed flag of one frame at `level`: mixed unless attributes are uniform and,
 * for 1G, no 2M sub-frame is mixed (`hugepage_has_attrs`).
 */
function frameIsMixed(vm: Vm, slot: Memslot, f0: Gfn, L: number): boolean {
  if (!attrsUniform(vm, f0, gfnAdd(f0, L))) return true;
  if (L === LEVEL_PAGES['1G']) {
    const m2 = slot.lpage.find((x) => x.pages === LEVEL_PAGES['2M']);
    if (m2 !== undefined && m2.mixed.anyIn(f0 / 512, (f0 + L) / 512)) return true;
  }
  return false;
}

/**
 * `kvm_arch_post_set_memory_attributes()` for one slot: at each level from 2M up, the head and
 * tail frames straddling [start, end) are re-evaluated, frames fully inside the range are cleared
 * (they now have the new, uniform value), and frames not wholly inside the memslot are skipped.
 */
export function kvmArchPostSetMemoryAttributes(
  _k: KernelCtx,
  vm: Vm,
  slot: Memslot,
  start: Gfn,
  end: Gfn,
): void {
  // Only VMs with private memory track mixed frames (kvm_arch_has_private_mem()).
  if (!vm.spec.hasPrivateMem) return;
  for (const info of slot.lpage) {
    const L = info.pages;
    const s = start > slot.baseGfn ? start : slot.baseGfn;
    const e = end < slot.endGfn ? end : slot.endGfn;
    if (s >= e) continue;
    // Frames wholly inside the updated range now have one uniform value, and (for 1G) so do all
    // of their 2M sub-frames, which the 2M pass cleared: clear them as one range, O(log n).
    const a = Math.max(Math.ceil(s / L) * L, Math.ceil(slot.baseGfn / L) * L);
    const b = Math.min(Math.floor(e / L) * L, Math.floor(slot.endGfn / L) * L);
    if (a < b) info.mixed.delete(a / L, b / L);
    // Head and tail frames that straddle the range edges are re-evaluated.
    const head = gfnAlignDown(s, L);
    const tail = gfnAlignDown(gfnAdd(e, -1), L);
    for (const g of head === tail ? [head] : [head, tail]) {
      if (g < slot.baseGfn || g + L > slot.endGfn) continue;
      setMixed(info.mixed, g / L, frameIsMixed(vm, slot, g, L));
    }
  }
}

function setMixed(map: RangeMap<number>, frame: number, mixed: boolean): void {
  if (mixed) map.set(frame, frame + 1, 1);
  else map.delete(frame, frame + 1);
}

/**
 * `kvm_mmu_init_memslot_memory_attributes()`: at memslot creation, evaluate every fully
 * contained frame. Cost is O(frames with attribute boundaries), not O(frames): a frame is mixed
 * only if an attribute range boundary falls strictly inside it.
 */
export function kvmMmuInitMemslotMemoryAttributes(_k: KernelCtx, vm: Vm, slot: Memslot): void {
  slot.lpage = [
    { pages: LEVEL_PAGES['2M'], mixed: new RangeMap<number>() },
    { pages: LEVEL_PAGES['1G'], mixed: new RangeMap<number>() },
  ];
  if (!vm.spec.hasPrivateMem) return;
  for (const info of slot.lpage) {
    const L = info.pages;
    const a = Math.ceil(slot.baseGfn / L) * L;
    const b = Math.floor(slot.endGfn / L) * L;
    if (a >= b) continue;
    // Boundaries of attribute ranges inside [a, b): the frames containing them (other than at a
    // frame start) are mixed. Everything else is uniform.
    const frames = new Set<number>();
    vm.attrs.forEachIn(a, b, (s, e) => {
      if (s % L !== 0 && s > a) frames.add(Math.floor(s / L));
      if (e % L !== 0 && e < b) frames.add(Math.floor(e / L));
      return true;
    });
    // Gaps also create boundaries where an attribute range starts/ends.
    const ordered = [...frames].sort((x, y) => x - y);
    for (const fr of ordered) setMixed(info.mixed, fr, frameIsMixed(vm, slot, asGfn(fr * L), L));
    if (L === LEVEL_PAGES['1G']) {
      const m2 = slot.lpage[0]!;
      for (const e of m2.mixed.entries()) {
        for (let f2 = e.start; f2 < e.end; f2++) {
          const g = Math.floor((f2 * 512) / L) * L;
          if (g >= a && g + L <= b) setMixed(info.mixed, g / L, true);
        }
      }
    }
  }
}
