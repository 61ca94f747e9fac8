/**
 * Differential fuzzing throughput (issue: "the differential fuzzer compares at least 2,000 ops per
 * second on these machines").
 *
 * Timed: `runDifferential()` exactly as `gmemlab fuzz --differential` runs it (40-op traces from
 * the grammar, each run on the real /dev/kvm and on the model profile `probe` matches, results
 * compared line by line, shrinking on a disagreement) for DIFF_SECONDS from seed 1. Reported: ops
 * compared per second (refused traces count as traces, not ops) and traces per second.
 * Needs a usable /dev/kvm; without one the group reports why and measures nothing.
 */
import { openKvmBackend } from '../src/backends/kvm/index.js';
import { ModelBackend } from '../src/backends/model.js';
import { describeKernel } from '../src/cli/backends.js';
import { runDifferential } from '../src/fuzz/differential.js';
import { atLeast, now, row, type BenchRow } from './util.js';

export const DIFF_SECONDS = 10;

export function benchDifferential(seconds = DIFF_SECONDS): BenchRow[] {
  const kvm = openKvmBackend();
  if ('unavailable' in kvm) {
    process.stderr.write(`differential: skipped, /dev/kvm is not usable: ${kvm.unavailable}\n`);
    return [];
  }
  const k = describeKernel(kvm);
  const profile = k.profile;
  if (profile === undefined) {
    process.stderr.write(
      'differential: skipped, no model profile matches this kernel (gmemlab probe)\n',
    );
    return [];
  }
  const model = new ModelBackend(profile);
  // Warm-up (JIT, first mappings), untimed.
  runDifferential({
    seed: 900_000,
    profile,
    model,
    reference: kvm,
    shouldContinue: (p) => p.traces < 20,
  });
  const t0 = now();
  const r = runDifferential({
    seed: 1,
    profile,
    model,
    reference: kvm,
    keepGoing: true,
    shouldContinue: () => now() - t0 < seconds,
  });
  const el = now() - t0;
  const note = `${r.progress.traces} traces of 40 ops from seed 1 in ${el.toFixed(1)} s, model ${profile.name} vs /dev/kvm, ${r.progress.refused} refused, ${r.progress.disagreements} disagreement(s)`;
  return [
    row(
      'differential',
      'ops compared per second',
      r.progress.ops / el,
      'ops/s',
      atLeast(2000),
      note,
    ),
    row('differential', 'traces per second', r.progress.traces / el, 'traces/s', undefined, note),
    row(
      'differential',
      'disagreements',
      r.progress.disagreements,
      'count',
      { text: '0', ok: (v) => v === 0 },
      note,
    ),
  ];
}
