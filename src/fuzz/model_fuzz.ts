/**
 * Model-based fuzzing: random operation sequences (trace_gen.ts) on the model with every
 * invariant checked after every op; a violation is shrunk to a minimal trace that still breaks
 * the same invariant. Deterministic for a seed. Pure.
 */
import { runChecked } from '../check/checked_run.js';
import type { Violation } from '../core/invariants/index.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import type { ResultLine, TraceOp } from '../trace/types.js';
import { shrinkTrace } from './shrink.js';
import { generateTrace } from './trace_gen.js';

export type Coverage = {
  readonly ops: Map<string, number>;
  readonly errnos: Map<string, number>;
  readonly exits: Map<string, number>;
  readonly faults: Map<string, number>;
  /** guest_memfd page states seen at the end of traces. */
  readonly pageStates: Map<string, number>;
};

export function newCoverage(): Coverage {
  return {
    ops: new Map(),
    errnos: new Map(),
    exits: new Map(),
    faults: new Map(),
    pageStates: new Map(),
  };
}

const bump = (m: Map<string, number>, k: string): void => {
  m.set(k, (m.get(k) ?? 0) + 1);
};

export function recordCoverage(
  c: Coverage,
  ops: readonly TraceOp[],
  results: readonly ResultLine[],
): void {
  results.forEach((r, i) => {
    bump(c.ops, ops[i]!.op);
    if ('fault' in r) bump(c.faults, r.fault);
    else {
      if (!r.ok) bump(c.errnos, r.errno);
      for (const e of r.exits ?? []) bump(c.exits, e.reason);
    }
  });
}

export type FoundViolation = {
  readonly seed: number;
  readonly invariant: string;
  readonly violation: Violation;
  /** The minimized trace; the violation appears after its last op. */
  readonly ops: TraceOp[];
  readonly originalOps: number;
  /** Ops run before the violation was found (this trace included). */
  readonly opsToDetection: number;
  readonly shrinkTries: number;
};

export type ModelFuzzProgress = { traces: number; ops: number; violations: number };

export type ModelFuzzOptions = {
  readonly seed: number;
  readonly profile: KernelProfile;
  readonly mutants?: readonly string[];
  readonly opsPerTrace?: number;
  readonly keepGoing?: boolean;
  readonly shouldContinue: (p: ModelFuzzProgress) => boolean;
  readonly onViolation?: (f: FoundViolation) => void;
  readonly coverage?: Coverage;
};

/** Does `ops` break invariant `name` at some step? (The shrink predicate.) */
export function breaks(
  ops: readonly TraceOp[],
  profile: KernelProfile,
  mutants: readonly string[],
  name: string,
): boolean {
  const r = runChecked(ops, profile, { mutants, stopAtFirst: true, only: [name] });
  return r.failures.length > 0;
}

export function runModelFuzz(o: ModelFuzzOptions): {
  progress: ModelFuzzProgress;
  found: FoundViolation[];
} {
  const progress: ModelFuzzProgress = { traces: 0, ops: 0, violations: 0 };
  const found: FoundViolation[] = [];
  const mutants = o.mutants ?? [];
  let seed = o.seed;
  while (o.shouldContinue(progress)) {
    const ops = generateTrace(seed, {
      ops: o.opsPerTrace ?? 60,
      feedback: o.profile,
      privateMemory: o.profile.memoryAttributesConfig,
    });
    const r = runChecked(ops, o.profile, { mutants, stopAtFirst: true });
    progress.traces++;
    if (o.coverage !== undefined) {
      recordCoverage(o.coverage, ops, r.results);
      for (const vm of r.backend.host.allVms)
        for (const f of vm.gmemFiles)
          for (const e of f.pages.entries()) bump(o.coverage.pageStates, `gmem:${e.value.state}`);
      if (r.backend.host.mm.anon.size > 0) bump(o.coverage.pageStates, 'anon');
      if (r.backend.host.mm.thp.size > 0) bump(o.coverage.pageStates, 'anon-thp');
    }
    if (r.failures.length === 0) {
      progress.ops += ops.length;
    } else {
      const f = r.failures[0]!;
      progress.ops += f.index + 1;
      progress.violations++;
      const v = f.violations[0]!;
      const prefix = ops.slice(0, f.index + 1);
      const s = shrinkTrace(prefix, (t) => breaks(t, o.profile, mutants, v.invariant), 1500);
      const fin = runChecked(s.ops, o.profile, { mutants, stopAtFirst: true, only: [v.invariant] });
      const fv = fin.failures[0]?.violations[0] ?? v;
      const fvFound: FoundViolation = {
        seed,
        invariant: v.invariant,
        violation: fv,
        ops: s.ops,
        originalOps: f.index + 1,
        opsToDetection: progress.ops,
        shrinkTries: s.tries,
      };
      found.push(fvFound);
      o.onViolation?.(fvFound);
      if (o.keepGoing !== true) break;
    }
    seed++;
  }
  return { progress, found };
}
