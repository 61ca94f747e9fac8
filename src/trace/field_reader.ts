/**
 * The field reader of the trace parser: every integer, fd, address and hex field of a trace op is
 * read through it, with the C width checks and the `file:line: field: message` errors. The op
 * families (src/ops) read their fields with it; src/trace/parse.ts holds the line-level parser.
 */
import type { AddrArg, FdArg } from './base_types.js';
import { JsonNumber } from './json.js';
import { didYouMean, quote } from './suggest.js';
import { evaluate } from './constants.js';

export class TraceInputError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string,
    /** The message without its `file:line: field: ` prefix. */
    readonly detail: string,
  ) {
    // A field path is printed as is when it is plain, else quoted (input keys can hold anything).
    super(`${file}:${line}: ${PLAIN_FIELD.test(field) ? field : quote(field, 40)}: ${detail}`);
  }
}

const PLAIN_FIELD = /^[A-Za-z0-9_.[\]-]{1,80}$/;

export type Obj = Record<string, unknown>;

/** Largest peek/pread a trace may ask for (both backends copy the data into the result line). */
export const MAX_READ_BYTES = 16n << 20n;

/** Largest poke/pwrite (the data is on the trace line as hex). */
export const MAX_WRITE_BYTES = 16n << 20n;
/** Longest trace line: a 16 MiB poke's hex plus room for the other fields. */
export const MAX_LINE_CHARS = 2 * Number(MAX_WRITE_BYTES) + 65536;
/** Errors kept (and printed) per trace; the rest are only counted. */
export const MAX_ERRORS = 20;

/** The C width of an integer field: values from -2^(w-1) to 2^w - 1 (a C cast reinterprets). */
export type Width = 32 | 64;

const LIMITS: Record<Width, { readonly lo: bigint; readonly hi: bigint }> = {
  32: { lo: -(1n << 31n), hi: (1n << 32n) - 1n },
  64: { lo: -(1n << 63n), hi: (1n << 64n) - 1n },
};

/** Checks a value against its field's width; the message says the range. */
export function checkWidth(v: bigint, width: Width, fail: (m: string) => never): bigint {
  const { lo, hi } = LIMITS[width];
  if (v < lo || v > hi)
    return fail(
      `${shortInt(v)} does not fit the field's ${width}-bit C type (-2^${width - 1} .. 2^${width}-1)`,
    );
  return v;
}

function cut(s: string, max: number): string {
  return s.length > max ? `${s.slice(0, max)}…(${s.length} digits)` : s;
}

function shortInt(v: bigint): string {
  const s = v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16);
  return s.length > 40 ? `${s.slice(0, 20)}…(${s.length - 2} hex digits)` : s;
}

export class FieldReader {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly obj: Obj,
    readonly prefix = '',
  ) {}

  fail(field: string, message: string): never {
    throw new TraceInputError(this.file, this.line, this.prefix + field, message);
  }

  has(field: string): boolean {
    return Object.prototype.hasOwnProperty.call(this.obj, field) && this.obj[field] !== undefined;
  }

  /** Rejects every key of the object that is not in `known` (with a did-you-mean). */
  only(known: readonly string[], what: string): void {
    for (const k of Object.keys(this.obj))
      if (!known.includes(k))
        this.fail(k, `unknown field ${quote(k)} for ${what}${didYouMean(k, known)}`);
  }

  /** An integer field of the given C width: integer, "0x..." or decimal string, or constants. */
  int(field: string, width: Width, dflt?: bigint): bigint {
    if (!this.has(field)) {
      if (dflt !== undefined) return dflt;
      this.fail(field, 'missing required integer field');
    }
    const f = (m: string): never => this.fail(field, m);
    return checkWidth(parseInteger(this.obj[field], f), width, f);
  }

  /** A byte count for a read that returns data (peek, pread): 0 .. MAX_READ_BYTES. */
  byteCount(field: string): bigint {
    const v = this.int(field, 64);
    if (v < 0n || v > MAX_READ_BYTES)
      this.fail(field, `reads return at most ${MAX_READ_BYTES} bytes (16 MiB) per op`);
    return v;
  }

  str(field: string): string {
    const v = this.obj[field];
    if (typeof v !== 'string') this.fail(field, 'expected a string');
    return v;
  }

  optStr(field: string): string | undefined {
    if (!this.has(field)) return undefined;
    const v = this.obj[field];
    if (typeof v !== 'string' || v.length === 0) this.fail(field, 'expected a non-empty string');
    return v;
  }

  fd(field: string, dflt?: FdArg): FdArg {
    if (!this.has(field)) {
      if (dflt !== undefined) return dflt;
      this.fail(field, 'missing fd field (a handle name or an integer)');
    }
    const v = this.obj[field];
    const f = (m: string): never => this.fail(field, m);
    if (typeof v === 'string' && /^-0x/i.test(v)) this.fail(field, NEGATIVE_HEX);
    if (typeof v === 'string' && !isNumeric(v)) {
      if (v.includes('+'))
        this.fail(field, `${quote(v)}: an fd field takes a handle name, not handle+offset`);
      return { kind: 'handle', name: v };
    }
    return { kind: 'raw', value: checkWidth(parseInteger(v, f, false), 32, f) };
  }

  addr(field: string): AddrArg {
    if (!this.has(field))
      this.fail(field, 'missing address field (a mapping handle, "name+OFFSET" or an integer)');
    const v = this.obj[field];
    const f = (m: string): never => this.fail(field, m);
    if (typeof v === 'string' && /^-0x/i.test(v)) this.fail(field, NEGATIVE_HEX);
    if (typeof v === 'string' && !isNumeric(v)) {
      const plus = v.lastIndexOf('+');
      if (plus < 0) return { kind: 'handle', name: v, offset: 0n };
      const name = v.slice(0, plus).trimEnd();
      const off = v.slice(plus + 1).trim();
      if (name.length === 0) this.fail(field, `${quote(v)}: empty handle name`);
      if (!/^(0x[0-9a-fA-F]+|\d+)$/.test(off))
        this.fail(field, `${quote(v)}: offset must be decimal or 0x-hex`);
      const offset = checkWidth(parseDigits(off, f), 64, f);
      return { kind: 'handle', name, offset };
    }
    return { kind: 'raw', value: checkWidth(parseInteger(v, f, false), 64, f) };
  }

  hexBytes(field: string, max = MAX_WRITE_BYTES): Uint8Array {
    const v = this.obj[field];
    if (typeof v !== 'string') this.fail(field, 'expected a hex string of bytes');
    const digits = v.startsWith('0x') ? v.length - 2 : v.length;
    if (BigInt(digits) > 2n * max)
      this.fail(field, `at most ${max} bytes (${Number(max) >> 20} MiB) per op`);
    return parseHexBytes(v, (m) => this.fail(field, m));
  }
}

const NEGATIVE_HEX = 'a hex number has no sign: write a negative value in decimal ("-1")';

/** A string written as a number ("0x10", "-5"), as opposed to a handle name or an expression. */
export function isNumeric(v: string): boolean {
  return /^(0x[0-9a-fA-F]+|-?\d+)$/.test(v);
}

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

/** Integer strings longer than this are out of range for every field (2^64 has 20 digits). */
const MAX_DIGITS = 40;

function parseDigits(s: string, fail: (m: string) => never): bigint {
  const digits = s.replace(/^-?(0x)?/, '').replace(/^0+/, '');
  if (digits.length > MAX_DIGITS)
    return fail(`a number of ${digits.length} digits is out of range for every field`);
  return BigInt(s);
}

/**
 * Parse a contract integer: a JSON integer, a "0x..." or decimal string, or (when `symbols`) a
 * constant expression as scenarios write them ("MMAP|INIT_SHARED", "2 MiB + 0x1000").
 */
export function parseInteger(v: unknown, fail: (m: string) => never, symbols = true): bigint {
  if (typeof v === 'bigint') {
    // A JSON integer, kept exact by the line parser; the contract writes wider ones as strings.
    if (v > SAFE || v < -SAFE)
      return fail(`${cut(v.toString(), 24)} is above 2^53; write it as a "0x..." string`);
    return v;
  }
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return fail(`${v} is not an integer`);
    if (!Number.isSafeInteger(v)) return fail(`${v} is above 2^53; write it as a "0x..." string`);
    return BigInt(v);
  }
  if (v instanceof JsonNumber)
    return fail(`${quote(v.text, 24)} is not an integer (no fraction or exponent)`);
  if (typeof v === 'string') {
    if (isNumeric(v)) return parseDigits(v, fail);
    if (symbols && v.length <= 200) {
      const e = evaluate(v);
      if ('value' in e) return e.value;
      return fail(`${quote(v)} is not an integer: ${e.error}`);
    }
    return fail(
      `${quote(v)} is not an integer (a JSON integer, a "0x..." or decimal string, or constant names as in docs/constants.md)`,
    );
  }
  return fail(
    `expected an integer, got ${v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v}`,
  );
}

const HEX_VALUE = (() => {
  const t = new Int8Array(128).fill(-1);
  for (let i = 0; i < 10; i++) t[48 + i] = i;
  for (let i = 0; i < 6; i++) {
    t[65 + i] = 10 + i;
    t[97 + i] = 10 + i;
  }
  return t;
})();

export function parseHexBytes(v: string, fail: (m: string) => never): Uint8Array {
  const start = v.startsWith('0x') ? 2 : 0;
  const n = v.length - start;
  if (n % 2 !== 0) return fail('hex string has an odd number of digits');
  const out = new Uint8Array(n / 2);
  for (let i = 0, j = start; i < out.length; i++, j += 2) {
    const a = v.charCodeAt(j);
    const b = v.charCodeAt(j + 1);
    const hi = a < 128 ? HEX_VALUE[a]! : -1;
    const lo = b < 128 ? HEX_VALUE[b]! : -1;
    if (hi < 0 || lo < 0) return fail(`not a hex string (character ${hi < 0 ? j + 1 : j + 2})`);
    out[i] = (hi << 4) | lo;
  }
  return out;
}

/** Attach the optional `as` without an object spread (keeps parsed ops monomorphic and fast). */
export function withAs<T extends object>(o: T, as: string | undefined): T {
  if (as !== undefined) (o as { as?: string }).as = as;
  return o;
}
