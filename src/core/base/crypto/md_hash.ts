/**
 * The streaming shell SHA-256 and SHA-384 share (FIPS 180-4 §5.1, the Merkle–Damgård
 * construction): input is buffered into whole blocks for the family's compression function, and
 * `digest()` pads a copy of the state (0x80, zeros, then the message length in bits as a
 * big-endian integer filling the block's last `lengthBytes`; lengths are exact up to 2^53 bytes).
 * Pure: no Node APIs.
 */

/** A compression function: fold `blocks` whole blocks of `data` from `off` into the state `h`. */
export type Compress = (h: Int32Array, data: Uint8Array, off: number, blocks: number) => void;

/** One hash family's parameters. */
export type MdParams = {
  readonly iv: Int32Array;
  readonly blockBytes: 64 | 128;
  /** Bytes of the length field at the end of the padding (8 for SHA-256, 16 for SHA-384). */
  readonly lengthBytes: 8 | 16;
  /** Digest size: the first digestBytes / 4 state words, big-endian. */
  readonly digestBytes: number;
  readonly compress: Compress;
};

export class MdHash {
  private readonly h: Int32Array;
  private readonly buf: Uint8Array;
  private bufLen = 0;
  /** Bytes hashed so far (exact as a double up to 2^53 bytes). */
  private total = 0;
  /** Scratch for digest(): the state copy and up to two padded blocks. */
  private readonly dState: Int32Array;
  private readonly dTail: Uint8Array;

  constructor(private readonly p: MdParams) {
    this.h = Int32Array.from(p.iv);
    this.buf = new Uint8Array(p.blockBytes);
    this.dState = new Int32Array(p.iv.length);
    this.dTail = new Uint8Array(2 * p.blockBytes);
  }

  /** Start over, as a new instance. */
  reset(): this {
    this.h.set(this.p.iv);
    this.bufLen = 0;
    this.total = 0;
    return this;
  }

  /** Copy this state into `c` (a fresh instance of the same family) and return it. */
  protected copyInto<T extends MdHash>(c: T): T {
    const m = c as MdHash;
    m.h.set(this.h);
    m.buf.set(this.buf);
    m.bufLen = this.bufLen;
    m.total = this.total;
    return c;
  }

  update(data: Uint8Array): this {
    const B = this.p.blockBytes;
    const compress = this.p.compress;
    let off = 0;
    let n = data.length;
    this.total += n;
    if (this.bufLen > 0) {
      const take = Math.min(B - this.bufLen, n);
      this.buf.set(data.subarray(0, take), this.bufLen);
      this.bufLen += take;
      off += take;
      n -= take;
      if (this.bufLen < B) return this;
      compress(this.h, this.buf, 0, 1);
      this.bufLen = 0;
    }
    const blocks = Math.floor(n / B);
    if (blocks > 0) {
      compress(this.h, data, off, blocks);
      off += blocks * B;
      n -= blocks * B;
    }
    if (n > 0) {
      this.buf.set(data.subarray(off, off + n), 0);
      this.bufLen = n;
    }
    return this;
  }

  /** The digest of everything given so far; the state is left as it was. */
  digest(): Uint8Array {
    const { blockBytes: B, lengthBytes, digestBytes, compress } = this.p;
    const h = this.dState;
    h.set(this.h);
    const last = this.dTail;
    last.fill(0);
    last.set(this.buf.subarray(0, this.bufLen));
    last[this.bufLen] = 0x80;
    const len = this.bufLen + 1 + lengthBytes <= B ? B : 2 * B;
    // The length in bits: its low 64 bits (the rest stays zero below 2^53 bytes).
    writeU32BE(last, len - 8, Math.floor(this.total / 0x2000_0000)); // total * 8 / 2^32
    writeU32BE(last, len - 4, (this.total * 8) % 0x1_0000_0000);
    compress(h, last, 0, len / B);
    const out = new Uint8Array(digestBytes);
    for (let i = 0; i < digestBytes / 4; i++) writeU32BE(out, i * 4, h[i]! >>> 0);
    return out;
  }
}

export function writeU32BE(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}
