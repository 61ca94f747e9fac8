/**
 * Micro-benchmarks for src/core/base/ranges/range_map.ts.
 *
 * Figures (all with 1,000,000 stored entries unless noted):
 * - `get` at random keys and at sequential keys (ns/op)
 * - `set(k, k+1, v)` that extends a neighbour: sequentially in both directions (the fault handler
 *   populating a range; the map stays one entry), and at random entries of a 1M-entry and of a
 *   cache-resident 10k-entry map (ns/op, including the allocation of the extent value)
 * - random mixed set/delete of 1-4 key ranges (ns/op)
 * - memory per entry for 1M entries with small plain number values: heapUsed plus arrayBuffers
 *   (the map's key slabs are typed arrays, whose backing stores live outside the JS heap); run node
 *   with --expose-gc for a stable figure
 *
 * Random-key figures on a 1M-entry map are bound by memory latency (the map's slabs are ~25 MB),
 * so they depend heavily on the machine's DRAM latency and on noisy neighbours.
 *
 * Not a test: no assertions. Run e.g. `node --expose-gc -e "import('./dist/bench/range_map.bench.js')
 * .then(m => m.benchRangeMap()).then(r => console.table(r))"`.
 */
import { RangeMap, extentOps } from '../src/core/base/ranges/range_map.js';

type Ext = { readonly base: number; readonly tag: number };
const extOps = extentOps<Ext>((a, b) => a.tag === b.tag);

const N = 1_000_000;

/** Deterministic xorshift32. */
function prng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) {
    g();
    g();
  }
}

function nowNs(): bigint {
  return process.hrtime.bigint();
}

/**
 * Time `ops` operations performed by `fn` (best of `reps` runs after one warm-up); `setup`, if
 * given, runs untimed before each run.
 */
function timeNsPerOp(ops: number, reps: number, fn: () => number, setup?: () => void): number {
  setup?.();
  let sink = fn(); // warm-up (and JIT)
  let best = Infinity;
  for (let r = 0; r < reps; r++) {
    setup?.();
    const t0 = nowNs();
    sink += fn();
    const dt = Number(nowNs() - t0);
    if (dt < best) best = dt;
  }
  if (sink === -1) console.log('unreachable');
  return best / ops;
}

/** 1M separate entries [2i, 2i+1) with small plain number values. */
function buildPlain(): RangeMap<number> {
  const m = new RangeMap<number>();
  for (let i = 0; i < N; i++) m.set(2 * i, 2 * i + 1, i & 7);
  return m;
}

export async function benchRangeMap(): Promise<
  Array<{ name: string; value: number; unit: string }>
> {
  const out: Array<{ name: string; value: number; unit: string }> = [];

  // --- memory -------------------------------------------------------------------------------
  gc();
  const h0 = process.memoryUsage();
  let plain: RangeMap<number> | undefined = buildPlain();
  gc();
  const h1 = process.memoryUsage();
  const bytes = h1.heapUsed - h0.heapUsed + (h1.arrayBuffers - h0.arrayBuffers);
  out.push({ name: 'heap per entry (1M plain entries)', value: bytes / N, unit: 'B/entry' });
  out.push({ name: 'heap total (1M plain entries)', value: bytes / 2 ** 20, unit: 'MiB' });
  const st = plain.treeStats();
  out.push({ name: 'tree height (1M entries)', value: st.height, unit: 'levels' });

  // --- get at random keys ---------------------------------------------------------------------
  const rnd = prng(42);
  const Q = 1_000_000;
  const keys = new Float64Array(Q);
  for (let i = 0; i < Q; i++) keys[i] = rnd() % (2 * N);
  const m1 = plain;
  out.push({
    name: 'get, random key (1M entries)',
    value: timeNsPerOp(Q, 5, () => {
      let s = 0;
      for (let i = 0; i < Q; i++) s += m1.get(keys[i]!) ?? 0;
      return s;
    }),
    unit: 'ns/op',
  });
  out.push({
    name: 'get, sequential keys (1M entries)',
    value: timeNsPerOp(Q, 5, () => {
      let s = 0;
      for (let i = 0; i < Q; i++) s += m1.get(i) ?? 0;
      return s;
    }),
    unit: 'ns/op',
  });

  // --- random set/delete with 1M entries ----------------------------------------------------------
  const R = 500_000;
  const rs = new Float64Array(R);
  const rl = new Uint8Array(R);
  for (let i = 0; i < R; i++) {
    rs[i] = rnd() % (2 * N);
    rl[i] = 1 + (rnd() % 4);
  }
  const base = plain;
  let mixed = base.clone();
  out.push({
    name: 'random set/delete, 1-4 keys (1M entries)',
    value: timeNsPerOp(
      R,
      3,
      () => {
        const m = mixed;
        for (let i = 0; i < R; i++) {
          const s = rs[i]!;
          if (i & 1) m.delete(s, s + rl[i]!);
          else m.set(s, s + rl[i]!, i & 7);
        }
        return m.size;
      },
      () => {
        mixed = base.clone(); // fresh 1M-entry map for each repetition (untimed)
      },
    ),
    unit: 'ns/op',
  });
  plain = undefined;
  mixed = new RangeMap<number>();

  // --- neighbour-extending set ------------------------------------------------------------------
  const S = 1_000_000;
  out.push({
    name: 'set extending left neighbour, sequential (map stays 1 entry)',
    value: timeNsPerOp(S, 5, () => {
      const m = new RangeMap<Ext>(extOps);
      for (let k = 0; k < S; k++) m.set(k, k + 1, { base: 7000 + k, tag: 0 });
      return m.size;
    }),
    unit: 'ns/op',
  });
  out.push({
    name: 'set extending right neighbour, descending (map stays 1 entry)',
    value: timeNsPerOp(S, 5, () => {
      const m = new RangeMap<Ext>(extOps);
      for (let k = S - 1; k >= 0; k--) m.set(k, k + 1, { base: 7000 + k, tag: 0 });
      return m.size;
    }),
    unit: 'ns/op',
  });

  // 1M extents spaced 1024 keys apart; each op grows a random one by a key at its end.
  const ext = new RangeMap<Ext>(extOps);
  for (let i = 0; i < N; i++) ext.set(i * 1024, i * 1024 + 1, { base: i * 4096, tag: 0 });
  const lens = new Uint16Array(N).fill(1);
  const E = 500_000;
  const which = new Uint32Array(E);
  for (let i = 0; i < E; i++) which[i] = rnd() % N;
  out.push({
    name: 'set extending a random neighbour (1M entries)',
    value: timeNsPerOp(E, 3, () => {
      for (let j = 0; j < E; j++) {
        const i = which[j]!;
        const len = lens[i]!;
        if (len >= 1000) continue;
        const k = i * 1024 + len;
        ext.set(k, k + 1, { base: i * 4096 + len, tag: 0 });
        lens[i] = len + 1;
      }
      return ext.size;
    }),
    unit: 'ns/op',
  });
  if (ext.size !== N) throw new Error(`bench: extents unexpectedly merged (${ext.size})`);

  // The same two operations on a cache-resident map (10k entries), for the compute cost alone.
  const SMALL = 10_000;
  const small = new RangeMap<Ext>(extOps);
  for (let i = 0; i < SMALL; i++) small.set(i * 1024, i * 1024 + 1, { base: i * 4096, tag: 0 });
  const slens = new Uint16Array(SMALL).fill(1);
  for (let i = 0; i < E; i++) which[i] = rnd() % SMALL;
  out.push({
    name: 'set extending a random neighbour (10k entries)',
    value: timeNsPerOp(E, 3, () => {
      for (let j = 0; j < E; j++) {
        const i = which[j]!;
        const len = slens[i]!;
        if (len >= 1000) continue;
        const k = i * 1024 + len;
        small.set(k, k + 1, { base: i * 4096 + len, tag: 0 });
        slens[i] = len + 1;
      }
      return small.size;
    }),
    unit: 'ns/op',
  });
  for (let i = 0; i < Q; i++) keys[i] = rnd() % (SMALL * 1024);
  out.push({
    name: 'get, random key (10k entries)',
    value: timeNsPerOp(Q, 5, () => {
      let s = 0;
      for (let i = 0; i < Q; i++) s += small.get(keys[i]!)?.base ?? 0;
      return s;
    }),
    unit: 'ns/op',
  });

  return out;
}
