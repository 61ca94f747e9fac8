/**
 * KVM_PRE_FAULT_MEMORY (virt/kvm/kvm_main.c `kvm_vcpu_pre_fault_memory()`), kernel-uapi.md §2.8:
 * the generic loop; each step is the arch's `kvm_arch_vcpu_pre_fault_memory()` (KernelCtx.arch).
 *
 * Partial progress is a result: the range is advanced by each successful step and always copied
 * back; an error is returned only by a call that made no progress.
 */
import type { KernelCtx } from '../ctx.js';
import type { Errno } from '../base/errno.js';
import type { Vcpu } from './objects.js';
import { isPageAligned } from '../base/units.js';

import type { PreFaultRange } from './arch_ops.js';

export type { PreFaultRange } from './arch_ops.js';

export type PreFaultResult = { readonly errno?: Errno; readonly remaining: PreFaultRange };

/** `kvm_vcpu_pre_fault_memory()` on an in/out range. */
export function kvmVcpuPreFaultMemory(
  k: KernelCtx,
  vcpu: Vcpu,
  gpa: bigint,
  size: bigint,
  flags: bigint,
): PreFaultResult {
  const range: PreFaultRange = { gpa, size };
  if (flags !== 0n) return { errno: 'EINVAL', remaining: range };
  if (
    !isPageAligned(gpa) ||
    !isPageAligned(size) ||
    gpa + size > 0xffff_ffff_ffff_ffffn ||
    size === 0n
  )
    return { errno: 'EINVAL', remaining: range };
  const full = size;
  let last: Errno | undefined;
  do {
    const r = k.arch.vcpuPreFaultMemory(k, vcpu, range);
    if (typeof r === 'string') {
      last = r;
      break;
    }
    range.size -= r;
    range.gpa += r;
  } while (range.size > 0n);
  if (range.size === full && last !== undefined) return { errno: last, remaining: range };
  return { remaining: range };
}
