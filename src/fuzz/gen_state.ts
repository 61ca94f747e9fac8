/**
 * The trace generator's state as the op families' fuzz generators see it (src/ops/*: gen*
 * functions): the PRNG, the live handles, the value pools and `push`. The generator class
 * (src/fuzz/trace_gen.ts) implements it; the weights loop there picks which generator runs.
 */
import type { KernelProfile } from '../core/profiles/profile.js';
import type { AddrArg, FdArg, ResultLine } from '../trace/base_types.js';
import type { Prng } from './prng.js';

export type GenOptions = {
  /** Allow VM types and attribute values that only a private-memory profile accepts. */
  readonly privateMemory?: boolean;
  /** Number of ops (default 40). */
  readonly ops?: number;
  /**
   * Profile of the lockstep model that tells the generator which ops succeeded (so later ops
   * use live handles) — default: no feedback.
   */
  readonly feedback?: KernelProfile;
  /**
   * Only emit ops the real backend runs (no raw address ranges over the process's memory).
   * Needs `feedback`: the ranges are checked on the resolved op.
   */
  readonly realSafe?: boolean;
  /**
   * On a historical design's profile, let the design walk make the accesses the design itself
   * allows and its invariant reports (design_walk.ts: its known holes). Default: the walk's VMM
   * keeps off them.
   */
  readonly designHoles?: boolean;
};

/** An op as a generator emits it, of any family: its name, its optional handle, its fields. */
export type OpInputBase = { readonly op: string; readonly as?: string; readonly proc?: string };

/** Ops of the body types `Body` (an op family's) as a generator emits them: no source line. */
export type OpInput<Body> = Body extends unknown
  ? Body & { readonly as?: string; readonly proc?: string }
  : never;

export const MiB = 1n << 20n;
export const PAGE = 4096n;
export const CODE_GFN = 0xfffffn;

/** Before any VM exists the generator still issues VM ioctls: on fd -1 (a closed fd). */
export const NO_VM = 'vm_none';
export function vmArg(vm: string): FdArg {
  return vm === NO_VM ? { kind: 'raw', value: -1n } : { kind: 'handle', name: vm };
}

export type GmemH = { name: string; vm: string; size: bigint; flags: bigint };
export type MapH = { name: string; len: bigint; kind: 'anon' | 'gmem' | 'other'; gmem?: GmemH };
export type SlotH = {
  vm: string;
  slot: bigint;
  gpa: bigint;
  size: bigint;
  gmem?: GmemH;
  map?: MapH;
};

/**
 * `I` is the ops the holder may push: a family's generators take `GenState<OpInput<TheirOps>>`
 * (so the ops they build are type-checked), the generator class implements it for every op.
 */
export interface GenState<I extends OpInputBase = OpInputBase> {
  readonly r: Prng;
  readonly opts: GenOptions;
  readonly vms: string[];
  readonly gmems: GmemH[];
  readonly maps: MapH[];
  readonly vcpus: Array<{ name: string; vm: string }>;
  slots: SlotH[];
  readonly fdNames: string[];
  readonly closed: Set<string>;
  /** A fresh handle name `prefix<N>`. */
  name(prefix: string): string;
  /**
   * Emit an op. With feedback, run it on the lockstep model and return its result; ops the real
   * backend would refuse are dropped (undefined).
   */
  push(op: I): ResultLine | undefined;
  // value pools
  page(maxPages: number): bigint;
  edgeU64(): bigint;
  vmFd(): FdArg;
  anyFd(): FdArg;
  gmemFd(): FdArg;
  mapAddr(extra?: bigint): { addr: AddrArg; map?: MapH };
  gpa(): bigint;
  guestGpa(): bigint;
}
