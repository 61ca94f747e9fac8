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
 * Pure: no Node APIs (SHA-384 in TypeScript, core/base/crypto). The SHA-384 itself can be handed
 * in (`Sha384Stream`): a host with a native SHA-384 (the CLI: Node's) measures with it, the
 * blocks and their order staying this module's.
 */
import { Sha384 } from '../../base/crypto/sha384.js';

/**
 * A streaming SHA-384 (FIPS 180-4): `update()` in order, `digest()` once. core/base/crypto's
 * `Sha384` is one.
 */
export interface Sha384Stream {
  update(bytes: Uint8Array): unknown;
  digest(): Uint8Array;
}

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

const U64_END = 1n << 64n;

/** `v`, checked to be a u64 (a GPA). */
function u64(v: bigint): bigint {
  if (v < 0n || v >= U64_END) throw new RangeError(`GPA 0x${v.toString(16)} is not a u64`);
  return v;
}

function writeU64LE(b: Uint8Array, off: number, v: bigint): void {
  new DataView(b.buffer, b.byteOffset, b.byteLength).setBigUint64(off, u64(v), true);
}

/**
 * The TDCS measurement context (`td_sha_ctx`) and what TDH.MEM.PAGE.ADD, TDH.MR.EXTEND and
 * TDH.MR.FINALIZE do to it. Structurally a `TdMrtd`.
 */
export class TdxMrtd {
  /**
   * The header block of each operation, made once: an operation rewrites only its GPA (bytes
   * 16-23; the rest stays as `tdxMrtdHeaderBlock` made it).
   */
  private readonly addBlock = tdxMrtdHeaderBlock('MEM.PAGE.ADD', 0n);
  private readonly extendBlock = tdxMrtdHeaderBlock('MR.EXTEND', 0n);
  private readonly addView = new DataView(this.addBlock.buffer);
  private readonly extendView = new DataView(this.extendBlock.buffer);
  private finalized = false;

  /** `ctx`: the SHA-384 the context runs (default: core/base/crypto's). */
  constructor(private readonly ctx: Sha384Stream = new Sha384()) {}

  /** TDH.MEM.PAGE.ADD (`tdh_mem_page_add`): one block naming the page's GPA. */
  pageAdd(gpa: bigint): void {
    this.live('TDH.MEM.PAGE.ADD');
    this.addView.setBigUint64(GPA_OFFSET, u64(gpa), true);
    this.ctx.update(this.addBlock);
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
    this.extendView.setBigUint64(GPA_OFFSET, u64(gpa), true);
    this.ctx.update(this.extendBlock);
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
