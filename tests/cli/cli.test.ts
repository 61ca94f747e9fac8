/**
 * The gmemlab command line, run as a user runs it: `node dist/src/cli/main.js ARGS` in a child
 * process, checking exit codes (0 ok, 1 a check failed, 2 usage or input error) and what is
 * printed. Commands that need this machine's /dev/kvm (probe, diff, fuzz --differential,
 * --backend kvm) skip with the reason when it is not usable, and check the "unavailable" exit
 * code instead.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { release, tmpdir } from 'node:os';
import { INVARIANTS } from '../../src/core/invariants/index.js';
import { MUTANTS } from '../../src/core/base/mutants.js';
import { getProfile, profileNames } from '../../src/core/profiles/index.js';
import { kvm, skipFor } from '../kvm/helpers.js';

/** dist/tests/cli/ → the repository root. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = join(ROOT, 'dist/src/cli/main.js');
const COMMANDS = [
  'run',
  'replay',
  'check',
  'inspect',
  'diff',
  'fuzz',
  'probe',
  'conformance',
  'measure',
] as const;

type Run = { readonly status: number | null; readonly stdout: string; readonly stderr: string };

/**
 * Run gmemlab with `args` (cwd: the repository root unless given). The default profile of model
 * commands is pinned to linux-6.18 (GMEMLAB_KERNEL) so their outputs do not depend on this
 * machine's kernel; the commands that compare with the kernel (probe, diff, fuzz --differential),
 * or any command when `probed` is set, choose their default as a user's would.
 */
function gmemlab(args: readonly string[], cwd = ROOT, timeout = 60_000, probed = false): Run {
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  const compares =
    args[0] === 'probe' ||
    args[0] === 'diff' ||
    (args[0] === 'fuzz' && args.includes('--differential'));
  if (probed || compares) delete env['GMEMLAB_KERNEL'];
  else env['GMEMLAB_KERNEL'] = 'linux-6.18';
  // Text output is pinned to a UTF-8 locale without colour (src/cli/output.ts decides both).
  env['LC_ALL'] = 'C.UTF-8';
  delete env['FORCE_COLOR'];
  const r = spawnSync(process.execPath, [MAIN, ...args], { cwd, env, encoding: 'utf8', timeout });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Assert the exit status, showing what the command printed when it differs. */
function expectStatus(r: Run, status: number, what: string): void {
  assert.equal(
    r.status,
    status,
    `${what}: exit ${r.status}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
  );
}

const outLines = (s: string): string[] => s.split('\n').filter((l) => l.length > 0);
const jsonLines = (s: string): unknown[] => outLines(s).map((l) => JSON.parse(l) as unknown);

/** Result lines of an expected file (skipping `#` comments), parsed. */
function expectedResults(file: string): unknown[] {
  return outLines(readFileSync(file, 'utf8'))
    .filter((l) => !l.trim().startsWith('#'))
    .map((l) => JSON.parse(l) as unknown);
}

/** Is /dev/kvm usable here? Prints the skip reason once (tests/kvm/helpers.ts convention). */
function kvmUnavailable(): string | undefined {
  const b = kvm();
  return 'unavailable' in b ? b.unavailable : undefined;
}

type ProbeJson = {
  kernel: string;
  systemCaps: number[];
  vmCaps: number[];
  caps: { system: Record<string, number>; vm: Record<string, number> };
  vmTypes: Record<string, string>;
  gmemFlags: Record<string, string>;
  memoryAttributes: string;
  vcpuRuns: string;
  profile: string | null;
  default: string;
  hostDifferences: string[];
};

let probed: ProbeJson | undefined;
/** `gmemlab probe --json` of this machine (run once); needs a usable /dev/kvm. */
function probeJson(): ProbeJson {
  if (probed === undefined) {
    const j = gmemlab(['probe', '--json'], ROOT, 60_000, true);
    expectStatus(j, 0, 'probe --json');
    probed = JSON.parse(j.stdout) as ProbeJson;
  }
  return probed;
}

/** The recording of `caseFile` made on this machine's profile, if the suite has one. */
function liveRecording(caseFile: string): string | undefined {
  const p = probeJson().profile;
  if (p === null) return undefined;
  const base = join(ROOT, caseFile.replace(/\.jsonl$/, ''));
  const f = p === 'linux-6.18-pvm' ? `${base}.expected.jsonl` : `${base}.${p}.expected.jsonl`;
  return existsSync(f) ? f : undefined;
}

let tmp = '';
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'gmemlab-cli-'));
});
after(() => {
  if (tmp !== '') rmSync(tmp, { recursive: true, force: true });
});

/** Write a file under the temp dir (creating directories) and return its path relative to it. */
function put(rel: string, text: string): string {
  const p = join(tmp, rel);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, text);
  return rel;
}

// ---------------------------------------------------------------------------------------------

describe('gmemlab: commands, help and usage errors', () => {
  test('--help lists every command and the exit codes', () => {
    for (const flag of ['--help', '-h', 'help']) {
      const r = gmemlab([flag]);
      expectStatus(r, 0, flag);
      assert.match(r.stdout, /^usage: gmemlab COMMAND \[options\]/);
      for (const c of COMMANDS)
        assert.match(r.stdout, new RegExp(`^  ${c} +\\S`, 'm'), `command ${c} in ${flag}`);
      assert.match(r.stdout, /Exit codes: 0 ok, 1 a check failed, 2 usage or input error\./);
      assert.equal(r.stderr, '');
    }
  });

  test('no arguments: the usage and exit 2', () => {
    const r = gmemlab([]);
    expectStatus(r, 2, 'no args');
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /^usage: gmemlab COMMAND/);
  });

  test('an unknown command: exit 2, named on stderr', () => {
    const r = gmemlab(['frobnicate', 'x']);
    expectStatus(r, 2, 'unknown command');
    assert.match(r.stderr, /^gmemlab: unknown command "frobnicate"/);
    assert.match(r.stderr, /usage: gmemlab COMMAND/);
    assert.equal(r.stdout, '');
  });

  test('--version prints the package version', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    const r = gmemlab(['--version']);
    expectStatus(r, 0, '--version');
    assert.equal(r.stdout, `gmemlab ${pkg.version}\n`);
  });

  for (const c of COMMANDS) {
    test(`${c} --help (and -h): its usage, exit 0`, () => {
      for (const flag of ['--help', '-h']) {
        const r = gmemlab([c, flag]);
        expectStatus(r, 0, `${c} ${flag}`);
        assert.ok(r.stdout.startsWith(`usage: gmemlab ${c}`), r.stdout.slice(0, 200));
        assert.match(r.stdout, /Exit codes:/);
        assert.equal(r.stderr, '');
      }
    });

    test(`${c} with an unknown option: exit 2 naming the option`, () => {
      const r = gmemlab([c, '--no-such-option', 'x']);
      expectStatus(r, 2, `${c} --no-such-option`);
      assert.match(
        r.stderr,
        new RegExp(
          `^gmemlab ${c}: unknown option --no-such-option\\n\\(see gmemlab ${c} --help\\)\\n$`,
        ),
      );
      assert.equal(r.stdout, '');
    });
  }

  test('fuzz --differential --help shows the differential usage', () => {
    const r = gmemlab(['fuzz', '--differential', '--help']);
    expectStatus(r, 0, 'fuzz --differential --help');
    assert.match(r.stdout, /^usage: gmemlab fuzz --differential/);
    assert.match(r.stdout, /--traces N/);
    const m = gmemlab(['fuzz', '--help']);
    assert.match(m.stdout, /Model-based fuzzing/);
    assert.match(m.stdout, /--mutant NAMES/);
  });

  test('bad option values are usage errors', () => {
    const cases: Array<[string[], RegExp]> = [
      [['fuzz', '--seed', 'abc'], /--seed expects a non-negative integer, got "abc"/],
      [
        ['fuzz', '--time', '5 weeks'],
        /--time expects a duration such as 30s, 5m or 1h, got "5 weeks"/,
      ],
      [['fuzz', '--trace-ops', '0'], /--trace-ops must be at least 1/],
      [['fuzz', '--ops'], /--ops needs a value/],
      [['fuzz', '--kernel', 'linux-9.99', '--ops', '10'], /unknown kernel profile "linux-9.99"/],
      [['replay', '--verbose=yes', 'x.jsonl'], /--verbose takes no value/],
      [['replay', '--backend', 'qemu', 'x.jsonl'], /unknown backend "qemu" \(model or kvm\)/],
      [['replay'], /replay needs a trace file/],
      [['run'], /run needs a scenario file/],
      [['check'], /check needs a trace or scenario file/],
      [['diff'], /diff needs at least one trace file/],
    ];
    for (const [args, msg] of cases) {
      const r = gmemlab(args);
      expectStatus(r, 2, args.join(' '));
      assert.match(r.stderr, msg, args.join(' '));
    }
  });
});

// ---------------------------------------------------------------------------------------------

/** A short trace: VM, guest_memfd, mapping, poke/peek, a punch that zeroes, an errno, fstat. */
const SHORT_TRACE = [
  '# a comment line and an empty line produce no result',
  '',
  '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
  '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
  '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
  '{"op":"poke","addr":"m+16","hex":"deadbeef"}',
  '{"op":"peek","addr":"m+16","len":4}',
  '// another comment',
  '{"op":"fallocate","fd":"g","mode":3,"offset":0,"len":4096}',
  '{"op":"peek","addr":"m+16","len":4}',
  '{"op":"fallocate","fd":"g","mode":2,"offset":0,"len":4096}',
  '{"op":"KVM_CREATE_VM","type":1,"as":"pvm"}',
  '{"op":"fstat","fd":"g"}',
  '{"op":"munmap","addr":"m","length":8192}',
  '{"op":"peek","addr":"m+16","len":4}',
].join('\n');

/** Expected results on linux-6.18 (the default profile). */
const SHORT_LINUX = [
  { ok: true },
  { ok: true },
  { ok: true },
  { ok: true },
  { ok: true, value: 'deadbeef' },
  { ok: true },
  { ok: true, value: '00000000' },
  { ok: false, errno: 'EOPNOTSUPP' }, // PUNCH_HOLE without KEEP_SIZE
  { ok: true }, // SW_PROTECTED VM
  { ok: true, stat: { size: 8192, blocks: 0 } },
  { ok: true },
  { ok: false, fault: 'SIGSEGV' }, // a stale handle after munmap
];

describe('gmemlab replay', () => {
  test('prints one result line per op, as the trace contract says (default linux-6.18)', () => {
    const f = put('replay/short.jsonl', SHORT_TRACE);
    const r = gmemlab(['replay', f], tmp);
    expectStatus(r, 0, 'replay');
    assert.deepEqual(jsonLines(r.stdout), SHORT_LINUX);
    // Compact JSON, exactly as the contract's example writes it.
    assert.equal(outLines(r.stdout)[4], '{"ok":true,"value":"deadbeef"}');
    assert.equal(r.stderr, '');
  });

  test('--kernel linux-6.18-pvm: the PVM kernel has no SW_PROTECTED VM type', () => {
    const f = put('replay/short.jsonl', SHORT_TRACE);
    const r = gmemlab(['replay', '--kernel', 'linux-6.18-pvm', f], tmp);
    expectStatus(r, 0, 'replay pvm');
    const want = [...SHORT_LINUX];
    want[8] = { ok: false, errno: 'EINVAL' };
    assert.deepEqual(jsonLines(r.stdout), want);
    // --kernel=VALUE works too.
    assert.equal(gmemlab(['replay', '--kernel=linux-6.18-pvm', f], tmp).stdout, r.stdout);
  });

  test('--verbose prints each op as a # comment before its result', () => {
    const f = put('replay/short.jsonl', SHORT_TRACE);
    const r = gmemlab(['replay', '--verbose', f], tmp);
    expectStatus(r, 0, 'replay --verbose');
    const ls = outLines(r.stdout);
    assert.equal(ls.length, 2 * SHORT_LINUX.length);
    assert.equal(
      ls[0],
      '# replay/short.jsonl:3 {"op":"KVM_CREATE_VM","fd":"kvm","type":0,"as":"vm"}',
    );
    assert.equal(ls[1], '{"ok":true}');
    assert.equal(ls[6], '# replay/short.jsonl:6 {"op":"poke","addr":"m+0x10","hex":"deadbeef"}');
    assert.deepEqual(
      ls.filter((l) => !l.startsWith('#')).map((l) => JSON.parse(l) as unknown),
      SHORT_LINUX,
    );
  });

  test('several traces: each runs on a fresh backend (handles do not carry over)', () => {
    const a = put(
      'replay/a.jsonl',
      '{"op":"KVM_CREATE_VM","as":"vm"}\n{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"as":"g"}\n',
    );
    const b = put('replay/b.jsonl', '{"op":"KVM_CREATE_VM","as":"vm2"}\n{"op":"fstat","fd":"g"}\n');
    const r = gmemlab(['replay', a, b], tmp);
    expectStatus(r, 2, 'replay a b');
    // a ran; in b, "g" names nothing: no op of b creates it.
    assert.deepEqual(jsonLines(r.stdout), [{ ok: true }, { ok: true }, { ok: true }]);
    assert.match(
      r.stderr,
      /^gmemlab replay: replay\/b\.jsonl:2: fd: no earlier op creates a handle named "g"/,
    );
  });

  test('a handle name no earlier op creates is an input error; one whose creating op failed is unbound', () => {
    const bad = put(
      'replay/never.jsonl',
      ['{"op":"KVM_CREATE_VM","as":"vm"}', '{"op":"fstat","fd":"vn"}'].join('\n'),
    );
    const r1 = gmemlab(['replay', bad], tmp);
    expectStatus(r1, 2, 'replay never-created');
    assert.match(
      r1.stderr,
      /replay\/never\.jsonl:2: fd: no earlier op creates a handle named "vn" \(did you mean "vm"\?\)/,
    );
    // trace-format.md: a handle whose creating op failed is unbound (fd -1, address 0).
    const f = put(
      'replay/unbound.jsonl',
      [
        '{"op":"mmap","fd":null,"length":0,"prot":3,"flags":34,"as":"nosuch"}',
        '{"op":"peek","addr":"nosuch+8","len":4}',
        '{"op":"KVM_CREATE_VM","type":99,"as":"novm"}',
        '{"op":"fstat","fd":"novm"}',
        '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"novm","size":4096,"as":"g"}',
        '{"op":"close","fd":"g"}',
      ].join('\n'),
    );
    const r = gmemlab(['replay', f], tmp);
    expectStatus(r, 0, 'replay unbound');
    assert.deepEqual(jsonLines(r.stdout), [
      { ok: false, errno: 'EINVAL' },
      { ok: false, fault: 'SIGSEGV' },
      { ok: false, errno: 'EINVAL' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
    ]);
  });

  test('malformed traces: exit 2, file:LINE: field: message on stderr, nothing after it runs', () => {
    const good = '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}';
    const cases: Array<[string, string, RegExp]> = [
      ['bad JSON', '{"op": "KVM_CREATE_VM", ', /^gmemlab replay: bad\/bad-json\.jsonl:3: json: /],
      [
        'unknown op',
        '{"op":"KVM_DESTROY_EVERYTHING"}',
        /^gmemlab replay: bad\/unknown-op\.jsonl:3: op: unknown op "KVM_DESTROY_EVERYTHING"/,
      ],
      [
        'missing field',
        '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","flags":0,"as":"g"}',
        /^gmemlab replay: bad\/missing-field\.jsonl:3: size: missing required integer field/,
      ],
      [
        'wrong type',
        '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"lots","as":"g"}',
        /^gmemlab replay: bad\/wrong-type\.jsonl:3: size: "lots" is not an integer/,
      ],
      [
        'hex not a string',
        '{"op":"poke","addr":"m","hex":1234}',
        /^gmemlab replay: bad\/hex-not-a-string\.jsonl:3: hex: expected a hex string of bytes/,
      ],
      [
        'fd with an offset',
        '{"op":"fstat","fd":"vm+4096"}',
        /^gmemlab replay: bad\/fd-with-an-offset\.jsonl:3: fd: "vm\+4096": an fd field takes a handle name/,
      ],
      [
        'unsafe integer',
        '{"op":"KVM_CHECK_EXTENSION","cap":18014398509481984}',
        /^gmemlab replay: bad\/unsafe-integer\.jsonl:3: cap: .*write it as a "0x\.\.\." string/,
      ],
      [
        'guest step',
        '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"store":{"gpa":0,"hex":"aabbcc"}}]}',
        /^gmemlab replay: bad\/guest-step\.jsonl:3: guest\[0\]\.store\.hex: a store writes 1, 2 or 4 bytes, not 3/,
      ],
    ];
    for (const [what, line, msg] of cases) {
      const f = put(
        `bad/${what.toLowerCase().replace(/ /g, '-')}.jsonl`,
        `${good}\n\n${line}\n${good}\n`,
      );
      const r = gmemlab(['replay', f], tmp);
      expectStatus(r, 2, what);
      assert.match(r.stderr, msg, what);
      // The trace streams: the op before the malformed line ran, nothing after it.
      assert.deepEqual(jsonLines(r.stdout), [{ ok: true }], what);
      assert.match(
        r.stderr,
        /the results of the 1 op\(s\) before line 3 were printed; nothing after it ran/,
        what,
      );
    }
  });

  test('every malformed line of a trace is reported, one per line', () => {
    const f = put(
      'bad/many.jsonl',
      [
        '{"op":"KVM_CREATE_VM"}',
        '{oops',
        '{"op":"NOPE"}',
        '[1,2]',
        '{"op":"pread","fd":"g","len":99999999999}',
      ].join('\n'),
    );
    const r = gmemlab(['replay', f], tmp);
    expectStatus(r, 2, 'many errors');
    const errs = outLines(r.stderr);
    // Four errors, then the note that the op before the first one ran.
    assert.equal(errs.length, 5, r.stderr);
    assert.match(errs[4]!, /the results of the 1 op\(s\) before line 2 were printed/);
    assert.match(errs[0]!, /^gmemlab replay: bad\/many\.jsonl:2: json: /);
    assert.match(errs[1]!, /^bad\/many\.jsonl:3: op: unknown op "NOPE"$/);
    assert.match(errs[2]!, /^bad\/many\.jsonl:4: op: each line must be a JSON object$/);
    assert.match(errs[3]!, /^bad\/many\.jsonl:5: len: reads return at most/);
  });

  test('an unknown profile, a missing file: exit 2', () => {
    const f = put('replay/short.jsonl', SHORT_TRACE);
    const p = gmemlab(['replay', '--kernel', 'linux-2.4', f], tmp);
    expectStatus(p, 2, 'unknown profile');
    assert.match(
      p.stderr,
      new RegExp(
        `unknown kernel profile "linux-2.4" \\(known: ${profileNames().join(', ')}; or a profile file from gmemlab probe --save\\)`,
      ),
    );
    assert.equal(p.stdout, '');
    const m = gmemlab(['replay', 'replay/does-not-exist.jsonl'], tmp);
    expectStatus(m, 2, 'missing file');
    assert.match(m.stderr, /replay\/does-not-exist\.jsonl: cannot read: ENOENT/);
  });

  test('--backend kvm gives the recorded kernel results for a conformance case', (t) => {
    const reason = kvmUnavailable();
    const c = 'conformance/fallocate/punch_zeroes_mapping.jsonl';
    if (reason !== undefined) {
      const r = gmemlab(['replay', '--backend', 'kvm', c]);
      expectStatus(r, 2, 'replay --backend kvm without /dev/kvm');
      assert.match(r.stderr, /kvm backend unavailable/);
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const rec = liveRecording(c);
    if (rec === undefined) {
      t.skip(
        `the suite has no recording of ${c} for this kernel (${probeJson().profile ?? 'no profile'})`,
      );
      return;
    }
    const want = expectedResults(rec);
    const k = gmemlab(['replay', '--backend', 'kvm', c]);
    expectStatus(k, 0, 'replay --backend kvm');
    assert.deepEqual(jsonLines(k.stdout), want);
    // The model of the kernel the recordings come from prints the same lines.
    const m = gmemlab(['replay', '--kernel', probeJson().profile!, c]);
    expectStatus(m, 0, 'replay model');
    assert.equal(m.stdout, k.stdout);
  });

  test('a closed output pipe (| head -1) ends quietly, without a stack trace', () => {
    const f = put('replay/big.jsonl', '{"op":"KVM_CHECK_EXTENSION","cap":1}\n'.repeat(20_000));
    const r = spawnSync(
      '/bin/sh',
      ['-c', `"${process.execPath}" "${MAIN}" replay "${f}" | head -1`],
      { cwd: tmp, encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(r.status, 0);
    assert.equal(r.stdout, '{"ok":true,"value":1}\n');
    assert.equal(r.stderr, '');
  });
});

// ---------------------------------------------------------------------------------------------

const FAILING_SCENARIO = `name: One failing expectation
steps:
  - section: Setup
  - do: KVM_CREATE_VM
    type: 0
    as: vm
    expect: ok
  - say: This guest_memfd is valid, so the EINVAL expectation fails.
    do: KVM_CREATE_GUEST_MEMFD
    vm: vm
    size: 8 KiB
    flags: 3
    as: g
    expect: EINVAL
  - do: fstat
    fd: g
    expect: { stat: { size: 8192 } }
`;

describe('gmemlab run', () => {
  test('examples/demo.yaml: a timeline of steps with results, explanations and changes', () => {
    const r = gmemlab(['run', 'examples/demo.yaml']);
    expectStatus(r, 0, 'run demo');
    const out = r.stdout;
    assert.match(out, /^Scenario: Guided demo/);
    assert.match(out, /^ {2}examples\/demo\.yaml — backend model:linux-6\.18$/m);
    // Section headings, numbered step markers (✓ = expectation met), results and the "say" text.
    assert.match(out, /^── A VM that can have private memory ──$/m);
    assert.match(
      out,
      /^✓ {2}1 {2}KVM_CREATE_VM type=SW_PROTECTED → vm\n {7}→ ok\n {7}Ask for a SW_PROTECTED VM/m,
    );
    assert.match(
      out,
      /^✓ {2}2 {2}KVM_CHECK_EXTENSION fd=vm cap=KVM_CAP_MEMORY_ATTRIBUTES\n {7}→ ok value=8$/m,
    );
    assert.match(
      out,
      /^✓ \d+ {2}mmap fd=gmem length=2MiB prot=READ flags=SHARED offset=0\n {7}→ ENODEV$/m,
    );
    // Exits of KVM_RUN and "what changed" bullets.
    assert.match(out, /^ {9}exit LOAD gpa=0x80001000 → 5ec2e7ed$/m);
    assert.match(out, /^ {9}exit HLT$/m);
    // Objects by the scenario's handle names, the model's ids in parentheses.
    assert.match(out, /^ {9}• gmem \(guest_memfd #\d+\): zeroed 1 page on first use/m);
    assert.match(out, /^ {9}• vm \(vm0\): zapped \d+ pages? of stage-2 mappings/m);
    assert.ok(!out.includes('✗'), 'no failed expectation');
    const last = outLines(out).at(-1)!;
    const m =
      /^Guided demo — private memory on a SW_PROTECTED VM: (\d+) steps, (\d+) checked — all expectations met$/.exec(
        last,
      );
    assert.ok(m, last);
    assert.equal(m[1], m[2]);
    const markers = outLines(out).filter((l) => /^[✓✗ ] {1,2}\d+ {2}\S/.test(l));
    assert.equal(markers.length, Number(m[1]));
  });

  test('--quiet prints only the summary when everything passes', () => {
    const r = gmemlab(['run', '--quiet', 'examples/demo.yaml']);
    expectStatus(r, 0, 'run --quiet');
    assert.deepEqual(outLines(r.stdout).length, 1);
    assert.match(r.stdout, /all expectations met\n$/);
  });

  test('a failing expectation: exit 1, the step marked ✗ with file:line and what was expected', () => {
    const f = put('run/failing.yaml', FAILING_SCENARIO);
    const r = gmemlab(['run', f], tmp);
    expectStatus(r, 1, 'run failing');
    assert.match(r.stdout, /^✓ {2}1 {2}KVM_CREATE_VM type=DEFAULT → vm$/m);
    assert.match(
      r.stdout,
      /^✗ {2}2 {2}KVM_CREATE_GUEST_MEMFD vm=vm size=8KiB flags=MMAP\|INIT_SHARED → g\n {7}→ ok\n {7}This guest_memfd is valid/m,
    );
    assert.match(
      r.stdout,
      /^ {7}✗ run\/failing\.yaml:8: expected errno EINVAL, got \{"ok":true\}$/m,
    );
    assert.equal((r.stdout.match(/✗ run\/failing\.yaml:8:/g) ?? []).length, 1, 'one mismatch line');
    assert.match(r.stdout, /^✓ {2}3 {2}fstat fd=g\n {7}→ ok size=8192 blocks=0$/m);
    assert.match(r.stdout, /One failing expectation: 3 steps, 3 checked — 1 step\(s\) failed\n$/);
    // --quiet keeps the failure and the summary.
    const q = gmemlab(['run', '--quiet', f], tmp);
    expectStatus(q, 1, 'run --quiet failing');
    assert.match(q.stdout, /^✗ {2}2 /);
    assert.ok(!q.stdout.includes('✓'));
  });

  test('--json: one parseable object per scenario', () => {
    const f = put('run/failing.yaml', FAILING_SCENARIO);
    const r = gmemlab(['run', '--json', f, join(ROOT, 'examples/demo.yaml')], tmp);
    expectStatus(r, 1, 'run --json');
    const [a, b] = jsonLines(r.stdout) as Array<{
      scenario: string;
      backend: string;
      failed: number;
      checked: number;
      steps: Array<{
        index: number;
        line: number;
        op: string;
        result: unknown;
        failures: string[];
        effects: Record<string, number>;
      }>;
    }>;
    assert.ok(a !== undefined && b !== undefined);
    assert.equal(a.scenario, 'One failing expectation');
    assert.equal(a.backend, 'model:linux-6.18');
    assert.equal(a.failed, 1);
    assert.equal(a.checked, 3);
    assert.deepEqual(
      a.steps.map((s) => [s.index, s.line, s.op]),
      [
        [1, 4, 'KVM_CREATE_VM'],
        [2, 8, 'KVM_CREATE_GUEST_MEMFD'],
        [3, 15, 'fstat'],
      ],
    );
    assert.deepEqual(a.steps[1]!.result, { ok: true });
    assert.ok(a.steps[1]!.failures.some((x) => x.includes('expected errno EINVAL')));
    assert.deepEqual(a.steps[2]!.result, { ok: true, stat: { size: 8192, blocks: 0 } });
    assert.equal(b.failed, 0);
    assert.equal(b.checked, b.steps.length);
    assert.ok(b.steps.some((s) => s.effects['zapped']! > 0));
  });

  test('scenario input errors: exit 2 with file:line', () => {
    const field = put(
      'run/bad-field.yaml',
      'name: Bad field\nsteps:\n  - do: KVM_CREATE_VM\n    as: vm\n  - do: KVM_CREATE_GUEST_MEMFD\n    vm: vm\n    size: lots\n    as: g\n',
    );
    const r1 = gmemlab(['run', field], tmp);
    expectStatus(r1, 2, 'bad field');
    assert.match(r1.stderr, /^gmemlab run: run\/bad-field\.yaml:7: size: "lots" is not an integer/);
    assert.equal(r1.stdout, '');
    const yaml = put('run/bad-yaml.yaml', 'name: x\nsteps:\n  - do: [unclosed\n');
    const r2 = gmemlab(['run', yaml], tmp);
    expectStatus(r2, 2, 'bad yaml');
    assert.match(r2.stderr, /^gmemlab run: run\/bad-yaml\.yaml:\d+: yaml: /);
    const op = put(
      'run/bad-op.yaml',
      'name: x\nsteps:\n  - do: KVM_CREATE_VM\n  - do: KVM_FROBNICATE\n',
    );
    const r3 = gmemlab(['run', op], tmp);
    expectStatus(r3, 2, 'bad op');
    assert.match(r3.stderr, /run\/bad-op\.yaml:4: op: unknown op "KVM_FROBNICATE"/);
  });

  test('--backend kvm runs the scenario on /dev/kvm', (t) => {
    const reason = kvmUnavailable();
    const f = put('run/failing.yaml', FAILING_SCENARIO);
    if (reason !== undefined) {
      expectStatus(
        gmemlab(['run', '--backend', 'kvm', f], tmp),
        2,
        'run --backend kvm without /dev/kvm',
      );
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const r = gmemlab(['run', '--backend', 'kvm', f], tmp);
    expectStatus(r, 1, 'run --backend kvm');
    assert.match(r.stdout, /^ {2}run\/failing\.yaml — backend kvm$/m);
    // Step 8 fails on every kernel (EINVAL expected); what the kernel gave is what the model of
    // this machine's profile gives (ok with guest_memfd, ENOTTY without it).
    const m = gmemlab(['run', '--kernel', probeJson().default, f], tmp, 60_000);
    expectStatus(m, 1, 'run on the model of this machine');
    const failure = (out: string): string =>
      out.split('\n').find((l) => l.includes('run/failing.yaml:8: expected errno EINVAL, got')) ??
      '';
    assert.notEqual(failure(r.stdout), '');
    assert.equal(failure(r.stdout), failure(m.stdout));
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab check', () => {
  test('a clean trace: exit 0, "no violation"', () => {
    const f = put('check/short.jsonl', SHORT_TRACE);
    const r = gmemlab(['check', f], tmp);
    expectStatus(r, 0, 'check clean');
    assert.equal(
      r.stdout,
      `check/short.jsonl: ${SHORT_LINUX.length} ops, 9 invariants checked after each — no violation (linux-6.18)\n` +
        `1 file, ${SHORT_LINUX.length} ops, 0 violations (no file with violations)\n`,
    );
    const p = gmemlab(['check', '--kernel', 'linux-6.18-pvm', f], tmp);
    expectStatus(p, 0, 'check clean pvm');
    assert.match(p.stdout, /no violation \(linux-6\.18-pvm\)\n1 file, /);
  });

  test('an op the model refuses: exit 2 with the file and the refusal, no internal error', () => {
    const f = put(
      'check/refused.jsonl',
      [
        '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
        '{"op":"open","path":"/dev/sev","as":"sev"}',
        '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","id":0,"sev_fd":"sev"}',
      ].join('\n') + '\n',
    );
    const r = gmemlab(['check', '--kernel', 'linux-6.18-snp', f], tmp);
    expectStatus(r, 2, 'check refused');
    assert.match(
      r.stderr,
      /^gmemlab check: check\/refused\.jsonl: KVM_MEMORY_ENCRYPT_OP id 0: .*SEV guests are not modelled yet \(at run time; the check stopped here\)\n$/,
    );
    assert.doesNotMatch(r.stderr, /internal error/);
  });

  test('--mutant punch_no_zap on the demo: exit 1 naming the invariant, the op and the state', () => {
    const r = gmemlab(['check', '--mutant', 'punch_no_zap', 'examples/demo.yaml']);
    expectStatus(r, 1, 'check mutant');
    assert.match(
      r.stdout,
      /^examples\/demo\.yaml:\d+: VIOLATION stage2-coherent: vm \(vm0\) gfn 0x[0-9a-f]+: .*stale after a hole punch/m,
    );
    assert.match(r.stdout, /^ {2}broken by op \d+: \{"op":"fallocate","fd":"gmem","mode":3,/m);
    assert.match(r.stdout, /^ {2}result: \{"ok":true\}$/m);
    assert.match(r.stdout, /^ {2}state before:\n/m);
    assert.match(r.stdout, /^ {2}state after:\n/m);
    // The faithful model passes the same scenario.
    const c = gmemlab(['check', 'examples/demo.yaml']);
    expectStatus(c, 0, 'check demo');
    assert.match(c.stdout, /no violation \(linux-6\.18\)/);
  });

  test('--json: one object per file with the violations', () => {
    const f = put('check/short.jsonl', SHORT_TRACE);
    const r = gmemlab(
      ['check', '--json', '--mutant', 'punch_no_zap', join(ROOT, 'examples/demo.yaml'), f],
      tmp,
    );
    expectStatus(r, 1, 'check --json');
    const [demo, short] = jsonLines(r.stdout) as Array<{
      file: string;
      profile: string;
      mutants: string[];
      ops: number;
      violations: Array<{ op: number; line: number; invariant: string }>;
    }>;
    assert.ok(demo !== undefined && short !== undefined);
    assert.deepEqual(demo.mutants, ['punch_no_zap']);
    assert.equal(demo.profile, 'linux-6.18');
    assert.ok(
      demo.violations.some((v) => v.invariant === 'stage2-coherent' && v.op > 0 && v.line > 0),
    );
    assert.equal(short.file, 'check/short.jsonl');
    assert.equal(short.ops, SHORT_LINUX.length);
    // The short trace punches a page no guest has mapped: nothing to catch there.
    assert.deepEqual(short.violations, []);
  });

  test('--list: the invariant catalogue and every mutant of the profile', () => {
    const r = gmemlab(['check', '--list', '--kernel', 'linux-6.18']);
    expectStatus(r, 0, 'check --list');
    const headings = outLines(r.stdout).filter((l) => /^ {2}[a-z0-9-]+ — /.test(l));
    assert.equal(headings.length, 9);
    // Those that apply to every profile, and host-no-private-access, which every profile but
    // design-2023-restrictedmem (its own definition) runs.
    const x618 = getProfile('linux-6.18')!;
    const generic = INVARIANTS.filter((i) => i.appliesTo?.(x618) ?? true);
    assert.equal(generic.length, 9);
    for (const i of generic) assert.ok(headings.includes(`  ${i.name} — ${i.title}`), i.name);
    assert.match(r.stdout, /^Mutants \(--mutant NAME/m);
    for (const m of MUTANTS) {
      const listed = new RegExp(`^ {2}${m.name} +\\S`, 'm').test(r.stdout);
      assert.equal(
        listed,
        m.platform === undefined && m.gmem === undefined && m.design === undefined,
        m.name,
      );
    }
    // An SEV-SNP profile adds its invariants and mutants.
    const s = gmemlab(['check', '--list', '--kernel', 'linux-6.18-snp']);
    expectStatus(s, 0, 'check --list --kernel linux-6.18-snp');
    const all = outLines(s.stdout).filter((l) => /^ {2}[a-z0-9-]+ — /.test(l));
    assert.equal(all.length, 16);
    // 32, the three HugeTLB guest_memfd invariants and the two NO_DIRECT_MAP ones (next-gmem
    // only), and the four design profiles' own host-no-private-access definitions.
    assert.equal(INVARIANTS.length, 41);
    for (const m of MUTANTS) {
      const listed = new RegExp(`^ {2}${m.name} +\\S`, 'm').test(s.stdout);
      assert.equal(
        listed,
        (m.platform === undefined || m.platform === 'sev-snp') &&
          m.gmem === undefined &&
          m.design === undefined,
        m.name,
      );
    }
    // So does a TDX profile, its own.
    const x = gmemlab(['check', '--list', '--kernel', 'linux-6.18-tdx']);
    expectStatus(x, 0, 'check --list --kernel linux-6.18-tdx');
    const tdx = outLines(x.stdout).filter((l) => /^ {2}[a-z0-9-]+ — /.test(l));
    assert.equal(tdx.length, 15);
    assert.ok(tdx.every((l) => !l.startsWith('  snp-')));
    for (const m of MUTANTS) {
      const listed = new RegExp(`^ {2}${m.name} +\\S`, 'm').test(x.stdout);
      assert.equal(
        listed,
        (m.platform === undefined || m.platform === 'tdx') &&
          m.gmem === undefined &&
          m.design === undefined,
        m.name,
      );
    }
    // And the pKVM profile, its own: the six of platforms.md §3.5 and the history oracle.
    const k = gmemlab(['check', '--list', '--kernel', 'linux-6.18-arm64-pkvm']);
    expectStatus(k, 0, 'check --list --kernel linux-6.18-arm64-pkvm');
    const pk = outLines(k.stdout).filter((l) => /^ {2}[a-z0-9-]+ — /.test(l));
    assert.equal(pk.length, 16);
    assert.equal(pk.filter((l) => l.startsWith('  pkvm-')).length, 7);
    for (const m of MUTANTS) {
      const listed = new RegExp(`^ {2}${m.name} +\\S`, 'm').test(k.stdout);
      assert.equal(
        listed,
        (m.platform === undefined || m.platform === 'pkvm') &&
          m.gmem === undefined &&
          m.design === undefined,
        m.name,
      );
    }
    // linux-next-gmem: the generic ones, pins/IOMMU and HugeTLB; the inplace-v7 mutants.
    const n = gmemlab(['check', '--list', '--kernel', 'linux-next-gmem']);
    expectStatus(n, 0, 'check --list --kernel linux-next-gmem');
    const next = outLines(n.stdout).filter((l) => /^ {2}[a-z0-9-]+ — /.test(l));
    assert.equal(next.filter((l) => l.startsWith('  hugetlb-')).length, 3);
    for (const name of ['hugetlb_split_loses_page', 'hugetlb_merge_with_shared'])
      assert.match(n.stdout, new RegExp(`^ {2}${name} +\\S`, 'm'), name);
  });

  test('an unknown mutant or a malformed file: exit 2', () => {
    const f = put('check/short.jsonl', SHORT_TRACE);
    const r = gmemlab(['check', '--mutant', 'punch_no_zap,no_such_bug', f], tmp);
    expectStatus(r, 2, 'unknown mutant');
    assert.match(r.stderr, /unknown mutant "no_such_bug" \(gmemlab check --list\)/);
    const bad = put('check/bad.jsonl', '{"op":"KVM_CREATE_VM"}\n{"op":"mmap","length":4096}\n');
    const b = gmemlab(['check', bad], tmp);
    expectStatus(b, 2, 'malformed');
    assert.match(b.stderr, /check\/bad\.jsonl:2: fd: missing fd/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab fuzz (model-based)', () => {
  type Summary = {
    seed: number;
    profile: string;
    mutants: string[];
    traces: number;
    ops: number;
    seconds?: number;
    opsPerSecond?: number;
    violations: unknown[];
    coverage: Record<string, Record<string, number>>;
  };

  test('--seed 5 --ops 2000 --json is deterministic apart from timing', () => {
    const run = (): Summary => {
      const r = gmemlab([
        'fuzz',
        '--seed',
        '5',
        '--ops',
        '2000',
        '--json',
        '--out',
        join(tmp, 'fuzz-none'),
      ]);
      expectStatus(r, 0, 'fuzz --json');
      assert.equal(r.stderr, '', 'no progress line with --json');
      assert.equal(outLines(r.stdout).length, 1);
      return JSON.parse(r.stdout) as Summary;
    };
    const a = run();
    const b = run();
    for (const s of [a, b]) {
      assert.equal(typeof s.seconds, 'number');
      assert.equal(typeof s.opsPerSecond, 'number');
      delete s.seconds;
      delete s.opsPerSecond;
    }
    assert.deepEqual(a, b);
    assert.equal(a.seed, 5);
    assert.equal(a.profile, 'linux-6.18');
    assert.deepEqual(a.mutants, []);
    assert.deepEqual(a.violations, []);
    assert.ok(a.ops >= 2000 && a.traces > 1, `${a.ops} ops in ${a.traces} traces`);
    for (const k of ['errnos', 'exits', 'faults', 'pageStates', 'ops'])
      assert.equal(typeof a.coverage[k], 'object', k);
    assert.ok(Object.values(a.coverage['ops']!).reduce((x, y) => x + y, 0) >= a.ops);
  });

  test('--mutant punch_no_zap: exit 1, writes a minimized violation that check reproduces', () => {
    const dir = join(tmp, 'fuzz-mutant');
    const r = gmemlab(
      ['fuzz', '--mutant', 'punch_no_zap', '--time', '30s', '--out', dir, '--quiet'],
      tmp,
    );
    expectStatus(r, 1, 'fuzz --mutant');
    const m =
      /^VIOLATION (\S+) at seed (\d+) after (\d+) ops: .*\n {2}minimized to (\d+) ops → (.*)$/m.exec(
        r.stdout,
      );
    assert.ok(m, r.stdout);
    const [, invariant, seed, , nops, file] = m;
    assert.match(
      r.stdout,
      /^model-based fuzzing \(seed 1, linux-6\.18, mutants punch_no_zap\): \d+ traces, \d+ ops in .*, 1 violation\(s\)$/m,
    );
    const files = readdirSync(dir);
    assert.deepEqual(files, [`violation-${invariant}-seed${seed}.jsonl`]);
    assert.equal(file, join(dir, files[0]!));
    const text = readFileSync(file!, 'utf8');
    assert.match(text, new RegExp(`^# invariant ${invariant} breaks after the last op: `, 'm'));
    assert.equal(outLines(text).filter((l) => !l.startsWith('#')).length, Number(nops));
    // The reproduce line in the file is a working command.
    const repro = /reproduce: gmemlab (.*)$/m.exec(text);
    assert.ok(repro);
    assert.equal(repro[1], `check --kernel linux-6.18 --mutant punch_no_zap ${file}`);
    const c = gmemlab(['check', '--kernel', 'linux-6.18', '--mutant', 'punch_no_zap', file!], tmp);
    expectStatus(c, 1, 'check the violation on the mutant');
    assert.match(c.stdout, new RegExp(`: VIOLATION ${invariant}: `));
    const ok = gmemlab(['check', file!], tmp);
    expectStatus(ok, 0, 'check the violation on the faithful model');
    assert.match(ok.stdout, /no violation/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab fuzz --differential', () => {
  test('--traces 20 --seed 7 --json: no disagreement between the model and /dev/kvm', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const dir = join(tmp, 'diff-out');
    const r = gmemlab([
      'fuzz',
      '--differential',
      '--traces',
      '20',
      '--seed',
      '7',
      '--json',
      '--out',
      dir,
    ]);
    expectStatus(r, 0, 'fuzz --differential');
    assert.equal(r.stderr, '');
    const s = JSON.parse(r.stdout) as {
      seed: number;
      kernel: string;
      traces: number;
      ops: number;
      refused: number;
      disagreements: unknown[];
    };
    assert.equal(s.seed, 7);
    assert.equal(s.kernel, probeJson().default);
    // Traces are counted whether or not the backend refused them.
    assert.equal(s.traces, 20);
    assert.ok(s.refused >= 0 && s.refused <= 20);
    assert.ok(s.ops > 0 && s.ops <= 20 * 60, `${s.ops} ops`);
    assert.deepEqual(s.disagreements, []);
    assert.throws(() => readdirSync(dir), /ENOENT/, 'nothing written without a disagreement');
    // Text mode prints the summary line.
    const q = gmemlab(['fuzz', '--differential', '--traces', '3', '--quiet', '--out', dir]);
    expectStatus(q, 0, 'fuzz --differential --quiet');
    assert.match(
      q.stdout,
      new RegExp(
        `^differential fuzzing \\(seed 1, model ${s.kernel.replace(/[.+]/g, '\\$&')} vs /dev/kvm\\): 3 traces, \\d+ ops, 0 disagreement\\(s\\)\\n$`,
      ),
    );
    // --trace-ops sets the length of each generated trace.
    const short = gmemlab([
      'fuzz',
      '--differential',
      '--traces',
      '4',
      '--trace-ops',
      '5',
      '--json',
      '--out',
      dir,
    ]);
    expectStatus(short, 0, 'fuzz --differential --trace-ops 5');
    const ss = JSON.parse(short.stdout) as { traces: number; ops: number };
    assert.equal(ss.traces, 4);
    assert.ok(ss.ops > 0 && ss.ops <= 4 * 5, `${ss.ops} ops for 4 traces of 5`);
  });

  test('without /dev/kvm: exit 2', (t) => {
    const reason = kvmUnavailable();
    if (reason === undefined) {
      t.skip('/dev/kvm is usable on this machine; the unavailable path runs where it is not');
      return;
    }
    const r = gmemlab(['fuzz', '--differential', '--traces', '1']);
    expectStatus(r, 2, 'fuzz --differential without kvm');
    assert.match(r.stderr, /kvm backend unavailable/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab probe and diff (real /dev/kvm)', () => {
  test('probe --json and probe --profile agree', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      const r = gmemlab(['probe']);
      expectStatus(r, 2, 'probe without kvm');
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const f = probeJson();
    assert.equal(f.kernel, release());
    // Capabilities carry their names.
    assert.equal(f.caps.system['KVM_CAP_USER_MEMORY'], f.systemCaps[3]);
    assert.equal(f.caps.vm['KVM_CAP_NR_MEMSLOTS'], f.vmCaps[10]);
    assert.equal(f.systemCaps.length, 261);
    assert.equal(f.vmCaps.length, 261);
    assert.equal(f.vmTypes['0'], 'ok');
    assert.equal(f.vcpuRuns, 'HLT');
    const p = gmemlab(['probe', '--profile']);
    expectStatus(p, 0, 'probe --profile');
    assert.equal(p.stdout, `${f.profile}\n`);
    // A PVM kernel (only the DEFAULT VM type, no memory attributes) is linux-6.18-pvm, or
    // linux-6.18-pvm-nogmem when built without guest_memfd.
    if (f.vmTypes['1'] !== 'ok' && f.memoryAttributes === 'ENOTTY')
      assert.equal(
        f.profile,
        f.gmemFlags['0'] === 'ENOTTY' ? 'linux-6.18-pvm-nogmem' : 'linux-6.18-pvm',
      );
    else assert.ok(f.profile === null || profileNames().includes(f.profile));
    // The default profile of every command is the matching one, with this host's facts when
    // they differ from the profile's.
    if (f.profile !== null)
      assert.equal(f.default, f.hostDifferences.length === 0 ? f.profile : `${f.profile}+host`);
    const text = gmemlab(['probe']);
    expectStatus(text, 0, 'probe');
    assert.match(
      text.stdout,
      new RegExp(
        `^kernel {12}${release().replace(/\./g, '\\.')}\\nmatching profile  ${f.profile ?? 'none'}\\n`,
      ),
    );
  });

  test('probe --save FILE writes this kernel as a profile file that every --kernel takes', (t) => {
    const reason = kvmUnavailable();
    const file = join(tmp, 'probe', 'here.json');
    mkdirSync(dirname(file), { recursive: true });
    if (reason !== undefined) {
      expectStatus(gmemlab(['probe', '--save', file]), 2, 'probe --save without kvm');
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const w = gmemlab(['probe', '--save', file, '--name', 'here']);
    expectStatus(w, 0, 'probe --save');
    assert.match(w.stdout, /^wrote profile here \(Linux \S+\) to /);
    const doc = JSON.parse(readFileSync(file, 'utf8')) as {
      name: string;
      facts: { release: string; caps: { system: Record<string, number> } };
    };
    assert.equal(doc.name, 'here');
    assert.equal(doc.facts.release, release());
    assert.equal(doc.facts.caps.system['KVM_CAP_USER_MEMORY'], 1);
    // The saved profile replays a conformance case exactly as this kernel does.
    const c = 'conformance/fallocate/modes.jsonl';
    const m = gmemlab(['replay', '--kernel', file, c]);
    expectStatus(m, 0, 'replay --kernel FILE');
    const k = gmemlab(['replay', '--backend', 'kvm', c]);
    expectStatus(k, 0, 'replay --backend kvm');
    assert.equal(m.stdout, k.stdout);
    const d = gmemlab(['diff', '--kernel', file, '--json', c]);
    expectStatus(d, 0, 'diff --kernel FILE');
    assert.deepEqual(JSON.parse(d.stdout), {
      summary: { traces: 1, disagreements: 0, skipped: 0, kernel: 'here' },
    });
    // A damaged profile file is an input error naming the file and the field.
    const bad = join(tmp, 'probe', 'bad.json');
    writeFileSync(bad, JSON.stringify({ ...doc, facts: { ...doc.facts, mmu: 'ept' } }, null, 2));
    const e = gmemlab(['replay', '--kernel', bad, c]);
    expectStatus(e, 2, 'replay --kernel bad.json');
    assert.equal(e.stderr, `gmemlab replay: ${bad}: facts.mmu: expected one of tdp, shadow\n`);
    assert.equal(e.stdout, '');
  });

  test('diff on conformance cases: no disagreement; --json prints only disagreements', (t) => {
    const reason = kvmUnavailable();
    const cases = [
      'conformance/fallocate/punch_zeroes_mapping.jsonl',
      'conformance/host_access/coherence.jsonl',
      'conformance/fallocate/modes.jsonl',
    ];
    if (reason !== undefined) {
      expectStatus(gmemlab(['diff', ...cases]), 2, 'diff without kvm');
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const r = gmemlab(['diff', ...cases]);
    expectStatus(r, 0, 'diff');
    assert.match(r.stdout, /^no disagreement \(3 trace\(s\), model \S+ vs \/dev\/kvm\)\n$/);
    const j = gmemlab(['diff', '--json', ...cases]);
    expectStatus(j, 0, 'diff --json');
    assert.deepEqual(JSON.parse(j.stdout), {
      summary: { traces: cases.length, disagreements: 0, skipped: 0, kernel: probeJson().default },
    });
  });

  test('diff: a trace whose # needs: this kernel lacks does not apply (exit 0); the others run', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    put('diffneeds/a.jsonl', '# needs: guest_memfd\n{"op":"KVM_CHECK_EXTENSION","cap":1}\n');
    put('diffneeds/b.jsonl', '{"op":"KVM_CHECK_EXTENSION","cap":1}\n');
    const j = gmemlab(['diff', '--json', 'diffneeds'], tmp);
    expectStatus(j, 0, 'diff with a trace that needs guest_memfd');
    const has = probeJson().gmemFlags['0'] !== 'ENOTTY';
    assert.deepEqual(
      jsonLines(j.stdout),
      has
        ? [{ summary: { traces: 2, disagreements: 0, skipped: 0, kernel: probeJson().default } }]
        : [
            {
              file: 'diffneeds/a.jsonl',
              inapplicable:
                'diffneeds/a.jsonl:1: needs guest_memfd (KVM_CREATE_GUEST_MEMFD exists (CONFIG_KVM_GUEST_MEMFD)), which this machine lacks; the trace was not run',
            },
            {
              summary: {
                traces: 2,
                disagreements: 0,
                skipped: 0,
                inapplicable: 1,
                kernel: probeJson().default,
              },
            },
          ],
    );
    // An unknown fact is a malformed trace, for every command.
    put('diffneeds2/c.jsonl', '# Needs : gmem\n{"op":"KVM_CHECK_EXTENSION","cap":1}\n');
    const r = gmemlab(['replay', 'diffneeds2/c.jsonl'], tmp);
    expectStatus(r, 2, 'replay with an unknown fact');
    assert.match(r.stderr, /diffneeds2\/c\.jsonl:1: needs: unknown fact "gmem"/);
  });

  test('run --backend kvm checks every scenario before the first runs', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const a = put('runpre/a.yaml', 'name: a\nsteps:\n  - do: KVM_CREATE_VM\n    as: vm\n');
    const b = put(
      'runpre/b.yaml',
      'name: b\nsteps:\n  - do: munmap\n    addr: 0x10000\n    length: 0x7ffe00000000\n',
    );
    const r = gmemlab(['run', '--backend', 'kvm', a, b], tmp);
    expectStatus(r, 2, 'run with a refused second scenario');
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /runpre\/b\.yaml:3: munmap: the real backend refuses this op/);
  });

  test('diff skips a trace that cannot run, runs the others, and exits 2', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const bad = put(
      'diffskip/a_bad.jsonl',
      '{"op":"KVM_CHECK_EXTENSION","cap":1}\n{"op":"nope"}\n',
    );
    put('diffskip/b_good.jsonl', '{"op":"KVM_CHECK_EXTENSION","cap":1}\n');
    const j = gmemlab(['diff', '--json', 'diffskip'], tmp);
    expectStatus(j, 2, 'diff --json with a malformed trace');
    assert.deepEqual(jsonLines(j.stdout), [
      { file: bad, error: `${bad}:2: op: unknown op "nope"` },
      { summary: { traces: 2, disagreements: 0, skipped: 1, kernel: probeJson().default } },
    ]);
    const r = gmemlab(['diff', 'diffskip'], tmp);
    expectStatus(r, 2, 'diff with a malformed trace');
    assert.match(r.stderr, /skipped diffskip\/a_bad\.jsonl:2: op: unknown op "nope"/);
    assert.match(
      r.stdout,
      /^no disagreement \(2 trace\(s\), 1 skipped, model \S+ vs \/dev\/kvm\)$/m,
    );
  });

  test('diff against the wrong profile reports each disagreement', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const p = gmemlab(['probe', '--profile']);
    if (p.stdout !== 'linux-6.18-pvm\n') {
      t.skip(`this kernel matches ${p.stdout.trim() || 'no profile'}, not linux-6.18-pvm`);
      return;
    }
    // linux-6.18 offers SW_PROTECTED VMs (type 1); the PVM kernel does not.
    const f = put('diff/short.jsonl', SHORT_TRACE);
    const j = gmemlab(['diff', '--kernel', 'linux-6.18', '--json', f], tmp);
    expectStatus(j, 1, 'diff --kernel linux-6.18 --json');
    assert.deepEqual(jsonLines(j.stdout), [
      {
        file: f,
        line: 12,
        op: 'KVM_CREATE_VM',
        model: { ok: true },
        kernel: { ok: false, errno: 'EINVAL' },
      },
      { summary: { traces: 1, disagreements: 1, skipped: 0, kernel: 'linux-6.18' } },
    ]);
    const r = gmemlab(['diff', '--kernel', 'linux-6.18', f], tmp);
    expectStatus(r, 1, 'diff --kernel linux-6.18');
    assert.match(
      r.stdout,
      /^diff\/short\.jsonl:12: KVM_CREATE_VM\n {2}trace: {2}\{"op":"KVM_CREATE_VM","fd":"kvm","type":1,"as":"pvm"\}\n {2}model: {2}\{"ok":true\} {3}\(model:linux-6\.18\)\n {2}kernel: \{"ok":false,"errno":"EINVAL"\}\n/,
    );
    assert.match(
      r.stdout,
      /^1 disagreement\(s\) \(1 trace\(s\), model linux-6\.18 vs \/dev\/kvm\)$/m,
    );
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab conformance', () => {
  const CASE = 'conformance/fallocate/punch_zeroes_mapping';
  const caseOps = (): string[] => outLines(readFileSync(join(ROOT, `${CASE}.jsonl`), 'utf8'));
  /** The case's recordings: the reference profile's and linux-6.18-pvm-nogmem's. */
  const RECORDINGS = ['.expected.jsonl', '.linux-6.18-pvm-nogmem.expected.jsonl'];

  /** A suite under dir/conformance: the case as is, plus `extra` files. */
  function suite(dir: string, extra: Record<string, string> = {}): string {
    const root = join(tmp, dir);
    mkdirSync(join(root, 'conformance', 'fallocate'), { recursive: true });
    for (const ext of ['.jsonl', ...RECORDINGS])
      copyFileSync(join(ROOT, CASE + ext), join(root, CASE + ext));
    for (const [rel, text] of Object.entries(extra)) {
      mkdirSync(dirname(join(root, rel)), { recursive: true });
      writeFileSync(join(root, rel), text);
    }
    return root;
  }

  test('a copied case agrees (default path conformance/, --verbose)', () => {
    const root = suite('conf-ok');
    const r = gmemlab(['conformance', '--verbose'], root);
    expectStatus(r, 0, 'conformance');
    assert.equal(
      r.stdout,
      [
        'ok    fallocate/punch_zeroes_mapping (linux-6.18-pvm)',
        'ok    fallocate/punch_zeroes_mapping (linux-6.18-pvm-nogmem)',
        "2 comparison(s) on the model of each recording's profile: 2 agree, 0 disagree",
        '',
      ].join('\n'),
    );
    // --kernel compares one profile with the recordings that apply to it.
    const k = gmemlab(['conformance', '--kernel', 'linux-6.18-pvm-nogmem'], root);
    expectStatus(k, 0, 'conformance --kernel');
    assert.equal(k.stdout, '1 comparison(s) on model:linux-6.18-pvm-nogmem: 1 agree, 0 disagree\n');
  });

  test('case names are paths below the enclosing conformance/ directory, from any working directory', () => {
    const root = suite('conf-names');
    const r = gmemlab(['conformance', '--verbose', join(root, 'conformance', 'fallocate')], tmp);
    expectStatus(r, 0, 'conformance from elsewhere');
    assert.match(r.stdout, /^ok {4}fallocate\/punch_zeroes_mapping \(linux-6\.18-pvm\)\n/);
    // Outside any conformance/ directory the name is the path from the working directory.
    const loose = join(tmp, 'loose');
    mkdirSync(loose, { recursive: true });
    for (const ext of ['.jsonl', '.expected.jsonl'])
      copyFileSync(join(ROOT, CASE + ext), join(loose, 'case' + ext));
    const l = gmemlab(['conformance', '--verbose', 'loose'], tmp);
    expectStatus(l, 0, 'conformance on a loose directory');
    assert.match(l.stdout, /^ok {4}loose\/case \(linux-6\.18-pvm\)\n/);
  });

  test('a tampered recording: exit 1 naming the case, the op and both results', () => {
    const expected = outLines(readFileSync(join(ROOT, `${CASE}.expected.jsonl`), 'utf8'));
    // Change the first result line that carries a value.
    const k = expected.findIndex((l) => l.includes('"value":"'));
    const results = expected.filter((l) => !l.startsWith('#'));
    const opIndex = results.indexOf(expected[k]!); // 0-based op index
    const real = JSON.parse(expected[k]!) as { value: string };
    const fake = { ok: true, value: real.value === '00000000' ? '00000001' : '00000000' };
    const tampered = [...expected];
    tampered[k] = JSON.stringify(fake);
    // The op's trace line (1-based) and name.
    const all = readFileSync(join(ROOT, `${CASE}.jsonl`), 'utf8').split('\n');
    const opLines = all
      .map((l, i) => [l, i + 1] as const)
      .filter(([l]) => l.trim().startsWith('{'));
    const [opText, opLine] = opLines[opIndex]!;
    const opName = (JSON.parse(opText) as { op: string }).op;
    assert.equal(opLines.length, caseOps().filter((l) => !l.startsWith('#')).length);

    const root = suite('conf-tampered', {
      'conformance/tampered/case.jsonl': all.join('\n'),
      'conformance/tampered/case.expected.jsonl': tampered.join('\n') + '\n',
    });
    const r = gmemlab(['conformance'], root);
    expectStatus(r, 1, 'conformance tampered');
    assert.equal(
      r.stdout,
      [
        'FAIL  tampered/case (recorded on linux-6.18-pvm)',
        `      op ${opIndex + 1} (conformance/tampered/case.jsonl:${opLine}) ${opName}`,
        `        kernel: ${JSON.stringify(fake)}`,
        `        model:linux-6.18-pvm: ${JSON.stringify(real)}`,
        "3 comparison(s) on the model of each recording's profile: 2 agree, 1 disagree",
        '',
      ].join('\n'),
    );
    const j = gmemlab(['conformance', '--json'], root);
    expectStatus(j, 1, 'conformance --json');
    const objs = jsonLines(j.stdout);
    assert.deepEqual(objs, [
      {
        name: 'fallocate/punch_zeroes_mapping',
        profile: 'linux-6.18-pvm',
        ok: true,
        mismatches: [],
      },
      {
        name: 'fallocate/punch_zeroes_mapping',
        profile: 'linux-6.18-pvm-nogmem',
        ok: true,
        mismatches: [],
      },
      {
        name: 'tampered/case',
        profile: 'linux-6.18-pvm',
        ok: false,
        mismatches: [
          { index: opIndex + 1, line: opLine, op: opName, expected: fake, actual: real },
        ],
      },
    ]);
    // A single case file can be named directly.
    const one = gmemlab(['conformance', 'conformance/fallocate/punch_zeroes_mapping.jsonl'], root);
    expectStatus(one, 0, 'conformance one case');
  });

  test('a case without a recording fails; a recording with fewer lines fails', () => {
    const ops = caseOps().join('\n') + '\n';
    const short = outLines(readFileSync(join(ROOT, `${CASE}.expected.jsonl`), 'utf8'))
      .slice(0, -1)
      .join('\n');
    const root = suite('conf-missing', {
      'conformance/new/unrecorded.jsonl': ops,
      'conformance/new/short.jsonl': ops,
      'conformance/new/short.expected.jsonl': short,
    });
    const r = gmemlab(['conformance', 'conformance/new'], root);
    expectStatus(r, 1, 'conformance missing');
    assert.match(
      r.stdout,
      /^FAIL {2}new\/short \(recorded on linux-6\.18-pvm\): recorded \d+ results for \d+ ops \(re-record\)$/m,
    );
    assert.match(
      r.stdout,
      /^FAIL {2}new\/unrecorded: not recorded on any kernel \(run gmemlab conformance --record/m,
    );
    assert.match(
      r.stdout,
      /^1 comparison\(s\) on the model of each recording's profile: 0 agree, 1 disagree, 1 case\(s\) unrecorded$/m,
    );
  });

  test('input errors: a malformed case or recording, a missing path, no cases: exit 2', () => {
    const root = suite('conf-bad', {
      'conformance/bad/trace.jsonl': '{"op":"KVM_CREATE_VM"}\n{"op":"NOPE"}\n',
      'conformance/bad/trace.expected.jsonl': '{"ok":true}\n{"ok":true}\n',
      'conformance/bad2/rec.jsonl': '{"op":"KVM_CREATE_VM"}\n',
      'conformance/bad2/rec.expected.jsonl': '# header\n{"ok":tru\n',
      'empty/README': 'nothing here\n',
    });
    const t1 = gmemlab(['conformance', 'conformance/bad'], root);
    expectStatus(t1, 2, 'malformed case');
    assert.match(t1.stderr, /conformance\/bad\/trace\.jsonl:2: op: unknown op "NOPE"/);
    const t2 = gmemlab(['conformance', 'conformance/bad2'], root);
    expectStatus(t2, 2, 'malformed recording');
    assert.match(
      t2.stderr,
      /^gmemlab conformance: conformance\/bad2\/rec\.expected\.jsonl:2: json: /,
    );
    const t3 = gmemlab(['conformance', 'nowhere'], root);
    expectStatus(t3, 2, 'missing path');
    assert.match(t3.stderr, /nowhere: no such file or directory/);
    const t4 = gmemlab(['conformance', 'empty'], root);
    expectStatus(t4, 2, 'no cases');
    assert.match(t4.stderr, /no conformance cases found/);
  });

  test('--record runs only on the real kernel', () => {
    const root = suite('conf-rec-model');
    const r = gmemlab(['conformance', '--record', '--backend', 'model'], root);
    expectStatus(r, 2, 'record on the model');
    assert.match(r.stderr, /--record records the real kernel: it takes no --backend model/);
    const k = gmemlab(['conformance', '--record', '--kernel', 'linux-6.18'], root);
    expectStatus(k, 2, 'record with --kernel');
  });

  test("--record writes all of a run or none, and keeps other profiles' recordings", (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const p = probeJson().profile;
    if (p === null) {
      t.skip('this kernel matches no profile: --record refuses it (checked by the next lines)');
      const r = gmemlab(['conformance', '--record'], suite('conf-rec-none'));
      expectStatus(r, 2, 'record without a profile');
      return;
    }
    const ops = '{"op":"KVM_CHECK_EXTENSION","cap":3}\n';
    // A case the backend refuses (a munmap over the whole lower address space) after a good one.
    const root = suite('conf-rec', {
      'conformance/rec/a_good.jsonl': ops,
      'conformance/rec/b_refused.jsonl': `${ops}{"op":"munmap","addr":"0x10000","length":"0x7ffe00000000"}\n`,
    });
    const before = readdirSync(join(root, 'conformance', 'rec')).sort();
    const r = gmemlab(['conformance', '--record', 'conformance/rec'], root);
    expectStatus(r, 2, 'record with a refused case');
    assert.match(
      r.stderr,
      /conformance\/rec\/b_refused\.jsonl:2: munmap: the real backend refuses this op .*; nothing was recorded/,
    );
    assert.deepEqual(readdirSync(join(root, 'conformance', 'rec')).sort(), before);
    // Without the refused case both files of the run are written.
    rmSync(join(root, 'conformance', 'rec', 'b_refused.jsonl'));
    const ok = gmemlab(['conformance', '--record', 'conformance/rec'], root);
    expectStatus(ok, 0, 'record');
    const target = join(
      root,
      'conformance',
      'rec',
      p === 'linux-6.18-pvm' ? 'a_good.expected.jsonl' : `a_good.${p}.expected.jsonl`,
    );
    assert.match(
      readFileSync(target, 'utf8'),
      new RegExp(
        `^# recorded on Linux ${release().replace(/\./g, '\\.')} /dev/kvm \\(profile ${p.replace(/\./g, '\\.')}\\) `,
      ),
    );
    // A file of this profile's name whose header names another profile is not overwritten
    // unless --force says so.
    const other = p === 'linux-6.18-pvm' ? 'linux-6.18-pvm-nogmem' : 'linux-6.18-pvm';
    const foreign = `# recorded on Linux x /dev/kvm (profile ${other}) by gmemlab conformance --record; do not edit\n{"ok":true,"value":1}\n`;
    writeFileSync(target, foreign);
    const no = gmemlab(['conformance', '--record', 'conformance/rec'], root);
    expectStatus(no, 2, 'record over another profile');
    assert.match(
      no.stderr,
      new RegExp(
        `recorded on profile ${other.replace(/\./g, '\\.')}, this kernel is ${p.replace(/\./g, '\\.')}; not overwriting it \\(--force to overwrite\\)`,
      ),
    );
    assert.equal(readFileSync(target, 'utf8'), foreign);
    const yes = gmemlab(['conformance', '--record', '--force', 'conformance/rec'], root);
    expectStatus(yes, 0, 'record --force');
    assert.notEqual(readFileSync(target, 'utf8'), foreign);
  });

  test('--record takes each case once however the paths overlap', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined || probeJson().profile === null) {
      t.skip(reason !== undefined ? `real /dev/kvm unavailable: ${reason}` : 'no profile matches');
      return;
    }
    const root = suite('conf-rec-dup', {
      'conformance/dup/a.jsonl': '{"op":"KVM_CHECK_EXTENSION","cap":3}\n',
    });
    const r = gmemlab(
      [
        'conformance',
        '--record',
        'conformance/dup/a.jsonl',
        'conformance/dup/a.jsonl',
        'conformance',
      ],
      root,
    );
    expectStatus(r, 0, 'record with overlapping paths');
    assert.match(r.stdout, /^2 recording\(s\) written for /m);
    assert.deepEqual(
      readdirSync(join(root, 'conformance', 'dup')).filter((n) => n.includes('.tmp-')),
      [],
    );
  });

  test('--backend kvm: a refused case stops the run before any result (exit 2)', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const ok = '{"op":"KVM_CHECK_EXTENSION","cap":3}\n';
    const rec = (p: string): string =>
      `# recorded on Linux x /dev/kvm (profile ${p}) by gmemlab conformance --record; do not edit\n{"ok":true,"value":1}\n`;
    const root = suite('conf-kvm-refused', {
      'conformance/x/a.jsonl': ok,
      'conformance/x/a.expected.jsonl': rec('linux-6.18-pvm'),
      'conformance/x/b.jsonl': `${ok}{"op":"munmap","addr":"0x10000","length":"0x7ffe00000000"}\n`,
      'conformance/x/b.expected.jsonl': rec('linux-6.18-pvm') + '{"ok":true}\n',
    });
    const r = gmemlab(['conformance', '--backend', 'kvm', '--verbose', 'conformance/x'], root);
    expectStatus(r, 2, 'conformance --backend kvm with a refused case');
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /conformance\/x\/b\.jsonl:2: munmap: the real backend refuses this op/);
  });

  test('--backend kvm: this kernel still agrees with the recording', (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const root = suite('conf-kvm');
    const r = gmemlab(['conformance', '--backend', 'kvm'], root);
    expectStatus(r, 0, 'conformance --backend kvm');
    const p = probeJson().profile;
    if (p === 'linux-6.18-pvm' || p === 'linux-6.18-pvm-nogmem')
      assert.match(
        r.stdout,
        new RegExp(
          `^1 comparison\\(s\\) on /dev/kvm \\(Linux \\S+, ${p.replace(/\./g, '\\.')}\\): 1 agree, 0 disagree\n$`,
        ),
      );
    else assert.match(r.stdout, /skipped 1 case\(s\): /);
  });
});
