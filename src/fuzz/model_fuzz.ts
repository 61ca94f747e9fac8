/**
 * Model-based fuzzing: random operation sequences (trace_gen.ts) on the model with every
 * invariant checked after every op; a violation is shrunk to a minimal trace that still breaks
 * the same invariant. Deterministic for a seed. Pure.
 *
 * `modelFuzzSteps` is the fuzzer as a stepped computation (steps.ts): it pauses after every op,
 * so its driver can stop it at any op boundary (an op or time budget, a signal) and give an event
 * loop a turn; `runModelFuzz` runs it without stopping.
 */
import { checkedRunSteps, runChecked } from '../check/checked_run.js';
import type { Violation } from '../core/invariants/index.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import type { ResultLine, TraceOp } from '../trace/types.js';
import { nextSeed } from './prng.js';
import { shrinkSteps } from './shrink.js';
import { finish, STOPPED, type Phase, type Steps } from './steps.js';
import { TraceGenerator } from './trace_gen.js';

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
  /** The minimized trace (as far as the shrink got); the violation appears after its last op. */
  readonly ops: TraceOp[];
  readonly originalOps: number;
  /** Ops run before the violation was found (this trace included). */
  readonly opsToDetection: number;
  readonly shrinkTries: number;
  /** True when a stop request ended the shrink early: `ops` may not be minimal. */
  readonly shrinkStopped: boolean;
};

export type ModelFuzzProgress = { traces: number; ops: number; violations: number };

export type ModelFuzzOptions = {
  readonly seed: number;
  readonly profile: KernelProfile;
  readonly mutants?: readonly string[];
  readonly opsPerTrace?: number;
  readonly keepGoing?: boolean;
  /** Called before each trace; return false to stop. */
  readonly shouldContinue: (p: ModelFuzzProgress) => boolean;
  readonly onViolation?: (f: FoundViolation) => void;
  readonly coverage?: Coverage;
  /** On a historical design's profile, walk into the design's known holes (GenOptions). */
  readonly designHoles?: boolean;
};

export type ModelFuzzResult = {
  progress: ModelFuzzProgress;
  found: FoundViolation[];
  /** True when a stop request ended the run (the last trace may have been cut short). */
  stopped: boolean;
};

/** Does `ops` break invariant `name` at some step? (The shrink predicate.) */
export function breaks(
  ops: readonly TraceOp[],
  profile: KernelProfile,
  mutants: readonly string[],
  name: string,
): boolean {
  const r = runChecked(ops, profile, {
    mutants,
    stopAtFirst: true,
    only: [name],
    endAtRefusal: true,
  });
  return r.failures.length > 0;
}

/** `breaks`, stepped: the first violation of invariant `name`, if any. */
function* breaksSteps(
  ops: readonly TraceOp[],
  profile: KernelProfile,
  mutants: readonly string[],
  name: string,
  phase: Phase,
): Steps<{ violation: Violation | undefined; stopped: boolean }> {
  const r = yield* checkedRunSteps(
    ops,
    profile,
    { mutants, stopAtFirst: true, only: [name], endAtRefusal: true },
    {
      phase,
    },
  );
  return { violation: r.failures[0]?.violations[0], stopped: r.stopped };
}

export function* modelFuzzSteps(o: ModelFuzzOptions): Steps<ModelFuzzResult> {
  const progress: ModelFuzzProgress = { traces: 0, ops: 0, violations: 0 };
  const found: FoundViolation[] = [];
  const mutants = o.mutants ?? [];
  let seed = o.seed;
  let stopped = false;
  while (!stopped && o.shouldContinue(progress)) {
    const gen = new TraceGenerator(seed, {
      ops: o.opsPerTrace ?? 60,
      feedback: o.profile,
      privateMemory: o.profile.memoryAttributesConfig,
      ...(o.designHoles === true ? { designHoles: true } : {}),
    });
    const r = yield* checkedRunSteps(
      gen.stream(),
      o.profile,
      { mutants, stopAtFirst: true, keepResults: true, endAtRefusal: true },
      {
        phase: 'fuzz' as const,
        onOp: () => {
          progress.ops++;
        },
      },
    );
    stopped = r.stopped;
    progress.traces++;
    if (o.coverage !== undefined) {
      recordCoverage(o.coverage, r.ops, r.results);
      for (const vm of r.backend.host.allVms)
        for (const f of vm.gmemFiles)
          for (const e of f.pages.entries()) bump(o.coverage.pageStates, `gmem:${e.value.state}`);
      if (r.backend.host.mm.anon.size > 0) bump(o.coverage.pageStates, 'anon');
      if (r.backend.host.mm.thp.size > 0) bump(o.coverage.pageStates, 'anon-thp');
    }
    if (r.failures.length > 0) {
      const f = r.failures[0]!;
      progress.violations++;
      const v = f.violations[0]!;
      const prefix = r.ops.slice(0, f.index + 1);
      // A historical design's invariant also reports what the design itself allows (its known
      // holes): fuzzing a mutant there, the shrink keeps to traces the faithful model passes, so
      // the minimized trace shows the mutant, not a hole it shrank into.
      const faithfulToo =
        o.profile.design !== undefined && mutants.length > 0 && o.designHoles !== true;
      const s = yield* shrinkSteps<Violation>(
        prefix,
        function* (t) {
          const x = yield* breaksSteps(t, o.profile, mutants, v.invariant, 'shrink');
          if (x.stopped) return STOPPED;
          if (x.violation === undefined || !faithfulToo) return x.violation;
          const y = yield* breaksSteps(t, o.profile, [], v.invariant, 'shrink');
          if (y.stopped) return STOPPED;
          return y.violation === undefined ? x.violation : undefined;
        },
        1500,
      );
      let fv = s.detail;
      if (fv === undefined && !s.stopped) {
        // No smaller trace broke it: the invariant's own first violation on the prefix.
        const fin = yield* breaksSteps(s.ops, o.profile, mutants, v.invariant, 'shrink');
        fv = fin.violation;
      }
      const fvFound: FoundViolation = {
        seed,
        invariant: v.invariant,
        violation: fv ?? v,
        ops: s.ops,
        originalOps: f.index + 1,
        opsToDetection: progress.ops,
        shrinkTries: s.tries,
        shrinkStopped: s.stopped,
      };
      stopped ||= s.stopped;
      found.push(fvFound);
      o.onViolation?.(fvFound);
      if (o.keepGoing !== true) break;
    }
    seed = nextSeed(seed);
  }
  return { progress, found, stopped };
}

export function runModelFuzz(o: ModelFuzzOptions): ModelFuzzResult {
  return finish(modelFuzzSteps(o));
}
