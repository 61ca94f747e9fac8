/**
 * Shared helpers for the benchmarks (bench/*.bench.ts): result rows, clocks, gc, deterministic
 * random numbers. Benchmarks only; tests never time anything.
 */

/** One measured figure. `target`/`pass` only for figures the project has a target for. */
export type BenchRow = {
  /** Benchmark group (fault, attributes, bigguest, replay, rangemap). */
  group: string;
  name: string;
  value: number;
  unit: string;
  /** Human-readable target, e.g. ">= 2,000,000". */
  target?: string;
  pass?: boolean;
  /** What exactly was measured (sizes, settings). */
  note?: string;
};

export type Target = { readonly text: string; readonly ok: (v: number) => boolean };

export const atLeast = (x: number): Target => ({
  text: `>= ${x.toLocaleString('en-US')}`,
  ok: (v) => v >= x,
});
export const atMost = (x: number, unit = ''): Target => ({
  text: `< ${x.toLocaleString('en-US')}${unit === '' ? '' : ' ' + unit}`,
  ok: (v) => v < x,
});

export function row(
  group: string,
  name: string,
  value: number,
  unit: string,
  target?: Target,
  note?: string,
): BenchRow {
  const r: BenchRow = { group, name, value, unit };
  if (target !== undefined) {
    r.target = target.text;
    r.pass = target.ok(value);
  }
  if (note !== undefined) r.note = note;
  return r;
}

/** The median of `xs` (the mean of the two middle values for an even count). */
export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Monotonic clock in seconds. */
export function now(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Full gc when node runs with --expose-gc (run.ts makes sure it does); no-op otherwise. */
export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g !== undefined) {
    g();
    g();
  }
}

export function hasGc(): boolean {
  return typeof (globalThis as { gc?: unknown }).gc === 'function';
}

/** JS heap plus typed-array backing stores (RangeMap slabs live outside the JS heap). */
export function heapBytes(): number {
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

/** Deterministic xorshift32. */
export function prng(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

/** A deterministic permutation of 0..n-1 (Fisher-Yates). */
export function permutation(n: number, seed: number): Uint32Array {
  const a = new Uint32Array(n);
  for (let i = 0; i < n; i++) a[i] = i;
  const r = prng(seed);
  for (let i = n - 1; i > 0; i--) {
    const j = r() % (i + 1);
    const t = a[i]!;
    a[i] = a[j]!;
    a[j] = t;
  }
  return a;
}

/** Unwrap a model Result or throw (benchmarks set up known-good state). */
export function must<T>(r: { ok: true; value: T } | { ok: false; errno: string }, what: string): T {
  if (!r.ok) throw new Error(`bench setup: ${what} failed with ${r.errno}`);
  return r.value;
}
