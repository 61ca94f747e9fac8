/**
 * The conformance suite: trace cases (`conformance/<area>/<name>.jsonl`) with the result lines the
 * real kernel returned for them (`<name>.expected.jsonl`, recorded from /dev/kvm by
 * `gmemlab conformance --record`, never by the model). Pure: file access is injected.
 */
import { resultToJson } from '../trace/format.js';
import { deepEqual } from '../trace/compare.js';
import { parseTrace, TraceInputError } from '../trace/parse.js';
import { runTrace } from '../trace/runner.js';
import type { Backend, ResultLine, TraceOp } from '../trace/types.js';

export type ConformanceCase = {
  readonly name: string;
  readonly file: string;
  readonly ops: readonly TraceOp[];
  /** Recorded result objects, one per op (undefined when not recorded yet). */
  readonly expected?: ReadonlyArray<Record<string, unknown>>;
  /** The `# recorded on ...` header of the expected file. */
  readonly recordedOn?: string;
};

export type CaseResult = {
  readonly name: string;
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

export function loadCase(
  name: string,
  file: string,
  traceText: string,
  expectedText: string | undefined,
): ConformanceCase | { error: string } {
  const t = parseTrace(traceText, file);
  if (t.errors.length > 0) return { error: t.errors.map((e) => e.message).join('\n') };
  if (expectedText === undefined) return { name, file, ops: t.ops };
  let e: ReturnType<typeof parseExpected>;
  try {
    e = parseExpected(expectedText, file.replace(/\.jsonl$/, '.expected.jsonl'));
  } catch (err) {
    if (err instanceof TraceInputError) return { error: err.message };
    throw err;
  }
  return {
    name,
    file,
    ops: t.ops,
    expected: e.lines,
    ...(e.header !== undefined ? { recordedOn: e.header } : {}),
  };
}

/** Run one case on a backend and compare with the recorded results. */
export function checkCase(c: ConformanceCase, backend: Backend): CaseResult {
  if (c.expected === undefined)
    return {
      name: c.name,
      ok: false,
      mismatches: [],
      error: 'no recorded results (run gmemlab conformance --record on a machine with /dev/kvm)',
    };
  let results: ResultLine[];
  try {
    results = runTrace(c.ops, backend);
  } catch (e) {
    return { name: c.name, ok: false, mismatches: [], error: (e as Error).message };
  }
  const mismatches: Array<{
    index: number;
    line: number;
    op: string;
    expected: unknown;
    actual: unknown;
  }> = [];
  if (c.expected.length !== results.length)
    return {
      name: c.name,
      ok: false,
      mismatches,
      error: `recorded ${c.expected.length} results for ${results.length} ops (re-record)`,
    };
  results.forEach((r, i) => {
    const actual = resultToJson(r);
    if (!deepEqual(actual, c.expected![i]))
      mismatches.push({
        index: i + 1,
        line: c.ops[i]!.line,
        op: c.ops[i]!.op,
        expected: c.expected![i],
        actual,
      });
  });
  return { name: c.name, ok: mismatches.length === 0, mismatches };
}
