/**
 * What an op family module declares for each trace op it owns (src/ops/<family>.ts): the op's
 * trace type, its fields, its parser, its strace-style text, its execution on the model and on
 * /dev/kvm, and optionally the real backend's refusal rule and the host ranges the fuzzer checks.
 * The generic code (src/trace/parse.ts, src/trace/strace.ts, src/backends/model.ts,
 * src/backends/kvm/backend.ts, src/fuzz/trace_gen.ts) keeps the shared machinery and dispatches
 * through the registry (src/ops/registry.ts) with one Map lookup per op.
 *
 * Every member is a method of one descriptor object per op (no closures per op).
 */
import type { Host } from '../core/host.js';
import type { FieldReader } from '../trace/field_reader.js';
import type { Style } from '../trace/text.js';
import type { OpOutcome, ResolveOp } from '../trace/base_types.js';
import type { KvmOpContext } from '../backends/kvm/context.js';
import type { RefusalEnv } from '../backends/kvm/rules.js';
import type { IntervalSet } from '../backends/kvm/arena.js';
import type { GenState } from '../fuzz/gen_state.js';

/**
 * The fields every trace op has besides its own: its source line, the optional handle name, and
 * the optional process that issues it (`proc`: a handle a `fork` bound; absent: the VMM).
 */
export type OpCommon = { readonly line: number; readonly as?: string; readonly proc?: string };

/** The real backend's arena bookkeeping as precheck.ts keeps it. */
export type ArenaBook = {
  /** The arena address the next successful mmap gets. */
  cursor: bigint;
  /** The trace's own mappings. */
  readonly traceMapped: IntervalSet;
  /** Parts of the arena held by memory of the backend process. */
  readonly foreign: { intersects(s: bigint, e: bigint): boolean };
};

/** A host address range [start, end) an op touches (the real backend checks it). */
export type HostRange = { start: bigint; end: bigint };

/**
 * The descriptor of one trace op. `O` is the op's own fields with its `op` name (the trace type
 * is `OpCommon & O`). Methods take the op typed as their own, so they are declared with method
 * syntax (bivariant): the registry holds them as `OpSpec<AnyOpBody>`.
 */
export interface OpSpec<O extends { readonly op: string }> {
  readonly name: O['op'];
  /** The fields the op takes (besides `op` and `as`), in struct order. */
  readonly fields: readonly string[];
  /**
   * What the op's `as` binds: an fd handle, a mapping handle or a process (fork); absent: it
   * creates nothing.
   */
  readonly binds?: 'fd' | 'map' | 'proc';
  /**
   * The handle name a second fd the op creates binds (pipe2's write end: the op's `write_as`
   * field), besides `as`; absent for ops that create one object at most.
   */
  secondHandle?(op: OpCommon & O): string | undefined;
  /**
   * Read the op's fields (unknown fields and `as` have been checked); the C width of every
   * integer field follows the uAPI struct or syscall argument it fills (cited per op).
   */
  parse(r: FieldReader, line: number, as: string | undefined): OpCommon & O;
  /** Push the strace-style arguments of `NAME(args)`. */
  renderArgs(op: OpCommon & O, a: string[], style: Style): void;
  /** Run the resolved op on the model host. */
  runModel(h: Host, op: ResolveOp<OpCommon & O>): OpOutcome;
  /** Run the resolved op on /dev/kvm (the backend has checked refusals already). */
  runKvm(k: KvmOpContext, op: ResolveOp<OpCommon & O>): OpOutcome;
  /**
   * The length a successful op places at the mmap arena cursor (trace-format.md, Addresses), or
   * undefined when it places nothing; absent for ops that never map.
   */
  arenaLength?(op: OpCommon & O): bigint | undefined;
  /**
   * The backend fd a successful op closes, for the handle table (a handle naming it is then
   * closed, not unbound); absent for ops that close nothing.
   */
  closedFd?(op: ResolveOp<OpCommon & O>): number | undefined;
  /**
   * Parts of the op a shrinker may drop one at a time (KVM_RUN's guest steps): how many there
   * are, and the op without part `j`.
   */
  subSteps?(op: OpCommon & O): number;
  withoutSubStep?(op: OpCommon & O, j: number): OpCommon & O;
  /** Bytes a successful op copies into its result line (reads that return data). */
  readBytes?(op: OpCommon & O): bigint;
  /** The op maps hugetlb memory (the model knows only an empty hugetlb pool). */
  usesHugetlb?(op: OpCommon & O): boolean;
  /**
   * The scenario timeline (cli/describe.ts): a symbolic value for an integer field with
   * well-known constants, and whether a field is left out (a default not worth showing).
   */
  timelineValue?(field: string, v: bigint): string | undefined;
  timelineHides?(field: string, v: unknown): boolean;
  /**
   * Fields holding a list in which a scenario may write repetitions (scenario/repeat.ts,
   * scenario-format.md "Repetition"), expanded before the op is parsed: KVM_RUN's guest program.
   */
  readonly scenarioRepeats?: readonly string[];
  /**
   * The arena bookkeeping the real backend does when the op succeeds (placing a mapping at the
   * cursor, dropping an unmapped range), applied to `book`: precheck.ts mirrors the backend
   * with it on a model replay.
   */
  kvmArena?(op: ResolveOp<OpCommon & O>, book: ArenaBook): void;
  /** The real backend's reason to refuse the op in `env` (absent: never refused). */
  kvmRefusal?(op: ResolveOp<OpCommon & O>, env: RefusalEnv): string | undefined;
  /** Host address ranges the real backend checks before running the op (fuzzer's realSafe). */
  hostRanges?(op: ResolveOp<OpCommon & O>): HostRange[];
}

/**
 * A fuzz generator of a family: its weight among the generators of every family, and the function
 * that emits one or more ops with the generator's state.
 */
export type OpGenerator = readonly [weight: number, generate: (g: GenState) => void];

/**
 * An op family (src/ops/<family>.ts): its ops and its fuzz generators. The registry lists the
 * families; an op added to a family is registered by being in `ops`, and fuzzed by a generator in
 * `generators`.
 */
export interface OpFamily<O extends { readonly op: string }> {
  readonly name: string;
  readonly ops: readonly OpSpec<O>[];
  readonly generators: readonly OpGenerator[];
}
