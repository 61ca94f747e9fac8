/**
 * `npm run bench` entry: runs the benchmark groups and prints one table row per figure
 * (benchmark, value, unit, target, pass/fail).
 *
 *   npm run bench                      all groups (about 1.5 minutes)
 *   npm run bench -- fault replay      only groups whose id contains one of the arguments
 *   npm run bench -- --json            JSON array of rows (with notes) instead of the table
 *   npm run bench -- --notes           add a column saying what exactly each row measured
 *   npm run bench -- --strict          exit code 1 when a target is missed
 *   npm run bench -- --list            the group ids
 *   npm run bench -- --profile NAME    CPU-profile a hot path (bench/profile.ts) and print the top
 *                                      self-time functions with their src/ file:line
 *
 * Every group runs in its own child process `node --expose-gc dist/bench/run.js --child GROUP`:
 * the heap figures need gc(), and separate processes keep one group's garbage, heap growth and
 * JIT feedback from skewing the next one. Exit code 0; with --strict, 1 when a target is missed.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { benchAttributes } from './attributes.bench.js';
import { benchBigGuest } from './big_guest.bench.js';
import { benchBigIo } from './big_io.bench.js';
import { formatTop, topLines, topSelfTime } from './cpuprof.js';
import { benchFaults } from './faults.bench.js';
import { benchFfi } from './ffi.bench.js';
import { benchDifferential } from './differential.bench.js';
import { benchCheck, benchCheckLong } from './check.bench.js';
import { benchCheckCli } from './check_cli.bench.js';
import { benchMeasure } from './measure.bench.js';
import { benchMeasureTdx } from './measure_tdx.bench.js';
import { benchMemslots } from './memslots.bench.js';
import { PROFILE_TARGETS } from './profile.js';
import { benchRangeMap } from './range_map.bench.js';
import { benchReplay } from './replay.bench.js';
import { benchStream } from './stream.bench.js';
import { row, type BenchRow } from './util.js';

const GROUPS: Record<string, { what: string; run: () => BenchRow[] | Promise<BenchRow[]> }> = {
  fault: { what: 'first-touch guest faults/s (target >= 2M/s)', run: () => benchFaults() },
  attributes: {
    what: 'KVM_SET_MEMORY_ATTRIBUTES 1 GiB vs 1 TiB (target within 2x)',
    run: () => benchAttributes(),
  },
  bigguest: {
    what: '64 TiB guest with 1M attribute ranges: heap (target < 1 GiB) and build time',
    run: () => benchBigGuest(),
  },
  memslots: {
    what: 'creating 32,764 memslots: per-slot time vs 4,096 slots (target ratio < 3)',
    run: () => benchMemslots(),
  },
  replay: {
    what: 'trace replay ops/s without KVM_RUN (target >= 100k/s)',
    run: () => benchReplay(),
  },
  stream: {
    what: 'gmemlab replay of a 1M-op trace: first result (target < 0.1 s), bounded memory, | head -1',
    run: () => benchStream(),
  },
  check: {
    what: 'replay with every invariant checked vs unchecked (target within 3x; gmemlab check vs replay 1.3x)',
    run: () => [...benchCheck(), ...benchCheckLong(), ...benchCheckCli()],
  },
  rangemap: {
    what: 'RangeMap micro-benchmarks (bench/range_map.bench.ts)',
    run: async () => (await benchRangeMap()).map((r) => row('rangemap', r.name, r.value, r.unit)),
  },
  ffi: {
    what: 'koffi FFI cost per ioctl/fallocate vs a C program (target within 2x; needs /dev/kvm, cc)',
    run: () => benchFfi(),
  },
  bigio: {
    what: '16 MiB peek/poke vs smaller ones (target within 1.5x per byte) and peak memory (< 8x)',
    run: () => benchBigIo(),
  },
  measure: {
    what: 'gmemlab measure snp on a 2 MiB OVMF image, spawned, process start included (target < 0.2 s)',
    run: () => benchMeasure(),
  },
  'measure-tdx': {
    what: 'gmemlab measure tdx on a 2 MiB TDVF image, spawned, process start included (target < 0.2 s)',
    run: () => benchMeasureTdx(),
  },
  differential: {
    what: 'differential fuzzing ops compared per second, model vs /dev/kvm (target >= 2,000/s)',
    run: () => benchDifferential(),
  },
};

const SELF = fileURLToPath(import.meta.url);
const CHILD_TIMEOUT_MS = 180_000;

function fmtValue(v: number): string {
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  if (Math.abs(v) >= 100) return v.toFixed(0);
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toPrecision(3);
}

function table(rows: readonly BenchRow[], notes: boolean): string {
  const head = ['benchmark', 'value', 'unit', 'target', 'result'];
  if (notes) head.push('note');
  const body = rows.map((r) => {
    const cells = [
      `[${r.group}] ${r.name}`,
      fmtValue(r.value),
      r.unit,
      r.target ?? '',
      r.pass === undefined ? '' : r.pass ? 'PASS' : 'FAIL',
    ];
    if (notes) cells.push(r.note ?? '');
    return cells;
  });
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (i === 1 ? c.padStart(w[i]!) : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), w.map((n) => '-'.repeat(n)).join('  '), ...body.map(line)].join('\n');
}

/** Run one group in a child process with --expose-gc; returns its rows. */
function runChild(group: string): BenchRow[] {
  const r = spawnSync(process.execPath, ['--expose-gc', SELF, '--child', group], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: CHILD_TIMEOUT_MS,
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0 || r.error !== undefined)
    throw new Error(`bench group ${group} failed (${r.error?.message ?? `exit ${r.status}`})`);
  return JSON.parse(r.stdout) as BenchRow[];
}

function profile(name: string): void {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-prof-'));
  const file = join(dir, `${name}.cpuprofile`);
  const driver = resolve(SELF, '..', 'profile.js');
  const r = spawnSync(process.execPath, [driver, name, file], { stdio: 'inherit' });
  if (r.status !== 0)
    throw new Error(
      `profile driver failed (exit ${r.status}); targets: ${PROFILE_TARGETS.join(', ')}`,
    );
  console.log(`# ${name}: top self time (${file})`);
  console.log(formatTop(topSelfTime(file, 25)));
  console.log(`\n# ${name}: hottest lines (share of the samples V8 attributed to a line)`);
  console.log(formatTop(topLines(file, 25)));
  if (process.env['GMEMLAB_KEEP_PROFILE'] === undefined) rmSync(dir, { recursive: true });
}

async function main(argv: readonly string[]): Promise<number> {
  const ci = argv.indexOf('--child');
  if (ci >= 0) {
    const g = GROUPS[argv[ci + 1] ?? ''];
    if (g === undefined) throw new Error(`unknown group ${argv[ci + 1]}`);
    process.stdout.write(JSON.stringify(await g.run()));
    return 0;
  }
  if (argv.includes('--help') || argv.includes('--list')) {
    for (const [id, g] of Object.entries(GROUPS)) console.log(`${id.padEnd(11)} ${g.what}`);
    console.log(`\n--profile NAME: ${PROFILE_TARGETS.join(', ')}`);
    return 0;
  }
  const pi = argv.indexOf('--profile');
  if (pi >= 0) {
    profile(argv[pi + 1] ?? 'fault-run');
    return 0;
  }
  const json = argv.includes('--json');
  const filters = argv.filter((a) => !a.startsWith('--'));
  const ids = Object.keys(GROUPS).filter(
    (id) => filters.length === 0 || filters.some((f) => id.includes(f)),
  );
  if (ids.length === 0) {
    console.error(`no benchmark group matches ${filters.join(' ')} (see --list)`);
    return 2;
  }
  const rows: BenchRow[] = [];
  const t0 = Date.now();
  for (const id of ids) {
    if (!json) process.stderr.write(`running ${id}...\n`);
    rows.push(...runChild(id));
  }
  if (json) console.log(JSON.stringify(rows, null, 2));
  else {
    console.log(table(rows, argv.includes('--notes')));
    const withTarget = rows.filter((r) => r.pass !== undefined);
    console.log(
      `\n${withTarget.filter((r) => r.pass).length}/${withTarget.length} targets met, ` +
        `${((Date.now() - t0) / 1000).toFixed(0)} s (node ${process.version})`,
    );
  }
  return argv.includes('--strict') && rows.some((r) => r.pass === false) ? 1 : 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(e instanceof Error ? e.message : e);
    process.exitCode = 2;
  },
);
