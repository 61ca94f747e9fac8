/**
 * Kernel facts: what a kernel build and its host are, as `gmemlab probe` reads them from a live
 * machine. A profile is composed from facts (`composeProfile`), never written by hand field by
 * field, so a kernel the project has not met is described by the same facts that `gmemlab probe
 * --save` writes.
 *
 * - kernel: release, arch, the KVM vendor module, the MMU kind, and the Kconfig switches that
 *   change the uAPI (each one is visible through an ioctl, see `gmemlab probe`);
 * - caps: KVM_CHECK_EXTENSION on /dev/kvm and on a fresh DEFAULT VM fd, ids 0..CAP_TABLE_MAX;
 * - host: the mm facts the model uses (THP mode, RAM, max_map_count, the huge page pool, PKU, KSM).
 */

/** Highest capability id the tables hold (ids above read 0 on every kernel met so far). */
export const CAP_TABLE_MAX = 260;

/**
 * `/sys/module/<name>`: which KVM vendor module backs /dev/kvm. arm64 has no vendor module (KVM is
 * built in, `kvm-arm.mode` picks nVHE, VHE or protected): 'kvm_arm64' names it.
 */
export type KvmModule = X86KvmModule | 'kvm_arm64';

/** The x86 vendor modules (`kvm_x86_ops`). */
export type X86KvmModule = 'kvm_intel' | 'kvm_amd' | 'kvm_pvm';

/** Transparent hugepage policy of the host (/sys/kernel/mm/transparent_hugepage/enabled). */
export type ThpMode = 'always' | 'madvise' | 'never';

export interface KernelConfig {
  /** CONFIG_KVM_GUEST_MEMFD: KVM_CREATE_GUEST_MEMFD exists (else ENOTTY). */
  readonly guestMemfd: boolean;
  /** CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES: KVM_SET_MEMORY_ATTRIBUTES exists (else ENOTTY). */
  readonly genericMemoryAttributes: boolean;
  /** CONFIG_KVM_SW_PROTECTED_VM (with the TDP MMU): VM type 1 exists. */
  readonly swProtectedVm: boolean;
  /** CONFIG_KVM_SMM: DEFAULT VMs have two memslot address spaces. */
  readonly smm: boolean;
  /**
   * The in-place conversion series (kernel-uapi.md §6.1, S8 v7): guest_memfd tracks memory
   * attributes per file (CONFIG_KVM_MEMORY_ATTRIBUTES with guest_memfd), host faults are allowed
   * only on shared indices, and KVM_SET_MEMORY_ATTRIBUTES2 exists on guest_memfd fds. Absent:
   * false (every kernel up to 6.18).
   */
  readonly gmemMemoryAttributes?: boolean;
  /**
   * CONFIG_KVM_GUEST_MEMFD_HUGETLB (kernel-uapi.md §6.2; the HugeTLB wip tree on top of in-place
   * conversion): GUEST_MEMFD_FLAG_HUGETLB and the `page_order` field of KVM_CREATE_GUEST_MEMFD.
   * Absent: false (every kernel up to 6.18).
   */
  readonly gmemHugetlb?: boolean;
}

/**
 * KVM module parameters that change the uAPI (`/sys/module/kvm/parameters/`), read-only (0444),
 * so fixed for the life of the module.
 */
export interface KvmModuleParams {
  /**
   * `kvm.vm_memory_attributes` (the in-place conversion series, with
   * CONFIG_KVM_VM_MEMORY_ATTRIBUTES): true (the default) keeps the per-VM attributes of 6.18
   * (KVM_SET_MEMORY_ATTRIBUTES on the VM; the guest_memfd ioctl is ENOTTY and
   * KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES 0); false moves them into guest_memfd (the VM ioctl is
   * ENOTTY and KVM_CAP_MEMORY_ATTRIBUTES 0; KVM looks attributes up through the file).
   */
  readonly vmMemoryAttributes: boolean;
}

export interface HostFacts {
  readonly thp: ThpMode;
  /** MemTotal in 4 KiB pages (the mmap overcommit heuristic, vm.overcommit_memory = 0). */
  readonly ramPages: number;
  /** SwapTotal in 4 KiB pages: the overcommit heuristic counts RAM plus swap. */
  readonly swapPages: number;
  /** /proc/sys/vm/max_map_count. */
  readonly maxMapCount: number;
  /** /proc/sys/vm/nr_hugepages: persistent huge pages of the default size in the pool. */
  readonly hugePages: number;
  /**
   * Free pages of the 2M and 1G hstates (`/sys/kernel/mm/hugepages/hugepages-*kB/free_hugepages`
   * minus `resv_hugepages`) that a HugeTLB guest_memfd may reserve at creation. Only the
   * guest_memfd HugeTLB allocator reads them; hugetlbfs and MAP_HUGETLB keep modelling an empty
   * pool (`hugePages`). Absent: both 0.
   */
  readonly gmemHugetlbPools?: { readonly pages2M: number; readonly pages1G: number };
  /** CPU flag `ospke`: execute-only mappings get a protection key, so reading them faults. */
  readonly pku: boolean;
  /** CONFIG_KSM (/sys/kernel/mm/ksm): MADV_MERGEABLE/UNMERGEABLE are EINVAL without it. */
  readonly ksm: boolean;
  /**
   * Address space layout randomisation is on for gmemlab's process (randomize_va_space != 0 and no
   * ADDR_NO_RANDOMIZE personality): without it the stack sits at the top of the address space.
   */
  readonly aslr: boolean;
}

export interface KernelFacts {
  /** `uname -r` the facts were read from (or, for a profile not checked live, its version). */
  readonly release: string;
  readonly arch: 'x86_64' | 'aarch64';
  readonly kvmModule: KvmModule;
  /** TDP (EPT/NPT) or shadow paging (`tdp_enabled`; KVM_CAP_PRE_FAULT_MEMORY is 1 only with TDP). */
  readonly mmu: 'tdp' | 'shadow';
  readonly kconfig: KernelConfig;
  /** KVM_CHECK_EXTENSION values by cap id, 0..CAP_TABLE_MAX, on /dev/kvm and on a DEFAULT VM fd. */
  readonly caps: { readonly system: readonly number[]; readonly vm: readonly number[] };
  readonly host: HostFacts;
  /**
   * arm64 only: `kvm-arm.mode` (pKVM is 'protected') and `kvm_ipa_limit`, the largest stage-2
   * IPA size in bits (KVM_CAP_ARM_VM_IPA_SIZE).
   */
  readonly arm64?: { readonly mode: 'nvhe' | 'vhe' | 'protected'; readonly ipaLimit: number };
  /** KVM module parameters that change the uAPI; absent: the kernel has none of them. */
  readonly kvmParams?: KvmModuleParams;
  /**
   * A historical private-memory design whose series this kernel carries (profiles/designs/):
   * the model's behaviour switches to the design's uAPI and mm rules. Absent on every real
   * kernel (`gmemlab probe` never reads one; a live kernel never matches a design profile).
   */
  readonly design?: DesignName;
}

/**
 * The private-memory designs of the 2020-2024 debate that gmemlab runs as profiles (issue 15;
 * README "Designs"): PROT_NONE guest RAM with VM_KVM_PROTECTED and FOLL_KVM (2020), a separate mm
 * that only KVM uses (2020), restrictedmem memslots (2022-23), shmem with exclusive GUP pins
 * (2024).
 */
export type DesignName =
  'protnone-follkvm' | 'separate-mm' | 'restrictedmem' | 'shmem-exclusive-pin';

/** (major, minor) of a release string such as `6.18.44-fc-v1252`; undefined if unreadable. */
export function kernelVersion(release: string): readonly [number, number] | undefined {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return m === null ? undefined : [Number(m[1]), Number(m[2])];
}

/**
 * The facts that a conformance case or a real-kernel test may need (`# needs: ...` in a trace) or
 * depend on (`# depends: ...`). Each is a boolean of the kernel or host, except `ram` (a number);
 * `factValue` reads it from facts.
 */
export const NEEDABLE_FACTS = {
  guest_memfd: 'KVM_CREATE_GUEST_MEMFD exists (CONFIG_KVM_GUEST_MEMFD)',
  guest_memfd_mmap: 'guest_memfd supports GUEST_MEMFD_FLAG_MMAP on a DEFAULT VM',
  guest_memfd_init_shared: 'guest_memfd supports GUEST_MEMFD_FLAG_INIT_SHARED on a DEFAULT VM',
  memory_attributes: 'KVM_SET_MEMORY_ATTRIBUTES exists (CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)',
  pre_fault: 'KVM_PRE_FAULT_MEMORY is supported (TDP MMU)',
  sw_protected_vm: 'VM type KVM_X86_SW_PROTECTED_VM exists',
  pvm: 'the PVM /dev/kvm (kvm_pvm): guest accesses are emulated through userspace_addr',
  pku: 'the host CPU has protection keys (ospke): execute-only mappings are unreadable',
  thp_madvise: 'transparent hugepages are in madvise mode',
  ksm: 'the host kernel has KSM (CONFIG_KSM)',
  ram: "the host's RAM plus swap in GiB, as the mmap overcommit heuristic counts it",
  no_huge_pages: "the host's huge page pool is empty (the model's assumption)",
  aslr: 'address space layout randomisation is on, so the stack is not at the top of the address space',
} as const;

export type NeedableFact = keyof typeof NEEDABLE_FACTS;

export function isNeedableFact(s: string): s is NeedableFact {
  return Object.prototype.hasOwnProperty.call(NEEDABLE_FACTS, s);
}

const GUEST_MEMFD_FLAGS_CAP = 244;
const PRE_FAULT_CAP = 236;
const VM_TYPES_CAP = 235;

/** GiB in 4 KiB pages. */
const GIB_PAGES = 262144;

export function factValue(f: KernelFacts, fact: NeedableFact): boolean | number {
  switch (fact) {
    case 'guest_memfd':
      return f.kconfig.guestMemfd;
    case 'guest_memfd_mmap':
      return f.kconfig.guestMemfd && ((f.caps.vm[GUEST_MEMFD_FLAGS_CAP] ?? 0) & 1) !== 0;
    case 'guest_memfd_init_shared':
      return f.kconfig.guestMemfd && ((f.caps.vm[GUEST_MEMFD_FLAGS_CAP] ?? 0) & 2) !== 0;
    case 'memory_attributes':
      return f.kconfig.genericMemoryAttributes;
    case 'pre_fault':
      return (f.caps.system[PRE_FAULT_CAP] ?? 0) !== 0;
    case 'sw_protected_vm':
      return ((f.caps.system[VM_TYPES_CAP] ?? 0) & 2) !== 0;
    case 'pvm':
      return f.kvmModule === 'kvm_pvm';
    case 'pku':
      return f.host.pku;
    case 'thp_madvise':
      return f.host.thp === 'madvise';
    case 'ksm':
      return f.host.ksm;
    case 'ram':
      return Math.round((f.host.ramPages + f.host.swapPages) / GIB_PAGES);
    case 'no_huge_pages':
      return f.host.hugePages === 0;
    case 'aslr':
      return f.host.aslr;
  }
}
