/**
 * Op family: the arm64 vCPU setup ioctls — KVM_ARM_PREFERRED_TARGET on a VM fd, KVM_ARM_VCPU_INIT
 * and KVM_ARM_VCPU_FINALIZE on a vCPU fd (arch/arm64/kvm/arm.c v6.18: `kvm_arch_vm_ioctl()`,
 * `kvm_arch_vcpu_ioctl()`; uAPI: include/uapi/linux/kvm.h and arch/arm64/include/uapi/asm/kvm.h).
 * An arm64 vCPU runs nothing before KVM_ARM_VCPU_INIT (KVM_RUN is -ENOEXEC), so a trace on
 * `linux-6.18-arm64-pkvm` needs these ops before its first KVM_RUN (trace-format.md, "arm64 /
 * pKVM").
 *
 * The model runs them through `Host.kvmArchIoctl()` (arm64's arch ioctls,
 * src/core/arch/arm64/ops.ts; on an x86 profile, x86's unknown-ioctl answers). The kvm backend
 * issues them for real: on an x86 /dev/kvm the VM ioctl reaches x86's `kvm_arch_vm_ioctl()`,
 * whose default is -ENOTTY, and the vCPU ioctls x86's `kvm_arch_vcpu_ioctl()`, whose default is
 * -EINVAL; nothing is read or written there, so running them is harmless and `gmemlab diff`
 * compares the model's x86 answers with the kernel's.
 *
 * `struct kvm_vcpu_init` is `__u32 target; __u32 features[7];` (32 bytes): `features` is a bitmap
 * of feature bit numbers (KVM_ARM_VCPU_POWER_OFF = 0, ...), which a trace writes as a list of
 * feature names or bit numbers; KVM_ARM_PREFERRED_TARGET's result carries the struct the kernel
 * filled in the same form.
 */
import {
  KVM_ARM_IOCTL,
  KVM_ARM_TARGET_GENERIC_V8,
  KVM_VCPU_INIT_SIZE,
} from '../core/base/uapi_arm64.js';
import { checkWidth, parseInteger, withAs, type FieldReader } from '../trace/field_reader.js';
import { didYouMean, quote } from '../trace/suggest.js';
import { fdText } from '../trace/text.js';
import type { FdArg, ResultLine, VcpuInitResult } from '../trace/base_types.js';
import { fail, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

/** `KVM_ARM_TARGET_*` (arch/arm64/include/uapi/asm/kvm.h): the names a `target` may use. */
export const ARM_TARGETS: Readonly<Record<string, number>> = {
  AEM_V8: 0,
  FOUNDATION_V8: 1,
  CORTEX_A57: 2,
  XGENE_POTENZA: 3,
  CORTEX_A53: 4,
  GENERIC_V8: KVM_ARM_TARGET_GENERIC_V8,
};

/** `KVM_ARM_VCPU_*` feature bit numbers (v6.18: 0..8), by the name after the prefix. */
export const ARM_FEATURES: Readonly<Record<string, number>> = {
  POWER_OFF: 0,
  EL1_32BIT: 1,
  PSCI_0_2: 2,
  PMU_V3: 3,
  SVE: 4,
  PTRAUTH_ADDRESS: 5,
  PTRAUTH_GENERIC: 6,
  HAS_EL2: 7,
  HAS_EL2_E2H0: 8,
};
const FEATURE_NAMES: readonly string[] = Object.keys(ARM_FEATURES);
const FEATURE_BY_BIT: ReadonlyMap<number, string> = new Map(
  Object.entries(ARM_FEATURES).map(([k, v]) => [v, k]),
);

/** Bits of `features[7]`: 224. */
const FEATURE_BITS = 32 * 7;

/** A feature as the trace writes it: its name (known bits) or its bit number. */
export type ArmFeature = string | number;

export type ArmPreferredTargetOp = {
  readonly op: 'KVM_ARM_PREFERRED_TARGET';
  readonly vm: FdArg;
};
export type ArmVcpuInitOp = {
  readonly op: 'KVM_ARM_VCPU_INIT';
  readonly vcpu: FdArg;
  /** `kvm_vcpu_init.target` (u32). */
  readonly target: bigint;
  /** The bits set in `kvm_vcpu_init.features[]`, ascending, each once: names for known bits. */
  readonly features: readonly ArmFeature[];
};
export type ArmVcpuFinalizeOp = {
  readonly op: 'KVM_ARM_VCPU_FINALIZE';
  readonly vcpu: FdArg;
  /** The `int` the argument points to: the feature to finalize (only SVE is finalizable). */
  readonly feature: bigint;
};
export type Arm64FamilyOp = ArmPreferredTargetOp | ArmVcpuInitOp | ArmVcpuFinalizeOp;

/** A feature's canonical form: its name when the bit has one, else its number. */
function featureOf(bit: number): ArmFeature {
  return FEATURE_BY_BIT.get(bit) ?? bit;
}

/** A name with or without the uAPI prefix, or undefined. */
function lookup(
  table: Readonly<Record<string, number>>,
  prefix: string,
  s: string,
): number | undefined {
  const k = s.startsWith(prefix) ? s.slice(prefix.length) : s;
  return Object.prototype.hasOwnProperty.call(table, k) ? table[k] : undefined;
}

/** One feature bit: a name (`SVE`, `KVM_ARM_VCPU_SVE`) or a bit number 0..223. */
function featureBit(r: FieldReader, field: string, v: unknown): number {
  const f = (m: string): never => r.fail(field, m);
  if (typeof v === 'string' && !/^(0x[0-9a-fA-F]+|-?\d+)$/.test(v)) {
    const bit = lookup(ARM_FEATURES, 'KVM_ARM_VCPU_', v);
    if (bit !== undefined) return bit;
    return f(
      `unknown feature ${quote(v)}${didYouMean(v.replace(/^KVM_ARM_VCPU_/, ''), FEATURE_NAMES) || ` (features: ${FEATURE_NAMES.join(', ')}, or a bit number)`}`,
    );
  }
  const n = parseInteger(v, f, false);
  if (n < 0n || n >= BigInt(FEATURE_BITS))
    f(`${n}: a feature is a bit number of features[7] (0..${FEATURE_BITS - 1})`);
  return Number(n);
}

/** `features`: a list of feature names or bit numbers (default: none). Sorted, each bit once. */
function parseFeatures(r: FieldReader): ArmFeature[] {
  if (!r.has('features')) return [];
  const v = r.obj['features'];
  if (!Array.isArray(v))
    r.fail(
      'features',
      'expected a list of feature names or bit numbers, such as ["PSCI_0_2", "SVE"] (not a bitmask)',
    );
  const bits = new Set<number>();
  (v as unknown[]).forEach((x, i) => bits.add(featureBit(r, `features[${i}]`, x)));
  return [...bits].sort((a, b) => a - b).map(featureOf);
}

/** The bit number of a parsed feature. */
function bitOf(f: ArmFeature): number {
  return typeof f === 'number' ? f : ARM_FEATURES[f]!;
}

/** A target: a `KVM_ARM_TARGET_*` name (with or without the prefix) or a u32. */
function parseTarget(r: FieldReader): bigint {
  if (!r.has('target')) return BigInt(KVM_ARM_TARGET_GENERIC_V8);
  const v = r.obj['target'];
  if (typeof v === 'string') {
    const t = lookup(ARM_TARGETS, 'KVM_ARM_TARGET_', v);
    if (t !== undefined) return BigInt(t);
    if (/^[A-Z][A-Z0-9_]*$/.test(v) && !/^KVM_/.test(v))
      r.fail(
        'target',
        `unknown target ${quote(v)}${didYouMean(v, Object.keys(ARM_TARGETS)) || ` (targets: ${Object.keys(ARM_TARGETS).join(', ')}, or a number)`}`,
      );
  }
  const f = (m: string): never => r.fail('target', m);
  const t = parseInteger(v, f);
  if (t < 0n) f(`${t}: the target is a __u32 (0 .. 2^32-1)`);
  return checkWidth(t, 32, f);
}

/** The feature to finalize: a feature name or an int. */
function parseFeature(r: FieldReader): bigint {
  if (!r.has('feature')) r.fail('feature', 'missing required field (the feature to finalize: SVE)');
  const v = r.obj['feature'];
  if (typeof v === 'string' && !/^(0x[0-9a-fA-F]+|-?\d+)$/.test(v)) {
    const bit = lookup(ARM_FEATURES, 'KVM_ARM_VCPU_', v);
    if (bit === undefined)
      r.fail(
        'feature',
        `unknown feature ${quote(v)}${didYouMean(v.replace(/^KVM_ARM_VCPU_/, ''), FEATURE_NAMES) || ` (features: ${FEATURE_NAMES.join(', ')})`}`,
      );
    return BigInt(bit);
  }
  // get_user(what, (const int __user *)argp): an int.
  const f = (m: string): never => r.fail('feature', m);
  const n = parseInteger(v, f, false);
  if (n < -(1n << 31n) || n >= 1n << 31n) f(`${n} does not fit the int the argument points to`);
  return n;
}

/** `struct kvm_vcpu_init` (little-endian): target, features[7]. */
export function packVcpuInit(target: bigint, features: readonly ArmFeature[]): Uint8Array {
  const b = new Uint8Array(KVM_VCPU_INIT_SIZE);
  const v = new DataView(b.buffer);
  v.setUint32(0, Number(BigInt.asUintN(32, target)), true);
  for (const f of features) {
    const bit = bitOf(f);
    const at = 4 + 4 * (bit >> 5);
    v.setUint32(at, (v.getUint32(at, true) | (1 << (bit & 31))) >>> 0, true);
  }
  return b;
}

/** The target and feature list of a `struct kvm_vcpu_init` the kernel filled. */
export function unpackVcpuInit(b: Uint8Array): VcpuInitResult {
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const features: ArmFeature[] = [];
  for (let w = 0; w < 7; w++) {
    const word = v.getUint32(4 + 4 * w, true);
    for (let i = 0; i < 32; i++) if ((word >>> i) & 1) features.push(featureOf(32 * w + i));
  }
  return { target: BigInt(v.getUint32(0, true)), features };
}

/** The strace text of a feature list: `[PSCI_0_2, SVE]`. */
function featuresText(fs: readonly ArmFeature[]): string {
  return `[${fs.map((f) => (typeof f === 'number' ? `bit ${f}` : f)).join(', ')}]`;
}

/** The name of a target, or its number. */
export function targetText(t: bigint): string {
  for (const [k, v] of Object.entries(ARM_TARGETS)) if (BigInt(v) === t) return k;
  return t.toString();
}

/** The name of a finalize feature, or its number. */
function featureText(f: bigint): string {
  return f >= 0n && f < BigInt(FEATURE_BITS) ? String(featureOf(Number(f))) : f.toString();
}

export const armPreferredTarget: OpSpec<ArmPreferredTargetOp> = {
  name: 'KVM_ARM_PREFERRED_TARGET',
  fields: ['vm'],
  parse(r, line, as) {
    // ioctl(vm, KVM_ARM_PREFERRED_TARGET, struct kvm_vcpu_init *): the kernel fills the struct.
    return withAs({ line, op: 'KVM_ARM_PREFERRED_TARGET', vm: r.fd('vm') }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.vm));
  },
  runModel(h, op) {
    const buf = new Uint8Array(KVM_VCPU_INIT_SIZE);
    const r = h.kvmArchIoctl(ioctlFd(op.vm), KVM_ARM_IOCTL.KVM_ARM_PREFERRED_TARGET, {
      kind: 'buffer',
      bytes: buf,
    });
    return { result: r.ok ? { ok: true, init: unpackVcpuInit(buf) } : fail(r) };
  },
  runKvm(k, op) {
    const buf = Buffer.alloc(KVM_VCPU_INIT_SIZE);
    const r = k.c.ioctlBuf(k.ioctlFd(op.vm), KVM_ARM_IOCTL.KVM_ARM_PREFERRED_TARGET, buf);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok({ init: unpackVcpuInit(new Uint8Array(buf)) }));
  },
};

export const armVcpuInit: OpSpec<ArmVcpuInitOp> = {
  name: 'KVM_ARM_VCPU_INIT',
  fields: ['vcpu', 'target', 'features'],
  parse(r, line, as) {
    // ioctl(vcpu, KVM_ARM_VCPU_INIT, const struct kvm_vcpu_init *): __u32 target, features[7]
    return withAs(
      {
        line,
        op: 'KVM_ARM_VCPU_INIT',
        vcpu: r.fd('vcpu'),
        target: parseTarget(r),
        features: parseFeatures(r),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.vcpu),
      `{target=${targetText(op.target)}, features=${featuresText(op.features)}}`,
    );
  },
  timelineValue(field, v) {
    return field === 'target' ? targetText(v) : undefined;
  },
  runModel(h, op) {
    const r = h.kvmArchIoctl(ioctlFd(op.vcpu), KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, {
      kind: 'buffer',
      bytes: packVcpuInit(op.target, op.features),
    });
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const buf = Buffer.from(packVcpuInit(op.target, op.features));
    const r = k.c.ioctlBuf(k.ioctlFd(op.vcpu), KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, buf);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
};

export const armVcpuFinalize: OpSpec<ArmVcpuFinalizeOp> = {
  name: 'KVM_ARM_VCPU_FINALIZE',
  fields: ['vcpu', 'feature'],
  parse(r, line, as) {
    // ioctl(vcpu, KVM_ARM_VCPU_FINALIZE, const int *feature)
    return withAs(
      { line, op: 'KVM_ARM_VCPU_FINALIZE', vcpu: r.fd('vcpu'), feature: parseFeature(r) },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.vcpu), `[${featureText(op.feature)}]`);
  },
  timelineValue(field, v) {
    return field === 'feature' ? featureText(v) : undefined;
  },
  runModel(h, op) {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setInt32(0, Number(BigInt.asIntN(32, op.feature)), true);
    const r = h.kvmArchIoctl(ioctlFd(op.vcpu), KVM_ARM_IOCTL.KVM_ARM_VCPU_FINALIZE, {
      kind: 'buffer',
      bytes: b,
    });
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const buf = Buffer.alloc(4);
    buf.writeInt32LE(Number(BigInt.asIntN(32, op.feature)), 0);
    const r = k.c.ioctlBuf(k.ioctlFd(op.vcpu), KVM_ARM_IOCTL.KVM_ARM_VCPU_FINALIZE, buf);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators (the pKVM walk, src/fuzz/pkvm_walk.ts, calls them)

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<Arm64FamilyOp>>;

/** KVM_ARM_VCPU_INIT of vCPU `cpu` with `features` (canonical: names, numbers for unknown bits). */
export function genArmVcpuInit(
  g: Gen,
  cpu: string,
  target: bigint,
  features: readonly ArmFeature[],
): ResultLine | undefined {
  return g.push({ op: 'KVM_ARM_VCPU_INIT', vcpu: { kind: 'handle', name: cpu }, target, features });
}

/** KVM_ARM_VCPU_FINALIZE of vCPU `cpu` for `feature` (SVE: 4). */
export function genArmVcpuFinalize(g: Gen, cpu: string, feature: bigint): ResultLine | undefined {
  return g.push({ op: 'KVM_ARM_VCPU_FINALIZE', vcpu: { kind: 'handle', name: cpu }, feature });
}

/**
 * The arm64 family: its ops, and no generators in the weights loop (arm64 VMs come from the pKVM
 * walk, on profiles with the pkvm platform only).
 */
export const ARM64_FAMILY: OpFamily<Arm64FamilyOp> = {
  name: 'arm64',
  ops: [armPreferredTarget, armVcpuInit, armVcpuFinalize],
  generators: [],
};
