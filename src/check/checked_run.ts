/**
 * Running a trace on the model with every invariant checked after every op. Pure.
 */
import { ModelBackend } from '../backends/model.js';
import { InvariantChecker, type Violation } from '../core/invariants/index.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import type { ResultLine, TraceOp } from '../trace/types.js';
import { ObjectNames } from './names.js';

export type StepViolations = {
  readonly index: number;
  readonly op: TraceOp;
  /** The op's result (results of the other ops are not kept: a trace's data can be large). */
  readonly result: ResultLine;
  /** The violations this op caused: broken after it, not after the op before. */
  readonly violations: readonly Violation[];
};

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
};

export function runChecked(
  ops: readonly TraceOp[],
  profile: KernelProfile,
  o: CheckOptions = {},
): CheckedRun {
  const backend = new ModelBackend(profile, { mutants: o.mutants ?? [], events: false });
  const t = new HandleTable(backend.begin());
  const checker = new InvariantChecker(backend.host, o.only);
  let ran = 0;
  const failures: StepViolations[] = [];
  const names = new ObjectNames();
  const n = Math.min(ops.length, o.limit ?? ops.length);
  let standing = new Set<string>();
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    const result = stepTrace(op, backend, t);
    ran++;
    names.note(op, t, backend.host);
    const all = checker.check();
    if (all.length === 0 && standing.size === 0) continue;
    const v = all.filter((x) => !standing.has(violationKey(x)));
    standing = new Set(all.map(violationKey));
    if (v.length > 0) {
      failures.push({ index: i, op, result, violations: v });
      if (o.stopAtFirst === true) break;
    }
  }
  return { ran, failures, backend, names };
}
