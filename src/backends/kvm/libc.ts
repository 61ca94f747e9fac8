/**
 * Minimal libc bindings for the real-KVM backend (koffi FFI, x86-64 Linux, glibc).
 *
 * Every wrapper returns the raw C return value (number, or bigint for 64-bit results) and the
 * errno observed right after the call; callers never see exceptions for failing syscalls.
 * Addresses are passed as u64 bigints; byte buffers are Node Buffers (koffi passes a pointer to
 * their contents). Arguments are expected to be already truncated to their C types by the caller
 * (koffi turns out-of-range values into garbage, so `cInt`/`cU64`/`cS64` below exist to make
 * the truncation explicit at each call site).
 */
import { createRequire } from 'node:module';

type Koffi = typeof import('koffi');

/** koffi is loaded on first use, so a missing FFI module becomes an "unavailable" reason. */
function loadKoffi(): Koffi {
  const require = createRequire(import.meta.url);
  return require('koffi') as Koffi;
}

export type SysResult<T> = { readonly ret: T; readonly errno: number };

/** C `int` from any bigint, as a C cast would. */
export function cInt(v: bigint): number {
  return Number(BigInt.asIntN(32, v));
}
/** C `unsigned int` / u32. */
export function cU32(v: bigint): number {
  return Number(BigInt.asUintN(32, v));
}
/** u64 / size_t / unsigned long. */
export function cU64(v: bigint): bigint {
  return BigInt.asUintN(64, v);
}
/** off_t / s64. */
export function cS64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}

/** Normalise a koffi 64-bit result (number or bigint) to a u64 bigint. */
function u64(v: unknown): bigint {
  return BigInt.asUintN(64, BigInt(v as number | bigint));
}
/** Normalise a koffi ssize_t result to a signed bigint. */
function s64(v: unknown): bigint {
  return BigInt.asIntN(64, BigInt(v as number | bigint));
}

export const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

type Fn = (...args: unknown[]) => unknown;

/** The libc functions the backend calls, each with the exact prototype it is called with. */
function bindLibc(k: Koffi) {
  const lib = k.load('libc.so.6');
  const d = (name: string, ret: string, args: string[]): Fn => lib.func(name, ret, args) as Fn;
  return {
    open: d('open', 'int', ['str', 'int', 'int']),
    close: d('close', 'int', ['int']),
    ioctlU: d('ioctl', 'int', ['int', 'unsigned long', 'uint64_t']),
    ioctlP: d('ioctl', 'int', ['int', 'unsigned long', 'void *']),
    mmap: d('mmap', 'uint64_t', ['uint64_t', 'uint64_t', 'int', 'int', 'int', 'int64_t']),
    munmap: d('munmap', 'int', ['uint64_t', 'uint64_t']),
    mprotect: d('mprotect', 'int', ['uint64_t', 'uint64_t', 'int']),
    madvise: d('madvise', 'int', ['uint64_t', 'uint64_t', 'int']),
    fallocate: d('fallocate', 'int', ['int', 'int', 'int64_t', 'int64_t']),
    ftruncate: d('ftruncate', 'int', ['int', 'int64_t']),
    memfdCreate: d('memfd_create', 'int', ['str', 'unsigned int']),
    preadAt: d('pread', 'int64_t', ['int', 'uint64_t', 'uint64_t', 'int64_t']),
    pread: d('pread', 'int64_t', ['int', 'void *', 'uint64_t', 'int64_t']),
    pwrite: d('pwrite', 'int64_t', ['int', 'void *', 'uint64_t', 'int64_t']),
    fstat: d('fstat', 'int', ['int', 'void *']),
    pipe2: d('pipe2', 'int', ['void *', 'int']),
    vmsplice: d('vmsplice', 'int64_t', ['int', 'void *', 'uint64_t', 'unsigned int']),
    read: d('read', 'int64_t', ['int', 'void *', 'uint64_t']),
    readTo: d('read', 'int64_t', ['int', 'uint64_t', 'uint64_t']),
    write: d('write', 'int64_t', ['int', 'void *', 'uint64_t']),
    writeFrom: d('write', 'int64_t', ['int', 'uint64_t', 'uint64_t']),
    copyIn: d('memcpy', 'uint64_t', ['uint64_t', 'void *', 'uint64_t']),
    copyOut: d('memcpy', 'uint64_t', ['void *', 'uint64_t', 'uint64_t']),
    gettid: d('gettid', 'int', []),
    timerCreate: d('timer_create', 'int', ['int', 'void *', 'void *']),
    timerSettime: d('timer_settime', 'int', ['uint64_t', 'int', 'void *', 'void *']),
    timerDelete: d('timer_delete', 'int', ['uint64_t']),
  };
}

class Libc {
  private readonly k: Koffi = loadKoffi();
  private readonly f: ReturnType<typeof bindLibc> = bindLibc(this.k);

  // Each wrapper calls its koffi function directly: a shared `call(name, ...args)` dispatcher
  // becomes megamorphic (spread of varying arity) and costs ~70 ns per ioctl (bench ffi).
  private r(ret: unknown): SysResult<number> {
    const n = ret as number;
    return { ret: n, errno: n === -1 ? this.k.errno() : 0 };
  }
  private r64(ret: unknown): SysResult<bigint> {
    const n = s64(ret);
    return { ret: n, errno: n === -1n ? this.k.errno() : 0 };
  }

  open(path: string, flags: number, mode = 0): SysResult<number> {
    return this.r(this.f.open(path, flags, mode));
  }
  close(fd: number): SysResult<number> {
    return this.r(this.f.close(fd));
  }
  /** ioctl with an integer (unsigned long) argument. */
  ioctlInt(fd: number, req: number, arg: bigint): SysResult<number> {
    return this.r(this.f.ioctlU(fd, req, cU64(arg)));
  }
  /** ioctl with a pointer to `buf` (read and/or written by the kernel in place). */
  ioctlBuf(fd: number, req: number, buf: Buffer): SysResult<number> {
    return this.r(this.f.ioctlP(fd, req, buf));
  }
  mmap(
    addr: bigint,
    len: bigint,
    prot: number,
    flags: number,
    fd: number,
    off: bigint,
  ): SysResult<bigint> {
    const ret = u64(this.f.mmap(cU64(addr), cU64(len), prot, flags, fd, cS64(off)));
    return { ret, errno: ret === MAP_FAILED ? this.k.errno() : 0 };
  }
  munmap(addr: bigint, len: bigint): SysResult<number> {
    return this.r(this.f.munmap(cU64(addr), cU64(len)));
  }
  mprotect(addr: bigint, len: bigint, prot: number): SysResult<number> {
    return this.r(this.f.mprotect(cU64(addr), cU64(len), prot));
  }
  madvise(addr: bigint, len: bigint, advice: number): SysResult<number> {
    return this.r(this.f.madvise(cU64(addr), cU64(len), advice));
  }
  fallocate(fd: number, mode: number, off: bigint, len: bigint): SysResult<number> {
    return this.r(this.f.fallocate(fd, mode, cS64(off), cS64(len)));
  }
  ftruncate(fd: number, len: bigint): SysResult<number> {
    return this.r(this.f.ftruncate(fd, cS64(len)));
  }
  /** memfd_create(2): an anonymous shmem file (the benchmarks' stand-in for a guest_memfd). */
  memfdCreate(name: string, flags: number): SysResult<number> {
    return this.r(this.f.memfdCreate(name, flags));
  }
  pread(fd: number, buf: Buffer, count: bigint, off: bigint): SysResult<bigint> {
    return this.r64(this.f.pread(fd, buf, cU64(count), cS64(off)));
  }
  /** pread into raw memory at `addr` (used for very large counts). */
  preadAt(fd: number, addr: bigint, count: bigint, off: bigint): SysResult<bigint> {
    return this.r64(this.f.preadAt(fd, cU64(addr), cU64(count), cS64(off)));
  }
  pwrite(fd: number, buf: Buffer, count: bigint, off: bigint): SysResult<bigint> {
    return this.r64(this.f.pwrite(fd, buf, cU64(count), cS64(off)));
  }
  fstat(fd: number, statBuf: Buffer): SysResult<number> {
    return this.r(this.f.fstat(fd, statBuf));
  }
  pipe2(flags: number): SysResult<[number, number]> {
    const b = Buffer.alloc(8);
    const r = this.r(this.f.pipe2(b, flags));
    return { ret: [b.readInt32LE(0), b.readInt32LE(4)], errno: r.ret === -1 ? r.errno : 0 };
  }
  /** vmsplice(2) with one iovec {base, len}. */
  vmsplice(fd: number, base: bigint, len: bigint, flags: number): SysResult<bigint> {
    const iov = Buffer.alloc(16);
    iov.writeBigUInt64LE(BigInt.asUintN(64, base), 0);
    iov.writeBigUInt64LE(BigInt.asUintN(64, len), 8);
    return this.r64(this.f.vmsplice(fd, iov, 1n, flags >>> 0));
  }
  read(fd: number, buf: Buffer, count: number): SysResult<bigint> {
    return this.r64(this.f.read(fd, buf, BigInt(count)));
  }
  /** read(2) whose destination is raw memory (copy_to_user into `addr`). */
  readTo(fd: number, addr: bigint, count: number): SysResult<bigint> {
    return this.r64(this.f.readTo(fd, cU64(addr), BigInt(count)));
  }
  write(fd: number, buf: Buffer, count: number): SysResult<bigint> {
    return this.r64(this.f.write(fd, buf, BigInt(count)));
  }
  /** write(2) whose source is raw memory (copy_from_user from `addr`). */
  writeFrom(fd: number, addr: bigint, count: number): SysResult<bigint> {
    return this.r64(this.f.writeFrom(fd, cU64(addr), BigInt(count)));
  }
  /** memcpy into memory the backend itself mapped (never trace memory). */
  copyIn(dst: bigint, src: Buffer, n?: number): void {
    this.f.copyIn(dst, src, BigInt(n ?? src.length));
  }
  /** memcpy out of memory the backend itself mapped (never trace memory). */
  copyOut(dst: Buffer, src: bigint, n?: number): void {
    this.f.copyOut(dst, src, BigInt(n ?? dst.length));
  }
  gettid(): number {
    return this.f.gettid() as number;
  }
  /** timer_create(CLOCK_MONOTONIC, SIGEV_THREAD_ID → tid, signo); returns the timer id. */
  timerCreateThread(tid: number, signo: number): SysResult<bigint> {
    const sev = Buffer.alloc(64);
    sev.writeInt32LE(signo, 8); // sigev_signo
    sev.writeInt32LE(4, 12); // sigev_notify = SIGEV_THREAD_ID
    sev.writeInt32LE(tid, 16); // _sigev_un._tid
    const out = Buffer.alloc(8);
    const r = this.r(this.f.timerCreate(1 /* CLOCK_MONOTONIC */, sev, out));
    return { ret: r.ret === -1 ? -1n : out.readBigUInt64LE(0), errno: r.errno };
  }
  /** Arm (or disarm with 0/0) a timer: first expiry after `valueNs`, then every `intervalNs`. */
  timerSettime(timer: bigint, valueNs: bigint, intervalNs: bigint): SysResult<number> {
    const its = Buffer.alloc(32);
    its.writeBigInt64LE(intervalNs / 1_000_000_000n, 0);
    its.writeBigInt64LE(intervalNs % 1_000_000_000n, 8);
    its.writeBigInt64LE(valueNs / 1_000_000_000n, 16);
    its.writeBigInt64LE(valueNs % 1_000_000_000n, 24);
    return this.r(this.f.timerSettime(timer, 0, its, null));
  }
  timerDelete(timer: bigint): SysResult<number> {
    return this.r(this.f.timerDelete(timer));
  }
}

let instance: Libc | undefined;

/** The process-wide libc binding (loaded on first use). Throws if libc cannot be loaded. */
export function libc(): Libc {
  instance ??= new Libc();
  return instance;
}

export type { Libc };

/** open(2) flags and friends used by the backend. */
export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;

/** errno numbers the backend reacts to. */
export const EINTR = 4;
export const EAGAIN = 11;
export const EFAULT = 14;
export const EEXIST = 17;
export const EHWPOISON = 133;
