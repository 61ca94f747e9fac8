/**
 * `gmemlab compare WORKLOAD.yaml... [--designs A,B] [--policies P,Q] [--json] [--svg FILE]`: run
 * design-neutral workloads (src/compare/workload.ts) on every design × VMM policy on the model,
 * with invariants on, and print the comparison tables; `--print-trace` prints one design and
 * policy's lowering instead.
 */
import { writeFileSync } from 'node:fs';
import { optString, parseArgs, UsageError } from './args.js';
import {
  EXIT_CHECK_FAILED,
  EXIT_OK,
  InputError,
  inputErrors,
  MAX_SMALL_FILE_BYTES,
  readText,
} from './io.js';
import { chooseFormat, FORMAT_OPTIONS } from './output.js';
import { formatOp } from '../trace/format.js';
import { MUTANTS } from '../core/base/mutants.js';
import { lowerWorkload, type DesignAdapter } from '../compare/adapter.js';
import {
  ADAPTER_GROUPS,
  ADAPTER_NAMES,
  adapterByName,
  DESIGN_NAMES,
  DESIGNS,
  PLATFORMS,
} from '../compare/designs.js';
import {
  DEFAULT_POLICIES,
  POLICY_NAMES,
  describeKnobs,
  policyByName,
  type Policy,
} from '../compare/policy.js';
import { runCompare, type CompareRun } from '../compare/run.js';
import { formatText, toJson, toSvg } from '../compare/report.js';
import { parseWorkload, type Workload } from '../compare/workload.js';

export const COMPARE_HELP = `usage: gmemlab compare [--designs A,B] [--policies P,Q] [--format text|json] [--svg FILE] [-q] WORKLOAD.yaml...
       gmemlab compare --design D --policy P --print-trace WORKLOAD.yaml

Run a design-neutral workload (YAML, see docs/workload-format.md) on each design × VMM policy on
the model, every invariant checked after every op, and print: peak and final host memory
(private, shared, both), double-allocated memory, pins and GUP references, page-table pages,
exits by reason, zaps and TLB flushes, and the outcome of every attempted access, checked
against the workload's expect.

  --designs A,B      designs to run (default: the designs: ${DESIGN_NAMES.join(', ')});
                     the confidential-computing platforms (${PLATFORMS.map((d) => d.name).join(', ')})
                     by name; group names: designs, platforms, all
  --policies P,Q     VMM policies (default: the workload's policies, else ${DEFAULT_POLICIES.join(', ')});
                     NAME+MOD changes one knob (mods: prefault, no-prefault, keep, discard,
                     pin-all, pin-shared, anon, gmem-mmap)
  --format F         text (default) or json (the same data, memory in bytes)
  --json, -j         the same as --format json
  --svg FILE         write a chart of host memory over the workload's steps, one panel per design
                     (with several workloads: FILE gets the workload's base name appended)
  --quiet, -q        print only the outcomes and the verdict
  --print-trace      run nothing: print the trace (JSONL) --design's adapter makes under --policy
  --list             list the designs, the platforms and the policies
  --mutants M,N      run the model with seeded bugs (gmemlab check --list names them): a design
                     that then lets the host reach private memory shows violation:INVARIANT

Exit codes: 0 every asserted outcome holds, 1 one did not, 2 usage or input error.`;

export function loadWorkload(path: string): Workload {
  const p = parseWorkload(readText(path, MAX_SMALL_FILE_BYTES), path, ADAPTER_NAMES, POLICY_NAMES);
  if (p.workload === undefined) throw inputErrors(p.errors);
  return p.workload;
}

function policies(spec: string): Policy[] {
  return spec.split(',').map((s) => {
    const p = policyByName(s.trim());
    if (typeof p === 'string') throw new UsageError(p);
    return p;
  });
}

/** The adapters `--designs` names: designs, platforms and groups, each once, in the given order. */
function selectDesigns(names: readonly string[]): DesignAdapter[] {
  const out: DesignAdapter[] = [];
  for (const n of names) {
    const group = ADAPTER_GROUPS.get(n);
    const d = adapterByName(n);
    if (group === undefined && d === undefined)
      throw new UsageError(
        `unknown design "${n}" (known: ${ADAPTER_NAMES.join(', ')}; groups: ${[...ADAPTER_GROUPS.keys()].join(', ')})`,
      );
    for (const x of group ?? [d!]) if (!out.includes(x)) out.push(x);
  }
  return out;
}

export async function compareMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    designs: 'string',
    design: 'string',
    policies: 'string',
    policy: 'string',
    ...FORMAT_OPTIONS,
    svg: 'string',
    mutants: 'string',
    quiet: 'bool',
    'print-trace': 'bool',
    list: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(COMPARE_HELP);
    return EXIT_OK;
  }
  if (p.opts.has('list')) {
    out('Designs (the default columns):');
    for (const d of DESIGNS)
      out(`design ${d.name} (profile ${d.profile}): ${d.summary}; from ${d.origin}`);
    out('Platforms (--designs NAME, or --designs platforms / all):');
    for (const d of PLATFORMS)
      out(`platform ${d.name} (profile ${d.profile}): ${d.summary}; from ${d.origin}`);
    out('Policies:');
    for (const n of POLICY_NAMES) {
      const q = policyByName(n) as Policy;
      out(`policy ${n}: ${q.about} [${describeKnobs(q)}]`);
    }
    return EXIT_OK;
  }
  if (p.positionals.length === 0) throw new UsageError('compare needs a workload file');
  const names = (optString(p, 'designs') ?? optString(p, 'design'))
    ?.split(',')
    .map((s) => s.trim());
  const designs = names === undefined ? [...DESIGNS] : selectDesigns(names);
  const polSpec = optString(p, 'policies') ?? optString(p, 'policy');
  const workloads = p.positionals.map(loadWorkload);
  if (p.opts.has('print-trace')) {
    if (
      designs.length !== 1 ||
      polSpec === undefined ||
      polSpec.includes(',') ||
      workloads.length !== 1
    )
      throw new UsageError('--print-trace takes one workload, one --design and one --policy');
    const w = workloads[0]!;
    const pol = policies(polSpec)[0]!;
    const l = designs[0]!.lowerer(w, pol);
    if (typeof l === 'string') throw new InputError(`${designs[0]!.name}/${pol.name}: n/a: ${l}`);
    const low = lowerWorkload(w, l);
    for (const ex of low.execs) {
      out(
        `# step ${ex.step.id} (line ${ex.step.line}) ${ex.step.action.kind}${ex.iteration.length > 0 ? ` iteration ${ex.iteration.join('.')}` : ''}${ex.na !== undefined ? `: n/a: ${ex.na}` : ''}`,
      );
      for (let i = ex.firstOp; i < ex.endOp; i++) out(formatOp(low.ops[i]!));
    }
    return EXIT_OK;
  }
  const mutants = (optString(p, 'mutants') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  for (const m of mutants)
    if (!MUTANTS.some((x) => x.name === m))
      throw new UsageError(`unknown mutant "${m}" (gmemlab check --list names them)`);
  const json = chooseFormat(p, 'text') === 'json';
  const svg = optString(p, 'svg');
  let failed = false;
  for (const w of workloads) {
    const pols = policies(polSpec ?? (w.policies ?? DEFAULT_POLICIES).join(','));
    const runs: CompareRun[] = [];
    for (const d of designs) for (const q of pols) runs.push(runCompare(w, d, q, { mutants }));
    if (runs.some((r) => r.failures.length > 0)) failed = true;
    if (json) out(JSON.stringify(toJson(w, runs)));
    else {
      for (const l of formatText(w, runs, p.opts.has('quiet'))) out(l);
      if (workloads.length > 1) out('');
    }
    if (svg !== undefined) {
      const file =
        workloads.length === 1
          ? svg
          : svg.replace(/(\.svg)?$/, `-${w.file.replace(/^.*\//, '').replace(/\.ya?ml$/, '')}.svg`);
      try {
        writeFileSync(file, toSvg(w, runs));
      } catch (e) {
        throw new InputError(`--svg ${file}: ${(e as Error).message}`);
      }
    }
  }
  return failed ? EXIT_CHECK_FAILED : EXIT_OK;
}
