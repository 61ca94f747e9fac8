/**
 * Intel TDX in kvm_intel (arch/x86/kvm/vmx/tdx.c, Linux 6.18): the per-TD state (`struct
 * kvm_tdx`) and per-vCPU state (`struct vcpu_tdx`), the KVM_MEMORY_ENCRYPT_OP commands on a TD's
 * VM fd (`tdx_vm_ioctl()`: KVM_TDX_CAPABILITIES, KVM_TDX_INIT_VM, KVM_TDX_FINALIZE_VM) and vCPU fd
 * (`tdx_vcpu_ioctl()`: KVM_TDX_INIT_VCPU, KVM_TDX_INIT_MEM_REGION), the mirror page table's hooks
 * the TDP MMU calls for a TD's private SPTEs (`tdx_sept_link_private_spt()`,
 * `tdx_sept_set_private_spte()`, `tdx_sept_remove_private_spte()`), the 4K-only private mapping
 * level (`tdx_gmem_private_max_mapping_level()`), vCPU creation (`tdx_vcpu_create()`) and the TD's
 * teardown (`tdx_mmu_release_hkid()`, `tdx_vcpu_free()`, `tdx_sept_free_private_spt()`,
 * `tdx_vm_destroy()`). The TDX module is the platform's (platform/tdx/), reached through
 * `k.platform.tdx`; every SEAMCALL is one of its methods and returns the module's status.
 *
 * **The mirror page table.** KVM keeps, beside the shared EPT, a "mirror" root for private GPAs
 * whose changes it propagates to the S-EPT with SEAMCALLs. In the model a TD's private SPTEs live
 * in the stage-2 map like every SPTE (private: true); the non-leaf levels of the mirror root are
 * the S-EPT pages KVM donated with TDH.MEM.SEPT.ADD (`KvmTdx.septPages`, by level and index), and
 * every present private leaf is also in `KvmTdx.leaves` (gfn → frame), which teardown walks after
 * the generic code dropped the stage-2 map. A leaf set before KVM_TDX_FINALIZE_VM is only
 * *premapped* (`nr_premapped`): TDH.MEM.PAGE.ADD of KVM_TDX_INIT_MEM_REGION, or its zap, takes it
 * back; after finalize a leaf is TDH.MEM.PAGE.AUG'ed (PENDING until the guest accepts it).
 *
 * **The host's TDX facts** (what `tdx_get_sysinfo()` reads; fixed for the model): TDCS of
 * `tdcsPages` pages and TDVPS of `tdvpsPages` pages (the module's config), HKIDs of the module's
 * private range, TD attributes fixed0 = the module's `TD_ATTR_FIXED0` and fixed1 = 0, XFAM
 * fixed0 0x6dbff / fixed1 0x3 (x87, SSE), the host's XCR0|XSS 0x2e7 (x87 SSE AVX opmask
 * ZMM_Hi256 Hi16_ZMM PKRU), and the CPUID leaves of `TDX_CPUID_CONFIG` (configurable bits all
 * ones: the model does not check CPUID values, which the module would). The host is one package
 * with every CPU online (no -EIO for an offline package) and the misc cgroup has room.
 *
 * KVM_RUN of a TD vCPU (TDH.VP.ENTER, the guest's accesses, TDG.MEM.PAGE.ACCEPT, MapGPA, KVM's
 * EPT-violation handling) is vmx/tdx_guest.ts.
 *
 * Not modelled (an error naming the limit): KVM_TDX_GET_CPUID (TDH.MNG.RD of the TD's CPUID).
 */
import { NotModelled } from '../../../base/not_modelled.js';
import type { KernelCtx } from '../../../ctx.js';
import type { Errno } from '../../../base/errno.js';
import { err, OK_VOID, type Result } from '../../../base/result.js';
import type { UserPtr } from '../../../base/uaccess.js';
import { KVM_X86_TDX_VM } from '../../../base/uapi.js';
import {
  asGfn,
  asHva,
  asHvpn,
  gfnToGpa,
  type Gfn,
  type MappingLevel,
  type Pfn,
} from '../../../base/units.js';
import { kvmVmBugged, type Vcpu, type Vm } from '../../../kvm/objects.js';
import { kvmGmemPopulate } from '../../../kvm/guest_memfd/guest_memfd.js';
import type { TdxModule } from '../../../platform/tdx/module.js';
import { TD_ATTR, TD_ATTR_FIXED0, TD_CONFIG_FLAGS } from '../../../platform/tdx/td.js';
import { OPERAND_ID, TDX, tdxStatusCode } from '../../../platform/tdx/status.js';
import { indexAt, pagesAtLevel } from '../../../platform/tdx/sept.js';
import { kvmMmuDoPageFault } from '../mmu.js';

/** `enum kvm_tdx_cmd_id` (arch/x86/include/uapi/asm/kvm.h). */
export const KVM_TDX = {
  CAPABILITIES: 0,
  INIT_VM: 1,
  INIT_VCPU: 2,
  INIT_MEM_REGION: 3,
  FINALIZE_VM: 4,
  GET_CPUID: 5,
} as const;
/** `KVM_TDX_MEASURE_MEMORY_REGION`: INIT_MEM_REGION's flag for TDH.MR.EXTEND of each page. */
export const KVM_TDX_MEASURE_MEMORY_REGION = 1;

/** Struct sizes (x86-64): kvm_tdx_cmd, kvm_tdx_capabilities and kvm_tdx_init_vm before their
 * `struct kvm_cpuid2` entries, kvm_cpuid_entry2, kvm_tdx_init_mem_region. */
export const KVM_TDX_CMD_SIZE = 24;
export const KVM_TDX_CAPABILITIES_SIZE = 2048 + 8;
export const KVM_TDX_INIT_VM_SIZE = 256 + 8;
export const KVM_CPUID_ENTRY2_SIZE = 40;
export const KVM_TDX_INIT_MEM_REGION_SIZE = 24;
/** KVM_MAX_CPUID_ENTRIES. */
const KVM_MAX_CPUID_ENTRIES = 256;
/** `TDX_EXTENDMR_CHUNKSIZE`. */
const TDX_EXTENDMR_CHUNKSIZE = 256;
const PAGE = 4096;

/** `KVM_SUPPORTED_TD_ATTRS`: the only TD attribute KVM lets userspace set. */
export const KVM_SUPPORTED_TD_ATTRS = TD_ATTR.SEPT_VE_DISABLE;
/** The module's TD configuration (module comment). */
const TD_CONF = {
  attributesFixed0: TD_ATTR_FIXED0,
  attributesFixed1: 0n,
  xfamFixed0: 0x6dbffn,
  xfamFixed1: 0x3n,
} as const;
/** `kvm_caps.supported_xcr0 | kvm_caps.supported_xss` of the model's host. */
const HOST_XFEATURES = 0x2e7n;
/** `TDX_CONFIG_FLAGS_NO_RBP_MOD` (the module's CONFIG_FLAGS bit 2), always set by KVM. */
const TDX_CONFIG_FLAGS_NO_RBP_MOD = 1n << 2n;
/** `KVM_TDX_CPUID_NO_SUBLEAF`. */
const NO_SUBLEAF = 0xffffffff;

/**
 * The CPUID leaves the model's TDX module lets a VMM configure (`td_conf.cpuid_config_leaves`):
 * leaf, subleaf (NO_SUBLEAF: none), and the configurable bits (all ones in the model).
 */
export const TDX_CPUID_CONFIG: ReadonlyArray<readonly [number, number]> = [
  [0x1, NO_SUBLEAF],
  [0x7, 0],
  [0xd, 0],
  [0xd, 1],
  [0x80000001, NO_SUBLEAF],
  [0x80000008, NO_SUBLEAF],
];
/** `TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT`: the TDVMCALL KVM forwards to userspace (R11 bit 1). */
const TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT = 1n << 1n;

/** `kvm_tdx->state`. */
export type TdState = 'TD_STATE_UNINITIALIZED' | 'TD_STATE_INITIALIZED' | 'TD_STATE_RUNNABLE';

/** `struct kvm_tdx`: a TD's KVM state, as far as the model needs it. */
export interface KvmTdx {
  state: TdState;
  /** `hkid` (-1: none). */
  hkid: number;
  /** `td.tdr_page` and `td.tdcs_pages` (frames KVM allocated and gave the module). */
  tdr: Pfn | undefined;
  tdcs: Pfn[];
  attributes: bigint;
  xfam: bigint;
  /** TD_PARAMS' MRCONFIGID, MROWNER, MROWNERCONFIG (48 bytes each), as INIT_VM passed them. */
  mrconfigid: Uint8Array;
  mrowner: Uint8Array;
  mrownerconfig: Uint8Array;
  /** `kvm->arch.gfn_direct_bits`: the shared bit as a gfn bit (0 before INIT_VM). */
  gfnDirectBits: bigint;
  /** `nr_premapped`: private leaves mapped before finalize and not yet PAGE.ADDed. */
  nrPremapped: number;
  /**
   * The mirror root's non-leaf levels: the S-EPT page donated for each (level, index) with
   * TDH.MEM.SEPT.ADD (`sp->external_spt`), keyed `level * 2^40 + index`.
   */
  readonly septPages: Map<number, Pfn>;
  /** Present private leaves of the mirror root: gfn → frame (4K each). */
  readonly leaves: Map<number, Pfn>;
  /** `irqchip_split(kvm)`: KVM_CAP_SPLIT_IRQCHIP was enabled (TDX needs an in-kernel LAPIC). */
  irqchipSplit: boolean;
  /**
   * The model's record (not kernel state) of the pages KVM_TDX_INIT_MEM_REGION added, in order:
   * each page's GPA once its TDH.MEM.PAGE.ADD succeeded, whether the command asked for
   * KVM_TDX_MEASURE_MEMORY_REGION, and then the 4096 bytes of the source page as KVM handed it
   * over (what the module copies with the TD's key). The `tdx-mrtd-measured` invariant
   * recomputes the MRTD from it.
   */
  readonly mrtdLog: TdxMrtdRecord[];
}

/** One page of `KvmTdx.mrtdLog`. */
export interface TdxMrtdRecord {
  readonly gpa: bigint;
  /** Added with KVM_TDX_MEASURE_MEMORY_REGION: its 16 chunks are to be MR.EXTENDed. */
  readonly measured: boolean;
  /** The source page's bytes (measured pages only). */
  readonly contents: Uint8Array | undefined;
}

/** `struct vcpu_tdx`. */
export interface VcpuTdx {
  state: 'VCPU_TD_STATE_UNINITIALIZED' | 'VCPU_TD_STATE_INITIALIZED';
  /** `vp.tdvpr_page` and `vp.tdcx_pages`. */
  tdvpr: Pfn | undefined;
  tdcx: Pfn[];
}

const TDX_STATE = new WeakMap<Vm, KvmTdx>();
const VCPU_TDX = new WeakMap<Vcpu, VcpuTdx>();

/** `is_td(kvm)`. */
export function isTd(vm: Vm): boolean {
  return vm.type === KVM_X86_TDX_VM;
}

/** `to_kvm_tdx(kvm)`: as `tdx_vm_init()` leaves it. */
export function toKvmTdx(vm: Vm): KvmTdx {
  let t = TDX_STATE.get(vm);
  if (t === undefined) {
    t = {
      state: 'TD_STATE_UNINITIALIZED',
      hkid: -1,
      tdr: undefined,
      tdcs: [],
      attributes: 0n,
      xfam: 0n,
      mrconfigid: new Uint8Array(48),
      mrowner: new Uint8Array(48),
      mrownerconfig: new Uint8Array(48),
      gfnDirectBits: 0n,
      nrPremapped: 0,
      septPages: new Map(),
      leaves: new Map(),
      irqchipSplit: false,
      mrtdLog: [],
    };
    TDX_STATE.set(vm, t);
  }
  return t;
}

/** The TD's KVM state if it has any yet (never creates it: for checks that only read). */
export function kvmTdxIfAny(vm: Vm): KvmTdx | undefined {
  return isTd(vm) ? TDX_STATE.get(vm) : undefined;
}

/** `to_tdx(vcpu)`. */
export function toVcpuTdx(vcpu: Vcpu): VcpuTdx {
  let t = VCPU_TDX.get(vcpu);
  if (t === undefined) {
    t = { state: 'VCPU_TD_STATE_UNINITIALIZED', tdvpr: undefined, tdcx: [] };
    VCPU_TDX.set(vcpu, t);
  }
  return t;
}

/** `is_hkid_assigned()`. */
function isHkidAssigned(t: KvmTdx): boolean {
  return t.hkid > 0;
}

/** `kvm_gfn_direct_bits(kvm)`: the shared bit of a TD's GPAs as a gfn bit (0 for other VMs). */
export function kvmGfnDirectBits(vm: Vm): bigint {
  return isTd(vm) ? (TDX_STATE.get(vm)?.gfnDirectBits ?? 0n) : 0n;
}

/** The TD's shared GPA bit (`gfn_to_gpa(kvm_gfn_direct_bits(kvm))`: bit 47 or 51, 0 before INIT_VM). */
export function tdxSharedGpaBit(t: KvmTdx): bigint {
  return gfnToGpa(asGfn(Number(t.gfnDirectBits)));
}

/** `vt_is_tdx_private_gpa()`: not an alias (the shared bit clear). */
export function isPrivateGpa(t: KvmTdx, gpa: bigint): boolean {
  return (gpa & tdxSharedGpaBit(t)) === 0n;
}

/** The TDX module of this host (every host whose profile offers TDs has one). */
export function tdxModule(k: KernelCtx): TdxModule {
  const m = k.platform.tdx?.module;
  if (m === undefined) throw new Error('TD on a host without the TDX platform');
  return m;
}

/**
 * `KVM_BUG_ON()`: the condition is a kernel bug; the VM is bugged and dead (`kvm_vm_bugged()`), so
 * KVM answers its VM and vCPU ioctls -EIO from then on (the generic ioctl entry checks `vm_dead`).
 */
function kvmBugOn(vm: Vm, _t: KvmTdx): void {
  kvmVmBugged(vm);
}

/** The host's TDX HKIDs in use (`tdx_guest_keyid_pool`), per host. */
const HKIDS = new WeakMap<KernelCtx, Set<number>>();

/** `tdx_guest_keyid_alloc()`: the lowest free private HKID, or -ENOSPC. */
function keyidAlloc(k: KernelCtx, m: TdxModule): number | Errno {
  let used = HKIDS.get(k);
  if (used === undefined) HKIDS.set(k, (used = new Set()));
  for (let h = m.config.privateHkidMin; h <= m.config.privateHkidMax; h++)
    if (!used.has(h)) {
      used.add(h);
      return h;
    }
  return 'ENOSPC';
}

/** `tdx_hkid_free()`. */
function hkidFree(k: KernelCtx, t: KvmTdx): void {
  HKIDS.get(k)?.delete(t.hkid);
  t.hkid = -1;
}

/** A page KVM allocates for the module (`alloc_page(GFP_KERNEL)`), held by the VM. */
function allocPage(k: KernelCtx, vm: Vm): Pfn {
  const p = k.frames.allocOne();
  vm.archPages.push(p);
  return p;
}

/** `__free_page()` of a page `allocPage()` gave the VM. */
function freePage(k: KernelCtx, vm: Vm, p: Pfn): void {
  const i = vm.archPages.lastIndexOf(p);
  if (i >= 0) vm.archPages.splice(i, 1);
  k.frames.release(p, 1);
}

/** `tdx_clear_page()`: MOVDIR64B zeroes (and unpoisons) the page. */
function tdxClearPage(k: KernelCtx, m: TdxModule, pfn: Pfn): void {
  m.movdir64bClear(pfn);
  k.frames.zero(pfn, 1);
}

// ---------------------------------------------------------------------------------------------
// Little-endian fields of the user structs

function u64(b: Uint8Array, off: number): bigint {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getBigUint64(off, true);
}
function u32(b: Uint8Array, off: number): number {
  return new DataView(b.buffer, b.byteOffset, b.byteLength).getUint32(off, true);
}
function putU64(b: Uint8Array, off: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(off, BigInt.asUintN(64, v), true);
}
function putU32(b: Uint8Array, off: number, v: number): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(off, v >>> 0, true);
}

/** `copy_from_user()` / `copy_to_user()` at a user address a command struct holds. */
function copyFromUserAddr(k: KernelCtx, addr: bigint, len: number): Uint8Array | undefined {
  if (addr >= k.profile.taskSizeMax || addr < 0n) return undefined;
  if (len === 0) return new Uint8Array(0);
  const r = k.mm.access(asHva(addr), len, null);
  return r.ok ? r.data! : undefined;
}
function copyToUserAddr(k: KernelCtx, addr: bigint, bytes: Uint8Array): boolean {
  if (addr >= k.profile.taskSizeMax || addr < 0n) return false;
  if (bytes.length === 0) return true;
  return k.mm.access(asHva(addr), bytes.length, bytes).ok;
}

/** `struct kvm_tdx_cmd` as copied in: id, flags, data, hw_error. */
class KvmTdxCmd {
  constructor(readonly bytes: Uint8Array) {}
  get id(): number {
    return u32(this.bytes, 0);
  }
  get flags(): number {
    return u32(this.bytes, 4);
  }
  get data(): bigint {
    return u64(this.bytes, 8);
  }
  get hwError(): bigint {
    return u64(this.bytes, 16);
  }
  set hwError(v: bigint) {
    putU64(this.bytes, 16, v);
  }
}

// ---------------------------------------------------------------------------------------------
// KVM_TDX_CAPABILITIES

/** `tdx_get_supported_attrs()`. */
function supportedAttrs(): bigint {
  const v = KVM_SUPPORTED_TD_ATTRS;
  if ((v & TD_CONF.attributesFixed1) !== TD_CONF.attributesFixed1) return 0n;
  return v & TD_CONF.attributesFixed0;
}

/** `tdx_get_supported_xfam()`. */
function supportedXfam(): bigint {
  const v = HOST_XFEATURES;
  if ((v & TD_CONF.xfamFixed1) !== TD_CONF.xfamFixed1) return 0n;
  return v & TD_CONF.xfamFixed0;
}

/** `td_init_cpuid_entry2()` for config leaf `i` (bytes of a kvm_cpuid_entry2). */
function tdCpuidEntry(i: number): Uint8Array {
  const [fn, sub] = TDX_CPUID_CONFIG[i]!;
  const e = new Uint8Array(KVM_CPUID_ENTRY2_SIZE);
  putU32(e, 0, fn);
  putU32(e, 4, sub === NO_SUBLEAF ? 0 : sub);
  let eax = 0xffffffff;
  let ebx = 0xffffffff;
  let ecx = 0xffffffff;
  // GPAW is configured through CPUID 0x80000008.EAX[23:16]: reported as configurable (0xff).
  if (fn === 0x80000008) eax = (eax & ~0xff0000) | (0xff << 16);
  // tdx_clear_unsupported_cpuid(): TSX (HLE, RTM) and WAITPKG are never configurable.
  if (fn === 7 && sub === 0) {
    ebx &= ~((1 << 4) | (1 << 11));
    ecx &= ~(1 << 5);
  }
  putU32(e, 12, eax);
  putU32(e, 16, ebx);
  putU32(e, 20, ecx);
  putU32(e, 24, 0xffffffff);
  return e;
}

/**
 * `tdx_get_capabilities()` (6.18, since "Don't leak kernel bytes" in 6.17): flags 0 (-EINVAL);
 * `cpuid.nent` read alone with get_user() (-EFAULT); room for every config leaf (else -E2BIG);
 * then a zeroed `struct kvm_tdx_capabilities` (kzalloc) filled by `init_kvm_tdx_caps()` (the
 * supported attributes, XFAM, the TDVMCALLs userspace handles, the configurable CPUID leaves) is
 * copied out whole (-EFAULT), so every other field and reserved byte reads back 0, then the
 * entries after the header (-EFAULT).
 */
function tdxGetCapabilities(k: KernelCtx, cmd: KvmTdxCmd): Result<undefined> {
  if (cmd.flags !== 0) return err('EINVAL', 'tdx_get_capabilities: flags != 0');
  const nent = copyFromUserAddr(k, cmd.data + 2048n, 4);
  if (nent === undefined) return err('EFAULT', 'tdx_get_capabilities: get_user(cpuid.nent)');
  const n = TDX_CPUID_CONFIG.length;
  if (u32(nent, 0) < n) return err('E2BIG', 'tdx_get_capabilities: cpuid.nent too small');
  // init_kvm_tdx_caps() on the kzalloc'ed struct.
  const caps = new Uint8Array(KVM_TDX_CAPABILITIES_SIZE);
  putU64(caps, 0, supportedAttrs());
  putU64(caps, 8, supportedXfam());
  putU64(caps, 24, TDVMCALLINFO_SETUP_EVENT_NOTIFY_INTERRUPT);
  putU32(caps, 2048, n);
  if (!copyToUserAddr(k, cmd.data, caps))
    return err('EFAULT', 'tdx_get_capabilities: copy_to_user(caps)');
  const entries = new Uint8Array(n * KVM_CPUID_ENTRY2_SIZE);
  for (let i = 0; i < n; i++) entries.set(tdCpuidEntry(i), i * KVM_CPUID_ENTRY2_SIZE);
  if (!copyToUserAddr(k, cmd.data + BigInt(KVM_TDX_CAPABILITIES_SIZE), entries))
    return err('EFAULT', 'tdx_get_capabilities: copy_to_user(entries)');
  return OK_VOID;
}

// ---------------------------------------------------------------------------------------------
// KVM_TDX_INIT_VM

/** What `setup_tdparams()` builds (`struct td_params`, the fields the model keeps). */
interface TdParamsBuilt {
  attributes: bigint;
  xfam: bigint;
  maxVcpus: number;
  configFlags: bigint;
  eptPwl: number;
}

/** `kvm_find_cpuid_entry2()`: the entry for (function, index) among `entries`, or undefined. */
function findCpuid(entries: Uint8Array, nent: number, fn: number, index: number): number {
  for (let i = 0; i < nent; i++) {
    const off = i * KVM_CPUID_ENTRY2_SIZE;
    if (u32(entries, off) !== fn) continue;
    // KVM_CPUID_FLAG_SIGNIFCANT_INDEX (flags bit 0): the index must match.
    if ((u32(entries, off + 8) & 1) !== 0 && u32(entries, off + 4) !== index) continue;
    return off;
  }
  return -1;
}

/**
 * `setup_tdparams()`: no vCPU created yet (-EBUSY), attributes and XFAM within what KVM supports
 * (-EINVAL), the GPAW from CPUID 0x80000008.EAX[23:16] (`setup_tdparams_eptp_controls()`: the
 * leaf present, 48 or 52, 52 only with 5-level EPT; -EINVAL), then every entry must be one of the
 * module's configurable leaves and none may ask for TSX or WAITPKG (`setup_tdparams_cpuids()`,
 * -EINVAL).
 */
function setupTdparams(
  k: KernelCtx,
  vm: Vm,
  init: Uint8Array,
  entries: Uint8Array,
  nent: number,
): TdParamsBuilt | Errno {
  if (vm.createdVcpus > 0) return 'EBUSY';
  const attributes = u64(init, 0);
  const xfam = u64(init, 8);
  if ((attributes & ~supportedAttrs()) !== 0n) return 'EINVAL';
  if ((xfam & ~supportedXfam()) !== 0n) return 'EINVAL';
  // setup_tdparams_eptp_controls()
  const e = findCpuid(entries, nent, 0x80000008, 0);
  if (e < 0) return 'EINVAL';
  const guestPa = (u32(entries, e + 12) >>> 16) & 0xff;
  if (guestPa !== 48 && guestPa !== 52) return 'EINVAL';
  if (guestPa === 52 && !tdxModule(k).config.pml5) return 'EINVAL';
  let configFlags = TDX_CONFIG_FLAGS_NO_RBP_MOD;
  if (guestPa === 52) configFlags |= TD_CONFIG_FLAGS.GPAW;
  // setup_tdparams_cpuids()
  let copied = 0;
  for (const [fn, sub] of TDX_CPUID_CONFIG) {
    const off = findCpuid(entries, nent, fn, sub === NO_SUBLEAF ? 0 : sub);
    if (off < 0) continue;
    const tsx = fn === 7 && sub === 0 && (u32(entries, off + 16) & ((1 << 4) | (1 << 11))) !== 0;
    const waitpkg = fn === 7 && sub === 0 && (u32(entries, off + 20) & (1 << 5)) !== 0;
    if (tsx || waitpkg) return 'EINVAL';
    copied++;
  }
  if (copied !== nent) return 'EINVAL';
  return {
    attributes: attributes | TD_CONF.attributesFixed1,
    xfam: xfam | TD_CONF.xfamFixed1,
    maxVcpus: vm.spec.maxVcpus ?? k.profile.maxVcpus,
    configFlags,
    eptPwl: guestPa === 52 ? 4 : 3,
  };
}

/**
 * `__tdx_td_init()`: an HKID (-ENOSPC when none is free), the TDR and TDCS pages, TDH.MNG.CREATE
 * and TDH.MNG.KEY.CONFIG (a failure is a kernel bug: -EIO), TDH.MNG.ADDCX of each TDCS page
 * (-EIO), TDH.MNG.INIT with TD_PARAMS: OPERAND_INVALID is the user's (-EINVAL, the status in
 * `hw_error`), anything else -EIO. A failure after the TD exists tears it down
 * (`tdx_mmu_release_hkid()`, `tdx_reclaim_td_control_pages()`).
 */
function tdxTdInitModule(
  k: KernelCtx,
  vm: Vm,
  t: KvmTdx,
  p: TdParamsBuilt,
  cmd: KvmTdxCmd,
): Errno | undefined {
  const m = tdxModule(k);
  cmd.hwError = 0n;
  const hkid = keyidAlloc(k, m);
  if (typeof hkid === 'string') return hkid;
  t.hkid = hkid;
  const tdr = allocPage(k, vm);
  const tdcs: Pfn[] = [];
  for (let i = 0; i < m.config.tdcsPages; i++) tdcs.push(allocPage(k, vm));
  t.tdr = tdr;
  let err = m.tdhMngCreate(tdr, hkid);
  if (err !== TDX.SUCCESS) {
    // WARN_ON_ONCE(err): free_packages → free the pages and the HKID.
    freePage(k, vm, tdr);
    for (const p2 of tdcs) freePage(k, vm, p2);
    t.tdr = undefined;
    hkidFree(k, t);
    return 'EIO';
  }
  err = m.tdhMngKeyConfig(tdr);
  if (err !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    for (const p2 of tdcs) freePage(k, vm, p2);
    tdTeardown(k, vm, t);
    return 'EIO';
  }
  t.tdcs = tdcs;
  for (let i = 0; i < tdcs.length; i++) {
    err = m.tdhMngAddcx(tdr, tdcs[i]!);
    if (err !== TDX.SUCCESS) {
      for (const p2 of tdcs.slice(i)) freePage(k, vm, p2);
      t.tdcs = tdcs.slice(0, i);
      tdTeardown(k, vm, t);
      return 'EIO';
    }
  }
  err = m.tdhMngInit(tdr, {
    attributes: p.attributes,
    maxVcpus: p.maxVcpus,
    configFlags: p.configFlags,
    eptPwl: p.eptPwl,
  });
  if (tdxStatusCode(err) === TDX.OPERAND_INVALID) {
    cmd.hwError = err;
    tdTeardown(k, vm, t);
    return 'EINVAL';
  }
  if (err !== TDX.SUCCESS) {
    tdTeardown(k, vm, t);
    return 'EIO';
  }
  return undefined;
}

/**
 * `tdx_td_init()`: the TD not initialized yet and flags 0 (-EINVAL); `struct kvm_tdx_init_vm`
 * (-EFAULT), at most KVM_MAX_CPUID_ENTRIES entries (-E2BIG), the entries (-EFAULT), reserved
 * fields and the cpuid padding zero (-EINVAL); `setup_tdparams()`, `__tdx_td_init()`; then the
 * TD's attributes and XFAM, and the shared bit: GPA bit 51 with GPAW 52, else bit 47
 * (`kvm->arch.gfn_direct_bits`); state INITIALIZED.
 */
function tdxTdInit(k: KernelCtx, vm: Vm, cmd: KvmTdxCmd): Result<undefined> {
  const t = toKvmTdx(vm);
  if (t.state !== 'TD_STATE_UNINITIALIZED') return err('EINVAL', 'tdx_td_init: state');
  if (cmd.flags !== 0) return err('EINVAL', 'tdx_td_init: flags != 0');
  const init = copyFromUserAddr(k, cmd.data, KVM_TDX_INIT_VM_SIZE);
  if (init === undefined) return err('EFAULT', 'tdx_td_init: copy_from_user(init_vm)');
  const nent = u32(init, 256);
  if (nent > KVM_MAX_CPUID_ENTRIES) return err('E2BIG', 'tdx_td_init: cpuid.nent');
  const entries = copyFromUserAddr(
    k,
    cmd.data + BigInt(KVM_TDX_INIT_VM_SIZE),
    nent * KVM_CPUID_ENTRY2_SIZE,
  );
  if (entries === undefined) return err('EFAULT', 'tdx_td_init: copy_from_user(entries)');
  for (let off = 160; off < 256; off++)
    if (init[off] !== 0) return err('EINVAL', 'tdx_td_init: reserved != 0');
  if (u32(init, 260) !== 0) return err('EINVAL', 'tdx_td_init: cpuid.padding != 0');
  const p = setupTdparams(k, vm, init, entries, nent);
  if (typeof p === 'string') return err(p, 'tdx_td_init: setup_tdparams');
  const r = tdxTdInitModule(k, vm, t, p, cmd);
  if (r !== undefined) return err(r, 'tdx_td_init: __tdx_td_init');
  t.attributes = p.attributes;
  t.xfam = p.xfam;
  t.mrconfigid = init.slice(16, 64);
  t.mrowner = init.slice(64, 112);
  t.mrownerconfig = init.slice(112, 160);
  t.gfnDirectBits = (p.configFlags & TD_CONFIG_FLAGS.GPAW) !== 0n ? 1n << 39n : 1n << 35n;
  t.state = 'TD_STATE_INITIALIZED';
  return OK_VOID;
}

// ---------------------------------------------------------------------------------------------
// KVM_TDX_FINALIZE_VM

/**
 * `tdx_td_finalize()`: an HKID and not yet RUNNABLE (-EINVAL); no premapped page still waiting
 * for its PAGE.ADD (-EINVAL); TDH.MR.FINALIZE, its status in `hw_error` (OPERAND_BUSY -EBUSY,
 * another error a kernel bug, -EIO); the TD is RUNNABLE and pre-faulting is allowed.
 */
function tdxTdFinalize(k: KernelCtx, vm: Vm, cmd: KvmTdxCmd): Result<undefined> {
  const t = toKvmTdx(vm);
  if (!isHkidAssigned(t) || t.state === 'TD_STATE_RUNNABLE')
    return err('EINVAL', 'tdx_td_finalize: no HKID or already RUNNABLE');
  if (t.nrPremapped !== 0) return err('EINVAL', `tdx_td_finalize: nr_premapped = ${t.nrPremapped}`);
  const m = tdxModule(k);
  cmd.hwError = m.tdhMrFinalize(t.tdr!);
  if (tdxStatusCode(cmd.hwError) === TDX.OPERAND_BUSY)
    return err('EBUSY', 'tdx_td_finalize: TDH.MR.FINALIZE busy');
  if (cmd.hwError !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return err('EIO', 'tdx_td_finalize: TDH.MR.FINALIZE failed');
  }
  t.state = 'TD_STATE_RUNNABLE';
  vm.preFaultAllowed = true;
  return OK_VOID;
}

/**
 * `vt_mem_enc_ioctl()` → `tdx_vm_ioctl()`: -ENOTTY for a VM that is not a TD; the command struct
 * (-EFAULT), `hw_error` zero (-EINVAL); an unknown id is -EINVAL without the copy back; a handled
 * command copies the struct back (with `hw_error`; -EFAULT when that faults).
 */
export function tdxVmIoctl(k: KernelCtx, vm: Vm, argp: UserPtr): Result<undefined> {
  if (!isTd(vm)) return err('ENOTTY', 'vt_mem_enc_ioctl: !is_td(kvm)');
  const raw = argp.copyFromUser(KVM_TDX_CMD_SIZE);
  if (raw === undefined) return err('EFAULT', 'tdx_vm_ioctl: copy_from_user(tdx_cmd)');
  const cmd = new KvmTdxCmd(raw);
  if (cmd.hwError !== 0n) return err('EINVAL', 'tdx_vm_ioctl: hw_error != 0');
  let r: Result<undefined>;
  switch (cmd.id) {
    case KVM_TDX.CAPABILITIES:
      r = tdxGetCapabilities(k, cmd);
      break;
    case KVM_TDX.INIT_VM:
      r = tdxTdInit(k, vm, cmd);
      break;
    case KVM_TDX.FINALIZE_VM:
      r = tdxTdFinalize(k, vm, cmd);
      break;
    default:
      return err('EINVAL', `tdx_vm_ioctl: unknown command id ${cmd.id}`);
  }
  if (!argp.copyToUser(cmd.bytes)) return err('EFAULT', 'tdx_vm_ioctl: copy_to_user(tdx_cmd)');
  return r;
}

// ---------------------------------------------------------------------------------------------
// vCPUs: creation and KVM_TDX_INIT_VCPU

/**
 * `tdx_vcpu_create()` (from `kvm_arch_vcpu_create()`): the TD must be INITIALIZED (-EIO) and the
 * VM's irqchip split (-EINVAL: the module requires APICv, hence an in-kernel LAPIC, and KVM
 * refuses an in-kernel I/O APIC for TDs). Undefined for a VM that is not a TD.
 */
export function tdxVcpuCreate(_k: KernelCtx, vm: Vm): Errno | undefined {
  if (!isTd(vm)) return undefined;
  const t = toKvmTdx(vm);
  if (t.state !== 'TD_STATE_INITIALIZED') return 'EIO';
  if (!t.irqchipSplit) return 'EINVAL';
  return undefined;
}

/**
 * `kvm_vm_ioctl_enable_cap(KVM_CAP_SPLIT_IRQCHIP)` for a TD (the model has it for TDs only): at
 * most MAX_NR_RESERVED_IOAPIC_PINS (48) reserved pins (-EINVAL), no irqchip yet and no vCPU
 * created (-EEXIST).
 */
export function tdxEnableSplitIrqchip(vm: Vm, pins: bigint): Errno | undefined {
  const t = toKvmTdx(vm);
  if (pins > 48n) return 'EINVAL';
  if (t.irqchipSplit || vm.createdVcpus > 0) return 'EEXIST';
  t.irqchipSplit = true;
  return undefined;
}

/**
 * `tdx_td_vcpu_init()`: the TDVPR and TDCX pages, TDH.VP.CREATE, TDH.VP.ADDCX of each TDCX page
 * and TDH.VP.INIT (`vcpu_rcx` = `cmd->data`, the x2APIC id = vCPU id); each failure is a kernel
 * bug (-EIO).
 */
function tdxTdVcpuInit(k: KernelCtx, vcpu: Vcpu): Errno | undefined {
  const vm = vcpu.vm;
  const t = toKvmTdx(vm);
  const v = toVcpuTdx(vcpu);
  const m = tdxModule(k);
  const tdvpr = allocPage(k, vm);
  const tdcx: Pfn[] = [];
  for (let i = 0; i < m.config.tdvpsPages - 1; i++) tdcx.push(allocPage(k, vm));
  v.tdvpr = tdvpr;
  if (m.tdhVpCreate(t.tdr!, tdvpr) !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    for (const p of [tdvpr, ...tdcx]) freePage(k, vm, p);
    v.tdvpr = undefined;
    return 'EIO';
  }
  for (let i = 0; i < tdcx.length; i++) {
    if (m.tdhVpAddcx(tdvpr, tdcx[i]!) !== TDX.SUCCESS) {
      kvmBugOn(vm, t);
      for (const p of tdcx.slice(i)) freePage(k, vm, p);
      return 'EIO';
    }
    v.tdcx.push(tdcx[i]!);
  }
  if (m.tdhVpInit(tdvpr) !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return 'EIO';
  }
  return undefined;
}

/**
 * `tdx_vcpu_init()`: flags 0 and the vCPU not initialized (-EINVAL); x2APIC mode (KVM sets it;
 * never refused in the model); `tdx_td_vcpu_init()`; the vCPU is INITIALIZED.
 */
function tdxVcpuInit(k: KernelCtx, vcpu: Vcpu, cmd: KvmTdxCmd): Result<undefined> {
  if (cmd.flags !== 0) return err('EINVAL', 'tdx_vcpu_init: flags != 0');
  const v = toVcpuTdx(vcpu);
  if (v.state !== 'VCPU_TD_STATE_UNINITIALIZED')
    return err('EINVAL', 'tdx_vcpu_init: already initialized');
  const r = tdxTdVcpuInit(k, vcpu);
  if (r !== undefined) return err(r, 'tdx_vcpu_init: tdx_td_vcpu_init');
  v.state = 'VCPU_TD_STATE_INITIALIZED';
  return OK_VOID;
}

// ---------------------------------------------------------------------------------------------
// KVM_TDX_INIT_MEM_REGION

/**
 * `tdx_gmem_post_populate()` for one page: the source page by `get_user_pages_fast()` (an
 * unmapped source is -EFAULT); `kvm_tdp_map_page()` of the private GPA (a read, "guest final"
 * private fault), which builds the mirror levels with TDH.MEM.SEPT.ADD and premaps the leaf
 * (`nr_premapped`++) — a GPA already mapped is a spurious fault; TDH.MEM.PAGE.ADD of the
 * guest_memfd frame from the source (OPERAND_BUSY -EBUSY, another error -EIO), `nr_premapped`--;
 * with the measure flag, 16 TDH.MR.EXTENDs of its 256-byte chunks (an error -EIO).
 */
function tdxGmemPostPopulate(
  k: KernelCtx,
  vcpu: Vcpu,
  flags: number,
  gfn: Gfn,
  pfn: Pfn,
  src: bigint | undefined,
  deferred: bigint[] | undefined,
): Errno | undefined {
  const vm = vcpu.vm;
  const t = toKvmTdx(vm);
  const m = tdxModule(k);
  // No source with attributes in guest_memfd (kvm.vm_memory_attributes=0, in-place conversion v7
  // patch 21: `if (!src_page) src_page = pfn_to_page(pfn)`): TDH.MEM.PAGE.ADD takes the
  // guest_memfd page itself as its source, so the TD gets what the VMM wrote there while the page
  // was shared. (kvm/next GUPs the source in kvm_gmem_populate() and passes NULL for a NULL
  // address; 6.18's get_user_pages_fast() of address 0 is EFAULT.)
  const inPlace = src === 0n && k.profile.gmemMemoryAttributes === true;
  let srcPfn: Pfn;
  if (inPlace) srcPfn = pfn;
  else {
    // get_user_pages_fast(src, 1, 0): a read reference to the source page.
    if (src === undefined || src >= k.profile.taskSizeMax) return 'EFAULT';
    const g = k.mm.fault(asHvpn(Number(src >> 12n)), false, false);
    if ('signal' in g) return 'EFAULT';
    srcPfn = g.pfn;
  }
  // kvm_tdp_map_page(vcpu, gpa, PFERR_GUEST_FINAL_MASK | PFERR_PRIVATE_ACCESS, &level)
  // (RET_PF_EMULATE is -ENOENT; a memory-fault exit is its -EFAULT or the error the fault met.)
  if (vm.stage2[0]!.entryAt(gfn) === undefined) {
    const r = kvmMmuDoPageFault(k, vm, gfn, false, true);
    if (typeof r !== 'number') return r.kind === 'mmio' ? 'ENOENT' : r.errno;
  }
  const gpa = gfnToGpa(gfn);
  const measured = (flags & KVM_TDX_MEASURE_MEMORY_REGION) !== 0;
  // In place the source becomes the TD's page: its bytes as the host saw them, read before.
  const before = inPlace && measured ? hostView(k, m, srcPfn) : undefined;
  const err = k.mutants.has('tdx_page_add_swapped')
    ? m.tdhMemPageAdd(t.tdr!, gpa, srcPfn, pfn)
    : m.tdhMemPageAdd(t.tdr!, gpa, pfn, srcPfn);
  if (err !== TDX.SUCCESS) return tdxStatusCode(err) === TDX.OPERAND_BUSY ? 'EBUSY' : 'EIO';
  t.mrtdLog.push({
    gpa,
    measured,
    contents: measured ? (before ?? hostView(k, m, srcPfn)) : undefined,
  });
  if (t.nrPremapped === 0) kvmBugOn(vm, t);
  else t.nrPremapped--;
  if (measured && !k.mutants.has('tdx_measure_skips_extend')) {
    if (deferred !== undefined) deferred.push(gpa);
    else if (!tdxExtendPage(m, t, gpa)) return 'EIO';
  }
  return undefined;
}

/** The 16 TDH.MR.EXTENDs of the page at `gpa` (false: one failed). */
function tdxExtendPage(m: TdxModule, t: KvmTdx, gpa: bigint): boolean {
  for (let i = 0; i < PAGE; i += TDX_EXTENDMR_CHUNKSIZE)
    if (m.tdhMrExtend(t.tdr!, gpa + BigInt(i)) !== TDX.SUCCESS) return false;
  return true;
}

/** A host page's bytes as the host reads them (KeyID 0: a frame the module owns reads zeros). */
function hostView(k: KernelCtx, m: TdxModule, pfn: Pfn): Uint8Array {
  const b = new Uint8Array(PAGE);
  if (!m.owns(pfn)) k.frames.read(pfn, 0, b);
  return b;
}

/**
 * `tdx_vcpu_init_mem_region()`: the vCPU initialized and the TD not RUNNABLE, flags within
 * KVM_TDX_MEASURE_MEMORY_REGION (-EINVAL); `struct kvm_tdx_init_mem_region` (-EFAULT); source and
 * GPA page aligned, nr_pages non-zero, no wrap, both ends private GPAs (-EINVAL). Then one page
 * at a time: `kvm_gmem_populate()` of one page with `tdx_gmem_post_populate()` (its error ends
 * the loop; a count other than 1 is -EIO), and the struct advances (source_addr unless 0, gpa
 * +4096, nr_pages -1). The struct is always written back (-EFAULT), so the caller sees the
 * progress. With attributes in guest_memfd a source_addr of 0 populates in place (v7 patch 21).
 */
function tdxVcpuInitMemRegion(k: KernelCtx, vcpu: Vcpu, cmd: KvmTdxCmd): Result<undefined> {
  const vm = vcpu.vm;
  const t = toKvmTdx(vm);
  if (toVcpuTdx(vcpu).state !== 'VCPU_TD_STATE_INITIALIZED')
    return err('EINVAL', 'tdx_vcpu_init_mem_region: vCPU not initialized');
  if (t.state === 'TD_STATE_RUNNABLE')
    return err('EINVAL', 'tdx_vcpu_init_mem_region: TD is RUNNABLE');
  if ((cmd.flags & ~KVM_TDX_MEASURE_MEMORY_REGION) !== 0)
    return err('EINVAL', 'tdx_vcpu_init_mem_region: flags');
  const region = copyFromUserAddr(k, cmd.data, KVM_TDX_INIT_MEM_REGION_SIZE);
  if (region === undefined)
    return err('EFAULT', 'tdx_vcpu_init_mem_region: copy_from_user(region)');
  let sourceAddr = u64(region, 0);
  let gpa = u64(region, 8);
  let nrPages = u64(region, 16);
  const bytes = BigInt.asUintN(64, nrPages << 12n);
  const end = BigInt.asUintN(64, gpa + bytes);
  if (
    sourceAddr % 4096n !== 0n ||
    gpa % 4096n !== 0n ||
    nrPages === 0n ||
    end <= gpa ||
    !isPrivateGpa(t, gpa) ||
    !isPrivateGpa(t, BigInt.asUintN(64, end - 1n))
  )
    return err('EINVAL', 'tdx_vcpu_init_mem_region: source, gpa or nr_pages');
  let ret: Errno | undefined;
  const deferred = k.mutants.has('tdx_extend_two_pass') ? ([] as bigint[]) : undefined;
  while (nrPages !== 0n) {
    // signal_pending(current): no signal is ever pending in the model.
    const gfn = gpa >> 12n;
    const n =
      gfn < BigInt(k.profile.maxGfnExclusive)
        ? kvmGmemPopulate(k, vm, asGfn(Number(gfn)), sourceAddr, 1, (g, pfn, src) =>
            tdxGmemPostPopulate(k, vcpu, cmd.flags, g, pfn, src, deferred),
          )
        : 'EINVAL';
    if (typeof n === 'string') {
      ret = n;
      break;
    }
    if (n !== 1) {
      ret = 'EIO';
      break;
    }
    // `if (region.source_addr) region.source_addr += PAGE_SIZE` (v7 patch 21; a zero source
    // never gets this far on 6.18).
    if (sourceAddr !== 0n) sourceAddr = BigInt.asUintN(64, sourceAddr + 4096n);
    gpa += 4096n;
    nrPages--;
  }
  if (deferred !== undefined)
    for (const g of deferred) if (!tdxExtendPage(tdxModule(k), t, g)) ret ??= 'EIO';
  putU64(region, 0, sourceAddr);
  putU64(region, 8, gpa);
  putU64(region, 16, nrPages);
  if (!copyToUserAddr(k, cmd.data, region))
    return err('EFAULT', 'tdx_vcpu_init_mem_region: copy_to_user(region)');
  return ret === undefined ? OK_VOID : err(ret, 'tdx_vcpu_init_mem_region: kvm_gmem_populate');
}

/**
 * `vt_vcpu_mem_enc_ioctl()` → `tdx_vcpu_ioctl()`: -EINVAL for a vCPU that is not a TD's; an HKID
 * and not RUNNABLE (-EINVAL, before the struct is read); the command struct (-EFAULT), `hw_error`
 * zero (-EINVAL); then the command (unknown: -EINVAL). The struct is not copied back.
 */
export function tdxVcpuIoctl(k: KernelCtx, vcpu: Vcpu, argp: UserPtr): Result<undefined> {
  if (!isTd(vcpu.vm)) return err('EINVAL', 'vt_vcpu_mem_enc_ioctl: !is_td_vcpu(vcpu)');
  const t = toKvmTdx(vcpu.vm);
  if (!isHkidAssigned(t) || t.state === 'TD_STATE_RUNNABLE')
    return err('EINVAL', 'tdx_vcpu_ioctl: no HKID or TD RUNNABLE');
  const raw = argp.copyFromUser(KVM_TDX_CMD_SIZE);
  if (raw === undefined) return err('EFAULT', 'tdx_vcpu_ioctl: copy_from_user(cmd)');
  const cmd = new KvmTdxCmd(raw);
  if (cmd.hwError !== 0n) return err('EINVAL', 'tdx_vcpu_ioctl: hw_error != 0');
  switch (cmd.id) {
    case KVM_TDX.INIT_VCPU:
      return tdxVcpuInit(k, vcpu, cmd);
    case KVM_TDX.INIT_MEM_REGION:
      return tdxVcpuInitMemRegion(k, vcpu, cmd);
    case KVM_TDX.GET_CPUID:
      throw new NotModelled(
        'KVM_TDX_GET_CPUID reads the TD CPUID with TDH.MNG.RD, which the model does not represent',
      );
    default:
      return err('EINVAL', `tdx_vcpu_ioctl: unknown command id ${cmd.id}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The mirror page table's hooks

/** The key of a mirror non-leaf entry: S-EPT `level` (1..PWL), its index at that level. */
function septKey(level: number, index: number): number {
  return level * 2 ** 40 + index;
}

/**
 * The TDP MMU installing a private leaf of a TD at `gfn` (4K): the mirror levels it walks
 * through are linked first (`tdp_mmu_link_sp()` → `tdx_sept_link_private_spt()`:
 * TDH.MEM.SEPT.ADD of a new page at each missing level, root-most first), then the leaf
 * (`tdx_sept_set_private_spte()`: TDH.MEM.PAGE.AUG once the TD is RUNNABLE, else the leaf is
 * only premapped, `tdx_mem_page_record_premap_cnt()`). Every failure here is a KVM_BUG_ON: the
 * SPTE is not set, the fault retries and `kvm_tdp_map_page()` then sees the VM dead: -EIO
 * (OPERAND_BUSY cannot happen on the model's one CPU).
 */
export function tdxSetPrivateSpte(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  level: MappingLevel,
  pfn: Pfn,
): Errno | undefined {
  const t = toKvmTdx(vm);
  const m = tdxModule(k);
  const td = m.td(t.tdr!);
  const pwl = td?.pwl ?? 3;
  for (let l = pwl; l >= 1; l--) {
    const idx = indexAt(gfn, l);
    const key = septKey(l, idx);
    if (t.septPages.has(key)) continue;
    const page = allocPage(k, vm);
    const gpa = BigInt(idx * pagesAtLevel(l)) << 12n;
    if (m.tdhMemSeptAdd(t.tdr!, gpa, l, page) !== TDX.SUCCESS) {
      freePage(k, vm, page);
      kvmBugOn(vm, t);
      return 'EIO';
    }
    t.septPages.set(key, page);
  }
  // tdx_sept_set_private_spte(): TODO: large pages.
  if (level !== '4K') {
    kvmBugOn(vm, t);
    return 'EIO';
  }
  if (t.state === 'TD_STATE_RUNNABLE') {
    // tdx_mem_page_aug()
    if (m.tdhMemPageAug(t.tdr!, gfnToGpa(gfn), 0, pfn) !== TDX.SUCCESS) {
      kvmBugOn(vm, t);
      return 'EIO';
    }
  } else {
    // tdx_mem_page_record_premap_cnt()
    if (vm.preFaultAllowed) {
      kvmBugOn(vm, t);
      return 'EINVAL';
    }
    t.nrPremapped++;
  }
  t.leaves.set(gfn, pfn);
  return undefined;
}

/**
 * `tdx_sept_remove_private_spte()` for a present private 4K leaf being zapped: an HKID must be
 * assigned (a kernel bug otherwise); TDH.MEM.RANGE.BLOCK (`tdx_sept_zap_private_spte()`): before
 * finalize, EPT_ENTRY_STATE_INCORRECT on an entry without RWX is a leaf that was premapped and
 * never PAGE.ADDed, so only `nr_premapped` drops; then `tdx_track()` (TDH.MEM.TRACK, only once
 * RUNNABLE, and every vCPU kicked out of guest mode), TDH.MEM.PAGE.REMOVE, TDH.PHYMEM.PAGE.WBINVD
 * and the MOVDIR64B clear (`tdx_sept_drop_private_spte()`). Failures are kernel bugs (the VM is
 * bugged; the frame is then leaked by the TD).
 */
export function tdxRemovePrivateSpte(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  _level: MappingLevel,
  pfn: Pfn,
): void {
  const t = toKvmTdx(vm);
  if (!t.leaves.delete(gfn)) return;
  if (!isHkidAssigned(t)) {
    kvmBugOn(vm, t);
    return;
  }
  const m = tdxModule(k);
  const gpa = gfnToGpa(gfn);
  const tdr = t.tdr!;
  const block = m.tdhMemRangeBlock(tdr, gpa, 0);
  if (block !== TDX.SUCCESS) {
    // tdx_is_sept_zap_err_due_to_premap()
    const premap =
      t.state !== 'TD_STATE_RUNNABLE' &&
      block === (TDX.EPT_ENTRY_STATE_INCORRECT | OPERAND_ID.RCX) &&
      (m.out.rcx & 7n) === 0n;
    if (premap && t.nrPremapped > 0) {
      t.nrPremapped--;
      return;
    }
    kvmBugOn(vm, t);
    return;
  }
  // tdx_track()
  if (t.state === 'TD_STATE_RUNNABLE' && !k.mutants.has('tdx_zap_no_track')) {
    if (m.tdhMemTrack(tdr) !== TDX.SUCCESS) kvmBugOn(vm, t);
    // kvm_make_all_cpus_request(KVM_REQ_OUTSIDE_GUEST_MODE): no TD vCPU runs in the model.
  }
  if (m.tdhMemPageRemove(tdr, gpa, 0) !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return;
  }
  if (m.tdhPhymemPageWbinvd(pfn) !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return;
  }
  tdxClearPage(k, m, pfn);
}

/** `tdx_gmem_private_max_mapping_level()`: 4K for a TD (0: no limit for other VMs). */
export function tdxGmemMaxMappingLevel(_k: KernelCtx, vm: Vm, _pfn: Pfn): MappingLevel | 0 {
  return isTd(vm) ? '4K' : 0;
}

// ---------------------------------------------------------------------------------------------
// Teardown

/**
 * `tdx_mmu_release_hkid()` then `tdx_reclaim_td_control_pages()`: every initialized vCPU flushed
 * (TDH.VP.FLUSH), TDH.MNG.VPFLUSHDONE, TDH.PHYMEM.CACHE.WB and TDH.MNG.KEY.FREEID (the HKID is
 * free again); then the TDCS pages reclaimed (TDH.PHYMEM.PAGE.RECLAIM, cleared, freed), and the
 * TDR (reclaimed, TDH.PHYMEM.PAGE.WBINVD, cleared, freed). A page that cannot be reclaimed is
 * leaked, as the kernel does.
 */
function tdTeardown(k: KernelCtx, vm: Vm, t: KvmTdx): void {
  releaseHkid(k, vm, t);
  reclaimTdControlPages(k, vm, t);
}

/** `tdx_mmu_release_hkid()`. */
function releaseHkid(k: KernelCtx, vm: Vm, t: KvmTdx): void {
  if (!isHkidAssigned(t)) return;
  const m = tdxModule(k);
  if (t.tdr === undefined) {
    hkidFree(k, t);
    return;
  }
  for (const vcpu of vm.vcpus.values()) {
    const v = VCPU_TDX.get(vcpu);
    if (v === undefined || v.state === 'VCPU_TD_STATE_UNINITIALIZED' || v.tdvpr === undefined)
      continue;
    const e = m.tdhVpFlush(v.tdvpr);
    if (e !== TDX.SUCCESS && e !== TDX.VCPU_NOT_ASSOCIATED) kvmBugOn(vm, t);
  }
  const f = m.tdhMngVpflushdone(t.tdr);
  if (f === TDX.FLUSHVP_NOT_DONE) return;
  if (f !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return;
  }
  m.tdhPhymemCacheWb();
  if (m.tdhMngKeyFreeid(t.tdr) !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return;
  }
  hkidFree(k, t);
}

/** `tdx_reclaim_page()` + free: false when the page had to be leaked. */
function reclaimAndFree(k: KernelCtx, vm: Vm, m: TdxModule, pfn: Pfn): boolean {
  if (m.tdhPhymemPageReclaim(pfn) !== TDX.SUCCESS) return false;
  tdxClearPage(k, m, pfn);
  freePage(k, vm, pfn);
  return true;
}

/** `tdx_reclaim_td_control_pages()`. */
function reclaimTdControlPages(k: KernelCtx, vm: Vm, t: KvmTdx): void {
  if (isHkidAssigned(t)) return;
  const m = tdxModule(k);
  for (const p of t.tdcs) reclaimAndFree(k, vm, m, p);
  t.tdcs = [];
  if (t.tdr === undefined) return;
  if (m.tdhPhymemPageReclaim(t.tdr) !== TDX.SUCCESS) return;
  if (m.tdhPhymemPageWbinvd(t.tdr) !== TDX.SUCCESS) {
    kvmBugOn(vm, t);
    return;
  }
  tdxClearPage(k, m, t.tdr);
  freePage(k, vm, t.tdr);
  t.tdr = undefined;
}

/**
 * The TD's part of `kvm_destroy_vm()`, in the kernel's order: the private leaves still mapped are
 * zapped while the HKID is assigned (`kvm_mmu_zap_all()` of the mirror root:
 * `tdx_sept_remove_private_spte()` each), the HKID released (`tdx_mmu_release_hkid()`), each
 * vCPU's TDVPR and TDCX pages reclaimed (`tdx_vcpu_free()`), the S-EPT pages reclaimed
 * (`tdx_sept_free_private_spt()` as the mirror root is freed), and the TDCS and TDR
 * (`tdx_vm_destroy()`).
 */
export function tdxVmDestroy(k: KernelCtx, vm: Vm): void {
  if (!isTd(vm)) return;
  const t = TDX_STATE.get(vm);
  if (t === undefined) return;
  if (k.platform.tdx === undefined) return;
  const m = tdxModule(k);
  for (const [gfn, pfn] of [...t.leaves]) tdxRemovePrivateSpte(k, vm, asGfn(gfn), '4K', pfn);
  releaseHkid(k, vm, t);
  const hkidGone = !isHkidAssigned(t);
  for (const vcpu of vm.vcpus.values()) {
    const v = VCPU_TDX.get(vcpu);
    if (v === undefined || !hkidGone) continue;
    // tdx_vcpu_free()
    for (const p of v.tdcx) reclaimAndFree(k, vm, m, p);
    v.tdcx = [];
    if (v.tdvpr !== undefined) reclaimAndFree(k, vm, m, v.tdvpr);
    v.tdvpr = undefined;
    v.state = 'VCPU_TD_STATE_UNINITIALIZED';
  }
  if (hkidGone) {
    for (const p of t.septPages.values()) reclaimAndFree(k, vm, m, p);
    t.septPages.clear();
  }
  reclaimTdControlPages(k, vm, t);
  t.state = 'TD_STATE_UNINITIALIZED';
}

/** The TD's MRTD (48 bytes) once KVM_TDX_FINALIZE_VM succeeded, else undefined. */
export function tdxTdMrtd(k: KernelCtx, vm: Vm): Uint8Array | undefined {
  const t = isTd(vm) ? TDX_STATE.get(vm) : undefined;
  if (t?.tdr === undefined) return undefined;
  return k.platform.tdx?.module.td(t.tdr)?.mrtd;
}
