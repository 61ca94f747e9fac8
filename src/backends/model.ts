/**
 * The model backend: runs resolved trace ops on a `Host` of the chosen kernel profile.
 *
 * Raw integer fds (never one of the trace's objects, by contract): 0..2 are the process's
 * stdin/stdout/stderr for KVM ioctls (which they answer with ENOTTY, or EINVAL as a guest_memfd);
 * for file syscalls, and for every other raw value, they are an fd that is not open. The real
 * backend applies the same policy so that a trace can never touch the process's own files.
 */
import { Host, type HostOptions } from '../core/host.js';
import { ALL_PARTS } from '../core/all_parts.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { BackendRefusal, type Backend, type OpOutcome, type ResolvedOp } from '../trace/types.js';
import { NotModelled } from '../core/base/not_modelled.js';
import { OPS } from '../ops/registry.js';

export { exitToTrace, fileFd, ioctlFd } from './model_args.js';

export class ModelBackend implements Backend {
  readonly name: string;
  host!: Host;

  constructor(
    readonly profile: KernelProfile,
    readonly opts: HostOptions = {},
  ) {
    this.name = `model:${profile.name}`;
  }

  begin(): number {
    this.host = new Host(this.profile, { ...this.opts, parts: ALL_PARTS });
    return this.host.openDevKvm();
  }

  end(): void {
    // The whole simulated process goes away with the trace.
  }

  exec(op: ResolvedOp): OpOutcome {
    try {
      const spec = OPS.get(op.op)!;
      // An op of a forked child (`proc`): run with the child as `current`.
      const proc = (op as { proc?: number }).proc;
      if (proc !== undefined) return this.host.asProc(proc, () => spec.runModel(this.host, op));
      return spec.runModel(this.host, op);
    } catch (e) {
      // A kernel path the model does not represent, reached by any op (e.g. a punch that would
      // free a page a pKVM guest shares): a refusal naming the op, as the ops that expect one
      // (KVM_RUN, KVM_PRE_FAULT_MEMORY, KVM_MEMORY_ENCRYPT_OP) make it themselves.
      if (e instanceof NotModelled) throw new BackendRefusal(`${op.op}: ${e.message}`);
      throw e;
    }
  }
}
