/**
 * `kvm_arch_vcpu_pre_fault_memory()` (arch/x86/kvm/mmu/mmu.c): one step of KVM_PRE_FAULT_MEMORY
 * on x86, `kvm_tdp_map_page()` of the first gfn of the range as a read fault ("guest final"),
 * private when the fault path would see the gfn as private (PFERR_PRIVATE_ACCESS). The generic
 * loop around it is kvm/pre_fault.ts.
 */
import type { KernelCtx } from '../../ctx.js';
import type { Errno } from '../../base/errno.js';
import type { PreFaultRange } from '../../kvm/arch_ops.js';
import type { Vcpu } from '../../kvm/objects.js';
import { LEVEL_PAGES, asGpa, gpaToGfn, pagesToBytes } from '../../base/units.js';
import { kvmMmuDoPageFault, kvmPreFaultIsPrivate } from './mmu.js';
import { x86Ops } from './x86_ops.js';
import { NotModelled } from '../../base/not_modelled.js';

/** One step: the bytes of the range now mapped (> 0), or an errno. */
export function kvmArchVcpuPreFaultMemory(
  k: KernelCtx,
  vcpu: Vcpu,
  r: PreFaultRange,
): bigint | Errno {
  const vm = vcpu.vm;
  if (!vm.preFaultAllowed) return 'EOPNOTSUPP';
  // kvm_is_gfn_alias(): a GPA with a TD's shared bit set.
  const direct = x86Ops(k).gfnDirectBits?.(vm) ?? 0n;
  if (direct !== 0n && (BigInt.asUintN(64, r.gpa >> 12n) & direct) !== 0n) return 'EINVAL';
  // kvm_mmu_reload(): with shadow paging, the MMU has no pages until the first memslot commit.
  if (!k.profile.tdpEnabled && !vm.mmuPagesSized) return 'ENOSPC';
  // kvm_tdp_map_page(): only the TDP MMU is indexed by GPA.
  if (!k.profile.tdpEnabled) return 'EOPNOTSUPP';
  const gfn = gpaToGfn(asGpa(r.gpa));
  // A read fault ("guest final"); private iff the VM has private memory and the gfn is private.
  // A gfn that is already mapped is a spurious fault: the existing mapping's level counts.
  if (vm.stage2[0]!.entryAt(gfn) === undefined) {
    const isPrivate =
      !k.mutants.has('prefault_ignores_attributes') && kvmPreFaultIsPrivate(vm, gfn);
    // A TD's shared GPA without the shared bit: KVM walks the mirror root with a shared fault
    // (kvm_is_addr_direct() is false), which ended in a KVM_BUG_ON in the kernels the VMM
    // reports describe (vmm-ecosystem.md §1.1, QEMU's pre-fault on page-state change); what 6.18
    // does there is not established, so the model does not answer.
    if (direct !== 0n && !isPrivate)
      throw new NotModelled(
        `KVM_PRE_FAULT_MEMORY of a TD's shared gfn 0x${gfn.toString(16)} without the shared bit (a shared fault through the mirror root) is not modelled`,
      );
    const out = kvmMmuDoPageFault(k, vm, gfn, false, isPrivate);
    if (typeof out !== 'number') return out.kind === 'mmio' ? 'ENOENT' : out.errno;
  }
  const m = vm.stage2[0]!.entryAt(gfn);
  const level = m?.value.level ?? '4K';
  const L = pagesToBytes(LEVEL_PAGES[level]);
  const end = (r.gpa & ~(L - 1n)) + L;
  const n = end - r.gpa;
  return n < r.size ? n : r.size;
}
