/**
 * The narrow interface the model's mechanism files use to reach each other (the kernel's
 * cross-subsystem calls: fput, vfs_fallocate, ...). `Host` implements it; keeping it here avoids
 * import cycles between the mechanism files. mm sees only its part of it (mm/mm_ctx.ts).
 */
import type { KvmArchOps } from './kvm/arch_ops.js';
import type { GmemBacking } from './kvm/guest_memfd/backing.js';
import type { DesignOps } from './kvm/design_ops.js';
import type { Vm } from './kvm/objects.js';
import type { HostMm } from './mm/host_mm.js';
import type { HugetlbPools } from './mm/hugetlb.js';
import type { MmCtx } from './mm/mm_ctx.js';
import type { KFile } from './vfs/file.js';
import type { PgOff } from './base/units.js';

export interface KernelCtx extends MmCtx {
  /** The VMM process's address space. */
  readonly mm: HostMm;
  /** Every live VM. */
  readonly vms: ReadonlySet<Vm>;
  /** The architecture's operations (`kvm_x86_ops`, `kvm_arch_*()`) generic KVM code calls. */
  readonly arch: KvmArchOps<KernelCtx>;
  /** The guest_memfd backing design (shareability of a file's folios). */
  readonly gmemBacking: GmemBacking;
  /**
   * The historical private-memory design's hooks into KVM (`kvm/design_ops.ts`, chosen once from
   * the profile); null on every real kernel.
   */
  readonly design: DesignOps | null;
  /** The hstates' free huge pages HugeTLB guest_memfd reserves from (empty without it). */
  readonly hugetlbPools: HugetlbPools;
  /** The open file behind an fd of the VMM (`fdget()`), or undefined when it is not open. */
  fdFile(fd: number): KFile | undefined;
  /**
   * `unmap_mapping_range()` of a file's pages [startPgoff, endPgoff) in every process's address
   * space that maps it (the VMM's and any forked child's).
   */
  unmapMappingRange(file: KFile, startPgoff: PgOff, endPgoff: PgOff): void;
  /** Observer of an SEV-SNP guest's private accesses and PVALIDATEs (the invariant checker). */
  snpGuestObserver?: SnpGuestObserver;
  /** Observer of a TD guest's accesses, ACCEPTs and MapGPAs (the invariant checker). */
  tdxGuestObserver?: TdxGuestObserver;
}

/**
 * What a TD guest did to its memory during a KVM_RUN, shown to the invariant checker as it
 * happens (the S-EPT state is read from the TDX module at that moment; platform/tdx/sept.ts
 * state names).
 */
export interface TdxGuestObserver {
  /**
   * A data access completed on frame `pfn` at gfn `gfn` of `vm` (the GFN without the shared
   * bit). `shared`: through a shared-bit GPA (the shared EPT); `septState`: the S-EPT leaf state
   * of `gfn` when the access happened (a private access completes only on MAPPED).
   */
  access(
    vm: Vm,
    gfn: number,
    pfn: number,
    write: boolean,
    shared: boolean,
    septState: string,
  ): void;
  /**
   * TDG.MEM.PAGE.ACCEPT of `gfn` at S-EPT `level` (0: 4K, 1: 2M) returned `status` to the guest;
   * the S-EPT leaf state of `gfn` before and after.
   */
  accept(vm: Vm, gfn: number, level: number, status: bigint, before: string, after: string): void;
  /**
   * A TDG.VP.VMCALL<MapGPA> of [gpa, gpa + size) completed with `status`: each
   * KVM_HC_MAP_GPA_RANGE exit (args, the VMM's hypercall.ret).
   */
  mapGpa(
    vm: Vm,
    gpa: bigint,
    size: bigint,
    exits: readonly { readonly args: readonly [bigint, bigint, bigint]; readonly ret: bigint }[],
    status: bigint,
  ): void;
}

/**
 * What an SEV-SNP guest did to its memory during a KVM_RUN, shown to the invariant checker as it
 * happens (the RMP is read by the observer at that moment).
 */
export interface SnpGuestObserver {
  /** A data access with the C-bit set completed on frame `pfn` (gfn `gfn` of `vm`). */
  access(vm: Vm, gfn: number, pfn: number, write: boolean): void;
  /**
   * PVALIDATE of `pfn` completed with `ret` and `cf`; `before`: the entry's validated bit before
   * the instruction.
   */
  pvalidate(
    vm: Vm,
    gfn: number,
    pfn: number,
    validate: boolean,
    before: boolean,
    ret: number,
    cf: number,
  ): void;
  /** A PSC descriptor request (the PSC NAE event) was handled: what the guest passed, the exits. */
  psc(vm: Vm, p: PscObservation): void;
}

/** One entry of a PSC descriptor (`struct psc_entry`). */
export type PscObservedEntry = {
  readonly curPage: number;
  readonly gfn: bigint;
  readonly op: number;
  readonly pageSize: 0 | 1;
};

/**
 * A PSC descriptor request as the checker sees it: the descriptor the guest passed, every
 * KVM_HC_MAP_GPA_RANGE exit KVM raised for it with the descriptor's cur_page values at the moment
 * of that exit (KVM marks an exit's entries done only after the VMM answered), and the
 * descriptor's cur_page values and SW_EXITINFO2 when the guest resumed.
 */
export type PscObservation = {
  readonly curEntry: number;
  readonly endEntry: number;
  readonly entries: readonly PscObservedEntry[];
  readonly exits: readonly {
    readonly args: readonly [bigint, bigint, bigint];
    /** The VMM's answer (hypercall.ret). */
    readonly ret: bigint;
    readonly curPages: readonly number[];
  }[];
  readonly curPages: readonly number[];
  readonly ret: bigint;
};
