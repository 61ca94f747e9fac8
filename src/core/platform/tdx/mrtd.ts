/**
 * The TDX module's MRTD: the build-time measurement of a TD, one streaming SHA-384 that the module
 * keeps in the TDCS (`tdcs.measurement_fields.td_sha_ctx`) from TDH.MNG.INIT to TDH.MR.FINALIZE.
 * Unlike SNP's launch digest it is not a chain: every TDH.MEM.PAGE.ADD and TDH.MR.EXTEND feeds
 * 128-byte blocks into the same context, and only TDH.MR.FINALIZE pads it and yields the MRTD
 * (there is no architecturally visible intermediate value).
 *
 * Block layouts (intel/tdx-module, shared/spec/platforms.md §1.7; td-shim `doc/tdshim_spec.md`
 * "MRTD Calculation"):
 *   TDH.MEM.PAGE.ADD (`tdh_mem_page_add`): one 128-byte block, bytes 0–11 ASCII "MEM.PAGE.ADD",
 *     12–15 zero, 16–23 the page's GPA (u64 little-endian), 24–127 zero;
 *     `sha384_update_128B(&tdcs->measurement_fields.td_sha_ctx, &sha_update_block, 1)`.
 *   TDH.MR.EXTEND (`tdh_mr_extend`): three blocks, the first bytes 0–8 ASCII "MR.EXTEND", 9–15 zero,
 *     16–23 the 256-byte chunk's GPA, 24–127 zero; then the chunk itself as two blocks, read from
 *     the TD's private page through the TD's key (the page as it is now, not the source the VMM
 *     passed to PAGE.ADD); `sha384_update_128B(..., &sha_gpa_update_block, 1)` then
 *     `sha384_update_128B(..., page_ptr, 2)`.
 *   TDH.MR.FINALIZE (`tdh_mr_finalize`): `sha384_finalize(&td_sha_ctx, tdcs->measurement_fields.mrtd)`
 *     and op_state RUNNABLE.
 *
 * The module's checks (op_state, S-EPT state, 256-byte alignment of the EXTEND GPA) belong to its
 * state machine, which drives this engine; here only the accumulation. `TdxMrtd` has exactly the
 * members of the `TdMrtd` interface the TDX module model declares, so it can be injected there.
 *
 * Pure: no Node APIs (SHA-384 in TypeScript, core/base/crypto).
 */
import { Sha384 } from '../../base/crypto/sha384.js';

/** SHA-384 block size: every update the module makes is whole 128-byte blocks. */
export const TDX_MRTD_BLOCK = 128;
/** TDH.MR.EXTEND measures 256 bytes per call. */
export const TDX_MR_EXTEND_CHUNK = 256;

/** ASCII bytes of a string (the API names in the blocks). */
function ascii(s: string): Uint8Array {
  return Uint8Array.from(s, (c) => c.charCodeAt(0));
}

const MEM_PAGE_ADD = ascii('MEM.PAGE.ADD');
const MR_EXTEND = ascii('MR.EXTEND');
/** Offset of the GPA in the first block of both operations. */
const GPA_OFFSET = 16;

/** The 128-byte header block of an operation: its name, then the GPA (u64 LE) at byte 16. */
export function tdxMrtdHeaderBlock(
  op: 'MEM.PAGE.ADD' | 'MR.EXTEND',
  gpa: bigint,
  into = new Uint8Array(TDX_MRTD_BLOCK),
): Uint8Array {
  into.fill(0);
  into.set(op === 'MEM.PAGE.ADD' ? MEM_PAGE_ADD : MR_EXTEND, 0);
  writeU64LE(into, GPA_OFFSET, gpa);
  return into;
}

function writeU64LE(b: Uint8Array, off: number, v: bigint): void {
  if (v < 0n || v >= 1n << 64n) throw new RangeError(`GPA 0x${v.toString(16)} is not a u64`);
  const lo = Number(v & 0xffff_ffffn);
  const hi = Number(v >> 32n);
  for (let i = 0; i < 4; i++) {
    b[off + i] = (lo >>> (8 * i)) & 0xff;
    b[off + 4 + i] = (hi >>> (8 * i)) & 0xff;
  }
}

/**
 * The TDCS measurement context (`td_sha_ctx`) and what TDH.MEM.PAGE.ADD, TDH.MR.EXTEND and
 * TDH.MR.FINALIZE do to it. Structurally a `TdMrtd`.
 */
export class TdxMrtd {
  private readonly ctx = new Sha384();
  /** Scratch for the header block (each operation rewrites it whole). */
  private readonly block = new Uint8Array(TDX_MRTD_BLOCK);
  private finalized = false;

  /** TDH.MEM.PAGE.ADD (`tdh_mem_page_add`): one block naming the page's GPA. */
  pageAdd(gpa: bigint): void {
    this.live('TDH.MEM.PAGE.ADD');
    this.ctx.update(tdxMrtdHeaderBlock('MEM.PAGE.ADD', gpa, this.block));
  }

  /**
   * TDH.MR.EXTEND (`tdh_mr_extend`) of the 256-byte chunk at `gpa`: a block naming the GPA, then
   * the chunk (the TD's private page as it is now) as two blocks.
   */
  mrExtend(gpa: bigint, chunk: Uint8Array): void {
    this.live('TDH.MR.EXTEND');
    if (chunk.length !== TDX_MR_EXTEND_CHUNK) {
      throw new RangeError(
        `TDH.MR.EXTEND measures ${TDX_MR_EXTEND_CHUNK} bytes, got ${chunk.length}`,
      );
    }
    this.ctx.update(tdxMrtdHeaderBlock('MR.EXTEND', gpa, this.block));
    this.ctx.update(chunk);
  }

  /** TDH.MR.FINALIZE (`tdh_mr_finalize`): `sha384_finalize` of the context; the 48-byte MRTD. */
  finalize(): Uint8Array {
    this.live('TDH.MR.FINALIZE');
    this.finalized = true;
    return this.ctx.digest();
  }

  /** After TDH.MR.FINALIZE the context is gone (op_state RUNNABLE refuses these SEAMCALLs). */
  private live(op: string): void {
    if (this.finalized) throw new Error(`${op} after TDH.MR.FINALIZE: the MRTD is final`);
  }
}
