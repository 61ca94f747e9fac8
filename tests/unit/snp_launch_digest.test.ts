/**
 * The SEV-SNP launch digest chain (src/core/platform/sev_snp/launch_digest.ts) against the
 * synthetic vectors S-A..S-H of shared/spec/platforms.md §2.7.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  SNP_INITIAL_VMSA_GPA,
  SNP_PAGE_TYPE,
  SnpLaunchDigest,
  type SnpPageType,
} from '../../src/core/platform/sev_snp/launch_digest.js';
import { sha384 } from '../../src/core/base/crypto/sha384.js';
import { fromHex, toHex } from '../../src/core/base/crypto/hex.js';

const { NORMAL, VMSA, ZERO, UNMEASURED, SECRETS, CPUID } = SNP_PAGE_TYPE;
const zeroPage = new Uint8Array(4096);
const patternPage = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);

function one(type: SnpPageType, gpa: bigint, contents?: Uint8Array): string {
  const ld = new SnpLaunchDigest();
  ld.update(type, gpa, contents);
  return ld.hex();
}

describe('SNP launch digest (platforms.md §2.7)', () => {
  test('S-A..S-G: one update from a zero digest', () => {
    assert.equal(
      one(NORMAL, 0n, zeroPage),
      '9d13634b6014bb21cf059b2dc694e7bff01a8a7137041100cd2b695f3d10fb687267b97808b27f8f471d943bc6f53a20',
    );
    assert.equal(
      one(NORMAL, 0xfffff000n, patternPage),
      '79d7e453f7b541d04f7f51cccc6f4acca624b7a97430595dd7c98bd8c7a897656a91c611473f137680bd00e9e72e47c4',
    );
    assert.equal(
      one(ZERO, 0x1000n),
      '4bd4147976a1e7554c1c778a781affc1c672f1965a727ba16084989b7e356044a28bbe585a2f75dac9356fa5ab78f061',
    );
    assert.equal(
      one(UNMEASURED, 0x2000n),
      'cc5aed6a06f63b38d24155dfa38e924c44b41d2339bc8a7d3cb1995e67607e8889a81c2d42e75bb95627b40e344b8929',
    );
    assert.equal(
      one(SECRETS, 0x3000n),
      '56a257bb27ff6656e6b6bc227e34e6bbce81bf7ccdf961c680295369708e4df280fa28220ab7c554ef7cf24fabb86504',
    );
    assert.equal(
      one(CPUID, 0x4000n),
      '0acb0f4e9aa7ba97447f36f5cdf321a2f5b0682d1b57467571bde89f1920df24d03f18bd3c20e27400e0fdae40d02d92',
    );
    assert.equal(
      one(VMSA, SNP_INITIAL_VMSA_GPA, zeroPage),
      'f4577da9b848673216afc3909e5ea7aa80150dda441526874cd2b0282894709b46484c13a07221aefbedfff667199259',
    );
  });

  test('S-H: the chain', () => {
    const ld = new SnpLaunchDigest();
    ld.update(NORMAL, 0xffffe000n, patternPage);
    ld.update(NORMAL, 0xfffff000n, zeroPage);
    ld.update(ZERO, 0x1000n, undefined);
    ld.update(ZERO, 0x2000n, undefined);
    ld.update(SECRETS, 0x3000n, undefined);
    ld.update(CPUID, 0x4000n, undefined);
    ld.update(VMSA, SNP_INITIAL_VMSA_GPA, zeroPage);
    assert.equal(
      ld.hex(),
      'ac78d0b54655cca7418cc851211457be9e688bfc76883ae3cf41d3c637c4feae7910673a09736db7a1db419c7b986425',
    );
  });

  test("S-A's PAGE_INFO, spelled out, hashes to the same digest", () => {
    const info = new Uint8Array(0x70);
    info.set(sha384(zeroPage), 0x30);
    info.set([0x70, 0x00, 0x01], 0x60);
    assert.equal(createHash('sha384').update(info).digest('hex'), one(NORMAL, 0n, zeroPage));
  });

  test('updateHashed, seeds, contents ignored for unmeasured types, value() is a copy', () => {
    const a = new SnpLaunchDigest();
    a.updateHashed(NORMAL, 0xfffff000n, sha384(patternPage));
    assert.equal(a.hex(), one(NORMAL, 0xfffff000n, patternPage));
    const b = new SnpLaunchDigest();
    b.update(ZERO, 0x1000n, patternPage);
    assert.equal(b.hex(), one(ZERO, 0x1000n));
    const c = new SnpLaunchDigest();
    c.updateHashed(SECRETS, 0x3000n, new Uint8Array(48).fill(7));
    assert.equal(c.hex(), one(SECRETS, 0x3000n));
    // Continue from a seed: the digest after S-B, then a ZERO page, equals the two-step chain.
    const seeded = new SnpLaunchDigest(
      fromHex(
        '79d7e453f7b541d04f7f51cccc6f4acca624b7a97430595dd7c98bd8c7a897656a91c611473f137680bd00e9e72e47c4',
      ),
    );
    seeded.update(ZERO, 0x1000n, undefined);
    const chained = new SnpLaunchDigest();
    chained.update(NORMAL, 0xfffff000n, patternPage);
    chained.update(ZERO, 0x1000n, undefined);
    assert.equal(seeded.hex(), chained.hex());
    const v = chained.value();
    v.fill(0);
    assert.notEqual(toHex(v), chained.hex());
  });

  test('bad inputs are refused without changing the digest', () => {
    const ld = new SnpLaunchDigest();
    assert.throws(() => ld.update(NORMAL, 0n, undefined), /needs 4096 bytes/);
    assert.throws(() => ld.update(VMSA, 0n, new Uint8Array(10)), /needs 4096 bytes/);
    assert.throws(() => ld.update(7 as SnpPageType, 0n, undefined), /not an SNP page type/);
    assert.throws(() => ld.update(ZERO, -1n, undefined), /u64/);
    assert.throws(() => ld.update(ZERO, 1n << 64n, undefined), /u64/);
    assert.throws(() => ld.updateHashed(NORMAL, 0n, new Uint8Array(32)), /48 bytes/);
    assert.throws(() => new SnpLaunchDigest(new Uint8Array(32)), /48 bytes/);
    assert.equal(ld.hex(), '0'.repeat(96));
  });
});
