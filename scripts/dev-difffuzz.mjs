// Development helper: generate random traces, run them on the model and on /dev/kvm, print the
// first disagreement of each failing seed. Usage: node scripts/dev-difffuzz.mjs START COUNT [OPS]
import { generateTrace } from '../dist/src/fuzz/trace_gen.js';
import { ModelBackend } from '../dist/src/backends/model.js';
import { openKvmBackend } from '../dist/src/backends/kvm/index.js';
import { getProfile } from '../dist/src/core/profiles/index.js';
import { runTrace } from '../dist/src/trace/runner.js';
import { firstDifference } from '../dist/src/trace/compare.js';
import { formatOp, formatResult } from '../dist/src/trace/format.js';
import { writeFileSync, mkdirSync } from 'node:fs';

const start = Number(process.argv[2] ?? 1);
const count = Number(process.argv[3] ?? 100);
const nops = Number(process.argv[4] ?? 40);
const kvm = openKvmBackend();
if ('unavailable' in kvm) throw new Error(kvm.unavailable);
const model = new ModelBackend(getProfile('linux-6.18-pvm'));
mkdirSync('/tmp/dfz', { recursive: true });
let bad = 0, refused = 0;
const kinds = new Map();
for (let seed = start; seed < start + count; seed++) {
  const ops = generateTrace(seed, { ops: nops, feedback: getProfile('linux-6.18-pvm'), realSafe: true });
  let a, b;
  try { b = runTrace(ops, kvm); } catch (e) { refused++; if (process.env.SHOWREF) console.log("refused", seed, e.message); continue; }
  a = runTrace(ops, model);
  const i = firstDifference(a, b);
  if (i >= 0) {
    bad++;
    const key = ops[i].op + ' ' + formatResult(a[i]).slice(0, 60) + ' vs ' + formatResult(b[i]).slice(0, 60);
    kinds.set(key, (kinds.get(key) ?? 0) + 1);
    if (kinds.get(key) === 1) {
      console.log(`seed ${seed} op#${i + 1}: ${formatOp(ops[i])}\n   model: ${formatResult(a[i])}\n   kvm:   ${formatResult(b[i])}`);
      writeFileSync(`/tmp/dfz/seed${seed}.jsonl`, ops.map(formatOp).join('\n') + '\n');
    }
  }
}
console.log(`${count} traces, ${bad} disagreeing, ${refused} refused`);
for (const [k, v] of [...kinds.entries()].sort((x, y) => y[1] - x[1])) console.log(v, k);
kvm.dispose?.();
