/**
 * `composeProfile`: a kernel profile from kernel facts. Every behaviour switch of the model is
 * derived here from a fact a live kernel shows (`gmemlab probe`), so a named profile and a profile
 * file saved by `gmemlab probe --save` are built the same way.
 */
import { GUEST_MEMFD_FLAG_INIT_SHARED, GUEST_MEMFD_FLAG_NO_DIRECT_MAP } from '../base/uapi.js';
import {
  KVM_CAP,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SNP_VM,
  KVM_X86_TDX_VM,
} from '../base/uapi.js';
import { CAP_TABLE_MAX, kernelVersion, type KernelFacts, type X86KvmModule } from './facts.js';
import type { KernelProfile, VmTypeSpec } from './profile.js';

/** KVM_INTERNAL_MEM_SLOTS on x86 (TSS, identity map, APIC access): KVM_MEM_SLOTS_NUM - user slots. */
const X86_INTERNAL_MEM_SLOTS = 3;
/** TASK_SIZE_MAX of x86-64 with 4-level paging. */
const X86_64_TASK_SIZE_MAX = 0x7fff_ffff_f000n;
/** `kvm_mmu_max_gfn() + 1` for 52-bit guest physical addresses (TDP and shadow paging alike). */
const X86_MAX_GFN_EXCLUSIVE = 2 ** 40;
const KVM_MEMORY_ATTRIBUTE_PRIVATE = 8n;
/** KVM_CAP_X86_SMM (include/uapi/linux/kvm.h). */
const KVM_CAP_X86_SMM = 117;

export function capMap(values: readonly number[]): Map<number, bigint> {
  const m = new Map<number, bigint>();
  values.forEach((v, i) => {
    if (v !== 0 && i <= CAP_TABLE_MAX) m.set(i, BigInt(v));
  });
  return m;
}

/**
 * The VM types a kernel offers (`kvm_is_vm_type_supported()`): DEFAULT always; SW_PROTECTED with
 * CONFIG_KVM_SW_PROTECTED_VM and the TDP MMU; on kvm_amd with NPT, SEV, SEV_ES and SNP when
 * `sev_set_cpu_caps()` added them to `kvm_caps.supported_vm_types` (the facts' KVM_CAP_VM_TYPES:
 * sev_hardware_setup() enabled them on this CPU and firmware). What each type means is
 * `kvm_arch_init_vm()` then `svm_vm_init()`: SEV_ES and SNP have protected state (no READONLY
 * memslots: KVM_CAP_READONLY_MEM reads 0 on their VM fds), SNP has private memory (one memslot
 * address space, INIT_SHARED not offered, the PRIVATE attribute) and `pre_fault_allowed` only after
 * SNP_LAUNCH_FINISH; SEV and SEV_ES keep `pre_fault_allowed = !has_private_mem`. On kvm_intel
 * with the TDP MMU, TDX (5) when the facts offer it (`tdx_bringup()` succeeded; EPT, the TDP MMU
 * and MMIO caching are its prerequisites): `tdx_vm_init()` gives it protected state and private
 * memory (so: no READONLY memslots, INIT_SHARED not offered, one address space, the PRIVATE
 * attribute), `pre_fault_allowed` only after KVM_TDX_FINALIZE_VM, and `kvm->max_vcpus` capped at
 * `num_present_cpus()` (the facts' KVM_CAP_NR_VCPUS), which KVM_CAP_MAX_VCPUS reads on its VM fd;
 * KVM_CAP_X86_SMM reads 0 there (`vt_has_emulated_msr()` → `tdx_has_emulated_msr(MSR_IA32_SMBASE)`
 * is false). Private faults come from the access (the GPA's shared bit), as on SNP.
 */
function vmTypes(f: KernelFacts): Map<bigint, VmTypeSpec> {
  const gmemFlags = f.kconfig.guestMemfd
    ? BigInt(f.caps.vm[KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS] ?? 0)
    : 0n;
  const perGmem = perGmemAttributes(f);
  // kvm_arch_supports_gmem_init_shared() (x86, in-place conversion series v7 patch 19): INIT_SHARED
  // for a VM with private memory only when attributes are per guest_memfd (`!vm_memory_attributes
  // || !kvm_arch_has_private_mem(kvm)`); 6.18: only for VMs without private memory.
  // HUGETLB (CONFIG_KVM_GUEST_MEMFD_HUGETLB) and NO_DIRECT_MAP do not depend on it.
  const privateGmemFlags = perGmem ? gmemFlags : gmemFlags & ~GUEST_MEMFD_FLAG_INIT_SHARED;
  // KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES on a VM (`kvm_supported_mem_attributes(kvm)`: PRIVATE
  // iff kvm_arch_has_private_mem()), only with per-guest_memfd attributes.
  const gmemAttrs = (hasPrivateMem: boolean): { gmemMemAttributes?: bigint } =>
    perGmem ? { gmemMemAttributes: hasPrivateMem ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0n } : {};
  const types = new Map<bigint, VmTypeSpec>();
  types.set(0n, {
    name: 'DEFAULT',
    hasPrivateMem: false,
    hasProtectedState: false,
    preFaultAllowedAtCreate: true,
    privateFaultSource: 'never',
    gmemFlags,
    memAttributes: 0n,
    // kvm_arch_nr_memslot_as_ids(): SMM gives VMs without private memory a second address space.
    nrAddressSpaces: f.kconfig.smm ? 2 : 1,
    ...gmemAttrs(false),
  });
  if (f.kconfig.swProtectedVm && f.mmu === 'tdp')
    types.set(1n, {
      name: 'SW_PROTECTED',
      hasPrivateMem: true,
      hasProtectedState: false,
      preFaultAllowedAtCreate: true,
      privateFaultSource: 'attributes',
      // kvm_gmem_get_supported_flags(): INIT_SHARED only for VMs without private memory (6.18).
      gmemFlags: privateGmemFlags,
      memAttributes: f.kconfig.genericMemoryAttributes ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0n,
      nrAddressSpaces: 1,
      ...gmemAttrs(true),
    });
  const offered = BigInt(f.caps.system[KVM_CAP.KVM_CAP_VM_TYPES] ?? 0);
  // SNP and TDX: private memory and protected state, `pre_fault_allowed` only once the launch is
  // finished, private faults from the access.
  const privateProtected = (name: string): VmTypeSpec => ({
    name,
    hasPrivateMem: true,
    hasProtectedState: true,
    preFaultAllowedAtCreate: false,
    privateFaultSource: 'access',
    gmemFlags: privateGmemFlags,
    memAttributes: f.kconfig.genericMemoryAttributes ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0n,
    nrAddressSpaces: 1,
    ...gmemAttrs(true),
  });
  if (f.kvmModule === 'kvm_amd' && f.mmu === 'tdp') {
    const noReadonly = new Map<number, bigint>([[KVM_CAP.KVM_CAP_READONLY_MEM, 0n]]);
    const sevLike = (name: string, protectedState: boolean): VmTypeSpec => ({
      name,
      hasPrivateMem: false,
      hasProtectedState: protectedState,
      preFaultAllowedAtCreate: true,
      privateFaultSource: 'never',
      gmemFlags,
      memAttributes: 0n,
      nrAddressSpaces: f.kconfig.smm ? 2 : 1,
      ...gmemAttrs(false),
      ...(protectedState ? { capOverrides: noReadonly } : {}),
    });
    if ((offered & (1n << KVM_X86_SEV_VM)) !== 0n) types.set(KVM_X86_SEV_VM, sevLike('SEV', false));
    if ((offered & (1n << KVM_X86_SEV_ES_VM)) !== 0n)
      types.set(KVM_X86_SEV_ES_VM, sevLike('SEV_ES', true));
    if ((offered & (1n << KVM_X86_SNP_VM)) !== 0n)
      types.set(KVM_X86_SNP_VM, { ...privateProtected('SNP'), capOverrides: noReadonly });
  }
  if (f.kvmModule === 'kvm_intel' && f.mmu === 'tdp' && (offered & (1n << KVM_X86_TDX_VM)) !== 0n) {
    const maxVcpus = Math.min(
      f.caps.system[KVM_CAP.KVM_CAP_MAX_VCPUS] ?? 0,
      f.caps.system[KVM_CAP.KVM_CAP_NR_VCPUS] ?? 0,
    );
    types.set(KVM_X86_TDX_VM, {
      ...privateProtected('TDX'),
      // kvm_arch_gmem_supports_no_direct_map() (x86, NO_DIRECT_MAP series v12): not for TDX VMs.
      gmemFlags: privateGmemFlags & ~GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
      maxVcpus,
      mirroredTdp: true,
      capOverrides: new Map<number, bigint>([
        [KVM_CAP.KVM_CAP_READONLY_MEM, 0n],
        [KVM_CAP.KVM_CAP_MAX_VCPUS, BigInt(maxVcpus)],
        [KVM_CAP_X86_SMM, 0n],
      ]),
    });
  }
  return types;
}

/**
 * Whether memory attributes live in guest_memfd (in-place conversion series v7, kernel-uapi.md
 * §6.1): the series is in the kernel and `kvm.vm_memory_attributes` is 0 (it is false outright
 * without CONFIG_KVM_VM_MEMORY_ATTRIBUTES, which the facts' `genericMemoryAttributes` stands for:
 * `#define vm_memory_attributes false`).
 */
function perGmemAttributes(f: KernelFacts): boolean {
  if (f.kconfig.gmemMemoryAttributes !== true) return false;
  return !f.kconfig.genericMemoryAttributes || f.kvmParams?.vmMemoryAttributes === false;
}

export type ProfileIdentity = {
  readonly name: string;
  readonly description: string;
  /** `uname -r` of the kernel the profile was checked against, when it was. */
  readonly checkedAgainst?: string;
};

/**
 * A named profile before composition: its identity and kernel facts. The registry
 * (profiles/index.ts) composes one when it is first asked for, so that a command that needs one
 * profile (`gmemlab measure`) does not compose them all at load time.
 */
export type NamedFacts = { readonly id: ProfileIdentity; readonly facts: KernelFacts };

/**
 * The platform under the kernel: an SEV-SNP host when kvm_amd offers the SNP VM type (which
 * `sev_hardware_setup()` does only when the CPU has SNP, the RMP is set up and the firmware is
 * initialised: `cc_platform_has(CC_ATTR_HOST_SEV_SNP)`); an Intel TDX host when kvm_intel offers
 * the TDX VM type (`tdx_bringup()` found the TDX module and enabled it); else none.
 */
function platformOf(
  f: KernelFacts,
  types: ReadonlyMap<bigint, VmTypeSpec>,
): 'none' | 'sev-snp' | 'tdx' {
  if (f.kvmModule === 'kvm_amd' && types.has(KVM_X86_SNP_VM)) return 'sev-snp';
  if (f.kvmModule === 'kvm_intel' && types.has(KVM_X86_TDX_VM)) return 'tdx';
  return 'none';
}

/** The x86 vendor module of `f` (arm64 kernels are composed by profiles/arm64.ts). */
function x86Module(f: KernelFacts): X86KvmModule {
  if (f.kvmModule === 'kvm_arm64')
    throw new Error('composeProfile: arm64 facts (use composeArm64Profile)');
  return f.kvmModule;
}

export function composeProfile(id: ProfileIdentity, f: KernelFacts): KernelProfile {
  const sys = f.caps.system;
  const types = vmTypes(f);
  const pvm = f.kvmModule === 'kvm_pvm';
  const v = kernelVersion(f.release);
  const userMemSlots = sys[KVM_CAP.KVM_CAP_NR_MEMSLOTS] ?? 0;
  const perGmem = perGmemAttributes(f);
  return {
    name: id.name,
    description: id.description,
    ...(id.checkedAgainst !== undefined ? { checkedAgainst: id.checkedAgainst } : {}),
    facts: f,
    vmTypes: types,
    tdpEnabled: f.mmu === 'tdp',
    // KVM_SET_MEMORY_ATTRIBUTES on the VM: CONFIG_KVM_(GENERIC|VM)_MEMORY_ATTRIBUTES, and on
    // in-place conversion kernels `vm_memory_attributes` (else ENOTTY, KVM_CAP_MEMORY_ATTRIBUTES 0).
    memoryAttributesConfig: f.kconfig.genericMemoryAttributes && !perGmem,
    guestMemfdConfig: f.kconfig.guestMemfd,
    systemCaps: capMap(sys),
    vmCaps: capMap(f.caps.vm),
    userMemSlots,
    memSlotsNum: userMemSlots + X86_INTERNAL_MEM_SLOTS,
    maxGfnExclusive: X86_MAX_GFN_EXCLUSIVE,
    maxVcpuIds: BigInt(sys[KVM_CAP.KVM_CAP_MAX_VCPU_ID] ?? 0),
    maxVcpus: sys[KVM_CAP.KVM_CAP_MAX_VCPUS] ?? 0,
    taskSizeMax: X86_64_TASK_SIZE_MAX,
    // __vm_enough_memory() (OVERCOMMIT_GUESS): RAM plus swap.
    hostRamPages: f.host.ramPages + f.host.swapPages,
    thp: f.host.thp,
    readonlyMem: (sys[KVM_CAP.KVM_CAP_READONLY_MEM] ?? 0) !== 0,
    // kvm_gmem_bind(): an already bound range is EINVAL up to 6.18, EEXIST after.
    gmemBindOverlapErrno:
      v !== undefined && (v[0] > 6 || (v[0] === 6 && v[1] > 18)) ? 'EEXIST' : 'EINVAL',
    // kvm_gmem_bind(): the offset + size check is signed loff_t up to 6.18, unsigned after.
    gmemBindOffsetUnsigned: v !== undefined && (v[0] > 6 || (v[0] === 6 && v[1] > 18)),
    maxMapCount: f.host.maxMapCount,
    ksm: f.host.ksm,
    mmioCaching: !pvm,
    execOnlyPkey: f.host.pku,
    // What Host assembles the kernel from (core/assemble.ts): the vendor module is a fact, the
    // platform follows from the VM types (SEV-SNP), the 6.18 guest_memfd is what every kernel has.
    parts: {
      arch: 'x86',
      vendor: x86Module(f),
      platform: platformOf(f, types),
      gmem: f.kconfig.gmemMemoryAttributes === true ? 'inplace-v7' : 'linux-6.18',
    },
    ...(perGmem ? { gmemMemoryAttributes: true } : {}),
    ...(f.kconfig.gmemHugetlb === true
      ? {
          gmemHugetlb: {
            pages2M: f.host.gmemHugetlbPools?.pages2M ?? 0,
            pages1G: f.host.gmemHugetlbPools?.pages1G ?? 0,
          },
        }
      : {}),
    ...(f.design !== undefined ? { design: f.design } : {}),
  };
}
