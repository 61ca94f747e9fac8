/**
 * The guest_memfd backing seam: the decisions about a file's folios that differ between
 * guest_memfd designs, behind one interface that the 6.18 file code (guest_memfd.ts) calls.
 *
 * In 6.18 (`linux-6.18`) shareability is a property of the whole file: host (mmap) faults are
 * allowed only in a file created with GUEST_MEMFD_FLAG_INIT_SHARED, and memory attributes live in
 * the VM. Designs in flight plug in here: in-place conversion keeps a shared/private state per
 * index in the file (host faults allowed only on shared indices), and HugeTLB-backed files add
 * folio orders and splitting.
 */
import type { GmemFile } from '../objects.js';
import type { PgOff } from '../../base/units.js';

export interface GmemBacking {
  /** The design's name (profile part `gmem`). */
  readonly name: string;
  /**
   * `kvm_gmem_fault_user_mapping()`'s shareability check: whether the host may map the folio at
   * `index` through an mmap of the file. `index` is below the file's size.
   */
  hostFaultAllowed(f: GmemFile, index: PgOff): boolean;
  /**
   * How many indexes from `index` (at most `count`) the host may map, for populate
   * (MADV_POPULATE_*): a range form of `hostFaultAllowed`.
   */
  hostFaultAllowedRun(f: GmemFile, index: PgOff, count: number): number;
}

/** Linux 6.18: INIT_SHARED makes the whole file host-faultable; anything else never is. */
export const GMEM_LINUX_6_18: GmemBacking = {
  name: 'linux-6.18',
  hostFaultAllowed: (f) => f.initShared,
  hostFaultAllowedRun: (f, _index, count) => (f.initShared ? count : 0),
};
