/**
 * JSON Lines trace parser. Every problem is reported as `file:line: field: message`; nothing
 * throws past `parseTrace`, which returns either the ops or the list of errors.
 */
import type { AddrArg, FdArg, GuestStep, TraceOp } from './types.js';
import { isNeedableFact, NEEDABLE_FACTS, type NeedableFact } from '../core/profiles/facts.js';
import { ADDR_FIELDS, bindsKind, FD_FIELDS, isOpName, OP_FIELDS, OP_NAMES } from './fields.js';
import { JsonNumber, JsonSyntaxError, parseJsonLine } from './json.js';
import { closest, didYouMean, quote } from './suggest.js';
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

type Obj = Record<string, unknown>;

/** Largest peek/pread a trace may ask for (both backends copy the data into the result line). */
export const MAX_READ_BYTES = 16n << 20n;
/** Largest guest program (steps per KVM_RUN). */
export const MAX_GUEST_STEPS = 100_000;

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

class FieldReader {
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
function isNumeric(v: string): boolean {
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

const STEP_FIELDS: Readonly<Record<string, readonly string[]>> = {
  store: ['gpa', 'hex'],
  load: ['gpa', 'size'],
  hypercall: ['nr', 'args'],
};

function parseGuest(r: FieldReader): GuestStep[] {
  const v = r.obj['guest'];
  if (!Array.isArray(v)) r.fail('guest', 'expected a list of guest steps');
  const steps: GuestStep[] = [];
  if (v.length > MAX_GUEST_STEPS) r.fail('guest', `at most ${MAX_GUEST_STEPS} steps per KVM_RUN`);
  v.forEach((raw: unknown, i: number) => {
    const at = `guest[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof JsonNumber)
      r.fail(at, 'expected an object such as {"load":{"gpa":4096}}');
    const step = raw as Obj;
    const keys = Object.keys(step);
    if (keys.length !== 1) r.fail(at, 'a step has exactly one key: store, load or hypercall');
    const kind = keys[0]!;
    const known = STEP_FIELDS[kind];
    if (known === undefined)
      r.fail(
        at,
        `unknown step kind ${quote(kind)} (store, load or hypercall)${didYouMean(kind, Object.keys(STEP_FIELDS))}`,
      );
    const body = step[kind];
    if (
      typeof body !== 'object' ||
      body === null ||
      Array.isArray(body) ||
      body instanceof JsonNumber
    )
      r.fail(`${at}.${kind}`, 'expected an object');
    const sr = new FieldReader(r.file, r.line, body as Obj, `${at}.${kind}.`);
    sr.only(known, `a ${kind} step`);
    if (kind === 'store') {
      const gpa = sr.int('gpa', 64);
      const bytes = sr.hexBytes('hex', 4n);
      if (bytes.length !== 1 && bytes.length !== 2 && bytes.length !== 4)
        sr.fail('hex', `a store writes 1, 2 or 4 bytes, not ${bytes.length}`);
      if (gpa < 0n || gpa + BigInt(bytes.length) > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      steps.push({ kind: 'store', gpa, bytes });
    } else if (kind === 'load') {
      const gpa = sr.int('gpa', 64);
      const size = sr.int('size', 64, 4n);
      if (size !== 1n && size !== 2n && size !== 4n)
        sr.fail('size', 'a load reads 1, 2 or 4 bytes');
      if (gpa < 0n || gpa + size > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      steps.push({ kind: 'load', gpa, size: Number(size) as 1 | 2 | 4 });
    } else {
      const nr = sr.int('nr', 64);
      const a: unknown = sr.has('args') ? (body as Obj)['args'] : [];
      if (!Array.isArray(a) || a.length > 3)
        return sr.fail('args', 'expected a list of at most 3 integers');
      const args = [0n, 0n, 0n] as [bigint, bigint, bigint];
      a.forEach((x: unknown, j: number) => {
        const f = (m: string): never => sr.fail(`args[${j}]`, m);
        args[j] = checkWidth(parseInteger(x, f), 64, f);
      });
      steps.push({ kind: 'hypercall', nr, args });
    }
  });
  return steps;
}

/** The fields KVM_SET_USER_MEMORY_REGION and REGION2 share, read in struct order. */
function memoryRegionFields(r: FieldReader): {
  vm: FdArg;
  slot: bigint;
  flags: bigint;
  guest_phys_addr: bigint;
  memory_size: bigint;
  userspace_addr: AddrArg;
} {
  // struct kvm_userspace_memory_region2: __u32 slot, flags; __u64 guest_phys_addr,
  // memory_size, userspace_addr.
  return {
    vm: r.fd('vm'),
    slot: r.int('slot', 32),
    flags: r.int('flags', 32, 0n),
    guest_phys_addr: r.int('guest_phys_addr', 64),
    memory_size: r.int('memory_size', 64),
    userspace_addr: r.addr('userspace_addr'),
  };
}

/** Attach the optional `as` without an object spread (keeps parsed ops monomorphic and fast). */
function withAs<T extends object>(o: T, as: string | undefined): T {
  if (as !== undefined) (o as { as?: string }).as = as;
  return o;
}

/**
 * Parse one non-comment line (already JSON-decoded). Throws TraceInputError. The C width of
 * every integer field follows the uAPI struct or syscall argument it fills (cited per op).
 */
export function parseOpObject(file: string, line: number, obj: unknown): TraceOp {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj) || obj instanceof JsonNumber)
    throw new TraceInputError(file, line, 'op', 'each line must be a JSON object');
  const r = new FieldReader(file, line, obj as Obj);
  if (!r.has('op')) {
    const typo = Object.keys(obj).find((k) => closest(k, ['op']) !== undefined);
    r.fail(
      'op',
      `missing "op"${typo !== undefined ? ` (is ${quote(typo)} a misspelt "op"?)` : ''}`,
    );
  }
  const op = r.str('op');
  if (!isOpName(op)) return r.fail('op', `unknown op ${quote(op)}${didYouMean(op, OP_NAMES)}`);
  r.only(['op', 'as', ...OP_FIELDS[op]], op);
  const as = r.optStr('as');
  if (as !== undefined && (isNumeric(as) || /^-?0x/i.test(as) || as.includes('+') || as === 'kvm'))
    r.fail(
      'as',
      as === 'kvm'
        ? '"kvm" is the predefined handle of the open /dev/kvm; choose another name'
        : `${quote(as)} could never be named: fd and address fields read it as a number or NAME+OFFSET`,
    );
  if (as !== undefined && bindsKind(op) === undefined)
    r.fail(
      'as',
      `${op} creates nothing to name (only KVM_CREATE_VM, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU and mmap take "as")`,
    );
  const kvm: FdArg = { kind: 'handle', name: 'kvm' };
  switch (op) {
    case 'KVM_CREATE_VM':
      // ioctl(kvm, KVM_CREATE_VM, unsigned long type)
      return withAs({ line, op, fd: r.fd('fd', kvm), type: r.int('type', 64, 0n) }, as);
    case 'KVM_CHECK_EXTENSION':
      // ioctl(fd, KVM_CHECK_EXTENSION, long extension)
      return withAs({ line, op, fd: r.fd('fd', kvm), cap: r.int('cap', 64) }, as);
    case 'KVM_CREATE_GUEST_MEMFD':
      // struct kvm_create_guest_memfd: __u64 size, flags
      return withAs(
        { line, op, vm: r.fd('vm'), size: r.int('size', 64), flags: r.int('flags', 64, 0n) },
        as,
      );
    case 'KVM_SET_USER_MEMORY_REGION':
      return withAs({ line, op, ...memoryRegionFields(r) }, as);
    case 'KVM_SET_USER_MEMORY_REGION2':
      // struct kvm_userspace_memory_region2: __u64 guest_memfd_offset; __u32 guest_memfd
      return withAs(
        {
          line,
          op,
          ...memoryRegionFields(r),
          guest_memfd: r.fd('guest_memfd', { kind: 'raw', value: 0n }),
          guest_memfd_offset: r.int('guest_memfd_offset', 64, 0n),
        },
        as,
      );
    case 'KVM_SET_MEMORY_ATTRIBUTES':
      // struct kvm_memory_attributes: __u64 address, size, attributes, flags
      return withAs(
        {
          line,
          op,
          vm: r.fd('vm'),
          address: r.int('address', 64),
          size: r.int('size', 64),
          attributes: r.int('attributes', 64),
          flags: r.int('flags', 64, 0n),
        },
        as,
      );
    case 'KVM_CREATE_VCPU':
      // ioctl(vm, KVM_CREATE_VCPU, unsigned long id)
      return withAs({ line, op, vm: r.fd('vm'), id: r.int('id', 64) }, as);
    case 'KVM_PRE_FAULT_MEMORY':
      // struct kvm_pre_fault_memory: __u64 gpa, size, flags
      return withAs(
        {
          line,
          op,
          vcpu: r.fd('vcpu'),
          gpa: r.int('gpa', 64),
          size: r.int('size', 64),
          flags: r.int('flags', 64, 0n),
        },
        as,
      );
    case 'KVM_RUN':
      return withAs(
        { line, op, vcpu: r.fd('vcpu'), guest: r.has('guest') ? parseGuest(r) : [] },
        as,
      );
    case 'KVM_ENABLE_CAP': {
      // struct kvm_enable_cap: __u32 cap, flags; __u64 args[4]
      const a: unknown = r.has('args') ? (obj as Obj)['args'] : [];
      if (!Array.isArray(a) || a.length > 4)
        return r.fail('args', 'expected a list of at most 4 integers');
      const args = a.map((x: unknown, j: number) => {
        const f = (m: string): never => r.fail(`args[${j}]`, m);
        return checkWidth(parseInteger(x, f), 64, f);
      });
      return withAs(
        { line, op, fd: r.fd('fd'), cap: r.int('cap', 32), flags: r.int('flags', 32, 0n), args },
        as,
      );
    }
    case 'mmap': {
      // mmap(void *addr, size_t length, int prot, int flags, int fd, off_t offset)
      if (!Object.prototype.hasOwnProperty.call(obj, 'fd'))
        r.fail('fd', 'missing fd (a handle, an integer, or null for anonymous)');
      const fdv = (obj as Obj)['fd'];
      return withAs(
        {
          line,
          op,
          fd: fdv === null ? null : r.fd('fd'),
          length: r.int('length', 64),
          prot: r.int('prot', 32),
          flags: r.int('flags', 32),
          offset: r.int('offset', 64, 0n),
        },
        as,
      );
    }
    case 'munmap':
      return withAs({ line, op, addr: r.addr('addr'), length: r.int('length', 64) }, as);
    case 'mprotect':
      return withAs(
        { line, op, addr: r.addr('addr'), length: r.int('length', 64), prot: r.int('prot', 32) },
        as,
      );
    case 'madvise':
      return withAs(
        {
          line,
          op,
          addr: r.addr('addr'),
          length: r.int('length', 64),
          advice: r.int('advice', 32),
        },
        as,
      );
    case 'fallocate':
      // fallocate(int fd, int mode, off_t offset, off_t len)
      return withAs(
        {
          line,
          op,
          fd: r.fd('fd'),
          mode: r.int('mode', 32),
          offset: r.int('offset', 64),
          len: r.int('len', 64),
        },
        as,
      );
    case 'ftruncate':
      return withAs({ line, op, fd: r.fd('fd'), length: r.int('length', 64) }, as);
    case 'pread':
      return withAs(
        { line, op, fd: r.fd('fd'), len: r.byteCount('len'), offset: r.int('offset', 64, 0n) },
        as,
      );
    case 'pwrite':
      return withAs(
        {
          line,
          op,
          fd: r.fd('fd'),
          bytes: r.hexBytes('hex'),
          offset: r.int('offset', 64, 0n),
        },
        as,
      );
    case 'fstat':
      return withAs({ line, op, fd: r.fd('fd') }, as);
    case 'close':
      return withAs({ line, op, fd: r.fd('fd') }, as);
    case 'peek':
      return withAs({ line, op, addr: r.addr('addr'), len: r.byteCount('len') }, as);
    case 'poke':
      return withAs({ line, op, addr: r.addr('addr'), bytes: r.hexBytes('hex') }, as);
  }
}

/** True for lines that produce no op and no result: empty, `#...` or `//...`. */
export function isSkippedLine(text: string): boolean {
  const t = text.trim();
  return t.length === 0 || t.startsWith('#') || t.startsWith('//');
}

/**
 * The handle names a trace has bound so far, with their kind: a reference must name a handle an
 * earlier op creates (with `as`; whether that op then succeeds does not matter), of the right
 * kind. `kvm` is predefined.
 */
export class HandleScope {
  private readonly names = new Map<string, { kind: 'fd' | 'map'; line: number }>([
    ['kvm', { kind: 'fd', line: 0 }],
  ]);

  /** Check the op's references, then record what it binds. Throws TraceInputError. */
  visit(file: string, op: TraceOp): void {
    const o = op as unknown as Record<string, FdArg | AddrArg | null | undefined>;
    for (const k of FD_FIELDS) this.check(file, op, k, o[k], 'fd');
    for (const k of ADDR_FIELDS) this.check(file, op, k, o[k], 'map');
    this.record(op);
  }

  /** What `name` names so far: an fd, a mapping, or nothing. */
  kindOf(name: string): 'fd' | 'map' | undefined {
    return this.names.get(name)?.kind;
  }

  /** Record the handle the op binds (its `as`), whether or not the op then succeeds. */
  record(op: TraceOp): void {
    if (op.as !== undefined)
      this.names.set(op.as, { kind: bindsKind(op.op) ?? 'fd', line: op.line });
  }

  private check(
    file: string,
    op: TraceOp,
    field: string,
    v: FdArg | AddrArg | null | undefined,
    want: 'fd' | 'map',
  ): void {
    if (v === undefined || v === null || v.kind !== 'handle') return;
    const h = this.names.get(v.name);
    if (h === undefined) {
      const known = [...this.names.entries()].filter(([, x]) => x.kind === want).map(([n]) => n);
      throw new TraceInputError(
        file,
        op.line,
        field,
        `no earlier op creates a handle named ${quote(v.name)}${didYouMean(v.name, known)}`,
      );
    }
    if (h.kind !== want)
      throw new TraceInputError(
        file,
        op.line,
        field,
        h.kind === 'fd'
          ? `${quote(v.name)} names an fd (${h.line === 0 ? 'predefined' : `created at line ${h.line}`}), not a mapping`
          : `${quote(v.name)} names a mapping (created at line ${h.line}), not an fd`,
      );
  }
}

export type ParsedTrace = {
  readonly ops: TraceOp[];
  /** The first MAX_ERRORS errors. */
  readonly errors: TraceInputError[];
  /** How many malformed lines there were in all. */
  readonly errorCount: number;
  /** Facts the trace needs to run at all (`# needs:` comment lines). */
  readonly needs: NeedableFact[];
  /** Facts its results depend on (`# depends:` comment lines). */
  readonly depends: NeedableFact[];
  /** The line of the first `# needs:` comment, for messages. */
  readonly needsLine?: number;
};

/**
 * A comment line that starts like a fact declaration: `# needs: a, b` or `# depends: a, b` (any
 * case, any spacing). Near misses (`# need: x`, `# needs x`) match too, so that they are reported
 * instead of silently dropping the guard they were meant to be.
 */
const FACT_LINE = /^\s*#+\s*(needs?|depends?)\b\s*(:?)(.*)$/i;

/**
 * Parses a trace one line at a time (so that a trace can be streamed), keeping the handle scope,
 * the fact declarations and the first MAX_ERRORS errors (all are counted).
 */
export class TraceParser {
  readonly errors: TraceInputError[] = [];
  errorCount = 0;
  readonly needs: NeedableFact[] = [];
  readonly depends: NeedableFact[] = [];
  needsLine: number | undefined;
  private readonly scope = new HandleScope();

  constructor(readonly file: string) {}

  private error(e: TraceInputError): undefined {
    this.errorCount++;
    if (this.errors.length < MAX_ERRORS) this.errors.push(e);
    return undefined;
  }

  /** Parse line number `line`; returns its op, or undefined (comment, blank, or an error). */
  line(raw: string, line: number): TraceOp | undefined {
    const file = this.file;
    let t = raw;
    if (line === 1 && t.charCodeAt(0) === 0xfeff) t = t.slice(1);
    if (t.length > 0 && t.charCodeAt(t.length - 1) === 13) t = t.slice(0, -1);
    if (t.length > MAX_LINE_CHARS)
      return this.error(
        new TraceInputError(file, line, 'line', `longer than ${MAX_LINE_CHARS} characters`),
      );
    const fl = t.length < 4096 ? FACT_LINE.exec(t) : null;
    if (fl !== null) return this.factLine(fl, line);
    if (isSkippedLine(t)) return undefined;
    let obj: unknown;
    try {
      obj = parseJsonLine(t);
    } catch (e) {
      if (e instanceof JsonSyntaxError)
        return this.error(
          new TraceInputError(file, line, 'json', `column ${e.column}: ${e.message}`),
        );
      throw e;
    }
    try {
      const op = parseOpObject(file, line, obj);
      this.scope.visit(file, op);
      return op;
    } catch (e) {
      if (e instanceof TraceInputError) return this.error(e);
      throw e;
    }
  }

  private factLine(fl: RegExpExecArray, line: number): undefined {
    const file = this.file;
    const word = fl[1]!.toLowerCase();
    const key = word.startsWith('need') ? 'needs' : 'depends';
    if (word !== key || fl[2] !== ':')
      return this.error(
        new TraceInputError(file, line, key, `write the declaration as "# ${key}: FACT, ..."`),
      );
    const names = fl[3]!.split(',').map((x) => x.trim());
    if (names.some((x) => x === ''))
      return this.error(
        new TraceInputError(file, line, key, 'a comma-separated list of facts, none empty'),
      );
    if (key === 'needs') this.needsLine ??= line;
    for (const f of names) {
      if (key === 'needs' && f === 'ram')
        this.error(
          new TraceInputError(
            file,
            line,
            key,
            '"ram" is a number: a case can depend on it (# depends:), not need it',
          ),
        );
      else if (!isNeedableFact(f))
        this.error(
          new TraceInputError(
            file,
            line,
            key,
            `unknown fact ${quote(f)}${didYouMean(f, Object.keys(NEEDABLE_FACTS))} (known: ${Object.keys(NEEDABLE_FACTS).join(', ')})`,
          ),
        );
      else if (!this[key].includes(f)) this[key].push(f);
    }
    return undefined;
  }
}

/**
 * Parse a whole trace; collects malformed lines instead of stopping at the first (the first
 * MAX_ERRORS are kept, all are counted). Comment lines are skipped, except that `# needs:` /
 * `# depends:` lines must name known facts.
 */
export function parseTrace(text: string, file = '<trace>'): ParsedTrace {
  const p = new TraceParser(file);
  const ops: TraceOp[] = [];
  let line = 0;
  let at = 0;
  while (at <= text.length) {
    let nl = text.indexOf('\n', at);
    if (nl < 0) nl = text.length;
    line++;
    const op = p.line(text.slice(at, nl), line);
    if (op !== undefined) ops.push(op);
    at = nl + 1;
  }
  return {
    ops,
    errors: p.errors,
    errorCount: p.errorCount,
    needs: p.needs,
    depends: p.depends,
    ...(p.needsLine !== undefined ? { needsLine: p.needsLine } : {}),
  };
}

/** The messages of a parse's errors, with a count of those not kept. */
/** The line that stands for `n` errors not listed. */
export function moreErrorsLine(n: number): string {
  return `... and ${n} more malformed line(s) not shown`;
}

export function errorReport(p: { errors: readonly TraceInputError[]; errorCount: number }): string {
  const lines = p.errors.map((e) => e.message);
  if (p.errorCount > p.errors.length) lines.push(moreErrorsLine(p.errorCount - p.errors.length));
  return lines.join('\n');
}
