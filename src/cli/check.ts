/**
 * `gmemlab check [--kernel P] [--mutant M] [--json] [--list] TRACE.jsonl|SCENARIO.yaml...`: run on
 * the model with every invariant checked after every op and explain each violation.
 */
import { runChecked } from '../check/checked_run.js';
import { describeFocus } from '../check/explain.js';
import { INVARIANTS } from '../core/invariants/index.js';
import { MUTANTS, mutantsFor } from '../core/base/mutants.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { parseScenario } from '../scenario/scenario.js';
import { formatOp, formatResult } from '../trace/format.js';
import { BackendRefusal, type TraceOp } from '../trace/types.js';
import { renderOp, renderResult, paint } from '../trace/strace.js';
import { optString, parseArgs, UsageError } from './args.js';
import { chooseFormat, FORMAT_OPTIONS, styled, styleFor } from './output.js';
import {
  EXIT_CHECK_FAILED,
  EXIT_OK,
  InputError,
  inputErrors,
  loadTrace,
  MAX_SMALL_FILE_BYTES,
  readText,
  traceErrors,
} from './io.js';
import { loadProfile, resolveProfile, scenarioKernel } from './backends.js';

export const CHECK_HELP = `usage: gmemlab check [--kernel PROFILE] [--mutant NAME[,NAME]] [--format text|json] FILE...
       gmemlab check --list [--kernel PROFILE]

Run traces (.jsonl) or scenarios (.yaml) on the model with every security invariant checked after
every op. For each violation: which invariant, which object (by the file's handle names), the op
that broke it (file:line; a violation that persists is reported once, at the op that caused it),
and the state of the objects involved before and after that op. The last line counts files, ops
and violations.

  --kernel PROFILE   profile: a name, NAME+host or a file from probe --save (default: the
                     scenario's kernel, else this machine's profile, else linux-6.18)
  --mutant NAMES     run a model with injected bugs (see --list) — the checker should catch them
  --format F         text (default) or json: one JSON object per file, then
                     {summary: {files, ops, violations, files_with_violations}}
  --json, -j         the same as --format json
  --list             print the invariant catalogue and the mutants that apply to the profile
                     (--kernel, else the default profile: linux-6.18-snp adds the SEV-SNP
                     ones, linux-6.18-tdx the TDX ones, linux-6.18-arm64-pkvm the pKVM ones)

Exit codes: 0 no violation, 1 a violation, 2 usage or input error.`;

export async function loadOps(file: string): Promise<{ ops: TraceOp[]; kernel?: string }> {
  if (file.endsWith('.yaml') || file.endsWith('.yml')) {
    const p = parseScenario(readText(file, MAX_SMALL_FILE_BYTES), file);
    if (p.scenario === undefined) throw inputErrors(p.errors);
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
  const t = loadTrace(file);
  if (t.errorCount > 0) throw traceErrors(t);
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

/** The invariants the checker evaluates on `profile`. */
export function invariantsFor(profile: KernelProfile): typeof INVARIANTS {
  return INVARIANTS.filter((i) => i.appliesTo?.(profile) ?? true);
}

/** The catalogue as it applies to `profile`: its invariants and the mutants its code can reach. */
export function listCatalogue(out: (s: string) => void, profile: KernelProfile): void {
  out('Invariants (checked after every op):');
  for (const i of invariantsFor(profile)) {
    out(`\n  ${i.name} — ${i.title}`);
    out(`    ${i.statement}`);
    out(`    upheld by: ${i.mechanism}`);
    out(`    from: ${i.origin}`);
  }
  out('\nMutants (--mutant NAME: injected bugs the invariants must catch):');
  for (const m of mutantsFor(profile.parts.platform, profile.parts.gmem, profile.design))
    out(`  ${m.name.padEnd(32)} ${m.bug}`);
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** `3 files, 120 ops, 2 violations (1 file with violations)` */
export function checkCountLine(
  files: number,
  ops: number,
  violations: number,
  bad: number,
): string {
  return `${plural(files, 'file')}, ${plural(ops, 'op')}, ${plural(violations, 'violation')} (${bad === 0 ? 'no file' : plural(bad, 'file')} with violations)`;
}

export async function checkMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    kernel: 'string',
    mutant: 'string',
    ...FORMAT_OPTIONS,
    list: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(CHECK_HELP);
    return EXIT_OK;
  }
  const style = styleFor();
  const say = (s: string): void => out(styled(s, style));
  if (p.opts.has('list')) {
    listCatalogue(say, await resolveProfile(optString(p, 'kernel')));
    return EXIT_OK;
  }
  const json = chooseFormat(p, 'text') === 'json';
  if (p.positionals.length === 0) throw new UsageError('check needs a trace or scenario file');
  const mutants = parseMutants(optString(p, 'mutant'));
  let bad = 0;
  let totalOps = 0;
  let totalViolations = 0;
  for (const file of p.positionals) {
    const { ops, kernel } = await loadOps(file);
    const profile = await resolveProfile(optString(p, 'kernel') ?? kernel);
    let r: ReturnType<typeof runChecked>;
    try {
      r = runChecked(ops, profile, { mutants });
    } catch (e) {
      // An op the model refuses to run (where the kernel would go somewhere it does not
      // represent): the file cannot be checked past it, as replay reports it.
      if (e instanceof BackendRefusal)
        throw new InputError(`${file}: ${e.message} (at run time; the check stopped here)`);
      throw e;
    }
    const { names } = r;
    const count = r.failures.reduce((n, f) => n + f.violations.length, 0);
    totalOps += ops.length;
    totalViolations += count;
    if (json) {
      out(
        JSON.stringify({
          file,
          profile: profile.name,
          mutants,
          ops: ops.length,
          violations: r.failures.flatMap((f) =>
            f.violations.map((v) => ({
              op: f.index + 1,
              line: f.op.line,
              ...v,
              described: names.rename(`${v.object}: ${v.message}`),
            })),
          ),
        }),
      );
    } else if (r.failures.length === 0) {
      say(
        `${file}: ${ops.length} ops, ${invariantsFor(profile).length} invariants checked after each — ${paint('no violation', 'green', style)} (${profile.name}${mutants.length > 0 ? `, mutants ${mutants.join(',')}` : ''})`,
      );
    } else {
      const first = r.failures[0]!;
      const before = runChecked(ops, profile, { mutants, limit: first.index });
      for (const f of r.failures.slice(0, 5)) {
        const result = f.result;
        for (const v of f.violations) {
          say(
            `${file}:${f.op.line}: ${paint('VIOLATION', 'red', style)} ${v.invariant}: ${names.rename(v.object)}: ${names.rename(v.message)}`,
          );
          say(`  broken by op ${f.index + 1}: ${formatOp(f.op)}`);
          say(`  call:   ${renderOp(f.op, style)} ${renderResult(f.op, result, style)}`);
          say(`  result: ${formatResult(result)}`);
          if (f === first) {
            say('  state before:');
            for (const l of describeFocus(before.backend.host, v.focus, names)) say(`    ${l}`);
            const after = runChecked(ops, profile, { mutants, limit: f.index + 1 });
            say('  state after:');
            for (const l of describeFocus(after.backend.host, v.focus, names)) say(`    ${l}`);
          }
        }
      }
      if (r.failures.length > 5)
        say(`  ... and ${r.failures.length - 5} more op(s) that broke an invariant`);
    }
    if (r.failures.length > 0) bad++;
  }
  const files = p.positionals.length;
  if (json)
    out(
      JSON.stringify({
        summary: {
          files,
          ops: totalOps,
          violations: totalViolations,
          files_with_violations: bad,
        },
      }),
    );
  else say(checkCountLine(files, totalOps, totalViolations, bad));
  return bad > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}
