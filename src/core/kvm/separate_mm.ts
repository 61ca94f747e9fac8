/**
 * design-2020-separate-mm, KVM's half (Andy Lutomirski's reply to "[RFCv2 00/16] KVM protected
 * memory extension", 2020-10-26; mm/address_space.ts has the mm's half and the uAPI): KVM
 * references an mm no task runs in "much as it currently references QEMU's mm_struct, to mirror
 * mappings into the guest". The reading taken (the reply has no code; core/profiles/designs.ts):
 *
 * - `KVM_MAP_ADDRESS_SPACE(as_fd)`, a VM ioctl, attaches an address space to the VM once, before
 *   any memslot exists: from then on every memslot's userspace_addr is an address of that mm.
 *   KVM's hva_to_pfn() (its get_user_pages()), its emulator's uaccess and its mmu_notifier use it
 *   (the notifier moves from the VMM's mm, whose addresses no memslot names any more); VM and
 *   vCPU ioctls still belong to the VMM (kvm->mm for the ioctl check is unchanged). The VM holds
 *   the address-space file until it is destroyed.
 * - Errors, in order: EBADF (as_fd not open), EINVAL (not an address-space fd), EEXIST (the VM
 *   has one), EBUSY (the VM has memslots already: their addresses were the VMM's).
 */
import type { KernelCtx } from '../ctx.js';
import { err, OK_VOID, type Result } from '../base/result.js';
import { AddressSpaceFile } from '../mm/address_space.js';
import type { HostMm } from '../mm/host_mm.js';
import type { KFile } from '../vfs/file.js';
import type { Vm } from './objects.js';

/** The mm in which KVM resolves `vm`'s memslot addresses (`kvm->mm` on every other kernel). */
export function kvmHvaMm(k: KernelCtx, vm: Vm): HostMm {
  return vm.guestMm ?? k.mm;
}

/** `KVM_MAP_ADDRESS_SPACE`: attach `f` (the file behind as_fd; undefined: not open) to `vm`. */
export function kvmMapAddressSpace(k: KernelCtx, vm: Vm, f: KFile | undefined): Result<undefined> {
  if (f === undefined) return err('EBADF', 'KVM_MAP_ADDRESS_SPACE: fd not open');
  if (!(f instanceof AddressSpaceFile))
    return err('EINVAL', 'KVM_MAP_ADDRESS_SPACE: not an address_space fd');
  if (vm.guestMm !== undefined) return err('EEXIST', 'KVM_MAP_ADDRESS_SPACE: already attached');
  if (vm.slots.size !== 0) return err('EBUSY', 'KVM_MAP_ADDRESS_SPACE: the VM has memslots');
  f.vmRefs++;
  vm.addressSpace = f;
  vm.guestMm = f.mm;
  // The VM's mmu_notifier hears about the address space's page tables instead of the VMM's.
  if (vm.mmuNotifier !== undefined) {
    k.mm.notifiers.unregister(vm.mmuNotifier);
    f.mm.notifiers.register(vm.mmuNotifier);
  }
  return OK_VOID;
}
