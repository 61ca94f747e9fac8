/**
 * The conformance suite (conformance/**): every recording of a case (what a real kernel returned)
 * must replay identically on the model of its profile; every case's `# depends:` line must list
 * exactly the facts its results depend on; and, when this machine has a usable /dev/kvm, the live
 * kernel must agree with the recordings that apply to it. Cases that cannot be compared here are
 * skipped with one reason per root cause.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile, REFERENCE_PROFILE } from '../../src/core/profiles/index.js';
import {
  checkCase,
  chooseRecording,
  type CaseResult,
  type ConformanceCase,
  type Recording,
} from '../../src/conformance/suite.js';
import { computeDepends } from '../../src/conformance/declarations.js';
import { findCases, readCase } from '../../src/cli/conformance.js';
import { openKvmBackend } from '../../src/backends/kvm/index.js';
import { describeKernel } from '../../src/cli/backends.js';

const root = join(process.cwd(), 'conformance');
const cases: ConformanceCase[] = findCases([root]).map((f) => readCase(f, root));

function explain(r: CaseResult): string {
  if (r.error !== undefined) return r.error;
  return r.mismatches
    .map(
      (m) =>
        `op ${m.index} (line ${m.line}) ${m.op}: kernel ${JSON.stringify(m.expected)} vs ${JSON.stringify(m.actual)}`,
    )
    .join('\n');
}

describe('conformance suite: each recording on the model of its profile', () => {
  const models = new Map<string, ModelBackend>();
  const modelFor = (rec: Recording): ModelBackend => {
    let m = models.get(rec.profile);
    if (m === undefined) models.set(rec.profile, (m = new ModelBackend(getProfile(rec.profile)!)));
    return m;
  };
  test('has at least 30 cases, each recorded on at least one kernel', () => {
    assert.ok(cases.length >= 30, `only ${cases.length} cases`);
    const unrecorded = cases.filter((c) => c.recordings.length === 0).map((c) => c.name);
    assert.deepEqual(unrecorded, []);
  });
  for (const c of cases)
    for (const rec of c.recordings)
      test(`${c.name} (${rec.profile})`, () => {
        const r = checkCase(c, modelFor(rec), rec);
        assert.ok(r.ok, explain(r));
      });
});

describe('conformance suite: declared facts', () => {
  test('every case declares exactly the facts its results depend on (# depends:)', () => {
    const wrong: string[] = [];
    for (const c of cases) {
      const computed = computeDepends(c.ops).sort();
      const declared = [...c.depends].sort();
      if (computed.join(',') !== declared.join(','))
        wrong.push(
          `${c.name}: declares [${declared.join(', ')}], depends on [${computed.join(', ')}]`,
        );
    }
    assert.deepEqual(wrong, []);
  });
  test(`every recording other than the reference profile's (${REFERENCE_PROFILE}) names its kernel and profile`, () => {
    for (const c of cases)
      for (const rec of c.recordings)
        assert.match(
          rec.header ?? '',
          new RegExp(
            `^recorded on Linux \\S+ /dev/kvm \\(profile ${rec.profile.replace(/[.]/g, '\\.')}\\)`,
          ),
          rec.file,
        );
  });
});

describe("conformance suite on this machine's /dev/kvm", () => {
  const kvm = openKvmBackend();
  if ('unavailable' in kvm) {
    test('real kernel', (t) => {
      t.skip(`/dev/kvm not usable: ${kvm.unavailable}`);
    });
    return;
  }
  const live = describeKernel(kvm);
  const skipped = new Map<string, string[]>();
  for (const c of cases) {
    const ch = chooseRecording(c, live.facts);
    if ('skip' in ch) {
      skipped.set(ch.skip, [...(skipped.get(ch.skip) ?? []), c.name]);
      continue;
    }
    test(`${c.name} (recorded on ${ch.recording.profile})`, () => {
      const r = checkCase(c, kvm, ch.recording);
      assert.ok(r.ok, explain(r));
    });
  }
  // One skip per root cause, naming the cases it covers.
  for (const [why, names] of skipped)
    test(`skipped: ${why}`, (t) => {
      t.skip(`${why} — ${names.length} case(s): ${names.join(', ')}`);
    });
});
