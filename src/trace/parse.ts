/**
 * JSON Lines trace parser. Every problem is reported as `file:line: field: message`; nothing
 * throws past `parseTrace`, which returns either the ops or the list of errors.
 */
import type { AddrArg, FdArg, GuestStep, TraceOp } from './types.js';
import { isNeedableFact, NEEDABLE_FACTS, type NeedableFact } from '../core/profiles/facts.js';

export class TraceInputError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly field: string,
    message: string,
  ) {
    super(`${file}:${line}: ${field}: ${message}`);
  }
}

type Obj = Record<string, unknown>;

/** Largest peek/pread a trace may ask for (both backends copy the data into the result line). */
export const MAX_READ_BYTES = 16n << 20n;
/** Largest guest program (steps per KVM_RUN). */
export const MAX_GUEST_STEPS = 100_000;

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

  /** An integer field: JSON integer (safe range) or "0x..." string. */
  int(field: string, dflt?: bigint): bigint {
    if (!this.has(field)) {
      if (dflt !== undefined) return dflt;
      this.fail(field, 'missing required integer field');
    }
    return parseInteger(this.obj[field], (m) => this.fail(field, m));
  }

  /** A byte count for a read that returns data (peek, pread): 0 .. MAX_READ_BYTES. */
  byteCount(field: string): bigint {
    const v = this.int(field);
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
    if (typeof v === 'string' && !v.startsWith('0x') && !/^-?\d+$/.test(v)) {
      if (v.includes('+'))
        this.fail(field, `"${v}": an fd field takes a handle name, not handle+offset`);
      return { kind: 'handle', name: v };
    }
    return { kind: 'raw', value: parseInteger(v, (m) => this.fail(field, m)) };
  }

  addr(field: string): AddrArg {
    if (!this.has(field))
      this.fail(field, 'missing address field (a mapping handle, "name+OFFSET" or an integer)');
    const v = this.obj[field];
    if (typeof v === 'string' && !v.startsWith('0x') && !/^-?\d+$/.test(v)) {
      const plus = v.lastIndexOf('+');
      if (plus < 0) return { kind: 'handle', name: v, offset: 0n };
      const name = v.slice(0, plus);
      const off = v.slice(plus + 1);
      if (name.length === 0) this.fail(field, `"${v}": empty handle name`);
      let offset: bigint;
      if (/^0x[0-9a-fA-F]+$/.test(off)) offset = BigInt(off);
      else if (/^\d+$/.test(off)) offset = BigInt(off);
      else this.fail(field, `"${v}": offset must be decimal or 0x-hex`);
      return { kind: 'handle', name, offset };
    }
    return { kind: 'raw', value: parseInteger(v, (m) => this.fail(field, m)) };
  }

  hexBytes(field: string): Uint8Array {
    const v = this.obj[field];
    if (typeof v !== 'string') this.fail(field, 'expected a hex string of bytes');
    return parseHexBytes(v, (m) => this.fail(field, m));
  }
}

/** Parse a contract integer: a safe JSON integer, or a "0x..." string (any width). */
export function parseInteger(v: unknown, fail: (m: string) => never): bigint {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) return fail(`${v} is not an integer`);
    if (!Number.isSafeInteger(v)) return fail(`${v} is above 2^53; write it as a "0x..." string`);
    return BigInt(v);
  }
  if (typeof v === 'string') {
    if (/^0x[0-9a-fA-F]+$/.test(v)) return BigInt(v);
    if (/^-?\d+$/.test(v)) return BigInt(v);
    return fail(`"${v}" is not an integer (use a JSON integer or a "0x..." string)`);
  }
  if (typeof v === 'bigint') return v;
  return fail(`expected an integer, got ${v === null ? 'null' : typeof v}`);
}

export function parseHexBytes(v: string, fail: (m: string) => never): Uint8Array {
  const s = v.startsWith('0x') ? v.slice(2) : v;
  if (s.length % 2 !== 0) return fail('hex string has an odd number of digits');
  if (!/^[0-9a-fA-F]*$/.test(s)) return fail('not a hex string');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.slice(i * 2, i * 2 + 2), 16);
  return out;
}

function parseGuest(r: FieldReader): GuestStep[] {
  const v = r.obj['guest'];
  if (!Array.isArray(v)) r.fail('guest', 'expected a list of guest steps');
  const steps: GuestStep[] = [];
  if (v.length > MAX_GUEST_STEPS) r.fail('guest', `at most ${MAX_GUEST_STEPS} steps per KVM_RUN`);
  v.forEach((raw: unknown, i: number) => {
    const at = `guest[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw))
      r.fail(at, 'expected an object');
    const step = raw as Obj;
    const keys = Object.keys(step);
    if (keys.length !== 1) r.fail(at, 'a step has exactly one key: store, load or hypercall');
    const kind = keys[0]!;
    const body = step[kind];
    if (typeof body !== 'object' || body === null || Array.isArray(body))
      r.fail(`${at}.${kind}`, 'expected an object');
    const sr = new FieldReader(r.file, r.line, body as Obj, `${at}.${kind}.`);
    if (kind === 'store') {
      const gpa = sr.int('gpa');
      const bytes = sr.hexBytes('hex');
      if (bytes.length !== 1 && bytes.length !== 2 && bytes.length !== 4)
        sr.fail('hex', `a store writes 1, 2 or 4 bytes, not ${bytes.length}`);
      if (gpa < 0n || gpa + BigInt(bytes.length) > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      steps.push({ kind: 'store', gpa, bytes });
    } else if (kind === 'load') {
      const gpa = sr.int('gpa');
      const size = sr.int('size', 4n);
      if (size !== 1n && size !== 2n && size !== 4n)
        sr.fail('size', 'a load reads 1, 2 or 4 bytes');
      if (gpa < 0n || gpa + size > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      steps.push({ kind: 'load', gpa, size: Number(size) as 1 | 2 | 4 });
    } else if (kind === 'hypercall') {
      const nr = sr.int('nr');
      const a: unknown = (body as Obj)['args'];
      if (!Array.isArray(a) || a.length > 3)
        return sr.fail('args', 'expected a list of at most 3 integers');
      const args = [0n, 0n, 0n] as [bigint, bigint, bigint];
      a.forEach((x: unknown, j: number) => {
        args[j] = parseInteger(x, (m) => sr.fail(`args[${j}]`, m));
      });
      steps.push({ kind: 'hypercall', nr, args });
    } else {
      r.fail(at, `unknown step kind "${kind}" (store, load or hypercall)`);
    }
  });
  return steps;
}

/** Attach the optional `as` without an object spread (keeps parsed ops monomorphic and fast). */
/** The fields KVM_SET_USER_MEMORY_REGION and REGION2 share, read in struct order. */
function memoryRegionFields(r: FieldReader): {
  vm: FdArg;
  slot: bigint;
  flags: bigint;
  guest_phys_addr: bigint;
  memory_size: bigint;
  userspace_addr: AddrArg;
} {
  return {
    vm: r.fd('vm'),
    slot: r.int('slot'),
    flags: r.int('flags', 0n),
    guest_phys_addr: r.int('guest_phys_addr'),
    memory_size: r.int('memory_size'),
    userspace_addr: r.addr('userspace_addr'),
  };
}

function withAs<T extends object>(o: T, as: string | undefined): T {
  if (as !== undefined) (o as { as?: string }).as = as;
  return o;
}

/** Parse one non-comment line (already JSON-decoded). Throws TraceInputError. */
export function parseOpObject(file: string, line: number, obj: unknown): TraceOp {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj))
    throw new TraceInputError(file, line, 'op', 'each line must be a JSON object');
  const r = new FieldReader(file, line, obj as Obj);
  if (!r.has('op')) r.fail('op', 'missing "op"');
  const op = r.str('op');
  const as = r.optStr('as');
  const kvm: FdArg = { kind: 'handle', name: 'kvm' };
  switch (op) {
    case 'KVM_CREATE_VM':
      return withAs({ line, op, fd: r.fd('fd', kvm), type: r.int('type', 0n) }, as);
    case 'KVM_CHECK_EXTENSION':
      return withAs({ line, op, fd: r.fd('fd', kvm), cap: r.int('cap') }, as);
    case 'KVM_CREATE_GUEST_MEMFD':
      return withAs(
        { line, op, vm: r.fd('vm'), size: r.int('size'), flags: r.int('flags', 0n) },
        as,
      );
    case 'KVM_SET_USER_MEMORY_REGION':
      return withAs({ line, op, ...memoryRegionFields(r) }, as);
    case 'KVM_SET_USER_MEMORY_REGION2':
      return withAs(
        {
          line,
          op,
          ...memoryRegionFields(r),
          guest_memfd: r.fd('guest_memfd', { kind: 'raw', value: 0n }),
          guest_memfd_offset: r.int('guest_memfd_offset', 0n),
        },
        as,
      );
    case 'KVM_SET_MEMORY_ATTRIBUTES':
      return withAs(
        {
          line,
          op,
          vm: r.fd('vm'),
          address: r.int('address'),
          size: r.int('size'),
          attributes: r.int('attributes'),
          flags: r.int('flags', 0n),
        },
        as,
      );
    case 'KVM_CREATE_VCPU':
      return withAs({ line, op, vm: r.fd('vm'), id: r.int('id') }, as);
    case 'KVM_PRE_FAULT_MEMORY':
      return withAs(
        {
          line,
          op,
          vcpu: r.fd('vcpu'),
          gpa: r.int('gpa'),
          size: r.int('size'),
          flags: r.int('flags', 0n),
        },
        as,
      );
    case 'KVM_RUN':
      return withAs(
        { line, op, vcpu: r.fd('vcpu'), guest: r.has('guest') ? parseGuest(r) : [] },
        as,
      );
    case 'KVM_ENABLE_CAP': {
      const a: unknown = r.has('args') ? (obj as Obj)['args'] : [];
      if (!Array.isArray(a) || a.length > 4)
        return r.fail('args', 'expected a list of at most 4 integers');
      const args = a.map((x: unknown, j: number) =>
        parseInteger(x, (m) => r.fail(`args[${j}]`, m)),
      );
      return withAs(
        { line, op, fd: r.fd('fd'), cap: r.int('cap'), flags: r.int('flags', 0n), args },
        as,
      );
    }
    case 'mmap': {
      if (!Object.prototype.hasOwnProperty.call(obj, 'fd'))
        r.fail('fd', 'missing fd (a handle, an integer, or null for anonymous)');
      const fdv = (obj as Obj)['fd'];
      return withAs(
        {
          line,
          op,
          fd: fdv === null ? null : r.fd('fd'),
          length: r.int('length'),
          prot: r.int('prot'),
          flags: r.int('flags'),
          offset: r.int('offset', 0n),
        },
        as,
      );
    }
    case 'munmap':
      return withAs({ line, op, addr: r.addr('addr'), length: r.int('length') }, as);
    case 'mprotect':
      return withAs(
        { line, op, addr: r.addr('addr'), length: r.int('length'), prot: r.int('prot') },
        as,
      );
    case 'madvise':
      return withAs(
        {
          line,
          op,
          addr: r.addr('addr'),
          length: r.int('length'),
          advice: r.int('advice'),
        },
        as,
      );
    case 'fallocate':
      return withAs(
        {
          line,
          op,
          fd: r.fd('fd'),
          mode: r.int('mode'),
          offset: r.int('offset'),
          len: r.int('len'),
        },
        as,
      );
    case 'ftruncate':
      return withAs({ line, op, fd: r.fd('fd'), length: r.int('length') }, as);
    case 'pread':
      return withAs(
        { line, op, fd: r.fd('fd'), len: r.byteCount('len'), offset: r.int('offset', 0n) },
        as,
      );
    case 'pwrite':
      return withAs(
        {
          line,
          op,
          fd: r.fd('fd'),
          bytes: r.hexBytes('hex'),
          offset: r.int('offset', 0n),
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
    default:
      return r.fail('op', `unknown op "${op}"`);
  }
}

/** True for lines that produce no op and no result: empty, `#...` or `//...`. */
export function isSkippedLine(text: string): boolean {
  const t = text.trim();
  return t.length === 0 || t.startsWith('#') || t.startsWith('//');
}

export type ParsedTrace = {
  readonly ops: TraceOp[];
  readonly errors: TraceInputError[];
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
 * Parse a whole trace; collects every malformed line instead of stopping at the first. Comment
 * lines are skipped, except that `# needs:` / `# depends:` lines must name known facts.
 */
export function parseTrace(text: string, file = '<trace>'): ParsedTrace {
  const ops: TraceOp[] = [];
  const errors: TraceInputError[] = [];
  const facts = { needs: [] as NeedableFact[], depends: [] as NeedableFact[] };
  let needsLine: number | undefined;
  const lines = text.split(/\r?\n/);
  lines.forEach((t, i) => {
    const line = i + 1;
    const fl = FACT_LINE.exec(t);
    if (fl !== null) {
      const word = fl[1]!.toLowerCase();
      const key = word.startsWith('need') ? 'needs' : 'depends';
      if (word !== key || fl[2] !== ':') {
        errors.push(
          new TraceInputError(file, line, key, `write the declaration as "# ${key}: FACT, ..."`),
        );
        return;
      }
      const names = fl[3]!.split(',').map((x) => x.trim());
      if (names.some((x) => x === '')) {
        errors.push(
          new TraceInputError(file, line, key, 'a comma-separated list of facts, none empty'),
        );
        return;
      }
      if (key === 'needs') needsLine ??= line;
      for (const f of names) {
        if (key === 'needs' && f === 'ram')
          errors.push(
            new TraceInputError(
              file,
              line,
              key,
              '"ram" is a number: a case can depend on it (# depends:), not need it',
            ),
          );
        else if (!isNeedableFact(f))
          errors.push(
            new TraceInputError(
              file,
              line,
              key,
              `unknown fact "${f}" (known: ${Object.keys(NEEDABLE_FACTS).join(', ')})`,
            ),
          );
        else if (!facts[key].includes(f)) facts[key].push(f);
      }
      return;
    }
    if (isSkippedLine(t)) return;
    let obj: unknown;
    try {
      obj = JSON.parse(t);
    } catch (e) {
      errors.push(new TraceInputError(file, line, 'json', (e as Error).message));
      return;
    }
    try {
      ops.push(parseOpObject(file, line, obj));
    } catch (e) {
      if (e instanceof TraceInputError) errors.push(e);
      else errors.push(new TraceInputError(file, line, 'op', String(e)));
    }
  });
  return { ops, errors, ...facts, ...(needsLine !== undefined ? { needsLine } : {}) };
}
