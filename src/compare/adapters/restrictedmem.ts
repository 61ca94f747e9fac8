/**
 * VMM adapter for design-2023-restrictedmem (the UPM series v10, Chao Peng et al., Dec 2022;
 * profile notes in src/core/profiles/designs.ts). The VMM makes a restricted fd
 * (`memfd_restricted(0)`, sized once with ftruncate), maps separate shared memory (anonymous, as
 * on 6.18: the restricted fd has no ->mmap), and registers one KVM_MEM_PRIVATE memslot with
 * KVM_SET_USER_MEMORY_REGION's `_ext` struct (restricted_fd, restricted_offset) next to the
 * shared userspace_addr; KVM_SET_MEMORY_ATTRIBUTES (new in v10) makes the private part private.
 * Conversions are as in v10's flow: the guest's KVM_HC_MAP_GPA_RANGE exits to the VMM
 * (KVM_CAP_EXIT_HYPERCALL), which sets the attributes; a VMM that discards drops the shared copy
 * (MADV_DONTNEED) on to-private and punches the private copy out of the restricted fd on
 * to-shared (the notifier zaps the guest first). Two copies of a converted page, as on 6.18,
 * unless the VMM discards. The restricted fd's pages are held by the model in a guest_memfd file
 * object (kvm/restrictedmem.ts), so the default guest_memfd measure counts them as private.
 */
import { num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { at } from '../adapter.js';
import { VmmLowerer, PAGE, RAM_GPA } from './historical.js';

/** KVM_HC_MAP_GPA_RANGE's attribute bit for encrypted (private) memory. */
const MAP_GPA_RANGE_ENCRYPTED = 0x10;
/** KVM_CAP_EXIT_HYPERCALL's argument: exit to userspace for KVM_HC_MAP_GPA_RANGE (bit 12). */
const EXIT_MAP_GPA_RANGE = 1 << 12;
/** KVM_MEM_PRIVATE (v10): bit 2. */
const KVM_MEM_PRIVATE = 4;
const KVM_MEMORY_ATTRIBUTE_PRIVATE = 8;

class RestrictedmemLowerer extends VmmLowerer {
  protected boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    const ram = num(this.ram);
    const priv = !this.p.allShared;
    // A VM with private memory: v10 has no VM type of its own; SW_PROTECTED stands in.
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: priv ? 1 : 0, as: 'vm' });
    if (priv)
      b.op({ op: 'KVM_ENABLE_CAP', fd: 'vm', cap: 201, flags: 0, args: [EXIT_MAP_GPA_RANGE] });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    if (priv) {
      b.op({ op: 'memfd_restricted', flags: 0, as: 'rfd' });
      b.op({ op: 'ftruncate', fd: 'rfd', length: ram });
    }
    // MAP_PRIVATE | MAP_ANONYMOUS: the shared half.
    b.op({ op: 'mmap', fd: null, length: ram, prot: 3, flags: 0x22, offset: 0, as: 'mem' });
    if (priv)
      b.op({
        op: 'KVM_SET_USER_MEMORY_REGION_EXT',
        vm: 'vm',
        slot: 0,
        flags: KVM_MEM_PRIVATE,
        guest_phys_addr: num(RAM_GPA),
        memory_size: ram,
        userspace_addr: 'mem',
        restricted_fd: 'rfd',
        restricted_offset: 0,
      });
    else
      b.op({
        op: 'KVM_SET_USER_MEMORY_REGION',
        vm: 'vm',
        slot: 0,
        flags: 0,
        guest_phys_addr: num(RAM_GPA),
        memory_size: ram,
        userspace_addr: 'mem',
      });
    if (priv && a.private > 0n)
      b.op({
        op: 'KVM_SET_MEMORY_ATTRIBUTES',
        vm: 'vm',
        address: num(RAM_GPA),
        size: num(a.private),
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0,
      });
    this.prefault(b);
    this.vfioMapAll(b);
  }

  protected convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    const gpa = RAM_GPA + off;
    // The guest's request: KVM_HC_MAP_GPA_RANGE, which exits to the VMM (KVM_EXIT_HYPERCALL).
    b.op(this.hypercall(12, [num(gpa), num(size / PAGE), toPrivate ? MAP_GPA_RANGE_ENCRYPTED : 0]));
    b.access({
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
      vm: 'vm',
      address: num(gpa),
      size: num(size),
      attributes: toPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0,
      flags: 0,
    });
    if (toPrivate && this.p.discardShared)
      b.op({ op: 'madvise', addr: at('mem', off), length: num(size), advice: 4 });
    // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE on the restricted fd (restrictedmem_fallocate()).
    if (!toPrivate && this.p.punchPrivate)
      b.op({ op: 'fallocate', fd: 'rfd', mode: 3, offset: num(off), len: num(size) });
  }

  protected closeDesign(b: TraceBuilder): void {
    if (!this.p.allShared) b.op({ op: 'close', fd: 'rfd' });
  }
}

export const DESIGN_2023_RESTRICTEDMEM: DesignAdapter = {
  name: 'design-2023-restrictedmem',
  profile: 'design-2023-restrictedmem',
  summary:
    'memfd_restricted() for private memory (no mmap, no read), KVM_MEM_PRIVATE memslots via KVM_SET_USER_MEMORY_REGION_EXT next to a shared userspace_addr, KVM_SET_MEMORY_ATTRIBUTES conversions',
  origin: 'the UPM series v10, Chao Peng et al., Dec 2022 (seed 004)',
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.shared === 'gmem-mmap' && !p.allShared)
      return 'a restricted fd cannot be mmapped (no ->mmap: ENODEV): shared memory is separate, at userspace_addr';
    return new RestrictedmemLowerer(w, p);
  },
};
