/**
 * kvm_pvm (the PVM module of the development machines, `pvm_x86_ops`): a software-virtualised
 * vCPU on shadow paging. Observed on the real kernel (kernel-uapi notes, vCPU statistics): with
 * guest paging off every guest instruction goes through KVM's instruction emulator, which reaches
 * guest memory with uaccess on the memslot's userspace_addr — also for gmem-only slots — and turns
 * every access it cannot complete into KVM_EXIT_MMIO; and a VMCALL is never completed, so the
 * vCPU spins on it until a signal.
 *
 * `pvm_x86_ops` sets neither `mem_enc_ioctl` nor `vcpu_mem_enc_ioctl` (virt-pvm/linux
 * arch/x86/kvm/pvm/pvm.c): KVM_MEMORY_ENCRYPT_OP is -ENOTTY on VM and vCPU fds whatever the
 * argument (NULL, a command struct, an unmapped pointer), as the development machines' kernel
 * answers.
 */
import type { KvmX86Ops } from '../x86_ops.js';
import { emulatedTranslate } from '../mmu.js';

export const PVM_OPS: KvmX86Ops = {
  name: 'kvm_pvm',
  guestMemoryAccess: 'emulated',
  translate: emulatedTranslate,
  vmcall: 'spin',
};
