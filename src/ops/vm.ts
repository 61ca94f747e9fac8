/**
 * Op family: VMs and capabilities — KVM_CREATE_VM, KVM_CHECK_EXTENSION, KVM_ENABLE_CAP.
 */
import { KVM_IOCTL } from '../core/base/uapi.js';
import { toU32, toU64 } from '../core/base/units.js';
import { checkWidth, parseInteger, withAs } from '../trace/field_reader.js';
import { CAP_NAMES, fdText, hex, VM_TYPES } from '../trace/text.js';
import type { FdArg, ResultLine } from '../trace/base_types.js';
import { fail, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

/** `fd` (an addition; default the "kvm" handle) is the /dev/kvm fd the ioctl goes to. */
export type CreateVmOp = {
  readonly op: 'KVM_CREATE_VM';
  readonly fd: FdArg;
  readonly type: bigint;
};
export type CheckExtensionOp = {
  readonly op: 'KVM_CHECK_EXTENSION';
  readonly fd: FdArg;
  readonly cap: bigint;
};
/** Addition: KVM_ENABLE_CAP on a VM (or vCPU) fd, `args` up to 4 values. */
export type EnableCapOp = {
  readonly op: 'KVM_ENABLE_CAP';
  readonly fd: FdArg;
  readonly cap: bigint;
  readonly flags: bigint;
  readonly args: readonly bigint[];
};
export type VmFamilyOp = CreateVmOp | CheckExtensionOp | EnableCapOp;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<VmFamilyOp>>;

// The op's uAPI struct (x86-64, little-endian, as in include/uapi/linux/kvm.h; fields truncated
// like a C assignment, reserved bytes zero).
const u32 = (v: bigint): number => Number(BigInt.asUintN(32, v));
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** struct kvm_enable_cap (104 bytes): cap u32, flags u32, args[4] u64, pad[64]. */
export function packEnableCap(cap: bigint, flags: bigint, args: readonly bigint[]): Buffer {
  const b = Buffer.alloc(104);
  b.writeUInt32LE(u32(cap), 0);
  b.writeUInt32LE(u32(flags), 4);
  for (let i = 0; i < 4; i++) b.writeBigUInt64LE(u64(args[i] ?? 0n), 8 + 8 * i);
  return b;
}

export const createVm: OpSpec<CreateVmOp> = {
  name: 'KVM_CREATE_VM',
  fields: ['fd', 'type'],
  binds: 'fd',
  parse(r, line, as) {
    // ioctl(kvm, KVM_CREATE_VM, unsigned long type)
    return withAs(
      {
        line,
        op: 'KVM_CREATE_VM',
        fd: r.fd('fd', { kind: 'handle', name: 'kvm' }),
        type: r.int('type', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), `type=${VM_TYPES[Number(op.type)] ?? op.type.toString()}`);
  },
  timelineValue(field, v) {
    if (field !== 'type') return undefined;
    // arm64: the protected-VM bit with the IPA size byte (linux-6.18-arm64-pkvm).
    if ((v & ~0xffn) === 0x8000_0000n)
      return (v & 0xffn) === 0n ? 'ARM_PROTECTED' : `ARM_PROTECTED|${v & 0xffn}`;
    return VM_TYPES[Number(v)] ?? undefined;
  },
  timelineHides(field) {
    return field === 'fd';
  },
  runModel(h, op) {
    const r = h.kvmCreateVm(ioctlFd(op.fd), toU64(op.type));
    return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
  },
  runKvm(k, op) {
    const t = k.st;
    const r = k.c.ioctlInt(k.ioctlFd(op.fd), KVM_IOCTL.KVM_CREATE_VM, op.type);
    if (r.ret < 0) return out(kvmFail(r.errno));
    t.owned.add(r.ret);
    t.vms.set(r.ret, { fd: r.ret, hadVcpu: false, codeSlot: false });
    return out(ok(), { createdFd: r.ret });
  },
};

export const checkExtension: OpSpec<CheckExtensionOp> = {
  name: 'KVM_CHECK_EXTENSION',
  fields: ['fd', 'cap'],
  parse(r, line, as) {
    // ioctl(fd, KVM_CHECK_EXTENSION, long extension)
    return withAs(
      {
        line,
        op: 'KVM_CHECK_EXTENSION',
        fd: r.fd('fd', { kind: 'handle', name: 'kvm' }),
        cap: r.int('cap', 64),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), CAP_NAMES.get(op.cap) ?? op.cap.toString());
  },
  timelineValue(field, v) {
    return field === 'cap' ? CAP_NAMES.get(v) : undefined;
  },
  timelineHides(field, v) {
    const f = v as FdArg;
    return field === 'fd' && f.kind === 'handle' && f.name === 'kvm';
  },
  runModel(h, op) {
    const r = h.kvmCheckExtension(ioctlFd(op.fd), toU64(op.cap));
    return { result: r.ok ? { ok: true, value: r.value } : fail(r) };
  },
  runKvm(k, op) {
    const r = k.c.ioctlInt(k.ioctlFd(op.fd), KVM_IOCTL.KVM_CHECK_EXTENSION, op.cap);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok({ value: BigInt(r.ret) }));
  },
};

export const enableCap: OpSpec<EnableCapOp> = {
  name: 'KVM_ENABLE_CAP',
  fields: ['fd', 'cap', 'flags', 'args'],
  parse(r, line, as) {
    // struct kvm_enable_cap: __u32 cap, flags; __u64 args[4]
    const a: unknown = r.has('args') ? r.obj['args'] : [];
    if (!Array.isArray(a) || a.length > 4)
      return r.fail('args', 'expected a list of at most 4 integers');
    const args = a.map((x: unknown, j: number) => {
      const f = (m: string): never => r.fail(`args[${j}]`, m);
      return checkWidth(parseInteger(x, f), 64, f);
    });
    return withAs(
      {
        line,
        op: 'KVM_ENABLE_CAP',
        fd: r.fd('fd'),
        cap: r.int('cap', 32),
        flags: r.int('flags', 32, 0n),
        args,
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), CAP_NAMES.get(op.cap) ?? op.cap.toString());
    if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
    if (op.args.length > 0) a.push(`args=[${op.args.map(hex).join(', ')}]`);
  },
  timelineValue(field, v) {
    return field === 'cap' ? CAP_NAMES.get(v) : undefined;
  },
  runModel(h, op) {
    const r = h.kvmEnableCap(ioctlFd(op.fd), toU32(op.cap), toU32(op.flags), op.args.map(toU64));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const r = k.c.ioctlBuf(
      k.ioctlFd(op.fd),
      KVM_IOCTL.KVM_ENABLE_CAP,
      packEnableCap(op.cap, op.flags, op.args),
    );
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators (src/fuzz/trace_gen.ts calls them with its state; PRNG calls in fixed order)

export function genCreateVm(g: Gen): void {
  const name = g.name('vm');
  const type = g.r.weighted<bigint>([
    [12, 0n],
    [g.opts.privateMemory === true ? 8 : 1, 1n],
    [1, g.r.pick([2n, 3n, 4n, 5n, 6n, 255n, -1n])],
  ]);
  const res = g.push({
    op: 'KVM_CREATE_VM',
    fd: { kind: 'handle', name: 'kvm' },
    type,
    as: name,
  });
  if (res === undefined || (!res.ok && g.r.chance(0.9))) return;
  g.vms.push(name);
  g.fdNames.push(name);
}

/** KVM_CREATE_VM of a SW_PROTECTED VM; its handle, or undefined when the profile refuses it. */
export function genCreateProtectedVm(g: Gen, prefix: string, type = 1n): string | undefined {
  const vm = g.name(prefix);
  const r = g.push({
    op: 'KVM_CREATE_VM',
    fd: { kind: 'handle', name: 'kvm' },
    type,
    as: vm,
  });
  if (r?.ok !== true) return undefined;
  g.vms.push(vm);
  return vm;
}

/** KVM_CREATE_VM of `type` named `as` (walks that keep their VMs to themselves); the result. */
export function genCreateVmOf(g: Gen, type: bigint, as: string): ResultLine | undefined {
  return g.push({ op: 'KVM_CREATE_VM', fd: { kind: 'handle', name: 'kvm' }, type, as });
}

/** KVM_ENABLE_CAP of `cap` with `args` on VM `vm` (walks: an SNP VMM enabling its exits). */
export function genEnableCapOf(g: Gen, vm: string, cap: bigint, args: readonly bigint[]): void {
  g.push({ op: 'KVM_ENABLE_CAP', fd: { kind: 'handle', name: vm }, cap, flags: 0n, args });
}

export function genCheckExtension(g: Gen): void {
  const cap = g.r.weighted<bigint>([
    [6, BigInt(g.r.pick([3, 10, 118, 201, 231, 232, 233, 234, 235, 236, 244]))],
    [3, BigInt(g.r.int(262))],
    [1, g.r.pick([-1n, 1n << 32n, 100000n])],
  ]);
  g.push({
    op: 'KVM_CHECK_EXTENSION',
    fd: g.r.chance(0.5) ? { kind: 'handle', name: 'kvm' } : g.anyFd(),
    cap,
  });
}

/** The vm family: its ops and fuzz generators (weights among every family's generators). */
export const VM_FAMILY: OpFamily<VmFamilyOp> = {
  name: 'vm',
  ops: [createVm, checkExtension, enableCap],
  generators: [
    [2, genCreateVm],
    [2, genCheckExtension],
  ],
};
