/**
 * Op family: VFIO with the type1 IOMMU (core/vfio/vfio.ts). The container and group fds come
 * from `open` ("/dev/vfio/vfio", "/dev/vfio/0"); these ops are the ioctls a VMM makes on them
 * (include/uapi/linux/vfio.h) and the device's DMA through the domain as a model step
 * (`dma_read` / `dma_write`: no syscall; an IOMMU fault is EFAULT).
 *
 * The real backend refuses them all (no /dev/vfio on the development hosts).
 */
import { toU64 } from '../core/base/units.js';
import { bytesToHex } from '../trace/format.js';
import { withAs } from '../trace/field_reader.js';
import { addrText, bitNames, bytesHex, dataText, fdText, type BitTable } from '../trace/text.js';
import { BackendRefusal, type AddrArg, type FdArg } from '../trace/base_types.js';
import { fail, fileFd } from '../backends/model_args.js';
import { genOpen, VFIO_REFUSAL, type OpenOp } from './mem_enc.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

export type VfioGroupSetContainerOp = {
  readonly op: 'VFIO_GROUP_SET_CONTAINER';
  readonly fd: FdArg;
  readonly container: FdArg;
};
export type VfioSetIommuOp = {
  readonly op: 'VFIO_SET_IOMMU';
  readonly fd: FdArg;
  readonly type: bigint;
  /** Model addition: the domain is a private-capable (TEE-IO) device's (0 or 1). */
  readonly tee_io: bigint;
};
export type VfioMapDmaOp = {
  readonly op: 'VFIO_IOMMU_MAP_DMA';
  readonly fd: FdArg;
  readonly argsz: bigint;
  readonly flags: bigint;
  /** `vaddr`: the process address whose pages are pinned and mapped. */
  readonly addr: AddrArg;
  readonly iova: bigint;
  readonly size: bigint;
};
export type VfioUnmapDmaOp = {
  readonly op: 'VFIO_IOMMU_UNMAP_DMA';
  readonly fd: FdArg;
  readonly argsz: bigint;
  readonly flags: bigint;
  readonly iova: bigint;
  readonly size: bigint;
};
export type DmaReadOp = {
  readonly op: 'dma_read';
  readonly fd: FdArg;
  readonly iova: bigint;
  readonly len: bigint;
};
export type DmaWriteOp = {
  readonly op: 'dma_write';
  readonly fd: FdArg;
  readonly iova: bigint;
  readonly bytes: Uint8Array;
};
export type VfioFamilyOp =
  VfioGroupSetContainerOp | VfioSetIommuOp | VfioMapDmaOp | VfioUnmapDmaOp | DmaReadOp | DmaWriteOp;

const MAP_BITS: BitTable = [
  [1n, 'READ'],
  [2n, 'WRITE'],
  [4n, 'VADDR'],
];
const UNMAP_BITS: BitTable = [
  [1n, 'GET_DIRTY_BITMAP'],
  [2n, 'ALL'],
  [4n, 'VADDR'],
];
const hex = (v: bigint): string => `0x${BigInt.asUintN(64, v).toString(16)}`;

function refuse(): string {
  return VFIO_REFUSAL;
}
function noKvm(): never {
  throw new BackendRefusal(VFIO_REFUSAL);
}

export const vfioGroupSetContainer: OpSpec<VfioGroupSetContainerOp> = {
  name: 'VFIO_GROUP_SET_CONTAINER',
  fields: ['fd', 'container'],
  parse(r, line, as) {
    // ioctl(group_fd, VFIO_GROUP_SET_CONTAINER, &container_fd (int32))
    return withAs(
      { line, op: 'VFIO_GROUP_SET_CONTAINER', fd: r.fd('fd'), container: r.fd('container') },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), `[${fdText(op.container)}]`);
  },
  runModel(h, op) {
    const r = h.vfioGroupSetContainer(fileFd(op.fd), fileFd(op.container));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const vfioSetIommu: OpSpec<VfioSetIommuOp> = {
  name: 'VFIO_SET_IOMMU',
  fields: ['fd', 'type', 'tee_io'],
  parse(r, line, as) {
    // ioctl(container_fd, VFIO_SET_IOMMU, type (unsigned long))
    const teeIo = r.int('tee_io', 32, 0n);
    if (teeIo !== 0n && teeIo !== 1n) r.fail('tee_io', '0 or 1');
    return withAs(
      { line, op: 'VFIO_SET_IOMMU', fd: r.fd('fd'), type: r.int('type', 64), tee_io: teeIo },
      as,
    );
  },
  renderArgs(op, a) {
    const t =
      op.type === 1n ? 'VFIO_TYPE1_IOMMU' : op.type === 3n ? 'VFIO_TYPE1v2_IOMMU' : hex(op.type);
    a.push(fdText(op.fd), t);
    if (op.tee_io !== 0n) a.push('tee_io');
  },
  timelineHides(field, v) {
    return field === 'tee_io' && v === 0n;
  },
  runModel(h, op) {
    const r = h.vfioSetIommu(fileFd(op.fd), toU64(op.type), op.tee_io === 1n);
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const vfioMapDma: OpSpec<VfioMapDmaOp> = {
  name: 'VFIO_IOMMU_MAP_DMA',
  fields: ['fd', 'argsz', 'flags', 'addr', 'iova', 'size'],
  parse(r, line, as) {
    // struct vfio_iommu_type1_dma_map { u32 argsz; u32 flags; u64 vaddr; u64 iova; u64 size; }
    return withAs(
      {
        line,
        op: 'VFIO_IOMMU_MAP_DMA',
        fd: r.fd('fd'),
        argsz: r.int('argsz', 32, 32n),
        flags: r.int('flags', 32),
        addr: r.addr('addr'),
        iova: r.int('iova', 64),
        size: r.int('size', 64),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.fd),
      `{flags=${bitNames(BigInt.asUintN(32, op.flags), MAP_BITS, '0', 'VFIO_DMA_MAP_FLAG_')}, vaddr=${addrText(op.addr)}, iova=${hex(op.iova)}, size=${hex(op.size)}}`,
    );
  },
  timelineHides(field, v) {
    return field === 'argsz' && v === 32n;
  },
  runModel(h, op) {
    const r = h.vfioMapDma(fileFd(op.fd), {
      argsz: BigInt.asUintN(32, op.argsz),
      flags: BigInt.asUintN(32, op.flags),
      vaddr: toU64(op.addr),
      iova: toU64(op.iova),
      size: toU64(op.size),
    });
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const vfioUnmapDma: OpSpec<VfioUnmapDmaOp> = {
  name: 'VFIO_IOMMU_UNMAP_DMA',
  fields: ['fd', 'argsz', 'flags', 'iova', 'size'],
  parse(r, line, as) {
    // struct vfio_iommu_type1_dma_unmap { u32 argsz; u32 flags; u64 iova; u64 size; }
    return withAs(
      {
        line,
        op: 'VFIO_IOMMU_UNMAP_DMA',
        fd: r.fd('fd'),
        argsz: r.int('argsz', 32, 24n),
        flags: r.int('flags', 32, 0n),
        iova: r.int('iova', 64),
        size: r.int('size', 64),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.fd),
      `{flags=${bitNames(BigInt.asUintN(32, op.flags), UNMAP_BITS, '0', 'VFIO_DMA_UNMAP_FLAG_')}, iova=${hex(op.iova)}, size=${hex(op.size)}}`,
    );
  },
  timelineHides(field, v) {
    return (field === 'argsz' && v === 24n) || (field === 'flags' && v === 0n);
  },
  runModel(h, op) {
    const r = h.vfioUnmapDma(fileFd(op.fd), {
      argsz: BigInt.asUintN(32, op.argsz),
      flags: BigInt.asUintN(32, op.flags),
      iova: toU64(op.iova),
      size: toU64(op.size),
    });
    // The kernel writes the bytes unmapped back into `size`: the result's value.
    return { result: r.ok ? { ok: true, value: r.value } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const dmaRead: OpSpec<DmaReadOp> = {
  name: 'dma_read',
  fields: ['fd', 'iova', 'len'],
  parse(r, line, as) {
    return withAs(
      { line, op: 'dma_read', fd: r.fd('fd'), iova: r.int('iova', 64), len: r.byteCount('len') },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), hex(op.iova), op.len.toString());
  },
  readBytes(op) {
    return op.len;
  },
  runModel(h, op) {
    const r = h.vfioDma(fileFd(op.fd), toU64(op.iova), Number(op.len), null);
    return { result: r.ok ? { ok: true, value: bytesToHex(r.value!) } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

export const dmaWrite: OpSpec<DmaWriteOp> = {
  name: 'dma_write',
  fields: ['fd', 'iova', 'hex'],
  parse(r, line, as) {
    return withAs(
      { line, op: 'dma_write', fd: r.fd('fd'), iova: r.int('iova', 64), bytes: r.hexBytes('hex') },
      as,
    );
  },
  renderArgs(op, a, style) {
    a.push(fdText(op.fd), hex(op.iova), dataText(bytesHex(op.bytes), style));
  },
  runModel(h, op) {
    const r = h.vfioDma(fileFd(op.fd), toU64(op.iova), op.bytes.length, op.bytes);
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: refuse,
};

/** The VFIO family (no fuzz generator yet). */
export const VFIO_FAMILY: OpFamily<VfioFamilyOp> = {
  name: 'vfio',
  ops: [vfioGroupSetContainer, vfioSetIommu, vfioMapDma, vfioUnmapDma, dmaRead, dmaWrite],
  generators: [],
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators (used by the in-place conversion walk, src/fuzz/trace_gen.ts)

type Gen = GenState<OpInput<VfioFamilyOp | OpenOp>>;

const fdH = (name: string): FdArg => ({ kind: 'handle', name });

/**
 * A VMM's VFIO setup: open the container `c` and group 0 as `grp`, attach, VFIO_SET_IOMMU type1v2
 * (maybe TEE-IO); whether the IOMMU is set.
 */
export function genVfioSetup(g: Gen, c: string, grp: string, teeIo: boolean): boolean {
  if (!genOpen(g, '/dev/vfio/vfio', c)) return false;
  genOpen(g, '/dev/vfio/0', grp);
  g.push({ op: 'VFIO_GROUP_SET_CONTAINER', fd: fdH(grp), container: fdH(c) });
  const r = g.push({ op: 'VFIO_SET_IOMMU', fd: fdH(c), type: 3n, tee_io: teeIo ? 1n : 0n });
  return r?.ok === true;
}

/** VFIO_IOMMU_MAP_DMA of [map+offset, +size) at `iova`, read/write. */
export function genMapDma(
  g: Gen,
  c: string,
  map: string,
  offset: bigint,
  iova: bigint,
  size: bigint,
): void {
  g.push({
    op: 'VFIO_IOMMU_MAP_DMA',
    fd: fdH(c),
    argsz: 32n,
    flags: 3n,
    addr: { kind: 'handle', name: map, offset },
    iova,
    size,
  });
}

/** VFIO_IOMMU_UNMAP_DMA of [iova, +size). */
export function genUnmapDma(g: Gen, c: string, iova: bigint, size: bigint): void {
  g.push({ op: 'VFIO_IOMMU_UNMAP_DMA', fd: fdH(c), argsz: 24n, flags: 0n, iova, size });
}

/** The device's read or write of a few bytes at `iova`. */
export function genDma(g: Gen, c: string, iova: bigint, write: Uint8Array | null): void {
  if (write === null) g.push({ op: 'dma_read', fd: fdH(c), iova, len: 4n });
  else g.push({ op: 'dma_write', fd: fdH(c), iova, bytes: write });
}
