/**
 * FFI overhead per syscall: the real-KVM backend's koffi bindings (src/backends/kvm/libc.ts)
 * against a C program doing the same calls, target: koffi within 2x of C per call.
 *
 * The C side is bench/fixtures/ffi_baseline.c, compiled at bench time with the machine's compiler
 * (`cc -O2`, else `gcc -O2`) into a temporary directory that is removed afterwards. The koffi side
 * goes through `libc().ioctlInt` and `libc().fallocate`, the entry points the backend itself uses
 * for KVM_CHECK_EXTENSION and fallocate, with the argument types the backend passes (bigint cap,
 * offset and length), so the figure is the backend's real per-call cost.
 *
 * Both sides: /dev/kvm, a VM of type 0, a 2 MiB guest_memfd (flags 0) — or, on a kernel built
 * without guest_memfd (KVM_CREATE_GUEST_MEMFD is ENOTTY), a 2 MiB memfd on both sides, said in the
 * rows' labels — then N calls per loop:
 * - KVM_CHECK_EXTENSION(KVM_CAP_GUEST_MEMFD) on the /dev/kvm fd and on the VM fd;
 * - fallocate(PUNCH_HOLE | KEEP_SIZE) of one page over pages that hold nothing (cycling through
 *   the file's 512 pages);
 * - fallocate(KEEP_SIZE) of one page followed by the punch of that page (reported per call).
 * Each loop runs N/10 untimed calls before its N timed ones, on both sides. One warm-up round plus
 * REPS timed rounds, each round one run of the C program followed by the koffi loops (so a
 * varying machine load hits both sides alike); reported: the best round per loop and side, and
 * the ratio koffi/C of the two best figures.
 *
 * Skipped (one row saying why, also printed on stderr) when /dev/kvm cannot be used, when koffi
 * cannot load libc, or when there is no C compiler on PATH or it cannot build the fixture.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { libc, O_CLOEXEC, O_RDWR, type Libc } from '../src/backends/kvm/libc.js';
import { packCreateGuestMemfd } from '../src/ops/guest_memfd.js';
import { errnoName } from '../src/core/base/errno.js';

const ENOTTY = 25;
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  KVM_CAP,
  KVM_IOCTL,
} from '../src/core/base/uapi.js';
import { row, type BenchRow } from './util.js';

const GROUP = 'ffi';
const N = 100_000;
/** Untimed iterations before each timed loop, on both sides (the C program does the same). */
const WARM = N / 10;
const REPS = 5;
const PAGE = 4096n;
const GMEM_SIZE = 2n << 20n;
const PAGES = Number(GMEM_SIZE / PAGE);
const PUNCH = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
const CAP = BigInt(KVM_CAP.KVM_CAP_GUEST_MEMFD);
const C_TIMEOUT_MS = 60_000;

const LOOPS = ['check_ext_kvm', 'check_ext_vm', 'punch_empty', 'alloc_punch'] as const;
type Loop = (typeof LOOPS)[number];
type Figures = Record<Loop, number>;

const LABEL: Record<Loop, string> = {
  check_ext_kvm: 'KVM_CHECK_EXTENSION on /dev/kvm',
  check_ext_vm: 'KVM_CHECK_EXTENSION on a VM',
  punch_empty: 'fallocate punch of an empty page',
  alloc_punch: 'fallocate allocate+punch of a page',
};

/** The fixture's source: next to this file in bench/, or in bench/ beside dist/ when compiled. */
function fixturePath(): string | undefined {
  const here = dirname(fileURLToPath(import.meta.url));
  const candidates = [
    join(here, 'fixtures', 'ffi_baseline.c'),
    resolve(here, '..', '..', 'bench', 'fixtures', 'ffi_baseline.c'),
  ];
  return candidates.find((p) => existsSync(p));
}

/** The first of `cc`, `gcc` found as an executable on PATH. */
function findCompiler(): string | undefined {
  const dirs = (process.env['PATH'] ?? '').split(delimiter).filter((d) => d !== '');
  for (const name of ['cc', 'gcc']) {
    for (const d of dirs) {
      const p = join(d, name);
      try {
        accessSync(p, constants.X_OK);
        return p;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

type Fds = { kvm: number; vm: number; gmem: number; file: 'guest_memfd' | 'memfd' };

const MFD_CLOEXEC = 1;

/** /dev/kvm, a type-0 VM and a guest_memfd through the backend's bindings, or why not. */
function openFds(c: Libc): Fds | { unavailable: string } {
  const kvm = c.open('/dev/kvm', O_RDWR | O_CLOEXEC);
  if (kvm.ret < 0) return { unavailable: `cannot open /dev/kvm: ${errnoName(kvm.errno)}` };
  const vm = c.ioctlInt(kvm.ret, KVM_IOCTL.KVM_CREATE_VM, 0n);
  if (vm.ret < 0) {
    c.close(kvm.ret);
    return { unavailable: `KVM_CREATE_VM(0) failed: ${errnoName(vm.errno)}` };
  }
  const gmem = c.ioctlBuf(
    vm.ret,
    KVM_IOCTL.KVM_CREATE_GUEST_MEMFD,
    packCreateGuestMemfd(GMEM_SIZE, 0n),
  );
  if (gmem.ret >= 0) return { kvm: kvm.ret, vm: vm.ret, gmem: gmem.ret, file: 'guest_memfd' };
  // A kernel without guest_memfd: the fallocate loops run on a memfd (shmem) instead.
  const memfd = gmem.errno === ENOTTY ? c.memfdCreate('gmemlab-ffi', MFD_CLOEXEC) : gmem;
  if (memfd.ret < 0 || c.ftruncate(memfd.ret, GMEM_SIZE).ret < 0) {
    if (memfd.ret >= 0) c.close(memfd.ret);
    c.close(vm.ret);
    c.close(kvm.ret);
    return { unavailable: `KVM_CREATE_GUEST_MEMFD failed: ${errnoName(gmem.errno)}` };
  }
  return { kvm: kvm.ret, vm: vm.ret, gmem: memfd.ret, file: 'memfd' };
}

function closeFds(c: Libc, f: Fds): void {
  c.close(f.gmem);
  c.close(f.vm);
  c.close(f.kvm);
}

const elapsedNs = (t0: bigint): number => Number(process.hrtime.bigint() - t0);

// One function per loop, as in the C program; each checks every return value like the C side.

function koffiCheckExt(c: Libc, fd: number, n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const r = c.ioctlInt(fd, KVM_IOCTL.KVM_CHECK_EXTENSION, CAP);
    if (r.ret < 0) throw new Error(`bench: KVM_CHECK_EXTENSION failed: ${errnoName(r.errno)}`);
  }
  return elapsedNs(t0) / n;
}

function koffiPunch(c: Libc, gmem: number, offs: readonly bigint[], n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const r = c.fallocate(gmem, PUNCH, offs[i % PAGES]!, PAGE);
    if (r.ret < 0) throw new Error(`bench: fallocate punch failed: ${errnoName(r.errno)}`);
  }
  return elapsedNs(t0) / n;
}

function koffiAllocPunch(c: Libc, gmem: number, offs: readonly bigint[], n: number): number {
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) {
    const off = offs[i % PAGES]!;
    const a = c.fallocate(gmem, FALLOC_FL_KEEP_SIZE, off, PAGE);
    if (a.ret < 0) throw new Error(`bench: fallocate allocate failed: ${errnoName(a.errno)}`);
    const p = c.fallocate(gmem, PUNCH, off, PAGE);
    if (p.ret < 0) throw new Error(`bench: fallocate punch failed: ${errnoName(p.errno)}`);
  }
  return elapsedNs(t0) / (2 * n);
}

/** One untimed warm-up pass of WARM calls, then the timed pass of N calls. */
function timed(loop: (n: number) => number): number {
  loop(WARM);
  return loop(N);
}

function koffiRound(c: Libc, f: Fds, offs: readonly bigint[]): Figures {
  return {
    check_ext_kvm: timed((n) => koffiCheckExt(c, f.kvm, n)),
    check_ext_vm: timed((n) => koffiCheckExt(c, f.vm, n)),
    punch_empty: timed((n) => koffiPunch(c, f.gmem, offs, n)),
    alloc_punch: timed((n) => koffiAllocPunch(c, f.gmem, offs, n)),
  };
}

/** One run of the compiled fixture: its ns/call per loop. Throws if it fails. */
function cRound(bin: string, file: Fds['file']): Figures {
  const r = spawnSync(bin, [String(N), '0', file], { encoding: 'utf8', timeout: C_TIMEOUT_MS });
  if (r.error !== undefined || r.status !== 0)
    throw new Error(
      `bench: C baseline failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr.trim()}`,
    );
  const out = JSON.parse(r.stdout) as { n?: unknown; ns_per_call?: Record<string, unknown> };
  if (out.n !== N) throw new Error(`bench: C baseline ran ${String(out.n)} calls, expected ${N}`);
  const fig = {} as Figures;
  for (const l of LOOPS) {
    const v = out.ns_per_call?.[l];
    if (typeof v !== 'number' || !(v > 0))
      throw new Error(`bench: C baseline printed no figure for ${l}: ${r.stdout.trim()}`);
    fig[l] = v;
  }
  return fig;
}

function skipped(reason: string): BenchRow[] {
  process.stderr.write(`ffi: skipped: ${reason}\n`);
  return [row(GROUP, `skipped: ${reason}`, 0, 'n/a', undefined, reason)];
}

export function benchFfi(): BenchRow[] {
  let c: Libc;
  try {
    c = libc();
  } catch (e) {
    return skipped(`cannot load libc through koffi: ${(e as Error).message}`);
  }
  const cc = findCompiler();
  if (cc === undefined) return skipped('no C compiler (cc or gcc) on PATH for the C baseline');
  const src = fixturePath();
  if (src === undefined) return skipped('bench/fixtures/ffi_baseline.c not found');
  const fds = openFds(c);
  if ('unavailable' in fds) return skipped(`real /dev/kvm unavailable: ${fds.unavailable}`);

  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-ffi-'));
  try {
    const bin = join(dir, 'ffi_baseline');
    const build = spawnSync(cc, ['-O2', '-o', bin, src], {
      encoding: 'utf8',
      timeout: C_TIMEOUT_MS,
    });
    if (build.error !== undefined || build.status !== 0) {
      const why = build.error?.message ?? build.stderr.trim().split('\n').slice(0, 3).join(' / ');
      return skipped(`${cc} cannot build the C baseline: ${why}`);
    }

    const offs = Array.from({ length: PAGES }, (_, i) => BigInt(i) * PAGE);
    const best = (): Figures => ({
      check_ext_kvm: Infinity,
      check_ext_vm: Infinity,
      punch_empty: Infinity,
      alloc_punch: Infinity,
    });
    const koffiBest = best();
    const cBest = best();
    for (let rep = 0; rep <= REPS; rep++) {
      const cf = cRound(bin, fds.file);
      const kf = koffiRound(c, fds, offs);
      if (rep === 0) continue; // warm-up round (JIT, page cache, first-use paths in the kernel)
      for (const l of LOOPS) {
        cBest[l] = Math.min(cBest[l], cf[l]);
        koffiBest[l] = Math.min(koffiBest[l], kf[l]);
      }
    }

    const out: BenchRow[] = [];
    const how = `best of ${REPS} rounds x ${N.toLocaleString('en-US')} calls after a warm-up round`;
    for (const l of LOOPS) {
      const k = koffiBest[l];
      const base = cBest[l];
      const label =
        fds.file === 'memfd' && l.includes('punch')
          ? `${LABEL[l]} (memfd: no guest_memfd in this kernel)`
          : LABEL[l];
      out.push(
        row(GROUP, `${label}, koffi (libc.ts)`, k, 'ns/call', undefined, how),
        row(GROUP, `${label}, C (${cc} -O2)`, base, 'ns/call', undefined, how),
        row(
          GROUP,
          `${label}, koffi/C ratio`,
          k / base,
          'x',
          { text: '<= 2', ok: (x) => x <= 2 },
          `koffi adds ${(k - base).toFixed(0)} ns per call`,
        ),
      );
    }
    return out;
  } finally {
    closeFds(c, fds);
    rmSync(dir, { recursive: true, force: true });
  }
}
