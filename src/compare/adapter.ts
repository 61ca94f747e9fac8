/**
 * The seam between design-neutral workloads and designs: a design's VMM adapter.
 *
 * Adding a design = one module that exports a `DesignAdapter`, listed once in ./designs.ts.
 *
 * ```ts
 * export const MY_DESIGN: DesignAdapter = {
 *   name: 'design-2023-restrictedmem',   // the table's column; expect keys name it
 *   profile: 'design-2023-restrictedmem', // the model profile (src/core/profiles) it runs on
 *   summary: 'one line',
 *   origin: 'the thread it comes from',
 *   lowerer(w, policy) {                  // a string instead: the policy is n/a, and why
 *     return {
 *       step(s, b) {                      // called once per executed workload step, in order
 *         switch (s.action.kind) {
 *           case 'boot': b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: 1, as: 'vm' }); ...
 *           case 'host_read': b.access({ op: 'peek', addr: 'mem+0x1000', len: 4 }); ...
 *           case 'gup': b.na('this design has no ...'); ...
 *         }
 *       },
 *     };
 *   },
 *   measure: (host) => ({ ... }),         // optional: its own private/shared accounting
 * };
 * ```
 *
 * The adapter emits trace ops as the JSON objects of the trace format (docs/trace-format.md,
 * handles by name); `b.access(op)` marks the op whose result is the step's outcome (an attempted
 * host, device or guest access: ok, errno, SIGBUS/SIGSEGV), `b.op(op)` the ops around it, and
 * `b.na(reason)` a step the design or policy cannot express. `repeat` is expanded by the engine:
 * `step` runs once per iteration, so a lowerer keeps per-run state (open handles) in its closure.
 * The engine runs the ops on the model of `profile` with every invariant of that profile checked
 * after every op: a design whose accesses break its own definition of "the host cannot reach
 * private memory" shows `violation:INVARIANT` instead of its result. Pure.
 */
import type { Host } from '../core/host.js';
import { parseOpObject } from '../trace/parse.js';
import type { TraceOp } from '../trace/types.js';
import type { Policy } from './policy.js';
import type { ActionStep, Workload, WorkloadStep } from './workload.js';

/** Host memory at one point, in 4 KiB pages. */
export type MemorySample = {
  /** Frames only the guest may use (guest_memfd pages at private indices, ...). */
  readonly private: number;
  /** Frames the host can map: shared guest memory, wherever it lives. */
  readonly shared: number;
  /** Guest pages backed twice: by a private frame and by a separate shared frame. */
  readonly double: number;
  /** Pages pinned (FOLL_PIN: VFIO) and pages referenced (FOLL_GET: vmsplice, vhost-like). */
  readonly pinned: number;
  readonly referenced: number;
  /** Stage-2 leaf mappings (pages) and the page-table pages they need (derived, see metrics.ts). */
  readonly mapped: number;
  readonly ptPages: number;
};

export interface Lowerer {
  step(s: ActionStep, b: TraceBuilder): void;
}

export interface DesignAdapter {
  readonly name: string;
  readonly profile: string;
  readonly summary: string;
  /** The thread or kernel the design comes from. */
  readonly origin: string;
  /** A lowerer for this workload under `policy`, or the reason the policy is n/a here. */
  lowerer(w: Workload, policy: Policy): Lowerer | string;
  /** The design's own memory accounting (default: ./metrics.ts `measureGuestMemfd`). */
  readonly measure?: (h: Host) => MemorySample;
}

/** One execution of a workload step (a step inside `repeat: N` executes N times). */
export type StepExec = {
  readonly step: ActionStep;
  /** The 1-based iteration of each enclosing repeat, outermost first (empty outside repeats). */
  readonly iteration: readonly number[];
  /** Its ops: [firstOp, endOp) of the lowering. */
  readonly firstOp: number;
  endOp: number;
  /** The op whose result is the step's outcome. */
  access?: number;
  /** Why the step is not expressible (its outcome is then n/a). */
  na?: string;
  /**
   * The access is a guest hypercall the design's KVM answers in RAX (no exit to the VMM): a
   * negative value there (-EBUSY, -EINVAL) is the step's outcome, as an errno. 'smccc': an arm64
   * guest's SMCCC call, whose non-zero x0 the guest's kernel turns into -EPERM (pKVM's
   * MEM_SHARE / MEM_UNSHARE in `arm_smccc_share_unshare_page()`).
   */
  rax?: boolean | 'smccc';
};

export type Lowering = {
  readonly ops: TraceOp[];
  readonly execs: StepExec[];
};

/** Collects a lowering: ops by workload step (see the module comment). */
export class TraceBuilder {
  readonly ops: TraceOp[] = [];
  readonly execs: StepExec[] = [];
  /** Parsed ops by their JSON (a repeated step emits the same ops many times). */
  private readonly cache = new Map<string, TraceOp>();

  constructor(private readonly file: string) {}

  begin(step: ActionStep, iteration: readonly number[]): void {
    const n = this.ops.length;
    this.execs.push({ step, iteration, firstOp: n, endOp: n });
  }

  private get cur(): StepExec {
    const e = this.execs[this.execs.length - 1];
    if (e === undefined) throw new Error('TraceBuilder: an op outside a step');
    return e;
  }

  /** Emit an op (a trace-format JSON object); an adapter's bad op is an internal error. */
  op(o: Record<string, unknown>): void {
    const key = JSON.stringify(o);
    let op = this.cache.get(key);
    if (op === undefined) {
      op = parseOpObject(this.file, this.cur.step.line, o);
      this.cache.set(key, op);
    }
    this.ops.push(op);
    this.cur.endOp = this.ops.length;
  }

  /** Emit the op whose result is the step's outcome. */
  access(o: Record<string, unknown>): void {
    this.op(o);
    this.cur.access = this.ops.length - 1;
  }

  /** Emit a KVM_RUN whose last hypercall's RAX (0 or -errno) is the step's outcome. */
  accessHypercall(o: Record<string, unknown>): void {
    this.access(o);
    this.cur.rax = true;
  }

  /** Emit a KVM_RUN of SMCCC calls: a non-zero x0 of one is the step's outcome, EPERM. */
  accessSmccc(o: Record<string, unknown>): void {
    this.access(o);
    this.cur.rax = 'smccc';
  }

  /** The step cannot be expressed on this design or policy. */
  na(reason: string): void {
    this.cur.na = reason;
  }
}

/** Lower a workload with one adapter and policy: the ops and the step executions. */
export function lowerWorkload(w: Workload, lowerer: Lowerer): Lowering {
  const b = new TraceBuilder(w.file);
  const walk = (steps: readonly WorkloadStep[], it: readonly number[]): void => {
    for (const s of steps) {
      if (s.kind === 'action') {
        b.begin(s, it);
        lowerer.step(s, b);
      } else for (let i = 1; i <= s.count; i++) walk(s.steps, [...it, i]);
    }
  };
  walk(w.steps, []);
  return { ops: b.ops, execs: b.execs };
}

/** `NAME+0x...`: a handle plus a byte offset, as trace addresses are written. */
export function at(handle: string, off: bigint): string {
  return off === 0n ? handle : `${handle}+0x${off.toString(16)}`;
}

/** A bigint as a JSON number when exact, else a hex string (trace integers accept both). */
export function num(v: bigint): number | string {
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : '0x' + v.toString(16);
}
