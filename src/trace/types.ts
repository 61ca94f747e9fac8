/**
 * The trace contract (../shared/spec/trace-format.md) as types.
 *
 * `TraceOp` is a parsed, validated input line: numbers are bigint (u64 values keep their full
 * width; negative JSON integers are kept signed and each backend truncates them to the field's C
 * type exactly as a C caller would). Handle references stay symbolic until the runner resolves
 * them against its handle table.
 *
 * The types that do not depend on the op list live in ./base_types.ts (re-exported here), below
 * the op registry; this module stands above it.
 */
export * from './base_types.js';
import type { OpOutcome, ResolveOp } from './base_types.js';

/**
 * A parsed trace op: the union of the op families' op types, composed in src/ops/registry.ts
 * (each family module in src/ops declares its ops' fields).
 */
export type { TraceOp } from '../ops/registry.js';
import type { TraceOp } from '../ops/registry.js';

export type OpName = TraceOp['op'];

/** A trace op after handle resolution: fds are `ResolvedFd`, addresses are u64 bigints. */
export type ResolvedOp = ResolveOp<TraceOp>;

/**
 * A backend runs resolved ops in one trace's context. The same trace gives identical result lines
 * on every faithful backend.
 */
export interface Backend {
  readonly name: string;
  /** Start a fresh trace; returns the fd behind the predefined handle `"kvm"` (-1 if none). */
  begin(): number;
  exec(op: ResolvedOp): OpOutcome;
  /** Release every fd and mapping the trace created. */
  end(): void;
}

/** A trace op without its source line number (for generators and builders). */
export type TraceOpInput = TraceOp extends infer O
  ? O extends unknown
    ? Omit<O, 'line'>
    : never
  : never;
