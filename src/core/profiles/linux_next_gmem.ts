/**
 * The in-flight guest_memfd kernel: Linux with the in-place shared/private conversion series v7
 * (kernel-uapi.md §6.1, source S8: Ackerley Tng, Sean Christopherson et al., "guest_memfd:
 * In-place conversion support" v7, 2026-05-22, 42 patches on kvm/next; tree
 * googleprodkernel/linux-cc branch guest_memfd-inplace-conversion-v7; lore
 * 20260522-gmem-inplace-conversion-v7-0-2f0fae496530@google.com) and the §6.6 changes already in
 * kvm-x86/next (S4), on x86 with the TDP MMU (kvm_intel, EPT), VM types DEFAULT and SW_PROTECTED.
 *
 * Two profiles, one per value of the read-only module parameter `kvm.vm_memory_attributes`
 * (v7 patch 18; a kernel fact, `kvmParams`):
 * - `linux-next-gmem` (`vm_memory_attributes=0`, what the series is for): attributes live in
 *   guest_memfd. KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd fd converts in place; the VM ioctl
 *   KVM_SET_MEMORY_ATTRIBUTES is ENOTTY and KVM_CAP_MEMORY_ATTRIBUTES 0;
 *   KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES (249) is PRIVATE on /dev/kvm and on a SW_PROTECTED VM,
 *   0 on a DEFAULT VM; INIT_SHARED is offered to SW_PROTECTED VMs too (patch 19).
 * - `linux-next-gmem-vmattr` (`vm_memory_attributes=1`, the default when
 *   CONFIG_KVM_VM_MEMORY_ATTRIBUTES is built): per-VM attributes as in 6.18; the guest_memfd
 *   ioctl is ENOTTY and cap 249 reads 0; a file's attributes never change after creation, so host
 *   faults follow INIT_SHARED as in 6.18.
 * Both have the series' per-index host-fault rule and the §6.6 changes (an overlapping binding is
 * EEXIST; the bind offset and size are unsigned, so an offset whose offset + size passes 2^63 is
 * EINVAL where 6.18's signed loff_t check wraps negative and binds it: `gmemBindOffsetUnsigned`).
 *
 * Two more compose the series' facts with the 6.18 confidential-computing hosts
 * (`linux-6.18-snp`, `linux-6.18-tdx`: same vendor module, caps and platform), both with
 * `vm_memory_attributes=0`, which is what lets a CoCo VM convert in place:
 * - `linux-next-gmem-snp`: an SEV-SNP host. INIT_SHARED is offered to SNP VMs (patch 19,
 *   `kvm_arch_supports_gmem_init_shared()`); SNP_LAUNCH_UPDATE's `uaddr` is optional (patch 20:
 *   0 measures the guest_memfd page as it is, i.e. what the VMM wrote through its mmap while the
 *   page was shared); only private folios are prepared (patch 07: `sev_gmem_prepare()` makes a
 *   page private in the RMP on a private fault only), and a conversion to shared gives the page
 *   back to the hypervisor in the RMP (patch 11, `sev_gmem_invalidate()`).
 * - `linux-next-gmem-tdx`: an Intel TDX host. KVM_TDX_INIT_MEM_REGION's `source_addr` is
 *   optional (patch 21: 0 uses the guest_memfd page itself as TDH.MEM.PAGE.ADD's source); a
 *   conversion to shared zaps the private S-EPT leaf (BLOCK, TRACK, PAGE.REMOVE, WBINVD, clear).
 * The series sits on kvm/next after 6.20's "KVM guest_memfd changes": `kvm_gmem_populate()` no
 * longer tracks preparation (SNP's RMP does), which these profiles' guest_memfd design
 * ('inplace-v7', guest_memfd/backing.ts) follows; the 6.18 profiles keep 6.18's populate.
 * Everything else (caps, host facts) is that of the 6.18 profile each one composes.
 *
 * Both also carry GUEST_MEMFD_FLAG_NO_DIRECT_MAP (kernel-uapi.md §6.3, source S9: Patrick Roy →
 * Nikita Kalyazin, "Direct Map Removal Support for guest_memfd" v12, 2026-04-10): flag bit 2, which
 * `kvm_gmem_get_supported_flags()` adds when `kvm_arch_gmem_supports_no_direct_map()` (x86:
 * `can_set_direct_map()` and not a TDX VM), so KVM_CAP_GUEST_MEMFD_FLAGS reads
 * MMAP | INIT_SHARED | NO_DIRECT_MAP (7) on /dev/kvm and on a DEFAULT VM, and per VM type what
 * composeProfile derives from that.
 * On the two profiles without a CoCo platform only (as HugeTLB, below): the SNP and TDX
 * profiles keep 6.18's flags (3), since their populate paths copy into the folio through the
 * direct map (not modelled with the flag).
 */
import { GUEST_MEMFD_FLAG_HUGETLB, GUEST_MEMFD_FLAG_NO_DIRECT_MAP, KVM_CAP } from '../base/uapi.js';
import type { NamedFacts } from './compose.js';
import type { KernelFacts } from './facts.js';
import { LINUX_6_18_FACTS, LINUX_6_18_SNP_FACTS, LINUX_6_18_TDX_FACTS } from './linux_6_18.js';

/** A cap table with some values replaced. */
function withCaps(
  values: readonly number[],
  overrides: ReadonlyArray<readonly [number, number]>,
): number[] {
  const t = [...values];
  for (const [id, v] of overrides) t[id] = v;
  return t;
}

/** KVM_MEMORY_ATTRIBUTE_PRIVATE. */
const PRIVATE = 8;

/**
 * The huge pages the synthesized host has free for HugeTLB guest_memfd at boot: 1024 of 2M
 * (2 GiB) and 4 of 1G (4 GiB). Small on purpose: a guest_memfd reserves its whole size at
 * creation, so larger files (and several files) meet ENOMEM.
 */
const GMEM_HUGETLB_POOLS = { pages2M: 1024, pages1G: 4 } as const;

/**
 * The caps that depend on `vm_memory_attributes` (kvm_vm_ioctl_check_extension_generic(), v7
 * patches 04 and 13), on /dev/kvm (kvm = NULL: `kvm_supported_mem_attributes(NULL)` is PRIVATE)
 * and on a DEFAULT VM (no private memory: 0 either way).
 */
function nextGmemFacts(
  base: KernelFacts,
  vmMemoryAttributes: boolean,
  hugetlb: boolean,
): KernelFacts {
  const sys: ReadonlyArray<readonly [number, number]> = vmMemoryAttributes
    ? [
        [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, PRIVATE],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, 0],
      ]
    : [
        [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, 0],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, PRIVATE],
      ];
  // KVM_CAP_GUEST_MEMFD_FLAGS (kvm_gmem_get_supported_flags()) gains HUGETLB with
  // CONFIG_KVM_GUEST_MEMFD_HUGETLB, on every VM type (as RFC v2's kvm_gmem_create() offers it),
  // and NO_DIRECT_MAP (kvm_arch_gmem_supports_no_direct_map(); compose.ts removes it for TDX VMs).
  // Only on the profiles without a CoCo platform: the SNP and TDX models keep order-0 folios
  // (2M RMP entries and 2M PAGE.AUG are not modelled), so those profiles do not offer HugeTLB.
  const gmemFlags = (v: readonly number[]): number =>
    (v[KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS] ?? 0) |
    (hugetlb ? Number(GUEST_MEMFD_FLAG_HUGETLB | GUEST_MEMFD_FLAG_NO_DIRECT_MAP) : 0);
  const caps = base.caps;
  return {
    ...base,
    release: '7.1-gmem-inplace-v7',
    kconfig: {
      ...base.kconfig,
      gmemMemoryAttributes: true,
      ...(hugetlb ? { gmemHugetlb: true } : {}),
    },
    kvmParams: { vmMemoryAttributes },
    caps: {
      system: withCaps(caps.system, [
        ...sys,
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, gmemFlags(caps.system)],
      ]),
      vm: withCaps(caps.vm, [
        [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, 0],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, 0],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, gmemFlags(caps.vm)],
      ]),
    },
    ...(hugetlb ? { host: { ...base.host, gmemHugetlbPools: GMEM_HUGETLB_POOLS } } : {}),
  };
}

export const LINUX_NEXT_GMEM_FACTS: KernelFacts = nextGmemFacts(LINUX_6_18_FACTS, false, true);
export const LINUX_NEXT_GMEM_VMATTR_FACTS: KernelFacts = nextGmemFacts(
  LINUX_6_18_FACTS,
  true,
  true,
);
export const LINUX_NEXT_GMEM_SNP_FACTS: KernelFacts = nextGmemFacts(
  LINUX_6_18_SNP_FACTS,
  false,
  false,
);
export const LINUX_NEXT_GMEM_TDX_FACTS: KernelFacts = nextGmemFacts(
  LINUX_6_18_TDX_FACTS,
  false,
  false,
);
export const LINUX_NEXT_GMEM: NamedFacts = {
  id: {
    name: 'linux-next-gmem',
    description:
      'kvm/next with the guest_memfd in-place conversion series v7 (2026-05-22) and NO_DIRECT_MAP v12 (2026-04-10), kvm.vm_memory_attributes=0: per-guest_memfd attributes, KVM_SET_MEMORY_ATTRIBUTES2, GUEST_MEMFD_FLAG_NO_DIRECT_MAP; x86 TDP, DEFAULT and SW_PROTECTED VMs; synthesized facts',
  },
  facts: LINUX_NEXT_GMEM_FACTS,
};

export const LINUX_NEXT_GMEM_VMATTR: NamedFacts = {
  id: {
    name: 'linux-next-gmem-vmattr',
    description:
      'as linux-next-gmem with kvm.vm_memory_attributes=1: per-VM attributes as in 6.18 (the guest_memfd ioctl is ENOTTY); synthesized facts',
  },
  facts: LINUX_NEXT_GMEM_VMATTR_FACTS,
};

export const LINUX_NEXT_GMEM_SNP: NamedFacts = {
  id: {
    name: 'linux-next-gmem-snp',
    description:
      'as linux-next-gmem (kvm.vm_memory_attributes=0) on an AMD SEV-SNP host (kvm_amd, NPT, the RMP and SNP firmware): SNP VMs with INIT_SHARED, in-place conversion and SNP_LAUNCH_UPDATE without uaddr (populate in place); synthesized facts',
  },
  facts: LINUX_NEXT_GMEM_SNP_FACTS,
};

export const LINUX_NEXT_GMEM_TDX: NamedFacts = {
  id: {
    name: 'linux-next-gmem-tdx',
    description:
      'as linux-next-gmem (kvm.vm_memory_attributes=0) on an Intel TDX host (kvm_intel, EPT, the TDX module): TDs with INIT_SHARED, in-place conversion and KVM_TDX_INIT_MEM_REGION without source_addr (populate in place); synthesized facts',
  },
  facts: LINUX_NEXT_GMEM_TDX_FACTS,
};
