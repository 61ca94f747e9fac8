/**
 * The registry of trace ops: every op family module (src/ops/<family>.ts) registers its op
 * descriptors here, and the generic code dispatches through `OPS` (one Map lookup per op).
 *
 * `TraceOp` is the union of the families' op types. `OP_LIST` is in the order of the trace
 * contract's op table (docs/trace-format.md): "did you mean" picks the first of equally close
 * names in this order, so it stays as it was.
 */
import type { ResolvedOp } from '../trace/types.js';
import type { RefusalEnv } from '../backends/kvm/rules.js';
import type { OpCommon, OpSpec } from './spec.js';
import { checkExtension, createVm, enableCap, type VmFamilyOp } from './vm.js';
import {
  createGuestMemfd,
  fallocate,
  fstat,
  ftruncate,
  pread,
  pwrite,
  type GuestMemfdFamilyOp,
} from './guest_memfd.js';
import { setUserMemoryRegion, setUserMemoryRegion2, type MemslotFamilyOp } from './memslots.js';
import { setMemoryAttributes, type AttributesFamilyOp } from './attributes.js';
import { createVcpu, run, type VcpuFamilyOp } from './vcpu.js';
import { preFaultMemory, type PreFaultFamilyOp } from './pre_fault.js';
import { madvise, mmap, mprotect, munmap, peek, poke, type HostMmFamilyOp } from './host_mm.js';
import { close, type FdFamilyOp } from './fd.js';

/** The ops of every family (each op's own fields and its name). */
export type AnyOpBody =
  | VmFamilyOp
  | GuestMemfdFamilyOp
  | MemslotFamilyOp
  | AttributesFamilyOp
  | VcpuFamilyOp
  | PreFaultFamilyOp
  | HostMmFamilyOp
  | FdFamilyOp;

/** A parsed, validated trace op (../shared/spec/trace-format.md): the families' op types. */
export type TraceOp = OpCommon & AnyOpBody;

/** Any op's descriptor, as the generic code calls it. */
export type AnyOpSpec = OpSpec<AnyOpBody>;

/** Every op, in the contract's order. */
export const OP_LIST: readonly AnyOpSpec[] = [
  createVm,
  checkExtension,
  createGuestMemfd,
  setUserMemoryRegion,
  setUserMemoryRegion2,
  setMemoryAttributes,
  createVcpu,
  preFaultMemory,
  run,
  enableCap,
  mmap,
  munmap,
  mprotect,
  madvise,
  fallocate,
  ftruncate,
  pread,
  pwrite,
  fstat,
  close,
  peek,
  poke,
];

/** The descriptor of each op by name. */
export const OPS: ReadonlyMap<string, AnyOpSpec> = new Map(OP_LIST.map((s) => [s.name, s]));

/** The real backend's reason to refuse `op` in `env`, or undefined when it runs it. */
export function kvmRefusalOf(op: ResolvedOp, env: RefusalEnv): string | undefined {
  const s = OPS.get(op.op)!;
  return s.kvmRefusal === undefined ? undefined : s.kvmRefusal(op, env);
}
