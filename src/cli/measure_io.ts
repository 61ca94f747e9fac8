/**
 * What every `gmemlab measure` command shares, without any measurement code: the input-file
 * reader (regular files, pipes, /dev/null; sizes bounded), the input-error type, the error
 * printing (exit code 2, JSON with --json) and the buffered output writer (a closed pipe is exit
 * code 141). measure.ts (SNP) and measure_tdx.ts (TDX) use it, so that `gmemlab measure tdx`
 * starts without the SNP model stack.
 */
import { closeSync, fstatSync, openSync, readSync, realpathSync, writeSync } from 'node:fs';
import { UsageError } from './args.js';

export const EXIT_USAGE = 2;
const EXIT_PIPE_CLOSED = 141;

/** Largest firmware or SVSM image read (a flash image is a few MiB; its GPA is below 4 GiB). */
export const MAX_IMAGE_BYTES = 256 << 20;

/** A bad input file: `file` and, for a malformed image, the byte offset. */
export class MeasureInputError extends Error {
  constructor(
    message: string,
    readonly file?: string,
    readonly offset?: number,
  ) {
    super(message);
  }
}

// ------------------------------------------------------------------------------------------------
// Files

const fsCode = (e: unknown): string =>
  (e as NodeJS.ErrnoException).code ?? (e as Error).message ?? String(e);

/** Whether a character device is /dev/null (read as empty); other devices never end. */
function isDevNull(path: string): boolean {
  try {
    return realpathSync(path) === '/dev/null';
  } catch {
    return false;
  }
}

/**
 * Read a file (regular, pipe, or /dev/null) in chunks, each passed to `chunk`; at most `max`
 * bytes. Returns the size.
 */
export function readChunks(
  path: string,
  opt: string,
  max: number,
  chunk: (b: Uint8Array, off: number) => void,
  sizeHint?: (n: number) => void,
): number {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new MeasureInputError(`--${opt} ${path}: cannot open: ${fsCode(e)}`, path);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new MeasureInputError(`--${opt} ${path}: is a directory`, path);
    if (st.isCharacterDevice() && isDevNull(path)) {
      sizeHint?.(0);
      return 0;
    }
    if (!st.isFile() && !st.isFIFO() && !st.isSocket()) {
      throw new MeasureInputError(`--${opt} ${path}: not a regular file or a pipe`, path);
    }
    if (st.isFile()) {
      if (st.size > max)
        throw new MeasureInputError(`--${opt} ${path}: ${st.size} bytes, more than ${max}`, path);
      sizeHint?.(st.size);
    }
    const buf = new Uint8Array(Math.min(1 << 20, st.isFile() ? Math.max(st.size, 1) : 1 << 20));
    let total = 0;
    for (;;) {
      let n: number;
      try {
        n = readSync(fd, buf, 0, buf.length, null);
      } catch (e) {
        throw new MeasureInputError(`--${opt} ${path}: cannot read: ${fsCode(e)}`, path);
      }
      if (n === 0) break;
      if (total + n > max)
        throw new MeasureInputError(`--${opt} ${path}: more than ${max} bytes`, path);
      chunk(buf.subarray(0, n), total);
      total += n;
    }
    return total;
  } finally {
    closeSync(fd);
  }
}

/** A whole file's bytes (firmware images). */
export function readWhole(path: string, opt: string): Uint8Array {
  let out = new Uint8Array(0);
  let parts: Uint8Array[] | undefined;
  let size = -1;
  const total = readChunks(
    path,
    opt,
    MAX_IMAGE_BYTES,
    (b, off) => {
      if (size >= 0 && off + b.length <= size) out.set(b, off);
      else (parts ??= [out.subarray(0, off)]).push(b.slice());
    },
    (n) => {
      size = n;
      out = new Uint8Array(n);
    },
  );
  if (parts === undefined) return total === out.length ? out : out.subarray(0, total);
  const all = new Uint8Array(total);
  let o = 0;
  for (const p of parts) {
    all.set(p, o);
    o += p.length;
  }
  return all;
}

// ------------------------------------------------------------------------------------------------
// The command

/**
 * `gmemlab measure` as a command running `main`: errors are printed here (text, or JSON with
 * --json) with exit code 2, in the same words the CLI uses for other commands.
 */
export function runMeasureCommand(
  argv: readonly string[],
  out: (s: string) => void,
  main: (argv: readonly string[], out: (s: string) => void) => number,
): number {
  try {
    return main(argv, out);
  } catch (e) {
    // --json (or -j, alone or bundled) before any `--`, as the option parser reads it.
    const end = argv.indexOf('--');
    const json = (end >= 0 ? argv.slice(0, end) : argv).some(
      (a) => a === '--json' || /^-[A-Za-z]*j[A-Za-z]*$/.test(a),
    );
    if (e instanceof UsageError || e instanceof MeasureInputError) {
      if (json) {
        const err: Record<string, unknown> = { command: 'measure' };
        if (e instanceof MeasureInputError && e.file !== undefined) err['file'] = e.file;
        if (e instanceof MeasureInputError && e.offset !== undefined) err['offset'] = e.offset;
        err['message'] = e.message;
        process.stderr.write(`${JSON.stringify({ error: err })}\n`);
      } else if (e instanceof UsageError)
        process.stderr.write(`gmemlab measure: ${e.message}\n(see gmemlab measure --help)\n`);
      else process.stderr.write(`gmemlab measure: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}

class PipeClosed extends Error {}

/**
 * Run a `gmemlab measure` command from main.ts, without the rest of the CLI: output is gathered
 * and written with one synchronous write (in 64 KiB pieces for long traces).
 */
export function startMeasure(
  argv: readonly string[],
  command: (argv: readonly string[], out: (s: string) => void) => number,
): void {
  let buf: string[] = [];
  let size = 0;
  const flush = (): void => {
    if (buf.length === 0) return;
    const data = Buffer.from(buf.join(''), 'utf8');
    buf = [];
    size = 0;
    let off = 0;
    while (off < data.length) {
      try {
        off += writeSync(1, data, off, data.length - off);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') {
          Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 2);
          continue;
        }
        if (code === 'EPIPE') throw new PipeClosed();
        throw e;
      }
    }
  };
  try {
    process.exitCode = command(argv, (s) => {
      buf.push(s, '\n');
      size += s.length + 1;
      if (size >= 1 << 16) flush();
    });
    flush();
  } catch (e) {
    if (e instanceof PipeClosed) {
      process.exitCode = EXIT_PIPE_CLOSED;
      return;
    }
    const code = (e as NodeJS.ErrnoException).code;
    if (typeof code === 'string') {
      process.stderr.write(`gmemlab measure: cannot write standard output: ${code}\n`);
      process.exitCode = EXIT_USAGE;
      return;
    }
    throw e;
  }
}
