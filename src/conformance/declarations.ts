/**
 * Which facts a conformance case's results depend on, computed on the model: the case is replayed
 * on profiles that differ from the reference profile in one fact only, and every fact whose flip
 * changes a result is a dependency. The suite's tests hold every case's `# depends:` line equal to
 * this, so a recording is never applied where a fact it depends on differs.
 */
import { ModelBackend } from '../backends/model.js';
import { composeProfile } from '../core/profiles/compose.js';
import type { KernelFacts, NeedableFact } from '../core/profiles/facts.js';
import {
  getProfile,
  PROFILE_FLIPS,
  REFERENCE_PROFILE,
  type KernelProfile,
} from '../core/profiles/index.js';
import { OPS } from '../ops/registry.js';
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

/**
 * The flips: the kernel facts named profiles differ in (PROFILE_FLIPS: guest_memfd), and the host
 * facts the model uses, each changed alone on the reference profile.
 */
export function factFlips(): FactFlip[] {
  const ref = getProfile(REFERENCE_PROFILE)!;
  const f = ref.facts;
  const host = (name: string, h: Partial<KernelFacts['host']>): KernelProfile =>
    variant(ref, name, { ...f, host: { ...f.host, ...h } });
  return [
    ...PROFILE_FLIPS.map((fl) => ({
      fact: fl.fact,
      profiles: fl.between.map((n) => getProfile(n)!),
    })),
    {
      fact: 'ram',
      profiles: [
        ref,
        host('half-ram', { ramPages: Math.floor(f.host.ramPages / 2) }),
        host('double-ram', { ramPages: f.host.ramPages * 2 }),
      ],
    },
    { fact: 'pku', profiles: [ref, host('no-pku', { pku: !f.host.pku })] },
    {
      fact: 'thp_madvise',
      profiles: [ref, host('thp-always', { thp: 'always' }), host('thp-never', { thp: 'never' })],
    },
    { fact: 'ksm', profiles: [ref, host('no-ksm', { ksm: !f.host.ksm })] },
  ];
}

/**
 * The facts among `flips` whose flip changes at least one result of the trace on the model, and
 * `no_huge_pages` for a trace that maps hugetlb memory (the model knows only an empty pool, so it
 * cannot flip that fact: a recording with MAP_HUGETLB holds only where the pool is empty).
 */
export function computeDepends(ops: readonly TraceOp[], flips = factFlips()): NeedableFact[] {
  const out: NeedableFact[] = [];
  if (ops.some((o) => OPS.get(o.op)!.usesHugetlb?.(o) === true)) out.push('no_huge_pages');
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
