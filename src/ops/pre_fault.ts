/**
 * Op family: pre-faulting — KVM_PRE_FAULT_MEMORY.
 */
import { KVM_IOCTL } from '../core/base/uapi.js';
import { toU64 } from '../core/base/units.js';
import { withAs } from '../trace/field_reader.js';
import { fdText, hex, offsetText, sizeText } from '../trace/text.js';
import type { FdArg } from '../trace/types.js';
import { ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import { packPreFaultMemory, unpackPreFaultMemory } from '../backends/kvm/structs.js';
import { PAGE, type GenState } from '../fuzz/gen_state.js';
import { genCreateVcpu } from './vcpu.js';
import type { OpSpec } from './spec.js';

export type PreFaultMemoryOp = {
  readonly op: 'KVM_PRE_FAULT_MEMORY';
  readonly vcpu: FdArg;
  readonly gpa: bigint;
  readonly size: bigint;
  readonly flags: bigint;
};
export type PreFaultFamilyOp = PreFaultMemoryOp;

export const preFaultMemory: OpSpec<PreFaultMemoryOp> = {
  name: 'KVM_PRE_FAULT_MEMORY',
  fields: ['vcpu', 'gpa', 'size', 'flags'],
  parse(r, line, as) {
    // struct kvm_pre_fault_memory: __u64 gpa, size, flags
    return withAs(
      {
        line,
        op: 'KVM_PRE_FAULT_MEMORY',
        vcpu: r.fd('vcpu'),
        gpa: r.int('gpa', 64),
        size: r.int('size', 64),
        flags: r.int('flags', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.vcpu), `gpa=${offsetText(op.gpa)}`, `size=${sizeText(op.size)}`);
    if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
  },
  runModel(h, op) {
    const r = h.kvmPreFaultMemory(ioctlFd(op.vcpu), toU64(op.gpa), toU64(op.size), toU64(op.flags));
    const remaining = { gpa: r.remaining.gpa, size: r.remaining.size };
    return {
      result:
        r.errno === undefined ? { ok: true, remaining } : { ok: false, errno: r.errno, remaining },
    };
  },
  runKvm(k, op) {
    const buf = packPreFaultMemory(op.gpa, op.size, op.flags);
    const r = k.c.ioctlBuf(k.ioctlFd(op.vcpu), KVM_IOCTL.KVM_PRE_FAULT_MEMORY, buf);
    const remaining = unpackPreFaultMemory(buf);
    return out(r.ret < 0 ? kvmFail(r.errno, { remaining }) : ok({ remaining }));
  },
};

export const PRE_FAULT_OPS = [preFaultMemory] as const;

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genPreFault(g: GenState): void {
  if (g.vcpus.length === 0) return genCreateVcpu(g);
  const gpa = g.r.chance(0.8) ? g.guestGpa() & ~4095n : g.edgeU64();
  const size = g.r.weighted<bigint>([
    [8, BigInt(1 + g.r.int(4)) * PAGE],
    [1, g.edgeU64()],
  ]);
  g.push({
    op: 'KVM_PRE_FAULT_MEMORY',
    vcpu: { kind: 'handle', name: g.r.pick(g.vcpus).name },
    gpa,
    size,
    flags: g.r.chance(0.95) ? 0n : 1n,
  });
}

/** Pre-fault one page at `gpa` on vCPU `cpu` (scenarios). */
export function genPreFaultPage(g: GenState, cpu: string, gpa: bigint): void {
  g.push({
    op: 'KVM_PRE_FAULT_MEMORY',
    vcpu: { kind: 'handle', name: cpu },
    gpa,
    size: PAGE,
    flags: 0n,
  });
}
