/**
 * Op family: memory attributes — KVM_SET_MEMORY_ATTRIBUTES (the VM ioctl) and
 * KVM_SET_MEMORY_ATTRIBUTES2 (the guest_memfd ioctl of the in-place conversion series,
 * kernel-uapi.md §6.1).
 */
import { KVM_IOCTL } from '../core/base/uapi.js';
import { toU64 } from '../core/base/units.js';
import { withAs } from '../trace/field_reader.js';
import { ATTRIBUTE_BITS, bitNames, fdText, hex, offsetText, sizeText } from '../trace/text.js';
import type { FdArg } from '../trace/base_types.js';
import { fail, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import { PAGE, type GenState, type OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

export type SetMemoryAttributesOp = {
  readonly op: 'KVM_SET_MEMORY_ATTRIBUTES';
  readonly vm: FdArg;
  readonly address: bigint;
  readonly size: bigint;
  readonly attributes: bigint;
  readonly flags: bigint;
};
/**
 * KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd fd: struct kvm_memory_attributes2 with its byte
 * `offset` into the file; `reserved` is reserved[0] (the other ten are zero).
 */
export type SetMemoryAttributes2Op = {
  readonly op: 'KVM_SET_MEMORY_ATTRIBUTES2';
  readonly fd: FdArg;
  readonly offset: bigint;
  readonly size: bigint;
  readonly attributes: bigint;
  readonly flags: bigint;
  readonly reserved: bigint;
};
export type AttributesFamilyOp = SetMemoryAttributesOp | SetMemoryAttributes2Op;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<AttributesFamilyOp>>;

// The op's uAPI struct (x86-64, little-endian, as in include/uapi/linux/kvm.h; fields truncated
// like a C assignment, reserved bytes zero).
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** struct kvm_memory_attributes (32 bytes). */
export function packMemoryAttributes(
  address: bigint,
  size: bigint,
  attributes: bigint,
  flags: bigint,
): Buffer {
  const b = Buffer.alloc(32);
  b.writeBigUInt64LE(u64(address), 0);
  b.writeBigUInt64LE(u64(size), 8);
  b.writeBigUInt64LE(u64(attributes), 16);
  b.writeBigUInt64LE(u64(flags), 24);
  return b;
}

export const setMemoryAttributes: OpSpec<SetMemoryAttributesOp> = {
  name: 'KVM_SET_MEMORY_ATTRIBUTES',
  fields: ['vm', 'address', 'size', 'attributes', 'flags'],
  parse(r, line, as) {
    // struct kvm_memory_attributes: __u64 address, size, attributes, flags
    return withAs(
      {
        line,
        op: 'KVM_SET_MEMORY_ATTRIBUTES',
        vm: r.fd('vm'),
        address: r.int('address', 64),
        size: r.int('size', 64),
        attributes: r.int('attributes', 64),
        flags: r.int('flags', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.vm),
      `gpa=${offsetText(op.address)}`,
      `size=${sizeText(op.size)}`,
      bitNames(op.attributes, ATTRIBUTE_BITS, 'SHARED'),
    );
    if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
  },
  timelineValue(field, v) {
    return field === 'attributes' ? bitNames(v, ATTRIBUTE_BITS, 'SHARED') : undefined;
  },
  runModel(h, op) {
    const r = h.kvmSetMemoryAttributes(ioctlFd(op.vm), {
      address: toU64(op.address),
      size: toU64(op.size),
      attributes: toU64(op.attributes),
      flags: toU64(op.flags),
    });
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const buf = packMemoryAttributes(op.address, op.size, op.attributes, op.flags);
    const r = k.c.ioctlBuf(k.ioctlFd(op.vm), KVM_IOCTL.KVM_SET_MEMORY_ATTRIBUTES, buf);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
};

/**
 * struct kvm_memory_attributes2 (128 bytes): offset (union with address), size, attributes,
 * flags, error_offset (out), reserved[11].
 */
export function packMemoryAttributes2(
  offset: bigint,
  size: bigint,
  attributes: bigint,
  flags: bigint,
  reserved0: bigint,
): Buffer {
  const b = Buffer.alloc(128);
  b.writeBigUInt64LE(u64(offset), 0);
  b.writeBigUInt64LE(u64(size), 8);
  b.writeBigUInt64LE(u64(attributes), 16);
  b.writeBigUInt64LE(u64(flags), 24);
  b.writeBigUInt64LE(0n, 32);
  b.writeBigUInt64LE(u64(reserved0), 40);
  return b;
}

/** The errnos after which kvm_gmem_set_attributes() copies the struct (with error_offset) back. */
const WRITES_BACK = new Set(['EAGAIN', 'ENOMEM']);

export const setMemoryAttributes2: OpSpec<SetMemoryAttributes2Op> = {
  name: 'KVM_SET_MEMORY_ATTRIBUTES2',
  fields: ['fd', 'offset', 'size', 'attributes', 'flags', 'reserved'],
  parse(r, line, as) {
    // struct kvm_memory_attributes2: __u64 offset, size, attributes, flags, error_offset,
    // reserved[11]
    return withAs(
      {
        line,
        op: 'KVM_SET_MEMORY_ATTRIBUTES2',
        fd: r.fd('fd'),
        offset: r.int('offset', 64),
        size: r.int('size', 64),
        attributes: r.int('attributes', 64),
        flags: r.int('flags', 64, 0n),
        reserved: r.int('reserved', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.fd),
      `offset=${offsetText(op.offset)}`,
      `size=${sizeText(op.size)}`,
      bitNames(op.attributes, ATTRIBUTE_BITS, 'SHARED'),
    );
    if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
    if (op.reserved !== 0n) a.push(`reserved=${hex(op.reserved)}`);
  },
  timelineValue(field, v) {
    return field === 'attributes' ? bitNames(v, ATTRIBUTE_BITS, 'SHARED') : undefined;
  },
  runModel(h, op) {
    const reserved = Array.from({ length: 11 }, (_, i) => (i === 0 ? toU64(op.reserved) : 0n));
    const r = h.kvmSetMemoryAttributes2(ioctlFd(op.fd), {
      offset: toU64(op.offset),
      size: toU64(op.size),
      attributes: toU64(op.attributes),
      flags: toU64(op.flags),
      reserved,
    });
    if (r.result.ok) return { result: { ok: true } };
    return {
      result:
        r.errorOffset === undefined
          ? fail(r.result)
          : { ok: false, errno: r.result.errno, error_offset: r.errorOffset },
    };
  },
  runKvm(k, op) {
    const buf = packMemoryAttributes2(op.offset, op.size, op.attributes, op.flags, op.reserved);
    const r = k.c.ioctlBuf(k.ioctlFd(op.fd), KVM_IOCTL.KVM_SET_MEMORY_ATTRIBUTES2, buf);
    if (r.ret >= 0) return out(ok());
    const f = kvmFail(r.errno);
    if (!f.ok && 'errno' in f && WRITES_BACK.has(f.errno))
      return out(kvmFail(r.errno, { error_offset: buf.readBigUInt64LE(32) }));
    return out(f);
  },
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genSetAttributes(g: Gen): void {
  const attributes = g.r.weighted<bigint>([
    [5, 8n],
    [4, 0n],
    [1, g.r.pick([1n, 16n, 9n, 1n << 63n])],
  ]);
  const address = g.r.weighted<bigint>([
    [8, g.slots.length > 0 ? g.r.pick(g.slots).gpa : 0n],
    [2, g.gpa()],
  ]);
  const size = g.r.weighted<bigint>([
    [8, BigInt(1 + g.r.int(16)) * PAGE],
    [1, g.r.pick([0n, 4095n, 1n << 40n, (1n << 64n) - 4096n])],
  ]);
  g.push({
    op: 'KVM_SET_MEMORY_ATTRIBUTES',
    vm: g.vmFd(),
    address,
    size,
    attributes,
    flags: g.r.chance(0.95) ? 0n : 1n,
  });
}

/**
 * KVM_SET_MEMORY_ATTRIBUTES2 on guest_memfd `gmem` (the in-place conversion walk): mostly a valid
 * page range of a file of `size` bytes, PRIVATE or shared; now and then a field out of range,
 * flags or reserved set.
 */
export function genAttributes2Of(g: Gen, gmem: string, size: bigint): void {
  const pages = Number(size / PAGE);
  const first = g.r.int(pages);
  let offset = BigInt(first) * PAGE;
  let len = BigInt(1 + g.r.int(pages - first)) * PAGE;
  let flags = 0n;
  let reserved = 0n;
  let attributes = g.r.chance(0.55) ? 8n : 0n;
  if (g.r.chance(0.1)) {
    switch (g.r.int(6)) {
      case 0:
        flags = 1n;
        break;
      case 1:
        reserved = 1n;
        break;
      case 2:
        attributes = g.r.pick([16n, 9n, 1n << 63n]);
        break;
      case 3:
        offset += 1n;
        break;
      case 4:
        len = g.r.pick([0n, size, (1n << 64n) - PAGE]);
        break;
      default:
        offset = size;
    }
  }
  g.push({
    op: 'KVM_SET_MEMORY_ATTRIBUTES2',
    fd: { kind: 'handle', name: gmem },
    offset,
    size: len,
    attributes,
    flags,
    reserved,
  });
}

/**
 * KVM_SET_MEMORY_ATTRIBUTES2 of [offset, offset + size) of guest_memfd `gmem` to `attributes`
 * (walks: the HugeTLB walk, and a VMM's own conversion in the SNP and TDX walks on profiles with
 * attributes in guest_memfd).
 */
export function genAttributes2At(
  g: Gen,
  gmem: string,
  offset: bigint,
  size: bigint,
  attributes: bigint,
): void {
  g.push({
    op: 'KVM_SET_MEMORY_ATTRIBUTES2',
    fd: { kind: 'handle', name: gmem },
    offset,
    size,
    attributes,
    flags: 0n,
    reserved: 0n,
  });
}

/** Set [gpa, gpa+size) of `vm` to `attributes` (scenarios). */
export function genAttributesOf(
  g: Gen,
  vm: string,
  address: bigint,
  size: bigint,
  attributes: bigint,
): void {
  g.push({
    op: 'KVM_SET_MEMORY_ATTRIBUTES',
    vm: { kind: 'handle', name: vm },
    address,
    size,
    attributes,
    flags: 0n,
  });
}

/** The attributes family: its ops and fuzz generators (weights among every family's generators). */
export const ATTRIBUTES_FAMILY: OpFamily<AttributesFamilyOp> = {
  name: 'attributes',
  ops: [setMemoryAttributes, setMemoryAttributes2],
  generators: [[2, genSetAttributes]],
};
