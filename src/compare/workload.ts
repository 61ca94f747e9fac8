/**
 * Design-neutral workloads (YAML) for `gmemlab compare`: what the guest, its devices and the host
 * do, never how a design does it. Each design's adapter (./adapter.ts) lowers a workload into its
 * own ioctl and syscall sequence. Format (docs/workload-format.md):
 *
 * ```yaml
 * name: The host reads private memory
 * description: free text
 * policies: [qemu]                 # optional: the policies run when --policies is not given
 * steps:
 *   - boot: { private: 2 MiB, shared: 64 KiB }  # first step: guest RAM = private, then shared
 *   - guest_write: { at: 0x1000, hex: '5ec2e7ed' }
 *   - host_read: { at: 0x1000, len: 4 }
 *     expect: { linux-6.18: ok, linux-next-gmem: SIGBUS }
 *   - repeat: 10000
 *     steps:
 *       - share: { at: 0x10000, size: 4 KiB }
 *       - unshare: { at: 0x10000, size: 4 KiB }
 *   - teardown: {}
 * ```
 *
 * Addresses (`at`) are offsets into guest RAM, sizes page multiples where a range is converted,
 * mapped or pinned. `expect` maps a design (`linux-6.18`), a design and policy
 * (`linux-6.18/qemu`), any design under a policy (`*`/`firecracker`) or `*` to an outcome: `ok` (allowed), an errno name, SIGBUS, SIGSEGV,
 * `violation` or `violation:INVARIANT`, or `n/a`. Every problem is reported as
 * `file:line: field: message`. Pure: no Node APIs.
 */
import {
  isAlias,
  isMap,
  isNode,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Node as YamlNode,
} from 'yaml';
import { isErrnoName } from '../core/base/errno.js';
import { evaluate } from '../trace/constants.js';
import { TraceInputError } from '../trace/field_reader.js';
import { didYouMean, quote } from '../trace/suggest.js';

const PAGE = 4096n;
/** Guest RAM at most this large (the model's guest programs reach GPAs below 4 GiB). */
export const MAX_GUEST_RAM = 2n << 30n;
/** One repeat's count at most; nested repeats multiply, and their product is capped too. */
export const MAX_REPEAT = 1_000_000;
/** Bytes a guest load/store or a host/device access may move in one step. */
export const MAX_ACCESS_BYTES = 4096n;

/** What a guest, device or host process does; `at` is an offset into guest RAM. */
export type Action =
  | { readonly kind: 'boot'; readonly private: bigint; readonly shared: bigint }
  | { readonly kind: 'share' | 'unshare'; readonly at: bigint; readonly size: bigint }
  | { readonly kind: 'guest_read'; readonly at: bigint; readonly len: number }
  | { readonly kind: 'guest_write'; readonly at: bigint; readonly hex: string }
  | { readonly kind: 'host_read'; readonly at: bigint; readonly len: number }
  | { readonly kind: 'host_write'; readonly at: bigint; readonly hex: string }
  | { readonly kind: 'gup'; readonly at: bigint; readonly size: bigint }
  | { readonly kind: 'gup_release' }
  | { readonly kind: 'dma_map' | 'dma_unmap'; readonly at: bigint; readonly size: bigint }
  | { readonly kind: 'dma_read'; readonly at: bigint; readonly len: number }
  | { readonly kind: 'dma_write'; readonly at: bigint; readonly hex: string }
  | { readonly kind: 'teardown' };

export type ActionKind = Action['kind'];

/** An asserted outcome: the normalised text (`ok`, `EFAULT`, `SIGBUS`, `violation:NAME`, `n/a`). */
export type Outcome = string;

export type WorkloadStep =
  | {
      readonly kind: 'action';
      /** The step's number in the file (1-based, in document order, repeats counted once). */
      readonly id: number;
      readonly line: number;
      readonly action: Action;
      readonly say?: string;
      /** Key (`DESIGN/POLICY`, `DESIGN`, `*`/`POLICY` or `*`) → outcome. */
      readonly expect: ReadonlyMap<string, Outcome>;
      /** The line of each expect key. */
      readonly expectLines: ReadonlyMap<string, number>;
    }
  | {
      readonly kind: 'repeat';
      readonly id: number;
      readonly line: number;
      readonly count: number;
      readonly steps: readonly WorkloadStep[];
    };

export type ActionStep = Extract<WorkloadStep, { kind: 'action' }>;

export type Workload = {
  readonly file: string;
  readonly name: string;
  readonly description?: string;
  /** The policies to run when the command line names none. */
  readonly policies?: readonly string[];
  readonly policiesLine?: number;
  /** Guest RAM: private bytes first, then shared bytes (the boot step). */
  readonly ram: { readonly private: bigint; readonly shared: bigint };
  readonly steps: readonly WorkloadStep[];
};

export type ParsedWorkload = { readonly workload?: Workload; readonly errors: TraceInputError[] };

const TOP_KEYS = ['name', 'description', 'policies', 'steps'];
const STEP_KEYS = ['say', 'expect'];

/** Each action's fields: name → kind ('size': page-aligned bytes, 'addr': offset, ...). */
type FieldKind = 'addr' | 'size' | 'len' | 'hex' | 'bytes';
const ACTIONS: Record<ActionKind, Readonly<Record<string, FieldKind>>> = {
  boot: { private: 'bytes', shared: 'bytes' },
  share: { at: 'addr', size: 'size' },
  unshare: { at: 'addr', size: 'size' },
  guest_read: { at: 'addr', len: 'len' },
  guest_write: { at: 'addr', hex: 'hex' },
  host_read: { at: 'addr', len: 'len' },
  host_write: { at: 'addr', hex: 'hex' },
  gup: { at: 'addr', size: 'size' },
  gup_release: {},
  dma_map: { at: 'addr', size: 'size' },
  dma_unmap: { at: 'addr', size: 'size' },
  dma_read: { at: 'addr', len: 'len' },
  dma_write: { at: 'addr', hex: 'hex' },
  teardown: {},
};
export const ACTION_KINDS = Object.keys(ACTIONS) as ActionKind[];
/** Fields an action may leave out, and their values. */
const OPTIONAL: Record<string, bigint> = { shared: 0n };
/** Guest loads and stores are 1, 2 or 4 bytes (the model's guest program). */
const GUEST_ACCESS = new Set(['guest_read', 'guest_write']);

/**
 * Normalise an outcome word: `ok`/`allowed` → `ok`, an errno name, SIGBUS, SIGSEGV,
 * `violation[:NAME]`, `n/a`. Undefined when it is none of them.
 */
export function normaliseOutcome(s: string): Outcome | undefined {
  const t = s.trim();
  if (t === 'ok' || t === 'allowed') return 'ok';
  if (t === 'n/a' || t === 'SIGBUS' || t === 'SIGSEGV' || t === 'violation') return t;
  if (/^violation:[a-z0-9_/-]+$/.test(t)) return t;
  if (isErrnoName(t)) return t;
  return undefined;
}

/** Whether an observed outcome meets an expected one (`violation` matches any invariant). */
export function outcomeMatches(expected: Outcome, actual: Outcome): boolean {
  if (expected === 'violation') return actual.startsWith('violation');
  return expected === actual;
}

class Problems {
  readonly errors: TraceInputError[] = [];
  constructor(readonly file: string) {}
  add(line: number, field: string, msg: string): void {
    this.errors.push(new TraceInputError(this.file, line, field, msg));
  }
}

/**
 * Parse a workload file. `designs` are the design names an `expect` key may name (the adapter
 * registry's), `policies` the policy names. Never throws.
 */
export function parseWorkload(
  text: string,
  file: string,
  designs: readonly string[],
  policies: readonly string[],
): ParsedWorkload {
  const lc = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lc, uniqueKeys: true, prettyErrors: false });
  const p = new Problems(file);
  for (const e of doc.errors) {
    p.add(lc.linePos(e.pos[0]).line, 'yaml', e.message.split('\n')[0]!);
    return { errors: p.errors };
  }
  const lineOf = (n: unknown): number => {
    const r = isNode(n) ? n.range : undefined;
    return r ? lc.linePos(r[0]).line : 1;
  };
  const root = doc.contents;
  if (!isMap(root)) {
    p.add(1, 'workload', 'expected a map with name and steps');
    return { errors: p.errors };
  }
  // Anchors and aliases are not part of the format: one workload step is one YAML node.
  let alias: YamlNode | undefined;
  const findAlias = (n: unknown): void => {
    if (alias !== undefined) return;
    if (isAlias(n)) alias = n;
    else if (isMap(n))
      for (const it of n.items) {
        findAlias(it.key);
        findAlias(it.value);
      }
    else if (isSeq(n)) for (const it of n.items) findAlias(it);
  };
  findAlias(root);
  if (alias !== undefined) {
    p.add(lineOf(alias), 'yaml', 'aliases are not supported in workloads; write the step out');
    return { errors: p.errors };
  }
  const ctx = new Ctx(p, lineOf, designs, policies);
  const top = ctx.entries(root, 'workload');
  for (const [k, { line }] of top)
    if (!TOP_KEYS.includes(k)) p.add(line, k, `unknown key ${quote(k)}${didYouMean(k, TOP_KEYS)}`);
  const name = top.get('name');
  if (name === undefined) p.add(1, 'name', 'missing workload name');
  const nameText = name === undefined ? undefined : ctx.text(name.node, 'name', name.line);
  const desc = top.get('description');
  const description =
    desc === undefined ? undefined : ctx.text(desc.node, 'description', desc.line);
  const pol = top.get('policies');
  let pols: string[] | undefined;
  if (pol !== undefined) {
    if (!isSeq(pol.node) || pol.node.items.length === 0)
      p.add(pol.line, 'policies', 'expected a non-empty list of policy names');
    else
      pols = pol.node.items.flatMap((it, i) => {
        const t = ctx.text(it, `policies[${i}]`, lineOf(it));
        if (t === undefined) return [];
        const why = ctx.checkPolicy(t);
        if (why !== undefined) p.add(lineOf(it), `policies[${i}]`, why);
        return [t];
      });
  }
  const st = top.get('steps');
  if (st === undefined || !isSeq(st.node) || st.node.items.length === 0) {
    p.add(st?.line ?? 1, 'steps', 'expected a list of steps, the first a boot');
    return { errors: p.errors };
  }
  const steps = ctx.steps(st.node.items, 'steps', 1);
  const first = steps[0];
  let ram = { private: 0n, shared: 0n };
  if (first !== undefined) {
    if (first.kind !== 'action' || first.action.kind !== 'boot')
      p.add(first.line, 'steps[0]', 'the first step must be boot (the guest RAM)');
    else ram = { private: first.action.private, shared: first.action.shared };
  }
  if (p.errors.length === 0) ctx.checkRanges(steps, ram.private + ram.shared, true);
  // In file order (a stable sort keeps one line's problems in the order they were found).
  if (p.errors.length > 0) return { errors: [...p.errors].sort((a, b) => a.line - b.line) };
  return {
    workload: {
      file,
      name: nameText!,
      ...(description !== undefined ? { description } : {}),
      ...(pols !== undefined ? { policies: pols, policiesLine: pol!.line } : {}),
      ram,
      steps,
    },
    errors: [],
  };
}

type Entry = { readonly node: unknown; readonly line: number };

class Ctx {
  private nextId = 1;
  constructor(
    private readonly p: Problems,
    private readonly lineOf: (n: unknown) => number,
    private readonly designs: readonly string[],
    private readonly policies: readonly string[],
  ) {}

  /** A map node's entries by key (with each key's line); non-maps are reported. */
  entries(n: unknown, field: string): Map<string, Entry> {
    const out = new Map<string, Entry>();
    if (!isMap(n)) {
      this.p.add(this.lineOf(n), field, 'expected a map');
      return out;
    }
    for (const it of n.items) {
      const line = this.lineOf(it.key);
      if (!isScalar(it.key) || typeof it.key.value !== 'string') {
        this.p.add(line, field, 'a key must be a plain name');
        continue;
      }
      out.set(it.key.value, { node: it.value, line });
    }
    return out;
  }

  text(n: unknown, field: string, line: number): string | undefined {
    if (isScalar(n) && typeof n.value === 'string' && n.value.trim() !== '') return n.value;
    this.p.add(line, field, 'expected text');
    return undefined;
  }

  checkPolicy(t: string): string | undefined {
    const [base, ...mods] = t.split('+');
    if (!this.policies.includes(base!))
      return `unknown policy ${quote(base!)}${didYouMean(base!, this.policies)} (known: ${this.policies.join(', ')})`;
    for (const m of mods)
      if (!POLICY_MODIFIERS.includes(m))
        return `unknown policy modifier ${quote(m)}${didYouMean(m, POLICY_MODIFIERS)} (known: ${POLICY_MODIFIERS.join(', ')})`;
    return undefined;
  }

  /** A non-negative integer (numbers, "4 KiB", 0x...). */
  int(n: unknown, field: string, line: number): bigint | undefined {
    let v: bigint | undefined;
    if (isScalar(n) && typeof n.value === 'number' && Number.isSafeInteger(n.value))
      v = BigInt(n.value);
    else if (isScalar(n) && typeof n.value === 'string') {
      const e = evaluate(n.value);
      if ('value' in e) v = e.value;
      else {
        this.p.add(line, field, e.error);
        return undefined;
      }
    }
    if (v === undefined || v < 0n) {
      this.p.add(line, field, 'expected a non-negative integer or size ("4 KiB", 0x1000)');
      return undefined;
    }
    return v;
  }

  steps(items: readonly unknown[], path: string, depthProduct: number): WorkloadStep[] {
    const out: WorkloadStep[] = [];
    items.forEach((item, i) => {
      const s = this.step(item, `${path}[${i}]`, depthProduct);
      if (s !== undefined) out.push(s);
    });
    return out;
  }

  private step(item: unknown, path: string, depthProduct: number): WorkloadStep | undefined {
    const line = this.lineOf(item);
    const e = this.entries(item, path);
    if (!isMap(item)) return undefined;
    const id = this.nextId++;
    if (e.has('repeat')) {
      for (const [k, { line: l }] of e)
        if (k !== 'repeat' && k !== 'steps' && k !== 'say')
          this.p.add(l, `${path}.${k}`, `a repeat takes repeat, steps and say, not ${quote(k)}`);
      const r = e.get('repeat')!;
      const count = this.int(r.node, `${path}.repeat`, r.line);
      if (count !== undefined && (count < 1n || count > BigInt(MAX_REPEAT)))
        this.p.add(r.line, `${path}.repeat`, `expected a count from 1 to ${MAX_REPEAT}`);
      const c = count === undefined ? 1 : Number(count > BigInt(MAX_REPEAT) ? 1n : count);
      const prod = depthProduct * c;
      if (prod > MAX_REPEAT) {
        this.p.add(r.line, `${path}.repeat`, `nested repeats run more than ${MAX_REPEAT} times`);
        return undefined;
      }
      const s = e.get('steps');
      if (s === undefined || !isSeq(s.node) || s.node.items.length === 0) {
        this.p.add(s?.line ?? line, `${path}.steps`, 'a repeat needs a non-empty list of steps');
        return undefined;
      }
      const steps = this.steps(s.node.items, `${path}.steps`, prod);
      for (const x of steps)
        if (x.kind === 'action' && (x.action.kind === 'boot' || x.action.kind === 'teardown'))
          this.p.add(x.line, `${path}.steps`, `${x.action.kind} cannot be repeated`);
      return { kind: 'repeat', id, line, count: c, steps };
    }
    const actions = [...e.keys()].filter((k) => !STEP_KEYS.includes(k));
    if (actions.length !== 1) {
      const unknown = actions.find((k) => !(k in ACTIONS));
      if (unknown !== undefined)
        this.p.add(
          e.get(unknown)!.line,
          `${path}.${unknown}`,
          `unknown action ${quote(unknown)}${didYouMean(unknown, [...ACTION_KINDS, 'repeat'])}`,
        );
      else
        this.p.add(
          line,
          path,
          actions.length === 0
            ? `a step needs one action (${ACTION_KINDS.join(', ')}) or repeat`
            : `a step has one action, not ${actions.join(' and ')}`,
        );
      return undefined;
    }
    const kind = actions[0]!;
    if (!(kind in ACTIONS)) {
      this.p.add(
        e.get(kind)!.line,
        `${path}.${kind}`,
        `unknown action ${quote(kind)}${didYouMean(kind, [...ACTION_KINDS, 'repeat'])}`,
      );
      return undefined;
    }
    const action = this.action(kind as ActionKind, e.get(kind)!, `${path}.${kind}`);
    const say = e.get('say');
    const sayText = say === undefined ? undefined : this.text(say.node, `${path}.say`, say.line);
    const expect = new Map<string, Outcome>();
    const expectLines = new Map<string, number>();
    const ex = e.get('expect');
    if (ex !== undefined) {
      const m = this.entries(ex.node, `${path}.expect`);
      for (const [k, { node, line: l }] of m) {
        const f = `${path}.expect.${k}`;
        const [d, pol, extra] = k.split('/');
        if (extra !== undefined || (d !== '*' && !this.designs.includes(d!)))
          this.p.add(
            l,
            f,
            `unknown design ${quote(d!)}${didYouMean(d!, this.designs)} (a key is DESIGN, DESIGN/POLICY, */POLICY or *; designs: ${this.designs.join(', ')})`,
          );
        else if (pol !== undefined) {
          const why = this.checkPolicy(pol);
          if (why !== undefined) this.p.add(l, f, why);
        }
        const t = isScalar(node) ? String(node.value) : undefined;
        const o = t === undefined ? undefined : normaliseOutcome(t);
        if (o === undefined)
          this.p.add(
            l,
            f,
            `expected an outcome: ok, an errno name (EFAULT), SIGBUS, SIGSEGV, violation[:INVARIANT] or n/a${t !== undefined ? `, not ${quote(t)}` : ''}`,
          );
        else {
          expect.set(k, o);
          expectLines.set(k, l);
        }
      }
    }
    if (action === undefined) return undefined;
    return {
      kind: 'action',
      id,
      line,
      action,
      ...(sayText !== undefined ? { say: sayText } : {}),
      expect,
      expectLines,
    };
  }

  private action(kind: ActionKind, e: Entry, path: string): Action | undefined {
    const spec = ACTIONS[kind];
    const names = Object.keys(spec);
    const fields = new Map<string, Entry>();
    if (names.length === 0) {
      // `teardown: {}`, `teardown: true` or `teardown:` alone.
      const n = e.node;
      const empty =
        n === null ||
        (isScalar(n) && (n.value === null || n.value === true)) ||
        (isMap(n) && n.items.length === 0);
      if (!empty) this.p.add(e.line, path, `${kind} takes no fields (write ${kind}: {})`);
      return { kind } as Action;
    }
    if (!isMap(e.node)) {
      this.p.add(e.line, path, `expected a map of ${names.join(', ')}`);
      return undefined;
    }
    for (const [k, v] of this.entries(e.node, path)) {
      if (!names.includes(k))
        this.p.add(
          v.line,
          `${path}.${k}`,
          `unknown field ${quote(k)}${didYouMean(k, names)} (${kind} takes ${names.join(', ')})`,
        );
      else fields.set(k, v);
    }
    const vals: Record<string, bigint | number | string> = {};
    let bad = false;
    for (const [name, fk] of Object.entries(spec)) {
      const f = fields.get(name);
      const fp = `${path}.${name}`;
      if (f === undefined) {
        if (name in OPTIONAL) vals[name] = OPTIONAL[name]!;
        else {
          this.p.add(e.line, fp, `missing ${name}`);
          bad = true;
        }
        continue;
      }
      if (fk === 'hex') {
        const t = isScalar(f.node) ? String(f.node.value) : '';
        const n = t.length / 2;
        const guest = GUEST_ACCESS.has(kind);
        const fits = guest ? n === 1 || n === 2 || n === 4 : n <= Number(MAX_ACCESS_BYTES);
        if (!/^([0-9a-fA-F]{2})+$/.test(t) || !fits) {
          this.p.add(
            f.line,
            fp,
            guest
              ? "a guest store writes 1, 2 or 4 bytes, as hex digits ('5ec2e7ed')"
              : `expected 1 to ${MAX_ACCESS_BYTES} bytes as hex digits ('5ec2e7ed')`,
          );
          bad = true;
        } else vals[name] = t.toLowerCase();
        continue;
      }
      const v = this.int(f.node, fp, f.line);
      if (v === undefined) {
        bad = true;
        continue;
      }
      if (fk === 'len') {
        const ok = GUEST_ACCESS.has(kind)
          ? [1n, 2n, 4n].includes(v)
          : v >= 1n && v <= MAX_ACCESS_BYTES;
        if (!ok) {
          this.p.add(
            f.line,
            fp,
            GUEST_ACCESS.has(kind)
              ? 'a guest load is 1, 2 or 4 bytes'
              : `expected 1 to ${MAX_ACCESS_BYTES} bytes`,
          );
          bad = true;
        } else vals[name] = Number(v);
        continue;
      }
      if ((fk === 'size' || fk === 'bytes') && v % PAGE !== 0n) {
        this.p.add(f.line, fp, 'expected a multiple of 4 KiB');
        bad = true;
        continue;
      }
      if (fk === 'size' && v === 0n) {
        this.p.add(f.line, fp, 'expected at least 4 KiB');
        bad = true;
        continue;
      }
      if (fk === 'addr' && 'size' in spec && v % PAGE !== 0n) {
        this.p.add(f.line, fp, 'a range starts on a 4 KiB boundary');
        bad = true;
        continue;
      }
      vals[name] = v;
    }
    if (bad) return undefined;
    if (kind === 'boot') {
      const total = (vals['private'] as bigint) + (vals['shared'] as bigint);
      if (total === 0n || total > MAX_GUEST_RAM) {
        this.p.add(
          e.line,
          path,
          `guest RAM (private + shared) must be 4 KiB to ${MAX_GUEST_RAM >> 20n} MiB`,
        );
        return undefined;
      }
    }
    return { kind, ...vals } as Action;
  }

  /** Every range lies inside guest RAM; one boot, first; teardown last. */
  checkRanges(steps: readonly WorkloadStep[], ram: bigint, top: boolean): void {
    steps.forEach((s, i) => {
      if (s.kind === 'repeat') return this.checkRanges(s.steps, ram, false);
      const a = s.action;
      if (a.kind === 'boot' && !(top && i === 0))
        this.p.add(s.line, 'boot', 'boot is the first step, once');
      if (a.kind === 'teardown' && !(top && i === steps.length - 1))
        this.p.add(s.line, 'teardown', 'teardown is the last step');
      if (!('at' in a)) return;
      const len = 'size' in a ? a.size : 'len' in a ? BigInt(a.len) : BigInt(a.hex.length / 2);
      if (a.at + len > ram)
        this.p.add(
          s.line,
          `${a.kind}.at`,
          `0x${a.at.toString(16)} + ${len} bytes is outside guest RAM (${ram} bytes)`,
        );
      else if ('len' in a || 'hex' in a) {
        // One access stays within one page (the model's guest programs and host accesses).
        if ((a.at % PAGE) + len > PAGE)
          this.p.add(s.line, `${a.kind}.at`, 'an access may not cross a 4 KiB page boundary');
      }
    });
  }
}

/** Policy modifiers (`qemu+prefault`): see ./policy.ts. */
export const POLICY_MODIFIERS = [
  'prefault',
  'no-prefault',
  'keep',
  'discard',
  'pin-all',
  'pin-shared',
  'anon',
  'gmem-mmap',
];

/** Every action step, in execution order, with its repeat count multiplied in (for summaries). */
export function actionSteps(steps: readonly WorkloadStep[]): ActionStep[] {
  const out: ActionStep[] = [];
  for (const s of steps) {
    if (s.kind === 'action') out.push(s);
    else out.push(...actionSteps(s.steps));
  }
  return out;
}
