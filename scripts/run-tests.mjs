#!/usr/bin/env node
// Runs every compiled test file (dist/tests/**/*.test.js) with node:test, prints the spec
// report, then one final line "N passed, N failed" that CI reads. Optional arguments are
// substrings: only test files whose path contains one of them run.
import { run } from 'node:test';
import { spec } from 'node:test/reporters';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import os from 'node:os';

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const filters = process.argv.slice(2);
let files = walk('dist/tests', []).sort();
if (filters.length > 0) files = files.filter((f) => filters.some((s) => f.includes(s)));
if (files.length === 0) {
  console.error('no test files matched');
  console.log('0 passed, 1 failed');
  process.exit(1);
}

let passed = 0;
let failed = 0;
let skipped = 0;
let todo = 0;
const failures = [];
const stream = run({ files, concurrency: Math.max(1, os.availableParallelism()) });
stream.on('test:pass', (ev) => {
  if (ev.details?.type === 'suite') return;
  if (ev.skip) skipped++;
  else if (ev.todo) todo++;
  else passed++;
});
stream.on('test:fail', (ev) => {
  if (ev.details?.type === 'suite') return;
  if (ev.todo) {
    todo++;
    return;
  }
  failed++;
  failures.push(`${ev.name} (${ev.file ? relative(process.cwd(), ev.file) : '?'})`);
});
stream.compose(spec).pipe(process.stdout);
stream.on('end', () => {
  setImmediate(() => {
    if (failures.length > 0) {
      console.log('\nFailed tests:');
      for (const f of failures) console.log(`  - ${f}`);
    }
    console.log(
      `${skipped} skipped (each skip prints its reason above), ${todo} todo (known gaps, listed above)`,
    );
    console.log(`${passed} passed, ${failed} failed`);
    process.exitCode = failed > 0 ? 1 : 0;
  });
});
