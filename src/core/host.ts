/**
 * `Host`: one simulated machine — the kernel (with its profile) and the single VMM process that
 * drives it through file descriptors. This is the model's public, KVM-shaped API: one method per
 * syscall or ioctl, named after the uAPI (`kvmSetUserMemoryRegion2`, `fallocate`, ...), each taking
 * fd numbers and raw values and returning a `Result` with a Linux errno name. Nothing here throws
 * on bad input.
 *
 * ioctl dispatch follows the kernel: an fd that is not open is EBADF; /dev/kvm, VM and vCPU fds
 * have their own ioctl tables (`kvm_dev_ioctl`, `kvm_vm_ioctl`, `kvm_vcpu_ioctl`) with their own
 * defaults for unknown requests (EINVAL, ENOTTY, EINVAL); guest_memfd and other files have no
 * ioctls (ENOTTY).
 */
import type { KernelCtx, SnpGuestObserver, TdxGuestObserver } from './ctx.js';
import { EventLog } from './base/events.js';
import { FrameStore } from './base/frames.js';
import {
  kvmGmemCreate,
  kvmGmemEvict,
  kvmGmemFallocate,
  kvmGmemRelease,
} from './kvm/guest_memfd/guest_memfd.js';
import { HostMm } from './mm/host_mm.js';
import { designOpsFor, type DesignOps } from './kvm/design_ops.js';
import {
  AddressSpaceFile,
  addressSpaceCreate,
  addressSpaceMmap,
  addressSpaceMunmap,
} from './mm/address_space.js';
import { kvmMapAddressSpace } from './kvm/separate_mm.js';
import type { ShmemObject } from './mm/shmem.js';
import type { MmStruct } from './mm/mm_types.js';
import { HugetlbPools } from './mm/hugetlb.js';
import type { UserAccess } from './mm/memory.js';
import { kvmVmIoctlSetMemAttributes } from './kvm/mem_attributes.js';
import {
  kvmGmemSetAttributes,
  kvmGmemSetAttributesRange,
  type GmemSetAttributesOutcome,
  type KvmMemoryAttributes2,
} from './kvm/guest_memfd/attributes.js';
import {
  kvmVmIoctlSetMemoryRegion,
  type GmemFdLookup,
  type MemoryRegionChange,
} from './kvm/memslots.js';
import { kvmMmuNotifierInvalidate } from './arch/x86/mmu.js';
import { assembleKernel } from './assemble.js';
import type { HostHooks, KernelPartsRegistry } from './arch/x86/modules.js';
import type { KvmArchOps } from './kvm/arch_ops.js';
import type { KvmX86Ops } from './arch/x86/x86_ops.js';
import type { GmemBacking } from './kvm/guest_memfd/backing.js';
import type { HostAccessPath, Platform } from './platform/platform.js';
import { MutantSet } from './base/mutants.js';
import type { KFile } from './vfs/file.js';
import { PipeFile, PipeInode } from './vfs/pipe.js';
import { vmsplice } from './vfs/splice.js';
import { NotModelled } from './base/not_modelled.js';
import {
  VFIO_DMA_UNMAP_FLAG_ALL,
  VFIO_DMA_UNMAP_MINSZ,
  VFIO_GROUP_ID,
  VfioContainerFile,
  VfioGroupFile,
  type VfioIommu,
  vfioDma,
  vfioGroupSetContainer,
  vfioMapDma,
  vfioSetIommu,
  vfioUnmapDma,
} from './vfio/vfio.js';
import {
  GMEM_ATTR_PRIVATE,
  GmemFile,
  KvmDevFile,
  StdFile,
  Vcpu,
  VcpuFile,
  Vm,
  VmFile,
} from './kvm/objects.js';
import type { Memslot } from './kvm/objects.js';
import { kvmExclusivePinsRelease } from './kvm/exclusive_pin.js';
import {
  KVM_MEM_PRIVATE,
  RestrictedmemFile,
  memfdRestricted,
  memoryFailure,
  restrictedmemError,
  restrictedmemFallocate,
  restrictedmemForVm,
  restrictedmemReadMutant,
  restrictedmemSetSize,
} from './kvm/restrictedmem.js';
import { kvmVcpuPreFaultMemory, type PreFaultResult } from './kvm/pre_fault.js';
import { vmTypeSpec, vmTypesMask, type KernelProfile } from './profiles/profile.js';
import { err, ok, OK_VOID, type Result } from './base/result.js';
import type { UserPtr } from './base/uaccess.js';
import {
  kvmRunProgram,
  type GuestProgramStep,
  type MapGpaRangeVmm,
  type RunResult,
} from './arch/x86/kvm_run.js';
import { ERRNO_NUMBERS } from './base/errno.js';
import type { Arm64ArchOps } from './arch/arm64/ops.js';

/**
 * The model VMM's answer to KVM_HC_MAP_GPA_RANGE exits during one KVM_RUN (the KVM_RUN op's
 * `map_gpa_range`): an integer written to `hypercall.ret` with nothing else done (absent: 0, the
 * trace backend's behaviour before SNP), 'convert' (KVM_SET_MEMORY_ATTRIBUTES of the range,
 * PRIVATE for KVM_MAP_GPA_RANGE_ENCRYPTED, else shared; then 0, or the errno number when the
 * ioctl fails), or 'convert+discard' (after converting, the copy no longer in use is dropped, as
 * QEMU's `kvm_convert_memory()` does: the shared copy with madvise(MADV_DONTNEED) on the
 * memslot's userspace_addr range for a conversion to private, the private copy with
 * fallocate(PUNCH_HOLE | KEEP_SIZE) on the guest_memfd for a conversion to shared).
 */
export type MapGpaRangePolicy = bigint | 'convert' | 'convert+discard';
import type { X86ArchOps } from './arch/x86/x86_ops.js';
import {
  KVM_CAP,
  KVM_IOCTL,
  KVM_X86_TDX_VM,
  TRACE_CODE_GPA,
  TRACE_CODE_SLOT,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  PROT_READ,
  PROT_WRITE,
  O_CLOEXEC,
  O_DIRECT,
  O_DIRECT_ARM64,
  O_NONBLOCK,
  O_NOTIFICATION_PIPE,
} from './base/uapi.js';
import {
  PAGE_SIZE,
  asGpa,
  asHva,
  asPgOff,
  hvaToHvpn,
  type Hva,
  gpaToGfn,
  type Hvpn,
  type PgOff,
  type Pfn,
} from './base/units.js';

/** Where the model keeps each VM's trace code page: outside the trace arena, below TASK_SIZE. */
const CODE_PAGE_BASE = 0x7f00_0000_0000n;
/** KVM_CAP_SPLIT_IRQCHIP (include/uapi/linux/kvm.h). */
const KVM_CAP_SPLIT_IRQCHIP = 121;

export type HostOptions = {
  /** Injected bugs (seeded-bug benchmark). */
  readonly mutants?: Iterable<string>;
  /** Record model events (default true). */
  readonly events?: boolean;
  /** Replace the vendor module's `kvm_x86_ops` (instrumented or experimental vendors). */
  readonly vendorOps?: KvmX86Ops;
  /** Replace the platform (experimental platforms, tests of the host-access check). */
  readonly platform?: Platform;
  /** Replace the guest_memfd backing design (experimental designs, tests of the seam). */
  readonly gmemBacking?: GmemBacking;
};

/**
 * What a Host is made with: its options and the kernel modules loaded on it (core/assemble.ts;
 * core/all_parts.ts's ALL_PARTS for every one the model has).
 */
export type HostInit = HostOptions & { readonly parts: KernelPartsRegistry };

/**
 * The pointer argument of an ioctl as the VMM passes it: NULL, or a buffer of the caller's own
 * outside the trace's memory (the real backend's copy of the struct), which the kernel reads and
 * writes through copy_from_user() / copy_to_user() without faulting.
 */
export type IoctlArg =
  { readonly kind: 'null' } | { readonly kind: 'buffer'; readonly bytes: Uint8Array };

/** The kernel's view of an `IoctlArg` (`void __user *argp`). */
function userPtrOf(arg: IoctlArg): UserPtr {
  if (arg.kind === 'null')
    return { isNull: true, copyFromUser: () => undefined, copyToUser: () => false };
  const b = arg.bytes;
  return {
    isNull: false,
    // A read past the buffer would see the caller's neighbouring memory; the vendors read no
    // more than their struct, which the caller sizes, so the rest reads as zeros here.
    copyFromUser: (len) => {
      const out = new Uint8Array(len);
      out.set(b.subarray(0, Math.min(len, b.length)));
      return out;
    },
    copyToUser: (bytes) => {
      b.set(bytes.subarray(0, Math.min(bytes.length, b.length)));
      return true;
    },
  };
}

export type FileStat = {
  readonly size: bigint;
  readonly blocks: bigint;
  readonly mode: number;
  readonly ino: number;
};

type Fd = number;

/**
 * The fd table. Every lookup, and every file release, is reported to `touched`: the
 * change-driven invariant checker re-checks the VMs behind the files an op used.
 */
class FdTable extends Map<Fd, KFile> {
  touched: ((f: KFile, release: boolean) => void) | undefined = undefined;
  override get(fd: Fd): KFile | undefined {
    const f = super.get(fd);
    if (f !== undefined) this.touched?.(f, false);
    return f;
  }
}

/**
 * A process of the VMM (`struct task_struct` as the model needs it): its address space
 * (`->mm`) and fd table (`->files`). The trace's VMM is the first; `fork` makes more. A process
 * that exited keeps its slot (a zombie) until its parent reaps it with `wait`.
 */
export class Proc {
  /** The exit status once the process exited (a zombie until reaped), else undefined. */
  exitStatus: number | undefined = undefined;
  reaped = false;
  constructor(
    readonly pid: number,
    readonly mm: HostMm,
    readonly fds: FdTable,
    readonly parent: Proc | undefined,
  ) {}
}

export class Host implements KernelCtx {
  readonly frames = new FrameStore();
  readonly events = new EventLog();
  readonly mutants: MutantSet;
  /**
   * The address space of the process issuing the current call (`current->mm`): the VMM's, or a
   * forked child's while `asProc()` runs one of its calls. KVM uses the VMM's: VM and vCPU
   * ioctls from another mm are EIO (`kvm->mm != current->mm`).
   */
  mm: HostMm;
  readonly vms = new Set<Vm>();
  /** The arch operations generic KVM code calls: x86 (the only arch modelled so far). */
  readonly arch: KvmArchOps<KernelCtx>;
  /** The confidential-computing platform (per-frame state, host-access check). */
  readonly platform: Platform;
  /** The guest_memfd backing design. */
  readonly gmemBacking: GmemBacking;
  /** The historical design's hooks into KVM (kvm/design_ops.ts); null on real kernels. */
  readonly design: DesignOps | null;
  /** design-2020-separate-mm: the live address spaces of no process (mm/address_space.ts). */
  readonly guestMms = new Map<HostMm, AddressSpaceFile>();
  /** The hstates' free huge pages for HugeTLB guest_memfd (profile.gmemHugetlb). */
  readonly hugetlbPools: HugetlbPools;
  /** The IOMMU domains of VFIO containers whose IOMMU is set (for the invariants). */
  readonly iommuDomains = new Set<VfioIommu>();
  /** Every VM ever created, destroyed ones included (for the reference-count invariant). */
  readonly allVms: Vm[] = [];
  observe?: (pfn: Pfn, write: boolean, path: HostAccessPath, refused: boolean) => void;
  snpGuestObserver?: SnpGuestObserver;
  tdxGuestObserver?: TdxGuestObserver;
  /** The fd table of the process issuing the current call (`current->files`). */
  private fds = new FdTable();
  /** Every process by pid: the VMM (`root`) and the children forks made, exited ones included. */
  readonly procs = new Map<number, Proc>();
  /** The trace's VMM: the process that owns every VM (`kvm->mm`). */
  readonly root: Proc;
  /** The process issuing the current call (`current`). */
  private cur: Proc;
  private nextPid = 1;
  /** The entry points of the loaded modules beyond their seams' ops (core/assemble.ts). */
  private readonly hooks: HostHooks;
  private nextIno = 100;
  private nextVmIndex = 0;

  constructor(
    readonly profile: KernelProfile,
    opts: HostInit,
  ) {
    this.mutants = new MutantSet(opts.mutants ?? []);
    const parts = assembleKernel(opts.parts, profile.parts, this.frames, opts.vendorOps);
    this.hooks = opts.parts.host;
    this.arch = parts.arch;
    this.platform = opts.platform ?? parts.platform;
    const snp = this.platform.sevSnp;
    if (snp !== undefined && this.mutants.names.length > 0) snp.rmp.mutants = this.mutants;
    const tdx = this.platform.tdx;
    if (tdx !== undefined && this.mutants.names.length > 0) tdx.module.mutants = this.mutants;
    const pkvm = this.platform.pkvm;
    if (pkvm !== undefined && this.mutants.names.length > 0) pkvm.hyp.mutants = this.mutants;
    this.gmemBacking = opts.gmemBacking ?? parts.gmemBacking;
    this.design = designOpsFor(profile);
    this.hugetlbPools = new HugetlbPools(
      profile.gmemHugetlb?.pages2M ?? 0,
      profile.gmemHugetlb?.pages1G ?? 0,
    );
    this.events.enabled = opts.events ?? true;
    this.mm = new HostMm(this);
    this.root = new Proc(this.nextPid++, this.mm, this.fds, undefined);
    this.procs.set(this.root.pid, this.root);
    this.cur = this.root;
    // stdin, stdout, stderr: open, but not KVM objects.
    for (let i = 0; i < 3; i++) this.install(i, new StdFile(this.nextIno++));
  }

  // -----------------------------------------------------------------------------------------------
  // fd table and file lifetime

  private install(fd: Fd, f: KFile): Fd {
    this.fds.set(fd, f);
    f.fdRefs++;
    return fd;
  }

  /** get_unused_fd_flags(): the lowest free fd number. */
  private allocFd(f: KFile): Fd {
    let fd = 0;
    while (this.fds.has(fd)) fd++;
    return this.install(fd, f);
  }

  /** The open file behind an fd, or undefined (EBADF). */
  file(fd: Fd): KFile | undefined {
    return this.fds.get(fd);
  }

  /** KernelCtx's `fdget()`. */
  fdFile(fd: Fd): KFile | undefined {
    return this.fds.get(fd);
  }

  /** Be told every file an op looks up by fd or releases (the invariant checker). */
  watchFiles(cb: ((f: KFile, release: boolean) => void) | undefined): void {
    for (const p of this.procs.values()) p.fds.touched = cb;
  }

  /** Every open fd and its file (for explanations and invariants). */
  openFds(): ReadonlyMap<Fd, KFile> {
    return this.fds;
  }

  getFileMapping(file: KFile, pages: number): void {
    file.mappedPages += pages;
  }

  putFileMapping(file: KFile, pages: number): void {
    file.mappedPages -= pages;
    this.maybeRelease(file);
  }

  /** fput() reaching zero: the file's ->release(). */
  private maybeRelease(f: KFile): void {
    this.fds.touched?.(f, true);
    if (f.released || f.fdRefs > 0 || f.mappedPages > 0) return;
    // design-2020-separate-mm: a VM that resolves its memslots there holds the address space.
    if (f instanceof AddressSpaceFile) {
      if (f.vmRefs > 0) return;
      f.released = true;
      // The mm goes with its last reference (mmput() → exit_mmap()).
      f.mm.exitMmap();
      this.guestMms.delete(f.mm);
      return;
    }
    if (f instanceof GmemFile) {
      // __fput(): ->release() (kvm_gmem_release(), ending in kvm_put_kvm()), then the inode's
      // eviction frees the pages. On pKVM the order shows: a VM whose last reference was the
      // file is torn down first, reclaiming what its guest owns or shares. Elsewhere the model
      // keeps its earlier order (pages freed, then the VM put): the same states, and the event
      // order existing outputs have [the kernel's order would move vm_destroy before gmem_free
      // in two example outputs].
      const vm = kvmGmemRelease(this, f);
      if (this.platform.pkvm !== undefined) {
        this.putVm(vm);
        kvmGmemEvict(this, f);
      } else {
        kvmGmemEvict(this, f);
        this.putVm(vm);
      }
      return;
    }
    f.released = true;
    // design-2023-restrictedmem: restrictedmem_release() drops the wrapped memfd; here the
    // restricted file's hold on the pages KVM keeps for it.
    if (f instanceof RestrictedmemFile) {
      const inner = f.inner;
      if (inner !== undefined) {
        inner.fdRefs--;
        this.maybeRelease(inner);
      }
      return;
    }
    if (f instanceof VmFile && this.mutants.has('vm_put_early')) {
      // Injected bug: closing the VM fd destroys the VM whatever else still references it.
      f.vm.refs = 1;
      this.putVm(f.vm);
      return;
    }
    if (f instanceof VmFile) this.putVm(f.vm);
    else if (f instanceof VcpuFile) this.putVm(f.vcpu.vm);
    else if (f instanceof PipeFile) f.release(this.frames);
    else if (f instanceof VfioGroupFile) {
      // vfio_group_fops_release() → __vfio_group_unset_container(): the last group leaving a
      // container detaches its IOMMU driver (vfio_iommu_type1_release(): unmap and unpin all).
      const c = f.container;
      f.container = undefined;
      if (c !== undefined) {
        c.groups.delete(f);
        if (c.groups.size === 0) this.vfioTeardown(c);
      }
    } else if (f instanceof VfioContainerFile && f.groups.size === 0) this.vfioTeardown(f);
  }

  /** `vfio_iommu_type1_release()`: every DMA mapping unmapped and unpinned, the IOMMU gone. */
  private vfioTeardown(c: VfioContainerFile): void {
    if (c.iommu === undefined) return;
    // The DMA mappings were made in the VMM's mm (VFIO from a child is not modelled), whichever
    // process drops the last reference.
    vfioUnmapDma(this.root.mm, c, {
      argsz: VFIO_DMA_UNMAP_MINSZ,
      flags: BigInt(VFIO_DMA_UNMAP_FLAG_ALL),
      iova: 0n,
      size: 0n,
    });
    this.iommuDomains.delete(c.iommu);
    c.iommu = undefined;
  }

  /**
   * open("/dev/vfio/vfio") (a container) or open("/dev/vfio/<group>"): the modelled host has
   * one IOMMU group, VFIO_GROUP_ID, with a device bound to vfio-pci; another group is ENOENT.
   */
  openVfio(path: string): Result<Fd> {
    this.vfioFromChild();
    if (path === '/dev/vfio/vfio') return ok(this.allocFd(new VfioContainerFile(this.nextIno++)));
    if (path === `/dev/vfio/${VFIO_GROUP_ID}`) {
      // vfio_group_fops_open(): a group is opened once at a time (EBUSY).
      for (const f of this.fds.values())
        if (f instanceof VfioGroupFile && f.group === VFIO_GROUP_ID)
          return err('EBUSY', 'vfio_group_fops_open: group already open');
      return ok(this.allocFd(new VfioGroupFile(this.nextIno++, VFIO_GROUP_ID)));
    }
    return err('ENOENT', 'no such VFIO group');
  }

  /** VFIO_GROUP_SET_CONTAINER on a group fd. */
  vfioGroupSetContainer(fd: Fd, containerFd: Fd): Result<undefined> {
    this.vfioFromChild();
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (!(f instanceof VfioGroupFile)) return Host.vfioIoctlElsewhere(f);
    return vfioGroupSetContainer(f, this.fds.get(containerFd));
  }

  /**
   * VFIO from a forked child is not modelled: a DMA mapping pins through the mapper's mm
   * (`vfio_dma->mm`), and the model keeps VFIO on the VMM's.
   */
  private vfioFromChild(): void {
    if (this.cur !== this.root) throw new NotModelled('VFIO from a forked child');
  }

  /**
   * A VFIO ioctl on a file it is not for: a container's `vfio_fops_unl_ioctl()` answers an
   * unknown cmd -EINVAL, or passes it to its IOMMU driver once one is set (type1's ioctl: -ENOTTY);
   * a group's `vfio_group_fops_unl_ioctl()` -ENOTTY; KVM's and other files as for any unknown
   * ioctl (`unknownIoctl()`: /dev/kvm and vCPU fds -EINVAL, VM fds -ENOTTY).
   */
  private static vfioIoctlElsewhere(f: KFile): Result<never> {
    if (f instanceof VfioContainerFile)
      return f.iommu === undefined
        ? err('EINVAL', 'vfio_fops_unl_ioctl: unknown ioctl, no IOMMU driver')
        : err('ENOTTY', 'vfio_iommu_type1_ioctl: unknown ioctl');
    if (f instanceof VfioGroupFile)
      return err('ENOTTY', 'vfio_group_fops_unl_ioctl: unknown ioctl');
    return Host.unknownIoctl(f);
  }

  /**
   * The container of a container ioctl (`ioctl`), or of the device's DMA (a model step, which
   * answers ENOTTY on any other file), or its errno.
   */
  private vfioContainer(fd: Fd, ioctl = true): Result<VfioContainerFile> {
    this.vfioFromChild();
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (!(f instanceof VfioContainerFile))
      return ioctl ? Host.vfioIoctlElsewhere(f) : err('ENOTTY', 'not a VFIO container');
    return ok(f);
  }

  /** VFIO_SET_IOMMU on a container fd (`teeIo`: a private-capable device's domain). */
  vfioSetIommu(fd: Fd, type: bigint, teeIo: boolean): Result<undefined> {
    const c = this.vfioContainer(fd);
    if (!c.ok) return c;
    const r = vfioSetIommu(c.value, type, teeIo);
    if (r.ok) this.iommuDomains.add(c.value.iommu!);
    return r;
  }

  /** VFIO_IOMMU_MAP_DMA on a container fd. */
  vfioMapDma(
    fd: Fd,
    a: { argsz: bigint; flags: bigint; vaddr: bigint; iova: bigint; size: bigint },
  ): Result<undefined> {
    const c = this.vfioContainer(fd);
    return c.ok ? vfioMapDma(this.mm, c.value, a) : c;
  }

  /** VFIO_IOMMU_UNMAP_DMA on a container fd: the bytes unmapped. */
  vfioUnmapDma(
    fd: Fd,
    a: { argsz: bigint; flags: bigint; iova: bigint; size: bigint },
  ): Result<bigint> {
    const c = this.vfioContainer(fd);
    return c.ok ? vfioUnmapDma(this.mm, c.value, a, this.mutants) : c;
  }

  /** The device's DMA at `iova` through the container's domain (`write` null: a read). */
  vfioDma(
    fd: Fd,
    iova: bigint,
    len: number,
    write: Uint8Array | null,
  ): Result<Uint8Array | undefined> {
    const c = this.vfioContainer(fd, false);
    return c.ok ? vfioDma(this.mm, c.value, iova, len, write) : c;
  }

  /** kvm_put_kvm(): the last reference destroys the VM. */
  private putVm(vm: Vm): void {
    vm.refs--;
    if (vm.refs > 0 || vm.dead) return;
    // kvm_destroy_vm(): memslots are freed (guest_memfd unbind is a no-op: every file is gone),
    // the MMU is torn down.
    vm.dead = true;
    for (const s2 of vm.stage2) s2.clear();
    for (const sbg of vm.slotsByGfn) sbg.clear();
    vm.slots.clear();
    vm.updateHvaSpan();
    this.arch.destroyVm?.(this, vm);
    // design-2024-shmem-exclusive-pin: KVM's exclusive pins of private pages are dropped.
    if (vm.exclusivePins !== undefined) kvmExclusivePinsRelease(this, vm);
    for (const vcpu of vm.vcpus.values()) for (const p of vcpu.pages) this.frames.release(p, 1);
    for (const p of vm.sharedPages) this.frames.release(p, 1);
    this.vms.delete(vm);
    // kvm_destroy_vm() → mmu_notifier_unregister()
    // (kvm->mm, the VMM's: the last reference may go in a forked child's close or exit.)
    // (design-2020-separate-mm: on the VM's address space, which the VM then lets go.)
    if (vm.mmuNotifier !== undefined)
      (vm.guestMm ?? this.root.mm).notifiers.unregister(vm.mmuNotifier);
    this.events.push({ kind: 'vm_destroy', vm: vm.index });
    const as = vm.addressSpace;
    if (as !== undefined) {
      vm.addressSpace = undefined;
      as.vmRefs--;
      this.maybeRelease(as);
    }
  }

  // -----------------------------------------------------------------------------------------------
  // processes: fork, exit, wait

  /** Whether a process other than the VMM was ever forked (the invariant checker's cue). */
  get forked(): boolean {
    return this.procs.size > 1;
  }

  /**
   * Whether an address space other than the VMM's exists or existed: a forked process, or a
   * live address space of no process (design-2020-separate-mm). The invariant checker's cue.
   */
  get manyMms(): boolean {
    return this.procs.size > 1 || this.guestMms.size > 0;
  }

  /**
   * Every address space of a live process (the VMM's first), then the live address spaces of no
   * process (design-2020-separate-mm).
   */
  allMms(): HostMm[] {
    const out: HostMm[] = [];
    for (const p of this.procs.values()) if (p.exitStatus === undefined) out.push(p.mm);
    for (const mm of this.guestMms.keys()) out.push(mm);
    return out;
  }

  /** MmCtx's `shmemUnmapElsewhere()`: only an address space of no process can share (fork's
   * children have no secondary MMU, so their PTEs of shmem are not modelled as zapped). */
  shmemUnmapElsewhere(mm: MmStruct, obj: ShmemObject, start: PgOff, end: PgOff): void {
    if (this.guestMms.size === 0) return;
    const others = [...this.guestMms.keys(), this.root.mm].filter((m) => m !== mm);
    HostMm.unmapMappingRangeAll(others, obj, start, end);
  }

  /** `mm` named for a message: "process PID", or an address space of no process by its fd's inode. */
  mmName(mm: HostMm): string {
    const pid = this.procPid(mm);
    if (pid !== 0) return `process ${pid}`;
    const f = this.guestMms.get(mm);
    return f === undefined ? 'an address space of no process' : `address space #${f.ino}`;
  }

  /** The pid of the process whose address space is `mm` (0: none). */
  procPid(mm: HostMm): number {
    for (const p of this.procs.values()) if (p.mm === mm) return p.pid;
    return 0;
  }

  /**
   * `unmap_mapping_range()` of a file's pages [startPgoff, endPgoff) in every address space that
   * maps it (the file's i_mmap tree spans processes: a forked child's mappings too).
   */
  unmapMappingRange(file: KFile, startPgoff: PgOff, endPgoff: PgOff): void {
    if (!this.manyMms) this.root.mm.unmapMappingRange(file, startPgoff, endPgoff);
    else HostMm.unmapMappingRangeAll(this.allMms(), file, startPgoff, endPgoff);
  }

  /**
   * Run `f` as process `pid` (`current` is that process: its mm and fd table); a pid that names
   * no live process is not modelled (the trace names an exited or unknown process).
   */
  asProc<T>(pid: number, f: () => T): T {
    const p = this.procs.get(pid);
    if (p === undefined || p.exitStatus !== undefined)
      throw new NotModelled(
        p === undefined
          ? 'no such process (its fork failed or never ran)'
          : 'the process has exited: it issues no more calls',
      );
    const prev = this.cur;
    this.switchTo(p);
    try {
      return f();
    } finally {
      this.switchTo(prev);
    }
  }

  private switchTo(p: Proc): void {
    this.cur = p;
    this.mm = p.mm;
    this.fds = p.fds;
  }

  /**
   * fork(2) (kernel/fork.c `copy_process()`): a child of the current process with a copy of its
   * address space (`dup_mmap()`, mm/fork.ts: shared mappings shared, VM_DONTCOPY VMAs left out,
   * VM_WIPEONFORK VMAs empty, private pages copy-on-write — not modelled for the child) and of its
   * fd table (`dup_fd()`: the same open files, each with one more reference). The child's pid.
   * The child has no KVM: its VM and vCPU ioctls are EIO, and creating a VM from it (a VM whose
   * mm is the child's) is not modelled.
   */
  fork(): Result<number> {
    const parent = this.cur;
    const fds = new FdTable();
    fds.touched = parent.fds.touched;
    // dup_fd(): every open fd, with a reference on its file (get_file()).
    for (const [fd, f] of Map.prototype.entries.call(parent.fds) as IterableIterator<[Fd, KFile]>) {
      fds.set(fd, f);
      f.fdRefs++;
    }
    const mm = new HostMm(this);
    mm.dupFrom(parent.mm);
    const child = new Proc(this.nextPid++, mm, fds, parent);
    this.procs.set(child.pid, child);
    this.events.push({ kind: 'proc_fork', parent: parent.pid, child: child.pid });
    return ok(child.pid);
  }

  /**
   * exit(2) of the current process (`do_exit()`): its address space goes (`exit_mm()` →
   * `mmput()` → `exit_mmap()`: every mapping's pages and file references dropped), then its fd
   * table (`exit_files()`: every fd closed, files released on their last reference). The VMM
   * itself cannot exit in a trace (the trace is its life): not modelled.
   */
  exit(status: number): Result<undefined> {
    const p = this.cur;
    if (p === this.root)
      throw new NotModelled('exit of the VMM process: the trace is its life (exit a child)');
    p.mm.exitMmap();
    for (const fd of [...Map.prototype.keys.call(p.fds)] as Fd[]) {
      const f = Map.prototype.get.call(p.fds, fd) as KFile;
      p.fds.delete(fd);
      f.fdRefs--;
      this.maybeRelease(f);
    }
    p.exitStatus = status & 0xff;
    this.events.push({ kind: 'proc_exit', pid: p.pid, status: p.exitStatus });
    return OK_VOID;
  }

  /**
   * waitpid(pid, &status, 0) by the current process: reaps its exited child and returns the
   * status word (WIFEXITED: `status << 8`); ECHILD for a process that is not its child or was
   * reaped. Waiting for a child that has not exited would block the sequential trace forever:
   * not modelled.
   */
  waitpid(pid: number): Result<number> {
    const c = this.procs.get(pid);
    if (c === undefined || c.parent !== this.cur || c.reaped)
      return err('ECHILD', 'wait4: not a child of the caller');
    if (c.exitStatus === undefined)
      throw new NotModelled('waitpid on a child that has not exited would block the trace');
    c.reaped = true;
    return ok(c.exitStatus << 8);
  }

  /** `kvm->mm != current->mm`: the VM and vCPU ioctl preamble's EIO from another process. */
  private notKvmMm(which: 'vm' | 'vcpu'): Result<never> | undefined {
    if (this.cur === this.root) return undefined;
    return err('EIO', `kvm_${which}_ioctl: kvm->mm != current->mm`);
  }

  // -----------------------------------------------------------------------------------------------
  // /dev/kvm

  /** open("/dev/kvm", O_RDWR). */
  openDevKvm(): Fd {
    return this.allocFd(new KvmDevFile(this.nextIno++));
  }

  /**
   * open("/dev/sev", O_RDWR): the PSP's device, whose fd the SNP launch commands name
   * (`kvm_sev_cmd.sev_fd`). ENOENT on a host without SEV (no such device).
   */
  openDevSev(): Result<Fd> {
    const open = this.hooks.openSevDevice;
    if (this.platform.sevSnp === undefined || open === undefined)
      return err('ENOENT', 'no /dev/sev on this host');
    return ok(this.allocFd(open(this.nextIno++)));
  }

  /** Common VM-ioctl preamble: `kvm_vm_ioctl()` on a VM fd. */
  private vmOf(fd: Fd): Result<Vm> | 'not-vm' {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (!(f instanceof VmFile)) return 'not-vm';
    const other = this.notKvmMm('vm');
    if (other !== undefined) return other;
    if (f.vm.vmDead) return err('EIO', 'kvm_vm_ioctl: kvm->vm_dead');
    return ok(f.vm);
  }

  /** The errno an ioctl not handled by this kind of file gets. */
  private static unknownIoctl(f: KFile): Result<never> {
    switch (f.kind) {
      case 'kvm':
        return err('EINVAL', 'kvm_dev_ioctl: unknown ioctl (kvm_arch_dev_ioctl default)');
      case 'vm':
        return err('ENOTTY', 'kvm_vm_ioctl: unknown ioctl (kvm_arch_vm_ioctl default)');
      case 'vcpu':
        return err('EINVAL', 'kvm_vcpu_ioctl: unknown ioctl (kvm_arch_vcpu_ioctl default)');
      default:
        return err('ENOTTY', 'file has no ioctl for this request');
    }
  }

  /** Look up an fd for an ioctl and require `kind`; otherwise the kernel's answer for that fd. */
  private ioctlTarget<K extends KFile['kind']>(
    fd: Fd,
    kind: K,
  ): Result<Extract<KFile, { kind: K }>> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind !== kind) return Host.unknownIoctl(f);
    return ok(f as Extract<KFile, { kind: K }>);
  }

  /** KVM_CREATE_VM(type) on /dev/kvm. */
  kvmCreateVm(fd: Fd, type: bigint): Result<Fd> {
    const t = this.ioctlTarget(fd, 'kvm');
    if (!t.ok) return t;
    // kvm_create_vm() takes current->mm as the VM's mm: a VM of a forked child is not modelled.
    if (this.cur !== this.root)
      throw new NotModelled('KVM_CREATE_VM from a forked child (a VM of another mm)');
    const spec = vmTypeSpec(this.profile, type);
    if (spec === undefined) return err('EINVAL', 'kvm_arch_init_vm: unsupported VM type');
    const vm = new Vm(this.nextVmIndex, type, spec);
    const refused = this.arch.initVm?.(this, vm);
    if (refused !== undefined) return err(refused, 'kvm_arch_init_vm');
    this.nextVmIndex++;
    vm.refs = 1;
    // kvm_coalesced_mmio_init(): the ring page every vCPU maps at page 2.
    const ring = this.frames.allocOne();
    this.frames.zero(ring, 1);
    vm.sharedPages.push(ring);
    this.vms.add(vm);
    this.allVms.push(vm);
    // kvm_create_vm() → kvm_init_mmu_notifier(): this VM's stage-2 hears about the VMM's mm.
    vm.mmuNotifier = {
      invalidateRangeStart: (s: Hvpn, e: Hvpn): void => {
        if (this.mutants.has('mmu_notifier_missing')) return;
        if (this.arch.mmuNotifierInvalidate !== undefined)
          this.arch.mmuNotifierInvalidate(this, vm, s, e);
        else kvmMmuNotifierInvalidate(this, vm, s, e);
      },
    };
    this.mm.notifiers.register(vm.mmuNotifier);
    const f = new VmFile(this.nextIno++, vm);
    vm.file = f;
    return ok(this.allocFd(f));
  }

  /** KVM_CHECK_EXTENSION on /dev/kvm or a VM fd (`kvm_vm_ioctl_check_extension_generic`). */
  kvmCheckExtension(fd: Fd, cap: bigint): Result<bigint> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'kvm') return ok(this.capValue(undefined, cap));
    if (f instanceof VmFile) {
      const other = this.notKvmMm('vm');
      if (other !== undefined) return other;
      if (f.vm.vmDead) return err('EIO', 'kvm_vm_ioctl: kvm->vm_dead');
      return ok(this.capValue(f.vm, cap));
    }
    return Host.unknownIoctl(f);
  }

  /** Capability value on the system fd (vm undefined) or a VM. */
  capValue(vm: Vm | undefined, cap: bigint): bigint {
    const p = this.profile;
    const c = Number(BigInt.asIntN(64, cap));
    if (!Number.isSafeInteger(c) || c < 0) return 0n;
    if (vm === undefined) {
      if (c === KVM_CAP.KVM_CAP_VM_TYPES) return vmTypesMask(p);
      return p.systemCaps.get(c) ?? 0n;
    }
    const o = vm.spec.capOverrides?.get(c);
    if (o !== undefined) return o;
    switch (c) {
      case KVM_CAP.KVM_CAP_VM_TYPES:
        return vmTypesMask(p);
      case KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS:
        return p.guestMemfdConfig ? vm.spec.gmemFlags : 0n;
      case KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES:
        return p.memoryAttributesConfig ? vm.spec.memAttributes : 0n;
      case KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES:
        // kvm_vm_ioctl_check_extension_generic() (v7 patch 13): 0 with vm_memory_attributes,
        // else kvm_supported_mem_attributes(kvm).
        return vm.spec.gmemMemAttributes ?? p.vmCaps.get(c) ?? 0n;
      case KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE:
        return (p.vmCaps.get(c) ?? 0n) === 0n ? 0n : BigInt(vm.spec.nrAddressSpaces);
      default:
        return p.vmCaps.get(c) ?? 0n;
    }
  }

  // -----------------------------------------------------------------------------------------------
  // VM ioctls

  /** KVM_CREATE_GUEST_MEMFD on a VM fd. */
  kvmCreateGuestMemfd(fd: Fd, size: bigint, flags: bigint, pageOrder = 0): Result<Fd> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (!(f instanceof VmFile)) return Host.unknownIoctl(f);
    const other = this.notKvmMm('vm');
    if (other !== undefined) return other;
    if (f.vm.vmDead) return err('EIO', 'kvm_vm_ioctl: kvm->vm_dead');
    if (!this.profile.guestMemfdConfig) return Host.unknownIoctl(f);
    const r = kvmGmemCreate(this, f.vm, size, flags, this.nextIno++, pageOrder);
    if (!r.ok) return r;
    return ok(this.allocFd(r.value));
  }

  /**
   * KVM_SET_USER_MEMORY_REGION (`v1` true) or KVM_SET_USER_MEMORY_REGION2 on a VM fd.
   * `guestMemfd` is the struct's u32 fd field (only looked up for GUEST_MEMFD creates).
   */
  kvmSetUserMemoryRegion(
    fd: Fd,
    region: {
      slot: bigint;
      flags: bigint;
      guest_phys_addr: bigint;
      memory_size: bigint;
      userspace_addr: bigint;
      guest_memfd_offset: bigint;
    },
    guestMemfd: number,
    v1: boolean,
  ): Result<MemoryRegionChange> {
    const t = this.vmOf(fd);
    if (t === 'not-vm') return Host.unknownIoctl(this.fds.get(fd)!);
    if (!t.ok) return t;
    const lookup = (): GmemFdLookup => {
      const g = this.fds.get(guestMemfd);
      if (g === undefined) return undefined;
      return g instanceof GmemFile ? g : 'other';
    };
    const mem = v1 ? { ...region, guest_memfd_offset: 0n } : region;
    return kvmVmIoctlSetMemoryRegion(this, t.value, mem, lookup, v1);
  }

  /**
   * KVM_SET_USER_MEMORY_REGION with `struct kvm_userspace_memory_region_ext` (design-2023-
   * restrictedmem, v10 patch 03): `kvm_vm_ioctl()` reads the flags first and copies the `_ext`
   * struct only when they have KVM_MEM_PRIVATE; the memslot then takes private memory from
   * `restricted_fd` at `restricted_offset` (not open or not a restricted fd: EINVAL) beside
   * the shared memory at userspace_addr. On kernels without the series KVM_MEM_PRIVATE is
   * unknown to the v1 ioctl (EINVAL) and the rest is KVM_SET_USER_MEMORY_REGION.
   */
  kvmSetUserMemoryRegionExt(
    fd: Fd,
    region: {
      slot: bigint;
      flags: bigint;
      guest_phys_addr: bigint;
      memory_size: bigint;
      userspace_addr: bigint;
    },
    restrictedOffset: bigint,
    restrictedFd: number,
  ): Result<MemoryRegionChange> {
    const priv = (region.flags & KVM_MEM_PRIVATE) !== 0n;
    if (this.design?.restrictedFd !== true || !priv)
      return this.kvmSetUserMemoryRegion(fd, { ...region, guest_memfd_offset: 0n }, 0, true);
    const t = this.vmOf(fd);
    if (t === 'not-vm') return Host.unknownIoctl(this.fds.get(fd)!);
    if (!t.ok) return t;
    const vm = t.value;
    let bindErr: Result<never> | undefined;
    const lookup = (): GmemFdLookup => {
      const g = this.fds.get(restrictedFd);
      // v10: `fget()` finding nothing and a file that is not restricted are one -EINVAL.
      if (g === undefined) {
        bindErr = err('EINVAL', '__kvm_set_memory_region: restricted_fd not open (fget)');
        return 'other';
      }
      if (!(g instanceof RestrictedmemFile)) return 'other';
      const r = restrictedmemForVm(this, g, vm, restrictedOffset, region.memory_size);
      if (!r.ok) {
        bindErr = r;
        return 'other';
      }
      return r.value;
    };
    const r = kvmVmIoctlSetMemoryRegion(
      this,
      vm,
      { ...region, guest_memfd_offset: restrictedOffset },
      lookup,
      false,
    );
    return !r.ok && bindErr !== undefined ? bindErr : r;
  }

  /** memfd_restricted(2) (design-2023-restrictedmem; ENOSYS on kernels without the series). */
  memfdRestricted(flags: bigint): Result<Fd> {
    if (this.design?.restrictedFd !== true)
      return err('ENOSYS', 'memfd_restricted: no such system call');
    const r = memfdRestricted(flags, this.nextIno++);
    return r.ok ? ok(this.allocFd(r.value)) : r;
  }

  /**
   * address_space_create(2) (design-2020-separate-mm, mm/address_space.ts; ENOSYS on kernels
   * without the design): an fd owning an empty address space of no process.
   */
  addressSpaceCreate(flags: bigint): Result<Fd> {
    if (this.design?.addressSpaces !== true)
      return err('ENOSYS', 'address_space_create: no such system call');
    const r = addressSpaceCreate(this, flags, this.nextIno++);
    if (!r.ok) return r;
    this.guestMms.set(r.value.mm, r.value);
    return ok(this.allocFd(r.value));
  }

  /** The address space behind `asFd` for its system calls: EBADF, EINVAL (another file). */
  private addressSpaceOf(name: string, asFd: Fd): Result<AddressSpaceFile> {
    if (this.design?.addressSpaces !== true) return err('ENOSYS', `${name}: no such system call`);
    const f = this.fds.get(asFd);
    if (f === undefined) return err('EBADF', `${name}: fd not open`);
    if (!(f instanceof AddressSpaceFile)) return err('EINVAL', `${name}: not an address_space fd`);
    return ok(f);
  }

  /**
   * address_space_mmap(2) (design-2020-separate-mm): map [addr, addr + length) of the address
   * space, private anonymous memory (`src` null) or the caller's shared memory at `src`.
   */
  addressSpaceMmap(
    asFd: Fd,
    addr: bigint,
    length: bigint,
    prot: number,
    flags: number,
    src: bigint | null,
  ): Result<undefined> {
    const f = this.addressSpaceOf('address_space_mmap', asFd);
    if (!f.ok) return f;
    return addressSpaceMmap(
      f.value.mm,
      this.mm,
      asHva(addr),
      length,
      prot,
      flags,
      src === null ? null : asHva(src),
    );
  }

  /** address_space_munmap(2) (design-2020-separate-mm). */
  addressSpaceMunmap(asFd: Fd, addr: bigint, length: bigint): Result<undefined> {
    const f = this.addressSpaceOf('address_space_munmap', asFd);
    return f.ok ? addressSpaceMunmap(f.value.mm, addr, length) : f;
  }

  /**
   * KVM_MAP_ADDRESS_SPACE on a VM fd (design-2020-separate-mm, kvm/separate_mm.ts); an unknown
   * VM ioctl (ENOTTY) on other kernels.
   */
  kvmMapAddressSpace(fd: Fd, asFd: Fd): Result<undefined> {
    const t = this.vmOf(fd);
    if (t === 'not-vm') return Host.unknownIoctl(this.fds.get(fd)!);
    if (!t.ok) return t;
    if (this.design?.addressSpaces !== true)
      return err('ENOTTY', 'kvm_vm_ioctl: unknown ioctl (KVM_MAP_ADDRESS_SPACE)');
    return kvmMapAddressSpace(this, t.value, this.fds.get(asFd));
  }

  /**
   * A hardware memory error on the page at `offset` of a restricted fd or a guest_memfd (a model
   * step: `memory_failure()` reaching the file's error handler). EBADF: not open; EINVAL: not
   * such a file; otherwise ok whether or not a page was there (kvm/restrictedmem.ts).
   */
  memoryFailure(fd: Fd, offset: bigint): Result<undefined> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f instanceof RestrictedmemFile) {
      restrictedmemError(f, offset);
      return OK_VOID;
    }
    if (!(f instanceof GmemFile))
      return err('EINVAL', 'memory_failure: not a restricted fd or guest_memfd');
    memoryFailure(this, f, offset);
    return OK_VOID;
  }

  /** KVM_SET_MEMORY_ATTRIBUTES on a VM fd (ENOTTY when the kernel lacks the config). */
  kvmSetMemoryAttributes(
    fd: Fd,
    a: { address: bigint; size: bigint; attributes: bigint; flags: bigint },
  ): Result<undefined> {
    const t = this.vmOf(fd);
    if (t === 'not-vm') return Host.unknownIoctl(this.fds.get(fd)!);
    if (!t.ok) return t;
    if (!this.profile.memoryAttributesConfig) {
      // Without the config the ioctl reaches kvm_arch_vm_ioctl(): -ENOTTY on x86, -EINVAL on arm64.
      if (this.profile.parts.arch === 'arm64')
        return this.arch.vmIoctl(
          this,
          t.value,
          KVM_IOCTL.KVM_SET_MEMORY_ATTRIBUTES,
          userPtrOf({ kind: 'null' }),
        );
      return err('ENOTTY', 'KVM_SET_MEMORY_ATTRIBUTES: CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES off');
    }
    return kvmVmIoctlSetMemAttributes(this, t.value, a);
  }

  /**
   * KVM_SET_MEMORY_ATTRIBUTES2 (`_IOWR(KVMIO, 0xd2, struct kvm_memory_attributes2)`), the
   * guest_memfd ioctl of the in-place conversion series (kernel-uapi.md §6.1). On a guest_memfd
   * fd: `kvm_gmem_ioctl()`, which exists only in that series and answers -ENOTTY while
   * `kvm.vm_memory_attributes` is 1; a 6.18 guest_memfd has no ioctls (ENOTTY). On a VM fd the
   * request matches no case of `kvm_vm_ioctl()` (KVM_SET_MEMORY_ATTRIBUTES is a different size)
   * and reaches `kvm_arch_vm_ioctl()`; other files answer as for any unknown ioctl.
   */
  kvmSetMemoryAttributes2(fd: Fd, a: KvmMemoryAttributes2): GmemSetAttributesOutcome {
    const f = this.fds.get(fd);
    if (f === undefined) return { result: err('EBADF', 'fd not open') };
    if (f instanceof GmemFile) {
      if (this.profile.gmemMemoryAttributes !== true)
        return {
          result: err(
            'ENOTTY',
            this.profile.parts.gmem === 'inplace-v7'
              ? 'kvm_gmem_ioctl: vm_memory_attributes=1'
              : 'guest_memfd has no unlocked_ioctl',
          ),
        };
      return kvmGmemSetAttributes(this, f, a);
    }
    if (f instanceof VmFile) {
      const other = this.notKvmMm('vm');
      if (other !== undefined) return { result: other };
      if (f.vm.vmDead) return { result: err('EIO', 'kvm_vm_ioctl: kvm->vm_dead') };
      return {
        result: this.arch.vmIoctl(
          this,
          f.vm,
          KVM_IOCTL.KVM_SET_MEMORY_ATTRIBUTES2,
          userPtrOf({ kind: 'null' }),
        ),
      };
    }
    return { result: Host.unknownIoctl(f) };
  }

  /** KVM_CREATE_VCPU on a VM fd (`kvm_vm_ioctl_create_vcpu`); creates the trace code page. */
  kvmCreateVcpu(fd: Fd, id: bigint): Result<Fd> {
    const t = this.vmOf(fd);
    if (t === 'not-vm') return Host.unknownIoctl(this.fds.get(fd)!);
    if (!t.ok) return t;
    const vm = t.value;
    if (id >= this.profile.maxVcpuIds) return err('EINVAL', 'create_vcpu: id >= KVM_MAX_VCPU_IDS');
    if (vm.createdVcpus >= (vm.spec.maxVcpus ?? this.profile.maxVcpus))
      return err('EINVAL', 'create_vcpu: too many vCPUs');
    // kvm_arch_vcpu_create() → kvm_x86_ops.vcpu_create (tdx_vcpu_create() for a TD).
    const refused = (this.arch as Partial<X86ArchOps>).vendor?.vcpuCreate?.(this, vm);
    if (refused !== undefined) return err(refused, 'create_vcpu: vcpu_create');
    if (vm.vcpus.has(id)) return err('EEXIST', 'create_vcpu: id already exists');
    vm.createdVcpus++;
    const vcpu = new Vcpu(vm, id, vm.vcpus.size);
    // kvm_vcpu_init(): the kvm_run page; x86: the PIO data page. Zeroed.
    for (let i = 0; i < 2; i++) {
      const p = this.frames.allocOne();
      this.frames.zero(p, 1);
      vcpu.pages.push(p);
    }
    vm.vcpus.set(id, vcpu);
    vm.refs++;
    const vf = new VcpuFile(this.nextIno++, vcpu);
    vcpu.file = vf;
    const vfd = this.allocFd(vf);
    // arm64 VMs get no code page: the model interprets their guest programs itself and there is
    // no arm64 real backend that would compile them into guest memory (docs/trace-format.md).
    if (vm.codeSlot === 'none' && this.profile.parts.arch !== 'arm64') this.ensureCodeSlot(vm);
    return ok(vfd);
  }

  /**
   * The trace contract's code page: 4 KiB of anonymous memory registered as slot 32763 at GPA
   * 0xFFFFF000 with KVM_SET_USER_MEMORY_REGION, as the real backend does.
   */
  private ensureCodeSlot(vm: Vm): boolean {
    if (vm.codeSlot === 'present') return true;
    // The backend issues the memslot ioctl on the VM fd: once that is closed it cannot.
    if (vm.file === undefined || vm.file.fdRefs === 0) return false;
    if (vm.codePageHva === 0n) {
      const at = asHva(CODE_PAGE_BASE + BigInt(vm.index) * 0x20_0000n);
      const m = this.mm.mmap(
        undefined,
        BigInt(PAGE_SIZE),
        PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS,
        0n,
        at,
      );
      if (!m.ok) return false;
      vm.codePageHva = m.value;
    }
    const r = kvmVmIoctlSetMemoryRegion(
      this,
      vm,
      {
        slot: BigInt(TRACE_CODE_SLOT),
        flags: 0n,
        guest_phys_addr: TRACE_CODE_GPA,
        memory_size: 4096n,
        userspace_addr: vm.codePageHva,
        guest_memfd_offset: 0n,
      },
      () => undefined,
      true,
    );
    vm.codeSlot = r.ok ? 'present' : 'failed';
    return r.ok;
  }

  /** KVM_ENABLE_CAP on a VM fd (x86 `kvm_vm_ioctl_enable_cap`): only EXIT_HYPERCALL is modelled. */
  kvmEnableCap(fd: Fd, cap: bigint, flags: bigint, args: readonly bigint[]): Result<undefined> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f instanceof VcpuFile) {
      const other = this.notKvmMm('vcpu');
      if (other !== undefined) return other;
      if (f.vcpu.vm.vmDead) return err('EIO', 'kvm_vcpu_ioctl: kvm->vm_dead');
      return err('EINVAL', 'KVM_ENABLE_CAP on a vCPU: capability not supported');
    }
    if (!(f instanceof VmFile)) return Host.unknownIoctl(f);
    const other = this.notKvmMm('vm');
    if (other !== undefined) return other;
    if (f.vm.vmDead) return err('EIO', 'kvm_vm_ioctl: kvm->vm_dead');
    if (flags !== 0n) return err('EINVAL', 'kvm_vm_ioctl_enable_cap: flags != 0');
    // arm64's kvm_vm_ioctl_enable_cap(): none of the model's capabilities (EXIT_HYPERCALL is x86).
    if (this.profile.parts.arch === 'arm64')
      return err('EINVAL', 'kvm_vm_ioctl_enable_cap: capability not modelled on arm64');
    if (cap === BigInt(KVM_CAP.KVM_CAP_EXIT_HYPERCALL)) {
      const mask = this.profile.systemCaps.get(KVM_CAP.KVM_CAP_EXIT_HYPERCALL) ?? 0n;
      const a0 = args[0] ?? 0n;
      if ((a0 & ~mask) !== 0n)
        return err('EINVAL', 'KVM_CAP_EXIT_HYPERCALL: bits outside the valid mask');
      f.vm.hypercallExitEnabled = a0;
      return OK_VOID;
    }
    // KVM_CAP_SPLIT_IRQCHIP is modelled for TDs only (what tdx_vcpu_create() requires); its
    // in-kernel LAPIC's only effect in the model is that a TD's KVM_RUN does not read
    // kvm_run->cr8 (kvm_run.ts).
    const splitTd = this.hooks.tdxEnableSplitIrqchip;
    if (cap === BigInt(KVM_CAP_SPLIT_IRQCHIP) && f.vm.type === KVM_X86_TDX_VM && splitTd) {
      const e = splitTd(f.vm, args[0] ?? 0n);
      return e === undefined ? OK_VOID : err(e, 'KVM_CAP_SPLIT_IRQCHIP');
    }
    return err('EINVAL', 'kvm_vm_ioctl_enable_cap: capability not modelled');
  }

  /**
   * KVM_MEMORY_ENCRYPT_OP on a VM or vCPU fd. Generic `kvm_vm_ioctl()` / `kvm_vcpu_ioctl()` have
   * no case for it: it reaches the arch's `kvm_arch_vm_ioctl()` / `kvm_arch_vcpu_ioctl()`, which
   * pass it to the vendor's `mem_enc_ioctl` / `vcpu_mem_enc_ioctl` (-ENOTTY without one). On
   * /dev/kvm and other files it is their unknown-ioctl answer.
   */
  kvmMemoryEncryptOp(fd: Fd, arg: IoctlArg): Result<undefined> {
    return this.kvmArchIoctl(fd, KVM_IOCTL.KVM_MEMORY_ENCRYPT_OP, arg);
  }

  /**
   * An arch ioctl generic KVM has no case for (arm64: KVM_ARM_PREFERRED_TARGET on a VM fd,
   * KVM_ARM_VCPU_INIT and KVM_ARM_VCPU_FINALIZE on a vCPU fd; KVM_SET_TSS_ADDR): the arch's
   * `kvm_arch_vm_ioctl()` / `kvm_arch_vcpu_ioctl()` with the argument; on /dev/kvm and other
   * files their unknown-ioctl answer.
   */
  kvmArchIoctl(fd: Fd, ioctl: number, arg: IoctlArg): Result<undefined> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f instanceof VmFile) {
      const other = this.notKvmMm('vm');
      if (other !== undefined) return other;
      if (f.vm.vmDead) return err('EIO', 'kvm_vm_ioctl: kvm->vm_dead');
      return this.arch.vmIoctl(this, f.vm, ioctl, userPtrOf(arg));
    }
    if (f instanceof VcpuFile) {
      const other = this.notKvmMm('vcpu');
      if (other !== undefined) return other;
      if (f.vcpu.vm.vmDead) return err('EIO', 'kvm_vcpu_ioctl: kvm->vm_dead');
      return this.arch.vcpuIoctl(this, f.vcpu, ioctl, userPtrOf(arg));
    }
    return Host.unknownIoctl(f);
  }

  // -----------------------------------------------------------------------------------------------
  // vCPU ioctls

  private vcpuOf(fd: Fd): Result<Vcpu> {
    const t = this.ioctlTarget(fd, 'vcpu');
    if (!t.ok) return t;
    const vcpu = (t.value as VcpuFile).vcpu;
    const other = this.notKvmMm('vcpu');
    if (other !== undefined) return other;
    if (vcpu.vm.vmDead) return err('EIO', 'kvm_vcpu_ioctl: kvm->vm_dead');
    return ok(vcpu);
  }

  /**
   * The model's stand-in for the register ioctls (KVM_SET_REGS/SREGS/FPU) of a vCPU of an SEV-ES
   * or SNP VM: its 4 KiB VMSA image, which SNP_LAUNCH_FINISH syncs and measures
   * (arch/x86/svm/sev_snp.ts). EINVAL for a VM without protected state or once it was measured.
   */
  sevSetVcpuVmsa(fd: Fd, image: Uint8Array): Result<undefined> {
    const t = this.vcpuOf(fd);
    if (!t.ok) return t;
    const set = this.hooks.sevSetVcpuVmsa;
    if (set === undefined) return err('EINVAL', 'VMSA image: no SEV-ES support loaded (kvm_amd)');
    return set(this, t.value, image);
  }

  /** KVM_PRE_FAULT_MEMORY on a vCPU fd. The range is always copied back. */
  kvmPreFaultMemory(fd: Fd, gpa: bigint, size: bigint, flags: bigint): PreFaultResult {
    const t = this.vcpuOf(fd);
    if (!t.ok) return { errno: t.errno, remaining: { gpa, size } };
    // arm64 6.18 has no KVM_PRE_FAULT_MEMORY: kvm_arch_vcpu_ioctl()'s default.
    if (this.profile.parts.arch === 'arm64') return { errno: 'EINVAL', remaining: { gpa, size } };
    return kvmVcpuPreFaultMemory(this, t.value, gpa, size, flags);
  }

  /** KVM_RUN with a trace guest program. ENOEXEC when the code page cannot be put in place. */
  kvmRun(fd: Fd, steps: readonly GuestProgramStep[], policy?: MapGpaRangePolicy): RunResult {
    const t = this.vcpuOf(fd);
    if (!t.ok) return { errno: t.errno, exits: [] };
    const vm = t.value.vm;
    if (this.profile.parts.arch === 'arm64')
      return (this.arch as Arm64ArchOps).vcpuRun(this, t.value, steps);
    const vmm = policy === undefined ? undefined : this.mapGpaRangeVmm(policy);
    // A TD runs its own code from its private memory: the trace's code page plays no part.
    if (vm.type === KVM_X86_TDX_VM) return kvmRunProgram(this, t.value, steps, true, vmm);
    // The backend retries a code slot it could not create; if it still cannot, it does not run.
    if (vm.codeSlot !== 'present' && !this.ensureCodeSlot(vm))
      return { errno: 'ENOEXEC', exits: [] };
    // A trace that deleted the code slot itself: instruction fetch hits MMIO, emulation fails.
    const code = vm.slots.get(TRACE_CODE_SLOT);
    const inPlace = code !== undefined && code.baseGfn === gpaToGfn(asGpa(TRACE_CODE_GPA));
    return kvmRunProgram(this, t.value, steps, inPlace, vmm);
  }

  /** The VMM side of a KVM_HC_MAP_GPA_RANGE exit under `policy` (MapGpaRangePolicy). */
  private mapGpaRangeVmm(policy: MapGpaRangePolicy): MapGpaRangeVmm {
    if (typeof policy === 'bigint') return () => policy;
    const discard = policy === 'convert+discard';
    return (vm, [gpa, npages, attrs]) => {
      const toPrivate = (attrs & (1n << 4n)) !== 0n; // KVM_MAP_GPA_RANGE_ENCRYPTED
      const size = npages << 12n;
      // Attributes in guest_memfd (in-place conversion, vm_memory_attributes=0): the VMM converts
      // with KVM_SET_MEMORY_ATTRIBUTES2 on each bound file, in place (nothing to discard).
      if (this.profile.gmemMemoryAttributes === true)
        return this.mapGpaRangeInPlace(vm, gpa, npages, toPrivate);
      const r = kvmVmIoctlSetMemAttributes(this, vm, {
        address: gpa,
        size,
        attributes: toPrivate ? 8n : 0n,
        flags: 0n,
      });
      if (!r.ok) return BigInt(ERRNO_NUMBERS[r.errno]);
      if (!discard) return 0n;
      const g0 = Number(gpa >> 12n);
      const g1 = g0 + Number(npages);
      const slots = new Set<Memslot>();
      vm.slotsByGfn[0]!.forEachIn(g0, g1, (_s, _e, v) => void slots.add(v));
      for (const slot of slots) {
        const s = Math.max(g0, slot.baseGfn);
        const end = Math.min(g1, slot.baseGfn + slot.npages);
        if (end <= s) continue;
        const len = BigInt(end - s) << 12n;
        if (toPrivate) {
          // The shared copy: madvise(MADV_DONTNEED) (QEMU: ram_block_discard_range()).
          const hva = BigInt(slot.userspaceAddr) + (BigInt(s - slot.baseGfn) << 12n);
          this.mm.madvise(asHva(hva), len, 4);
        } else if (slot.gmem?.file != null) {
          // The private copy (QEMU: ram_block_discard_guest_memfd_range()).
          const off = BigInt(slot.gmem.pgoff + (s - slot.baseGfn)) << 12n;
          this.vfsFallocate(slot.gmem.file, 0x03, off, len, 'fallocate');
        }
      }
      return 0n;
    };
  }

  /**
   * The model VMM's conversion for a KVM_HC_MAP_GPA_RANGE exit when attributes live in
   * guest_memfd (QEMU's `kvm_convert_memory()` with in-place conversion): KVM_SET_MEMORY_ATTRIBUTES2
   * on the guest_memfd of every memslot the range covers, for the file range it binds; 0, or the
   * first failure's errno number (EAGAIN while a folio is referenced, EINVAL where no guest_memfd
   * backs the range). The memory is converted in place, so there is no other copy to discard.
   */
  private mapGpaRangeInPlace(vm: Vm, gpa: bigint, npages: bigint, toPrivate: boolean): bigint {
    const g0 = Number(gpa >> 12n);
    const g1 = g0 + Number(npages);
    let at = g0;
    const runs: [Memslot, number, number][] = [];
    vm.slotsByGfn[0]!.forEachIn(g0, g1, (s0, e0, slot) => {
      const s = Math.max(s0, g0);
      if (s > at) return false;
      const e = Math.min(e0, g1);
      runs.push([slot, s, e]);
      at = e;
      return true;
    });
    if (at < g1) return BigInt(ERRNO_NUMBERS.EINVAL);
    for (const [slot, s, e] of runs) {
      const f = slot.gmem?.file;
      if (f == null || f.released) return BigInt(ERRNO_NUMBERS.EINVAL);
      const start = slot.gmem!.pgoff + (s - slot.baseGfn);
      const r = kvmGmemSetAttributesRange(
        this,
        f,
        asPgOff(start),
        asPgOff(start + (e - s)),
        toPrivate ? GMEM_ATTR_PRIVATE : 0,
      );
      if (r !== undefined) return BigInt(ERRNO_NUMBERS[r.errno]);
    }
    return 0n;
  }

  // -----------------------------------------------------------------------------------------------
  // file syscalls

  /** fallocate(2): ksys_fallocate → vfs_fallocate checks → ->fallocate. */
  fallocate(fd: Fd, mode: number, offset: bigint, len: bigint): Result<undefined> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'std') return err('EBADF', 'fallocate on a std stream');
    return this.vfsFallocate(f, mode, offset, len, 'fallocate');
  }

  /** `vfs_fallocate()`: generic checks in kernel order, then the file's ->fallocate. */
  vfsFallocate(
    f: KFile,
    mode: number,
    offset: bigint,
    len: bigint,
    via: 'fallocate' | 'madv_remove',
  ): Result<undefined> {
    const off = BigInt.asIntN(64, offset);
    const ln = BigInt.asIntN(64, len);
    if (off < 0n || ln <= 0n) return err('EINVAL', 'vfs_fallocate: offset < 0 or len <= 0');
    const MODE_MASK = 0x02 | 0x08 | 0x10 | 0x20 | 0x40 | 0x80;
    if ((mode & ~(MODE_MASK | 0x01)) !== 0)
      return err('EOPNOTSUPP', 'vfs_fallocate: unknown mode bits');
    switch (mode & MODE_MASK) {
      case 0:
      case 0x40:
      case 0x10:
        break;
      case 0x02:
        if ((mode & 0x01) === 0)
          return err('EOPNOTSUPP', 'vfs_fallocate: PUNCH_HOLE without KEEP_SIZE');
        break;
      case 0x08:
      case 0x20:
      case 0x80:
        if ((mode & 0x01) !== 0)
          return err('EOPNOTSUPP', 'vfs_fallocate: KEEP_SIZE with COLLAPSE/INSERT/WRITE_ZEROES');
        break;
      default:
        return err('EOPNOTSUPP', 'vfs_fallocate: invalid mode combination');
    }
    // design-2023-restrictedmem: a restricted fd is S_IFREG on its pseudo filesystem.
    if (f instanceof RestrictedmemFile) {
      if (off + ln > (1n << 63n) - 1n)
        return err('EFBIG', 'vfs_fallocate: offset + len beyond s_maxbytes');
      return restrictedmemFallocate(this, f, mode, off, ln);
    }
    // Only guest_memfd is a regular file among KVM's files (/dev/kvm is a char device, VM and
    // vCPU fds are anonymous inodes without a file type).
    if (!(f instanceof GmemFile)) return err('ENODEV', 'vfs_fallocate: not a regular file');
    if (off + ln > (1n << 63n) - 1n)
      return err('EFBIG', 'vfs_fallocate: offset + len beyond s_maxbytes');
    return kvmGmemFallocate(this, f, mode, off, ln, via);
  }

  /** ftruncate(2): guest_memfd's setattr refuses everything; other files are not regular. */
  ftruncate(fd: Fd, length: bigint): Result<undefined> {
    if (BigInt.asIntN(64, length) < 0n) return err('EINVAL', 'do_sys_ftruncate: length < 0');
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'std') return err('EBADF', 'ftruncate on a std stream');
    if (f instanceof GmemFile) return err('EINVAL', 'kvm_gmem_setattr: -EINVAL');
    if (f instanceof RestrictedmemFile) return restrictedmemSetSize(f, length);
    return err('EINVAL', 'do_ftruncate: not a regular file');
  }

  /** pread(2): negative offset is EINVAL before the fd is looked up. */
  pread(fd: Fd, len: bigint, offset: bigint): Result<Uint8Array> {
    if (BigInt.asIntN(64, offset) < 0n) return err('EINVAL', 'ksys_pread64: pos < 0');
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'std') return err('EBADF', 'pread on a std stream');
    if (f.kind === 'kvm') return err('EINVAL', 'vfs_read: /dev/kvm has no read');
    if (f instanceof RestrictedmemFile && this.mutants.has('restrictedmem_fd_is_memfd'))
      return restrictedmemReadMutant(this, f, len, offset);
    void len;
    return err('ESPIPE', 'ksys_pread64: no FMODE_PREAD (anon inode)');
  }

  /** pwrite(2). */
  pwrite(fd: Fd, bytes: Uint8Array, offset: bigint): Result<bigint> {
    if (BigInt.asIntN(64, offset) < 0n) return err('EINVAL', 'ksys_pwrite64: pos < 0');
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'std') return err('EBADF', 'pwrite on a std stream');
    if (f.kind === 'kvm') return err('EINVAL', 'vfs_write: /dev/kvm has no write');
    void bytes;
    return err('ESPIPE', 'ksys_pwrite64: no FMODE_PWRITE (anon inode)');
  }

  /** fstat(2). guest_memfd: st_size = i_size, st_blocks = 0 always. */
  fstat(fd: Fd): Result<FileStat> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'std') return err('EBADF', 'fstat on a std stream');
    if (f instanceof GmemFile) return ok({ size: f.size, blocks: 0n, mode: 0o100600, ino: f.ino });
    // design-2023-restrictedmem: restrictedmem_getattr() forwards to the shmem memfd, which
    // counts its pages in 512-byte blocks.
    if (f instanceof RestrictedmemFile) {
      const pages = f.inner === undefined ? 0 : f.inner.pages.totalCovered();
      return ok({ size: f.size, blocks: BigInt(pages) * 8n, mode: 0o100600, ino: f.ino });
    }
    if (f.kind === 'kvm') return ok({ size: 0n, blocks: 0n, mode: 0o020600, ino: f.ino });
    return ok({ size: 0n, blocks: 0n, mode: 0o600, ino: f.ino });
  }

  /**
   * pipe2(2) (fs/pipe.c `do_pipe2()`): flags other than O_CLOEXEC, O_NONBLOCK, O_DIRECT and
   * O_NOTIFICATION_PIPE are EINVAL; the read end takes the lowest free fd, the write end the next.
   * O_CLOEXEC, O_NONBLOCK and O_DIRECT change nothing the model observes (vmsplice follows
   * SPLICE_F_NONBLOCK only); a notification pipe (watch_queue) is not modelled.
   */
  pipe2(flags: number): Result<readonly [Fd, Fd]> {
    const direct = this.profile.parts.arch === 'arm64' ? O_DIRECT_ARM64 : O_DIRECT;
    if ((flags & ~(O_CLOEXEC | O_NONBLOCK | direct | O_NOTIFICATION_PIPE)) !== 0)
      return err('EINVAL', 'do_pipe2: unknown flags');
    if ((flags & O_NOTIFICATION_PIPE) !== 0)
      throw new NotModelled('pipe2(O_NOTIFICATION_PIPE): watch_queue pipes are not modelled');
    const inode = new PipeInode();
    const r = this.allocFd(new PipeFile(this.nextIno, inode, false));
    const w = this.allocFd(new PipeFile(this.nextIno++, inode, true));
    return ok([r, w] as const);
  }

  /** vmsplice(2) with one iovec {addr, len} (vfs/splice.ts). */
  vmsplice(fd: Fd, addr: bigint, len: bigint, flags: number): Result<number> {
    const f = this.fds.get(fd);
    return vmsplice(this.mm, f, asHva(addr), len, flags);
  }

  /** close(2). */
  close(fd: Fd): Result<undefined> {
    const f = this.fds.get(fd);
    if (f === undefined) return err('EBADF', 'fd not open');
    if (f.kind === 'std') return err('EBADF', 'close of a std stream');
    this.fds.delete(fd);
    f.fdRefs--;
    this.maybeRelease(f);
    return OK_VOID;
  }

  // -----------------------------------------------------------------------------------------------
  // memory syscalls and VMM accesses

  /** mmap(2) of an fd (null: MAP_ANONYMOUS requested by the caller) at the arena cursor. */
  mmap(fd: Fd | null, length: bigint, prot: number, flags: number, offset: bigint): Result<bigint> {
    let file: KFile | null | undefined;
    if (fd === null) file = undefined;
    else {
      const f = this.fds.get(fd);
      file = f === undefined || f.kind === 'std' ? null : f;
    }
    const fl = fd === null ? flags | MAP_ANONYMOUS : flags;
    return this.mm.mmap(file, length, prot, fl, offset);
  }

  munmap(addr: bigint, length: bigint): Result<undefined> {
    return this.mm.munmap(asHva(addr), length);
  }

  mprotect(addr: bigint, length: bigint, prot: number): Result<undefined> {
    return this.mm.mprotect(asHva(addr), length, prot);
  }

  madvise(addr: bigint, length: bigint, advice: number): Result<undefined> {
    return this.mm.madvise(asHva(addr), length, advice);
  }

  /** A VMM read of `len` bytes at `addr`. */
  peek(addr: bigint, len: number): UserAccess {
    return this.vmmAccess(asHva(addr), len, null);
  }

  /** A VMM write of `bytes` at `addr`. */
  poke(addr: bigint, bytes: Uint8Array): UserAccess {
    return this.vmmAccess(asHva(addr), bytes.length, bytes);
  }

  /** A load or store by the current process, in its own address space. */
  private vmmAccess(addr: Hva, len: number, bytes: Uint8Array | null): UserAccess {
    const r = this.mm.access(addr, len, bytes);
    // Mutant: an address the process has nothing at is served from an address space of no
    // process (design-2020-separate-mm), as a remote access given the VM's mm would.
    if (this.guestMms.size !== 0 && this.mutants.has('vmm_access_reaches_guest_mm') && !r.ok)
      for (const mm of this.guestMms.keys())
        if (mm.vmaAt(hvaToHvpn(addr)) !== undefined) return mm.access(addr, len, bytes);
    return r;
  }
}
