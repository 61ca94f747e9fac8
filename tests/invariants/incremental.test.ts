/**
 * The change-driven checker reports exactly what a full check reports: on random traces (seeded,
 * with no mutant, with each mutant, with all of them), two models run the same ops in lockstep,
 * one checked incrementally and one with every invariant evaluated over the whole state, and
 * their violation lists after every op must be identical (invariant, object, message, focus,
 * order).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBackend } from '../../src/backends/model.js';
import { MUTANTS } from '../../src/core/base/mutants.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { generateTrace } from '../../src/fuzz/trace_gen.js';
import { HandleTable, stepTrace } from '../../src/trace/runner.js';
import type { TraceOp } from '../../src/trace/types.js';

const profile = getProfile('linux-6.18')!;

/** Ops run and violations seen (so a configuration that never fails is visible). */
function lockstep(
  ops: readonly TraceOp[],
  mutants: readonly string[],
  incremental: boolean | number = true,
): number {
  const inc = new ModelBackend(profile, { mutants, events: false });
  const full = new ModelBackend(profile, { mutants, events: false });
  const ti = new HandleTable(inc.begin());
  const tf = new HandleTable(full.begin());
  const ci = new InvariantChecker(inc.host, undefined, { incremental });
  const cf = new InvariantChecker(full.host, undefined, { incremental: false });
  let seen = 0;
  for (const [i, op] of ops.entries()) {
    stepTrace(op, inc, ti);
    stepTrace(op, full, tf);
    const a = ci.check();
    const b = cf.check();
    assert.deepEqual(a, b, `op ${i} (${op.op}): incremental and full checks differ`);
    seen += a.length;
  }
  return seen;
}

const configs: Array<{ name: string; mutants: string[] }> = [
  { name: 'faithful model', mutants: [] },
  ...MUTANTS.map((m) => ({ name: m.name, mutants: [m.name] })),
  { name: 'every mutant at once', mutants: MUTANTS.map((m) => m.name) },
];

describe('incremental checking = full checking after every op', () => {
  for (const c of configs) {
    test(c.name, () => {
      let violations = 0;
      for (let seed = 1; seed <= 6; seed++) {
        const ops = generateTrace(seed * 7919 + c.mutants.length, {
          ops: 250,
          feedback: profile,
          privateMemory: seed % 2 === 0,
        });
        // From the first op, and taking over from full checks part-way (the default).
        violations += lockstep(ops, c.mutants, seed <= 4 ? true : seed * 20);
      }
      if (c.mutants.length === 0) assert.equal(violations, 0);
    });
  }

  test('one long trace (2,000 ops, every mutant)', () => {
    const ops = generateTrace(42, { ops: 2000, feedback: profile, privateMemory: true });
    lockstep(
      ops,
      MUTANTS.map((m) => m.name),
    );
  });
});
