/**
 * The pure-TypeScript SHA-384 and SHA-256 of src/core/base/crypto: NIST (FIPS 180-4 example)
 * vectors, and agreement with node:crypto on random inputs fed in random pieces.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Sha384, sha384 } from '../../src/core/base/crypto/sha384.js';
import { Sha256, sha256 } from '../../src/core/base/crypto/sha256.js';
import { fromHex, toHex } from '../../src/core/base/crypto/hex.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const ABC2 = 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq';
const ABC4 =
  'abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu';

/** A small deterministic PRNG (xorshift32) for reproducible random inputs. */
function prng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

describe('SHA-384', () => {
  test('NIST vectors', () => {
    assert.equal(
      toHex(sha384(enc(''))),
      '38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
    );
    assert.equal(
      toHex(sha384(enc('abc'))),
      'cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7',
    );
    assert.equal(
      toHex(sha384(enc(ABC2))),
      '3391fdddfc8dc7393707a65b1b4709397cf8b1d162af05abfe8f450de5f36bc6b0455a8520bc4e6f5fe95b1fe3c8452b',
    );
    assert.equal(
      toHex(sha384(enc(ABC4))),
      '09330c33f71147e83d192fc782cd1b4753111b173b3b05d22fa08086e3b0f712fcc7c71a557e2db966c3e9fa91746039',
    );
    const h = new Sha384();
    const chunk = enc('a'.repeat(1000));
    for (let i = 0; i < 1000; i++) h.update(chunk);
    assert.equal(
      toHex(h.digest()),
      '9d0e1809716474cb086e834e310a4a1ced149e9c00f248527972cec5704c2a5b07b8b3dc38ecc4ebae97ddd87f3d8985',
    );
  });

  test('SHA-384 of a zero 4 KiB page (platforms.md §2.7)', () => {
    assert.equal(
      toHex(sha384(new Uint8Array(4096))),
      'c0e59a3e3ffbd3b5c75428fb36432facabc745944296ff515f737c4fef4efc64586809f7a16f56354a1eaecf2aa8d774',
    );
  });

  test('agrees with node:crypto on random inputs, any split, repeated digest, clone', () => {
    const r = prng(384);
    for (let iter = 0; iter < 300; iter++) {
      const len = iter < 260 ? iter : r() % 5000;
      const data = new Uint8Array(len);
      for (let i = 0; i < len; i++) data[i] = r() & 0xff;
      const want = createHash('sha384').update(data).digest('hex');
      assert.equal(toHex(sha384(data)), want, `len ${len}`);
      const h = new Sha384();
      let off = 0;
      while (off < len) {
        const n = Math.min(len - off, r() % 300);
        h.update(data.subarray(off, off + n));
        off += n;
      }
      const c = h.clone();
      assert.equal(toHex(h.digest()), want, `streamed len ${len}`);
      assert.equal(toHex(h.digest()), want, 'digest() leaves the state as it was');
      assert.equal(
        toHex(c.update(enc('x')).digest()),
        createHash('sha384').update(data).update('x').digest('hex'),
      );
      assert.equal(toHex(h.reset().digest()), toHex(sha384(new Uint8Array(0))));
    }
  });

  test('a 2 MiB input (many whole blocks read in place) agrees with node:crypto', () => {
    const data = new Uint8Array(2 << 20);
    for (let i = 0; i < data.length; i++) data[i] = (i * 131) & 0xff;
    assert.equal(toHex(sha384(data)), createHash('sha384').update(data).digest('hex'));
  });
});

describe('SHA-256', () => {
  test('NIST vectors', () => {
    assert.equal(
      toHex(sha256(enc(''))),
      'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855',
    );
    assert.equal(
      toHex(sha256(enc('abc'))),
      'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad',
    );
    assert.equal(
      toHex(sha256(enc(ABC2))),
      '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1',
    );
    const h = new Sha256();
    const chunk = enc('a'.repeat(1000));
    for (let i = 0; i < 1000; i++) h.update(chunk);
    assert.equal(
      toHex(h.digest()),
      'cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0',
    );
  });

  test('agrees with node:crypto on random inputs, any split', () => {
    const r = prng(256);
    for (let iter = 0; iter < 300; iter++) {
      const len = iter < 200 ? iter : r() % 5000;
      const data = new Uint8Array(len);
      for (let i = 0; i < len; i++) data[i] = r() & 0xff;
      const want = createHash('sha256').update(data).digest('hex');
      assert.equal(toHex(sha256(data)), want, `len ${len}`);
      const h = new Sha256();
      let off = 0;
      while (off < len) {
        const n = Math.min(len - off, r() % 150);
        h.update(data.subarray(off, off + n));
        off += n;
      }
      assert.equal(toHex(h.clone().digest()), want, `streamed len ${len}`);
      assert.equal(toHex(h.digest()), want);
    }
  });
});

describe('hex', () => {
  test('round trip and refusals', () => {
    assert.deepEqual(fromHex('00ffA0'), new Uint8Array([0, 255, 160]));
    assert.equal(toHex(new Uint8Array([0, 255, 160])), '00ffa0');
    assert.equal(fromHex('abc'), undefined);
    assert.equal(fromHex('zz'), undefined);
  });
});
