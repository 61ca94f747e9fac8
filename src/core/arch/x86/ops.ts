/**
 * x86's implementation of the arch operations generic KVM calls (kvm/arch_ops.ts): the TDP/shadow
 * MMU of arch/x86/kvm/mmu/ (mmu.ts).
 */
import type { KernelCtx } from '../../ctx.js';
import type { KvmArchOps } from '../../kvm/arch_ops.js';
import {
  kvmFlushRemoteTlbs,
  kvmMmuInvalidateGfnRange,
  kvmMmuPageFault,
  kvmUnmapGfnRange,
  kvmZapForSlotChange,
} from './mmu.js';

export const X86_OPS: KvmArchOps<KernelCtx> = {
  unmapGfnRange: kvmUnmapGfnRange,
  flushRemoteTlbs: kvmFlushRemoteTlbs,
  invalidateGfnRange: kvmMmuInvalidateGfnRange,
  flushShadowMemslot: kvmZapForSlotChange,
  pageFault: kvmMmuPageFault,
};
