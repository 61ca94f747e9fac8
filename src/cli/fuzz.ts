/**
 * `gmemlab fuzz --differential [--seed S] [--time T | --traces N] [--trace-ops N] [--out DIR]`:
 * random traces on the model and on /dev/kvm; the first disagreement is shrunk and written out.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runDifferential, type Disagreement } from '../fuzz/differential.js';
import { formatOp, formatResult } from '../trace/format.js';
import { optDuration, optInt, optString, parseArgs, UsageError } from './args.js';
import { EXIT_CHECK_FAILED, EXIT_OK } from './io.js';
import { bar, clock, ProgressLine } from './progress.js';
import { openKvmAndModel } from './backends.js';
import { newCoverage, runModelFuzz, type FoundViolation } from '../fuzz/model_fuzz.js';
import { parseMutants } from './check.js';
import { resolveProfile } from './backends.js';

export const FUZZ_HELP = `usage: gmemlab fuzz --differential [--seed S] [--time T | --traces N] [--trace-ops N] [--kernel P]
                    [--out DIR] [--keep-going] [--quiet] [--json]
       gmemlab fuzz [--seed S] [--time T | --ops N] ...   (model-based fuzzing: gmemlab fuzz --help)

--differential: generate random traces from a grammar of plausible VMM behaviour (mostly valid
calls, edge values often), run each on the model and on this machine's /dev/kvm, and on the first
disagreement shrink the trace to a minimal one that still disagrees and write it to DIR.

  --seed S        first seed (default 1); trace i uses seed S+i, so runs replay exactly
  --time T        stop after T (e.g. 30s, 5m, 1h); default 60s unless --traces is given
  --traces N      stop after N traces
  --trace-ops N   ops per trace (default 40)
  --kernel P      model profile: a name, NAME+host or a file from probe --save (default: the
                  one \`gmemlab probe\` matches, or GMEMLAB_KERNEL)
  --out DIR       where minimized disagreements go (default fuzz-out/)
  --keep-going    collect every disagreement instead of stopping at the first
  --quiet         no progress line
  --json          print the summary (and every disagreement) as one JSON object

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

export async function fuzzDifferentialMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    differential: 'bool',
    seed: 'string',
    time: 'string',
    traces: 'string',
    'trace-ops': 'string',
    kernel: 'string',
    out: 'string',
    'keep-going': 'bool',
    quiet: 'bool',
    json: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(FUZZ_HELP);
    return EXIT_OK;
  }
  const seed = optInt(p, 'seed') ?? 1;
  const traces = optInt(p, 'traces');
  const timeMs = optDuration(p, 'time') ?? (traces === undefined ? 60_000 : undefined);
  const opsPerTrace = optInt(p, 'trace-ops') ?? 40;
  if (opsPerTrace < 1) throw new UsageError('--trace-ops must be at least 1');
  const dir = optString(p, 'out') ?? 'fuzz-out';
  const { kvm, model, profile } = await openKvmAndModel(optString(p, 'kernel'));
  const kernel = profile.name;
  const json = p.opts.has('json');
  const progress = new ProgressLine(!p.opts.has('quiet') && !json);
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
      if (json) return;
      progress.update('', true);
      out(`disagreement at seed ${d.seed}: minimized to ${d.ops.length} ops → ${f}`);
      out(`  op ${d.index + 1}: ${formatOp(d.ops[d.index]!)}`);
      out(`  model:  ${formatResult(d.model)}`);
      out(`  kernel: ${formatResult(d.reference)}`);
    },
  });
  const el = Date.now() - start;
  if (json) {
    out(
      JSON.stringify({
        seed,
        kernel,
        seconds: Math.round(el / 100) / 10,
        traces: r.progress.traces,
        ops: r.progress.ops,
        opsPerSecond: el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0,
        refused: r.progress.refused,
        disagreements: r.disagreements.map((d, i) => ({
          seed: d.seed,
          file: files[i],
          minimizedOps: d.ops.length,
          op: formatOp(d.ops[d.index]!),
          model: formatResult(d.model),
          kernel: formatResult(d.reference),
        })),
      }),
    );
    return r.disagreements.length > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
  }
  progress.done(
    `done in ${clock(el)}: ${r.progress.traces} traces, ${r.progress.ops} ops (${el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0} ops/s compared), ${r.progress.refused} refused by the backend, ${r.progress.disagreements} disagreement(s)`,
  );
  out(
    `differential fuzzing (seed ${seed}, model ${kernel} vs /dev/kvm): ${r.progress.traces} traces, ${r.progress.ops} ops, ${r.progress.disagreements} disagreement(s)`,
  );
  return r.disagreements.length > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}

export const MODEL_FUZZ_HELP = `usage: gmemlab fuzz [--seed S] [--time T | --ops N] [--kernel P] [--mutant NAME] [--trace-ops N]
                    [--out DIR] [--keep-going] [--quiet] [--json]
       gmemlab fuzz --differential ...   (gmemlab fuzz --differential --help)

Model-based fuzzing: random operation sequences (mostly valid VMM behaviour, edge values often,
private-memory walks on profiles that have them) run on the model with every security invariant
checked after every op. A violation is shrunk to a minimal trace that still breaks the same
invariant and written to DIR. Deterministic for a seed.

  --seed S        first seed (default 1); trace i uses seed S+i
  --time T        stop after T (30s, 5m, 1h; default 60s unless --ops is given)
  --ops N         stop after N ops
  --trace-ops N   ops per generated trace (default 60)
  --kernel P      profile: a name, NAME+host or a file from probe --save (default: this
                  machine's profile, else linux-6.18)
  --mutant NAMES  fuzz a model with injected bugs (gmemlab check --list)
  --out DIR       where minimized violations go (default fuzz-out/)
  --keep-going    keep fuzzing after a violation
  --json          print the summary (and coverage) as JSON

Exit codes: 0 no violation, 1 violation(s) found, 2 usage error.`;

export function writeViolation(
  dir: string,
  f: FoundViolation,
  kernel: string,
  mutants: readonly string[],
): string {
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `violation-${f.invariant}-seed${f.seed}.jsonl`);
  const lines = [
    `# gmemlab model-based fuzzing: seed ${f.seed}, profile ${kernel}${mutants.length > 0 ? `, mutants ${mutants.join(',')}` : ''}`,
    `# invariant ${f.invariant} breaks after the last op: ${f.violation.object}: ${f.violation.message}`,
    `# minimized from ${f.originalOps} ops to ${f.ops.length} (${f.shrinkTries} shrink runs); reproduce: gmemlab check --kernel ${kernel}${mutants.length > 0 ? ` --mutant ${mutants.join(',')}` : ''} ${file}`,
    ...f.ops.map(formatOp),
  ];
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

function topKeys(m: Map<string, number>): string {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}:${v}`)
    .join(' ');
}

export async function fuzzModelMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    seed: 'string',
    time: 'string',
    ops: 'string',
    'trace-ops': 'string',
    kernel: 'string',
    mutant: 'string',
    out: 'string',
    'keep-going': 'bool',
    quiet: 'bool',
    json: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(MODEL_FUZZ_HELP);
    return EXIT_OK;
  }
  const seed = optInt(p, 'seed') ?? 1;
  const maxOps = optInt(p, 'ops');
  const timeMs = optDuration(p, 'time') ?? (maxOps === undefined ? 60_000 : undefined);
  const perTrace = optInt(p, 'trace-ops') ?? 60;
  if (perTrace < 1) throw new UsageError('--trace-ops must be at least 1');
  const profile = await resolveProfile(optString(p, 'kernel'));
  const mutants = parseMutants(optString(p, 'mutant'));
  const dir = optString(p, 'out') ?? 'fuzz-out';
  const coverage = newCoverage();
  const progress = new ProgressLine(!p.opts.has('quiet') && !p.opts.has('json'));
  const start = Date.now();
  const r = runModelFuzz({
    seed,
    profile,
    mutants,
    opsPerTrace: perTrace,
    keepGoing: p.opts.has('keep-going'),
    coverage,
    shouldContinue: (pr) => {
      const el = Date.now() - start;
      const frac = timeMs !== undefined ? el / timeMs : pr.ops / (maxOps ?? 1);
      progress.update(
        `${bar(frac)} ${clock(el)} traces ${pr.traces} ops ${pr.ops} (${el > 0 ? Math.round((pr.ops * 1000) / el) : 0}/s) violations ${pr.violations} | errnos ${coverage.errnos.size} exits ${coverage.exits.size} faults ${coverage.faults.size}`,
      );
      if (maxOps !== undefined && pr.ops >= maxOps) return false;
      if (timeMs !== undefined && el >= timeMs) return false;
      return true;
    },
    onViolation: (f) => {
      const file = writeViolation(dir, f, profile.name, mutants);
      progress.update('', true);
      if (!p.opts.has('json')) {
        out(
          `VIOLATION ${f.invariant} at seed ${f.seed} after ${f.opsToDetection} ops: ${f.violation.object}: ${f.violation.message}`,
        );
        out(`  minimized to ${f.ops.length} ops → ${file}`);
      }
    },
  });
  const el = Date.now() - start;
  progress.done(`done in ${clock(el)}`);
  const summary = {
    seed,
    profile: profile.name,
    mutants,
    traces: r.progress.traces,
    ops: r.progress.ops,
    opsPerSecond: el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0,
    seconds: el / 1000,
    violations: r.found.map((f) => ({
      invariant: f.invariant,
      seed: f.seed,
      opsToDetection: f.opsToDetection,
      minimizedOps: f.ops.length,
      object: f.violation.object,
      message: f.violation.message,
    })),
    coverage: {
      errnos: Object.fromEntries(coverage.errnos),
      exits: Object.fromEntries(coverage.exits),
      faults: Object.fromEntries(coverage.faults),
      pageStates: Object.fromEntries(coverage.pageStates),
      ops: Object.fromEntries(coverage.ops),
    },
  };
  if (p.opts.has('json')) out(JSON.stringify(summary));
  else {
    out(
      `model-based fuzzing (seed ${seed}, ${profile.name}${mutants.length > 0 ? `, mutants ${mutants.join(',')}` : ''}): ${r.progress.traces} traces, ${r.progress.ops} ops in ${clock(el)} (${summary.opsPerSecond} ops/s), ${r.found.length} violation(s)`,
    );
    out(`  coverage: errnos ${topKeys(coverage.errnos)}`);
    out(`            exits ${topKeys(coverage.exits)}; host faults ${topKeys(coverage.faults)}`);
    out(`            page states (traces ending with them) ${topKeys(coverage.pageStates)}`);
  }
  return r.found.length > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}

export async function fuzzMain(argv: readonly string[], out: (s: string) => void): Promise<number> {
  if (argv.includes('--differential')) return fuzzDifferentialMain(argv, out);
  return fuzzModelMain(argv, out);
}
