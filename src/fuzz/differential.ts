/**
 * Differential fuzzing: random traces (trace_gen.ts) run on the model and on a reference backend
 * (the real /dev/kvm); on a disagreement the trace is shrunk to a minimal one that still
 * disagrees. Backends are passed in; no Node APIs here.
 *
 * `differentialSteps` is the fuzzer as a stepped computation (steps.ts): it pauses after every
 * op, so its driver can stop it at any op boundary (a time budget, a signal) and give an event
 * loop a turn; `runDifferential` runs it without stopping.
 */
import type { ResultLine, Backend, TraceOp } from '../trace/types.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { nextSeed } from './prng.js';
import { TraceGenerator } from './trace_gen.js';
import { shrinkSteps } from './shrink.js';
import { compareSteps, finish, STOPPED, type Compared, type Steps } from './steps.js';

export type Disagreement = {
  readonly seed: number;
  /** The minimized trace (minimized as far as the shrink got when it was stopped). */
  readonly ops: TraceOp[];
  /** 0-based index of the first disagreeing op in the minimized trace. */
  readonly index: number;
  readonly model: ResultLine;
  readonly reference: ResultLine;
  /** Ops of the trace that disagreed (fewer than generated when it was cut short). */
  readonly originalOps: number;
  readonly shrinkTries: number;
  /** True when a stop request ended the shrink early: `ops` may not be minimal. */
  readonly shrinkStopped: boolean;
};

export type DifferentialProgress = {
  traces: number;
  ops: number;
  refused: number;
  disagreements: number;
};

export type DifferentialOptions = {
  readonly seed: number;
  readonly profile: KernelProfile;
  readonly model: Backend;
  readonly reference: Backend;
  /** Ops per generated trace. */
  readonly opsPerTrace?: number;
  /** Keep fuzzing after a disagreement (default: stop at the first). */
  readonly keepGoing?: boolean;
  /** Called before each trace; return false to stop. */
  readonly shouldContinue: (p: DifferentialProgress) => boolean;
  readonly onDisagreement?: (d: Disagreement) => void;
};

export type DifferentialResult = {
  progress: DifferentialProgress;
  disagreements: Disagreement[];
  /** True when a stop request ended the run (the last trace may have been cut short). */
  stopped: boolean;
};

/** Run both backends; undefined when the reference refuses the trace. */
export function compareOnce(
  ops: readonly TraceOp[],
  model: Backend,
  reference: Backend,
): { index: number; a: ResultLine[]; b: ResultLine[] } | undefined {
  const r = finish(compareSteps(ops, model, reference, 'fuzz'));
  return r === undefined ? undefined : { index: r.index, a: r.a, b: r.b };
}

export function* differentialSteps(o: DifferentialOptions): Steps<DifferentialResult> {
  const progress: DifferentialProgress = { traces: 0, ops: 0, refused: 0, disagreements: 0 };
  const found: Disagreement[] = [];
  let seed = o.seed;
  let stopped = false;
  while (!stopped && o.shouldContinue(progress)) {
    const gen = new TraceGenerator(seed, {
      ops: o.opsPerTrace ?? 40,
      feedback: o.profile,
      realSafe: true,
      privateMemory: o.profile.memoryAttributesConfig,
    });
    const r = yield* compareSteps(gen.stream(), o.model, o.reference, 'fuzz');
    progress.traces++;
    if (r === undefined) progress.refused++;
    else {
      stopped = r.stopped;
      progress.ops += r.ops.length;
      if (r.index >= 0) {
        progress.disagreements++;
        const d = yield* shrinkDisagreement(seed, r, o.model, o.reference);
        stopped ||= d.shrinkStopped;
        found.push(d);
        o.onDisagreement?.(d);
        if (o.keepGoing !== true) break;
      }
    }
    seed = nextSeed(seed);
  }
  return { progress, disagreements: found, stopped };
}

/** Shrink a disagreeing run to a trace that still disagrees (as far as it gets before a stop). */
function* shrinkDisagreement(
  seed: number,
  r: Compared,
  model: Backend,
  reference: Backend,
): Steps<Disagreement> {
  type Detail = { index: number; a: ResultLine; b: ResultLine };
  const s = yield* shrinkSteps<Detail>(r.ops, function* (t) {
    const x = yield* compareSteps(t, model, reference, 'shrink');
    if (x === undefined) return undefined;
    if (x.stopped) return STOPPED;
    return x.index >= 0 ? { index: x.index, a: x.a[x.index]!, b: x.b[x.index]! } : undefined;
  });
  // Without a smaller failing candidate the trace is the one that ran: its own first difference.
  const fin = s.detail ?? { index: r.index, a: r.a[r.index]!, b: r.b[r.index]! };
  return {
    seed,
    ops: s.ops,
    index: fin.index,
    model: fin.a,
    reference: fin.b,
    originalOps: r.ops.length,
    shrinkTries: s.tries,
    shrinkStopped: s.stopped,
  };
}

export function runDifferential(o: DifferentialOptions): DifferentialResult {
  return finish(differentialSteps(o));
}
