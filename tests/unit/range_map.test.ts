/**
 * Tests for src/core/base/ranges/range_map.ts: examples for every method, then property tests that
 * compare random operation sequences against a naive per-key reference model.
 *
 * Because the map coalesces maximally, its entries are a function of the per-key contents alone:
 * an entry boundary falls exactly where two consecutive keys cannot continue one run (a gap, a
 * different plain value, a non-consecutive extent base, a different extent tag). The reference
 * model derives these canonical runs and the tests require `entries()` to equal them exactly.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  RangeMap,
  extentOps,
  plainOps,
  MAX_KEY,
  type RangeEntry,
  type RangeValueOps,
} from '../../src/core/base/ranges/range_map.js';

// -------------------------------------------------------------------------------------------------
// Helpers

type Ext = { readonly base: number; readonly tag: number };
const extOps: RangeValueOps<Ext> = extentOps<Ext>((a, b) => a.tag === b.tag);
/** Frozen extent values: any mutation by the map would throw (ESM is strict mode). */
const ext = (base: number, tag = 0): Ext => Object.freeze({ base, tag });

const P52 = 2 ** 52;

function entriesOf<V>(m: RangeMap<V>): Array<[number, number, V]> {
  return [...m.entries()].map((e) => [e.start, e.end, e.value]);
}

/** The per-key semantics one value kind needs for the reference model. */
interface Kind<V> {
  readonly ops: RangeValueOps<V>;
  /** Value of key `start + delta` in a range whose value at `start` is v. */
  at(v: V, delta: number): V;
  /** May key k+1 holding b continue the run of key k holding a? */
  continues(a: V, b: V): boolean;
}
const plainKind: Kind<number> = {
  ops: plainOps,
  at: (v) => v,
  continues: (a, b) => a === b,
};
const extKind: Kind<Ext> = {
  ops: extOps,
  at: (v, d) => ext(v.base + d, v.tag),
  continues: (a, b) => b.base === a.base + 1 && b.tag === a.tag,
};

/** Naive reference: one Map slot per key. Only used with small ranges. */
class RefModel<V> {
  readonly keys = new Map<number, V>();
  constructor(readonly kind: Kind<V>) {}
  set(s: number, e: number, v: V): void {
    for (let k = s; k < e; k++) this.keys.set(k, this.kind.at(v, k - s));
  }
  delete(s: number, e: number): void {
    if (e - s > this.keys.size) {
      for (const k of [...this.keys.keys()]) if (k >= s && k < e) this.keys.delete(k);
    } else {
      for (let k = s; k < e; k++) this.keys.delete(k);
    }
  }
  sortedKeys(): number[] {
    return [...this.keys.keys()].sort((a, b) => a - b);
  }
  /** Canonical maximal runs (what a maximally coalesced map must store). */
  runs(): Array<[number, number, V]> {
    const out: Array<[number, number, V]> = [];
    let cur: [number, number, V] | undefined;
    let prevVal: V | undefined;
    for (const k of this.sortedKeys()) {
      const v = this.keys.get(k)!;
      if (cur !== undefined && cur[1] === k && this.kind.continues(prevVal!, v)) {
        cur[1] = k + 1;
      } else {
        cur = [k, k + 1, v];
        out.push(cur);
      }
      prevVal = v;
    }
    return out;
  }
  /** Runs clipped to [s, e), values taken at the clipped start. */
  pieces(s: number, e: number): Array<[number, number, V]> {
    const out: Array<[number, number, V]> = [];
    for (const [rs, re] of this.runs()) {
      const cs = Math.max(rs, s);
      const ce = Math.min(re, e);
      if (cs < ce) out.push([cs, ce, this.keys.get(cs)!]);
    }
    return out;
  }
  gaps(s: number, e: number): Array<{ start: number; end: number }> {
    const out: Array<{ start: number; end: number }> = [];
    let pos = s;
    for (const [ps, pe] of this.pieces(s, e)) {
      if (ps > pos) out.push({ start: pos, end: ps });
      pos = pe;
    }
    if (pos < e) out.push({ start: pos, end: e });
    return s < e ? out : [];
  }
  count(s: number, e: number): number {
    let n = 0;
    for (const k of this.keys.keys()) if (k >= s && k < e) n++;
    return n;
  }
}

/**
 * Full comparison of a map against the reference: structure, entries, point lookups at `probe`
 * keys, and every range query on each of `queries`.
 */
function assertMatches<V>(
  m: RangeMap<V>,
  ref: RefModel<V>,
  probe: Iterable<number>,
  queries: Array<[number, number]>,
): void {
  m.checkInvariants();
  const ops = ref.kind.ops;
  // Entries: sorted, non-overlapping, non-empty, maximally coalesced, and equal to the runs.
  const ents = [...m.entries()];
  for (let i = 0; i < ents.length; i++) {
    const e = ents[i]!;
    assert.ok(e.start < e.end, `empty entry ${e.start}..${e.end}`);
    if (i > 0) {
      const p = ents[i - 1]!;
      assert.ok(p.end <= e.start, `overlap/unsorted ${p.start}..${p.end} / ${e.start}..${e.end}`);
      if (p.end === e.start) assert.equal(ops.canMerge(p.value, p.end - p.start, e.value), false);
    }
  }
  assert.deepEqual(
    ents.map((e) => [e.start, e.end, e.value]),
    ref.runs(),
  );
  assert.equal(m.size, ents.length);
  assert.equal(m.totalCovered(), ref.keys.size);
  assert.deepEqual(m.first(), ents[0]);
  assert.deepEqual(m.last(), ents[ents.length - 1]);
  // Point lookups.
  for (const k of probe) {
    const want = ref.keys.get(k);
    assert.deepEqual(m.get(k), want, `get(${k})`);
    const ent = m.entryAt(k);
    if (want === undefined) {
      assert.equal(ent, undefined);
    } else {
      assert.ok(ent !== undefined && ent.start <= k && k < ent.end, `entryAt(${k})`);
    }
  }
  // Range queries.
  for (const [s, e] of queries) {
    const pieces = m.piecesIn(s, e).map((p) => [p.start, p.end, p.value]);
    assert.deepEqual(pieces, ref.pieces(s, e), `piecesIn(${s}, ${e})`);
    const viaEach: Array<[number, number, V]> = [];
    m.forEachIn(s, e, (ps, pe, v) => {
      viaEach.push([ps, pe, v]);
    });
    assert.deepEqual(viaEach, pieces);
    assert.deepEqual(m.gapsIn(s, e), ref.gaps(s, e), `gapsIn(${s}, ${e})`);
    const cnt = ref.count(s, e);
    assert.equal(m.countIn(s, e), cnt, `countIn(${s}, ${e})`);
    assert.equal(m.anyIn(s, e), cnt > 0, `anyIn(${s}, ${e})`);
    assert.equal(m.covers(s, e), s >= e || cnt === e - s, `covers(${s}, ${e})`);
  }
}

type Op<V> = { kind: 'set'; s: number; e: number; v: V } | { kind: 'del'; s: number; e: number };

function apply<V>(m: RangeMap<V>, ref: RefModel<V>, op: Op<V>): void {
  if (op.kind === 'set') {
    m.set(op.s, op.e, op.v);
    ref.set(op.s, op.e, op.v);
  } else {
    m.delete(op.s, op.e);
    ref.delete(op.s, op.e);
  }
}

/** Deterministic xorshift32 PRNG for the large (non-fast-check) tests. */
function prng(seed: number): (n: number) => number {
  let x = seed | 0 || 1;
  return (n) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
}

const range = (a: number, b: number): number[] => Array.from({ length: b - a }, (_, i) => a + i);

// -------------------------------------------------------------------------------------------------
// Examples

describe('RangeMap examples', () => {
  it('empty map', () => {
    const m = new RangeMap<number>();
    assert.equal(m.size, 0);
    assert.equal(m.totalCovered(), 0);
    assert.equal(m.get(0), undefined);
    assert.equal(m.entryAt(5), undefined);
    assert.equal(m.floorEntry(5), undefined);
    assert.equal(m.ceilEntry(5), undefined);
    assert.equal(m.first(), undefined);
    assert.equal(m.last(), undefined);
    assert.deepEqual([...m.entries()], []);
    assert.deepEqual(m.piecesIn(0, 10), []);
    assert.deepEqual(m.gapsIn(0, 10), [{ start: 0, end: 10 }]);
    assert.equal(m.covers(0, 10), false);
    assert.equal(m.covers(3, 3), true);
    assert.equal(m.anyIn(0, 10), false);
    assert.equal(m.countIn(0, 10), 0);
    m.delete(0, 100);
    m.checkInvariants();
  });

  it('set/get, entryAt (unclipped), floorEntry, ceilEntry', () => {
    const m = new RangeMap<string>();
    m.set(10, 20, 'a');
    m.set(30, 40, 'b');
    assert.equal(m.get(9), undefined);
    assert.equal(m.get(10), 'a');
    assert.equal(m.get(19), 'a');
    assert.equal(m.get(20), undefined);
    assert.equal(m.get(35), 'b');
    assert.deepEqual(m.entryAt(15), { start: 10, end: 20, value: 'a' });
    assert.equal(m.entryAt(25), undefined);
    assert.equal(m.floorEntry(9), undefined);
    assert.deepEqual(m.floorEntry(10), { start: 10, end: 20, value: 'a' });
    assert.deepEqual(m.floorEntry(25), { start: 10, end: 20, value: 'a' });
    assert.deepEqual(m.floorEntry(1000), { start: 30, end: 40, value: 'b' });
    assert.deepEqual(m.ceilEntry(0), { start: 10, end: 20, value: 'a' });
    assert.deepEqual(m.ceilEntry(10), { start: 10, end: 20, value: 'a' });
    assert.deepEqual(m.ceilEntry(11), { start: 30, end: 40, value: 'b' });
    assert.equal(m.ceilEntry(31), undefined);
    assert.equal(m.size, 2);
    assert.equal(m.totalCovered(), 20);
    assert.deepEqual(m.first(), { start: 10, end: 20, value: 'a' });
    assert.deepEqual(m.last(), { start: 30, end: 40, value: 'b' });
  });

  it('inner set splits an entry; extent tails are shifted', () => {
    const p = new RangeMap<string>();
    p.set(0, 100, 'x');
    p.set(40, 60, 'y');
    assert.deepEqual(entriesOf(p), [
      [0, 40, 'x'],
      [40, 60, 'y'],
      [60, 100, 'x'],
    ]);
    assert.equal(p.totalCovered(), 100);

    const m = new RangeMap<Ext>(extOps);
    m.set(0, 100, ext(1000));
    m.set(40, 60, ext(5000));
    assert.deepEqual(entriesOf(m), [
      [0, 40, ext(1000)],
      [40, 60, ext(5000)],
      [60, 100, ext(1060)],
    ]);
    assert.deepEqual(m.get(70), ext(1070));
    assert.deepEqual(m.get(45), ext(5005));
    m.checkInvariants();
  });

  it('inner delete splits an entry; extent tail is shifted', () => {
    const m = new RangeMap<Ext>(extOps);
    m.set(10, 50, ext(7, 3));
    m.delete(20, 30);
    assert.deepEqual(entriesOf(m), [
      [10, 20, ext(7, 3)],
      [30, 50, ext(27, 3)],
    ]);
    assert.equal(m.totalCovered(), 30);
    assert.deepEqual(m.gapsIn(0, 60), [
      { start: 0, end: 10 },
      { start: 20, end: 30 },
      { start: 50, end: 60 },
    ]);
    m.checkInvariants();
  });

  it('set and delete truncate partially overlapped entries and remove covered ones', () => {
    const m = new RangeMap<number>();
    m.set(0, 10, 1);
    m.set(12, 14, 2);
    m.set(16, 18, 3);
    m.set(20, 30, 4);
    m.set(5, 25, 9);
    assert.deepEqual(entriesOf(m), [
      [0, 5, 1],
      [5, 25, 9],
      [25, 30, 4],
    ]);
    m.delete(3, 27);
    assert.deepEqual(entriesOf(m), [
      [0, 3, 1],
      [27, 30, 4],
    ]);
    assert.equal(m.totalCovered(), 6);
    // Extents truncated at the front get a shifted base.
    const x = new RangeMap<Ext>(extOps);
    x.set(0, 10, ext(100));
    x.delete(0, 4);
    assert.deepEqual(entriesOf(x), [[4, 10, ext(104)]]);
    x.set(8, 20, ext(0, 1));
    assert.deepEqual(entriesOf(x), [
      [4, 8, ext(104)],
      [8, 20, ext(0, 1)],
    ]);
  });

  it('coalesces on the left, on the right, and on both sides', () => {
    const m = new RangeMap<number>();
    m.set(0, 10, 1);
    m.set(10, 20, 1); // left
    assert.deepEqual(entriesOf(m), [[0, 20, 1]]);
    m.set(30, 40, 1);
    m.set(25, 30, 1); // right
    assert.deepEqual(entriesOf(m), [
      [0, 20, 1],
      [25, 40, 1],
    ]);
    m.set(20, 25, 1); // both
    assert.deepEqual(entriesOf(m), [[0, 40, 1]]);
    // Re-setting the same value inside an entry leaves one entry.
    m.set(5, 15, 1);
    assert.deepEqual(entriesOf(m), [[0, 40, 1]]);
    m.checkInvariants();

    const x = new RangeMap<Ext>(extOps);
    x.set(0, 10, ext(100));
    x.set(20, 30, ext(120));
    x.set(10, 20, ext(110)); // both sides, bases line up
    assert.deepEqual(entriesOf(x), [[0, 30, ext(100)]]);
    // Overwriting the middle with the value it already has keeps one entry.
    x.set(12, 15, ext(112));
    assert.deepEqual(entriesOf(x), [[0, 30, ext(100)]]);
    x.checkInvariants();
  });

  it('does not coalesce when canMerge is false', () => {
    const m = new RangeMap<number>();
    m.set(0, 10, 1);
    m.set(10, 20, 2);
    assert.equal(m.size, 2);
    const x = new RangeMap<Ext>(extOps);
    x.set(0, 10, ext(100));
    x.set(10, 20, ext(111)); // base not contiguous
    x.set(20, 30, ext(121, 1)); // base contiguous, tag differs
    x.set(30, 40, ext(131, 1)); // merges with the previous one
    assert.deepEqual(entriesOf(x), [
      [0, 10, ext(100)],
      [10, 20, ext(111)],
      [20, 40, ext(121, 1)],
    ]);
    // Objects that are equal but not identical do not merge under plainOps.
    const o = new RangeMap<object>();
    o.set(0, 1, {});
    o.set(1, 2, {});
    assert.equal(o.size, 2);
    x.checkInvariants();
  });

  it('single keys set in order (either direction) extending a neighbour leave ONE entry', () => {
    const up = new RangeMap<Ext>(extOps);
    for (let k = 0; k < 20000; k++) up.set(k, k + 1, ext(5000 + k));
    assert.equal(up.size, 1);
    assert.deepEqual(entriesOf(up), [[0, 20000, ext(5000)]]);
    const down = new RangeMap<Ext>(extOps);
    for (let k = 19999; k >= 0; k--) down.set(k, k + 1, ext(5000 + k));
    assert.deepEqual(entriesOf(down), [[0, 20000, ext(5000)]]);
    up.checkInvariants();
    down.checkInvariants();
  });

  it('boundaries at 0, 2^52 and 2^53; invalid keys throw; empty ranges are no-ops', () => {
    const m = new RangeMap<number>();
    m.set(0, 1, 7);
    m.set(P52 - 1, P52 + 1, 8);
    m.set(MAX_KEY - 1, MAX_KEY, 9);
    assert.equal(m.get(0), 7);
    assert.equal(m.get(1), undefined);
    assert.equal(m.get(P52 - 1), 8);
    assert.equal(m.get(P52), 8);
    assert.equal(m.get(P52 + 1), undefined);
    assert.equal(m.get(MAX_KEY - 1), 9);
    assert.equal(m.totalCovered(), 4);
    assert.equal(m.countIn(0, MAX_KEY), 4);
    assert.deepEqual(m.gapsIn(P52 - 2, P52 + 2), [
      { start: P52 - 2, end: P52 - 1 },
      { start: P52 + 1, end: P52 + 2 },
    ]);
    m.delete(P52, P52 + 1);
    assert.deepEqual(m.entryAt(P52 - 1), { start: P52 - 1, end: P52, value: 8 });
    m.delete(0, MAX_KEY);
    assert.equal(m.size, 0);

    const x = new RangeMap<Ext>(extOps);
    x.set(P52, P52 + 10, ext(P52));
    x.delete(P52 + 3, P52 + 4);
    assert.deepEqual(x.get(P52 + 9), ext(P52 + 9));
    assert.equal(x.size, 2);

    for (const [s, e] of [
      [-1, 5],
      [0.5, 2],
      [0, MAX_KEY + 2],
      [NaN, 3],
      [0, Infinity],
    ] as Array<[number, number]>) {
      assert.throws(() => m.set(s, e, 1), RangeError);
      assert.throws(() => m.delete(s, e), RangeError);
    }
    m.set(5, 5, 1);
    m.set(9, 3, 1);
    m.delete(4, 4);
    assert.equal(m.size, 0);
    assert.deepEqual(m.piecesIn(5, 5), []);
    assert.deepEqual(m.gapsIn(5, 2), []);
    assert.equal(m.anyIn(5, 5), false);
    assert.equal(m.countIn(5, 2), 0);
  });

  it('forEachIn clips, shifts, stops early, and rejects mutation', () => {
    const m = new RangeMap<Ext>(extOps);
    m.set(0, 10, ext(100));
    m.set(10, 20, ext(0, 1));
    m.set(30, 40, ext(300));
    const seen: Array<[number, number, Ext]> = [];
    m.forEachIn(5, 35, (s, e, v) => {
      seen.push([s, e, v]);
    });
    assert.deepEqual(seen, [
      [5, 10, ext(105)],
      [10, 20, ext(0, 1)],
      [30, 35, ext(300)],
    ]);
    assert.deepEqual(
      m.piecesIn(5, 35).map((p: RangeEntry<Ext>) => [p.start, p.end, p.value]),
      seen,
    );
    let calls = 0;
    m.forEachIn(0, 100, () => {
      calls++;
      return false;
    });
    assert.equal(calls, 1);
    calls = 0;
    m.forEachIn(0, 100, () => {
      calls++;
      return calls < 2;
    });
    assert.equal(calls, 2);
    assert.throws(() => m.forEachIn(0, 100, () => m.delete(0, 1)), /mutated/);
  });

  it('gapsIn, covers, anyIn, countIn', () => {
    const m = new RangeMap<number>();
    m.set(10, 20, 1);
    m.set(20, 30, 2);
    m.set(40, 50, 3);
    assert.deepEqual(m.gapsIn(0, 60), [
      { start: 0, end: 10 },
      { start: 30, end: 40 },
      { start: 50, end: 60 },
    ]);
    assert.deepEqual(m.gapsIn(12, 28), []);
    assert.deepEqual(m.gapsIn(25, 45), [{ start: 30, end: 40 }]);
    assert.equal(m.covers(10, 30), true);
    assert.equal(m.covers(10, 31), false);
    assert.equal(m.covers(9, 30), false);
    assert.equal(m.covers(45, 50), true);
    assert.equal(m.anyIn(30, 40), false);
    assert.equal(m.anyIn(30, 41), true);
    assert.equal(m.anyIn(0, 11), true);
    assert.equal(m.anyIn(49, 100), true);
    assert.equal(m.anyIn(50, 100), false);
    assert.equal(m.countIn(0, 100), 30);
    assert.equal(m.countIn(15, 45), 20);
  });

  it('entries() iterates in order and rejects mutation', () => {
    const m = new RangeMap<number>();
    for (let k = 0; k < 1000; k++) m.set(3 * k, 3 * k + 2, k % 5);
    const ents = [...m.entries()];
    assert.equal(ents.length, 1000);
    assert.deepEqual(ents[999], { start: 2997, end: 2999, value: 4 });
    assert.ok(ents.every((e, i) => i === 0 || ents[i - 1]!.end < e.start));
    assert.throws(() => {
      for (const e of m.entries()) m.delete(e.start, e.end);
    }, /mutated/);
  });

  it('clear and clone', () => {
    const m = new RangeMap<Ext>(extOps);
    for (let k = 0; k < 500; k++) m.set(10 * k, 10 * k + 5, ext(k));
    const c = m.clone();
    c.checkInvariants();
    assert.deepEqual(entriesOf(c), entriesOf(m));
    c.delete(0, 2500);
    c.set(9000, 9001, ext(1));
    m.set(5, 10, ext(7, 7));
    assert.equal(m.size, 501);
    assert.equal(c.size, 251);
    assert.equal(m.get(9000), undefined);
    assert.deepEqual(c.get(9000), ext(1));
    assert.deepEqual(m.get(7), ext(7 + 2, 7));
    m.checkInvariants();
    c.checkInvariants();
    m.clear();
    assert.equal(m.size, 0);
    assert.equal(m.totalCovered(), 0);
    assert.equal(m.get(0), undefined);
    m.set(1, 2, ext(1));
    assert.equal(m.size, 1);
    assert.equal(c.size, 251);
    m.checkInvariants();
  });

  it('plainOps and extentOps', () => {
    const v = ext(10, 2);
    const s = extOps.shift(v, 5);
    assert.notEqual(s, v);
    assert.deepEqual(s, ext(15, 2));
    assert.deepEqual(v, ext(10, 2));
    assert.equal(extOps.canMerge(ext(10), 5, ext(15)), true);
    assert.equal(extOps.canMerge(ext(10), 5, ext(16)), false);
    assert.equal(extOps.canMerge(ext(10), 5, ext(15, 1)), false);
    const o = {};
    assert.equal(plainOps.shift(o, 3), o);
    assert.equal(plainOps.canMerge(o, 3, o), true);
    assert.equal(plainOps.canMerge(1, 3, 2), false);
  });
});

// -------------------------------------------------------------------------------------------------
// Property tests

const FC = { seed: 42, numRuns: 200 };

function opArb<V>(keyMax: number, maxLen: number, value: fc.Arbitrary<V>): fc.Arbitrary<Op<V>> {
  const span = fc.tuple(fc.integer({ min: 0, max: keyMax }), fc.integer({ min: 1, max: maxLen }));
  return fc.oneof(
    {
      weight: 3,
      arbitrary: fc
        .tuple(span, value)
        .map(([[s, l], v]): Op<V> => ({ kind: 'set', s, e: s + l, v })),
    },
    { weight: 1, arbitrary: span.map(([s, l]): Op<V> => ({ kind: 'del', s, e: s + l })) },
  );
}

const queryArb = (keyMax: number): fc.Arbitrary<[number, number]> =>
  fc
    .tuple(fc.integer({ min: 0, max: keyMax }), fc.integer({ min: 0, max: keyMax }))
    .map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));

// Few distinct values and bases so that merges (and near-misses) are common.
const plainVal = fc.integer({ min: 0, max: 2 });
const extVal = fc
  .tuple(fc.integer({ min: 0, max: 40 }), fc.integer({ min: 0, max: 1 }))
  .map(([b, t]) => ext(b, t));

describe('RangeMap properties (small key space 0..200)', () => {
  const probe = range(0, 260);
  for (const [name, kind, val] of [
    ['plain', plainKind, plainVal],
    ['extent', extKind, extVal],
  ] as const) {
    it(`random set/delete vs per-key reference (${name} values)`, () => {
      fc.assert(
        fc.property(
          fc.array(opArb<unknown>(200, 40, val as fc.Arbitrary<unknown>), { maxLength: 60 }),
          fc.array(queryArb(260), { maxLength: 8 }),
          (ops, queries) => {
            const k = kind as Kind<unknown>;
            const m = new RangeMap<unknown>(k.ops);
            const ref = new RefModel<unknown>(k);
            for (const op of ops) {
              apply(m, ref, op);
              m.checkInvariants();
            }
            assertMatches(m, ref, probe, [...queries, [0, 260], [0, 0]]);
          },
        ),
        FC,
      );
    });
  }

  it('clone is independent of later mutations', () => {
    fc.assert(
      fc.property(
        fc.array(opArb(200, 40, extVal), { maxLength: 40 }),
        fc.array(opArb(200, 40, extVal), { maxLength: 20 }),
        (before, after) => {
          const m = new RangeMap<Ext>(extOps);
          const ref = new RefModel<Ext>(extKind);
          for (const op of before) apply(m, ref, op);
          const c = m.clone();
          const snapshot = new RefModel<Ext>(extKind);
          for (const [k, v] of ref.keys) snapshot.keys.set(k, v);
          for (const op of after) {
            apply(m, ref, op);
            if (op.kind === 'set') c.delete(op.s, op.e); // mutate the clone differently
            if (op.kind === 'set') snapshot.delete(op.s, op.e);
          }
          assertMatches(m, ref, probe, [[0, 260]]);
          assertMatches(c, snapshot, probe, [[0, 260]]);
        },
      ),
      { seed: 42, numRuns: 100 },
    );
  });
});

describe('RangeMap properties (sparse large keys)', () => {
  const anchors = [0, 2 ** 31 - 5, 2 ** 32, 2 ** 40 + 7, P52 - 100, P52, MAX_KEY - 300];
  const W = 250;
  const probe: number[] = [];
  for (const a of anchors)
    for (let k = Math.max(0, a - 2); k < Math.min(MAX_KEY, a + W + 60); k++) probe.push(k);
  const keyArb = fc
    .tuple(fc.constantFrom(...anchors), fc.integer({ min: 0, max: W }))
    .map(([a, o]) => a + o);
  const sparseOp = <V>(value: fc.Arbitrary<V>): fc.Arbitrary<Op<V>> => {
    const span = fc
      .tuple(keyArb, fc.integer({ min: 1, max: 60 }))
      .map(([s, l]): [number, number] => [s, Math.min(MAX_KEY, s + l)]);
    return fc.oneof(
      {
        weight: 3,
        arbitrary: fc.tuple(span, value).map(([[s, e], v]): Op<V> => ({ kind: 'set', s, e, v })),
      },
      { weight: 1, arbitrary: span.map(([s, e]): Op<V> => ({ kind: 'del', s, e })) },
    );
  };
  // Queries may span anchors (huge ranges): the reference never loops over a query's keys.
  const sparseQuery = fc
    .tuple(keyArb, keyArb)
    .map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));
  const extBig = fc
    .tuple(
      fc.constantFrom(0, 2 ** 40, P52 - 7),
      fc.integer({ min: 0, max: 30 }),
      fc.integer({ min: 0, max: 1 }),
    )
    .map(([b, o, t]) => ext(b + o, t));

  for (const [name, kind, val] of [
    ['plain', plainKind, plainVal],
    ['extent', extKind, extBig],
  ] as const) {
    it(`random set/delete vs per-key reference (${name} values)`, () => {
      fc.assert(
        fc.property(
          fc.array(sparseOp<unknown>(val as fc.Arbitrary<unknown>), { maxLength: 50 }),
          fc.array(sparseQuery, { maxLength: 6 }),
          (ops, queries) => {
            const k = kind as Kind<unknown>;
            const m = new RangeMap<unknown>(k.ops);
            const ref = new RefModel<unknown>(k);
            for (const op of ops) apply(m, ref, op);
            assertMatches(m, ref, probe, [...queries, [0, MAX_KEY]]);
          },
        ),
        FC,
      );
    });
  }
});

describe('RangeMap multi-level trees', () => {
  it('bulk strided fills and big deletes vs reference (fast-check)', () => {
    // Ops include "fill": thousands of separate single-key entries, enough for 2-3 tree levels.
    type BulkOp =
      | Op<number>
      | { kind: 'fill'; s: number; n: number; stride: number; v: number }
      | { kind: 'extend'; s: number; n: number; dir: 1 | -1; v: number };
    const KEYS = 20000;
    const bulk: fc.Arbitrary<BulkOp> = fc.oneof(
      opArb(KEYS, 3000, plainVal),
      fc.record({
        kind: fc.constant('fill' as const),
        s: fc.integer({ min: 0, max: KEYS }),
        n: fc.integer({ min: 1, max: 3000 }),
        stride: fc.integer({ min: 2, max: 3 }),
        v: plainVal,
      }),
      fc.record({
        kind: fc.constant('extend' as const),
        s: fc.integer({ min: 0, max: KEYS }),
        n: fc.integer({ min: 1, max: 500 }),
        dir: fc.constantFrom(1 as const, -1 as const),
        v: plainVal,
      }),
    );
    fc.assert(
      fc.property(fc.array(bulk, { minLength: 1, maxLength: 12 }), (ops) => {
        const m = new RangeMap<number>();
        const ref = new RefModel<number>(plainKind);
        for (const op of ops) {
          if (op.kind === 'fill') {
            for (let i = 0; i < op.n; i++) {
              const k = op.s + i * op.stride;
              m.set(k, k + 1, op.v);
              ref.set(k, k + 1, op.v);
            }
          } else if (op.kind === 'extend') {
            for (let i = 0; i < op.n; i++) {
              const k = op.s + op.dir * i;
              if (k < 0) break;
              m.set(k, k + 1, op.v);
              ref.set(k, k + 1, op.v);
            }
          } else {
            apply(m, ref, op);
          }
          m.checkInvariants();
        }
        assertMatches(m, ref, range(0, KEYS + 9000), [
          [0, KEYS + 9000],
          [100, 5000],
        ]);
      }),
      { seed: 42, numRuns: 40 },
    );
  });

  it('thousands of entries: random ops, then deleting everything collapses the tree', () => {
    const rnd = prng(12345);
    const KEYS = 60000;
    const m = new RangeMap<Ext>(extOps);
    const ref = new RefModel<Ext>(extKind);
    // Many separate entries: every other key, alternating tags so nothing merges.
    for (let k = 0; k < KEYS; k += 2) {
      const v = ext(k, (k >> 1) & 1);
      m.set(k, k + 1, v);
      ref.set(k, k + 1, v);
    }
    assert.ok(m.treeStats().height >= 2, `height ${m.treeStats().height}`);
    m.checkInvariants();
    let snap: { map: RangeMap<Ext>; ref: RefModel<Ext> } | undefined;
    for (let step = 0; step < 20000; step++) {
      if (step === 10000) {
        // A clone of a multi-level tree must not see later mutations of the original.
        const r2 = new RefModel<Ext>(extKind);
        for (const [k, v] of ref.keys) r2.keys.set(k, v);
        snap = { map: m.clone(), ref: r2 };
      }
      const s = rnd(KEYS);
      const r = rnd(100);
      if (r < 60) {
        const e = s + 1 + rnd(r < 50 ? 3 : 40);
        const v = ext(rnd(2) === 0 ? s : rnd(KEYS), rnd(2));
        m.set(s, e, v);
        ref.set(s, e, v);
      } else {
        const e = s + 1 + rnd(r < 98 ? 20 : 3000);
        m.delete(s, e);
        ref.delete(s, e);
      }
      if (step % 2000 === 0) m.checkInvariants();
    }
    assertMatches(m, ref, range(0, KEYS + 50), [
      [0, KEYS + 50],
      [12345, 23456],
    ]);
    assertMatches(snap!.map, snap!.ref, range(0, KEYS + 50), [[0, KEYS + 50]]);
    // Delete everything in random chunks; leaves empty out and are removed.
    const order = range(0, KEYS / 100);
    for (let i = order.length - 1; i > 0; i--) {
      const j = rnd(i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    for (const [n, c] of order.entries()) {
      m.delete(c * 100, c * 100 + 100);
      ref.delete(c * 100, c * 100 + 100);
      if (n % 50 === 0) m.checkInvariants();
    }
    m.delete(KEYS - 100, KEYS + 100);
    ref.delete(KEYS - 100, KEYS + 100);
    assertMatches(m, ref, range(0, 100), [[0, KEYS + 100]]);
    assert.equal(m.size, 0);
    const st = m.treeStats();
    assert.deepEqual([st.height, st.leaves, st.internals], [0, 1, 0]);
    // Still usable afterwards.
    m.set(5, 6, ext(1));
    assert.deepEqual(entriesOf(m), [[5, 6, ext(1)]]);
  });

  it('ordered builds pack leaves; one big delete empties many leaves at once', () => {
    for (const dir of ['up', 'down'] as const) {
      const N = 20000;
      const m = new RangeMap<number>();
      for (let i = 0; i < N; i++) {
        const k = dir === 'up' ? 2 * i : 2 * (N - 1 - i);
        m.set(k, k + 1, 1);
      }
      m.checkInvariants();
      const st = m.treeStats();
      assert.ok(st.leaves <= Math.ceil(N / 64) + 2, `${dir}: ${st.leaves} leaves for ${N} entries`);
      assert.ok(st.height >= 2);
      // Remove a middle block spanning many leaves, then coalesce across the gap.
      m.delete(1001, 2 * N - 1001); // keeps 501 entries below and 500 above
      m.checkInvariants();
      assert.equal(m.size, 1001);
      m.set(1000, 2 * N - 1000, 1);
      m.checkInvariants();
      assert.equal(m.get(1001), 1);
      assert.equal(m.size, 1000); // merged with [1000, 1001) and [2N - 1000, 2N - 999)
      m.set(0, 2 * N, 1);
      assert.equal(m.size, 1);
      m.checkInvariants();
      assert.equal(m.treeStats().height, 0);
    }
  });

  it('random-order single-key fills and deletes (leaf hints: stale, split and reused leaves)', () => {
    const rnd = prng(2024);
    const KEYS = 1 << 15;
    const m = new RangeMap<Ext>(extOps);
    const ref = new RefModel<Ext>(extKind);
    // A permutation of the keys: single-key entries inserted in random order, as guest faults
    // in random order fill the stage-2 and guest_memfd page maps (bases in touch order).
    const perm = range(0, KEYS);
    for (let i = KEYS - 1; i > 0; i--) {
      const j = rnd(i + 1);
      [perm[i], perm[j]] = [perm[j]!, perm[i]!];
    }
    for (let round = 0; round < 2; round++) {
      for (const [i, k] of perm.entries()) {
        assert.deepEqual(m.get(k), ref.keys.get(k));
        const v = ext(round * KEYS + i, round);
        m.set(k, k + 1, v);
        ref.set(k, k + 1, v);
        if (i % 4096 === 0) m.checkInvariants();
      }
      assert.ok(m.treeStats().height >= 2);
      // Probe every key and some odd ones (negatives, past the end, NaN, infinities).
      for (let k = -3; k < KEYS + 3; k++) assert.deepEqual(m.get(k), ref.keys.get(k), `get ${k}`);
      for (const k of [-0.5, KEYS + 0.5, NaN, Infinity, -Infinity, 2 ** 40, 2 ** 53])
        assert.equal(m.get(k), undefined, `get ${k}`);
      // Random deletes free leaves (their ids are reused by the next round's splits).
      for (let i = 0; i < 400; i++) {
        const s = rnd(KEYS);
        const e = s + 1 + rnd(i % 10 === 0 ? 2000 : 30);
        m.delete(s, e);
        ref.delete(s, e);
        const q = rnd(KEYS);
        assert.deepEqual(m.get(q), ref.keys.get(q));
      }
      m.checkInvariants();
      // floorEntry against the entries (entries() walks the leaf links, never the hints).
      const starts = [...m.entries()].map((e) => e.start);
      for (let i = 0; i < 2000; i++) {
        const q = rnd(KEYS) + 0.5;
        let lo = -1;
        for (let hi = starts.length; hi - lo > 1;) {
          const mid = (lo + hi) >> 1;
          if (starts[mid]! <= q) lo = mid;
          else hi = mid;
        }
        assert.equal(m.floorEntry(q)?.start, lo < 0 ? undefined : starts[lo], `floor ${q}`);
      }
    }
    assertMatches(m, ref, range(0, 2000), [[0, KEYS + 10]]);
  });

  it('interleaved inserts in the middle of a dense region (half splits, finger moves)', () => {
    const m = new RangeMap<number>();
    const ref = new RefModel<number>(plainKind);
    const rnd = prng(99);
    for (let round = 0; round < 4; round++) {
      for (let k = 0; k < 4000; k++) {
        const key = (k * 7919 + round * 13) % 16000;
        const v = rnd(4);
        m.set(key, key + 1, v);
        ref.set(key, key + 1, v);
      }
      m.checkInvariants();
    }
    for (let k = 16000; k > 0; k -= 3) {
      m.delete(k - 1, k);
      ref.delete(k - 1, k);
    }
    assertMatches(m, ref, range(0, 16010), [[0, 16010]]);
  });
});
