/**
 * Cooperative stepping for the fuzzers. A fuzzer (or one of its parts: a checked run, a
 * comparison, a shrink) is a generator that pauses after every op it runs, yielding the phase it
 * is in; the value sent back on resumption says whether to stop now. Whoever drives the
 * generator decides when to stop (a budget, a signal) and may hand control to an event loop
 * between steps; the fuzzers themselves stay free of clocks and Node APIs.
 *
 * A stop request ends the work at that op boundary: the current trace is cut short, a shrink
 * keeps the smallest trace it has reached, and the fuzzer returns what it has found so far.
 */
import { firstDifference } from '../trace/compare.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import { BackendRefusal, type Backend, type ResultLine, type TraceOp } from '../trace/types.js';

/** Where a fuzzer pauses: after an op of fuzzing proper, or after an op run while shrinking. */
export type Phase = 'fuzz' | 'shrink';

/** A stepped computation: yields its phase after every op, receives "stop now?", returns T. */
export type Steps<T> = Generator<Phase, T, boolean | undefined>;

/** Run a stepped computation to its end without ever asking it to stop. */
export function finish<T>(g: Steps<T>): T {
  for (;;) {
    const r = g.next(false);
    if (r.done === true) return r.value;
  }
}

/** A shrink predicate's answer when it was asked to stop before it could decide. */
export const STOPPED: unique symbol = Symbol('stopped');
export type Stopped = typeof STOPPED;

export type Compared = {
  /** The ops that ran on both backends (a prefix of the input when stopped). */
  readonly ops: TraceOp[];
  /** Index of the first differing result, or -1. */
  readonly index: number;
  /** Results on the model (a) and on the reference (b). */
  readonly a: ResultLine[];
  readonly b: ResultLine[];
  readonly stopped: boolean;
};

/**
 * Run `ops` on the reference and on the model in lockstep (reference first at each op), pausing
 * after each op; undefined when the reference refuses an op. Both backends' contexts are ended
 * however the run ends (refusal, error, stop, or the generator being closed).
 */
export function* compareSteps(
  ops: Iterable<TraceOp>,
  model: Backend,
  reference: Backend,
  phase: Phase,
): Steps<Compared | undefined> {
  const ran: TraceOp[] = [];
  const a: ResultLine[] = [];
  const b: ResultLine[] = [];
  let stopped = false;
  const rt = new HandleTable(reference.begin());
  try {
    const mt = new HandleTable(model.begin());
    try {
      for (const op of ops) {
        let rb: ResultLine;
        try {
          rb = stepTrace(op, reference, rt);
        } catch (e) {
          if (e instanceof BackendRefusal) return undefined;
          throw e;
        }
        ran.push(op);
        b.push(rb);
        a.push(stepTrace(op, model, mt));
        if ((yield phase) === true) {
          stopped = true;
          break;
        }
      }
    } finally {
      model.end();
    }
  } finally {
    reference.end();
  }
  return { ops: ran, index: firstDifference(a, b), a, b, stopped };
}
