/**
 * Op family: memslots — KVM_SET_USER_MEMORY_REGION and KVM_SET_USER_MEMORY_REGION2.
 */
import { KVM_IOCTL } from '../core/base/uapi.js';
import { toU32, toU64 } from '../core/base/units.js';
import { withAs, type FieldReader } from '../trace/field_reader.js';
import { addrText, bitNames, fdText, MEM_FLAGS, offsetText, sizeText } from '../trace/text.js';
import type { AddrArg, FdArg, ResolveOp, ResultLine } from '../trace/base_types.js';
import type { KvmUserspaceMemoryRegion2 } from '../core/kvm/memslots.js';
import { CLOSED_FD, fail, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import { cU64 } from '../backends/kvm/libc.js';
import { addrOf, rangeRefusal, slotRejectedEarly, type RefusalEnv } from '../backends/kvm/rules.js';
import { packMemoryRegion, packMemoryRegion2 } from '../backends/kvm/structs.js';
import {
  CODE_GFN,
  MiB,
  NO_VM,
  PAGE,
  vmArg,
  type GenState,
  type OpInput,
} from '../fuzz/gen_state.js';
import type { HostRange, OpFamily, OpSpec } from './spec.js';

type RegionFields = {
  readonly vm: FdArg;
  readonly slot: bigint;
  readonly flags: bigint;
  readonly guest_phys_addr: bigint;
  readonly memory_size: bigint;
  readonly userspace_addr: AddrArg;
};
export type SetUserMemoryRegionOp = { readonly op: 'KVM_SET_USER_MEMORY_REGION' } & RegionFields;
export type SetUserMemoryRegion2Op = {
  readonly op: 'KVM_SET_USER_MEMORY_REGION2';
} & RegionFields & {
    readonly guest_memfd: FdArg;
    readonly guest_memfd_offset: bigint;
  };
export type MemslotFamilyOp = SetUserMemoryRegionOp | SetUserMemoryRegion2Op;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<MemslotFamilyOp>>;

const REGION_FIELDS = ['vm', 'slot', 'flags', 'guest_phys_addr', 'memory_size', 'userspace_addr'];

/** The fields KVM_SET_USER_MEMORY_REGION and REGION2 share, read in struct order. */
function memoryRegionFields(r: FieldReader): {
  vm: FdArg;
  slot: bigint;
  flags: bigint;
  guest_phys_addr: bigint;
  memory_size: bigint;
  userspace_addr: AddrArg;
} {
  // struct kvm_userspace_memory_region2: __u32 slot, flags; __u64 guest_phys_addr,
  // memory_size, userspace_addr.
  return {
    vm: r.fd('vm'),
    slot: r.int('slot', 32),
    flags: r.int('flags', 32, 0n),
    guest_phys_addr: r.int('guest_phys_addr', 64),
    memory_size: r.int('memory_size', 64),
    userspace_addr: r.addr('userspace_addr'),
  };
}

function renderRegion(op: RegionFields, a: string[]): void {
  a.push(
    fdText(op.vm),
    `slot=${op.slot}`,
    `flags=${bitNames(op.flags, MEM_FLAGS, '0')}`,
    `gpa=${offsetText(op.guest_phys_addr)}`,
    `size=${sizeText(op.memory_size)}`,
    `ua=${addrText(op.userspace_addr)}`,
  );
}

type ResolvedRegion = {
  readonly op: string;
  readonly slot: bigint;
  readonly guest_phys_addr: bigint;
  readonly memory_size: bigint;
  readonly userspace_addr: bigint;
};

function regionTimelineValue(field: string, v: bigint): string | undefined {
  return field === 'flags' ? bitNames(v, MEM_FLAGS, '0') : undefined;
}

function regionRefusal(op: ResolvedRegion, env: RefusalEnv): string | undefined {
  const ua = addrOf(op.userspace_addr);
  if (slotRejectedEarly(op, ua)) return undefined;
  return rangeRefusal(ua, ua + cU64(op.memory_size), `${op.op} userspace_addr`, env);
}

function regionRanges(op: ResolvedRegion): HostRange[] {
  return [
    { start: op.userspace_addr, end: op.userspace_addr + BigInt.asUintN(64, op.memory_size) },
  ];
}

/**
 * The struct as the model's ioctl receives it: every field truncated to its C type (`__u32 slot,
 * flags`, `__u64` addresses and sizes), the resolved userspace_addr, and guest_memfd_offset (0 for
 * the v1 struct, which has none).
 */
function modelRegion(
  op: Omit<ResolveOp<SetUserMemoryRegionOp>, 'op'>,
  guestMemfdOffset: bigint,
): KvmUserspaceMemoryRegion2 {
  return {
    slot: toU32(op.slot),
    flags: toU32(op.flags),
    guest_phys_addr: toU64(op.guest_phys_addr),
    memory_size: toU64(op.memory_size),
    userspace_addr: op.userspace_addr,
    guest_memfd_offset: guestMemfdOffset,
  };
}

export const setUserMemoryRegion: OpSpec<SetUserMemoryRegionOp> = {
  name: 'KVM_SET_USER_MEMORY_REGION',
  fields: REGION_FIELDS,
  parse(r, line, as) {
    return withAs({ line, op: 'KVM_SET_USER_MEMORY_REGION', ...memoryRegionFields(r) }, as);
  },
  renderArgs(op, a) {
    renderRegion(op, a);
  },
  timelineValue: regionTimelineValue,
  runModel(h, op) {
    const region = modelRegion(op, 0n);
    const r = h.kvmSetUserMemoryRegion(ioctlFd(op.vm), region, CLOSED_FD, true);
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const ua = addrOf(op.userspace_addr);
    const buf = packMemoryRegion({ ...op, userspace_addr: ua });
    const r = k.c.ioctlBuf(k.ioctlFd(op.vm), KVM_IOCTL.KVM_SET_USER_MEMORY_REGION, buf);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
  kvmRefusal: regionRefusal,
  hostRanges: regionRanges,
};

export const setUserMemoryRegion2: OpSpec<SetUserMemoryRegion2Op> = {
  name: 'KVM_SET_USER_MEMORY_REGION2',
  fields: [...REGION_FIELDS, 'guest_memfd', 'guest_memfd_offset'],
  parse(r, line, as) {
    // struct kvm_userspace_memory_region2: __u64 guest_memfd_offset; __u32 guest_memfd
    return withAs(
      {
        line,
        op: 'KVM_SET_USER_MEMORY_REGION2',
        ...memoryRegionFields(r),
        guest_memfd: r.fd('guest_memfd', { kind: 'raw', value: 0n }),
        guest_memfd_offset: r.int('guest_memfd_offset', 64, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    renderRegion(op, a);
    if ((op.flags & 4n) !== 0n)
      a.push(`gmem=${fdText(op.guest_memfd)}`, `offset=${offsetText(op.guest_memfd_offset)}`);
  },
  timelineValue: regionTimelineValue,
  runModel(h, op) {
    const region = modelRegion(op, toU64(op.guest_memfd_offset));
    let gfd = CLOSED_FD;
    const g = op.guest_memfd;
    if (g.kind === 'obj') gfd = g.fd < 0 ? CLOSED_FD : g.fd;
    else {
      const u = toU32(g.value);
      gfd = u <= 2n ? Number(u) : CLOSED_FD;
    }
    const r = h.kvmSetUserMemoryRegion(ioctlFd(op.vm), region, gfd, false);
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    const ua = addrOf(op.userspace_addr);
    const buf = packMemoryRegion2({
      ...op,
      userspace_addr: ua,
      guest_memfd: k.gmemField(op.guest_memfd),
    });
    const r = k.c.ioctlBuf(k.ioctlFd(op.vm), KVM_IOCTL.KVM_SET_USER_MEMORY_REGION2, buf);
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
  kvmRefusal: regionRefusal,
  hostRanges: regionRanges,
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators

function slotId(g: Gen): bigint {
  return g.r.weighted<bigint>([
    [12, BigInt(g.r.int(6))],
    [2, 10n],
    [1, g.r.pick([32762n, 32764n, 32767n, 65536n, 65537n, 0xffffn, 0xffff_ffffn, 0x8000_0000n])],
  ]);
}

export function genRegion(g: Gen, v2: boolean): void {
  const vm = g.vms.length > 0 ? g.r.pick(g.vms) : NO_VM;
  const slot = slotId(g);
  const existing = g.slots.filter((s) => s.vm === vm);
  // Often act on an existing slot: delete, move, re-set, flags-only.
  if (existing.length > 0 && g.r.chance(0.35)) {
    const s = g.r.pick(existing);
    const mode = g.r.pick(['delete', 'delete', 'move', 'move', 'same', 'flags'] as const);
    const size = mode === 'delete' ? 0n : s.size;
    // A move wraps like the u64 field it fills.
    const gpa = mode === 'move' ? BigInt.asUintN(64, s.gpa + 0x100_0000n) : s.gpa;
    let flags = s.gmem ? 4n : 0n;
    if (mode === 'flags') flags ^= 1n;
    const ua: AddrArg = s.map
      ? { kind: 'handle', name: s.map.name, offset: 0n }
      : { kind: 'raw', value: 0n };
    emitRegion(
      g,
      v2 || s.gmem !== undefined,
      vm,
      s.slot,
      flags,
      gpa,
      size,
      ua,
      s.gmem ? { kind: 'handle', name: s.gmem.name } : { kind: 'raw', value: -1n },
      0n,
    );
    if (mode === 'delete') g.slots = g.slots.filter((x) => x !== s);
    return;
  }
  const useGmem = v2 && g.gmems.length > 0 && g.r.chance(0.7);
  const gm = useGmem ? g.r.pick(g.gmems.filter((x) => x.vm === vm).concat(g.gmems)) : undefined;
  let flags = useGmem ? 4n : 0n;
  if (g.r.chance(0.12)) flags |= g.r.pick([1n, 2n, 8n, 1n << 16n, 1n << 31n]);
  const size = g.r.weighted<bigint>([
    [10, gm && gm.size > 0n && gm.size < 64n * MiB ? gm.size : BigInt(1 + g.r.int(8)) * PAGE],
    [3, BigInt(1 + g.r.int(4)) * PAGE],
    [1, g.r.pick([0n, 4097n, 1n << 43n, (1n << 64n) - 4096n])],
  ]);
  let gpa = g.gpa();
  // Never cover the contract's code page.
  if (gpa <= CODE_GFN * PAGE && gpa + size > CODE_GFN * PAGE) gpa = 0x1_0000_0000n;
  const m = g.maps.length > 0 && g.r.chance(0.85) ? g.r.pick(g.maps) : undefined;
  // A raw userspace_addr of 0 only for slots within the first 64 KiB (never mapped:
  // mmap_min_addr); the real backend refuses larger ones, which would reach node's memory.
  const lowOk = size > 0n && size <= 0x1_0000n;
  const ua: AddrArg = g.r.weighted<AddrArg>([
    [
      10,
      m
        ? { kind: 'handle', name: m.name, offset: 0n }
        : { kind: 'raw', value: lowOk ? 0n : 1n << 47n },
    ],
    [2, { kind: 'raw', value: lowOk ? 0n : 0x7fff_ffff_f000n }],
    [
      1,
      m
        ? { kind: 'handle', name: m.name, offset: g.r.pick([4096n, 123n, 2n * MiB]) }
        : { kind: 'raw', value: 4096n },
    ],
    [
      1,
      {
        kind: 'raw',
        value: g.r.pick([0x7fff_ffff_f000n, 1n << 47n, (1n << 64n) - 4096n, 0x7fff_ffff_e000n]),
      },
    ],
  ]);
  const gfd: FdArg = gm
    ? g.r.chance(0.9)
      ? { kind: 'handle', name: gm.name }
      : g.anyFd()
    : g.anyFd();
  const off = g.r.weighted<bigint>([
    [10, 0n],
    [3, g.page(4)],
    [1, g.r.pick([123n, -4096n, 1n << 62n])],
  ]);
  const res = emitRegion(g, v2, vm, slot, flags, gpa, size, ua, gfd, off);
  if (res !== undefined && res.ok && slot !== 32763n && size > 0n)
    g.slots.push({
      vm,
      slot,
      gpa,
      size,
      ...(gm ? { gmem: gm } : {}),
      ...(m ? { map: m } : {}),
    });
}

function emitRegion(
  g: Gen,
  v2: boolean,
  vm: string,
  slot: bigint,
  flags: bigint,
  gpa: bigint,
  size: bigint,
  ua: AddrArg,
  gfd: FdArg,
  off: bigint,
): ResultLine | undefined {
  if (slot === 32763n) slot = 32762n;
  const base = {
    vm: vmArg(vm),
    slot,
    flags,
    guest_phys_addr: gpa,
    memory_size: size,
    userspace_addr: ua,
  };
  if (v2)
    return g.push({
      op: 'KVM_SET_USER_MEMORY_REGION2',
      ...base,
      guest_memfd: gfd,
      guest_memfd_offset: off,
    });
  return g.push({ op: 'KVM_SET_USER_MEMORY_REGION', ...base });
}

/**
 * A guest_memfd slot (flags KVM_MEM_GUEST_MEMFD) of `size` at `gpa`, backed by mapping `map` and
 * by `gmem` from `offset` (size 0: the slot's deletion); the result.
 */
export function genGmemSlot(
  g: Gen,
  vm: string,
  slot: bigint,
  gpa: bigint,
  size: bigint,
  map: string,
  gmem: string,
  offset = 0n,
): ResultLine | undefined {
  return g.push({
    op: 'KVM_SET_USER_MEMORY_REGION2',
    vm: { kind: 'handle', name: vm },
    slot,
    flags: 4n,
    guest_phys_addr: gpa,
    memory_size: size,
    userspace_addr: { kind: 'handle', name: map, offset: 0n },
    guest_memfd: { kind: 'handle', name: gmem },
    guest_memfd_offset: offset,
  });
}

/**
 * A memslot of `size` at `gpa` (size 0: its deletion) with `flags`, backed by `ua` and, with
 * KVM_SET_USER_MEMORY_REGION2 (`v2`), by guest_memfd `gmem` from offset 0 (walks); the result.
 */
export function genRegionOf(
  g: Gen,
  v2: boolean,
  vm: string,
  slot: bigint,
  flags: bigint,
  gpa: bigint,
  size: bigint,
  ua: AddrArg,
  gmem: FdArg,
): ResultLine | undefined {
  return emitRegion(g, v2, vm, slot, flags, gpa, size, ua, gmem, 0n);
}

/** The memslots family: its ops and fuzz generators (weights among every family's generators). */
export const MEMSLOT_FAMILY: OpFamily<MemslotFamilyOp> = {
  name: 'memslots',
  ops: [setUserMemoryRegion, setUserMemoryRegion2],
  generators: [
    [3, (g) => genRegion(g, false)],
    [9, (g) => genRegion(g, true)],
  ],
};
