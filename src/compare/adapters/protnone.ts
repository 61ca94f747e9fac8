/**
 * VMM adapter for design-2020-protnone-follkvm (the KVM protected memory extension RFC v2,
 * Shutemov, 2020; profile notes in src/core/profiles/designs.ts). Guest RAM is the VMM's
 * anonymous memory in an ordinary memslot (KVM_SET_USER_MEMORY_REGION, DEFAULT VM); the VMM has
 * no ioctl for private memory: the guest makes it private itself, with KVM_HC_ENABLE_MEM_PROTECTED
 * (12) at boot, then KVM_HC_MEM_SHARE (13, gfn, npages) for the ranges it shares and
 * KVM_HC_MEM_UNSHARE (14) to take them back; KVM answers in RAX (no exit to the VMM), and a
 * negative RAX is the step's outcome. One copy of every page: the discard knobs have nothing to
 * drop. VFIO of all RAM is mapped at boot, before the guest enables protection: those pins are
 * not revoked (the RFC's open point), so a device's DMA into a page the guest then protects is
 * the design's violation. Firecracker's secret-free layout is plain anonymous RAM the guest never
 * protects.
 */
import { num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import { VMA_KVM_PROTECTED } from '../../core/mm/mm_types.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { forEachSlotHostPage, VmmLowerer, measureSlots, PAGE, RAM_GPA } from './historical.js';

const KVM_HC_ENABLE_MEM_PROTECTED = 12;
const KVM_HC_MEM_SHARE = 13;
const KVM_HC_MEM_UNSHARE = 14;

const gfn = (off: bigint): number | string => num((RAM_GPA + off) / PAGE);

class ProtnoneLowerer extends VmmLowerer {
  protected boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    this.anonRamBoot(b);
    if (this.p.allShared) return;
    // The guest's first act: protect all of its memory, then share back the shared part.
    const guest: unknown[] = [{ hypercall: { nr: KVM_HC_ENABLE_MEM_PROTECTED, args: [0, 0, 0] } }];
    if (a.shared > 0n)
      guest.push({
        hypercall: { nr: KVM_HC_MEM_SHARE, args: [gfn(a.private), num(a.shared / PAGE), 0] },
      });
    b.accessHypercall({ op: 'KVM_RUN', vcpu: 'cpu', guest });
  }

  protected convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    b.accessHypercall(
      this.hypercall(toPrivate ? KVM_HC_MEM_UNSHARE : KVM_HC_MEM_SHARE, [
        gfn(off),
        num(size / PAGE),
        0,
      ]),
    );
  }

  protected closeDesign(): void {}
}

export const DESIGN_2020_PROTNONE: DesignAdapter = {
  name: 'design-2020-protnone-follkvm',
  profile: 'design-2020-protnone-follkvm',
  summary:
    "guest RAM is anonymous VMM memory made PROT_NONE (VM_KVM_PROTECTED) by the guest's hypercalls 12/13/14; VMM SIGBUS, GUP without FOLL_KVM EFAULT, KVM reaches it with FOLL_KVM",
  origin: 'the KVM protected memory extension RFC v2, Kirill Shutemov, Oct 2020 (seed 002)',
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.shared === 'gmem-mmap' && !p.allShared)
      return "no guest_memfd on this design: guest RAM is the VMM's anonymous memory, PROT_NONE while private";
    return new ProtnoneLowerer(w, p);
  },
  // Guest RAM in a VM_KVM_PROTECTED VMA is private (only KVM reaches it), the rest shared.
  measure: (h) =>
    measureSlots(h, (_vm, slot) => {
      let priv = 0;
      let shared = 0;
      forEachSlotHostPage(h, slot, (s, e, flags) => {
        if ((flags & VMA_KVM_PROTECTED) !== 0) priv += e - s;
        else shared += e - s;
      });
      return { priv, shared };
    }),
};
