/**
 * KVM's half of design-2024-shmem-exclusive-pin: "mm/gup: Introduce exclusive GUP pinning" (RFC,
 * 5 patches, Elliot Berman, 2024-06-18; Fuad Tabba's pKVM series of the same months; seed 003).
 * Guest memory stays ordinary shmem (or anonymous) memory of the VMM, mapped as a memslot's
 * userspace_addr; a page the guest makes private is pinned by KVM with FOLL_PIN | FOLL_LONGTERM
 * | FOLL_EXCLUSIVE, which succeeds only if the folio has no other pin and from then on refuses
 * every other pin (-EBUSY: VFIO, O_DIRECT, io_uring), while FOLL_GET references (vmsplice) are
 * not affected. Converting back to shared drops the exclusive pin. The same page serves both
 * states: nothing is allocated twice, and no copy is made.
 *
 * The proposal targets arm64 pKVM and Gunyah, where the hypervisor removes a private page from
 * the host's stage-2, so the VMM's own loads and stores fault; the pin only keeps other kernel
 * users (devices) away. The model runs it on the x86 kernel the other designs run on, where no
 * hypervisor is under the host: the guest converts with KVM_HC_MAP_GPA_RANGE (12: a0 = gpa,
 * a1 = pages, a2 bit 4 = KVM_MAP_GPA_RANGE_ENCRYPTED for private), which this design's KVM
 * handles itself (as pKVM's hypervisor handles MEM_SHARE/MEM_UNSHARE) instead of exiting to the
 * VMM, and a VMM load or store of a private page is not refused by anything: the design's
 * invariant reports it (host-no-private-access-shmem-exclusive-pin).
 */
import { ERRNO_NUMBERS } from '../base/errno.js';
import { RangeMap } from '../base/ranges/range_map.js';
import { asGfn, gfnAdd, isPageAligned, type Gfn } from '../base/units.js';
import type { KernelCtx } from '../ctx.js';
import { gupRange, gupRelease } from '../mm/gup.js';
import { pageExtentOps } from '../vfs/file.js';
import { gfnToHvpnMemslot, type Vm } from './objects.js';

const KVM_MAP_GPA_RANGE_ENCRYPTED = 1n << 4n;

/** Make `gfn` private: KVM's exclusive long-term pin of the VMM's page; 0 or a negative errno. */
function pinPrivate(k: KernelCtx, vm: Vm, gfn: Gfn): number {
  const pins = (vm.exclusivePins ??= new RangeMap(pageExtentOps));
  if (pins.get(gfn) !== undefined) return 0;
  const slot = vm.slotsByGfn[0]!.get(gfn);
  if (slot === undefined) return -ERRNO_NUMBERS.EFAULT;
  const r = gupRange(k.mm, gfnToHvpnMemslot(slot, gfn), 1, {
    write: true,
    pin: true,
    longterm: true,
    exclusive: true,
  });
  if (r.busy === true) return -ERRNO_NUMBERS.EBUSY;
  if (r.got !== 1) return -ERRNO_NUMBERS.EFAULT;
  pins.set(gfn, gfn + 1, { base: r.runs[0]!.base });
  return 0;
}

/** Make `gfn` shared again: the exclusive pin is dropped. */
function unpinShared(k: KernelCtx, vm: Vm, gfn: Gfn): void {
  const e = vm.exclusivePins?.get(gfn);
  if (e === undefined) return;
  vm.exclusivePins!.delete(gfn, gfn + 1);
  gupRelease(k.mm, [{ base: e.base, count: 1 }], true, true);
}

/**
 * The guest's conversion hypercall on this design (see the file comment): every page of
 * [gpa, gpa + npages) made private (pinned exclusively) or shared (unpinned), in order, stopping
 * at the first page that cannot be pinned: -EBUSY when it is pinned already (a VFIO mapping),
 * -EFAULT when no memslot or mapping backs it. -EINVAL for an unaligned gpa, no pages or a
 * wrapping range. The value left in RAX.
 */
export function kvmExclusivePinHypercall(
  k: KernelCtx,
  vm: Vm,
  nr: bigint,
  a0: bigint,
  a1: bigint,
  a2: bigint,
): bigint | undefined {
  if (nr !== 12n) return undefined;
  const gfn0 = a0 >> 12n;
  if (!isPageAligned(a0) || a1 === 0n || gfn0 + a1 > BigInt(k.profile.maxGfnExclusive))
    return -BigInt(ERRNO_NUMBERS.EINVAL);
  const toPrivate = (a2 & KVM_MAP_GPA_RANGE_ENCRYPTED) !== 0n;
  for (let i = 0n; i < a1; i++) {
    const gfn = gfnAdd(asGfn(Number(gfn0)), Number(i));
    if (!toPrivate) {
      unpinShared(k, vm, gfn);
      continue;
    }
    const r = pinPrivate(k, vm, gfn);
    if (r !== 0) return BigInt(r);
  }
  return 0n;
}

/** `kvm_destroy_vm()`: KVM's exclusive pins go with the VM. */
export function kvmExclusivePinsRelease(k: KernelCtx, vm: Vm): void {
  const pins = vm.exclusivePins;
  if (pins === undefined) return;
  for (const e of pins.entries())
    gupRelease(k.mm, [{ base: e.value.base, count: e.end - e.start }], true, true);
  pins.clear();
}
