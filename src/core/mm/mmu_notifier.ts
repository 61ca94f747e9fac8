/**
 * mm/mmu_notifier.c: secondary MMUs (KVM's stage-2 tables) register with an mm and hear about
 * every change to its page tables through `invalidate_range_start`. mm knows nothing about who
 * listens: a VM registers its notifier when it is created (`kvm_init_mmu_notifier()`) and
 * unregisters it when it is destroyed.
 */
import type { Hvpn } from '../base/units.js';

/** `struct mmu_notifier_ops`, the part this model needs. */
export interface MmuNotifier {
  /** `invalidate_range_start` for host virtual pages [startHvpn, endHvpn). */
  invalidateRangeStart(startHvpn: Hvpn, endHvpn: Hvpn): void;
}

/** The notifiers registered on one mm, called in registration order. */
export class MmuNotifierList {
  private readonly subscribers = new Set<MmuNotifier>();

  /** `mmu_notifier_register()`. */
  register(n: MmuNotifier): void {
    this.subscribers.add(n);
  }

  /** `mmu_notifier_unregister()`. */
  unregister(n: MmuNotifier): void {
    this.subscribers.delete(n);
  }

  /** `mmu_notifier_invalidate_range_start()`: every registered notifier, in order. */
  invalidateRangeStart(startHvpn: Hvpn, endHvpn: Hvpn): void {
    for (const n of this.subscribers) n.invalidateRangeStart(startHvpn, endHvpn);
  }
}
