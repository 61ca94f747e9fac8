/**
 * SHA-384 (FIPS 180-4 §6.5: SHA-512's compression function with its own initial value, the
 * output truncated to 48 bytes), in pure TypeScript so that the core runs in a browser too.
 *
 * The AMD SEV-SNP firmware chains its launch digest with SHA-384 (SNP ABI, SNP_LAUNCH_UPDATE),
 * over PAGE_INFO records that embed the SHA-384 of each measured 4 KiB page.
 *
 * Speed: the 64-bit words are kept as 32-bit hi/lo halves in Int32Arrays and local variables; no
 * BigInt, no allocation in the compression loop. Input bytes are read straight from the caller's
 * array (no copy) for every whole 128-byte block.
 */
import { MdHash, type MdParams } from './md_hash.js';

/** SHA-512 round constants (FIPS 180-4 §4.2.3), hi/lo halves interleaved. */
const K = new Int32Array([
  0x428a2f98, 0xd728ae22, 0x71374491, 0x23ef65cd, 0xb5c0fbcf, 0xec4d3b2f, 0xe9b5dba5, 0x8189dbbc,
  0x3956c25b, 0xf348b538, 0x59f111f1, 0xb605d019, 0x923f82a4, 0xaf194f9b, 0xab1c5ed5, 0xda6d8118,
  0xd807aa98, 0xa3030242, 0x12835b01, 0x45706fbe, 0x243185be, 0x4ee4b28c, 0x550c7dc3, 0xd5ffb4e2,
  0x72be5d74, 0xf27b896f, 0x80deb1fe, 0x3b1696b1, 0x9bdc06a7, 0x25c71235, 0xc19bf174, 0xcf692694,
  0xe49b69c1, 0x9ef14ad2, 0xefbe4786, 0x384f25e3, 0x0fc19dc6, 0x8b8cd5b5, 0x240ca1cc, 0x77ac9c65,
  0x2de92c6f, 0x592b0275, 0x4a7484aa, 0x6ea6e483, 0x5cb0a9dc, 0xbd41fbd4, 0x76f988da, 0x831153b5,
  0x983e5152, 0xee66dfab, 0xa831c66d, 0x2db43210, 0xb00327c8, 0x98fb213f, 0xbf597fc7, 0xbeef0ee4,
  0xc6e00bf3, 0x3da88fc2, 0xd5a79147, 0x930aa725, 0x06ca6351, 0xe003826f, 0x14292967, 0x0a0e6e70,
  0x27b70a85, 0x46d22ffc, 0x2e1b2138, 0x5c26c926, 0x4d2c6dfc, 0x5ac42aed, 0x53380d13, 0x9d95b3df,
  0x650a7354, 0x8baf63de, 0x766a0abb, 0x3c77b2a8, 0x81c2c92e, 0x47edaee6, 0x92722c85, 0x1482353b,
  0xa2bfe8a1, 0x4cf10364, 0xa81a664b, 0xbc423001, 0xc24b8b70, 0xd0f89791, 0xc76c51a3, 0x0654be30,
  0xd192e819, 0xd6ef5218, 0xd6990624, 0x5565a910, 0xf40e3585, 0x5771202a, 0x106aa070, 0x32bbd1b8,
  0x19a4c116, 0xb8d2d0c8, 0x1e376c08, 0x5141ab53, 0x2748774c, 0xdf8eeb99, 0x34b0bcb5, 0xe19b48a8,
  0x391c0cb3, 0xc5c95a63, 0x4ed8aa4a, 0xe3418acb, 0x5b9cca4f, 0x7763e373, 0x682e6ff3, 0xd6b2b8a3,
  0x748f82ee, 0x5defb2fc, 0x78a5636f, 0x43172f60, 0x84c87814, 0xa1f0ab72, 0x8cc70208, 0x1a6439ec,
  0x90befffa, 0x23631e28, 0xa4506ceb, 0xde82bde9, 0xbef9a3f7, 0xb2c67915, 0xc67178f2, 0xe372532b,
  0xca273ece, 0xea26619c, 0xd186b8c7, 0x21c0c207, 0xeada7dd6, 0xcde0eb1e, 0xf57d4f7f, 0xee6ed178,
  0x06f067aa, 0x72176fba, 0x0a637dc5, 0xa2c898a6, 0x113f9804, 0xbef90dae, 0x1b710b35, 0x131c471b,
  0x28db77f5, 0x23047d84, 0x32caab7b, 0x40c72493, 0x3c9ebe0a, 0x15c9bebc, 0x431d67c4, 0x9c100d4c,
  0x4cc5d4be, 0xcb3e42b6, 0x597f299c, 0xfc657e2a, 0x5fcb6fab, 0x3ad6faec, 0x6c44198c, 0x4a475817,
]);

/** SHA-384 initial hash value (FIPS 180-4 §5.3.4), hi/lo halves interleaved. */
const IV384 = new Int32Array([
  0xcbbb9d5d, 0xc1059ed8, 0x629a292a, 0x367cd507, 0x9159015a, 0x3070dd17, 0x152fecd8, 0xf70e5939,
  0x67332667, 0xffc00b31, 0x8eb44a87, 0x68581511, 0xdb0c2e0d, 0x64f98fa7, 0x47b5481d, 0xbefa4fa4,
]);

const TWO32 = 0x1_0000_0000;

/** The message schedule, shared by every instance (the compression function is not re-entrant). */
const W = new Int32Array(160);

/**
 * The SHA-512 compression function over `count` 128-byte blocks of `m` from `off`; `h` is the
 * 8-word state as 16 hi/lo halves.
 */
function compress(h: Int32Array, m: Uint8Array, off: number, count: number): void {
  for (let b = 0; b < count; b++) compressBlock(h, m, off + b * 128);
}

function compressBlock(h: Int32Array, m: Uint8Array, off: number): void {
  const w = W;
  let ah = h[0]!,
    al = h[1]!,
    bh = h[2]!,
    bl = h[3]!,
    ch = h[4]!,
    cl = h[5]!,
    dh = h[6]!,
    dl = h[7]!,
    eh = h[8]!,
    el = h[9]!,
    fh = h[10]!,
    fl = h[11]!,
    gh = h[12]!,
    gl = h[13]!,
    hh = h[14]!,
    hl = h[15]!;
  let p = off;
  for (let i = 0; i < 32; i++, p += 4) {
    w[i] = (m[p]! << 24) | (m[p + 1]! << 16) | (m[p + 2]! << 8) | m[p + 3]!;
  }
  for (let i = 32; i < 160; i += 2) {
    // σ0(W[t-15]), σ1(W[t-2]); W[t] = σ1 + W[t-7] + σ0 + W[t-16]
    const x0h = w[i - 30]!,
      x0l = w[i - 29]!;
    const s0h = ((x0h >>> 1) | (x0l << 31)) ^ ((x0h >>> 8) | (x0l << 24)) ^ (x0h >>> 7);
    const s0l =
      ((x0l >>> 1) | (x0h << 31)) ^ ((x0l >>> 8) | (x0h << 24)) ^ ((x0l >>> 7) | (x0h << 25));
    const x1h = w[i - 4]!,
      x1l = w[i - 3]!;
    const s1h = ((x1h >>> 19) | (x1l << 13)) ^ ((x1l >>> 29) | (x1h << 3)) ^ (x1h >>> 6);
    const s1l =
      ((x1l >>> 19) | (x1h << 13)) ^ ((x1h >>> 29) | (x1l << 3)) ^ ((x1l >>> 6) | (x1h << 26));
    const lo = (s1l >>> 0) + (w[i - 13]! >>> 0) + (s0l >>> 0) + (w[i - 31]! >>> 0);
    w[i] = (s1h + w[i - 14]! + s0h + w[i - 32]! + ((lo / TWO32) | 0)) | 0;
    w[i + 1] = lo | 0;
  }
  const oah = ah,
    oal = al,
    obh = bh,
    obl = bl,
    och = ch,
    ocl = cl,
    odh = dh,
    odl = dl,
    oeh = eh,
    oel = el,
    ofh = fh,
    ofl = fl,
    ogh = gh,
    ogl = gl,
    ohh = hh,
    ohl = hl;
  for (let i = 0; i < 160; i += 2) {
    // T1 = h + Σ1(e) + Ch(e,f,g) + K[t] + W[t]
    const S1h = ((eh >>> 14) | (el << 18)) ^ ((eh >>> 18) | (el << 14)) ^ ((el >>> 9) | (eh << 23));
    const S1l = ((el >>> 14) | (eh << 18)) ^ ((el >>> 18) | (eh << 14)) ^ ((eh >>> 9) | (el << 23));
    const chh = (eh & fh) ^ (~eh & gh);
    const chl = (el & fl) ^ (~el & gl);
    const t1lo = (hl >>> 0) + (S1l >>> 0) + (chl >>> 0) + (K[i + 1]! >>> 0) + (w[i + 1]! >>> 0);
    const t1h = (hh + S1h + chh + K[i]! + w[i]! + ((t1lo / TWO32) | 0)) | 0;
    const t1l = t1lo | 0;
    // T2 = Σ0(a) + Maj(a,b,c)
    const S0h = ((ah >>> 28) | (al << 4)) ^ ((al >>> 2) | (ah << 30)) ^ ((al >>> 7) | (ah << 25));
    const S0l = ((al >>> 28) | (ah << 4)) ^ ((ah >>> 2) | (al << 30)) ^ ((ah >>> 7) | (al << 25));
    const mjh = (ah & bh) ^ (ah & ch) ^ (bh & ch);
    const mjl = (al & bl) ^ (al & cl) ^ (bl & cl);
    const t2lo = (S0l >>> 0) + (mjl >>> 0);
    const t2h = (S0h + mjh + ((t2lo / TWO32) | 0)) | 0;
    const t2l = t2lo | 0;
    hh = gh;
    hl = gl;
    gh = fh;
    gl = fl;
    fh = eh;
    fl = el;
    // e = d + T1
    const elo = (dl >>> 0) + (t1l >>> 0);
    eh = (dh + t1h + ((elo / TWO32) | 0)) | 0;
    el = elo | 0;
    dh = ch;
    dl = cl;
    ch = bh;
    cl = bl;
    bh = ah;
    bl = al;
    // a = T1 + T2
    const alo = (t1l >>> 0) + (t2l >>> 0);
    ah = (t1h + t2h + ((alo / TWO32) | 0)) | 0;
    al = alo | 0;
  }
  let s: number;
  s = (al >>> 0) + (oal >>> 0);
  ah = (ah + oah + ((s / TWO32) | 0)) | 0;
  al = s | 0;
  s = (bl >>> 0) + (obl >>> 0);
  bh = (bh + obh + ((s / TWO32) | 0)) | 0;
  bl = s | 0;
  s = (cl >>> 0) + (ocl >>> 0);
  ch = (ch + och + ((s / TWO32) | 0)) | 0;
  cl = s | 0;
  s = (dl >>> 0) + (odl >>> 0);
  dh = (dh + odh + ((s / TWO32) | 0)) | 0;
  dl = s | 0;
  s = (el >>> 0) + (oel >>> 0);
  eh = (eh + oeh + ((s / TWO32) | 0)) | 0;
  el = s | 0;
  s = (fl >>> 0) + (ofl >>> 0);
  fh = (fh + ofh + ((s / TWO32) | 0)) | 0;
  fl = s | 0;
  s = (gl >>> 0) + (ogl >>> 0);
  gh = (gh + ogh + ((s / TWO32) | 0)) | 0;
  gl = s | 0;
  s = (hl >>> 0) + (ohl >>> 0);
  hh = (hh + ohh + ((s / TWO32) | 0)) | 0;
  hl = s | 0;
  h[0] = ah;
  h[1] = al;
  h[2] = bh;
  h[3] = bl;
  h[4] = ch;
  h[5] = cl;
  h[6] = dh;
  h[7] = dl;
  h[8] = eh;
  h[9] = el;
  h[10] = fh;
  h[11] = fl;
  h[12] = gh;
  h[13] = gl;
  h[14] = hh;
  h[15] = hl;
}

const SHA384_PARAMS: MdParams = {
  iv: IV384,
  blockBytes: 128,
  lengthBytes: 16,
  digestBytes: 48,
  compress,
};

/** Streaming SHA-384: `update()` any number of times, then `digest()` (which may be repeated). */
export class Sha384 extends MdHash {
  constructor() {
    super(SHA384_PARAMS);
  }

  /** A copy of the state so far (hash a common prefix once, finish it several ways). */
  clone(): Sha384 {
    return this.copyInto(new Sha384());
  }
}

const ONE_SHOT = new Sha384();

/** One-shot SHA-384 of `bytes`. */
export function sha384(bytes: Uint8Array): Uint8Array {
  return ONE_SHOT.reset().update(bytes).digest();
}
