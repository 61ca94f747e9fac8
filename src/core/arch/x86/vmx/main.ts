/**
 * kvm_intel (arch/x86/kvm/vmx/main.c `vt_x86_ops`): VMX with EPT. Guest accesses go through
 * stage-2 (EPT) mappings and take the KVM MMU's fault path. TDX (vmx/tdx.ts) plugs in here as the
 * ops' TD branch (`is_td(kvm)`): each `vt_*` op calls its `tdx_*` for a TD and does what VMX does
 * otherwise (for the ops listed here: nothing, or the ioctls' -ENOTTY / -EINVAL).
 *
 * `mem_enc_ioctl` and `vcpu_mem_enc_ioctl` are `vt_op_tdx_only()`: set with CONFIG_KVM_INTEL_TDX
 * (modelled here), NULL without it (then both ioctls are -ENOTTY in kvm_arch_*_ioctl()). On a
 * host without TDX (no TD VM type offered) no VM is a TD, so they answer -ENOTTY / -EINVAL.
 */
import type { KvmX86Ops } from '../x86_ops.js';
import { guestTranslate } from '../mmu.js';
import {
  kvmGfnDirectBits,
  tdxGmemMaxMappingLevel,
  tdxRemovePrivateSpte,
  tdxSetPrivateSpte,
  tdxVcpuCreate,
  tdxVcpuIoctl,
  tdxVmDestroy,
  tdxVmIoctl,
} from './tdx.js';
import { tdxGuest } from './tdx_guest.js';

export const VMX_OPS: KvmX86Ops = {
  name: 'kvm_intel',
  guestMemoryAccess: 'stage2',
  translate: guestTranslate,
  vmcall: 'emulate',
  // vt_mem_enc_ioctl() / vt_vcpu_mem_enc_ioctl(): -ENOTTY / -EINVAL for a VM that is not a TD.
  memEncIoctl: tdxVmIoctl,
  vcpuMemEncIoctl: tdxVcpuIoctl,
  vcpuCreate: tdxVcpuCreate,
  gfnDirectBits: kvmGfnDirectBits,
  // vt_gmem_max_mapping_level(): tdx_gmem_private_max_mapping_level() for a TD, 0 otherwise.
  gmemMaxMappingLevel: tdxGmemMaxMappingLevel,
  // The mirror root's hooks (vt_x86_ops' link/set/remove_external_sp*): only TDs have one.
  setExternalSpte: tdxSetPrivateSpte,
  removeExternalSpte: tdxRemovePrivateSpte,
  // vt_vm_destroy() (with vt_vm_pre_destroy() and the vCPU frees): a TD's teardown.
  vmDestroy: tdxVmDestroy,
  // KVM_RUN of a TD vCPU (vt_vcpu_pre_run(), vt_vcpu_run(), vt_handle_exit() → tdx_*).
  tdxGuest,
};
