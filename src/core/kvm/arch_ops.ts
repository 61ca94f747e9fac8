/**
 * The architecture's operations that generic KVM code calls, in the spirit of `kvm_x86_ops` and
 * the `kvm_arch_*()` hooks: generic code (memslots, memory attributes, guest_memfd, pre-fault)
 * never imports arch code; it calls these through the context (`KernelCtx.arch`). x86 implements
 * them in arch/x86/ops.ts; TDX, SEV-SNP and pKVM plug in here.
 */
import type { Errno } from '../base/errno.js';
import type { ZapSource } from '../base/events.js';
import type { Err, Result } from '../base/result.js';
import type { UserPtr } from '../base/uaccess.js';
import type { Gfn, Hvpn, Pfn } from '../base/units.js';
import type { Memslot, Vcpu, Vm } from './objects.js';

/** KVM_PRE_FAULT_MEMORY's in/out range (`struct kvm_pre_fault_memory`). */
export type PreFaultRange = { gpa: bigint; size: bigint };

/**
 * What a stage-2 page fault resolved to (`kvm_mmu_do_page_fault()` → RET_PF_*): the frame that
 * backs the page (a number, so the fault path allocates no result object), or why there is none
 * (`FaultExit`).
 */
export type FaultOutcome = Pfn | FaultExit;

/** Why a guest access has no frame: emulated MMIO, or a memory fault exit with its errno. */
export type FaultExit =
  | { readonly kind: 'mmio' }
  | {
      readonly kind: 'memfault';
      readonly errno: Errno;
      readonly flags: bigint;
      /**
       * RET_PF_USER (design-2023-restrictedmem, UPM v10's `kvm_do_memory_fault_exit()`): KVM_RUN
       * returns 0 with the exit instead of failing with `errno`.
       */
      readonly user?: true;
    };

/** The MMIO outcome (one shared object: it carries nothing else). */
export const FAULT_MMIO: FaultExit = Object.freeze({ kind: 'mmio' });

/** `K` is the kernel context the ops receive (KernelCtx; generic so that this file needs no import of it). */
export interface KvmArchOps<K> {
  /**
   * How a running vCPU reaches guest memory: through stage-2 mappings (the hardware walks them;
   * faults take the MMU's fault path) or through an instruction emulator using uaccess on
   * userspace_addr (x86's PVM module). Invariants and explanations read it.
   */
  readonly guestMemoryAccess: 'stage2' | 'emulated';
  /** `kvm_unmap_gfn_range()`: zap stage-2 mappings of gfns [start, end); how many were zapped. */
  unmapGfnRange(k: K, vm: Vm, as: number, start: Gfn, end: Gfn, source: ZapSource): number;
  /** `kvm_flush_remote_tlbs()`. */
  flushRemoteTlbs(k: K, vm: Vm, source: ZapSource): void;
  /**
   * One MMU invalidation of gfns [start, end) (`kvm_mmu_invalidate_begin()`, unmap, flush,
   * `kvm_mmu_invalidate_end()`), as guest_memfd's invalidation runs it.
   */
  invalidateGfnRange(k: K, vm: Vm, as: number, start: Gfn, end: Gfn, source: ZapSource): void;
  /**
   * `kvm_split_cross_boundary_leafs()` (the HugeTLB guest_memfd wip tree): split every huge
   * private mapping of address space `as` that crosses `start` or `end` into 4K mappings of the
   * same frames, so a zap of [start, end) leaves the rest mapped. Absent: the arch maps guest_memfd
   * at 4K only.
   */
  splitHugeLeafs?(k: K, vm: Vm, as: number, start: Gfn, end: Gfn): void;
  /** `kvm_arch_flush_shadow_memslot()`: the zap for a memslot DELETE or MOVE. */
  flushShadowMemslot(k: K, vm: Vm, slot: Memslot, source: 'memslot_delete' | 'memslot_move'): void;
  /**
   * `kvm_arch_vcpu_pre_fault_memory()`: one step of KVM_PRE_FAULT_MEMORY, mapping the first page
   * of `range`: how many bytes of the range are now mapped (> 0), or an errno.
   */
  vcpuPreFaultMemory(k: K, vcpu: Vcpu, range: PreFaultRange): bigint | Errno;
  /**
   * `kvm_arch_pre_set_memory_attributes()` for one memslot range of a KVM_SET_MEMORY_ATTRIBUTES:
   * drop the mappings the change invalidates. Returns how many pages were zapped (the caller
   * flushes TLBs when any were).
   */
  preSetMemoryAttributes(k: K, vm: Vm, as: number, start: Gfn, end: Gfn): number;
  /** `kvm_arch_post_set_memory_attributes()` for one memslot after the attributes changed. */
  postSetMemoryAttributes(k: K, vm: Vm, slot: Memslot, start: Gfn, end: Gfn): void;
  /**
   * `kvm_alloc_memslot_metadata()` (from `kvm_arch_prepare_memory_region()`) for a memslot
   * being created or moved: the arch's per-slot state (x86: lpage_info and its mixed flags).
   */
  allocMemslotMetadata(k: K, vm: Vm, slot: Memslot): void;
  /**
   * `kvm_arch_prepare_memory_region()`'s checks of a memslot being created or moved, whose last
   * gfn is `last`: why the arch refuses it (-EINVAL), or undefined.
   */
  memslotLastGfnInvalid(k: K, vm: Vm, last: Gfn): string | undefined;
  /**
   * The rest of `kvm_arch_prepare_memory_region()` for a memslot `slot` being created or moved to
   * [base, base + npages), after `memslotLastGfnInvalid()`: the arch's refusal with its errno
   * (arm64: -EFAULT past the IPA limit, -EINVAL for a guest_memfd slot that is not gmem-only), or
   * undefined. Optional: nothing more to check (x86).
   */
  prepareMemoryRegion?(k: K, vm: Vm, slot: Memslot, base: Gfn, npages: number): Err | undefined;
  /**
   * `kvm_mmu_notifier_invalidate_range_start()` for host virtual pages [s, e) as this arch runs
   * it. Optional: x86's (arch/x86/mmu.ts), which the host installs when absent.
   */
  mmuNotifierInvalidate?(k: K, vm: Vm, s: Hvpn, e: Hvpn): void;
  /**
   * `kvm_arch_gmem_prepare()`: called by guest_memfd when a folio is first used for a guest fault
   * (`__kvm_gmem_prepare_folio()`, after zeroing, before it is marked up-to-date), with the gfn
   * it is about to be mapped at. An errno fails the fault with it; undefined is success.
   */
  gmemPrepare(k: K, vm: Vm, pfn: Pfn, gfn: Gfn, order: number): Errno | undefined;
  /**
   * `kvm_arch_gmem_invalidate()`: frames [start, end) leave guest_memfd
   * (`kvm_gmem_free_folio()`), before the page allocator gets them back.
   */
  gmemInvalidate(k: K, start: Pfn, end: Pfn): void;
  /**
   * `kvm_arch_vm_ioctl()`: a VM ioctl generic `kvm_vm_ioctl()` has no case for, with its
   * `void __user *` argument; an ioctl the arch does not know gets its default (x86: -ENOTTY).
   * The model routes KVM_MEMORY_ENCRYPT_OP here.
   */
  vmIoctl(k: K, vm: Vm, ioctl: number, argp: UserPtr): Result<undefined>;
  /** `kvm_arch_vcpu_ioctl()` likewise for a vCPU ioctl (x86's default: -EINVAL). */
  vcpuIoctl(k: K, vcpu: Vcpu, ioctl: number, argp: UserPtr): Result<undefined>;
  /**
   * `kvm_arch_destroy_vm()` as far as the arch's own per-VM state goes (x86: the vendor's
   * `vm_destroy` and vCPU frees), called when the last reference goes, before the vCPUs' pages
   * are freed. Optional: nothing to do.
   */
  destroyVm?(k: K, vm: Vm): void;
  /**
   * The arch part of `kvm_arch_init_vm()` at KVM_CREATE_VM, after the type was accepted (arm64 on
   * a pKVM host: `pkvm_init_host_vm()` reserves the VM's hypervisor handle): an errno fails the
   * create. None: nothing to do.
   */
  initVm?(k: K, vm: Vm): Errno | undefined;
}
