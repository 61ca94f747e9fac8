/**
 * Which facts a conformance case's results depend on, computed on the model: the case is replayed
 * on profiles that differ from the reference profile in one fact only, and every fact whose flip
 * changes a result is a dependency. The suite's tests hold every case's `# depends:` line equal to
 * this, so a recording is never applied where a fact it depends on differs.
 */
import { ModelBackend } from '../backends/model.js';
import { composeProfile } from '../core/profiles/compose.js';
import type { KernelFacts, NeedableFact } from '../core/profiles/facts.js';
import { getProfile, REFERENCE_PROFILE, type KernelProfile } from '../core/profiles/index.js';
import { formatResult } from '../trace/format.js';
import { runTrace } from '../trace/runner.js';
import type { TraceOp } from '../trace/types.js';

/** One fact and the profiles on either side of it (same other facts). */
export type FactFlip = {
  readonly fact: NeedableFact;
  readonly profiles: readonly KernelProfile[];
};

function variant(base: KernelProfile, name: string, f: KernelFacts): KernelProfile {
  return composeProfile({ name: `${base.name}/${name}`, description: name }, f);
}

/** The flips the kernels met so far can differ in (guest_memfd), and the host facts. */
export function factFlips(): FactFlip[] {
  const ref = getProfile(REFERENCE_PROFILE)!;
  const f = ref.facts;
  return [
    { fact: 'guest_memfd', profiles: [ref, getProfile('linux-6.18-pvm-nogmem')!] },
    {
      fact: 'pku',
      profiles: [ref, variant(ref, 'no-pku', { ...f, host: { ...f.host, pku: !f.host.pku } })],
    },
    {
      fact: 'thp_madvise',
      profiles: [
        ref,
        variant(ref, 'thp-always', { ...f, host: { ...f.host, thp: 'always' } }),
        variant(ref, 'thp-never', { ...f, host: { ...f.host, thp: 'never' } }),
      ],
    },
    {
      fact: 'ksm',
      profiles: [ref, variant(ref, 'no-ksm', { ...f, host: { ...f.host, ksm: !f.host.ksm } })],
    },
  ];
}

/** The facts among `flips` whose flip changes at least one result of the trace on the model. */
export function computeDepends(ops: readonly TraceOp[], flips = factFlips()): NeedableFact[] {
  const out: NeedableFact[] = [];
  const run = (p: KernelProfile): string =>
    runTrace(ops, new ModelBackend(p, { events: false }))
      .map(formatResult)
      .join('\n');
  for (const fl of flips) {
    const [first, ...rest] = fl.profiles.map(run);
    if (rest.some((r) => r !== first)) out.push(fl.fact);
  }
  return out;
}
