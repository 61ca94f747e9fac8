/**
 * `gmemlab run [--kernel P] [--backend model|kvm] [--json] SCENARIO.yaml...`: run scenarios and
 * print a readable timeline — each step, its result, what changed — and check expectations.
 */
import { ModelBackend } from '../backends/model.js';
import { parseScenario, type Scenario } from '../scenario/scenario.js';
import { runScenario, type ScenarioRun } from '../scenario/run.js';
import { formatOp, resultToJson } from '../trace/format.js';
import { BackendRefusal, type Backend } from '../trace/types.js';
import { optString, parseArgs, UsageError } from './args.js';
import { describeExits, describeOp, describeResult } from './describe.js';
import {
  EXIT_CHECK_FAILED,
  EXIT_OK,
  InputError,
  inputErrors,
  MAX_SMALL_FILE_BYTES,
  readText,
} from './io.js';
import { chooseFormat, FORMAT_OPTIONS, styled, styleFor } from './output.js';
import { paint, PLAIN, type Style } from '../trace/strace.js';
import { isKvm, openBackend, precheckOnKvm, scenarioKernel } from './backends.js';

export const RUN_HELP = `usage: gmemlab run [--kernel PROFILE] [--backend model|kvm] [--format text|json] [-q] [--print-trace] SCENARIO.yaml...

Run scenario files (YAML walkthroughs, see README "Scenarios") and print a timeline: each step,
its result, what changed in the model (mappings zapped, pages allocated/zeroed/freed, exits), and
whether it met its expectation.

  --kernel PROFILE   model profile: a name, NAME+host or a file from probe --save (default:
                     the scenario's "kernel", else this machine's profile, else linux-6.18)
  --backend B        model (default) or kvm (real /dev/kvm; "what changed" needs the model)
  --format F         text (default: the timeline) or json: one object per scenario, "what
                     changed" as records ({kind, vm, gmem, count, ranges, ...})
  --json, -j         the same as --format json
  --quiet, -q        print only failures and the summary line
  --print-trace      run nothing: print each scenario's ops as a trace (JSONL, what
                     "gmemlab replay" reads), with every repetition expanded

The timeline is coloured on a terminal (not with NO_COLOR) and ASCII-only when the locale is not
UTF-8. Objects are called by the scenario's handle names: "vm (vm0)", "gmem (guest_memfd #105)".

Exit codes: 0 all expectations met, 1 an expectation failed, 2 usage or input error.`;

export function loadScenario(path: string): Scenario {
  const p = parseScenario(readText(path, MAX_SMALL_FILE_BYTES), path);
  if (p.scenario === undefined) throw inputErrors(p.errors);
  return p.scenario;
}

export async function backendForScenario(
  s: Scenario,
  kind: string,
  kernel: string | undefined,
): Promise<Backend> {
  if (kernel !== undefined || s.kernel === undefined) return openBackend(kind, kernel);
  // The scenario's own `kernel:`: a profile file is found beside the scenario, and a bad value is
  // an input error at its line.
  const k = scenarioKernel(s.file, s.kernel);
  try {
    return await openBackend(kind, k);
  } catch (e) {
    if (e instanceof UsageError || e instanceof InputError)
      throw new InputError(`${s.file}:${s.kernelLine ?? 1}: kernel: ${e.message}`);
    throw e;
  }
}

export function runWith(s: Scenario, b: Backend): ScenarioRun {
  if (!(b instanceof ModelBackend)) return runScenario(s, b, {});
  const m = b;
  return runScenario(s, b, {
    drainEvents: () => (m.host ? m.host.events.drain() : []),
    // "What changed" names the objects by the scenario's handles.
    host: () => m.host,
  });
}

export function formatTimeline(run: ScenarioRun, quiet: boolean, style: Style = PLAIN): string[] {
  const lines: string[] = [];
  const s = run.scenario;
  if (!quiet) {
    lines.push(`Scenario: ${s.name}`);
    lines.push(`  ${s.file} — backend ${run.backend}`);
    if (s.description !== undefined)
      for (const d of s.description.trim().split('\n')) lines.push(`  ${d}`);
  }
  for (const o of run.outcomes) {
    if (o.kind === 'section') {
      if (!quiet) lines.push('', `── ${o.title} ──`);
      continue;
    }
    const failed = o.failures.length > 0;
    if (quiet && !failed) continue;
    const mark =
      o.step.expect === undefined
        ? ' '
        : failed
          ? paint('✗', 'red', style)
          : paint('✓', 'green', style);
    const elide = o.step.repeated !== undefined;
    lines.push(`${mark} ${String(o.index).padStart(2)}  ${describeOp(o.step.op, elide)}`);
    lines.push(`       → ${describeResult(o.result)}`);
    if (o.step.say !== undefined) lines.push(`       ${o.step.say}`);
    for (const x of describeExits(o.result, elide)) lines.push(`         ${x}`);
    for (const c of o.changes) lines.push(`         • ${c}`);
    for (const f of o.failures) lines.push(`       ✗ ${s.file}:${o.step.line}: ${f}`);
  }
  const verdict =
    run.failedSteps === 0 ? 'all expectations met' : `${run.failedSteps} step(s) failed`;
  lines.push(
    '',
    `${s.name}: ${run.outcomes.filter((o) => o.kind === 'op').length} steps, ${run.checkedSteps} checked — ${verdict}`,
  );
  return lines.map((l) => styled(l, style));
}

export function runToJson(run: ScenarioRun): Record<string, unknown> {
  return {
    scenario: run.scenario.name,
    file: run.scenario.file,
    backend: run.backend,
    failed: run.failedSteps,
    checked: run.checkedSteps,
    steps: run.outcomes
      .filter((o) => o.kind === 'op')
      .map((o) =>
        o.kind === 'op'
          ? {
              index: o.index,
              line: o.step.line,
              op: o.step.op.op,
              result: resultToJson(o.result),
              effects: o.effects,
              changes: o.changeRecords,
              failures: o.failures,
            }
          : {},
      ),
  };
}

export async function runMain(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const p = parseArgs(argv, {
    kernel: 'string',
    backend: 'string',
    ...FORMAT_OPTIONS,
    quiet: 'bool',
    'print-trace': 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(RUN_HELP);
    return EXIT_OK;
  }
  if (p.positionals.length === 0) throw new UsageError('run needs a scenario file');
  if (p.opts.has('print-trace')) {
    // Every file is read before anything is printed (a malformed one prints nothing).
    const all = p.positionals.map(loadScenario);
    for (const s of all) {
      if (all.length > 1) out(`# ${s.file}`);
      for (const x of s.steps) if (x.kind === 'op') out(formatOp(x.op));
    }
    return EXIT_OK;
  }
  const json = chooseFormat(p, 'text') === 'json';
  const style = styleFor();
  let failed = 0;
  // Every scenario is read, and on /dev/kvm checked for refusals, before the first runs.
  const runs: Array<{ file: string; s: Scenario; b: Backend }> = [];
  for (const file of p.positionals) {
    const s = loadScenario(file);
    const b = await backendForScenario(
      s,
      optString(p, 'backend') ?? 'model',
      optString(p, 'kernel'),
    );
    runs.push({ file, s, b });
  }
  for (const { file, s, b } of runs)
    if (isKvm(b))
      await precheckOnKvm(
        s.steps.flatMap((x) => (x.kind === 'op' ? [x.op] : [])),
        file,
      );
  for (const { file, s, b } of runs) {
    let r: ScenarioRun;
    try {
      r = runWith(s, b);
    } catch (e) {
      if (e instanceof BackendRefusal) throw new InputError(`${file}: ${e.message}`);
      throw e;
    }
    if (json)
      out(
        JSON.stringify(runToJson(r), (_k, v: unknown) =>
          typeof v === 'bigint'
            ? v <= BigInt(Number.MAX_SAFE_INTEGER)
              ? Number(v)
              : '0x' + v.toString(16)
            : v,
        ),
      );
    else for (const l of formatTimeline(r, p.opts.has('quiet'), style)) out(l);
    if (r.failedSteps > 0) failed++;
    if (!json && p.positionals.length > 1) out('');
  }
  return failed > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}
