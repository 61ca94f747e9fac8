/**
 * x86's implementation of the arch operations generic KVM calls (kvm/arch_ops.ts): the TDP/shadow
 * MMU of arch/x86/kvm/mmu/ (mmu.ts), and the `kvm_arch_gmem_*()` hooks of arch/x86/kvm/x86.c,
 * which call the vendor module's optional ops (x86_ops.ts).
 */
import type { KernelCtx } from '../../ctx.js';
import type { Errno } from '../../base/errno.js';
import { err, type Result } from '../../base/result.js';
import type { UserPtr } from '../../base/uaccess.js';
import { KVM_IOCTL } from '../../base/uapi.js';
import type { Gfn, Pfn } from '../../base/units.js';
import type { Vcpu, Vm } from '../../kvm/objects.js';
import {
  kvmFlushRemoteTlbs,
  kvmMmuInvalidateGfnRange,
  kvmSplitCrossBoundaryLeafs,
  kvmUnmapGfnRange,
  kvmZapForSlotChange,
} from './mmu.js';
import {
  kvmArchPostSetMemoryAttributes,
  kvmArchPreSetMemoryAttributes,
  kvmMmuInitMemslotMemoryAttributes,
} from './mmu_attributes.js';
import { kvmArchVcpuPreFaultMemory } from './pre_fault.js';
import { x86Ops, type KvmX86Ops, type X86ArchOps } from './x86_ops.js';

/** The arch ops of an x86 host whose /dev/kvm is backed by `vendor`. */
export function x86ArchOps(vendor: KvmX86Ops): X86ArchOps {
  return {
    vendor,
    guestMemoryAccess: vendor.guestMemoryAccess,
    unmapGfnRange: kvmUnmapGfnRange,
    splitHugeLeafs: kvmSplitCrossBoundaryLeafs,
    flushRemoteTlbs: kvmFlushRemoteTlbs,
    invalidateGfnRange: kvmMmuInvalidateGfnRange,
    flushShadowMemslot: kvmZapForSlotChange,
    vcpuPreFaultMemory: kvmArchVcpuPreFaultMemory,
    preSetMemoryAttributes: kvmArchPreSetMemoryAttributes,
    postSetMemoryAttributes: kvmArchPostSetMemoryAttributes,
    allocMemslotMetadata: kvmMmuInitMemslotMemoryAttributes,
    memslotLastGfnInvalid: kvmArchMemslotLastGfnInvalid,
    gmemPrepare: kvmArchGmemPrepare,
    gmemInvalidate: kvmArchGmemInvalidate,
    vmIoctl: kvmArchVmIoctl,
    vcpuIoctl: kvmArchVcpuIoctl,
    ...(vendor.vmDestroy !== undefined ? { destroyVm: vendor.vmDestroy } : {}),
  };
}

/**
 * `kvm_arch_prepare_memory_region()` for KVM_MR_CREATE / KVM_MR_MOVE: the last gfn must be
 * addressable by the MMU (`kvm_mmu_max_gfn()`) and must not have a bit of the VM's direct bits
 * (`kvm_is_gfn_alias()`: a TD's shared bit, once KVM_TDX_INIT_VM set it), else -EINVAL.
 */
function kvmArchMemslotLastGfnInvalid(k: KernelCtx, vm: Vm, last: Gfn): string | undefined {
  if (last > k.profile.maxGfnExclusive - 1) return 'kvm_arch_prepare_memory_region: beyond max gfn';
  const direct = x86Ops(k).gfnDirectBits?.(vm) ?? 0n;
  if (direct !== 0n && (BigInt(last) & direct) !== 0n)
    return 'kvm_arch_prepare_memory_region: last gfn has a direct bit (kvm_is_gfn_alias)';
  return undefined;
}

/** `kvm_arch_gmem_prepare()`: `kvm_x86_call(gmem_prepare)` when the vendor has one, else 0. */
function kvmArchGmemPrepare(
  k: KernelCtx,
  vm: Vm,
  pfn: Pfn,
  gfn: Gfn,
  order: number,
): Errno | undefined {
  const vendor = x86Ops(k);
  return vendor.gmemPrepare === undefined ? undefined : vendor.gmemPrepare(k, vm, pfn, gfn, order);
}

/** `kvm_arch_gmem_invalidate()`: `kvm_x86_call(gmem_invalidate)` when the vendor has one. */
function kvmArchGmemInvalidate(k: KernelCtx, start: Pfn, end: Pfn): void {
  x86Ops(k).gmemInvalidate?.(k, start, end);
}

/**
 * `kvm_arch_vm_ioctl()` (arch/x86/kvm/x86.c) for the VM ioctls the model routes to it:
 * KVM_MEMORY_ENCRYPT_OP is -ENOTTY when the vendor has no `mem_enc_ioctl`, else the vendor's
 * result; any other is the switch's default, -ENOTTY.
 */
function kvmArchVmIoctl(k: KernelCtx, vm: Vm, ioctl: number, argp: UserPtr): Result<undefined> {
  switch (ioctl) {
    case KVM_IOCTL.KVM_MEMORY_ENCRYPT_OP: {
      const vendor = x86Ops(k);
      if (vendor.memEncIoctl === undefined)
        return err('ENOTTY', `KVM_MEMORY_ENCRYPT_OP: ${vendor.name} has no mem_enc_ioctl`);
      return vendor.memEncIoctl(k, vm, argp);
    }
    default:
      return err('ENOTTY', 'kvm_arch_vm_ioctl: unknown ioctl');
  }
}

/**
 * `kvm_arch_vcpu_ioctl()` for the vCPU ioctls the model routes to it: KVM_MEMORY_ENCRYPT_OP is
 * -ENOTTY when the vendor has no `vcpu_mem_enc_ioctl`, else the vendor's result; any other is
 * the switch's default, -EINVAL.
 */
function kvmArchVcpuIoctl(
  k: KernelCtx,
  vcpu: Vcpu,
  ioctl: number,
  argp: UserPtr,
): Result<undefined> {
  switch (ioctl) {
    case KVM_IOCTL.KVM_MEMORY_ENCRYPT_OP: {
      const vendor = x86Ops(k);
      if (vendor.vcpuMemEncIoctl === undefined)
        return err('ENOTTY', `KVM_MEMORY_ENCRYPT_OP: ${vendor.name} has no vcpu_mem_enc_ioctl`);
      return vendor.vcpuMemEncIoctl(k, vcpu, argp);
    }
    default:
      return err('EINVAL', 'kvm_arch_vcpu_ioctl: unknown ioctl');
  }
}
