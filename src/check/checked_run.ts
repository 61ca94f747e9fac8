/**
 * Running a trace on the model with every invariant checked after every op. Pure.
 */
import { ModelBackend } from '../backends/model.js';
import { InvariantChecker, type Violation } from '../core/invariants/index.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import type { ResultLine, TraceOp } from '../trace/types.js';

export type StepViolations = {
  readonly index: number;
  readonly op: TraceOp;
  readonly violations: readonly Violation[];
};

export type CheckedRun = {
  readonly results: ResultLine[];
  /** Steps with violations, in order. */
  readonly failures: StepViolations[];
  readonly backend: ModelBackend;
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
  const results: ResultLine[] = [];
  const failures: StepViolations[] = [];
  const n = Math.min(ops.length, o.limit ?? ops.length);
  for (let i = 0; i < n; i++) {
    const op = ops[i]!;
    results.push(stepTrace(op, backend, t));
    const v = checker.check();
    if (v.length > 0) {
      failures.push({ index: i, op, violations: v });
      if (o.stopAtFirst === true) break;
    }
  }
  return { results, failures, backend };
}
