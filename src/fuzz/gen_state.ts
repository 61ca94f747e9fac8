/**
 * The trace generator's state as the op families' fuzz generators see it (src/ops/*: gen*
 * functions): the PRNG, the live handles, the value pools and `push`. The generator class
 * (src/fuzz/trace_gen.ts) implements it; the weights loop there picks which generator runs.
 */
import type { AddrArg, FdArg, ResultLine, TraceOpInput } from '../trace/types.js';
import type { Prng } from './prng.js';
import type { GenOptions } from './trace_gen.js';

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

export interface GenState {
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
  push(op: TraceOpInput): ResultLine | undefined;
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
