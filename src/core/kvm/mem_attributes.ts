/**
 * KVM_SET_MEMORY_ATTRIBUTES (virt/kvm/kvm_main.c `kvm_vm_ioctl_set_mem_attributes()`,
 * `kvm_vm_set_mem_attributes()`), kernel-uapi.md §2.7. The arch's pre- and post-set handlers
 * (x86: zap the old kind of mapping; hugepage "mixed" tracking, §3.4) are arch ops.
 *
 * Attributes are a range map gfn → bits (absent = 0 = shared). The kernel's xarray costs one
 * entry per gfn; the model costs one entry per distinct range, so converting 1 TiB costs what
 * converting 1 GiB costs.
 */
import type { KernelCtx } from '../ctx.js';
import { gfnToGmemIndex, type Vm } from './objects.js';
import { err, OK_VOID, type Result } from '../base/result.js';
import { asGfn, asGpa, gpaAdd, gpaToGfn, isPageAligned, type Gfn } from '../base/units.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../base/uapi.js';

const PRIVATE_ATTR = Number(KVM_MEMORY_ATTRIBUTE_PRIVATE);

/** `kvm_mem_is_private()`: the PRIVATE attribute of gfn (0 when attributes are not compiled). */
export function kvmMemIsPrivate(vm: Vm, gfn: Gfn): boolean {
  const a = vm.attrs.get(gfn);
  return a !== undefined && (a & PRIVATE_ATTR) !== 0;
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

/** The first refusal of the backing's `canConvert()` over the bound ranges of [start, end). */
function gmemConversionRefused(
  k: KernelCtx,
  vm: Vm,
  start: Gfn,
  end: Gfn,
  toPrivate: boolean,
): Result<never> | undefined {
  for (let as = 0; as < vm.slotsByGfn.length; as++) {
    for (const p of vm.slotsByGfn[as]!.piecesIn(start, end)) {
      const slot = p.value;
      const file = slot.gmem?.file;
      if (file === undefined || file === null) continue;
      const from = gfnToGmemIndex(slot, slot.gmem!.pgoff, asGfn(p.start));
      const to = gfnToGmemIndex(slot, slot.gmem!.pgoff, asGfn(p.end));
      const r = k.gmemBacking.canConvert(file, from, to, toPrivate);
      if (r !== undefined)
        return err(
          r.errno,
          `set_mem_attributes: guest_memfd backing '${k.gmemBacking.name}' refused the ` +
            `conversion at index ${r.index} of inode ${file.ino}`,
        );
    }
  }
  return undefined;
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
  // The guest_memfd backing's conversion check, for each guest_memfd-bound memslot range the
  // change covers, before anything changes. 6.18 has no such step (attributes live in the VM and
  // guest_memfd is not asked: its backing always allows); in-place conversion refuses here while
  // a folio to be made private still has extra references.
  const refused = gmemConversionRefused(k, vm, start, end, (attrs & PRIVATE_ATTR) !== 0);
  if (refused !== undefined) return refused;
  // Pre-set handler: kvm_arch_pre_set_memory_attributes() for each memslot range.
  let zapped = 0;
  if (!k.mutants.has('attr_change_no_zap')) {
    for (let as = 0; as < vm.slotsByGfn.length; as++) {
      for (const p of vm.slotsByGfn[as]!.piecesIn(start, end))
        zapped += k.arch.preSetMemoryAttributes(k, vm, as, asGfn(p.start), asGfn(p.end));
    }
  }
  if (zapped > 0) k.arch.flushRemoteTlbs(k, vm, 'set_memory_attributes');
  vm.mmuInvalidateSeq++;
  if (attrs === 0) vm.attrs.delete(start, end);
  else vm.attrs.set(start, end, attrs);
  k.events.push({ kind: 'attributes', vm: vm.index, start, end, attributes: BigInt(attrs) });
  // Post-set handler: kvm_arch_post_set_memory_attributes() for each memslot range.
  if (!k.mutants.has('hugepage_mixed_not_tracked')) {
    for (let as = 0; as < vm.slotsByGfn.length; as++) {
      for (const p of vm.slotsByGfn[as]!.piecesIn(start, end))
        k.arch.postSetMemoryAttributes(k, vm, p.value, start, end);
    }
  }
  return OK_VOID;
}
