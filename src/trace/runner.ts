/**
 * Runs parsed trace ops on a backend, keeping the contract's handle table: `"kvm"` is the open
 * /dev/kvm; `as` binds the created fd or mapping; a failed creating op leaves its handle unbound
 * (fd -1, address 0); `close` unbinds an fd handle (-1); `munmap` leaves a mapping handle's
 * address in place. A `fork` binds a process handle (its pid; -1 when the fork failed), which
 * an op's `proc` field resolves to.
 */
import type {
  AddrArg,
  Backend,
  FdArg,
  OpOutcome,
  ResolvedFd,
  ResolvedOp,
  ResultLine,
  TraceOp,
} from './types.js';
import { toU64 } from '../core/base/units.js';
import {
  ADDR_FIELDS,
  bindsKind,
  DATA_ADDR_FIELDS,
  dataObject,
  FD_FIELDS,
  PROC_FIELDS,
  secondHandleOf,
} from './fields.js';
import { OPS } from '../ops/registry.js';

type Handle =
  | { readonly kind: 'fd'; fd: number }
  | { readonly kind: 'map'; readonly addr: bigint }
  | { readonly kind: 'proc'; readonly pid: number };

export class HandleTable {
  private readonly handles = new Map<string, Handle>();

  constructor(kvmFd: number) {
    this.handles.set('kvm', { kind: 'fd', fd: kvmFd });
  }

  fd(arg: FdArg): ResolvedFd {
    if (arg.kind === 'raw') return arg;
    const h = this.handles.get(arg.name);
    return { kind: 'obj', fd: h !== undefined && h.kind === 'fd' ? h.fd : -1 };
  }

  addr(arg: AddrArg): bigint {
    if (arg.kind === 'raw') return toU64(arg.value);
    const h = this.handles.get(arg.name);
    const base = h !== undefined && h.kind === 'map' ? h.addr : 0n;
    return toU64(base + arg.offset);
  }

  /** The pid a process handle names (-1: unbound). */
  proc(name: string): number {
    const h = this.handles.get(name);
    return h !== undefined && h.kind === 'proc' ? h.pid : -1;
  }

  bindProc(name: string, pid: number): void {
    this.handles.set(name, { kind: 'proc', pid });
  }

  bindFd(name: string, fd: number): void {
    this.handles.set(name, { kind: 'fd', fd });
  }
  bindMap(name: string, addr: bigint): void {
    this.handles.set(name, { kind: 'map', addr });
  }
  /** After a successful close: every handle naming that fd now passes -1. */
  closed(fd: number): void {
    for (const h of this.handles.values()) if (h.kind === 'fd' && h.fd === fd) h.fd = -1;
  }
  /** A handle whose creating op failed is unbound. */
  unbind(name: string, kind: 'fd' | 'map' | 'proc'): void {
    if (kind === 'fd') this.handles.set(name, { kind: 'fd', fd: -1 });
    else if (kind === 'proc') this.handles.set(name, { kind: 'proc', pid: -1 });
    else this.handles.set(name, { kind: 'map', addr: 0n });
  }
}

/** Resolve every handle reference of an op against the table. */
export function resolveOp(op: TraceOp, t: HandleTable): ResolvedOp {
  // The handle-bearing fields of the contract: fds, and addresses (userspace_addr, addr).
  const o = { ...op } as Record<string, unknown>;
  const src = op as unknown as Record<string, FdArg | AddrArg | null | undefined>;
  for (const k of FD_FIELDS) {
    const v = src[k];
    if (v !== undefined && v !== null) o[k] = t.fd(v as FdArg);
  }
  for (const k of ADDR_FIELDS) {
    const v = src[k];
    if (v !== undefined && v !== null) o[k] = t.addr(v as AddrArg);
  }
  const data = dataObject(op);
  if (data !== undefined) {
    const d = { ...data };
    for (const k of DATA_ADDR_FIELDS) {
      const v = data[k];
      if (v !== undefined && v !== null) d[k] = t.addr(v as AddrArg);
    }
    o['data'] = d;
  }
  for (const k of PROC_FIELDS) {
    const v = (op as unknown as Record<string, string | undefined>)[k];
    if (v !== undefined) o[k] = t.proc(v);
  }
  return o as ResolvedOp;
}

/** Run a single op: resolve, execute, update the handle table. */
export function stepTrace(op: TraceOp, backend: Backend, t: HandleTable): ResultLine {
  const resolved = resolveOp(op, t);
  const outcome: OpOutcome = backend.exec(resolved);
  const r = outcome.result;
  const binds = op.as !== undefined ? bindsKind(op.op) : undefined;
  if (op.as !== undefined) {
    if (binds === 'fd') {
      if (r.ok && outcome.createdFd !== undefined) t.bindFd(op.as, outcome.createdFd);
      else t.unbind(op.as, 'fd');
    } else if (binds === 'map') {
      if (r.ok && outcome.createdAddr !== undefined) t.bindMap(op.as, outcome.createdAddr);
      else t.unbind(op.as, 'map');
    } else if (binds === 'proc') {
      if (r.ok && outcome.createdPid !== undefined) t.bindProc(op.as, outcome.createdPid);
      else t.unbind(op.as, 'proc');
    }
  }
  const second = secondHandleOf(op);
  if (second !== undefined) {
    if (r.ok && outcome.createdFd2 !== undefined) t.bindFd(second, outcome.createdFd2);
    else t.unbind(second, 'fd');
  }
  // A close in a forked child closes the child's fd only: the handle keeps naming the parent's.
  if (r.ok && op.proc === undefined) {
    const spec = OPS.get(op.op)!;
    const closed = spec.closedFd === undefined ? undefined : spec.closedFd(resolved);
    if (closed !== undefined) t.closed(closed);
  }
  return r;
}

/**
 * One trace's run, op by op, keeping nothing but the handle table: for streaming replays, where
 * results are printed as they come and never retained. `end()` releases the backend's context.
 */
export class TraceSession {
  private readonly table: HandleTable;
  private open = true;

  constructor(private readonly backend: Backend) {
    this.table = new HandleTable(backend.begin());
  }

  step(op: TraceOp): ResultLine {
    return stepTrace(op, this.backend, this.table);
  }

  end(): void {
    if (!this.open) return;
    this.open = false;
    this.backend.end();
  }
}

/** Run a whole trace on a fresh backend context; always releases the context. */
export function runTrace(
  ops: readonly TraceOp[],
  backend: Backend,
  onResult?: (op: TraceOp, r: ResultLine) => void,
): ResultLine[] {
  const kvmFd = backend.begin();
  const t = new HandleTable(kvmFd);
  const results: ResultLine[] = [];
  try {
    for (const op of ops) {
      const r = stepTrace(op, backend, t);
      results.push(r);
      onResult?.(op, r);
    }
  } finally {
    backend.end();
  }
  return results;
}
