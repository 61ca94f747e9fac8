#!/usr/bin/env node
// Regenerates the comparison tables in README.md ("Comparing designs"): each block between
// `<!-- compare: examples/workloads/NAME.yml -->` and `<!-- /compare -->` becomes the output of
// `gmemlab compare examples/workloads/NAME.yml` (after `npm run build`), and a block opened with
// `<!-- compare: examples/workloads/NAME.yml --designs platforms -->` the output of that command
// line (the platforms' tables). The tables are the command's output, never edited by hand;
// tests/unit/compare.test.ts fails when one is stale.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

const README = 'README.md';
const text = readFileSync(README, 'utf8');
const out = text.replace(
  /(<!-- compare: (\S+)((?: --designs \S+)?) -->\n)[^]*?(<!-- \/compare -->)/g,
  (_m, open, file, designs, close) => {
    let table;
    const args = [
      'dist/src/cli/main.js',
      'compare',
      ...designs.trim().split(' ').filter(Boolean),
      file,
    ];
    try {
      table = execFileSync(process.execPath, args, {
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1' },
      });
    } catch (e) {
      // Exit 1 (an outcome that does not hold) still prints the tables; show them.
      table = e.stdout ?? '';
    }
    return `${open}\n\`\`\`text\n${table.trimEnd()}\n\`\`\`\n\n${close}`;
  },
);
if (out !== text) writeFileSync(README, out);
console.log(out === text ? 'README.md: tables up to date' : 'README.md: tables regenerated');
