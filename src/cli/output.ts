/**
 * How the CLI writes: the output format (`--format text|json`, `--json` its alias), colour, and
 * ASCII-only text.
 *
 * - Format: `replay` defaults to text on a terminal and to the contract's JSON result lines
 *   otherwise (pipes, files, scripts); the other commands default to text.
 * - Colour: only when stdout is a terminal, never when NO_COLOR is set to a non-empty value
 *   (no-color.org) or TERM is "dumb"; FORCE_COLOR (non-empty, not "0") forces it, NO_COLOR wins.
 * - ASCII: when the locale is not UTF-8 (the first set of LC_ALL, LC_CTYPE, LANG; unset, C and
 *   POSIX are not UTF-8), text output holds no character above 0x7e.
 */
import { formatOp, formatResult } from '../trace/format.js';
import { StraceRenderer, paint, toAscii, type Style } from '../trace/strace.js';
import type { ResultLine, TraceOp } from '../trace/types.js';
import { optString, UsageError, type ParsedArgs } from './args.js';

export type Format = 'text' | 'json';

/** The option spec entries every command with a text and a JSON form takes. */
export const FORMAT_OPTIONS = { format: 'string', json: 'bool' } as const;

/** The environment the output decisions read (process.env and stdout.isTTY by default). */
export type Terminal = {
  readonly isTTY: boolean;
  readonly env: Readonly<Record<string, string | undefined>>;
};

export function processTerminal(): Terminal {
  return { isTTY: process.stdout.isTTY === true, env: process.env };
}

const set = (v: string | undefined): v is string => v !== undefined && v !== '';

/** Whether the locale's character set is UTF-8 (LC_ALL, then LC_CTYPE, then LANG). */
export function isUtf8Locale(env: Terminal['env']): boolean {
  const v = [env['LC_ALL'], env['LC_CTYPE'], env['LANG']].find(set);
  if (v === undefined || v === 'C' || v === 'POSIX') return false;
  return /utf-?8/i.test(v);
}

/** Colour and ASCII for this terminal. */
export function styleFor(t: Terminal = processTerminal()): Style {
  const force = set(t.env['FORCE_COLOR']) && t.env['FORCE_COLOR'] !== '0';
  const color = !set(t.env['NO_COLOR']) && (force || (t.isTTY && t.env['TERM'] !== 'dumb'));
  return { color, ascii: !isUtf8Locale(t.env) };
}

/** `--format text|json` (or `--json`); `fallback` when neither is given. */
export function chooseFormat(p: ParsedArgs, fallback: Format): Format {
  const f = optString(p, 'format');
  if (f !== undefined && f !== 'text' && f !== 'json')
    throw new UsageError(`--format expects text or json, got "${f}"`);
  if (p.opts.has('json')) {
    if (f === 'text') throw new UsageError('--json and --format text contradict each other');
    return 'json';
  }
  return f ?? fallback;
}

/** The default format of `replay`: text on a terminal, JSON result lines otherwise. */
export function defaultFormat(t: Terminal = processTerminal()): Format {
  return t.isTTY ? 'text' : 'json';
}

/** Fold a text line to ASCII when the style asks for it. */
export function styled(s: string, style: Style): string {
  return style.ascii ? toAscii(s) : s;
}

export type ResultPrinter = (file: string, op: TraceOp, result: ResultLine) => string[];

/**
 * One function for every result line of `replay`: in `json` format the contract's result line
 * (after `# FILE:LINE {op}` with `verbose`), byte for byte what `formatResult` prints; in `text`
 * format a `# FILE` heading when a trace starts, then one strace-style line per op with the file
 * line on the left (`verbose` adds the op's JSON as a comment above it). Call it for the ops of
 * each trace in order; a new file, or a line number that does not grow, starts a new trace.
 */
export function makeResultPrinter(
  format: Format,
  style: Style,
  opts: { readonly verbose?: boolean } = {},
): ResultPrinter {
  const verbose = opts.verbose === true;
  if (format === 'json')
    return (file, op, r) =>
      verbose ? [`# ${file}:${op.line} ${formatOp(op)}`, formatResult(r)] : [formatResult(r)];
  let current: string | undefined;
  let lastLine = 0;
  let renderer = new StraceRenderer(style);
  return (file, op, r) => {
    const lines: string[] = [];
    if (file !== current || op.line <= lastLine) {
      current = file;
      renderer = new StraceRenderer(style);
      lines.push(styled(paint(`# ${file}`, 'dim', style), style));
    }
    lastLine = op.line;
    if (verbose) lines.push(styled(paint(`      # ${formatOp(op)}`, 'dim', style), style));
    lines.push(renderer.line(op, r));
    return lines;
  };
}
