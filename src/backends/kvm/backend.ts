/**
 * The real-KVM backend: runs each trace op as the real syscall / ioctl on /dev/kvm and reports
 * what the kernel returned. It simulates nothing except where the contract says so (mmap
 * placement, the guest-program runner, fault reporting for peek/poke) and refuses ops that could
 * touch the Node process's own memory or files.
 */
import { errnoName } from '../../core/base/errno.js';
import { MMAP_ARENA_BASE } from '../../core/mm/host_layout.js';
import type { Backend, OpOutcome, ResolvedFd, ResolvedOp } from '../../trace/types.js';
import { BackendRefusal } from '../../trace/types.js';
import { arena } from './arena.js';
import { kvmRefusalOf, OPS } from '../../ops/registry.js';
import { hostHasPku } from './host_facts.js';
import { O_CLOEXEC, O_NONBLOCK, O_RDWR, cInt, libc, MAP_FAILED, type SysResult } from './libc.js';
import { ProcFiles } from './maps.js';
import type { KvmOpContext, Machinery, Mapping, TraceState } from './context.js';
import { PAGE, type RefusalEnv } from './rules.js';
import { STAT_SIZE, unpackStat } from './structs.js';

/** A descriptor number that is never open (above any RLIMIT_NOFILE): gives EBADF. */
export const CLOSED_FD = 0x7fff_ffff;

export { MAX_POPULATE_BYTES } from './rules.js';

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;

/** Largest peek / pread result the backend turns into hex (the parser's limit). */
const MAX_READ_BYTES = 16n << 20n;

const noop = (): void => {};

export class KvmBackend implements Backend, KvmOpContext {
  readonly name = 'kvm';
  readonly c = libc();
  private t: TraceState | undefined;
  private disposed = false;
  /** The KVM_RUN watchdog timer (src/ops/vcpu.ts arms it), deleted by dispose(). */
  timer: bigint | undefined;

  /** @param vcpuMmapSize KVM_GET_VCPU_MMAP_SIZE, measured when the backend was opened. */
  constructor(readonly vcpuMmapSize: number) {
    arena.acquire();
    // A handler makes SIGURG interrupt KVM_RUN (EINTR); the run watchdog timer sends it.
    process.on('SIGURG', noop);
  }

  /** Release everything, including a trace that was not ended. The backend is unusable after. */
  dispose(): void {
    if (this.disposed) return;
    if (this.t !== undefined) this.end();
    if (this.timer !== undefined) this.c.timerDelete(this.timer);
    this.timer = undefined;
    process.off('SIGURG', noop);
    arena.release();
    this.disposed = true;
  }

  // -------------------------------------------------------------------------------------------
  // Trace lifetime

  begin(): number {
    if (this.disposed) throw new Error('KvmBackend: begin() after dispose()');
    if (this.t !== undefined) this.end();
    if (arena.owner !== undefined && arena.owner !== this)
      throw new Error(
        'KvmBackend: another KvmBackend in this process has a trace in progress (the arena is per process)',
      );
    // Read once now (it opens /proc/cpuinfo); fault classification needs it mid-trace.
    hostHasPku();
    const internal: Mapping[] = [];
    const kvm = this.c.open('/dev/kvm', O_RDWR | O_CLOEXEC);
    if (kvm.ret < 0) this.setupFailed('open /dev/kvm', kvm.errno, internal);
    const m = this.acquireMachinery(internal, kvm.ret);
    arena.owner = this;
    this.t = {
      kvmFd: kvm.ret,
      owned: new Set([kvm.ret]),
      vms: new Map(),
      vcpus: new Map(),
      internal,
      cursor: MMAP_ARENA_BASE,
      m,
    };
    return kvm.ret;
  }

  /** The pipe, the /proc files, the code page and the pread scratch; a failure is a refusal. */
  private acquireMachinery(internal: Mapping[], kvmFd: number): Machinery {
    const c = this.c;
    const fds = [kvmFd];
    const p = c.pipe2(O_NONBLOCK | O_CLOEXEC);
    if (p.errno !== 0) this.setupFailed('pipe2', p.errno, internal, fds);
    fds.push(...p.ret);
    const proc = ProcFiles.open();
    if (!(proc instanceof ProcFiles))
      this.setupFailed(`open ${proc.path}`, proc.errno, internal, fds);
    const anon = (len: bigint, extra: number): SysResult<bigint> =>
      c.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0n);
    const code = anon(PAGE, 0);
    if (code.ret === MAP_FAILED) {
      proc.close();
      this.setupFailed('mmap of the code page', code.errno, internal, fds);
    }
    internal.push({ addr: code.ret, len: PAGE });
    // NORESERVE: no commit charge; only the pages a pread fills are ever allocated.
    const scratch = anon(MAX_READ_BYTES, MAP_NORESERVE);
    if (scratch.ret === MAP_FAILED) {
      proc.close();
      this.setupFailed('mmap of the pread buffer', scratch.errno, internal, fds);
    }
    internal.push({ addr: scratch.ret, len: MAX_READ_BYTES });
    return { pipe: [p.ret[0], p.ret[1]], proc, codePage: code.ret, scratch: scratch.ret };
  }

  /** Release what begin() acquired so far and refuse the trace (EMFILE, ENFILE, ENOMEM, ...). */
  private setupFailed(what: string, errno: number, internal: Mapping[], fds: number[] = []): never {
    for (const m of internal) this.c.munmap(m.addr, m.len);
    for (const fd of fds) this.c.close(fd);
    throw new BackendRefusal(
      `the real backend cannot start the trace: ${what} failed with ${errnoName(errno)}`,
    );
  }

  end(): void {
    const t = this.t;
    if (t === undefined) return;
    for (const m of t.internal) this.c.munmap(m.addr, m.len);
    const traceMaps = [...arena.traceMapped.list];
    for (const m of traceMaps) this.c.munmap(m.s, m.e - m.s);
    arena.traceMapped.clear();
    arena.restore(traceMaps);
    for (const fd of t.owned) this.c.close(fd);
    this.c.close(t.m.pipe[0]);
    this.c.close(t.m.pipe[1]);
    t.m.proc.close();
    this.t = undefined;
    if (arena.owner === this) arena.owner = undefined;
  }

  get st(): TraceState {
    if (this.t === undefined) throw new Error('KvmBackend: exec() outside begin()/end()');
    return this.t;
  }

  // -------------------------------------------------------------------------------------------
  // Argument policy

  /** A trace-owned fd as is; anything else that is not -1 becomes CLOSED_FD (never our files). */
  private objFd(fd: number): number {
    if (fd < 0) return fd;
    return this.st.owned.has(fd) ? fd : CLOSED_FD;
  }

  /** fd of an ioctl-type op: raw 0..2 and negative values pass, other raw values are closed. */
  ioctlFd(f: ResolvedFd): number {
    if (f.kind === 'obj') return this.objFd(f.fd);
    const v = cInt(f.value);
    return v <= 2 ? v : CLOSED_FD;
  }

  /** fd of a file op: raw values never reach the kernel as a real descriptor (negative ones pass). */
  fileFd(f: ResolvedFd): number {
    if (f.kind === 'obj') return this.objFd(f.fd);
    const v = cInt(f.value);
    return v < 0 ? v : CLOSED_FD;
  }

  /** The u32 guest_memfd field of KVM_SET_USER_MEMORY_REGION2. */
  gmemField(f: ResolvedFd): bigint {
    if (f.kind === 'obj')
      return f.fd >= 0 && this.st.owned.has(f.fd) ? BigInt(f.fd) : BigInt(CLOSED_FD);
    const v = BigInt.asUintN(32, f.value);
    return v <= 2n ? v : BigInt(CLOSED_FD);
  }

  /**
   * The live state the refusal rules (rules.ts) look at: the arena bookkeeping, this process's
   * maps (read fresh when a rule needs them) and fstat of the real fd.
   */
  private refusalEnv(): RefusalEnv {
    const t = this.st;
    return {
      cursor: t.cursor,
      foreign: arena.foreign,
      traceMapped: arena.traceMapped.list,
      maps: () => t.m.proc.maps(),
      fileSize: (f) => {
        const fd = this.fileFd(f);
        if (fd < 0) return undefined;
        const b = Buffer.alloc(STAT_SIZE);
        return this.c.fstat(fd, b).ret < 0 ? undefined : unpackStat(b).size;
      },
    };
  }

  // -------------------------------------------------------------------------------------------
  // Dispatch

  exec(op: ResolvedOp): OpOutcome {
    // Every refusal is decided here, before the op touches anything (precheckTrace() applies the
    // same rules to a model replay of the whole trace before it starts).
    const refusal = kvmRefusalOf(op, this.refusalEnv());
    if (refusal !== undefined) throw new BackendRefusal(refusal);
    return OPS.get(op.op)!.runKvm(this, op);
  }

  // -------------------------------------------------------------------------------------------
  // vCPUs and the code slot

  // -------------------------------------------------------------------------------------------
  // Memory ops
}
