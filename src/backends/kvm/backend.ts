/**
 * The real-KVM backend: runs each trace op as the real syscall / ioctl on /dev/kvm and reports
 * what the kernel returned. It simulates nothing except where the contract says so (mmap
 * placement, the guest-program runner, fault reporting for peek/poke) and refuses ops that could
 * touch the Node process's own memory or files.
 */
import { errnoName } from '../../core/base/errno.js';
import { MMAP_ARENA_BASE, nextArenaCursor } from '../../core/mm/host_layout.js';
import { KVM_IOCTL, TRACE_CODE_GPA, TRACE_CODE_SLOT } from '../../core/base/uapi.js';
import { bytesToHex } from '../../trace/format.js';
import type {
  Backend,
  Exit,
  OpOutcome,
  ResolvedFd,
  ResolvedOp,
  ResultLine,
} from '../../trace/types.js';
import { BackendRefusal } from '../../trace/types.js';
import { arena, type Interval } from './arena.js';
import { fail, ok, out } from './outcome.js';
import { kvmRefusalOf, OPS } from '../../ops/registry.js';
import { hostHasPku } from './host_facts.js';
import {
  CODE_PAGE_SIZE,
  FLAT_CODE,
  FLAT_DATA,
  LDT,
  TSS,
  PORT_CONTINUE,
  PORT_HYPERCALL_RET,
  PORT_LOAD,
  type CompiledProgram,
} from './guest_code.js';
import {
  EAGAIN,
  EFAULT,
  EHWPOISON,
  EINTR,
  O_CLOEXEC,
  O_NONBLOCK,
  O_RDWR,
  cInt,
  cU64,
  libc,
  MAP_FAILED,
  type SysResult,
} from './libc.js';
import { ProcFiles, mappingAt } from './maps.js';
import {
  PAGE,
  addrOf,
  ceilPage,
  floorPage,
  planMmap,
  vmaRangeWraps,
  type RefusalEnv,
} from './rules.js';
import {
  KVM_EXIT_IO_OUT,
  KVM_SREGS_SIZE,
  RUN,
  RUN_HEADER_BYTES,
  STAT_SIZE,
  decodeRun,
  packMemoryRegion,
  packRegs,
  unpackStat,
  writeDtable,
  writeSegment,
  writeSreg,
} from './structs.js';

/** A descriptor number that is never open (above any RLIMIT_NOFILE): gives EBADF. */
export const CLOSED_FD = 0x7fff_ffff;

export { MAX_POPULATE_BYTES } from './rules.js';

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 0x01;
const MAP_PRIVATE = 0x02;
const MAP_ANONYMOUS = 0x20;
const MAP_NORESERVE = 0x4000;
const MAP_FIXED_NOREPLACE = 0x100000;
const MAP_FIXED = 0x10;
const MAP_TYPE = 0x0f;
const MAP_SHARED_VALIDATE = 0x03;

/** Largest peek / pread result the backend turns into hex (the parser's limit). */
const MAX_READ_BYTES = 16n << 20n;
/**
 * Bytes a peek / poke moves through the pipe per write/read pair: the default pipe capacity
 * (PIPE_DEF_BUFFERS pages), so one pair moves up to 16 pages.
 */
const PIPE_CHUNK = 16 * 4096;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

/** KVM_RUN loop bounds. */
const RUN_TIMEOUT_MS = 2000;
const RUN_MAX_RETRIES = 10_000;
const RUN_MAX_EXITS_FLOOR = 100_000;
const SIGURG = 23;

export type VmInfo = {
  /** The VM fd while the trace holds it open, else -1. */
  fd: number;
  hadVcpu: boolean;
  codeSlot: boolean;
};

type VcpuInfo = {
  readonly fd: number;
  readonly vm: VmInfo;
  readonly run: bigint;
  readonly runSize: number;
};

type Mapping = { readonly addr: bigint; readonly len: bigint };

/**
 * What the backend itself needs to run any op, acquired in begin() before the first op, so a
 * trace that uses up the process's descriptors or address space cannot starve the backend.
 */
type Machinery = {
  /** The pipe peek / poke copy through (O_NONBLOCK): read end, write end. */
  readonly pipe: readonly [number, number];
  /** /proc/self/maps and /proc/self/pagemap, held open. */
  readonly proc: ProcFiles;
  /** The guest code page (one anonymous page): every VM's slot 32763 maps it. */
  readonly codePage: bigint;
  /** MAX_READ_BYTES of NORESERVE anonymous memory that pread reads into. */
  readonly scratch: bigint;
};

export type TraceState = {
  kvmFd: number;
  readonly owned: Set<number>;
  readonly vms: Map<number, VmInfo>;
  readonly vcpus: Map<number, VcpuInfo>;
  /** Backend-owned mappings (kvm_run areas, code page, pread scratch), kernel-chosen addresses. */
  readonly internal: Mapping[];
  cursor: bigint;
  readonly m: Machinery;
};

const noop = (): void => {};

export class KvmBackend implements Backend {
  readonly name = 'kvm';
  readonly c = libc();
  private t: TraceState | undefined;
  private disposed = false;
  private timer: bigint | undefined;

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

  createVcpu(vmFd: number, id: bigint): OpOutcome {
    const t = this.st;
    const r = this.c.ioctlInt(vmFd, KVM_IOCTL.KVM_CREATE_VCPU, id);
    if (r.ret < 0) return out(fail(r.errno));
    const fd = r.ret;
    t.owned.add(fd);
    const vm = t.vms.get(vmFd) ?? { fd: -1, hadVcpu: false, codeSlot: false };
    const len = BigInt(this.vcpuMmapSize);
    const m = this.c.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
    // The vCPU exists (its fd is owned and closed at end()); without its kvm_run page the backend
    // cannot run it, which no result line can say (ENOMEM at vm.max_map_count, say).
    if (m.ret === MAP_FAILED)
      throw new BackendRefusal(
        `KVM_CREATE_VCPU: the real backend cannot map the new vCPU's kvm_run area (mmap failed with ${errnoName(m.errno)})`,
      );
    t.internal.push({ addr: m.ret, len });
    t.vcpus.set(fd, { fd, vm, run: m.ret, runSize: this.vcpuMmapSize });
    if (!vm.hadVcpu) {
      vm.hadVcpu = true;
      this.ensureCodeSlot(vm);
    }
    return out(ok(), { createdFd: fd });
  }

  /**
   * Create memslot 32763 (GPA 0xFFFFF000) on the trace's code page if the VM lacks it. All VMs
   * share the page: each run writes its program there before its first KVM_RUN, and runs do not
   * overlap.
   */
  private ensureCodeSlot(vm: VmInfo): boolean {
    if (vm.codeSlot) return true;
    if (vm.fd < 0) return false;
    const region = packMemoryRegion({
      slot: BigInt(TRACE_CODE_SLOT),
      flags: 0n,
      guest_phys_addr: TRACE_CODE_GPA,
      memory_size: PAGE,
      userspace_addr: this.st.m.codePage,
    });
    vm.codeSlot = this.c.ioctlBuf(vm.fd, KVM_IOCTL.KVM_SET_USER_MEMORY_REGION, region).ret === 0;
    return vm.codeSlot;
  }

  private writeCode(page: bigint, code: Uint8Array): void {
    const b = Buffer.alloc(CODE_PAGE_SIZE, 0xf4); // hlt everywhere after the batch
    b.set(code, 0);
    this.c.copyIn(page, b);
  }

  private setupVcpu(fd: number): number {
    const c = this.c;
    const sregs = Buffer.alloc(KVM_SREGS_SIZE);
    let r = c.ioctlBuf(fd, KVM_IOCTL.KVM_GET_SREGS, sregs);
    if (r.ret < 0) return r.errno;
    writeSegment(sregs, 'cs', FLAT_CODE);
    for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const) writeSegment(sregs, s, FLAT_DATA);
    writeSegment(sregs, 'tr', TSS);
    writeSegment(sregs, 'ldt', LDT);
    writeDtable(sregs, 'gdt', 0n, 0);
    writeDtable(sregs, 'idt', 0n, 0);
    writeSreg(sregs, 'cr0', 1n);
    writeSreg(sregs, 'cr3', 0n);
    writeSreg(sregs, 'cr4', 0n);
    writeSreg(sregs, 'efer', 0n);
    r = c.ioctlBuf(fd, KVM_IOCTL.KVM_SET_SREGS, sregs);
    if (r.ret < 0) return r.errno;
    return this.resetRip(fd);
  }

  private resetRip(fd: number): number {
    const r = this.c.ioctlBuf(
      fd,
      KVM_IOCTL.KVM_SET_REGS,
      packRegs({ rip: TRACE_CODE_GPA, rflags: 2n }),
    );
    return r.ret < 0 ? r.errno : 0;
  }

  /**
   * Arm (ms > 0) or disarm (0) the KVM_RUN watchdog: a POSIX timer that sends SIGURG to this
   * thread after `ms`, then every 50 ms, so a guest that never exits makes KVM_RUN return EINTR.
   */
  private armWatchdog(ms: number): void {
    if (this.timer === undefined) {
      if (ms === 0) return;
      const r = this.c.timerCreateThread(this.c.gettid(), SIGURG);
      if (r.errno !== 0) return; // no watchdog: the exit bound still applies
      this.timer = r.ret;
    }
    if (ms > 0) this.c.timerSettime(this.timer, BigInt(ms) * 1_000_000n, 50_000_000n);
    else this.c.timerSettime(this.timer, 0n, 0n);
  }

  run(vcpuArg: ResolvedFd, prog: CompiledProgram): ResultLine {
    const c = this.c;
    const fd = this.ioctlFd(vcpuArg);
    const vcpu = this.st.vcpus.get(fd);
    if (vcpu === undefined) {
      // Not one of the trace's vCPUs: the ioctl fails (EBADF, ENOTTY); report it as is.
      const r = c.ioctlInt(fd, KVM_IOCTL.KVM_RUN, 0n);
      return r.ret < 0 ? fail(r.errno, { exits: [] }) : ok({ exits: [] });
    }
    if (!this.ensureCodeSlot(vcpu.vm)) return { ok: false, errno: 'ENOEXEC', exits: [] };
    const page = this.st.m.codePage;
    const exits: Exit[] = [];
    let batch = 0;
    this.writeCode(page, prog.batches[0]!);
    const e = this.setupVcpu(fd);
    if (e !== 0) return fail(e, { exits });

    const header = Buffer.alloc(RUN_HEADER_BYTES);
    const zero4 = Buffer.alloc(4);
    const zero8 = Buffer.alloc(8);
    let loadIdx = 0;
    let nExits = 0;
    let retries = 0;
    const maxExits = RUN_MAX_EXITS_FLOOR + 4 * prog.loads.length + 4 * prog.batches.length;
    // Emulated steps cost microseconds each: allow 0.1 ms per step on top of the base budget.
    const budgetMs = RUN_TIMEOUT_MS + Math.ceil(prog.steps / 10);
    const deadline = Date.now() + budgetMs;
    this.armWatchdog(budgetMs);
    try {
      for (;;) {
        c.copyIn(vcpu.run + BigInt(RUN.exit_reason), zero4); // so a stale reason is never read
        const r = c.ioctlInt(fd, KVM_IOCTL.KVM_RUN, 0n);
        if (r.ret < 0) {
          if (
            (r.errno === EINTR || r.errno === EAGAIN) &&
            ++retries <= RUN_MAX_RETRIES &&
            Date.now() < deadline
          )
            continue;
          if (r.errno === EFAULT || r.errno === EHWPOISON) {
            c.copyOut(header, vcpu.run);
            const x = decodeRun(header);
            if (x.kind === 'memory_fault')
              exits.push({ reason: 'MEMORY_FAULT', gpa: x.gpa, size: x.size, flags: x.flags });
          }
          return fail(r.errno, { exits });
        }
        if (++nExits > maxExits) return { ok: false, errno: 'ELOOP', exits };
        c.copyOut(header, vcpu.run);
        const x = decodeRun(header);
        switch (x.kind) {
          case 'io': {
            if (x.direction !== KVM_EXIT_IO_OUT || x.count !== 1) break;
            if (x.port === PORT_LOAD && loadIdx < prog.loads.length) {
              const ld = prog.loads[loadIdx++]!;
              const data = Buffer.alloc(x.size);
              c.copyOut(data, vcpu.run + x.dataOffset, x.size);
              exits.push({ reason: 'LOAD', gpa: ld.gpa, hex: bytesToHex(data) });
              continue;
            }
            if (x.port === PORT_HYPERCALL_RET) {
              const data = Buffer.alloc(x.size);
              c.copyOut(data, vcpu.run + x.dataOffset, x.size);
              exits.push({ reason: 'HYPERCALL_RET', hex: bytesToHex(data) });
              continue;
            }
            if (x.port === PORT_CONTINUE && batch + 1 < prog.batches.length) {
              this.writeCode(page, prog.batches[++batch]!);
              const e2 = this.resetRip(fd);
              if (e2 !== 0) return fail(e2, { exits });
              continue;
            }
            break;
          }
          case 'mmio':
            if (x.isWrite) {
              exits.push({
                reason: 'MMIO',
                gpa: x.physAddr,
                len: x.len,
                is_write: true,
                hex: bytesToHex(x.data.subarray(0, Math.min(x.len, 8))),
              });
            } else {
              exits.push({ reason: 'MMIO', gpa: x.physAddr, len: x.len, is_write: false });
              c.copyIn(vcpu.run + BigInt(RUN.mmio_data), zero8);
            }
            continue;
          case 'hypercall':
            exits.push({ reason: 'HYPERCALL', nr: x.nr, args: x.args.slice(0, 3) });
            c.copyIn(vcpu.run + BigInt(RUN.hypercall_ret), zero8);
            continue;
          case 'internal':
            exits.push({ reason: 'INTERNAL_ERROR', suberror: x.suberror });
            return ok({ exits });
          default:
            break;
        }
        if (x.reason === 5) exits.push({ reason: 'HLT' });
        else if (x.reason === 8) exits.push({ reason: 'SHUTDOWN' });
        else exits.push({ reason: 'UNKNOWN', exit_reason: x.reason });
        return ok({ exits });
      }
    } finally {
      this.armWatchdog(0);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Memory ops

  mmap(
    fdArg: ResolvedFd | null,
    length: bigint,
    prot: bigint,
    flags: bigint,
    offset: bigint,
  ): OpOutcome {
    const t = this.st;
    const len = cU64(length);
    // exec() has refused the slot-occupied and over-limit cases already (same plan).
    const plan = planMmap(t.cursor, length, flags, fdArg === null, arena.foreign);
    if (plan.enomem) return out(fail(12 /* ENOMEM */));
    const { addr, rounded } = plan;
    const fd = fdArg === null ? -1 : this.fileFd(fdArg);
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
    const r = this.c.mmap(addr, len, cInt(prot), f, fd, offset);
    if (r.ret === MAP_FAILED) {
      arena.restore(lifted);
      return out(fail(r.errno));
    }
    if (r.ret !== addr) {
      // A kernel without MAP_FIXED_NOREPLACE (before 4.17) takes the address as a hint.
      this.c.munmap(r.ret, len);
      arena.restore(lifted);
      throw new BackendRefusal(
        `mmap: the kernel placed the mapping at 0x${r.ret.toString(16)}, not at the arena address 0x${addr.toString(16)} (no MAP_FIXED_NOREPLACE)`,
      );
    }
    arena.traceMapped.add(addr, addr + rounded);
    t.cursor = nextArenaCursor(addr, rounded);
    return out(ok(), { createdAddr: addr });
  }

  vmaOp(op: Extract<ResolvedOp, { op: 'munmap' | 'mprotect' | 'madvise' }>): ResultLine {
    const addr = addrOf(op.addr);
    const len = cU64(op.length);
    // A range that wraps past 2^64 is rejected by the kernel's argument checks before any VMA is
    // touched (munmap EINVAL, mprotect ENOMEM, madvise EINVAL): run it as is.
    if (vmaRangeWraps(addr, len)) {
      const w =
        op.op === 'munmap'
          ? this.c.munmap(addr, len)
          : op.op === 'mprotect'
            ? this.c.mprotect(addr, len, cInt(op.prot))
            : this.c.madvise(addr, len, cInt(op.advice));
      return w.ret < 0 ? fail(w.errno) : ok();
    }
    // The kernel acts on whole pages: lift the page-rounded range (exec() has checked it).
    const lo = floorPage(addr);
    const hi = ceilPage(addr + len);
    const lifted: Interval[] = arena.lift(lo, hi);
    let r;
    if (op.op === 'munmap') r = this.c.munmap(addr, len);
    else if (op.op === 'mprotect') r = this.c.mprotect(addr, len, cInt(op.prot));
    else r = this.c.madvise(addr, len, cInt(op.advice));
    if (op.op === 'munmap' && r.ret === 0) {
      arena.traceMapped.remove(addr, ceilPage(addr + len));
      arena.restore(arena.reservedWithin(lo, hi));
    } else arena.restore(lifted);
    return r.ret < 0 ? fail(r.errno) : ok();
  }

  /** pread(2) into the trace's scratch buffer (never the Node heap: the kernel writes there). */
  pread(fd: number, len: bigint, off: bigint): ResultLine {
    if (len > MAX_READ_BYTES)
      throw new BackendRefusal(`pread of ${len} bytes: too large to report`);
    const scratch = this.st.m.scratch;
    const r = this.c.preadAt(fd, scratch, len, off);
    if (r.ret < 0n) return fail(r.errno);
    const b = Buffer.allocUnsafe(Number(r.ret));
    if (b.length > 0) this.c.copyOut(b, scratch);
    return ok({ value: bytesToHex(b) });
  }

  close(fd: number): ResultLine {
    const t = this.st;
    const r = this.c.close(fd);
    if (r.ret < 0) return fail(r.errno);
    t.owned.delete(fd);
    if (fd === t.kvmFd) t.kvmFd = -1;
    const vm = t.vms.get(fd);
    if (vm !== undefined) {
      vm.fd = -1;
      t.vms.delete(fd);
    }
    t.vcpus.delete(fd);
    return ok();
  }

  // -------------------------------------------------------------------------------------------
  // peek / poke through the kernel's user-copy path (faults become EFAULT, never signals)

  private readonly drainBuf = Buffer.alloc(PIPE_CHUNK);

  /** Empty the pipe (after an op, or after a transfer that left bytes in it). */
  private drain(rfd: number): void {
    while (this.c.read(rfd, this.drainBuf, this.drainBuf.length).ret > 0n);
  }

  /** A pipe error other than a fault: the backend's own copy failed, which no result can say. */
  private pipeFailed(op: 'peek' | 'poke', call: string, errno: number): never {
    throw new BackendRefusal(
      `${op}: the real backend's pipe ${call} failed with ${errnoName(errno)}; the access could not be made`,
    );
  }

  /** Which signal a CPU access to the faulting page would raise, from the kernel's own view. */
  private classifyFault(page: bigint, need: 'r' | 'w'): 'SIGSEGV' | 'SIGBUS' {
    const m = mappingAt(page, this.st.m.proc.maps());
    if (m === undefined) return 'SIGSEGV';
    // x86 access_error(): a write needs VM_WRITE; a read is allowed on any accessible VMA (read,
    // write or exec permission), except an execute-only one on a host with protection keys, where
    // it carries the execute-only key (the read faults with SEGV_PKUERR).
    const p = m.perms;
    const readable = p.includes('r') || p.includes('w') || (p.includes('x') && !hostHasPku());
    if (need === 'w' ? !p.includes('w') : !readable) return 'SIGSEGV';
    if (this.st.m.proc.isGuardPage(page)) return 'SIGSEGV';
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
  private static step(a: bigint, left: number, careful: boolean): number {
    const off = Number(a & (PAGE - 1n));
    return Math.min(left, careful || off !== 0 ? Number(PAGE) - off : PIPE_CHUNK);
  }

  /**
   * A CPU load of [addr, addr+len) made by the kernel instead: write(2) from that memory into
   * the pipe (copy_from_user() in pipe_write(): a fault is EFAULT or a short count, never a
   * signal), then read(2) the bytes back into the result.
   */
  peek(addr: bigint, len: bigint): ResultLine {
    if (len === 0n) return ok({ value: '' });
    if (len > MAX_READ_BYTES) throw new BackendRefusal(`peek of ${len} bytes: too large to report`);
    const [rfd, wfd] = this.st.m.pipe;
    const n = Number(len);
    // Every byte is written before the result is built; a faulting peek returns no data.
    const data = Buffer.allocUnsafe(n);
    let done = 0;
    let careful = false;
    try {
      while (done < n) {
        const a = addr + BigInt(done);
        if (a > U64_MAX) return { ok: false, fault: 'SIGSEGV' };
        const want = KvmBackend.step(a, n - done, careful);
        const w = this.c.writeFrom(wfd, a, want);
        if (w.ret < 0n) {
          if (w.errno !== EFAULT) this.pipeFailed('peek', 'write', w.errno);
          if (careful) return { ok: false, fault: this.classifyFault(floorPage(a), 'r') };
          careful = true;
          continue;
        }
        const got = Number(w.ret);
        if (got === 0) this.pipeFailed('peek', 'write', 0);
        const rr = this.c.read(rfd, data.subarray(done, done + got), got);
        if (rr.ret !== BigInt(got)) this.pipeFailed('peek', 'read', rr.errno);
        done += got;
        careful = got < want;
      }
      return ok({ value: bytesToHex(data) });
    } finally {
      this.drain(rfd);
    }
  }

  /**
   * A CPU store made by the kernel instead: write(2) the bytes into the pipe, then read(2) them
   * into [addr, addr+len) (copy_to_user() in pipe_read()). pipe_read() counts only whole pipe
   * buffers it copied, and leaves the rest in the pipe: a transfer that stops early is followed
   * by draining the pipe, so the next one starts from the trace's bytes at the right offset.
   */
  poke(addr: bigint, bytes: Uint8Array): ResultLine {
    const n = bytes.length;
    if (n === 0) return ok();
    const [rfd, wfd] = this.st.m.pipe;
    const src = Buffer.from(bytes.buffer, bytes.byteOffset, n);
    let done = 0;
    let careful = false;
    try {
      while (done < n) {
        const a = addr + BigInt(done);
        if (a > U64_MAX) return { ok: false, fault: 'SIGSEGV' };
        const want = KvmBackend.step(a, n - done, careful);
        const w = this.c.write(wfd, src.subarray(done, done + want), want);
        if (w.ret <= 0n) this.pipeFailed('poke', 'write', w.errno);
        const put = Number(w.ret);
        const r = this.c.readTo(rfd, a, put);
        if (r.ret < 0n && r.errno !== EFAULT) this.pipeFailed('poke', 'read', r.errno);
        const got = r.ret < 0n ? 0 : Number(r.ret);
        done += got;
        if (got === put) {
          careful = false;
          continue;
        }
        this.drain(rfd);
        if (got === 0 && careful)
          return { ok: false, fault: this.classifyFault(floorPage(a), 'w') };
        careful = true;
      }
      return ok();
    } finally {
      this.drain(rfd);
    }
  }
}
