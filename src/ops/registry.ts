/**
 * The registry of trace ops: the list of op families (src/ops/<family>.ts), each of which brings
 * its op descriptors and fuzz generators; the generic code dispatches through `OPS` (one Map
 * lookup per op). An op added to a family needs no change here; a new family is one line in
 * `FAMILIES` and one in `AnyOpBody`.
 *
 * `TraceOp` is the union of the families' op types. The registry stands above the families and
 * the building blocks they use (which never import it, nor TraceOp) and below the modules that
 * dispatch through it (README, Architecture: Op families).
 */
import type { ResolveOp } from '../trace/base_types.js';
import type { RefusalEnv } from '../backends/kvm/rules.js';
import type { OpCommon, OpGenerator, OpSpec } from './spec.js';
import { VM_FAMILY, type VmFamilyOp } from './vm.js';
import { GUEST_MEMFD_FAMILY, type GuestMemfdFamilyOp } from './guest_memfd.js';
import { MEMSLOT_FAMILY, type MemslotFamilyOp } from './memslots.js';
import { ATTRIBUTES_FAMILY, type AttributesFamilyOp } from './attributes.js';
import { VCPU_FAMILY, type VcpuFamilyOp } from './vcpu.js';
import { PRE_FAULT_FAMILY, type PreFaultFamilyOp } from './pre_fault.js';
import { HOST_MM_FAMILY, type HostMmFamilyOp } from './host_mm.js';
import { FD_FAMILY, type FdFamilyOp } from './fd.js';
import { MEM_ENC_FAMILY, type MemEncFamilyOp } from './mem_enc.js';
import { ARM64_FAMILY, type Arm64FamilyOp } from './arm64.js';
import { PIPE_FAMILY, type PipeFamilyOp } from './pipe.js';
import { VFIO_FAMILY, type VfioFamilyOp } from './vfio.js';
import { PROCESS_FAMILY, type ProcessFamilyOp } from './process.js';
import { DESIGNS_FAMILY, type DesignsFamilyOp } from './designs.js';

/** The ops of every family (each op's own fields and its name). */
export type AnyOpBody =
  | VmFamilyOp
  | GuestMemfdFamilyOp
  | MemslotFamilyOp
  | AttributesFamilyOp
  | VcpuFamilyOp
  | PreFaultFamilyOp
  | HostMmFamilyOp
  | FdFamilyOp
  | MemEncFamilyOp
  | Arm64FamilyOp
  | PipeFamilyOp
  | VfioFamilyOp
  | ProcessFamilyOp
  | DesignsFamilyOp;

/** A parsed, validated trace op (../shared/spec/trace-format.md): the families' op types. */
export type TraceOp = OpCommon & AnyOpBody;

/** Any op's descriptor, as the generic code calls it. */
export type AnyOpSpec = OpSpec<AnyOpBody>;

/** Every op family, in the order of the trace contract's op table. */
export const FAMILIES = [
  VM_FAMILY,
  GUEST_MEMFD_FAMILY,
  MEMSLOT_FAMILY,
  ATTRIBUTES_FAMILY,
  VCPU_FAMILY,
  PRE_FAULT_FAMILY,
  HOST_MM_FAMILY,
  FD_FAMILY,
  MEM_ENC_FAMILY,
  ARM64_FAMILY,
  PIPE_FAMILY,
  VFIO_FAMILY,
  PROCESS_FAMILY,
  DESIGNS_FAMILY,
] as const;

/** Every op, family by family ("did you mean" picks the first of equally close names). */
export const OP_LIST: readonly AnyOpSpec[] = FAMILIES.flatMap((f): readonly AnyOpSpec[] => f.ops);

/** Every family's fuzz generators, family by family (src/fuzz/trace_gen.ts picks by weight). */
export const OP_GENERATORS: readonly OpGenerator[] = FAMILIES.flatMap((f) => f.generators);

/** The descriptor of each op by name. */
export const OPS: ReadonlyMap<string, AnyOpSpec> = new Map(OP_LIST.map((s) => [s.name, s]));

/** The real backend's reason to refuse `op` in `env`, or undefined when it runs it. */
export function kvmRefusalOf(op: ResolveOp<TraceOp>, env: RefusalEnv): string | undefined {
  // The backend runs the trace in its own Node process, which cannot fork (a forked Node child
  // runs no JavaScript): no `fork` happened, so no op can be a child's.
  if ((op as { proc?: number }).proc !== undefined)
    return `${op.op}: an op of a forked process (proc) cannot run on /dev/kvm: the backend cannot fork`;
  const s = OPS.get(op.op)!;
  return s.kvmRefusal === undefined ? undefined : s.kvmRefusal(op, env);
}
