/**
 * Invariant checking overhead (issue: "incremental checking keeps replay within 3x of unchecked
 * speed").
 *
 * Traces (untimed): the replay benchmark's corpus (`makeCorpus`: 2,000 generated traces on
 * linux-6.18, half of them with private-memory walks), complete with their KVM_RUN ops, parsed
 * once.
 *
 * Timed, best of 3 after a warm-up pass, for every trace:
 * - unchecked: `runTrace(ops, new ModelBackend(linux-6.18))` as `gmemlab replay` runs it;
 * - checked: `runChecked(ops, linux-6.18)` as `gmemlab check` runs it: all 9 invariants after
 *   every op (the checker is incremental: it looks at what the op touched, and builds the
 *   frame-ownership map only when a step needs it).
 * Reported: ops/s of both, and the slowdown checked/unchecked (target <= 3).
 */
import { ModelBackend } from '../src/backends/model.js';
import { runChecked } from '../src/check/checked_run.js';
import { getProfile } from '../src/core/profiles/index.js';
import { parseTrace } from '../src/trace/parse.js';
import { runTrace } from '../src/trace/runner.js';
import type { TraceOp } from '../src/trace/types.js';
import { makeCorpus } from './replay.bench.js';
import { now, row, type BenchRow } from './util.js';

function pass(traces: readonly TraceOp[][], checked: boolean): number {
  const profile = getProfile('linux-6.18')!;
  let sink = 0;
  const t0 = now();
  for (const ops of traces) {
    if (checked) {
      const r = runChecked(ops, profile);
      if (r.failures.length > 0) throw new Error('bench: the faithful model violated an invariant');
      sink += r.ran;
    } else sink += runTrace(ops, new ModelBackend(profile)).length;
  }
  const dt = now() - t0;
  if (sink < 0) console.log('unreachable');
  return dt;
}

function best(traces: readonly TraceOp[][], checked: boolean): number {
  pass(traces, checked);
  let b = Infinity;
  for (let r = 0; r < 3; r++) b = Math.min(b, pass(traces, checked));
  return b;
}

export function benchCheck(): BenchRow[] {
  const c = makeCorpus();
  const traces = c.all.map((t) => parseTrace(t).ops);
  const plain = best(traces, false);
  const checked = best(traces, true);
  const note = `${traces.length} generated traces, ${c.allOps} ops (${c.runOps} KVM_RUN), linux-6.18, pre-parsed`;
  return [
    row(
      'check',
      'replay on the model, unchecked',
      Math.round(c.allOps / plain),
      'ops/s',
      undefined,
      note,
    ),
    row(
      'check',
      'replay with all 9 invariants checked after every op',
      Math.round(c.allOps / checked),
      'ops/s',
      undefined,
      note,
    ),
    row(
      'check',
      'slowdown of checked replay (checked time / unchecked time)',
      checked / plain,
      'x',
      { text: '<= 3', ok: (v) => v <= 3 },
      note,
    ),
  ];
}
