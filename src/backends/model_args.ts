/**
 * The model backend's argument policy and result helpers, shared by the op families' model
 * execution (src/ops): raw integer fds (never one of the trace's objects, by contract) 0..2 are
 * the process's stdin/stdout/stderr for KVM ioctls (which they answer with ENOTTY, or EINVAL as
 * a guest_memfd); for file syscalls, and for every other raw value, they are an fd that is not
 * open.
 */
import type { Result } from '../core/base/result.js';
import { bytesToHex } from '../trace/format.js';
import type { Exit, ResolvedFd, ResultLine } from '../trace/base_types.js';
import type { RunExit } from '../core/arch/x86/kvm_run.js';

/** fd number the model uses for "a number that is not open". */
export const CLOSED_FD = -1;

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

export function fail(r: Result<unknown> & { ok: false }): ResultLine {
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
    case 'PVALIDATE':
      return { reason: 'PVALIDATE', gpa: e.gpa, ret: e.ret, cf: e.cf };
    case 'VC':
      return { reason: 'VC', gpa: e.gpa, error_code: e.errorCode };
    case 'SYSTEM_EVENT':
      return { reason: 'SYSTEM_EVENT', type: e.type, data: e.data };
    case 'GHCB_MSR':
      return { reason: 'GHCB_MSR', value: e.value };
    case 'PSC':
      return { reason: 'PSC', ret: e.ret, cur_entry: e.curEntry, cur_pages: e.curPages };
    case 'ACCEPT':
      return { reason: 'ACCEPT', gpa: e.gpa, status: e.status };
    case 'TDVMCALL':
      return e.r11 === undefined
        ? { reason: 'TDVMCALL', status: e.status }
        : { reason: 'TDVMCALL', status: e.status, r11: e.r11 };
    case 'VE':
      return { reason: 'VE', gpa: e.gpa };
    case 'EPT_VIOLATION':
      return { reason: 'EPT_VIOLATION', gpa: e.gpa };
  }
}
