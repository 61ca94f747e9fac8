/**
 * `gmemlab compare`'s engine (src/compare): the workload parser's errors (file:line: field),
 * the adapters' lowerings and n/a policies, the memory metrics on small runs, and every shipped
 * workload (examples/workloads/*.yml) with all its asserted outcomes holding and no invariant
 * violation.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { lowerWorkload, type Lowerer } from '../../src/compare/adapter.js';
import { ADAPTER_NAMES, DESIGN_NAMES, designByName } from '../../src/compare/designs.js';
import {
  DEFAULT_POLICIES,
  POLICY_NAMES,
  policyByName,
  type Policy,
} from '../../src/compare/policy.js';
import { expectedOutcome, runCompare } from '../../src/compare/run.js';
import { downsample, formatText, size, toJson, toSvg } from '../../src/compare/report.js';
import { parseWorkload, type Workload } from '../../src/compare/workload.js';
import { parseTrace } from '../../src/trace/parse.js';
import { formatOp } from '../../src/trace/format.js';

function parse(text: string): ReturnType<typeof parseWorkload> {
  return parseWorkload(text, 'w.yml', DESIGN_NAMES, POLICY_NAMES);
}

function workload(text: string): Workload {
  const p = parse(text);
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

function lowerer(design: string, pol: string, w: Workload): Lowerer {
  const l = designByName(design)!.lowerer(w, policy(pol));
  assert.ok(typeof l !== 'string', `n/a: ${String(l)}`);
  return l;
}

const BASIC = `name: basic
steps:
  - boot: { private: 1 MiB, shared: 64 KiB }
  - guest_write: { at: 0x1000, hex: '5ec2e7ed' }
  - host_read: { at: 0x1000, len: 4 }
    expect: { linux-6.18: ok, linux-next-gmem: SIGBUS }
  - teardown: {}
`;

describe('workload parsing: every problem at its file:line and field', () => {
  const cases: Array<[string, string, string]> = [
    ['steps: []\nname: x\n', 'w.yml:1: steps:', 'expected a list of steps'],
    ['name: x\nsteps:\n  - guest_read: { at: 0, len: 4 }\n', 'w.yml:3: steps[0]:', 'must be boot'],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - bogus: {}\n',
      'w.yml:4: steps[1].bogus:',
      'unknown action',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1000 }\n',
      'w.yml:3: steps[0].boot.private:',
      'multiple of 4 KiB',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - share: { at: 0x800, size: 4 KiB }\n',
      'w.yml:4: steps[1].share.at:',
      '4 KiB boundary',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - share:\n      at: 0\n      sise: 4 KiB\n',
      'w.yml:6: steps[1].share.sise:',
      'unknown field',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - guest_read: { at: 0, len: 8 }\n',
      'w.yml:4: steps[1].guest_read.len:',
      '1, 2 or 4',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0x100000, len: 4 }\n',
      'w.yml:4: host_read.at:',
      'outside guest RAM',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0xffe, len: 4 }\n',
      'w.yml:4: host_read.at:',
      'cross a 4 KiB page',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect: { linux-5.4: ok }\n',
      'w.yml:5: steps[1].expect.linux-5.4:',
      'unknown design',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect:\n      linux-6.18: maybe\n',
      'w.yml:6: steps[1].expect.linux-6.18:',
      'expected an outcome',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect: { linux-6.18/qemoo: ok }\n',
      'w.yml:5:',
      'unknown policy',
    ],
    [
      "name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect:\n      '*': ok\n      '*/nope': SIGBUS\n",
      'w.yml:7: "steps[1].expect.*/nope":',
      'unknown policy "nope"',
    ],
    [
      "name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect: { '*/firecrackr': n/a }\n",
      'w.yml:5: "steps[1].expect.*/firecrackr":',
      '(did you mean "firecracker"?)',
    ],
    [
      "name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect: { '*/qemu+fast': ok }\n",
      'w.yml:5: "steps[1].expect.*/qemu+fast":',
      'unknown policy modifier "fast"',
    ],
    [
      "name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect: { 'linux-6.18/*': ok }\n",
      'w.yml:5: "steps[1].expect.linux-6.18/*":',
      'unknown policy "*"',
    ],
    [
      "name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - host_read: { at: 0, len: 4 }\n    expect: { 'qemu': ok }\n",
      'w.yml:5: steps[1].expect.qemu:',
      'DESIGN, DESIGN/POLICY, */POLICY or *',
    ],
    [
      'name: x\npolicies: [qemu+fast]\nsteps:\n  - boot: { private: 1 MiB }\n',
      'w.yml:2: policies[0]:',
      'unknown policy modifier',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - repeat: 0\n    steps:\n      - share: { at: 0, size: 4 KiB }\n',
      'w.yml:4: steps[1].repeat:',
      'count from 1',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - repeat: 2000\n    steps:\n      - repeat: 1000\n        steps:\n          - share: { at: 0, size: 4 KiB }\n',
      'w.yml:6:',
      'more than 1000000 times',
    ],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n  - teardown: {}\n  - host_read: { at: 0, len: 4 }\n',
      'w.yml:4: teardown:',
      'the last step',
    ],
    ['name: x\nsteps:\n  - boot: { private: 4 GiB }\n', 'w.yml:3: steps[0].boot:', 'guest RAM'],
    ['name: x\nsteps:\n  - &a boot: { private: 1 MiB }\n  - *a\n', 'w.yml:', 'aliases'],
    [
      'name: x\nsteps:\n  - boot: { private: 1 MiB }\n    host_read: { at: 0, len: 4 }\n',
      'w.yml:3: steps[0]:',
      'one action',
    ],
    ['name: [x\n', 'w.yml:', 'yaml'],
  ];
  for (const [text, where, what] of cases)
    test(`${where} ${what}`, () => {
      const p = parse(text);
      assert.equal(p.workload, undefined);
      const m = p.errors.map((e) => e.message).join('\n');
      assert.ok(m.includes(where) && m.includes(what), m);
    });

  test('a good workload: sizes, hex, expect keys, repeat', () => {
    const w = workload(BASIC);
    assert.equal(w.ram.private, 1n << 20n);
    assert.equal(w.ram.shared, 64n << 10n);
    const s = w.steps[2]!;
    assert.ok(s.kind === 'action');
    assert.equal(s.expect.get('linux-next-gmem'), 'SIGBUS');
  });

  test('expect precedence: DESIGN/POLICY, then DESIGN, then */POLICY, then *', () => {
    const w = workload(`name: x
steps:
  - boot: { private: 1 MiB }
  - host_read: { at: 0x1000, len: 4 }
    expect:
      '*': ok
      '*/firecracker': n/a
      '*/qemu+prefault': EFAULT
      linux-next-gmem: SIGBUS
      linux-6.18/firecracker: EAGAIN
`);
    const s = w.steps[1]!;
    assert.ok(s.kind === 'action');
    const want: Array<[string, string, string]> = [
      ['linux-6.18', 'firecracker', 'EAGAIN'], // DESIGN/POLICY beats */POLICY
      ['linux-next-gmem', 'firecracker', 'SIGBUS'], // DESIGN beats */POLICY
      ['design-2023-restrictedmem', 'firecracker', 'n/a'], // */POLICY beats *
      ['design-2023-restrictedmem', 'qemu+prefault', 'EFAULT'], // the policy with its modifiers
      ['design-2023-restrictedmem', 'qemu', 'ok'], // only *
      ['linux-next-gmem', 'qemu', 'SIGBUS'],
    ];
    for (const [d, p, o] of want) assert.equal(expectedOutcome(s, d, p), o, `${d}/${p}`);
  });
});

describe('adapters lower a workload into their own uAPI', () => {
  const w = workload(BASIC);
  const ops = (d: string, p: string): string[] =>
    lowerWorkload(w, lowerer(d, p, w)).ops.map((o) => o.op);

  test('linux-6.18: guest_memfd without mmap, anonymous shared memory, KVM_SET_MEMORY_ATTRIBUTES', () => {
    const low = lowerWorkload(w, lowerer('linux-6.18', 'qemu', w));
    const text = low.ops.map(formatOp).join('\n');
    assert.match(text, /"KVM_CREATE_GUEST_MEMFD".*"flags":0/);
    assert.match(text, /"mmap","fd":null.*"flags":34/);
    assert.ok(ops('linux-6.18', 'qemu').includes('KVM_SET_MEMORY_ATTRIBUTES'));
    // The lowering is a valid trace: it parses back.
    const back = parseTrace(text + '\n', 't.jsonl');
    assert.equal(back.errors.length, 0);
    assert.equal(back.ops.length, low.ops.length);
  });

  test('linux-next-gmem: the guest_memfd mmap is userspace_addr, KVM_SET_MEMORY_ATTRIBUTES2', () => {
    const text = lowerWorkload(w, lowerer('linux-next-gmem', 'qemu', w))
      .ops.map(formatOp)
      .join('\n');
    assert.match(text, /"mmap","fd":"gmem"/);
    assert.match(text, /"KVM_SET_MEMORY_ATTRIBUTES2"/);
    assert.doesNotMatch(text, /"KVM_SET_MEMORY_ATTRIBUTES"/);
  });

  const c = workload(`name: conv
steps:
  - boot: { private: 1 MiB, shared: 64 KiB }
  - share: { at: 0x2000, size: 4 KiB }
  - dma_map: { at: 0x2000, size: 4 KiB }
  - unshare: { at: 0x2000, size: 4 KiB }
  - host_read: { at: 0x1000, len: 4 }
  - teardown: {}
`);

  test('design-2020-protnone-follkvm: anonymous RAM, a plain memslot, the guest protects and shares', () => {
    const low = lowerWorkload(c, lowerer('design-2020-protnone-follkvm', 'qemu', c));
    const text = low.ops.map(formatOp).join('\n');
    assert.match(text, /"mmap","fd":null.*"flags":34/);
    assert.match(text, /"KVM_SET_USER_MEMORY_REGION",/);
    // KVM_HC_ENABLE_MEM_PROTECTED at boot, MEM_SHARE (13) / MEM_UNSHARE (14) for conversions.
    assert.match(text, /"hypercall":\{"nr":12,"args":\[0,0,0\]\}/);
    assert.match(text, /"hypercall":\{"nr":1[34],/);
    assert.doesNotMatch(text, /GUEST_MEMFD|MEMORY_ATTRIBUTES|madvise|fallocate/);
    const back = parseTrace(text + '\n', 't.jsonl');
    assert.deepEqual(back.errors, []);
    assert.equal(back.ops.length, low.ops.length);
  });

  test('design-2023-restrictedmem: memfd_restricted, KVM_SET_USER_MEMORY_REGION_EXT, attributes', () => {
    const low = lowerWorkload(c, lowerer('design-2023-restrictedmem', 'qemu', c));
    const text = low.ops.map(formatOp).join('\n');
    assert.match(text, /"memfd_restricted"/);
    assert.match(text, /"KVM_SET_USER_MEMORY_REGION_EXT".*"restricted_fd":"rfd"/);
    assert.match(text, /"KVM_SET_MEMORY_ATTRIBUTES"/);
    // QEMU punches the private copy out of the restricted fd on to-shared.
    assert.match(text, /"fallocate","fd":"rfd"/);
    assert.doesNotMatch(text, /GUEST_MEMFD/);
    const back = parseTrace(text + '\n', 't.jsonl');
    assert.deepEqual(back.errors, []);
    assert.equal(back.ops.length, low.ops.length);
  });

  test('design-2024-shmem-exclusive-pin: anonymous RAM, KVM_HC_MAP_GPA_RANGE answered in RAX', () => {
    const low = lowerWorkload(c, lowerer('design-2024-shmem-exclusive-pin', 'qemu', c));
    const text = low.ops.map(formatOp).join('\n');
    // MAP_PRIVATE | MAP_ANONYMOUS: going private a second time needs an exclusive anonymous page.
    assert.match(text, /"mmap","fd":null.*"flags":34/);
    assert.match(text, /"hypercall":\{"nr":12,/);
    assert.doesNotMatch(text, /GUEST_MEMFD|MEMORY_ATTRIBUTES|ENABLE_CAP|madvise|fallocate/);
    const conv = low.execs.filter((e) => e.step.action.kind === 'share');
    assert.ok(conv.length > 0 && conv.every((e) => e.rax === true));
    const back = parseTrace(text + '\n', 't.jsonl');
    assert.deepEqual(back.errors, []);
    assert.equal(back.ops.length, low.ops.length);
  });

  test('the historical designs: the policies they cannot express are n/a with the reason', () => {
    const na = (d: string, p: string): string => {
      const r = designByName(d)!.lowerer(c, policy(p));
      assert.equal(typeof r, 'string', `${d}/${p}`);
      return r as string;
    };
    assert.match(na('design-2020-protnone-follkvm', 'qemu+gmem-mmap'), /no guest_memfd/);
    assert.match(na('design-2023-restrictedmem', 'qemu+gmem-mmap'), /cannot be mmapped/);
    assert.match(na('design-2024-shmem-exclusive-pin', 'qemu+gmem-mmap'), /no guest_memfd/);
    assert.match(na('design-2024-shmem-exclusive-pin', 'qemu+anon'), /no separate shared memory/);
    // Firecracker's all-shared layout is plain VMM memory on each; its conversions are n/a.
    for (const d of [
      'design-2020-protnone-follkvm',
      'design-2023-restrictedmem',
      'design-2024-shmem-exclusive-pin',
    ]) {
      assert.equal(typeof designByName(d)!.lowerer(c, policy('firecracker')), 'object', d);
      const run = runCompare(c, designByName(d)!, policy('firecracker'));
      const share = run.steps.find((s) => s.step.action.kind === 'share');
      assert.deepEqual([...share!.outcomes.keys()], ['n/a'], d);
      // Without a VFIO device the dma steps are n/a.
      const b = runCompare(c, designByName(d)!, policy('dragonball'));
      assert.equal(b.na, undefined);
    }
  });

  test('measure: protnone counts protected anonymous RAM as private, exclusive-pin its pinned frames', () => {
    const r = workload(`name: m
steps:
  - boot: { private: 64 KiB, shared: 64 KiB }
  - guest_write: { at: 0x1000, hex: '01' }
  - guest_write: { at: 0x11000, hex: '02' }
  - host_read: { at: 0x1000, len: 1 }
    expect:
      design-2020-protnone-follkvm: SIGBUS
      design-2023-restrictedmem: ok
      design-2024-shmem-exclusive-pin: violation:host-no-private-access-shmem-exclusive-pin
`);
    const p = runCompare(r, designByName('design-2020-protnone-follkvm')!, policy('qemu'));
    assert.deepEqual(p.failures, []);
    assert.equal(p.final.private, 1);
    assert.equal(p.final.shared, 1);
    assert.equal(p.final.double, 0);
    const x = runCompare(r, designByName('design-2023-restrictedmem')!, policy('qemu'));
    assert.deepEqual(x.failures, []);
    // The private page in the restricted fd, the shared page and the VMM's (zero) copy it read.
    assert.equal(x.final.private, 1);
    const e = runCompare(r, designByName('design-2024-shmem-exclusive-pin')!, policy('qemu'));
    assert.deepEqual(e.failures, []);
    // KVM pinned (and so allocated) all 16 private pages at boot.
    assert.equal(e.final.private, 16);
    assert.equal(e.final.shared, 1);
    assert.equal(e.violationCount, 1);
  });

  test('the access op of each step is marked; repeat expands into executions', () => {
    const r = workload(`name: r
steps:
  - boot: { private: 1 MiB }
  - repeat: 3
    steps:
      - share: { at: 0, size: 8 KiB }
      - unshare: { at: 0, size: 8 KiB }
`);
    const low = lowerWorkload(r, lowerer('linux-6.18', 'qemu', r));
    assert.equal(low.execs.length, 7);
    assert.deepEqual(low.execs[6]!.iteration, [3]);
    const conv = low.execs.filter((e) => e.step.action.kind === 'share');
    assert.ok(conv.every((e) => low.ops[e.access!]!.op === 'KVM_SET_MEMORY_ATTRIBUTES'));
    // qemu punches the private copy after to-shared, discards the shared one after to-private.
    assert.ok(low.ops.some((o) => o.op === 'fallocate'));
    assert.ok(low.ops.some((o) => o.op === 'madvise'));
    const keep = lowerWorkload(r, lowerer('linux-6.18', 'dragonball', r));
    assert.ok(!keep.ops.some((o) => o.op === 'fallocate' || o.op === 'madvise'));
  });

  test('a policy a design cannot express is n/a with the reason', () => {
    const a = designByName('linux-6.18')!.lowerer(w, policy('qemu+gmem-mmap'));
    assert.equal(typeof a, 'string');
    assert.match(a as string, /INIT_SHARED/);
    const b = designByName('linux-next-gmem')!.lowerer(w, policy('qemu+anon'));
    assert.equal(typeof b, 'string');
    const run = runCompare(w, designByName('linux-next-gmem')!, policy('qemu+anon'));
    assert.equal(run.na, b);
    // The asserted SIGBUS does not hold where nothing ran.
    assert.equal(run.failures.length, 1);
  });

  test('policy names and modifiers', () => {
    assert.equal(policy('qemu+prefault').prefault, true);
    assert.equal(policy('qemu+pin-all').vfio, 'all');
    assert.equal(policy('cloud-hypervisor+keep').punchPrivate, false);
    assert.match(String(policyByName('qemu+fast')), /unknown policy modifier/);
    assert.match(String(policyByName('xen')), /unknown policy/);
    for (const p of DEFAULT_POLICIES) assert.equal(typeof policyByName(p), 'object');
  });
});

describe('metrics', () => {
  const w0 = workload(BASIC);
  const TWO_COPIES = `name: two copies
steps:
  - boot: { private: 1 MiB }
  - guest_write: { at: 0, hex: '5ec2e7ed' }
  - share: { at: 0, size: 4 KiB }
  - host_write: { at: 0, hex: '01' }
  - teardown: {}
`;
  const w = workload(TWO_COPIES);

  test('6.18 without discard keeps both copies: double-allocated', () => {
    const r = runCompare(w, designByName('linux-6.18')!, policy('dragonball'));
    assert.deepEqual(r.violations, []);
    assert.equal(r.final.private, 1);
    assert.equal(r.final.shared, 1);
    assert.equal(r.final.double, 1);
    assert.equal(r.exits['HYPERCALL'], 1);
    assert.ok(r.zaps.events >= 1 && r.tlbFlushes >= 1);
    // Teardown frees everything.
    assert.equal(r.afterTeardown!.private + r.afterTeardown!.shared, 0);
  });

  test('6.18 with QEMU punching the private copy: one copy', () => {
    const r = runCompare(w, designByName('linux-6.18')!, policy('qemu'));
    assert.equal(r.final.private, 0);
    assert.equal(r.final.shared, 1);
    assert.equal(r.final.double, 0);
  });

  test('in-place conversion: the same frame changes side', () => {
    const r = runCompare(w, designByName('linux-next-gmem')!, policy('dragonball'));
    assert.equal(r.final.private, 0);
    assert.equal(r.final.shared, 1);
    assert.equal(r.final.double, 0);
    assert.equal(r.peak.private, 1);
  });

  test('pins, GUP references and page-table pages', () => {
    const v = workload(`name: pins
steps:
  - boot: { private: 1 MiB, shared: 64 KiB }
  - dma_map: { at: 0x100000, size: 8 KiB }
  - gup: { at: 0x104000, size: 4 KiB }
  - guest_write: { at: 0x3000, hex: '01' }
`);
    const r = runCompare(v, designByName('linux-next-gmem')!, policy('qemu'));
    assert.equal(r.final.pinned, 2);
    assert.equal(r.final.referenced, 1);
    // One 4K leaf (and the trace's code page): PT, PD, PDPT, root per region in use.
    assert.ok(r.final.mapped >= 1 && r.final.ptPages >= 4, JSON.stringify(r.final));
  });

  test('a design that lets the host reach private memory shows the invariant, not the result', () => {
    // A seeded bug: the host may fault in private guest_memfd pages (the in-place mmap).
    const r = runCompare(w0, designByName('linux-next-gmem')!, policy('qemu'), {
      mutants: ['gmem_host_fault_ignores_shared'],
    });
    const read = r.steps.find((s) => s.step.action.kind === 'host_read')!;
    assert.deepEqual([...read.outcomes.keys()], ['violation:host-no-private-access']);
    assert.match(read.detail!, /read 5ec2e7ed/);
    assert.equal(r.failures.length, 1);
    assert.ok(r.violationCount >= 1);
    assert.equal(r.violations[0]!.invariant, 'host-no-private-access');
  });

  test('a wrong expectation fails with file:line, design/policy and what happened', () => {
    const bad = workload(BASIC.replace('linux-6.18: ok', 'linux-6.18: SIGBUS'));
    const r = runCompare(bad, designByName('linux-6.18')!, policy('qemu'));
    assert.equal(r.failures.length, 1);
    assert.match(r.failures[0]!, /^w\.yml:5: linux-6\.18\/qemu: host_read expected SIGBUS, got ok/);
  });

  test('reports: text table, JSON with the same runs, SVG, downsampling', () => {
    const runs = ['linux-6.18', 'linux-next-gmem'].map((d) =>
      runCompare(w, designByName(d)!, policy('qemu')),
    );
    const text = formatText(w, runs).join('\n');
    assert.match(text, /double-allocated/);
    assert.match(text, /every asserted outcome holds/);
    const j = toJson(w, runs) as { runs: Array<{ design: string }> };
    assert.deepEqual(
      j.runs.map((r) => r.design),
      ['linux-6.18', 'linux-next-gmem'],
    );
    assert.match(toSvg(w, runs), /^<svg[^]*<polyline[^]*<\/svg>\n$/);
    const d = downsample(
      Array.from({ length: 1000 }, (_, i) => (i === 501 ? 99 : i % 7)),
      10,
    );
    assert.ok(d.length <= 11 && d.some(([, v]) => v === 99));
  });
});

describe('the shipped workloads: every asserted outcome holds, no violation unless asserted', () => {
  const dir = join(process.cwd(), 'examples', 'workloads');
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.yml'))
    .sort();
  test('examples/workloads has the five workloads', () => {
    assert.deepEqual(files, [
      '1gib-10pct-shared.yml',
      'bounce-buffer-10000.yml',
      'host-reads-private.yml',
      'vfio-dma-convert.yml',
      'vhost-odirect-private.yml',
    ]);
  });
  const readme = readFileSync(join(process.cwd(), 'README.md'), 'utf8');
  for (const f of files)
    test(f, () => {
      const rel = `examples/workloads/${f}`;
      const p = parseWorkload(readFileSync(join(dir, f), 'utf8'), rel, ADAPTER_NAMES, POLICY_NAMES);
      assert.deepEqual(
        p.errors.map((e) => e.message),
        [],
      );
      const w = p.workload!;
      let asserted = 0;
      const runs = [];
      for (const d of DESIGN_NAMES)
        for (const pol of w.policies ?? DEFAULT_POLICIES) {
          const r = runCompare(w, designByName(d)!, policy(pol));
          runs.push(r);
          assert.deepEqual(r.failures, [], `${d}/${pol}`);
          // A violation only where the workload asserts it (a design that allows the access).
          const unasserted = r.violations.filter(
            (v) =>
              !r.steps.some(
                (s) => s.step.id === v.stepId && s.expected === `violation:${v.invariant}`,
              ),
          );
          assert.deepEqual(unasserted, [], `${d}/${pol}`);
          asserted += r.steps.filter((s) => s.expected !== undefined).length;
        }
      assert.ok(asserted > 0, 'the workload asserts outcomes');
      // README's table is this output (scripts/compare-readme.mjs writes it).
      const block = new RegExp(
        `<!-- compare: ${rel.replace(/[.]/g, '\\.')} -->\n\n\`\`\`text\n([^]*?)\n\`\`\`\n`,
      ).exec(readme);
      assert.ok(block !== null, `README.md has no table for ${rel}`);
      assert.equal(
        block[1],
        formatText(w, runs).join('\n'),
        `README.md's table for ${rel} is stale: npm run build && node scripts/compare-readme.mjs`,
      );
    });
});

describe('the SVG chart draws the runs it is given', () => {
  // Read the chart back: per design panel its frame, scale labels, legend and polylines; map
  // each polyline's points back to (execution index, bytes) with the frame and the scale.
  type Panel = {
    design: string;
    frame: { x: number; y: number; w: number; h: number };
    scale: string[];
    legend: string[];
    lines: Array<Array<[number, number]>>;
  };
  function panels(svg: string): Panel[] {
    const out: Panel[] = [];
    const chunks = svg.split(/(?=<text [^>]*font-weight="bold">)/).slice(1);
    for (const c of chunks) {
      const design = /font-weight="bold">([^<]*)</.exec(c)![1]!;
      const f = /<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="([\d.]+)"/.exec(c)!;
      const [x, y, w, h] = f.slice(1, 5).map(Number) as [number, number, number, number];
      const texts = [...c.matchAll(/<text ([^>]*)>([^<]*)<\/text>/g)];
      out.push({
        design,
        frame: { x, y, w, h },
        scale: texts.filter((t) => t[1]!.includes('text-anchor="end" dy')).map((t) => t[2]!),
        legend: texts
          .filter((t) => /\(peak |: n\/a$/.test(t[2]!))
          .map((t) => t[2]!.replace(/ \(peak .*\)$/, '').replace(/: n\/a$/, '')),
        lines: [...c.matchAll(/<polyline [^>]*points="([^"]*)"/g)].map((m) =>
          m[1]!.split(' ').map((p) => p.split(',').map(Number) as [number, number]),
        ),
      });
    }
    return out;
  }

  test('vfio-dma-convert.yml: each line follows its run, on one scale for all designs', () => {
    const rel = 'examples/workloads/vfio-dma-convert.yml';
    const p = parseWorkload(
      readFileSync(join(process.cwd(), rel), 'utf8'),
      rel,
      ADAPTER_NAMES,
      POLICY_NAMES,
    );
    const w = p.workload!;
    const runs = DESIGN_NAMES.flatMap((d) =>
      w.policies!.map((pol) => runCompare(w, designByName(d)!, policy(pol))),
    );
    const j = toJson(w, runs) as {
      runs: Array<{
        design: string;
        policy: string;
        na?: string;
        peak: { both: number };
        memory_over_steps: Array<{ exec: number; both: number }>;
      }>;
    };
    const ps = panels(toSvg(w, runs));
    assert.deepEqual(
      ps.map((x) => x.design),
      [...DESIGN_NAMES],
    );
    const maxPeak = Math.max(...j.runs.map((r) => r.peak.both));
    const maxExec = Math.max(...j.runs.map((r) => r.memory_over_steps.length - 1));
    assert.ok(maxPeak > 0 && maxExec > 0);
    // Chart value of each run, recovered from its line: [run, [exec, bytes][]].
    const drawn: Array<[(typeof j.runs)[number], Array<[number, number]>]> = [];
    for (const panel of ps) {
      const mine = j.runs.filter((r) => r.design === panel.design);
      // Legend: every policy in run order; n/a runs draw no line.
      assert.deepEqual(
        panel.legend,
        mine.map((r) => r.policy),
      );
      const live = mine.filter((r) => r.na === undefined);
      assert.equal(panel.lines.length, live.length, panel.design);
      // The scale: the top label is the largest peak of all runs, the bottom one 0.
      assert.equal(panel.scale[panel.scale.length - 1], size(maxPeak / 4096), panel.design);
      assert.equal(panel.scale[0], '0');
      const { x, y, w: fw, h } = panel.frame;
      live.forEach((r, i) => {
        const pts = panel.lines[i]!;
        for (let k = 1; k < pts.length; k++)
          assert.ok(pts[k]![0] > pts[k - 1]![0], `${r.design}/${r.policy}: x increases`);
        const back = pts.map(([px, py]): [number, number] => [
          Math.round(((px - x) / fw) * maxExec),
          ((y + h - py) / h) * maxPeak,
        ]);
        // Fewer than 200 executions: the JSON series is the whole series, as the line is.
        assert.equal(back.length, r.memory_over_steps.length, `${r.design}/${r.policy}`);
        back.forEach(([e, v], k) => {
          const want = r.memory_over_steps[k]!;
          assert.equal(e, want.exec, `${r.design}/${r.policy}: point ${k}'s step`);
          // toFixed(1) pixels: within a tenth of a pixel of the value.
          assert.ok(
            Math.abs(v - want.both) <= (0.06 / h) * maxPeak,
            `${r.design}/${r.policy}: point ${k} is ${v} bytes, the run's is ${want.both}`,
          );
        });
        drawn.push([r, back]);
      });
    }
    // Across designs: each line's highest point is its run's peak, so the lines rank as the
    // JSON's peaks do (a chart with per-panel scales or swapped lines would not).
    const tol = (0.06 / ps[0]!.frame.h) * maxPeak;
    const tops = drawn.map(([r, b]) => [r.peak.both, Math.max(...b.map(([, v]) => v))] as const);
    assert.ok(new Set(tops.map(([pk]) => pk)).size > 2, 'the runs differ');
    for (const [pk, top] of tops) assert.ok(Math.abs(pk - top) <= tol, `${top} vs peak ${pk}`);
    for (const [pa, ta] of tops)
      for (const [pb, tb] of tops) if (pa > pb) assert.ok(ta > tb, `${ta} > ${tb}`);
  });
});
