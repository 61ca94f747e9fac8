/**
 * The trace contract's (../shared/spec/trace-format.md) types that do not depend on the op list:
 * fd and address fields, guest steps, result lines, resolved fds and a backend's outcome. The op
 * families (src/ops) and the building blocks below the registry import them from here; the
 * types made from the op list (`TraceOp`, `ResolvedOp`, ...) are in ./types.ts, above the
 * registry.
 */
import type { GuestProgramStep } from '../core/arch/x86/kvm_run.js';

/** An fd field: a handle name, or a raw integer fd number. */
export type FdArg =
  | { readonly kind: 'handle'; readonly name: string }
  | { readonly kind: 'raw'; readonly value: bigint };

/** An address field: `handle`, `handle+OFFSET`, or a raw integer address. */
export type AddrArg =
  | { readonly kind: 'handle'; readonly name: string; readonly offset: bigint }
  | { readonly kind: 'raw'; readonly value: bigint };

/**
 * One step of a guest program run by KVM_RUN: the model's own step type (store, load, and — an
 * addition to the contract — `{"hypercall":{"nr":12,"args":[gpa,npages,attrs]}}`, which issues
 * vmcall).
 */
export type GuestStep = GuestProgramStep;

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
  | { readonly reason: 'UNKNOWN'; readonly exit_reason: number }
  /** SEV-SNP guest additions (trace-format.md "SEV-SNP guest steps"). */
  | {
      readonly reason: 'PVALIDATE';
      readonly gpa: bigint;
      readonly ret: number;
      readonly cf: number;
    }
  | { readonly reason: 'VC'; readonly gpa: bigint; readonly error_code: bigint }
  | { readonly reason: 'SYSTEM_EVENT'; readonly type: number; readonly data: readonly bigint[] }
  | { readonly reason: 'GHCB_MSR'; readonly value: bigint }
  | {
      readonly reason: 'PSC';
      readonly ret: bigint;
      readonly cur_entry: number;
      readonly cur_pages: readonly number[];
    }
  /** TDX guest additions (trace-format.md "TDX guest steps"). */
  | { readonly reason: 'ACCEPT'; readonly gpa: bigint; readonly status: bigint }
  | { readonly reason: 'TDVMCALL'; readonly status: bigint; readonly r11?: bigint }
  | { readonly reason: 'VE'; readonly gpa: bigint }
  | { readonly reason: 'EPT_VIOLATION'; readonly gpa: bigint };

/** A result line. Field order does not matter; compare parsed objects. */
export type ResultLine =
  | {
      readonly ok: true;
      readonly value?: bigint | string;
      readonly exits?: readonly Exit[];
      readonly remaining?: { readonly gpa: bigint; readonly size: bigint };
      readonly stat?: { readonly size: bigint; readonly blocks: bigint };
      readonly sev?: SevCmdResult;
      readonly tdx?: TdxCmdResult;
      /** KVM_ARM_PREFERRED_TARGET: the `struct kvm_vcpu_init` the kernel filled (addition). */
      readonly init?: VcpuInitResult;
    }
  | {
      readonly ok: false;
      readonly errno: string;
      readonly exits?: readonly Exit[];
      readonly remaining?: { readonly gpa: bigint; readonly size: bigint };
      readonly sev?: SevCmdResult;
      readonly tdx?: TdxCmdResult;
      /**
       * KVM_SET_MEMORY_ATTRIBUTES2: `error_offset` as the kernel wrote it back into
       * `struct kvm_memory_attributes2` (EAGAIN and ENOMEM only; addition).
       */
      readonly error_offset?: bigint;
    }
  | { readonly ok: false; readonly fault: 'SIGBUS' | 'SIGSEGV' };

/**
 * A `struct kvm_vcpu_init` as a result carries it: the target, and the bits set in `features[7]`
 * in ascending order, each a feature name (`PSCI_0_2`, for the bits v6.18 defines) or a bit number.
 */
export type VcpuInitResult = {
  readonly target: bigint;
  readonly features: readonly (string | number)[];
};

/**
 * What a KVM_MEMORY_ENCRYPT_OP with a `data` struct reads back (addition): `kvm_sev_cmd.error`,
 * the firmware status KVM wrote (0: none), and for KVM_SEV_SNP_LAUNCH_UPDATE the progress KVM
 * wrote back into the struct (gfn_start, uaddr and len after the pages it populated).
 */
export type SevCmdResult = {
  readonly error: bigint;
  readonly progress?: { readonly gfn_start: bigint; readonly uaddr: bigint; readonly len: bigint };
};

/**
 * What a KVM_MEMORY_ENCRYPT_OP with a TDX `data` struct reads back (addition):
 * `kvm_tdx_cmd.hw_error` (the TDX module status KVM wrote; 0 when none, and always 0 for the vCPU
 * commands, whose struct KVM does not copy back), KVM_TDX_CAPABILITIES' answer, and
 * KVM_TDX_INIT_MEM_REGION's progress (source_addr, gpa, nr_pages after the pages it added).
 */
export type TdxCmdResult = {
  readonly hw_error: bigint;
  readonly caps?: {
    readonly supported_attrs: bigint;
    readonly supported_xfam: bigint;
    readonly nent: bigint;
  };
  readonly progress?: {
    readonly source_addr: bigint;
    readonly gpa: bigint;
    readonly nr_pages: bigint;
  };
};

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
  /** A second fd the op creates (pipe2's write end), bound to the op's `secondHandle`. */
  readonly createdFd2?: number;
  readonly createdAddr?: bigint;
  /** The process a `fork` creates (its pid), bound to the op's `as`. */
  readonly createdPid?: number;
};

// Non-distributive checks: the raw variants of FdArg and AddrArg are identical.
type ResolveField<V> = [V] extends [AddrArg]
  ? bigint
  : [V] extends [AddrArg | null]
    ? bigint | null
    : [V] extends [FdArg]
      ? ResolvedFd
      : [V] extends [FdArg | null]
        ? ResolvedFd | null
        : V;
/** An op after handle resolution; its process fields (`proc`, `child`) are pids (-1: unbound). */
export type ResolveOp<O> = O extends unknown
  ? { readonly [K in keyof O]: K extends 'proc' | 'child' ? number : ResolveField<O[K]> }
  : never;

/**
 * Thrown by a backend that refuses to run an op it cannot run safely (for example a raw address
 * that overlaps the backend process's own memory). Replay reports it as an input error.
 */
export class BackendRefusal extends Error {}
