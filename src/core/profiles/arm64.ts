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
 * - Capabilities: the table is 6.18's two switch statements on the synthesized host
 *   (ARM64_GENERIC_CAPS, ARM64_ARCH_CAPS below: every non-zero answer). Generic ones (guest_memfd,
 *   memslots, USER_MEMORY2, IRQFD, IRQ_ROUTING, SIGNAL_MSI, DEVICE_CTRL, ENABLE_CAP_VM,
 *   CHECK_EXTENSION_VM, ...) are answered by `kvm_vm_ioctl_check_extension_generic()` before the
 *   arch sees the request, so no protected-VM filter applies to them; arm64's own
 *   (`kvm_vm_ioctl_check_extension()`) read 0 on a protected VM's fd unless the allow-list lets
 *   them through — the later tree's `kvm_pkvm_ext_allowed()`: IRQCHIP, PSCI, PSCI_0_2, NR_VCPUS,
 *   MAX_VCPUS, MAX_VCPU_ID, MSI_DEVID, ARM_VM_IPA_SIZE and the two pointer-auth caps (v6.18's
 *   `kvm_pvm_ext_allowed()` also had PMU_V3 and SVE, but no VM could be protected there). There
 *   is no KVM_CAP_ARM_PROTECTED_VM in mainline (an Android capability); KVM_CAP_VM_TYPES is
 *   x86-only (0); KVM_CAP_MULTI_ADDRESS_SPACE is 0 (one address space). SYNC_MMU, IOEVENTFD and
 *   DESTROY_MEMORY_REGION_WORKS are arm.c's in 6.18 (0 on a protected VM); the later tree's
 *   kvm_main.c answers SYNC_MMU and DESTROY_MEMORY_REGION_WORKS generically (1 there) and its
 *   three-way `kvm_pkvm_ext_allowed()` zeroes MTE, EAGER_SPLIT_CHUNK_SIZE and
 *   SUPPORTED_BLOCK_SIZES on every fd of a pKVM host — the profile keeps 6.18's answers for
 *   /dev/kvm and non-protected VMs. [Not modelled: `kvm_pkvm_ioctl_allowed()`, which refuses a protected VM's VM
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
import { capMap, type NamedFacts, type ProfileIdentity } from './compose.js';
import type { KernelFacts } from './facts.js';
import type { KernelProfile, VmTypeSpec } from './profile.js';

/** Capability ids the arm64 profile sets (include/uapi/linux/kvm.h, 6.18). */
export const ARM64_CAP = {
  KVM_CAP_IRQCHIP: 0,
  KVM_CAP_MP_STATE: 14,
  KVM_CAP_COALESCED_MMIO: 15,
  KVM_CAP_SYNC_MMU: 16,
  KVM_CAP_DESTROY_MEMORY_REGION_WORKS: 21,
  KVM_CAP_SET_GUEST_DEBUG: 23,
  KVM_CAP_IRQ_ROUTING: 25,
  KVM_CAP_JOIN_MEMORY_REGIONS_WORKS: 30,
  KVM_CAP_IRQFD: 32,
  KVM_CAP_IOEVENTFD: 36,
  KVM_CAP_INTERNAL_ERROR_DATA: 40,
  KVM_CAP_VCPU_EVENTS: 41,
  KVM_CAP_ONE_REG: 70,
  KVM_CAP_SIGNAL_MSI: 77,
  KVM_CAP_IRQFD_RESAMPLE: 82,
  KVM_CAP_ARM_PSCI: 87,
  KVM_CAP_ARM_SET_DEVICE_ADDR: 88,
  KVM_CAP_DEVICE_CTRL: 89,
  KVM_CAP_ENABLE_CAP_VM: 98,
  KVM_CAP_ARM_PSCI_0_2: 102,
  KVM_CAP_CHECK_EXTENSION_VM: 105,
  KVM_CAP_GUEST_DEBUG_HW_BPS: 119,
  KVM_CAP_GUEST_DEBUG_HW_WPS: 120,
  KVM_CAP_IOEVENTFD_ANY_LENGTH: 122,
  KVM_CAP_ARM_PMU_V3: 126,
  KVM_CAP_VCPU_ATTRIBUTES: 127,
  KVM_CAP_MSI_DEVID: 131,
  KVM_CAP_IMMEDIATE_EXIT: 136,
  KVM_CAP_ARM_USER_IRQ: 144,
  KVM_CAP_ARM_INJECT_SERROR_ESR: 158,
  KVM_CAP_COALESCED_PIO: 162,
  KVM_CAP_ARM_VM_IPA_SIZE: 165,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: 168,
  KVM_CAP_ARM_SVE: 170,
  KVM_CAP_ARM_PTRAUTH_ADDRESS: 171,
  KVM_CAP_ARM_PTRAUTH_GENERIC: 172,
  KVM_CAP_ARM_IRQ_LINE_LAYOUT_2: 174,
  KVM_CAP_ARM_NISV_TO_USER: 177,
  KVM_CAP_ARM_INJECT_EXT_DABT: 178,
  KVM_CAP_HALT_POLL: 182,
  KVM_CAP_STEAL_TIME: 187,
  KVM_CAP_SET_GUEST_DEBUG2: 195,
  KVM_CAP_PTP_KVM: 198,
  KVM_CAP_BINARY_STATS_FD: 203,
  KVM_CAP_SYSTEM_EVENT_DATA: 215,
  KVM_CAP_ARM_SYSTEM_SUSPEND: 216,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL: 223,
  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP: 225,
  KVM_CAP_COUNTER_OFFSET: 227,
  KVM_CAP_ARM_SUPPORTED_BLOCK_SIZES: 229,
  KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES: 230,
  KVM_CAP_ARM_WRITABLE_IMP_ID_REGS: 239,
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

/**
 * The capabilities arm.c's `kvm_vm_ioctl_check_extension()` answers: those of the arch table
 * below that `kvm_vm_ioctl_check_extension_generic()` does not answer first (USER_MEMORY is in
 * both switches; the generic one wins). Only these meet the protected-VM filter.
 */
function archCaps(): readonly number[] {
  const generic = new Set(ARM64_GENERIC_CAPS.map(([c]) => c));
  return ARM64_ARCH_CAPS.map(([c]) => c).filter((c) => !generic.has(c));
}

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
  for (const c of archCaps())
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
    gmemBindOffsetUnsigned: false,
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

/** `get_num_brps()` / `get_num_wrps()` of the synthesized host (a Cortex-A7x-class core: 6 and 4). */
const ARM64_BRPS = 6;
const ARM64_WRPS = 4;
/**
 * `KVM_GUESTDBG_VALID_MASK` of arm64: ENABLE | SINGLESTEP | USE_SW_BP (1 << 16) | USE_HW (1 << 17).
 */
const ARM64_GUESTDBG_VALID_MASK = 0x1 | 0x2 | (1 << 16) | (1 << 17);
/** `KVM_DIRTY_RING_MAX_ENTRIES * sizeof(struct kvm_dirty_gfn)`: 65536 entries of 16 bytes. */
const KVM_DIRTY_RING_MAX_BYTES = 65536 * 16;
/**
 * `kvm_supported_block_sizes()` with 4K pages and 48-bit IPAs: the page and the level-2 (2M) and
 * level-1 (1G) blocks.
 */
const ARM64_SUPPORTED_BLOCK_SIZES = 2 ** 12 + 2 ** 21 + 2 ** 30;

/**
 * What 6.18's `kvm_vm_ioctl_check_extension_generic()` (virt/kvm/kvm_main.c) answers on arm64,
 * before the arch is asked: arm64's Kconfig selects HAVE_KVM_MSI, HAVE_KVM_IRQCHIP (IRQFD),
 * KVM_MMIO (COALESCED_MMIO = KVM_COALESCED_MMIO_PAGE_OFFSET = 1, COALESCED_PIO),
 * KVM_GENERIC_DIRTYLOG_READ_PROTECT (MANUAL_DIRTY_LOG_PROTECT2 = KVM_DIRTY_LOG_MANUAL_CAPS =
 * MANUAL_PROTECT_ENABLE | INITIALLY_SET), HAVE_KVM_IRQ_ROUTING (KVM_MAX_IRQ_ROUTES),
 * HAVE_KVM_DIRTY_RING_ACQ_REL (DIRTY_LOG_RING_ACQ_REL the ring's largest size; DIRTY_LOG_RING,
 * the TSO one, 0) and NEED_KVM_DIRTY_RING_WITH_BITMAP; KVM_CAP_MULTI_ADDRESS_SPACE is answered only
 * `#if KVM_MAX_NR_ADDRESS_SPACES > 1`, which arm64 (one address space) is not: arm.c's default, 0.
 * None of these meets the protected-VM filter.
 */
const ARM64_GENERIC_CAPS: ReadonlyArray<readonly [number, number]> = [
  [KVM_CAP.KVM_CAP_USER_MEMORY, 1],
  [KVM_CAP.KVM_CAP_USER_MEMORY2, 1],
  [ARM64_CAP.KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, 1],
  [ARM64_CAP.KVM_CAP_INTERNAL_ERROR_DATA, 1],
  [ARM64_CAP.KVM_CAP_SIGNAL_MSI, 1],
  [ARM64_CAP.KVM_CAP_IRQFD, 1],
  [ARM64_CAP.KVM_CAP_IOEVENTFD_ANY_LENGTH, 1],
  [ARM64_CAP.KVM_CAP_CHECK_EXTENSION_VM, 1],
  [ARM64_CAP.KVM_CAP_ENABLE_CAP_VM, 1],
  [ARM64_CAP.KVM_CAP_HALT_POLL, 1],
  [ARM64_CAP.KVM_CAP_COALESCED_MMIO, 1],
  [ARM64_CAP.KVM_CAP_COALESCED_PIO, 1],
  [ARM64_CAP.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 3],
  [ARM64_CAP.KVM_CAP_IRQ_ROUTING, 4096],
  [KVM_CAP.KVM_CAP_NR_MEMSLOTS, 32767],
  [ARM64_CAP.KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_DIRTY_RING_MAX_BYTES],
  [ARM64_CAP.KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP, 1],
  [ARM64_CAP.KVM_CAP_BINARY_STATS_FD, 1],
  [ARM64_CAP.KVM_CAP_SYSTEM_EVENT_DATA, 1],
  [ARM64_CAP.KVM_CAP_DEVICE_CTRL, 1],
  [KVM_CAP.KVM_CAP_GUEST_MEMFD, 1],
  [KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS, 3],
];

/**
 * What arm.c's `kvm_vm_ioctl_check_extension()` (6.18) answers on the synthesized host (GICv3,
 * SVE, full pointer auth, PMUv3, RAS, a 48-bit PARange, 4K pages; no AArch32 EL1, no nested
 * virtualisation, no MTE; CONFIG_SCHED_INFO, which arm64's KVM selects, so steal time).
 * Synthesized, not read from a machine: the breakpoint and watchpoint counts, RAS
 * (INJECT_SERROR_ESR) and the absence of MTE are the model's choice of a typical host.
 * Not representable here and left at 0: KVM_CAP_MSI_DEVID and KVM_CAP_ARM_CACHEABLE_PFNMAP_SUPPORTED
 * on /dev/kvm are -EINVAL in the kernel (`if (!kvm) r = -EINVAL`); on a VM fd MSI_DEVID is 0 until
 * an ITS exists, CACHEABLE_PFNMAP_SUPPORTED FWB && DIC (the model's host: no DIC). EAGER_SPLIT_CHUNK_SIZE
 * is its default, 0. Zero answers are omitted (MTE, EL1_32BIT, EL2, EL2_E2H0, DIRTY_LOG_RING).
 */
const ARM64_ARCH_CAPS: ReadonlyArray<readonly [number, number]> = [
  [ARM64_CAP.KVM_CAP_IRQCHIP, 1],
  [ARM64_CAP.KVM_CAP_IOEVENTFD, 1],
  [KVM_CAP.KVM_CAP_USER_MEMORY, 1],
  [ARM64_CAP.KVM_CAP_SYNC_MMU, 1],
  [ARM64_CAP.KVM_CAP_DESTROY_MEMORY_REGION_WORKS, 1],
  [ARM64_CAP.KVM_CAP_ONE_REG, 1],
  [ARM64_CAP.KVM_CAP_ARM_PSCI, 1],
  [ARM64_CAP.KVM_CAP_ARM_PSCI_0_2, 1],
  [KVM_CAP.KVM_CAP_READONLY_MEM, 1],
  [ARM64_CAP.KVM_CAP_MP_STATE, 1],
  [ARM64_CAP.KVM_CAP_IMMEDIATE_EXIT, 1],
  [ARM64_CAP.KVM_CAP_VCPU_EVENTS, 1],
  [ARM64_CAP.KVM_CAP_ARM_IRQ_LINE_LAYOUT_2, 1],
  [ARM64_CAP.KVM_CAP_ARM_NISV_TO_USER, 1],
  [ARM64_CAP.KVM_CAP_ARM_INJECT_EXT_DABT, 1],
  [ARM64_CAP.KVM_CAP_SET_GUEST_DEBUG, 1],
  [ARM64_CAP.KVM_CAP_VCPU_ATTRIBUTES, 1],
  [ARM64_CAP.KVM_CAP_PTP_KVM, 1],
  [ARM64_CAP.KVM_CAP_ARM_SYSTEM_SUSPEND, 1],
  [ARM64_CAP.KVM_CAP_IRQFD_RESAMPLE, 1],
  [ARM64_CAP.KVM_CAP_COUNTER_OFFSET, 1],
  [ARM64_CAP.KVM_CAP_ARM_WRITABLE_IMP_ID_REGS, 1],
  [ARM64_CAP.KVM_CAP_SET_GUEST_DEBUG2, ARM64_GUESTDBG_VALID_MASK],
  [ARM64_CAP.KVM_CAP_ARM_SET_DEVICE_ADDR, 1],
  [KVM_CAP.KVM_CAP_NR_VCPUS, ARM64_ONLINE_CPUS],
  [KVM_CAP.KVM_CAP_MAX_VCPUS, ARM64_MAX_VCPUS],
  [KVM_CAP.KVM_CAP_MAX_VCPU_ID, ARM64_MAX_VCPUS],
  [ARM64_CAP.KVM_CAP_ARM_USER_IRQ, 1],
  [ARM64_CAP.KVM_CAP_STEAL_TIME, 1],
  [ARM64_CAP.KVM_CAP_GUEST_DEBUG_HW_BPS, ARM64_BRPS],
  [ARM64_CAP.KVM_CAP_GUEST_DEBUG_HW_WPS, ARM64_WRPS],
  [ARM64_CAP.KVM_CAP_ARM_PMU_V3, 1],
  [ARM64_CAP.KVM_CAP_ARM_INJECT_SERROR_ESR, 1],
  [ARM64_CAP.KVM_CAP_ARM_VM_IPA_SIZE, ARM64_IPA_LIMIT],
  [ARM64_CAP.KVM_CAP_ARM_SVE, 1],
  [ARM64_CAP.KVM_CAP_ARM_PTRAUTH_ADDRESS, 1],
  [ARM64_CAP.KVM_CAP_ARM_PTRAUTH_GENERIC, 1],
  [ARM64_CAP.KVM_CAP_ARM_SUPPORTED_BLOCK_SIZES, ARM64_SUPPORTED_BLOCK_SIZES],
  [ARM64_CAP.KVM_CAP_ARM_SUPPORTED_REG_MASK_RANGES, 1],
];

/** Every cap the profile answers non-zero: the generic switch first, then arm.c's. */
const ARM64_COMMON_CAPS: ReadonlyArray<readonly [number, number]> = [
  ...ARM64_GENERIC_CAPS,
  ...ARM64_ARCH_CAPS.filter(([c]) => !ARM64_GENERIC_CAPS.some(([g]) => g === c)),
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

export const LINUX_6_18_ARM64_PKVM: NamedFacts = {
  id: {
    name: 'linux-6.18-arm64-pkvm',
    description:
      'Linux 6.18 on arm64 with pKVM (kvm-arm.mode=protected): VM types ARM (IPA size) and ARM_PROTECTED, guest_memfd (MMAP|INIT_SHARED, gmem-only slots), the pKVM hypervisor owning every page; protected-guest memory as the 2026 series; synthesized facts',
  },
  facts: LINUX_6_18_ARM64_PKVM_FACTS,
};
