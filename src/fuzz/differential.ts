/**
 * Differential fuzzing: random traces (trace_gen.ts) run on the model and on a reference backend
 * (the real /dev/kvm); on a disagreement the trace is shrunk to a minimal one that still
 * disagrees. Backends are passed in; no Node APIs here.
 */
import { firstDifference } from '../trace/compare.js';
import { runTrace } from '../trace/runner.js';
import { BackendRefusal, type Backend, type ResultLine, type TraceOp } from '../trace/types.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { generateTrace } from './trace_gen.js';
import { shrinkTrace } from './shrink.js';

export type Disagreement = {
  readonly seed: number;
  /** The minimized trace. */
  readonly ops: TraceOp[];
  /** 0-based index of the first disagreeing op in the minimized trace. */
  readonly index: number;
  readonly model: ResultLine;
  readonly reference: ResultLine;
  readonly originalOps: number;
  readonly shrinkTries: number;
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

/** Run both backends; undefined when the reference refuses the trace. */
export function compareOnce(
  ops: readonly TraceOp[],
  model: Backend,
  reference: Backend,
): { index: number; a: ResultLine[]; b: ResultLine[] } | undefined {
  let b: ResultLine[];
  try {
    b = runTrace(ops, reference);
  } catch (e) {
    if (e instanceof BackendRefusal) return undefined;
    throw e;
  }
  const a = runTrace(ops, model);
  return { index: firstDifference(a, b), a, b };
}

export function runDifferential(o: DifferentialOptions): {
  progress: DifferentialProgress;
  disagreements: Disagreement[];
} {
  const progress: DifferentialProgress = { traces: 0, ops: 0, refused: 0, disagreements: 0 };
  const found: Disagreement[] = [];
  let seed = o.seed;
  while (o.shouldContinue(progress)) {
    const ops = generateTrace(seed, {
      ops: o.opsPerTrace ?? 40,
      feedback: o.profile,
      realSafe: true,
      privateMemory: o.profile.memoryAttributesConfig,
    });
    const r = compareOnce(ops, o.model, o.reference);
    progress.traces++;
    if (r === undefined) progress.refused++;
    else {
      progress.ops += ops.length;
      if (r.index >= 0) {
        progress.disagreements++;
        const fails = (t: TraceOp[]): boolean => {
          const x = compareOnce(t, o.model, o.reference);
          return x !== undefined && x.index >= 0;
        };
        const s = shrinkTrace(ops, fails);
        const fin = compareOnce(s.ops, o.model, o.reference)!;
        const d: Disagreement = {
          seed,
          ops: s.ops,
          index: fin.index,
          model: fin.a[fin.index]!,
          reference: fin.b[fin.index]!,
          originalOps: ops.length,
          shrinkTries: s.tries,
        };
        found.push(d);
        o.onDisagreement?.(d);
        if (o.keepGoing !== true) break;
      }
    }
    seed++;
  }
  return { progress, disagreements: found };
}
