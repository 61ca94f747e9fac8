/**
 * The fuzzing modules (src/fuzz/): the seeded PRNG, the random trace generator, delta-debugging
 * shrinking, the differential fuzzer (run here with two model backends, one of them carrying an
 * injected bug, so no /dev/kvm is needed) and model-based fuzzing. One test at the end also runs
 * generated "realSafe" traces on this machine's /dev/kvm, and skips with the reason without it.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../../src/fuzz/prng.js';
import { generateTrace, TraceGenerator, type GenOptions } from '../../src/fuzz/trace_gen.js';
import { shrinkGuestSteps, shrinkOps, shrinkSteps, shrinkTrace } from '../../src/fuzz/shrink.js';
import { finish, STOPPED, type Phase, type Steps } from '../../src/fuzz/steps.js';
import { MAX_SEED, nextSeed } from '../../src/fuzz/prng.js';
import {
  compareOnce,
  differentialSteps,
  runDifferential,
  type DifferentialProgress,
} from '../../src/fuzz/differential.js';
import {
  breaks,
  modelFuzzSteps,
  newCoverage,
  recordCoverage,
  runModelFuzz,
  type ModelFuzzProgress,
} from '../../src/fuzz/model_fuzz.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { MMAP_ARENA_BASE, MMAP_ARENA_END, TASK_SIZE_MAX } from '../../src/core/mm/host_layout.js';
import { formatOp, formatResult } from '../../src/trace/format.js';
import { parseTrace } from '../../src/trace/parse.js';
import { HandleTable, resolveOp, runTrace, stepTrace } from '../../src/trace/runner.js';
import { firstDifference } from '../../src/trace/compare.js';
import {
  BackendRefusal,
  type Backend,
  type GuestStep,
  type OpOutcome,
  type ResolvedOp,
  type TraceOp,
} from '../../src/trace/types.js';
import { backendOrSkip, liveKernelOf } from '../kvm/helpers.js';
import { guestLoad, guestStore } from '../../src/core/arch/x86/kvm_run.js';

const LINUX = getProfile('linux-6.18')!;
const PVM = getProfile('linux-6.18-pvm')!;
const GiB = 1n << 30n;

/** The generator options the fuzzers use: differential (realSafe) and model-based. */
const DIFFERENTIAL_OPTS: GenOptions = {
  ops: 40,
  feedback: PVM,
  realSafe: true,
  privateMemory: PVM.memoryAttributesConfig,
};
const MODEL_OPTS: GenOptions = {
  ops: 60,
  feedback: LINUX,
  privateMemory: LINUX.memoryAttributesConfig,
};

const lines = (ops: readonly TraceOp[]): string[] => ops.map(formatOp);

// ---------------------------------------------------------------------------------------------

describe('Prng', () => {
  test('the same seed gives the same sequence; different seeds differ', () => {
    const draw = (seed: number): number[] => {
      const r = new Prng(seed);
      return Array.from({ length: 1000 }, () => r.u32());
    };
    assert.deepEqual(draw(42), draw(42));
    assert.notDeepEqual(draw(42), draw(43));
    assert.notDeepEqual(draw(0), draw(1));
    // Seed 0 still gives a live generator (not all zeros), and seeds are taken modulo 2^32.
    assert.ok(draw(0).some((x) => x !== 0));
    assert.deepEqual(draw(2 ** 32 + 7), draw(7));
  });

  test('u32 is a 32-bit unsigned integer; float is in [0, 1)', () => {
    const r = new Prng(3);
    for (let i = 0; i < 10_000; i++) {
      const u = r.u32();
      assert.ok(Number.isInteger(u) && u >= 0 && u <= 0xffff_ffff, `u32 ${u}`);
      const f = r.float();
      assert.ok(f >= 0 && f < 1, `float ${f}`);
    }
  });

  test('int(n) stays in [0, n) for small, 32-bit and larger n, and covers the range', () => {
    const r = new Prng(9);
    for (const n of [2, 3, 7, 10, 1000, 2 ** 31, 2 ** 32, 2 ** 32 + 1, 2 ** 40, 2 ** 53]) {
      for (let i = 0; i < 2000; i++) {
        const v = r.int(n);
        assert.ok(Number.isInteger(v) && v >= 0 && v < n, `int(${n}) = ${v}`);
      }
    }
    // n <= 1 always gives 0 without consuming anything useful.
    for (const n of [1, 0, -5]) assert.equal(r.int(n), 0);
    // Every value of a small range comes up, roughly uniformly.
    const counts = new Array<number>(10).fill(0);
    for (let i = 0; i < 20_000; i++) counts[r.int(10)]!++;
    for (const c of counts) assert.ok(c > 1600 && c < 2400, `bucket count ${c} of 20000 / 10`);
  });

  test('chance, pick, weighted and bytes respect their bounds', () => {
    const r = new Prng(11);
    const xs = ['a', 'b', 'c'] as const;
    const seen = new Set<string>();
    for (let i = 0; i < 1000; i++) {
      assert.equal(r.chance(0), false);
      assert.equal(r.chance(1), true);
      const p = r.pick(xs);
      assert.ok(xs.includes(p));
      seen.add(p);
      // A zero weight is never picked.
      assert.notEqual(
        r.weighted<string>([
          [0, 'never'],
          [1, 'x'],
          [3, 'y'],
        ]),
        'never',
      );
    }
    assert.equal(seen.size, 3);
    const b = r.bytes(257);
    assert.equal(b.length, 257);
    assert.ok(b.every((x) => x >= 0 && x <= 255));
    assert.equal(r.bytes(0).length, 0);
    // weighted follows the weights (1:3).
    let y = 0;
    for (let i = 0; i < 8000; i++)
      if (
        r.weighted<string>([
          [1, 'x'],
          [3, 'y'],
        ]) === 'y'
      )
        y++;
    assert.ok(y > 5600 && y < 6400, `y picked ${y} of 8000, expected about 6000`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('trace_gen', () => {
  test('the same seed gives the same trace (with and without feedback)', () => {
    for (const opts of [
      {},
      MODEL_OPTS,
      DIFFERENTIAL_OPTS,
      { ops: 80, feedback: LINUX, privateMemory: true },
    ]) {
      for (const seed of [1, 2, 77, 123456]) {
        assert.deepEqual(
          lines(generateTrace(seed, opts)),
          lines(generateTrace(seed, opts)),
          `seed ${seed}`,
        );
      }
    }
  });

  test('different seeds give different traces', () => {
    const seen = new Set<string>();
    for (let seed = 1; seed <= 50; seed++)
      seen.add(lines(generateTrace(seed, MODEL_OPTS)).join('\n'));
    assert.equal(seen.size, 50);
    assert.notDeepEqual(
      lines(generateTrace(1, DIFFERENTIAL_OPTS)),
      lines(generateTrace(2, DIFFERENTIAL_OPTS)),
    );
  });

  test('traces have about the requested length and line numbers 1..n', () => {
    for (const n of [1, 10, 40, 100]) {
      for (let seed = 1; seed <= 20; seed++) {
        const plain = generateTrace(seed, { ops: n });
        // Without feedback every emitted op is kept; walks may overshoot by their own length.
        assert.ok(plain.length >= n, `seed ${seed}: ${plain.length} ops for ${n}`);
        const fed = generateTrace(seed, { ...DIFFERENTIAL_OPTS, ops: n });
        assert.ok(fed.length >= 1, `seed ${seed}: empty trace`);
        for (const t of [plain, fed]) t.forEach((op, i) => assert.equal(op.line, i + 1));
      }
    }
  });

  test('every trace for seeds 1..200 round-trips through formatOp and parseTrace', () => {
    const variants: Array<[string, GenOptions]> = [
      ['plain', { ops: 40 }],
      ['model-based', MODEL_OPTS],
      ['differential', DIFFERENTIAL_OPTS],
      ['private memory', { ops: 40, feedback: LINUX, privateMemory: true, realSafe: true }],
    ];
    for (const [what, opts] of variants) {
      for (let seed = 1; seed <= 200; seed++) {
        const ops = generateTrace(seed, opts);
        const text = lines(ops).join('\n') + '\n';
        const parsed = parseTrace(text, `gen-${seed}.jsonl`);
        assert.deepEqual(
          parsed.errors.map((e) => e.message),
          [],
          `${what} seed ${seed}`,
        );
        assert.equal(parsed.ops.length, ops.length, `${what} seed ${seed}`);
        // The parsed ops are the generated ones (bigints, bytes, handles and all) ...
        assert.deepEqual(parsed.ops, ops, `${what} seed ${seed}`);
        // ... and formatting them again gives the same text.
        assert.equal(lines(parsed.ops).join('\n') + '\n', text);
      }
    }
  });

  test('generated traces never use the contract-reserved code slot 32763 or the code page', () => {
    for (let seed = 1; seed <= 200; seed++) {
      for (const op of generateTrace(seed, { ...MODEL_OPTS, privateMemory: true })) {
        if (op.op === 'KVM_SET_USER_MEMORY_REGION' || op.op === 'KVM_SET_USER_MEMORY_REGION2') {
          assert.notEqual(op.slot, 32763n, `seed ${seed} line ${op.line}`);
          const end = op.guest_phys_addr + op.memory_size;
          if (op.memory_size > 0n && op.memory_size < 1n << 40n)
            assert.ok(
              !(op.guest_phys_addr <= 0xfffff000n && end > 0xfffff000n),
              `seed ${seed} line ${op.line} covers the code page`,
            );
        }
        if (op.op === 'KVM_RUN')
          for (const s of op.guest)
            if (s.kind === 'store' || s.kind === 'load') {
              const size = s.kind === 'store' ? BigInt(s.bytes.length) : BigInt(s.size);
              assert.ok(
                s.gpa + size <= 0xfffff000n || s.gpa >= 0x1_0000_0000n,
                `seed ${seed} line ${op.line}: guest access at ${s.gpa}`,
              );
            }
      }
    }
  });

  /**
   * The real backend's refusal rules (src/backends/kvm/backend.ts), restated independently: the
   * address ranges it hands to the kernel must stay in the trace arena, below 64 KiB or above the
   * user address space (checkRange); no op may make the kernel allocate more than 1 GiB
   * (fallocate, MAP_POPULATE / MAP_LOCKED, MADV_POPULATE_*); no MADV_HWPOISON / SOFT_OFFLINE;
   * reads return at most 16 MiB.
   */
  function refusal(op: ResolvedOp): string | undefined {
    const inArena = (s: bigint, e: bigint): boolean => s >= MMAP_ARENA_BASE && e <= MMAP_ARENA_END;
    const range = (s: bigint, e: bigint): string | undefined => {
      if (e <= s || e <= 0x10000n || s >= TASK_SIZE_MAX || inArena(s, e)) return undefined;
      return `range [0x${s.toString(16)}, 0x${e.toString(16)}) outside the arena`;
    };
    const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);
    const pageUp = (v: bigint): bigint => (v + 4095n) & ~4095n;
    switch (op.op) {
      case 'KVM_SET_USER_MEMORY_REGION':
      case 'KVM_SET_USER_MEMORY_REGION2':
        return range(op.userspace_addr, op.userspace_addr + u64(op.memory_size));
      case 'munmap':
      case 'mprotect':
      case 'madvise': {
        const len = u64(op.length);
        if (op.op === 'madvise' && (op.advice === 100n || op.advice === 101n))
          return `madvise advice ${op.advice}`;
        if (op.op === 'madvise' && (op.advice === 22n || op.advice === 23n) && len > GiB)
          return `MADV_POPULATE of ${len} bytes`;
        if (op.addr + pageUp(len) > 0xffff_ffff_ffff_ffffn) return undefined; // wraps: the kernel refuses it itself
        return range(op.addr & ~4095n, pageUp(op.addr + len));
      }
      case 'peek':
        return op.len === 0n
          ? undefined
          : op.len > 16n << 20n
            ? 'peek > 16 MiB'
            : range(op.addr, op.addr + op.len);
      case 'poke':
        return op.bytes.length === 0
          ? undefined
          : range(op.addr, op.addr + BigInt(op.bytes.length));
      case 'fallocate':
        return (op.mode & 2n) === 0n && BigInt.asIntN(64, op.len) > GiB
          ? `fallocate of ${op.len} bytes`
          : undefined;
      case 'mmap': {
        // A mapping larger than the whole arena fails with ENOMEM before anything is populated.
        const rounded = pageUp(u64(op.length));
        if (rounded > MMAP_ARENA_END - MMAP_ARENA_BASE) return undefined;
        return (op.flags & 0xa000n) !== 0n && rounded > GiB
          ? `populated or locked mmap of ${rounded} bytes`
          : undefined;
      }
      case 'pread':
        return op.len > 16n << 20n ? 'pread > 16 MiB' : undefined;
      default:
        return undefined;
    }
  }

  /**
   * Seeds 1..200, and seeds whose traces once mapped 1 TiB with MAP_LOCKED (the generator only
   * dropped MAP_POPULATE from big mappings), which the real backend refuses.
   */
  const SAFE_SEEDS = [...Array.from({ length: 200 }, (_, i) => i + 1), 415, 493, 1338, 2645];

  test('realSafe traces (seeds 1..200 and more, both profiles) contain no op the real backend refuses', () => {
    for (const profile of [PVM, LINUX]) {
      for (const seed of SAFE_SEEDS) {
        const opts: GenOptions = {
          ops: 40,
          feedback: profile,
          realSafe: true,
          privateMemory: profile.memoryAttributesConfig,
        };
        const ops = generateTrace(seed, opts);
        // Resolve the handles exactly as a replay would (on the model of the same profile).
        const model = new ModelBackend(profile, { events: false });
        const table = new HandleTable(model.begin());
        try {
          for (const op of ops) {
            const why = refusal(resolveOp(op, table));
            assert.equal(
              why,
              undefined,
              `${profile.name} seed ${seed} line ${op.line}: ${formatOp(op)}: ${why}`,
            );
            stepTrace(op, model, table);
          }
        } finally {
          model.end();
        }
      }
    }
  });

  test('realSafe traces run on /dev/kvm without a refusal', (t) => {
    const kvm = backendOrSkip(t);
    if (kvm === undefined) return;
    // The generator learns which ops succeed from a model of this kernel: on a kernel without
    // guest_memfd a gmem mapping handle stays unbound, and its offsets are raw addresses.
    const live = liveKernelOf(kvm);
    if (live.match.profile === undefined) {
      t.skip(`this kernel matches no profile (${live.facts.release}): the generator needs one`);
      return;
    }
    const opts: GenOptions = { ...DIFFERENTIAL_OPTS, feedback: live.match.profile };
    for (const seed of [...SAFE_SEEDS.slice(0, 60), ...SAFE_SEEDS.slice(200)]) {
      const ops = generateTrace(seed, opts);
      try {
        runTrace(ops, kvm);
      } catch (e) {
        if (e instanceof BackendRefusal) assert.fail(`seed ${seed}: ${e.message}`);
        throw e;
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('shrink', () => {
  /** A trace of KVM_CHECK_EXTENSION ops whose cap values are the given tags. */
  const caps = (tags: readonly number[]): TraceOp[] =>
    tags.map((c, i) => ({
      op: 'KVM_CHECK_EXTENSION',
      fd: { kind: 'handle', name: 'kvm' },
      cap: BigInt(c),
      line: i + 1,
    }));
  const tagsOf = (ops: readonly TraceOp[]): number[] =>
    ops.map((o) => (o.op === 'KVM_CHECK_EXTENSION' ? Number(o.cap) : -1));
  /** "contains the tags `want` in this order" (as a subsequence). */
  const inOrder =
    (want: readonly number[]) =>
    (ops: readonly TraceOp[]): boolean => {
      let k = 0;
      for (const x of tagsOf(ops)) if (x === want[k]) k++;
      return k === want.length;
    };
  /** Removing any single op makes `fails` false. */
  const oneMinimal = (ops: readonly TraceOp[], fails: (t: TraceOp[]) => boolean): boolean =>
    ops.every((_, i) => !fails([...ops.slice(0, i), ...ops.slice(i + 1)]));

  test('ddmin keeps exactly "A then C" out of a long trace', () => {
    const A = 1000;
    const C = 3000;
    const tags = Array.from({ length: 64 }, (_, i) => i);
    tags[17] = A;
    tags[51] = C;
    const fails = inOrder([A, C]);
    let calls = 0;
    const counted = (t: TraceOp[]): boolean => {
      calls++;
      assert.ok(t.length > 0, 'the predicate is never asked about an empty trace');
      t.forEach((o, i) => assert.equal(o.line, i + 1, 'lines are renumbered for every candidate'));
      return fails(t);
    };
    const stats = { tries: 0 };
    const out = shrinkOps(caps(tags), counted, stats);
    assert.deepEqual(tagsOf(out), [A, C]);
    assert.deepEqual(
      out.map((o) => o.line),
      [1, 2],
    );
    assert.equal(stats.tries, calls);
    assert.ok(calls < 200, `${calls} predicate runs`);
    assert.ok(oneMinimal(out, fails));
  });

  test('the result is 1-minimal when several ops and duplicates matter', () => {
    const r = new Prng(5);
    for (let round = 0; round < 20; round++) {
      const tags = Array.from({ length: 40 + r.int(60) }, () => r.int(6));
      const want = [1, 4, 2, 4];
      const fails = inOrder(want);
      if (!fails(caps(tags))) continue;
      const out = shrinkOps(caps(tags), fails);
      assert.ok(fails(out));
      assert.deepEqual(tagsOf(out), want, `round ${round}`);
      assert.ok(oneMinimal(out, fails));
    }
  });

  test('a trace that no longer fails when anything is removed is kept whole', () => {
    const ops = caps([7, 8, 9]);
    const out = shrinkOps(ops, (t) => t.length === 3);
    assert.deepEqual(tagsOf(out), [7, 8, 9]);
  });

  test('the budget bounds the number of predicate runs', () => {
    const stats = { tries: 0 };
    const out = shrinkOps(
      caps(Array.from({ length: 200 }, (_, i) => i)),
      inOrder([5, 150]),
      stats,
      10,
    );
    assert.ok(stats.tries <= 10, `${stats.tries} tries`);
    assert.ok(inOrder([5, 150])(out));
  });

  test('guest steps of KVM_RUN are removed down to the one that matters', () => {
    const steps: GuestStep[] = Array.from({ length: 12 }, (_, i) => guestLoad(BigInt(i * 4), 4));
    steps[7] = guestStore(0x1000n, Uint8Array.of(1, 2, 3, 4));
    const ops: TraceOp[] = [
      ...caps([1, 2, 3]),
      { op: 'KVM_RUN', vcpu: { kind: 'handle', name: 'cpu' }, guest: steps, line: 4 },
      ...caps([5]).map((o) => ({ ...o, line: 5 })),
    ];
    const hasStore = (t: readonly TraceOp[]): boolean =>
      t.some((o) => o.op === 'KVM_RUN' && o.guest.some((s) => s.kind === 'store'));
    const g = shrinkGuestSteps(ops, hasStore);
    const run = g.find((o) => o.op === 'KVM_RUN');
    assert.ok(run !== undefined && run.op === 'KVM_RUN');
    assert.deepEqual(run.guest, [steps[7]]);
    assert.equal(g.length, ops.length, 'shrinkGuestSteps removes steps, not ops');
    // shrinkTrace does both: one op, one step.
    const s = shrinkTrace(ops, hasStore);
    assert.equal(s.ops.length, 1);
    assert.equal(s.ops[0]!.op, 'KVM_RUN');
    assert.equal(s.ops[0]!.line, 1);
    assert.deepEqual((s.ops[0] as Extract<TraceOp, { op: 'KVM_RUN' }>).guest, [steps[7]]);
    assert.ok(s.tries > 0);
  });
});

// ---------------------------------------------------------------------------------------------

/** A model backend with injected bugs stands in for "the model"; a faithful one for the kernel. */
const mutated = (profile: typeof PVM, mutant: string): ModelBackend =>
  new ModelBackend(profile, { mutants: [mutant], events: false });
const clean = (profile: typeof PVM): ModelBackend => new ModelBackend(profile, { events: false });

describe('runDifferential (two model backends)', () => {
  test('a mutant visible in results is found, shrunk to a small trace that still disagrees', () => {
    const found: unknown[] = [];
    const r = runDifferential({
      seed: 1,
      profile: PVM,
      model: mutated(PVM, 'gmem_host_fault_ignores_shared'),
      reference: clean(PVM),
      shouldContinue: (p) => p.traces < 200,
      onDisagreement: (d) => found.push(d),
    });
    assert.equal(r.disagreements.length, 1, 'stops at the first disagreement');
    assert.equal(found.length, 1);
    assert.equal(r.progress.disagreements, 1);
    assert.equal(r.progress.refused, 0);
    const d = r.disagreements[0]!;
    assert.equal(found[0], d);
    assert.ok(d.ops.length <= 8, `minimized to ${d.ops.length} ops:\n${lines(d.ops).join('\n')}`);
    assert.ok(d.ops.length < d.originalOps);
    assert.ok(d.shrinkTries > 0);
    d.ops.forEach((o, i) => assert.equal(o.line, i + 1));
    // The reported op is the first disagreement of the minimized trace, and it is real.
    assert.ok(d.index >= 0 && d.index < d.ops.length);
    assert.notEqual(formatResult(d.model), formatResult(d.reference));
    const again = compareOnce(d.ops, mutated(PVM, 'gmem_host_fault_ignores_shared'), clean(PVM))!;
    assert.equal(again.index, d.index);
    assert.equal(formatResult(again.a[d.index]!), formatResult(d.model));
    assert.equal(formatResult(again.b[d.index]!), formatResult(d.reference));
    // 1-minimal: dropping any op makes the disagreement go away.
    for (let i = 0; i < d.ops.length; i++) {
      const fewer = d.ops
        .filter((_, j) => j !== i)
        .map((o, j) => ({ ...o, line: j + 1 }) as TraceOp);
      const x = compareOnce(fewer, mutated(PVM, 'gmem_host_fault_ignores_shared'), clean(PVM));
      assert.ok(x === undefined || x.index < 0, `still disagrees without op ${i + 1}`);
    }
    // The original trace of that seed disagrees too (the generator is the fuzzer's).
    const orig = generateTrace(d.seed, DIFFERENTIAL_OPTS);
    assert.equal(orig.length, d.originalOps);
    assert.ok(
      compareOnce(orig, mutated(PVM, 'gmem_host_fault_ignores_shared'), clean(PVM))!.index >= 0,
    );
    // And the faithful model agrees with itself on the minimized trace.
    assert.equal(compareOnce(d.ops, clean(PVM), clean(PVM))!.index, -1);
  });

  test('other result-visible mutants are found too (linux-6.18)', () => {
    for (const m of ['gmem_bind_overlap_allowed', 'vm_put_early']) {
      const r = runDifferential({
        seed: 1,
        profile: LINUX,
        model: mutated(LINUX, m),
        reference: clean(LINUX),
        shouldContinue: (p) => p.traces < 300,
      });
      assert.equal(r.disagreements.length, 1, `${m}: nothing in ${r.progress.traces} traces`);
      const d = r.disagreements[0]!;
      assert.ok(d.ops.length <= 8, `${m}: ${d.ops.length} ops`);
      assert.ok(compareOnce(d.ops, mutated(LINUX, m), clean(LINUX))!.index >= 0);
    }
  });

  test('the faithful model agrees with itself (no disagreement in 150 traces)', () => {
    for (const profile of [PVM, LINUX]) {
      const r = runDifferential({
        seed: 1,
        profile,
        model: clean(profile),
        reference: clean(profile),
        shouldContinue: (p) => p.traces < 150,
      });
      assert.equal(
        r.disagreements.length,
        0,
        r.disagreements.map((d) => lines(d.ops).join('\n')).join('\n\n'),
      );
      assert.equal(r.progress.traces, 150);
      assert.equal(r.progress.refused, 0);
      assert.ok(r.progress.ops >= 150 * 30, `${r.progress.ops} ops`);
    }
  });

  test('keepGoing collects every disagreement; shouldContinue sees the progress before each trace', () => {
    const seen: DifferentialProgress[] = [];
    const r = runDifferential({
      seed: 1,
      profile: PVM,
      model: mutated(PVM, 'gmem_host_fault_ignores_shared'),
      reference: clean(PVM),
      keepGoing: true,
      shouldContinue: (p) => {
        seen.push({ ...p });
        return p.traces < 60;
      },
    });
    assert.ok(r.disagreements.length >= 2, `${r.disagreements.length} disagreement(s)`);
    assert.equal(r.progress.disagreements, r.disagreements.length);
    assert.equal(r.progress.traces, 60);
    assert.equal(seen.length, 61);
    seen.forEach((p, i) => assert.equal(p.traces, i));
    // Seeds are consecutive from the first one, so each disagreement names its own trace.
    const seeds = r.disagreements.map((d) => d.seed);
    assert.deepEqual(
      seeds,
      [...new Set(seeds)].sort((a, b) => a - b),
    );
    assert.ok(seeds.every((s) => s >= 1 && s <= 60));
  });

  test('traces the reference refuses are counted, not compared', () => {
    /** The faithful model, except that it refuses every trace that runs a guest. */
    class RefusesRuns implements Backend {
      readonly name = 'refuses-KVM_RUN';
      private readonly m = clean(PVM);
      begin(): number {
        return this.m.begin();
      }
      exec(op: ResolvedOp): OpOutcome {
        if (op.op === 'KVM_RUN') throw new BackendRefusal('no guests here');
        return this.m.exec(op);
      }
      end(): void {
        this.m.end();
      }
    }
    const N = 40;
    const r = runDifferential({
      seed: 3,
      profile: PVM,
      model: clean(PVM),
      reference: new RefusesRuns(),
      shouldContinue: (p) => p.traces < N,
    });
    let withRun = 0;
    let opsCompared = 0;
    for (let s = 3; s < 3 + N; s++) {
      const t = generateTrace(s, DIFFERENTIAL_OPTS);
      if (t.some((o) => o.op === 'KVM_RUN')) withRun++;
      else opsCompared += t.length;
    }
    assert.ok(withRun > 0 && withRun < N, `${withRun} of ${N} traces run a guest`);
    assert.equal(r.progress.traces, N);
    assert.equal(r.progress.refused, withRun);
    assert.equal(r.progress.ops, opsCompared);
    assert.equal(r.disagreements.length, 0);
  });

  test('compareOnce reports the first differing op', () => {
    const ops = parseTrace(
      [
        '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
        '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":1,"as":"g"}',
        '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
        '{"op":"peek","addr":"m","len":4}',
      ].join('\n'),
    ).ops;
    const x = compareOnce(ops, mutated(PVM, 'gmem_host_fault_ignores_shared'), clean(PVM))!;
    assert.equal(x.index, 3);
    assert.equal(formatResult(x.b[3]!), '{"ok":false,"fault":"SIGBUS"}');
    assert.equal(firstDifference(x.a.slice(0, 3), x.b.slice(0, 3)), -1);
  });
});

// ---------------------------------------------------------------------------------------------

describe('runModelFuzz', () => {
  const summary = (r: ReturnType<typeof runModelFuzz>): string =>
    JSON.stringify({ p: r.progress, f: r.found.map((f) => ({ ...f, ops: lines(f.ops) })) });

  test('is deterministic for a seed, coverage included', () => {
    const run = (): { r: string; c: string } => {
      const coverage = newCoverage();
      const r = runModelFuzz({
        seed: 5,
        profile: LINUX,
        coverage,
        shouldContinue: (p) => p.ops < 3000,
      });
      const c = JSON.stringify(
        Object.fromEntries(
          Object.entries(coverage).map(([k, m]) => [k, [...(m as Map<string, number>)].sort()]),
        ),
      );
      return { r: summary(r), c };
    };
    const a = run();
    const b = run();
    assert.deepEqual(a, b);
    assert.match(a.r, /"violations":0/);
    const other = runModelFuzz({ seed: 6, profile: LINUX, shouldContinue: (p) => p.ops < 3000 });
    assert.notEqual(summary(other), a.r);
  });

  test('a mutant is caught; the minimized trace breaks that invariant only with the mutant', () => {
    const calls: string[] = [];
    const r = runModelFuzz({
      seed: 1,
      profile: LINUX,
      mutants: ['punch_no_zap'],
      shouldContinue: (p) => p.ops < 20_000,
      onViolation: (f) => calls.push(f.invariant),
    });
    assert.equal(r.found.length, 1);
    assert.equal(r.progress.violations, 1);
    const f = r.found[0]!;
    assert.deepEqual(calls, [f.invariant]);
    assert.ok(f.ops.length <= f.originalOps && f.ops.length <= 10, `${f.ops.length} ops`);
    assert.ok(f.opsToDetection <= r.progress.ops);
    assert.ok(breaks(f.ops, LINUX, ['punch_no_zap'], f.invariant));
    assert.ok(!breaks(f.ops, LINUX, [], f.invariant));
    // Same seed, same finding.
    const again = runModelFuzz({
      seed: 1,
      profile: LINUX,
      mutants: ['punch_no_zap'],
      shouldContinue: (p) => p.ops < 20_000,
    });
    assert.equal(summary(again), summary(r));
  });

  test('recordCoverage counts ops, errnos, exits and faults', () => {
    const t = parseTrace(
      [
        '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
        '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":1,"as":"g"}',
        '{"op":"fallocate","fd":"g","mode":2,"offset":0,"len":4096}',
        '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
        '{"op":"peek","addr":"m","len":4}',
        '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
        '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":4096}}]}',
      ].join('\n'),
    ).ops;
    const c = newCoverage();
    recordCoverage(c, t, runTrace(t, clean(LINUX)));
    assert.equal(c.ops.get('KVM_CREATE_VM'), 1);
    assert.equal(c.ops.get('KVM_RUN'), 1);
    assert.equal(c.errnos.get('EOPNOTSUPP'), 1);
    assert.equal(c.faults.get('SIGBUS'), 1);
    assert.equal(c.exits.get('MMIO'), 1);
    assert.equal(c.exits.get('LOAD'), 1);
    assert.equal(c.exits.get('HLT'), 1);
  });
});

// ---------------------------------------------------------------------------------------------

/**
 * Drive a stepped computation, answering "stop" from the first pause at which `stopAt` (given
 * the phase and how many pauses of that phase came before) says so; the answer then stays "stop"
 * as a real driver's would (budgets and signals do not go away).
 */
function driveUntil<T>(g: Steps<T>, stopAt: (phase: Phase, nth: number) => boolean): T {
  const seen = { fuzz: 0, shrink: 0 };
  let stop = false;
  for (;;) {
    const r = g.next(stop);
    if (r.done === true) return r.value;
    stop ||= stopAt(r.value, seen[r.value]++);
  }
}

describe('stepped fuzzing (stop at an op boundary)', () => {
  test('TraceGenerator.stream hands out exactly the ops generateTrace returns', () => {
    for (const opts of [MODEL_OPTS, DIFFERENTIAL_OPTS, { ops: 25 }]) {
      for (let seed = 1; seed <= 40; seed++) {
        const streamed = [...new TraceGenerator(seed, opts).stream()];
        assert.deepEqual(lines(streamed), lines(generateTrace(seed, opts)), `seed ${seed}`);
      }
    }
  });

  test('seeds are 32-bit and wrap', () => {
    assert.equal(MAX_SEED, 2 ** 32 - 1);
    assert.equal(nextSeed(5), 6);
    assert.equal(nextSeed(MAX_SEED), 0);
    const seeds: number[] = [];
    runModelFuzz({
      seed: MAX_SEED,
      profile: LINUX,
      mutants: ['punch_no_zap'],
      keepGoing: true,
      shouldContinue: (p) => p.traces < 3,
      onViolation: (f) => seeds.push(f.seed),
    });
    assert.ok(
      seeds.every((x) => x === MAX_SEED || x === 0 || x === 1),
      `${seeds.join(',')}`,
    );
  });

  test('model-based: a stop after op N leaves exactly N ops, the same ones an unstopped run makes', () => {
    for (const n of [1, 59, 60, 61, 250]) {
      const coverage = newCoverage();
      let live: ModelFuzzProgress | undefined;
      const r = driveUntil(
        modelFuzzSteps({
          seed: 5,
          profile: LINUX,
          coverage,
          shouldContinue: (p) => {
            live = p;
            return true;
          },
        }),
        (phase) => phase === 'fuzz' && live!.ops >= n,
      );
      assert.equal(r.stopped, true);
      assert.equal(r.progress.ops, n, `stop after ${n}`);
      assert.equal(
        Object.values(Object.fromEntries(coverage.ops)).reduce((a, b) => a + b, 0),
        n,
        'coverage counts the ops that ran',
      );
      // The run is the unstopped run's prefix: same traces, same ops.
      const whole = runModelFuzz({
        seed: 5,
        profile: LINUX,
        shouldContinue: (p) => p.ops < n,
      });
      assert.equal(r.progress.traces, whole.progress.traces);
    }
  });

  test('model-based: a stop while shrinking writes the smallest trace reached, still failing', () => {
    const full = runModelFuzz({
      seed: 1,
      profile: LINUX,
      mutants: ['punch_no_zap'],
      shouldContinue: (p) => p.ops < 20_000,
    });
    const whole = full.found[0]!;
    assert.equal(whole.shrinkStopped, false);
    for (const after of [0, 1, 25, 200]) {
      const r = driveUntil(
        modelFuzzSteps({
          seed: 1,
          profile: LINUX,
          mutants: ['punch_no_zap'],
          shouldContinue: (p) => p.ops < 20_000,
        }),
        (phase, nth) => phase === 'shrink' && nth >= after,
      );
      assert.equal(r.stopped, true);
      assert.equal(r.found.length, 1);
      const f = r.found[0]!;
      assert.equal(f.shrinkStopped, true, `stopped after ${after} shrink ops`);
      assert.equal(f.seed, whole.seed);
      assert.equal(f.invariant, whole.invariant);
      assert.equal(f.originalOps, whole.originalOps);
      assert.ok(f.shrinkTries <= whole.shrinkTries);
      assert.ok(f.ops.length >= whole.ops.length && f.ops.length <= f.originalOps);
      if (after === 0) assert.equal(f.ops.length, f.originalOps, 'stopped at once: unshrunk');
      // What is written still breaks the invariant with the mutant, and the reported violation
      // is that trace's.
      assert.ok(breaks(f.ops, LINUX, ['punch_no_zap'], f.invariant));
      f.ops.forEach((o, i) => assert.equal(o.line, i + 1));
    }
  });

  test('shrinkSteps keeps the detail of the trace it returns', () => {
    const caps = Array.from({ length: 30 }, (_, i) => i);
    const ops: TraceOp[] = caps.map((c, i) => ({
      op: 'KVM_CHECK_EXTENSION',
      fd: { kind: 'handle', name: 'kvm' },
      cap: BigInt(c),
      line: i + 1,
    }));
    // Fails while cap 7 is present; the detail is the trace's length. One pause per op.
    const fails = function* (t: TraceOp[]): Steps<number | undefined | typeof STOPPED> {
      for (let i = 0; i < t.length; i++) if ((yield 'shrink') === true) return STOPPED;
      return t.some((o) => o.op === 'KVM_CHECK_EXTENSION' && o.cap === 7n) ? t.length : undefined;
    };
    const done = finish(shrinkSteps(ops, fails));
    assert.equal(done.ops.length, 1);
    assert.equal(done.detail, 1);
    assert.equal(done.stopped, false);
    const cut = driveUntil(shrinkSteps(ops, fails), (_, nth) => nth >= 40);
    assert.equal(cut.stopped, true);
    assert.ok(cut.ops.length > 1 && cut.ops.length < 30, `${cut.ops.length} ops`);
    assert.equal(cut.detail, cut.ops.length);
  });

  /** A faithful model backend that counts its contexts (begin/end), as the kvm backend's. */
  class Counting extends ModelBackend {
    begun = 0;
    ended = 0;
    override begin(): number {
      this.begun++;
      return super.begin();
    }
    override end(): void {
      this.ended++;
      super.end();
    }
  }

  test('differential: a stop mid-trace or mid-shrink ends both backends and keeps the prefix', () => {
    for (const [phase, after] of [
      ['fuzz', 0],
      ['fuzz', 17],
      ['fuzz', 39],
      ['shrink', 0],
      ['shrink', 30],
    ] as const) {
      const model = new Counting(PVM, {
        mutants: ['gmem_host_fault_ignores_shared'],
        events: false,
      });
      const reference = new Counting(PVM, { events: false });
      let live: DifferentialProgress | undefined;
      const r = driveUntil(
        differentialSteps({
          seed: 1,
          profile: PVM,
          model,
          reference,
          shouldContinue: (p) => {
            live = p;
            return p.traces < 200;
          },
        }),
        (ph, nth) => ph === phase && nth >= after,
      );
      const what = `stop in ${phase} after ${after}`;
      assert.equal(r.stopped, true, what);
      assert.equal(model.begun, model.ended, `${what}: model contexts`);
      assert.equal(reference.begun, reference.ended, `${what}: reference contexts`);
      assert.equal(live, r.progress);
      if (phase === 'fuzz') assert.equal(r.progress.ops, after + 1, what);
      else {
        assert.equal(r.disagreements.length, 1, what);
        const d = r.disagreements[0]!;
        assert.equal(d.shrinkStopped, true);
        const again = compareOnce(
          d.ops,
          mutated(PVM, 'gmem_host_fault_ignores_shared'),
          clean(PVM),
        )!;
        assert.equal(again.index, d.index, `${what}: the written trace still disagrees there`);
        assert.equal(formatResult(again.a[d.index]!), formatResult(d.model));
      }
    }
  });
});
