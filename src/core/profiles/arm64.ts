/**
 * arm64 kernel profiles: `composeArm64Profile` builds a profile from arm64 kernel facts, as
 * `composeProfile` does for x86 (profiles/compose.ts). What differs from x86 is the VM type,
 * which is a bit field (`kvm_arch_init_vm()`, arch/arm64/kvm/arm.c; `kvm_init_ipa_range()`,
 * arch/arm64/kvm/mmu.c): the low byte is the stage-2 IPA size in bits, bit 31
 * (`KVM_VM_TYPE_ARM_PROTECTED`) asks for a pKVM protected VM, any other bit is -EINVAL.
 *
 * - IPA size: on a pKVM host (`is_protected_kvm_enabled()`) `kvm_init_ipa_range()` ignores the
 *   requested size and uses `kvm_ipa_limit`, so every size 0..255 is accepted; elsewhere 0 means
 *   `KVM_PHYS_SHIFT` (40, -EINVAL above the limit) and any other size must lie in
 *   [ARM64_MIN_PARANGE_BITS, kvm_ipa_limit].
 * - PROTECTED: v6.18 has no `KVM_VM_TYPE_ARM_PROTECTED` (its uapi kvm.h stops at the IPA size
 *   byte, and `kvm_init_ipa_range()` refuses any other bit with -EINVAL; nothing in 6.18 sets
 *   `kvm->arch.pkvm.is_protected`). The flag, bit 31 as Android has it, comes with the 2026
 *   protected-guest-memory series that this profile follows for protected VMs:
 *   `pkvm_init_host_vm()` records it (and warns once and taints the kernel, TAINT_USER);
 *   `kvm_arch_init_vm()` refuses it with -EINVAL when pKVM is not enabled.
 * - Capabilities: generic ones (guest_memfd, memslots, USER_MEMORY2) are answered by
 *   `kvm_vm_ioctl_check_extension_generic()` before the arch sees the request; arm64's own
 *   (`kvm_vm_ioctl_check_extension()`) read 0 on a protected VM's fd unless the allow-list lets
 *   them through — the later tree's `kvm_pkvm_ext_allowed()`: IRQCHIP, PSCI, PSCI_0_2, NR_VCPUS,
 *   MAX_VCPUS, MAX_VCPU_ID, MSI_DEVID, ARM_VM_IPA_SIZE and the two pointer-auth caps (v6.18's
 *   `kvm_pvm_ext_allowed()` also had PMU_V3 and SVE, but no VM could be protected there). There
 *   is no KVM_CAP_ARM_PROTECTED_VM in mainline (an Android capability); KVM_CAP_VM_TYPES is
 *   x86-only (0). [Not modelled: `kvm_pkvm_ioctl_allowed()`, which refuses a protected VM's VM
 *   ioctls whose capability is not on the list.]
 * - guest_memfd (6.18, commit 32e200bd6 "KVM: arm64: Enable support for guest_memfd backed memory"):
 *   KVM_CAP_GUEST_MEMFD 1; KVM_CAP_GUEST_MEMFD_FLAGS MMAP | INIT_SHARED on every VM
 *   (`kvm_arch_supports_gmem_init_shared()` is the weak default, true: arm64 has no private
 *   memory attribute); no memory attributes (no CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES) and no
 *   pre-fault (no CONFIG_KVM_GENERIC_PRE_FAULT_MEMORY): both ioctls reach
 *   `kvm_arch_vm_ioctl()` / `kvm_arch_vcpu_ioctl()`, whose default on arm64 is -EINVAL.
 * - Memslots: KVM_USER_MEM_SLOTS = SHRT_MAX (no internal slots on arm64); READONLY allowed
 *   (`__KVM_HAVE_READONLY_MEM`); `kvm_arch_prepare_memory_region()` checks the IPA limit
 *   (-EFAULT) and that a guest_memfd slot is gmem-only (-EINVAL) (arch/arm64/ops.ts).
 */
import { KVM_CAP } from '../base/uapi.js';
import {
  ARM64_MIN_PARANGE_BITS,
  KVM_PHYS_SHIFT,
  KVM_VM_TYPE_ARM_IPA_SIZE_MASK,
  KVM_VM_TYPE_ARM_MASK,
  KVM_VM_TYPE_ARM_PROTECTED,
} from '../base/uapi_arm64.js';
import { capMap, type ProfileIdentity } from './compose.js';
import type { KernelFacts } from './facts.js';
import type { KernelProfile, VmTypeSpec } from './profile.js';

/** arm64 capability ids the profile sets (include/uapi/linux/kvm.h). */
export const ARM64_CAP = {
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_COALESCED_MMIO: 15,
  KVM_CAP_SYNC_MMU: 16,
  KVM_CAP_IRQ_ROUTING: 25,
  KVM_CAP_IRQFD: 32,
  KVM_CAP_IOEVENTFD: 36,
  KVM_CAP_ONE_REG: 70,
  KVM_CAP_SIGNAL_MSI: 77,
  KVM_CAP_ARM_PSCI: 87,
  KVM_CAP_ARM_SET_DEVICE_ADDR: 88,
  KVM_CAP_DEVICE_CTRL: 89,
  KVM_CAP_ENABLE_CAP_VM: 98,
  KVM_CAP_ARM_PSCI_0_2: 102,
  KVM_CAP_CHECK_EXTENSION_VM: 105,
  KVM_CAP_ARM_PMU_V3: 126,
  KVM_CAP_VCPU_ATTRIBUTES: 127,
  KVM_CAP_MSI_DEVID: 131,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_ARM_USER_IRQ: 148,
  KVM_CAP_ARM_VM_IPA_SIZE: 165,
  KVM_CAP_ARM_SVE: 170,
  KVM_CAP_ARM_PTRAUTH_ADDRESS: 171,
  KVM_CAP_ARM_PTRAUTH_GENERIC: 172,
} as const;

/** The arch capabilities the later tree's `kvm_pkvm_ext_allowed()` lets through on a protected VM's fd. */
const PVM_ALLOWED_CAPS: ReadonlySet<number> = new Set([
  ARM64_CAP.KVM_CAP_IRQCHIP,
  ARM64_CAP.KVM_CAP_ARM_PSCI,
  ARM64_CAP.KVM_CAP_ARM_PSCI_0_2,
  KVM_CAP.KVM_CAP_NR_VCPUS,
  KVM_CAP.KVM_CAP_MAX_VCPUS,
  KVM_CAP.KVM_CAP_MAX_VCPU_ID,
  ARM64_CAP.KVM_CAP_MSI_DEVID,
  ARM64_CAP.KVM_CAP_ARM_VM_IPA_SIZE,
  ARM64_CAP.KVM_CAP_ARM_PTRAUTH_ADDRESS,
  ARM64_CAP.KVM_CAP_ARM_PTRAUTH_GENERIC,
]);

/** The capabilities arm.c's `kvm_vm_ioctl_check_extension()` answers (the rest are generic). */
const ARCH_CAPS: readonly number[] = [
  ...Object.values(ARM64_CAP).filter((c) => c !== ARM64_CAP.KVM_CAP_COALESCED_MMIO),
  KVM_CAP.KVM_CAP_NR_VCPUS,
  KVM_CAP.KVM_CAP_MAX_VCPUS,
  KVM_CAP.KVM_CAP_MAX_VCPU_ID,
  KVM_CAP.KVM_CAP_READONLY_MEM,
];

/** MMAP | INIT_SHARED. */
const GMEM_FLAGS_ARM64 = 3n;

/**
 * The VM types of an arm64 kernel with facts `f` (see the module comment): every type value
 * `kvm_arch_init_vm()` accepts, by value, with one spec object per (IPA size, protected) pair.
 */
function arm64VmTypes(f: KernelFacts, vmCaps: ReadonlyMap<number, bigint>) {
  const a = f.arm64!;
  const pkvm = a.mode === 'protected';
  const gmemFlags = f.kconfig.guestMemfd ? GMEM_FLAGS_ARM64 : 0n;
  const specs = new Map<number, VmTypeSpec>();
  const pvmOverrides = new Map<number, bigint>();
  for (const c of ARCH_CAPS)
    if (!PVM_ALLOWED_CAPS.has(c) && (vmCaps.get(c) ?? 0n) !== 0n) pvmOverrides.set(c, 0n);
  const spec = (ipaBits: number, prot: boolean): VmTypeSpec => {
    const key = ipaBits * 2 + (prot ? 1 : 0);
    let s = specs.get(key);
    if (s === undefined) {
      s = {
        name: prot ? 'ARM_PROTECTED' : 'ARM',
        hasPrivateMem: false,
        hasProtectedState: false,
        preFaultAllowedAtCreate: false,
        privateFaultSource: 'never',
        gmemFlags,
        memAttributes: 0n,
        nrAddressSpaces: 1,
        arm64: { ipaBits, protected: prot },
        ...(prot ? { capOverrides: pvmOverrides } : {}),
      };
      specs.set(key, s);
    }
    return s;
  };
  const decode = (type: bigint): VmTypeSpec | undefined => {
    // kvm_arch_init_vm(): unknown bits.
    if (type < 0n || (type & ~KVM_VM_TYPE_ARM_MASK) !== 0n) return undefined;
    const prot = (type & KVM_VM_TYPE_ARM_PROTECTED) !== 0n;
    if (prot && !pkvm) return undefined;
    // kvm_init_ipa_range().
    const asked = Number(type & KVM_VM_TYPE_ARM_IPA_SIZE_MASK);
    if (pkvm) return spec(a.ipaLimit, prot);
    if (asked === 0) return KVM_PHYS_SHIFT > a.ipaLimit ? undefined : spec(KVM_PHYS_SHIFT, prot);
    if (asked > a.ipaLimit || asked < ARM64_MIN_PARANGE_BITS) return undefined;
    return spec(asked, prot);
  };
  // Every accepted type value: the IPA size byte with and without PROTECTED.
  const all = new Map<bigint, VmTypeSpec>();
  for (const prot of [0n, KVM_VM_TYPE_ARM_PROTECTED])
    for (let size = 0n; size <= KVM_VM_TYPE_ARM_IPA_SIZE_MASK; size++) {
      const s = decode(prot | size);
      if (s !== undefined) all.set(prot | size, s);
    }
  return all;
}

/** TASK_SIZE of arm64 with 48-bit VAs. */
const ARM64_TASK_SIZE = 1n << 48n;
/** KVM_MAX_VCPUS on arm64 (the vGICv3 limit). */
const ARM64_MAX_VCPUS = 512;

export function composeArm64Profile(id: ProfileIdentity, f: KernelFacts): KernelProfile {
  if (f.arm64 === undefined || f.kvmModule !== 'kvm_arm64')
    throw new Error('composeArm64Profile: not arm64 facts');
  const sys = f.caps.system;
  const vmCaps = capMap(f.caps.vm);
  const types = arm64VmTypes(f, vmCaps);
  const userMemSlots = sys[KVM_CAP.KVM_CAP_NR_MEMSLOTS] ?? 0;
  return {
    name: id.name,
    description: id.description,
    ...(id.checkedAgainst !== undefined ? { checkedAgainst: id.checkedAgainst } : {}),
    facts: f,
    vmTypes: types,
    tdpEnabled: true,
    memoryAttributesConfig: f.kconfig.genericMemoryAttributes,
    guestMemfdConfig: f.kconfig.guestMemfd,
    systemCaps: capMap(sys),
    vmCaps,
    userMemSlots,
    // No KVM_INTERNAL_MEM_SLOTS on arm64.
    memSlotsNum: userMemSlots,
    maxGfnExclusive: 2 ** (f.arm64.ipaLimit - 12),
    maxVcpuIds: BigInt(sys[KVM_CAP.KVM_CAP_MAX_VCPU_ID] ?? 0),
    maxVcpus: sys[KVM_CAP.KVM_CAP_MAX_VCPUS] ?? 0,
    taskSizeMax: ARM64_TASK_SIZE,
    hostRamPages: f.host.ramPages + f.host.swapPages,
    thp: f.host.thp,
    readonlyMem: (sys[KVM_CAP.KVM_CAP_READONLY_MEM] ?? 0) !== 0,
    gmemBindOverlapErrno: 'EINVAL',
    maxMapCount: f.host.maxMapCount,
    ksm: f.host.ksm,
    mmioCaching: false,
    execOnlyPkey: f.host.pku,
    parts: {
      arch: 'arm64',
      vendor: 'kvm_arm64',
      platform: f.arm64.mode === 'protected' ? 'pkvm' : 'none',
      gmem: 'linux-6.18',
    },
  };
}

/** A cap table (ids 0..CAP_TABLE_MAX) from (id, value) pairs. */
function capTable(pairs: ReadonlyArray<readonly [number, number]>): number[] {
  const t: number[] = [];
  for (const [c, v] of pairs) t[c] = v;
  for (let i = 0; i < t.length; i++) t[i] ??= 0;
  return t;
}

/** Online CPUs of the synthesized host (KVM_CAP_NR_VCPUS = min(online, max)). */
const ARM64_ONLINE_CPUS = 8;
/** `kvm_ipa_limit` of the synthesized host (ID_AA64MMFR0_EL1.PARange = 48 bits). */
const ARM64_IPA_LIMIT = 48;

const ARM64_COMMON_CAPS: ReadonlyArray<readonly [number, number]> = [
  [ARM64_CAP.KVM_CAP_IRQCHIP, 1],
  [KVM_CAP.KVM_CAP_USER_MEMORY, 1],
  [KVM_CAP.KVM_CAP_NR_VCPUS, ARM64_ONLINE_CPUS],
  [KVM_CAP.KVM_CAP_NR_MEMSLOTS, 32767],
  [ARM64_CAP.KVM_CAP_COALESCED_MMIO, 1],
  [ARM64_CAP.KVM_CAP_SYNC_MMU, 1],
  [ARM64_CAP.KVM_CAP_IRQ_ROUTING, 4096],
  [ARM64_CAP.KVM_CAP_IRQFD, 1],
  [ARM64_CAP.KVM_CAP_IOEVENTFD, 1],
  [KVM_CAP.KVM_CAP_MAX_VCPUS, ARM64_MAX_VCPUS],
  [ARM64_CAP.KVM_CAP_ONE_REG, 1],
  [ARM64_CAP.KVM_CAP_SIGNAL_MSI, 1],
  [KVM_CAP.KVM_CAP_READONLY_MEM, 1],
  [ARM64_CAP.KVM_CAP_ARM_PSCI, 1],
  [ARM64_CAP.KVM_CAP_ARM_SET_DEVICE_ADDR, 1],
  [ARM64_CAP.KVM_CAP_DEVICE_CTRL, 1],
  [ARM64_CAP.KVM_CAP_ENABLE_CAP_VM, 1],
  [ARM64_CAP.KVM_CAP_ARM_PSCI_0_2, 1],
  [ARM64_CAP.KVM_CAP_CHECK_EXTENSION_VM, 1],
  [KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE, 1],
  [ARM64_CAP.KVM_CAP_ARM_PMU_V3, 1],
  [ARM64_CAP.KVM_CAP_VCPU_ATTRIBUTES, 1],
  [KVM_CAP.KVM_CAP_MAX_VCPU_ID, ARM64_MAX_VCPUS],
  [ARM64_CAP.KVM_CAP_IMMEDIATE_EXIT, 1],
  [ARM64_CAP.KVM_CAP_ARM_USER_IRQ, 1],
  [ARM64_CAP.KVM_CAP_ARM_VM_IPA_SIZE, ARM64_IPA_LIMIT],
  [ARM64_CAP.KVM_CAP_ARM_SVE, 1],
  [ARM64_CAP.KVM_CAP_ARM_PTRAUTH_ADDRESS, 1],
  [ARM64_CAP.KVM_CAP_ARM_PTRAUTH_GENERIC, 1],
  [KVM_CAP.KVM_CAP_USER_MEMORY2, 1],
  [KVM_CAP.KVM_CAP_GUEST_MEMFD, 1],
  [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, 3],
];

/**
 * Linux 6.18 on an arm64 host booted with `kvm-arm.mode=protected` (pKVM). No such machine exists
 * here: the facts are synthesized from the kernel source (the cap values of arm.c and
 * kvm_main.c for a GICv3 host with SVE, pointer auth and a 48-bit PARange), the host facts are
 * the development machines' (without PKU).
 */
export const LINUX_6_18_ARM64_PKVM_FACTS: KernelFacts = {
  release: '6.18',
  arch: 'aarch64',
  kvmModule: 'kvm_arm64',
  mmu: 'tdp',
  kconfig: { guestMemfd: true, genericMemoryAttributes: false, swProtectedVm: false, smm: false },
  caps: { system: capTable(ARM64_COMMON_CAPS), vm: capTable(ARM64_COMMON_CAPS) },
  host: {
    thp: 'madvise',
    ramPages: 6170914,
    swapPages: 0,
    maxMapCount: 65530,
    hugePages: 0,
    pku: false,
    ksm: true,
    aslr: true,
  },
  arm64: { mode: 'protected', ipaLimit: ARM64_IPA_LIMIT },
};

export const LINUX_6_18_ARM64_PKVM: KernelProfile = composeArm64Profile(
  {
    name: 'linux-6.18-arm64-pkvm',
    description:
      'Linux 6.18 on arm64 with pKVM (kvm-arm.mode=protected): VM types ARM (IPA size) and ARM_PROTECTED, guest_memfd (MMAP|INIT_SHARED, gmem-only slots), the pKVM hypervisor owning every page; protected-guest memory as the 2026 series; synthesized facts',
  },
  LINUX_6_18_ARM64_PKVM_FACTS,
);
