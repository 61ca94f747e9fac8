/**
 * arm64 stage-2 (arch/arm64/kvm/mmu.c, v6.18) as far as the model needs it: the guest abort path
 * (`kvm_handle_guest_abort()` → `gmem_abort()` / `user_mem_abort()`), unmapping, and
 * `kvm_arch_prepare_memory_region()`. On a pKVM host every stage-2 change is a hypercall
 * (arch/arm64/pkvm.ts); `vm.stage2[0]` stands for the host's record of the guest's mappings
 * (v6.18's `pkvm_mappings`, or the stage-2 page table itself without pKVM).
 */
import type { KernelCtx } from '../../ctx.js';
import type { Errno } from '../../base/errno.js';
import { err, type Err } from '../../base/result.js';
import type { ZapSource } from '../../base/events.js';
import { gfnAdd, type Gfn, type Hvpn, type Pfn } from '../../base/units.js';
import { kvmGmemGetPfn } from '../../kvm/guest_memfd/guest_memfd.js';
import {
  gfnToHvpnMemslot,
  hvpnToGfnMemslot,
  type Memslot,
  type Vcpu,
  type Vm,
} from '../../kvm/objects.js';
import { hostAccessFrame } from '../../mm/host_access.js';
import { pkvmHyp, pkvmStage2Map, pkvmStage2Unmap } from './pkvm.js';
import { PKVM_POISON } from '../../platform/pkvm/memory.js';
import { arm64State } from './state.js';

/** What a guest abort came to. */
export type Arm64Abort =
  /** The page is mapped: the access proceeds on this frame. */
  | { readonly kind: 'ok'; readonly pfn: Pfn }
  /** `io_mem_abort()`: no memslot, or a write to a READONLY one: KVM_EXIT_MMIO. */
  | { readonly kind: 'mmio' }
  /**
   * The translation fault lies past the IPA space: KVM injects an exception into the guest and
   * re-enters it, no exit — `kvm_inject_size_fault()` at or past the host's IPA limit ('size'),
   * `kvm_inject_sea()` between the VM's IPA size and that limit ('sea').
   */
  | { readonly kind: 'inject'; readonly fault: 'size' | 'sea' }
  /**
   * KVM_RUN fails with `errno`; `memoryFault`: `kvm_prepare_memory_fault_exit()` filled
   * KVM_EXIT_MEMORY_FAULT first (guest_memfd's errors, in `gmem_abort()`).
   */
  | { readonly kind: 'error'; readonly errno: Errno; readonly memoryFault: boolean };

/**
 * `kvm_handle_guest_abort()` for a data access of `vcpu` at gfn (a translation fault, or a
 * permission fault on a write to a read-only mapping): an IPA past the VM's IPA space injects an
 * exception into the guest (see `Arm64Abort`); the memslot (`gfn_to_memslot()`; none, or
 * a write to a READONLY slot: `io_mem_abort()`), then `gmem_abort()` for a guest_memfd slot
 * (`kvm_gmem_get_pfn()`; its errno with a memory fault exit) or `user_mem_abort()` (the page at
 * userspace_addr, `__kvm_faultin_pfn()`: -EFAULT when there is none), then the stage-2 map
 * (`KVM_PGT_FN(kvm_pgtable_stage2_map)`: on pKVM the share or donate hypercall, whose errno
 * fails KVM_RUN). A protected guest's poisoned entry (forced reclaim) faults whatever the host's
 * record says, and the map fails KVM_RUN with -EFAULT (`__pkvm_vcpu_in_poison_fault()`) after the
 * page was faulted in [model's reading for guest_memfd backing: the later tree's protected-VM
 * fault path, `pkvm_mem_abort()`, pins the VMM's page before the map in the same order].
 */
export function kvmHandleGuestAbort(
  k: KernelCtx,
  vcpu: Vcpu,
  gfn: Gfn,
  write: boolean,
): Arm64Abort {
  const vm = vcpu.vm;
  // kvm_handle_guest_abort(), translation faults: "Beyond sanitised PARange (which is the IPA
  // limit)", then "Falls between the IPA range and the PARange?".
  const ipaLimit = k.profile.facts.arm64?.ipaLimit ?? 48;
  if (gfn >= 2 ** (ipaLimit - 12)) return { kind: 'inject', fault: 'size' };
  if (gfn >= 2 ** ((vm.spec.arm64?.ipaBits ?? ipaLimit) - 12))
    return { kind: 'inject', fault: 'sea' };
  const hyp = pkvmHyp(k);
  const handle = hyp === undefined ? undefined : arm64State(k).vm(vm).handle;
  // On pKVM the guest's accesses walk the stage-2 the hypervisor keeps, not the host's record of
  // it: a poisoned entry (a forced reclaim zeroed and freed the page) is invalid, so the access
  // faults to the host whatever the record says. (The later tree's host keeps its
  // `pkvm_mapping` after a forced reclaim; the model's `pkvmGmemInvalidate()` drops the record.)
  const poisoned =
    hyp !== undefined &&
    handle !== undefined &&
    hyp.vms.get(handle)?.stage2.leaf(gfn)?.state === PKVM_POISON;
  const m = vm.stage2[0]!.get(gfn);
  if (!poisoned && m !== undefined && (!write || m.writable)) return { kind: 'ok', pfn: m.base };
  const slot = vm.slotsByGfn[0]!.get(gfn);
  if (slot === undefined || (write && slot.isReadonly)) return { kind: 'mmio' };
  let pfn: Pfn;
  let writable: boolean;
  let source: 'gmem' | 'hva';
  if (slot.isGuestMemfd) {
    // gmem_abort()
    const r = kvmGmemGetPfn(k, slot, gfn);
    if (typeof r === 'string') return { kind: 'error', errno: r, memoryFault: true };
    pfn = r;
    writable = !slot.isReadonly;
    source = 'gmem';
  } else {
    // user_mem_abort() → __kvm_faultin_pfn()
    const r = k.mm.fault(gfnToHvpnMemslot(slot, gfn), write, false);
    if ('signal' in r || hostAccessFrame(k, r.pfn, write, 'gup') !== undefined)
      return { kind: 'error', errno: 'EFAULT', memoryFault: false };
    pfn = r.pfn;
    writable = r.writable && !slot.isReadonly;
    source = 'hva';
  }
  // The host's fault path has the page, and (in the later tree) `pkvm_pgtable_stage2_map()`
  // finds its `pkvm_mapping` still there: it asks `__pkvm_vcpu_in_poison_fault`, whose non-zero answer is
  // -EFAULT, which `kvm_handle_guest_abort()` returns and which ends KVM_RUN.
  if (poisoned) return { kind: 'error', errno: 'EFAULT', memoryFault: false };
  if (hyp !== undefined) {
    // A permission fault on an existing mapping (a write after a read mapped it read-only)
    // relaxes it in place (`kvm_pgtable_stage2_relax_perms()`; not a new share) [not modelled:
    // the hypervisor's prot stays; the host's record becomes writable].
    if (m === undefined) {
      const e = pkvmStage2Map(k, hyp, vcpu, gfn, pfn, writable);
      if (e !== undefined) return { kind: 'error', errno: e, memoryFault: false };
    }
  }
  vm.stage2[0]!.set(gfn, gfn + 1, {
    base: pfn,
    level: '4K',
    private: vm.spec.arm64?.protected === true,
    source,
    writable,
  });
  if (k.events.enabled)
    k.events.push({
      kind: 'spte_install',
      vm: vm.index,
      as: 0,
      gfn,
      pages: 1,
      level: '4K',
      private: vm.spec.arm64?.protected === true,
      source,
    });
  return { kind: 'ok', pfn };
}

/**
 * `kvm_unmap_gfn_range()` → `__unmap_stage2_range()`: the mappings of [start, end) go (on pKVM,
 * `pkvm_pgtable_stage2_unmap()`: a protected VM keeps its pages, and the host's record of them).
 */
export function arm64UnmapGfnRange(
  k: KernelCtx,
  vm: Vm,
  as: number,
  start: Gfn,
  end: Gfn,
  source: ZapSource,
): number {
  const s2 = vm.stage2[as];
  if (s2 === undefined || end <= start || s2.size === 0) return 0;
  const hyp = pkvmHyp(k);
  if (hyp !== undefined) {
    if (vm.spec.arm64?.protected === true) return 0;
    pkvmStage2Unmap(k, hyp, vm, start, end);
  }
  const n = s2.countIn(start, end);
  if (n === 0) return 0;
  s2.delete(start, end);
  k.events.push({ kind: 'zap', vm: vm.index, as, start, end, pages: n, source });
  return n;
}

/** `kvm_mmu_notifier_invalidate_range_start()` on arm64 (as the generic one, through arm64's unmap). */
export function arm64MmuNotifierInvalidate(k: KernelCtx, vm: Vm, s: Hvpn, e: Hvpn): void {
  if (vm.dead) return;
  for (const slot of vm.slots.values()) {
    const ua = slot.userspaceHvpn;
    const lo = s > ua ? s : ua;
    const hi = Math.min(e, ua + slot.npages);
    if (lo >= hi) continue;
    const g0 = hvpnToGfnMemslot(slot, lo);
    arm64UnmapGfnRange(k, vm, slot.asId, g0, gfnAdd(g0, hi - lo), 'mmu_notifier');
  }
  vm.mmuInvalidateSeq++;
}

/**
 * `kvm_arch_prepare_memory_region()` (arm64) for a CREATE or MOVE to [base, base + npages): past
 * the VM's IPA size (`kvm_phys_size()`) is -EFAULT; a guest_memfd slot must be gmem-only
 * ("there aren't any CoCo VMs that support only private memory on arm64"), else -EINVAL.
 */
export function arm64PrepareMemoryRegion(
  _k: KernelCtx,
  vm: Vm,
  slot: Memslot,
  base: Gfn,
  npages: number,
): Err | undefined {
  const ipaBits = vm.spec.arm64?.ipaBits ?? 40;
  if (base + npages > 2 ** (ipaBits - 12))
    return err('EFAULT', 'kvm_arch_prepare_memory_region: beyond the IPA size');
  if (slot.isGuestMemfd && !slot.gmemOnly)
    return err('EINVAL', 'kvm_arch_prepare_memory_region: guest_memfd slot is not gmem-only');
  return undefined;
}
