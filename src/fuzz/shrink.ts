/**
 * Trace shrinking: delta debugging (ddmin) over ops, then over the steps of each KVM_RUN guest
 * program, keeping only what the failure needs. `fails` must be deterministic for a trace.
 * Line numbers are renumbered after every reduction.
 *
 * The shrink is stepped (steps.ts): the predicate runs its candidate op by op and can be asked
 * to stop; the shrink then ends at once with the smallest failing trace reached so far. The
 * plain functions (shrinkOps, shrinkGuestSteps, shrinkTrace) take a boolean predicate and run to
 * the end.
 */
import type { TraceOp } from '../trace/types.js';
import { rawForUnboundHandles } from '../trace/unbound.js';
import { OPS } from '../ops/registry.js';
import { finish, STOPPED, type Steps, type Stopped } from './steps.js';

export type ShrinkStats = { tries: number };

/**
 * A stepped predicate: the failure's detail when the candidate still fails, undefined when it
 * does not, STOPPED when asked to stop before it could tell.
 */
export type FailsSteps<D> = (t: TraceOp[]) => Steps<D | undefined | Stopped>;

/** Where a stepped shrink stands: the smallest failing trace so far and its detail. */
type State<D> = {
  cur: TraceOp[];
  /** The detail of `cur` when it came from a successful candidate. */
  detail: D | undefined;
  stopped: boolean;
  readonly stats: ShrinkStats;
};

function renumber(ops: readonly TraceOp[]): TraceOp[] {
  return ops.map((o, i) => ({ ...o, line: i + 1 }) as TraceOp);
}

/** Try a candidate; it becomes the current trace when it still fails. */
function* attempt<D>(s: State<D>, cand: TraceOp[], fails: FailsSteps<D>): Steps<boolean> {
  s.stats.tries++;
  const r = yield* fails(cand);
  if (r === STOPPED) {
    s.stopped = true;
    return false;
  }
  if (r === undefined) return false;
  s.cur = cand;
  s.detail = r;
  return true;
}

function* opsSteps<D>(s: State<D>, fails: FailsSteps<D>, budget: number): Steps<void> {
  s.cur = renumber(s.cur);
  let n = 2;
  while (s.cur.length >= 2 && s.stats.tries < budget && !s.stopped) {
    const cur = s.cur;
    const chunk = Math.ceil(cur.length / n);
    let reduced = false;
    for (let i = 0; i < cur.length && s.stats.tries < budget && !s.stopped; i += chunk) {
      const cand = renumber([...cur.slice(0, i), ...cur.slice(i + chunk)]);
      if (cand.length === 0) {
        s.stats.tries++;
        continue;
      }
      if (yield* attempt(s, cand, fails)) {
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
  for (let i = s.cur.length - 1; i >= 0 && s.stats.tries < budget && !s.stopped; i--) {
    const cand = renumber([...s.cur.slice(0, i), ...s.cur.slice(i + 1)]);
    if (cand.length === 0) {
      s.stats.tries++;
      continue;
    }
    yield* attempt(s, cand, fails);
  }
}

function* guestSteps<D>(s: State<D>, fails: FailsSteps<D>, budget: number): Steps<void> {
  for (let i = 0; i < s.cur.length && s.stats.tries < budget && !s.stopped; i++) {
    const op = s.cur[i]!;
    const spec = OPS.get(op.op)!;
    if (spec.subSteps === undefined || spec.withoutSubStep === undefined) continue;
    for (let j = spec.subSteps(op) - 1; j >= 0 && s.stats.tries < budget && !s.stopped; j--) {
      const cand = [...s.cur.slice(0, i), spec.withoutSubStep(s.cur[i]!, j), ...s.cur.slice(i + 1)];
      yield* attempt(s, cand, fails);
    }
  }
}

const subSteps = (o: TraceOp): number => {
  const spec = OPS.get(o.op)!;
  return spec.subSteps === undefined ? 0 : spec.subSteps(o);
};
const size = (ops: readonly TraceOp[]): number =>
  ops.length + ops.reduce((n, o) => n + subSteps(o), 0);

export type Shrunk<D> = {
  /** The smallest failing trace reached (the input, renumbered, when nothing smaller failed). */
  readonly ops: TraceOp[];
  readonly tries: number;
  /** The predicate's detail for `ops`; undefined when no candidate succeeded. */
  readonly detail: D | undefined;
  /** True when a stop request ended the shrink before it was done. */
  readonly stopped: boolean;
};

/** Both reductions, repeated until nothing more goes (or the budget is spent, or a stop). */
export function* shrinkSteps<D>(
  ops: readonly TraceOp[],
  fails: FailsSteps<D>,
  budget = 3000,
): Steps<Shrunk<D>> {
  const s: State<D> = {
    cur: renumber(ops),
    detail: undefined,
    stopped: false,
    stats: { tries: 0 },
  };
  for (;;) {
    const before = size(s.cur);
    yield* opsSteps(s, fails, budget);
    yield* guestSteps(s, fails, budget);
    if (size(s.cur) >= before || s.stats.tries >= budget || s.stopped) break;
  }
  // Dropped creating ops leave unbound names: written as the raw values they stand for.
  return {
    ops: rawForUnboundHandles(s.cur),
    tries: s.stats.tries,
    detail: s.detail,
    stopped: s.stopped,
  };
}

/** A boolean predicate as a stepped one (it never pauses). */
function stepped(fails: (t: TraceOp[]) => boolean): FailsSteps<true> {
  return function* (t) {
    return fails(t) ? true : undefined;
  };
}

/** Remove chunks of ops (ddmin) while `fails` still holds. */
export function shrinkOps(
  ops: readonly TraceOp[],
  fails: (t: TraceOp[]) => boolean,
  stats: ShrinkStats = { tries: 0 },
  budget = 2000,
): TraceOp[] {
  const s: State<true> = { cur: [...ops], detail: undefined, stopped: false, stats };
  finish(opsSteps(s, stepped(fails), budget));
  return s.cur;
}

/** Remove guest program steps one at a time while `fails` still holds. */
export function shrinkGuestSteps(
  ops: readonly TraceOp[],
  fails: (t: TraceOp[]) => boolean,
  stats: ShrinkStats = { tries: 0 },
  budget = 2000,
): TraceOp[] {
  const s: State<true> = { cur: [...ops], detail: undefined, stopped: false, stats };
  finish(guestSteps(s, stepped(fails), budget));
  return s.cur;
}

/** Both reductions, repeated until nothing more goes. */
export function shrinkTrace(
  ops: readonly TraceOp[],
  fails: (t: TraceOp[]) => boolean,
  budget = 3000,
): { ops: TraceOp[]; tries: number } {
  const r = finish(shrinkSteps(ops, stepped(fails), budget));
  return { ops: r.ops, tries: r.tries };
}
