/**
 * `gmemlab fuzz --differential [--seed S] [--time T | --traces N] [--ops N] [--out DIR]`:
 * random traces on the model and on /dev/kvm; the first disagreement is shrunk and written out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runDifferential, type Disagreement } from '../fuzz/differential.js';
import { formatOp, formatResult } from '../trace/format.js';
import { optDuration, optInt, optString, parseArgs, UsageError } from './args.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError } from './io.js';
import { bar, clock, ProgressLine } from './progress.js';
import { matchProfile, probe } from './probe.js';
import { openBackend } from './replay.js';
import { getProfile } from '../core/profiles/index.js';

export const FUZZ_HELP = `usage: gmemlab fuzz --differential [--seed S] [--time T | --traces N] [--ops N] [--kernel P]
                    [--out DIR] [--keep-going] [--quiet]
       gmemlab fuzz [model-based options]   (see "gmemlab fuzz --help" under invariants)

--differential: generate random traces from a grammar of plausible VMM behaviour (mostly valid
calls, edge values often), run each on the model and on this machine's /dev/kvm, and on the first
disagreement shrink the trace to a minimal one that still disagrees and write it to DIR.

  --seed S        first seed (default 1); trace i uses seed S+i, so runs replay exactly
  --time T        stop after T (e.g. 30s, 5m, 1h); default 60s unless --traces is given
  --traces N      stop after N traces
  --ops N         ops per trace (default 40)
  --kernel P      model profile (default: the one \`gmemlab probe\` matches)
  --out DIR       where minimized disagreements go (default fuzz-out/)
  --keep-going    collect every disagreement instead of stopping at the first
  --quiet         no progress line

Exit codes: 0 no disagreement, 1 disagreement(s) found, 2 usage error or no /dev/kvm.`;

export function writeDisagreement(dir: string, d: Disagreement, kernel: string): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `disagreement-seed${d.seed}.jsonl`);
  const op = d.ops[d.index]!;
  const lines = [
    `# gmemlab differential fuzzing: seed ${d.seed}, model ${kernel} vs /dev/kvm`,
    `# minimized from ${d.originalOps} ops to ${d.ops.length} (${d.shrinkTries} shrink runs); first disagreement at op ${d.index + 1} (${op.op}):`,
    `#   model:  ${formatResult(d.model)}`,
    `#   kernel: ${formatResult(d.reference)}`,
    ...d.ops.map(formatOp),
  ];
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

export async function fuzzDifferentialMain(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const p = parseArgs(argv, { differential: 'bool', seed: 'string', time: 'string', traces: 'string', ops: 'string', kernel: 'string', out: 'string', 'keep-going': 'bool', quiet: 'bool', help: 'bool' });
  if (p.opts.has('help')) {
    out(FUZZ_HELP);
    return EXIT_OK;
  }
  const seed = optInt(p, 'seed') ?? 1;
  const traces = optInt(p, 'traces');
  const timeMs = optDuration(p, 'time') ?? (traces === undefined ? 60_000 : undefined);
  const opsPerTrace = optInt(p, 'ops') ?? 40;
  if (opsPerTrace < 1) throw new UsageError('--ops must be at least 1');
  const dir = optString(p, 'out') ?? 'fuzz-out';
  const kvm = await openBackend('kvm', undefined);
  let kernel = optString(p, 'kernel');
  if (kernel === undefined) {
    const m = matchProfile(probe(kvm));
    if (m.profile === undefined) throw new InputError('no model profile matches this kernel (see gmemlab probe); pass --kernel');
    kernel = m.profile.name;
  }
  const profile = getProfile(kernel);
  if (profile === undefined) throw new UsageError(`unknown kernel profile "${kernel}"`);
  const model = await openBackend('model', kernel);
  const progress = new ProgressLine(!p.opts.has('quiet'));
  const start = Date.now();
  const files: string[] = [];
  const r = runDifferential({
    seed,
    profile,
    model,
    reference: kvm,
    opsPerTrace,
    keepGoing: p.opts.has('keep-going'),
    shouldContinue: (pr) => {
      const el = Date.now() - start;
      const frac = timeMs !== undefined ? el / timeMs : pr.traces / (traces ?? 1);
      const rate = el > 0 ? Math.round((pr.ops * 1000) / el) : 0;
      progress.update(
        `${bar(frac)} ${clock(el)} traces ${pr.traces} (${el > 0 ? Math.round((pr.traces * 1000) / el) : 0}/s) ops ${pr.ops} (${rate}/s) refused ${pr.refused} disagreements ${pr.disagreements}`,
      );
      if (traces !== undefined && pr.traces >= traces) return false;
      if (timeMs !== undefined && el >= timeMs) return false;
      return true;
    },
    onDisagreement: (d) => {
      const f = writeDisagreement(dir, d, kernel!);
      files.push(f);
      progress.update('', true);
      out(`disagreement at seed ${d.seed}: minimized to ${d.ops.length} ops → ${f}`);
      out(`  op ${d.index + 1}: ${formatOp(d.ops[d.index]!)}`);
      out(`  model:  ${formatResult(d.model)}`);
      out(`  kernel: ${formatResult(d.reference)}`);
    },
  });
  const el = Date.now() - start;
  progress.done(
    `done in ${clock(el)}: ${r.progress.traces} traces, ${r.progress.ops} ops (${el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0} ops/s compared), ${r.progress.refused} refused by the backend, ${r.progress.disagreements} disagreement(s)`,
  );
  out(`differential fuzzing (seed ${seed}, model ${kernel} vs /dev/kvm): ${r.progress.traces} traces, ${r.progress.ops} ops, ${r.progress.disagreements} disagreement(s)`);
  return r.disagreements.length > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}

export async function fuzzMain(argv: readonly string[], out: (s: string) => void): Promise<number> {
  if (argv.includes('--differential') || argv.includes('--help') || argv.includes('-h')) return fuzzDifferentialMain(argv, out);
  throw new UsageError('model-based fuzzing is not available yet in this build; use --differential');
}
