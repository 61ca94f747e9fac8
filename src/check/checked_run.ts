/**
 * Running a trace on the model with every invariant checked after every op. Pure.
 */
import { ModelBackend } from '../backends/model.js';
import { InvariantChecker, type Violation } from '../core/invariants/index.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import { BackendRefusal, type ResultLine, type TraceOp } from '../trace/types.js';
import { ObjectNames } from './names.js';

export type StepViolations = {
  readonly index: number;
  readonly op: TraceOp;
  /** The op's result (results of the other ops are not kept: a trace's data can be large). */
  readonly result: ResultLine;
  /** The violations this op caused: broken after it, not after the op before. */
  readonly violations: readonly Violation[];
};

/** Traces up to this long are checked in full after every op (the checker's default). */
const FULL_CHECK_OPS = 64;

/** A violation is the same one as after the previous op when invariant and object match. */
const violationKey = (v: Violation): string => `${v.invariant}\0${v.object}`;

export type CheckedRun = {
  /** How many ops ran. */
  readonly ran: number;
  /**
   * Steps that broke an invariant, in order. A violation that persists from one op to the next
   * belongs to the op that caused it only (the ops after it did not break anything).
   */
  readonly failures: StepViolations[];
  readonly backend: ModelBackend;
  /** The file's handle names for the model's objects, as bound while it ran. */
  readonly names: ObjectNames;
};

export type CheckOptions = {
  readonly mutants?: readonly string[];
  /** Stop at the first step with a violation (default false). */
  readonly stopAtFirst?: boolean;
  /** Check only these invariants. */
  readonly only?: readonly string[];
  /** Run only the first `limit` ops. */
  readonly limit?: number;
  /**
   * An op the model refuses to run (BackendRefusal: where the kernel would go somewhere the
   * model does not represent, e.g. an RMP #PF in the kernel after a seeded bug) ends the run
   * before that op instead of throwing (fuzzing).
   */
  readonly endAtRefusal?: boolean;
};

export type CheckedSteps = CheckedRun & {
  /** The ops that ran (a prefix of the input when stopped or at a violation). */
  readonly ops: TraceOp[];
  /** Every op's result, when asked for (`keepResults`; fuzzing records coverage from them). */
  readonly results: ResultLine[];
  /** True when a stop request cut the run short. */
  readonly stopped: boolean;
};

/**
 * One checked run's state and its per-op step: run the op on the model, note the names it bound,
 * check the invariants, and record the violations it caused. Shared by the stepped generator
 * (fuzzers) and the plain loop of `runChecked`, which calls it without a generator's resumption
 * around every op.
 */
class CheckedRunner {
  readonly backend: ModelBackend;
  private readonly t: HandleTable;
  private readonly checker: InvariantChecker;
  readonly ran: TraceOp[] = [];
  readonly results: ResultLine[] = [];
  readonly failures: StepViolations[] = [];
  readonly names = new ObjectNames();
  private standing = new Set<string>();

  constructor(
    ops: Iterable<TraceOp>,
    profile: KernelProfile,
    private readonly o: CheckOptions & { readonly keepResults?: boolean },
  ) {
    this.backend = new ModelBackend(profile, { mutants: o.mutants ?? [], events: false });
    this.t = new HandleTable(this.backend.begin());
    // A trace known to be long is checked change-driven from its first op: the change tracking
    // is cheapest to set up on the empty model, and full checks of its first ops would cost more.
    const long = Array.isArray(ops) && (ops as readonly TraceOp[]).length > FULL_CHECK_OPS;
    this.checker = new InvariantChecker(
      this.backend.host,
      o.only,
      long ? { incremental: true } : {},
    );
  }

  /**
   * Run and check one op: 'end' when the run ends before it (a refusal with `endAtRefusal`),
   * 'broke' when it broke an invariant, else 'ok'.
   */
  step(op: TraceOp): 'ok' | 'broke' | 'end' {
    const i = this.ran.length;
    let result: ResultLine;
    try {
      result = stepTrace(op, this.backend, this.t);
    } catch (e) {
      if (this.o.endAtRefusal === true && e instanceof BackendRefusal) return 'end';
      throw e;
    }
    this.ran.push(op);
    if (this.o.keepResults === true) this.results.push(result);
    this.names.note(op, this.t, this.backend.host);
    const all = this.checker.check();
    if (all.length === 0 && this.standing.size === 0) return 'ok';
    const v = all.filter((x) => !this.standing.has(violationKey(x)));
    this.standing = new Set(all.map(violationKey));
    if (v.length === 0) return 'ok';
    this.failures.push({ index: i, op, result, violations: v });
    return 'broke';
  }

  done(stopped: boolean): CheckedSteps {
    const { ran, results, failures, backend, names } = this;
    return { ran: ran.length, ops: ran, results, failures, backend, names, stopped };
  }
}

/**
 * The checked run, stepped: run `ops` (any iterable, so a trace can be generated while it runs)
 * on a fresh model with the invariants checked after every op. With `pause`, it yields
 * `pause.phase` after each op (after calling `pause.onOp`), and a `true` sent back stops it at
 * that op boundary; without, it never yields. The loop behind the fuzzers.
 */
export function* checkedRunSteps<P>(
  ops: Iterable<TraceOp>,
  profile: KernelProfile,
  o: CheckOptions & { readonly keepResults?: boolean } = {},
  pause?: { readonly phase: P; readonly onOp?: () => void },
): Generator<P, CheckedSteps, boolean | undefined> {
  const r = new CheckedRunner(ops, profile, o);
  const limit = o.limit ?? Infinity;
  for (const op of ops) {
    if (r.ran.length >= limit) break;
    const s = r.step(op);
    if (s === 'end') break;
    if (pause !== undefined) {
      pause.onOp?.();
      if ((yield pause.phase) === true) return r.done(true);
    }
    if (s === 'broke' && o.stopAtFirst === true) break;
  }
  return r.done(false);
}

/** Run a whole checked run (as checkedRunSteps without pauses, in a plain loop). */
export function runChecked(
  ops: readonly TraceOp[],
  profile: KernelProfile,
  o: CheckOptions = {},
): CheckedRun {
  const r = new CheckedRunner(ops, profile, o);
  const n = Math.min(ops.length, o.limit ?? Infinity);
  for (let i = 0; i < n; i++) {
    const s = r.step(ops[i]!);
    if (s === 'end' || (s === 'broke' && o.stopAtFirst === true)) break;
  }
  return r.done(false);
}
