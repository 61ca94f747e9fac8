/**
 * SEV-SNP PSC descriptors in the fuzzer and their invariant: the generator's `psc` steps (valid
 * trace ops that round-trip, covering merged, mixed, PSMASH, 2M, partly done and invalid entries
 * and headers), SNP fuzz traces with them (no violation on the faithful model), the invariant
 * snp-psc-exit-matches-request on hand-written histories and on the model (with and without the
 * seeded bug snp_psc_merge_mixed_ops), and the mutant's listing and detection by the fuzzer.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Prng } from '../../src/fuzz/prng.js';
import { generateTrace } from '../../src/fuzz/trace_gen.js';
import { runModelFuzz } from '../../src/fuzz/model_fuzz.js';
import { genPscStep } from '../../src/ops/vcpu.js';
import { formatOp } from '../../src/trace/format.js';
import { parseTrace } from '../../src/trace/parse.js';
import type { GuestStep, TraceOp } from '../../src/trace/types.js';
import { runChecked } from '../../src/check/checked_run.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { mutantsFor } from '../../src/core/base/mutants.js';
import { InvariantChecker, invariantByName } from '../../src/core/invariants/index.js';
import type { CheckState, PscRecord } from '../../src/core/invariants/types.js';
import type { GuestProgramStep } from '../../src/core/arch/x86/kvm_run.js';
import type { PscEntry } from '../../src/core/arch/x86/x86_ops.js';
import { exitToTrace } from '../../src/backends/model_args.js';
import { Host } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import {
  createGmem,
  createVcpu,
  createVm,
  MEM_GUEST_MEMFD,
  mmapAnon,
  ok,
  setRegion,
} from './helpers.js';

const SNP = getProfile('linux-6.18-snp')!;
const INV = 'snp-psc-exit-matches-request';
const MUTANT = 'snp_psc_merge_mixed_ops';
type PscStep = Extract<GuestStep, { kind: 'psc' }>;

/** A generated psc step for seed `seed` (the generator draws from the walk's PRNG only). */
function genStep(seed: number, gfn0 = 0x40000n, pages = 2 + (seed % 7)): PscStep {
  const g = { r: new Prng(seed) } as unknown as Parameters<typeof genPscStep>[0];
  return genPscStep(g, gfn0, pages) as PscStep;
}

const runOp = (guest: GuestStep[]): TraceOp =>
  ({
    line: 1,
    op: 'KVM_RUN',
    vcpu: { kind: 'raw', value: 5n },
    guest,
    map_gpa_range: undefined,
  }) as TraceOp;

describe('generator: PSC descriptor steps', () => {
  test('every generated psc step is a valid trace op that round-trips through formatOp/parseTrace', () => {
    for (let seed = 1; seed <= 1500; seed++) {
      const op = runOp([genStep(seed)]);
      const text = formatOp(op) + '\n';
      const parsed = parseTrace(text, `psc-${seed}.jsonl`);
      assert.deepEqual(
        parsed.errors.map((e) => e.message),
        [],
        `seed ${seed}`,
      );
      assert.deepEqual(parsed.ops, [op], `seed ${seed}`);
      assert.equal(formatOp(parsed.ops[0]!) + '\n', text);
    }
  });

  test('the steps cover merging, mixed operations, PSMASH/UNSMASH, 2M and invalid entries and headers', () => {
    const gfn0 = 0x40000n;
    const pages = 4;
    const seen = new Set<string>();
    for (let seed = 1; seed <= 3000; seed++) {
      const s = genStep(seed, gfn0, pages);
      const n = s.entries.length;
      assert.ok(n >= 1 && n <= 253, `seed ${seed}: ${n} entries`);
      if (n === 253) seen.add('253 entries');
      if (n <= 4) seen.add('small');
      if (s.curEntry > s.endEntry) seen.add('cur_entry > end_entry');
      if (s.endEntry >= 253) seen.add('end_entry >= 253');
      if (s.endEntry >= n && s.endEntry < 253) seen.add('end_entry past the list');
      if (s.curEntry > 0 && s.curEntry <= s.endEntry) seen.add('resumed at cur_entry');
      s.entries.forEach((e, i) => {
        const big = e.pageSize === 1 ? 512 : 1;
        if (e.op === 3 || e.op === 4) seen.add('psmash/unsmash');
        if (e.op !== 1 && e.op !== 2 && e.op !== 3 && e.op !== 4) seen.add('bad op');
        if (e.pageSize === 1) seen.add('2M');
        if (e.pageSize === 1 && e.gfn % 512n !== 0n) seen.add('2M unaligned');
        if (e.pageSize === 1 && e.curPage > 0 && e.curPage < 512) seen.add('2M partly done');
        if (e.curPage > big) seen.add('cur_page out of range');
        if (e.curPage === big) seen.add('already done');
        if (e.gfn === gfn0 - 1n || e.gfn === gfn0 + BigInt(pages)) seen.add('just outside');
        const p = s.entries[i - 1];
        if (p === undefined || e.pageSize !== 0 || p.pageSize !== 0) return;
        if (e.gfn === p.gfn + 1n && e.op === p.op && (e.op === 1 || e.op === 2))
          seen.add('adjacent same op');
        if (e.gfn === p.gfn + 1n && e.op + p.op === 3) seen.add('adjacent private/shared');
      });
    }
    assert.deepEqual([...seen].sort(), [
      '253 entries',
      '2M',
      '2M partly done',
      '2M unaligned',
      'adjacent private/shared',
      'adjacent same op',
      'already done',
      'bad op',
      'cur_entry > end_entry',
      'cur_page out of range',
      'end_entry >= 253',
      'end_entry past the list',
      'just outside',
      'psmash/unsmash',
      'resumed at cur_entry',
      'small',
    ]);
  });

  test('SNP fuzz traces carry psc steps under every map_gpa_range policy, round-trip, and break nothing', () => {
    const policies = new Set<string>();
    let pscSteps = 0;
    let exits = 0;
    for (let seed = 1; seed <= 60; seed++) {
      const ops = generateTrace(seed, { ops: 120, feedback: SNP });
      const text = ops.map(formatOp).join('\n') + '\n';
      const parsed = parseTrace(text, `snp-${seed}.jsonl`);
      assert.deepEqual(
        parsed.errors.map((e) => e.message),
        [],
      );
      assert.deepEqual(parsed.ops, ops, `seed ${seed}`);
      for (const op of ops)
        if (op.op === 'KVM_RUN' && op.guest.some((s) => s.kind === 'psc')) {
          pscSteps++;
          policies.add(String(op.map_gpa_range));
        }
      const r = runChecked(ops, SNP, { endAtRefusal: true });
      assert.deepEqual(
        r.failures.flatMap((f) => f.violations.map((v) => `${v.invariant}: ${v.message}`)),
        [],
        `seed ${seed}`,
      );
      for (const op of ops)
        if (op.op === 'KVM_ENABLE_CAP' && op.cap === 201n && op.args[0] === 4096n) exits++;
    }
    assert.ok(pscSteps >= 10, `${pscSteps} runs with psc steps`);
    assert.ok(exits >= 10, `${exits} VMs with MAP_GPA_RANGE exits`);
    assert.deepEqual([...policies].sort(), ['convert', 'convert+discard', 'undefined']);
  });
});

// ---------------------------------------------------------------------------------------------
// The invariant on hand-written histories

const ENC = 16n;
const e = (gfn: bigint, op: number, pageSize: 0 | 1 = 0, curPage = 0): PscEntry => ({
  curPage,
  gfn,
  op,
  pageSize,
});
function check(p: Omit<PscRecord, 'vm' | 'ret'> & { ret?: bigint }): string[] {
  const inv = invariantByName(INV)!;
  const s = { pscs: [{ vm: 0, ret: 0n, ...p }] } as unknown as CheckState;
  return inv.check(s).map((v) => v.message);
}
const G = 0x40000n;

describe('snp-psc-exit-matches-request: hand-written histories', () => {
  test('a merged run of private entries answered by one ENCRYPTED exit holds', () => {
    const entries = [e(G, 1), e(G + 1n, 1), e(G + 2n, 2), e(G + 9n, 3)];
    const r = check({
      curEntry: 0,
      endEntry: 3,
      entries,
      exits: [
        { args: [G << 12n, 2n, ENC], ret: 0n, curPages: [0, 0, 0, 0] },
        { args: [(G + 2n) << 12n, 1n, 0n], ret: 0n, curPages: [1, 1, 0, 0] },
      ],
      curPages: [1, 1, 1, 1],
    });
    assert.deepEqual(r, []);
  });

  test('a shared entry riding along in a private exit breaks it', () => {
    const r = check({
      curEntry: 0,
      endEntry: 1,
      entries: [e(G, 1), e(G + 1n, 2)],
      exits: [{ args: [G << 12n, 2n, ENC], ret: 0n, curPages: [0, 0] }],
      curPages: [1, 1],
    });
    assert.equal(r.length, 1);
    assert.match(r[0]!, /entry 1 asked for gfn 0x40001 to become shared.*asks the VMM for private/);
  });

  test('a private entry marked done without any exit, or after a failed exit, breaks it', () => {
    // Swallowed into a PSMASH run: completed without an exit.
    assert.match(
      check({
        curEntry: 0,
        endEntry: 1,
        entries: [e(G, 3), e(G + 1n, 1)],
        exits: [],
        curPages: [1, 1],
      }).join('\n'),
      /entry 1 \(private, gfn 0x40001\) was marked done without a KVM_HC_MAP_GPA_RANGE exit/,
    );
    assert.match(
      check({
        curEntry: 0,
        endEntry: 0,
        entries: [e(G, 2)],
        exits: [{ args: [G << 12n, 1n, 0n], ret: 5n, curPages: [0] }],
        curPages: [1],
        ret: 0x100n << 32n,
      }).join('\n'),
      /marked done after the VMM failed/,
    );
  });

  test('an exit that covers pages no entry asked for, or an entry outside the header, breaks it', () => {
    assert.match(
      check({
        curEntry: 0,
        endEntry: 0,
        entries: [e(G, 1)],
        exits: [{ args: [G << 12n, 3n, ENC], ret: 0n, curPages: [0] }],
        curPages: [1],
      }).join('\n'),
      /does not match the entries it completed/,
    );
    assert.match(
      check({
        curEntry: 1,
        endEntry: 1,
        entries: [e(G, 1), e(G + 1n, 1)],
        exits: [{ args: [G << 12n, 2n, ENC], ret: 0n, curPages: [0, 0] }],
        curPages: [1, 1],
      }).join('\n'),
      /entry 0 was marked done .* did not ask for it/,
    );
    // Two entries of one exit that do not continue each other (the count alone matches).
    assert.match(
      check({
        curEntry: 0,
        endEntry: 1,
        entries: [e(G, 1), e(G + 5n, 1)],
        exits: [{ args: [G << 12n, 2n, ENC], ret: 0n, curPages: [0, 0] }],
        curPages: [1, 1],
      }).join('\n'),
      /entry 1 \(gfn 0x40005\) does not continue/,
    );
  });

  test("KVM's merge after a partly done 2M entry is allowed (the exit runs past the 2M range)", () => {
    // cur_page 510: the next entry is compared with entry_start.gfn + 2, so a 4K entry at G + 2
    // merges and the exit is [G + 510, 3 pages).
    const r = check({
      curEntry: 0,
      endEntry: 1,
      entries: [e(G, 1, 1, 510), e(G + 2n, 1)],
      exits: [{ args: [(G + 510n) << 12n, 3n, ENC | 1n], ret: 0n, curPages: [510, 0] }],
      curPages: [512, 1],
    });
    assert.deepEqual(r, []);
  });
});

// ---------------------------------------------------------------------------------------------
// On the model

const BASE = 0x10_0000n;
const PAGES = 1024n;
const GFN0 = BASE >> 12n;

/** An SNP guest after INIT2 with a 4 MiB guest_memfd slot at 1 MiB and MAP_GPA_RANGE exits. */
function snpGuest(mutants: string[] = []): {
  run: (steps: GuestProgramStep[]) => Array<Record<string, unknown>>;
  violations: () => string[];
} {
  const h = new Host(SNP, { parts: ALL_PARTS, mutants });
  const cc = { h, kvm: h.openDevKvm() };
  const checker = new InvariantChecker(h, [INV], { incremental: true });
  const vm = createVm(cc, 4n);
  const sev = ok(h.openDevSev(), 'open /dev/sev');
  const params = mmapAnon(cc, 0x1000n);
  const cmd = new Uint8Array(24);
  const dv = new DataView(cmd.buffer);
  dv.setUint32(0, 22, true);
  dv.setBigUint64(8, params, true);
  dv.setInt32(20, sev, true);
  ok(h.kvmMemoryEncryptOp(vm, { kind: 'buffer', bytes: cmd }), 'KVM_SEV_INIT2');
  const size = PAGES * 4096n;
  const gmem = createGmem(cc, vm, size);
  const uaddr = mmapAnon(cc, size);
  ok(setRegion(cc, vm, { flags: MEM_GUEST_MEMFD, gpa: BASE, size, uaddr, gmem }), 'memslot');
  ok(h.kvmEnableCap(vm, 201n, 0n, [1n << 12n]), 'EXIT_HYPERCALL');
  const vcpu = createVcpu(cc, vm);
  checker.check();
  return {
    run: (steps) =>
      h.kvmRun(vcpu, steps, 'convert').exits.map(exitToTrace) as Array<Record<string, unknown>>,
    violations: () => checker.check().map((v) => v.message),
  };
}
const psc = (entries: PscEntry[]): GuestProgramStep => ({
  kind: 'psc',
  curEntry: 0,
  endEntry: entries.length - 1,
  entries,
});
const hc = (gfn: bigint, npages: bigint, attrs: bigint): Record<string, unknown> => ({
  reason: 'HYPERCALL',
  nr: 12n,
  args: [gfn << 12n, npages, attrs],
});

describe('snp-psc-exit-matches-request on the model', () => {
  test('faithful: private and shared neighbours get one exit each; the invariant holds', () => {
    const g = snpGuest();
    const x = g.run([psc([e(GFN0, 1), e(GFN0 + 1n, 1), e(GFN0 + 2n, 2), e(GFN0 + 3n, 4)])]);
    assert.deepEqual(x.slice(0, 2), [hc(GFN0, 2n, ENC), hc(GFN0 + 2n, 1n, 0n)]);
    assert.deepEqual(g.violations(), []);
  });

  test('faithful: the partly done 2M merge overshoots the 2M range, and the invariant allows it', () => {
    const g = snpGuest();
    const x = g.run([psc([e(0x200n, 1, 1, 510), e(0x202n, 1)])]);
    assert.deepEqual(x[0], hc(0x200n + 510n, 3n, ENC | 1n));
    assert.deepEqual(g.violations(), []);
  });

  test(`mutant ${MUTANT}: the shared neighbour rides in the private exit and is caught`, () => {
    const g = snpGuest([MUTANT]);
    const x = g.run([psc([e(GFN0, 1), e(GFN0 + 1n, 2)])]);
    assert.deepEqual(x[0], hc(GFN0, 2n, ENC));
    const v = g.violations();
    assert.equal(v.length, 1);
    assert.match(v[0]!, /asked for gfn 0x101 to become shared/);
    // A private entry swallowed by a PSMASH run: no exit at all, yet marked done.
    const g2 = snpGuest([MUTANT]);
    assert.deepEqual(g2.run([psc([e(GFN0, 3), e(GFN0 + 1n, 1)])])[0], {
      reason: 'PSC',
      ret: 0n,
      cur_entry: 2,
      cur_pages: [1, 1],
    });
    assert.match(g2.violations().join('\n'), /was marked done without a KVM_HC_MAP_GPA_RANGE exit/);
  });
});

describe(`mutant ${MUTANT}`, () => {
  test('is an SEV-SNP mutant: listed for sev-snp profiles only', () => {
    assert.ok(mutantsFor('sev-snp').some((m) => m.name === MUTANT));
    const plat = getProfile('linux-6.18')!.parts.platform;
    assert.ok(!mutantsFor(plat).some((m) => m.name === MUTANT));
  });

  test('the model-based fuzzer finds it (seed 1, as bench:mutants runs it)', () => {
    const r = runModelFuzz({
      seed: 1,
      profile: SNP,
      mutants: [MUTANT],
      shouldContinue: (p) => p.traces < 300,
    });
    assert.equal(r.found[0]?.invariant, INV);
  });
});
