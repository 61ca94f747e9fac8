/**
 * The two Linux 6.18 x86 profiles (kernel-uapi.md §0, §2.1, §7).
 *
 * - `linux-6.18-pvm`: the development machines' kernel, checked against it: DEFAULT VM type only,
 *   shadow paging (no TDP, so KVM_PRE_FAULT_MEMORY fails), no memory attributes (ENOTTY),
 *   guest_memfd flags MMAP|INIT_SHARED. Capability values are the machine's own.
 * - `linux-6.18`: x86 with the TDP MMU, VM types DEFAULT and SW_PROTECTED, memory attributes
 *   compiled in, pre-fault available, SMM (two address spaces for VMs without private memory).
 *   Derived from the PVM profile plus the spec's per-config values; not checked against a live
 *   kernel (the development machines cannot run it).
 */
import { KVM_CAP } from '../uapi.js';
import type { KernelProfile, VmTypeSpec } from './profile.js';
import { PVM_SYSTEM_CAPS, PVM_VM_CAPS } from './pvm_caps.js';

function capMap(
  values: readonly number[],
  overrides: ReadonlyArray<readonly [number, bigint]> = [],
): Map<number, bigint> {
  const m = new Map<number, bigint>();
  values.forEach((v, i) => {
    if (v !== 0) m.set(i, BigInt(v));
  });
  for (const [k, v] of overrides) {
    if (v === 0n) m.delete(k);
    else m.set(k, v);
  }
  return m;
}

const GMEM_MMAP_INIT_SHARED = 3n;
const GMEM_MMAP = 1n;
const ATTR_PRIVATE = 8n;

/** DEFAULT VM (type 0) on the PVM kernel: no SMM, so one address space. */
export const DEFAULT_VM_PVM: VmTypeSpec = {
  name: 'DEFAULT',
  hasPrivateMem: false,
  hasProtectedState: false,
  preFaultAllowedAtCreate: true,
  privateFaultSource: 'never',
  gmemFlags: GMEM_MMAP_INIT_SHARED,
  memAttributes: 0n,
  nrAddressSpaces: 1,
};

/** DEFAULT VM on a TDP kernel with SMM: two address spaces. */
export const DEFAULT_VM: VmTypeSpec = { ...DEFAULT_VM_PVM, nrAddressSpaces: 2 };

/** KVM_X86_SW_PROTECTED_VM: private memory from attributes; INIT_SHARED refused; no SMM. */
export const SW_PROTECTED_VM: VmTypeSpec = {
  name: 'SW_PROTECTED',
  hasPrivateMem: true,
  hasProtectedState: false,
  preFaultAllowedAtCreate: true,
  privateFaultSource: 'attributes',
  gmemFlags: GMEM_MMAP,
  memAttributes: ATTR_PRIVATE,
  nrAddressSpaces: 1,
};

/** 24 GiB machines (MemTotal 24683656 kB): the overcommit heuristic's limit in pages. */
const DEV_MACHINE_RAM_PAGES = 6170914;

export const LINUX_6_18_PVM: KernelProfile = {
  name: 'linux-6.18-pvm',
  description:
    'Linux 6.18 on the development machines: PVM /dev/kvm, shadow paging, DEFAULT VMs only, no memory attributes',
  checkedAgainst: '6.18.44-fc (kvm_pvm)',
  vmTypes: new Map([[0n, DEFAULT_VM_PVM]]),
  tdpEnabled: false,
  memoryAttributesConfig: false,
  guestMemfdConfig: true,
  systemCaps: capMap(PVM_SYSTEM_CAPS),
  vmCaps: capMap(PVM_VM_CAPS),
  userMemSlots: 32764,
  memSlotsNum: 32767,
  // kvm_mmu_max_gfn(): shadow paging uses 52 bits regardless of the host's MAXPHYADDR.
  maxGfnExclusive: 2 ** 40,
  maxVcpuIds: 4096n,
  maxVcpus: 1024,
  taskSizeMax: 0x7fff_ffff_f000n,
  hostRamPages: DEV_MACHINE_RAM_PAGES,
  thp: 'madvise',
  readonlyMem: true,
  gmemBindOverlapErrno: 'EINVAL',
  maxMapCount: 65530,
  ksm: true,
  guestAccess: 'emulated',
  mmioCaching: false,
  hypercalls: 'spin',
  execOnlyPkey: true,
};

export const LINUX_6_18: KernelProfile = {
  ...LINUX_6_18_PVM,
  name: 'linux-6.18',
  description:
    'Linux 6.18 on x86 with the TDP MMU: DEFAULT and SW_PROTECTED VMs, memory attributes, pre-fault, SMM',
  checkedAgainst: undefined,
  vmTypes: new Map([
    [0n, DEFAULT_VM],
    [1n, SW_PROTECTED_VM],
  ]),
  tdpEnabled: true,
  memoryAttributesConfig: true,
  systemCaps: capMap(PVM_SYSTEM_CAPS, [
    [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, ATTR_PRIVATE],
    [KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY, 1n],
    [KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE, 2n],
  ]),
  vmCaps: capMap(PVM_VM_CAPS, [
    [KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY, 1n],
    [KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE, 2n],
  ]),
  // TDP: kvm_host.maxphyaddr of a 52-bit host.
  maxGfnExclusive: 2 ** 40,
  guestAccess: 'stage2',
  mmioCaching: true,
  hypercalls: 'kvm',
};
