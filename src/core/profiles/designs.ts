/**
 * The historical private-memory designs as runnable profiles (issue 15 item 1; README
 * "Designs"). Each is a kernel that carries one design's series on top of the model's
 * linux-6.18 x86 kernel (kvm_intel, TDP MMU): the designs are compared on one kernel, so
 * everything the series does not touch is 6.18's, and what the design has in place of 6.18's
 * guest private memory (guest_memfd, memory attributes, SW_PROTECTED VMs) is compiled out.
 * The facts are synthesized; no live kernel matches a design profile (profiles/match.ts).
 *
 * Each profile is its series as posted, bugs included. Where a thread left a point open, the
 * profile follows the reading its authors argued for; where the model departs from the posted
 * code, the profile's notes say so and why. What the posted code accepts and the model cannot
 * represent throws NotModelled, never another kernel's errno.
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
 *   a range past its memslot, -ENOMEM for a hole in the VMAs, and for 13/14 on a READONLY
 *   memslot: gfn_to_hva_many() asks for a writable hva and gets KVM_HVA_ERR_RO_BAD, leaving the
 *   page count unset; the model takes the stack value not to trip the WARN). The VMM has no
 *   ioctl of its own.
 * - mm: the VMM's VMAs of guest RAM get VM_KVM_PROTECTED through mprotect_fixup() with their
 *   vm_flags unchanged and vm_page_prot PAGE_NONE (patch 09: the NUMA-hinting mechanism;
 *   check_vma_flags() is not changed). Each protect and unprotect notifies KVM (change_protection()),
 *   which zaps the guest's mapping. A VMM load or store is SIGBUS from do_numa_page() (a
 *   never-populated page is allocated and mapped PROT_NONE first: a protected VMA never maps the
 *   zero page); a GUP that honors NUMA hinting faults is -EFAULT the same way (every external
 *   get_user_pages() without FOLL_KVM on this kernel: vmsplice, VFIO_IOMMU_MAP_DMA, O_DIRECT; and
 *   any FOLL_WRITE, so a populating write); KVM's hva_to_pfn() passes FOLL_KVM, follows the
 *   PROT_NONE PTE and maps the page into the guest. A GUP that does not honor NUMA hinting faults
 *   follows the PTEs as FOLL_KVM does: on this kernel the internal populate (MADV_POPULATE_READ
 *   succeeds on a protected range), in 2020 every FOLL_FORCE GUP (ptrace, /proc/PID/mem, mlock;
 *   not modelled). The VMM's mprotect() keeps VM_KVM_PROTECTED (it changes VM_READ/WRITE/EXEC
 *   only), so the VMM cannot lift the protection.
 * - The design's hole, which its cover letter admits: the protection is on the VMM's VMAs, not
 *   on the pages. A page pinned before the guest enabled protection (a VFIO mapping), or a shmem
 *   page another process maps (a child forked before), stays reachable; the design's invariant
 *   counts every page a protected VMA maps as private and reports those accesses.
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
 *   - The port to this kernel: the RFC was posted for 5.9, where FOLL_KVM kept GUP from setting
 *     FOLL_NUMA; on this kernel the same meaning is a GUP without FOLL_HONOR_NUMA_FAULT, which
 *     internal GUPs (populate) already are. The hypercall numbers are the RFC's.
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
 * design-2020-separate-mm: guest memory in an mm that only KVM uses. Andy Lutomirski's reply in
 * the RFCv2 thread ("Re: [RFCv2 00/16] KVM protected memory extension", 2020-10-26; seed 002):
 * "create an mm_struct that is not loaded in CR3 anywhere. Instead, KVM will reference it, much
 * as it currently references QEMU's mm_struct, to mirror mappings into the guest"; protected
 * memory is mapped only there, so nothing but KVM references its PTEs. He points to an earlier
 * sketch of his (Sept 2020, the `address_space_create` / `KVM_MAP_ADDRESS_SPACE` idea) that is
 * not among this model's sources: the uAPI is the model's own reading, the least surprising one
 * in the spirit of those names, and the design never had a series (no code to follow).
 *
 * - uAPI (invented, named after the sketch): `address_space_create(flags)` returns an fd owning
 *   an empty mm of no process (flags must be 0); `address_space_mmap(as_fd, addr, length, prot,
 *   flags, src)` maps at a fixed address of that mm either private anonymous memory (`src` null,
 *   MAP_PRIVATE) or the shmem object behind the caller's own MAP_SHARED mapping at `src`
 *   (MAP_SHARED: the same frames in both mms); `address_space_munmap(as_fd, addr, length)`;
 *   the VM ioctl `KVM_MAP_ADDRESS_SPACE(as_fd)` makes KVM resolve every memslot's
 *   userspace_addr in that mm (once, before the first memslot: EEXIST, EBUSY). Memslots are
 *   ordinary KVM_SET_USER_MEMORY_REGION ones of a DEFAULT VM: no memslot flag, no attributes.
 * - mm: KVM's hva_to_pfn() (its GUP) and emulator uaccess run in the VM's address space, and its
 *   mmu_notifier moves there, so an unmap or a remap in that mm zaps the stage-2 mappings. The
 *   VMM's own accesses only name its own mm (a load or store: SIGSEGV where it has nothing;
 *   vmsplice, VFIO_IOMMU_MAP_DMA, MADV_POPULATE: EFAULT/ENOMEM as for any unmapped address), and
 *   the address-space fd has no read, write or mmap (ESPIPE, ENODEV): private memory is out of
 *   reach without any new check in the mm.
 * - Points the reply left open, and the reading taken:
 *   - Per memslot or per VM: per VM (KVM "references it" as it does QEMU's mm, one mm per VM);
 *     a memslot flag choosing the mm per slot would also fit the reply.
 *   - Conversion: the guest asks with KVM_HC_MAP_GPA_RANGE, forwarded to the VMM as 6.18's
 *     KVM_EXIT_HYPERCALL (so this profile keeps KVM_CAP_EXIT_HYPERCALL); the VMM converts by
 *     remapping the range in the guest address space: its shared memory there to make a page
 *     shared, private anonymous memory to make it private. Nothing in KVM tracks which is which.
 *   - Private content across a conversion: lost (the remap frees the anonymous pages; no one can
 *     copy them, the VMM cannot read them); shared memory the guest leaves stays in the VMM's
 *     shmem until the VMM discards it (MADV_REMOVE), as 6.18's shared memory does.
 *   - Devices: VFIO maps the VMM's own memory only, so only shared memory can be DMA-mapped;
 *     DMA into private memory (a device assigned to a protected guest) has no path.
 *   - What the VMM may do with the fd: map, unmap and hand it to KVM; no read/write, no mmap,
 *     no GUP, no /proc view. ptrace-style access (process_vm_readv) names a pid and this mm has
 *     none.
 *   - Who references the mm: the fd and each VM that attached it (the mm goes with the last).
 *   - The direct map and the guest's CPUID: as in the 2020 RFC, not modelled (the host kernel
 *     keeps its direct map; the invariant is about host mappings and DMA).
 */
export const DESIGN_2020_SEPARATE_MM: NamedFacts = {
  id: {
    name: 'design-2020-separate-mm',
    description:
      "design 2020: guest memory in an mm no process runs in (Lutomirski's reply to the RFCv2): address_space_create/address_space_mmap/address_space_munmap and KVM_MAP_ADDRESS_SPACE (uAPI invented after his sketch), KVM mirrors that mm, the VMM can only name its own; conversions by remapping after the KVM_HC_MAP_GPA_RANGE exit; on linux-6.18 without guest_memfd; synthesized facts",
  },
  facts: designFacts(
    'separate-mm',
    '5.10-separate-mm-sketch',
    NO_PRIVATE_MEM_CAPS.filter(([cap]) => cap !== KVM_CAP.KVM_CAP_EXIT_HYPERCALL),
  ),
};

/**
 * design-2023-restrictedmem: the unmapped private memory (UPM) series v10, "KVM: mm: fd-based
 * approach for supporting KVM" (Chao Peng, Kirill A. Shutemov et al., 2022-12-02, 9 patches;
 * seed 004 is the patch 03 thread), CONFIG_RESTRICTEDMEM and CONFIG_HAVE_KVM_RESTRICTED_MEM.
 *
 * - uAPI: `memfd_restricted(flags)` makes a restricted fd (flags must be 0), sized once with
 *   ftruncate(); KVM_SET_USER_MEMORY_REGION with KVM_MEM_PRIVATE reads the `_ext` struct
 *   (`restricted_offset`, `restricted_fd`: a page-aligned offset that must not wrap, EINVAL; an
 *   fd that is not open or not a restricted fd, one EINVAL), so one memslot has private memory
 *   in the fd and shared memory at userspace_addr; KVM_SET_MEMORY_ATTRIBUTES (new in v10) says
 *   which half the guest sees, per gfn. check_memory_region_flags() only adds KVM_MEM_PRIVATE to
 *   the valid flags: LOG_DIRTY_PAGES and READONLY are accepted beside it (a private fault on such
 *   a memslot is NotModelled). A modification of a private memslot is refused only when the new
 *   flags have KVM_MEM_PRIVATE; without it (a move, a flags change) v10 accepts it and
 *   kvm_commit_memory_region() frees the old memslot with its notifier still registered:
 *   NotModelled. v10 checks a binding neither against the file's size nor against other
 *   memslots' bindings: both NotModelled (kvm/restrictedmem.ts).
 * - Faults: a private gfn whose memslot cannot be private (or that has no memslot) is
 *   kvm_do_memory_fault_exit() → RET_PF_USER: KVM_RUN returns 0 with KVM_EXIT_MEMORY_FAULT, v10's
 *   number 38 and KVM_MEMORY_EXIT_FLAG_PRIVATE bit 0 (__u32 flags and padding; 6.18: 39, bit 3).
 * - mm: the restricted fd cannot be mmapped (no ->mmap: ENODEV), read or written (ESPIPE); a hole
 *   punch checks its alignment, then invalidates the bound memslots through the notifier before
 *   the pages go; fallocate() without PUNCH_HOLE goes to shmem (NotModelled). Shared memory is
 *   ordinary VMM memory at userspace_addr, so a converted page is allocated twice until the VMM
 *   punches the private copy or discards the shared one.
 * - A memory error (patch 9/9): the notifier's `error` op is kvm_restrictedmem_error() →
 *   kvm_arch_memory_mce(): KVM_REQ_MEMORY_MCE on every vCPU of the VM, whose next KVM_RUN
 *   returns 0 with KVM_EXIT_SHUTDOWN before the guest runs; nothing is zapped. Sean
 *   Christopherson objected to the synthesized shutdown in review (Jan 2023), and guest_memfd
 *   later kept Kirill Shutemov's reading (the page stays poisoned, the next fault errors): the
 *   6.18 profiles model that; this one models v10 as posted.
 * - Points the thread left open, and the reading taken:
 *   - A new ioctl or the `_ext` extension of KVM_SET_USER_MEMORY_REGION (Jarkko Sakkinen asked;
 *     seed 004): Chao Peng argued for the extension (fewer ioctls, shared code): modelled as the
 *     extension, as the `KVM_SET_USER_MEMORY_REGION_EXT` trace op (same ioctl number).
 *   - Which VMs may have private memory: as posted, none on x86. Patch 6/9's weak
 *     kvm_arch_has_private_mem() answers false and v10's x86 never overrides it, so x86 refused
 *     KVM_MEM_PRIVATE on every VM (the TDX and SNP series overrode it). The model's reading: the
 *     SW_PROTECTED type stands in for a VM with private memory (its private faults take the
 *     attributes' view); every other VM type refuses KVM_MEM_PRIVATE as v10's x86 did.
 *   - Memory attributes: v10's uAPI was KVM_CAP_MEMORY_ATTRIBUTES (then 225) answering 1, the mask
 *     from KVM_GET_SUPPORTED_MEMORY_ATTRIBUTES (_IOR 0xd2), and KVM_SET_MEMORY_ATTRIBUTES (_IOWR
 *     0xd3) writing the address and size back after partial progress. The profile answers with
 *     6.18's (the cap and its mask, 8; the ioctl as merged): a departure kept so that the
 *     attribute conversions every design comparison uses run one code path.
 *   - fstat: v10's restrictedmem_getattr() hands the restricted file's path to shmem_getattr(),
 *     which takes the inode from it and so reads the restricted inode as a shmem one (Ackerley
 *     Tng reported the crash); the model answers with the behaviour the fix gave, the wrapped
 *     memfd's size and blocks.
 *   - The restricted fd's relation to VMs: v10 allows bindings of one fd into several VMs; the
 *     model binds a restricted fd into one VM (a second is not modelled), and its pages are held
 *     in that VM's structures (kvm/restrictedmem.ts explains, and what it does not model).
 *   - The page a memory error hit: v10's KVM records nothing about it, and what memory_failure()
 *     does to the shmem page is outside the model: the page stays as it was.
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
 * Elliot Berman with Fuad Tabba, 2024-06-18, for arm64 pKVM and Qualcomm's Gunyah; seed 003),
 * CONFIG_EXCLUSIVE_PIN: guest memory stays the VMM's own memory, and KVM keeps a private page to
 * itself with an exclusive long-term pin instead of moving it into guest_memfd. The name keeps
 * the thread's question (shmem guest memory); the profile's guest memory is anonymous memory,
 * which the posted flow needs (below) and which pKVM uses ("We use anonymous memory for pKVM",
 * Fuad Tabba in the thread).
 *
 * - The RFC is mm only (mm/gup.c, include/linux/page_ref.h, the gup_test selftest): no KVM code.
 *   The KVM side here is the model's construction from the RFC's commit messages: who pins,
 *   when, the hypercall, its RAX errnos and the release at VM destroy are not the authors'.
 * - uAPI: none of its own. Guest memory is an ordinary memslot over the VMM's memory; the guest
 *   converts with KVM_HC_MAP_GPA_RANGE (12), which this design's KVM handles itself
 *   (kvm/exclusive_pin.ts): 0, or in RAX -EBUSY, -EINVAL, -EFAULT (below).
 * - mm (mm/gup.ts), as the patches intend: FOLL_EXCLUSIVE (patch 2/5) takes a pin only on a folio
 *   that has none and then refuses every later FOLL_PIN of the folio with -EBUSY (VFIO: EBUSY);
 *   FOLL_GET (vmsplice) is not affected. Exclusivity is per folio: a large folio's _pincount, a
 *   small one's refcount. As posted, large_folio_pin_setexc() stores `pins` instead of
 *   `new_pincount`, so the exclusive bias is never recorded on a large folio and a THP's
 *   exclusive pin would be an ordinary one: the model takes the intended reading (the whole
 *   folio exclusive; a second private page of the same THP is -EBUSY).
 * - Conversions, the authors' flow (patch 3/5's commit message): to private, KVM's exclusive pin
 *   (-EBUSY when the folio has any pin); to shared, unexc_user_page() drops only the exclusivity
 *   and one ordinary long-term pin stays; to private again, reexc_user_page(): -EINVAL unless
 *   the page is PageAnonExclusive, -EBUSY unless that pin is the folio's only one (a device
 *   mapped the shared page: the VMM must unmap the DMA first), then the kept pin becomes
 *   exclusive again (the model's KVM keeps one pin per page: reexc's new pin replaces the kept
 *   one). A shmem page is not anonymous: the second conversion to private is -EINVAL. (With
 *   CONFIG_DEBUG_VM off, the posted code would test PG_anon_exclusive's alias bit on a shmem
 *   page, which the first exclusive pin set; the model follows the stated intent.) KVM's pins go
 *   when the VM is destroyed. No page is allocated twice and nothing is copied.
 * - Points the thread left open, and the reading taken:
 *   - Who pins, when, and when it unpins (David Hildenbrand's questions): KVM, when the guest
 *     makes a page private; it keeps an ordinary pin when the guest shares it again and drops
 *     everything when the VM goes.
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
      "design 2024: exclusive GUP pins (Berman/Tabba RFC) on anonymous guest memory: a private page is pinned FOLL_EXCLUSIVE by KVM (per folio), other pins -EBUSY, sharing keeps an ordinary pin, going private again needs it alone; guest converts with hypercall 12 handled in KVM (the model's construction); on linux-6.18 without guest_memfd; synthesized facts",
  },
  facts: designFacts('shmem-exclusive-pin', '6.10-exclusive-gup-rfc'),
};
