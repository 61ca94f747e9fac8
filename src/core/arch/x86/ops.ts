/**
 * x86's implementation of the arch operations generic KVM calls (kvm/arch_ops.ts): the TDP/shadow
 * MMU of arch/x86/kvm/mmu/ (mmu.ts), and the `kvm_arch_gmem_*()` hooks of arch/x86/kvm/x86.c,
 * which call the vendor module's optional ops (x86_ops.ts).
 */
import type { KernelCtx } from '../../ctx.js';
import type { Errno } from '../../base/errno.js';
import type { Gfn, Pfn } from '../../base/units.js';
import type { Vm } from '../../kvm/objects.js';
import {
  kvmFlushRemoteTlbs,
  kvmMmuInvalidateGfnRange,
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
    flushRemoteTlbs: kvmFlushRemoteTlbs,
    invalidateGfnRange: kvmMmuInvalidateGfnRange,
    flushShadowMemslot: kvmZapForSlotChange,
    vcpuPreFaultMemory: kvmArchVcpuPreFaultMemory,
    preSetMemoryAttributes: kvmArchPreSetMemoryAttributes,
    postSetMemoryAttributes: kvmArchPostSetMemoryAttributes,
    allocMemslotMetadata: kvmMmuInitMemslotMemoryAttributes,
    gmemPrepare: kvmArchGmemPrepare,
    gmemInvalidate: kvmArchGmemInvalidate,
  };
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
