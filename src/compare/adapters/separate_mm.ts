/**
 * VMM adapter for design-2020-separate-mm (Andy Lutomirski's reply in the RFCv2 thread, Oct 2020;
 * profile notes and the invented uAPI in src/core/profiles/designs.ts). The VMM creates an
 * address space of no process (`address_space_create`), attaches it to a DEFAULT VM
 * (`KVM_MAP_ADDRESS_SPACE`) and lays guest RAM out there at AS_BASE: private memory is private
 * anonymous memory of that address space, shared memory is the VMM's own MAP_SHARED anonymous
 * memory `mem` (RAM offset = offset in `mem`) mapped there as well, one frame in both. The
 * memslot's userspace_addr is AS_BASE. A conversion is the guest's KVM_HC_MAP_GPA_RANGE exit,
 * then the VMM's remap of the range in the guest address space (the step's outcome): its shared
 * memory to share, new anonymous memory to make private. A remap frees the private pages, so the
 * private copy never survives (`punch` has nothing left to do); the shared copy stays in `mem`
 * until the VMM discards it (MADV_REMOVE, the `discard` knob), as on 6.18. The VMM's accesses,
 * GUP and VFIO name `mem`, the only guest memory its mm has: a host read of a private offset
 * reads the VMM's own page, never the guest's. Firecracker's secret-free layout is plain VMM
 * memory the guest never makes private (no address space).
 */
import { at, num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import type { MemorySample } from '../adapter.js';
import type { Host } from '../../core/host.js';
import { ShmemObject } from '../../core/mm/shmem.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { measureSlots, PAGE, RAM_GPA, VmmLowerer } from './historical.js';

/** Where guest RAM lives in the guest address space. */
const AS_BASE = 0x1000_0000n;
/** KVM_HC_MAP_GPA_RANGE and its attribute bit for encrypted (private) memory. */
const KVM_HC_MAP_GPA_RANGE = 12;
const MAP_GPA_RANGE_ENCRYPTED = 0x10;
/** KVM_CAP_EXIT_HYPERCALL's argument: exit to userspace for KVM_HC_MAP_GPA_RANGE (bit 12). */
const EXIT_MAP_GPA_RANGE = 1 << 12;
const MAP_SHARED = 1;
const MAP_PRIVATE = 2;
const MADV_REMOVE = 9;

class SeparateMmLowerer extends VmmLowerer {
  /** A fixed mapping of [off, off + size) of RAM in the guest address space. */
  private remap(off: bigint, size: bigint, toPrivate: boolean): Record<string, unknown> {
    return {
      op: 'address_space_mmap',
      fd: 'gas',
      as_addr: num(AS_BASE + off),
      length: num(size),
      prot: 3,
      flags: toPrivate ? MAP_PRIVATE : MAP_SHARED,
      src: toPrivate ? null : at('mem', off),
    };
  }

  protected boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    const ram = num(this.ram);
    const sep = !this.p.allShared;
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: 0, as: 'vm' });
    if (sep) {
      // Attached before any memslot (the vCPU's too: the model's code page is one).
      b.op({ op: 'address_space_create', flags: 0, as: 'gas' });
      b.op({ op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 'gas' });
      b.op({ op: 'KVM_ENABLE_CAP', fd: 'vm', cap: 201, flags: 0, args: [EXIT_MAP_GPA_RANGE] });
    }
    // MAP_SHARED | MAP_ANONYMOUS: the VMM's shared memory (a shmem object it can map elsewhere).
    b.op({ op: 'mmap', fd: null, length: ram, prot: 3, flags: 0x21, offset: 0, as: 'mem' });
    if (sep) {
      if (a.private > 0n) b.op(this.remap(0n, a.private, true));
      if (a.shared > 0n) b.op(this.remap(a.private, a.shared, false));
    }
    b.op({
      op: 'KVM_SET_USER_MEMORY_REGION',
      vm: 'vm',
      slot: 0,
      flags: 0,
      guest_phys_addr: num(RAM_GPA),
      memory_size: ram,
      userspace_addr: sep ? num(AS_BASE) : 'mem',
    });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    this.prefault(b);
    this.vfioMapAll(b);
  }

  protected convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    // The guest's request: KVM_HC_MAP_GPA_RANGE, which exits to the VMM (KVM_EXIT_HYPERCALL).
    b.op(
      this.hypercall(KVM_HC_MAP_GPA_RANGE, [
        num(RAM_GPA + off),
        num(size / PAGE),
        toPrivate ? MAP_GPA_RANGE_ENCRYPTED : 0,
      ]),
    );
    // The VMM's answer: the remap (the notifier zaps KVM's mappings of the range first).
    b.access(this.remap(off, size, toPrivate));
    if (toPrivate && this.p.discardShared)
      b.op({ op: 'madvise', addr: at('mem', off), length: num(size), advice: MADV_REMOVE });
  }

  protected closeDesign(b: TraceBuilder): void {
    if (!this.p.allShared) b.op({ op: 'close', fd: 'gas' });
  }
}

/**
 * Private: anonymous pages of the guest address space; shared: the VMM's shmem pages; double:
 * RAM offsets with both (a private page and the VMM's shared copy it has not discarded).
 */
function measure(h: Host): MemorySample {
  let double = 0;
  const base = Number(AS_BASE / PAGE);
  const shmem = new Set<ShmemObject>();
  for (const v of h.mm.vmas.entries())
    if (v.value.obj instanceof ShmemObject) shmem.add(v.value.obj);
  const m = measureSlots(h, (vm, slot) => {
    const gm = vm.guestMm;
    if (gm === undefined) {
      let shared = 0;
      for (const o of shmem) shared += o.pages.totalCovered();
      return { priv: 0, shared };
    }
    const s0: number = slot.userspaceHvpn;
    let priv = 0;
    gm.anon.forEachIn(s0, s0 + slot.npages, (s, e) => {
      priv += e - s;
      for (const o of shmem) double += o.pages.countIn(s - base, e - base);
    });
    let shared = 0;
    for (const o of shmem) shared += o.pages.totalCovered();
    return { priv, shared };
  });
  return { ...m, double };
}

export const DESIGN_2020_SEPARATE_MM: DesignAdapter = {
  name: 'design-2020-separate-mm',
  profile: 'design-2020-separate-mm',
  summary:
    "guest RAM lives in an address space of no process that KVM mirrors (address_space_create, KVM_MAP_ADDRESS_SPACE; uAPI invented after Lutomirski's sketch): private = its anonymous memory, shared = the VMM's MAP_SHARED memory mapped there too; conversions are the KVM_HC_MAP_GPA_RANGE exit then a remap",
  origin:
    "Andy Lutomirski's reply to the KVM protected memory extension RFC v2, Oct 2020 (seed 002)",
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.shared === 'gmem-mmap' && !p.allShared)
      return "no guest_memfd on this design: shared memory is the VMM's MAP_SHARED memory, mapped into the guest address space";
    if (p.shared === 'anon' && !p.allShared)
      return 'shared memory must be mappable into the guest address space too: MAP_SHARED (shmem), not private anonymous memory';
    return new SeparateMmLowerer(w, p);
  },
  measure,
};
