/**
 * Op family: the uAPI of the historical private-memory designs (core/profiles/designs.ts) where
 * it differs from the kernels' the other families model:
 *
 * - design-2023-restrictedmem (UPM v10, Chao Peng, Dec 2022): `memfd_restricted(flags)`, the
 *   system call that creates a restricted fd; `KVM_SET_USER_MEMORY_REGION_EXT`, the
 *   KVM_SET_USER_MEMORY_REGION ioctl (same number, `_IOW(KVMIO, 0x46, struct
 *   kvm_userspace_memory_region)`) given the series' `struct kvm_userspace_memory_region_ext`
 *   {region; __u64 restricted_offset; __u32 restricted_fd; __u32 pad1; __u64 pad2[14]}, which
 *   KVM reads in full only when the flags have KVM_MEM_PRIVATE; and `memory_failure`, a model
 *   step (no syscall): a hardware memory error on the page at `offset` of a restricted fd or a
 *   guest_memfd, as memory_failure() reaches the file's error handler.
 * - design-2020-separate-mm (Andy Lutomirski's reply in the RFCv2 thread, Oct 2020; the uAPI is
 *   the model's own reading of his `address_space_create` / `KVM_MAP_ADDRESS_SPACE` sketch):
 *   `address_space_create(flags)`, an fd owning an address space of no process;
 *   `address_space_mmap(fd, as_addr, length, prot, flags, src)`, a fixed mapping at `as_addr` of
 *   that address space, private anonymous memory (`src` null) or the caller's shared memory at
 *   `src`; `address_space_munmap(fd, as_addr, length)`; and the VM ioctl
 *   `KVM_MAP_ADDRESS_SPACE(fd)`, after which KVM resolves every memslot's userspace_addr there.
 *   `as_addr` is an address of the other address space, so it is a plain integer: the trace's
 *   mapping handles name the VMM's own addresses.
 * - design-2020-protnone-follkvm's uAPI is three guest hypercalls (KVM_RUN's `hypercall` step
 *   with nr 12, 13, 14) and needs no op of its own.
 *
 * The real backend refuses them: the series never landed, so no kernel here has them (and a
 * memory error cannot be injected from a trace).
 */
import { toS32, toU32, toU64 } from '../core/base/units.js';
import { withAs } from '../trace/field_reader.js';
import {
  addrText,
  bitNames,
  fdText,
  lengthText,
  MAP_BITS,
  offsetText,
  PROT_BITS,
  sizeText,
  type BitTable,
} from '../trace/text.js';
import { BackendRefusal, type AddrArg, type FdArg } from '../trace/base_types.js';
import { CLOSED_FD, fail, fileFd, ioctlFd } from '../backends/model_args.js';
import { refuseNotModelled } from './not_modelled.js';
import type { OpFamily, OpSpec } from './spec.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';
import type { ResultLine } from '../trace/base_types.js';

export type MemfdRestrictedOp = { readonly op: 'memfd_restricted'; readonly flags: bigint };
export type SetUserMemoryRegionExtOp = {
  readonly op: 'KVM_SET_USER_MEMORY_REGION_EXT';
  readonly vm: FdArg;
  readonly slot: bigint;
  readonly flags: bigint;
  readonly guest_phys_addr: bigint;
  readonly memory_size: bigint;
  readonly userspace_addr: AddrArg;
  readonly restricted_offset: bigint;
  readonly restricted_fd: FdArg;
};
export type MemoryFailureOp = {
  readonly op: 'memory_failure';
  readonly fd: FdArg;
  readonly offset: bigint;
};
export type AddressSpaceCreateOp = { readonly op: 'address_space_create'; readonly flags: bigint };
export type AddressSpaceMmapOp = {
  readonly op: 'address_space_mmap';
  readonly fd: FdArg;
  readonly as_addr: bigint;
  readonly length: bigint;
  readonly prot: bigint;
  readonly flags: bigint;
  /** null: private anonymous memory. */
  readonly src: AddrArg | null;
};
export type AddressSpaceMunmapOp = {
  readonly op: 'address_space_munmap';
  readonly fd: FdArg;
  readonly as_addr: bigint;
  readonly length: bigint;
};
export type KvmMapAddressSpaceOp = {
  readonly op: 'KVM_MAP_ADDRESS_SPACE';
  readonly vm: FdArg;
  readonly fd: FdArg;
};
export type DesignsFamilyOp =
  | MemfdRestrictedOp
  | SetUserMemoryRegionExtOp
  | MemoryFailureOp
  | AddressSpaceCreateOp
  | AddressSpaceMmapOp
  | AddressSpaceMunmapOp
  | KvmMapAddressSpaceOp;

/** The v10 memslot flags (KVM_MEM_PRIVATE is the bit KVM_MEM_GUEST_MEMFD took later). */
const EXT_FLAGS: BitTable = [
  [1n, 'LOG_DIRTY_PAGES'],
  [2n, 'READONLY'],
  [4n, 'PRIVATE'],
];

const NEVER_LANDED =
  'a design that never landed upstream (design-2023-restrictedmem): no kernel here has it; model backend only';

function noKvm(): never {
  throw new BackendRefusal(NEVER_LANDED);
}

export const memfdRestrictedOp: OpSpec<MemfdRestrictedOp> = {
  name: 'memfd_restricted',
  fields: ['flags'],
  binds: 'fd',
  parse(r, line, as) {
    // int memfd_restricted(unsigned int flags)
    return withAs({ line, op: 'memfd_restricted', flags: r.int('flags', 32, 0n) }, as);
  },
  renderArgs(op, a) {
    a.push(op.flags === 0n ? '0' : `0x${BigInt.asUintN(32, op.flags).toString(16)}`);
  },
  runModel(h, op) {
    const r = h.memfdRestricted(BigInt.asUintN(32, op.flags));
    return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: () => NEVER_LANDED,
};

export const setUserMemoryRegionExt: OpSpec<SetUserMemoryRegionExtOp> = {
  name: 'KVM_SET_USER_MEMORY_REGION_EXT',
  fields: [
    'vm',
    'slot',
    'flags',
    'guest_phys_addr',
    'memory_size',
    'userspace_addr',
    'restricted_offset',
    'restricted_fd',
  ],
  parse(r, line, as) {
    // struct kvm_userspace_memory_region_ext: struct kvm_userspace_memory_region region
    // (__u32 slot, flags; __u64 guest_phys_addr, memory_size, userspace_addr);
    // __u64 restricted_offset; __u32 restricted_fd.
    return withAs(
      {
        line,
        op: 'KVM_SET_USER_MEMORY_REGION_EXT',
        vm: r.fd('vm'),
        slot: r.int('slot', 32),
        flags: r.int('flags', 32, 0n),
        guest_phys_addr: r.int('guest_phys_addr', 64),
        memory_size: r.int('memory_size', 64),
        userspace_addr: r.addr('userspace_addr'),
        restricted_offset: r.int('restricted_offset', 64, 0n),
        restricted_fd: r.fd('restricted_fd', { kind: 'raw', value: 0n }),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.vm),
      `slot=${op.slot}`,
      `flags=${bitNames(op.flags, EXT_FLAGS, '0')}`,
      `gpa=${offsetText(op.guest_phys_addr)}`,
      `size=${sizeText(op.memory_size)}`,
      `ua=${addrText(op.userspace_addr)}`,
    );
    if ((op.flags & 4n) !== 0n)
      a.push(
        `restricted_fd=${fdText(op.restricted_fd)}`,
        `restricted_offset=${offsetText(op.restricted_offset)}`,
      );
  },
  timelineValue(field, v) {
    return field === 'flags' ? bitNames(v, EXT_FLAGS, '0') : undefined;
  },
  runModel(h, op) {
    let rfd = CLOSED_FD;
    const g = op.restricted_fd;
    if (g.kind === 'obj') rfd = g.fd < 0 ? CLOSED_FD : g.fd;
    else {
      const u = toU32(g.value);
      rfd = u <= 2n ? Number(u) : CLOSED_FD;
    }
    const r = refuseNotModelled('KVM_SET_USER_MEMORY_REGION_EXT', () =>
      h.kvmSetUserMemoryRegionExt(
        ioctlFd(op.vm),
        {
          slot: toU32(op.slot),
          flags: toU32(op.flags),
          guest_phys_addr: toU64(op.guest_phys_addr),
          memory_size: toU64(op.memory_size),
          userspace_addr: op.userspace_addr,
        },
        toU64(op.restricted_offset),
        rfd,
      ),
    );
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvm,
  kvmRefusal: () => NEVER_LANDED,
};

export const memoryFailureOp: OpSpec<MemoryFailureOp> = {
  name: 'memory_failure',
  fields: ['fd', 'offset'],
  parse(r, line, as) {
    return withAs({ line, op: 'memory_failure', fd: r.fd('fd'), offset: r.int('offset', 64) }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), offsetText(op.offset));
  },
  runModel(h, op) {
    const r = h.memoryFailure(fileFd(op.fd), toU64(op.offset));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(): never {
    throw new BackendRefusal('memory_failure: a model step (a hardware memory error)');
  },
  kvmRefusal: () => 'memory_failure: a model step (a hardware memory error); model backend only',
};

const SEPARATE_MM_NEVER_LANDED =
  'a design that never had a series (design-2020-separate-mm, uAPI invented after its sketch): no kernel here has it; model backend only';

function noKvmSeparateMm(): never {
  throw new BackendRefusal(SEPARATE_MM_NEVER_LANDED);
}

export const addressSpaceCreateOp: OpSpec<AddressSpaceCreateOp> = {
  name: 'address_space_create',
  fields: ['flags'],
  binds: 'fd',
  parse(r, line, as) {
    // int address_space_create(unsigned int flags)
    return withAs({ line, op: 'address_space_create', flags: r.int('flags', 32, 0n) }, as);
  },
  renderArgs(op, a) {
    a.push(op.flags === 0n ? '0' : `0x${BigInt.asUintN(32, op.flags).toString(16)}`);
  },
  runModel(h, op) {
    const r = h.addressSpaceCreate(BigInt.asUintN(32, op.flags));
    return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
  },
  runKvm: noKvmSeparateMm,
  kvmRefusal: () => SEPARATE_MM_NEVER_LANDED,
};

export const addressSpaceMmapOp: OpSpec<AddressSpaceMmapOp> = {
  name: 'address_space_mmap',
  fields: ['fd', 'as_addr', 'length', 'prot', 'flags', 'src'],
  parse(r, line, as) {
    // int address_space_mmap(int as_fd, unsigned long as_addr, size_t length, int prot,
    //                        int flags, void *src)
    const src = r.obj['src'];
    return withAs(
      {
        line,
        op: 'address_space_mmap',
        fd: r.fd('fd'),
        as_addr: r.int('as_addr', 64),
        length: r.int('length', 64),
        prot: r.int('prot', 32),
        flags: r.int('flags', 32),
        src: src === undefined || src === null ? null : r.addr('src'),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.fd),
      offsetText(op.as_addr),
      lengthText(op.length),
      bitNames(op.prot, PROT_BITS, 'PROT_NONE', 'PROT_'),
      bitNames(op.flags, MAP_BITS, '0', 'MAP_'),
      op.src === null ? 'NULL' : addrText(op.src),
    );
  },
  timelineValue(field, v) {
    if (field === 'prot') return bitNames(v, PROT_BITS, 'NONE');
    if (field === 'flags') return bitNames(v, MAP_BITS, '0');
    return undefined;
  },
  runModel(h, op) {
    const r = h.addressSpaceMmap(
      fileFd(op.fd),
      toU64(op.as_addr),
      toU64(op.length),
      Number(toS32(op.prot)),
      Number(toS32(op.flags)),
      op.src === null ? null : toU64(op.src),
    );
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvmSeparateMm,
  kvmRefusal: () => SEPARATE_MM_NEVER_LANDED,
};

export const addressSpaceMunmapOp: OpSpec<AddressSpaceMunmapOp> = {
  name: 'address_space_munmap',
  fields: ['fd', 'as_addr', 'length'],
  parse(r, line, as) {
    return withAs(
      {
        line,
        op: 'address_space_munmap',
        fd: r.fd('fd'),
        as_addr: r.int('as_addr', 64),
        length: r.int('length', 64),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), offsetText(op.as_addr), lengthText(op.length));
  },
  runModel(h, op) {
    const r = h.addressSpaceMunmap(fileFd(op.fd), toU64(op.as_addr), toU64(op.length));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvmSeparateMm,
  kvmRefusal: () => SEPARATE_MM_NEVER_LANDED,
};

export const kvmMapAddressSpaceOp: OpSpec<KvmMapAddressSpaceOp> = {
  name: 'KVM_MAP_ADDRESS_SPACE',
  fields: ['vm', 'fd'],
  parse(r, line, as) {
    return withAs({ line, op: 'KVM_MAP_ADDRESS_SPACE', vm: r.fd('vm'), fd: r.fd('fd') }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.vm), `fd=${fdText(op.fd)}`);
  },
  runModel(h, op) {
    const r = h.kvmMapAddressSpace(ioctlFd(op.vm), fileFd(op.fd));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm: noKvmSeparateMm,
  kvmRefusal: () => SEPARATE_MM_NEVER_LANDED,
};

/** The designs family (fuzz generators: fuzz/separate_mm_gen.ts for design-2020-separate-mm). */
export const DESIGNS_FAMILY: OpFamily<DesignsFamilyOp> = {
  name: 'designs',
  ops: [
    memfdRestrictedOp,
    setUserMemoryRegionExt,
    memoryFailureOp,
    addressSpaceCreateOp,
    addressSpaceMmapOp,
    addressSpaceMunmapOp,
    kvmMapAddressSpaceOp,
  ],
  generators: [],
};

// Fuzz helpers of the design-2020-separate-mm walk (src/fuzz/separate_mm_walk.ts).
type SepGen = GenState<OpInput<DesignsFamilyOp>>;

/** address_space_create(flags), binding `as` when given. */
export function genAddressSpaceCreate(
  g: SepGen,
  flags: bigint,
  as?: string,
): ResultLine | undefined {
  return g.push({ op: 'address_space_create', flags, ...(as === undefined ? {} : { as }) });
}

/** address_space_mmap of [as_addr, + length) (src null: private anonymous memory). */
export function genAddressSpaceMmap(
  g: SepGen,
  fd: FdArg,
  as_addr: bigint,
  length: bigint,
  prot: bigint,
  flags: bigint,
  src: AddrArg | null,
): void {
  g.push({ op: 'address_space_mmap', fd, as_addr, length, prot, flags, src });
}

/** address_space_munmap of [as_addr, + length). */
export function genAddressSpaceMunmap(g: SepGen, fd: FdArg, as_addr: bigint, length: bigint): void {
  g.push({ op: 'address_space_munmap', fd, as_addr, length });
}

/** KVM_MAP_ADDRESS_SPACE of `fd` on VM `vm`. */
export function genKvmMapAddressSpace(g: SepGen, vm: FdArg, fd: FdArg): void {
  g.push({ op: 'KVM_MAP_ADDRESS_SPACE', vm, fd });
}
