/**
 * Large peeks and pokes (issue 9): time and memory proportional to the size, on the model and
 * (when usable) on /dev/kvm.
 *
 * Setup (untimed), per backend: one 16 MiB + 8 KiB anonymous mapping filled with a pattern that
 * differs per page. An op here is `stepTrace` (handle resolution, the backend's access, the hex of
 * a peek's bytes). Pokes carry their bytes directly (the parser's hex decoding is not measured).
 * The result line (`formatResult`, JSON.stringify of the 32 MiB hex string) is timed once for
 * information: V8's JSON.stringify of a 32 MiB string costs about 1.8x what 16 strings of 2 MiB
 * cost, so it is kept out of the ratios.
 *
 * Timed, best of 3 after a warm-up pass:
 * - one 16 MiB peek, 16 peeks of 1 MiB, 256 peeks of 64 KiB over the same bytes;
 * - one 16 MiB poke, 16 pokes of 1 MiB.
 * Reported: the 16 MiB peek in ms, and the ratios 16 MiB / (16 x 1 MiB) for peek and poke and
 * 16 MiB / (256 x 64 KiB) for peek: time per byte of one large op over that of smaller ones
 * (target <= 1.5 each: cost proportional to size).
 *
 * Memory: each backend's 16 MiB peek runs once in a fresh process (`node --expose-gc
 * big_io.bench.js --memory BACKEND`), after the setup and a gc: the growth of the peak RSS
 * (getrusage maxrss) over the op is its peak memory, target < 8 x 16 MiB; the JS heap plus array
 * buffers held afterwards (the result alive) is reported for information.
 */
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { openKvmBackend } from '../src/backends/kvm/index.js';
import { ModelBackend } from '../src/backends/model.js';
import { getProfile } from '../src/core/profiles/index.js';
import { formatResult } from '../src/trace/format.js';
import { parseTrace } from '../src/trace/parse.js';
import { HandleTable, stepTrace } from '../src/trace/runner.js';
import type { Backend, TraceOp } from '../src/trace/types.js';
import { atMost, gc, heapBytes, now, row, type BenchRow } from './util.js';

const MiB = 1 << 20;
const BIG = 16 * MiB;
const RATIO = atMost(1.5);
const SELF = fileURLToPath(import.meta.url);

type Subject = { readonly name: string; readonly backend: Backend; readonly dispose: () => void };

/** The model of linux-6.18 and, when usable, /dev/kvm; or why not. */
function subjects(): { list: Subject[]; skipped?: string } {
  const list: Subject[] = [
    {
      name: 'model',
      backend: new ModelBackend(getProfile('linux-6.18')!, { events: false }),
      dispose: () => {},
    },
  ];
  const k = openKvmBackend();
  if ('unavailable' in k) return { list, skipped: k.unavailable };
  list.push({ name: 'kvm', backend: k, dispose: () => k.dispose() });
  return { list };
}

const MMAP = { op: 'mmap', fd: null, length: BIG + 8192, prot: 3, flags: 0x22, as: 'm' };

/** One op, parsed after the mmap that creates `m` (the parser checks handle names). */
function op(o: object): TraceOp {
  const { ops, errors } = parseTrace([MMAP, o].map((x) => JSON.stringify(x)).join('\n'), 'bench');
  if (errors.length > 0) throw new Error(`bench setup: ${errors[0]!.message}`);
  return ops[1]!;
}
const peekOp = (off: number, len: number): TraceOp => op({ op: 'peek', addr: `m+${off}`, len });
function pokeOp(off: number, bytes: Uint8Array): TraceOp {
  return { ...op({ op: 'poke', addr: `m+${off}`, hex: '00' }), bytes } as TraceOp;
}

function pattern(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 12) * 13) & 255;
  return b;
}

/** Begin a trace on `b` with the 16 MiB mapping `m` filled; returns the handle table. */
function setup(b: Backend): HandleTable {
  const t = new HandleTable(b.begin());
  const steps = [parseTrace(JSON.stringify(MMAP), 'bench').ops[0]!, pokeOp(0, pattern(BIG))];
  for (const s of steps) {
    const r = stepTrace(s, b, t);
    if (!r.ok) throw new Error(`bench setup: ${formatResult(r)}`);
  }
  return t;
}

/** Run ops; every one must succeed. With `format`, also build each result line. */
function runOps(b: Backend, t: HandleTable, ops: readonly TraceOp[], format: boolean): void {
  for (const o of ops) {
    const r = stepTrace(o, b, t);
    if (!r.ok) throw new Error(`bench: ${o.op} failed: ${formatResult(r)}`);
    if (format) formatResult(r);
  }
}

/** Best of 3 after a warm-up, seconds. */
function best(b: Backend, t: HandleTable, ops: readonly TraceOp[], format = false): number {
  runOps(b, t, ops, format);
  let min = Infinity;
  for (let i = 0; i < 3; i++) {
    gc();
    const t0 = now();
    runOps(b, t, ops, format);
    min = Math.min(min, now() - t0);
  }
  return min;
}

function split(total: number, part: number, make: (off: number, len: number) => TraceOp) {
  return Array.from({ length: total / part }, (_, i) => make(i * part, part));
}

function timeRows(s: Subject): BenchRow[] {
  const b = s.backend;
  const t = setup(b);
  try {
    const data = pattern(BIG);
    const peek16 = best(b, t, [peekOp(0, BIG)]);
    const line16 = best(b, t, [peekOp(0, BIG)], true);
    const peek1 = best(b, t, split(BIG, MiB, peekOp));
    const peek64k = best(b, t, split(BIG, 64 * 1024, peekOp));
    const poke16 = best(b, t, [pokeOp(0, data)]);
    const poke1 = best(
      b,
      t,
      split(BIG, MiB, (off, len) => pokeOp(off, data.subarray(off, off + len))),
    );
    const g = 'bigio';
    return [
      row(
        g,
        `${s.name}: one 16 MiB peek`,
        peek16 * 1000,
        'ms',
        undefined,
        `${(16 / peek16).toFixed(0)} MiB/s`,
      ),
      row(
        g,
        `${s.name}: the same with its result line`,
        line16 * 1000,
        'ms',
        undefined,
        'stepTrace + formatResult',
      ),
      row(g, `${s.name}: peek 16 MiB / 16 x 1 MiB`, peek16 / peek1, 'x', RATIO),
      row(g, `${s.name}: peek 16 MiB / 256 x 64 KiB`, peek16 / peek64k, 'x', RATIO),
      row(
        g,
        `${s.name}: poke 16 MiB / 16 x 1 MiB`,
        poke16 / poke1,
        'x',
        RATIO,
        `16 MiB poke ${(poke16 * 1000).toFixed(0)} ms`,
      ),
    ];
  } finally {
    b.end();
  }
}

/** The --memory child: one 16 MiB peek after setup and gc; prints JSON {peak, held} in bytes. */
function memoryChild(name: string): void {
  const s = subjects().list.find((x) => x.name === name);
  if (s === undefined) throw new Error(`bench: no backend ${name} here`);
  const t = setup(s.backend);
  const peek = peekOp(0, BIG);
  gc();
  const held0 = heapBytes();
  const rss0 = process.resourceUsage().maxRSS;
  const line = formatResult(stepTrace(peek, s.backend, t));
  const peak = (process.resourceUsage().maxRSS - rss0) * 1024;
  gc();
  const held = heapBytes() - held0;
  if (line.length < 2 * BIG) throw new Error('bench: the peek returned too little');
  s.backend.end();
  s.dispose();
  process.stdout.write(JSON.stringify({ peak, held }));
}

function memoryRows(name: string): BenchRow[] {
  const r = spawnSync(process.execPath, ['--expose-gc', SELF, '--memory', name], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 120_000,
  });
  if (r.status !== 0) throw new Error(`bench bigio: memory child for ${name} failed`);
  const m = JSON.parse(r.stdout) as { peak: number; held: number };
  return [
    row(
      'bigio',
      `${name}: peak memory of one 16 MiB peek`,
      m.peak / MiB,
      'MiB',
      atMost(8 * 16, 'MiB'),
      'growth of maxrss over the op, fresh process',
    ),
    row(
      'bigio',
      `${name}: held after it (result alive)`,
      m.held / MiB,
      'MiB',
      undefined,
      'JS heap + array buffers',
    ),
  ];
}

export function benchBigIo(): BenchRow[] {
  const { list, skipped } = subjects();
  const rows: BenchRow[] = [];
  for (const s of list) {
    rows.push(...memoryRows(s.name));
    rows.push(...timeRows(s));
    s.dispose();
  }
  if (skipped !== undefined)
    process.stderr.write(`bigio: kvm rows skipped, /dev/kvm is not usable: ${skipped}\n`);
  return rows;
}

if (process.argv[1] === SELF && process.argv[2] === '--memory') memoryChild(process.argv[3] ?? '');
