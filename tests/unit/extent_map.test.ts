/**
 * Tests for src/core/base/ranges/extent_map.ts: an ExtentMap must answer every query exactly as a
 * RangeMap with the same ops does (same entries, pieces and counts, values equal field by field),
 * on random operation sequences that make chunks dense (many single-key writes with unrelated
 * bases), sparse again (range writes and deletes), and cross chunk boundaries.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RangeMap, extentOps, MAX_KEY } from '../../src/core/base/ranges/range_map.js';
import {
  ChunkOffsets,
  ExtentMap,
  PACK_LIMIT,
  SID_MAX,
  type ExtentShape,
} from '../../src/core/base/ranges/extent_map.js';
import {
  spteOps,
  spteShape,
  gmemExtentOps,
  gmemExtentShape,
  type Spte,
  type GmemExtent,
} from '../../src/core/kvm/objects.js';
import { ZERO_PFN, type Pfn } from '../../src/core/base/units.js';

type Ext = { readonly base: number; readonly tag: number };
const extOps = extentOps<Ext>((a, b) => a.tag === b.tag);
const extShape: ExtentShape<Ext> = { key: (v) => v.tag };

type Op<V> = { kind: 'set'; s: number; e: number; v: V } | { kind: 'del'; s: number; e: number };

interface Pair<V extends { readonly base: number }> {
  ref: RangeMap<V>;
  m: ExtentMap<V>;
  refChanges: Array<[number, number]>;
  changes: Array<[number, number]>;
}

function pair<V extends { readonly base: number }>(
  ops: ConstructorParameters<typeof ExtentMap<V>>[0],
  shape: ExtentShape<V>,
  tuning?: { densify: number; sparse: number },
): Pair<V> {
  const p: Pair<V> = {
    ref: new RangeMap<V>(ops),
    m: new ExtentMap<V>(ops, shape, tuning),
    refChanges: [],
    changes: [],
  };
  p.ref.onChange = (s, e) => p.refChanges.push([s, e]);
  p.m.onChange = (s, e) => p.changes.push([s, e]);
  return p;
}

/**
 * Overwrite every field of a scratch record the map was lent (`setTransient`), so that a map
 * which kept it instead of a copy shows values no write ever stored.
 */
function clobber(scratch: Record<string, unknown>): void {
  for (const key of Object.keys(scratch)) scratch[key] = key === 'base' ? -12345 : 'clobbered';
}

function apply<V extends { readonly base: number }>(p: Pair<V>, op: Op<V>): void {
  if (op.kind === 'set') {
    p.ref.set(op.s, op.e, op.v);
    // Odd starts go through setTransient with a scratch copy that is clobbered afterwards.
    if ((op.s & 1) === 1) {
      const scratch = { ...op.v } as Record<string, unknown>;
      p.m.setTransient(op.s, op.e, scratch as unknown as V);
      clobber(scratch);
    } else p.m.set(op.s, op.e, op.v);
  } else {
    p.ref.delete(op.s, op.e);
    p.m.delete(op.s, op.e);
  }
}

/** Every query of the two maps agrees (values compared by their JSON text: fields and order). */
function assertSame<V extends { readonly base: number }>(
  ref: RangeMap<V>,
  m: ExtentMap<V>,
  keyMax: number,
  queries: Array<[number, number]>,
  probeStep = 1,
): void {
  m.checkInvariants();
  const j = (x: unknown): string => JSON.stringify(x ?? null);
  assert.equal(j([...m.entries()]), j([...ref.entries()]), 'entries');
  assert.equal(m.size, ref.size, 'size');
  assert.equal(m.totalCovered(), ref.totalCovered(), 'totalCovered');
  assert.equal(j(m.first()), j(ref.first()), 'first');
  assert.equal(j(m.last()), j(ref.last()), 'last');
  for (let k = 0; k <= keyMax + 2; k += probeStep) {
    assert.equal(j(m.get(k)), j(ref.get(k)), `get(${k})`);
    assert.equal(j(m.entryAt(k)), j(ref.entryAt(k)), `entryAt(${k})`);
    assert.equal(j(m.floorEntry(k)), j(ref.floorEntry(k)), `floorEntry(${k})`);
    assert.equal(j(m.ceilEntry(k)), j(ref.ceilEntry(k)), `ceilEntry(${k})`);
  }
  for (const [s, e] of [
    ...queries,
    [0, keyMax + 3] as [number, number],
    [0, MAX_KEY] as [number, number],
  ]) {
    assert.equal(j(m.piecesIn(s, e)), j(ref.piecesIn(s, e)), `piecesIn(${s}, ${e})`);
    const a: unknown[] = [];
    const b: unknown[] = [];
    m.forEachIn(s, e, (x, y, v) => {
      a.push([x, y, v]);
      return a.length < 3;
    });
    ref.forEachIn(s, e, (x, y, v) => {
      b.push([x, y, v]);
      return b.length < 3;
    });
    assert.equal(j(a), j(b), `forEachIn early stop (${s}, ${e})`);
    assert.deepEqual(m.gapsIn(s, e), ref.gapsIn(s, e), `gapsIn(${s}, ${e})`);
    assert.equal(m.countIn(s, e), ref.countIn(s, e), `countIn(${s}, ${e})`);
    assert.equal(m.anyIn(s, e), ref.anyIn(s, e), `anyIn(${s}, ${e})`);
    assert.equal(m.covers(s, e), ref.covers(s, e), `covers(${s}, ${e})`);
    for (const limit of [1, 3, Infinity])
      assert.equal(m.entriesIn(s, e, limit), ref.entriesIn(s, e, limit), `entriesIn(${s}, ${e})`);
  }
}

const KEYS = 3 * 512;

/** Mostly single-key writes with unrelated bases (they make chunks dense), some runs. */
function opArb<V>(value: fc.Arbitrary<V>, keyMax = KEYS): fc.Arbitrary<Op<V>> {
  const key = fc.integer({ min: 0, max: keyMax });
  return fc.oneof(
    {
      weight: 12,
      arbitrary: fc.tuple(key, value).map(([s, v]): Op<V> => ({ kind: 'set', s, e: s + 1, v })),
    },
    {
      weight: 2,
      arbitrary: fc
        .tuple(key, fc.integer({ min: 1, max: 700 }), value)
        .map(([s, l, v]): Op<V> => ({ kind: 'set', s, e: s + l, v })),
    },
    { weight: 2, arbitrary: key.map((s): Op<V> => ({ kind: 'del', s, e: s + 1 })) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(key, fc.integer({ min: 1, max: 700 }))
        .map(([s, l]): Op<V> => ({ kind: 'del', s, e: s + l })),
    },
  );
}

const queryArb = fc
  .tuple(fc.integer({ min: 0, max: KEYS + 2 }), fc.integer({ min: 0, max: KEYS + 2 }))
  .map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));

// Bases: small (so that runs continue often) or large and random (never continue).
const extVal = fc
  .tuple(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: 1 }))
  .map(([b, t]) => Object.freeze({ base: b, tag: t }));
// Bases the dense chunks cannot pack (negative, at and past PACK_LIMIT = 2^26, where a packed
// int32 would reach 2^31, fractional) among small ones.
const extWideVal = fc
  .tuple(
    fc.oneof(
      fc.integer({ min: 0, max: 3000 }),
      fc.integer({ min: PACK_LIMIT - 800, max: PACK_LIMIT + 800 }),
      fc.integer({ min: 2 ** 37 - 800, max: 2 ** 37 + 800 }),
      fc.integer({ min: -3000, max: -1 }),
      fc.constantFrom(2 ** 45, 0.5, 2 ** 52),
    ),
    fc.integer({ min: 0, max: 1 }),
  )
  .map(([b, t]) => Object.freeze({ base: b, tag: t }));
// More shapes than a packed value holds (tags 0 .. SID_MAX + 8): the later ones stay in the tree.
const extManyShapesVal = fc
  .tuple(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 0, max: SID_MAX + 8 }))
  .map(([b, t]) => Object.freeze({ base: b, tag: t }));
const spteVal = fc
  .tuple(
    fc.integer({ min: 0, max: 3000 }),
    fc.constantFrom<Spte['level']>('4K', '2M', '1G'),
    fc.boolean(),
    fc.constantFrom<Spte['source']>('gmem', 'hva'),
    fc.boolean(),
  )
  .map(([b, level, priv, source, writable]): Spte =>
    Object.freeze({ base: b as Pfn, level, private: priv, source, writable }),
  );
const gmemVal = fc
  .tuple(
    fc.integer({ min: 0, max: 3000 }),
    fc.constantFrom<GmemExtent['state']>('allocated', 'prepared', 'poisoned'),
  )
  .map(([b, state]): GmemExtent => Object.freeze({ base: b as Pfn, state }));

/** A run of single-key writes whose bases continue (the sequential fault pattern), from s. */
function seqOps<V>(s: number, n: number, mk: (base: number) => V, base: number): Op<V>[] {
  const out: Op<V>[] = [];
  for (let i = 0; i < n; i++) out.push({ kind: 'set', s: s + i, e: s + i + 1, v: mk(base + i) });
  return out;
}

const FC = { seed: 7, numRuns: 50 };

describe('ExtentMap vs RangeMap (random operation sequences)', () => {
  for (const [name, ops, shape, val] of [
    ['ext', extOps, extShape, extVal],
    ['ext-wide', extOps, extShape, extWideVal],
    ['ext-many-shapes', extOps, extShape, extManyShapesVal],
    ['spte', spteOps, spteShape, spteVal],
    ['gmem', gmemExtentOps, gmemExtentShape, gmemVal],
  ] as const) {
    for (const tuning of [undefined, { densify: 3, sparse: 1 }]) {
      it(`${name} values, ${tuning ? 'low thresholds' : 'default thresholds'}: every query agrees`, () => {
        fc.assert(
          fc.property(
            fc.array(opArb<unknown>(val as fc.Arbitrary<unknown>), {
              minLength: 50,
              maxLength: 400,
            }),
            fc.array(queryArb, { maxLength: 6 }),
            (ops0, queries) => {
              const p = pair(
                ops as unknown as ConstructorParameters<typeof ExtentMap<{ base: number }>>[0],
                shape as unknown as ExtentShape<{ base: number }>,
                tuning,
              );
              // A base that does not join (the zero page) is only ever set one key at a time.
              const opsList = (ops0 as Op<{ base: number }>[]).map((op) =>
                op.kind === 'set' && op.e > op.s + 1 && op.v.base === 0
                  ? { ...op, v: { ...op.v, base: 1 } }
                  : op,
              );
              for (let i = 0; i < opsList.length; i++) {
                apply(p, opsList[i]!);
                if (i % 50 === 49) assertSame(p.ref, p.m, KEYS, [], 7);
              }
              assertSame(p.ref, p.m, KEYS, queries);
              assert.deepEqual(p.changes, p.refChanges, 'onChange calls');
            },
          ),
          FC,
        );
      });
    }
  }

  it('dense chunks appear for scattered single keys and runs across chunks coalesce', () => {
    const p = pair(extOps, extShape);
    // Scatter: every 3rd key of chunk 1 with unrelated bases -> dense.
    for (let k = 512; k < 1024; k += 3)
      apply(p, { kind: 'set', s: k, e: k + 1, v: { base: 10_000 + k * 7, tag: 0 } });
    assert.ok(p.m.denseChunks() >= 1, 'chunk 1 is dense');
    assertSame(p.ref, p.m, KEYS, [[500, 1100]]);
    // A run that crosses from the tree (chunk 0) through the dense chunk into chunk 2.
    for (const op of seqOps(400, 800, (b) => ({ base: b, tag: 0 }), 50_000)) apply(p, op);
    assertSame(p.ref, p.m, KEYS, [
      [399, 1201],
      [512, 1024],
    ]);
    assert.equal(p.m.size, 1);
    // Punch single keys in the dense chunk.
    for (const k of [600, 601, 900]) apply(p, { kind: 'del', s: k, e: k + 1 });
    assertSame(p.ref, p.m, KEYS, [[0, 2000]]);
    p.m.clear();
    p.ref.clear();
    assertSame(p.ref, p.m, KEYS, []);
    assert.equal(p.m.denseChunks(), 0);
  });

  it('packing boundary: bases up to PACK_LIMIT - 1 and shape ids up to SID_MAX stay dense, the next ones go to the tree', () => {
    assert.equal(PACK_LIMIT, 2 ** 26);
    assert.equal(SID_MAX, 31);
    // Scattered bases just below the limit (the last key's base is PACK_LIMIT - 1): dense.
    const p = pair(extOps, extShape);
    const top = (k: number): number => PACK_LIMIT - 1 - (511 - (k - 512)) * 3;
    for (let k = 512; k < 1024; k += 3)
      apply(p, { kind: 'set', s: k, e: k + 1, v: { base: top(k), tag: 0 } });
    apply(p, { kind: 'set', s: 1023, e: 1024, v: { base: PACK_LIMIT - 1, tag: 0 } });
    assert.equal(p.m.denseChunks(), 1);
    assertSame(p.ref, p.m, KEYS, [[500, 1100]]);
    // Base PACK_LIMIT (a packed value of 2^31) does not fit: the chunk moves back to the tree.
    apply(p, { kind: 'set', s: 700, e: 701, v: { base: PACK_LIMIT, tag: 0 } });
    assert.equal(p.m.denseChunks(), 0);
    assertSame(p.ref, p.m, KEYS, [[500, 1100]]);
    // ... and never becomes dense again while it holds that value.
    for (let k = 513; k < 1024; k += 3)
      apply(p, { kind: 'set', s: k, e: k + 1, v: { base: 5 * k, tag: 1 } });
    assert.equal(p.m.denseChunks(), 0);
    assertSame(p.ref, p.m, KEYS, [[500, 1100]]);
    // Removing it lets the chunk densify on the next new tree entry.
    apply(p, { kind: 'del', s: 700, e: 701 });
    apply(p, { kind: 'set', s: 514, e: 515, v: { base: 1, tag: 1 } });
    assert.equal(p.m.denseChunks(), 1);
    assertSame(p.ref, p.m, KEYS, [[500, 1100]]);
    // A run whose bases reach PACK_LIMIT (the last key's base does not fit) stays in the tree.
    apply(p, { kind: 'set', s: 600, e: 610, v: { base: PACK_LIMIT - 9, tag: 0 } });
    assert.equal(p.m.denseChunks(), 0);
    assertSame(p.ref, p.m, KEYS, [[500, 1100]]);

    // Shapes: the first SID_MAX interned shapes pack, a later one keeps its chunk in the tree.
    const q = pair(extOps, extShape);
    for (let t = 0; t < SID_MAX; t++)
      apply(q, { kind: 'set', s: 2 * t, e: 2 * t + 1, v: { base: 100 * t, tag: t } });
    assert.equal(q.m.denseChunks(), 1);
    assertSame(q.ref, q.m, KEYS, [[0, 600]]);
    apply(q, { kind: 'set', s: 101, e: 102, v: { base: 7, tag: SID_MAX } });
    assert.equal(q.m.denseChunks(), 0);
    assertSame(q.ref, q.m, KEYS, [[0, 600]]);
    // In another chunk, the 32nd shape never densifies; the packable shapes there do.
    for (let k = 1024; k < 1100; k += 2)
      apply(q, { kind: 'set', s: k, e: k + 1, v: { base: k * 3, tag: SID_MAX + 1 } });
    assert.equal(q.m.denseChunks(), 0);
    for (let k = 513; k < 600; k += 2)
      apply(q, { kind: 'set', s: k, e: k + 1, v: { base: k * 3, tag: 5 } });
    assert.equal(q.m.denseChunks(), 1);
    assertSame(q.ref, q.m, KEYS, [[0, 1600]]);
  });

  it('random-order fill: dense chunks; sequential fill: none (memory stays with the tree)', () => {
    const n = 1 << 14;
    const seq = new ExtentMap<Ext>(extOps, extShape);
    for (let k = 0; k < n; k++) seq.set(k, k + 1, { base: 1000 + k, tag: 0 });
    assert.equal(seq.denseChunks(), 0);
    assert.equal(seq.size, 1);
    const rnd = new ExtentMap<Ext>(extOps, extShape);
    const ref = new RangeMap<Ext>(extOps);
    let x = 12345;
    const order = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const j = (x >>> 0) % (i + 1);
      [order[i], order[j]] = [order[j]!, order[i]!];
    }
    order.forEach((k, t) => {
      rnd.set(k, k + 1, { base: 1000 + t, tag: 0 });
      ref.set(k, k + 1, { base: 1000 + t, tag: 0 });
    });
    assert.equal(rnd.denseChunks(), n / 512);
    assertSame(ref, rnd, n, [[100, 5000]], 97);
    // Huge-page-sized writes over whole chunks free them.
    rnd.set(0, n, { base: 7, tag: 1 });
    ref.set(0, n, { base: 7, tag: 1 });
    assert.equal(rnd.denseChunks(), 0);
    assertSame(ref, rnd, n, [], 97);
  });

  it('keys near 2^53 and far apart: chunk arithmetic at the top of the key space', () => {
    const p = pair(extOps, extShape, { densify: 3, sparse: 1 });
    const tops = [MAX_KEY - 3 * 512, 2 ** 40 + 100, 7 * 512 - 2];
    let x = 99;
    const rnd = (n: number): number => {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      return (x >>> 0) % n;
    };
    for (let i = 0; i < 3000; i++) {
      const t = tops[rnd(3)]!;
      const s = Math.min(t + rnd(3 * 512), MAX_KEY - 1);
      const r = rnd(20);
      if (r < 14)
        apply(p, { kind: 'set', s, e: s + 1, v: { base: rnd(4) * 1000 + rnd(600), tag: rnd(2) } });
      else if (r < 16) {
        const e = Math.min(s + 1 + rnd(900), MAX_KEY);
        apply(p, { kind: 'set', s, e, v: { base: 1 + rnd(5000), tag: rnd(2) } });
      } else if (r < 19) apply(p, { kind: 'del', s, e: s + 1 });
      else apply(p, { kind: 'del', s, e: Math.min(s + 1 + rnd(900), MAX_KEY) });
    }
    p.m.checkInvariants();
    const j = (v: unknown): string => JSON.stringify(v ?? null);
    assert.equal(j([...p.m.entries()]), j([...p.ref.entries()]));
    assert.equal(p.m.size, p.ref.size);
    assert.equal(p.m.totalCovered(), p.ref.totalCovered());
    assert.equal(j(p.m.last()), j(p.ref.last()));
    for (const t of tops) {
      for (let k = t - 2; k < Math.min(t + 3 * 512 + 2, MAX_KEY + 1); k += 3) {
        assert.equal(j(p.m.get(k)), j(p.ref.get(k)), `get(${k})`);
        assert.equal(j(p.m.entryAt(k)), j(p.ref.entryAt(k)), `entryAt(${k})`);
        assert.equal(j(p.m.floorEntry(k)), j(p.ref.floorEntry(k)), `floorEntry(${k})`);
        assert.equal(j(p.m.ceilEntry(k)), j(p.ref.ceilEntry(k)), `ceilEntry(${k})`);
      }
      assert.equal(j(p.m.piecesIn(t, t + 1600)), j(p.ref.piecesIn(t, t + 1600)));
      assert.deepEqual(p.m.gapsIn(t, t + 1600), p.ref.gapsIn(t, t + 1600));
    }
  });

  it('clone and emptyLike', () => {
    fc.assert(
      fc.property(
        fc.array(opArb(extVal), { maxLength: 300 }),
        fc.array(opArb(extVal), { maxLength: 100 }),
        (before, after) => {
          const p = pair(extOps, extShape, { densify: 3, sparse: 1 });
          for (const op of before) apply(p, op);
          const c = p.m.clone();
          const cref = p.ref.clone();
          assert.ok(c instanceof ExtentMap);
          assert.ok(p.m.emptyLike() instanceof ExtentMap);
          assert.equal(p.m.emptyLike().size, 0);
          for (const op of after) apply(p, op);
          for (const op of after.slice(0, 20)) {
            if (op.kind === 'set') {
              c.delete(op.s, op.e);
              cref.delete(op.s, op.e);
            }
          }
          assertSame(p.ref, p.m, KEYS, [], 5);
          assertSame(cref, c, KEYS, [], 5);
        },
      ),
      { seed: 3, numRuns: 60 },
    );
  });

  it('setTransient keeps copies: a sequential run extends in place, other writes store a copy', () => {
    for (const m of [new RangeMap<Ext>(extOps), new ExtentMap<Ext>(extOps, extShape)]) {
      const scratch = { base: 100, tag: 1 };
      for (let k = 0; k < 8; k++) {
        scratch.base = 100 + k;
        scratch.tag = 1;
        m.setTransient(k, k + 1, scratch);
      }
      scratch.base = 7;
      scratch.tag = 2;
      m.setTransient(20, 22, scratch);
      clobber(scratch);
      assert.deepEqual(
        [...m.entries()].map((e) => [e.start, e.end, e.value.base, e.value.tag]),
        [
          [0, 8, 100, 1],
          [20, 22, 7, 2],
        ],
      );
    }
  });

  it('setTransient of sequential keys (the fault path): same entries as RangeMap, with and without the shape key', () => {
    // Keys mostly one after another with continuing bases (the tree's hot entry grows in place),
    // mixed with base jumps, the zero page (never continues a run), shape changes, gaps and
    // rewrites of earlier keys.
    const step = fc.record({
      gap: fc.oneof(
        { weight: 8, arbitrary: fc.constant(0) },
        fc.integer({ min: -3, max: 4 }),
        fc.integer({ min: -600, max: 600 }),
      ),
      base: fc.oneof(
        { weight: 8, arbitrary: fc.constant('next' as const) },
        { weight: 1, arbitrary: fc.constant('zero' as const) },
        fc.integer({ min: 1, max: 60 }),
      ),
      level: fc.constantFrom<Spte['level']>('4K', '4K', '2M'),
      private: fc.boolean(),
      writable: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, fc.constant(false)),
      keyed: fc.boolean(),
      lookup: fc.oneof({ weight: 3, arbitrary: fc.constant(true) }, fc.constant(false)),
    });
    fc.assert(
      fc.property(
        fc.array(step, { minLength: 1, maxLength: 120 }),
        fc.boolean(),
        (steps, dense) => {
          // dense: low thresholds, so scattered writes make chunks dense (the random-order path,
          // where the shape key goes to the slab write).
          const p = pair<Spte>(spteOps, spteShape, dense ? { densify: 2, sparse: 1 } : undefined);
          const scratch: { -readonly [F in keyof Spte]: Spte[F] } = {
            base: 0 as Pfn,
            level: '4K',
            private: false,
            source: 'gmem',
            writable: true,
          };
          let k = 10;
          let base = 1000;
          for (const st of steps) {
            k = Math.max(0, k + st.gap);
            base = st.base === 'next' ? base + 1 : st.base === 'zero' ? ZERO_PFN : st.base * 7;
            scratch.base = base as Pfn;
            scratch.level = st.level;
            scratch.private = st.private;
            scratch.writable = st.writable;
            // The fault path looks the key up (a miss) before it installs it.
            if (st.lookup) assert.equal(JSON.stringify(p.m.get(k)), JSON.stringify(p.ref.get(k)));
            p.ref.set(k, k + 1, { ...scratch });
            p.m.setTransient(k, k + 1, scratch, st.keyed ? spteShape.key(scratch) : undefined);
            k++;
          }
          clobber(scratch);
          assertSame(p.ref, p.m, k + 4, [[0, k + 4]]);
          assert.deepEqual(p.changes, p.refChanges, 'onChange ranges');
        },
      ),
      { seed: 11, numRuns: 200 },
    );
    // The hot-entry hooks of an ExtentMap itself offer nothing to extend.
    const m = new ExtentMap<Ext>(extOps, extShape);
    m.set(0, 4, { base: 1, tag: 0 });
    assert.equal(m.hotRunEndingAt(4, 5), -1);
    assert.throws(() => m.hotValue());
    assert.throws(() => m.extendHotTo(4, 5));
  });

  it('overrides every public RangeMap method', () => {
    const names = Object.getOwnPropertyNames(RangeMap.prototype).filter((n) => n !== 'constructor');
    const own = new Set(Object.getOwnPropertyNames(ExtentMap.prototype));
    const priv = new Set([
      'reset',
      'allocLeaf',
      'freeLeaf',
      'allocInternal',
      'freeInternal',
      'findLeaf',
      'resizeHints',
      'descend',
      'dropFinger',
      'leafFloor',
      'entryAtSlot',
      'shiftValue',
      'extendHot',
      'setSlow',
      'slotAfter',
      'firstLeaf',
      'placeFree',
      'deleteRange',
      'parentOf',
      'setParent',
      'firstKey',
      'childIndex',
      'propagateLeafFirstKey',
      'propagateUp',
      'insertSlot',
      'removeSlots',
      'insertAt',
      'insertChild',
      'insertChildSlot',
      'removeAt',
      'removeLeaf',
      'removeChild',
      'maybeMergeLeaf',
      'absorb',
    ]);
    const missing = names.filter((n) => !priv.has(n) && !own.has(n));
    assert.deepEqual(missing, []);
  });

  it('throws on mutation inside forEachIn and entries()', () => {
    const m = new ExtentMap<Ext>(extOps, extShape);
    for (let k = 0; k < 100; k++) m.set(k * 2, k * 2 + 1, { base: k * 5, tag: 0 });
    assert.throws(() => m.forEachIn(0, 300, () => m.delete(0, 1)));
    assert.throws(() => {
      for (const e of m.entries()) m.set(e.start, e.end, { base: 1, tag: 1 });
    });
    assert.throws(() => m.set(-1, 2, { base: 0, tag: 0 }), RangeError);
    const s2 = new ExtentMap<Spte>(spteOps, spteShape);
    const zero: Spte = {
      base: 0 as Pfn,
      level: '4K',
      private: false,
      source: 'hva',
      writable: false,
    };
    assert.throws(() => s2.set(5, 7, zero), RangeError);
    s2.set(5, 6, zero);
    s2.set(6, 7, { ...zero, base: 1 as Pfn });
    assert.equal(s2.size, 2, 'the zero page never continues into the next frame');
  });
});

describe('ChunkOffsets (the dense chunks index)', () => {
  it('agrees with a Map over random sets and deletes, including huge and colliding indexes', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.tuple(
            fc.boolean(),
            fc.oneof(
              fc.integer({ min: 0, max: 300 }),
              fc.integer({ min: 2 ** 40, max: 2 ** 40 + 50 }),
              // Indexes that differ only above bit 32 hash alike in the low word.
              fc.integer({ min: 0, max: 20 }).map((i) => i * 2 ** 32 + 7),
            ),
            fc.integer({ min: 0, max: 1 << 20 }),
          ),
          { maxLength: 600 },
        ),
        (ops) => {
          const t = new ChunkOffsets();
          const ref = new Map<number, number>();
          for (const [del, c, off] of ops) {
            if (del) {
              t.delete(c);
              ref.delete(c);
            } else {
              t.set(c, off);
              ref.set(c, off);
            }
            for (const k of [c, c + 1, 0, 2 ** 40]) assert.equal(t.get(k), ref.get(k) ?? -1);
          }
          for (const [k, v] of ref) assert.equal(t.get(k), v);
        },
      ),
      { seed: 11, numRuns: 200 },
    );
  });

  it('agrees with a Map on a small, full table (probe runs wrap around the end)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 9 })), {
          minLength: 200,
          maxLength: 2000,
        }),
        (ops) => {
          const t = new ChunkOffsets();
          const ref = new Map<number, number>();
          ops.forEach(([del, c], n) => {
            if (del) {
              t.delete(c);
              ref.delete(c);
            } else {
              t.set(c, n);
              ref.set(c, n);
            }
            for (let k = 0; k <= 9; k++) assert.equal(t.get(k), ref.get(k) ?? -1);
          });
        },
      ),
      { seed: 12, numRuns: 100 },
    );
  });
});
