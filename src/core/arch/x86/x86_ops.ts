/**
 * `struct kvm_x86_ops` (arch/x86/include/asm/kvm_host.h): the operations of the vendor module that
 * backs /dev/kvm on an x86 host (kvm_intel's `vt_x86_ops`, kvm_amd's `svm_x86_ops`, kvm_pvm's
 * `pvm_x86_ops`), as far as the model needs them. x86 code calls them through `x86Ops(k)`, the
 * way the kernel calls `kvm_x86_call(op)`; an op that a vendor leaves out is the kernel's NULL
 * static call (`KVM_X86_OP_OPTIONAL`), and its caller's default applies.
 *
 * Intel TDX (vmx/tdx.c) and AMD SEV-SNP (svm/sev.c) plug in here: they are VM types of the VMX and
 * SVM modules, which dispatch on the VM's type inside their ops (`vt_gmem_*` → `tdx_*` for a TD).
 */
import type { KernelCtx } from '../../ctx.js';
import type { Errno } from '../../base/errno.js';
import type { Result } from '../../base/result.js';
import type { UserPtr } from '../../base/uaccess.js';
import type { KvmModule } from '../../profiles/facts.js';
import type { Gfn, MappingLevel, Pfn } from '../../base/units.js';
import type { FaultOutcome, KvmArchOps } from '../../kvm/arch_ops.js';
import type { KvmVcpuStat, Vcpu, Vm } from '../../kvm/objects.js';

/** One PSC descriptor entry (`struct psc_entry`, arch/x86/include/asm/sev-common.h). */
export type PscEntry = {
  curPage: number;
  readonly gfn: bigint;
  readonly op: number;
  readonly pageSize: 0 | 1;
};

/** A PSC descriptor (`struct psc_buffer`: the header's cur_entry/end_entry and the entries). */
export type PscDesc = {
  curEntry: number;
  readonly endEntry: number;
  readonly entries: PscEntry[];
};

/**
 * A KVM_HC_MAP_GPA_RANGE exit to the VMM (`args`: gpa, npages, attributes): returns the value
 * the VMM wrote to `hypercall.ret`.
 */
export type MapGpaRangeExit = (args: readonly [bigint, bigint, bigint]) => bigint;

/** What the RMP check of one SNP guest page access gives (svm/sev_guest.ts). */
export type SnpAccessCheck =
  /** The access proceeds. */
  | 'ok'
  /** #VC: C=1 on an unvalidated page. */
  | 'vc'
  /** #NPF (RMP) that KVM fixed (PSMASH and zap): the guest retries the access. */
  | 'retry'
  /** #NPF (RMP) for which the fault path gives a KVM_EXIT_MEMORY_FAULT (implicit conversion). */
  | 'memfault'
  /** #NPF (RMP) that KVM cannot resolve: the guest re-faults until the VMM interrupts it. */
  | 'spin';

/** The outcome of one PVALIDATE after the nested walk. */
export type PvalidateResult =
  | { readonly kind: 'done'; readonly ret: number; readonly cf: 0 | 1 }
  | { readonly kind: 'retry' }
  /** #NPF (RMP) on a gfn that is not PRIVATE: the implicit-conversion memory-fault exit. */
  | { readonly kind: 'memfault' }
  | { readonly kind: 'spin' };

/**
 * The SEV-SNP guest side of KVM_RUN (kvm_amd's svm/sev_guest.ts): the RMP check of an access,
 * PVALIDATE, and the page-state change VMGEXITs KVM forwards to the VMM.
 */
export interface SnpGuestOps {
  checkAccess(
    k: KernelCtx,
    vm: Vm,
    gfn: Gfn,
    pfn: Pfn,
    level: MappingLevel,
    enc: boolean,
  ): SnpAccessCheck;
  pvalidate(
    k: KernelCtx,
    vm: Vm,
    gfn: Gfn,
    pfn: Pfn,
    size: '4K' | '2M',
    validate: boolean,
  ): PvalidateResult;
  /** A GHCB MSR protocol PSC request for `gfn` / `op`: the GHCB MSR value the guest reads back. */
  pscMsr(vm: Vm, gfn: bigint, op: number, exit: MapGpaRangeExit): bigint;
  /** A PSC NAE event on `desc` (updated in place): SW_EXITINFO2. */
  psc(k: KernelCtx, vm: Vm, desc: PscDesc, exit: MapGpaRangeExit): bigint;
  /** The #VC error code of a C=1 access to an unvalidated page. */
  readonly vcPageNotValidated: bigint;
  /** The GHCB MSR of the termination request a guest sends after an unhandled #VC. */
  readonly termUnhandledVc: bigint;
  /** PVALIDATE's FAIL_INPUT (a misaligned address). */
  readonly pvalidateFailInput: number;
}

/** What the CPU and the TDX module did with one TD guest access (vmx/tdx_guest.ts). */
export type TdxAccessResult =
  /** The access proceeds on `pfn` (a MAPPED private page, or the shared EPT's frame). */
  | { readonly kind: 'ok'; readonly pfn: Pfn }
  /** A shared access that KVM's fault path turned into emulated MMIO (no memslot). */
  | { readonly kind: 'mmio' }
  /** KVM_EXIT_MEMORY_FAULT at `gpa` (KVM_RUN fails with `errno`). */
  | {
      readonly kind: 'memfault';
      readonly gpa: bigint;
      readonly flags: bigint;
      readonly errno: Errno;
    }
  /** A PENDING private page with SEPT_VE_DISABLE clear: #VE in the guest. */
  | { readonly kind: 've'; readonly gpa: bigint }
  /**
   * A PENDING private page with SEPT_VE_DISABLE set: the EPT violation KVM treats as "Guest
   * access before accepting" (`kvm_vm_dead()`, KVM_RUN -EIO).
   */
  | { readonly kind: 'dead'; readonly gpa: bigint }
  /** An error of KVM's own (a failed PAGE.AUG, TDH.VP.ENTER): KVM_RUN fails with `errno`. */
  | { readonly kind: 'error'; readonly errno: Errno }
  /** The guest re-faults without progress until the VMM interrupts it (EINTR). */
  | { readonly kind: 'spin' };

/** What TDG.MEM.PAGE.ACCEPT gave the guest after KVM handled the TD exits it caused. */
export type TdxAcceptResult =
  | { readonly kind: 'status'; readonly status: bigint }
  | Extract<TdxAccessResult, { kind: 'memfault' | 'error' | 'spin' }>;

/** The result a TDG.VP.VMCALL<MapGPA> gave the guest: R10 (status) and R11. */
export type TdvmcallResult = { readonly status: bigint; readonly r11: bigint };

/**
 * The TDX guest side of KVM_RUN (kvm_intel's vmx/tdx_guest.ts): `tdx_vcpu_pre_run()`, entering and
 * leaving the TD (TDH.VP.ENTER, a TD exit), a guest access through the S-EPT or the shared EPT
 * with KVM's EPT-violation handling, TDG.MEM.PAGE.ACCEPT, TDG.VP.VMCALL<MapGPA> and
 * <ReportFatalError>.
 */
export interface TdxGuestOps {
  /** `tdx_vcpu_pre_run()`: the errno KVM_RUN returns, or undefined to run. */
  preRun(k: KernelCtx, vcpu: Vcpu): Errno | undefined;
  /** TDH.VP.ENTER (`tdx_vcpu_run()`): the module's status (0: the vCPU runs in the TD). */
  enter(k: KernelCtx, vcpu: Vcpu): bigint;
  /** A TD exit to KVM that goes on to userspace (the vCPU leaves the TD). */
  exit(k: KernelCtx, vcpu: Vcpu): void;
  /** One guest access to one page at `gpa` (`shared`: the guest PTE sets the shared bit). */
  access(
    k: KernelCtx,
    vcpu: Vcpu,
    gpa: bigint,
    write: boolean,
    shared: boolean,
    stat: KvmVcpuStat,
  ): TdxAccessResult;
  /** TDG.MEM.PAGE.ACCEPT of `gpa` at `size`. */
  accept(
    k: KernelCtx,
    vcpu: Vcpu,
    gpa: bigint,
    size: '4K' | '2M',
    stat: KvmVcpuStat,
  ): TdxAcceptResult;
  /**
   * TDG.VP.VMCALL<MapGPA> of [gpa, gpa + size) (`gpa` as the guest passes it, shared bit
   * included): `tdx_map_gpa()`'s checks, then KVM_HC_MAP_GPA_RANGE exits of at most 2 MiB each
   * through `exit`, completed by `tdx_complete_vmcall_map_gpa()`. `stop`: after an exit, whether
   * the next KVM_RUN failed before completing it (the run ends there).
   */
  mapGpa(
    k: KernelCtx,
    vcpu: Vcpu,
    gpa: bigint,
    size: bigint,
    exit: MapGpaRangeExit,
    stop: () => boolean,
  ): TdvmcallResult | undefined;
  /** The shared-bit of the TD's GPAs (bit 47 or 51). */
  sharedBit(vm: Vm): bigint;
  /** Whether `kvm_vm_dead()` was called on the TD (its ioctls are -EIO). */
  dead(vm: Vm): boolean;
}

export interface KvmX86Ops {
  /** The vendor module (`/sys/module/<name>`). */
  readonly name: KvmModule;
  /**
   * How the vCPU reaches guest memory: through stage-2 page tables that the hardware walks
   * ('stage2'; faults take the KVM MMU's fault path), or through KVM's instruction emulator, which
   * reads and writes guest memory with uaccess on the memslot's userspace_addr ('emulated': the PVM
   * module with guest paging off).
   */
  readonly guestMemoryAccess: 'stage2' | 'emulated';
  /**
   * Resolve one guest page access of a running vCPU (address space 0). `encrypted`: the access's
   * encryption bit (SEV-SNP's C-bit; absent: a shared access). `stat`: the vCPU's counters, which
   * a stage-2 fault bumps (`kvm_mmu_page_fault()`); the emulated path takes no such fault.
   */
  translate(
    k: KernelCtx,
    vm: Vm,
    gfn: Gfn,
    write: boolean,
    encrypted?: boolean,
    stat?: KvmVcpuStat,
  ): FaultOutcome;
  /**
   * What VMCALL does: 'emulate' = the exit handler runs `kvm_emulate_hypercall()`; 'spin' = the
   * instruction never completes (the PVM module), so the vCPU re-executes it until a signal ends
   * KVM_RUN with EINTR.
   */
  readonly vmcall: 'emulate' | 'spin';
  /**
   * `kvm_x86_ops.gmem_prepare` (`sev_gmem_prepare` on SEV-SNP): make a guest_memfd folio of
   * 2^order pages at `pfn` usable as private memory of `vm` at `gfn` (RMPUPDATE), before its
   * first guest mapping. Optional (NULL on VMX and non-SNP SVM): nothing to prepare.
   */
  gmemPrepare?(k: KernelCtx, vm: Vm, pfn: Pfn, gfn: Gfn, order: number): Errno | undefined;
  /**
   * `kvm_x86_ops.gmem_invalidate` (`sev_gmem_invalidate`): frames [start, end) leave guest_memfd
   * (`kvm_gmem_free_folio()`), so the platform must make them host-owned again. Optional.
   */
  gmemInvalidate?(k: KernelCtx, start: Pfn, end: Pfn): void;
  /**
   * `kvm_x86_ops.gmem_max_mapping_level` (6.18's name for `private_max_mapping_level`): the
   * largest level the platform lets a guest_memfd frame be mapped at (`sev_gmem_max_mapping_level`
   * from the RMP entry, `tdx_gmem_max_mapping_level`: 4K), or 0 for no limit of its own.
   * Optional (RET0). Asked only for a folio large enough for a huge mapping
   * (`kvm_max_private_mapping_level()`).
   */
  gmemMaxMappingLevel?(k: KernelCtx, vm: Vm, pfn: Pfn): MappingLevel | 0;
  /**
   * `kvm_x86_ops.mem_enc_ioctl`: KVM_MEMORY_ENCRYPT_OP on a VM fd, `argp` the user's pointer to
   * the vendor's command struct (`vt_mem_enc_ioctl` → `tdx_vm_ioctl()` for a TD,
   * `sev_mem_enc_ioctl`). Optional: NULL makes the ioctl -ENOTTY (`kvm_arch_vm_ioctl()`).
   */
  memEncIoctl?(k: KernelCtx, vm: Vm, argp: UserPtr): Result<undefined>;
  /**
   * `kvm_x86_ops.vcpu_mem_enc_ioctl`: KVM_MEMORY_ENCRYPT_OP on a vCPU fd (TDX's per-vCPU
   * commands). Optional: NULL makes the ioctl -ENOTTY (`kvm_arch_vcpu_ioctl()`).
   */
  vcpuMemEncIoctl?(k: KernelCtx, vcpu: Vcpu, argp: UserPtr): Result<undefined>;
  /**
   * `kvm_x86_ops.vcpu_create`'s refusals for `vm` (`tdx_vcpu_create()`: a TD must be initialized,
   * -EIO, and have a split irqchip, -EINVAL), checked by KVM_CREATE_VCPU after the vCPU count and
   * before the id's uniqueness. Optional: no refusal.
   */
  vcpuCreate?(k: KernelCtx, vm: Vm): Errno | undefined;
  /**
   * The TDP MMU's mirror root (`kvm_has_mirrored_tdp()`: VM types with `mirroredTdp`) installing a
   * private leaf: `link_external_spt` for each missing level, then `set_external_spte`
   * (`tdx_sept_link_private_spt()`, `tdx_sept_set_private_spte()`). An errno fails the fault (the
   * SPTE is not installed). Called only for VMs whose type has a mirror root.
   */
  setExternalSpte?(
    k: KernelCtx,
    vm: Vm,
    gfn: Gfn,
    level: MappingLevel,
    pfn: Pfn,
  ): Errno | undefined;
  /**
   * `kvm_gfn_direct_bits(kvm)` (`kvm->arch.gfn_direct_bits`): gfn bits that make a GPA an alias of
   * another (a TD's shared bit, set by KVM_TDX_INIT_VM). Optional: 0.
   */
  gfnDirectBits?(vm: Vm): bigint;
  /**
   * The mirror root dropping a present private leaf (`remove_external_spte` →
   * `tdx_sept_remove_private_spte()`), before the SPTE goes.
   */
  removeExternalSpte?(k: KernelCtx, vm: Vm, gfn: Gfn, level: MappingLevel, pfn: Pfn): void;
  /**
   * `kvm_x86_ops.vm_destroy` with the vCPU frees of `kvm_arch_destroy_vm()` (`sev_vm_destroy()`,
   * `sev_free_vcpu()`: VMSA frames back to the hypervisor, the SNP context decommissioned, the
   * ASID freed). Optional.
   */
  vmDestroy?(k: KernelCtx, vm: Vm): void;
  /**
   * The SEV-SNP guest side for `vm` when it is an SNP guest (`sev_snp_guest()`; kvm_amd), else
   * undefined: its guest steps run as a normal guest's. Optional.
   */
  snpGuest?(vm: Vm): SnpGuestOps | undefined;
  /**
   * The TDX guest side for `vm` when it is a TD (`is_td(kvm)`; kvm_intel), else undefined: its
   * guest steps run as a normal guest's. Optional.
   */
  tdxGuest?(vm: Vm): TdxGuestOps | undefined;
}

/** The x86 implementation of the generic arch ops, with the vendor module it was built for. */
export interface X86ArchOps extends KvmArchOps<KernelCtx> {
  readonly vendor: KvmX86Ops;
}

/** `kvm_x86_ops` of this host: the x86 arch ops are the only ones a KernelCtx has on x86. */
export function x86Ops(k: KernelCtx): KvmX86Ops {
  return (k.arch as X86ArchOps).vendor;
}
