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
  /**
   * How the fault path decides `fault.is_private`: from attributes (SW_PROTECTED), never
   * (DEFAULT, SEV, SEV-ES), or from the access itself (SNP: the guest's C-bit, which the NPF
   * handler turns into PFERR_PRIVATE_ACCESS; attributes only decide whether that is a conversion).
   */
  readonly privateFaultSource: 'never' | 'attributes' | 'access';
  /** KVM_CAP_GUEST_MEMFD_FLAGS on a VM of this type (`kvm_gmem_get_supported_flags()`). */
  readonly gmemFlags: bigint;
  /** KVM_CAP_MEMORY_ATTRIBUTES on a VM of this type (`kvm_supported_mem_attributes()`). */
  readonly memAttributes: bigint;
  /**
   * In-place conversion kernels with per-guest_memfd attributes (`vm_memory_attributes=0`):
   * KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES on a VM of this type, the attributes
   * KVM_SET_MEMORY_ATTRIBUTES2 accepts (`kvm_supported_mem_attributes()`: PRIVATE iff the VM
   * has private memory). Absent: 0 (the cap reads the profile's VM-fd table).
   */
  readonly gmemMemAttributes?: bigint;
  /** `kvm_arch_nr_memslot_as_ids()`. */
  readonly nrAddressSpaces: number;
  /**
   * `kvm->max_vcpus` when the type lowers it below KVM_MAX_VCPUS (TDX: `tdx_vm_init()` caps it at
   * `num_present_cpus()`); absent: the profile's `maxVcpus`.
   */
  readonly maxVcpus?: number;
  /**
   * `kvm_has_mirrored_tdp()`: private SPTEs live in a mirror root whose changes the vendor
   * propagates to the platform's page table (TDX: the S-EPT). Absent: false.
   */
  readonly mirroredTdp?: boolean;
  /** Capability values that differ from the profile's VM-fd table for this type. */
  readonly capOverrides?: ReadonlyMap<number, bigint>;
  /**
   * arm64: what the type's bits decode to (`kvm_arch_init_vm()`): the stage-2 IPA size in bits
   * (`kvm_init_ipa_range()`) and `KVM_VM_TYPE_ARM_PROTECTED` (a pKVM protected VM). Absent on x86.
   */
  readonly arm64?: { readonly ipaBits: number; readonly protected: boolean };
}

import type { DesignName, KernelFacts, ThpMode, X86KvmModule } from './facts.js';

export type { ThpMode } from './facts.js';

export interface KernelProfile {
  readonly name: string;
  readonly description: string;
  /** `uname -r` of the kernel this profile was checked against, when it was. */
  readonly checkedAgainst?: string;
  /** The kernel and host facts this profile was composed from (`composeProfile`). */
  readonly facts: KernelFacts;
  /**
   * Supported VM types by number (arm64: every accepted value of the bit field, IPA size |
   * PROTECTED, each mapping to the spec of what it decodes to).
   */
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
  /**
   * `kvm_gmem_bind()`'s range check: 6.18 computes `offset + size > i_size` in signed loff_t (a
   * sum past 2^63 wraps negative and passes, kernel-uapi.md §7.1); newer kernels take the offset
   * and size as unsigned (§6.6), so such an offset is EINVAL.
   */
  readonly gmemBindOffsetUnsigned: boolean;
  /** Largest /proc/sys/vm/max_map_count (number of VMAs). */
  readonly maxMapCount: number;
  /** CONFIG_KSM: MADV_MERGEABLE/UNMERGEABLE are EINVAL without it. */
  readonly ksm: boolean;
  /** enable_mmio_caching: MMIO faults leave an MMIO SPTE that later accesses hit directly. */
  readonly mmioCaching: boolean;
  /** Execute-only mappings get a protection key (PKU): reading them faults (SIGSEGV). */
  readonly execOnlyPkey: boolean;
  /** The implementations the model is assembled from for this kernel (core/assemble.ts). */
  readonly parts: ProfileParts;
  /**
   * In-place conversion kernels (kernel-uapi.md §6.1) with `kvm.vm_memory_attributes=0`:
   * memory attributes live in guest_memfd (KVM_SET_MEMORY_ATTRIBUTES2 on the file; KVM's
   * attribute lookups go gfn → memslot → guest_memfd index). Absent: false (per-VM attributes,
   * as in 6.18; the guest_memfd ioctl is ENOTTY).
   */
  readonly gmemMemoryAttributes?: boolean;
  /**
   * HugeTLB-backed guest_memfd (CONFIG_KVM_GUEST_MEMFD_HUGETLB, kernel-uapi.md §6.2): the huge
   * pages each hstate has free for guest_memfd subpools at boot (orders 9 and 18). Absent: the
   * kernel has no HugeTLB guest_memfd (GUEST_MEMFD_FLAG_HUGETLB is an unknown flag, `page_order`
   * a reserved byte nobody reads).
   */
  readonly gmemHugetlb?: { readonly pages2M: number; readonly pages1G: number };
  /**
   * The historical private-memory design this kernel carries (`KernelFacts.design`,
   * profiles/designs/); absent on every real kernel.
   */
  readonly design?: DesignName;
}

/**
 * A kernel is assembled from parts, each an implementation behind one of the kernel's seams:
 * - `arch` and `vendor`: the arch ops generic KVM calls and, on x86, the vendor module behind
 *   /dev/kvm (`kvm_x86_ops`: kvm_intel, kvm_amd, or the PVM module, whose guest accesses are
 *   emulated through userspace_addr and whose VMCALL never completes);
 * - `platform`: the confidential-computing platform's per-frame state and its host-access check
 *   ('none': the host may touch every frame; 'sev-snp': an AMD SEV-SNP host, whose RMP and SNP
 *   firmware are per-host state; 'tdx': an Intel TDX host, whose TDX module (PAMT, TDs, S-EPT)
 *   is per-host state; 'pkvm': an arm64 host in protected mode, whose EL2 hypervisor owns the
 *   page-ownership state of every frame);
 * - `gmem`: the guest_memfd backing design (folio shareability for host faults): 'linux-6.18',
 *   or 'inplace-v7', the in-place conversion series v7 (per-index shared/private state in the
 *   file, kernel-uapi.md §6.1); HugeTLB folios plug in here next.
 *
 * arm64 ('arm64', vendor 'kvm_arm64') has no vendor module: its arch ops are arch/arm64/.
 */
export type ProfileParts =
  | {
      readonly arch: 'x86';
      readonly vendor: X86KvmModule;
      readonly platform: 'none' | 'sev-snp' | 'tdx';
      readonly gmem: 'linux-6.18' | 'inplace-v7';
    }
  | {
      readonly arch: 'arm64';
      readonly vendor: 'kvm_arm64';
      readonly platform: 'none' | 'pkvm';
      readonly gmem: 'linux-6.18';
    };

/** The spec of VM type `type` on `p`, or undefined when the profile does not offer it. */
export function vmTypeSpec(p: KernelProfile, type: bigint): VmTypeSpec | undefined {
  return p.vmTypes.get(type);
}

/** KVM_CAP_VM_TYPES: bitmask of supported types (x86 only: arm64's check_extension has no case, 0). */
export function vmTypesMask(p: KernelProfile): bigint {
  if (p.parts.arch !== 'x86') return 0n;
  let m = 0n;
  for (const t of p.vmTypes.keys()) m |= 1n << t;
  return m;
}
