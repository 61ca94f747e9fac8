/**
 * Where the model says a kernel path is not modelled (`NotModelled`, e.g. KVM_TDX_GET_CPUID),
 * the op refuses to run (a `BackendRefusal` naming the op and the limit) instead of answering, as
 * KVM_MEMORY_ENCRYPT_OP does for its commands.
 */
import { NotModelled } from '../core/base/not_modelled.js';
import { BackendRefusal } from '../trace/base_types.js';

export function refuseNotModelled<T>(op: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof NotModelled) throw new BackendRefusal(`${op}: ${e.message}`);
    throw e;
  }
}
