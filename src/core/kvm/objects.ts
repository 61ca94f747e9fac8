/**
 * The model's kernel objects and their state (kernel-uapi.md §1, §3.8). Behaviour lives in the
 * files named after the kernel source it reproduces (guest_memfd.ts, memslots.ts, mmu.ts, ...);
 * this file only holds data and reference counting.
 *
 * Lifetime rules reproduced here:
 * - a file is released when its last reference goes: fds and host mappings (VMAs) each hold one;
 * - the VM is referenced by its VM fd's file, every vCPU file and every guest_memfd file (the
 *   file pins KVM, not the other way round); it is destroyed when the last reference goes.
 */
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
} from '../base/uapi.js';
import { RangeMap, extentOps } from '../base/ranges/range_map.js';
import { ExtentMap, type ExtentShape } from '../base/ranges/extent_map.js';
import type { VmTypeSpec } from '../profiles/profile.js';
import type { MmuNotifier } from '../mm/mmu_notifier.js';
import type { HostMm } from '../mm/host_mm.js';
import type { AddressSpaceFile } from '../mm/address_space.js';
import { KFile, type FileVmaKind, type PageExtent } from '../vfs/file.js';
import { err, ok, type Result } from '../base/result.js';
import {
  ZERO_PFN,
  asHva,
  gfnAdd,
  gfnDiff,
  hvaToHvpn,
  hvpnAdd,
  hvpnDiff,
  pgoffAdd,
  pgoffDiff,
  type Gfn,
  type Hva,
  type Hvpn,
  type PgOff,
  type Pfn,
} from '../base/units.js';

/** KVM_MEMORY_ATTRIBUTE_PRIVATE as a number (range-map value of `GmemFile.attrs`). */
export const GMEM_ATTR_PRIVATE = 8;

/** State of one guest_memfd page (a folio; always order 0 in 6.18). */
export type GmemPageState = 'allocated' | 'prepared' | 'poisoned';

/**
 * An extent of guest_memfd pages: consecutive indices backed by consecutive frames, all in one
 * state. `base` is the pfn of the extent's first index (RangeMap extent value).
 */
export type GmemExtent = { readonly base: Pfn; readonly state: GmemPageState };

/** The open /dev/kvm character device. */
export class KvmDevFile extends KFile {
  readonly kind = 'kvm' as const;
}

/** stdin/stdout/stderr: open, but not KVM objects (raw fds 0..2 in traces). */
export class StdFile extends KFile {
  readonly kind = 'std' as const;
}

export class VmFile extends KFile {
  readonly kind = 'vm' as const;
  /** An anonymous inode (anon_inode_getfd()): noexec, and no ->mmap(). */
  override get noexec(): boolean {
    return true;
  }
  constructor(
    ino: number,
    readonly vm: Vm,
  ) {
    super(ino);
  }
}

export class VcpuFile extends KFile {
  readonly kind = 'vcpu' as const;
  constructor(
    ino: number,
    readonly vcpu: Vcpu,
  ) {
    super(ino);
    // kvm_vcpu_mmap() installs kvm_vcpu_vm_ops, whose fault is kvm_vcpu_fault().
    this.vmOps = {
      fault: (pgoff) => {
        const pfn = this.pageAt(pgoff);
        return pfn === undefined ? { signal: 'SIGBUS' } : { pfn };
      },
    };
  }
  /** `kvm_vcpu_mmap()` accepts any mapping (dirty-ring pages are not modelled). */
  override get hasMmap(): boolean {
    return true;
  }
  override mmap(): Result<FileVmaKind> {
    return ok('vcpu');
  }
  /** An anonymous inode: noexec. */
  override get noexec(): boolean {
    return true;
  }
  /** Its pages are the vCPU's own: a private writable mapping is not charged. */
  override get chargesPrivateWrites(): boolean {
    return false;
  }
  /**
   * `kvm_vcpu_fault()`: page 0 is struct kvm_run, page 1 the PIO data page, page 2 the VM's
   * coalesced-MMIO ring; any other offset SIGBUSes.
   */
  pageAt(pgoff: number): Pfn | undefined {
    if (pgoff === 0 || pgoff === 1) return this.vcpu.pages[pgoff];
    if (pgoff === 2) return this.vcpu.vm.sharedPages[0];
    return undefined;
  }
}

/**
 * One guest_memfd: in 6.18 one inode and one file, 1:1 (`struct kvm_gmem` + its anon inode).
 * Memory lives with the inode: `pages` survives the file's release until the inode goes, which in
 * 6.18 is when the file goes (there is no second file per inode).
 */
export class GmemFile extends KFile {
  readonly kind = 'gmem' as const;
  /** Pages by index: absent (no entry) | allocated | prepared | poisoned. */
  readonly pages: ExtentMap<GmemExtent> = new ExtentMap<GmemExtent>(gmemExtentOps, gmemExtentShape);
  /** Bindings by index: which memslot each index is bound to (`gmem->bindings`). */
  readonly bindings: RangeMap<Memslot> = new RangeMap<Memslot>();
  /** mtime/ctime bumps (file_modified on successful fallocate). */
  modifications = 0;
  /**
   * The in-place conversion series' per-inode attributes (`gmem_inode->attributes`, a maple tree
   * over every index `[0, i_size / 4K)`, kernel-uapi.md §6.1): the indices whose attributes are
   * PRIVATE (value KVM_MEMORY_ATTRIBUTE_PRIVATE), absent = shared (0). Set at creation by
   * `kvm_gmem_init_inode()`: all private unless INIT_SHARED. Only the 'inplace-v7' guest_memfd
   * design reads or changes it (6.18's file has no such state).
   */
  readonly attrs: RangeMap<number> = new RangeMap<number>();
  /**
   * HugeTLB-backed files (GUEST_MEMFD_FLAG_HUGETLB, kernel-uapi.md §6.2): the order of the folio
   * each allocated index belongs to, as runs (index range → order), never per page. An allocated
   * huge page of the file (2^pageOrder indices from a multiple of 2^pageOrder) is either one
   * folio of order `pageOrder` or, split (`gmem_hugetlb_restructure_folio(..., 0)`), 2^pageOrder
   * order-0 folios; its frames stay the same contiguous run either way (`pages`). Absent indices
   * have no entry. Empty for other files (their folios are order 0).
   */
  readonly folioOrders: RangeMap<number> = new RangeMap<number>();
  constructor(
    ino: number,
    readonly vm: Vm,
    /** i_size in bytes. */
    readonly size: bigint,
    /** Number of pages below i_size. */
    readonly npages: number,
    readonly flags: bigint,
    /**
     * `gmem_inode->page_order`: the huge page order of a HugeTLB file (9: 2M, 18: 1G), the order
     * of the folios it allocates before any split; 0 for other files.
     */
    readonly pageOrder = 0,
  ) {
    super(ino);
    this.nodmap = (flags & GUEST_MEMFD_FLAG_NO_DIRECT_MAP) !== 0n;
    if (!this.initShared && npages > 0) this.attrs.set(0, npages, GMEM_ATTR_PRIVATE);
  }
  /** GUEST_MEMFD_FLAG_NO_DIRECT_MAP, read once: the fault paths ask on every fault. */
  private readonly nodmap: boolean;
  override get hasMmap(): boolean {
    return true;
  }
  /** `kvm_gmem_mmap()`: only with GUEST_MEMFD_FLAG_MMAP, and only shared mappings. */
  override mmap(shared: boolean): Result<FileVmaKind> {
    if (!this.mmapAllowed) return err('ENODEV', 'kvm_gmem_mmap: no GUEST_MEMFD_FLAG_MMAP');
    if (!shared) return err('EINVAL', 'kvm_gmem_mmap: needs VM_SHARED|VM_MAYSHARE');
    return ok('gmem');
  }
  /** A regular file on the guest_memfd mount: MAX_LFS_FILESIZE. */
  override get mmapMaxBytes(): bigint {
    return (1n << 63n) - 1n;
  }
  /** The guest_memfd mount is noexec. */
  override get noexec(): boolean {
    return true;
  }
  get mmapAllowed(): boolean {
    return (this.flags & GUEST_MEMFD_FLAG_MMAP) !== 0n;
  }
  get initShared(): boolean {
    return (this.flags & GUEST_MEMFD_FLAG_INIT_SHARED) !== 0n;
  }
  /** A HugeTLB-backed file (GUEST_MEMFD_FLAG_HUGETLB with a valid `page_order`). */
  get hugetlb(): boolean {
    return this.pageOrder !== 0;
  }
  /**
   * GUEST_MEMFD_FLAG_NO_DIRECT_MAP (bit 2; NO_DIRECT_MAP series v12, kernel-uapi.md §6.3):
   * `__kvm_gmem_create()` sets AS_NO_DIRECT_MAP on the mapping (`mapping_set_no_direct_map()`).
   */
  override get noDirectMap(): boolean {
    return this.nodmap;
  }
}

/** x86 lpage_info for one memslot at one level: frames whose hugepage mapping is disallowed. */
export interface LpageInfo {
  /** Pages per frame at this level (512 for 2M, 262144 for 1G). */
  readonly pages: number;
  /** KVM_LPAGE_MIXED_FLAG per frame index (frame = gfn / pages): 1 when attributes are mixed. */
  readonly mixed: RangeMap<number>;
}

/** A memslot (struct kvm_memory_slot) — only the fields the model needs. */
export class Memslot {
  /** guest_memfd binding; `file` is the weak pointer cleared by release/unbind. */
  gmem: { file: GmemFile | null; pgoff: PgOff } | null = null;
  /** KVM_MEMSLOT_GMEM_ONLY: bound file has MMAP, so every fault is served by guest_memfd. */
  gmemOnly = false;
  /** Hugepage tracking, per level (2M, 1G). Empty for VMs without private memory. */
  lpage: LpageInfo[] = [];
  /** The host virtual page of userspace_addr (converted once: the fault and notifier paths use it). */
  readonly userspaceHvpn: Hvpn;
  /** The low uAPI flag bits as a number (bigint masks allocate; the fault path reads them). */
  private flagBits: number;
  private flagsValue: bigint;
  constructor(
    readonly asId: number,
    readonly id: number,
    public baseGfn: Gfn,
    readonly npages: number,
    /** uAPI flags (LOG_DIRTY_PAGES, READONLY, GUEST_MEMFD). */
    flags: bigint,
    readonly userspaceAddr: Hva,
  ) {
    this.flagsValue = flags;
    this.flagBits = Number(flags & 0xffn);
    this.userspaceHvpn = hvaToHvpn(userspaceAddr);
  }
  /** uAPI flags (LOG_DIRTY_PAGES, READONLY, GUEST_MEMFD). */
  get flags(): bigint {
    return this.flagsValue;
  }
  set flags(v: bigint) {
    this.flagsValue = v;
    this.flagBits = Number(v & 0xffn);
  }
  get endGfn(): Gfn {
    return gfnAdd(this.baseGfn, this.npages);
  }
  get isGuestMemfd(): boolean {
    return (this.flagBits & 4) !== 0;
  }
  get isReadonly(): boolean {
    return (this.flagBits & 2) !== 0;
  }
  get key(): number {
    return (this.asId << 16) | this.id;
  }
}

/** `__gfn_to_hva_memslot()`: the host virtual page behind gfn in a memslot's userspace range. */
export function gfnToHvpnMemslot(slot: Memslot, gfn: Gfn): Hvpn {
  return hvpnAdd(slot.userspaceHvpn, gfnDiff(gfn, slot.baseGfn));
}
/** `hva_to_gfn_memslot()`: the gfn a host virtual page of a memslot's userspace range maps. */
export function hvpnToGfnMemslot(slot: Memslot, hvpn: Hvpn): Gfn {
  return gfnAdd(slot.baseGfn, hvpnDiff(hvpn, slot.userspaceHvpn));
}
/** `kvm_gmem_get_index()`: the guest_memfd index behind gfn in a bound memslot. */
export function gfnToGmemIndex(slot: Memslot, pgoff: PgOff, gfn: Gfn): PgOff {
  return pgoffAdd(pgoff, gfnDiff(gfn, slot.baseGfn));
}
/** The gfn a guest_memfd index maps in a memslot bound at `pgoff` (the inverse). */
export function gmemIndexToGfn(slot: Memslot, pgoff: PgOff, index: PgOff): Gfn {
  return gfnAdd(slot.baseGfn, pgoffDiff(index, pgoff));
}

/** One stage-2 (EPT/NPT or shadow) mapping extent: consecutive gfns → consecutive frames. */
export type Spte = {
  /** pfn of the extent's first gfn. */
  readonly base: Pfn;
  readonly level: '4K' | '2M' | '1G';
  readonly private: boolean;
  readonly source: 'gmem' | 'hva';
  readonly writable: boolean;
};

/**
 * Stage-2 extents coalesce when frames are consecutive and every other property matches. A
 * mapping of the shared zero page never does: each gfn maps the same frame, and the frame after
 * it belongs to someone else.
 */
export const spteOps = extentOps<Spte>(
  (a, b) =>
    a.base !== ZERO_PFN &&
    a.level === b.level &&
    a.private === b.private &&
    a.source === b.source &&
    a.writable === b.writable,
  makeSpte,
);
export const gmemExtentOps = extentOps<GmemExtent>((a, b) => a.state === b.state, makeGmemExtent);

/** An Spte of t's kind at another base, fields in the order installSpte writes them. */
function makeSpte(t: Spte, base: number): Spte {
  return {
    base: base as Pfn,
    level: t.level,
    private: t.private,
    source: t.source,
    writable: t.writable,
  };
}
/** A GmemExtent of t's state at another base (fields in the order every writer uses). */
function makeGmemExtent(t: GmemExtent, base: number): GmemExtent {
  return { base: base as Pfn, state: t.state };
}

/** Spte shapes for ExtentMap: every field but base, as a small integer (matches spteOps). */
export const spteShape: ExtentShape<Spte> = {
  key: (v) =>
    (v.level === '4K' ? 0 : v.level === '2M' ? 8 : 16) +
    (v.private ? 4 : 0) +
    (v.source === 'gmem' ? 2 : 0) +
    (v.writable ? 1 : 0),
  joinsFrom: (base) => base !== ZERO_PFN,
  make: makeSpte,
};
/** GmemExtent shapes for ExtentMap (matches gmemExtentOps). */
export const gmemExtentShape: ExtentShape<GmemExtent> = {
  key: (v) => (v.state === 'allocated' ? 0 : v.state === 'prepared' ? 1 : 2),
  make: makeGmemExtent,
};

/**
 * The page-fault counters of x86's `struct kvm_vcpu_stat` (arch/x86/include/asm/kvm_host.h), read
 * by userspace through the vCPU's binary stats fd (KVM_GET_STATS_FD) or summed over every vCPU in
 * debugfs (`/sys/kernel/debug/kvm/pf_taken`, ...). Bumped where 6.18 bumps them: in
 * `kvm_mmu_page_fault()`, the handler of a guest's stage-2 fault (#NPF / EPT violation), never by
 * KVM_PRE_FAULT_MEMORY (`kvm_tdp_map_page()` counts nothing) nor by the instruction emulator's
 * uaccess path (no stage-2 fault).
 */
export type KvmVcpuStat = {
  /** Faults that reached the MMU's fault path (`RET_PF_INVALID` after the MMIO-SPTE check). */
  pf_taken: number;
  /** Of those, faults that installed a mapping (`RET_PF_FIXED`). */
  pf_fixed: number;
  /** Faults handed to the emulator (`RET_PF_EMULATE`: MMIO). */
  pf_emulate: number;
  /** Faults that found the mapping already there (`RET_PF_SPURIOUS`). */
  pf_spurious: number;
};

export const KVM_VCPU_STAT_NAMES: readonly (keyof KvmVcpuStat)[] = [
  'pf_taken',
  'pf_fixed',
  'pf_emulate',
  'pf_spurious',
];

export class Vcpu {
  constructor(
    readonly vm: Vm,
    readonly id: bigint,
    readonly index: number,
  ) {
    this.apicBase = id === 0n ? 0xfee0_0900n : 0xfee0_0800n;
  }
  /** Number of KVM_RUN calls (for explanations). */
  runs = 0;
  /**
   * KVM_REQ_MEMORY_MCE pending (design-2023-restrictedmem, UPM v10 patch 9/9: a memory error in
   * a restricted fd bound to this VM): the next KVM_RUN exits with KVM_EXIT_SHUTDOWN.
   */
  memoryMceRequest = false;
  /** Frames behind the vCPU mmap area: [kvm_run, pio page] (allocated with the vCPU). */
  readonly pages: Pfn[] = [];
  /** The vCPU fd's file. */
  file: KFile | undefined;
  /** Guest CR8 (TPR) as KVM keeps it without an in-kernel LAPIC. */
  cr8 = 0n;
  /** MSR_IA32_APICBASE: 0xfee00000 | enable | BSP for vCPU 0 (until KVM_SET_SREGS changes it). */
  apicBase: bigint;
  /** `vcpu->stat`: its page-fault counters. */
  readonly stat: KvmVcpuStat = { pf_taken: 0, pf_fixed: 0, pf_emulate: 0, pf_spurious: 0 };
}

/** The trace contract's code page: slot 32763 at GPA 0xFFFFF000, created with the first vCPU. */
export type CodeSlotState = 'none' | 'present' | 'failed';

export class Vm {
  refs = 0;
  dead = false;
  /**
   * `kvm->vm_dead`: `kvm_vm_dead()` ran (or a KVM_BUG_ON): `kvm_vm_ioctl()` and `kvm_vcpu_ioctl()`
   * answer every ioctl of the VM and its vCPUs -EIO from then on (closing the fds still works).
   */
  vmDead = false;
  /** `kvm->vm_bugged`: a KVM_BUG_ON fired (`kvm_vm_bugged()`, which also makes the VM dead). */
  vmBugged = false;
  /**
   * `kvm->mem_protected` (design-2020-protnone-follkvm): the guest made
   * KVM_HC_ENABLE_MEM_PROTECTED; every memslot's userspace range is VM_KVM_PROTECTED, and so is
   * each new or changed memslot's. Never set on other profiles.
   */
  memProtected = false;
  /**
   * design-2024-shmem-exclusive-pin: the guest's private pages, by gfn, each held by KVM's
   * exclusive long-term pin on the VMM's page (kvm/exclusive_pin.ts). Undefined until the first
   * conversion; never set on other profiles.
   */
  exclusivePins: RangeMap<PageExtent> | undefined;
  /**
   * design-2024-shmem-exclusive-pin: pages the guest made private and then shared again, by gfn:
   * KVM keeps the one ordinary long-term pin the exclusive pin left (`unexc_user_page()`), which
   * going private again turns back into an exclusive pin (`reexc_user_page()`).
   */
  sharedPins: RangeMap<PageExtent> | undefined;
  /** Memslots by (as_id << 16 | id). */
  readonly slots = new Map<number, Memslot>();
  /**
   * Every memslot's userspace range lies in host virtual pages [hvaSpanStart, hvaSpanEnd) (empty
   * without memslots): an mmu_notifier invalidation outside it concerns no memslot of this VM, so
   * the notifier skips the walk (the kernel's per-VM interval tree lookup finds nothing either).
   * Recomputed by `updateHvaSpan()` whenever a memslot is added or removed (a MOVE keeps the
   * userspace range).
   */
  hvaSpanStart = 0;
  hvaSpanEnd = 0;
  /** Per address space: gfn → memslot (for lookup and overlap checks). */
  readonly slotsByGfn: RangeMap<Memslot>[];
  /** Memory attributes by gfn (absent = 0 = shared). */
  readonly attrs: RangeMap<number>;
  /** Stage-2 mappings, per address space. */
  readonly stage2: ExtentMap<Spte>[];
  readonly vcpus = new Map<bigint, Vcpu>();
  /** guest_memfd files created for this VM and not yet released (`kvm_gmem` list). */
  readonly gmemFiles = new Set<GmemFile>();
  /** KVM_CAP_EXIT_HYPERCALL mask (`kvm->arch.hypercall_exit_enabled`). */
  hypercallExitEnabled = 0n;
  /** `kvm->mmu_invalidate_seq`: bumped by every invalidation. */
  mmuInvalidateSeq = 0;
  /** `kvm->mmu_notifier`: registered on the VMM's mm while the VM lives. */
  mmuNotifier: MmuNotifier | undefined;
  /**
   * design-2020-separate-mm: the address space KVM_MAP_ADDRESS_SPACE attached, in which KVM
   * resolves every memslot's userspace_addr and where its notifier is registered instead of the
   * VMM's mm (kvm/separate_mm.ts); undefined: the VMM's mm, as on every other kernel.
   */
  guestMm: HostMm | undefined;
  /** design-2020-separate-mm: the address-space file the VM holds (its `vmRefs`). */
  addressSpace: AddressSpaceFile | undefined;
  preFaultAllowed: boolean;
  codeSlot: CodeSlotState = 'none';
  /** Backing of the trace code page (a host address outside the trace arena). */
  codePageHva: Hva = asHva(0n);
  /** Total pages across slots (`kvm->nr_memslot_pages`). */
  nrMemslotPages = 0;
  /** `kvm->arch.n_max_mmu_pages != 0`: set by the first memslot CREATE/DELETE commit. */
  mmuPagesSized = false;
  /** Frames shared by all vCPUs' mmap areas: [coalesced MMIO ring]. */
  readonly sharedPages: Pfn[] = [];
  /**
   * Frames the arch's per-VM state holds for the platform (a TD's TDR, TDCS, S-EPT, TDVPR and TDCX
   * pages, given to the TDX module): owned by the VM until the arch frees them (never by the
   * generic teardown: a page the platform cannot give back is leaked, as the kernel leaks it).
   */
  readonly archPages: Pfn[] = [];
  /** Cached MMIO SPTEs by gfn, tagged with the memslot generation they were created in. */
  readonly mmioSptes = new RangeMap<number>();
  /** The memslot generation: bumped by every memslot change, which makes MMIO SPTEs stale. */
  memslotGen = 0;
  /** Number of vCPUs ever created (`kvm->created_vcpus`). */
  createdVcpus = 0;
  /** The VM fd's file (the trace backend needs it open to create the code slot). */
  file: KFile | undefined;
  /** TLB flushes by source, for explanations and benchmarks. */
  readonly tlbFlushes = new Map<string, number>();
  constructor(
    readonly index: number,
    readonly type: bigint,
    readonly spec: VmTypeSpec,
  ) {
    this.preFaultAllowed = spec.preFaultAllowedAtCreate;
    this.slotsByGfn = [];
    this.stage2 = [];
    for (let i = 0; i < spec.nrAddressSpaces; i++) {
      this.slotsByGfn.push(new RangeMap<Memslot>());
      this.stage2.push(new ExtentMap<Spte>(spteOps, spteShape));
    }
    this.attrs = new RangeMap<number>();
  }

  /** Recompute [hvaSpanStart, hvaSpanEnd) from the memslots. */
  updateHvaSpan(): void {
    let lo = Infinity;
    let hi = -Infinity;
    for (const slot of this.slots.values()) {
      const ua = slot.userspaceHvpn;
      if (ua < lo) lo = ua;
      if (ua + slot.npages > hi) hi = ua + slot.npages;
    }
    this.hvaSpanStart = lo === Infinity ? 0 : lo;
    this.hvaSpanEnd = hi === -Infinity ? 0 : hi;
  }
}

/** `kvm_vm_dead()` (include/linux/kvm_host.h): the VM answers no more ioctls (-EIO). */
export function kvmVmDead(vm: Vm): void {
  vm.vmDead = true;
}

/** `kvm_vm_bugged()`, what `KVM_BUG_ON()` calls when its condition holds: bugged and dead. */
export function kvmVmBugged(vm: Vm): void {
  vm.vmBugged = true;
  kvmVmDead(vm);
}
