/**
 * `gmemlab replay [--kernel PROFILE] [--backend model|kvm] TRACE.jsonl...`: run a trace and print
 * one result line per op, exactly as the trace contract says.
 *
 * On the model a trace streams: each line is read, parsed, run and its result printed before the
 * next is read, and nothing is retained but the handle table, so a trace of any length runs in
 * bounded memory and its first result appears at once. On /dev/kvm every trace is read whole and
 * checked for refusals before the first runs.
 */
import { MAX_ERRORS, MAX_LINE_CHARS, TraceParser } from '../trace/parse.js';
import { runTrace, TraceSession } from '../trace/runner.js';
import { BackendRefusal, type Backend, type ResultLine, type TraceOp } from '../trace/types.js';
import { parseArgs, optString, UsageError } from './args.js';
import {
  EXIT_OK,
  EXIT_USAGE,
  InputError,
  inputName,
  loadTrace,
  readLines,
  STDIN,
  stdout,
  traceErrors,
} from './io.js';
import { isKvm, openBackend, precheckOnKvm } from './backends.js';
import { chooseFormat, defaultFormat, makeResultPrinter, styleFor } from './output.js';

export const REPLAY_HELP = `usage: gmemlab replay [--kernel PROFILE] [--backend model|kvm] [--format text|json] [-v] TRACE.jsonl...

Run each trace and print one result line per op: the contract's JSON result lines
(trace-format.md), or one readable strace-style line per op and result. A TRACE of - is
standard input.

  --kernel PROFILE   model profile: a name, NAME+host or a file from probe --save (default:
                     this machine's profile, else linux-6.18; GMEMLAB_KERNEL pins it);
                     ignored by --backend kvm
  --backend B        model (default) or kvm (the real /dev/kvm of this machine)
  --format F         text or json (default: text on a terminal, json when piped)
  --json, -j         the same as --format json
  --verbose, -v      print each op (as a # comment line) before its result

Text is coloured on a terminal (not with NO_COLOR) and ASCII-only when the locale is not UTF-8.

On the model a trace streams: each op's result is printed as soon as it has run, and a malformed
line stops the trace there (the results before it stand, nothing after it runs; the rest of a
file is still read to report its other malformed lines). On /dev/kvm every trace is read and
checked before the first runs.

Exit codes: 0 ok, 2 usage error, malformed trace (file:line: field: message) or unavailable backend.`;

type Printer = (file: string, op: TraceOp, r: ResultLine) => void;
type MakePrinter = (emit: (s: string) => void) => Printer;

export async function replayMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    kernel: 'string',
    backend: 'string',
    format: 'string',
    json: 'bool',
    verbose: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(REPLAY_HELP);
    return EXIT_OK;
  }
  const format = chooseFormat(p, defaultFormat());
  if (p.positionals.length === 0)
    throw new UsageError('replay needs a trace file (or - for standard input)');
  if (p.positionals.filter((f) => f === STDIN).length > 1)
    throw new UsageError('standard input (-) can be read only once');
  const backend = await openBackend(optString(p, 'backend') ?? 'model', optString(p, 'kernel'), {
    events: false,
  });
  const verbose = p.opts.has('verbose');
  const printer: MakePrinter = (emit) => {
    const print = makeResultPrinter(format, styleFor(), { verbose });
    return (file, op, r) => {
      for (const l of print(file, op, r)) emit(l);
    };
  };
  if (isKvm(backend)) return replayOnKvm(p.positionals, backend, printer, out);
  for (const file of p.positionals) streamTrace(file, backend, printer(out));
  return EXIT_OK;
}

/** Read, run and print one trace line by line (model backend). */
function streamTrace(path: string, backend: Backend, print: Printer): void {
  const file = inputName(path);
  const parser = new TraceParser(file);
  const source = readLines(path, MAX_LINE_CHARS, () => stdout.flush());
  let session: TraceSession | undefined;
  let ran = 0;
  let line = 0;
  let stoppedAt: number | undefined;
  try {
    for (const text of source.lines) {
      line++;
      const op = parser.line(text, line);
      if (parser.errorCount > 0) {
        // After a malformed line nothing runs; a file is read on to report its other errors,
        // a pipe only until the error list is full (it may never end).
        if (!source.regular && parser.errors.length >= MAX_ERRORS) {
          stoppedAt = line;
          break;
        }
        continue;
      }
      if (op === undefined) continue;
      session ??= new TraceSession(backend);
      print(file, op, session.step(op));
      ran++;
    }
  } catch (e) {
    if (e instanceof BackendRefusal)
      throw new InputError(`${file}:${line}: ${e.message} (at run time; the trace stopped here)`);
    throw e;
  } finally {
    session?.end();
  }
  if (parser.errorCount > 0) {
    const first = parser.errors[0]!;
    const notes: string[] = [];
    if (stoppedAt !== undefined)
      notes.push(
        `(${file}: stopped reading at line ${stoppedAt}, after the first ${MAX_ERRORS} errors)`,
      );
    if (ran > 0)
      notes.push(
        `(${file}: the results of the ${ran} op(s) before line ${first.line} were printed; nothing after it ran)`,
      );
    throw InputError.of(parser.errors, parser.errorCount, notes);
  }
}

/** Every trace is read whole and checked for refusals before any runs; lines print per trace. */
async function replayOnKvm(
  files: readonly string[],
  backend: Backend,
  printer: MakePrinter,
  out: (s: string) => void,
): Promise<number> {
  const traces = files.map((path) => {
    const t = loadTrace(path, true);
    if (t.errorCount > 0) throw traceErrors(t);
    return { file: inputName(path), ops: t.ops, needs: t.needs, needsLine: t.needsLine };
  });
  for (const t of traces) await precheckOnKvm(t.ops, t.file, t.needs, t.needsLine);
  for (const { file, ops } of traces) {
    // On /dev/kvm a trace's lines are printed once it has run to its end.
    const lines: string[] = [];
    const print = printer((s) => lines.push(s));
    try {
      runTrace(ops, backend, (op, r) => print(file, op, r));
    } catch (e) {
      if (e instanceof BackendRefusal)
        throw new InputError(
          `${file}: ${e.message} (at run time; no result of this trace was printed)`,
        );
      throw e;
    }
    for (const l of lines) out(l);
  }
  return EXIT_OK;
}

export { EXIT_USAGE };
