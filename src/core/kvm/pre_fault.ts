/**
 * KVM_PRE_FAULT_MEMORY (virt/kvm/kvm_main.c `kvm_vcpu_pre_fault_memory()`, x86
 * `kvm_arch_vcpu_pre_fault_memory()` and `kvm_tdp_map_page()`), kernel-uapi.md §2.8.
 *
 * Partial progress is a result: the range is advanced by each successful step and always copied
 * back; an error is returned only by a call that made no progress.
 */
import type { KernelCtx } from '../ctx.js';
import { kvmFaultIsPrivate } from './mem_attributes.js';
import type { Errno } from '../base/errno.js';
import type { Vcpu } from './objects.js';
import { LEVEL_PAGES, asGpa, gpaToGfn, isPageAligned, pagesToBytes } from '../base/units.js';

export type PreFaultRange = { gpa: bigint; size: bigint };

export type PreFaultResult = { readonly errno?: Errno; readonly remaining: PreFaultRange };

/** One arch step: bytes mapped (> 0) or an errno. */
function archStep(k: KernelCtx, vcpu: Vcpu, r: PreFaultRange): bigint | Errno {
  const vm = vcpu.vm;
  if (!vm.preFaultAllowed) return 'EOPNOTSUPP';
  // kvm_mmu_reload(): with shadow paging, the MMU has no pages until the first memslot commit.
  if (!k.profile.tdpEnabled && !vm.mmuPagesSized) return 'ENOSPC';
  // kvm_tdp_map_page(): only the TDP MMU is indexed by GPA.
  if (!k.profile.tdpEnabled) return 'EOPNOTSUPP';
  const gfn = gpaToGfn(asGpa(r.gpa));
  // A read fault ("guest final"); private iff the VM has private memory and the gfn is private.
  // A gfn that is already mapped is a spurious fault: the existing mapping's level counts.
  if (vm.stage2[0]!.entryAt(gfn) === undefined) {
    // kvm_arch_vcpu_pre_fault_memory(): PFERR_PRIVATE_ACCESS when the gfn is private.
    const isPrivate = !k.mutants.has('prefault_ignores_attributes') && kvmFaultIsPrivate(vm, gfn);
    const out = k.arch.pageFault(k, vm, { gfn, write: false, isPrivate });
    if (out.kind === 'mmio') return 'ENOENT';
    if (out.kind === 'memfault') return out.errno;
  }
  const m = vm.stage2[0]!.entryAt(gfn);
  const level = m?.value.level ?? '4K';
  const L = pagesToBytes(LEVEL_PAGES[level]);
  const end = (r.gpa & ~(L - 1n)) + L;
  const n = end - r.gpa;
  return n < r.size ? n : r.size;
}

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
    const r = archStep(k, vcpu, range);
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
