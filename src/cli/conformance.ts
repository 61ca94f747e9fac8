/**
 * `gmemlab conformance [--backend model|kvm] [--kernel P] [--record [--force]] [--json] [PATH...]`:
 * run the conformance suite (trace cases with results recorded on real kernels, one recording per
 * kernel profile) and report every disagreement. `--record` records this kernel's results.
 */
import {
  existsSync,
  readdirSync,
  realpathSync,
  renameSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve, sep, basename } from 'node:path';
import {
  checkCase,
  chooseRecording,
  headerProfile,
  loadCase,
  recordingFileFor,
  recordingHeader,
  missingNeeds,
  unmetDepends,
  type CaseResult,
  type ConformanceCase,
  type Recording,
} from '../conformance/suite.js';
import { getProfile, REFERENCE_PROFILE, type KernelProfile } from '../core/profiles/index.js';
import type { KernelFacts } from '../core/profiles/facts.js';
import { formatResult } from '../trace/format.js';
import { runTrace } from '../trace/runner.js';
import { BackendRefusal, type Backend } from '../trace/types.js';
import { optString, parseArgs, UsageError } from './args.js';
import { kvmRefusal, liveKernel, loadProfile, openModel } from './backends.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError, readText } from './io.js';

export const CONFORMANCE_HELP = `usage: gmemlab conformance [--backend model|kvm] [--kernel PROFILE] [--json] [--verbose] [PATH...]
       gmemlab conformance --record [--force] [PATH...]

Run the conformance suite: every conformance/**/NAME.jsonl trace is replayed and its result
lines compared with a recording of what a real kernel returned: NAME.expected.jsonl (recorded on
the reference profile, ${REFERENCE_PROFILE}) or NAME.PROFILE.expected.jsonl (recorded on another
profile's kernel). PATH may be case files or directories (default: conformance/).

  --backend model   (default) each recording is replayed on the model of its own profile
  --backend kvm     this machine's kernel is compared with the recordings of the profile it
                    matches, or of a profile that differs from it only in a fact the case does not
                    '# depends:' on; cases it lacks a '# needs:' fact for, or whose depended-on
                    host facts differ here, are skipped with the reason printed once per cause (a
                    kernel that matches no profile gets no comparison)
  --kernel PROFILE  model only: one profile (a name, NAME+host, or a file from gmemlab probe
                    --save), compared with the recordings that apply to it, as for --backend kvm
  --record          run the cases on /dev/kvm and write this kernel's recordings: all files of
                    the run or, if any case cannot run, none. Runs only on the real kernel of a
                    named profile, and refuses to overwrite a recording whose header names another
                    profile unless --force is given
  --json            one JSON object per case (and per skip)
  --verbose         also list the cases that agree

Exit codes: 0 all compared cases agree, 1 a case disagrees, 2 usage/input error or refusal.`;

/** All case files under the given paths, each once (paths may overlap or repeat). */
export function findCases(paths: readonly string[]): string[] {
  const out: string[] = [];
  const seen = new Set<string>();
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const n of readdirSync(p).sort()) walk(join(p, n));
    } else if (p.endsWith('.jsonl') && !p.endsWith('.expected.jsonl')) {
      // The same file reached twice (repeated or overlapping paths, symbolic links) counts once.
      const real = realpathSync(p);
      if (seen.has(real)) return;
      seen.add(real);
      out.push(p);
    }
  };
  for (const p of paths) {
    if (!existsSync(p)) throw new InputError(`${p}: no such file or directory`);
    walk(p);
  }
  return out;
}

/**
 * The expected files of a case: `NAME.expected.jsonl` and every `NAME.PROFILE.expected.jsonl`
 * (but not those of another case `NAME.X.jsonl` in the same directory).
 */
export function expectedFiles(caseFile: string): string[] {
  const dir = dirname(caseFile);
  const stem = basename(caseFile).replace(/\.jsonl$/, '');
  const suffix = '.expected.jsonl';
  const names = readdirSync(dir);
  return names
    .filter((n) => {
      if (n === `${stem}${suffix}`) return true;
      if (!n.startsWith(`${stem}.`) || !n.endsWith(suffix)) return false;
      // Another case NAME.X.jsonl owns NAME.X.expected.jsonl and NAME.X.P.expected.jsonl.
      const longer = names
        .filter((m) => m.endsWith('.jsonl') && !m.endsWith(suffix) && m !== `${stem}.jsonl`)
        .map((m) => m.replace(/\.jsonl$/, '.'));
      return !longer.some((o) => o.startsWith(`${stem}.`) && n.startsWith(o));
    })
    .sort()
    .map((n) => join(dir, n));
}

/**
 * A case's name: its path below the nearest enclosing `conformance/` directory (`run/basic_exits`),
 * else its path relative to `root` (default: the working directory), without `.jsonl`.
 */
export function caseName(file: string, root?: string): string {
  const parts = resolve(file).split(sep);
  const i = parts.lastIndexOf('conformance');
  const rel =
    root === undefined && i >= 0 && i < parts.length - 1
      ? parts.slice(i + 1).join('/')
      : relative(root ?? '.', file);
  return rel.replace(/\.jsonl$/, '');
}

/** A case or recording, with the limits and messages of every file read whole. */
function read(f: string): string {
  return readText(f);
}

function loaded(c: ConformanceCase | { error: string }): ConformanceCase {
  if ('error' in c) throw new InputError(c.error);
  return c;
}

export function readCase(file: string, root?: string): ConformanceCase {
  return loaded(
    loadCase(
      caseName(file, root),
      file,
      read(file),
      expectedFiles(file).map((f) => ({ file: f, text: read(f) })),
    ),
  );
}

/** One comparison the run will make: a case, the recording, the backend to replay it on. */
type Planned = { c: ConformanceCase; rec: Recording; backend: Backend; file: string };

/**
 * Record this kernel's results for every case. All cases run first; only when every one ran are
 * the files written (each to a temporary file, then all renamed), so a run writes all or none.
 */
async function record(
  files: readonly string[],
  force: boolean,
  out: (s: string) => void,
): Promise<number> {
  const k = await liveKernel();
  const profile = k.match.profile;
  if (profile === undefined)
    throw new InputError(
      `this kernel (${k.facts.release}) matches no named profile (see gmemlab probe): add a profile for it before recording`,
    );
  // First every case is read and checked (what this machine lacks, another profile's file, the
  // real backend's refusals), so nothing runs unless all can; then they run.
  const toRun: Array<{ c: ConformanceCase; target: string }> = [];
  const skipped = new Map<string, string[]>();
  for (const f of files) {
    // The case without its recordings: they are about to be replaced, and a damaged one (say,
    // a header naming another profile) is what --force is for.
    const c = loaded(loadCase(caseName(f), f, read(f), []));
    // A case that cannot run here, or whose results depend on a host fact that differs here from
    // the profile's, would record something else than the profile's kernel.
    const missing = missingNeeds(c, k.facts);
    const unmet = unmetDepends(c, profile, k.facts);
    if (missing.length > 0 || unmet.length > 0) {
      const why =
        missing.length > 0
          ? `needs ${missing[0]!}, which this machine lacks`
          : `depends on ${unmet[0]!.fact}, which differs on this host from profile ${profile.name}`;
      skipped.set(why, [...(skipped.get(why) ?? []), c.name]);
      continue;
    }
    // The target is this profile's file; only its header can say it holds another profile's.
    const target = recordingFileFor(f, profile.name);
    const owner = existsSync(target) ? headerProfile(read(target).split('\n', 1)[0]) : undefined;
    if (owner !== undefined && owner !== profile.name && !force)
      throw new InputError(
        `${target}: recorded on profile ${owner}, this kernel is ${profile.name}; not overwriting it (--force to overwrite)`,
      );
    const refusal = await kvmRefusal(c.ops, f);
    if (refusal !== undefined) throw new InputError(`${refusal}; nothing was recorded`);
    toRun.push({ c, target });
  }
  const pending: Array<{ file: string; text: string; name: string; n: number }> = [];
  for (const { c, target } of toRun) {
    let lines: string[];
    try {
      lines = runTrace(c.ops, k.kvm).map(formatResult);
    } catch (e) {
      if (e instanceof BackendRefusal)
        throw new InputError(`${c.file}: ${e.message}; nothing was recorded`);
      throw e;
    }
    pending.push({
      file: target,
      text: `# ${recordingHeader(k.facts.release, profile.name)}\n${lines.join('\n')}\n`,
      name: c.name,
      n: lines.length,
    });
  }
  const tmp = (f: string): string => `${f}.tmp-${process.pid}`;
  const written: string[] = [];
  for (const p of pending) {
    try {
      writeFileSync(tmp(p.file), p.text);
      written.push(tmp(p.file));
    } catch (e) {
      for (const t of written) unlinkSync(t);
      throw new InputError(
        `${tmp(p.file)}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}; nothing was recorded`,
      );
    }
  }
  for (const p of pending) {
    renameSync(tmp(p.file), p.file);
    out(`recorded ${p.name} on ${profile.name} (${p.n} results)`);
  }
  for (const [why, names] of skipped)
    out(`skipped ${names.length} case(s): ${why}: ${names.join(', ')}`);
  out(`${pending.length} recording(s) written for ${profile.name} (Linux ${k.facts.release})`);
  return EXIT_OK;
}

export async function conformanceMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    backend: 'string',
    kernel: 'string',
    record: 'bool',
    force: 'bool',
    json: 'bool',
    help: 'bool',
    verbose: 'bool',
  });
  if (p.opts.has('help')) {
    out(CONFORMANCE_HELP);
    return EXIT_OK;
  }
  const files = findCases(p.positionals.length > 0 ? p.positionals : ['conformance']);
  if (files.length === 0) throw new UsageError('no conformance cases found');
  const backendKind = optString(p, 'backend');
  if (p.opts.has('record')) {
    if (backendKind !== undefined && backendKind !== 'kvm')
      throw new UsageError('--record records the real kernel: it takes no --backend model');
    if (p.opts.has('kernel'))
      throw new UsageError(
        '--record records the real kernel as the profile it matches: no --kernel',
      );
    return record(files, p.opts.has('force'), out);
  }
  if (p.opts.has('force')) throw new UsageError('--force goes with --record');
  const kind = backendKind ?? 'model';
  if (kind !== 'model' && kind !== 'kvm')
    throw new UsageError(`unknown backend "${kind}" (model or kvm)`);
  if (kind === 'kvm' && p.opts.has('kernel'))
    throw new UsageError('--kernel chooses a model profile; --backend kvm uses this kernel');
  const cases = files.map((f) => readCase(f));

  // What to compare: per case, the recording(s) and the backend.
  const plan: Planned[] = [];
  const skipped = new Map<string, string[]>();
  const skip = (why: string, name: string): void => {
    skipped.set(why, [...(skipped.get(why) ?? []), name]);
  };
  const models = new Map<string, Backend>();
  const modelOf = (prof: KernelProfile): Backend => {
    let b = models.get(prof.name);
    if (b === undefined) models.set(prof.name, (b = openModel(prof)));
    return b;
  };
  const against = (facts: KernelFacts, backend: Backend): void => {
    for (const c of cases) {
      if (c.recordings.length === 0) continue; // reported as unrecorded below
      const ch = chooseRecording(c, facts);
      if ('skip' in ch) skip(ch.skip, c.name);
      else plan.push({ c, rec: ch.recording, backend, file: c.file });
    }
  };
  let label: string;
  if (kind === 'kvm') {
    const k = await liveKernel();
    against(k.facts, k.kvm);
    label = `/dev/kvm (Linux ${k.facts.release}, ${k.match.profile?.name ?? 'no matching profile'})`;
  } else if (p.opts.has('kernel')) {
    const prof = await loadProfile(optString(p, 'kernel')!);
    against(prof.facts, modelOf(prof));
    label = `model:${prof.name}`;
  } else {
    for (const c of cases) {
      for (const rec of c.recordings)
        plan.push({ c, rec, backend: modelOf(getProfile(rec.profile)!), file: c.file });
    }
    label = "the model of each recording's profile";
  }

  // On /dev/kvm every case is checked for refusals before the first runs; a refused case stops
  // the run before any result (exit 2).
  if (kind === 'kvm') {
    const refusals: string[] = [];
    for (const { c, file } of plan) {
      const r = await kvmRefusal(c.ops, file);
      if (r !== undefined) refusals.push(r);
    }
    if (refusals.length > 0) throw new InputError(refusals.join('\n'));
  }
  const json = p.opts.has('json');
  let failed = 0;
  // A case no kernel has answered yet is a gap in the suite, in every mode.
  const unrecorded = cases.filter((c) => c.recordings.length === 0).length;
  for (const c of cases)
    if (c.recordings.length === 0) {
      failed++;
      const error =
        'not recorded on any kernel (run gmemlab conformance --record on a machine with /dev/kvm)';
      if (json) out(JSON.stringify({ name: c.name, ok: false, mismatches: [], error }));
      else out(`FAIL  ${c.name}: ${error}`);
    }
  for (const { c, rec, backend, file } of plan) {
    const r: CaseResult = checkCase(c, backend, rec);
    if (!r.ok) failed++;
    if (json) {
      out(JSON.stringify(r));
      continue;
    }
    if (r.ok) {
      if (p.opts.has('verbose')) out(`ok    ${r.name} (${rec.profile})`);
      continue;
    }
    out(
      `FAIL  ${r.name} (recorded on ${rec.profile})${r.error !== undefined ? `: ${r.error}` : ''}`,
    );
    for (const m of r.mismatches) {
      out(`      op ${m.index} (${file}:${m.line}) ${m.op}`);
      out(`        kernel: ${JSON.stringify(m.expected)}`);
      out(`        ${backend.name}: ${JSON.stringify(m.actual)}`);
    }
  }
  let nSkipped = 0;
  for (const [why, names] of skipped) {
    nSkipped += names.length;
    if (json) out(JSON.stringify({ skipped: names, reason: why }));
    else
      out(
        `skipped ${names.length} case(s): ${why}${p.opts.has('verbose') ? `: ${names.join(', ')}` : ''}`,
      );
  }
  if (!json)
    out(
      `${plan.length} comparison(s) on ${label}: ${plan.length - (failed - unrecorded)} agree, ${failed - unrecorded} disagree${unrecorded > 0 ? `, ${unrecorded} case(s) unrecorded` : ''}${nSkipped > 0 ? `, ${nSkipped} case(s) skipped` : ''}`,
    );
  return failed > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}
