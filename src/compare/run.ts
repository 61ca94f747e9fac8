/**
 * The comparison engine: lower a workload with a design's adapter and a policy, run the ops on
 * the model of the design's profile with every invariant of that profile checked after every
 * op, and collect what `gmemlab compare` reports: host memory after every workload step (peak
 * and final), exits by reason, zaps and TLB flushes, pins, and each step's outcome, checked
 * against the workload's `expect`. Pure (no Node APIs): the CLI reads files and prints.
 */
import { errnoName } from '../core/base/errno.js';
import { ModelBackend } from '../backends/model.js';
import { InvariantChecker, type Violation } from '../core/invariants/index.js';
import { getProfile } from '../core/profiles/index.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import { BackendRefusal, type ResultLine } from '../trace/types.js';
import { lowerWorkload, type DesignAdapter, type Lowering, type MemorySample } from './adapter.js';
import { measureGuestMemfd } from './metrics.js';
import type { Policy } from './policy.js';
import { outcomeMatches, type ActionStep, type Outcome, type Workload } from './workload.js';

/** Exit records of the trace contract that are reports, not VM exits (and each program's HLT). */
const NOT_EXITS = new Set(['LOAD', 'HYPERCALL_RET', 'HLT']);

export type StepOutcome = {
  readonly step: ActionStep;
  /** Outcome → how many executions had it (a step in a repeat executes many times). */
  readonly outcomes: Map<Outcome, number>;
  /** The first execution's detail: the op that decided it, a value read, an n/a reason. */
  detail?: string;
  /** The expected outcome for this design and policy, if the workload asserts one. */
  readonly expected?: Outcome;
  /** Executions whose outcome did not match `expected`. */
  mismatches: number;
};

export type ViolationRecord = {
  readonly invariant: string;
  readonly object: string;
  readonly message: string;
  /** The workload step (its id and line) whose ops broke it, and the op. */
  readonly stepId: number;
  readonly line: number;
  readonly op: string;
};

export type CompareRun = {
  readonly design: string;
  readonly profile: string;
  readonly policy: string;
  /** Set when the design cannot express the policy: nothing ran. */
  readonly na?: string;
  readonly ops: number;
  /** One sample after every executed step (index = execution), in pages. */
  readonly series: MemorySample[];
  /** The step id of each sample (for the chart's labels). */
  readonly seriesSteps: number[];
  readonly peak: MemorySample;
  /** After the last step before teardown (the workload's end state). */
  readonly final: MemorySample;
  /** After teardown (what is left: leaks, pins held past close), if the workload tears down. */
  readonly afterTeardown?: MemorySample;
  /** Peak of private + shared (the pages the guest's memory costs at once). */
  readonly peakTotal: number;
  readonly exits: Record<string, number>;
  readonly zaps: { readonly events: number; readonly pages: number };
  readonly tlbFlushes: number;
  readonly steps: StepOutcome[];
  /** The first violations (at most MAX_VIOLATION_RECORDS); `violationCount` counts them all. */
  readonly violations: ViolationRecord[];
  readonly violationCount: number;
  /** Asserted outcomes that did not hold (human-readable). */
  readonly failures: string[];
};

const ZERO: MemorySample = {
  private: 0,
  shared: 0,
  double: 0,
  pinned: 0,
  referenced: 0,
  mapped: 0,
  ptPages: 0,
};

function maxSample(a: MemorySample, b: MemorySample): MemorySample {
  return {
    private: Math.max(a.private, b.private),
    shared: Math.max(a.shared, b.shared),
    double: Math.max(a.double, b.double),
    pinned: Math.max(a.pinned, b.pinned),
    referenced: Math.max(a.referenced, b.referenced),
    mapped: Math.max(a.mapped, b.mapped),
    ptPages: Math.max(a.ptPages, b.ptPages),
  };
}

/** A result line as an outcome word. */
export function resultOutcome(r: ResultLine): Outcome {
  if (r.ok) return 'ok';
  return 'fault' in r ? r.fault : r.errno;
}

/** What a result read (a value, the guest's loads), for the detail column. */
function resultValue(r: ResultLine): string | undefined {
  if ('fault' in r) return undefined;
  const loads = (r.exits ?? []).flatMap((x) => (x.reason === 'LOAD' ? [x.hex] : []));
  if (loads.length > 0) return `read ${loads.join(',')}`;
  if (r.ok && typeof r.value === 'string') return `read ${r.value}`;
  if (r.ok && typeof r.value === 'bigint') return `value ${r.value}`;
  if (!r.ok && r.error_offset !== undefined) return `error_offset 0x${r.error_offset.toString(16)}`;
  return undefined;
}

/** The first negative RAX a guest hypercall returned in `r` (HYPERCALL_RET), as an errno. */
function hypercallErrno(r: ResultLine): Outcome | undefined {
  if ('fault' in r) return undefined;
  for (const x of r.exits ?? []) {
    if (x.reason !== 'HYPERCALL_RET' || typeof x.hex !== 'string') continue;
    // EAX, little-endian, as the trace reports it.
    const b = x.hex.match(/../g) ?? [];
    const v = Number.parseInt(b.slice(0, 4).reverse().join(''), 16) | 0;
    if (v < 0) return errnoName(-v);
  }
  return undefined;
}

/**
 * The first SMCCC call in `r` whose x0 (8 bytes, little-endian) is not SMCCC_RET_SUCCESS: the
 * guest's share or unshare fails with EPERM (`arm_smccc_share_unshare_page()`); the detail names x0.
 */
function smcccFailure(r: ResultLine): { errno: Outcome; x0: bigint } | undefined {
  if ('fault' in r) return undefined;
  for (const x of r.exits ?? []) {
    if (x.reason !== 'HYPERCALL_RET' || typeof x.hex !== 'string') continue;
    const b = x.hex.match(/../g) ?? [];
    const x0 = BigInt.asIntN(64, BigInt('0x' + (b.reverse().join('') || '0')));
    if (x0 !== 0n) return { errno: 'EPERM', x0 };
  }
  return undefined;
}

/**
 * The expected outcome of `step` for design `d` under policy `p`, the most specific key first:
 * DESIGN/POLICY, DESIGN, `*`/POLICY (any design under that policy), `*`.
 */
export function expectedOutcome(step: ActionStep, d: string, p: string): Outcome | undefined {
  const e = step.expect;
  return e.get(`${d}/${p}`) ?? e.get(d) ?? e.get(`*/${p}`) ?? e.get('*');
}

/** Violations kept with their details per run (one broken step can break many pages). */
const MAX_VIOLATION_RECORDS = 20;

// The message too: a read and then a write of the same page are two violations.
const violationKey = (v: Violation): string => `${v.invariant}\0${v.object}\0${v.message}`;

export type CompareOptions = {
  /** Seeded bugs (src/core/base/mutants.ts) to run the model with: tests of the violation path. */
  readonly mutants?: readonly string[];
};

/** Lower and run one design × policy (see the module comment). */
export function runCompare(
  w: Workload,
  d: DesignAdapter,
  policy: Policy,
  o: CompareOptions = {},
): CompareRun {
  const profile = getProfile(d.profile);
  if (profile === undefined) throw new Error(`design ${d.name}: no model profile ${d.profile}`);
  const lowerer = d.lowerer(w, policy);
  const base = {
    design: d.name,
    profile: d.profile,
    policy: policy.name,
  };
  const steps = new Map<number, StepOutcome>();
  const failures: string[] = [];
  const outcomeOf = (s: ActionStep): StepOutcome => {
    let o = steps.get(s.id);
    if (o === undefined) {
      const expected = expectedOutcome(s, d.name, policy.name);
      o = {
        step: s,
        outcomes: new Map(),
        mismatches: 0,
        ...(expected !== undefined ? { expected } : {}),
      };
      steps.set(s.id, o);
    }
    return o;
  };
  if (typeof lowerer === 'string') {
    // Nothing runs; every asserted outcome must be n/a.
    const all: ActionStep[] = [];
    const walk = (ss: Workload['steps']): void => {
      for (const s of ss)
        if (s.kind === 'action') all.push(s);
        else walk(s.steps);
    };
    walk(w.steps);
    for (const s of all) {
      const o = outcomeOf(s);
      o.outcomes.set('n/a', 1);
      o.detail = lowerer;
      if (o.expected !== undefined && !outcomeMatches(o.expected, 'n/a')) {
        o.mismatches = 1;
        failures.push(
          `${w.file}:${s.line}: ${d.name}/${policy.name}: expected ${o.expected}, got n/a (${lowerer})`,
        );
      }
    }
    return {
      ...base,
      na: lowerer,
      ops: 0,
      series: [],
      seriesSteps: [],
      peak: ZERO,
      final: ZERO,
      peakTotal: 0,
      exits: {},
      zaps: { events: 0, pages: 0 },
      tlbFlushes: 0,
      steps: [...steps.values()],
      violations: [],
      violationCount: 0,
      failures,
    };
  }
  const low: Lowering = lowerWorkload(w, lowerer);
  const backend = new ModelBackend(profile, { events: true, mutants: o.mutants ?? [] });
  const t = new HandleTable(backend.begin());
  const host = backend.host;
  const checker = new InvariantChecker(
    host,
    undefined,
    low.ops.length > 64 ? { incremental: true } : {},
  );
  const measure = d.measure ?? measureGuestMemfd;
  let standing = new Set<string>();
  const series: MemorySample[] = [];
  const seriesSteps: number[] = [];
  let peak = ZERO;
  let peakTotal = 0;
  let final = ZERO;
  let afterTeardown: MemorySample | undefined;
  const exits: Record<string, number> = {};
  let zapEvents = 0;
  let zapPages = 0;
  let tlb = 0;
  const violations: ViolationRecord[] = [];
  let violationCount = 0;
  host.events.drain();
  for (const ex of low.execs) {
    let outcome: Outcome | undefined;
    let firstFail: { r: ResultLine; op: string } | undefined;
    let detail: string | undefined;
    let broke: string | undefined;
    let refused: string | undefined;
    for (let i = ex.firstOp; i < ex.endOp; i++) {
      const op = low.ops[i]!;
      let r: ResultLine;
      try {
        r = stepTrace(op, backend, t);
      } catch (e) {
        // A kernel path the model does not represent: the step is n/a, the run goes on.
        if (!(e instanceof BackendRefusal)) throw e;
        refused ??= `not modelled: ${e.message}`;
        continue;
      }
      if ('exits' in r && r.exits !== undefined)
        for (const x of r.exits)
          if (!NOT_EXITS.has(x.reason)) exits[x.reason] = (exits[x.reason] ?? 0) + 1;
      const events = host.events.drain();
      // Teardown's zaps (VM destruction, the file's release) are not the workload's cost.
      if (ex.step.action.kind !== 'teardown')
        for (const e of events) {
          if (e.kind === 'zap') {
            zapEvents++;
            zapPages += e.pages;
          } else if (e.kind === 'tlb_flush') tlb++;
        }
      const all = checker.check();
      if (all.length > 0 || standing.size > 0) {
        const fresh = all.filter((v) => !standing.has(violationKey(v)));
        standing = new Set(all.map(violationKey));
        for (const v of fresh) {
          broke ??= v.invariant;
          violationCount++;
          if (violations.length < MAX_VIOLATION_RECORDS)
            violations.push({
              invariant: v.invariant,
              object: v.object,
              message: v.message,
              stepId: ex.step.id,
              line: ex.step.line,
              op: op.op,
            });
        }
      }
      if (i === ex.access) {
        outcome = resultOutcome(r);
        const v = resultValue(r);
        detail = `${op.op}${v !== undefined ? `: ${v}` : ''}`;
        const e = ex.rax === true && r.ok ? hypercallErrno(r) : undefined;
        if (e !== undefined) {
          outcome = e;
          detail = `${op.op}: hypercall returned -${e}`;
        }
        const f = ex.rax === 'smccc' && r.ok ? smcccFailure(r) : undefined;
        if (f !== undefined) {
          outcome = f.errno;
          detail = `${op.op}: SMCCC call returned ${f.x0}, the guest's call fails with -${f.errno}`;
        }
      } else if (!r.ok && firstFail === undefined) firstFail = { r, op: op.op };
    }
    if (ex.na !== undefined || refused !== undefined) {
      outcome = 'n/a';
      detail = ex.na ?? refused;
    } else if (outcome === undefined) {
      outcome = firstFail === undefined ? 'ok' : resultOutcome(firstFail.r);
      if (firstFail !== undefined) detail = `${firstFail.op}: ${outcome}`;
    } else if (outcome === 'ok' && firstFail !== undefined && detail !== undefined)
      detail += ` (${firstFail.op}: ${resultOutcome(firstFail.r)})`;
    if (broke !== undefined) outcome = `violation:${broke}`;
    const so = outcomeOf(ex.step);
    so.outcomes.set(outcome, (so.outcomes.get(outcome) ?? 0) + 1);
    if (so.detail === undefined && detail !== undefined) so.detail = detail;
    if (so.expected !== undefined && !outcomeMatches(so.expected, outcome)) {
      if (so.mismatches === 0)
        failures.push(
          `${w.file}:${ex.step.line}: ${d.name}/${policy.name}: ${ex.step.action.kind} expected ${so.expected}, got ${outcome}${
            ex.iteration.length > 0 ? ` (iteration ${ex.iteration.join('.')})` : ''
          }${detail !== undefined ? ` [${detail}]` : ''}`,
        );
      so.mismatches++;
    }
    const m = measure(host);
    if (ex.step.action.kind === 'teardown') {
      afterTeardown = m;
      continue;
    }
    final = m;
    series.push(m);
    seriesSteps.push(ex.step.id);
    peak = maxSample(peak, m);
    peakTotal = Math.max(peakTotal, m.private + m.shared);
  }
  return {
    ...base,
    ops: low.ops.length,
    series,
    seriesSteps,
    peak,
    final,
    ...(afterTeardown !== undefined ? { afterTeardown } : {}),
    peakTotal,
    exits,
    zaps: { events: zapEvents, pages: zapPages },
    tlbFlushes: tlb,
    steps: [...steps.values()],
    violations,
    violationCount,
    failures,
  };
}
