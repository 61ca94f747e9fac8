/**
 * Streaming replay: `gmemlab replay` of a 1,000,000-op trace, run as the CLI in a child process.
 *
 * The trace (untimed to write, about 70 MB in a temporary folder): a VM, a guest_memfd with
 * MMAP|INIT_SHARED and an anonymous mapping, then a repeating cycle of cheap ops (KVM_CHECK_EXTENSION,
 * poke, peek, fstat, fallocate punch/allocate). A second trace holds the first 100,000 ops.
 *
 * Reported:
 * - time from spawning `node dist/src/cli/main.js replay` to the first byte of output
 *   minus the time a bare `node -e 0` takes to start and exit (target < 0.1 s: the trace
 *   streams, nothing waits for the file to be parsed);
 * - peak resident memory (VmHWM from /proc) of the 1M-op replay and of the 100k-op replay, and
 *   their ratio (target < 1.5: memory does not grow with the trace's length);
 * - `replay | head -1`: time from reading the first line and closing the pipe to the process's
 *   exit, as a fraction of the whole run (target < 0.1: a closed pipe stops the run);
 * - ops per second of the whole 1M-op run, output discarded.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { atMost, now, row, type BenchRow } from './util.js';

const CLI = resolve(fileURLToPath(import.meta.url), '..', '..', 'src', 'cli', 'main.js');
const OPS = 1_000_000;

function writeTrace(file: string, ops: number): void {
  const head = [
    '{"op":"KVM_CREATE_VM","as":"vm"}',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"0x200000","flags":3,"as":"g"}',
    '{"op":"mmap","fd":null,"length":"0x200000","prot":3,"flags":34,"as":"m"}',
  ];
  const cycle = [
    '{"op":"KVM_CHECK_EXTENSION","cap":238}',
    '{"op":"poke","addr":"m+0x1000","hex":"deadbeef"}',
    '{"op":"peek","addr":"m+0x1000","len":4}',
    '{"op":"fstat","fd":"g"}',
    '{"op":"fallocate","fd":"g","mode":3,"offset":0,"len":4096}',
    '{"op":"fallocate","fd":"g","mode":0,"offset":0,"len":4096}',
  ];
  const lines: string[] = [...head];
  for (let i = head.length; i < ops; i++) lines.push(cycle[i % cycle.length]!);
  writeFileSync(file, lines.join('\n') + '\n');
}

function peakRss(pid: number): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

type Run = { firstByte: number; total: number; peak: number; afterClose?: number };

/** Spawn a replay; optionally close the pipe after the first line. */
function replay(file: string, closeAfterFirst: boolean): Promise<Run> {
  return new Promise((done, fail) => {
    const t0 = now();
    const child = spawn(process.execPath, [CLI, 'replay', '--kernel', 'linux-6.18', file], {
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    let firstByte = -1;
    let closedAt = -1;
    let peak = 0;
    const poll = setInterval(() => {
      peak = Math.max(peak, peakRss(child.pid!));
    }, 10);
    child.stdout.on('data', () => {
      if (firstByte < 0) {
        firstByte = now() - t0;
        if (closeAfterFirst) {
          closedAt = now();
          child.stdout.destroy();
        }
      }
    });
    child.on('error', fail);
    child.on('exit', () => {
      clearInterval(poll);
      const end = now();
      done({
        firstByte,
        total: end - t0,
        peak,
        ...(closedAt >= 0 ? { afterClose: end - closedAt } : {}),
      });
    });
  });
}

export async function benchStream(): Promise<BenchRow[]> {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-stream-'));
  try {
    const big = join(dir, 'big.jsonl');
    const small = join(dir, 'small.jsonl');
    writeTrace(big, OPS);
    writeTrace(small, OPS / 10);
    const starts: number[] = [];
    for (let i = 0; i < 3; i++) {
      const n0 = now();
      spawnSync(process.execPath, ['-e', '0']);
      starts.push(now() - n0);
    }
    const nodeStart = Math.min(...starts);
    const full = await replay(big, false);
    const tenth = await replay(small, false);
    const first = [full.firstByte, (await replay(big, true)).firstByte];
    const head = await replay(big, true);
    return [
      row(
        'stream',
        'replay 1M ops: first result, beyond starting node',
        Math.max(0, Math.min(...first, head.firstByte) - nodeStart),
        's',
        atMost(0.1, 's'),
        `best of 3 spawns (${Math.min(...first, head.firstByte).toFixed(3)} s from spawn to the first byte) minus the best of 3 bare \`node -e 0\` (${nodeStart.toFixed(3)} s)`,
      ),
      row(
        'stream',
        'replay 1M ops: peak RSS',
        Math.round(full.peak / (1 << 20)),
        'MiB',
        undefined,
        `VmHWM; the 100k-op replay peaks at ${Math.round(tenth.peak / (1 << 20))} MiB`,
      ),
      row(
        'stream',
        'peak RSS 1M ops / 100k ops',
        full.peak / tenth.peak,
        'x',
        atMost(1.5),
        'memory does not grow with the length of the trace (results retained would take hundreds of MiB)',
      ),
      row(
        'stream',
        'replay | head -1: exit after the pipe closes / whole run',
        (head.afterClose ?? full.total) / full.total,
        'x',
        atMost(0.1),
        `exit ${((head.afterClose ?? 0) * 1000).toFixed(0)} ms after the pipe closed; the whole run takes ${full.total.toFixed(2)} s`,
      ),
      row('stream', 'replay 1M ops: throughput', Math.round(OPS / full.total), 'ops/s'),
    ];
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
