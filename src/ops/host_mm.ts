/**
 * Op family: the host process's memory — mmap, munmap, mprotect, madvise, and peek / poke (a CPU
 * load or store of the process at an address).
 */
import { mmapPlacedLength } from '../core/mm/host_layout.js';
import { toS32, toU64 } from '../core/base/units.js';
import { bytesToHex } from '../trace/format.js';
import { withAs } from '../trace/field_reader.js';
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
import type { AddrArg, FdArg, ResolvedOp } from '../trace/types.js';
import { fail, fileFd } from '../backends/model_args.js';
import { out } from '../backends/kvm/outcome.js';
import { cU64 } from '../backends/kvm/libc.js';
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
import { MiB, PAGE, type GenState, type MapH } from '../fuzz/gen_state.js';
import type { HostRange, OpSpec } from './spec.js';

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

/** A resolved munmap, mprotect or madvise. */
export type VmaOp = Extract<ResolvedOp, { op: 'munmap' | 'mprotect' | 'madvise' }>;

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
    return k.mmap(op.fd, op.length, op.prot, op.flags, op.offset);
  },
  kvmRefusal(op, env) {
    const plan = planMmap(env.cursor, op.length, op.flags, op.fd === null, env.foreign);
    return plan.enomem ? undefined : plan.refusal;
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
    return out(k.vmaOp(op));
  },
  kvmRefusal: vmaRefusal,
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
  runModel(h, op) {
    const r = h.mprotect(op.addr, toU64(op.length), Number(toS32(op.prot)));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    return out(k.vmaOp(op));
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
  runModel(h, op) {
    const r = h.madvise(op.addr, toU64(op.length), Number(toS32(op.advice)));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    return out(k.vmaOp(op));
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
  runKvm(k, op) {
    return out(k.peek(addrOf(op.addr), cU64(op.len)));
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
    return out(k.poke(addrOf(op.addr), op.bytes));
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

export const HOST_MM_OPS = [mmap, munmap, mprotect, madvise, peek, poke] as const;

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genMmap(g: GenState): void {
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
export function genAnonMap(g: GenState, length: bigint, flags: bigint, as: string): void {
  g.push({ op: 'mmap', fd: null, length, prot: 3n, flags, offset: 0n, as });
}

/** madvise(advice) over the whole mapping `map` of `length` (scenarios). */
export function genMadviseMap(g: GenState, map: string, length: bigint, advice: bigint): void {
  g.push({ op: 'madvise', addr: { kind: 'handle', name: map, offset: 0n }, length, advice });
}

/** Read or write struct kvm_run fields through a vCPU mapping. */
export function genRunPage(g: GenState): void {
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

export function genPeekPoke(g: GenState): void {
  const { addr } = g.mapAddr();
  const n = g.r.pick([1, 2, 4, 8, 16]);
  if (g.r.chance(0.5)) g.push({ op: 'peek', addr, len: BigInt(n) });
  else g.push({ op: 'poke', addr, bytes: g.r.bytes(n) });
}

/** poke of `bytes` at `map`+`offset` (scenarios). */
export function genPokeAt(g: GenState, map: string, offset: bigint, bytes: Uint8Array): void {
  g.push({ op: 'poke', addr: { kind: 'handle', name: map, offset }, bytes });
}

export function genMemOp(g: GenState): void {
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
