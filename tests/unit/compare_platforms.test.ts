/**
 * `gmemlab compare` on the confidential-computing platforms (src/compare/adapters/sev_snp.ts,
 * tdx.ts, pkvm.ts, confidential.ts): each adapter's lowering (launch, the guest's own conversion
 * request, validation / acceptance, private and shared accesses), the n/a policies, the
 * outcomes the platforms' models give (never written into the adapters), a seeded mutant showing
 * as a violation in a platform's column, the `--designs` groups and `--list`, and every shipped
 * workload on every platform: asserted outcomes hold, no unasserted violation, and README's
 * platform table is the command's output.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lowerWorkload, type Lowerer } from '../../src/compare/adapter.js';
import {
  ADAPTER_GROUPS,
  ADAPTER_NAMES,
  adapterByName,
  DESIGNS,
  PLATFORMS,
} from '../../src/compare/designs.js';
import {
  DEFAULT_POLICIES,
  POLICY_NAMES,
  policyByName,
  type Policy,
} from '../../src/compare/policy.js';
import { runCompare, type CompareRun } from '../../src/compare/run.js';
import { formatText } from '../../src/compare/report.js';
import { parseWorkload, type Workload } from '../../src/compare/workload.js';
import { compareMain } from '../../src/cli/compare.js';
import { formatOp } from '../../src/trace/format.js';

function workload(text: string, file = 'w.yml'): Workload {
  const p = parseWorkload(text, file, ADAPTER_NAMES, POLICY_NAMES);
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  return p.workload!;
}

function policy(name: string): Policy {
  const p = policyByName(name);
  assert.ok(typeof p !== 'string', String(p));
  return p;
}

function lowerer(name: string, pol: string, w: Workload): Lowerer {
  const l = adapterByName(name)!.lowerer(w, policy(pol));
  assert.ok(typeof l !== 'string', `n/a: ${String(l)}`);
  return l;
}

/** The lowering's ops as the trace format's JSON objects (handles by name), per executed step. */
function opsByStep(name: string, pol: string, w: Workload): Array<Array<Record<string, unknown>>> {
  const low = lowerWorkload(w, lowerer(name, pol, w));
  return low.execs.map((e) =>
    low.ops
      .slice(e.firstOp, e.endOp)
      .map((o) => JSON.parse(formatOp(o)) as Record<string, unknown>),
  );
}

function run(name: string, pol: string, w: Workload, mutants: string[] = []): CompareRun {
  return runCompare(w, adapterByName(name)!, policy(pol), { mutants });
}

const outcomes = (r: CompareRun): string[] => r.steps.map((s) => [...s.outcomes.keys()].join('|'));

const ROUND_TRIP = `name: round trip
steps:
  - boot: { private: 1 MiB, shared: 64 KiB }
  - guest_write: { at: 0x2000, hex: '5ec2e7ed' }
  - guest_read: { at: 0x2000, len: 4 }
  - share: { at: 0x2000, size: 8 KiB }
  - guest_write: { at: 0x2000, hex: '11223344' }
  - host_read: { at: 0x2000, len: 4 }
  - unshare: { at: 0x2000, size: 8 KiB }
  - guest_read: { at: 0x2000, len: 4 }
  - host_read: { at: 0x1000, len: 4 }
  - teardown: {}
`;

const guestOf = (op: Record<string, unknown>): Array<Record<string, Record<string, unknown>>> =>
  op.guest as Array<Record<string, Record<string, unknown>>>;

describe('the platforms are adapters of their own, chosen by name or group', () => {
  test('five platforms, none of them a default column', () => {
    assert.deepEqual(
      PLATFORMS.map((d) => d.name),
      [
        'linux-6.18-snp',
        'linux-6.18-tdx',
        'linux-next-gmem-snp',
        'linux-next-gmem-tdx',
        'linux-6.18-arm64-pkvm',
      ],
    );
    for (const p of PLATFORMS) {
      assert.ok(!DESIGNS.includes(p), p.name);
      assert.equal(p.profile, p.name);
    }
    assert.deepEqual(ADAPTER_GROUPS.get('platforms'), PLATFORMS);
    assert.deepEqual(ADAPTER_GROUPS.get('designs'), DESIGNS);
    assert.deepEqual(ADAPTER_GROUPS.get('all'), [...DESIGNS, ...PLATFORMS]);
  });

  const cli = async (argv: string[]): Promise<string[]> => {
    const out: string[] = [];
    await compareMain(argv, (s) => out.push(s));
    return out;
  };
  test('--list lists the designs and the platforms under their headings', async () => {
    const out = await cli(['--list']);
    const d = out.indexOf('Designs (the default columns):');
    const p = out.indexOf('Platforms (--designs NAME, or --designs platforms / all):');
    const q = out.indexOf('Policies:');
    assert.ok(d >= 0 && p > d && q > p, out.join('\n'));
    assert.deepEqual(
      out.slice(p + 1, q).map((l) => l.split(' ')[1]),
      PLATFORMS.map((x) => x.name),
    );
    assert.ok(out.slice(d + 1, p).every((l) => l.startsWith('design ')));
  });
  test('--designs takes names and groups, each adapter once, in order', async () => {
    const file = join(process.cwd(), 'examples', 'workloads', 'host-reads-private.yml');
    const cols = async (spec: string): Promise<string[]> => {
      const out = await cli(['--designs', spec, '--policies', 'qemu', '-q', file]);
      const names = new Set<string>();
      for (const l of out) {
        const m = /^ {2}(\S+) +qemu /.exec(l);
        if (m !== null) names.add(m[1]!);
      }
      return [...names];
    };
    assert.deepEqual(
      await cols('platforms'),
      PLATFORMS.map((x) => x.name),
    );
    assert.deepEqual(await cols('linux-6.18,linux-6.18-arm64-pkvm,platforms'), [
      'linux-6.18',
      'linux-6.18-arm64-pkvm',
      ...PLATFORMS.map((x) => x.name).filter((n) => n !== 'linux-6.18-arm64-pkvm'),
    ]);
    assert.equal((await cols('all')).length, DESIGNS.length + PLATFORMS.length);
    await assert.rejects(
      cli(['--designs', 'platform', file]),
      /unknown design "platform".*groups: designs, platforms, all/,
    );
  });
});

describe('SEV-SNP adapters: launch, PSC, PVALIDATE, the C-bit', () => {
  const w = workload(ROUND_TRIP);
  test('boot: /dev/sev, an SNP VM, INIT2, LAUNCH_START before the vCPU, LAUNCH_FINISH after it', () => {
    const boot = opsByStep('linux-6.18-snp', 'qemu', w)[0]!;
    const seq = boot.map((o) =>
      o.op === 'KVM_MEMORY_ENCRYPT_OP' ? `cmd ${String(o.id)}` : String(o.op),
    );
    assert.deepEqual(
      seq.filter((x) => x.startsWith('cmd') || x === 'KVM_CREATE_VCPU'),
      ['cmd 22', 'cmd 100', 'KVM_CREATE_VCPU', 'cmd 102'],
    );
    assert.equal(boot.find((o) => o.op === 'KVM_CREATE_VM')!.type, 4);
    assert.equal(boot.find((o) => o.op === 'KVM_CREATE_GUEST_MEMFD')!.flags, 0);
    const inplace = opsByStep('linux-next-gmem-snp', 'qemu', w)[0]!;
    assert.equal(inplace.find((o) => o.op === 'KVM_CREATE_GUEST_MEMFD')!.flags, 1);
    assert.ok(inplace.some((o) => o.op === 'KVM_SET_MEMORY_ATTRIBUTES2'));
  });
  test('a private page is validated at its first access only, and accessed with C=1', () => {
    const s = opsByStep('linux-6.18-snp', 'qemu', w);
    assert.deepEqual(
      guestOf(s[1]![0]!).map((g) => Object.keys(g)[0]),
      ['pvalidate', 'store'],
    );
    assert.equal(guestOf(s[1]![0]!)[1]!.store!.c, 1);
    assert.deepEqual(
      guestOf(s[2]![0]!).map((g) => Object.keys(g)[0]),
      ['load'],
    );
  });
  test('share: rescind what was validated, then one PSC descriptor; unshare: PSC, convert, validate', () => {
    const s = opsByStep('linux-6.18-snp', 'qemu', w);
    const share = guestOf(s[3]![0]!);
    assert.deepEqual(
      share.map((g) => Object.keys(g)[0]),
      ['pvalidate', 'psc'],
    );
    assert.equal(share[0]!.pvalidate!.validate, false);
    assert.deepEqual(
      s[3]!.slice(1).map((o) => o.op),
      ['KVM_SET_MEMORY_ATTRIBUTES', 'fallocate'],
    );
    assert.equal(guestOf(s[4]![0]!)[0]!.store!.c ?? 0, 0);
    const unshare = s[6]!;
    assert.deepEqual(
      unshare.map((o) => o.op),
      ['KVM_RUN', 'KVM_SET_MEMORY_ATTRIBUTES', 'madvise', 'KVM_RUN'],
    );
    assert.deepEqual(
      guestOf(unshare[3]!).map((g) => g.pvalidate!.gpa),
      [0x40002000, 0x40003000],
    );
    // Validated by the conversion: the next access needs no PVALIDATE.
    assert.deepEqual(
      guestOf(s[7]![0]!).map((g) => Object.keys(g)[0]),
      ['load'],
    );
  });
  test('PSC entries: 2M where aligned, at most 253 per descriptor', () => {
    const big = workload(`name: big
steps:
  - boot: { private: 8 MiB }
  - share: { at: 0x1ff000, size: 0x202000 }
  - share: { at: 0x600000, size: 0x100000 }
`);
    const s = opsByStep('linux-6.18-snp', 'qemu', big);
    const psc = guestOf(s[1]![0]!).map((g) => g.psc!.entries as Array<{ pagesize: number }>);
    assert.deepEqual(
      psc.map((e) => e.map((x) => x.pagesize).join(',')),
      ['0,1,0'],
    );
    const many = guestOf(s[2]![0]!).map((g) => (g.psc!.entries as unknown[]).length);
    assert.deepEqual(many, [253, 3]);
  });
  test('outcomes from the model: 6.18 hands the host the shared copy, in-place SIGBUS', () => {
    const hr = workload(readFileSync('examples/workloads/host-reads-private.yml', 'utf8'));
    const a = run('linux-6.18-snp', 'qemu', hr);
    assert.deepEqual(outcomes(a).slice(2, 4), ['ok', 'ok']);
    assert.equal(a.steps[2]!.detail, 'peek: read 00000000');
    assert.deepEqual(outcomes(run('linux-next-gmem-snp', 'qemu', hr)).slice(2, 4), [
      'SIGBUS',
      'SIGBUS',
    ]);
    const rt = run('linux-6.18-snp', 'qemu', w);
    assert.deepEqual(rt.violations, []);
    // The guest's secret survives; after sharing, the host reads what the guest wrote shared.
    assert.equal(rt.steps[2]!.detail, 'KVM_RUN: read 5ec2e7ed');
    assert.equal(rt.steps[5]!.detail, 'peek: read 11223344');
    assert.ok(rt.peak.private > 0);
  });
  test('a seeded bug shows in the platform column: the RMP entry kept assigned on invalidate', () => {
    const vh = workload(readFileSync('examples/workloads/vhost-odirect-private.yml', 'utf8'));
    const r = run('linux-6.18-snp', 'qemu', vh, ['snp_invalidate_keeps_assigned']);
    assert.ok(
      r.violations.some((v) => v.invariant === 'snp-reclaim-before-reuse'),
      JSON.stringify(r.violations),
    );
    assert.ok(outcomes(r).includes('violation:snp-reclaim-before-reuse'));
    assert.deepEqual(run('linux-6.18-snp', 'qemu', vh).violations, []);
  });
});

describe('TDX adapters: TD build, MapGPA, ACCEPT, the shared bit', () => {
  const w = workload(ROUND_TRIP);
  test('boot: INIT_VM before the vCPU, INIT_VCPU, FINALIZE', () => {
    const boot = opsByStep('linux-6.18-tdx', 'qemu', w)[0]!;
    assert.equal(boot.find((o) => o.op === 'KVM_CREATE_VM')!.type, 5);
    const seq = boot
      .filter((o) => o.op === 'KVM_MEMORY_ENCRYPT_OP' || o.op === 'KVM_CREATE_VCPU')
      .map((o) => (o.op === 'KVM_CREATE_VCPU' ? 'vcpu' : `${String(o.fd)} ${String(o.id)}`));
    assert.deepEqual(seq, ['vm 1', 'vcpu', 'cpu 2', 'vm 4']);
  });
  test('accept at first access, MapGPA with the shared bit, accept after to-private', () => {
    const s = opsByStep('linux-6.18-tdx', 'qemu', w);
    assert.deepEqual(
      guestOf(s[1]![0]!).map((g) => Object.keys(g)[0]),
      ['accept', 'store'],
    );
    assert.deepEqual(guestOf(s[3]![0]!), [{ map_gpa: { gpa: 0x40002000, size: 8192, shared: 1 } }]);
    assert.equal(guestOf(s[4]![0]!)[0]!.store!.shared, 1);
    assert.deepEqual(guestOf(s[6]![0]!)[0]!.map_gpa!.shared, 0);
    assert.deepEqual(
      guestOf(s[6]!.at(-1)!).map((g) => Object.keys(g)[0]),
      ['accept', 'accept'],
    );
  });
  test('+prefault pre-faults the private part only', () => {
    const s = opsByStep('linux-6.18-tdx', 'qemu+prefault', w);
    const pf = s[0]!.filter((o) => o.op === 'KVM_PRE_FAULT_MEMORY');
    assert.deepEqual(
      pf.map((o) => [o.gpa, o.size]),
      [[0x40000000, 0x100000]],
    );
    assert.deepEqual(outcomes(run('linux-6.18-tdx', 'qemu+prefault', w))[0], 'ok');
  });
  test('outcomes from the model: a re-accepted page is zeroed (TDX), in-place SIGBUS', () => {
    const rt = run('linux-6.18-tdx', 'qemu', w);
    assert.deepEqual(rt.violations, []);
    assert.equal(rt.steps[7]!.detail, 'KVM_RUN: read 00000000');
    const hr = workload(readFileSync('examples/workloads/host-reads-private.yml', 'utf8'));
    assert.deepEqual(outcomes(run('linux-next-gmem-tdx', 'qemu', hr)).slice(2, 4), [
      'SIGBUS',
      'SIGBUS',
    ]);
  });
  test('a seeded bug shows in the platform column: a zap without TDH.MEM.TRACK', () => {
    const vh = workload(readFileSync('examples/workloads/vhost-odirect-private.yml', 'utf8'));
    const r = run('linux-6.18-tdx', 'qemu', vh, ['tdx_zap_no_track']);
    assert.ok(r.violations.length > 0);
    assert.ok(outcomes(r).some((o) => o.startsWith('violation:')));
  });
});

describe('pKVM adapter: a protected VM, MEM_SHARE / MEM_UNSHARE, the hypervisor refusing the host', () => {
  const w = workload(ROUND_TRIP);
  test('boot: a protected VM on guest_memfd (MMAP | INIT_SHARED), the shared part shared by the guest', () => {
    const s = opsByStep('linux-6.18-arm64-pkvm', 'qemu', w);
    const boot = s[0]!;
    assert.equal(boot.find((o) => o.op === 'KVM_CREATE_VM')!.type, 0x8000_0000);
    assert.equal(boot.find((o) => o.op === 'KVM_CREATE_GUEST_MEMFD')!.flags, 3);
    assert.equal(boot.find((o) => o.op === 'KVM_SET_USER_MEMORY_REGION2')!.userspace_addr, 0);
    const calls = guestOf(boot.at(-1)!);
    assert.equal(calls.length, 16);
    assert.ok(calls.every((c) => c.hypercall!.nr === 0xc6000003));
    // A conversion is the guest's calls only: no attributes, no exit to the VMM.
    assert.deepEqual(
      s[6]!.map((o) => o.op),
      ['KVM_RUN'],
    );
    assert.ok(guestOf(s[6]![0]!).every((c) => c.hypercall!.nr === 0xc6000004));
  });
  test('n/a: pre-fault, anonymous RAM, Firecracker', () => {
    for (const p of ['qemu+prefault', 'qemu+anon', 'firecracker'])
      assert.equal(
        typeof adapterByName('linux-6.18-arm64-pkvm')!.lowerer(w, policy(p)),
        'string',
        p,
      );
  });
  test('outcomes from the model: SIGSEGV for the VMM, private = pages the guest owns', () => {
    const r = run('linux-6.18-arm64-pkvm', 'qemu', w);
    assert.deepEqual(r.violations, []);
    // The shared page: the VMM reads what the guest wrote; a private page it never touched is
    // still the host's, one the guest owns is refused.
    assert.equal(r.steps[5]!.detail, 'peek: read 11223344');
    const hr = workload(readFileSync('examples/workloads/host-reads-private.yml', 'utf8'));
    const h = run('linux-6.18-arm64-pkvm', 'qemu', hr);
    assert.deepEqual(outcomes(h).slice(2, 4), ['SIGSEGV', 'SIGSEGV']);
    assert.equal(h.peak.private, 1);
  });
  test("a failed MEM_UNSHARE is the guest's EPERM", () => {
    const twice = workload(`name: twice
steps:
  - boot: { private: 1 MiB, shared: 8 KiB }
  - unshare: { at: 0x100000, size: 4 KiB }
  - unshare: { at: 0x100000, size: 4 KiB }
`);
    const r = run('linux-6.18-arm64-pkvm', 'qemu', twice);
    assert.deepEqual(outcomes(r), ['ok', 'ok', 'EPERM']);
    assert.match(r.steps[2]!.detail!, /SMCCC call returned -3/);
  });
  test('a seeded bug shows in the platform column: the host abort maps the guest page', () => {
    const hr = workload(readFileSync('examples/workloads/host-reads-private.yml', 'utf8'));
    const r = run('linux-6.18-arm64-pkvm', 'qemu', hr, ['pkvm_host_abort_maps_guest_page']);
    assert.match(outcomes(r)[2]!, /^violation:pkvm-/);
    assert.ok(r.failures.length > 0);
  });
});

describe('the shipped workloads on the platforms: asserted outcomes hold, README tables are fresh', () => {
  const dir = join(process.cwd(), 'examples', 'workloads');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yml'))
    .sort();
  const readme = readFileSync(join(process.cwd(), 'README.md'), 'utf8');
  for (const f of files)
    test(f, () => {
      const rel = `examples/workloads/${f}`;
      const w = workload(readFileSync(join(dir, f), 'utf8'), rel);
      const runs: CompareRun[] = [];
      for (const d of PLATFORMS)
        for (const pol of w.policies ?? DEFAULT_POLICIES) {
          const r = runCompare(w, d, policy(pol));
          runs.push(r);
          assert.deepEqual(r.failures, [], `${d.name}/${pol}`);
          const unasserted = r.violations.filter(
            (v) =>
              !r.steps.some(
                (s) => s.step.id === v.stepId && s.expected === `violation:${v.invariant}`,
              ),
          );
          assert.deepEqual(unasserted, [], `${d.name}/${pol}`);
        }
      const block = new RegExp(
        `<!-- compare: ${rel.replace(/[.]/g, '\\.')} --designs platforms -->\n\n\`\`\`text\n([^]*?)\n\`\`\`\n`,
      ).exec(readme);
      assert.ok(block !== null, `README.md has no platform table for ${rel}`);
      assert.equal(
        block[1],
        formatText(w, runs).join('\n'),
        `README.md's platform table for ${rel} is stale: npm run build && node scripts/compare-readme.mjs`,
      );
    });
});
