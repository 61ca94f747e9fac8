/**
 * Named injected bugs for the seeded-bug benchmark (`--mutant NAME`). The faithful model runs
 * with an empty set; each mutant is a single `has()` check placed where the real kernel bug (or a
 * plausible slip) would be. A mutant the fuzzer cannot find means a missing invariant or a weak
 * generator: fix that, do not drop the mutant.
 */

export type MutantInfo = {
  readonly name: string;
  /** What is broken. */
  readonly bug: string;
  /** The kernel function it lives in and the real bug or slip it is modelled on. */
  readonly modelledOn: string;
  /**
   * The platform whose code it lives in (a profile's `parts.platform`): only profiles of that
   * platform reach it, so only they list and fuzz it. Absent: every profile.
   */
  readonly platform?: 'sev-snp' | 'tdx' | 'pkvm';
  /**
   * The guest_memfd design whose code it lives in (a profile's `parts.gmem`): only profiles with
   * that design reach it, so only they list and fuzz it. Absent: every design.
   */
  readonly gmem?: 'inplace-v7';
  /**
   * The historical design whose code it lives in (a profile's `design`): only that design's
   * profile reaches it, so only it lists and fuzzes it. Absent: every profile.
   */
  readonly design?: 'protnone-follkvm' | 'restrictedmem' | 'shmem-exclusive-pin' | 'separate-mm';
};

/**
 * The profile a mutant is fuzzed on (the seeded-bug benchmark and its tests): its design's, one
 * of its platform's, else linux-6.18.
 */
export function mutantFuzzProfile(m: MutantInfo): string {
  if (m.design === 'protnone-follkvm') return 'design-2020-protnone-follkvm';
  if (m.design === 'restrictedmem') return 'design-2023-restrictedmem';
  if (m.design === 'shmem-exclusive-pin') return 'design-2024-shmem-exclusive-pin';
  if (m.platform === 'sev-snp') return 'linux-6.18-snp';
  if (m.platform === 'tdx') return 'linux-6.18-tdx';
  if (m.platform === 'pkvm') return 'linux-6.18-arm64-pkvm';
  if (m.gmem === 'inplace-v7') return 'linux-next-gmem';
  if (m.design === 'separate-mm') return 'design-2020-separate-mm';
  return 'linux-6.18';
}

export const MUTANTS: readonly MutantInfo[] = [
  {
    name: 'punch_no_zap',
    bug: 'fallocate(PUNCH_HOLE) truncates guest_memfd pages without zapping the stage-2 mappings of the bound gfns',
    modelledOn:
      'kvm_gmem_punch_hole() without kvm_gmem_invalidate_begin(): the guest keeps a mapping to a freed page',
  },
  {
    name: 'punch_keeps_frames',
    bug: 'the punched pages leave the file but are never freed',
    modelledOn: 'a truncate that drops folios from the mapping without folio_put() (memory leak)',
  },
  {
    name: 'attr_change_no_zap',
    bug: 'KVM_SET_MEMORY_ATTRIBUTES changes attributes without zapping the old kind of mapping',
    modelledOn: 'kvm_vm_set_mem_attributes() skipping kvm_arch_pre_set_memory_attributes()',
  },
  {
    name: 'hugepage_mixed_not_tracked',
    bug: 'KVM_LPAGE_MIXED_FLAG is not updated after attribute changes, so a hugepage can span shared and private gfns',
    modelledOn:
      'kvm_arch_post_set_memory_attributes() missing (the 2023 review found head/tail frames mishandled)',
  },
  {
    name: 'release_keeps_slot_file',
    bug: 'releasing the last guest_memfd reference does not clear slot->gmem.file',
    modelledOn:
      'kvm_gmem_release() without WRITE_ONCE(slot->gmem.file, NULL) (use-after-free of the file)',
  },
  {
    name: 'gmem_release_no_zap',
    bug: 'guest_memfd release frees the memory without zapping the bound gfns',
    modelledOn: 'kvm_gmem_release() without kvm_gmem_invalidate_begin(gmem, 0, -1ul)',
  },
  {
    name: 'gmem_no_zero_on_prepare',
    bug: "a fallocate'd (or freshly allocated) guest_memfd page is not zeroed before first use",
    modelledOn: 'kvm_gmem_prepare_folio() without clear_highpage() (host data leak to the guest)',
  },
  {
    name: 'gmem_host_fault_ignores_shared',
    bug: 'the host may fault in pages of a guest_memfd without GUEST_MEMFD_FLAG_INIT_SHARED',
    modelledOn:
      'kvm_gmem_fault_user_mapping() missing its INIT_SHARED check (host reads private memory)',
  },
  {
    name: 'gmem_bind_overlap_allowed',
    bug: 'binding a guest_memfd range that is already bound to another memslot is accepted',
    modelledOn:
      'kvm_gmem_bind() without the xa_find() overlap check (two gfns share a private page)',
  },
  {
    name: 'delete_leaves_sptes',
    bug: 'deleting a memslot does not zap its mappings',
    modelledOn:
      'kvm_arch_flush_shadow_memslot() skipped on KVM_MR_DELETE (the KVM_X86_QUIRK_SLOT_ZAP_ALL era regressions)',
  },
  {
    name: 'move_no_zap',
    bug: 'moving a memslot does not zap the mappings at its old base',
    modelledOn: 'kvm_invalidate_memslot() skipped on KVM_MR_MOVE',
  },
  {
    name: 'prefault_ignores_attributes',
    bug: 'KVM_PRE_FAULT_MEMORY maps a private gfn as shared (from userspace_addr)',
    modelledOn:
      'kvm_arch_vcpu_pre_fault_memory() without the PFERR_PRIVATE_ACCESS bit (cf. the 2025 TDX pre-fault KVM_BUG_ON)',
  },
  {
    name: 'private_fault_uses_hva',
    bug: 'a private fault in a hybrid memslot is served from userspace_addr instead of guest_memfd',
    modelledOn: '__kvm_mmu_faultin_pfn() taking the GUP path for fault->is_private',
  },
  {
    name: 'mmu_notifier_missing',
    bug: 'host unmaps (munmap, MADV_DONTNEED, mprotect) do not notify KVM',
    modelledOn:
      'kvm_mmu_notifier_invalidate_range_start() not registered (stale mapping to a freed anonymous page)',
  },
  {
    name: 'anon_fault_no_zero',
    bug: 'a new anonymous page is handed to the VMM (and, through GUP, the guest) without being zeroed',
    modelledOn: 'an allocation without __GFP_ZERO in do_anonymous_page()',
  },
  {
    name: 'vm_put_early',
    bug: 'closing the VM fd destroys the VM while guest_memfd files still reference it',
    modelledOn: 'kvm_gmem_create() without kvm_get_kvm() (the file must pin the VM)',
  },
  {
    name: 'snp_invalidate_keeps_assigned',
    bug: 'sev_gmem_invalidate() leaves the frames of a truncated guest_memfd range assigned in the RMP',
    modelledOn:
      'sev_gmem_invalidate() without rmp_make_shared() (the folio is freed while the RMP still assigns it: the next owner takes an RMP #PF)',
    platform: 'sev-snp',
  },
  {
    name: 'snp_rmp_no_direct_map_split',
    bug: "rmp_make_private() of a 4K frame does not split the host's 2 MiB direct-map mapping first",
    modelledOn:
      'rmpupdate() without adjust_direct_map() (a kernel write through the 2M mapping to a shared neighbour takes an RMP #PF)',
    platform: 'sev-snp',
  },
  {
    name: 'snp_fw_update_after_finish',
    bug: 'the SNP firmware accepts SNP_LAUNCH_UPDATE after SNP_LAUNCH_FINISH',
    modelledOn:
      'SNP_LAUNCH_UPDATE without its guest-state (LAUNCH) check: pages measured into a digest already attested as final',
    platform: 'sev-snp',
  },
  {
    name: 'snp_launch_update_keeps_failed_page',
    bug: 'a page whose SNP_LAUNCH_UPDATE the firmware refused stays private (assigned, Pre-Guest) after the failed command',
    modelledOn:
      "sev_gmem_post_populate()'s fw_err path without snp_page_reclaim(): the page stays assigned and immutable while KVM reports the failure, and leaks when the gmem page is freed",
    platform: 'sev-snp',
  },
  {
    name: 'snp_vc_not_raised',
    bug: 'a private (C=1) guest access to an assigned page the guest has not validated completes instead of raising #VC',
    modelledOn:
      'the RMP access check without its Validated test (the guest consumes a page the hypervisor assigned or swapped behind its back)',
    platform: 'sev-snp',
  },
  {
    name: 'snp_pvalidate_no_noupdate',
    bug: 'PVALIDATE of a page already in the requested state reports a change (CF = 0) instead of NOUPDATE',
    modelledOn:
      "PVALIDATE without its 'already validated' test: a guest cannot detect a second validation of one assignment",
    platform: 'sev-snp',
  },
  {
    name: 'snp_psc_merge_mixed_ops',
    bug: 'a PSC descriptor request merges adjacent entries into one KVM_HC_MAP_GPA_RANGE exit without comparing their operations, so a shared request rides along in a private exit (or a private one in a shared exit, or in a PSMASH run that completes without any exit)',
    modelledOn:
      "snp_begin_psc() without its `entry.operation != entry_start.operation` test when extending the range: the VMM converts the guest's page the wrong way (or not at all) while KVM marks the entry done in the guest's descriptor",
    platform: 'sev-snp',
  },
  {
    name: 'tdx_zap_no_track',
    bug: 'zapping a private leaf of a RUNNABLE TD blocks it but skips TDH.MEM.TRACK, so the module refuses TDH.MEM.PAGE.REMOVE (TLB tracking not done): the VM is bugged and guest_memfd frees the page while the S-EPT still maps it',
    modelledOn:
      'tdx_sept_remove_private_spte() without tdx_track() between tdx_sept_zap_private_spte() (BLOCK) and tdx_sept_drop_private_spte() (REMOVE): stale TLB entries of the blocked page',
    platform: 'tdx',
  },
  {
    name: 'tdx_measure_skips_extend',
    bug: 'KVM_TDX_INIT_MEM_REGION with KVM_TDX_MEASURE_MEMORY_REGION adds the page (PAGE.ADD) but never MR.EXTENDs its contents',
    modelledOn:
      'tdx_gmem_post_populate() losing its TDH.MR.EXTEND loop: the MRTD attests the GPAs of the firmware but not its contents',
    platform: 'tdx',
  },
  {
    name: 'tdx_extend_two_pass',
    bug: "KVM_TDX_INIT_MEM_REGION MR.EXTENDs the measured pages only after the region's last PAGE.ADD (ADD all, then EXTEND all) instead of after each page",
    modelledOn:
      'the two-pass ADD/EXTEND order of older TDX QEMU/KVM stacks (platforms.md §1.7 ordering pitfall): the MRTD differs from the single-pass one verifiers of upstream KVM expect',
    platform: 'tdx',
  },
  {
    name: 'tdx_page_add_swapped',
    bug: "KVM_TDX_INIT_MEM_REGION passes TDH.MEM.PAGE.ADD the source page as the target and the guest_memfd page as the source: the TD's S-EPT maps the VMM's page while KVM's mirror maps the guest_memfd one",
    modelledOn:
      "a swapped operand pair in tdx_gmem_post_populate()'s tdh_mem_page_add(&kvm_tdx->td, gpa, pfn_to_page(pfn), src_page, ...) call: the VMM keeps writing a page the TD now owns",
    platform: 'tdx',
  },
  {
    name: 'tdx_pending_access_allowed',
    bug: "the CPU's S-EPT check lets a TD guest's private access to a PENDING page (AUGed, never accepted) complete instead of raising #VE or an EPT-violation exit",
    modelledOn:
      "a PENDING leaf translated as if it had RWX (the TDX module's guest_accessible_leaf / the walk's permission check missing PENDING): the guest consumes a page the VMM swapped in behind its back, the attack ACCEPT exists to stop",
    platform: 'tdx',
  },
  {
    name: 'tdx_map_gpa_keeps_shared_bit',
    bug: "a TD's MapGPA to shared is forwarded to the VMM as KVM_HC_MAP_GPA_RANGE with the GPA's shared bit still set",
    modelledOn:
      '__tdx_map_gpa() without gpa_to_gfn(tdx->map_gpa_next) & ~kvm_gfn_direct_bits() (the uAPI promises GPAs without the shared bit): the VMM converts pages the guest did not name, or none',
    platform: 'tdx',
  },
  {
    name: 'pkvm_share_guest_no_count',
    bug: 'sharing a host page that is already shared with a non-protected guest with another guest (or gfn) does not count the second share',
    modelledOn:
      '__pkvm_host_share_guest() without its host_share_guest_count++ for a SHARED_OWNED page (mem_protect.c, v6.18): the first unshare returns the page to the host while the other guest still maps it',
    platform: 'pkvm',
  },
  {
    name: 'pkvm_unshare_guest_early_owned',
    bug: 'unsharing a page from one non-protected guest returns it to the host (OWNED) while other guests still borrow it',
    modelledOn:
      '__pkvm_host_unshare_guest() setting the host state OWNED without its `if (!page->host_share_guest_count)` test (mem_protect.c, v6.18)',
    platform: 'pkvm',
  },
  {
    name: 'pkvm_poison_page_no_zero',
    bug: "a guest page the hypervisor takes back for the host (a dying guest's reclaim, a forced reclaim) is not cleared: the host gets it with the guest's data",
    modelledOn:
      "hyp_poison_page() without its memset (the later tree's __pkvm_host_reclaim_page_guest() and __pkvm_host_force_reclaim_page_guest() both call it before host_stage2_set_owner_locked(PKVM_ID_HOST)): a protected guest's secrets reach the host",
    platform: 'pkvm',
  },
  {
    name: 'pkvm_donate_keeps_host_map',
    bug: 'donating a page to a protected guest sets the host state NOPAGE but leaves the host stage-2 entry as it was (no donation annotation; a valid idmap stays valid)',
    modelledOn:
      '__pkvm_host_donate_guest() without host_stage2_set_owner_metadata_locked(): the host keeps (or re-faults) access to a page the guest owns',
    platform: 'pkvm',
  },
  {
    name: 'pkvm_memcache_admit_no_donate',
    bug: "the vCPU memcache refill takes the host's pages for guest page tables without donating them to the hypervisor",
    modelledOn:
      "refill_memcache()/admit_host_page() without __pkvm_host_donate_hyp() (hyp-main.c): the host can rewrite the guest's stage-2 page tables",
    platform: 'pkvm',
  },
  {
    name: 'pkvm_mem_unshare_owned',
    bug: "a protected guest's MEM_UNSHARE of a page it owns and never shared succeeds",
    modelledOn:
      '__pkvm_guest_unshare_host() without its guest SHARED_OWNED / host SHARED_BORROWED checks: the call succeeds where the spec forbids it (only the history oracle sees it: the stepwise state does not move)',
    platform: 'pkvm',
  },
  {
    name: 'pkvm_host_abort_maps_guest_page',
    bug: 'a host stage-2 fault on a page donated to a guest maps it in the host instead of injecting an abort',
    modelledOn:
      "host_stage2_idmap()/host_stage2_adjust_range() treating a DONATION annotation as an empty entry (handle_host_mem_abort()): the host reads a protected guest's memory",
    platform: 'pkvm',
  },
  {
    name: 'pkvm_force_reclaim_no_poison',
    bug: "a forced reclaim returns a protected guest's page to the host without poisoning the guest's stage-2 entry",
    modelledOn:
      '__pkvm_host_force_reclaim_page_guest() without the KVM_GUEST_INVALID_PTE_TYPE_POISONED annotation: guest and host both own the page',
    platform: 'pkvm',
  },
  {
    name: 'conversion_ignores_pin',
    bug: 'KVM_SET_MEMORY_ATTRIBUTES2 makes a range private while a folio in it is pinned or referenced',
    modelledOn:
      'kvm_gmem_set_attributes() without kvm_gmem_is_safe_for_conversion() (in-place conversion v7): a long-term pin (VFIO) or a vmsplice reference keeps reaching a page that is now private',
    gmem: 'inplace-v7',
  },
  {
    name: 'conversion_unmaps_current_mm',
    bug: 'KVM_SET_MEMORY_ATTRIBUTES2 to private unmaps the range from the calling process only',
    modelledOn:
      'a conversion that zaps the caller’s page tables (current->mm) instead of unmap_mapping_pages() over the file’s i_mmap: a forked child keeps a PTE to a page that is now private (the case forked_accesses tests)',
    gmem: 'inplace-v7',
  },
  {
    name: 'hugetlb_split_loses_page',
    bug: 'splitting a HugeTLB guest_memfd folio on conversion to shared drops one subpage from the file',
    modelledOn:
      'kvm_gmem_restructure() → hugetlb_restructuring_restructure_folio() to order 0 losing the last subpage of the split folio from the page cache: the page is still allocated but no file index owns it (an accounting leak; the index faults in a fresh folio)',
    gmem: 'inplace-v7',
  },
  {
    name: 'hugetlb_merge_with_shared',
    bug: 'a conversion to private merges the HugeTLB folio although another index of the huge page is still shared',
    modelledOn:
      'kvm_gmem_restructure() deciding to_order from the converted range only, without the all_rest_private check over the rest of the huge page: a huge folio (and huge guest mappings) over a shared index',
    gmem: 'inplace-v7',
  },
  {
    name: 'iommu_unmap_keeps_mapping',
    bug: 'VFIO_IOMMU_UNMAP_DMA unpins the pages but leaves the IOMMU mapping',
    modelledOn:
      'vfio_unmap_unpin() unpinning without iommu_unmap(): the device keeps reaching frames that are freed and reused (the stale-DMA bug)',
    gmem: 'inplace-v7',
  },
  {
    name: 'nodmap_free_keeps_zapped',
    bug: 'a NO_DIRECT_MAP guest_memfd frees its folios without restoring their direct-map entries',
    modelledOn:
      'kvm_gmem_free_folio() without kvm_gmem_folio_restore_direct_map() (NO_DIRECT_MAP series; v6 testing oopsed when the restore did not run): the next owner of the page, or the kernel zeroing it, faults on the missing direct-map entry',
    gmem: 'inplace-v7',
  },
  {
    name: 'nodmap_guest_map_no_zap',
    bug: 'kvm_gmem_get_pfn() hands a NO_DIRECT_MAP folio to the KVM MMU without removing it from the direct map',
    modelledOn:
      'a zap only in kvm_gmem_fault_user_mapping() (secretmem-style, host faults only) or only for folios get_pfn prepares itself: a folio the guest faults in first, or one kvm_gmem_populate() filled, stays reachable through the direct map while the guest uses it (the series zaps at every get_pfn)',
    gmem: 'inplace-v7',
  },
  {
    name: 'protnone_gup_ignores_kvm_protected',
    bug: 'get_user_pages() without FOLL_KVM succeeds on a VM_KVM_PROTECTED VMA (design-2020-protnone-follkvm)',
    modelledOn:
      "check_vma_flags() without the RFC's VM_KVM_PROTECTED test (KVM protected memory extension RFC v2, Shutemov, Oct 2020): VFIO_IOMMU_MAP_DMA pins protected guest RAM and the device reads and writes it",
    design: 'protnone-follkvm',
  },
  {
    name: 'restrictedmem_fd_is_memfd',
    bug: "memfd_restricted() hands out the wrapped shmem memfd's read path: read()/pread() of a restricted fd copy its pages out (design-2023-restrictedmem)",
    modelledOn:
      "restrictedmem_file_create() (UPM v10 patch 01, Chao Peng, Dec 2022) installing the memfd's file, or restrictedmem_fops keeping shmem's read_iter: the VMM reads the guest's private memory",
    design: 'restrictedmem',
  },
  {
    name: 'exclusive_pin_allows_other_pins',
    bug: 'a FOLL_PIN on a folio KVM pinned exclusively succeeds (design-2024-shmem-exclusive-pin)',
    modelledOn:
      "try_grab_folio() without the exclusive GUP pinning RFC's folio_is_exclusive() test (Elliot Berman, June 2024): VFIO_IOMMU_MAP_DMA pins a private page and the device reads and writes it",
    design: 'shmem-exclusive-pin',
  },
  {
    name: 'vmm_access_reaches_guest_mm',
    bug: "a VMM load or store at an address its own mm has nothing at is served from a VM's guest address space (design-2020-separate-mm)",
    modelledOn:
      "a remote access (access_remote_vm(), as /proc/PID/mem uses) handed the VM's address space instead of current->mm: the one mistake the separate-mm design leaves for the kernel to make, since the VMM itself can name no address of that mm",
    design: 'separate-mm',
  },
];

/**
 * The mutants a profile of `platform`, guest_memfd design `gmem` and historical design `design`
 * can reach (its own platform's and designs', and the generic ones).
 */
export function mutantsFor(
  platform: string,
  gmem = 'linux-6.18',
  design?: string,
): readonly MutantInfo[] {
  return MUTANTS.filter(
    (m) =>
      (m.platform === undefined || m.platform === platform) &&
      (m.gmem === undefined || m.gmem === gmem) &&
      (m.design === undefined || m.design === design),
  );
}

export type MutantName = string;

export function mutantInfo(name: string): MutantInfo | undefined {
  return MUTANTS.find((m) => m.name === name);
}

export class MutantSet {
  private readonly set: ReadonlySet<string>;
  constructor(names: Iterable<string> = []) {
    this.set = new Set(names);
  }
  has(name: string): boolean {
    return this.set.size !== 0 && this.set.has(name);
  }
  get names(): string[] {
    return [...this.set];
  }
}

export const NO_MUTANTS = new MutantSet();
