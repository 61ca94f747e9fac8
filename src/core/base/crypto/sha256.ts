/**
 * SHA-256 (FIPS 180-4 §6.2), in pure TypeScript so that the core runs in a browser too.
 *
 * Used for the SEV hash table of measured direct boot: OVMF checks the kernel, initrd and command
 * line against SHA-256 hashes the VMM places in a page that SNP_LAUNCH_UPDATE measures (and the
 * SEV / SEV-ES launch digests are SHA-256 too).
 *
 * No allocation in the compression loop; whole 64-byte input blocks are read in place.
 */

/** SHA-256 round constants (FIPS 180-4 §4.2.2). */
const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);

/** SHA-256 initial hash value (FIPS 180-4 §5.3.3). */
const IV256 = new Int32Array([
  0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
]);

const W = new Int32Array(64);

function compress(h: Int32Array, m: Uint8Array, off: number, count: number): void {
  for (let b = 0; b < count; b++) compressBlock(h, m, off + b * 64);
}

function compressBlock(h: Int32Array, m: Uint8Array, off: number): void {
  const w = W;
  let a = h[0]!,
    b = h[1]!,
    c = h[2]!,
    d = h[3]!,
    e = h[4]!,
    f = h[5]!,
    g = h[6]!,
    hh = h[7]!;
  let p = off;
  for (let i = 0; i < 16; i++, p += 4) {
    w[i] = (m[p]! << 24) | (m[p + 1]! << 16) | (m[p + 2]! << 8) | m[p + 3]!;
  }
  for (let i = 16; i < 64; i++) {
    const x = w[i - 15]!;
    const y = w[i - 2]!;
    const s0 = ((x >>> 7) | (x << 25)) ^ ((x >>> 18) | (x << 14)) ^ (x >>> 3);
    const s1 = ((y >>> 17) | (y << 15)) ^ ((y >>> 19) | (y << 13)) ^ (y >>> 10);
    w[i] = (s1 + w[i - 7]! + s0 + w[i - 16]!) | 0;
  }
  const oa = a,
    ob = b,
    oc = c,
    od = d,
    oe = e,
    of = f,
    og = g,
    oh = hh;
  for (let i = 0; i < 64; i++) {
    const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
    const ch = (e & f) ^ (~e & g);
    const t1 = (hh + S1 + ch + K[i]! + w[i]!) | 0;
    const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
    const mj = (a & b) ^ (a & c) ^ (b & c);
    const t2 = (S0 + mj) | 0;
    hh = g;
    g = f;
    f = e;
    e = (d + t1) | 0;
    d = c;
    c = b;
    b = a;
    a = (t1 + t2) | 0;
  }
  a = (a + oa) | 0;
  b = (b + ob) | 0;
  c = (c + oc) | 0;
  d = (d + od) | 0;
  e = (e + oe) | 0;
  f = (f + of) | 0;
  g = (g + og) | 0;
  hh = (hh + oh) | 0;
  h[0] = a;
  h[1] = b;
  h[2] = c;
  h[3] = d;
  h[4] = e;
  h[5] = f;
  h[6] = g;
  h[7] = hh;
}

/** Streaming SHA-256: `update()` any number of times, then `digest()` (which may be repeated). */
export class Sha256 {
  private readonly h = new Int32Array(8);
  private readonly buf = new Uint8Array(64);
  private bufLen = 0;
  /** Bytes hashed so far (exact as a double up to 2^53 bytes). */
  private total = 0;

  constructor() {
    this.h.set(IV256);
  }

  /** Start over, as a new instance. */
  reset(): this {
    this.h.set(IV256);
    this.bufLen = 0;
    this.total = 0;
    return this;
  }

  /** A copy of the state so far. */
  clone(): Sha256 {
    const c = new Sha256();
    c.h.set(this.h);
    c.buf.set(this.buf);
    c.bufLen = this.bufLen;
    c.total = this.total;
    return c;
  }

  update(data: Uint8Array): this {
    let off = 0;
    let n = data.length;
    this.total += n;
    if (this.bufLen > 0) {
      const take = Math.min(64 - this.bufLen, n);
      this.buf.set(data.subarray(0, take), this.bufLen);
      this.bufLen += take;
      off += take;
      n -= take;
      if (this.bufLen < 64) return this;
      compress(this.h, this.buf, 0, 1);
      this.bufLen = 0;
    }
    const blocks = n >>> 6;
    if (blocks > 0) {
      compress(this.h, data, off, blocks);
      off += blocks * 64;
      n -= blocks * 64;
    }
    if (n > 0) {
      this.buf.set(data.subarray(off, off + n), 0);
      this.bufLen = n;
    }
    return this;
  }

  /** The 32-byte digest of everything given so far; the state is left as it was. */
  digest(): Uint8Array {
    const h = DIGEST_STATE;
    h.set(this.h);
    const last = DIGEST_TAIL;
    last.fill(0);
    last.set(this.buf.subarray(0, this.bufLen));
    last[this.bufLen] = 0x80;
    // Padding (FIPS 180-4 §5.1.1): 0x80, zeros, then the length in bits as a 64-bit big-endian.
    const len = this.bufLen + 1 + 8 <= 64 ? 64 : 128;
    writeU32BE(last, len - 8, Math.floor(this.total / 0x2000_0000));
    writeU32BE(last, len - 4, (this.total * 8) % 0x1_0000_0000);
    compress(h, last, 0, len / 64);
    const out = new Uint8Array(32);
    for (let i = 0; i < 8; i++) writeU32BE(out, i * 4, h[i]! >>> 0);
    return out;
  }
}

/** Scratch for digest() (the functions here are not re-entrant). */
const DIGEST_STATE = new Int32Array(8);
const DIGEST_TAIL = new Uint8Array(128);

function writeU32BE(b: Uint8Array, off: number, v: number): void {
  b[off] = v >>> 24;
  b[off + 1] = (v >>> 16) & 0xff;
  b[off + 2] = (v >>> 8) & 0xff;
  b[off + 3] = v & 0xff;
}

const ONE_SHOT = new Sha256();

/** One-shot SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): Uint8Array {
  return ONE_SHOT.reset().update(bytes).digest();
}
