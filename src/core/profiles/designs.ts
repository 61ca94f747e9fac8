/**
 * The historical private-memory designs as runnable profiles (issue 15 item 1; README
 * "Designs"). Each is a kernel that carries one design's series on top of the model's
 * linux-6.18 x86 kernel (kvm_intel, TDP MMU): the designs are compared on one kernel, so
 * everything the series does not touch is 6.18's, and what the design has in place of 6.18's
 * guest private memory (guest_memfd, memory attributes, SW_PROTECTED VMs) is compiled out.
 * The facts are synthesized; no live kernel matches a design profile (profiles/match.ts).
 *
 * Where a thread left a point open, the profile follows the reading its authors argued for; each
 * profile's notes say which.
 */
import { KVM_CAP } from '../base/uapi.js';
import type { NamedFacts } from './compose.js';
import type { KernelFacts } from './facts.js';
import { LINUX_6_18_FACTS } from './linux_6_18.js';

/** A cap table with some values replaced. */
function withCaps(
  values: readonly number[],
  overrides: ReadonlyArray<readonly [number, number]>,
): number[] {
  const t = [...values];
  for (const [id, v] of overrides) t[id] = v;
  return t;
}

/**
 * 6.18's guest private memory compiled out: no guest_memfd (KVM_CREATE_GUEST_MEMFD ENOTTY), no
 * memory attributes (KVM_SET_MEMORY_ATTRIBUTES ENOTTY), no SW_PROTECTED VM type (KVM_CAP_VM_TYPES
 * is DEFAULT only), and no KVM_CAP_EXIT_HYPERCALL (hypercall 12 is the design's own where it
 * has one).
 */
const NO_PRIVATE_MEM_CAPS: ReadonlyArray<readonly [number, number]> = [
  [KVM_CAP.KVM_CAP_GUEST_MEMFD, 0],
  [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, 0],
  [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, 0],
  [KVM_CAP.KVM_CAP_VM_TYPES, 1],
  [KVM_CAP.KVM_CAP_EXIT_HYPERCALL, 0],
];

function designFacts(
  design: NonNullable<KernelFacts['design']>,
  release: string,
  caps: ReadonlyArray<readonly [number, number]> = NO_PRIVATE_MEM_CAPS,
  kconfig: Partial<KernelFacts['kconfig']> = {},
): KernelFacts {
  return {
    ...LINUX_6_18_FACTS,
    release,
    kconfig: {
      ...LINUX_6_18_FACTS.kconfig,
      guestMemfd: false,
      genericMemoryAttributes: false,
      swProtectedVm: false,
      ...kconfig,
    },
    caps: {
      system: withCaps(LINUX_6_18_FACTS.caps.system, caps),
      vm: withCaps(LINUX_6_18_FACTS.caps.vm, caps),
    },
    design,
  };
}

/**
 * design-2020-protnone-follkvm: the "KVM protected memory extension" RFC v2 (Kirill A. Shutemov,
 * [RFCv2 00/16], 2020-10-20; v1 2020-05-22), CONFIG_HAVE_KVM_PROTECTED_MEMORY.
 *
 * - uAPI: three hypercalls, made by the guest (a `hypercall` step of KVM_RUN):
 *   KVM_HC_ENABLE_MEM_PROTECTED (12) protects every memslot's userspace range and every later
 *   one; KVM_HC_MEM_SHARE (13, gfn, npages) lifts the protection from a range for I/O;
 *   KVM_HC_MEM_UNSHARE (14) puts it back. Each returns 0 or a negative errno in RAX (-EINVAL for
 *   a range past its memslot, -ENOMEM for a hole in the VMAs). The VMM has no ioctl of its own.
 * - mm: the VMM's VMAs of guest RAM get VM_KVM_PROTECTED through mprotect_fixup() with their
 *   vm_flags unchanged and PROT_NONE PTEs: a VMM load or store is SIGBUS; every get_user_pages()
 *   without FOLL_KVM (vmsplice, VFIO_IOMMU_MAP_DMA, O_DIRECT, MADV_POPULATE_*) is -EFAULT; KVM's
 *   hva_to_pfn() passes FOLL_KVM and maps the page into the guest. A protected VMA never maps
 *   the zero page. The VMM's mprotect() keeps VM_KVM_PROTECTED (it changes VM_READ/WRITE/EXEC
 *   only), so the VMM cannot lift the protection.
 * - Points the thread left open, and the reading taken:
 *   - Whether the state "PROT_NONE in the VMM, present in the guest" should exist at all (Andy
 *     Lutomirski: it would become ABI; he preferred an mm only KVM uses, design-2020-separate-mm).
 *     Kirill argued for the PROT_NONE trick as the smaller change: modelled as he posted it.
 *   - Reboot (Vitaly Kuznetsov asked what unprotects memory on reset): the RFC has no answer and
 *     none is modelled; `mem_protected` stays set for the VM's life.
 *   - An MSR instead of the ENABLE hypercall (Vitaly's suggestion): the hypercall, as posted.
 *   - Pages GUP-pinned before the guest enabled protection, or while it had shared them (a VFIO
 *     mapping, a vmsplice): the RFC revokes no pin when it protects a range (ENABLE or
 *     UNSHARE); the model keeps them, and the design's invariant
 *     (host-no-private-access-protnone-follkvm) reports a device's DMA to such a page. The fuzz
 *     walk keeps off that DMA unless asked (`--design-holes`).
 *   - The direct map: the RFC removes protected pages from it (kvm_unmap_page()) so a kernel
 *     access oopses, and KVM reaches them through FOLL_KVM and a temporary mapping; the model's
 *     KVM accesses (stage-2 GUP, the emulator's uaccess) are KVM's own, which the design allows.
 *   - The guest's KVM_FEATURE_MEM_PROTECTED CPUID bit is not modelled (the model's guest has
 *     no CPUID step): the hypercalls work on any VM of this profile.
 */
export const DESIGN_2020_PROTNONE_FOLLKVM: NamedFacts = {
  id: {
    name: 'design-2020-protnone-follkvm',
    description:
      'design 2020: the KVM protected memory extension RFC v2 (Shutemov): guest RAM made PROT_NONE in the VMM with VM_KVM_PROTECTED, SIGBUS for the VMM, -EFAULT for GUP without FOLL_KVM; hypercalls 12/13/14; on linux-6.18 without guest_memfd; synthesized facts',
  },
  facts: designFacts('protnone-follkvm', '5.9-kvm-protected-rfc2'),
};

/**
 * design-2023-restrictedmem: the unmapped private memory (UPM) series v10, "KVM: mm: fd-based
 * approach for supporting KVM" (Chao Peng, Kirill A. Shutemov et al., 2022-12-02, 9 patches;
 * seed 004 is the patch 03 thread), CONFIG_RESTRICTEDMEM and CONFIG_HAVE_KVM_RESTRICTED_MEM.
 *
 * - uAPI: `memfd_restricted(flags)` makes a restricted fd (flags must be 0), sized once with
 *   ftruncate(); KVM_SET_USER_MEMORY_REGION with KVM_MEM_PRIVATE reads the `_ext` struct
 *   (`restricted_offset`, `restricted_fd`: a page-aligned offset that must not wrap, EINVAL;
 *   an fd that is not open, EBADF; not a restricted fd, EINVAL), so one memslot has private
 *   memory in the fd and shared memory at userspace_addr; KVM_SET_MEMORY_ATTRIBUTES (new in v10)
 *   says which half the guest sees, per gfn.
 * - mm: the restricted fd cannot be mmapped (no ->mmap: ENODEV), read or written (ESPIPE); a hole
 *   punch invalidates the bound memslots through the notifier before the pages go; a memory error
 *   reaches KVM through the notifier's `error` op and the page stays poisoned (the guest's next
 *   fault: -EHWPOISON). Shared memory is ordinary VMM memory at userspace_addr, so a converted
 *   page is allocated twice until the VMM punches the private copy or discards the shared one.
 * - Points the thread left open, and the reading taken:
 *   - A new ioctl or the `_ext` extension of KVM_SET_USER_MEMORY_REGION (Jarkko Sakkinen asked;
 *     seed 004): Chao Peng argued for the extension (fewer ioctls, shared code): modelled as the
 *     extension, as the `KVM_SET_USER_MEMORY_REGION_EXT` trace op (same ioctl number).
 *   - Which VMs may have private memory: v10 has no VM type for it; the SW_PROTECTED type stands
 *     in (KVM_MEM_PRIVATE needs a VM with private memory, as `kvm_arch_has_private_mem()` asks).
 *   - What a guest sees after a memory error: Kirill Shutemov's reading ("on the next request of
 *     the page the user will see an error"), as 6.18's guest_memfd kept it.
 *   - The restricted fd's relation to VMs: v10 allows bindings of one fd into several VMs; the
 *     model binds a restricted fd into one VM (a second is not modelled), and its pages are held
 *     in that VM's structures (kvm/restrictedmem.ts explains, and what it does not model).
 * - Otherwise linux-6.18: no KVM_CREATE_GUEST_MEMFD (guest_memfd is what this series became).
 */
export const DESIGN_2023_RESTRICTEDMEM: NamedFacts = {
  id: {
    name: 'design-2023-restrictedmem',
    description:
      'design 2023: the UPM series v10 (Chao Peng): memfd_restricted() and KVM_MEM_PRIVATE memslots with restricted_fd/restricted_offset beside a shared userspace_addr, notifier invalidation on punch and memory errors, KVM_SET_MEMORY_ATTRIBUTES; on linux-6.18 without guest_memfd; synthesized facts',
  },
  facts: designFacts(
    'restrictedmem',
    '6.1-upm-v10',
    [
      [KVM_CAP.KVM_CAP_GUEST_MEMFD, 0],
      [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, 0],
    ],
    { genericMemoryAttributes: true, swProtectedVm: true },
  ),
};

/**
 * design-2024-shmem-exclusive-pin: "mm/gup: Introduce exclusive GUP pinning" (RFC, 5 patches,
 * Elliot Berman, 2024-06-18, for arm64 pKVM and Qualcomm's Gunyah, with Fuad Tabba's pKVM work;
 * seed 003), CONFIG_EXCLUSIVE_PIN: guest memory stays shmem of the VMM, and KVM keeps a private
 * page to itself with an exclusive long-term pin instead of moving it into guest_memfd.
 *
 * - uAPI: none of its own. Guest memory is a shmem (memfd or MAP_SHARED|MAP_ANONYMOUS) mapping
 *   of the VMM registered as an ordinary memslot; the guest converts with KVM_HC_MAP_GPA_RANGE
 *   (12), which this design's KVM handles itself (kvm/exclusive_pin.ts): 0, or -EBUSY when a page
 *   is pinned already, -EFAULT when nothing backs it, -EINVAL for a bad range, in RAX.
 * - mm: FOLL_EXCLUSIVE (mm/gup.ts): an exclusive pin needs a folio with no pin and refuses every
 *   later FOLL_PIN with -EBUSY (VFIO_IOMMU_MAP_DMA of a private page: EBUSY); FOLL_GET
 *   (vmsplice) is not affected; conversion to shared drops the pin, to private retakes it; the
 *   pins go when the VM is destroyed. No page is allocated twice and nothing is copied.
 * - Points the thread left open, and the reading taken:
 *   - Who pins, when, and when it unpins (David Hildenbrand's questions): KVM, when the guest
 *     makes a page private; it unpins when the guest shares it again or the VM goes (the
 *     authors' pKVM flow).
 *   - An existing pin (a device mapped the page for DMA while shared): the exclusive pin fails,
 *     so the conversion fails (-EBUSY to the guest); the VMM must unmap the DMA first.
 *   - Speculative short-term pins from GUP-fast: not modelled (the model has no concurrency).
 *   - The host CPU: the RFC relies on pKVM's/Gunyah's hypervisor to unmap private pages from
 *     the host; on this x86 kernel nothing does, and the design's invariant reports a VMM load or
 *     store of a private page (the point of running the design here: what the pin alone does).
 *   - The conversion hypercall: pKVM's MEM_SHARE/MEM_UNSHARE on arm64; on x86 the model uses
 *     KVM_HC_MAP_GPA_RANGE, handled in KVM.
 */
export const DESIGN_2024_SHMEM_EXCLUSIVE_PIN: NamedFacts = {
  id: {
    name: 'design-2024-shmem-exclusive-pin',
    description:
      'design 2024: shmem guest memory with exclusive GUP pins (Berman/Tabba RFC): a private page is pinned FOLL_EXCLUSIVE by KVM, other pins -EBUSY, conversion drops or retakes the pin; guest converts with hypercall 12 handled in KVM; on linux-6.18 without guest_memfd; synthesized facts',
  },
  facts: designFacts('shmem-exclusive-pin', '6.10-exclusive-gup-rfc'),
};
