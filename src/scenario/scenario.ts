/**
 * Scenario files (YAML): human-friendly walkthroughs that compile to trace ops plus assertions.
 *
 * ```yaml
 * name: Guest converts a page
 * kernel: linux-6.18            # default profile (CLI --kernel overrides)
 * description: |
 *   Free text.
 * steps:
 *   - section: Setup            # a heading in the timeline
 *   - say: Create a VM with private memory.
 *     do: KVM_CREATE_VM         # any trace op; fields as in trace-format.md
 *     type: SW_PROTECTED        # numbers, uAPI constant names (A | B), sizes ("2 MiB")
 *     as: vm
 *     expect: ok                # ok | ERRNO | SIGBUS/SIGSEGV | a map (below)
 *   - do: peek
 *     addr: shared+0x1000
 *     len: 4
 *     expect: { value: "00000000" }
 * ```
 *
 * `expect` maps may hold: ok, errno, fault, value (hex string, integer, or {repeat, count}),
 * exits (a list; each entry matches the actual exit at the same position on the keys it names),
 * remaining {gpa, size}, stat {size, blocks}, and effects {zapped, tlb_flushes, gmem_allocated,
 * gmem_zeroed, gmem_freed, mapped} counted from the model's events (model backend only).
 *
 * Every problem is reported as `file:line: field: message`.
 */
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { parseOpObject, TraceInputError } from '../trace/parse.js';
import type { TraceOp } from '../trace/types.js';
import { evalExpression } from './constants.js';

export type EffectKey =
  'zapped' | 'tlb_flushes' | 'gmem_allocated' | 'gmem_zeroed' | 'gmem_freed' | 'mapped';
export const EFFECT_KEYS: readonly EffectKey[] = [
  'zapped',
  'tlb_flushes',
  'gmem_allocated',
  'gmem_zeroed',
  'gmem_freed',
  'mapped',
];

export type Expectation = {
  readonly ok?: boolean;
  readonly errno?: string;
  readonly fault?: 'SIGBUS' | 'SIGSEGV';
  readonly value?: string | bigint;
  readonly exits?: ReadonlyArray<Readonly<Record<string, unknown>>>;
  readonly remaining?: { readonly gpa?: bigint; readonly size?: bigint };
  readonly stat?: { readonly size?: bigint; readonly blocks?: bigint };
  readonly effects?: Readonly<Partial<Record<EffectKey, number>>>;
};

export type ScenarioStep =
  | { readonly kind: 'section'; readonly line: number; readonly title: string }
  | {
      readonly kind: 'op';
      readonly line: number;
      readonly say?: string;
      readonly op: TraceOp;
      readonly expect?: Expectation;
    };

export type Scenario = {
  readonly file: string;
  readonly name: string;
  readonly description?: string;
  readonly kernel?: string;
  /** The line of the `kernel:` key. */
  readonly kernelLine?: number;
  readonly steps: readonly ScenarioStep[];
};

export type ParsedScenario = { readonly scenario?: Scenario; readonly errors: TraceInputError[] };

const STEP_KEYS = new Set(['say', 'do', 'as', 'expect', 'section']);

type Plain = unknown;

/** Convert a YAML-derived value for the trace parser: expressions → integers, rest unchanged. */
function convertValue(v: Plain, field: string, fail: (f: string, m: string) => never): Plain {
  if (typeof v === 'bigint')
    return v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER)
      ? Number(v)
      : v >= 0n
        ? '0x' + v.toString(16)
        : v.toString();
  if (typeof v === 'string') {
    const n = evalExpression(v);
    if (n === undefined) return v;
    return convertValue(n, field, fail);
  }
  if (Array.isArray(v)) return v.map((x, i) => convertValue(x, `${field}[${i}]`, fail));
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    // {repeat: "aa", count: 4096} → a hex string
    if ('repeat' in o && 'count' in o && Object.keys(o).length === 2)
      return repeatHex(o, field, fail);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(o))
      out[k] = k === 'hex' && typeof x === 'string' ? x : convertValue(x, `${field}.${k}`, fail);
    return out;
  }
  return v;
}

function repeatHex(
  o: Record<string, unknown>,
  field: string,
  fail: (f: string, m: string) => never,
): string {
  const pat = o['repeat'];
  const count = o['count'];
  if (typeof pat !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(pat))
    return fail(field, 'repeat: expected a hex byte pattern such as "aa"');
  const c =
    typeof count === 'bigint'
      ? Number(count)
      : typeof count === 'number'
        ? count
        : typeof count === 'string'
          ? Number(evalExpression(count))
          : NaN;
  if (!Number.isSafeInteger(c) || c < 0 || c > 16 * 1024 * 1024)
    return fail(field, 'count: expected a byte count up to 16 MiB');
  const reps = Math.ceil(c / (pat.length / 2));
  return pat.repeat(reps).slice(0, c * 2);
}

function toBig(v: Plain, field: string, fail: (f: string, m: string) => never): bigint {
  const c = convertValue(v, field, fail);
  if (typeof c === 'number' && Number.isInteger(c)) return BigInt(c);
  if (typeof c === 'string' && /^(0x[0-9a-fA-F]+|-?\d+)$/.test(c)) return BigInt(c);
  return fail(field, 'expected an integer');
}

function parseExpect(v: Plain, fail: (f: string, m: string) => never): Expectation {
  if (v === 'ok' || v === true) return { ok: true };
  if (typeof v === 'string') {
    if (v === 'SIGBUS' || v === 'SIGSEGV') return { ok: false, fault: v };
    if (/^E[A-Z0-9]+$/.test(v)) return { ok: false, errno: v };
    return fail('expect', `"${v}": expected ok, an errno name (EINVAL), SIGBUS/SIGSEGV, or a map`);
  }
  if (v === null || typeof v !== 'object' || Array.isArray(v))
    return fail('expect', 'expected ok, an errno name, a signal or a map');
  const o = v as Record<string, unknown>;
  const e: { -readonly [K in keyof Expectation]: Expectation[K] } = {};
  for (const [k, x] of Object.entries(o)) {
    switch (k) {
      case 'ok':
        if (typeof x !== 'boolean') fail('expect.ok', 'expected true or false');
        e.ok = x as boolean;
        break;
      case 'errno':
        if (typeof x !== 'string' || !/^E[A-Z0-9]+$/.test(x))
          fail('expect.errno', 'expected an errno name such as EINVAL');
        e.errno = x as string;
        e.ok = false;
        break;
      case 'fault':
        if (x !== 'SIGBUS' && x !== 'SIGSEGV') fail('expect.fault', 'expected SIGBUS or SIGSEGV');
        e.fault = x as 'SIGBUS' | 'SIGSEGV';
        e.ok = false;
        break;
      case 'value': {
        // Hex byte strings (peek/pread results) stay strings; numbers and expressions are integers.
        if (typeof x === 'string' && /^([0-9a-fA-F]{2})*$/.test(x)) e.value = x.toLowerCase();
        else if (x !== null && typeof x === 'object' && 'repeat' in x)
          e.value = repeatHex(x as Record<string, unknown>, 'expect.value', fail).toLowerCase();
        else e.value = toBig(x, 'expect.value', fail);
        break;
      }
      case 'exits': {
        if (!Array.isArray(x)) fail('expect.exits', 'expected a list of exits');
        e.exits = (x as unknown[]).map((ex, i) => {
          if (ex === null || typeof ex !== 'object' || Array.isArray(ex))
            return fail(`expect.exits[${i}]`, 'expected a map such as {reason: HLT}');
          const out: Record<string, unknown> = {};
          for (const [ek, ev] of Object.entries(ex as Record<string, unknown>)) {
            if (ek === 'reason' || ek === 'hex')
              out[ek] =
                typeof ev === 'string'
                  ? ek === 'hex'
                    ? ev.toLowerCase()
                    : ev
                  : convertValue(ev, `expect.exits[${i}].${ek}`, fail);
            else if (ek === 'is_write') out[ek] = ev;
            else if (ek === 'args' && Array.isArray(ev))
              out[ek] = ev.map((a, j) => toBig(a, `expect.exits[${i}].args[${j}]`, fail));
            else out[ek] = toBig(ev, `expect.exits[${i}].${ek}`, fail);
          }
          return out;
        });
        break;
      }
      case 'remaining':
      case 'stat': {
        if (x === null || typeof x !== 'object') fail(`expect.${k}`, 'expected a map');
        const m: Record<string, bigint> = {};
        for (const [sk, sv] of Object.entries(x as Record<string, unknown>))
          m[sk] = toBig(sv, `expect.${k}.${sk}`, fail);
        if (k === 'remaining') e.remaining = m;
        else e.stat = m;
        break;
      }
      case 'effects': {
        if (x === null || typeof x !== 'object') fail('expect.effects', 'expected a map');
        const m: Partial<Record<EffectKey, number>> = {};
        for (const [sk, sv] of Object.entries(x as Record<string, unknown>)) {
          if (!(EFFECT_KEYS as readonly string[]).includes(sk))
            fail(`expect.effects.${sk}`, `unknown effect (known: ${EFFECT_KEYS.join(', ')})`);
          m[sk as EffectKey] = Number(toBig(sv, `expect.effects.${sk}`, fail));
        }
        e.effects = m;
        break;
      }
      default:
        fail(
          `expect.${k}`,
          'unknown expectation (ok, errno, fault, value, exits, remaining, stat, effects)',
        );
    }
  }
  return e;
}

/** Parse a scenario file. Never throws. */
export function parseScenario(text: string, file = '<scenario>'): ParsedScenario {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, intAsBigInt: true, uniqueKeys: true });
  const errors: TraceInputError[] = [];
  const lineOf = (n: YamlNode | null | undefined): number =>
    n?.range ? lc.linePos(n.range[0]).line : 1;
  for (const e of doc.errors)
    errors.push(
      new TraceInputError(file, e.linePos?.[0]?.line ?? 1, 'yaml', e.message.split('\n')[0]!),
    );
  if (errors.length > 0) return { errors };
  const root = doc.contents;
  if (!isMap(root))
    return {
      errors: [new TraceInputError(file, 1, 'scenario', 'expected a map with name and steps')],
    };
  const top = doc.toJS({ mapAsMap: false }) as Record<string, unknown>;
  for (const k of Object.keys(top)) {
    if (!['name', 'description', 'kernel', 'steps'].includes(k)) {
      const pair = root.items.find((p) => isScalar(p.key) && p.key.value === k);
      errors.push(
        new TraceInputError(
          file,
          lineOf(pair?.key as YamlNode),
          k,
          'unknown top-level key (name, description, kernel, steps)',
        ),
      );
    }
  }
  const name = typeof top['name'] === 'string' ? top['name'] : '';
  if (name === '') errors.push(new TraceInputError(file, 1, 'name', 'missing scenario name'));
  const kernel = top['kernel'];
  const kernelLine = lineOf(root.get('kernel', true) as YamlNode | undefined);
  if (kernel !== undefined && typeof kernel !== 'string')
    errors.push(new TraceInputError(file, kernelLine, 'kernel', 'expected a profile name'));
  const stepsNode = root.get('steps', true);
  if (!isSeq(stepsNode)) {
    errors.push(
      new TraceInputError(file, lineOf(stepsNode as YamlNode), 'steps', 'expected a list of steps'),
    );
    return { errors };
  }
  const steps: ScenarioStep[] = [];
  stepsNode.items.forEach((item, i) => {
    const line = lineOf(item as YamlNode);
    const fail = (field: string, m: string): never => {
      throw new TraceInputError(file, line, field, m);
    };
    try {
      if (!isMap(item)) fail(`steps[${i}]`, 'expected a map');
      const m = (item as { toJS(d: unknown): unknown }).toJS(doc) as Record<string, unknown>;
      const fieldLine = (key: string): number => {
        const pair = (item as { items: Array<{ key: unknown; value: unknown }> }).items.find(
          (p) => isScalar(p.key) && p.key.value === key,
        );
        return pair ? lineOf((pair.value ?? pair.key) as YamlNode) : line;
      };
      const failAt = (field: string, msg: string): never => {
        throw new TraceInputError(file, fieldLine(field.split(/[.[]/)[0]!), field, msg);
      };
      if ('section' in m) {
        if (typeof m['section'] !== 'string') failAt('section', 'expected a heading text');
        steps.push({ kind: 'section', line, title: m['section'] as string });
        return;
      }
      const say = m['say'];
      if (say !== undefined && typeof say !== 'string') failAt('say', 'expected one line of text');
      if (typeof m['do'] !== 'string')
        failAt('do', 'missing "do" (the op to run, e.g. KVM_CREATE_VM)');
      const obj: Record<string, unknown> = { op: m['do'] };
      for (const [k, v] of Object.entries(m)) {
        if (STEP_KEYS.has(k)) continue;
        if (k === 'op') failAt('op', 'use "do" for the op name');
        obj[k] = k === 'hex' && typeof v === 'string' ? v : convertValue(v, k, failAt);
      }
      if (m['as'] !== undefined) obj['as'] = m['as'];
      let op: TraceOp;
      try {
        op = parseOpObject(file, line, obj);
      } catch (e) {
        if (e instanceof TraceInputError)
          throw new TraceInputError(
            file,
            fieldLine(e.field.split(/[.[]/)[0]!),
            e.field,
            e.message.replace(/^.*?: .*?: /, ''),
          );
        throw e;
      }
      const expect = m['expect'] === undefined ? undefined : parseExpect(m['expect'], failAt);
      steps.push({
        kind: 'op',
        line,
        ...(typeof say === 'string' ? { say } : {}),
        op,
        ...(expect ? { expect } : {}),
      });
    } catch (e) {
      if (e instanceof TraceInputError) errors.push(e);
      else errors.push(new TraceInputError(file, line, `steps[${i}]`, String(e)));
    }
  });
  if (errors.length > 0) return { errors };
  const scenario: Scenario = {
    file,
    name,
    ...(typeof top['description'] === 'string' ? { description: top['description'] } : {}),
    ...(typeof kernel === 'string' ? { kernel, kernelLine } : {}),
    steps,
  };
  return { scenario, errors };
}
