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
import { ChangeTracker } from '../../src/core/invariants/incremental.js';
import {
  buildOwnership,
  describeOwner,
  type Ownership,
} from '../../src/core/invariants/ownership.js';
import type { Host } from '../../src/core/host.js';
import { asPfn } from '../../src/core/base/units.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { generateTrace } from '../../src/fuzz/trace_gen.js';
import { HandleTable, stepTrace } from '../../src/trace/runner.js';
import { BackendRefusal, type TraceOp } from '../../src/trace/types.js';

const profile = getProfile('linux-6.18')!;

/** Ops run and violations seen (so a configuration that never fails is visible). */
function lockstep(
  ops: readonly TraceOp[],
  mutants: readonly string[],
  incremental: boolean | number = true,
  p = profile,
): number {
  const inc = new ModelBackend(p, { mutants, events: false });
  const full = new ModelBackend(p, { mutants, events: false });
  const ti = new HandleTable(inc.begin());
  const tf = new HandleTable(full.begin());
  const ci = new InvariantChecker(inc.host, undefined, { incremental });
  const cf = new InvariantChecker(full.host, undefined, { incremental: false });
  let seen = 0;
  for (const [i, op] of ops.entries()) {
    try {
      stepTrace(op, inc, ti);
    } catch (e) {
      // A seeded bug can lead where the model refuses to go (BackendRefusal): the run ends.
      if (e instanceof BackendRefusal) break;
      throw e;
    }
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

describe('incremental checking = full checking on linux-6.18-snp (SNP walks)', () => {
  const snp = getProfile('linux-6.18-snp')!;
  const snpConfigs = [
    { name: 'faithful model', mutants: [] as string[] },
    ...MUTANTS.filter((m) => m.platform === 'sev-snp').map((m) => ({
      name: m.name,
      mutants: [m.name],
    })),
  ];
  for (const c of snpConfigs) {
    test(c.name, () => {
      let violations = 0;
      for (let seed = 1; seed <= 4; seed++) {
        const ops = generateTrace(seed * 7919 + c.mutants.length, {
          ops: 250,
          feedback: snp,
          privateMemory: true,
        });
        violations += lockstep(ops, c.mutants, seed <= 2 ? true : seed * 20, snp);
      }
      if (c.mutants.length === 0) assert.equal(violations, 0);
    });
  }
});

describe('incremental checking = full checking on linux-next-gmem (in-place walks, NO_DIRECT_MAP)', () => {
  const next = getProfile('linux-next-gmem')!;
  const nextConfigs = [
    { name: 'faithful model', mutants: [] as string[] },
    ...MUTANTS.filter((m) => m.gmem === 'inplace-v7').map((m) => ({
      name: m.name,
      mutants: [m.name],
    })),
  ];
  for (const c of nextConfigs) {
    test(c.name, () => {
      let violations = 0;
      for (let seed = 1; seed <= 4; seed++) {
        const ops = generateTrace(seed * 7919 + c.mutants.length, {
          ops: 400,
          feedback: next,
          privateMemory: true,
        });
        violations += lockstep(ops, c.mutants, seed <= 2 ? true : seed * 20, next);
      }
      if (c.mutants.length === 0) assert.equal(violations, 0);
    });
  }
});

/** The ownership map as comparable rows: extent, owner description. */
function ownerRows(o: Ownership): string[] {
  const rows: string[] = [];
  for (const e of o.owners.entries()) rows.push(`${e.start}-${e.end} ${describeOwner(e.value)}`);
  return rows;
}

/** The tracker's ownership (when exact) against buildOwnership's, rebuilt from the model. */
function agreeOwnership(h: Host, t: ChangeTracker, where: string): boolean {
  const full = buildOwnership(h);
  const inc = t.ownership();
  if (inc === undefined) {
    // Inexact only while some frame is claimed twice (or an extent sits at pfn 0).
    return false;
  }
  assert.equal(full.doubles.length, 0, `${where}: exact tracker but buildOwnership has doubles`);
  assert.deepEqual(ownerRows(inc), ownerRows(full), `${where}: ownership maps differ`);
  assert.equal(inc.ownedFrames, full.ownedFrames, `${where}: owned frame counts differ`);
  let onFree: number | undefined;
  for (const e of full.owners.entries())
    if (h.frames.anyFree(e.start, e.end - e.start)) {
      onFree = e.start;
      break;
    }
  assert.equal(t.ownedOnFree(), onFree, `${where}: owned frame on the free list differs`);
  return true;
}

describe('the incremental ownership map = buildOwnership after every op', () => {
  for (const c of [configs[0]!, configs[configs.length - 1]!]) {
    test(c.name, () => {
      let exactChecks = 0;
      for (let seed = 1; seed <= 4; seed++) {
        const ops = generateTrace(seed * 104729 + c.mutants.length, {
          ops: 400,
          feedback: profile,
          privateMemory: seed % 2 === 0,
        });
        const b = new ModelBackend(profile, { mutants: c.mutants, events: false });
        const tb = new HandleTable(b.begin());
        const t = new ChangeTracker(b.host);
        for (const [i, op] of ops.entries()) {
          stepTrace(op, b, tb);
          t.update();
          if (agreeOwnership(b.host, t, `seed ${seed} op ${i} (${op.op})`)) exactChecks++;
        }
        t.detach();
      }
      assert.ok(exactChecks > 0);
    });
  }

  test('many changes to one source between two updates (pending ranges, overflow)', () => {
    // The VMM's anonymous memory changed directly, many disjoint ranges per update: the
    // tracker unclaims before each change and claims the pending ranges at the update.
    const h = new ModelBackend(profile, { events: false });
    h.begin();
    const host = h.host;
    const t = new ChangeTracker(host);
    let x = 12345;
    const rnd = (n: number): number => {
      x = (x * 1103515245 + 12345) % 2147483648;
      return x % n;
    };
    let nextPfn = 1_000_000;
    for (let step = 0; step < 600; step++) {
      const changes = 1 + rnd(step % 10 === 0 ? 60 : 15);
      for (let k = 0; k < changes; k++) {
        const s = 0x10000 + rnd(step % 2 === 0 ? 150 : 400);
        const e = s + 1 + rnd(12);
        if (rnd(3) === 0) host.mm.anon.delete(s, e);
        else {
          host.mm.anon.set(s, e, { base: asPfn(nextPfn) });
          nextPfn += e - s + 1 + rnd(3);
        }
      }
      t.update();
      assert.ok(agreeOwnership(host, t, `step ${step}`), `step ${step}: inexact`);
    }
    t.detach();
  });
});
