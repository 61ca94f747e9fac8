/**
 * The conformance suite (conformance/**): every case's result lines were recorded on the real
 * /dev/kvm of the development machines. Each case must replay identically on the model
 * (linux-6.18-pvm), and — when this machine has a usable /dev/kvm — on the real kernel too, which
 * catches a kernel that drifted from the recorded behaviour.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { checkCase, type CaseResult } from '../../src/conformance/suite.js';
import { findCases, readCase } from '../../src/cli/conformance.js';
import { openKvmBackend } from '../../src/backends/kvm/index.js';

const root = join(process.cwd(), 'conformance');
const files = findCases([root]);

function explain(r: CaseResult): string {
  if (r.error !== undefined) return r.error;
  return r.mismatches
    .map(
      (m) =>
        `op ${m.index} (line ${m.line}) ${m.op}: kernel ${JSON.stringify(m.expected)} vs ${JSON.stringify(m.actual)}`,
    )
    .join('\n');
}

describe('conformance suite on the model (linux-6.18-pvm)', () => {
  const model = new ModelBackend(getProfile('linux-6.18-pvm')!);
  test('has at least 30 recorded cases', () => {
    assert.ok(files.length >= 30, `only ${files.length} cases`);
  });
  for (const f of files) {
    const c = readCase(f, root);
    test(c.name, () => {
      const r = checkCase(c, model);
      assert.ok(r.ok, explain(r));
    });
  }
});

describe("conformance suite on this machine's /dev/kvm", () => {
  const kvm = openKvmBackend();
  if ('unavailable' in kvm) {
    test('real kernel', (t) => {
      t.skip(`/dev/kvm not usable: ${kvm.unavailable}`);
    });
    return;
  }
  for (const f of files) {
    const c = readCase(f, root);
    test(c.name, () => {
      const r = checkCase(c, kvm);
      assert.ok(r.ok, explain(r));
    });
  }
});
