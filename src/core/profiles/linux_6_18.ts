/**
 * The Linux 6.18 x86 profiles, each composed from the facts of one kernel build
 * (kernel-uapi.md §0, §2.1, §7; README "Kernel profiles").
 *
 * - `linux-6.18-pvm`: the development machines' kernel 6.18.44-fc-v769, checked against it: PVM
 *   /dev/kvm, shadow paging (no TDP, so KVM_PRE_FAULT_MEMORY fails), DEFAULT VMs only, no memory
 *   attributes (ENOTTY), guest_memfd with MMAP|INIT_SHARED.
 * - `linux-6.18-pvm-nogmem`: 6.18.44-fc-v1252, the same PVM /dev/kvm built without guest_memfd
 *   (KVM_CREATE_GUEST_MEMFD ENOTTY, KVM_CAP_GUEST_MEMFD and _FLAGS 0, KVM_MEM_GUEST_MEMFD memslots
 *   EINVAL), checked against it.
 * - `linux-6.18`: x86 with the TDP MMU, VM types DEFAULT and SW_PROTECTED, memory attributes
 *   compiled in, pre-fault available, SMM. Derived from the PVM facts plus the spec's per-config
 *   values; not checked against a live kernel (the development machines cannot run it).
 * - `linux-6.18-snp`: an AMD EPYC host with SEV-SNP enabled (kvm_amd, NPT/TDP MMU), VM types
 *   DEFAULT, SW_PROTECTED, SEV, SEV_ES and SNP. No such machine exists here, so its facts are
 *   synthesized from `linux-6.18`'s (same kernel build and Kconfig) with what the AMD module
 *   changes, each from the kernel source (arch/x86/kvm/x86.c `kvm_vm_ioctl_check_extension()`,
 *   svm/sev.c `sev_set_cpu_caps()`): KVM_CAP_VM_TYPES = 0x1f (DEFAULT, SW_PROTECTED, and the
 *   three SEV types `sev_set_cpu_caps()` adds), KVM_CAP_VM_COPY_ENC_CONTEXT_FROM and
 *   KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM = 1 (`kvm_x86_ops.vm_copy_enc_context_from` /
 *   `vm_move_enc_context_from` are set by kvm_amd with CONFIG_KVM_AMD_SEV). The CPU-dependent caps
 *   (KVM_CAP_NR_VCPUS, KVM_CAP_TSC_DEADLINE_TIMER, KVM_CAP_X86_DISABLE_EXITS, KVM_CAP_XSAVE2)
 *   and the host facts stay those of the development machines.
 * - `linux-6.18-tdx`: an Intel host with TDX enabled (kvm_intel with `enable_tdx`, EPT/TDP MMU, a
 *   TDX module loaded), VM types DEFAULT, SW_PROTECTED and TDX. Synthesized likewise from
 *   `linux-6.18`'s facts with what `tdx_bringup()` changes: KVM_CAP_VM_TYPES = 0x23 (`vt_hardware_setup()`
 *   adds KVM_X86_TDX_VM to `kvm_caps.supported_vm_types` when TDX came up). What differs on a TD's
 *   VM fd is the VM type's (profiles/compose.ts); the host facts stay the development machines'.
 */
import { KVM_CAP } from '../base/uapi.js';
import type { NamedFacts } from './compose.js';
import type { HostFacts, KernelFacts } from './facts.js';
import { PVM_SYSTEM_CAPS, PVM_VM_CAPS } from './pvm_caps.js';

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
 * The development machines: 24 GiB (MemTotal 24683656 kB), no swap, THP madvise, PKU, KSM, no huge
 * pages, ASLR.
 */
const DEV_MACHINE_HOST: HostFacts = {
  thp: 'madvise',
  ramPages: 6170914,
  swapPages: 0,
  maxMapCount: 65530,
  hugePages: 0,
  pku: true,
  ksm: true,
  aslr: true,
};

export const LINUX_6_18_PVM_FACTS: KernelFacts = {
  release: '6.18.44-fc-v769',
  arch: 'x86_64',
  kvmModule: 'kvm_pvm',
  mmu: 'shadow',
  kconfig: { guestMemfd: true, genericMemoryAttributes: false, swProtectedVm: false, smm: false },
  caps: { system: PVM_SYSTEM_CAPS, vm: PVM_VM_CAPS },
  host: DEV_MACHINE_HOST,
};

const NO_GMEM_CAPS: ReadonlyArray<readonly [number, number]> = [
  [KVM_CAP.KVM_CAP_GUEST_MEMFD, 0],
  [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, 0],
];

export const LINUX_6_18_PVM_NOGMEM_FACTS: KernelFacts = {
  ...LINUX_6_18_PVM_FACTS,
  release: '6.18.44-fc-v1252',
  kconfig: { ...LINUX_6_18_PVM_FACTS.kconfig, guestMemfd: false },
  caps: {
    system: withCaps(PVM_SYSTEM_CAPS, NO_GMEM_CAPS),
    vm: withCaps(PVM_VM_CAPS, NO_GMEM_CAPS),
  },
};

const TDP_CAPS: ReadonlyArray<readonly [number, number]> = [
  [KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY, 1],
  [KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE, 2],
  [KVM_CAP.KVM_CAP_VM_TYPES, 3],
];

export const LINUX_6_18_FACTS: KernelFacts = {
  ...LINUX_6_18_PVM_FACTS,
  release: '6.18',
  kvmModule: 'kvm_intel',
  mmu: 'tdp',
  kconfig: { guestMemfd: true, genericMemoryAttributes: true, swProtectedVm: true, smm: true },
  caps: {
    system: withCaps(PVM_SYSTEM_CAPS, [...TDP_CAPS, [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, 8]]),
    vm: withCaps(PVM_VM_CAPS, TDP_CAPS),
  },
};

export const LINUX_6_18_PVM: NamedFacts = {
  id: {
    name: 'linux-6.18-pvm',
    description:
      'Linux 6.18 on the development machines: PVM /dev/kvm, shadow paging, DEFAULT VMs only, no memory attributes, guest_memfd',
    checkedAgainst: '6.18.44-fc-v769',
  },
  facts: LINUX_6_18_PVM_FACTS,
};

export const LINUX_6_18_PVM_NOGMEM: NamedFacts = {
  id: {
    name: 'linux-6.18-pvm-nogmem',
    description:
      'Linux 6.18 PVM /dev/kvm built without guest_memfd (KVM_CREATE_GUEST_MEMFD is ENOTTY); otherwise as linux-6.18-pvm',
    checkedAgainst: '6.18.44-fc-v1252',
  },
  facts: LINUX_6_18_PVM_NOGMEM_FACTS,
};

export const LINUX_6_18: NamedFacts = {
  id: {
    name: 'linux-6.18',
    description:
      'Linux 6.18 on x86 with the TDP MMU: DEFAULT and SW_PROTECTED VMs, memory attributes, pre-fault, SMM',
  },
  facts: LINUX_6_18_FACTS,
};

/** The SEV VM types `sev_set_cpu_caps()` adds on an SNP host: SEV (2), SEV_ES (3), SNP (4). */
const SNP_HOST_CAPS: ReadonlyArray<readonly [number, number]> = [
  [KVM_CAP.KVM_CAP_VM_TYPES, 0x1f],
  [KVM_CAP.KVM_CAP_VM_COPY_ENC_CONTEXT_FROM, 1],
  [KVM_CAP.KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM, 1],
];

export const LINUX_6_18_SNP_FACTS: KernelFacts = {
  ...LINUX_6_18_FACTS,
  release: '6.18',
  kvmModule: 'kvm_amd',
  caps: {
    system: withCaps(LINUX_6_18_FACTS.caps.system, SNP_HOST_CAPS),
    vm: withCaps(LINUX_6_18_FACTS.caps.vm, SNP_HOST_CAPS),
  },
};

export const LINUX_6_18_SNP: NamedFacts = {
  id: {
    name: 'linux-6.18-snp',
    description:
      'Linux 6.18 on an AMD SEV-SNP host (kvm_amd, NPT): DEFAULT, SW_PROTECTED, SEV, SEV_ES and SNP VMs, the RMP and SNP firmware; synthesized facts',
  },
  facts: LINUX_6_18_SNP_FACTS,
};

/** The TDX VM type `vt_hardware_setup()` adds when `tdx_bringup()` enabled TDX: bit 5. */
const TDX_HOST_CAPS: ReadonlyArray<readonly [number, number]> = [[KVM_CAP.KVM_CAP_VM_TYPES, 0x23]];

export const LINUX_6_18_TDX_FACTS: KernelFacts = {
  ...LINUX_6_18_FACTS,
  release: '6.18',
  kvmModule: 'kvm_intel',
  caps: {
    system: withCaps(LINUX_6_18_FACTS.caps.system, TDX_HOST_CAPS),
    vm: withCaps(LINUX_6_18_FACTS.caps.vm, TDX_HOST_CAPS),
  },
};

export const LINUX_6_18_TDX: NamedFacts = {
  id: {
    name: 'linux-6.18-tdx',
    description:
      'Linux 6.18 on an Intel TDX host (kvm_intel, EPT): DEFAULT, SW_PROTECTED and TDX VMs, the TDX module with its PAMT and S-EPT; synthesized facts',
  },
  facts: LINUX_6_18_TDX_FACTS,
};
