/**
 * `gmemlab check FILE` against `gmemlab replay FILE` end to end, as a user runs them and as issue
 * 10 measured them (its baseline: check 7.7 s, 27 s, 117 s against replay 0.6 s, 0.9 s, 1.4 s at
 * 5k, 10k and 20k ops). Target: check within 1.3x of replay at every length, growing linearly.
 *
 * Traces (untimed): `generateTrace(1, { ops: N, feedback: linux-6.18, privateMemory: true })` for
 * N = 2,500, 5,000, 10,000 and 20,000 (the traces of the in-process rows of check.bench.ts),
 * written as JSON-lines files in a temporary folder.
 *
 * Timed: each command in its own process (`node dist/src/cli/main.js replay|check FILE`, output
 * to /dev/null), process start, module loading, parsing, running and output included. The
 * figure is the child's own CPU time (user + system, all threads), which it reports at exit
 * through a preloaded script, so time spent waiting for a core another process holds does not
 * count; interleaved pairs (replay, then check), at least 5 per length and 25,000 ops of each.
 * Reported per length: the ratio of the two medians; once: check's CPU time per op at 20,000
 * ops over that at 2,500 ops, next to replay's (linear checking: the two alike).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { getProfile } from '../src/core/profiles/index.js';
import { generateTrace } from '../src/fuzz/trace_gen.js';
import { formatOp } from '../src/trace/format.js';
import { LONG_TRACE_OPS } from './check.bench.js';
import { median, row, type BenchRow } from './util.js';

const DIST = resolve(fileURLToPath(import.meta.url), '..', '..');
const CLI = join(DIST, 'src', 'cli', 'main.js');

/** Preloaded into each child: writes its CPU time (s) to the file the environment names. */
const REPORT_CPU = `'use strict';
const fs = require('node:fs');
process.on('exit', () => {
  const u = process.cpuUsage();
  fs.writeFileSync(process.env.GMEMLAB_BENCH_CPU_OUT, String((u.user + u.system) / 1e6));
});
`;

/** CPU seconds of one `gmemlab <command> <file>` run. */
function cpuOf(dir: string, command: 'replay' | 'check', file: string): number {
  const out = join(dir, 'cpu.txt');
  const r = spawnSync(
    process.execPath,
    ['--require', join(dir, 'report.cjs'), CLI, command, file],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, GMEMLAB_BENCH_CPU_OUT: out },
      encoding: 'utf8',
    },
  );
  if (r.status !== 0) throw new Error(`gmemlab ${command} ${file}: exit ${r.status}: ${r.stderr}`);
  return Number(readFileSync(out, 'utf8'));
}

const pairsFor = (n: number): number => Math.max(5, Math.ceil(25_000 / n));

export function benchCheckCli(): BenchRow[] {
  const profile = getProfile('linux-6.18')!;
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-check-cli-'));
  try {
    writeFileSync(join(dir, 'report.cjs'), REPORT_CPU);
    const files = LONG_TRACE_OPS.map((n) => {
      const ops = generateTrace(1, { ops: n, feedback: profile, privateMemory: true });
      const file = join(dir, `trace-${n}.jsonl`);
      writeFileSync(file, ops.map((op) => formatOp(op)).join('\n') + '\n');
      return { n, ops: ops.length, file };
    });
    // Warm the file cache and the compile cache of node itself.
    cpuOf(dir, 'replay', files[0]!.file);
    cpuOf(dir, 'check', files[0]!.file);
    const rows: BenchRow[] = [];
    const checkPerOp: number[] = [];
    const replayPerOp: number[] = [];
    for (const f of files) {
      const p: number[] = [];
      const c: number[] = [];
      for (let i = 0; i < pairsFor(f.n); i++) {
        p.push(cpuOf(dir, 'replay', f.file));
        c.push(cpuOf(dir, 'check', f.file));
      }
      checkPerOp.push(median(c) / f.ops);
      replayPerOp.push(median(p) / f.ops);
      rows.push(
        row(
          'check',
          `gmemlab check / gmemlab replay, CLI end to end, one ${f.n.toLocaleString('en-US')}-op trace`,
          median(c) / median(p),
          'x',
          { text: '<= 1.3', ok: (v) => v <= 1.3 },
          `${p.length} pairs; median process CPU s replay ${median(p).toFixed(3)}, check ${median(c).toFixed(3)}`,
        ),
      );
    }
    rows.push(
      row(
        'check',
        'gmemlab check, CLI: CPU time per op at 20,000 ops / at 2,500 ops',
        checkPerOp[checkPerOp.length - 1]! / checkPerOp[0]!,
        'x',
        undefined,
        `replay's is ${(replayPerOp[replayPerOp.length - 1]! / replayPerOp[0]!).toFixed(2)}x over the same traces (process start, ~0.1 s of CPU, is spread over more ops at 20,000)`,
      ),
    );
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
