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
import type { Errno } from '../../base/errno.js';
import type { GmemFile } from '../objects.js';
import type { PgOff } from '../../base/units.js';

/**
 * Why a design refuses a shared→private conversion (in-place conversion: a folio in the range
 * still has references beyond guest_memfd's own, e.g. a host mapping or a GUP pin): the errno
 * (EAGAIN: userspace drops the references and retries) and the first index it refused at.
 */
export type GmemConvertRefusal = { readonly errno: Errno; readonly index: PgOff };

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
  /**
   * The order of the folio `kvm_gmem_get_folio()` allocates at the absent `index` (0: one page).
   * Asked where the file allocates: a guest or host fault on an absent index, and each absent
   * run fallocate or populate fills (at its first index). The model represents order-0 folios
   * only: any other answer stops the run with a "not representable" error.
   */
  folioOrder(f: GmemFile, index: PgOff): number;
  /**
   * Whether the memory attributes of the file's indices [start, end) may change (`toPrivate`:
   * whether the new attributes include PRIVATE). Asked by KVM_SET_MEMORY_ATTRIBUTES for each
   * guest_memfd-bound memslot range the change covers, before anything is zapped; a refusal
   * fails the ioctl with its errno and changes nothing. In-place conversion refuses to make a
   * range private while a folio has extra references (EAGAIN and the index).
   */
  canConvert(
    f: GmemFile,
    start: PgOff,
    end: PgOff,
    toPrivate: boolean,
  ): GmemConvertRefusal | undefined;
  /**
   * Who tracks folio preparation. Absent or 'tracked' (6.18): guest_memfd does — a guest fault
   * runs the arch prepare hook once, when it makes the folio up to date, and
   * `kvm_gmem_populate()` refuses an up-to-date folio (EEXIST). 'private-by-arch' (kvm/next
   * after 6.20's "KVM: guest_memfd: Remove preparation tracking", under the in-place series):
   * `kvm_gmem_get_pfn()` zeroes a folio that is not up to date and then calls the arch hook on
   * every guest fault, for private indices only (v7 patch 07, "Only prepare folios for private
   * pages"; SNP's `sev_gmem_prepare()` skips a frame its RMP already assigns), and populate does
   * not look at up-to-date (SNP's RMP check is its EEXIST).
   */
  readonly preparation?: 'tracked' | 'private-by-arch';
}

/**
 * Linux 6.18: INIT_SHARED makes the whole file host-faultable; anything else never is.
 * `kvm_gmem_get_folio()` allocates order-0 folios only ("TODO: Support huge pages"), and a
 * memory attribute change never asks guest_memfd: attributes live in the VM
 * (`kvm_vm_set_mem_attributes()`), so nothing refuses a conversion.
 */
export const GMEM_LINUX_6_18: GmemBacking = {
  name: 'linux-6.18',
  hostFaultAllowed: (f) => f.initShared,
  hostFaultAllowedRun: (f, _index, count) => (f.initShared ? count : 0),
  folioOrder: () => 0,
  canConvert: () => undefined,
};

/**
 * The in-place conversion series v7 (kernel-uapi.md §6.1, S8: googleprodkernel/linux-cc
 * guest_memfd-inplace-conversion-v7, lore 20260522-gmem-inplace-conversion-v7): shareability is
 * per index, from the file's attributes (`GmemFile.attrs`, the inode's maple tree), whatever
 * `kvm.vm_memory_attributes` says. `kvm_gmem_fault_user_mapping()` (v7 patch 01) maps an index
 * only while `kvm_gmem_is_shared_mem()`; otherwise the folio is -EACCES, the fault SIGBUS. With
 * per-VM attributes (`vm_memory_attributes=1`) the file's attributes never change after
 * creation, so this is 6.18's INIT_SHARED rule again. Folios stay order 0. The per-VM
 * KVM_SET_MEMORY_ATTRIBUTES never asks guest_memfd (v7 adds no such check to
 * `kvm_vm_set_mem_attributes()`); conversions in the file are `kvm_gmem_set_attributes()`
 * (guest_memfd/attributes.ts), whose own "safe for conversion" check is
 * `gmemSafeForConversion()` there.
 */
export const GMEM_INPLACE_V7: GmemBacking = {
  name: 'inplace-v7',
  hostFaultAllowed: (f, index) => f.attrs.get(index) === undefined,
  hostFaultAllowedRun: (f, index, count) => {
    if (f.attrs.get(index) !== undefined) return 0;
    const next = f.attrs.ceilEntry(index);
    if (next === undefined) return count;
    return Math.max(0, Math.min(count, next.start - index));
  },
  folioOrder: () => 0,
  canConvert: () => undefined,
  preparation: 'private-by-arch',
};
