/**
 * Trace shrinking: delta debugging (ddmin) over ops, then over the steps of each KVM_RUN guest
 * program, keeping only what the failure needs. `fails` must be deterministic for a trace.
 * Line numbers are renumbered after every reduction.
 */
import type { TraceOp } from '../trace/types.js';
import { rawForUnboundHandles } from '../trace/unbound.js';

export type ShrinkStats = { tries: number };

function renumber(ops: readonly TraceOp[]): TraceOp[] {
  return ops.map((o, i) => ({ ...o, line: i + 1 }) as TraceOp);
}

/** Remove chunks of ops (ddmin) while `fails` still holds. */
export function shrinkOps(
  ops: readonly TraceOp[],
  fails: (t: TraceOp[]) => boolean,
  stats: ShrinkStats = { tries: 0 },
  budget = 2000,
): TraceOp[] {
  let cur = renumber(ops);
  let n = 2;
  while (cur.length >= 2 && stats.tries < budget) {
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i < cur.length && stats.tries < budget; i += chunk) {
      const cand = renumber([...cur.slice(0, i), ...cur.slice(i + chunk)]);
      stats.tries++;
      if (cand.length > 0 && fails(cand)) {
        cur = cand;
        n = Math.max(n - 1, 2);
        reduced = true;
        break;
      }
    }
    if (!reduced) {
      if (n >= cur.length) break;
      n = Math.min(cur.length, n * 2);
    }
  }
  // Final pass: single ops.
  for (let i = cur.length - 1; i >= 0 && stats.tries < budget; i--) {
    const cand = renumber([...cur.slice(0, i), ...cur.slice(i + 1)]);
    stats.tries++;
    if (cand.length > 0 && fails(cand)) cur = cand;
  }
  return cur;
}

/** Remove guest program steps one at a time while `fails` still holds. */
export function shrinkGuestSteps(
  ops: readonly TraceOp[],
  fails: (t: TraceOp[]) => boolean,
  stats: ShrinkStats = { tries: 0 },
  budget = 2000,
): TraceOp[] {
  let cur = [...ops];
  for (let i = 0; i < cur.length && stats.tries < budget; i++) {
    const op = cur[i]!;
    if (op.op !== 'KVM_RUN') continue;
    for (let j = op.guest.length - 1; j >= 0 && stats.tries < budget; j--) {
      const o = cur[i] as Extract<TraceOp, { op: 'KVM_RUN' }>;
      const guest = [...o.guest.slice(0, j), ...o.guest.slice(j + 1)];
      const cand = [...cur.slice(0, i), { ...o, guest }, ...cur.slice(i + 1)] as TraceOp[];
      stats.tries++;
      if (fails(cand)) cur = cand;
    }
  }
  return cur;
}

/** Both reductions, repeated until nothing more goes. */
export function shrinkTrace(
  ops: readonly TraceOp[],
  fails: (t: TraceOp[]) => boolean,
  budget = 3000,
): { ops: TraceOp[]; tries: number } {
  const stats: ShrinkStats = { tries: 0 };
  let cur = renumber(ops);
  for (;;) {
    const before =
      cur.length + cur.reduce((s, o) => s + (o.op === 'KVM_RUN' ? o.guest.length : 0), 0);
    cur = shrinkOps(cur, fails, stats, budget);
    cur = shrinkGuestSteps(cur, fails, stats, budget);
    const after =
      cur.length + cur.reduce((s, o) => s + (o.op === 'KVM_RUN' ? o.guest.length : 0), 0);
    if (after >= before || stats.tries >= budget) break;
  }
  // Dropped creating ops leave unbound names: written as the raw values they stand for.
  return { ops: rawForUnboundHandles(cur), tries: stats.tries };
}
