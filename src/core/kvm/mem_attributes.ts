/**
 * KVM_SET_MEMORY_ATTRIBUTES (virt/kvm/kvm_main.c `kvm_vm_ioctl_set_mem_attributes()`,
 * `kvm_vm_set_mem_attributes()`) and x86 hugepage "mixed" tracking
 * (arch/x86/kvm/mmu/mmu.c `kvm_arch_post_set_memory_attributes()`,
 * `kvm_mmu_init_memslot_memory_attributes()`), kernel-uapi.md §2.7 and §3.4.
 *
 * Attributes are a range map gfn → bits (absent = 0 = shared). The kernel's xarray costs one
 * entry per gfn; the model costs one entry per distinct range, so converting 1 TiB costs what
 * converting 1 GiB costs.
 */
import type { KernelCtx } from '../ctx.js';
import { RangeMap } from '../base/ranges/range_map.js';
import type { Memslot, Vm } from './objects.js';
import { err, OK_VOID, type Result } from '../base/result.js';
import {
  LEVEL_PAGES,
  asGfn,
  asGpa,
  gfnAdd,
  gfnAlignDown,
  gpaAdd,
  gpaToGfn,
  isPageAligned,
  type Gfn,
} from '../base/units.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../base/uapi.js';

const PRIVATE_ATTR = Number(KVM_MEMORY_ATTRIBUTE_PRIVATE);

/** `kvm_mem_is_private()`: the PRIVATE attribute of gfn (0 when attributes are not compiled). */
export function kvmMemIsPrivate(vm: Vm, gfn: Gfn): boolean {
  const a = vm.attrs.get(gfn);
  return a !== undefined && (a & PRIVATE_ATTR) !== 0;
}

/**
 * Whether a fault on gfn is private (`fault->is_private`): for VMs whose private memory is
 * tracked by attributes (SW_PROTECTED), iff the attribute says PRIVATE; never for DEFAULT VMs.
 */
export function kvmFaultIsPrivate(vm: Vm, gfn: Gfn): boolean {
  return vm.spec.privateFaultSource === 'attributes' && kvmMemIsPrivate(vm, gfn);
}

export type KvmMemoryAttributes = {
  readonly address: bigint;
  readonly size: bigint;
  readonly attributes: bigint;
  readonly flags: bigint;
};

/** Does every gfn of [start, end) have exactly `attrs`? (`kvm_range_has_memory_attributes`) */
export function rangeHasAttributes(vm: Vm, start: Gfn, end: Gfn, attrs: number): boolean {
  if (attrs === 0) return !vm.attrs.anyIn(start, end);
  if (!vm.attrs.covers(start, end)) return false;
  let uniform = true;
  vm.attrs.forEachIn(start, end, (_s, _e, v) => {
    if (v !== attrs) {
      uniform = false;
      return false;
    }
    return true;
  });
  return uniform;
}

/**
 * `kvm_vm_ioctl_set_mem_attributes()` after copy_from_user, then `kvm_vm_set_mem_attributes()`.
 * The caller has already established that the ioctl exists (profile config).
 */
export function kvmVmIoctlSetMemAttributes(
  k: KernelCtx,
  vm: Vm,
  a: KvmMemoryAttributes,
): Result<undefined> {
  // flags ≠ 0 → EINVAL
  if (a.flags !== 0n) return err('EINVAL', 'set_mem_attributes: flags != 0');
  // attributes outside kvm_supported_mem_attributes(kvm) → EINVAL
  if ((a.attributes & ~vm.spec.memAttributes) !== 0n)
    return err('EINVAL', 'set_mem_attributes: unsupported attributes');
  // size == 0 or address + size wraps → EINVAL
  if (a.size === 0n || a.address + a.size > 0xffff_ffff_ffff_ffffn)
    return err('EINVAL', 'set_mem_attributes: size 0 or range wraps');
  // address or size not page aligned → EINVAL
  const gpa = asGpa(a.address);
  if (!isPageAligned(gpa) || !isPageAligned(a.size))
    return err('EINVAL', 'set_mem_attributes: unaligned');
  const start = gpaToGfn(gpa);
  const end = gpaToGfn(gpaAdd(gpa, a.size));
  return kvmVmSetMemAttributes(k, vm, start, end, Number(a.attributes));
}

/**
 * `kvm_vm_set_mem_attributes()`: no-op when the range already has the value; otherwise for every
 * memslot overlapping the range, zap the old kind (x86 without mirror roots zaps everything in the
 * range, huge mappings whole), flush; store; recompute hugepage mixed flags.
 */
export function kvmVmSetMemAttributes(
  k: KernelCtx,
  vm: Vm,
  start: Gfn,
  end: Gfn,
  attrs: number,
): Result<undefined> {
  if (rangeHasAttributes(vm, start, end, attrs)) return OK_VOID;
  // Pre-set handler: kvm_arch_pre_set_memory_attributes() → kvm_unmap_gfn_range() per slot.
  let zapped = 0;
  if (!k.mutants.has('attr_change_no_zap')) {
    for (let as = 0; as < vm.slotsByGfn.length; as++) {
      for (const p of vm.slotsByGfn[as]!.piecesIn(start, end))
        zapped += k.arch.unmapGfnRange(
          k,
          vm,
          as,
          asGfn(p.start),
          asGfn(p.end),
          'set_memory_attributes',
        );
    }
  }
  if (zapped > 0) k.arch.flushRemoteTlbs(k, vm, 'set_memory_attributes');
  vm.mmuInvalidateSeq++;
  if (attrs === 0) vm.attrs.delete(start, end);
  else vm.attrs.set(start, end, attrs);
  k.events.push({ kind: 'attributes', vm: vm.index, start, end, attributes: BigInt(attrs) });
  // Post-set handler: hugepage mixed tracking.
  if (vm.spec.hasPrivateMem && !k.mutants.has('hugepage_mixed_not_tracked')) {
    for (let as = 0; as < vm.slotsByGfn.length; as++) {
      for (const p of vm.slotsByGfn[as]!.piecesIn(start, end))
        kvmArchPostSetMemoryAttributes(vm, p.value, start, end);
    }
  }
  return OK_VOID;
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
export function kvmArchPostSetMemoryAttributes(vm: Vm, slot: Memslot, start: Gfn, end: Gfn): void {
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
export function kvmMmuInitMemslotMemoryAttributes(vm: Vm, slot: Memslot): void {
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
