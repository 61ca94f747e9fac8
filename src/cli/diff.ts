/**
 * `gmemlab diff [--kernel P] [--json] TRACE...`: run each trace on the model and on this
 * machine's /dev/kvm and print every disagreement (op, both results, trace line).
 */
import { deepEqual } from '../trace/compare.js';
import { formatOp, resultToJson } from '../trace/format.js';
import { errorReport } from '../trace/parse.js';
import { runTrace } from '../trace/runner.js';
import { BackendRefusal, type TraceOp } from '../trace/types.js';
import { renderOp, renderResult } from '../trace/strace.js';
import { optString, parseArgs, UsageError } from './args.js';
import { chooseFormat, FORMAT_OPTIONS, styled, styleFor } from './output.js';
import { EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, InputError, loadTrace } from './io.js';
import { kvmRefusal, openKvmAndModel, unmetNeeds } from './backends.js';
import { findCases } from './conformance.js';
import { existsSync, statSync } from 'node:fs';

export const DIFF_HELP = `usage: gmemlab diff [--kernel PROFILE] [--format text|json] TRACE.jsonl|DIR...

Run each trace on the model and on this machine's /dev/kvm and print, for each op where the
results differ, the op, both results and the trace line. A directory stands for every trace
below it (*.expected.jsonl recordings are skipped), so \`gmemlab diff conformance\` checks the
whole conformance suite against the running kernel.

  --kernel PROFILE   model profile: a name, NAME+host or a file from probe --save (default: the
                     profile \`gmemlab probe\` matches to this kernel, or GMEMLAB_KERNEL)
  --format F         text (default): each disagreement as file:line, the call and both results
                     rendered readably (strace style); json: see --json
  --json, -j         one JSON object per disagreement: {file, line, op, model, kernel}, one
                     {file, error} per trace that could not run, then a last line
                     {summary: {traces, disagreements, skipped, kernel}}

Every trace is read and checked before the first runs. A trace that cannot run (malformed, or
refused by the real backend) is reported with its file:line and skipped; a trace whose '# needs:'
facts this kernel lacks is reported as not applicable ({file, inapplicable} in --json); the other
traces run.

Exit codes: 0 no disagreement, 1 a disagreement, 2 usage error, no /dev/kvm, or a trace that
could not run (one that does not apply here is not an error).`;

export async function diffMain(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const p = parseArgs(argv, { kernel: 'string', ...FORMAT_OPTIONS, help: 'bool' });
  if (p.opts.has('help')) {
    out(DIFF_HELP);
    return EXIT_OK;
  }
  if (p.positionals.length === 0) throw new UsageError('diff needs at least one trace file');
  const { kvm, model, profile } = await openKvmAndModel(optString(p, 'kernel'));
  const kernel = profile.name;
  const json = chooseFormat(p, 'text') === 'json';
  const style = styleFor();
  let disagreements = 0;
  let skipped = 0;
  const skip = (file: string, error: string): void => {
    skipped++;
    if (json) out(JSON.stringify({ file, error }));
    else process.stderr.write(`gmemlab diff: skipped ${error}\n`);
  };
  // A directory stands for the traces below it (conformance layout: *.expected.jsonl skipped).
  const files = p.positionals.flatMap((f) =>
    existsSync(f) && statSync(f).isDirectory() ? findCases([f]) : [f],
  );
  // First every trace is read and checked (syntax, the facts it needs, the real backend's
  // refusals), so what cannot run is reported before any result; then the others run.
  type Ready = { file: string; ops: TraceOp[] };
  const ready: Ready[] = [];
  let inapplicable = 0;
  for (const file of files) {
    let t;
    try {
      t = loadTrace(file, true);
    } catch (e) {
      if (e instanceof InputError) {
        skip(file, e.message);
        continue;
      }
      throw e;
    }
    if (t.errors.length > 0) {
      skip(file, errorReport(t));
      continue;
    }
    // A trace that needs what this kernel lacks is not an error: it does not apply here.
    const unmet = await unmetNeeds(t.needs, file, t.needsLine);
    if (unmet !== undefined) {
      inapplicable++;
      if (json) out(JSON.stringify({ file, inapplicable: unmet }));
      else process.stderr.write(`gmemlab diff: ${unmet}\n`);
      continue;
    }
    const refusal = await kvmRefusal(t.ops, file);
    if (refusal !== undefined) {
      skip(file, refusal);
      continue;
    }
    ready.push({ file, ops: t.ops });
  }
  for (const t of ready) {
    const file = t.file;
    let k;
    try {
      k = runTrace(t.ops, kvm);
    } catch (e) {
      if (e instanceof BackendRefusal) {
        skip(file, `${file}: ${e.message}`);
        continue;
      }
      throw e;
    }
    const m = runTrace(t.ops, model);
    t.ops.forEach((op, i) => {
      const a = resultToJson(m[i]!);
      const b = resultToJson(k[i]!);
      if (deepEqual(a, b)) return;
      disagreements++;
      if (json) out(JSON.stringify({ file, line: op.line, op: op.op, model: a, kernel: b }));
      else {
        out(styled(`${file}:${op.line}: ${op.op}`, style));
        out(styled(`  call:   ${renderOp(op, style)}`, style));
        out(styled(`  model:  ${renderResult(op, m[i]!, style)}   (${model.name})`, style));
        out(styled(`  kernel: ${renderResult(op, k[i]!, style)}`, style));
        out(`  trace:  ${formatOp(op)}`);
      }
    });
  }
  if (json)
    out(
      JSON.stringify({
        summary: {
          traces: files.length,
          disagreements,
          skipped,
          ...(inapplicable > 0 ? { inapplicable } : {}),
          kernel,
        },
      }),
    );
  else
    out(
      `${disagreements === 0 ? 'no disagreement' : `${disagreements} disagreement(s)`} (${files.length} trace(s)${skipped > 0 ? `, ${skipped} skipped` : ''}${inapplicable > 0 ? `, ${inapplicable} needing what this kernel lacks` : ''}, model ${kernel} vs /dev/kvm)`,
    );
  if (skipped > 0) return EXIT_USAGE;
  return disagreements > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}
