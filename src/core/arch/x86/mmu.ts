/**
 * Stage-2 mappings and the vCPU fault path (arch/x86/kvm/mmu/mmu.c, tdp_mmu.c; kernel-uapi.md
 * §3): which page backs a guest access, at which level it is mapped, and every invalidation
 * source that zaps mappings (§3.5) with its TLB flush.
 *
 * Guest accesses go through the stage-2 map first, as hardware does: an existing mapping is used
 * without consulting memslots, attributes or guest_memfd. In the faithful model every state
 * change zaps what it must, so this is equivalent to re-deriving the backing; a model bug that
 * forgets a zap becomes visible as a stale mapping — which is what the invariants check.
 */
import type { KernelCtx } from '../../ctx.js';
import { FAULT_MMIO, type FaultExit, type FaultOutcome } from '../../kvm/arch_ops.js';
import { kvmMemIsPrivate } from '../../kvm/mem_attributes.js';
import type { ZapSource } from '../../base/events.js';
import type { Errno } from '../../base/errno.js';
import { kvmGmemGetPfn } from '../../kvm/guest_memfd/guest_memfd.js';
import { gmemFolioAt } from '../../kvm/guest_memfd/hugetlb.js';
import { kvmHvaMm } from '../../kvm/separate_mm.js';
import { NotModelled } from '../../base/not_modelled.js';
import { x86Ops } from './x86_ops.js';
import {
  gfnToGmemIndex,
  gfnToHvpnMemslot,
  hvpnToGfnMemslot,
  spteShape,
  type KvmVcpuStat,
  type Memslot,
  type Spte,
  type Vm,
} from '../../kvm/objects.js';
import {
  LEVEL_PAGES,
  ZERO_PFN,
  asGfn,
  asGpa,
  gfnAdd,
  gfnAlignDown,
  gfnAlignUp,
  gfnDiff,
  gpaToGfn,
  pfnAdd,
  type Gfn,
  type Hvpn,
  type MappingLevel,
  type Pfn,
} from '../../base/units.js';
import {
  APIC_DEFAULT_PHYS_BASE,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
} from '../../base/uapi.js';
import { hostAccessFrame } from '../../mm/host_access.js';

/** A zap's start: `start`, or the first gfn of the mapping that covers it (a huge one is zapped whole). */
function zapStart(s2: Vm['stage2'][number], start: Gfn): Gfn {
  const first = s2.entryAt(start);
  return first === undefined ? start : gfnAlignDown(start, LEVEL_PAGES[first.value.level]);
}

/** A zap's end: `end`, or the end of the mapping that covers `end - 1` (a huge one is zapped whole). */
function zapEnd(s2: Vm['stage2'][number], end: Gfn): Gfn {
  const last = s2.entryAt(end - 1);
  return last === undefined ? end : gfnAlignUp(end, LEVEL_PAGES[last.value.level]);
}

/**
 * Zap stage-2 mappings of gfns [start, end) in address space `as` (`kvm_unmap_gfn_range`). A
 * huge mapping that overlaps the range is zapped whole. Returns the number of pages unmapped.
 */
export function kvmUnmapGfnRange(
  k: KernelCtx,
  vm: Vm,
  as: number,
  start: Gfn,
  end: Gfn,
  source: ZapSource,
): number {
  const s2 = vm.stage2[as];
  if (as === 0 && vm.mmioSptes.size !== 0) vm.mmioSptes.delete(start, end);
  if (s2 === undefined || end <= start || s2.size === 0) return 0;
  if (vm.spec.mirroredTdp === true) return unmapGfnRangeMirrored(k, vm, as, start, end, source);
  const zs = zapStart(s2, start);
  const ze = zapEnd(s2, end);
  const n = s2.countIn(zs, ze);
  if (n === 0) return 0;
  s2.delete(zs, ze);
  k.events.push({ kind: 'zap', vm: vm.index, as, start: zs, end: ze, pages: n, source });
  return n;
}

/**
 * `kvm_unmap_gfn_range()` on a VM with a mirror root (a TD): the range's `attr_filter` picks the
 * roots (`kvm_gfn_range_filter` → `kvm_tdp_mmu_unmap_gfn_range()`): a guest_memfd invalidation
 * zaps the private (mirror) SPTEs only (KVM_FILTER_PRIVATE: a TD's guest_memfd is never
 * INIT_SHARED), an mmu_notifier event the shared ones only (KVM_FILTER_SHARED), every other
 * source both. Each private leaf goes through the vendor's `remove_external_spte` first (TDX:
 * BLOCK, TRACK, REMOVE). A TD's private SPTEs are 4K; a shared huge SPTE overlapping the range is
 * zapped whole.
 */
function unmapGfnRangeMirrored(
  k: KernelCtx,
  vm: Vm,
  as: number,
  start: Gfn,
  end: Gfn,
  source: ZapSource,
): number {
  const s2 = vm.stage2[as]!;
  // With attributes in guest_memfd (in-place conversion) a TD's guest_memfd can hold shared pages
  // that the shared EPT maps: its invalidations zap both roots (v7 patch 16 takes the filter from
  // the attributes in range; the merged series, "Invalidate both SHARED and PRIVATE mappings for
  // in-place conversions", always both — the model does that).
  const privateOnly =
    (source === 'punch_hole' ||
      source === 'madv_remove' ||
      source === 'gmem_release' ||
      source === 'memory_failure') &&
    k.profile.gmemMemoryAttributes !== true;
  const sharedOnly = source === 'mmu_notifier';
  const zs = zapStart(s2, start);
  const ze = zapEnd(s2, end);
  const victims = s2.piecesIn(zs, ze).filter((p) => (p.value.private ? !sharedOnly : !privateOnly));
  if (victims.length === 0) return 0;
  const vendor = x86Ops(k);
  let n = 0;
  for (const p of victims) {
    if (p.value.private && vendor.removeExternalSpte !== undefined)
      for (let g = p.start; g < p.end; g++)
        vendor.removeExternalSpte(
          k,
          vm,
          asGfn(g),
          p.value.level,
          pfnAdd(p.value.base, g - p.start),
        );
    s2.delete(p.start, p.end);
    n += p.end - p.start;
  }
  k.events.push({ kind: 'zap', vm: vm.index, as, start: zs, end: ze, pages: n, source });
  return n;
}

/**
 * `kvm_split_cross_boundary_leafs()` (HugeTLB guest_memfd wip tree): every huge private leaf of
 * address space `as` that crosses `start` or `end` becomes 4K leaves of the same frames (the TDP
 * MMU's eager split), so that zapping [start, end) leaves the rest of the huge page mapped.
 */
export function kvmSplitCrossBoundaryLeafs(
  k: KernelCtx,
  vm: Vm,
  as: number,
  start: Gfn,
  end: Gfn,
): void {
  const s2 = vm.stage2[as];
  if (s2 === undefined || s2.size === 0 || end <= start) return;
  for (const g of [start, end]) {
    // One level at a time (tdp_mmu_split_huge_page(): a 1G leaf becomes 2M leaves, then the 2M
    // leaf that still crosses the boundary becomes 4K leaves).
    for (;;) {
      const e = s2.entryAt(g);
      if (e === undefined || e.value.level === '4K' || !e.value.private) break;
      const L = LEVEL_PAGES[e.value.level];
      const a = gfnAlignDown(g, L);
      if (a === g) break; // the leaf starts at the boundary: it does not cross it
      const level = e.value.level === '1G' ? '2M' : '4K';
      const v = s2.get(a)!;
      s2.set(a, a + L, { ...v, level });
      k.events.push({ kind: 'spte_split', vm: vm.index, as, gfn: asGfn(a), pages: L, level });
    }
  }
}

/** Count one remote TLB flush (`kvm_flush_remote_tlbs`). */
export function kvmFlushRemoteTlbs(k: KernelCtx, vm: Vm, source: ZapSource): void {
  vm.tlbFlushes.set(source, (vm.tlbFlushes.get(source) ?? 0) + 1);
  k.events.push({ kind: 'tlb_flush', vm: vm.index, source });
}

/**
 * One MMU invalidation of gfns [start, end): `kvm_mmu_invalidate_begin`, unmap, flush if
 * anything was zapped, `kvm_mmu_invalidate_end` (which bumps `mmu_invalidate_seq`, making
 * in-flight faults retry).
 */
export function kvmMmuInvalidateGfnRange(
  k: KernelCtx,
  vm: Vm,
  as: number,
  start: Gfn,
  end: Gfn,
  source: ZapSource,
): void {
  if (end <= start) return;
  k.events.push({ kind: 'invalidate', vm: vm.index, start, end, source });
  const n = kvmUnmapGfnRange(k, vm, as, start, end, source);
  if (n > 0) kvmFlushRemoteTlbs(k, vm, source);
  vm.mmuInvalidateSeq++;
}

/**
 * `kvm_mmu_notifier_invalidate_range_start()` for host virtual pages [s, e): every memslot whose
 * userspace range overlaps loses the stage-2 mappings of the overlapping gfns.
 */
export function kvmMmuNotifierInvalidate(k: KernelCtx, vm: Vm, s: Hvpn, e: Hvpn): void {
  if (vm.dead) return;
  if (s >= vm.hvaSpanEnd || e <= vm.hvaSpanStart) {
    // No memslot's userspace range reaches [s, e).
    vm.mmuInvalidateSeq++;
    return;
  }
  let any = false;
  for (const slot of vm.slots.values()) {
    const ua = slot.userspaceHvpn;
    const lo = s > ua ? s : ua;
    const hi = Math.min(e, ua + slot.npages);
    if (lo >= hi) continue;
    const g0 = hvpnToGfnMemslot(slot, lo);
    const n = kvmUnmapGfnRange(k, vm, slot.asId, g0, gfnAdd(g0, hi - lo), 'mmu_notifier');
    if (n > 0) any = true;
  }
  if (any) kvmFlushRemoteTlbs(k, vm, 'mmu_notifier');
  vm.mmuInvalidateSeq++;
}

/**
 * Zap for a memslot DELETE or MOVE. With the default KVM_X86_QUIRK_SLOT_ZAP_ALL, x86 zaps every
 * root (`kvm_mmu_zap_all_fast`), i.e. all mappings of the VM, not only the slot's.
 */
export function kvmZapForSlotChange(
  k: KernelCtx,
  vm: Vm,
  slot: Memslot,
  source: 'memslot_delete' | 'memslot_move',
): void {
  if (k.mutants.has(source === 'memslot_delete' ? 'delete_leaves_sptes' : 'move_no_zap')) return;
  if (vm.spec.mirroredTdp === true) {
    // kvm_memslot_flush_zap_all() is false for a TD: only the slot's range is zapped
    // (kvm_mmu_zap_memslot()), so the TD's other private pages stay.
    const z = kvmUnmapGfnRange(k, vm, slot.asId, slot.baseGfn, slot.endGfn, source);
    if (z > 0) kvmFlushRemoteTlbs(k, vm, source);
    vm.mmuInvalidateSeq++;
    return;
  }
  let n = 0;
  for (let as = 0; as < vm.stage2.length; as++) {
    const s2 = vm.stage2[as]!;
    const f = s2.first();
    const l = s2.last();
    if (f !== undefined && l !== undefined)
      n += kvmUnmapGfnRange(k, vm, as, asGfn(f.start), asGfn(l.end), source);
  }
  if (n > 0) kvmFlushRemoteTlbs(k, vm, source);
  vm.mmuInvalidateSeq++;
  void slot;
}

const APIC_DEFAULT_GFN = gpaToGfn(asGpa(APIC_DEFAULT_PHYS_BASE));

/**
 * The emulated path (profile guestAccess 'emulated'): the instruction emulator reaches guest
 * memory through the memslot's userspace_addr with uaccess (`kvm_vcpu_read_guest` /
 * `kvm_vcpu_write_guest`), CPU permission rules included; no slot, a write to a READONLY slot, or
 * a faulting uaccess all become MMIO. No stage-2 mapping is involved.
 */
export function emulatedTranslate(k: KernelCtx, vm: Vm, gfn: Gfn, write: boolean): FaultOutcome {
  // vcpu_is_mmio_gpa(): the default APIC page is MMIO to the emulator ("for APIC access vmexit"),
  // whatever memslot covers it; without an in-kernel LAPIC the access exits to userspace.
  if (gfn === APIC_DEFAULT_GFN) return FAULT_MMIO;
  const slot = vm.slotsByGfn[0]!.get(gfn);
  if (slot === undefined) return FAULT_MMIO;
  if (write && slot.isReadonly) return FAULT_MMIO;
  const hvpn = gfnToHvpnMemslot(slot, gfn);
  const r = kvmHvaMm(k, vm).fault(hvpn, write, true);
  if ('signal' in r) return FAULT_MMIO;
  if (hostAccessFrame(k, r.pfn, write, 'kvm-uaccess') !== undefined) return FAULT_MMIO;
  return r.pfn;
}

/** The outcome of resolving one guest page for an access. */
export type { FaultOutcome } from '../../kvm/arch_ops.js';

/**
 * Whether a fault on gfn is private (`fault->is_private`, the PFERR_PRIVATE_ACCESS bit).
 * `kvm_mmu_page_fault()` sets it for a software-protected VM when the gfn's attributes say
 * PRIVATE (they are the source of truth there); on SNP the hardware reports it with the access
 * (`npf_interception()`: PFERR_GUEST_ENC_MASK, the guest's C-bit, becomes PFERR_PRIVATE_ACCESS),
 * and the attributes only decide whether the access is an implicit conversion (memory-fault
 * exit); DEFAULT (and SEV, SEV-ES) VMs never fault privately. `encrypted` is the access's C-bit
 * (a guest step's `c`, given only on an SNP guest: `npf_interception()` checks `sev_snp_guest()`).
 */
export function kvmMmuFaultIsPrivate(vm: Vm, gfn: Gfn, encrypted = false): boolean {
  const src = vm.spec.privateFaultSource;
  if (src === 'attributes') return kvmMemIsPrivate(vm, gfn);
  return src === 'access' && encrypted;
}

/**
 * `kvm_arch_vcpu_pre_fault_memory()`'s private bit: PFERR_PRIVATE_ACCESS when the VM has private
 * memory and the gfn is PRIVATE by attributes (for every private-memory VM type alike).
 */
export function kvmPreFaultIsPrivate(vm: Vm, gfn: Gfn): boolean {
  return vm.spec.hasPrivateMem && kvmMemIsPrivate(vm, gfn);
}

/**
 * A guest access to `gfn` (address space 0): use the stage-2 mapping when present and
 * sufficient, otherwise take the fault (`kvm_mmu_page_fault` → `kvm_mmu_faultin_pfn` →
 * `__kvm_mmu_faultin_pfn`), install the mapping and return the frame. `stat`: the faulting
 * vCPU's counters (`vcpu->stat`), bumped as `kvm_mmu_page_fault()` bumps them.
 */
export function guestTranslate(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  write: boolean,
  encrypted = false,
  stat?: KvmVcpuStat,
): FaultOutcome {
  const s2 = vm.stage2[0]!;
  const m = s2.get(gfn);
  if (m !== undefined && (!write || m.writable)) return m.base;
  // A cached MMIO SPTE: a reserved-bit fault, handled as MMIO (never private) while the memslot
  // generation it was created in is current; a stale one is dropped and the fault taken anew.
  // (handle_mmio_page_fault(): RET_PF_EMULATE goes straight to the emulator, no stat counted.)
  if (vm.mmioSptes.size !== 0) {
    const gen = vm.mmioSptes.get(gfn);
    if (gen !== undefined) {
      if (gen === vm.memslotGen) return FAULT_MMIO;
      vm.mmioSptes.delete(gfn, gfn + 1);
    }
  }
  if (stat === undefined)
    return kvmMmuDoPageFault(k, vm, gfn, write, kvmMmuFaultIsPrivate(vm, gfn, encrypted));
  // kvm_mmu_page_fault(): RET_PF_INVALID → vcpu->stat.pf_taken++, kvm_mmu_do_page_fault(), then
  // pf_fixed / pf_emulate by its result (an error, such as a memory-fault exit, counts nothing).
  stat.pf_taken++;
  const out = kvmMmuDoPageFault(k, vm, gfn, write, kvmMmuFaultIsPrivate(vm, gfn, encrypted));
  if (typeof out === 'number') stat.pf_fixed++;
  else if (out.kind === 'mmio') stat.pf_emulate++;
  return out;
}

/**
 * `struct kvm_page_fault` (arch/x86/kvm/mmu/mmu_internal.h), the fields this model uses: built
 * once where a fault enters the MMU (`kvmMmuDoPageFault()`: a guest access, a pre-fault) and passed
 * through every stage; the inputs are fixed, the stages fill in the rest as the kernel's do.
 */
export type KvmPageFault = {
  readonly gfn: Gfn;
  readonly write: boolean;
  /**
   * `fault->is_private`: served by guest_memfd. Its source is the VM type's
   * (`VmTypeSpec.privateFaultSource`): the attributes (SW_PROTECTED), the access's C-bit (SNP:
   * PFERR_PRIVATE_ACCESS from the NPF error code), never (DEFAULT, SEV, SEV-ES).
   */
  readonly isPrivate: boolean;
  /** `fault->slot`: the memslot of gfn (set by `kvm_mmu_do_page_fault()`). */
  slot: Memslot | undefined;
  /** `fault->pfn`, `fault->map_writable`: what faultin found. */
  pfn: Pfn;
  mapWritable: boolean;
  /** `fault->goal_level`: the level the mapping is installed at. */
  goalLevel: MappingLevel;
  /** Where the pfn came from: guest_memfd or the host mapping at userspace_addr. */
  source: 'gmem' | 'hva';
};

/** A fault record with its inputs set and every output field present (one object shape). */
export function newPageFault(gfn: Gfn, write: boolean, isPrivate: boolean): KvmPageFault {
  return {
    gfn,
    write,
    isPrivate,
    slot: undefined,
    pfn: ZERO_PFN,
    mapWritable: false,
    goalLevel: '4K',
    source: 'hva',
  };
}

/** A fault record whose inputs can be set again (the reused one). */
type ReusableFault = { -readonly [F in keyof KvmPageFault]: KvmPageFault[F] };
/**
 * The fault record kvmMmuDoPageFault() reuses: the kernel's lives on its stack; here one object
 * stands for it, since a fault runs to completion before the next starts (the model is
 * single-threaded), which saves an allocation per fault. While it is lent out it is undefined, so
 * a fault started inside another (none today) gets a fresh record and the two never share fields.
 * Nothing keeps a record after the fault returns (outcomes and events copy what they need).
 */
let spareFault: ReusableFault | undefined = newPageFault(asGfn(0), false, false);

/**
 * `kvm_mmu_do_page_fault()`: build the fault record for a fault at gfn (a guest access or a
 * pre-fault) and run the fault path on it.
 */
export function kvmMmuDoPageFault(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  write: boolean,
  isPrivate: boolean,
): FaultOutcome {
  const f = spareFault;
  if (f === undefined) return kvmMmuPageFault(k, vm, newPageFault(gfn, write, isPrivate));
  spareFault = undefined;
  f.gfn = gfn;
  f.write = write;
  f.isPrivate = isPrivate;
  f.slot = undefined;
  f.pfn = ZERO_PFN;
  f.mapWritable = false;
  f.goalLevel = '4K';
  f.source = 'hva';
  try {
    return kvmMmuPageFault(k, vm, f);
  } finally {
    f.slot = undefined; // hold no memslot between faults
    spareFault = f;
  }
}

/**
 * The fault path proper (kernel-uapi.md §3.1), for a fault in address space 0:
 * `kvm_mmu_do_page_fault()` finds the memslot, `kvm_mmu_faultin_pfn()` the page and its level,
 * and the map step installs the SPTE.
 */
export function kvmMmuPageFault(k: KernelCtx, vm: Vm, fault: KvmPageFault): FaultOutcome {
  const flags = fault.isPrivate ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0n;
  // kvm_mmu_faultin_pfn(): a private/shared mismatch with the gfn's attributes is an implicit
  // conversion the VMM must perform (kvm_mmu_prepare_memory_fault_exit(), -EFAULT), checked before
  // the memslot lookup's no-slot handling. Only an SNP access can mismatch: SW_PROTECTED takes
  // its private bit from the attributes, and DEFAULT/SEV/SEV-ES VMs cannot set PRIVATE.
  if (vm.spec.privateFaultSource === 'access' && fault.isPrivate !== kvmMemIsPrivate(vm, fault.gfn))
    return { kind: 'memfault', errno: 'EFAULT', flags };
  const slot = vm.slotsByGfn[0]!.get(fault.gfn);
  if (slot === undefined) {
    // No memslot: private → memory fault exit; shared → emulated MMIO, and the MMU caches an
    // MMIO SPTE for the gfn (enable_mmio_caching).
    if (fault.isPrivate)
      return k.design?.privateFaultExit ?? { kind: 'memfault', errno: 'EFAULT', flags };
    if (k.profile.mmioCaching) vm.mmioSptes.set(fault.gfn, fault.gfn + 1, vm.memslotGen);
    return FAULT_MMIO;
  }
  fault.slot = slot;
  const failed = kvmMmuFaultinPfn(k, vm, fault, slot, flags);
  if (failed !== undefined) return failed;
  const bad = mapFault(k, vm, fault, slot);
  if (bad !== undefined) return { kind: 'memfault', errno: bad, flags };
  return fault.pfn;
}

/**
 * `kvm_mmu_faultin_pfn()`: fill in the fault's pfn, writability and level, from guest_memfd
 * (`kvm_mmu_faultin_pfn_gmem()`) for private faults and gmem-only slots, else from the host
 * mapping at userspace_addr (`__kvm_mmu_faultin_pfn()` → hva_to_pfn()). Returns the outcome when
 * the fault cannot be served.
 */
function kvmMmuFaultinPfn(
  k: KernelCtx,
  vm: Vm,
  fault: KvmPageFault,
  slot: Memslot,
  flags: bigint,
): FaultExit | undefined {
  const { gfn, write } = fault;
  // (A gmem-only slot is decided first: the mutant only matters to other slots.)
  if (slot.gmemOnly || (fault.isPrivate && !k.mutants.has('private_fault_uses_hva'))) {
    // kvm_mmu_faultin_pfn_gmem()
    if (!slot.isGuestMemfd)
      return k.design?.privateFaultExit ?? { kind: 'memfault', errno: 'EFAULT', flags };
    // design-2023-restrictedmem: UPM v10 accepts KVM_MEM_PRIVATE with LOG_DIRTY_PAGES or
    // READONLY (6.18 refuses both for guest_memfd): v10's private fault then maps the page
    // read-only and marks it dirty, which the model's private path does not do.
    if ((slot.flags & (KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0n)
      throw new NotModelled(
        'a private fault on a KVM_MEM_PRIVATE memslot with KVM_MEM_LOG_DIRTY_PAGES or KVM_MEM_READONLY (UPM v10 accepts the memslot; dirty logging and read-only mapping of its private half are not modelled)',
      );
    // A TD's shared fault on a gmem-only slot (a GUEST_MEMFD_FLAG_MMAP file, which 6.18 accepts
    // for a TD): the shared EPT would map guest_memfd's page, and a punch or release of that page
    // zaps only the mirror root (a TD's guest_memfd invalidations are KVM_FILTER_PRIVATE), so the
    // shared SPTE would outlive the page. kernel-uapi.md §3.6 leaves the case unspecified: the
    // model does not answer.
    // With attributes in guest_memfd the invalidations zap the shared root too (above,
    // unmapGfnRangeMirrored()), so the shared EPT maps guest_memfd's shared page.
    if (!fault.isPrivate && vm.spec.mirroredTdp === true && k.profile.gmemMemoryAttributes !== true)
      throw new NotModelled(
        `a TD's shared fault at gfn 0x${gfn.toString(16)} on a gmem-only memslot (an MMAP guest_memfd) is not modelled: unspecified in 6.18`,
      );
    const r = kvmGmemGetPfn(k, slot, gfn);
    if (typeof r === 'string') return { kind: 'memfault', errno: r, flags };
    // guest_memfd memory is always writable (READONLY is refused for gmem slots). guest_memfd
    // hands out order-0 folios (its backing's folioOrder; the model stops on any other).
    fault.pfn = r;
    fault.mapWritable = true;
    const f = slot.gmem!.file!;
    if (!f.hugetlb) fault.goalLevel = kvmMaxPrivateMappingLevel(k, vm, r, '1G', 0);
    else {
      // HugeTLB guest_memfd: `__kvm_gmem_get_pfn()`'s max_order is the folio's order (a split
      // huge page's folios are order 0); `kvm_mmu_max_mapping_level()` then caps the level by
      // the slot's lpage_info (slot ends, mixed attributes) with the alignment rule anchored at
      // the gmem pgoff instead of userspace_addr (see mappingLevel()), and
      // `kvm_gmem_max_mapping_level()` by the folio's order and the vendor.
      const order = gmemFolioAt(f, gfnToGmemIndex(slot, slot.gmem!.pgoff, gfn)).order;
      fault.goalLevel = kvmMaxPrivateMappingLevel(
        k,
        vm,
        r,
        mappingLevel(vm, slot, gfn, kvmMaxLevelForOrder(order), slot.gmem!.pgoff),
        order,
      );
    }
    fault.source = 'gmem';
    return undefined;
  }
  // Shared fault on an hva-backed slot.
  if (write && slot.isReadonly) return FAULT_MMIO;
  const hvpn = gfnToHvpnMemslot(slot, gfn);
  // hva_to_pfn() in kvm->mm (design-2020-separate-mm: the VM's address space).
  const mm = kvmHvaMm(k, vm);
  const r = mm.fault(hvpn, write, false);
  if ('signal' in r || hostAccessFrame(k, r.pfn, write, 'gup') !== undefined) {
    // hva_to_pfn() failed: KVM_PFN_ERR_FAULT → kvm_handle_error_pfn() → -EFAULT with a memory
    // fault exit (flags 0).
    return { kind: 'memfault', errno: 'EFAULT', flags };
  }
  fault.pfn = r.pfn;
  fault.mapWritable = r.writable && !slot.isReadonly && r.pfn !== ZERO_PFN;
  // The backing level is the host page-table level of the page (a THP maps 2M).
  fault.goalLevel =
    r.pfn === ZERO_PFN ? '4K' : mappingLevel(vm, slot, gfn, mm.hostLevel(hvpn), slot.userspaceHvpn);
  fault.source = 'hva';
  return undefined;
}

/** `kvm_max_level_for_order()`: the largest level a folio of 2^order pages can be mapped at. */
function kvmMaxLevelForOrder(order: number): MappingLevel {
  if (order >= 18) return '1G';
  if (order >= 9) return '2M';
  return '4K';
}

/**
 * `kvm_max_private_mapping_level()`: the level a guest_memfd frame may be mapped at, given the
 * folio's order and the level the slot allows: 4K ends it (the vendor is not asked), else the
 * vendor's `gmem_max_mapping_level` may lower it (0: no limit of its own).
 */
export function kvmMaxPrivateMappingLevel(
  k: KernelCtx,
  vm: Vm,
  pfn: Pfn,
  maxLevel: MappingLevel,
  maxOrder: number,
): MappingLevel {
  const byOrder = kvmMaxLevelForOrder(maxOrder);
  let level = LEVEL_PAGES[byOrder] < LEVEL_PAGES[maxLevel] ? byOrder : maxLevel;
  if (level === '4K') return '4K';
  const req = x86Ops(k).gmemMaxMappingLevel?.(k, vm, pfn) ?? 0;
  if (req !== 0 && LEVEL_PAGES[req] < LEVEL_PAGES[level]) level = req;
  return level;
}

/**
 * The map step (`kvm_tdp_mmu_map()` / `direct_map()`): one SPTE at the fault's goal level. On a
 * VM with a mirror root a private SPTE is first propagated by the vendor
 * (`set_external_spte_present()`); its errno fails the fault and nothing is installed.
 */
function mapFault(k: KernelCtx, vm: Vm, fault: KvmPageFault, slot: Memslot): Errno | undefined {
  const { gfn, pfn, isPrivate, source, mapWritable } = fault;
  if (isPrivate && vm.spec.mirroredTdp === true) {
    const e = x86Ops(k).setExternalSpte?.(k, vm, gfn, fault.goalLevel, pfn);
    if (e !== undefined) return e;
  }
  if (fault.goalLevel !== '4K') {
    const L = LEVEL_PAGES[fault.goalLevel];
    const g0 = gfnAlignDown(gfn, L);
    installSpte(
      k,
      vm,
      slot,
      g0,
      pfnAdd(pfn, -gfnDiff(gfn, g0)),
      fault.goalLevel,
      isPrivate,
      source,
      mapWritable,
    );
  } else installSpte(k, vm, slot, gfn, pfn, '4K', isPrivate, source, mapWritable);
  return undefined;
}

/**
 * `kvm_mmu_max_mapping_level()`: the largest level, at most `backing`, that lpage_info allows for
 * the frame around `gfn` (`lpageAllowed()`). `backing` is what the memory behind the gfn allows:
 * the host page-table level (`host_pfn_mapping_level()`) for hva-served faults, the folio's
 * order (`kvm_gmem_max_mapping_level()`, before the vendor's cap) for guest_memfd-served ones.
 *
 * `anchor` is the page number whose alignment must agree with base_gfn's at the level: the
 * slot's userspace_addr, as lpage_info computes it at memslot creation
 * (`kvm_alloc_memslot_metadata()`), or, for a HugeTLB guest_memfd, the binding's pgoff. The
 * sources are silent on the final code for the latter (the 2025 thread on huge guest_memfd
 * bindings: Ackerley Tng proposed the userspace_addr check for private-capable slots, Yan Zhao
 * objected that userspace_addr need not follow gmem.pgoff and proposed lowering max_order where
 * base_gfn and pgoff are misaligned, since a huge guest frame would straddle two folios); the
 * model follows the latter, so a gmem-only slot's mmap address does not matter.
 */
export function mappingLevel(
  vm: Vm,
  slot: Memslot,
  gfn: Gfn,
  backing: MappingLevel,
  anchor: number,
): MappingLevel {
  if (backing === '4K') return '4K';
  for (const level of ['1G', '2M'] as const) {
    if (LEVEL_PAGES[level] > LEVEL_PAGES[backing]) continue;
    if (lpageAllowed(vm, slot, gfn, level, anchor)) return level;
  }
  return '4K';
}

/**
 * lpage_info (`disallow_lpage`): is a `level` mapping of the frame containing gfn allowed in this
 * slot, base_gfn aligned like `anchor` (default: userspace_addr's page; see mappingLevel())?
 */
export function lpageAllowed(
  vm: Vm,
  slot: Memslot,
  gfn: Gfn,
  level: '2M' | '1G',
  anchor: number = slot.userspaceHvpn,
): boolean {
  const L = LEVEL_PAGES[level];
  const f0 = gfnAlignDown(gfn, L);
  // Head/tail frames that stick out of the slot are disallowed.
  if (f0 < slot.baseGfn || f0 + L > slot.endGfn) return false;
  // base_gfn and the anchor misaligned at this level: every frame disallowed.
  if ((slot.baseGfn - anchor) % L !== 0) return false;
  // KVM_LPAGE_MIXED_FLAG (only tracked for VMs with private memory).
  if (vm.spec.hasPrivateMem) {
    const info = slot.lpage.find((x) => x.pages === L);
    if (info !== undefined && info.mixed.get(f0 / L) !== undefined) return false;
  }
  return true;
}

/** The SPTE installSpte hands to the stage-2 map (which copies it if it keeps it). */
const scratchSpte: { -readonly [F in keyof Spte]: Spte[F] } = {
  base: ZERO_PFN,
  level: '4K',
  private: false,
  source: 'hva',
  writable: false,
};

function installSpte(
  k: KernelCtx,
  vm: Vm,
  slot: Memslot,
  gfn: Gfn,
  pfn: Pfn,
  level: MappingLevel,
  priv: boolean,
  source: 'gmem' | 'hva',
  writable: boolean,
): void {
  const n = LEVEL_PAGES[level];
  // The map keeps a copy only when it stores a new entry (an in-place extension keeps nothing).
  const spte = scratchSpte;
  spte.base = pfn;
  spte.level = level;
  spte.private = priv;
  spte.source = source;
  spte.writable = writable;
  vm.stage2[slot.asId]!.setTransient(gfn, gfn + n, spte, spteShape.key(spte));
  if (!k.events.enabled) return; // no event object per fault when nobody records them
  k.events.push({
    kind: 'spte_install',
    vm: vm.index,
    as: slot.asId,
    gfn,
    pages: n,
    level,
    private: priv,
    source,
  });
}
