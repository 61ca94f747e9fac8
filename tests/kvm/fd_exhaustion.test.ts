/**
 * The real backend when the process runs out of file descriptors (issue 9): the kernel's EMFILE
 * is the result of the op that needed a descriptor, the backend's own machinery (acquired when
 * the trace begins) keeps working, a trace the backend cannot even start is a refusal (exit 2
 * with a message), and nothing leaks. The model has no descriptor limit: the same trace runs
 * there without EMFILE.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MMAP_ARENA_BASE, MMAP_ARENA_END } from '../../src/core/mm/host_layout.js';
import { readMaps } from '../../src/backends/kvm/maps.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { BackendRefusal } from '../../src/trace/types.js';
import { backendOrSkip, L, runLines, skipFor, type Json } from './helpers.js';

const CLI = join(process.cwd(), 'dist/src/cli/main.js');
const VMS = 100;
/** A descriptor limit that Node itself can start under (its ESM loader opens files in parallel). */
const LIMIT = 64;

/** 100 VMs under distinct names, memory traffic, then closing 60 of them and creating again. */
function fdTrace(): string[] {
  const lines: string[] = [];
  for (let i = 0; i < VMS; i++) lines.push(L({ op: 'KVM_CREATE_VM', type: 0, as: `vm${i}` }));
  lines.push(L({ op: 'mmap', fd: null, length: 0x30000, prot: 3, flags: 0x22, as: 'm' }));
  lines.push(L({ op: 'poke', addr: 'm+0xfffe', hex: 'deadbeef' }));
  lines.push(L({ op: 'peek', addr: 'm+0xfffe', len: 4 }));
  lines.push(L({ op: 'peek', addr: 'm+0x2fffe', len: 4 })); // into the guard page
  for (let i = 0; i < 60; i++) lines.push(L({ op: 'close', fd: `vm${i}` }));
  lines.push(L({ op: 'KVM_CREATE_VM', type: 0, as: 'again' }));
  lines.push(L({ op: 'KVM_CREATE_VCPU', vm: 'again', id: 0 }));
  lines.push(L({ op: 'poke', addr: 'm+0x1000', hex: '0102' }));
  lines.push(L({ op: 'peek', addr: 'm+0xfffe', len: 4 }));
  return lines;
}

/** What must hold of fdTrace()'s results, with or without creates failing for want of fds. */
function checkResults(r: Json[], expectEmfile: boolean): void {
  assert.equal(r.length, VMS + 4 + 60 + 4);
  const creates = r.slice(0, VMS);
  const firstFail = creates.findIndex((x) => x['ok'] !== true);
  if (expectEmfile) {
    assert.ok(firstFail > 0, 'some VMs are created before the descriptors run out');
    for (const x of creates.slice(firstFail)) assert.deepEqual(x, { ok: false, errno: 'EMFILE' });
  } else assert.equal(firstFail, -1, 'every create succeeds');
  const made = expectEmfile ? firstFail : VMS;
  assert.deepEqual(r.slice(VMS, VMS + 4), [
    { ok: true },
    { ok: true },
    { ok: true, value: 'deadbeef' },
    { ok: false, fault: 'SIGSEGV' },
  ]);
  const closes = r.slice(VMS + 4, VMS + 64);
  closes.forEach((x, i) =>
    assert.deepEqual(x, i < made ? { ok: true } : { ok: false, errno: 'EBADF' }, `close vm${i}`),
  );
  assert.deepEqual(r.slice(VMS + 64), [
    { ok: true },
    { ok: true },
    { ok: true },
    { ok: true, value: 'deadbeef' },
  ]);
}

function bashOrSkip(t: Parameters<typeof skipFor>[0]): boolean {
  const r = spawnSync('bash', ['-c', 'true']);
  if (r.status === 0) return true;
  skipFor(t, 'bash', 'bash cannot be run here');
  return false;
}

test('kvm replay under ulimit -n 64: EMFILE results, no stack trace, closing VMs recovers', (t) => {
  if (!backendOrSkip(t) || !bashOrSkip(t)) return;
  const r = replayUnderLimit(fdTrace(), 'kvm');
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'no stack frames');
  assert.ok(r.status === 0 || r.status === 2, `exit ${r.status}: ${r.stderr}`);
  if (r.status === 2) {
    // Only when this Node needs more of the descriptors at start-up than expected.
    assert.match(r.stderr, /vms\.jsonl: .*the real backend/);
    return;
  }
  const results = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Json);
  checkResults(results, true);
});

test('the model runs the same trace under the same limit without EMFILE', (t) => {
  if (!bashOrSkip(t)) return;
  const r = replayUnderLimit(fdTrace(), 'model');
  assert.equal(r.status, 0, r.stderr);
  const results = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Json);
  checkResults(results, false);
});

/** `gmemlab replay` of `lines` under `ulimit -n LIMIT` (node, CLI and file passed as $1..$3). */
function replayUnderLimit(lines: readonly string[], backend: 'kvm' | 'model') {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-fd-'));
  const file = join(dir, 'vms.jsonl');
  writeFileSync(file, lines.join('\n') + '\n');
  try {
    return spawnSync(
      'bash',
      [
        '-c',
        `ulimit -n ${LIMIT} && exec "$1" "$2" replay --backend ${backend} "$3"`,
        'bash',
        process.execPath,
        CLI,
        file,
      ],
      { encoding: 'utf8', timeout: 60_000 },
    );
  } finally {
    rmSync(dir, { recursive: true });
  }
}

// ---------------------------------------------------------------------------------------------
// In process: the soft RLIMIT_NOFILE lowered around one trace (synchronous code only, so nothing
// else in this test process opens a file meanwhile).

type Koffi = typeof import('koffi');
const RLIMIT_NOFILE = 7;

function prlimitFn(): (resource: number, limit: bigint | undefined) => bigint {
  const koffi = createRequire(import.meta.url)('koffi') as Koffi;
  const f = koffi.load('libc.so.6').func('prlimit', 'int', ['int', 'int', 'void *', 'void *']) as (
    ...a: unknown[]
  ) => number;
  /** Set the soft limit (when given); returns the previous soft limit. */
  return (resource, limit) => {
    const old = Buffer.alloc(16);
    let nw: Buffer | null = null;
    if (limit !== undefined) {
      f(0, resource, null, old);
      nw = Buffer.alloc(16);
      nw.writeBigUInt64LE(limit, 0);
      nw.writeBigUInt64LE(old.readBigUInt64LE(8), 8);
    }
    if (f(0, resource, nw, old) !== 0) throw new Error('prlimit failed');
    return old.readBigUInt64LE(0);
  };
}

const openFds = (): number[] =>
  readdirSync('/proc/self/fd')
    .map(Number)
    .sort((a, b) => a - b);
/** A soft descriptor limit that leaves exactly `room` descriptor numbers free below it. */
function limitWithRoom(room: number): number {
  const taken: number[] = [];
  for (let i = 0; i < room; i++) taken.push(openSync('/dev/null', 'r'));
  const probe = openSync('/dev/null', 'r'); // the next free number: the limit
  for (const fd of [...taken, probe]) closeSync(fd);
  return probe;
}
/**
 * The mappings the backend makes, as far as /proc/self/maps tells them apart from Node's: the
 * trace arena's pieces, kvm files (kvm_run areas), and anonymous read-write mappings of the
 * code page's or the pread buffer's size (4 KiB, 16 MiB). Node's heap grows meanwhile, so the
 * whole map cannot be compared.
 */
function backendMaps(): Set<string> {
  return new Set(
    readMaps()
      .filter((m) => {
        if (m.start < MMAP_ARENA_END && m.end > MMAP_ARENA_BASE) return true;
        if (/kvm/.test(m.path)) return true;
        const size = m.end - m.start;
        return m.path === '' && m.perms === 'rw-p' && (size === 4096n || size === 16n << 20n);
      })
      .map((m) => `${m.start.toString(16)}-${m.end.toString(16)} ${m.perms} ${m.path}`),
  );
}
const newIn = (now: Set<string>, before: Set<string>): string[] =>
  [...now].filter((l) => !before.has(l));

/** Run `fn` with the soft descriptor limit at `limit`, restoring it even when `fn` throws. */
function withFdLimit<T>(limit: number, fn: () => T): T {
  const prlimit = prlimitFn();
  const before = prlimit(RLIMIT_NOFILE, BigInt(limit));
  try {
    return fn();
  } finally {
    prlimit(RLIMIT_NOFILE, before);
  }
}

test('in process: EMFILE mid-trace, and the backend still peeks, classifies faults and closes', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const trace = [
    ...[0, 1, 2, 3, 4].map((i) => L({ op: 'KVM_CREATE_VM', type: 0, as: `vm${i}` })),
    L({ op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x22, as: 'm' }),
    L({ op: 'poke', addr: 'm+4094', hex: 'a1b2c3d4' }),
    L({ op: 'peek', addr: 'm+4094', len: 4 }),
    L({ op: 'peek', addr: 'm+8190', len: 4 }),
    L({ op: 'KVM_CREATE_VCPU', vm: 'vm0', id: 0, as: 'cpu' }),
    L({ op: 'close', fd: 'vm1' }),
    L({ op: 'KVM_CREATE_VCPU', vm: 'vm0', id: 0, as: 'cpu' }),
    L({ op: 'KVM_RUN', vcpu: 'cpu', guest: [] }),
  ];
  runLines(b, trace); // warm-up: the same ops without the limit (JIT, koffi, the watchdog)
  const fds0 = openFds();
  const maps0 = backendMaps();
  // begin() takes 5 descriptors (/dev/kvm, the pipe, /proc/self/maps and pagemap): 3 VMs fit.
  const r = withFdLimit(limitWithRoom(8), () => runLines(b, trace));
  assert.deepEqual(r, [
    { ok: true },
    { ok: true },
    { ok: true },
    { ok: false, errno: 'EMFILE' },
    { ok: false, errno: 'EMFILE' },
    { ok: true },
    { ok: true },
    { ok: true, value: 'a1b2c3d4' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, errno: 'EMFILE' },
    { ok: true },
    { ok: true },
    { ok: true, exits: [{ reason: 'HLT' }] },
  ]);
  assert.deepEqual(openFds(), fds0, 'no descriptor left open');
  assert.deepEqual(newIn(backendMaps(), maps0), [], 'no mapping left behind');
});

test('in process: a trace the backend cannot start is a refusal and leaks nothing', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const { ops } = parseTrace(L({ op: 'KVM_CREATE_VM', type: 0, as: 'vm' }), '<test>');
  runTrace(ops, b); // warm-up
  const fds0 = openFds();
  const maps0 = backendMaps();
  // Room for 0..4 descriptors: /dev/kvm, then the pipe, then /proc/self/maps, then pagemap fail.
  const expected = [
    /open \/dev\/kvm failed with EMFILE/,
    /pipe2 failed with EMFILE/,
    /pipe2 failed with EMFILE/,
    /open \/proc\/self\/maps failed with EMFILE/,
    /open \/proc\/self\/pagemap failed with EMFILE/,
  ];
  expected.forEach((message, room) => {
    const e = withFdLimit(limitWithRoom(room), () => {
      try {
        runTrace(ops, b);
        return undefined;
      } catch (x) {
        return x;
      }
    });
    assert.ok(e instanceof BackendRefusal, `room ${room}: ${String(e)}`);
    assert.match(e.message, message);
    assert.match(e.message, /^the real backend cannot start the trace: /);
    assert.deepEqual(openFds(), fds0, `room ${room}: no descriptor left open`);
    assert.deepEqual(newIn(backendMaps(), maps0), [], `room ${room}: no mapping left behind`);
  });
  // And the backend works again once descriptors are available.
  assert.deepEqual(runLines(b, [L({ op: 'KVM_CREATE_VM', type: 0 })]), [{ ok: true }]);
});
