/**
 * The Intel TDX module's per-TD objects (intel/tdx-module
 * `src/common/data_structures/td_control_structures.h`, `tdx_tdvps.h`; platforms.md §1.1, §1.4):
 * the TDR (HKID, lifecycle, child count), the TDCS (op_state, GPAW and the S-EPT's page-walk
 * length, attributes, epoch tracking, vCPU counts, the MRTD context) and the TDVPS of each vCPU
 * (TDVPR + TDCX pages, state, association, the epoch it entered in), with the op_state gating
 * table `seamcall_state_lookup` (`include/auto_gen/op_state_lookup.c`) as data.
 */
import { SEAMCALL_LEAF, SeptTree } from './sept.js';

/**
 * The MRTD the module extends: one streaming SHA-384 over PAGE.ADD and MR.EXTEND blocks,
 * finalized by TDH.MR.FINALIZE (platforms.md §1.7). Injected: the module calls it in order and
 * never hashes itself (src/core/platform/tdx/mrtd.ts implements it).
 */
export interface TdMrtd {
  pageAdd(gpa: bigint): void;
  /** `chunk` is the module's scratch copy of the page's 256 bytes: valid during the call only. */
  mrExtend(gpa: bigint, chunk: Uint8Array /* 256 bytes */): void;
  finalize(): Uint8Array /* 48 bytes */;
}

/** TDR.LIFECYCLE_STATE (`td_lifecycle_state_t`). */
export type TdLifecycle = 'TD_HKID_ASSIGNED' | 'TD_KEYS_CONFIGURED' | 'TD_BLOCKED' | 'TD_TEARDOWN';

/** TDCS.OP_STATE (`op_state_e`), in the module's order (the index is the table column). */
export const OP_STATES = [
  'UNINITIALIZED',
  'INITIALIZED',
  'RUNNABLE',
  'LIVE_EXPORT',
  'PAUSED_EXPORT',
  'POST_EXPORT',
  'MEMORY_IMPORT',
  'STATE_IMPORT',
  'POST_IMPORT',
  'LIVE_IMPORT',
  'FAILED_IMPORT',
] as const;
export type OpState = (typeof OP_STATES)[number];

function row(bits: readonly number[]): number {
  let m = 0;
  bits.forEach((b, i) => {
    if (b) m |= 1 << i;
  });
  return m;
}

/** `seamcall_state_lookup[leaf]` (op_state_lookup.c) for the leaves the model implements. */
export const SEAMCALL_OP_STATE_ALLOWED: Readonly<Record<number, number>> = {
  [SEAMCALL_LEAF.TDH_VP_ENTER]: row([0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0]),
  [SEAMCALL_LEAF.TDH_MNG_ADDCX]: row([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_PAGE_ADD]: row([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_SEPT_ADD]: row([0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0]),
  [SEAMCALL_LEAF.TDH_VP_ADDCX]: row([0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_PAGE_AUG]: row([0, 1, 1, 1, 0, 0, 0, 0, 0, 1, 0]),
  [SEAMCALL_LEAF.TDH_MEM_RANGE_BLOCK]: row([0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0]),
  [SEAMCALL_LEAF.TDH_VP_CREATE]: row([0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MR_EXTEND]: row([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MR_FINALIZE]: row([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MNG_INIT]: row([1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_VP_INIT]: row([0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]),
  [SEAMCALL_LEAF.TDH_MEM_PAGE_REMOVE]: row([0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1]),
  [SEAMCALL_LEAF.TDH_MEM_SEPT_REMOVE]: row([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
  [SEAMCALL_LEAF.TDH_MEM_TRACK]: row([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]),
  [SEAMCALL_LEAF.TDH_MEM_RANGE_UNBLOCK]: row([0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 0]),
};

/** `state_flags_lookup[op_state].tlb_tracking_required` (RUNNABLE, LIVE_EXPORT, LIVE_IMPORT). */
export const OP_STATE_TLB_TRACKING = row([0, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0]);

/** `op_state_is_seamcall_allowed()`. */
export function opStateAllowed(leaf: number, s: OpState): boolean {
  const m = SEAMCALL_OP_STATE_ALLOWED[leaf];
  if (m === undefined) throw new Error(`no op_state table for SEAMCALL leaf ${leaf}`);
  return (m & (1 << OP_STATES.indexOf(s))) !== 0;
}

/** `op_state_is_tlb_tracking_required()`. */
export function opStateTlbTracking(s: OpState): boolean {
  return (OP_STATE_TLB_TRACKING & (1 << OP_STATES.indexOf(s))) !== 0;
}

/** TD ATTRIBUTES bits (td_control_structures.h `TDX_ATTRIBUTES_*`; KVM's `TDX_TD_ATTR_*`). */
export const TD_ATTR = {
  DEBUG: 1n << 0n,
  SEPT_VE_DISABLE: 1n << 28n,
  MIGRATABLE: 1n << 29n,
  PKS: 1n << 30n,
  PERFMON: 1n << 63n,
} as const;
/** `TDX_ATTRIBUTES_FIXED0`: the attribute bits the module accepts. */
export const TD_ATTR_FIXED0 =
  TD_ATTR.DEBUG | TD_ATTR.SEPT_VE_DISABLE | TD_ATTR.MIGRATABLE | TD_ATTR.PKS | TD_ATTR.PERFMON;
/** CONFIG_FLAGS bits (`CONFIG_FLAGS_FIXED0`): bit 0 is GPAW (52-bit GPAs, shared bit 51). */
export const TD_CONFIG_FLAGS = { GPAW: 1n << 0n, FIXED0: 0x7n } as const;

/** What TDH.MNG.INIT reads from TD_PARAMS (the fields the model checks). */
export interface TdParams {
  readonly attributes: bigint;
  readonly maxVcpus: number;
  /** CONFIG_FLAGS; bit 0 (GPAW) selects 52-bit GPAs. */
  readonly configFlags: bigint;
  /** EPTP_CONTROLS' page-walk length field: 3 for 4-level S-EPT, 4 for 5-level. */
  readonly eptPwl: number;
}

/** One vCPU's TDVPS (`tdvps_management_fields`). */
export interface TdVcpu {
  readonly tdvpr: number;
  /** TDVPS pages: the TDVPR, then the TDCX pages TDH.VP.ADDCX added. */
  readonly pages: number[];
  state: 'VCPU_UNINITIALIZED' | 'VCPU_READY';
  /** Associated with the (model's one) logical processor: VP.INIT / VP.ENTER set it, VP.FLUSH clears. */
  associated: boolean;
  /** Running in the TD (between TDH.VP.ENTER and its TD exit). */
  inGuest: boolean;
  /** VCPU_EPOCH: the TD epoch sampled at its last TDH.VP.ENTER. */
  epoch: number;
}

/** One TD: its TDR and TDCS fields. */
export interface Td {
  readonly tdr: number;
  readonly hkid: number;
  lifecycle: TdLifecycle;
  /** TDR.CHLDCNT: 4 KiB pages the TD owns besides its TDR. */
  chldcnt: number;
  /** TDCS pages (TDH.MNG.ADDCX), in order. */
  readonly tdcx: number[];
  opState: OpState;
  attributes: bigint;
  maxVcpus: number;
  /** GPAW: 52-bit GPAs (shared bit 51) or 48-bit (shared bit 47). */
  gpaw52: boolean;
  /** The S-EPT's root level: 3 (4-level) or 4 (5-level). */
  pwl: number;
  /** TD_EPOCH and the two REFCOUNTs indexed by epoch parity. */
  epoch: number;
  readonly refcount: [number, number];
  /** NUM_VCPUS (initialized) and NUM_ASSOC_VCPUS. */
  numVcpus: number;
  numAssocVcpus: number;
  /** The MRTD context (TDH.MNG.INIT creates it) and the finalized MRTD. */
  mrtdCtx: TdMrtd | undefined;
  mrtd: Uint8Array | undefined;
  /** The S-EPT (TDH.MNG.INIT creates its root). */
  sept: SeptTree;
  readonly vcpus: Map<number, TdVcpu>;
}
