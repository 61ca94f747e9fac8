/**
 * KVM_SET_USER_MEMORY_REGION(2) (virt/kvm/kvm_main.c `kvm_vm_ioctl_set_memory_region()`,
 * `kvm_set_memory_region()`, `kvm_set_memslot()`; x86 `kvm_arch_prepare_memory_region()`), in the
 * kernel's check order (kernel-uapi.md §2.5). For errno parity this order *is* the spec.
 */
import { NotModelled } from '../base/not_modelled.js';
import type { KernelCtx } from '../ctx.js';
import { kvmGmemBind, kvmGmemUnbind } from './guest_memfd/guest_memfd.js';
import { GmemFile, Memslot, type Vm } from './objects.js';
import { err, type Result } from '../base/result.js';
import { errnoName, type Errno } from '../base/errno.js';
import { kvmProtectNewMemslot } from './mem_protected.js';
import {
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_SET_USER_MEMORY_REGION_V1_FLAGS,
} from '../base/uapi.js';
import {
  asGpa,
  asHva,
  bytesToPagesN,
  gfnAdd,
  gpaToGfn,
  isPageAligned,
  type Hva,
} from '../base/units.js';

/** struct kvm_userspace_memory_region2, fields already truncated to their C widths. */
export type KvmUserspaceMemoryRegion2 = {
  readonly slot: bigint; // u32
  readonly flags: bigint; // u32
  readonly guest_phys_addr: bigint; // u64
  readonly memory_size: bigint; // u64
  readonly userspace_addr: bigint; // u64
  readonly guest_memfd_offset: bigint; // u64
};

export type MemoryRegionChange = 'CREATE' | 'DELETE' | 'MOVE' | 'FLAGS_ONLY' | 'NONE';

/** What fget(guest_memfd) would find: undefined when the fd is not open. */
export type GmemFdLookup = GmemFile | 'other' | undefined;

/**
 * The ioctl entry: `v1` rejects flags outside LOG_DIRTY|READONLY, then the (u16)slot check
 * against KVM_USER_MEM_SLOTS happens before slots_lock is taken, then kvm_set_memory_region().
 */
export function kvmVmIoctlSetMemoryRegion(
  k: KernelCtx,
  vm: Vm,
  mem: KvmUserspaceMemoryRegion2,
  gmemFd: () => GmemFdLookup,
  v1: boolean,
): Result<MemoryRegionChange> {
  if (v1 && (mem.flags & ~KVM_SET_USER_MEMORY_REGION_V1_FLAGS) !== 0n)
    return err('EINVAL', 'KVM_SET_USER_MEMORY_REGION: v2-only flags');
  if (Number(mem.slot & 0xffffn) >= k.profile.userMemSlots)
    return err('EINVAL', 'kvm_vm_ioctl_set_memory_region: (u16)slot >= KVM_USER_MEM_SLOTS');
  const r = kvmSetMemoryRegion(k, vm, mem, gmemFd);
  // design-2020-protnone-follkvm: the RFC's tail of __kvm_set_memory_region() protects the
  // range of a memslot created, moved or changed while the VM is protected.
  if (vm.memProtected && r.ok && r.value !== 'DELETE' && r.value !== 'NONE') {
    const slot = vm.slots.get(Number(mem.slot >> 16n) * 65536 + Number(mem.slot & 0xffffn));
    const e = slot === undefined ? 0 : kvmProtectNewMemslot(k, vm, slot);
    if (e !== 0) return err(errnoName(-e) as Errno, '__kvm_protect_memory');
  }
  return r;
}

/** `check_memory_region_flags()`. */
function checkMemoryRegionFlags(k: KernelCtx, vm: Vm, flags: bigint): boolean {
  let valid = KVM_MEM_LOG_DIRTY_PAGES;
  if (k.profile.guestMemfdConfig) valid |= KVM_MEM_GUEST_MEMFD;
  // A design's memslot flags (design-2023-restrictedmem: KVM_MEM_PRIVATE, the same bit as
  // KVM_MEM_GUEST_MEMFD, a restricted fd's binding). UPM v10 only adds it to the valid flags: a
  // private memslot may log dirty pages or be read-only (kvm/restrictedmem.ts: what the private
  // half then does is not modelled).
  const designFlags = k.design !== null ? k.design.memslotFlags : 0n;
  valid |= designFlags;
  const gmem = (flags & KVM_MEM_GUEST_MEMFD & ~designFlags) !== 0n;
  // Dirty logging private memory is not supported.
  if (gmem) valid &= ~KVM_MEM_LOG_DIRTY_PAGES;
  // READONLY: only if the arch allows it for this VM and the slot is not guest_memfd.
  if (k.profile.readonlyMem && !vm.spec.hasProtectedState && !gmem) valid |= KVM_MEM_READONLY;
  return (flags & ~valid) === 0n;
}

/**
 * x86 `access_ok()`: ua + size must not wrap and must not pass USER_PTR_MAX. Observed: a range
 * ending exactly at TASK_SIZE_MAX (0x7ffffffff000) is accepted, one page more is not.
 */
function accessOk(k: KernelCtx, ua: Hva, size: bigint): boolean {
  const sum = ua + size;
  if (sum > 0xffff_ffff_ffff_ffffn) return false;
  return sum <= k.profile.taskSizeMax;
}

/** `kvm_set_memory_region()`. */
export function kvmSetMemoryRegion(
  k: KernelCtx,
  vm: Vm,
  mem: KvmUserspaceMemoryRegion2,
  gmemFd: () => GmemFdLookup,
): Result<MemoryRegionChange> {
  if (!checkMemoryRegionFlags(k, vm, mem.flags)) return err('EINVAL', 'check_memory_region_flags');
  // The uAPI struct's addresses, typed (gpa_t, the user pointer).
  const gpa = asGpa(mem.guest_phys_addr);
  const ua = asHva(mem.userspace_addr);
  const asId = Number(mem.slot >> 16n);
  const id = Number(mem.slot & 0xffffn);
  const isGmem = (mem.flags & KVM_MEM_GUEST_MEMFD) !== 0n;
  // General sanity checks.
  if (!isPageAligned(mem.memory_size)) return err('EINVAL', 'memory_size not page aligned');
  if (!isPageAligned(gpa)) return err('EINVAL', 'guest_phys_addr not page aligned');
  if (!isPageAligned(ua) || !accessOk(k, ua, mem.memory_size))
    return err('EINVAL', 'userspace_addr unaligned or not a user range');
  if (
    isGmem &&
    (!isPageAligned(mem.guest_memfd_offset) ||
      mem.guest_memfd_offset + mem.memory_size > 0xffff_ffff_ffff_ffffn)
  )
    return err('EINVAL', 'guest_memfd_offset unaligned or offset + size wraps');
  if (asId >= vm.spec.nrAddressSpaces || id >= k.profile.memSlotsNum)
    return err('EINVAL', 'as_id or slot id out of range');
  if (gpa + mem.memory_size > 0xffff_ffff_ffff_ffffn)
    return err('EINVAL', 'guest_phys_addr + memory_size wraps');
  if (bytesToPagesN(mem.memory_size) > 2n ** 31n - 1n)
    return err('EINVAL', 'npages > KVM_MEM_MAX_NR_PAGES');
  const key = (asId << 16) | id;
  const old = vm.slots.get(key);
  if (mem.memory_size === 0n) {
    if (old === undefined) return err('EINVAL', 'delete of a slot that does not exist');
    kvmDeleteMemslot(k, vm, old, 'memslot_delete');
    return { ok: true, value: 'DELETE' };
  }
  const baseGfn = gpaToGfn(gpa);
  const npages = Number(bytesToPagesN(mem.memory_size));
  let change: MemoryRegionChange;
  if (old === undefined) {
    change = 'CREATE';
    // nr_memslot_pages + npages must fit an unsigned long: always true for the model's sizes.
  } else {
    // Private memslots are immutable; GUEST_MEMFD cannot be added to an existing slot either.
    // (UPM v10 refuses only new flags with KVM_MEM_PRIVATE: below.)
    if (isGmem || (old.isGuestMemfd && k.design?.restrictedFd !== true))
      return err('EINVAL', 'guest_memfd memslots are immutable');
    if (
      ua !== old.userspaceAddr ||
      npages !== old.npages ||
      ((mem.flags ^ old.flags) & KVM_MEM_READONLY) !== 0n
    )
      return err('EINVAL', 'modify: userspace_addr, size or READONLY changed');
    if (baseGfn !== old.baseGfn) change = 'MOVE';
    else if (mem.flags !== old.flags) change = 'FLAGS_ONLY';
    else return { ok: true, value: 'NONE' };
  }
  if (change === 'CREATE' || change === 'MOVE') {
    // kvm_check_memslot_overlap(): EEXIST, before the guest_memfd fd is even looked up.
    for (const p of vm.slotsByGfn[asId]!.piecesIn(baseGfn, gfnAdd(baseGfn, npages))) {
      if (p.value.id !== id) return err('EEXIST', 'memslot overlaps another slot');
    }
  }
  // design-2023-restrictedmem: v10 lets a private memslot move or change flags when the new
  // flags lack KVM_MEM_PRIVATE; the new memslot is not private and kvm_commit_memory_region()
  // frees the old one with kfree() alone, its restrictedmem notifier still registered.
  if (old?.isGuestMemfd === true)
    throw new NotModelled(
      "a move or flags change of a KVM_MEM_PRIVATE memslot without KVM_MEM_PRIVATE in the new flags (UPM v10 accepts it and leaves the freed memslot on the restricted fd's notifier list)",
    );
  if (change === 'FLAGS_ONLY') {
    vm.memslotGen++;
    old!.flags = mem.flags;
    k.events.push({ kind: 'slot', vm: vm.index, as: asId, id, change });
    return { ok: true, value: change };
  }
  if (change === 'MOVE') {
    const o = old!;
    // kvm_invalidate_memslot(): zap first, then kvm_arch_prepare_memory_region().
    k.arch.flushShadowMemslot(k, vm, o, 'memslot_move');
    const invalid = k.arch.memslotLastGfnInvalid(k, vm, gfnAdd(baseGfn, npages - 1));
    if (invalid !== undefined) return err('EINVAL', invalid);
    const refused = k.arch.prepareMemoryRegion?.(k, vm, o, baseGfn, npages);
    if (refused !== undefined) return refused;
    vm.memslotGen++;
    vm.slotsByGfn[asId]!.delete(o.baseGfn, o.endGfn);
    o.baseGfn = baseGfn;
    vm.slotsByGfn[asId]!.set(o.baseGfn, o.endGfn, o);
    k.arch.allocMemslotMetadata(k, vm, o);
    k.events.push({ kind: 'slot', vm: vm.index, as: asId, id, change });
    return { ok: true, value: change };
  }
  // CREATE
  const slot = new Memslot(asId, id, baseGfn, npages, mem.flags, ua);
  if (isGmem) {
    const r = kvmGmemBind(k, vm, slot, gmemFd(), mem.guest_memfd_offset);
    if (!r.ok) return r;
  }
  // kvm_arch_prepare_memory_region(): the last gfn must be addressable by the MMU and no alias.
  const invalid = k.arch.memslotLastGfnInvalid(k, vm, gfnAdd(baseGfn, npages - 1));
  if (invalid !== undefined) {
    if (isGmem) kvmGmemUnbind(k, slot);
    return err('EINVAL', invalid);
  }
  const refused = k.arch.prepareMemoryRegion?.(k, vm, slot, baseGfn, npages);
  if (refused !== undefined) {
    if (isGmem) kvmGmemUnbind(k, slot);
    return refused;
  }
  k.arch.allocMemslotMetadata(k, vm, slot);
  vm.slots.set(key, slot);
  vm.updateHvaSpan();
  vm.slotsByGfn[asId]!.set(slot.baseGfn, slot.endGfn, slot);
  vm.nrMemslotPages += npages;
  vm.mmuPagesSized = true;
  vm.memslotGen++;
  k.events.push({ kind: 'slot', vm: vm.index, as: asId, id, change });
  return { ok: true, value: 'CREATE' };
}

/** KVM_MR_DELETE: invalidate (zap), remove, then unbind guest_memfd (contents untouched). */
export function kvmDeleteMemslot(
  k: KernelCtx,
  vm: Vm,
  old: Memslot,
  source: 'memslot_delete',
): void {
  k.arch.flushShadowMemslot(k, vm, old, source);
  vm.slots.delete(old.key);
  vm.updateHvaSpan();
  vm.slotsByGfn[old.asId]!.delete(old.baseGfn, old.endGfn);
  vm.nrMemslotPages -= old.npages;
  vm.mmuPagesSized = true;
  vm.memslotGen++;
  if (old.isGuestMemfd) kvmGmemUnbind(k, old);
  k.events.push({ kind: 'slot', vm: vm.index, as: old.asId, id: old.id, change: 'DELETE' });
}
