/**
 * The TDX module's MRTD accumulation (src/core/platform/tdx/mrtd.ts): the vectors T0–T4 of
 * shared/spec/platforms.md §1.8, and agreement with node:crypto's SHA-384 over the same
 * concatenated 128-byte blocks (built here from the byte layouts of §1.7) on random operation
 * sequences.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { TdxMrtd, tdxMrtdHeaderBlock } from '../../src/core/platform/tdx/mrtd.js';
import { toHex } from '../../src/core/base/crypto/hex.js';

const T0 =
  '38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b';
const T1 =
  '8f3e9a8aca6784eab874f7aa4dda5d49104a88047f1f86695ef2a88f5691a90e34aac48ce45ffa1f5a23c7d62980d570';
const T2 =
  '236f0efa607ff8843f1855d7ef80dc3dda8fb455787a186b8787212951eab0096e3193bb26f817c2b63c21f5e10f9938';

const T3_MRTD =
  'fae252d5477406d8d3b78e4e479a6474c7b1bdfb524b48455603a2e8cddc2ec7b3e1eef31ccb55abf2dcd47fe2d3f128';
const T4_MRTD =
  '1036204caf092814c0813aae131cd6c8f121aac208910d7a3fbed5c5241301210045844e87a226412cc961ddc38bf488';

/** Byte i of the page = i & 0xff. */
const patternPage = (): Uint8Array => Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);

function extendPage(m: TdxMrtd, gpa: bigint, page: Uint8Array): void {
  for (let i = 0; i < 16; i++)
    m.mrExtend(gpa + BigInt(i * 256), page.subarray(i * 256, i * 256 + 256));
}

describe('TdxMrtd: shared/spec/platforms.md §1.8', () => {
  test('T0: nothing added (the empty SHA-384)', () => {
    assert.equal(toHex(new TdxMrtd().finalize()), T0);
  });
  test('T1: PAGE.ADD(gpa 0)', () => {
    const m = new TdxMrtd();
    m.pageAdd(0n);
    assert.equal(toHex(m.finalize()), T1);
  });
  test('T2: PAGE.ADD(0) + 16 MR.EXTEND of a zero page', () => {
    const m = new TdxMrtd();
    m.pageAdd(0n);
    extendPage(m, 0n, new Uint8Array(4096));
    assert.equal(toHex(m.finalize()), T2);
  });
  const pages = [patternPage(), new Uint8Array(4096)];
  const gpas = [0xffffe000n, 0xfffff000n];
  test('T3: two pages at 0xFFFFE000, single pass (ADD, EXT x16, ADD, EXT x16)', () => {
    const m = new TdxMrtd();
    for (let k = 0; k < 2; k++) {
      m.pageAdd(gpas[k]!);
      extendPage(m, gpas[k]!, pages[k]!);
    }
    assert.equal(toHex(m.finalize()), T3_MRTD);
  });
  test('T4: the same pages, two pass (ADD, ADD, EXT x32)', () => {
    const m = new TdxMrtd();
    for (let k = 0; k < 2; k++) m.pageAdd(gpas[k]!);
    for (let k = 0; k < 2; k++) extendPage(m, gpas[k]!, pages[k]!);
    assert.equal(toHex(m.finalize()), T4_MRTD);
  });
});

describe('TdxMrtd: the block layouts', () => {
  test('MEM.PAGE.ADD and MR.EXTEND header blocks', () => {
    const add = tdxMrtdHeaderBlock('MEM.PAGE.ADD', 0x0123456789abcdefn);
    assert.equal(add.length, 128);
    assert.equal(Buffer.from(add.subarray(0, 16)).toString('latin1'), 'MEM.PAGE.ADD\0\0\0\0');
    assert.equal(Buffer.from(add).readBigUInt64LE(16), 0x0123456789abcdefn);
    assert.ok(add.subarray(24).every((x) => x === 0));
    const ext = tdxMrtdHeaderBlock('MR.EXTEND', 0xfffff100n);
    assert.equal(Buffer.from(ext.subarray(0, 16)).toString('latin1'), 'MR.EXTEND\0\0\0\0\0\0\0');
    assert.equal(Buffer.from(ext).readBigUInt64LE(16), 0xfffff100n);
  });

  test('agrees with node:crypto SHA-384 over the concatenated blocks (random sequences)', () => {
    let seed = 0x9e3779b9;
    const rnd = (): number => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return seed >>> 0;
    };
    for (let run = 0; run < 40; run++) {
      const m = new TdxMrtd();
      const h = createHash('sha384');
      const ops = rnd() % 60;
      for (let i = 0; i < ops; i++) {
        const gpa = (BigInt(rnd()) << 20n) | (BigInt(rnd() & 0xfffff) & ~0xffn);
        if (rnd() % 3 === 0) {
          m.pageAdd(gpa);
          const b = Buffer.alloc(128);
          b.write('MEM.PAGE.ADD', 0, 'latin1');
          b.writeBigUInt64LE(gpa, 16);
          h.update(b);
        } else {
          const chunk = Uint8Array.from({ length: 256 }, () => rnd() & 0xff);
          m.mrExtend(gpa, chunk);
          const b = Buffer.alloc(128);
          b.write('MR.EXTEND', 0, 'latin1');
          b.writeBigUInt64LE(gpa, 16);
          h.update(b);
          h.update(chunk);
        }
      }
      assert.equal(toHex(m.finalize()), h.digest('hex'), `run ${run} (${ops} operations)`);
    }
  });

  test('misuse: a chunk of the wrong size, and any call after finalize', () => {
    const m = new TdxMrtd();
    assert.throws(() => m.mrExtend(0n, new Uint8Array(128)), /measures 256 bytes, got 128/);
    m.finalize();
    assert.throws(() => m.pageAdd(0n), /after TDH.MR.FINALIZE/);
    assert.throws(() => m.finalize(), /after TDH.MR.FINALIZE/);
  });
});
