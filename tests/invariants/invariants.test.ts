/**
 * The invariant checker has teeth (every mutant is caught by fuzzing with a small budget) and no
 * false alarms (the faithful model passes fuzzing, every example scenario and every conformance
 * case with all invariants checked after every op).
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { MUTANTS, mutantFuzzProfile } from '../../src/core/base/mutants.js';
import { INVARIANTS } from '../../src/core/invariants/index.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { runModelFuzz } from '../../src/fuzz/model_fuzz.js';
import { runChecked } from '../../src/check/checked_run.js';
import { parseTrace } from '../../src/trace/parse.js';
import { parseScenario } from '../../src/scenario/scenario.js';
import { shrinkTrace } from '../../src/fuzz/shrink.js';

const SEED = 1;

function walk(dir: string, ext: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) walk(p, ext, out);
    else if (p.endsWith(ext) && !p.endsWith('.expected.jsonl')) out.push(p);
  }
  return out;
}

describe(`every mutant is caught by model-based fuzzing (seed ${SEED}, at most 40,000 ops each)`, () => {
  for (const m of MUTANTS) {
    test(m.name, () => {
      // A platform's mutants are fuzzed on a profile of that platform.
      const profile = getProfile(mutantFuzzProfile(m))!;
      const r = runModelFuzz({
        seed: SEED,
        profile,
        mutants: [m.name],
        shouldContinue: (p) => p.ops < 40_000,
      });
      assert.equal(r.found.length, 1, `${m.name} not caught in ${r.progress.ops} ops`);
      const f = r.found[0]!;
      // The minimized trace still breaks the invariant on the mutant, and not on the faithful model.
      assert.ok(runChecked(f.ops, profile, { mutants: [m.name] }).failures.length > 0);
      assert.equal(
        runChecked(f.ops, profile).failures.length,
        0,
        `the minimized trace breaks the faithful model too`,
      );
    });
  }
});

describe('no false alarm on the faithful model', () => {
  for (const name of ['linux-6.18', 'linux-6.18-pvm', 'linux-6.18-snp']) {
    test(`model-based fuzzing, 60,000 ops on ${name} (seed ${SEED})`, () => {
      const r = runModelFuzz({
        seed: SEED,
        profile: getProfile(name)!,
        shouldContinue: (p) => p.ops < 60_000,
      });
      assert.equal(
        r.found.length,
        0,
        r.found.map((f) => `${f.invariant}: ${f.violation.message} (seed ${f.seed})`).join('\n'),
      );
    });
  }
  test('every example scenario', () => {
    for (const f of walk(join(process.cwd(), 'examples'), '.yaml')) {
      const s = parseScenario(readFileSync(f, 'utf8'), f).scenario!;
      const r = runChecked(
        s.steps.flatMap((x) => (x.kind === 'op' ? [x.op] : [])),
        getProfile(s.kernel ?? 'linux-6.18')!,
      );
      assert.equal(r.failures.length, 0, `${f}: ${JSON.stringify(r.failures[0]?.violations)}`);
    }
  });
  test('every conformance case, on both profiles', () => {
    for (const f of walk(join(process.cwd(), 'conformance'), '.jsonl')) {
      const t = parseTrace(readFileSync(f, 'utf8'), f);
      for (const p of ['linux-6.18-pvm', 'linux-6.18']) {
        const r = runChecked(t.ops, getProfile(p)!);
        assert.equal(
          r.failures.length,
          0,
          `${f} on ${p}: ${JSON.stringify(r.failures[0]?.violations)}`,
        );
      }
    }
  });
});

test('a zero-page stage-2 mapping never coalesces with the frame after it (fuzz seed 23111163)', () => {
  // The first frame the model allocates is pfn 1, right after the zero page (pfn 0): a read-only
  // pre-fault of gfn 0x310 (zero page) and 0x311 (pfn 1) once made one extent, which read as two
  // zero-page gfns.
  const t = parseTrace(
    [
      '{"op":"mmap","fd":null,"length":32768,"prot":3,"flags":2,"offset":0,"as":"m2"}',
      '{"op":"poke","addr":"m2+0x1000","hex":"23e0bae988db6371"}',
      '{"op":"KVM_CREATE_VM","fd":"kvm","type":0,"as":"vm5"}',
      '{"op":"KVM_CREATE_VCPU","vm":"vm5","id":1,"as":"cpu7"}',
      '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm5","slot":3,"flags":2,"guest_phys_addr":3211264,"memory_size":12288,"userspace_addr":"m2"}',
      '{"op":"KVM_PRE_FAULT_MEMORY","vcpu":"cpu7","gpa":3211264,"size":12288,"flags":0}',
    ].join('\n'),
    'seed23111163.jsonl',
  );
  const r = runChecked(t.ops, getProfile('linux-6.18')!);
  assert.equal(r.failures.length, 0, JSON.stringify(r.failures[0]?.violations));
});

test('the catalogue documents every invariant', () => {
  assert.ok(INVARIANTS.length >= 8);
  for (const i of INVARIANTS) {
    assert.match(i.name, /^[a-z0-9-]+$/);
    for (const field of [i.title, i.statement, i.mechanism, i.origin])
      assert.ok(field.length > 10, `${i.name} lacks documentation`);
  }
  assert.ok(MUTANTS.length >= 12);
});

test('shrinking keeps the failure and removes the rest', () => {
  const t = parseTrace(
    [
      '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
      '{"op":"KVM_CHECK_EXTENSION","cap":234}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
      '{"op":"fstat","fd":"g"}',
      '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
      '{"op":"close","fd":"vm"}',
    ].join('\n'),
  );
  const r = shrinkTrace(
    t.ops,
    (ops) => ops.some((o) => o.op === 'mmap') && ops.some((o) => o.op === 'KVM_CREATE_GUEST_MEMFD'),
  );
  assert.deepEqual(
    r.ops.map((o) => o.op),
    ['KVM_CREATE_GUEST_MEMFD', 'mmap'],
  );
});
