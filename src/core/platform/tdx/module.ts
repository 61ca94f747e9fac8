/**
 * The Intel TDX module as KVM drives it: the SEAMCALLs of a TD's life (intel/tdx-module
 * `src/vmm_dispatcher/api_calls/tdh_*.c`), the guest's TDG.MEM.PAGE.ACCEPT
 * (`src/td_dispatcher/vm_exits/tdg_mem_page_accept.c`) and the CPU's access check of a private
 * GPA through the S-EPT (platforms.md §1, Appendix A.1). KVM calls them through the kernel's
 * wrappers (linux `arch/x86/virt/vmx/tdx/tdx.c`: `tdh_mng_create()`, `tdh_mem_sept_add()`, ...);
 * each method here is one wrapper, named after its SEAMCALL, with the wrapper's operands (the
 * TD by its TDR frame, a vCPU by its TDVPR frame, pages by frame, a GPA and an S-EPT level).
 *
 * **Return value.** Every SEAMCALL returns the module's 64-bit status as a `bigint` (status.ts:
 * `TDX.*`, with the operand id in the low bits where the module adds one), exactly what KVM reads
 * from RAX and masks with `TDX_SEAMCALL_STATUS_MASK`. Output registers (the S-EPT entry and
 * level-state of a failing S-EPT call, the removed page's address, a reclaimed page's type, owner
 * and size) are in `out` after each call, as the wrappers' `ext_err1`/`ext_err2`/`tdx_pt`/...
 *
 * **Check, then commit.** Each SEAMCALL runs the module's checks in the module's order, each with
 * its status, and changes nothing until all pass (the module's exits before its commit point).
 * The common checks (helpers.c): the TDR operand is a 4 KiB PT_TDR page
 * (`check_lock_and_map_explicit_tdr()`: PAGE_METADATA_INCORRECT + operand); the TD is not fatal,
 * its keys are configured (TD_KEYS_NOT_CONFIGURED), its TDCS allocated (TDCS_NOT_ALLOCATED) and
 * its op_state allows the leaf (OP_STATE_INCORRECT; `check_state_map_tdcs_and_lock()`); the
 * page-info operand has a level in the leaf's range and a GPA aligned to it
 * (`verify_page_info_input()`: OPERAND_INVALID + RCX); the GPA is private for the TD's GPAW
 * (`check_gpa_validity()`); the S-EPT walk reaches the level (`lock_sept_check_and_walk_*()`:
 * EPT_WALK_FAILED + RCX); the entry's state is allowed (`sept_state_is_seamcall_leaf_allowed()`:
 * EPT_ENTRY_STATE_INCORRECT + RCX); an explicit page operand is a 4 KiB page of the expected
 * PAMT type (`check_and_lock_explicit_4k_private_hpa()`: PAGE_METADATA_INCORRECT + operand).
 *
 * **What the model leaves out** (documented choices): there is one package and one logical
 * processor, nothing runs concurrently, so the module's locks never contend (no OPERAND_BUSY
 * except for a vCPU that is in guest mode, whose TDVPR TDH.VP.ENTER holds), KEY.CONFIG and
 * CACHE.WB complete in one call, and a 2 MiB ACCEPT is never interrupted. Every frame is inside a
 * TDMR, frames carry no KeyID bits (a page operand is a `Pfn`), and the PAGE.ADD source, a host
 * frame, always passes the shared-HPA check. TD_PARAMS is checked on its attributes, max vCPUs,
 * CONFIG_FLAGS and EPTP page-walk length only (not XFAM, CPUID configuration or TSC frequency).
 * The S-EPT details in `out` give the entry as `pfn << 12 | RWX` and the level-state as
 * `level | public_state << 8`. The migration SEAMCALLs and states are names in the tables only.
 *
 * **Private memory contents** go through the model's frame store (base/frames.ts): PAGE.ADD
 * copies the source frame into the new private page (MOVDIR64B with the TD's key), ACCEPT zeroes
 * the accepted page(s), MR.EXTEND reads 256 bytes of the private page as it is now. A host write
 * to a page the module owns poisons it (platform.ts: `hostWrite`); a later TD access to it is a
 * machine check (`guestAccess`), and a module write of the whole page (PAGE.ADD, ACCEPT) or the
 * host's MOVDIR64B clear (`movdir64bClear`) removes the poison.
 */
import type { FrameStore } from '../../base/frames.js';
import { NO_MUTANTS, type MutantSet } from '../../base/mutants.js';
import { RangeMap } from '../../base/ranges/range_map.js';
import { asPfn, type Pfn } from '../../base/units.js';
import { PAMT_NDA, PT, Pamt, type PageType, type PamtEntry } from './pamt.js';
import {
  ACCEPT_SEPT_ALLOWED,
  SEAMCALL_LEAF as LEAF,
  SEPT_STATE_INFO,
  SeptTree,
  pagesAtLevel,
  septAllowed,
  type SeptEntry,
  type SeptState,
} from './sept.js';
import { OPERAND_ID as OP, TDX, withOperand } from './status.js';
import {
  TD_ATTR,
  TD_ATTR_FIXED0,
  TD_CONFIG_FLAGS,
  opStateAllowed,
  opStateTlbTracking,
  type Td,
  type TdMrtd,
  type TdParams,
  type TdVcpu,
} from './td.js';

export type { Td, TdMrtd, TdParams, TdVcpu } from './td.js';

/** Module limits the model uses (TDX module 1.5 `td_control_structures.h`, `tdx_tdvps.h`). */
export interface TdxModuleConfig {
  /** MIN_NUM_TDCS_PAGES (no L2 VMs) and MAX_NUM_TDCS_PAGES. */
  readonly tdcsPages: number;
  readonly maxTdcsPages: number;
  /** MIN_TDVPS_PAGES (TDVPR + TDCX pages, no L2 VMs) and MAX_TDVPS_PAGES. */
  readonly tdvpsPages: number;
  readonly maxTdvpsPages: number;
  /** The private HKID range [min, max] (`is_private_hkid()`). */
  readonly privateHkidMin: number;
  readonly privateHkidMax: number;
  /** The platform supports 5-level EPT (IA32_VMX_EPT_VPID_CAP). */
  readonly pml5: boolean;
}

export const TDX_MODULE_DEFAULTS: TdxModuleConfig = {
  tdcsPages: 6,
  maxTdcsPages: 9,
  tdvpsPages: 6,
  maxTdvpsPages: 15,
  privateHkidMin: 32,
  privateHkidMax: 63,
  pml5: true,
};

/** Output registers of the last SEAMCALL (0 where the call wrote none). */
export interface SeamcallOut {
  rcx: bigint;
  rdx: bigint;
  r8: bigint;
}

/** What a TDCALL or a guest access did: a status to the guest, or a TD exit to the VMM. */
export type TdgResult =
  | { readonly kind: 'status'; readonly status: bigint }
  | { readonly kind: 'ept-violation'; readonly gpa: bigint; readonly level: number };

/** The CPU's check of one guest access (platforms.md §1.6). */
export type TdGuestAccess =
  /** A MAPPED private page: the access proceeds on `pfn`. */
  | { readonly kind: 'ok'; readonly pfn: Pfn }
  /** The shared bit is set: the VMM's shared EPT translates it (KVM's ordinary stage 2). */
  | { readonly kind: 'shared' }
  /** A PENDING page with SEPT_VE_DISABLE clear: #VE in the guest, no exit. */
  | { readonly kind: 've'; readonly gpa: bigint }
  /**
   * A TD exit to the VMM: EPT violation on a private GPA (`pending`: the page was PENDING, KVM's
   * "Guest access before accepting"), the S-EPT level where the walk stopped.
   */
  | {
      readonly kind: 'ept-violation';
      readonly gpa: bigint;
      readonly pending: boolean;
      readonly level: number;
    }
  /** The TD read poisoned memory (a host write hit the page): a machine check, a TD exit. */
  | { readonly kind: 'machine-check'; readonly gpa: bigint; readonly pfn: Pfn };

const PAGE_BYTES = 4096;
const MAX_PA_BITS = 52n;
/** The shared bit with GPAW 52 (bit 51) and with GPAW 48 (bit 47). */
const SHARED_BIT_GPAW52 = 1n << 51n;
const SHARED_BIT_GPAW48 = 1n << 47n;
/** GPA bits 48-51 (beyond GPAW 48). */
const GPA_BITS_48_51 = 0xfn << 48n;

type Fail = bigint;

export class TdxModule {
  readonly pamt = new Pamt();
  private readonly tds = new Map<number, Td>();
  /** The Key Ownership Table: HKIDs not FREE (`KOT_STATE_HKID_ASSIGNED` / `_FLUSHED`). */
  private readonly kot = new Map<number, 'ASSIGNED' | 'FLUSHED'>();
  /** HKIDs flushed by VPFLUSHDONE whose caches TDH.PHYMEM.CACHE.WB has not written back yet. */
  private readonly wbinvdPending = new Set<number>();
  /** Frames a host write poisoned (TD-owner/integrity mismatch), as ranges. */
  private readonly poison = new RangeMap<true>();
  /** Output registers of the last SEAMCALL. */
  out: SeamcallOut = { rcx: 0n, rdx: 0n, r8: 0n };
  /** The 256 bytes TDH.MR.EXTEND reads from the TD's page (valid during the MRTD's update only). */
  private readonly extendChunk = new Uint8Array(256);
  readonly config: TdxModuleConfig;
  /**
   * Bumped by every SEAMCALL, TDG.MEM.PAGE.ACCEPT and TD exit (whether or not it changed
   * anything): the change-driven invariant checker re-reads the module's state (PAMT, S-EPT,
   * TD fields) only when it moved, as it does with the SEV-SNP RMP's generation.
   */
  generation = 0;
  /** Seeded bugs in the module (the Host sets its set when it has any; base/mutants.ts). */
  mutants: MutantSet = NO_MUTANTS;

  constructor(
    private readonly frames: FrameStore,
    private readonly mrtdFactory: () => TdMrtd,
    config: Partial<TdxModuleConfig> = {},
  ) {
    this.config = { ...TDX_MODULE_DEFAULTS, ...config };
  }

  /** The TD whose TDR is `tdr` (undefined once its TDR was reclaimed). */
  td(tdr: Pfn): Td | undefined {
    return this.tds.get(tdr);
  }

  /** Every live TD (inspection, checks). */
  allTds(): Td[] {
    return [...this.tds.values()];
  }

  /** The shared-bit of the TD's GPAs: 51 with GPAW 52, else 47 (`tdx_td_init()`). */
  sharedBit(td: Td): bigint {
    return td.gpaw52 ? SHARED_BIT_GPAW52 : SHARED_BIT_GPAW48;
  }

  // ---- common checks (src/common/helpers/helpers.c) -------------------------------------------

  private reset(): void {
    this.generation++;
    this.out = { rcx: 0n, rdx: 0n, r8: 0n };
  }

  /** `check_and_lock_explicit_4k_private_hpa()`: a 4 KiB PAMT entry of type `pt`. */
  private page4k(pfn: number, pt: PageType, operand: bigint): Fail | undefined {
    const e = this.pamt.get(pfn);
    if (e.size !== '4K' || e.pt !== pt) return withOperand(TDX.PAGE_METADATA_INCORRECT, operand);
    return undefined;
  }

  /** `check_lock_and_map_explicit_tdr()`: the TD of a PT_TDR operand. */
  private tdrOperand(tdr: number, operand: bigint): Td | Fail {
    const f = this.page4k(tdr, PT.TDR, operand);
    if (f !== undefined) return f;
    return this.tds.get(tdr)!;
  }

  /** `check_td_in_correct_build_state()` + the op_state check of `check_state_map_tdcs_and_lock()`. */
  private stateCheck(td: Td, leaf: number): Fail | undefined {
    if (td.lifecycle !== 'TD_KEYS_CONFIGURED') return TDX.TD_KEYS_NOT_CONFIGURED;
    if (td.tdcx.length < this.config.tdcsPages) return TDX.TDCS_NOT_ALLOCATED;
    if (!opStateAllowed(leaf, td.opState)) return TDX.OP_STATE_INCORRECT;
    return undefined;
  }

  /** TDR operand + state check: the TD or the status. */
  private tdFor(tdr: number, operand: bigint, leaf: number): Td | Fail {
    const td = this.tdrOperand(tdr, operand);
    if (typeof td === 'bigint') return td;
    return this.stateCheck(td, leaf) ?? td;
  }

  /** `verify_page_info_input()`: level in [min, max], GPA aligned to the level's page size. */
  private pageInfo(gpa: bigint, level: number, min: number, max: number): Fail | undefined {
    if (!Number.isInteger(level) || level < min || level > max)
      return withOperand(TDX.OPERAND_INVALID, OP.RCX);
    const size = BigInt(PAGE_BYTES) * BigInt(pagesAtLevel(level));
    if (gpa < 0n || gpa >= 1n << 64n || gpa % size !== 0n)
      return withOperand(TDX.OPERAND_INVALID, OP.RCX);
    return undefined;
  }

  /** `check_gpa_validity(gpa, gpaw, PRIVATE_ONLY)`. */
  gpaValid(td: Td, gpa: bigint): boolean {
    // Below the shared bit, at most 47 bits: every check passes (compared without computing a
    // BigInt per check: this runs for every MR.EXTEND).
    if (gpa >= 0n && gpa < SHARED_BIT_GPAW48) return true;
    if ((gpa & this.sharedBit(td)) !== 0n) return false;
    if (gpa >> MAX_PA_BITS !== 0n) return false;
    if (!td.gpaw52 && (gpa & GPA_BITS_48_51) !== 0n) return false;
    return true;
  }

  /** `set_arch_septe_details_in_vmm_regs()` (entry as `pfn << 12 | RWX`, see the module comment). */
  private septDetails(e: SeptEntry, level: number): void {
    const inf = SEPT_STATE_INFO[e.state];
    this.out.rcx = e.pfn < 0 ? 0n : (BigInt(e.pfn) << 12n) | (inf.rwx ? 7n : 0n);
    this.out.rdx = BigInt(level) | (BigInt(inf.publicState) << 8n);
  }

  /** A failure on an S-EPT entry: its details in the output registers, `status` + RCX. */
  private septFail(status: bigint, e: SeptEntry, level: number): Fail {
    this.septDetails(e, level);
    return withOperand(status, OP.RCX);
  }

  /**
   * `lock_sept_check_and_walk_private_gpa()`: GPA validity, then the walk to `level`; the entry
   * reached or the status.
   */
  private walkTo(td: Td, gpa: bigint, level: number): SeptEntry | Fail {
    if (!this.gpaValid(td, gpa)) return withOperand(TDX.OPERAND_INVALID, OP.RCX);
    const w = td.sept.walk(Number(gpa >> 12n), level);
    if (w.level !== level) return this.septFail(TDX.EPT_WALK_FAILED, w.entry, w.level);
    return w.entry;
  }

  /**
   * The operands of an S-EPT SEAMCALL (`tdh_mem_*.c`) in the module's order: the TDR (RDX) and
   * state check for `leaf` (`tdFor`), `verify_page_info_input()` with the leaf's level range
   * (`max` 'PWL': the TD's page-walk length) and the walk to the level (`walkTo`); the TD and
   * the entry reached, or the status.
   */
  private septOperands(
    tdr: number,
    leaf: number,
    gpa: bigint,
    level: number,
    min: number,
    max: number | 'PWL',
  ): { td: Td; e: SeptEntry } | Fail {
    const td = this.tdFor(tdr, OP.RDX, leaf);
    if (typeof td === 'bigint') return td;
    const pi = this.pageInfo(gpa, level, min, max === 'PWL' ? td.pwl : max);
    if (pi !== undefined) return pi;
    const e = this.walkTo(td, gpa, level);
    if (typeof e === 'bigint') return e;
    return { td, e };
  }

  /**
   * `sept_state_is_seamcall_leaf_allowed()` for `leaf` (and the leaf's own condition on the
   * entry, `also`): else EPT_ENTRY_STATE_INCORRECT + RCX with the entry's details.
   */
  private septStateCheck(leaf: number, e: SeptEntry, level: number, also = true): Fail | undefined {
    if (septAllowed(leaf, e.state) && also) return undefined;
    return this.septFail(TDX.EPT_ENTRY_STATE_INCORRECT, e, level);
  }

  /** `is_tlb_tracked()`: the blocking epoch is over for every vCPU. */
  private tlbTracked(td: Td, bepoch: number): boolean {
    if (bepoch === td.epoch - 1 && td.refcount[bepoch & 1] === 0) return true;
    return bepoch < td.epoch - 1;
  }

  /** The PAMT entry of the page an S-EPT entry points to (leaf: its page; non-leaf: the S-EPT page). */
  private entryPage(e: SeptEntry): { pfn: number; pamt: PamtEntry } {
    return { pfn: e.pfn, pamt: this.pamt.get(e.pfn) };
  }

  /**
   * Whether both the entry's state (its SEPT_STATE_INFO `tlbTrackingRequired`) and the TD's
   * op_state (`op_state_is_tlb_tracking_required()`) require TLB tracking.
   */
  private trackingRequired(td: Td, e: SeptEntry): boolean {
    return SEPT_STATE_INFO[e.state].tlbTrackingRequired && opStateTlbTracking(td.opState);
  }

  /** `is_tlb_tracked()` for the epoch in which the entry's page was blocked (its PAMT BEPOCH). */
  private entryTracked(td: Td, e: SeptEntry): boolean {
    return this.tlbTracked(td, this.entryPage(e).pamt.bepoch);
  }

  /**
   * The removals' TLB-tracking check (PAGE.REMOVE, SEPT.REMOVE): when the entry's state and the
   * op_state require tracking, the entry is blocked (GPA_RANGE_NOT_BLOCKED + RCX with the
   * entry's details) and its blocking epoch is over (TLB_TRACKING_NOT_DONE + RCX).
   */
  private blockedAndTracked(td: Td, e: SeptEntry, level: number): Fail | undefined {
    if (!this.trackingRequired(td, e)) return undefined;
    if (!SEPT_STATE_INFO[e.state].anyBlocked)
      return this.septFail(TDX.GPA_RANGE_NOT_BLOCKED, e, level);
    if (!this.entryTracked(td, e)) return withOperand(TDX.TLB_TRACKING_NOT_DONE, OP.RCX);
    return undefined;
  }

  private setPoisonFree(pfn: number, pages: number): void {
    if (this.poison.size !== 0) this.poison.delete(pfn, pfn + pages);
  }

  // ---- TD creation ----------------------------------------------------------------------------

  /**
   * TDH.MNG.CREATE (`tdh_mng_create.c`): a private HKID (OPERAND_INVALID + RDX), the TDR page
   * PT_NDA (RCX), the HKID free in the KOT (HKID_NOT_FREE); the page becomes the TD's TDR,
   * lifecycle TD_HKID_ASSIGNED.
   */
  tdhMngCreate(tdr: Pfn, hkid: number): bigint {
    this.reset();
    const c = this.config;
    if (!Number.isInteger(hkid) || hkid < c.privateHkidMin || hkid > c.privateHkidMax)
      return withOperand(TDX.OPERAND_INVALID, OP.RDX);
    const f = this.page4k(tdr, PT.NDA, OP.RCX);
    if (f !== undefined) return f;
    if (this.kot.has(hkid)) return TDX.HKID_NOT_FREE;
    this.kot.set(hkid, 'ASSIGNED');
    this.pamt.set(tdr, { pt: PT.TDR, owner: 0, bepoch: 0, size: '4K' });
    this.tds.set(tdr, {
      tdr,
      hkid,
      lifecycle: 'TD_HKID_ASSIGNED',
      chldcnt: 0,
      tdcx: [],
      opState: 'UNINITIALIZED',
      attributes: 0n,
      maxVcpus: 0,
      gpaw52: false,
      pwl: 3,
      epoch: 0,
      refcount: [0, 0],
      numVcpus: 0,
      numAssocVcpus: 0,
      mrtdCtx: undefined,
      mrtd: undefined,
      sept: new SeptTree(3),
      vcpus: new Map(),
    });
    return TDX.SUCCESS;
  }

  /**
   * TDH.MNG.KEY.CONFIG (`tdh_mng_key_config.c`): lifecycle TD_HKID_ASSIGNED
   * (LIFECYCLE_STATE_INCORRECT); on the model's one package the key is then configured everywhere:
   * TD_KEYS_CONFIGURED.
   */
  tdhMngKeyConfig(tdr: Pfn): bigint {
    this.reset();
    const td = this.tdrOperand(tdr, OP.RCX);
    if (typeof td === 'bigint') return td;
    if (td.lifecycle !== 'TD_HKID_ASSIGNED') return TDX.LIFECYCLE_STATE_INCORRECT;
    td.lifecycle = 'TD_KEYS_CONFIGURED';
    return TDX.SUCCESS;
  }

  /**
   * TDH.MNG.ADDCX (`tdh_mng_add_cx.c`): keys configured, fewer than MAX_NUM_TDCS_PAGES pages
   * (TDCX_NUM_INCORRECT), the page PT_NDA (RCX), and past the minimum the op_state must still be
   * UNINITIALIZED; the page becomes PT_TDCX of the TD.
   */
  tdhMngAddcx(tdr: Pfn, page: Pfn): bigint {
    this.reset();
    const td = this.tdrOperand(tdr, OP.RDX);
    if (typeof td === 'bigint') return td;
    if (td.lifecycle !== 'TD_KEYS_CONFIGURED') return TDX.TD_KEYS_NOT_CONFIGURED;
    if (td.tdcx.length > this.config.maxTdcsPages - 1) return TDX.TDCX_NUM_INCORRECT;
    const f = this.page4k(page, PT.NDA, OP.RCX);
    if (f !== undefined) return f;
    if (
      td.tdcx.length + 1 > this.config.tdcsPages &&
      !opStateAllowed(LEAF.TDH_MNG_ADDCX, td.opState)
    )
      return TDX.OP_STATE_INCORRECT;
    td.tdcx.push(page);
    td.chldcnt++;
    this.pamt.set(page, { pt: PT.TDCX, owner: tdr, bepoch: 0, size: '4K' });
    return TDX.SUCCESS;
  }

  /**
   * TDH.MNG.INIT (`tdh_mng_init.c`, `read_and_set_td_configurations()`): op_state UNINITIALIZED;
   * TD_PARAMS' attributes within ATTRIBUTES_FIXED0 and not migratable with DEBUG/PERFMON
   * (OPERAND_INVALID + ATTRIBUTES), max vCPUs non-zero (+ MAX_VCPUS), CONFIG_FLAGS within
   * CONFIG_FLAGS_FIXED0 (+ EXEC_CONTROLS), the EPTP page-walk length 4- or (if supported)
   * 5-level and 5-level with GPAW 52 (+ EPTP_CONTROLS). Then op_state INITIALIZED, the S-EPT root
   * and the MRTD context (`mrtdFactory()`).
   */
  tdhMngInit(tdr: Pfn, params: TdParams): bigint {
    this.reset();
    const td = this.tdFor(tdr, OP.RCX, LEAF.TDH_MNG_INIT);
    if (typeof td === 'bigint') return td;
    const a = params.attributes;
    if ((a & ~TD_ATTR_FIXED0) !== 0n) return withOperand(TDX.OPERAND_INVALID, OP.ATTRIBUTES);
    if ((a & TD_ATTR.MIGRATABLE) !== 0n && (a & (TD_ATTR.DEBUG | TD_ATTR.PERFMON)) !== 0n)
      return withOperand(TDX.OPERAND_INVALID, OP.ATTRIBUTES);
    if (!Number.isInteger(params.maxVcpus) || params.maxVcpus <= 0)
      return withOperand(TDX.OPERAND_INVALID, OP.MAX_VCPUS);
    if ((params.configFlags & ~TD_CONFIG_FLAGS.FIXED0) !== 0n)
      return withOperand(TDX.OPERAND_INVALID, OP.EXEC_CONTROLS);
    const gpaw52 = (params.configFlags & TD_CONFIG_FLAGS.GPAW) !== 0n;
    const maxPwl = this.config.pml5 ? 4 : 3;
    if (params.eptPwl < 3 || params.eptPwl > maxPwl || (gpaw52 && params.eptPwl < 4))
      return withOperand(TDX.OPERAND_INVALID, OP.EPTP_CONTROLS);
    td.attributes = a;
    td.maxVcpus = params.maxVcpus;
    td.gpaw52 = gpaw52;
    td.pwl = params.eptPwl;
    td.sept = new SeptTree(params.eptPwl);
    td.mrtdCtx = this.mrtdFactory();
    td.opState = 'INITIALIZED';
    return TDX.SUCCESS;
  }

  // ---- vCPUs ----------------------------------------------------------------------------------

  /**
   * TDH.VP.CREATE (`tdh_vp_create.c`): op_state INITIALIZED, the page PT_NDA (RCX); it becomes
   * the vCPU's TDVPR (PT_TDVPR), one TDVPS page.
   */
  tdhVpCreate(tdr: Pfn, tdvpr: Pfn): bigint {
    this.reset();
    const td = this.tdFor(tdr, OP.RDX, LEAF.TDH_VP_CREATE);
    if (typeof td === 'bigint') return td;
    const f = this.page4k(tdvpr, PT.NDA, OP.RCX);
    if (f !== undefined) return f;
    td.vcpus.set(tdvpr, {
      tdvpr,
      pages: [tdvpr],
      state: 'VCPU_UNINITIALIZED',
      associated: false,
      inGuest: false,
      epoch: 0,
    });
    td.chldcnt++;
    this.pamt.set(tdvpr, { pt: PT.TDVPR, owner: tdr, bepoch: 0, size: '4K' });
    return TDX.SUCCESS;
  }

  /** The vCPU of a PT_TDVPR operand and its TD (implicit TDR: the TDVPR's PAMT owner). */
  private vcpuOperand(tdvpr: number, operand: bigint): { td: Td; vcpu: TdVcpu } | Fail {
    const f = this.page4k(tdvpr, PT.TDVPR, operand);
    if (f !== undefined) return f;
    const td = this.tds.get(this.pamt.get(tdvpr).owner)!;
    const vcpu = td.vcpus.get(tdvpr)!;
    // TDH.VP.ENTER holds the TDVPR's lock while the vCPU runs in the TD.
    if (vcpu.inGuest) return withOperand(TDX.OPERAND_BUSY, operand);
    return { td, vcpu };
  }

  /**
   * TDH.VP.ADDCX (`tdh_vp_addcx.c`): TDVPR (RDX), op_state INITIALIZED, the vCPU not yet
   * initialized (VCPU_STATE_INCORRECT), fewer than MAX_TDVPS_PAGES (TDCX_NUM_INCORRECT), the page
   * PT_NDA (RCX); it becomes a PT_TDCX of the TD.
   */
  tdhVpAddcx(tdvpr: Pfn, page: Pfn): bigint {
    this.reset();
    const v = this.vcpuOperand(tdvpr, OP.RDX);
    if (typeof v === 'bigint') return v;
    const { td, vcpu } = v;
    const s = this.stateCheck(td, LEAF.TDH_VP_ADDCX);
    if (s !== undefined) return s;
    if (vcpu.state !== 'VCPU_UNINITIALIZED') return TDX.VCPU_STATE_INCORRECT;
    if (vcpu.pages.length >= this.config.maxTdvpsPages) return TDX.TDCX_NUM_INCORRECT;
    const f = this.page4k(page, PT.NDA, OP.RCX);
    if (f !== undefined) return f;
    vcpu.pages.push(page);
    td.chldcnt++;
    this.pamt.set(page, { pt: PT.TDCX, owner: td.tdr, bepoch: 0, size: '4K' });
    return TDX.SUCCESS;
  }

  /**
   * TDH.VP.INIT (`tdh_vp_init.c`): TDVPR (RCX), op_state INITIALIZED, all TDVPS pages added
   * (TDCX_NUM_INCORRECT), the vCPU uninitialized (VCPU_STATE_INCORRECT), fewer than max vCPUs
   * (MAX_VCPUS_EXCEEDED); the vCPU is READY and associated (`associate_vcpu_initial()`).
   */
  tdhVpInit(tdvpr: Pfn): bigint {
    this.reset();
    const v = this.vcpuOperand(tdvpr, OP.RCX);
    if (typeof v === 'bigint') return v;
    const { td, vcpu } = v;
    const s = this.stateCheck(td, LEAF.TDH_VP_INIT);
    if (s !== undefined) return s;
    if (vcpu.pages.length < this.config.tdvpsPages) return TDX.TDCX_NUM_INCORRECT;
    if (vcpu.state !== 'VCPU_UNINITIALIZED') return TDX.VCPU_STATE_INCORRECT;
    if (td.numVcpus >= td.maxVcpus) return TDX.MAX_VCPUS_EXCEEDED;
    td.numVcpus++;
    vcpu.state = 'VCPU_READY';
    if (!vcpu.associated) {
      vcpu.associated = true;
      td.numAssocVcpus++;
    }
    return TDX.SUCCESS;
  }

  /**
   * TDH.VP.ENTER (`td_transitions/tdh_vp_enter.c`) up to the TD's first instruction: TDVPR (RCX;
   * OPERAND_BUSY while it already runs), keys configured, op_state RUNNABLE (or live
   * export/import), the vCPU READY; it is associated, samples TD_EPOCH into VCPU_EPOCH and
   * increments that epoch's REFCOUNT (`adjust_tlb_tracking_state()`). The vCPU then runs in the
   * TD until `tdExit()`.
   */
  tdhVpEnter(tdvpr: Pfn): bigint {
    this.reset();
    const v = this.vcpuOperand(tdvpr, OP.RCX);
    if (typeof v === 'bigint') return v;
    const { td, vcpu } = v;
    if (td.lifecycle !== 'TD_KEYS_CONFIGURED') return TDX.TD_KEYS_NOT_CONFIGURED;
    if (!opStateAllowed(LEAF.TDH_VP_ENTER, td.opState)) return TDX.OP_STATE_INCORRECT;
    if (vcpu.state !== 'VCPU_READY') return TDX.VCPU_STATE_INCORRECT;
    if (!vcpu.associated) {
      vcpu.associated = true;
      td.numAssocVcpus++;
    }
    vcpu.epoch = td.epoch;
    td.refcount[td.epoch & 1]++;
    vcpu.inGuest = true;
    return TDX.SUCCESS;
  }

  /**
   * A TD exit of a running vCPU (any reason: KVM's KVM_REQ_OUTSIDE_GUEST_MODE kick, an EPT
   * violation, a TDVMCALL): the epoch reference it took at entry is dropped
   * (`revert_tlb_tracking_state()` on the exit path). Returns false if the vCPU was not running.
   */
  tdExit(tdvpr: Pfn): boolean {
    this.generation++;
    const td = this.tds.get(this.pamt.get(tdvpr).owner);
    const vcpu = td?.vcpus.get(tdvpr);
    if (td === undefined || vcpu === undefined || !vcpu.inGuest) return false;
    td.refcount[vcpu.epoch & 1]--;
    vcpu.inGuest = false;
    return true;
  }

  /**
   * TDH.VP.FLUSH (`tdh_vp_flush.c`): TDVPR (RCX), keys configured (TD_KEYS_NOT_CONFIGURED), the
   * vCPU associated (VCPU_NOT_ASSOCIATED); it is dissociated.
   */
  tdhVpFlush(tdvpr: Pfn): bigint {
    this.reset();
    const v = this.vcpuOperand(tdvpr, OP.RCX);
    if (typeof v === 'bigint') return v;
    const { td, vcpu } = v;
    if (td.lifecycle !== 'TD_KEYS_CONFIGURED') return TDX.TD_KEYS_NOT_CONFIGURED;
    if (!vcpu.associated) return TDX.VCPU_NOT_ASSOCIATED;
    vcpu.associated = false;
    td.numAssocVcpus--;
    return TDX.SUCCESS;
  }

  // ---- S-EPT and private pages ----------------------------------------------------------------

  /**
   * TDH.MEM.SEPT.ADD (`tdh_mem_sept_add.c`, version 0): op_state INITIALIZED or RUNNABLE (+ live
   * export/import), level 1..PWL (OPERAND_INVALID + RCX), the walk to that level, the entry FREE
   * (EPT_ENTRY_STATE_INCORRECT: the table allows NL_MAPPED only for ALLOW_EXISTING, which KVM
   * does not pass), the new page PT_NDA (R8); it becomes PT_EPT and the entry NL_MAPPED.
   */
  tdhMemSeptAdd(tdr: Pfn, gpa: bigint, level: number, page: Pfn): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_SEPT_ADD, gpa, level, 1, 'PWL');
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    const s = this.septStateCheck(LEAF.TDH_MEM_SEPT_ADD, e, level, e.state === 'FREE');
    if (s !== undefined) return s;
    const f = this.page4k(page, PT.NDA, OP.R8);
    if (f !== undefined) return f;
    this.pamt.set(page, { pt: PT.EPT, owner: tdr, bepoch: 0, size: '4K' });
    td.chldcnt++;
    td.sept.set(level, e.index, 'NL_MAPPED', page);
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.PAGE.ADD (`tdh_mem_page_add.c`): op_state INITIALIZED, level 0, a private GPA, the
   * walk, the entry FREE, the source shared (always, see the module comment), the target PT_NDA
   * (R8). The source is copied into the target (MOVDIR64B with the TD's key), the entry becomes
   * MAPPED, the MRTD takes the PAGE.ADD block, the page becomes PT_REG of the TD.
   */
  tdhMemPageAdd(tdr: Pfn, gpa: bigint, page: Pfn, source: Pfn): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_PAGE_ADD, gpa, 0, 0, 0);
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    const s = this.septStateCheck(LEAF.TDH_MEM_PAGE_ADD, e, 0);
    if (s !== undefined) return s;
    const f = this.page4k(page, PT.NDA, OP.R8);
    if (f !== undefined) return f;
    // The source is read with KeyID 0: a frame the module owns reads as zeros (platform.ts).
    if (this.owns(source)) this.frames.zero(page, 1);
    else this.frames.copy(source, page);
    this.setPoisonFree(page, 1);
    td.sept.set(0, e.index, 'MAPPED', page);
    td.mrtdCtx!.pageAdd(gpa);
    td.chldcnt++;
    this.pamt.set(page, { pt: PT.REG, owner: tdr, bepoch: 0, size: '4K' });
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.PAGE.AUG (`tdh_mem_page_aug.c`): op_state INITIALIZED, RUNNABLE (+ live
   * export/import), level 0 or 1, the walk, the entry FREE or REMOVED, the target range free in
   * the PAMT (`check_and_lock_free_range_hpa()`: aligned to the level, OPERAND_INVALID + R8; the
   * whole range PT_NDA, PAGE_METADATA_INCORRECT + R8). The entry becomes PENDING (no access
   * until the guest accepts), the page PT_REG of the TD at that size.
   */
  tdhMemPageAug(tdr: Pfn, gpa: bigint, level: number, page: Pfn): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_PAGE_AUG, gpa, level, 0, 1);
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    const s = this.septStateCheck(LEAF.TDH_MEM_PAGE_AUG, e, level);
    if (s !== undefined) return s;
    const pages = pagesAtLevel(level);
    if (page % pages !== 0) return withOperand(TDX.OPERAND_INVALID, OP.R8);
    if (level === 0) {
      const f = this.page4k(page, PT.NDA, OP.R8);
      if (f !== undefined) return f;
    } else if (!this.pamt.rangeFree(page, pages)) {
      return withOperand(TDX.PAGE_METADATA_INCORRECT, OP.R8);
    }
    td.sept.set(level, e.index, 'PENDING', page);
    td.chldcnt += pages;
    this.pamt.set(page, { pt: PT.REG, owner: tdr, bepoch: 0, size: level === 0 ? '4K' : '2M' });
    return TDX.SUCCESS;
  }

  /**
   * TDH.MR.EXTEND (`tdh_mr_extend.c`): op_state INITIALIZED, the GPA 256-aligned
   * (OPERAND_INVALID + RCX), a private GPA whose walk ends at a present leaf (else
   * EPT_ENTRY_NOT_PRESENT + RCX), the leaf MAPPED (else EPT_ENTRY_NOT_PRESENT). The MRTD takes
   * the header block and the 256 bytes of the private page as it is now.
   */
  tdhMrExtend(tdr: Pfn, gpa: bigint): bigint {
    this.reset();
    const td = this.tdFor(tdr, OP.RDX, LEAF.TDH_MR_EXTEND);
    if (typeof td === 'bigint') return td;
    if (gpa % 256n !== 0n || gpa < 0n) return withOperand(TDX.OPERAND_INVALID, OP.RCX);
    if (!this.gpaValid(td, gpa)) return withOperand(TDX.OPERAND_INVALID, OP.RCX);
    const gfn = Number(gpa >> 12n);
    const w = td.sept.walk(gfn, 0);
    const inf = SEPT_STATE_INFO[w.entry.state];
    if (!inf.leaf || !inf.rwx) return this.septFail(TDX.EPT_ENTRY_NOT_PRESENT, w.entry, w.level);
    if (!septAllowed(LEAF.TDH_MR_EXTEND, w.entry.state)) return TDX.EPT_ENTRY_NOT_PRESENT;
    const pfn = w.entry.pfn + (gfn % pagesAtLevel(w.level));
    const chunk = this.extendChunk;
    this.frames.read(asPfn(pfn), Number(gpa % 4096n), chunk);
    td.mrtdCtx!.mrExtend(gpa, chunk);
    return TDX.SUCCESS;
  }

  /**
   * TDH.MR.FINALIZE (`tdh_mr_finalize.c`): op_state INITIALIZED, at least one initialized vCPU
   * (NO_VCPUS); the MRTD is finalized and the TD becomes RUNNABLE.
   */
  tdhMrFinalize(tdr: Pfn): bigint {
    this.reset();
    const td = this.tdFor(tdr, OP.RCX, LEAF.TDH_MR_FINALIZE);
    if (typeof td === 'bigint') return td;
    if (td.numVcpus === 0) return TDX.NO_VCPUS;
    td.mrtd = td.mrtdCtx!.finalize();
    td.opState = 'RUNNABLE';
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.RANGE.BLOCK (`tdh_mem_range_block.c`): level 0..PWL, the walk, the entry NL_MAPPED,
   * MAPPED or PENDING (an already blocked one: GPA_RANGE_ALREADY_BLOCKED + RCX, a non-error
   * status; else EPT_ENTRY_STATE_INCORRECT + RCX). `block_sept_entry()`: NL_MAPPED → NL_BLOCKED,
   * MAPPED → BLOCKED, PENDING → PENDING_BLOCKED; the current TD_EPOCH goes into BEPOCH of the
   * page's PAMT entry (for a non-leaf, the S-EPT page's).
   */
  tdhMemRangeBlock(tdr: Pfn, gpa: bigint, level: number): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_RANGE_BLOCK, gpa, level, 0, 'PWL');
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    if (!septAllowed(LEAF.TDH_MEM_RANGE_BLOCK, e.state)) {
      return this.septFail(
        SEPT_STATE_INFO[e.state].anyBlocked
          ? TDX.GPA_RANGE_ALREADY_BLOCKED
          : TDX.EPT_ENTRY_STATE_INCORRECT,
        e,
        level,
      );
    }
    const blocked: SeptState =
      e.state === 'NL_MAPPED' ? 'NL_BLOCKED' : e.state === 'MAPPED' ? 'BLOCKED' : 'PENDING_BLOCKED';
    td.sept.set(level, e.index, blocked, e.pfn);
    const p = this.entryPage(e);
    this.pamt.set(this.pamt.pageBase(p.pfn), { ...p.pamt, bepoch: td.epoch });
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.TRACK (`tdh_mem_track.c`): TDR (RCX), op_state; no vCPU may still run in the
   * previous epoch (REFCOUNT of the other parity non-zero: PREVIOUS_TLB_EPOCH_BUSY); TD_EPOCH is
   * incremented.
   */
  tdhMemTrack(tdr: Pfn): bigint {
    this.reset();
    const td = this.tdFor(tdr, OP.RCX, LEAF.TDH_MEM_TRACK);
    if (typeof td === 'bigint') return td;
    if (td.refcount[1 - (td.epoch & 1)] !== 0) return TDX.PREVIOUS_TLB_EPOCH_BUSY;
    td.epoch++;
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.PAGE.REMOVE (`tdh_mem_page_remove.c`): level 0..2, the walk, a leaf entry in MAPPED,
   * BLOCKED, PENDING or PENDING_BLOCKED (EPT_ENTRY_STATE_INCORRECT + RCX); when both the entry's
   * state and the op_state require TLB tracking (so not before TDH.MR.FINALIZE: a MAPPED page of
   * an INITIALIZED TD goes directly) it must be blocked (GPA_RANGE_NOT_BLOCKED + RCX) and tracked
   * (TLB_TRACKING_NOT_DONE + RCX). The entry becomes FREE, the page PT_NDA; RCX returns its
   * address.
   */
  tdhMemPageRemove(tdr: Pfn, gpa: bigint, level: number): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_PAGE_REMOVE, gpa, level, 0, 2);
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    const leaf = SEPT_STATE_INFO[e.state].leaf;
    const s = this.septStateCheck(LEAF.TDH_MEM_PAGE_REMOVE, e, level, leaf);
    if (s !== undefined) return s;
    const t = this.blockedAndTracked(td, e, level);
    if (t !== undefined) return t;
    const p = this.entryPage(e);
    td.sept.set(level, e.index, 'FREE', -1);
    td.chldcnt -= pagesAtLevel(level);
    this.pamt.set(p.pfn, { ...PAMT_NDA, size: p.pamt.size });
    this.out.rcx = BigInt(p.pfn) << 12n;
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.SEPT.REMOVE (`tdh_mem_sept_remove.c`): level 1..PWL, the walk, the entry NL_MAPPED
   * or NL_BLOCKED (EPT_ENTRY_STATE_INCORRECT + RCX); blocked and tracked when the op_state
   * requires tracking (GPA_RANGE_NOT_BLOCKED / TLB_TRACKING_NOT_DONE + RCX); all 512 entries of
   * the S-EPT page FREE (EPT_PAGE_NOT_FREE + RCX). The entry becomes FREE, the page PT_NDA.
   */
  tdhMemSeptRemove(tdr: Pfn, gpa: bigint, level: number): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_SEPT_REMOVE, gpa, level, 1, 'PWL');
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    const s = this.septStateCheck(LEAF.TDH_MEM_SEPT_REMOVE, e, level);
    if (s !== undefined) return s;
    const t = this.blockedAndTracked(td, e, level);
    if (t !== undefined) return t;
    if (!td.sept.childrenFree(level, e.index))
      return this.septFail(TDX.EPT_PAGE_NOT_FREE, e, level);
    const p = this.entryPage(e);
    td.sept.set(level, e.index, 'FREE', -1);
    td.chldcnt--;
    this.pamt.set(p.pfn, PAMT_NDA);
    this.out.rcx = BigInt(p.pfn) << 12n;
    return TDX.SUCCESS;
  }

  /**
   * TDH.MEM.RANGE.UNBLOCK (`tdh_mem_range_unblock.c`): level 0..PWL, the walk, the entry
   * NL_BLOCKED, BLOCKED or PENDING_BLOCKED (EPT_ENTRY_STATE_INCORRECT + RCX), tracked when the
   * op_state requires it (TLB_TRACKING_NOT_DONE + SEPT_TREE); `sept_unblock()` restores the
   * unblocked state.
   */
  tdhMemRangeUnblock(tdr: Pfn, gpa: bigint, level: number): bigint {
    this.reset();
    const op = this.septOperands(tdr, LEAF.TDH_MEM_RANGE_UNBLOCK, gpa, level, 0, 'PWL');
    if (typeof op === 'bigint') return op;
    const { td, e } = op;
    const s = this.septStateCheck(LEAF.TDH_MEM_RANGE_UNBLOCK, e, level);
    if (s !== undefined) return s;
    if (this.trackingRequired(td, e) && !this.entryTracked(td, e))
      return withOperand(TDX.TLB_TRACKING_NOT_DONE, OP.SEPT_TREE);
    const unblocked: SeptState =
      e.state === 'NL_BLOCKED' ? 'NL_MAPPED' : e.state === 'BLOCKED' ? 'MAPPED' : 'PENDING';
    td.sept.set(level, e.index, unblocked, e.pfn);
    return TDX.SUCCESS;
  }

  // ---- teardown -------------------------------------------------------------------------------

  /**
   * TDH.MNG.VPFLUSHDONE (`tdh_mng_vpflushdone.c`): TDR (RCX), lifecycle HKID_ASSIGNED or
   * KEYS_CONFIGURED (LIFECYCLE_STATE_INCORRECT), no vCPU still associated once the TD was
   * initialized (FLUSHVP_NOT_DONE); the TD is TD_BLOCKED and its HKID flushed, awaiting
   * TDH.PHYMEM.CACHE.WB.
   */
  tdhMngVpflushdone(tdr: Pfn): bigint {
    this.reset();
    const td = this.tdrOperand(tdr, OP.RCX);
    if (typeof td === 'bigint') return td;
    if (td.lifecycle !== 'TD_KEYS_CONFIGURED' && td.lifecycle !== 'TD_HKID_ASSIGNED')
      return TDX.LIFECYCLE_STATE_INCORRECT;
    if (
      td.tdcx.length >= this.config.tdcsPages &&
      td.opState !== 'UNINITIALIZED' &&
      td.numAssocVcpus !== 0
    )
      return TDX.FLUSHVP_NOT_DONE;
    td.lifecycle = 'TD_BLOCKED';
    this.kot.set(td.hkid, 'FLUSHED');
    this.wbinvdPending.add(td.hkid);
    return TDX.SUCCESS;
  }

  /**
   * TDH.PHYMEM.CACHE.WB (`tdh_phymem_cache_wb.c`): writes back and invalidates the caches of
   * every flushed HKID (one package, never interrupted in the model); NO_HKID_READY_TO_WBCACHE
   * (a non-error status) when there is none.
   */
  tdhPhymemCacheWb(): bigint {
    this.reset();
    if (this.wbinvdPending.size === 0) return TDX.NO_HKID_READY_TO_WBCACHE;
    this.wbinvdPending.clear();
    return TDX.SUCCESS;
  }

  /**
   * TDH.MNG.KEY.FREEID (`tdh_mng_key_freeid.c`): TDR (RCX), lifecycle TD_BLOCKED
   * (LIFECYCLE_STATE_INCORRECT), caches written back (WBCACHE_NOT_COMPLETE); the HKID is free
   * again and the TD is TD_TEARDOWN: its pages can now be reclaimed.
   */
  tdhMngKeyFreeid(tdr: Pfn): bigint {
    this.reset();
    const td = this.tdrOperand(tdr, OP.RCX);
    if (typeof td === 'bigint') return td;
    if (td.lifecycle !== 'TD_BLOCKED') return TDX.LIFECYCLE_STATE_INCORRECT;
    if (this.wbinvdPending.has(td.hkid)) return TDX.WBCACHE_NOT_COMPLETE;
    this.kot.delete(td.hkid);
    td.lifecycle = 'TD_TEARDOWN';
    return TDX.SUCCESS;
  }

  /**
   * TDH.PHYMEM.PAGE.RECLAIM (`tdh_phymem_page_reclaim.c`): a page that is not PT_NDA/PT_RSVD
   * (PAGE_METADATA_INCORRECT + RCX; RCX/RDX/R8 then report type, owner and size), a 2 MiB page
   * given by its first frame (OPERAND_INVALID + RCX), its TD in TD_TEARDOWN
   * (LIFECYCLE_STATE_INCORRECT); a TDR only once the TD owns nothing else
   * (TD_ASSOCIATED_PAGES_EXIST). The page becomes PT_NDA (contents stay: KVM clears it with
   * MOVDIR64B, `movdir64bClear`); reclaiming the TDR ends the TD.
   */
  tdhPhymemPageReclaim(page: Pfn): bigint {
    this.reset();
    const e = this.pamt.get(page);
    if (e.pt === PT.NDA || e.pt === PT.RSVD)
      return withOperand(TDX.PAGE_METADATA_INCORRECT, OP.RCX);
    this.out = {
      rcx: BigInt(e.pt),
      rdx: BigInt(e.owner) << 12n,
      r8: e.size === '2M' ? 1n : 0n,
    };
    if (e.size === '2M' && page % 512 !== 0) return withOperand(TDX.OPERAND_INVALID, OP.RCX);
    if (e.pt !== PT.TDR) {
      const td = this.tds.get(e.owner)!;
      if (td.lifecycle !== 'TD_TEARDOWN') return TDX.LIFECYCLE_STATE_INCORRECT;
      td.chldcnt -= e.size === '2M' ? 512 : 1;
    } else {
      const td = this.tds.get(page)!;
      if (td.lifecycle !== 'TD_TEARDOWN') return TDX.LIFECYCLE_STATE_INCORRECT;
      if (td.chldcnt !== 0) return TDX.TD_ASSOCIATED_PAGES_EXIST;
      this.tds.delete(page);
    }
    this.pamt.set(page, { ...PAMT_NDA, size: e.size });
    return TDX.SUCCESS;
  }

  /**
   * TDH.PHYMEM.PAGE.WBINVD (`tdh_phymem_page_wbinvd.c`): the page (KVM: a reclaimed TDR, or a
   * removed private page with its TD's HKID) must be a 4 KiB PT_NDA page
   * (PAGE_METADATA_INCORRECT + RCX); its cache lines are written back (no state in the model).
   */
  tdhPhymemPageWbinvd(page: Pfn): bigint {
    this.reset();
    return this.page4k(page, PT.NDA, OP.RCX) ?? TDX.SUCCESS;
  }

  // ---- the guest side -------------------------------------------------------------------------

  private runningVcpu(tdvpr: Pfn): { td: Td; vcpu: TdVcpu } {
    const td = this.tds.get(this.pamt.get(tdvpr).owner);
    const vcpu = td?.vcpus.get(tdvpr);
    if (td === undefined || vcpu === undefined || !vcpu.inGuest)
      throw new Error(`TDX: vCPU ${tdvpr} is not running in a TD (no TDH.VP.ENTER)`);
    return { td, vcpu };
  }

  /**
   * TDG.MEM.PAGE.ACCEPT by the guest on `tdvpr` (`tdg_mem_page_accept.c`): level 0 or 1 and an
   * aligned private GPA (OPERAND_INVALID + RCX); then `check_tdaccept_failure()`: a walk that
   * stops above the level at a guest-accessible leaf (a 2 MiB MAPPED page for a 4 KiB request)
   * is PAGE_ALREADY_ACCEPTED, at anything else (a PENDING 2 MiB leaf, a missing or blocked
   * table) an EPT-violation TD exit; at the level, a non-free non-leaf entry (the range is mapped
   * with 4 KiB pages) is PAGE_SIZE_MISMATCH, a MAPPED leaf PAGE_ALREADY_ACCEPTED, a state other
   * than PENDING an EPT-violation exit (the VMM can AUG and the guest retries). Statuses carry
   * the level where the walk stopped. A PENDING page is zeroed (all 512 frames of a 2 MiB page)
   * and becomes MAPPED.
   */
  tdgMemPageAccept(tdvpr: Pfn, gpa: bigint, level: number): TdgResult {
    this.generation++;
    const { td } = this.runningVcpu(tdvpr);
    const pi = this.pageInfo(gpa, level, 0, 1);
    if (pi !== undefined || !this.gpaValid(td, gpa))
      return { kind: 'status', status: withOperand(TDX.OPERAND_INVALID, OP.RCX) };
    const gfn = Number(gpa >> 12n);
    const w = td.sept.walk(gfn, level);
    const inf = SEPT_STATE_INFO[w.entry.state];
    const lvl = BigInt(w.level);
    const violation = (): TdgResult => {
      this.tdExit(tdvpr);
      return { kind: 'ept-violation', gpa, level };
    };
    if (w.level !== level) {
      if (inf.guestAccessibleLeaf)
        return { kind: 'status', status: withOperand(TDX.PAGE_ALREADY_ACCEPTED, lvl) };
      return violation();
    }
    if (w.entry.state !== 'FREE' && !inf.leaf)
      return { kind: 'status', status: withOperand(TDX.PAGE_SIZE_MISMATCH, lvl) };
    if (inf.guestAccessibleLeaf)
      return { kind: 'status', status: withOperand(TDX.PAGE_ALREADY_ACCEPTED, lvl) };
    if ((ACCEPT_SEPT_ALLOWED & (1 << inf.index)) === 0) return violation();
    const pages = pagesAtLevel(level);
    this.frames.zero(asPfn(w.entry.pfn), pages);
    this.setPoisonFree(w.entry.pfn, pages);
    td.sept.set(level, w.entry.index, 'MAPPED', w.entry.pfn);
    return { kind: 'status', status: TDX.SUCCESS };
  }

  /**
   * The CPU's check of a guest access to `gpa` on the running vCPU `tdvpr` (platforms.md §1.6):
   * the shared bit set → the shared EPT; else the S-EPT walk to the leaf: MAPPED → the frame
   * (a machine check, and a TD exit, if a host write poisoned it); PENDING → #VE in the guest
   * when ATTRIBUTES.SEPT_VE_DISABLE is clear, else an EPT-violation exit flagged pending;
   * anything else (FREE, blocked, a missing table, a GPA beyond GPAW) → an EPT-violation exit.
   */
  guestAccess(tdvpr: Pfn, gpa: bigint, _write: boolean): TdGuestAccess {
    const { td } = this.runningVcpu(tdvpr);
    if ((gpa & this.sharedBit(td)) !== 0n) return { kind: 'shared' };
    if (!this.gpaValid(td, gpa)) {
      this.tdExit(tdvpr);
      return { kind: 'ept-violation', gpa, pending: false, level: td.pwl };
    }
    const gfn = Number(gpa >> 12n);
    const w = td.sept.walk(gfn, 0);
    const state = w.entry.state;
    if (
      state === 'MAPPED' ||
      (state === 'PENDING' && this.mutants.has('tdx_pending_access_allowed'))
    ) {
      const pfn = asPfn(w.entry.pfn + (gfn % pagesAtLevel(w.level)));
      if (this.poison.size !== 0 && this.poison.get(pfn) === true) {
        this.tdExit(tdvpr);
        return { kind: 'machine-check', gpa, pfn };
      }
      return { kind: 'ok', pfn };
    }
    if (state === 'PENDING' && (td.attributes & TD_ATTR.SEPT_VE_DISABLE) === 0n)
      return { kind: 've', gpa };
    this.tdExit(tdvpr);
    return { kind: 'ept-violation', gpa, pending: state === 'PENDING', level: w.level };
  }

  // ---- the host's view ------------------------------------------------------------------------

  /** Whether the module owns `pfn` (its PAMT type is not PT_NDA). */
  owns(pfn: Pfn): boolean {
    return this.pamt.get(pfn).pt !== PT.NDA;
  }

  /** A host write (KeyID 0) to `pfn`: a frame the module owns is poisoned (platform.ts). */
  hostWrite(pfn: Pfn): void {
    if (this.owns(pfn)) this.poison.set(pfn, pfn + 1, true);
  }

  /** Whether `pfn` is poisoned. */
  poisoned(pfn: Pfn): boolean {
    return this.poison.get(pfn) === true;
  }

  /**
   * KVM's `tdx_clear_page()`: MOVDIR64B of zeros over the page with KeyID 0 after it left the TD
   * (full-line direct writes reset the lines' integrity, so the poison goes too).
   */
  movdir64bClear(pfn: Pfn): void {
    this.frames.zero(pfn, 1);
    this.setPoisonFree(pfn, 1);
  }

  // ---- consistency ----------------------------------------------------------------------------

  /**
   * The module's own consistency, over ranges (the property test and, later, an invariant):
   * every TD's CHLDCNT equals the frames the PAMT says it owns; for a TD not in teardown every
   * S-EPT leaf points to PT_REG frames of the TD at the leaf's size and every non-leaf to a
   * PT_EPT page of the TD, no two entries share a frame, and the TD owns no PT_REG or PT_EPT
   * frame no entry points to; a vCPU count and the epoch refcounts match the vCPUs. Returns the
   * violations (empty: consistent).
   */
  checkConsistency(): string[] {
    const errs: string[] = [];
    for (const td of this.tds.values()) {
      const owned = this.pamt.framesOwnedBy(td.tdr);
      if (owned !== td.chldcnt) errs.push(`TD ${td.tdr}: chldcnt ${td.chldcnt}, owns ${owned}`);
      const running = [0, 0];
      let assoc = 0;
      for (const v of td.vcpus.values()) {
        if (v.inGuest) running[v.epoch & 1]!++;
        if (v.associated) assoc++;
      }
      if (running[0] !== td.refcount[0] || running[1] !== td.refcount[1])
        errs.push(`TD ${td.tdr}: refcount ${td.refcount.join('/')}, running ${running.join('/')}`);
      if (assoc !== td.numAssocVcpus)
        errs.push(`TD ${td.tdr}: num_assoc_vcpus ${td.numAssocVcpus}, associated ${assoc}`);
      if (td.lifecycle === 'TD_TEARDOWN') continue;
      const seen = new RangeMap<true>();
      let reg = 0;
      let ept = 0;
      for (const r of td.sept.runs()) {
        const leaf = SEPT_STATE_INFO[r.state].leaf;
        const per = leaf ? pagesAtLevel(r.level) : 1;
        const count = r.end - r.start;
        // Level 0 runs are extents (consecutive frames); upper-level runs are single entries.
        const start = r.pfn;
        const end = r.pfn + (r.level === 0 ? count : per);
        if (seen.anyIn(start, end)) errs.push(`TD ${td.tdr}: frame ${start} mapped twice`);
        seen.set(start, end, true);
        const want = leaf ? PT.REG : PT.EPT;
        const size = leaf && r.level === 1 ? '2M' : '4K';
        if (
          !this.pamt.uniform(
            start,
            end,
            (p) => p.pt === want && p.owner === td.tdr && p.size === size,
          )
        )
          errs.push(
            `TD ${td.tdr}: S-EPT L${r.level} ${r.state} -> frames [${start}, ${end}) not ${want} of the TD at ${size}`,
          );
        if (leaf) reg += r.level === 0 ? count : per;
        else ept += 1;
      }
      let pamtReg = 0;
      let pamtEpt = 0;
      for (const r of this.pamt.dump())
        if (r.entry.owner === td.tdr) {
          if (r.entry.pt === PT.REG) pamtReg += r.end - r.start;
          if (r.entry.pt === PT.EPT) pamtEpt += r.end - r.start;
        }
      if (pamtReg !== reg) errs.push(`TD ${td.tdr}: ${pamtReg} PT_REG frames, ${reg} mapped`);
      if (pamtEpt !== ept) errs.push(`TD ${td.tdr}: ${pamtEpt} PT_EPT pages, ${ept} linked`);
    }
    return errs;
  }
}
