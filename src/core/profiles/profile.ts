/**
 * Kernel profiles: a named set of capabilities and behaviour switches. Every model operation
 * consults the profile of the host it runs on, never a global. Later work adds platform VM types
 * (SNP, TDX, pKVM) and in-flight kernel designs as new profiles — new `VmTypeSpec`s and switch
 * values — without touching the callers.
 */

/** What one VM type (KVM_CREATE_VM `type`) means on a profile. */
export interface VmTypeSpec {
  readonly name: string;
  /** `kvm->arch.has_private_mem`: SW_PROTECTED, SNP, TDX. */
  readonly hasPrivateMem: boolean;
  /** `kvm->arch.has_protected_state` (SEV-ES, SNP, TDX): no READONLY memslots. */
  readonly hasProtectedState: boolean;
  /** `kvm->arch.pre_fault_allowed` at creation (SNP/TDX set it only after finalisation). */
  readonly preFaultAllowedAtCreate: boolean;
  /** How the fault path decides `fault.is_private`: from attributes (SW_PROTECTED), never (DEFAULT). */
  readonly privateFaultSource: 'never' | 'attributes';
  /** KVM_CAP_GUEST_MEMFD_FLAGS on a VM of this type (`kvm_gmem_get_supported_flags()`). */
  readonly gmemFlags: bigint;
  /** KVM_CAP_MEMORY_ATTRIBUTES on a VM of this type (`kvm_supported_mem_attributes()`). */
  readonly memAttributes: bigint;
  /** `kvm_arch_nr_memslot_as_ids()`. */
  readonly nrAddressSpaces: number;
  /** Capability values that differ from the profile's VM-fd table for this type. */
  readonly capOverrides?: ReadonlyMap<number, bigint>;
}

import type { KernelFacts, ThpMode } from './facts.js';

export type { ThpMode } from './facts.js';

export interface KernelProfile {
  readonly name: string;
  readonly description: string;
  /** `uname -r` of the kernel this profile was checked against, when it was. */
  readonly checkedAgainst?: string;
  /** The kernel and host facts this profile was composed from (`composeProfile`). */
  readonly facts: KernelFacts;
  /** Supported VM types by number. */
  readonly vmTypes: ReadonlyMap<bigint, VmTypeSpec>;
  /** TDP MMU (EPT/NPT) vs shadow paging: decides KVM_PRE_FAULT_MEMORY and mapping levels. */
  readonly tdpEnabled: boolean;
  /** CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES: without it KVM_SET_MEMORY_ATTRIBUTES is ENOTTY. */
  readonly memoryAttributesConfig: boolean;
  /** CONFIG_KVM_GUEST_MEMFD. */
  readonly guestMemfdConfig: boolean;
  /** KVM_CAP_* values on the /dev/kvm fd, by cap id (absent = 0). */
  readonly systemCaps: ReadonlyMap<number, bigint>;
  /** KVM_CAP_* values on a VM fd (absent = 0), before per-type overrides. */
  readonly vmCaps: ReadonlyMap<number, bigint>;
  /** KVM_USER_MEM_SLOTS. */
  readonly userMemSlots: number;
  /** KVM_MEM_SLOTS_NUM (user + private slots). */
  readonly memSlotsNum: number;
  /** The MMU's maximum gfn + 1 (`kvm_mmu_max_gfn() + 1`): a slot ending above it is EINVAL. */
  readonly maxGfnExclusive: number;
  /** KVM_MAX_VCPU_IDS / KVM_MAX_VCPUS. */
  readonly maxVcpuIds: bigint;
  readonly maxVcpus: number;
  /** Highest usable user virtual address + 1 (TASK_SIZE_MAX). */
  readonly taskSizeMax: bigint;
  /** Host RAM in pages, for the mmap overcommit heuristic (vm.overcommit_memory = 0). */
  readonly hostRamPages: number;
  readonly thp: ThpMode;
  /** Whether KVM_MEM_READONLY is valid for VMs without protected state (`kvm_arch_has_readonly_mem`). */
  readonly readonlyMem: boolean;
  /**
   * 6.18 returns EINVAL when a guest_memfd range is already bound; newer kernels return EEXIST
   * (kernel-uapi.md §6.6).
   */
  readonly gmemBindOverlapErrno: 'EINVAL' | 'EEXIST';
  /** Largest /proc/sys/vm/max_map_count (number of VMAs). */
  readonly maxMapCount: number;
  /** CONFIG_KSM: MADV_MERGEABLE/UNMERGEABLE are EINVAL without it. */
  readonly ksm: boolean;
  /**
   * How trace guest programs reach memory.
   * - 'stage2' (upstream x86): hardware accesses through stage-2 mappings; faults take the KVM
   *   fault path (guest_memfd for private and gmem-only slots, get_user_pages otherwise; a failed
   *   hva lookup is -EFAULT with KVM_EXIT_MEMORY_FAULT).
   * - 'emulated' (the PVM kernel): with guest paging off every guest instruction goes through
   *   KVM's instruction emulator, which reads and writes guest memory with uaccess on the memslot's
   *   userspace_addr — also for gmem-only slots — and turns every access it cannot complete into
   *   KVM_EXIT_MMIO. Observed on the development machines (vCPU stats: one emulated instruction
   *   per guest instruction).
   */
  readonly guestAccess: 'stage2' | 'emulated';
  /**
   * What a vmcall does: 'kvm' = kvm_emulate_hypercall(); 'spin' = the PVM kernel never completes
   * it (the vCPU re-executes it until a signal: the backend's watchdog ends KVM_RUN with EINTR).
   */
  readonly hypercalls: 'kvm' | 'spin';
  /** enable_mmio_caching: MMIO faults leave an MMIO SPTE that later accesses hit directly. */
  readonly mmioCaching: boolean;
  /** Execute-only mappings get a protection key (PKU): reading them faults (SIGSEGV). */
  readonly execOnlyPkey: boolean;
}

/** The spec of VM type `type` on `p`, or undefined when the profile does not offer it. */
export function vmTypeSpec(p: KernelProfile, type: bigint): VmTypeSpec | undefined {
  return p.vmTypes.get(type);
}

/** KVM_CAP_VM_TYPES: bitmask of supported types. */
export function vmTypesMask(p: KernelProfile): bigint {
  let m = 0n;
  for (const t of p.vmTypes.keys()) m |= 1n << t;
  return m;
}
