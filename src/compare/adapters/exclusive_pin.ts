/**
 * VMM adapter for design-2024-shmem-exclusive-pin ("mm/gup: Introduce exclusive GUP pinning",
 * Berman/Tabba RFC, June 2024; profile notes in src/core/profiles/designs.ts). No uAPI of its own:
 * guest RAM is the VMM's anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS, as the authors' pKVM
 * uses: going private a second time needs an exclusive anonymous page) in an ordinary memslot of
 * a DEFAULT VM; the guest converts with KVM_HC_MAP_GPA_RANGE, which this design's KVM handles
 * itself (an exclusive long-term pin of each page made private; sharing drops the exclusivity and
 * keeps one ordinary pin) and answers in RAX: a negative RAX (-EBUSY for a page a device has
 * pinned) is the step's outcome.
 * The guest makes its private part private at boot. One copy of every page: the discard knobs
 * have nothing to drop. Nothing keeps the VMM's own loads and stores off a private page on this
 * host (pKVM's or Gunyah's hypervisor would): such an access is the design's violation.
 */
import { num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { forEachSlotHostPage, VmmLowerer, measureSlots, PAGE, RAM_GPA } from './historical.js';

const KVM_HC_MAP_GPA_RANGE = 12;
const MAP_GPA_RANGE_ENCRYPTED = 0x10;

class ExclusivePinLowerer extends VmmLowerer {
  protected boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    this.anonRamBoot(b);
    if (this.p.allShared || a.private === 0n) return;
    // The guest makes its private part private: KVM pins every page of it exclusively.
    b.accessHypercall(
      this.hypercall(KVM_HC_MAP_GPA_RANGE, [
        num(RAM_GPA),
        num(a.private / PAGE),
        MAP_GPA_RANGE_ENCRYPTED,
      ]),
    );
  }

  protected convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    b.accessHypercall(
      this.hypercall(KVM_HC_MAP_GPA_RANGE, [
        num(RAM_GPA + off),
        num(size / PAGE),
        toPrivate ? MAP_GPA_RANGE_ENCRYPTED : 0,
      ]),
    );
  }

  protected closeDesign(): void {}
}

export const DESIGN_2024_SHMEM_EXCLUSIVE_PIN: DesignAdapter = {
  name: 'design-2024-shmem-exclusive-pin',
  profile: 'design-2024-shmem-exclusive-pin',
  summary:
    'guest RAM is anonymous memory of the VMM; a private page is held by an exclusive long-term pin of KVM (other pins EBUSY; sharing keeps an ordinary pin), conversions are KVM_HC_MAP_GPA_RANGE handled in KVM; one copy',
  origin: 'the exclusive GUP pinning RFC, Elliot Berman and Fuad Tabba, June 2024 (seed 003)',
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.shared === 'gmem-mmap' && !p.allShared)
      return "no guest_memfd on this design: guest RAM is the VMM's anonymous memory, private pages pinned in place";
    if (p.shared === 'anon')
      return "guest RAM is the VMM's anonymous memory on this design and private pages are pinned in place: no separate shared memory";
    return new ExclusivePinLowerer(w, p);
  },
  // Pages KVM pins exclusively are private; the rest of the slot's memory is shared.
  measure: (h) =>
    measureSlots(h, (vm, slot) => {
      let all = 0;
      forEachSlotHostPage(h, slot, (s, e) => (all += e - s));
      const priv = vm.exclusivePins?.countIn(slot.baseGfn, slot.baseGfn + slot.npages) ?? 0;
      return { priv, shared: all - priv };
    }),
};
