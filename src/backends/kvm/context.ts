/**
 * What an op family's /dev/kvm execution (src/ops/<family>.ts, runKvm) uses of the real backend:
 * its libc, the trace state, the fd policy and the KVM_RUN watchdog timer. KvmBackend
 * (./backend.ts) implements it; the families import this interface, not the backend class, so
 * they stand below the op registry that the backend dispatches through.
 */
import type { Libc } from './libc.js';
import type { ProcFiles } from './maps.js';
import type { ResolvedFd } from '../../trace/base_types.js';

export type VmInfo = {
  /** The VM fd while the trace holds it open, else -1. */
  fd: number;
  hadVcpu: boolean;
  codeSlot: boolean;
};

export type VcpuInfo = {
  readonly fd: number;
  readonly vm: VmInfo;
  readonly run: bigint;
  readonly runSize: number;
};

export type Mapping = { readonly addr: bigint; readonly len: bigint };

/**
 * What the backend itself needs to run any op, acquired in begin() before the first op, so a
 * trace that uses up the process's descriptors or address space cannot starve the backend.
 */
export type Machinery = {
  /** The pipe peek / poke copy through (O_NONBLOCK): read end, write end. */
  readonly pipe: readonly [number, number];
  /** /proc/self/maps and /proc/self/pagemap, held open. */
  readonly proc: ProcFiles;
  /** The guest code page (one anonymous page): every VM's slot 32763 maps it. */
  readonly codePage: bigint;
  /** MAX_READ_BYTES of NORESERVE anonymous memory that pread reads into. */
  readonly scratch: bigint;
};

export type TraceState = {
  kvmFd: number;
  readonly owned: Set<number>;
  readonly vms: Map<number, VmInfo>;
  readonly vcpus: Map<number, VcpuInfo>;
  /** Backend-owned mappings (kvm_run areas, code page, pread scratch), kernel-chosen addresses. */
  readonly internal: Mapping[];
  cursor: bigint;
  readonly m: Machinery;
};

/** The real backend as the op families' /dev/kvm execution sees it. */
export interface KvmOpContext {
  readonly c: Libc;
  /** KVM_GET_VCPU_MMAP_SIZE, measured when the backend was opened. */
  readonly vcpuMmapSize: number;
  /** The KVM_RUN watchdog timer (src/ops/vcpu.ts arms it), deleted by dispose(). */
  timer: bigint | undefined;
  /** The current trace's state (throws outside begin()/end()). */
  readonly st: TraceState;
  /** fd of an ioctl-type op: raw 0..2 and negative values pass, other raw values are closed. */
  ioctlFd(f: ResolvedFd): number;
  /** fd of a file op: raw values never reach the kernel as a real descriptor (negative ones pass). */
  fileFd(f: ResolvedFd): number;
  /** The u32 guest_memfd field of KVM_SET_USER_MEMORY_REGION2. */
  gmemField(f: ResolvedFd): bigint;
}
