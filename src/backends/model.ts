/**
 * The model backend: runs resolved trace ops on a `Host` of the chosen kernel profile.
 *
 * Raw integer fds (never one of the trace's objects, by contract): 0..2 are the process's
 * stdin/stdout/stderr for KVM ioctls (which they answer with ENOTTY, or EINVAL as a guest_memfd);
 * for file syscalls, and for every other raw value, they are an fd that is not open. The real
 * backend applies the same policy so that a trace can never touch the process's own files.
 */
import { Host, type HostOptions } from '../core/host.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import type { Result } from '../core/base/result.js';
import { toS32, toU32, toU64 } from '../core/base/units.js';
import { bytesToHex } from '../trace/format.js';
import type {
  Backend,
  Exit,
  OpOutcome,
  ResolvedFd,
  ResolvedOp,
  ResultLine,
} from '../trace/types.js';
import type { RunExit } from '../core/arch/x86/kvm_run.js';

/** fd number the model uses for "a number that is not open". */
const CLOSED_FD = -1;

/** Map an fd argument for an ioctl: raw 0..2 pass (std streams), other raw values are closed. */
export function ioctlFd(r: ResolvedFd): number {
  if (r.kind === 'obj') return r.fd;
  const v = BigInt.asIntN(32, r.value);
  return v >= 0n && v <= 2n ? Number(v) : CLOSED_FD;
}

/** Map an fd argument for a file syscall: raw values are never the trace's objects → closed. */
export function fileFd(r: ResolvedFd): number {
  return r.kind === 'obj' ? r.fd : CLOSED_FD;
}

function fail(r: Result<unknown> & { ok: false }): ResultLine {
  return { ok: false, errno: r.errno };
}

export function exitToTrace(e: RunExit): Exit {
  switch (e.reason) {
    case 'LOAD':
      return { reason: 'LOAD', gpa: e.gpa, hex: bytesToHex(e.bytes) };
    case 'MMIO':
      return e.isWrite
        ? { reason: 'MMIO', gpa: e.gpa, len: e.len, is_write: true, hex: bytesToHex(e.bytes!) }
        : { reason: 'MMIO', gpa: e.gpa, len: e.len, is_write: false };
    case 'MEMORY_FAULT':
      return { reason: 'MEMORY_FAULT', gpa: e.gpa, size: e.size, flags: e.flags };
    case 'HYPERCALL':
      return { reason: 'HYPERCALL', nr: e.nr, args: e.args };
    case 'HYPERCALL_RET':
      return { reason: 'HYPERCALL_RET', hex: bytesToHex(e.bytes) };
    case 'HLT':
      return { reason: 'HLT' };
    case 'INTERNAL_ERROR':
      return { reason: 'INTERNAL_ERROR', suberror: e.suberror };
    case 'SHUTDOWN':
      return { reason: 'SHUTDOWN' };
  }
}

export class ModelBackend implements Backend {
  readonly name: string;
  host!: Host;

  constructor(
    readonly profile: KernelProfile,
    readonly opts: HostOptions = {},
  ) {
    this.name = `model:${profile.name}`;
  }

  begin(): number {
    this.host = new Host(this.profile, this.opts);
    return this.host.openDevKvm();
  }

  end(): void {
    // The whole simulated process goes away with the trace.
  }

  exec(op: ResolvedOp): OpOutcome {
    const h = this.host;
    switch (op.op) {
      case 'KVM_CREATE_VM': {
        const r = h.kvmCreateVm(ioctlFd(op.fd), toU64(op.type));
        return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
      }
      case 'KVM_CHECK_EXTENSION': {
        const r = h.kvmCheckExtension(ioctlFd(op.fd), toU64(op.cap));
        return { result: r.ok ? { ok: true, value: r.value } : fail(r) };
      }
      case 'KVM_CREATE_GUEST_MEMFD': {
        const r = h.kvmCreateGuestMemfd(ioctlFd(op.vm), toU64(op.size), toU64(op.flags));
        return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
      }
      case 'KVM_SET_USER_MEMORY_REGION':
      case 'KVM_SET_USER_MEMORY_REGION2': {
        const v1 = op.op === 'KVM_SET_USER_MEMORY_REGION';
        const region = {
          slot: toU32(op.slot),
          flags: toU32(op.flags),
          guest_phys_addr: toU64(op.guest_phys_addr),
          memory_size: toU64(op.memory_size),
          userspace_addr: op.userspace_addr,
          guest_memfd_offset: v1 ? 0n : toU64(op.guest_memfd_offset),
        };
        let gfd = CLOSED_FD;
        if (op.op === 'KVM_SET_USER_MEMORY_REGION2') {
          const g = op.guest_memfd;
          if (g.kind === 'obj') gfd = g.fd < 0 ? CLOSED_FD : g.fd;
          else {
            const u = toU32(g.value);
            gfd = u <= 2n ? Number(u) : CLOSED_FD;
          }
        }
        const r = h.kvmSetUserMemoryRegion(ioctlFd(op.vm), region, gfd, v1);
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'KVM_SET_MEMORY_ATTRIBUTES': {
        const r = h.kvmSetMemoryAttributes(ioctlFd(op.vm), {
          address: toU64(op.address),
          size: toU64(op.size),
          attributes: toU64(op.attributes),
          flags: toU64(op.flags),
        });
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'KVM_CREATE_VCPU': {
        const r = h.kvmCreateVcpu(ioctlFd(op.vm), toU64(op.id));
        return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
      }
      case 'KVM_ENABLE_CAP': {
        const r = h.kvmEnableCap(
          ioctlFd(op.fd),
          toU32(op.cap),
          toU32(op.flags),
          op.args.map(toU64),
        );
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'KVM_PRE_FAULT_MEMORY': {
        const r = h.kvmPreFaultMemory(
          ioctlFd(op.vcpu),
          toU64(op.gpa),
          toU64(op.size),
          toU64(op.flags),
        );
        const remaining = { gpa: r.remaining.gpa, size: r.remaining.size };
        return {
          result:
            r.errno === undefined
              ? { ok: true, remaining }
              : { ok: false, errno: r.errno, remaining },
        };
      }
      case 'KVM_RUN': {
        const r = h.kvmRun(ioctlFd(op.vcpu), op.guest);
        const exits = r.exits.map(exitToTrace);
        return {
          result:
            r.errno === undefined ? { ok: true, exits } : { ok: false, errno: r.errno, exits },
        };
      }
      case 'mmap': {
        const fd = op.fd === null ? null : fileFd(op.fd);
        const r = h.mmap(
          fd,
          toU64(op.length),
          Number(toS32(op.prot)),
          Number(toS32(op.flags)),
          BigInt.asIntN(64, op.offset),
        );
        return r.ok ? { result: { ok: true }, createdAddr: r.value } : { result: fail(r) };
      }
      case 'munmap': {
        const r = h.munmap(op.addr, toU64(op.length));
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'mprotect': {
        const r = h.mprotect(op.addr, toU64(op.length), Number(toS32(op.prot)));
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'madvise': {
        const r = h.madvise(op.addr, toU64(op.length), Number(toS32(op.advice)));
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'fallocate': {
        const r = h.fallocate(
          fileFd(op.fd),
          Number(toS32(op.mode)),
          BigInt.asIntN(64, op.offset),
          BigInt.asIntN(64, op.len),
        );
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'ftruncate': {
        const r = h.ftruncate(fileFd(op.fd), BigInt.asIntN(64, op.length));
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'pread': {
        const r = h.pread(fileFd(op.fd), toU64(op.len), BigInt.asIntN(64, op.offset));
        return { result: r.ok ? { ok: true, value: bytesToHex(r.value) } : fail(r) };
      }
      case 'pwrite': {
        const r = h.pwrite(fileFd(op.fd), op.bytes, BigInt.asIntN(64, op.offset));
        return { result: r.ok ? { ok: true, value: r.value } : fail(r) };
      }
      case 'fstat': {
        const r = h.fstat(fileFd(op.fd));
        return {
          result: r.ok
            ? { ok: true, stat: { size: r.value.size, blocks: r.value.blocks } }
            : fail(r),
        };
      }
      case 'close': {
        const r = h.close(fileFd(op.fd));
        return { result: r.ok ? { ok: true } : fail(r) };
      }
      case 'peek': {
        const r = h.peek(op.addr, Number(op.len));
        return {
          result: r.ok ? { ok: true, value: bytesToHex(r.data!) } : { ok: false, fault: r.fault },
        };
      }
      case 'poke': {
        const r = h.poke(op.addr, op.bytes);
        return { result: r.ok ? { ok: true } : { ok: false, fault: r.fault } };
      }
    }
  }
}
