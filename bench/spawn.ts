/**
 * Timing spawned commands for the benchmarks (bench/measure*.bench.ts): wall time of each run
 * and the children's CPU time. Benchmarks only.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { now } from './util.js';

const CLK_TCK = ((): number => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  const n = Number(r.stdout?.trim());
  return Number.isFinite(n) && n > 0 ? n : 100;
})();

/**
 * CPU seconds (user + system) of this process's waited-for children so far (Linux
 * /proc/self/stat cutime + cstime), or undefined elsewhere: less sensitive to a loaded machine
 * than wall time.
 */
function childCpu(): number | undefined {
  try {
    const stat = readFileSync('/proc/self/stat', 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // Fields 16 and 17 of proc(5), counted from the state (field 3) at index 0.
    return (Number(f[13]) + Number(f[14])) / CLK_TCK;
  } catch {
    return undefined;
  }
}

/**
 * Run `cmd args` `n` times (in `cwd`): the best and median wall time, the last line of the last
 * run's stdout, and the children's CPU time per run (undefined where /proc is not there). A
 * non-zero exit throws.
 */
export function spawnBest(
  cmd: string,
  args: readonly string[],
  n: number,
  cwd?: string,
): { best: number; median: number; out: string | undefined; cpu: number | undefined } {
  const times: number[] = [];
  let out = '';
  const cpu0 = childCpu();
  for (let i = 0; i < n; i++) {
    const t0 = now();
    const r = spawnSync(cmd, args, { encoding: 'utf8', cwd });
    times.push(now() - t0);
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
    out = r.stdout;
  }
  times.sort((a, b) => a - b);
  const cpu1 = childCpu();
  return {
    best: times[0]!,
    median: times[Math.floor(n / 2)]!,
    out: out.trim().split('\n').at(-1),
    cpu: cpu0 === undefined || cpu1 === undefined ? undefined : (cpu1 - cpu0) / n,
  };
}

/** The best wall time of `n` calls of `f`. */
export function bestOf(n: number, f: () => void): number {
  let b = Infinity;
  for (let i = 0; i < n; i++) {
    const t0 = now();
    f();
    b = Math.min(b, now() - t0);
  }
  return b;
}
