/**
 * `npm run bench:mutants`: the seeded-bug benchmark. For every mutant, fuzz the mutated model
 * (profile linux-6.18; linux-6.18-snp for the SEV-SNP mutants, linux-6.18-tdx for the TDX ones,
 * linux-6.18-arm64-pkvm for the pKVM ones, linux-next-gmem for the in-place ones, a historical
 * design's profile for its mutant: `mutantFuzzProfile()`) until an invariant catches it or
 * 60 s pass, and print a table: mutant,
 * found, time and ops to detection, length of the minimized trace, invariant.
 * Target: every mutant found within 60 s, median under 5 s.
 */
import { MUTANTS, mutantFuzzProfile } from '../src/core/base/mutants.js';
import { getProfile } from '../src/core/profiles/index.js';
import { runModelFuzz } from '../src/fuzz/model_fuzz.js';

type Row = {
  mutant: string;
  found: boolean;
  seconds: number;
  ops: number;
  minimized: number;
  invariant: string;
};

function main(): void {
  const json = process.argv.includes('--json');
  const limitMs = 60_000;
  const rows: Row[] = [];
  for (const m of MUTANTS) {
    const profile = getProfile(mutantFuzzProfile(m))!;
    const t0 = performance.now();
    const r = runModelFuzz({
      seed: 1,
      profile,
      mutants: [m.name],
      shouldContinue: () => performance.now() - t0 < limitMs,
    });
    const dt = (performance.now() - t0) / 1000;
    const f = r.found[0];
    rows.push({
      mutant: m.name,
      found: f !== undefined,
      seconds: dt,
      ops: f?.opsToDetection ?? r.progress.ops,
      minimized: f?.ops.length ?? 0,
      invariant: f?.invariant ?? '-',
    });
    if (!json) process.stderr.write(`  ${m.name}: ${f !== undefined ? 'found' : 'NOT FOUND'}\n`);
  }
  const times = rows.map((r) => (r.found ? r.seconds : Infinity)).sort((a, b) => a - b);
  const median =
    times.length % 2 === 1
      ? times[(times.length - 1) / 2]!
      : (times[times.length / 2 - 1]! + times[times.length / 2]!) / 2;
  const allFound = rows.every((r) => r.found && r.seconds <= 60);
  if (json) {
    console.log(
      JSON.stringify({
        rows,
        medianSeconds: median,
        allFoundWithin60s: allFound,
        medianUnder5s: median < 5,
      }),
    );
    return;
  }
  const header = [
    'mutant',
    'found',
    'time (s)',
    'ops to detection',
    'minimized trace (ops)',
    'caught by',
  ];
  const table = [
    header,
    ...rows.map((r) => [
      r.mutant,
      r.found ? 'yes' : 'NO',
      r.seconds.toFixed(2),
      String(r.ops),
      r.found ? String(r.minimized) : '-',
      r.invariant,
    ]),
  ];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  for (const [n, row] of table.entries()) {
    console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  '));
    if (n === 0) console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  }
  console.log(
    `\n${rows.filter((r) => r.found).length}/${rows.length} mutants found; median time to detection ${median.toFixed(2)} s (target: all within 60 s: ${allFound ? 'met' : 'NOT met'}; median < 5 s: ${median < 5 ? 'met' : 'NOT met'})`,
  );
  if (!allFound || median >= 5) process.exitCode = 1;
}

main();
