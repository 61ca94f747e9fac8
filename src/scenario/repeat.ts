/**
 * Repetition in scenario lists (docs/scenario-format.md, "Repetition"): an item
 *
 * ```yaml
 * - repeat: 1024            # how many times
 *   stride: { gpa: 4 KiB }  # optional: what each repetition adds to the fields of that name
 *   steps:                  # the items repeated (or `step:` for one item)
 *     - pvalidate: { gpa: 2 GiB }
 *     - store: { gpa: 2 GiB, hex: '11223344', c: 1 }
 * ```
 *
 * in a `KVM_RUN` op's `guest` list, or `{repeat, stride, entry | entries}` in a `psc` step's
 * `entries` list, stands for the items it expands to: repetition i (from 0) is a copy of the
 * items in which every field named in `stride`, at any depth, is increased by i × its stride.
 * Repetitions nest; the innermost are expanded first, so an outer stride also shifts the fields
 * of the items an inner repetition made. The expansion is the explicit list the trace parser
 * then reads: nothing else in the model knows about it.
 *
 * Every error names the source (`guest[2].stride.gpa`, `guest[0].repeat`), and the size of an
 * expansion is checked before anything is copied: a list may not grow past what its op takes
 * (a `KVM_RUN` runs at most 100,000 guest steps, a PSC descriptor holds at most 253 entries),
 * and a scenario's repetitions may make at most MAX_SCENARIO_REPEATED items in all.
 */
import { didYouMean, quote } from '../trace/suggest.js';
import { MAX_GUEST_STEPS } from '../trace/parse.js';
import { VMGEXIT_PSC_MAX_COUNT } from '../core/arch/x86/svm/sev_guest.js';

type Fail = (field: string, message: string) => never;
/** Converts one scenario value (expressions → integers) as the step's other fields are. */
export type Convert = (v: unknown, field: string) => unknown;

/** Most items all the repetitions of one scenario may make. */
export const MAX_SCENARIO_REPEATED = 250_000;

/**
 * Where an item of an expanded list came from: its source path (`guest[2].steps[1]`) and the
 * repetition indexes that made it, outermost first; a `psc` step also has its entries' origins.
 */
export type Origin = {
  readonly path: string;
  readonly reps: readonly number[];
  readonly entries?: readonly Origin[];
};

export type Expanded = { readonly items: unknown[]; readonly origins: Origin[] };

/** What a list holds: its name, the keys of a repetition's body, and its size limit. */
type ListKind = {
  readonly one: string;
  readonly many: string;
  readonly max: number;
  readonly what: string;
};
const GUEST: ListKind = {
  one: 'step',
  many: 'steps',
  max: MAX_GUEST_STEPS,
  what: `guest steps (a KVM_RUN runs at most ${MAX_GUEST_STEPS})`,
};
const ENTRIES: ListKind = {
  one: 'entry',
  many: 'entries',
  max: VMGEXIT_PSC_MAX_COUNT,
  what: `PSC entries (a descriptor holds at most ${VMGEXIT_PSC_MAX_COUNT}, VMGEXIT_PSC_MAX_COUNT)`,
};

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

/** `o[k] = v` as an own property, whatever `k` is (`__proto__` included). */
function setOwn(o: Record<string, unknown>, k: string, v: unknown): void {
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });
}

function isMapValue(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

/** A repetition item: a map with `repeat` (a hex `{repeat, count}` has `count` instead). */
function isRepeat(v: unknown): v is Record<string, unknown> {
  return isMapValue(v) && hasOwn(v, 'repeat') && !hasOwn(v, 'count');
}

/**
 * An integer as a converted value holds it: a number, or beyond 2^53 a "0x…" string (a negative
 * one in decimal). Strings of other shapes (hex bytes, names) are not integers.
 */
function intOf(v: unknown): bigint | undefined {
  if (typeof v === 'number' && Number.isSafeInteger(v)) return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-f]+|-[0-9]+)$/.test(v)) return BigInt(v);
  return undefined;
}

/** A bigint as the trace parser takes it (what scenario.ts's conversion gives). */
function traceInt(v: bigint): number | string {
  if (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER))
    return Number(v);
  return v >= 0n ? '0x' + v.toString(16) : v.toString();
}

const U64_MAX = (1n << 64n) - 1n;
const I64_MIN = -(1n << 63n);

/** Items made by the repetitions of one scenario so far, against MAX_SCENARIO_REPEATED. */
export type RepeatBudget = { made: number };

/** Expands the repetitions of one step's lists. */
export class Repeater {
  constructor(
    private readonly convert: Convert,
    private readonly fail: Fail,
    private readonly budget: RepeatBudget,
  ) {}

  /** A guest program (the list at field `at`, e.g. "guest"), converted and expanded. */
  guest(list: unknown, at: string): Expanded {
    if (!Array.isArray(list)) return { items: [this.convert(list, at)], origins: [] };
    return this.list(list, at, GUEST, []);
  }

  private list(list: readonly unknown[], at: string, kind: ListKind, reps: number[]): Expanded {
    const items: unknown[] = [];
    const origins: Origin[] = [];
    list.forEach((raw, i) => {
      const path = `${at}[${i}]`;
      if (isRepeat(raw)) {
        const r = this.repeat(raw, path, kind, reps);
        if (items.length + r.items.length > kind.max)
          this.fail(
            `${path}.repeat`,
            `the list grows to ${items.length + r.items.length} ${kind.what}`,
          );
        for (const x of r.items) items.push(x);
        for (const o of r.origins) origins.push(o);
      } else {
        const one = kind === GUEST ? this.guestStep(raw, path, reps) : this.entry(raw, path, reps);
        items.push(one.item);
        origins.push(one.origin);
      }
    });
    return { items, origins };
  }

  /** A plain guest step: converted; a `psc` step's `entries` expanded. */
  private guestStep(raw: unknown, path: string, reps: number[]): { item: unknown; origin: Origin } {
    if (isMapValue(raw) && Object.keys(raw).length === 1 && hasOwn(raw, 'psc')) {
      const body = raw['psc'];
      if (isMapValue(body) && Array.isArray(body['entries'])) {
        const e = this.list(body['entries'], `${path}.psc.entries`, ENTRIES, reps);
        const out: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(body))
          setOwn(out, k, k === 'entries' ? e.items : this.convert(v, `${path}.psc.${k}`));
        return { item: { psc: out }, origin: { path, reps, entries: e.origins } };
      }
    }
    return { item: this.convert(raw, path), origin: { path, reps } };
  }

  private entry(raw: unknown, path: string, reps: number[]): { item: unknown; origin: Origin } {
    return { item: this.convert(raw, path), origin: { path, reps } };
  }

  private repeat(
    m: Record<string, unknown>,
    path: string,
    kind: ListKind,
    reps: number[],
  ): Expanded {
    const keys = ['repeat', 'stride', kind.one, kind.many];
    for (const k of Object.keys(m))
      if (!keys.includes(k)) {
        const d = didYouMean(k, keys);
        this.fail(
          `${path}.${k}`,
          `unknown key in a repetition${d !== '' ? d : ` (it has ${keys.join(', ')})`}`,
        );
      }
    const count = this.count(m['repeat'], `${path}.repeat`);
    const hasOne = hasOwn(m, kind.one);
    const hasMany = hasOwn(m, kind.many);
    if (hasOne === hasMany)
      this.fail(
        path,
        hasOne
          ? `a repetition has either ${kind.one} (one item) or ${kind.many} (a list), not both`
          : `a repetition needs ${kind.one} (one item) or ${kind.many} (a list) to repeat`,
      );
    let bodyList: readonly unknown[];
    let bodyAt: string;
    if (hasOne) {
      bodyList = [m[kind.one]];
      bodyAt = `${path}.${kind.one}`;
    } else {
      const v = m[kind.many];
      if (!Array.isArray(v) || v.length === 0)
        this.fail(`${path}.${kind.many}`, `expected a non-empty list of items to repeat`);
      bodyList = v;
      bodyAt = `${path}.${kind.many}`;
    }
    // The body once, with repetition index 0 (its own repetitions expanded, values converted).
    const body = this.list(bodyList, bodyAt, kind, [...reps, 0]);
    if (hasOne) {
      // `step: X` is its own path, not `step[0]`.
      for (let j = 0; j < body.origins.length; j++) {
        const o = body.origins[j]!;
        if (o.path.startsWith(`${bodyAt}[0]`))
          body.origins[j] = { ...o, path: bodyAt + o.path.slice(bodyAt.length + 3) };
      }
    }
    const stride = this.stride(m['stride'], `${path}.stride`, body.items);
    const total = count * body.items.length;
    if (total > kind.max)
      this.fail(
        `${path}.repeat`,
        `${count} × ${body.items.length} item${body.items.length === 1 ? '' : 's'} = ${total} ${kind.what}`,
      );
    if (this.budget.made + total > MAX_SCENARIO_REPEATED)
      this.fail(
        `${path}.repeat`,
        `the scenario's repetitions make more than ${MAX_SCENARIO_REPEATED} items in all`,
      );
    this.budget.made += total;
    // The largest shift each strided field gets must fit (checked once, before copying).
    if (count > 0)
      for (const [f, d] of stride) {
        const last = BigInt(count - 1) * d;
        this.shiftAll(body.items, f, last, (v) =>
          this.fail(
            `${path}.stride.${f}`,
            `repetition ${count - 1} makes ${f} ${v < 0n ? '-0x' + (-v).toString(16) : '0x' + v.toString(16)}, which is not a 64-bit value`,
          ),
        );
      }
    const items: unknown[] = [];
    const origins: Origin[] = [];
    const depth = reps.length;
    for (let i = 0; i < count; i++) {
      for (let j = 0; j < body.items.length; j++) {
        let item = body.items[j];
        for (const [f, d] of stride) item = this.shifted(item, f, BigInt(i) * d);
        items.push(item);
        origins.push(withRep(body.origins[j]!, depth, i));
      }
    }
    return { items, origins };
  }

  private count(v: unknown, field: string): number {
    const c = this.convert(v, field);
    const n = intOf(c);
    if (n === undefined || typeof v === 'boolean')
      return this.fail(field, `expected a repetition count (an integer), got ${show(v)}`);
    if (n < 0n) return this.fail(field, `a repetition count is not negative (got ${n})`);
    if (n > BigInt(MAX_SCENARIO_REPEATED))
      return this.fail(
        field,
        `${n} repetitions: at most ${MAX_SCENARIO_REPEATED} items can be made by repetition`,
      );
    return Number(n);
  }

  /** `stride`: field name → integer, each naming a field the body has. */
  private stride(v: unknown, at: string, body: readonly unknown[]): Array<[string, bigint]> {
    if (v === undefined) return [];
    if (!isMapValue(v))
      return this.fail(at, 'expected a map of field names to integers, such as { gpa: 4 KiB }');
    const names = new Set<string>();
    for (const it of body) collectKeys(it, names);
    const out: Array<[string, bigint]> = [];
    for (const [f, x] of Object.entries(v)) {
      const field = `${at}.${f}`;
      if (!names.has(f)) {
        const d = didYouMean(f, [...names]);
        this.fail(
          field,
          `the repeated items have no field ${quote(f)}${d !== '' ? d : ` (they have ${[...names].sort().join(', ')})`}`,
        );
      }
      const d = intOf(this.convert(x, field));
      if (d === undefined || typeof x === 'boolean')
        this.fail(field, `expected an integer stride, got ${show(x)}`);
      // Every occurrence must be an integer (`hex`, `op: private` cannot be stepped).
      this.shiftAll(body, f, 0n, undefined, (where) =>
        this.fail(field, `${f} is not an integer in ${where}, so it cannot be stepped`),
      );
      out.push([f, d]);
    }
    return out;
  }

  /**
   * Check every field `f` of `items`: an integer (`notInt` gets where it is not), and, when
   * `outside` is given, still a 64-bit value after adding `by` (`outside` gets the one that is not).
   */
  private shiftAll(
    items: readonly unknown[],
    f: string,
    by: bigint,
    outside?: (v: bigint) => never,
    notInt?: (where: string) => never,
  ): void {
    const visit = (v: unknown, where: string): void => {
      if (Array.isArray(v)) v.forEach((x) => visit(x, where));
      else if (isMapValue(v))
        for (const [k, x] of Object.entries(v)) {
          if (k !== f) {
            visit(x, where === '' ? k : where);
            continue;
          }
          const n = f === 'hex' ? undefined : intOf(x);
          if (n === undefined) notInt?.(`${where === '' ? 'an item' : where} (${show(x)})`);
          else if (outside !== undefined && (n + by > U64_MAX || n + by < I64_MIN)) outside(n + by);
        }
    };
    items.forEach((it) => visit(it, ''));
  }

  /** A copy of `v` with `by` added to every integer field named `f` (`v` itself when by = 0). */
  private shifted(v: unknown, f: string, by: bigint): unknown {
    if (by === 0n) return v;
    if (Array.isArray(v)) return v.map((x) => this.shifted(x, f, by));
    if (!isMapValue(v)) return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) {
      const n = k === f && f !== 'hex' ? intOf(x) : undefined;
      setOwn(out, k, n !== undefined ? traceInt(n + by) : this.shifted(x, f, by));
    }
    return out;
  }
}

function withRep(o: Origin, depth: number, i: number): Origin {
  const reps = [...o.reps];
  reps[depth] = i;
  return {
    path: o.path,
    reps,
    ...(o.entries !== undefined ? { entries: o.entries.map((e) => withRep(e, depth, i)) } : {}),
  };
}

function collectKeys(v: unknown, out: Set<string>): void {
  if (Array.isArray(v)) v.forEach((x) => collectKeys(x, out));
  else if (isMapValue(v))
    for (const [k, x] of Object.entries(v)) {
      out.add(k);
      collectKeys(x, out);
    }
}

function show(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (isMapValue(v)) return 'a map';
  return typeof v === 'string' ? quote(v) : String(v);
}

/**
 * A trace parser error's field in an expanded `guest` list (`guest[1500].pvalidate.gpa`,
 * `guest[3].psc.entries[200].gfn`), located at its source item, and a note naming the
 * repetition that made it (empty when none did).
 */
export function sourceField(
  field: string,
  at: string,
  origins: readonly Origin[],
): { field: string; note: string } {
  const m = new RegExp(`^${at}\\[(\\d+)\\](.*)$`).exec(field);
  const o = m === null ? undefined : origins[Number(m[1])];
  if (m === null || o === undefined) return { field, note: '' };
  let rest = m[2]!;
  let path = o.path;
  let reps = o.reps;
  const e = /^\.psc\.entries\[(\d+)\](.*)$/.exec(rest);
  const eo = e === null ? undefined : o.entries?.[Number(e[1])];
  if (e !== null && eo !== undefined) {
    path = eo.path;
    reps = eo.reps;
    rest = e[2]!;
  }
  const shown = reps.filter((r) => r !== undefined);
  const note =
    shown.length === 0
      ? ''
      : ` (in repetition ${shown.join(', ')}${shown.length > 1 ? ', outermost first' : ''})`;
  return { field: path + rest, note };
}
