/**
 * The narrow interface the model's mechanism files use to reach each other (the kernel's
 * cross-subsystem calls: mmu notifiers, fput, vfs_fallocate, ...). `Host` implements it; keeping
 * it here avoids import cycles between the mechanism files.
 */
import type { EventLog } from './base/events.js';
import type { FrameStore } from './base/frames.js';
import type { KernelProfile } from './profiles/profile.js';
import type { KFile } from './vfs/file.js';
import type { Vm } from './kvm/objects.js';
import type { Result } from './base/result.js';
import type { MutantSet } from './base/mutants.js';
import type { HostMm } from './mm/host_mm.js';
import type { Pfn } from './base/units.js';

export interface KernelCtx {
  readonly profile: KernelProfile;
  readonly frames: FrameStore;
  readonly events: EventLog;
  /** Injected bugs (issue #4 seeded-bug benchmark); empty in the faithful model. */
  readonly mutants: MutantSet;
  /** The VMM process's address space. */
  readonly mm: HostMm;
  /**
   * Observer of page accesses on behalf of the host (the invariant checker sets it): the VMM's own
   * loads/stores, get_user_pages() by KVM, and KVM's uaccess through userspace_addr.
   */
  observe?: (pfn: Pfn, write: boolean, path: 'vmm' | 'gup' | 'kvm-uaccess') => void;
  /** Every live VM. */
  readonly vms: ReadonlySet<Vm>;
  /** Drop one mapping reference (pages) of a file; releases it when the last reference goes. */
  putFileMapping(file: KFile, pages: number): void;
  /** Take mapping references on a file. */
  getFileMapping(file: KFile, pages: number): void;
  /** `vfs_fallocate()` on a file (used by MADV_REMOVE). */
  vfsFallocate(
    file: KFile,
    mode: number,
    offset: bigint,
    len: bigint,
    via: 'fallocate' | 'madv_remove',
  ): Result<undefined>;
}
