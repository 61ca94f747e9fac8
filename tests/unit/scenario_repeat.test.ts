/**
 * Scenario repetitions (docs/scenario-format.md "Repetition", src/scenario/repeat.ts): a `repeat`
 * item of a KVM_RUN's guest list or of a psc step's entries expands to exactly the explicit list
 * (checked against the same scenario written out), and every bad count, stride, body, overflow
 * and size is one `file:line: field: message` error at its source. Also the expectations that
 * count (`exit_counts`, `kvm_stats`), the vCPU page-fault stats they read, and the timeline and
 * `run --print-trace` of a repeated program.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseScenario, type Scenario } from '../../src/scenario/scenario.js';
import { MAX_SCENARIO_REPEATED } from '../../src/scenario/repeat.js';
import { runScenario } from '../../src/scenario/run.js';
import { formatOp } from '../../src/trace/format.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { formatTimeline } from '../../src/cli/run.js';
import { runMain } from '../../src/cli/run.js';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const HEAD = 'name: t\nsteps:\n';
const RUN = '  - do: KVM_RUN\n    vcpu: 3\n    guest:\n';

function parse(text: string): ReturnType<typeof parseScenario> {
  return parseScenario(HEAD + text, 's.yaml');
}

/** The ops of a scenario as trace lines (what `run --print-trace` prints). */
function traceOf(text: string): string[] {
  const p = parse(text);
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  return p.scenario!.steps.flatMap((s) => (s.kind === 'op' ? [formatOp(s.op)] : []));
}

/** The only error of a KVM_RUN whose guest list is `guest` (indented 6). */
function guestError(guest: string): string {
  const p = parse(RUN + guest);
  assert.equal(p.scenario, undefined, 'expected an error');
  assert.equal(p.errors.length, 1, p.errors.map((e) => e.message).join('\n'));
  return p.errors[0]!.message;
}

describe('repetition: expands to the explicit list', () => {
  test('one step, a stride in KiB: the same trace as the steps written out', () => {
    assert.deepEqual(
      traceOf(
        RUN +
          '      - repeat: 3\n        stride: { gpa: 4 KiB }\n        step: { load: { gpa: 1 GiB, c: 1 } }\n',
      ),
      traceOf(
        RUN +
          '      - load: { gpa: 0x40000000, c: 1 }\n      - load: { gpa: 0x40001000, c: 1 }\n      - load: { gpa: 0x40002000, c: 1 }\n',
      ),
    );
  });

  test('several steps per repetition, plain steps around it, a negative stride', () => {
    assert.deepEqual(
      traceOf(
        RUN +
          '      - load: { gpa: 0 }\n' +
          '      - repeat: 2\n        stride: { gpa: -4 KiB }\n        steps:\n' +
          '          - pvalidate: { gpa: 0x10000 }\n          - store: { gpa: 0x10000, hex: "aa", c: 1 }\n' +
          '      - load: { gpa: 8 }\n',
      ),
      traceOf(
        RUN +
          '      - load: { gpa: 0 }\n' +
          '      - pvalidate: { gpa: 0x10000 }\n      - store: { gpa: 0x10000, hex: "aa", c: 1 }\n' +
          '      - pvalidate: { gpa: 0xf000 }\n      - store: { gpa: 0xf000, hex: "aa", c: 1 }\n' +
          '      - load: { gpa: 8 }\n',
      ),
    );
  });

  test('nesting: the inner repetition first, the outer stride shifts what it made', () => {
    assert.deepEqual(
      traceOf(
        RUN +
          '      - repeat: 2\n        stride: { gpa: 4 KiB }\n        steps:\n' +
          '          - repeat: 2\n            stride: { gpa: 1 }\n            step: { load: { gpa: 0x1000, size: 1 } }\n',
      ),
      traceOf(
        RUN +
          '      - load: { gpa: 0x1000, size: 1 }\n      - load: { gpa: 0x1001, size: 1 }\n' +
          '      - load: { gpa: 0x2000, size: 1 }\n      - load: { gpa: 0x2001, size: 1 }\n',
      ),
    );
  });

  test('PSC entries: `entry`/`entries`, inside a repeated psc step', () => {
    assert.deepEqual(
      traceOf(
        RUN +
          '      - repeat: 2\n        stride: { gfn: 10 }\n        step:\n          psc:\n            entries:\n' +
          '              - { gfn: 0x100, op: 2 }\n' +
          '              - { repeat: 2, stride: { gfn: 1 }, entry: { gfn: 0x101, op: 1 } }\n',
      ),
      traceOf(
        RUN +
          '      - psc: { entries: [{ gfn: 0x100, op: 2 }, { gfn: 0x101, op: 1 }, { gfn: 0x102, op: 1 }] }\n' +
          '      - psc: { entries: [{ gfn: 0x10a, op: 2 }, { gfn: 0x10b, op: 1 }, { gfn: 0x10c, op: 1 }] }\n',
      ),
    );
    assert.deepEqual(
      traceOf(
        RUN +
          '      - psc:\n          entries:\n            - repeat: 2\n              stride: { gfn: 2 }\n              entries: [{ gfn: 0x100, op: 1 }, { gfn: 0x101, op: 2 }]\n',
      ),
      traceOf(
        RUN +
          '      - psc: { entries: [{ gfn: 0x100, op: 1 }, { gfn: 0x101, op: 2 }, { gfn: 0x102, op: 1 }, { gfn: 0x103, op: 2 }] }\n',
      ),
    );
  });

  test('no stride repeats the items as they are; repeat 0 makes nothing; expressions count', () => {
    assert.deepEqual(
      traceOf(RUN + '      - repeat: 2\n        step: { load: { gpa: 16 } }\n'),
      traceOf(RUN + '      - load: { gpa: 16 }\n      - load: { gpa: 16 }\n'),
    );
    assert.deepEqual(
      traceOf(
        RUN + '      - repeat: 0\n        step: { load: { gpa: 16 } }\n      - load: { gpa: 0 }\n',
      ),
      traceOf(RUN + '      - load: { gpa: 0 }\n'),
    );
    const long = parse(RUN + '      - repeat: 1 KiB - 1\n        step: { load: { gpa: 16 } }\n');
    const st = long.scenario!.steps[0]!;
    assert.ok(st.kind === 'op' && st.op.op === 'KVM_RUN' && st.op.guest.length === 1023);
    assert.equal(st.kind === 'op' && st.repeated, true);
  });

  test('a PSC operation by name, as in traces; PRIVATE (a memory attribute, 8) is an error', () => {
    assert.deepEqual(
      traceOf(
        RUN +
          '      - psc_msr: { gfn: 1, op: shared }\n      - psc: { entries: [{ gfn: 2, op: private }, { gfn: 3, op: psmash }] }\n',
      ),
      traceOf(
        RUN +
          '      - psc_msr: { gfn: 1, op: 2 }\n      - psc: { entries: [{ gfn: 2, op: 1 }, { gfn: 3, op: 3 }] }\n',
      ),
    );
    assert.equal(
      guestError('      - psc_msr: { gfn: 1, op: PRIVATE }\n'),
      's.yaml:6: guest[0].psc_msr.op: "PRIVATE": expected a page-state operation (private, shared, psmash, unsmash) or an integer (did you mean "private"?)',
    );
    assert.equal(
      guestError(
        '      - repeat: 2\n        stride: { op: 1 }\n        step: { psc_msr: { gfn: 1, op: private } }\n',
      ),
      's.yaml:7: guest[0].stride.op: op is not an integer in psc_msr ("private"), so it cannot be stepped',
    );
  });

  test('a hex {repeat, count} value is still a byte string, not a repetition', () => {
    assert.deepEqual(
      traceOf(RUN + '      - store: { gpa: 0, hex: { repeat: "ab", count: 2 } }\n'),
      traceOf(RUN + '      - store: { gpa: 0, hex: "abab" }\n'),
    );
  });
});

describe('repetition: malformed ones are errors at their source', () => {
  const cases: ReadonlyArray<readonly [string, string, string]> = [
    [
      'negative count',
      '      - repeat: -1\n        step: { load: { gpa: 0 } }\n',
      's.yaml:6: guest[0].repeat: a repetition count is not negative (got -1)',
    ],
    [
      'count not an integer',
      '      - repeat: lots\n        step: { load: { gpa: 0 } }\n',
      's.yaml:6: guest[0].repeat: "lots" is not an integer: unknown constant "lots"',
    ],
    [
      'count a list',
      '      - repeat: [1]\n        step: { load: { gpa: 0 } }\n',
      's.yaml:6: guest[0].repeat: expected a repetition count (an integer), got a list',
    ],
    [
      'more guest steps than a KVM_RUN runs',
      '      - repeat: 50001\n        steps: [{ load: { gpa: 0 } }, { load: { gpa: 4 } }]\n',
      's.yaml:6: guest[0].repeat: 50001 × 2 items = 100002 guest steps (a KVM_RUN runs at most 100000)',
    ],
    [
      'a list grown past the limit by two repetitions',
      '      - repeat: 60000\n        step: { load: { gpa: 0 } }\n      - repeat: 60000\n        step: { load: { gpa: 0 } }\n',
      's.yaml:8: guest[1].repeat: the list grows to 120000 guest steps (a KVM_RUN runs at most 100000)',
    ],
    [
      'more PSC entries than a descriptor holds',
      '      - psc:\n          entries:\n            - { repeat: 254, entry: { gfn: 0x100, op: 1 } }\n',
      's.yaml:8: guest[0].psc.entries[0].repeat: 254 × 1 item = 254 PSC entries (a descriptor holds at most 253, VMGEXIT_PSC_MAX_COUNT)',
    ],
    [
      'a gigantic count',
      '      - repeat: 10_000_000_000\n        step: { load: { gpa: 0 } }\n',
      `s.yaml:6: guest[0].repeat: 10000000000 repetitions: at most ${MAX_SCENARIO_REPEATED} items can be made by repetition`,
    ],
    [
      'stride names no field of the body',
      '      - repeat: 2\n        stride: { gpx: 4 KiB }\n        step: { load: { gpa: 0 } }\n',
      's.yaml:7: guest[0].stride.gpx: the repeated items have no field "gpx" (did you mean "gpa"?)',
    ],
    [
      'stride of a field that is not an integer',
      '      - repeat: 2\n        stride: { hex: 1 }\n        step: { store: { gpa: 0, hex: "00" } }\n',
      's.yaml:7: guest[0].stride.hex: hex is not an integer in store ("00"), so it cannot be stepped',
    ],
    [
      'stride not an integer',
      '      - repeat: 2\n        stride: { gpa: 4 KIBB }\n        step: { load: { gpa: 0 } }\n',
      's.yaml:7: guest[0].stride.gpa: "4 KIBB" is not an integer: unknown unit "KIBB" (did you mean "KiB"?)',
    ],
    [
      'stride not a map',
      '      - repeat: 2\n        stride: 4096\n        step: { load: { gpa: 0 } }\n',
      's.yaml:7: guest[0].stride: expected a map of field names to integers, such as { gpa: 4 KiB }',
    ],
    [
      'a stride that overflows 64 bits',
      '      - repeat: 3\n        stride: { gpa: 0x8000_0000_0000_0000 }\n        step: { load: { gpa: 0 } }\n',
      's.yaml:7: guest[0].stride.gpa: repetition 2 makes gpa 0x10000000000000000, which is not a 64-bit value',
    ],
    [
      'a repetition whose value the trace parser refuses: located, and which repetition',
      '      - repeat: 3\n        stride: { gpa: 2 GiB }\n        step: { load: { gpa: 4 KiB } }\n',
      's.yaml:8: guest[0].step.load.gpa: guest programs access GPAs below 4 GiB (in repetition 2)',
    ],
    [
      'the same inside steps and nested repetitions',
      '      - repeat: 2\n        stride: { gfn: 0x80_0000_0000 }\n        steps:\n          - psc:\n              entries:\n' +
        '                - { repeat: 2, stride: { gfn: 1 }, entry: { gfn: 0x7f_ffff_ffff, op: 1 } }\n',
      's.yaml:11: guest[0].steps[0].psc.entries[0].entry.gfn: a PSC entry holds a 40-bit gfn (in repetition 1, 1, outermost first)',
    ],
    [
      'neither step nor steps',
      '      - repeat: 2\n',
      's.yaml:6: guest[0]: a repetition needs step (one item) or steps (a list) to repeat',
    ],
    [
      'both step and steps',
      '      - repeat: 2\n        step: { load: { gpa: 0 } }\n        steps: [{ load: { gpa: 0 } }]\n',
      's.yaml:6: guest[0]: a repetition has either step (one item) or steps (a list), not both',
    ],
    [
      'an empty body',
      '      - repeat: 2\n        steps: []\n',
      's.yaml:7: guest[0].steps: expected a non-empty list of items to repeat',
    ],
    [
      'misspelt key',
      '      - repeat: 2\n        strid: { gpa: 1 }\n        step: { load: { gpa: 0 } }\n',
      's.yaml:7: guest[0].strid: unknown key in a repetition (did you mean "stride"?)',
    ],
    [
      'a guest-list key in an entries list',
      '      - psc:\n          entries:\n            - { repeat: 2, step: { gfn: 0x100, op: 1 } }\n',
      's.yaml:8: guest[0].psc.entries[0].step: unknown key in a repetition (it has repeat, stride, entry, entries)',
    ],
    [
      'a bad value in the body, at its line',
      '      - repeat: 2\n        steps:\n          - load: { gpa: 0 }\n          - load: { gpa: nowhere }\n',
      's.yaml:9: guest[0].steps[1].load.gpa: "nowhere" is not an integer: unknown constant "nowhere"',
    ],
  ];
  for (const [name, guest, message] of cases)
    test(name, () => {
      assert.equal(guestError(guest), message);
    });

  test(`a scenario's repetitions make at most ${MAX_SCENARIO_REPEATED} items in all`, () => {
    const run = RUN + '      - repeat: 100000\n        step: { load: { gpa: 0 } }\n';
    const p = parse(run + run + run);
    assert.deepEqual(
      p.errors.map((e) => e.message),
      [
        `s.yaml:16: guest[0].repeat: the scenario's repetitions make more than ${MAX_SCENARIO_REPEATED} items in all`,
      ],
    );
  });
});

describe('counting expectations', () => {
  test('exit_counts and kvm_stats: unknown names, bad counts', () => {
    const err = (e: string): string[] =>
      parse(`  - do: KVM_RUN\n    vcpu: 3\n    expect: ${e}\n`).errors.map((x) => x.message);
    assert.deepEqual(err('{ exit_counts: { HYPERCAL: 1 } }'), [
      's.yaml:5: expect.exit_counts.HYPERCAL: unknown exit reason (did you mean "HYPERCALL"?)',
    ]);
    assert.deepEqual(err('{ exit_counts: { HLT: -1 } }'), [
      's.yaml:5: expect.exit_counts.HLT: expected a count (a non-negative integer up to 2^53)',
    ]);
    assert.deepEqual(err('{ kvm_stats: { pf_takn: 1 } }'), [
      's.yaml:5: expect.kvm_stats.pf_takn: unknown key (did you mean "pf_taken"?)',
    ]);
    assert.deepEqual(err('{ kvm_stats: 3 }'), [
      's.yaml:5: expect.kvm_stats: expected a map of counts',
    ]);
  });

  /** A DEFAULT VM with 16 KiB of memory at 1 MiB and a vCPU, then `rest`. */
  const SETUP = [
    '  - { do: KVM_CREATE_VM, type: DEFAULT, as: vm }',
    '  - { do: mmap, fd: null, length: 16 KiB, prot: PROT_READ | PROT_WRITE, flags: MAP_PRIVATE | MAP_ANONYMOUS, as: mem }',
    '  - { do: KVM_SET_USER_MEMORY_REGION2, vm: vm, slot: 0, flags: 0, guest_phys_addr: 1 MiB, memory_size: 16 KiB, userspace_addr: mem }',
    '  - { do: KVM_CREATE_VCPU, vm: vm, id: 0, as: cpu }',
    '',
  ].join('\n');

  const failuresOf = (r: ReturnType<typeof runScenario>): string[] =>
    r.outcomes.flatMap((o) => (o.kind === 'op' ? o.failures.map((f) => `${o.index}: ${f}`) : []));

  function runOn(profile: string, text: string): ReturnType<typeof runScenario> {
    const s = parse(SETUP + text).scenario as Scenario;
    assert.ok(s !== undefined);
    const b = new ModelBackend(getProfile(profile)!);
    return runScenario(s, b, { drainEvents: () => b.host.events.drain(), host: () => b.host });
  }

  test('pf_taken / pf_fixed / pf_emulate count stage-2 faults; a mapped page takes none', () => {
    const r = runOn(
      'linux-6.18',
      '  - do: KVM_RUN\n    vcpu: cpu\n    guest:\n' +
        '      - repeat: 4\n        stride: { gpa: 4 KiB }\n        step: { load: { gpa: 1 MiB } }\n' +
        '      - repeat: 4\n        stride: { gpa: 4 KiB }\n        step: { store: { gpa: 1 MiB + 8, hex: "01" } }\n' +
        '      - load: { gpa: 2 MiB }\n' +
        '    expect:\n' +
        '      exit_counts: { LOAD: 5, MMIO: 1, HLT: 1, HYPERCALL: 0 }\n' +
        // 4 read faults (zero page, read-only), 4 write faults (upgrade), 1 MMIO fault.
        '      kvm_stats: { pf_taken: 9, pf_fixed: 8, pf_emulate: 1, pf_spurious: 0 }\n' +
        '  - do: KVM_RUN\n    vcpu: cpu\n    guest:\n' +
        '      - repeat: 4\n        stride: { gpa: 4 KiB }\n        step: { load: { gpa: 1 MiB } }\n' +
        '    expect: { exit_counts: { LOAD: 4 }, kvm_stats: { pf_taken: 0 } }\n',
    );
    assert.deepEqual(
      r.outcomes.flatMap((o) => (o.kind === 'op' ? o.failures : [])),
      [],
    );
    assert.equal(r.failedSteps, 0);
  });

  test('a wrong count fails with what came instead', () => {
    const r = runOn(
      'linux-6.18',
      '  - do: KVM_RUN\n    vcpu: cpu\n    guest: [{ load: { gpa: 1 MiB } }]\n' +
        '    expect: { exit_counts: { LOAD: 2, MMIO: 1 }, kvm_stats: { pf_taken: 0 } }\n',
    );
    const o = r.outcomes.at(-1)!;
    assert.ok(o.kind === 'op');
    assert.deepEqual(o.failures, [
      'expected 2 LOAD exits, got 1',
      'expected 1 MMIO exit, got 0',
      'expected kvm stat pf_taken +0, got +1',
    ]);
  });

  test('KVM_PRE_FAULT_MEMORY maps pages but counts no fault stat', () => {
    const r = runOn(
      'linux-6.18',
      '  - do: KVM_PRE_FAULT_MEMORY\n    vcpu: cpu\n    gpa: 1 MiB\n    size: 16 KiB\n' +
        '    expect: { ok: true, effects: { mapped: 4 }, kvm_stats: { pf_taken: 0, pf_fixed: 0 } }\n' +
        '  - do: KVM_RUN\n    vcpu: cpu\n    guest: [{ repeat: 4, stride: { gpa: 4 KiB }, step: { load: { gpa: 1 MiB } } }]\n' +
        '    expect: { kvm_stats: { pf_taken: 0 } }\n',
    );
    assert.equal(r.failedSteps, 0, failuresOf(r).join('\n'));
  });

  test('the emulated guest access of the PVM profile takes no stage-2 fault', () => {
    const r = runOn(
      'linux-6.18-pvm',
      '  - do: KVM_RUN\n    vcpu: cpu\n    guest: [{ load: { gpa: 1 MiB } }]\n' +
        '    expect: { exit_counts: { LOAD: 1 }, kvm_stats: { pf_taken: 0 } }\n',
    );
    assert.equal(r.failedSteps, 0, failuresOf(r).join('\n'));
  });

  test('the timeline shortens a repeated program and its exits, not one written out', () => {
    const r = runOn(
      'linux-6.18',
      '  - do: KVM_RUN\n    vcpu: cpu\n    guest: [{ repeat: 40, step: { load: { gpa: 1 MiB } } }]\n',
    );
    const text = formatTimeline(r, false).join('\n');
    assert.match(
      text,
      /KVM_RUN vcpu=cpu \[load4@0x100000; load4@0x100000; load4@0x100000; load4@0x100000; … 34 more: load ×34 …; load4@0x100000; load4@0x100000\] \(40 steps\)/,
    );
    assert.match(text, /… 29 more exits: LOAD ×29 …/);
    const written = runOn(
      'linux-6.18',
      `  - do: KVM_RUN\n    vcpu: cpu\n    guest: [${Array(40).fill('{ load: { gpa: 1 MiB } }').join(', ')}]\n`,
    );
    const full = formatTimeline(written, false).join('\n');
    assert.doesNotMatch(full, /more/);
    assert.equal(full.match(/exit LOAD/g)?.length, 40);
  });
});

test('gmemlab run --print-trace prints the expanded trace and runs nothing', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-repeat-'));
  const f = join(dir, 's.yaml');
  writeFileSync(
    f,
    HEAD +
      RUN +
      '      - repeat: 2\n        stride: { gfn: 1 }\n        step: { psc_msr: { gfn: 0x100, op: 1 } }\n',
  );
  const out: string[] = [];
  assert.equal(await runMain(['--print-trace', f], (s) => out.push(s)), 0);
  assert.deepEqual(out, [
    '{"op":"KVM_RUN","vcpu":3,"guest":[{"psc_msr":{"gfn":256,"op":1}},{"psc_msr":{"gfn":257,"op":1}}]}',
  ]);
});
