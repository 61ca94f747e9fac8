/**
 * A trace may only name handles that an earlier op creates. A shrinker that drops a creating op
 * leaves references to a name nothing binds; by the handle rules such a name is unbound (an fd
 * handle passes -1, a mapping handle address 0), so writing the raw value instead keeps every
 * result the same and makes the trace valid input again.
 */
import { ADDR_FIELDS, DATA_ADDR_FIELDS, dataObject, FD_FIELDS, PROC_FIELDS } from './fields.js';
import { HandleScope } from './parse.js';
import type { AddrArg, FdArg, TraceOp } from './types.js';

export function rawForUnboundHandles(ops: readonly TraceOp[]): TraceOp[] {
  const scope = new HandleScope();
  const out: TraceOp[] = [];
  for (const op of ops) {
    // A process handle has no raw value: an op of (or waiting for) a process whose fork was
    // dropped is refused by the model (no such process), so it is dropped too.
    const procs = PROC_FIELDS.map((k) => (op as unknown as Record<string, string | undefined>)[k]);
    if (procs.some((p) => p !== undefined && scope.kindOf(p) !== 'proc')) continue;
    out.push(rawForUnbound(scope, op));
  }
  return out;
}

/** The op with each unbound fd or address handle written as its raw value; records its own. */
function rawForUnbound(scope: HandleScope, op: TraceOp): TraceOp {
  let out: Record<string, unknown> | undefined;
  const o = op as unknown as Record<string, FdArg | AddrArg | null | undefined>;
  for (const k of FD_FIELDS) {
    const v = o[k];
    if (v?.kind === 'handle' && scope.kindOf(v.name) !== 'fd') {
      out ??= { ...op };
      out[k] = { kind: 'raw', value: -1n } satisfies FdArg;
    }
  }
  for (const k of ADDR_FIELDS) {
    const v = o[k];
    if (v?.kind === 'handle' && scope.kindOf(v.name) !== 'map') {
      out ??= { ...op };
      out[k] = { kind: 'raw', value: (v as { offset: bigint }).offset } satisfies AddrArg;
    }
  }
  const data = dataObject(op) as Record<string, AddrArg | undefined> | undefined;
  if (data !== undefined)
    for (const k of DATA_ADDR_FIELDS) {
      const v = data[k];
      if (v?.kind === 'handle' && scope.kindOf(v.name) !== 'map') {
        out ??= { ...op };
        out['data'] = { ...(out['data'] as object), [k]: { kind: 'raw', value: v.offset } };
      }
    }
  scope.record(op);
  return (out ?? op) as TraceOp;
}
