/**
 * `gmemlab check [--kernel P] [--mutant M] [--json] [--list] TRACE.jsonl|SCENARIO.yaml...`: run on
 * the model with every invariant checked after every op and explain each violation.
 */
import { runChecked } from '../check/checked_run.js';
import { describeFocus } from '../check/explain.js';
import { INVARIANTS } from '../core/invariants/index.js';
import { MUTANTS } from '../core/mutants.js';
import { parseScenario } from '../scenario/scenario.js';
import { formatOp, formatResult } from '../trace/format.js';
import { parseTrace } from '../trace/parse.js';
import type { TraceOp } from '../trace/types.js';
import { optString, parseArgs, UsageError } from './args.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError, readText } from './io.js';
import { loadProfile, resolveProfile, scenarioKernel } from './backends.js';

export const CHECK_HELP = `usage: gmemlab check [--kernel PROFILE] [--mutant NAME[,NAME]] [--json] FILE...
       gmemlab check --list

Run traces (.jsonl) or scenarios (.yaml) on the model with every security invariant checked after
every op. For each violation: which invariant, which object, the op that broke it, and the state
of the objects involved before and after that op.

  --kernel PROFILE   profile: a name, NAME+host or a file from probe --save (default: the
                     scenario's kernel, else this machine's profile, else linux-6.18)
  --mutant NAMES     run a model with injected bugs (see --list) — the checker should catch them
  --json             one JSON object per file
  --list             print the invariant catalogue and the mutants

Exit codes: 0 no violation, 1 a violation, 2 usage or input error.`;

export async function loadOps(file: string): Promise<{ ops: TraceOp[]; kernel?: string }> {
  const text = readText(file);
  if (file.endsWith('.yaml') || file.endsWith('.yml')) {
    const p = parseScenario(text, file);
    if (p.scenario === undefined) throw new InputError(p.errors.map((e) => e.message).join('\n'));
    const ops = p.scenario.steps.flatMap((s) => (s.kind === 'op' ? [s.op] : []));
    const k = p.scenario.kernel;
    if (k === undefined) return { ops };
    // A profile file named by the scenario is found beside it; a bad one is an error at its line
    // (as in gmemlab run), even when --kernel overrides it.
    const kernel = scenarioKernel(file, k);
    try {
      await loadProfile(kernel);
    } catch (e) {
      if (e instanceof UsageError || e instanceof InputError)
        throw new InputError(`${file}:${p.scenario.kernelLine ?? 1}: kernel: ${e.message}`);
      throw e;
    }
    return { ops, kernel };
  }
  const t = parseTrace(text, file);
  if (t.errors.length > 0) throw new InputError(t.errors.map((e) => e.message).join('\n'));
  return { ops: t.ops };
}

export function parseMutants(v: string | undefined): string[] {
  if (v === undefined) return [];
  const names = v
    .split(',')
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
  for (const n of names)
    if (!MUTANTS.some((m) => m.name === n))
      throw new UsageError(`unknown mutant "${n}" (gmemlab check --list)`);
  return names;
}

export function listCatalogue(out: (s: string) => void): void {
  out('Invariants (checked after every op):');
  for (const i of INVARIANTS) {
    out(`\n  ${i.name} — ${i.title}`);
    out(`    ${i.statement}`);
    out(`    upheld by: ${i.mechanism}`);
    out(`    from: ${i.origin}`);
  }
  out('\nMutants (--mutant NAME: injected bugs the invariants must catch):');
  for (const m of MUTANTS) out(`  ${m.name.padEnd(32)} ${m.bug}`);
}

export async function checkMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    kernel: 'string',
    mutant: 'string',
    json: 'bool',
    list: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(CHECK_HELP);
    return EXIT_OK;
  }
  if (p.opts.has('list')) {
    listCatalogue(out);
    return EXIT_OK;
  }
  if (p.positionals.length === 0) throw new UsageError('check needs a trace or scenario file');
  const mutants = parseMutants(optString(p, 'mutant'));
  let bad = 0;
  for (const file of p.positionals) {
    const { ops, kernel } = await loadOps(file);
    const profile = await resolveProfile(optString(p, 'kernel') ?? kernel);
    const r = runChecked(ops, profile, { mutants });
    if (p.opts.has('json')) {
      out(
        JSON.stringify({
          file,
          profile: profile.name,
          mutants,
          ops: ops.length,
          violations: r.failures.flatMap((f) =>
            f.violations.map((v) => ({ op: f.index + 1, line: f.op.line, ...v })),
          ),
        }),
      );
    } else if (r.failures.length === 0) {
      out(
        `${file}: ${ops.length} ops, ${INVARIANTS.length} invariants checked after each — no violation (${profile.name}${mutants.length > 0 ? `, mutants ${mutants.join(',')}` : ''})`,
      );
    } else {
      const first = r.failures[0]!;
      const before = runChecked(ops, profile, { mutants, limit: first.index });
      for (const f of r.failures.slice(0, 5)) {
        for (const v of f.violations) {
          out(`${file}:${f.op.line}: VIOLATION ${v.invariant}: ${v.object}: ${v.message}`);
          out(`  broken by op ${f.index + 1}: ${formatOp(f.op)}`);
          out(`  result: ${formatResult(r.results[f.index]!)}`);
          if (f === first) {
            out('  state before:');
            for (const l of describeFocus(before.backend.host, v.focus)) out(`    ${l}`);
            const after = runChecked(ops, profile, { mutants, limit: f.index + 1 });
            out('  state after:');
            for (const l of describeFocus(after.backend.host, v.focus)) out(`    ${l}`);
          }
        }
      }
      if (r.failures.length > 5)
        out(`  ... and ${r.failures.length - 5} more step(s) with violations`);
    }
    if (r.failures.length > 0) bad++;
  }
  return bad > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}
