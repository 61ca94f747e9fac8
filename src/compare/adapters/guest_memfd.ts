/**
 * VMM adapters for the guest_memfd designs the model runs today:
 *
 * - `linux-6.18`: guest_memfd holds private memory; shared memory is separate, at the memslot's
 *   `userspace_addr` (anonymous memory); conversions are the per-VM KVM_SET_MEMORY_ATTRIBUTES
 *   after the guest's KVM_HC_MAP_GPA_RANGE exit, and the VMM may discard the copy it no longer
 *   needs (QEMU's `kvm_convert_memory()`: MADV_DONTNEED of the shared range on to-private,
 *   FALLOC_FL_PUNCH_HOLE of the private range on to-shared). SW_PROTECTED VM.
 * - `linux-next-gmem`: the in-place conversion series (v7): one guest_memfd with
 *   GUEST_MEMFD_FLAG_MMAP is mmapped as `userspace_addr`, the file keeps shared/private per index
 *   and KVM_SET_MEMORY_ATTRIBUTES2 on the guest_memfd converts; one copy, so the discard knobs
 *   have nothing to drop; a conversion to private refuses while a page is pinned or referenced
 *   (`kvm_gmem_is_safe_for_conversion()`).
 *
 * Both lower the same way otherwise (see ./../adapter.ts): guest accesses are KVM_RUN guest
 * programs, host accesses peek/poke of the VMM's mapping, a GUP-style access (vhost, O_DIRECT)
 * is vmsplice of the VMM's mapping into a pipe (`iov_iter_get_pages2()`, FOLL_GET: the model's
 * user-visible GUP), devices are a VFIO type1v2 container (MAP_DMA pins with FOLL_LONGTERM).
 */
import { at, num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { PAGE, RAM_GPA, VmmLowerer } from './historical.js';

export { RAM_GPA };
/** KVM_HC_MAP_GPA_RANGE's attribute bit for encrypted (private) memory. */
const MAP_GPA_RANGE_ENCRYPTED = 0x10;
/** KVM_CAP_EXIT_HYPERCALL's argument: exit to userspace for KVM_HC_MAP_GPA_RANGE (bit 12). */
const EXIT_MAP_GPA_RANGE = 1 << 12;

export type Variant = 'separate' | 'inplace';

/**
 * The state one run keeps: what is open, what the device has mapped (./historical.ts). The
 * confidential platforms' adapters (./sev_snp.ts, ./tdx.ts) extend it with their own boot, the
 * guest's own conversion request and what the guest does after a conversion.
 */
export class GmemLowerer extends VmmLowerer {
  constructor(
    protected readonly v: Variant,
    w: Workload,
    p: Policy,
  ) {
    super(w, p);
  }

  /** The guest's request comes first; VFIO unmaps after it (convert). */
  protected override convertStep(
    b: TraceBuilder,
    off: bigint,
    size: bigint,
    toPrivate: boolean,
  ): void {
    this.convert(b, off, size, toPrivate);
  }

  /** The guest's conversion request: KVM_HC_MAP_GPA_RANGE, which exits to the VMM. */
  protected guestRequest(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    const gpa = RAM_GPA + off;
    b.op({
      op: 'KVM_RUN',
      vcpu: 'cpu',
      guest: [
        {
          hypercall: {
            nr: 12,
            args: [num(gpa), num(size / PAGE), toPrivate ? MAP_GPA_RANGE_ENCRYPTED : 0],
          },
        },
      ],
    });
  }

  /** What the guest does once the VMM converted the range (nothing on a SW_PROTECTED VM). */
  protected afterConvert(
    _b: TraceBuilder,
    _off: bigint,
    _size: bigint,
    _toPrivate: boolean,
  ): void {}

  protected convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    const gpa = RAM_GPA + off;
    // The guest's request exits to the VMM (KVM_EXIT_HYPERCALL), which converts.
    this.guestRequest(b, off, size, toPrivate);
    if (toPrivate) this.unmapBeforePrivate(b, off, size);
    const attributes = toPrivate ? 8 : 0;
    if (this.v === 'separate') {
      b.access({
        op: 'KVM_SET_MEMORY_ATTRIBUTES',
        vm: 'vm',
        address: num(gpa),
        size: num(size),
        attributes,
        flags: 0,
      });
      if (toPrivate && this.p.discardShared)
        b.op({ op: 'madvise', addr: at('mem', off), length: num(size), advice: 4 });
      if (!toPrivate && this.p.punchPrivate)
        b.op({ op: 'fallocate', fd: 'gmem', mode: 3, offset: num(off), len: num(size) });
    } else
      b.access({
        op: 'KVM_SET_MEMORY_ATTRIBUTES2',
        fd: 'gmem',
        offset: num(off),
        size: num(size),
        attributes,
        flags: 0,
        reserved: 0,
      });
    this.afterConvert(b, off, size, toPrivate);
  }

  protected boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    const p = this.p;
    const ram = num(this.ram);
    // Firecracker's secret-free layout: no private memory (a default VM on 6.18, where a
    // private-memory VM's guest_memfd cannot be INIT_SHARED).
    const vmType = p.allShared && this.v === 'separate' ? 0 : 1;
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: vmType, as: 'vm' });
    if (!p.allShared)
      b.op({ op: 'KVM_ENABLE_CAP', fd: 'vm', cap: 201, flags: 0, args: [EXIT_MAP_GPA_RANGE] });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    const gmemMmap = p.allShared || this.v === 'inplace';
    // GUEST_MEMFD_FLAG_MMAP (1), INIT_SHARED (2).
    const flags = p.allShared ? 3 : gmemMmap ? 1 : 0;
    gmemRamSlot(b, ram, flags, gmemMmap);
    if (!p.allShared) gmemRamAttributes(b, this.v, a);
    this.prefault(b);
    this.vfioMapAll(b);
  }

  protected closeDesign(b: TraceBuilder): void {
    b.op({ op: 'close', fd: 'gmem' });
  }
}

/**
 * Guest RAM as one guest_memfd of `ram` bytes (`flags`: GUEST_MEMFD_FLAG_*) in memslot 0 at
 * RAM_GPA, its `userspace_addr` the file's own mmap (`gmemMmap`: in-place conversion, or all
 * RAM shared) or separate anonymous memory (MAP_PRIVATE | MAP_ANONYMOUS). Shared by the
 * guest_memfd, SEV-SNP and TDX lowerers.
 */
export function gmemRamSlot(
  b: TraceBuilder,
  ram: ReturnType<typeof num>,
  flags: number,
  gmemMmap: boolean,
): void {
  b.op({ op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: ram, flags, as: 'gmem' });
  if (gmemMmap)
    b.op({ op: 'mmap', fd: 'gmem', length: ram, prot: 3, flags: 1, offset: 0, as: 'mem' });
  else b.op({ op: 'mmap', fd: null, length: ram, prot: 3, flags: 0x22, offset: 0, as: 'mem' });
  b.op({
    op: 'KVM_SET_USER_MEMORY_REGION2',
    vm: 'vm',
    slot: 0,
    flags: 4,
    guest_phys_addr: num(RAM_GPA),
    memory_size: ram,
    userspace_addr: 'mem',
    guest_memfd: 'gmem',
    guest_memfd_offset: 0,
  });
}

/**
 * The boot-time attributes of a confidential guest's RAM: the private part starts private, the
 * shared part shared. Separate shared memory (6.18): the per-VM KVM_SET_MEMORY_ATTRIBUTES makes
 * the private part PRIVATE; in-place conversion: the file starts private (no INIT_SHARED), so
 * KVM_SET_MEMORY_ATTRIBUTES2 converts the shared part.
 */
export function gmemRamAttributes(
  b: TraceBuilder,
  v: Variant,
  a: { private: bigint; shared: bigint },
): void {
  if (v === 'separate' && a.private > 0n)
    b.op({
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
      vm: 'vm',
      address: num(RAM_GPA),
      size: num(a.private),
      attributes: 8,
      flags: 0,
    });
  if (v === 'inplace' && a.shared > 0n)
    b.op({
      op: 'KVM_SET_MEMORY_ATTRIBUTES2',
      fd: 'gmem',
      offset: num(a.private),
      size: num(a.shared),
      attributes: 0,
      flags: 0,
      reserved: 0,
    });
}

export const LINUX_6_18: DesignAdapter = {
  name: 'linux-6.18',
  profile: 'linux-6.18',
  summary:
    'guest_memfd for private memory, separate shared memory at userspace_addr, per-VM KVM_SET_MEMORY_ATTRIBUTES (SW_PROTECTED VM)',
  origin: 'guest_memfd as merged in 6.8 and kept through 6.18 (seeds 000, 004)',
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.shared === 'gmem-mmap' && !p.allShared)
      return 'a private-memory VM cannot map its guest_memfd shared on 6.18 (no INIT_SHARED for SW_PROTECTED): shared memory is separate';
    return new GmemLowerer('separate', w, p);
  },
};

export const LINUX_NEXT_GMEM: DesignAdapter = {
  name: 'linux-next-gmem',
  profile: 'linux-next-gmem',
  summary:
    'guest_memfd with in-place conversion: one file, mmapped as userspace_addr, shared/private per index (KVM_SET_MEMORY_ATTRIBUTES2), pins refuse conversion',
  origin: 'the in-place conversion series v7 (seed 003)',
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.shared === 'anon')
      return 'in-place conversion keeps shared pages in guest_memfd: shared memory from anonymous memory is the 6.18 layout';
    return new GmemLowerer('inplace', w, p);
  },
};
