/**
 * Op family: pre-faulting — KVM_PRE_FAULT_MEMORY.
 */
import { refuseNotModelled } from './not_modelled.js';
import { KVM_IOCTL } from '../core/base/uapi.js';
import { toU64 } from '../core/base/units.js';
import { withAs } from '../trace/field_reader.js';
import { fdText, hex, offsetText, sizeText } from '../trace/text.js';
import type { FdArg } from '../trace/base_types.js';
import { ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import { PAGE, type GenState, type OpInput } from '../fuzz/gen_state.js';
import { genCreateVcpu, type VcpuFamilyOp } from './vcpu.js';
import type { OpFamily, OpSpec } from './spec.js';

export type PreFaultMemoryOp = {
  readonly op: 'KVM_PRE_FAULT_MEMORY';
  readonly vcpu: FdArg;
  readonly gpa: bigint;
  readonly size: bigint;
  readonly flags: bigint;
};
export type PreFaultFamilyOp = PreFaultMemoryOp;

/** The generator state as this family's fuzz generators use it (they push its ops and create vCPUs). */
type Gen = GenState<OpInput<PreFaultFamilyOp | VcpuFamilyOp>>;

// The op's uAPI struct (x86-64, little-endian, as in include/uapi/linux/kvm.h; fields truncated
// like a C assignment, reserved bytes zero).
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** struct kvm_pre_fault_memory (64 bytes): gpa, size, flags, padding[5]. In/out. */
export function packPreFaultMemory(gpa: bigint, size: bigint, flags: bigint): Buffer {
  const b = Buffer.alloc(64);
  b.writeBigUInt64LE(u64(gpa), 0);
  b.writeBigUInt64LE(u64(size), 8);
  b.writeBigUInt64LE(u64(flags), 16);
  return b;
}

export function unpackPreFaultMemory(b: Buffer): { gpa: bigint; size: bigint } {
  return { gpa: b.readBigUInt64LE(0), size: b.readBigUInt64LE(8) };
}

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
    const r = refuseNotModelled('KVM_PRE_FAULT_MEMORY', () =>
      h.kvmPreFaultMemory(ioctlFd(op.vcpu), toU64(op.gpa), toU64(op.size), toU64(op.flags)),
    );
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

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genPreFault(g: Gen): void {
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
export function genPreFaultPage(g: Gen, cpu: string, gpa: bigint): void {
  g.push({
    op: 'KVM_PRE_FAULT_MEMORY',
    vcpu: { kind: 'handle', name: cpu },
    gpa,
    size: PAGE,
    flags: 0n,
  });
}

/** The pre_fault family: its ops and fuzz generators (weights among every family's generators). */
export const PRE_FAULT_FAMILY: OpFamily<PreFaultFamilyOp> = {
  name: 'pre_fault',
  ops: [preFaultMemory],
  generators: [[1, genPreFault]],
};
