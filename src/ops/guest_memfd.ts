/**
 * Op family: guest_memfd and the file syscalls on it — KVM_CREATE_GUEST_MEMFD, fallocate,
 * ftruncate, pread, pwrite, fstat.
 */
import { KVM_IOCTL } from '../core/base/uapi.js';
import { toS32, toU64 } from '../core/base/units.js';
import { bytesToHex } from '../trace/format.js';
import { MAX_READ_BYTES, withAs } from '../trace/field_reader.js';
import {
  bitNames,
  bytesHex,
  dataText,
  FALLOC_BITS,
  fdText,
  GMEM_FLAGS,
  lengthText,
  offsetText,
  sizeText,
} from '../trace/text.js';
import { BackendRefusal, type FdArg, type ResultLine } from '../trace/base_types.js';
import { fail, fileFd, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import { cInt, cS64, cU64 } from '../backends/kvm/libc.js';
import type { KvmOpContext } from '../backends/kvm/context.js';
import { fallocateAllocates, MAX_POPULATE_BYTES } from '../backends/kvm/rules.js';
import { STAT_SIZE, unpackStat } from '../backends/kvm/structs.js';
import { MiB, NO_VM, PAGE, vmArg, type GenState, type OpInput } from '../fuzz/gen_state.js';
import { genClose, type FdFamilyOp } from './fd.js';
import type { OpFamily, OpSpec } from './spec.js';

export type CreateGuestMemfdOp = {
  readonly op: 'KVM_CREATE_GUEST_MEMFD';
  readonly vm: FdArg;
  readonly size: bigint;
  readonly flags: bigint;
  /**
   * HugeTLB guest_memfd (kernel-uapi.md §6.2, the wip tree's `__u8 page_order` at byte 16, where
   * 6.18 has `reserved[0]`): the huge page order; absent: 0.
   */
  readonly page_order?: bigint;
};
export type FallocateOp = {
  readonly op: 'fallocate';
  readonly fd: FdArg;
  readonly mode: bigint;
  readonly offset: bigint;
  readonly len: bigint;
};
export type FtruncateOp = { readonly op: 'ftruncate'; readonly fd: FdArg; readonly length: bigint };
export type PreadOp = {
  readonly op: 'pread';
  readonly fd: FdArg;
  readonly len: bigint;
  readonly offset: bigint;
};
export type PwriteOp = {
  readonly op: 'pwrite';
  readonly fd: FdArg;
  readonly bytes: Uint8Array;
  readonly offset: bigint;
};
export type FstatOp = { readonly op: 'fstat'; readonly fd: FdArg };
export type GuestMemfdFamilyOp =
  CreateGuestMemfdOp | FallocateOp | FtruncateOp | PreadOp | PwriteOp | FstatOp;

/** The generator state as this family's fuzz generators use it (they push its ops and close). */
type Gen = GenState<OpInput<GuestMemfdFamilyOp | FdFamilyOp>>;

// The op's uAPI struct (x86-64, little-endian, as in include/uapi/linux/kvm.h; fields truncated
// like a C assignment, reserved bytes zero).
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/**
 * struct kvm_create_guest_memfd (64 bytes): size, flags, reserved[6]; the HugeTLB wip tree's
 * `page_order` is the first byte of what 6.18 calls `reserved[0]`.
 */
export function packCreateGuestMemfd(size: bigint, flags: bigint, pageOrder = 0n): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(u64(size), 0);
  b.writeBigUInt64LE(u64(flags), 8);
  b.writeUInt8(Number(BigInt.asUintN(8, pageOrder)), 16);
  return b;
}

export const createGuestMemfd: OpSpec<CreateGuestMemfdOp> = {
  name: 'KVM_CREATE_GUEST_MEMFD',
  fields: ['vm', 'size', 'flags', 'page_order'],
  binds: 'fd',
  parse(r, line, as) {
    // struct kvm_create_guest_memfd: __u64 size, flags; __u8 page_order (HugeTLB wip tree)
    const pageOrder = r.int('page_order', 32, 0n);
    return withAs(
      {
        line,
        op: 'KVM_CREATE_GUEST_MEMFD',
        vm: r.fd('vm'),
        size: r.int('size', 64),
        flags: r.int('flags', 64, 0n),
        ...(pageOrder !== 0n ? { page_order: pageOrder } : {}),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.vm),
      `size=${sizeText(op.size)}`,
      `flags=${bitNames(op.flags, GMEM_FLAGS, '0')}`,
    );
    if (op.page_order !== undefined && op.page_order !== 0n) a.push(`page_order=${op.page_order}`);
  },
  timelineValue(field, v) {
    return field === 'flags' ? bitNames(v, GMEM_FLAGS, '0') : undefined;
  },
  runModel(h, op) {
    const r = h.kvmCreateGuestMemfd(
      ioctlFd(op.vm),
      toU64(op.size),
      toU64(op.flags),
      Number(BigInt.asUintN(8, op.page_order ?? 0n)),
    );
    return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
  },
  runKvm(k, op) {
    const r = k.c.ioctlBuf(
      k.ioctlFd(op.vm),
      KVM_IOCTL.KVM_CREATE_GUEST_MEMFD,
      packCreateGuestMemfd(op.size, op.flags, op.page_order ?? 0n),
    );
    if (r.ret < 0) return out(kvmFail(r.errno));
    k.st.owned.add(r.ret);
    return out(ok(), { createdFd: r.ret });
  },
};

export const fallocate: OpSpec<FallocateOp> = {
  name: 'fallocate',
  fields: ['fd', 'mode', 'offset', 'len'],
  parse(r, line, as) {
    // fallocate(int fd, int mode, off_t offset, off_t len)
    return withAs(
      {
        line,
        op: 'fallocate',
        fd: r.fd('fd'),
        mode: r.int('mode', 32),
        offset: r.int('offset', 64),
        len: r.int('len', 64),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.fd),
      bitNames(op.mode, FALLOC_BITS, '0', 'FALLOC_FL_'),
      offsetText(op.offset),
      lengthText(op.len),
    );
  },
  timelineValue(field, v) {
    return field === 'mode' ? bitNames(v, FALLOC_BITS, '0 (allocate)') : undefined;
  },
  runModel(h, op) {
    const r = h.fallocate(
      fileFd(op.fd),
      Number(toS32(op.mode)),
      BigInt.asIntN(64, op.offset),
      BigInt.asIntN(64, op.len),
    );
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const r = k.c.fallocate(k.fileFd(op.fd), cInt(op.mode), op.offset, op.len);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
  kvmRefusal(op, env) {
    const bytes = fallocateAllocates(cInt(op.mode), cS64(op.offset), cS64(op.len), () =>
      env.fileSize(op.fd),
    );
    return bytes > MAX_POPULATE_BYTES
      ? `fallocate: allocating ${bytes} bytes of real memory exceeds the backend's 1 GiB limit`
      : undefined;
  },
};

export const ftruncate: OpSpec<FtruncateOp> = {
  name: 'ftruncate',
  fields: ['fd', 'length'],
  parse(r, line, as) {
    return withAs({ line, op: 'ftruncate', fd: r.fd('fd'), length: r.int('length', 64) }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), lengthText(op.length));
  },
  runModel(h, op) {
    const r = h.ftruncate(fileFd(op.fd), BigInt.asIntN(64, op.length));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const r = k.c.ftruncate(k.fileFd(op.fd), op.length);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
};

export const pread: OpSpec<PreadOp> = {
  name: 'pread',
  fields: ['fd', 'len', 'offset'],
  parse(r, line, as) {
    return withAs(
      {
        line,
        op: 'pread',
        fd: r.fd('fd'),
        len: r.byteCount('len'),
        offset: r.int('offset', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), op.len.toString(), offsetText(op.offset));
  },
  runModel(h, op) {
    const r = h.pread(fileFd(op.fd), toU64(op.len), BigInt.asIntN(64, op.offset));
    return { result: r.ok ? { ok: true, value: bytesToHex(r.value) } : fail(r) };
  },
  readBytes(op) {
    return op.len;
  },
  runKvm(k, op) {
    return out(kvmPread(k, k.fileFd(op.fd), cU64(op.len), cS64(op.offset)));
  },
};

export const pwrite: OpSpec<PwriteOp> = {
  name: 'pwrite',
  fields: ['fd', 'hex', 'offset'],
  parse(r, line, as) {
    return withAs(
      {
        line,
        op: 'pwrite',
        fd: r.fd('fd'),
        bytes: r.hexBytes('hex'),
        offset: r.int('offset', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a, style) {
    a.push(fdText(op.fd), dataText(bytesHex(op.bytes), style), offsetText(op.offset));
  },
  runModel(h, op) {
    const r = h.pwrite(fileFd(op.fd), op.bytes, BigInt.asIntN(64, op.offset));
    return { result: r.ok ? { ok: true, value: r.value } : fail(r) };
  },
  runKvm(k, op) {
    const b = Buffer.from(op.bytes);
    const r = k.c.pwrite(k.fileFd(op.fd), b, BigInt(b.length), op.offset);
    return out(r.ret < 0n ? kvmFail(r.errno) : ok({ value: r.ret }));
  },
};

export const fstat: OpSpec<FstatOp> = {
  name: 'fstat',
  fields: ['fd'],
  parse(r, line, as) {
    return withAs({ line, op: 'fstat', fd: r.fd('fd') }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd));
  },
  runModel(h, op) {
    const r = h.fstat(fileFd(op.fd));
    return {
      result: r.ok ? { ok: true, stat: { size: r.value.size, blocks: r.value.blocks } } : fail(r),
    };
  },
  runKvm(k, op) {
    const b = Buffer.alloc(STAT_SIZE);
    const r = k.c.fstat(k.fileFd(op.fd), b);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok({ stat: unpackStat(b) }));
  },
};

// ---------------------------------------------------------------------------------------------
// /dev/kvm execution (the real backend's machinery, KvmOpContext: its libc, trace state and fd policy)

/** pread(2) into the trace's scratch buffer (never the Node heap: the kernel writes there). */
function kvmPread(k: KvmOpContext, fd: number, len: bigint, off: bigint): ResultLine {
  if (len > MAX_READ_BYTES) throw new BackendRefusal(`pread of ${len} bytes: too large to report`);
  const scratch = k.st.m.scratch;
  const r = k.c.preadAt(fd, scratch, len, off);
  if (r.ret < 0n) return kvmFail(r.errno);
  const b = Buffer.allocUnsafe(Number(r.ret));
  if (b.length > 0) k.c.copyOut(b, scratch);
  return ok({ value: bytesToHex(b) });
}

// ---------------------------------------------------------------------------------------------
// Fuzz generators

function gmemSize(g: Gen): bigint {
  return g.r.weighted<bigint>([
    [6, BigInt(1 + g.r.int(8)) * PAGE],
    [3, BigInt(1 + g.r.int(4)) * 2n * MiB],
    [1, g.r.pick([0n, 1n, 4095n, 4097n, 1n << 62n, 1n << 63n, -4096n, 1n << 40n])],
  ]);
}

export function genCreateGmem(g: Gen): void {
  const name = g.name('g');
  const vm = g.vms.length > 0 ? g.r.pick(g.vms) : NO_VM;
  const size = gmemSize(g);
  const flags = g.r.weighted<bigint>([
    [4, 3n],
    [3, 1n],
    [2, 0n],
    [1, 2n],
    [1, g.r.pick([4n, 8n, 7n, 1n << 63n, 1n << 32n])],
  ]);
  const res = g.push({
    op: 'KVM_CREATE_GUEST_MEMFD',
    vm: g.r.chance(0.95) ? vmArg(vm) : g.vmFd(),
    size,
    flags,
    as: name,
  });
  if (res === undefined || (!res.ok && g.r.chance(0.9))) return;
  g.gmems.push({ name, vm, size, flags });
  g.fdNames.push(name);
}

/**
 * A guest_memfd of `size` bytes on `vm` (scenarios and walks); `as` is its handle; a HugeTLB
 * `pageOrder` (walks on linux-next-gmem; 0 leaves the field out); the result.
 */
export function genGmemOf(
  g: Gen,
  vm: string,
  size: bigint,
  flags: bigint,
  as: string,
  pageOrder = 0n,
): ResultLine | undefined {
  return g.push({
    op: 'KVM_CREATE_GUEST_MEMFD',
    vm: { kind: 'handle', name: vm },
    size,
    flags,
    ...(pageOrder !== 0n ? { page_order: pageOrder } : {}),
    as,
  });
}

export function genFallocate(g: Gen): void {
  const gm = g.gmems.length > 0 ? g.r.pick(g.gmems) : undefined;
  const size = gm && gm.size > 0n && gm.size <= 64n * MiB ? gm.size : 65536n;
  const mode = BigInt(
    g.r.weighted<number>([
      [8, 3],
      [5, 1],
      [1, 0],
      [1, 2],
      [1, g.r.pick([0x10, 0x11, 0x8, 0x20, 0x40, 0x41, 0x80, 7, 0x13, 0x100])],
    ]),
  );
  let offset = g.r.weighted<bigint>([
    [8, g.page(Number(size / PAGE) + 1)],
    [1, g.r.pick([1n, 4095n, -4096n, size, size + 4096n])],
  ]);
  let len = g.r.weighted<bigint>([
    [8, BigInt(1 + g.r.int(Math.max(1, Number(size / PAGE)))) * PAGE],
    [1, g.r.pick([0n, 1n, 4095n, -4096n, 1n << 62n, (1n << 63n) - 1n])],
  ]);
  // Safety: never ask the real kernel to allocate more than 64 MiB in one call.
  if ((mode & 2n) === 0n && len > 64n * MiB) len = 4096n;
  if ((mode & 2n) === 0n && offset > 1n << 40n) offset = 0n;
  g.push({
    op: 'fallocate',
    fd: gm && g.r.chance(0.9) ? { kind: 'handle', name: gm.name } : g.anyFd(),
    mode,
    offset,
    len,
  });
}

/** fallocate of one page of guest_memfd `gmem` at `offset` (scenarios). */
export function genFallocatePage(g: Gen, gmem: string, offset: bigint): void {
  g.push({
    op: 'fallocate',
    fd: { kind: 'handle', name: gmem },
    mode: g.r.chance(0.7) ? 3n : 1n,
    offset,
    len: PAGE,
  });
}

/** fallocate(`mode`) of [offset, offset + len) of guest_memfd `gmem` (walks). */
export function genFallocateAt(
  g: Gen,
  gmem: string,
  mode: bigint,
  offset: bigint,
  len: bigint,
): ResultLine | undefined {
  return g.push({ op: 'fallocate', fd: { kind: 'handle', name: gmem }, mode, offset, len });
}

function genFstat(g: Gen, fd: FdArg): void {
  g.push({ op: 'fstat', fd });
}
function genPread(g: Gen, fd: FdArg): void {
  g.push({
    op: 'pread',
    fd,
    len: BigInt(g.r.pick([0, 8, 64])),
    offset: g.r.pick([0n, 4096n, -1n]),
  });
}
function genPwrite(g: Gen, fd: FdArg): void {
  g.push({
    op: 'pwrite',
    fd,
    bytes: g.r.bytes(g.r.pick([1, 8])),
    offset: g.r.pick([0n, 4096n, -1n]),
  });
}
function genFtruncate(g: Gen, fd: FdArg): void {
  g.push({ op: 'ftruncate', fd, length: g.r.pick([0n, 4096n, 8192n, -1n]) });
}

/** One file syscall on a guest_memfd (mostly) or any fd: fstat, pread, pwrite, ftruncate, close. */
const FILE_OPS: ReadonlyArray<(g: Gen, fd: FdArg) => void> = [
  genFstat,
  genFstat,
  genPread,
  genPwrite,
  genFtruncate,
  genClose,
];

export function genFileOp(g: Gen): void {
  const fd = g.r.chance(0.6) ? g.gmemFd() : g.anyFd();
  g.r.pick(FILE_OPS)(g, fd);
}

/** The guest_memfd family: its ops and fuzz generators (weights among every family's generators). */
export const GUEST_MEMFD_FAMILY: OpFamily<GuestMemfdFamilyOp> = {
  name: 'guest_memfd',
  ops: [createGuestMemfd, fallocate, ftruncate, pread, pwrite, fstat],
  generators: [
    [4, genCreateGmem],
    [6, genFallocate],
    [4, genFileOp],
  ],
};
