/**
 * JSON Lines trace parser. Every problem is reported as `file:line: field: message`; nothing
 * throws past `parseTrace`, which returns either the ops or the list of errors. The line-level
 * machinery is here; each op's fields are read by its family (src/ops, through the registry)
 * with the field reader (field_reader.ts).
 */
import type { AddrArg, FdArg, TraceOp } from './types.js';
import { isNeedableFact, NEEDABLE_FACTS, type NeedableFact } from '../core/profiles/facts.js';
import {
  ADDR_FIELDS,
  bindsKind,
  secondHandleOf,
  DATA_ADDR_FIELDS,
  dataObject,
  FD_FIELDS,
  OP_NAMES,
  PROC_FIELDS,
} from './fields.js';
import { JsonNumber, JsonSyntaxError, parseJsonLine } from './json.js';
import { closest, didYouMean, quote } from './suggest.js';
import {
  FieldReader,
  isNumeric,
  MAX_ERRORS,
  MAX_LINE_CHARS,
  TraceInputError,
  type Obj,
} from './field_reader.js';
import { OP_LIST, OPS } from '../ops/registry.js';

export {
  checkWidth,
  MAX_ERRORS,
  MAX_LINE_CHARS,
  MAX_READ_BYTES,
  MAX_WRITE_BYTES,
  parseHexBytes,
  parseInteger,
  TraceInputError,
  type Width,
} from './field_reader.js';
export { MAX_GUEST_STEPS } from '../ops/vcpu.js';

/** The ops that take `as`, for messages: "A, B, C and D". */
const BINDING_OPS = ((names: string[]) =>
  `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]!}`)(
  OP_LIST.filter((s) => s.binds !== undefined).map((s) => s.name),
);

/**
 * Parse one non-comment line (already JSON-decoded). Throws TraceInputError. The op's family
 * (src/ops) reads its fields: the C width of every integer field follows the uAPI struct or
 * syscall argument it fills (cited per op).
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
  const spec = OPS.get(op);
  if (spec === undefined) return r.fail('op', `unknown op ${quote(op)}${didYouMean(op, OP_NAMES)}`);
  r.only(['op', 'as', 'proc', ...spec.fields], op);
  const as = r.optStr('as');
  const proc = r.optStr('proc');
  if (as !== undefined && (isNumeric(as) || /^-?0x/i.test(as) || as.includes('+') || as === 'kvm'))
    r.fail(
      'as',
      as === 'kvm'
        ? '"kvm" is the predefined handle of the open /dev/kvm; choose another name'
        : `${quote(as)} could never be named: fd and address fields read it as a number or NAME+OFFSET`,
    );
  if (as !== undefined && spec.binds === undefined)
    r.fail('as', `${op} creates nothing to name (only ${BINDING_OPS} take "as")`);
  const parsed = spec.parse(r, line, as);
  // The issuing process goes first after `op` (the formatter writes it there).
  if (proc === undefined) return parsed;
  const { op: name, ...rest } = parsed;
  return { op: name, proc, ...rest } as TraceOp;
}

/** A handle kind in messages. */
const KIND_TEXT = { fd: 'an fd', map: 'a mapping', proc: 'a process' } as const;

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
  private readonly names = new Map<string, { kind: 'fd' | 'map' | 'proc'; line: number }>([
    ['kvm', { kind: 'fd', line: 0 }],
  ]);

  /** Check the op's references, then record what it binds. Throws TraceInputError. */
  visit(file: string, op: TraceOp): void {
    const o = op as unknown as Record<string, FdArg | AddrArg | null | undefined>;
    for (const k of FD_FIELDS) this.check(file, op, k, o[k], 'fd');
    for (const k of ADDR_FIELDS) this.check(file, op, k, o[k], 'map');
    const data = dataObject(op) as Record<string, AddrArg | undefined> | undefined;
    if (data !== undefined)
      for (const k of DATA_ADDR_FIELDS) this.check(file, op, `data.${k}`, data[k], 'map');
    for (const k of PROC_FIELDS) {
      const v = (op as unknown as Record<string, string | undefined>)[k];
      if (v !== undefined) this.check(file, op, k, { kind: 'handle', name: v }, 'proc');
    }
    this.record(op);
  }

  /** What `name` names so far: an fd, a mapping, a process, or nothing. */
  kindOf(name: string): 'fd' | 'map' | 'proc' | undefined {
    return this.names.get(name)?.kind;
  }

  /** Record the handle the op binds (its `as`), whether or not the op then succeeds. */
  record(op: TraceOp): void {
    if (op.as !== undefined)
      this.names.set(op.as, { kind: bindsKind(op.op) ?? 'fd', line: op.line });
    const second = secondHandleOf(op);
    if (second !== undefined) this.names.set(second, { kind: 'fd', line: op.line });
  }

  private check(
    file: string,
    op: TraceOp,
    field: string,
    v: FdArg | AddrArg | null | undefined,
    want: 'fd' | 'map' | 'proc',
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
        `${quote(v.name)} names ${KIND_TEXT[h.kind]} (${h.line === 0 ? 'predefined' : `created at line ${h.line}`}), not ${KIND_TEXT[want]}`,
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
