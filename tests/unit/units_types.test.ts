/**
 * The address and page-number types of src/core/base/units.ts do not mix silently. The
 * `@ts-expect-error` lines are checked by tsc in `npm run build` (and so by `npm test`): if a
 * `Gfn` ever accepts a `Pfn`, or a raw number passes for a `Gfn`, the directive is unused and the
 * build fails. The runtime tests check the conversions themselves.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  asGfn,
  asGpa,
  asHva,
  asHvpn,
  asPfn,
  asPgOff,
  bytesToPgOff,
  exactGpaOffset,
  exactGpaToGfn,
  gpaExact,
  gfnAdd,
  gfnAlignDown,
  gfnAlignUp,
  gfnDiff,
  gfnToGpa,
  gpaToGfn,
  hvaToHvpn,
  hvpnAdd,
  hvpnToHva,
  hvpnToPgOff,
  offsetInPage,
  pageAlignUp,
  pfnAdd,
  pgoffAdd,
  pgoffToBytes,
  pgoffToHvpn,
  type Gfn,
  type Gpa,
  type Hva,
  type Hvpn,
  type Pfn,
  type PgOff,
} from '../../src/core/base/units.js';

const takeGfn = (g: Gfn): number => g;
const takePfn = (p: Pfn): number => p;
const takePgOff = (p: PgOff): number => p;
const takeHvpn = (h: Hvpn): number => h;
const takeGpa = (a: Gpa): bigint => a;
const takeHva = (a: Hva): bigint => a;

/** Never called: its body is only type-checked. */
export function typeLevelChecks(gfn: Gfn, pfn: Pfn, pgoff: PgOff, hvpn: Hvpn, gpa: Gpa, hva: Hva) {
  takeGfn(gfn);
  // @ts-expect-error a Pfn is not a Gfn
  takeGfn(pfn);
  // @ts-expect-error a PgOff is not a Gfn
  takeGfn(pgoff);
  // @ts-expect-error a host virtual page is not a Gfn
  takeGfn(hvpn);
  // @ts-expect-error a raw number is not a Gfn (convert with a units.ts function)
  takeGfn(5);
  // @ts-expect-error a Gfn is not a Pfn
  takePfn(gfn);
  // @ts-expect-error a Gfn is not a PgOff
  takePgOff(gfn);
  // @ts-expect-error a Pfn is not a host virtual page
  takeHvpn(pfn);
  // @ts-expect-error an Hva is not a Gpa
  takeGpa(hva);
  // @ts-expect-error a Gpa is not an Hva
  takeHva(gpa);
  // @ts-expect-error a raw bigint is not a Gpa
  takeGpa(0n);
  // @ts-expect-error gpaToGfn() takes a guest-physical address, not a host-virtual one
  gpaToGfn(hva);
  // @ts-expect-error hvaToHvpn() takes a host-virtual address
  hvaToHvpn(gpa);
  // @ts-expect-error page arithmetic stays within one kind: a Gfn plus a Pfn
  gfnAdd(pfn, 1);
  // @ts-expect-error the distance between two gfns, not a gfn and a pfn
  gfnDiff(gfn, pfn);
  // @ts-expect-error arithmetic gives a number, which is no longer a Gfn
  takeGfn(gfn + 1);
  // Reading is free: every page number is a number, every address a bigint.
  const n: number = gfn + pfn + pgoff + hvpn;
  const b: bigint = gpa + hva;
  return [n, b];
}

describe('units: conversions', () => {
  test('gpa <-> gfn, hva <-> hvpn, byte offset <-> pgoff', () => {
    assert.equal(gpaToGfn(asGpa(0x1234_5678n)), 0x12345);
    assert.equal(gfnToGpa(asGfn(0x12345)), 0x1234_5000n);
    assert.equal(hvaToHvpn(asHva(0x7fff_ffff_f000n)), 0x7_ffff_ffff);
    assert.equal(hvpnToHva(asHvpn(0x7_ffff_ffff)), 0x7fff_ffff_f000n);
    assert.equal(bytesToPgOff(0x3000n), 3);
    assert.equal(pgoffToBytes(asPgOff(3)), 0x3000n);
    assert.equal(hvpnToPgOff(asHvpn(77)), 77);
    assert.equal(pgoffToHvpn(asPgOff(77)), 77);
    // u64 addresses: the page number of the top page is exact as a double.
    assert.equal(gpaToGfn(asGpa((1n << 64n) - 1n)), 2 ** 52 - 1);
  });
  test('page arithmetic and alignment', () => {
    assert.equal(gfnAdd(asGfn(510), 3), 513);
    assert.equal(gfnDiff(asGfn(513), asGfn(510)), 3);
    assert.equal(hvpnAdd(asHvpn(1), 2), 3);
    assert.equal(pfnAdd(asPfn(7), 1), 8);
    assert.equal(pgoffAdd(asPgOff(7), 1), 8);
    assert.equal(gfnAlignDown(asGfn(1023), 512), 512);
    assert.equal(gfnAlignUp(asGfn(513), 512), 1024);
    assert.equal(gfnAlignUp(asGfn(512), 512), 512);
    assert.equal(offsetInPage(0x1fffn), 0xfff);
    assert.equal(pageAlignUp(1n), 4096n);
    assert.equal(pageAlignUp(4096n), 4096n);
  });
  test('gpaToGfn and offsetInPage take double arithmetic below 2^53 and agree with the shift and mask everywhere', () => {
    const edges = [0n, 1n, 4095n, 4096n, (1n << 53n) - 4097n, (1n << 53n) - 1n, 1n << 53n];
    for (const e of [
      ...edges,
      (1n << 53n) + 1n,
      (1n << 53n) + 4095n,
      (1n << 64n) - 1n,
      -1n,
      -4097n,
    ])
      for (const v of [e, e + 1n, e - 1n]) {
        assert.equal(gpaToGfn(asGpa(v)), Number(v >> 12n), `gfn of ${v}`);
        assert.equal(offsetInPage(v), Number(v & 4095n), `offset of ${v}`);
        const n = gpaExact(asGpa(v));
        if (v >= 0n && v < 1n << 53n) {
          assert.equal(exactGpaToGfn(n), Number(v >> 12n), `exact gfn of ${v}`);
          assert.equal(exactGpaOffset(n), Number(v & 4095n), `exact offset of ${v}`);
        } else assert.equal(n, -1, `${v} is not exact`);
      }
  });
});
