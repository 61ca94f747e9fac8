/**
 * What mm needs from the rest of the kernel: the page allocator (frames), the event log, the
 * profile's host facts, the injected bugs, the platform (its host-access check, called from
 * mm/host_access.ts), the access observer, file mapping references and vfs_fallocate()
 * (MADV_REMOVE). KVM's context (ctx.ts) extends it; mm sees only this.
 */
import type { EventLog } from '../base/events.js';
import type { FrameStore } from '../base/frames.js';
import type { MutantSet } from '../base/mutants.js';
import type { Result } from '../base/result.js';
import type { PgOff, Pfn } from '../base/units.js';
import type { MmStruct } from './mm_types.js';
import type { ShmemObject } from './shmem.js';
import type { HostAccessPath, Platform } from '../platform/platform.js';
import type { KernelProfile } from '../profiles/profile.js';
import type { KFile } from '../vfs/file.js';

export interface MmCtx {
  readonly profile: KernelProfile;
  readonly frames: FrameStore;
  readonly events: EventLog;
  /** Injected bugs (seeded-bug benchmark); empty in the faithful model. */
  readonly mutants: MutantSet;
  /** The confidential-computing platform's per-frame state and host-access check. */
  readonly platform: Platform;
  /**
   * Observer of page accesses on behalf of the host (the invariant checker sets it): the VMM's own
   * loads/stores, get_user_pages() by KVM, and KVM's uaccess through userspace_addr.
   */
  observe?: (pfn: Pfn, write: boolean, path: HostAccessPath, refused: boolean) => void;
  /** Drop one mapping reference (pages) of a file; releases it when the last reference goes. */
  putFileMapping(file: KFile, pages: number): void;
  /** Take mapping references on a file. */
  getFileMapping(file: KFile, pages: number): void;
  /**
   * `unmap_mapping_range()` of a shmem object's pages [start, end) in the address spaces other
   * than `mm` that map it (their notifiers hear about it); absent where the kernel has none.
   */
  shmemUnmapElsewhere?(mm: MmStruct, obj: ShmemObject, start: PgOff, end: PgOff): void;
  /** `vfs_fallocate()` on a file (used by MADV_REMOVE). */
  vfsFallocate(
    file: KFile,
    mode: number,
    offset: bigint,
    len: bigint,
    via: 'fallocate' | 'madv_remove',
  ): Result<undefined>;
}
