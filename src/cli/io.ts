/**
 * Input and output for the CLI commands, with bounds: files are read as streams of lines (a line
 * has a maximum length, so `/dev/zero` on a pipe ends in an error instead of filling memory), a
 * file read whole has a maximum size, devices other than a terminal are refused, `-` is standard
 * input; standard output is written synchronously in batches, and a closed pipe or a full disk
 * stops the command cleanly.
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import { isatty } from 'node:tty';
import {
  errorReport,
  MAX_ERRORS,
  MAX_LINE_CHARS,
  moreErrorsLine,
  parseTrace,
  TraceInputError,
  type ParsedTrace,
} from '../trace/parse.js';
import { OPS } from '../ops/registry.js';

/**
 * Bad input files (exit code 2), reported without a stack trace. `located` holds the errors with
 * a file, line and field (for JSON output), `omitted` how many more there were, `notes` what
 * follows them (what ran, where reading stopped).
 */
export class InputError extends Error {
  constructor(
    message: string,
    readonly located: readonly TraceInputError[] = [],
    readonly omitted = 0,
    readonly notes: readonly string[] = [],
  ) {
    super(message);
  }

  /** The first `errors` of `count` located errors, then `notes`, as one error. */
  static of(
    errors: readonly TraceInputError[],
    count: number,
    notes: readonly string[] = [],
  ): InputError {
    const text = [errorReport({ errors, errorCount: count }), ...notes].join('\n');
    return new InputError(text, errors, count - errors.length, notes);
  }
}

/** Exit codes (documented in the README). */
export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_USAGE = 2;
/** Standard output closed by its reader: 128 + SIGPIPE, what a shell reports for `yes | head`. */
export const EXIT_PIPE_CLOSED = 141;

/** The path that names standard input. */
export const STDIN = '-';

/** Largest file read whole (traces for check, diff, conformance and the kvm backend). */
export const MAX_TRACE_FILE_BYTES = 256 << 20;
/** Largest scenario or profile file. */
export const MAX_SMALL_FILE_BYTES = 4 << 20;

const CHUNK = 1 << 16;

/** How a path is named in messages. */
export function inputName(path: string): string {
  return path === STDIN ? '<stdin>' : path;
}

type Input = { readonly fd: number; readonly regular: boolean; readonly close: () => void };

function describeCode(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  return code ?? (e as Error).message;
}

/**
 * Open an input: a regular file, a pipe, a socket or a terminal. Other devices (`/dev/zero`,
 * `/dev/urandom`) never end and are refused; so are directories.
 */
function openInput(path: string): Input {
  const name = inputName(path);
  let fd: number;
  let owned = false;
  if (path === STDIN) fd = 0;
  else {
    try {
      fd = openSync(path, 'r');
      owned = true;
    } catch (e) {
      throw new InputError(`${name}: cannot read: ${describeCode(e)}`);
    }
  }
  const close = (): void => {
    if (owned) closeSync(fd);
  };
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new InputError(`${name}: is a directory, not a file`);
    if ((st.isCharacterDevice() && !isatty(fd)) || st.isBlockDevice())
      throw new InputError(
        `${name}: a device, not a file or a pipe (devices such as /dev/zero never end); refused`,
      );
    return { fd, regular: st.isFile(), close };
  } catch (e) {
    close();
    if (e instanceof InputError) throw e;
    throw new InputError(`${name}: cannot read: ${describeCode(e)}`);
  }
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/** read(2) that waits on a non-blocking descriptor (standard input may be one). */
function readChunk(fd: number, buf: Buffer, name: string): number {
  for (;;) {
    try {
      return readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN') {
        Atomics.wait(sleeper, 0, 0, 2);
        continue;
      }
      if (code === 'EOF') return 0;
      throw new InputError(`${name}: cannot read: ${describeCode(e)}`);
    }
  }
}

/** Lines as they arrive; `regular` tells whether the input is a regular file (it ends). */
export type LineSource = { readonly regular: boolean; readonly lines: Iterable<string> };

/**
 * Read an input line by line (without the `\n`). A line longer than `maxLine` characters is cut
 * to `maxLine + 1` characters (so the parser reports it) and the rest of it is skipped unread
 * into memory.
 */
export function readLines(
  path: string,
  maxLine = MAX_LINE_CHARS,
  beforeWait?: () => void,
): LineSource {
  const input = openInput(path);
  const name = inputName(path);
  function* lines(): Generator<string> {
    const buf = Buffer.allocUnsafe(CHUNK);
    const dec = new StringDecoder('utf8');
    let pending = '';
    let skipping = false;
    try {
      for (;;) {
        // A pipe may make us wait: whatever is due on standard output goes out first, so a
        // program that writes one op and waits for its result gets it.
        if (!input.regular) beforeWait?.();
        const n = readChunk(input.fd, buf, name);
        const text = n === 0 ? dec.end() : dec.write(buf.subarray(0, n));
        let at = 0;
        for (;;) {
          const nl = text.indexOf('\n', at);
          if (nl < 0) break;
          if (skipping) skipping = false;
          else {
            const line = pending + text.slice(at, nl);
            pending = '';
            yield line.length > maxLine ? line.slice(0, maxLine + 1) : line;
          }
          at = nl + 1;
        }
        if (!skipping) {
          pending += text.slice(at);
          if (pending.length > maxLine) {
            yield pending.slice(0, maxLine + 1);
            pending = '';
            skipping = true;
          }
        }
        if (n === 0) break;
      }
      if (!skipping && pending.length > 0) yield pending;
    } finally {
      input.close();
    }
  }
  return { regular: input.regular, lines: lines() };
}

/** Read a whole input as text, refusing more than `maxBytes`. */
export function readText(path: string, maxBytes = MAX_TRACE_FILE_BYTES): string {
  const input = openInput(path);
  const name = inputName(path);
  try {
    const parts: Buffer[] = [];
    let total = 0;
    for (;;) {
      const buf = Buffer.allocUnsafe(CHUNK);
      const n = readChunk(input.fd, buf, name);
      if (n === 0) break;
      total += n;
      if (total > maxBytes)
        throw new InputError(
          `${name}: larger than ${maxBytes >> 20} MiB, the limit for a file this command reads whole`,
        );
      parts.push(buf.subarray(0, n));
    }
    let text = Buffer.concat(parts, total).toString('utf8');
    if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    return text;
  } finally {
    input.close();
  }
}

/** Most data a trace may read (peek, pread) in all when a command keeps its results. */
export const MAX_KEPT_READ_BYTES = 256n << 20n;

/**
 * Read and parse a trace (whole); every malformed line becomes one error message. A command that
 * keeps a trace's results until it ends (`keepsResults`: diff, replay on /dev/kvm) refuses a
 * trace that reads more than MAX_KEPT_READ_BYTES in all, at the op that crosses it.
 */
export function loadTrace(path: string, keepsResults = false): ParsedTrace {
  const t = parseTrace(readText(path), inputName(path));
  if (!keepsResults || t.errorCount > 0) return t;
  let total = 0n;
  for (const op of t.ops) {
    const spec = OPS.get(op.op)!;
    if (spec.readBytes === undefined) continue;
    total += spec.readBytes(op);
    if (total > MAX_KEPT_READ_BYTES) {
      const e = new TraceInputError(
        inputName(path),
        op.line,
        'len',
        `the trace reads more than ${MAX_KEPT_READ_BYTES >> 20n} MiB in all (peek, pread): the limit for a command that keeps a trace's results until it ends (replay on the model streams without it)`,
      );
      return { ...t, errors: [e], errorCount: 1 };
    }
  }
  return t;
}

/** Located errors as one InputError: the first MAX_ERRORS, then a count of the others. */
export function inputErrors(errors: readonly TraceInputError[]): InputError {
  return InputError.of(errors.slice(0, MAX_ERRORS), errors.length);
}

/** A parsed trace's errors as an InputError (the first few, then a count). */
export function traceErrors(t: ParsedTrace): InputError {
  return InputError.of(t.errors, t.errorCount);
}

/**
 * An input error as JSON lines (for `--json` / `--format json`): one `{"error": {...}}` object
 * per located error (file, line, field, message), or one with the message alone.
 */
export function inputErrorJson(e: Error, command: string): string[] {
  const located = e instanceof InputError ? e.located : [];
  if (located.length === 0) return [JSON.stringify({ error: { command, message: e.message } })];
  const lines = located.map((x) =>
    JSON.stringify({
      error: {
        command,
        file: x.file,
        line: x.line,
        field: x.field,
        message: x.detail,
      },
    }),
  );
  const { omitted, notes } = e as InputError;
  const rest = [...(omitted > 0 ? [moreErrorsLine(omitted)] : []), ...notes];
  if (rest.length > 0)
    lines.push(
      JSON.stringify({
        error: { command, ...(omitted > 0 ? { omitted } : {}), message: rest.join('\n') },
      }),
    );
  return lines;
}

// -------------------------------------------------------------------------------------------------
// Standard output

/** Standard output was closed by its reader (EPIPE): the command stops quietly. */
export class OutputClosed extends Error {}

/** Writing standard output failed (ENOSPC, EIO, ...). */
export class OutputFailed extends Error {}

/**
 * Synchronous, batched writes to fd 1. Lines are flushed at once on a terminal; otherwise in
 * batches of up to 64 KiB, and at least every 50 ms, so a long run streams and a closed pipe is
 * noticed within one batch. Writes are synchronous so that a command that produces a million
 * lines holds at most one batch in memory.
 */
export class StdoutWriter {
  private buf: string[] = [];
  private size = 0;
  private lines = 0;
  private last = 0;
  private readonly tty: boolean;

  constructor(private readonly fd = 1) {
    this.tty = isatty(fd);
  }

  write(line: string): void {
    this.buf.push(line, '\n');
    this.size += line.length + 1;
    this.lines++;
    if (this.tty || this.size >= CHUNK || this.lines === 1) this.flush();
    else if ((this.lines & 255) === 0 && Date.now() - this.last >= 50) this.flush();
  }

  flush(): void {
    if (this.size === 0) return;
    const data = Buffer.from(this.buf.join(''), 'utf8');
    this.buf = [];
    this.size = 0;
    this.last = Date.now();
    let off = 0;
    while (off < data.length) {
      try {
        off += writeSync(this.fd, data, off, data.length - off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') {
          Atomics.wait(sleeper, 0, 0, 2);
          continue;
        }
        if (code === 'EPIPE') throw new OutputClosed();
        throw new OutputFailed(`cannot write standard output: ${describeCode(e)}`);
      }
    }
  }
}

/** The process's standard output (the CLI writes every result line through it). */
export const stdout = new StdoutWriter();
