/**
 * Mirror of the parts of include/uapi/linux/kvm.h, asm/kvm.h and the mm uAPI that gmemlab needs
 * (x86-64 values). Names are kept verbatim: they are the trace contract.
 */

/** ioctl request numbers (KVMIO = 0xAE). */
export const KVM_IOCTL = {
  KVM_GET_API_VERSION: 0xae00,
  KVM_CREATE_VM: 0xae01,
  KVM_CHECK_EXTENSION: 0xae03,
  KVM_GET_VCPU_MMAP_SIZE: 0xae04,
  KVM_CREATE_VCPU: 0xae41,
  KVM_SET_NR_MMU_PAGES: 0xae44,
  KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
  KVM_SET_USER_MEMORY_REGION2: 0x40a0ae49,
  KVM_RUN: 0xae80,
  KVM_GET_REGS: 0x8090ae81,
  KVM_SET_REGS: 0x4090ae82,
  KVM_GET_SREGS: 0x8138ae83,
  KVM_SET_SREGS: 0x4138ae84,
  KVM_ENABLE_CAP: 0x4068aea3,
  KVM_SET_MEMORY_ATTRIBUTES: 0x4020aed2,
  /**
   * _IOWR(KVMIO, 0xd2, struct kvm_memory_attributes2) (128 bytes): a guest_memfd ioctl of the
   * in-place conversion series (kernel-uapi.md §6.1), not in 6.18.
   */
  KVM_SET_MEMORY_ATTRIBUTES2: 0xc080aed2,
  KVM_CREATE_GUEST_MEMFD: 0xc040aed4,
  KVM_PRE_FAULT_MEMORY: 0xc040aed5,
  /** _IOWR(KVMIO, 0xba, unsigned long): the argument is a pointer to the vendor's command struct. */
  KVM_MEMORY_ENCRYPT_OP: 0xc008aeba,
} as const;

/** KVM_CAP_* ids used by the model (the profile holds values for every id). */
export const KVM_CAP = {
  KVM_CAP_USER_MEMORY: 3,
  KVM_CAP_NR_VCPUS: 9,
  KVM_CAP_NR_MEMSLOTS: 10,
  KVM_CAP_MAX_VCPUS: 66,
  KVM_CAP_TSC_DEADLINE_TIMER: 72,
  KVM_CAP_READONLY_MEM: 81,
  KVM_CAP_MULTI_ADDRESS_SPACE: 118,
  KVM_CAP_MAX_VCPU_ID: 128,
  KVM_CAP_X86_DISABLE_EXITS: 143,
  KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: 197,
  KVM_CAP_EXIT_HYPERCALL: 201,
  KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: 206,
  KVM_CAP_XSAVE2: 208,
  KVM_CAP_USER_MEMORY2: 231,
  KVM_CAP_MEMORY_FAULT_INFO: 232,
  KVM_CAP_MEMORY_ATTRIBUTES: 233,
  KVM_CAP_GUEST_MEMFD: 234,
  KVM_CAP_VM_TYPES: 235,
  KVM_CAP_PRE_FAULT_MEMORY: 236,
  KVM_CAP_GUEST_MEMFD_FLAGS: 244,
  /** The in-place conversion series (kernel-uapi.md §6.1): KVM_SET_MEMORY_ATTRIBUTES2 exists. */
  KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES: 249,
} as const;

export const KVM_API_VERSION = 12;

/** APIC_DEFAULT_PHYS_BASE (arch/x86/include/asm/apicdef.h): the local APIC's default MMIO page. */
export const APIC_DEFAULT_PHYS_BASE = 0xfee00000n;

/** VM types (x86). */
export const KVM_X86_DEFAULT_VM = 0n;
export const KVM_X86_SW_PROTECTED_VM = 1n;
export const KVM_X86_SEV_VM = 2n;
export const KVM_X86_SEV_ES_VM = 3n;
export const KVM_X86_SNP_VM = 4n;
export const KVM_X86_TDX_VM = 5n;

/** Memslot flags. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1n << 0n;
export const KVM_MEM_READONLY = 1n << 1n;
export const KVM_MEM_GUEST_MEMFD = 1n << 2n;
export const KVM_SET_USER_MEMORY_REGION_V1_FLAGS = KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY;

/** guest_memfd flags. */
export const GUEST_MEMFD_FLAG_MMAP = 1n << 0n;
export const GUEST_MEMFD_FLAG_INIT_SHARED = 1n << 1n;
/**
 * HugeTLB-backed guest_memfd (kernel-uapi.md §6.2; the wip tree on top of in-place conversion,
 * e.g. AMDESE/linux-kvm's virt/kvm/guest_memfd_hugetlb.c): the folio size is the separate
 * `page_order` field of struct kvm_create_guest_memfd (a __u8 at byte 16, where `reserved[0]`
 * was), not RFC v2's bits 63:58 of `flags`. That tree defines the flag as bit 2, the bit
 * GUEST_MEMFD_FLAG_NO_DIRECT_MAP (v12) also takes; the model's linux-next-gmem profiles carry
 * both series, so HUGETLB sits at bit 3 here (whichever series lands second is renumbered).
 */
export const GUEST_MEMFD_FLAG_HUGETLB = 1n << 3n;
/** The huge page orders `gmem_hugetlb_valid_order()` accepts on x86-64 (the 2M and 1G hstates). */
export const GMEM_HUGETLB_ORDER_2M = 9;
export const GMEM_HUGETLB_ORDER_1G = 18;
/** NO_DIRECT_MAP series v12 (kernel-uapi.md §6.3): linux-next-gmem profiles only. */
export const GUEST_MEMFD_FLAG_NO_DIRECT_MAP = 1n << 2n;

export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1n << 3n;
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1n << 3n;

/** Exit reasons. */
export const KVM_EXIT_IO = 2;
export const KVM_EXIT_HYPERCALL = 3;
export const KVM_EXIT_HLT = 5;
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_SHUTDOWN = 8;
export const KVM_EXIT_FAIL_ENTRY = 9;
export const KVM_EXIT_INTERNAL_ERROR = 17;
export const KVM_EXIT_MEMORY_FAULT = 39;

export const KVM_HC_MAP_GPA_RANGE = 12;
/** KVM_EXIT_SYSTEM_EVENT and its KVM_SYSTEM_EVENT_SEV_TERM type (include/uapi/linux/kvm.h). */
export const KVM_EXIT_SYSTEM_EVENT = 24;
export const KVM_SYSTEM_EVENT_SEV_TERM = 6;
/** KVM_SYSTEM_EVENT_TDX_FATAL: a TD's TDG.VP.VMCALL<ReportFatalError>. */
export const KVM_SYSTEM_EVENT_TDX_FATAL = 7;

/** x86 memslot limits. */
export const KVM_USER_MEM_SLOTS = 32764;
export const KVM_MEM_SLOTS_NUM = 32767;
export const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;

/** Reserved by the trace contract: guest programs live here (slot 32763, one page). */
export const TRACE_CODE_SLOT = 32763;
export const TRACE_CODE_GPA = 0xfffff000n;

/** mmap(2) and friends (x86-64). */
export const PROT_NONE = 0;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const PROT_EXEC = 4;
export const PROT_SEM = 8;
export const PROT_GROWSDOWN = 0x01000000;
export const PROT_GROWSUP = 0x02000000;

export const MAP_SHARED = 0x01;
export const MAP_PRIVATE = 0x02;
export const MAP_SHARED_VALIDATE = 0x03;
export const MAP_TYPE = 0x0f;
export const MAP_FIXED = 0x10;
export const MAP_ANONYMOUS = 0x20;
export const MAP_32BIT = 0x40;
export const MAP_GROWSDOWN = 0x0100;
export const MAP_DENYWRITE = 0x0800;
export const MAP_EXECUTABLE = 0x1000;
export const MAP_LOCKED = 0x2000;
export const MAP_NORESERVE = 0x4000;
export const MAP_POPULATE = 0x8000;
export const MAP_NONBLOCK = 0x10000;
export const MAP_STACK = 0x20000;
export const MAP_HUGETLB = 0x40000;
export const MAP_SYNC = 0x80000;
export const MAP_FIXED_NOREPLACE = 0x100000;
export const MAP_UNINITIALIZED = 0x4000000;

export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_NO_HIDE_STALE = 0x04;
export const FALLOC_FL_COLLAPSE_RANGE = 0x08;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const FALLOC_FL_INSERT_RANGE = 0x20;
export const FALLOC_FL_UNSHARE_RANGE = 0x40;
export const FALLOC_FL_WRITE_ZEROES = 0x80;

export const MADV_NORMAL = 0;
export const MADV_RANDOM = 1;
export const MADV_SEQUENTIAL = 2;
export const MADV_WILLNEED = 3;
export const MADV_DONTNEED = 4;
export const MADV_FREE = 8;
export const MADV_REMOVE = 9;
export const MADV_DONTFORK = 10;
export const MADV_DOFORK = 11;
export const MADV_MERGEABLE = 12;
export const MADV_UNMERGEABLE = 13;
export const MADV_HUGEPAGE = 14;
export const MADV_NOHUGEPAGE = 15;
export const MADV_DONTDUMP = 16;
export const MADV_DODUMP = 17;
export const MADV_WIPEONFORK = 18;
export const MADV_KEEPONFORK = 19;
export const MADV_COLD = 20;
export const MADV_PAGEOUT = 21;
export const MADV_POPULATE_READ = 22;
export const MADV_POPULATE_WRITE = 23;
export const MADV_DONTNEED_LOCKED = 24;
export const MADV_COLLAPSE = 25;
export const MADV_HWPOISON = 100;
export const MADV_SOFT_OFFLINE = 101;
export const MADV_GUARD_INSTALL = 102;
export const MADV_GUARD_REMOVE = 103;
export const MAP_DROPPABLE = 0x08;
export const MAP_HUGE_2MB = 21 << 26;
export const MAP_HUGE_1GB = 30 << 26;
/** include/linux/mman.h: flags every ->mmap implementation implicitly accepts. */
export const LEGACY_MAP_MASK =
  MAP_SHARED |
  MAP_PRIVATE |
  MAP_FIXED |
  MAP_ANONYMOUS |
  MAP_DENYWRITE |
  MAP_EXECUTABLE |
  MAP_UNINITIALIZED |
  MAP_GROWSDOWN |
  MAP_LOCKED |
  MAP_NORESERVE |
  MAP_POPULATE |
  MAP_NONBLOCK |
  MAP_STACK |
  MAP_HUGETLB |
  MAP_32BIT |
  MAP_HUGE_2MB |
  MAP_HUGE_1GB;

/** open(2)/pipe2(2) flags (include/uapi/asm-generic/fcntl.h; O_DIRECT differs on arm64). */
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
/** O_DIRECT: x86 (asm-generic) value; arm64's is `O_DIRECT_ARM64` (arch/arm64/include/uapi/asm/fcntl.h). */
export const O_DIRECT = 0o40000;
export const O_DIRECT_ARM64 = 0o200000;
/** O_NOTIFICATION_PIPE (include/uapi/linux/watch_queue.h): O_EXCL. */
export const O_NOTIFICATION_PIPE = 0o200;
