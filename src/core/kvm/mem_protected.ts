/**
 * KVM's half of design-2020-protnone-follkvm, the "KVM protected memory extension" RFC v2
 * (Kirill A. Shutemov, 2020-10-20, [RFCv2 00/16]; patch 11 "KVM: Protected memory extension" for
 * virt/kvm/kvm_main.c, patch 12 for the x86 hypercalls in kvm_emulate_hypercall()): a guest asks
 * KVM to take its memory away from the VMM, and KVM does it by making the VMM's own mappings of
 * guest RAM VM_KVM_PROTECTED (mm/mem_protected.ts), which only KVM's FOLL_KVM GUP may fault
 * through. The guest memory stays where it was (anonymous or shmem memory of the VMM) and stays
 * mapped in the guest: the state "not accessible in the VMM, present in the guest" that Andy
 * Lutomirski expected to become ABI (seed 002).
 *
 * Hypercall numbers (include/uapi/linux/kvm_para.h of the RFC, before KVM_HC_MAP_GPA_RANGE took
 * 12 in 5.14): KVM_HC_ENABLE_MEM_PROTECTED 12, KVM_HC_MEM_SHARE 13 and KVM_HC_MEM_UNSHARE 14,
 * each returning 0 or a negative errno in RAX (not a KVM_E* code: the RFC returns what
 * `__kvm_protect_memory()` returns).
 */
import { ERRNO_NUMBERS } from '../base/errno.js';
import { asGfn, hvpnAdd, type Gfn } from '../base/units.js';
import type { KernelCtx } from '../ctx.js';
import { gfnToHvpnMemslot, type Memslot, type Vm } from './objects.js';

export const KVM_HC_ENABLE_MEM_PROTECTED = 12n;
export const KVM_HC_MEM_SHARE = 13n;
export const KVM_HC_MEM_UNSHARE = 14n;

/** Protect (or unprotect) the whole userspace range of a memslot. */
function protectSlot(k: KernelCtx, slot: Memslot, protect: boolean): number {
  return k.mm.kvmProtect(slot.userspaceHvpn, hvpnAdd(slot.userspaceHvpn, slot.npages), protect);
}

/**
 * `kvm_protect_memory(kvm, gfn, npages, protect)`: 0 for no pages or a gfn outside every
 * memslot ("Not backed by memory. It's okay."), -ENOMEM for a READONLY memslot (below), -EINVAL
 * when the range runs past its memslot
 * (the RFC WARNs: "Share range across memory slots?"), else `__kvm_protect_memory()` on the
 * hva range.
 */
export function kvmProtectMemory(
  k: KernelCtx,
  vm: Vm,
  gfn: bigint,
  npages: bigint,
  protect: boolean,
): number {
  if (npages === 0n) return 0;
  if (gfn >= BigInt(k.profile.maxGfnExclusive)) return 0;
  const g: Gfn = asGfn(Number(gfn));
  // gfn_to_memslot(): address space 0 (the RFC's hypercalls know no SMM address space).
  const slot = vm.slotsByGfn[0]!.get(g);
  if (slot === undefined) return 0;
  // gfn_to_hva_many() asks for a writable hva: a READONLY memslot gives KVM_HVA_ERR_RO_BAD (a
  // kernel address) and leaves `numpages` unset. The model takes that stack value to pass the
  // WARN (else -EINVAL): __kvm_protect_memory() finds no VMA at or after a kernel address,
  // -ENOMEM, and nothing changes.
  if (slot.isReadonly) return -ERRNO_NUMBERS.ENOMEM;
  if (BigInt(slot.endGfn - g) < npages) return -ERRNO_NUMBERS.EINVAL;
  const start = gfnToHvpnMemslot(slot, g);
  return k.mm.kvmProtect(start, hvpnAdd(start, Number(npages)), protect);
}

/**
 * `kvm_protect_all_memory()`: `kvm->mem_protected = true`, then every memslot of every address
 * space protected in turn, stopping at the first error (the slots before it stay protected).
 */
export function kvmProtectAllMemory(k: KernelCtx, vm: Vm): number {
  vm.memProtected = true;
  for (const slot of vm.slots.values()) {
    const r = protectSlot(k, slot, true);
    if (r !== 0) return r;
  }
  return 0;
}

/**
 * The RFC's hook at the end of `__kvm_set_memory_region()`: once the VM is protected, a memslot
 * created, moved or given new flags has its userspace range protected too; a failure fails the
 * ioctl with that errno after the memslot change took effect (the RFC jumps to `out_bitmap`,
 * which frees only a new dirty bitmap).
 */
export function kvmProtectNewMemslot(k: KernelCtx, vm: Vm, slot: Memslot): number {
  if (!vm.memProtected) return 0;
  return protectSlot(k, slot, true);
}

/**
 * The RFC's cases of `kvm_emulate_hypercall()` (arch/x86/kvm/x86.c, patch 12) for `nr`, with the
 * guest's arguments: the value left in RAX, or undefined when `nr` is not one of them.
 * KVM_HC_MEM_SHARE/UNSHARE take a0 = first gfn, a1 = number of pages.
 */
export function kvmProtectedMemHypercall(
  k: KernelCtx,
  vm: Vm,
  nr: bigint,
  a0: bigint,
  a1: bigint,
): bigint | undefined {
  switch (nr) {
    case KVM_HC_ENABLE_MEM_PROTECTED:
      return BigInt(kvmProtectAllMemory(k, vm));
    case KVM_HC_MEM_SHARE:
      return BigInt(kvmProtectMemory(k, vm, a0, a1, false));
    case KVM_HC_MEM_UNSHARE:
      return BigInt(kvmProtectMemory(k, vm, a0, a1, true));
    default:
      return undefined;
  }
}
