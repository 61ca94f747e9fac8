/**
 * Op family: processes — fork(2), exit(2) and waitpid(2) of the VMM's children
 * (kernel-uapi.md §6.1 forked_accesses: a child maps guest_memfd and sees the parent's
 * conversions). `fork` binds a process handle with `as`; any op's `proc` field names the process
 * that issues it (absent: the VMM). `exit` is a child's (`proc` required); `wait` reaps an exited
 * child named by `child`. What the child inherits and what it may do is in core/host.ts `fork()`
 * and core/mm/fork.ts.
 *
 * The real backend refuses them all: it runs the trace in its own Node process, which cannot fork
 * a child that goes on running trace steps.
 */
import { toS32 } from '../core/base/units.js';
import { withAs } from '../trace/field_reader.js';
import { BackendRefusal } from '../trace/base_types.js';
import { fail } from '../backends/model_args.js';
import { refuseNotModelled } from './not_modelled.js';
import type { OpFamily, OpSpec } from './spec.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';

export type ForkOp = { readonly op: 'fork' };
export type ExitOp = { readonly op: 'exit'; readonly status: bigint };
/** waitpid(child, &wstatus, 0): `child` is a process handle (a pid once resolved). */
export type WaitOp = { readonly op: 'wait'; readonly child: string };
export type ProcessFamilyOp = ForkOp | ExitOp | WaitOp;

/** Why the real backend refuses every op of this family. */
export const FORK_REFUSAL =
  'fork/exit/wait: the real backend runs the trace in one Node process, which cannot fork a child that goes on running trace steps (model only)';

function refuse(): string {
  return FORK_REFUSAL;
}
function noKvm(): never {
  throw new BackendRefusal(FORK_REFUSAL);
}

export const fork: OpSpec<ForkOp> = {
  name: 'fork',
  fields: [],
  binds: 'proc',
  parse(_r, line, as) {
    // pid_t fork(void)
    return withAs({ line, op: 'fork' }, as);
  },
  renderArgs() {},
  runModel(h) {
    const r = h.fork();
    if (!r.ok) return { result: fail(r) };
    return { result: { ok: true }, createdPid: r.value };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const exit: OpSpec<ExitOp> = {
  name: 'exit',
  fields: ['status'],
  parse(r, line, as) {
    // void exit(int status)
    return withAs({ line, op: 'exit', status: r.int('status', 32, 0n) }, as);
  },
  renderArgs(op, a) {
    a.push(String(toS32(op.status)));
  },
  runModel(h, op) {
    const r = refuseNotModelled('exit', () => h.exit(Number(toS32(op.status))));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const wait: OpSpec<WaitOp> = {
  name: 'wait',
  fields: ['child'],
  parse(r, line, as) {
    // pid_t waitpid(pid_t pid, int *wstatus, 0): the result's value is *wstatus.
    return withAs({ line, op: 'wait', child: r.str('child') }, as);
  },
  renderArgs(op, a) {
    a.push(op.child, '[status]', '0');
  },
  runModel(h, op) {
    const pid = (op as unknown as { child: number }).child;
    const r = refuseNotModelled('wait', () => h.waitpid(pid));
    return { result: r.ok ? { ok: true, value: BigInt(r.value) } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators (called by the in-place walk, src/fuzz/trace_gen.ts; the family has no weight)

type Gen = GenState<OpInput<ProcessFamilyOp>>;

/** fork(); the child's handle. */
export function genFork(g: Gen): string {
  const name = g.name('child');
  g.push({ op: 'fork', as: name });
  return name;
}

/** The child exits (status 0) and the parent reaps it. */
export function genExitWait(g: Gen, child: string): void {
  g.push({ op: 'exit', proc: child, status: 0n } as OpInput<ProcessFamilyOp>);
  g.push({ op: 'wait', child });
}

/** The process family: its ops (no generators of its own: the in-place walk draws them). */
export const PROCESS_FAMILY: OpFamily<ProcessFamilyOp> = {
  name: 'process',
  ops: [fork, exit, wait],
  generators: [],
};
