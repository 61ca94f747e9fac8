/**
 * KVM's half of design-2024-shmem-exclusive-pin: "mm/gup: Introduce exclusive GUP pinning" (RFC,
 * 5 patches, Elliot Berman, 2024-06-18; Fuad Tabba's pKVM series of the same months; seed 003).
 * The RFC has no KVM code: this file is the model's construction from its commit messages.
 * Guest memory stays the VMM's own memory (anonymous, as pKVM's), mapped as a memslot's
 * userspace_addr; a page the guest makes private is pinned by KVM with FOLL_PIN | FOLL_LONGTERM
 * | FOLL_EXCLUSIVE, which succeeds only if the folio has no other pin and from then on refuses
 * every other pin of the folio (-EBUSY: VFIO, O_DIRECT, io_uring), while FOLL_GET references
 * (vmsplice) are not affected. Converting back to shared drops only the exclusivity
 * (`unexc_user_page()`): KVM keeps one ordinary pin, which `reexc_user_page()` makes exclusive
 * again when the guest converts the page back, if it is an exclusive anonymous page whose only
 * pin that is. The same page serves both states: nothing is allocated twice, and no copy is
 * made.
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
import {
  asGfn,
  asPfn,
  gfnAdd,
  isPageAligned,
  type Gfn,
  type Hvpn,
  type Pfn,
} from '../base/units.js';
import type { KernelCtx } from '../ctx.js';
import { folioPinCount, gupDropExclusive, gupFolioOf, gupRange, gupRelease } from '../mm/gup.js';
import { pageExtentOps } from '../vfs/file.js';
import { gfnToHvpnMemslot, type Vm } from './objects.js';

const KVM_MAP_GPA_RANGE_ENCRYPTED = 1n << 4n;

/**
 * Make `gfn` private, 0 or a negative errno. A page KVM has never pinned: a FOLL_PIN |
 * FOLL_LONGTERM | FOLL_EXCLUSIVE pin (patch 2/5: -EBUSY while its folio has any pin). A page
 * shared since it was private, whose ordinary pin KVM kept: `reexc_user_page()` (patch 3/5):
 * -EINVAL unless it is an exclusive anonymous page (PageAnonExclusive), -EBUSY unless its folio
 * has exactly that one pin; the new exclusive pin replaces the kept one (see the file comment).
 */
function pinPrivate(k: KernelCtx, vm: Vm, gfn: Gfn): number {
  const pins = (vm.exclusivePins ??= new RangeMap(pageExtentOps));
  if (pins.get(gfn) !== undefined) return 0;
  const slot = vm.slotsByGfn[0]!.get(gfn);
  if (slot === undefined) return -ERRNO_NUMBERS.EFAULT;
  const hvpn = gfnToHvpnMemslot(slot, gfn);
  const kept = vm.sharedPins?.get(gfn);
  if (kept !== undefined) {
    const pfn = asPfn(kept.base);
    if (!anonExclusive(k, hvpn, pfn)) return -ERRNO_NUMBERS.EINVAL;
    const folio = gupFolioOf(k.mm, hvpn, pfn);
    if (k.frames.exclusive.size !== 0 && k.frames.exclusive.get(pfn) !== undefined)
      return -ERRNO_NUMBERS.EBUSY;
    if (folioPinCount(k.mm, folio) !== 1) return -ERRNO_NUMBERS.EBUSY;
    k.frames.exclusive.set(folio.base, folio.base + folio.count, folio.base);
    vm.sharedPins!.delete(gfn, gfn + 1);
    pins.set(gfn, gfn + 1, { base: pfn });
    return 0;
  }
  const r = gupRange(k.mm, hvpn, 1, {
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

/**
 * PageAnonExclusive of the page KVM pinned: the VMM's private anonymous mapping at `hvpn` maps
 * it (the model's anonymous pages are exclusive to their mm unless shared with a fork's parent).
 * A shmem page is not anonymous (see the file comment for what the posted code tests there).
 */
function anonExclusive(k: KernelCtx, hvpn: Hvpn, pfn: Pfn): boolean {
  const v = k.mm.vmas.get(hvpn);
  if (v === undefined || v.kind !== 'anon') return false;
  if (k.mm.cowFromParent.size !== 0 && k.mm.cowFromParent.get(hvpn) !== undefined) return false;
  return k.mm.anon.get(hvpn)?.base === pfn;
}

/**
 * Make `gfn` shared again: `unexc_user_page()` drops the exclusive part of KVM's pin; the ordinary
 * long-term pin stays (patch 3/5: "When a page is shared, the exclusive pin is dropped, but one
 * normal pin is maintained").
 */
function unpinShared(k: KernelCtx, vm: Vm, gfn: Gfn): void {
  const e = vm.exclusivePins?.get(gfn);
  if (e === undefined) return;
  vm.exclusivePins!.delete(gfn, gfn + 1);
  gupDropExclusive(k.mm, asPfn(e.base));
  (vm.sharedPins ??= new RangeMap(pageExtentOps)).set(gfn, gfn + 1, { base: e.base });
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

/**
 * `kvm_destroy_vm()`: KVM's pins go with the VM (`unpin_exc_pages()` for private pages,
 * `unpin_user_pages()` for the ordinary pins kept on pages shared again).
 */
export function kvmExclusivePinsRelease(k: KernelCtx, vm: Vm): void {
  for (const [pins, exclusive] of [
    [vm.exclusivePins, true],
    [vm.sharedPins, false],
  ] as const) {
    if (pins === undefined) continue;
    for (const e of pins.entries())
      gupRelease(k.mm, [{ base: e.value.base, count: e.end - e.start }], true, exclusive);
    pins.clear();
  }
}
