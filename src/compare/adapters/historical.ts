/**
 * What every VMM adapter (the guest_memfd designs of ./guest_memfd.ts and the historical
 * designs design-2020-protnone-follkvm, design-2023-restrictedmem,
 * design-2024-shmem-exclusive-pin) lowers alike: guest accesses are
 * KVM_RUN guest programs, host accesses peek/poke of the VMM's mapping of guest RAM (`mem`), a
 * GUP-style access (vhost, O_DIRECT) vmsplice of that mapping (FOLL_GET), devices a VFIO type1v2
 * container (MAP_DMA pins with FOLL_LONGTERM). Each design
 * brings its boot and its conversions (`boot`, `convert`) and what its teardown closes.
 */
import { TRACE_CODE_SLOT } from '../../core/base/uapi.js';
import type { Host } from '../../core/host.js';
import { GmemFile, type Memslot, type Vm } from '../../core/kvm/objects.js';
import { ShmemObject } from '../../core/mm/shmem.js';
import { at, num, type Lowerer, type MemorySample, type TraceBuilder } from '../adapter.js';
import { ptPages } from '../metrics.js';
import type { Policy } from '../policy.js';
import { actionSteps, type ActionStep, type Workload } from '../workload.js';
/** Where guest RAM starts (GPA); RAM is at most 2 GiB (workload.ts), below the code page. */
export const RAM_GPA = 0x4000_0000n;
export const PAGE = 4096n;
const NO_VFIO = 'the policy assigns no VFIO device to a confidential guest';
export const NO_PRIVATE = 'no private memory: the guest bounces I/O through shared RAM';

export abstract class VmmLowerer implements Lowerer {
  private pipe = false;
  private vfio = false;
  /** DMA mappings (offset, size) the VMM made for the workload's dma_map steps. */
  private dma: Array<{ at: bigint; size: bigint }> = [];
  protected readonly usesDma: boolean;

  constructor(
    protected readonly w: Workload,
    protected readonly p: Policy,
  ) {
    this.usesDma = actionSteps(w.steps).some((s) => s.action.kind.startsWith('dma_'));
  }

  protected get ram(): bigint {
    return this.w.ram.private + this.w.ram.shared;
  }

  /** VM, guest RAM at `mem`, memslot 0 at RAM_GPA, vCPU `cpu`, the boot-time private part. */
  protected abstract boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void;
  /** The guest's conversion of [off, off + size) (the step's outcome is one of its ops). */
  protected abstract convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void;
  /** Closes of the design's own objects at teardown (before the VM's). */
  protected abstract closeDesign(b: TraceBuilder): void;

  protected vfioSetup(b: TraceBuilder): void {
    if (this.vfio) return;
    this.vfio = true;
    b.op({ op: 'open', path: '/dev/vfio/vfio', as: 'container' });
    b.op({ op: 'open', path: '/dev/vfio/0', as: 'group' });
    b.op({ op: 'VFIO_GROUP_SET_CONTAINER', fd: 'group', container: 'container' });
    b.op({ op: 'VFIO_SET_IOMMU', fd: 'container', type: 3, tee_io: 0 });
  }

  /** QEMU-style VFIO of all guest RAM at boot (before the guest runs): long-term pins of all. */
  protected vfioMapAll(b: TraceBuilder): void {
    if (this.p.vfio !== 'all' || !this.usesDma) return;
    this.vfioSetup(b);
    b.op({
      op: 'VFIO_IOMMU_MAP_DMA',
      fd: 'container',
      argsz: 32,
      flags: 3,
      addr: 'mem',
      iova: 0,
      size: num(this.ram),
    });
  }

  /** QEMU's RamDiscardManager listener: VFIO unmaps a range before it goes private. */
  protected unmapBeforePrivate(b: TraceBuilder, off: bigint, size: bigint): void {
    if (this.p.vfio !== 'shared') return;
    const keep: typeof this.dma = [];
    for (const m of this.dma) {
      if (m.at < off + size && off < m.at + m.size)
        b.op({
          op: 'VFIO_IOMMU_UNMAP_DMA',
          fd: 'container',
          argsz: 24,
          flags: 0,
          iova: num(m.at),
          size: num(m.size),
        });
      else keep.push(m);
    }
    this.dma = keep;
  }

  /** KVM_PRE_FAULT_MEMORY of all guest RAM, when the policy pre-faults. */
  /**
   * A DEFAULT VM whose guest RAM is the VMM's anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS) in
   * a plain KVM_SET_USER_MEMORY_REGION memslot at RAM_GPA, then the policy's pre-fault and VFIO
   * mapping of all RAM: the boot of the designs that keep guest memory in the VMM (2020 protnone,
   * 2024 exclusive pin).
   */
  protected anonRamBoot(b: TraceBuilder): void {
    const ram = num(this.ram);
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: 0, as: 'vm' });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    b.op({ op: 'mmap', fd: null, length: ram, prot: 3, flags: 0x22, offset: 0, as: 'mem' });
    b.op({
      op: 'KVM_SET_USER_MEMORY_REGION',
      vm: 'vm',
      slot: 0,
      flags: 0,
      guest_phys_addr: num(RAM_GPA),
      memory_size: ram,
      userspace_addr: 'mem',
    });
    this.prefault(b);
    this.vfioMapAll(b);
  }

  protected prefault(b: TraceBuilder): void {
    if (this.p.prefault)
      b.op({
        op: 'KVM_PRE_FAULT_MEMORY',
        vcpu: 'cpu',
        gpa: num(RAM_GPA),
        size: num(this.ram),
        flags: 0,
      });
  }

  /** A guest program of hypercalls (nr, gpa or gfn, npages, attribute) in one KVM_RUN. */
  protected hypercall(nr: number, args: Array<number | string>): Record<string, unknown> {
    return { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ hypercall: { nr, args } }] };
  }

  /**
   * A share or unshare step: by default VFIO first unmaps what goes private, then the design
   * converts (a design whose conversion starts with the guest's own request overrides it).
   */
  protected convertStep(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    if (toPrivate) this.unmapBeforePrivate(b, off, size);
    this.convert(b, off, size, toPrivate);
  }

  step(s: ActionStep, b: TraceBuilder): void {
    const a = s.action;
    const p = this.p;
    switch (a.kind) {
      case 'boot':
        return this.boot(b, a);
      case 'share':
      case 'unshare':
        if (p.allShared) return b.na(NO_PRIVATE);
        return this.convertStep(b, a.at, a.size, a.kind === 'unshare');
      case 'guest_read':
        return b.access({
          op: 'KVM_RUN',
          vcpu: 'cpu',
          guest: [{ load: { gpa: num(RAM_GPA + a.at), size: a.len } }],
        });
      case 'guest_write':
        return b.access({
          op: 'KVM_RUN',
          vcpu: 'cpu',
          guest: [{ store: { gpa: num(RAM_GPA + a.at), hex: a.hex } }],
        });
      case 'host_read':
        return b.access({ op: 'peek', addr: at('mem', a.at), len: a.len });
      case 'host_write':
        return b.access({ op: 'poke', addr: at('mem', a.at), hex: a.hex });
      case 'gup':
        if (!this.pipe) {
          this.pipe = true;
          b.op({ op: 'pipe2', flags: 0, as: 'pipe_r', write_as: 'pipe_w' });
        }
        return b.access({
          op: 'vmsplice',
          fd: 'pipe_w',
          addr: at('mem', a.at),
          len: num(a.size),
          flags: 0,
        });
      case 'gup_release':
        if (this.pipe) {
          this.pipe = false;
          b.op({ op: 'close', fd: 'pipe_w' });
          b.op({ op: 'close', fd: 'pipe_r' });
        }
        return;
      case 'dma_map':
      case 'dma_unmap':
        if (p.vfio === 'none') return b.na(NO_VFIO);
        if (p.vfio === 'all') {
          if (!this.vfio) this.vfioSetup(b);
          return;
        }
        this.vfioSetup(b);
        if (a.kind === 'dma_map') {
          this.dma.push({ at: a.at, size: a.size });
          return b.access({
            op: 'VFIO_IOMMU_MAP_DMA',
            fd: 'container',
            argsz: 32,
            flags: 3,
            addr: at('mem', a.at),
            iova: num(a.at),
            size: num(a.size),
          });
        }
        this.dma = this.dma.filter((m) => !(m.at === a.at && m.size === a.size));
        return b.access({
          op: 'VFIO_IOMMU_UNMAP_DMA',
          fd: 'container',
          argsz: 24,
          flags: 0,
          iova: num(a.at),
          size: num(a.size),
        });
      case 'dma_read':
        if (p.vfio === 'none') return b.na(NO_VFIO);
        this.vfioSetup(b);
        return b.access({ op: 'dma_read', fd: 'container', iova: num(a.at), len: a.len });
      case 'dma_write':
        if (p.vfio === 'none') return b.na(NO_VFIO);
        this.vfioSetup(b);
        return b.access({ op: 'dma_write', fd: 'container', iova: num(a.at), hex: a.hex });
      case 'teardown':
        if (this.pipe) {
          b.op({ op: 'close', fd: 'pipe_w' });
          b.op({ op: 'close', fd: 'pipe_r' });
        }
        if (this.vfio) {
          b.op({ op: 'close', fd: 'group' });
          b.op({ op: 'close', fd: 'container' });
        }
        b.op({ op: 'munmap', addr: 'mem', length: num(this.ram) });
        this.closeDesign(b);
        b.op({ op: 'close', fd: 'cpu' });
        b.op({ op: 'close', fd: 'vm' });
        return;
    }
  }
}

/**
 * The VMM's anonymous and shmem pages behind a memslot's userspace range, as runs of host virtual
 * pages with the flags of their VMA (not the guest_memfd's own mapping).
 */
export function forEachSlotHostPage(
  h: Host,
  slot: Memslot,
  cb: (hs: number, he: number, vmaFlags: number) => void,
): void {
  const s0: number = slot.userspaceHvpn;
  for (const p of h.mm.vmas.piecesIn(s0, s0 + slot.npages)) {
    const v = p.value;
    if (v.obj instanceof GmemFile) continue;
    if (!v.shared) h.mm.anon.forEachIn(p.start, p.end, (s, e) => cb(s, e, v.flags));
    else if (v.obj instanceof ShmemObject) {
      const base = v.base - p.start;
      v.obj.pages.forEachIn(v.base, v.base + (p.end - p.start), (s, e) =>
        cb(s - base, e - base, v.flags),
      );
    }
  }
}

/** A measure from per-slot private/shared counts (the trace code page's slot left out). */
export function measureSlots(
  h: Host,
  perSlot: (vm: Vm, slot: Memslot) => { priv: number; shared: number },
): MemorySample {
  let priv = 0;
  let shared = 0;
  let mapped = 0;
  let pt = 0;
  for (const vm of h.allVms) {
    if (vm.dead) continue;
    for (const slot of vm.slots.values()) {
      if (slot.id === TRACE_CODE_SLOT && slot.asId === 0) continue;
      const c = perSlot(vm, slot);
      priv += c.priv;
      shared += c.shared;
    }
    const p = ptPages(vm);
    mapped += p.mapped;
    pt += p.pt;
  }
  return {
    private: priv,
    shared,
    double: 0,
    pinned: h.frames.pins.totalCovered(),
    referenced: h.frames.refs.totalCovered(),
    mapped,
    ptPages: pt,
  };
}
