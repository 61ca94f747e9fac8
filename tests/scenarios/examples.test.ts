/**
 * Every scenario under examples/ (recursively; `pending/` directories hold scenarios whose
 * expectations the model does not meet yet and are skipped; `workloads/` holds `gmemlab compare`
 * workloads, tested by tests/unit/compare.test.ts) must run on the model of its own kernel
 * profile with all expectations met. One test per file.
 *
 * Tests run from the repository root (compiled to dist/tests/...), so examples/ is found through
 * process.cwd().
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ModelBackend } from '../../src/backends/model.js';
import { DEFAULT_PROFILE, getProfile } from '../../src/core/profiles/index.js';
import { runScenario } from '../../src/scenario/run.js';
import { parseScenario } from '../../src/scenario/scenario.js';

const ROOT = process.cwd();
const EXAMPLES = join(ROOT, 'examples');

function findScenarios(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'pending' && name !== 'workloads') findScenarios(p, out);
    } else if (name.endsWith('.yaml') || name.endsWith('.yml')) out.push(p);
  }
  return out;
}

const files = findScenarios(EXAMPLES);

test('examples/ contains scenarios', () => {
  assert.ok(files.length > 0, `no .yaml scenarios found under ${EXAMPLES}`);
});

for (const file of files) {
  const rel = relative(ROOT, file);
  test(`scenario ${rel} meets all its expectations`, () => {
    const parsed = parseScenario(readFileSync(file, 'utf8'), rel);
    assert.ok(
      parsed.scenario !== undefined,
      `${rel} does not parse:\n${parsed.errors.map((e) => e.message).join('\n')}`,
    );
    const scenario = parsed.scenario;
    const kernel = scenario.kernel ?? DEFAULT_PROFILE;
    const profile = getProfile(kernel);
    assert.ok(profile !== undefined, `${rel}: unknown kernel profile "${kernel}"`);
    const backend = new ModelBackend(profile);
    const run = runScenario(scenario, backend, {
      drainEvents: () => backend.host.events.drain(),
      host: () => backend.host,
    });
    const failures: string[] = [];
    for (const o of run.outcomes) {
      if (o.kind !== 'op') continue;
      for (const f of o.failures) failures.push(`${rel}:${o.step.line}: step ${o.index}: ${f}`);
    }
    assert.equal(
      run.failedSteps,
      0,
      `${run.failedSteps} step(s) of ${rel} failed on ${backend.name}:\n${failures.join('\n')}`,
    );
  });
}
