/**
 * Trace replay throughput on the model, target >= 100,000 trace ops per second excluding
 * KVM_RUN-heavy traces.
 *
 * Traces (untimed): 2,000 random traces from `generateTrace(seed, { feedback: linux-6.18,
 * privateMemory: seed even })` (40 ops each by default; feedback makes later ops use live
 * handles). The generator has no option to leave KVM_RUN out, so the KVM_RUN lines are dropped
 * afterwards (KVM_RUN creates no handle, so the rest of the trace stays meaningful; about 9% of
 * the ops). Each trace is serialised to JSON Lines with `formatOp`.
 *
 * Timed: for every trace, `parseTrace(text)` then `runTrace(ops, new ModelBackend(linux-6.18))`
 * (default Host options: events on, as `gmemlab replay` runs). Reported: ops/s for parse + run
 * without KVM_RUN (the target), the same split into parse only and run only, with result-line
 * formatting (`formatResult`, what `gmemlab replay` prints), and parse + run of the full traces
 * including KVM_RUN (for information). Best of 3.
 */
import { ModelBackend } from '../src/backends/model.js';
import { getProfile } from '../src/core/profiles/index.js';
import { generateTrace } from '../src/fuzz/trace_gen.js';
import { formatOp, formatResult } from '../src/trace/format.js';
import { parseTrace } from '../src/trace/parse.js';
import { runTrace } from '../src/trace/runner.js';
import type { TraceOp } from '../src/trace/types.js';
import { atLeast, now, row, type BenchRow } from './util.js';

export const REPLAY_TRACES = 2000;

export type Corpus = {
  /** JSONL text per trace, KVM_RUN lines dropped. */
  readonly noRun: string[];
  readonly noRunOps: number;
  /** JSONL text per trace, complete. */
  readonly all: string[];
  readonly allOps: number;
  readonly runOps: number;
  readonly genSeconds: number;
};

export function makeCorpus(traces = REPLAY_TRACES): Corpus {
  const profile = getProfile('linux-6.18')!;
  const t0 = now();
  const noRun: string[] = [];
  const all: string[] = [];
  let noRunOps = 0;
  let allOps = 0;
  for (let seed = 1; seed <= traces; seed++) {
    const ops = generateTrace(seed, { feedback: profile, privateMemory: seed % 2 === 0 });
    const kept = ops.filter((o) => o.op !== 'KVM_RUN');
    noRun.push(kept.map(formatOp).join('\n') + '\n');
    all.push(ops.map(formatOp).join('\n') + '\n');
    noRunOps += kept.length;
    allOps += ops.length;
  }
  return { noRun, noRunOps, all, allOps, runOps: allOps - noRunOps, genSeconds: now() - t0 };
}

type Mode = 'parse+run' | 'parse' | 'run' | 'parse+run+format';

/** Seconds for one pass over `texts` (or pre-parsed `parsed` for mode 'run'). */
function pass(mode: Mode, texts: readonly string[], parsed: readonly TraceOp[][]): number {
  const profile = getProfile('linux-6.18')!;
  let sink = 0;
  const t0 = now();
  for (let i = 0; i < texts.length; i++) {
    let ops: readonly TraceOp[];
    if (mode === 'run') ops = parsed[i]!;
    else {
      const p = parseTrace(texts[i]!);
      if (p.errors.length > 0) throw new Error(`bench: trace ${i}: ${p.errors[0]!.message}`);
      ops = p.ops;
    }
    if (mode === 'parse') {
      sink += ops.length;
      continue;
    }
    const backend = new ModelBackend(profile);
    if (mode === 'parse+run+format')
      runTrace(ops, backend, (_op, r) => {
        sink += formatResult(r).length;
      });
    else sink += runTrace(ops, backend).length;
  }
  const dt = now() - t0;
  if (sink < 0) console.log('unreachable');
  return dt;
}

function best(mode: Mode, texts: readonly string[], parsed: readonly TraceOp[][]): number {
  pass(mode, texts, parsed); // warm-up
  let b = Infinity;
  for (let r = 0; r < 3; r++) b = Math.min(b, pass(mode, texts, parsed));
  return b;
}

export function benchReplay(): BenchRow[] {
  const c = makeCorpus();
  const parsedNoRun = c.noRun.map((t) => parseTrace(t).ops);
  const parsedAll = c.all.map((t) => parseTrace(t).ops);
  const note = `${REPLAY_TRACES} generated traces, ${c.noRunOps} ops without KVM_RUN (${c.runOps} KVM_RUN ops dropped)`;
  const noteAll = `${REPLAY_TRACES} generated traces, ${c.allOps} ops, ${c.runOps} of them KVM_RUN`;
  const rate = (ops: number, s: number): number => Math.round(ops / s);
  return [
    row(
      'replay',
      'replay without KVM_RUN: parse JSONL + run on model',
      rate(c.noRunOps, best('parse+run', c.noRun, parsedNoRun)),
      'ops/s',
      atLeast(100_000),
      note,
    ),
    row(
      'replay',
      'replay without KVM_RUN: parse JSONL only',
      rate(c.noRunOps, best('parse', c.noRun, parsedNoRun)),
      'ops/s',
      undefined,
      note,
    ),
    row(
      'replay',
      'replay without KVM_RUN: run on model only (pre-parsed)',
      rate(c.noRunOps, best('run', c.noRun, parsedNoRun)),
      'ops/s',
      undefined,
      note,
    ),
    row(
      'replay',
      'replay without KVM_RUN: parse + run + format result lines (as `gmemlab replay`)',
      rate(c.noRunOps, best('parse+run+format', c.noRun, parsedNoRun)),
      'ops/s',
      undefined,
      note,
    ),
    row(
      'replay',
      'replay including KVM_RUN: parse JSONL + run on model (information)',
      rate(c.allOps, best('parse+run', c.all, parsedAll)),
      'ops/s',
      undefined,
      noteAll,
    ),
    row(
      'replay',
      'trace generation (untimed setup, for information)',
      c.genSeconds,
      's',
      undefined,
      noteAll,
    ),
  ];
}
