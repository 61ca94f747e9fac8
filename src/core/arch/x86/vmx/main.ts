/**
 * kvm_intel (arch/x86/kvm/vmx/main.c `vt_x86_ops`): VMX with EPT. Guest accesses go through
 * stage-2 (EPT) mappings and take the KVM MMU's fault path. TDX (vmx/tdx.c) plugs in here as the
 * ops' TD branch (`is_td(kvm)`).
 *
 * `mem_enc_ioctl` and `vcpu_mem_enc_ioctl` are `vt_op_tdx_only()`: set with CONFIG_KVM_INTEL_TDX
 * (modelled here), NULL without it (then both ioctls are -ENOTTY in kvm_arch_*_ioctl()).
 */
import type { KernelCtx } from '../../../ctx.js';
import { err, type Result } from '../../../base/result.js';
import type { UserPtr } from '../../../base/uaccess.js';
import { KVM_X86_TDX_VM } from '../../../base/uapi.js';
import type { Vcpu, Vm } from '../../../kvm/objects.js';
import type { KvmX86Ops } from '../x86_ops.js';
import { guestTranslate } from '../mmu.js';

/** `is_td(kvm)`. No profile offers KVM_X86_TDX_VM yet: TDX's commands come with vmx/tdx.ts. */
function isTd(vm: Vm): boolean {
  return vm.type === KVM_X86_TDX_VM;
}

/** `vt_mem_enc_ioctl()`: -ENOTTY for a VM that is not a TD, before `argp` is read. */
function vtMemEncIoctl(_k: KernelCtx, vm: Vm, _argp: UserPtr): Result<undefined> {
  if (!isTd(vm)) return err('ENOTTY', 'vt_mem_enc_ioctl: !is_td(kvm)');
  throw new Error('tdx_vm_ioctl() is not modelled (no TD VM type in any profile)');
}

/** `vt_vcpu_mem_enc_ioctl()`: -EINVAL for a vCPU that is not a TD's, before `argp` is read. */
function vtVcpuMemEncIoctl(_k: KernelCtx, vcpu: Vcpu, _argp: UserPtr): Result<undefined> {
  if (!isTd(vcpu.vm)) return err('EINVAL', 'vt_vcpu_mem_enc_ioctl: !is_td_vcpu(vcpu)');
  throw new Error('tdx_vcpu_ioctl() is not modelled (no TD VM type in any profile)');
}

export const VMX_OPS: KvmX86Ops = {
  name: 'kvm_intel',
  guestMemoryAccess: 'stage2',
  translate: guestTranslate,
  vmcall: 'emulate',
  memEncIoctl: vtMemEncIoctl,
  vcpuMemEncIoctl: vtVcpuMemEncIoctl,
};
