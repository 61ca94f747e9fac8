/**
 * The Intel TDX module's completion status: the 64-bit value a SEAMCALL returns in RAX
 * (intel/tdx-module `include/auto_gen/tdx_error_codes_defs.h`; the kernel's copy of the ones KVM
 * tests is linux `arch/x86/kvm/vmx/tdx_errno.h`).
 *
 * The model returns the status as the module does: a `bigint` whose high 32 bits are the status
 * class and code (bit 63 = error, bit 62 = non-recoverable) and whose low 32 bits carry the
 * operand id of the failing operand where the module adds one (`api_error_with_operand_id()`:
 * `error + operand_id`; for TDG.MEM.PAGE.ACCEPT the S-EPT level instead). KVM matches on the high
 * half (`TDX_SEAMCALL_STATUS_MASK`); `tdxStatusCode()` is that mask and `tdxStatusName()` names
 * it for messages and tests.
 */

/** The status values the model's module returns (the subset of the module's table it reaches). */
export const TDX = {
  SUCCESS: 0x0000000000000000n,
  OPERAND_INVALID: 0xc000010000000000n,
  OPERAND_ADDR_RANGE_ERROR: 0xc000010100000000n,
  OPERAND_BUSY: 0x8000020000000000n,
  PREVIOUS_TLB_EPOCH_BUSY: 0x8000020100000000n,
  PAGE_METADATA_INCORRECT: 0xc000030000000000n,
  TD_ASSOCIATED_PAGES_EXIST: 0xc000040000000000n,
  TD_FATAL: 0xe000060400000000n,
  TDCS_NOT_ALLOCATED: 0xc000060600000000n,
  LIFECYCLE_STATE_INCORRECT: 0xc000060700000000n,
  OP_STATE_INCORRECT: 0xc000060800000000n,
  NO_VCPUS: 0xc000060900000000n,
  TDCX_NUM_INCORRECT: 0xc000061000000000n,
  VCPU_STATE_INCORRECT: 0xc000070000000000n,
  VCPU_ASSOCIATED: 0x8000070100000000n,
  VCPU_NOT_ASSOCIATED: 0x8000070200000000n,
  MAX_VCPUS_EXCEEDED: 0xc000070500000000n,
  TD_KEYS_NOT_CONFIGURED: 0x8000081000000000n,
  KEY_STATE_INCORRECT: 0xc000081100000000n,
  KEY_CONFIGURED: 0x0000081500000000n,
  NO_HKID_READY_TO_WBCACHE: 0x0000082100000000n,
  WBCACHE_NOT_COMPLETE: 0x8000081700000000n,
  HKID_NOT_FREE: 0xc000082000000000n,
  FLUSHVP_NOT_DONE: 0x8000082400000000n,
  EPT_WALK_FAILED: 0xc0000b0000000000n,
  EPT_ENTRY_NOT_PRESENT: 0xc0000b0300000000n,
  GPA_RANGE_NOT_BLOCKED: 0xc0000b0600000000n,
  GPA_RANGE_ALREADY_BLOCKED: 0x00000b0700000000n,
  TLB_TRACKING_NOT_DONE: 0xc0000b0800000000n,
  PAGE_ALREADY_ACCEPTED: 0x00000b0a00000000n,
  PAGE_SIZE_MISMATCH: 0xc0000b0b00000000n,
  EPT_ENTRY_STATE_INCORRECT: 0xc0000b0d00000000n,
  EPT_PAGE_NOT_FREE: 0xc0000b0e00000000n,
} as const;

/** Operand ids the module adds to a status (`OPERAND_ID_*`, tdx_error_codes_defs.h). */
export const OPERAND_ID = {
  RCX: 1n,
  RDX: 2n,
  R8: 8n,
  R9: 9n,
  ATTRIBUTES: 64n,
  EXEC_CONTROLS: 66n,
  EPTP_CONTROLS: 67n,
  MAX_VCPUS: 68n,
  TDR: 128n,
  TDVPR: 130n,
  SEPT_TREE: 146n,
  TD_EPOCH: 169n,
  KOT: 186n,
} as const;

/** `TDX_SEAMCALL_STATUS_MASK`: the status without its operand id. */
export const TDX_STATUS_MASK = 0xffffffff00000000n;

/** The status class and code of `s` (what KVM compares), without the operand id. */
export function tdxStatusCode(s: bigint): bigint {
  return s & TDX_STATUS_MASK;
}

/** Whether `s` is an error (bit 63; GPA_RANGE_ALREADY_BLOCKED, PAGE_ALREADY_ACCEPTED are not). */
export function tdxIsError(s: bigint): boolean {
  return s >> 63n === 1n;
}

const NAMES = new Map<bigint, string>(
  Object.entries(TDX).map(([k, v]) => [v, k === 'SUCCESS' ? 'TDX_SUCCESS' : `TDX_${k}`]),
);

/** `TDX_EPT_WALK_FAILED`, or with an operand id `TDX_EPT_WALK_FAILED+1`; unknown codes in hex. */
export function tdxStatusName(s: bigint): string {
  const code = tdxStatusCode(s);
  const name = NAMES.get(code) ?? '0x' + code.toString(16);
  const op = s & 0xffffffffn;
  return op === 0n ? name : `${name}+${op}`;
}

/** `api_error_with_operand_id()`. */
export function withOperand(status: bigint, operand: bigint): bigint {
  return status + operand;
}
