/**
 * The narrow interface the model's mechanism files use to reach each other (the kernel's
 * cross-subsystem calls: fput, vfs_fallocate, ...). `Host` implements it; keeping it here avoids
 * import cycles between the mechanism files. mm sees only its part of it (mm/mm_ctx.ts).
 */
import type { KvmArchOps } from './kvm/arch_ops.js';
import type { GmemBacking } from './kvm/guest_memfd/backing.js';
import type { Vm } from './kvm/objects.js';
import type { HostMm } from './mm/host_mm.js';
import type { MmCtx } from './mm/mm_ctx.js';
import type { KFile } from './vfs/file.js';

export interface KernelCtx extends MmCtx {
  /** The VMM process's address space. */
  readonly mm: HostMm;
  /** Every live VM. */
  readonly vms: ReadonlySet<Vm>;
  /** The architecture's operations (`kvm_x86_ops`, `kvm_arch_*()`) generic KVM code calls. */
  readonly arch: KvmArchOps<KernelCtx>;
  /** The guest_memfd backing design (shareability of a file's folios). */
  readonly gmemBacking: GmemBacking;
  /** The open file behind an fd of the VMM (`fdget()`), or undefined when it is not open. */
  fdFile(fd: number): KFile | undefined;
}
