/**
 * The conformance suite: trace cases (`conformance/<area>/<name>.jsonl`) with the result lines real
 * kernels returned for them, one recording per kernel profile:
 *
 *   <name>.expected.jsonl            recorded on the reference profile (REFERENCE_PROFILE)
 *   <name>.<profile>.expected.jsonl  recorded on another profile's kernel
 *
 * Recordings are made from /dev/kvm by `gmemlab conformance --record`, never by the model. A case
 * declares two kinds of kernel and host facts in comment lines:
 *   # needs: guest_memfd      the case runs only where these facts hold (it is meaningless or
 *                             unsafe without them); elsewhere it is skipped with the reason
 *   # depends: guest_memfd, pku  its results differ with these facts: a recording applies to a
 *                             kernel only where they are the same as where it was recorded
 * Pure: file access is injected.
 */
import { resultToJson } from '../trace/format.js';
import { deepEqual } from '../trace/compare.js';
import { errorReport, parseTrace, TraceInputError } from '../trace/parse.js';
import { runTrace } from '../trace/runner.js';
import type { Backend, ResultLine, TraceOp } from '../trace/types.js';
import {
  NEEDABLE_FACTS,
  factValue,
  type KernelFacts,
  type NeedableFact,
} from '../core/profiles/facts.js';
import {
  getProfile,
  PROFILE_FLIPS,
  REFERENCE_PROFILE,
  type KernelProfile,
} from '../core/profiles/index.js';
import { matchProfile } from '../core/profiles/match.js';

/** One recording of a case: what the kernel of `profile` returned, op by op. */
export type Recording = {
  readonly profile: string;
  /** The expected file it was read from. */
  readonly file: string;
  /** Result objects, one per op. */
  readonly lines: ReadonlyArray<Record<string, unknown>>;
  /** The `# recorded on ...` header. */
  readonly header?: string;
};

export type ConformanceCase = {
  readonly name: string;
  readonly file: string;
  readonly ops: readonly TraceOp[];
  /** Facts that must hold for the case to run (`# needs:` lines). */
  readonly needs: readonly NeedableFact[];
  /** Facts its results depend on (`# depends:` lines). */
  readonly depends: readonly NeedableFact[];
  /** Its recordings, the reference profile's first. */
  readonly recordings: readonly Recording[];
};

export type CaseResult = {
  readonly name: string;
  /** The profile of the recording compared with. */
  readonly profile: string;
  readonly ok: boolean;
  /** One entry per disagreeing op: 1-based op index, trace line, expected and actual. */
  readonly mismatches: ReadonlyArray<{
    index: number;
    line: number;
    op: string;
    expected: unknown;
    actual: unknown;
  }>;
  readonly error?: string;
};

/**
 * Parse the expected file: comment lines start with '#', other lines are result objects. A line
 * that is not a JSON object throws a TraceInputError naming `file:line`.
 */
export function parseExpected(
  text: string,
  file = '<expected>',
): { lines: Array<Record<string, unknown>>; header?: string } {
  const lines: Array<Record<string, unknown>> = [];
  let header: string | undefined;
  text.split(/\r?\n/).forEach((l, i) => {
    const t = l.trim();
    if (t.length === 0) return;
    if (t.startsWith('#')) {
      header ??= t.slice(1).trim();
      return;
    }
    let v: unknown;
    try {
      v = JSON.parse(t);
    } catch (e) {
      throw new TraceInputError(file, i + 1, 'json', (e as Error).message);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      throw new TraceInputError(file, i + 1, 'result', 'each line must be a JSON result object');
    lines.push(v as Record<string, unknown>);
  });
  return header === undefined ? { lines } : { lines, header };
}

/**
 * The profile of a case's expected file: `NAME.expected.jsonl` is the reference profile,
 * `NAME.PROFILE.expected.jsonl` is PROFILE (profile names may contain dots).
 */
export function recordingProfileOf(caseFile: string, expectedFile: string): string {
  const base = caseFile.replace(/\.jsonl$/, '');
  const suffix = '.expected.jsonl';
  if (expectedFile === `${base}${suffix}`) return REFERENCE_PROFILE;
  return expectedFile.slice(base.length + 1, -suffix.length);
}

/** The expected file of a case for a profile. */
export function recordingFileFor(caseFile: string, profile: string): string {
  const base = caseFile.replace(/\.jsonl$/, '');
  return profile === REFERENCE_PROFILE
    ? `${base}.expected.jsonl`
    : `${base}.${profile}.expected.jsonl`;
}

/** The header line every recording starts with. */
export function recordingHeader(release: string, profile: string): string {
  return `recorded on Linux ${release} /dev/kvm (profile ${profile}) by gmemlab conformance --record; do not edit`;
}

/** The profile a header names (`(profile NAME)`), if it names one. */
export function headerProfile(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /\(profile ([^)\s]+)\)/.exec(header);
  return m === null ? undefined : m[1];
}

export function loadCase(
  name: string,
  file: string,
  traceText: string,
  expected: ReadonlyArray<{ file: string; text: string }>,
): ConformanceCase | { error: string } {
  const t = parseTrace(traceText, file);
  if (t.errorCount > 0) return { error: errorReport(t) };
  const recordings: Recording[] = [];
  for (const x of expected) {
    let e: ReturnType<typeof parseExpected>;
    try {
      e = parseExpected(x.text, x.file);
    } catch (err) {
      if (err instanceof TraceInputError) return { error: err.message };
      throw err;
    }
    const profile = recordingProfileOf(file, x.file);
    if (getProfile(profile) === undefined)
      return { error: `${x.file}: recorded on profile "${profile}", which gmemlab does not have` };
    const said = headerProfile(e.header);
    if (said !== undefined && said !== profile)
      return { error: `${x.file}:1: header says profile ${said}, the file name says ${profile}` };
    recordings.push({
      profile,
      file: x.file,
      lines: e.lines,
      ...(e.header !== undefined ? { header: e.header } : {}),
    });
  }
  recordings.sort((a, b) =>
    a.profile === REFERENCE_PROFILE
      ? -1
      : b.profile === REFERENCE_PROFILE
        ? 1
        : a.profile < b.profile
          ? -1
          : 1,
  );
  return { name, file, ops: t.ops, needs: t.needs, depends: t.depends, recordings };
}

/** The facts a case needs that `facts` lack: the case cannot run there. */
export function missingNeeds(c: ConformanceCase, facts: KernelFacts): NeedableFact[] {
  return c.needs.filter((f) => !factValue(facts, f));
}

/** Why a recording does not apply: the facts it depends on whose value differs from its profile's. */
export function unmetDepends(
  c: ConformanceCase,
  recordedOn: KernelProfile,
  facts: KernelFacts,
): Array<{ fact: NeedableFact; here: boolean | number; there: boolean | number }> {
  return c.depends
    .map((f) => ({ fact: f, here: factValue(facts, f), there: factValue(recordedOn.facts, f) }))
    .filter((d) => d.here !== d.there);
}

export type RecordingChoice = { readonly recording: Recording } | { readonly skip: string };

/**
 * The recording to compare a kernel (or model) with these facts against, when the facts the case
 * needs hold: the first recording, of this kernel's own profile first, then the reference
 * profile's, then the others, on whose kernel every fact the case depends on is the same as here.
 * A recording of another kernel is valid here because `# depends:` lists every fact (of those the
 * kernels met differ in) that changes the case's results. The skip reason is one line per root
 * cause, shared by all cases it skips.
 */
export function chooseRecording(c: ConformanceCase, facts: KernelFacts): RecordingChoice {
  const missing = missingNeeds(c, facts);
  if (missing.length > 0)
    return {
      skip: `needs ${missing[0]!} (${NEEDABLE_FACTS[missing[0]!]}), which this machine lacks`,
    };
  if (c.recordings.length === 0) return { skip: 'not recorded on any kernel yet' };
  const live = matchProfile(facts).profile;
  if (live === undefined)
    return {
      skip: 'this kernel matches no named profile, so no recording applies (gmemlab probe)',
    };
  // This kernel's own profile's recording, then those of a profile that differs from it in one
  // fact the case does not depend on.
  const flipped = (p: string): boolean =>
    PROFILE_FLIPS.some(
      (f) => f.between.includes(p) && f.between.includes(live.name) && !c.depends.includes(f.fact),
    );
  const candidates = [
    ...c.recordings.filter((r) => r.profile === live.name),
    ...c.recordings.filter((r) => r.profile !== live.name && flipped(r.profile)),
  ];
  if (candidates.length === 0)
    return {
      skip: `no recording of ${live.name}, nor of a profile that differs from it only in a fact the case does not depend on`,
    };
  let first:
    | { rec: Recording; fact: NeedableFact; here: boolean | number; there: boolean | number }
    | undefined;
  for (const rec of candidates) {
    const unmet = unmetDepends(c, getProfile(rec.profile)!, facts);
    if (unmet.length === 0) return { recording: rec };
    first ??= { rec, ...unmet[0]! };
  }
  const u = first!;
  const say = (v: boolean | number): string =>
    typeof v === 'boolean' ? (v ? 'present' : 'absent') : String(v);
  return {
    skip: `depends on ${u.fact} (${NEEDABLE_FACTS[u.fact]}): ${say(u.here)} here, ${say(u.there)} where ${u.rec.profile} was recorded`,
  };
}

/** Run one case on a backend and compare with the recorded results. */
export function checkCase(c: ConformanceCase, backend: Backend, rec: Recording): CaseResult {
  const expected = rec.lines;
  let results: ResultLine[];
  try {
    results = runTrace(c.ops, backend);
  } catch (e) {
    return {
      name: c.name,
      profile: rec.profile,
      ok: false,
      mismatches: [],
      error: (e as Error).message,
    };
  }
  const mismatches: Array<{
    index: number;
    line: number;
    op: string;
    expected: unknown;
    actual: unknown;
  }> = [];
  if (expected.length !== results.length)
    return {
      name: c.name,
      profile: rec.profile,
      ok: false,
      mismatches,
      error: `recorded ${expected.length} results for ${results.length} ops (re-record)`,
    };
  results.forEach((r, i) => {
    const actual = resultToJson(r);
    if (!deepEqual(actual, expected[i]))
      mismatches.push({
        index: i + 1,
        line: c.ops[i]!.line,
        op: c.ops[i]!.op,
        expected: expected[i],
        actual,
      });
  });
  return { name: c.name, profile: rec.profile, ok: mismatches.length === 0, mismatches };
}
