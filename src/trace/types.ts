/**
 * The trace contract (../shared/spec/trace-format.md) as types.
 *
 * `TraceOp` is a parsed, validated input line: numbers are bigint (u64 values keep their full
 * width; negative JSON integers are kept signed and each backend truncates them to the field's C
 * type exactly as a C caller would). Handle references stay symbolic until the runner resolves
 * them against its handle table.
 */

/** An fd field: a handle name, or a raw integer fd number. */
export type FdArg =
  | { readonly kind: 'handle'; readonly name: string }
  | { readonly kind: 'raw'; readonly value: bigint };

/** An address field: `handle`, `handle+OFFSET`, or a raw integer address. */
export type AddrArg =
  | { readonly kind: 'handle'; readonly name: string; readonly offset: bigint }
  | { readonly kind: 'raw'; readonly value: bigint };

/** One step of a guest program run by KVM_RUN. */
export type GuestStep =
  | { readonly kind: 'store'; readonly gpa: bigint; readonly bytes: Uint8Array }
  | { readonly kind: 'load'; readonly gpa: bigint; readonly size: 1 | 2 | 4 }
  /** Addition to the contract: `{"hypercall":{"nr":12,"args":[gpa,npages,attrs]}}` issues vmcall. */
  | {
      readonly kind: 'hypercall';
      readonly nr: bigint;
      readonly args: readonly [bigint, bigint, bigint];
    };

type Common = { readonly line: number; readonly as?: string };

export type TraceOp = Common &
  /** `fd` (an addition; default the "kvm" handle) is the /dev/kvm fd the ioctl goes to. */
  (
    | { readonly op: 'KVM_CREATE_VM'; readonly fd: FdArg; readonly type: bigint }
    | { readonly op: 'KVM_CHECK_EXTENSION'; readonly fd: FdArg; readonly cap: bigint }
    | {
        readonly op: 'KVM_CREATE_GUEST_MEMFD';
        readonly vm: FdArg;
        readonly size: bigint;
        readonly flags: bigint;
      }
    | {
        readonly op: 'KVM_SET_USER_MEMORY_REGION';
        readonly vm: FdArg;
        readonly slot: bigint;
        readonly flags: bigint;
        readonly guest_phys_addr: bigint;
        readonly memory_size: bigint;
        readonly userspace_addr: AddrArg;
      }
    | {
        readonly op: 'KVM_SET_USER_MEMORY_REGION2';
        readonly vm: FdArg;
        readonly slot: bigint;
        readonly flags: bigint;
        readonly guest_phys_addr: bigint;
        readonly memory_size: bigint;
        readonly userspace_addr: AddrArg;
        readonly guest_memfd: FdArg;
        readonly guest_memfd_offset: bigint;
      }
    | {
        readonly op: 'KVM_SET_MEMORY_ATTRIBUTES';
        readonly vm: FdArg;
        readonly address: bigint;
        readonly size: bigint;
        readonly attributes: bigint;
        readonly flags: bigint;
      }
    | { readonly op: 'KVM_CREATE_VCPU'; readonly vm: FdArg; readonly id: bigint }
    | {
        readonly op: 'KVM_PRE_FAULT_MEMORY';
        readonly vcpu: FdArg;
        readonly gpa: bigint;
        readonly size: bigint;
        readonly flags: bigint;
      }
    | { readonly op: 'KVM_RUN'; readonly vcpu: FdArg; readonly guest: readonly GuestStep[] }
    /** Addition: KVM_ENABLE_CAP on a VM (or vCPU) fd, `args` up to 4 values. */
    | {
        readonly op: 'KVM_ENABLE_CAP';
        readonly fd: FdArg;
        readonly cap: bigint;
        readonly flags: bigint;
        readonly args: readonly bigint[];
      }
    | {
        readonly op: 'mmap';
        /** null = anonymous */
        readonly fd: FdArg | null;
        readonly length: bigint;
        readonly prot: bigint;
        readonly flags: bigint;
        readonly offset: bigint;
      }
    | { readonly op: 'munmap'; readonly addr: AddrArg; readonly length: bigint }
    | {
        readonly op: 'mprotect';
        readonly addr: AddrArg;
        readonly length: bigint;
        readonly prot: bigint;
      }
    | {
        readonly op: 'madvise';
        readonly addr: AddrArg;
        readonly length: bigint;
        readonly advice: bigint;
      }
    | {
        readonly op: 'fallocate';
        readonly fd: FdArg;
        readonly mode: bigint;
        readonly offset: bigint;
        readonly len: bigint;
      }
    | { readonly op: 'ftruncate'; readonly fd: FdArg; readonly length: bigint }
    | { readonly op: 'pread'; readonly fd: FdArg; readonly len: bigint; readonly offset: bigint }
    | {
        readonly op: 'pwrite';
        readonly fd: FdArg;
        readonly bytes: Uint8Array;
        readonly offset: bigint;
      }
    | { readonly op: 'fstat'; readonly fd: FdArg }
    | { readonly op: 'close'; readonly fd: FdArg }
    | { readonly op: 'peek'; readonly addr: AddrArg; readonly len: bigint }
    | { readonly op: 'poke'; readonly addr: AddrArg; readonly bytes: Uint8Array }
  );

export type OpName = TraceOp['op'];

/** One entry of a KVM_RUN result's `exits` list. */
export type Exit =
  | { readonly reason: 'LOAD'; readonly gpa: bigint; readonly hex: string }
  | {
      readonly reason: 'MMIO';
      readonly gpa: bigint;
      readonly len: number;
      readonly is_write: true;
      readonly hex: string;
    }
  | {
      readonly reason: 'MMIO';
      readonly gpa: bigint;
      readonly len: number;
      readonly is_write: false;
    }
  | {
      readonly reason: 'MEMORY_FAULT';
      readonly gpa: bigint;
      readonly size: bigint;
      readonly flags: bigint;
    }
  | { readonly reason: 'HYPERCALL'; readonly nr: bigint; readonly args: readonly bigint[] }
  /** Addition: the value a hypercall step left in RAX when no exit happened or after it. */
  | { readonly reason: 'HYPERCALL_RET'; readonly hex: string }
  | { readonly reason: 'HLT' }
  /** Additions for runs that end abnormally. */
  | { readonly reason: 'SHUTDOWN' }
  | { readonly reason: 'INTERNAL_ERROR'; readonly suberror: number }
  | { readonly reason: 'UNKNOWN'; readonly exit_reason: number };

/** A result line. Field order does not matter; compare parsed objects. */
export type ResultLine =
  | {
      readonly ok: true;
      readonly value?: bigint | string;
      readonly exits?: readonly Exit[];
      readonly remaining?: { readonly gpa: bigint; readonly size: bigint };
      readonly stat?: { readonly size: bigint; readonly blocks: bigint };
    }
  | {
      readonly ok: false;
      readonly errno: string;
      readonly exits?: readonly Exit[];
      readonly remaining?: { readonly gpa: bigint; readonly size: bigint };
    }
  | { readonly ok: false; readonly fault: 'SIGBUS' | 'SIGSEGV' };

/**
 * An fd argument after handle resolution. `obj` carries the backend's own fd number for a handle
 * (or -1 when the handle is unbound or closed); `raw` is an integer written in the trace, which
 * by contract never names one of the trace's objects.
 */
export type ResolvedFd =
  { readonly kind: 'obj'; readonly fd: number } | { readonly kind: 'raw'; readonly value: bigint };

/** What a backend returns for one op: the result line and, for creating ops, the new object. */
export type OpOutcome = {
  readonly result: ResultLine;
  readonly createdFd?: number;
  readonly createdAddr?: bigint;
};

// Non-distributive checks: the raw variants of FdArg and AddrArg are identical.
type ResolveField<V> = [V] extends [AddrArg]
  ? bigint
  : [V] extends [FdArg]
    ? ResolvedFd
    : [V] extends [FdArg | null]
      ? ResolvedFd | null
      : V;
type ResolveOp<O> = O extends unknown ? { readonly [K in keyof O]: ResolveField<O[K]> } : never;

/** A trace op after handle resolution: fds are `ResolvedFd`, addresses are u64 bigints. */
export type ResolvedOp = ResolveOp<TraceOp>;

/**
 * A backend runs resolved ops in one trace's context. The same trace gives identical result lines
 * on every faithful backend.
 */
export interface Backend {
  readonly name: string;
  /** Start a fresh trace; returns the fd behind the predefined handle `"kvm"` (-1 if none). */
  begin(): number;
  exec(op: ResolvedOp): OpOutcome;
  /** Release every fd and mapping the trace created. */
  end(): void;
}

/**
 * Thrown by a backend that refuses to run an op it cannot run safely (for example a raw address
 * that overlaps the backend process's own memory). Replay reports it as an input error.
 */
export class BackendRefusal extends Error {}

/** A trace op without its source line number (for generators and builders). */
export type TraceOpInput = TraceOp extends infer O
  ? O extends unknown
    ? Omit<O, 'line'>
    : never
  : never;
