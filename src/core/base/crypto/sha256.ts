/**
 * SHA-256 (FIPS 180-4 §6.2), in pure TypeScript so that the core runs in a browser too.
 *
 * Used for the SEV hash table of measured direct boot: OVMF checks the kernel, initrd and command
 * line against SHA-256 hashes the VMM places in a page that SNP_LAUNCH_UPDATE measures (and the
 * SEV / SEV-ES launch digests are SHA-256 too).
 *
 * No allocation in the compression loop; whole 64-byte input blocks are read in place.
 */
import { MdHash, type MdParams } from './md_hash.js';

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

const SHA256_PARAMS: MdParams = {
  iv: IV256,
  blockBytes: 64,
  lengthBytes: 8,
  digestBytes: 32,
  compress,
};

/** Streaming SHA-256: `update()` any number of times, then `digest()` (which may be repeated). */
export class Sha256 extends MdHash {
  constructor() {
    super(SHA256_PARAMS);
  }

  /** A copy of the state so far (hash a common prefix once, finish it several ways). */
  clone(): Sha256 {
    return this.copyInto(new Sha256());
  }
}

const ONE_SHOT = new Sha256();

/** One-shot SHA-256 of `bytes`. */
export function sha256(bytes: Uint8Array): Uint8Array {
  return ONE_SHOT.reset().update(bytes).digest();
}
