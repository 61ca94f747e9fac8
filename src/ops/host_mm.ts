/**
 * Op family: the host process's memory — mmap, munmap, mprotect, madvise, and peek / poke (a CPU
 * load or store of the process at an address).
 */
import { mmapPlacedLength, nextArenaCursor } from '../core/mm/host_layout.js';
import { errnoName } from '../core/base/errno.js';
import { MAP_HUGETLB } from '../core/base/uapi.js';
import { toS32, toU64 } from '../core/base/units.js';
import { bytesToHex } from '../trace/format.js';
import { MAX_READ_BYTES, withAs } from '../trace/field_reader.js';
import {
  addrText,
  bitNames,
  bytesHex,
  dataText,
  fdText,
  lengthText,
  MADV_NAMES,
  MAP_BITS,
  offsetText,
  PROT_BITS,
} from '../trace/text.js';
import {
  BackendRefusal,
  type AddrArg,
  type FdArg,
  type OpOutcome,
  type ResolvedFd,
  type ResolveOp,
  type ResultLine,
} from '../trace/base_types.js';
import { fail, fileFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import type { KvmOpContext } from '../backends/kvm/context.js';
import { arena, type Interval } from '../backends/kvm/arena.js';
import { hostHasPku } from '../backends/kvm/host_facts.js';
import { mappingAt } from '../backends/kvm/maps.js';
import { EFAULT, MAP_FAILED, cInt, cU64 } from '../backends/kvm/libc.js';
import {
  addrOf,
  ceilPage,
  floorPage,
  MAX_POPULATE_BYTES,
  planMmap,
  rangeRefusal,
  vmaRangeWraps,
  type RefusalEnv,
} from '../backends/kvm/rules.js';
import { MiB, PAGE, type GenState, type OpInput, type MapH } from '../fuzz/gen_state.js';
import type { HostRange, OpCommon, OpFamily, OpSpec } from './spec.js';

export type MmapOp = {
  readonly op: 'mmap';
  /** null = anonymous */
  readonly fd: FdArg | null;
  readonly length: bigint;
  readonly prot: bigint;
  readonly flags: bigint;
  readonly offset: bigint;
};
export type MunmapOp = { readonly op: 'munmap'; readonly addr: AddrArg; readonly length: bigint };
export type MprotectOp = {
  readonly op: 'mprotect';
  readonly addr: AddrArg;
  readonly length: bigint;
  readonly prot: bigint;
};
export type MadviseOp = {
  readonly op: 'madvise';
  readonly addr: AddrArg;
  readonly length: bigint;
  readonly advice: bigint;
};
export type PeekOp = { readonly op: 'peek'; readonly addr: AddrArg; readonly len: bigint };
export type PokeOp = { readonly op: 'poke'; readonly addr: AddrArg; readonly bytes: Uint8Array };
export type HostMmFamilyOp = MmapOp | MunmapOp | MprotectOp | MadviseOp | PeekOp | PokeOp;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<HostMmFamilyOp>>;

/** A resolved munmap, mprotect or madvise. */
export type VmaOp = ResolveOp<OpCommon & (MunmapOp | MprotectOp | MadviseOp)>;

const MAP_HUGETLB_BIT = BigInt(MAP_HUGETLB);
const MADV_HWPOISON = 100n;
const MADV_SOFT_OFFLINE = 101n;
const MADV_POPULATE_READ = 22n;
const MADV_POPULATE_WRITE = 23n;

/** The real backend's refusal rule for munmap / mprotect / madvise (see rules.ts). */
function vmaRefusal(op: VmaOp, env: RefusalEnv): string | undefined {
  const addr = addrOf(op.addr);
  const len = cU64(op.length);
  if (op.op === 'madvise' && (op.advice === MADV_HWPOISON || op.advice === MADV_SOFT_OFFLINE))
    return `madvise advice ${op.advice} would poison or offline host physical memory; refusing to run it`;
  if (vmaRangeWraps(addr, len)) return undefined;
  if (
    op.op === 'madvise' &&
    (op.advice === MADV_POPULATE_READ || op.advice === MADV_POPULATE_WRITE)
  ) {
    // Only the trace's own mappings inside the range can be populated. This counts all of them,
    // whatever the kernel would stop at (a gap, a PROT_NONE VMA): an upper bound.
    const end = addr + len;
    let bytes = 0n;
    for (const it of env.traceMapped)
      if (it.s < end && addr < it.e)
        bytes += (it.e < end ? it.e : end) - (it.s > addr ? it.s : addr);
    if (bytes > MAX_POPULATE_BYTES)
      return `madvise: populating ${bytes} bytes of real memory exceeds the backend's 1 GiB limit`;
  }
  // The kernel acts on whole pages: check the page-rounded range.
  return rangeRefusal(floorPage(addr), ceilPage(addr + len), op.op, env);
}

/** The page-rounded host range of munmap / mprotect / madvise. */
function vmaRanges(op: { readonly addr: bigint; readonly length: bigint }): HostRange[] {
  const len = BigInt.asUintN(64, op.length);
  return [{ start: op.addr, end: op.addr + ((len + 4095n) & ~4095n) }];
}

export const mmap: OpSpec<MmapOp> = {
  name: 'mmap',
  fields: ['fd', 'length', 'prot', 'flags', 'offset'],
  binds: 'map',
  parse(r, line, as) {
    // mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
    if (!Object.prototype.hasOwnProperty.call(r.obj, 'fd'))
      r.fail('fd', 'missing fd (a handle, an integer, or null for anonymous)');
    const fdv = r.obj['fd'];
    return withAs(
      {
        line,
        op: 'mmap',
        fd: fdv === null ? null : r.fd('fd'),
        length: r.int('length', 64),
        prot: r.int('prot', 32),
        flags: r.int('flags', 32),
        offset: r.int('offset', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    const flags = op.fd === null ? op.flags | 0x20n : op.flags;
    a.push(
      'NULL',
      lengthText(op.length),
      bitNames(op.prot, PROT_BITS, 'PROT_NONE', 'PROT_'),
      bitNames(flags, MAP_BITS, '0', 'MAP_'),
      fdText(op.fd),
      offsetText(op.offset),
    );
  },
  timelineValue(field, v) {
    if (field === 'prot') return bitNames(v, PROT_BITS, 'NONE');
    if (field === 'flags') return bitNames(v, MAP_BITS, '0');
    return undefined;
  },
  usesHugetlb(op) {
    return (BigInt.asUintN(64, op.flags) & MAP_HUGETLB_BIT) !== 0n;
  },
  arenaLength(op) {
    return mmapPlacedLength(op.length, Number(op.flags & 0xffffffffn), op.fd === null);
  },
  runModel(h, op) {
    const fd = op.fd === null ? null : fileFd(op.fd);
    const r = h.mmap(
      fd,
      toU64(op.length),
      Number(toS32(op.prot)),
      Number(toS32(op.flags)),
      BigInt.asIntN(64, op.offset),
    );
    return r.ok ? { result: { ok: true }, createdAddr: r.value } : { result: fail(r) };
  },
  runKvm(k, op) {
    return kvmMmap(k, op.fd, op.length, op.prot, op.flags, op.offset);
  },
  kvmRefusal(op, env) {
    const plan = planMmap(env.cursor, op.length, op.flags, op.fd === null, env.foreign);
    return plan.enomem ? undefined : plan.refusal;
  },
  kvmArena(op, book) {
    const plan = planMmap(book.cursor, op.length, op.flags, op.fd === null, book.foreign);
    if (plan.enomem) return;
    book.traceMapped.add(plan.addr, plan.addr + plan.rounded);
    book.cursor = nextArenaCursor(plan.addr, plan.rounded);
  },
};

export const munmap: OpSpec<MunmapOp> = {
  name: 'munmap',
  fields: ['addr', 'length'],
  parse(r, line, as) {
    return withAs({ line, op: 'munmap', addr: r.addr('addr'), length: r.int('length', 64) }, as);
  },
  renderArgs(op, a) {
    a.push(addrText(op.addr), lengthText(op.length));
  },
  runModel(h, op) {
    const r = h.munmap(op.addr, toU64(op.length));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    return out(kvmVmaOp(k, op));
  },
  kvmRefusal: vmaRefusal,
  kvmArena(op, book) {
    const addr = addrOf(op.addr);
    const len = cU64(op.length);
    if (!vmaRangeWraps(addr, len)) book.traceMapped.remove(addr, ceilPage(addr + len));
  },
  hostRanges: vmaRanges,
};

export const mprotect: OpSpec<MprotectOp> = {
  name: 'mprotect',
  fields: ['addr', 'length', 'prot'],
  parse(r, line, as) {
    return withAs(
      {
        line,
        op: 'mprotect',
        addr: r.addr('addr'),
        length: r.int('length', 64),
        prot: r.int('prot', 32),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      addrText(op.addr),
      lengthText(op.length),
      bitNames(op.prot, PROT_BITS, 'PROT_NONE', 'PROT_'),
    );
  },
  timelineValue(field, v) {
    return field === 'prot' ? bitNames(v, PROT_BITS, 'NONE') : undefined;
  },
  runModel(h, op) {
    const r = h.mprotect(op.addr, toU64(op.length), Number(toS32(op.prot)));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    return out(kvmVmaOp(k, op));
  },
  kvmRefusal: vmaRefusal,
  hostRanges: vmaRanges,
};

export const madvise: OpSpec<MadviseOp> = {
  name: 'madvise',
  fields: ['addr', 'length', 'advice'],
  parse(r, line, as) {
    return withAs(
      {
        line,
        op: 'madvise',
        addr: r.addr('addr'),
        length: r.int('length', 64),
        advice: r.int('advice', 32),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      addrText(op.addr),
      lengthText(op.length),
      MADV_NAMES.get(op.advice) ?? op.advice.toString(),
    );
  },
  timelineValue(field, v) {
    return field === 'advice' ? MADV_NAMES.get(v) : undefined;
  },
  runModel(h, op) {
    const r = h.madvise(op.addr, toU64(op.length), Number(toS32(op.advice)));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    return out(kvmVmaOp(k, op));
  },
  kvmRefusal: vmaRefusal,
  hostRanges: vmaRanges,
};

export const peek: OpSpec<PeekOp> = {
  name: 'peek',
  fields: ['addr', 'len'],
  parse(r, line, as) {
    return withAs({ line, op: 'peek', addr: r.addr('addr'), len: r.byteCount('len') }, as);
  },
  renderArgs(op, a) {
    a.push(addrText(op.addr), op.len.toString());
  },
  runModel(h, op) {
    const r = h.peek(op.addr, Number(op.len));
    return {
      result: r.ok ? { ok: true, value: bytesToHex(r.data!) } : { ok: false, fault: r.fault },
    };
  },
  readBytes(op) {
    return op.len;
  },
  runKvm(k, op) {
    return out(kvmPeek(k, addrOf(op.addr), cU64(op.len)));
  },
  kvmRefusal(op, env) {
    const len = cU64(op.len);
    if (len === 0n) return undefined;
    const addr = addrOf(op.addr);
    return rangeRefusal(addr, addr + len, 'peek', env);
  },
  hostRanges(op) {
    return [{ start: op.addr, end: op.addr + BigInt.asUintN(64, op.len) }];
  },
};

export const poke: OpSpec<PokeOp> = {
  name: 'poke',
  fields: ['addr', 'hex'],
  parse(r, line, as) {
    return withAs({ line, op: 'poke', addr: r.addr('addr'), bytes: r.hexBytes('hex') }, as);
  },
  renderArgs(op, a, style) {
    a.push(addrText(op.addr), dataText(bytesHex(op.bytes), style));
  },
  runModel(h, op) {
    const r = h.poke(op.addr, op.bytes);
    return { result: r.ok ? { ok: true } : { ok: false, fault: r.fault } };
  },
  runKvm(k, op) {
    return out(kvmPoke(k, addrOf(op.addr), op.bytes));
  },
  kvmRefusal(op, env) {
    const len = BigInt(op.bytes.length);
    if (len === 0n) return undefined;
    const addr = addrOf(op.addr);
    return rangeRefusal(addr, addr + len, 'poke', env);
  },
  hostRanges(op) {
    return [{ start: op.addr, end: op.addr + BigInt(op.bytes.length) }];
  },
};

// ---------------------------------------------------------------------------------------------
// /dev/kvm execution (the real backend's machinery, KvmOpContext: its libc, trace state and fd policy)

const MAP_ANONYMOUS = 0x20;
const MAP_FIXED_NOREPLACE = 0x100000;
const MAP_FIXED = 0x10;
const MAP_TYPE = 0x0f;
const MAP_SHARED_VALIDATE = 0x03;

/**
 * Bytes a peek / poke moves through the pipe per write/read pair: the default pipe capacity
 * (PIPE_DEF_BUFFERS pages), so one pair moves up to 16 pages.
 */
const PIPE_CHUNK = 16 * 4096;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

function kvmMmap(
  k: KvmOpContext,
  fdArg: ResolvedFd | null,
  length: bigint,
  prot: bigint,
  flags: bigint,
  offset: bigint,
): OpOutcome {
  const t = k.st;
  const len = cU64(length);
  // exec() has refused the slot-occupied and over-limit cases already (same plan).
  const plan = planMmap(t.cursor, length, flags, fdArg === null, arena.foreign);
  if (plan.enomem) return out(kvmFail(12 /* ENOMEM */));
  const { addr, rounded } = plan;
  const fd = fdArg === null ? -1 : k.fileFd(fdArg);
  // MAP_FIXED_NOREPLACE is not in the kernel's LEGACY_MAP_MASK, so adding it to a
  // MAP_SHARED_VALIDATE request would turn every such file mapping into EOPNOTSUPP. For those
  // use MAP_FIXED: the range has just been lifted from our reservation, so nothing is replaced.
  const traceFlags = cInt(flags);
  const validate =
    (traceFlags & MAP_TYPE) === MAP_SHARED_VALIDATE && (traceFlags & MAP_FIXED_NOREPLACE) === 0;
  const f =
    traceFlags |
    (validate ? MAP_FIXED : MAP_FIXED_NOREPLACE) |
    (fdArg === null ? MAP_ANONYMOUS : 0);
  const lifted = arena.lift(addr, addr + rounded);
  const r = k.c.mmap(addr, len, cInt(prot), f, fd, offset);
  if (r.ret === MAP_FAILED) {
    arena.restore(lifted);
    return out(kvmFail(r.errno));
  }
  if (r.ret !== addr) {
    // A kernel without MAP_FIXED_NOREPLACE (before 4.17) takes the address as a hint.
    k.c.munmap(r.ret, len);
    arena.restore(lifted);
    throw new BackendRefusal(
      `mmap: the kernel placed the mapping at 0x${r.ret.toString(16)}, not at the arena address 0x${addr.toString(16)} (no MAP_FIXED_NOREPLACE)`,
    );
  }
  arena.traceMapped.add(addr, addr + rounded);
  t.cursor = nextArenaCursor(addr, rounded);
  return out(ok(), { createdAddr: addr });
}

function kvmVmaOp(k: KvmOpContext, op: VmaOp): ResultLine {
  const addr = addrOf(op.addr);
  const len = cU64(op.length);
  // A range that wraps past 2^64 is rejected by the kernel's argument checks before any VMA is
  // touched (munmap EINVAL, mprotect ENOMEM, madvise EINVAL): run it as is.
  if (vmaRangeWraps(addr, len)) {
    const w =
      op.op === 'munmap'
        ? k.c.munmap(addr, len)
        : op.op === 'mprotect'
          ? k.c.mprotect(addr, len, cInt(op.prot))
          : k.c.madvise(addr, len, cInt(op.advice));
    return w.ret < 0 ? kvmFail(w.errno) : ok();
  }
  // The kernel acts on whole pages: lift the page-rounded range (exec() has checked it).
  const lo = floorPage(addr);
  const hi = ceilPage(addr + len);
  const lifted: Interval[] = arena.lift(lo, hi);
  let r;
  if (op.op === 'munmap') r = k.c.munmap(addr, len);
  else if (op.op === 'mprotect') r = k.c.mprotect(addr, len, cInt(op.prot));
  else r = k.c.madvise(addr, len, cInt(op.advice));
  if (op.op === 'munmap' && r.ret === 0) {
    arena.traceMapped.remove(addr, ceilPage(addr + len));
    arena.restore(arena.reservedWithin(lo, hi));
  } else arena.restore(lifted);
  return r.ret < 0 ? kvmFail(r.errno) : ok();
}

// -------------------------------------------------------------------------------------------
// peek / poke through the kernel's user-copy path (faults become EFAULT, never signals)

let drainBuf: Buffer | undefined;

/** Empty the pipe (after an op, or after a transfer that left bytes in it). */
function drain(k: KvmOpContext, rfd: number): void {
  const b = (drainBuf ??= Buffer.alloc(PIPE_CHUNK));
  while (k.c.read(rfd, b, b.length).ret > 0n);
}

/** A pipe error other than a fault: the backend's own copy failed, which no result can say. */
function pipeFailed(op: 'peek' | 'poke', call: string, errno: number): never {
  throw new BackendRefusal(
    `${op}: the real backend's pipe ${call} failed with ${errnoName(errno)}; the access could not be made`,
  );
}

/** Which signal a CPU access to the faulting page would raise, from the kernel's own view. */
function classifyFault(k: KvmOpContext, page: bigint, need: 'r' | 'w'): 'SIGSEGV' | 'SIGBUS' {
  const m = mappingAt(page, k.st.m.proc.maps());
  if (m === undefined) return 'SIGSEGV';
  // x86 access_error(): a write needs VM_WRITE; a read is allowed on any accessible VMA (read,
  // write or exec permission), except an execute-only one on a host with protection keys, where
  // it carries the execute-only key (the read faults with SEGV_PKUERR).
  const p = m.perms;
  const readable = p.includes('r') || p.includes('w') || (p.includes('x') && !hostHasPku());
  if (need === 'w' ? !p.includes('w') : !readable) return 'SIGSEGV';
  if (k.st.m.proc.isGuardPage(page)) return 'SIGSEGV';
  return 'SIGBUS';
}

/**
 * Bytes of the next pipe transfer at `a`. A transfer starting inside a page stops at its end,
 * so after it every transfer starts on a page boundary and each pipe buffer (one page, filled
 * from the start by pipe_write() / drained by pipe_read()) covers exactly one page of the
 * trace's memory: a fault then ends the transfer exactly at the faulting page. `careful`
 * transfers stay within one page, so an EFAULT names that page; they follow any transfer that
 * came up short or failed as a whole (import_ubuf() rejects a range crossing TASK_SIZE before
 * copying anything).
 */
function step(a: bigint, left: number, careful: boolean): number {
  const off = Number(a & (PAGE - 1n));
  return Math.min(left, careful || off !== 0 ? Number(PAGE) - off : PIPE_CHUNK);
}

/**
 * A CPU load of [addr, addr+len) made by the kernel instead: write(2) from that memory into
 * the pipe (copy_from_user() in pipe_write(): a fault is EFAULT or a short count, never a
 * signal), then read(2) the bytes back into the result.
 */
export function kvmPeek(k: KvmOpContext, addr: bigint, len: bigint): ResultLine {
  if (len === 0n) return ok({ value: '' });
  if (len > MAX_READ_BYTES) throw new BackendRefusal(`peek of ${len} bytes: too large to report`);
  const [rfd, wfd] = k.st.m.pipe;
  const n = Number(len);
  // Every byte is written before the result is built; a faulting peek returns no data.
  const data = Buffer.allocUnsafe(n);
  let done = 0;
  let careful = false;
  try {
    while (done < n) {
      const a = addr + BigInt(done);
      if (a > U64_MAX) return { ok: false, fault: 'SIGSEGV' };
      const want = step(a, n - done, careful);
      const w = k.c.writeFrom(wfd, a, want);
      if (w.ret < 0n) {
        if (w.errno !== EFAULT) pipeFailed('peek', 'write', w.errno);
        if (careful) return { ok: false, fault: classifyFault(k, floorPage(a), 'r') };
        careful = true;
        continue;
      }
      const got = Number(w.ret);
      if (got === 0) pipeFailed('peek', 'write', 0);
      const rr = k.c.read(rfd, data.subarray(done, done + got), got);
      if (rr.ret !== BigInt(got)) pipeFailed('peek', 'read', rr.errno);
      done += got;
      careful = got < want;
    }
    return ok({ value: bytesToHex(data) });
  } finally {
    drain(k, rfd);
  }
}

/**
 * A CPU store made by the kernel instead: write(2) the bytes into the pipe, then read(2) them
 * into [addr, addr+len) (copy_to_user() in pipe_read()). pipe_read() counts only whole pipe
 * buffers it copied, and leaves the rest in the pipe: a transfer that stops early is followed
 * by draining the pipe, so the next one starts from the trace's bytes at the right offset.
 */
export function kvmPoke(k: KvmOpContext, addr: bigint, bytes: Uint8Array): ResultLine {
  const n = bytes.length;
  if (n === 0) return ok();
  const [rfd, wfd] = k.st.m.pipe;
  const src = Buffer.from(bytes.buffer, bytes.byteOffset, n);
  let done = 0;
  let careful = false;
  try {
    while (done < n) {
      const a = addr + BigInt(done);
      if (a > U64_MAX) return { ok: false, fault: 'SIGSEGV' };
      const want = step(a, n - done, careful);
      const w = k.c.write(wfd, src.subarray(done, done + want), want);
      if (w.ret <= 0n) pipeFailed('poke', 'write', w.errno);
      const put = Number(w.ret);
      const r = k.c.readTo(rfd, a, put);
      if (r.ret < 0n && r.errno !== EFAULT) pipeFailed('poke', 'read', r.errno);
      const got = r.ret < 0n ? 0 : Number(r.ret);
      done += got;
      if (got === put) {
        careful = false;
        continue;
      }
      drain(k, rfd);
      if (got === 0 && careful) return { ok: false, fault: classifyFault(k, floorPage(a), 'w') };
      careful = true;
    }
    return ok();
  } finally {
    drain(k, rfd);
  }
}

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genMmap(g: Gen): void {
  const name = g.name('m');
  let fd: FdArg | null;
  let kind: MapH['kind'];
  let gm: MapH['gmem'];
  let len: bigint;
  if (g.gmems.length > 0 && g.r.chance(0.6)) {
    gm = g.r.pick(g.gmems);
    fd = { kind: 'handle', name: gm.name };
    kind = 'gmem';
    const s = gm.size > 0n && gm.size <= 64n * MiB ? gm.size : 8192n;
    len = g.r.weighted<bigint>([
      [6, s],
      [2, s * 2n],
      [2, BigInt(1 + g.r.int(4)) * PAGE],
      [1, g.r.pick([0n, 1n, 4097n])],
    ]);
  } else if (g.vcpus.length > 0 && g.r.chance(0.15)) {
    // The vCPU's kvm_run area (3 pages: run, PIO data, coalesced MMIO ring).
    fd = { kind: 'handle', name: g.r.pick(g.vcpus).name };
    kind = 'other';
    len = g.r.pick([4096n, 8192n, 12288n, 16384n]);
  } else if (g.r.chance(0.85)) {
    fd = null;
    kind = 'anon';
    len = g.r.weighted<bigint>([
      [6, BigInt(1 + g.r.int(8)) * PAGE],
      [3, 2n * MiB * BigInt(1 + g.r.int(2))],
      [1, g.r.pick([0n, 1n, 1n << 40n, 1n << 46n, 1n << 47n])],
    ]);
  } else {
    fd = g.anyFd();
    kind = 'other';
    len = BigInt(1 + g.r.int(3)) * PAGE;
  }
  const prot = BigInt(
    g.r.weighted<number>([
      [10, 3],
      [2, 1],
      [1, 0],
      [1, 7],
      [1, 4],
      [1, 2],
    ]),
  );
  let flags = BigInt(
    g.r.weighted<number>([
      [12, 1],
      [4, 2],
      [1, 3],
      [1, 0],
      [1, 8],
    ]),
  );
  // NORESERVE, POPULATE, ANONYMOUS, FIXED, GROWSDOWN, LOCKED, STACK, HUGETLB (with NORESERVE).
  if (g.r.chance(0.1))
    flags |= g.r.pick([
      0x4000n,
      0x8000n,
      0x20n,
      0x10n,
      0x100n,
      0x2000n,
      0x20000n,
      0x40000n,
      0x44000n,
    ]);
  // Keep populated mappings small: MAP_POPULATE or MAP_LOCKED on big lengths would allocate
  // real memory (and the real backend refuses either above 1 GiB).
  if ((flags & 0xa000n) !== 0n && len > 4n * MiB) flags &= ~0xa000n;
  const offset = g.r.weighted<bigint>([
    [12, 0n],
    [2, g.page(4)],
    [1, 123n],
    [1, -4096n],
  ]);
  const res = g.push({ op: 'mmap', fd, length: len, prot, flags, offset, as: name });
  // A failed mmap leaves its handle at address 0: keep it only rarely (with small offsets).
  if (res === undefined || (!res.ok && g.r.chance(0.95))) return;
  g.maps.push({
    name,
    len: res.ok ? (len === 0n ? 4096n : len) : 4096n,
    kind,
    ...(gm ? { gmem: gm } : {}),
  });
}

/** An anonymous read-write mapping of `length` (MAP_SHARED 1 or MAP_PRIVATE 2), named `as`. */
export function genAnonMap(g: Gen, length: bigint, flags: bigint, as: string): void {
  g.push({ op: 'mmap', fd: null, length, prot: 3n, flags, offset: 0n, as });
}

/** mmap(`fd` or anonymous, `length`, PROT_READ|PROT_WRITE, `flags`, 0) named `as` (walks). */
export function genMmapOf(
  g: Gen,
  fd: FdArg | null,
  length: bigint,
  flags: bigint,
  as: string,
): ResultLine | undefined {
  return g.push({ op: 'mmap', fd, length, prot: 3n, flags, offset: 0n, as });
}

/** munmap of [map + offset, + length) (walks). */
export function genMunmapAt(
  g: Gen,
  map: string,
  offset: bigint,
  length: bigint,
): ResultLine | undefined {
  return g.push({ op: 'munmap', addr: { kind: 'handle', name: map, offset }, length });
}

/**
 * A read-write MAP_SHARED mapping of `length` of the file `fd` from offset 0, named `as` (walks);
 * made by process `proc` (a forked child's handle) when given.
 */
export function genFileMap(g: Gen, fd: string, length: bigint, as: string, proc?: string): void {
  g.push({
    op: 'mmap',
    ...(proc === undefined ? {} : { proc }),
    fd: { kind: 'handle', name: fd },
    length,
    prot: 3n,
    flags: 1n,
    offset: 0n,
    as,
  });
}

/** A VMM load of `len` bytes at `offset` into mapping `map` (walks); by `proc` when given. */
export function genPeekAt(g: Gen, map: string, offset: bigint, len: bigint, proc?: string): void {
  g.push({
    op: 'peek',
    ...(proc === undefined ? {} : { proc }),
    addr: { kind: 'handle', name: map, offset },
    len,
  });
}

/** madvise(advice) over the whole mapping `map` of `length` (scenarios). */
export function genMadviseMap(g: Gen, map: string, length: bigint, advice: bigint): void {
  g.push({ op: 'madvise', addr: { kind: 'handle', name: map, offset: 0n }, length, advice });
}

/** Read or write struct kvm_run fields through a vCPU mapping. */
export function genRunPage(g: Gen): void {
  const m = g.maps.filter((x) => x.kind === 'other');
  if (m.length === 0) return genPeekPoke(g);
  const map = g.r.pick(m);
  const field = g.r.pick([
    { off: 0n, bytes: [0, 1] },
    { off: 1n, bytes: [0, 1] },
    { off: 8n, bytes: [0, 5] },
    { off: 16n, bytes: [0, 7, 15, 16] },
    { off: 288n, bytes: [0, 8] },
    { off: 296n, bytes: [0, 2, 4, 16] },
    { off: 40n, bytes: [0xaa] },
  ]);
  if (g.r.chance(0.5))
    g.push({
      op: 'peek',
      addr: {
        kind: 'handle',
        name: map.name,
        offset: g.r.pick([0n, 8n, 32n, 288n, 4096n, 8192n]),
      },
      len: BigInt(g.r.pick([1, 8, 16, 64])),
    });
  else
    g.push({
      op: 'poke',
      addr: { kind: 'handle', name: map.name, offset: field.off },
      bytes: Uint8Array.of(g.r.pick(field.bytes)),
    });
}

export function genPeekPoke(g: Gen): void {
  const { addr } = g.mapAddr();
  const n = g.r.pick([1, 2, 4, 8, 16]);
  if (g.r.chance(0.5)) g.push({ op: 'peek', addr, len: BigInt(n) });
  else g.push({ op: 'poke', addr, bytes: g.r.bytes(n) });
}

/** poke of `bytes` at `map`+`offset` (scenarios). */
export function genPokeAt(
  g: Gen,
  map: string,
  offset: bigint,
  bytes: Uint8Array,
  proc?: string,
): void {
  g.push({
    op: 'poke',
    ...(proc === undefined ? {} : { proc }),
    addr: { kind: 'handle', name: map, offset },
    bytes,
  });
}

export function genMemOp(g: Gen): void {
  const { addr, map } = g.mapAddr(0n);
  const len = g.r.weighted<bigint>([
    [6, map ? map.len : 4096n],
    [4, BigInt(1 + g.r.int(4)) * PAGE],
    [1, map ? g.r.pick([0n, 1n, 4097n, (1n << 64n) - 4096n]) : g.r.pick([0n, 1n, 4097n])],
  ]);
  const which = g.r.weighted<string>([
    [4, 'madvise'],
    [2, 'munmap'],
    [2, 'mprotect'],
  ]);
  if (which === 'munmap') {
    g.push({ op: 'munmap', addr, length: len });
  } else if (which === 'mprotect') {
    g.push({
      op: 'mprotect',
      addr,
      length: len,
      prot: BigInt(g.r.pick([0, 1, 3, 7, 4, 8, 0x10, 0x100_0001, 0x100_0003, 0x200_0001])),
    });
  } else {
    const advice = BigInt(
      g.r.weighted<number>([
        [5, 4],
        [5, 9],
        [
          1,
          g.r.pick([
            0, 1, 2, 3, 8, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 102, 103,
            999,
          ]),
        ],
      ]),
    );
    g.push({ op: 'madvise', addr, length: len, advice });
  }
}

/** The host_mm family: its ops and fuzz generators (weights among every family's generators). */
export const HOST_MM_FAMILY: OpFamily<HostMmFamilyOp> = {
  name: 'host_mm',
  ops: [mmap, munmap, mprotect, madvise, peek, poke],
  generators: [
    [6, genMmap],
    [8, genPeekPoke],
    [2, genRunPage],
    [5, genMemOp],
  ],
};

/** A VMM load (4 bytes) or store (one byte) at `addr`, raw or a handle (the separate-mm walk). */
export function genVmmAccessAt(g: Gen, addr: AddrArg, store: boolean): void {
  if (store) g.push({ op: 'poke', addr, bytes: Uint8Array.of(0xee) });
  else g.push({ op: 'peek', addr, len: 4n });
}

/** madvise(advice) of [addr, + length) (design-2020-separate-mm walk). */
export function genMadviseRange(g: Gen, addr: AddrArg, length: bigint, advice: bigint): void {
  g.push({ op: 'madvise', addr, length, advice });
}
