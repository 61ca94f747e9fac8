/**
 * Output formats of the CLI (src/cli/output.ts), run as a user runs it: the piped default of
 * replay is the contract's JSON, byte for byte; --format text is strace-style text; colour follows
 * NO_COLOR / FORCE_COLOR; a non-UTF-8 locale gives pure ASCII; short options; check's count line
 * and the op it names for a violation; run --json's change records.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = join(ROOT, 'dist/src/cli/main.js');

type Run = { readonly status: number | null; readonly stdout: string; readonly stderr: string };

/** Run gmemlab on the linux-6.18 model, in a UTF-8 locale without colour unless `env` says. */
function gmemlab(args: readonly string[], env: Record<string, string | undefined> = {}): Run {
  const e: Record<string, string | undefined> = { ...process.env };
  delete e['NODE_TEST_CONTEXT'];
  delete e['NO_COLOR'];
  delete e['FORCE_COLOR'];
  delete e['LC_CTYPE'];
  e['LC_ALL'] = 'C.UTF-8';
  e['GMEMLAB_KERNEL'] = 'linux-6.18';
  for (const [k, v] of Object.entries(env)) {
    if (v === undefined) delete e[k];
    else e[k] = v;
  }
  const r = spawnSync(process.execPath, [MAIN, ...args], {
    cwd: ROOT,
    env: e,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectStatus(r: Run, status: number, what: string): void {
  assert.equal(r.status, status, `${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
}

const nonAscii = (s: string): string[] => [...s].filter((c) => c.codePointAt(0)! > 0x7e);

const TRACE = [
  '# a VM, a guest_memfd mapped shared, data through the mapping, a fault past EOF',
  '{"op":"KVM_CREATE_VM","type":0,"as":"vm4"}',
  '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm4","size":8192,"flags":3,"as":"gmem"}',
  '{"op":"mmap","fd":"gmem","length":16384,"prot":3,"flags":1,"offset":0,"as":"shared"}',
  '{"op":"poke","addr":"shared+0x1000","hex":"deadbeef"}',
  '{"op":"peek","addr":"shared+0x1000","len":4}',
  '{"op":"peek","addr":"shared+0x2000","len":4}',
  '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm4","size":100,"flags":0,"as":"bad"}',
  '{"op":"fstat","fd":"gmem"}',
].join('\n');

let tmp = '';
let trace = '';
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'gmemlab-output-'));
  trace = join(tmp, 't.jsonl');
  writeFileSync(trace, TRACE + '\n');
});
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('replay formats', () => {
  test('piped, the default is the JSON result lines, identical to --format json and --json', () => {
    const d = gmemlab(['replay', trace]);
    expectStatus(d, 0, 'replay');
    assert.equal(d.stdout.split('\n')[0], '{"ok":true}');
    for (const alt of [['--format', 'json'], ['--format=json'], ['--json'], ['-j']]) {
      const r = gmemlab(['replay', ...alt, trace]);
      expectStatus(r, 0, `replay ${alt.join(' ')}`);
      assert.equal(r.stdout, d.stdout, alt.join(' '));
    }
    // -v is --verbose, in JSON as before.
    const v = gmemlab(['replay', '-v', trace]);
    assert.equal(v.stdout, gmemlab(['replay', '--verbose', trace]).stdout);
    assert.match(v.stdout, /^# .*t\.jsonl:2 \{"op":"KVM_CREATE_VM"/);
  });

  test('--format text: one strace-style line per op, the file’s handle names, errnos, faults', () => {
    const r = gmemlab(['replay', '--format', 'text', trace]);
    expectStatus(r, 0, 'replay --format text');
    const lines = r.stdout.trimEnd().split('\n');
    assert.match(lines[0]!, /^# .*t\.jsonl$/);
    assert.deepEqual(lines.slice(1), [
      '   2  KVM_CREATE_VM(kvm, type=DEFAULT) = vm4',
      '   3  KVM_CREATE_GUEST_MEMFD(vm4, size=8 KiB, flags=MMAP|INIT_SHARED) = gmem',
      '   4  mmap(NULL, 0x4000 (16 KiB), PROT_READ|PROT_WRITE, MAP_SHARED, gmem, 0) = shared @ 0x400000000000',
      '   5  poke(shared+0x1000, "deadbeef") = 0',
      '   6  peek(shared+0x1000, 4) = "deadbeef"',
      '   7  peek(shared+0x2000, 4) = SIGBUS',
      '   8  KVM_CREATE_GUEST_MEMFD(vm4, size=100, flags=0) = -1 EINVAL',
      '   9  fstat(gmem) = 0  {size=8 KiB, blocks=0}',
    ]);
    assert.ok(!r.stdout.includes('\x1b'), 'no colour when piped');
  });

  test('colour: FORCE_COLOR forces it when piped, NO_COLOR (any non-empty value) wins', () => {
    const forced = gmemlab(['replay', '--format', 'text', trace], { FORCE_COLOR: '1' });
    assert.match(forced.stdout, /\x1b\[31m= SIGBUS/);
    assert.match(forced.stdout, /\x1b\[32m= vm4/);
    const no = gmemlab(['replay', '--format', 'text', trace], { FORCE_COLOR: '1', NO_COLOR: 'x' });
    assert.ok(!no.stdout.includes('\x1b'));
    const json = gmemlab(['replay', trace], { FORCE_COLOR: '1' });
    assert.ok(!json.stdout.includes('\x1b'), 'JSON is never coloured');
  });

  test('bad format options are usage errors (exit 2)', () => {
    expectStatus(gmemlab(['replay', '--format', 'yaml', trace]), 2, '--format yaml');
    expectStatus(gmemlab(['replay', '--json', '--format', 'text', trace]), 2, 'contradiction');
  });
});

describe('ASCII when the locale is not UTF-8', () => {
  for (const env of [{ LC_ALL: 'C' }, { LC_ALL: undefined, LANG: undefined }, { LC_ALL: 'POSIX' }])
    test(`run, replay and check print no character above 0x7e (${JSON.stringify(env)})`, () => {
      const runs = [
        gmemlab(['run', 'examples/demo.yaml'], env),
        gmemlab(['replay', '--format', 'text', trace], env),
        gmemlab(['replay', '--format', 'text', '-v', trace], env),
        gmemlab(['check', '--mutant', 'punch_no_zap', 'examples/demo.yaml'], env),
        gmemlab(['check', '--list'], env),
      ];
      for (const r of runs) {
        assert.ok(r.stdout.length > 0);
        assert.deepEqual(nonAscii(r.stdout), []);
      }
      assert.match(runs[0]!.stdout, /^\+ {2}1 {2}KVM_CREATE_VM/m);
      assert.match(runs[0]!.stdout, /^-- A VM that can have private memory --$/m);
    });

  test('LC_ALL wins over LANG; LC_CTYPE over LANG', () => {
    assert.deepEqual(
      nonAscii(gmemlab(['run', 'examples/demo.yaml'], { LC_ALL: 'C', LANG: 'en_US.UTF-8' }).stdout),
      [],
    );
    const utf = gmemlab(['run', 'examples/demo.yaml'], {
      LC_ALL: undefined,
      LC_CTYPE: 'en_US.utf8',
      LANG: 'C',
    });
    assert.match(utf.stdout, /^✓ {2}1 /m);
  });
});

describe('short options', () => {
  test('-q is --quiet, -v is --verbose; an unknown short option is exit 2; - stays a file name', () => {
    const q = gmemlab(['run', '-q', 'examples/demo.yaml']);
    expectStatus(q, 0, 'run -q');
    assert.equal(q.stdout, gmemlab(['run', '--quiet', 'examples/demo.yaml']).stdout);
    const x = gmemlab(['replay', '-x', trace]);
    expectStatus(x, 2, 'replay -x');
    assert.match(x.stderr, /unknown option -x/);
    // -q where the command has no --quiet is an unknown option, not a file name.
    const rq = gmemlab(['replay', '-q', trace]);
    expectStatus(rq, 2, 'replay -q');
    assert.match(rq.stderr, /unknown option -q/);
    const dash = gmemlab(['replay', '-']);
    assert.ok(!dash.stderr.includes('unknown option'), dash.stderr);
  });
});

describe('check', () => {
  test('a violation is named at the op that caused it, once (not again at the next op)', () => {
    const r = gmemlab(['check', '--json', '--mutant', 'punch_no_zap', 'examples/demo.yaml']);
    expectStatus(r, 1, 'check --json');
    const [file, summary] = r.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l)) as [
      { violations: Array<{ op: number; line: number; invariant: string; described: string }> },
      { summary: Record<string, number> },
    ];
    // The punch (op 25, line 193) breaks stage2-coherent; the run after it (line 200) does not
    // break it again, it only reads the stale page (zero-before-use).
    const stage2 = file.violations.filter((v) => v.invariant === 'stage2-coherent');
    assert.deepEqual(
      stage2.map((v) => [v.op, v.line]),
      [[25, 193]],
    );
    assert.deepEqual(
      file.violations.filter((v) => v.line === 200).map((v) => v.invariant),
      ['zero-before-use'],
    );
    assert.match(
      stage2[0]!.described,
      /^vm \(vm0\) gfn 0x80001: mapping of gmem \(guest_memfd #\d+\)/,
    );
    assert.deepEqual(summary, {
      summary: { files: 1, ops: 28, violations: 3, files_with_violations: 1 },
    });
  });

  test('text: handle names, the call in strace style, and a count line at the end', () => {
    const r = gmemlab(['check', '--mutant', 'punch_no_zap', 'examples/demo.yaml', trace]);
    expectStatus(r, 1, 'check');
    assert.match(r.stdout, /^examples\/demo\.yaml:193: VIOLATION stage2-coherent: vm \(vm0\) gfn/m);
    assert.equal((r.stdout.match(/VIOLATION stage2-coherent/g) ?? []).length, 1);
    assert.match(
      r.stdout,
      /^ {2}call: {3}fallocate\(gmem, FALLOC_FL_KEEP_SIZE\|FALLOC_FL_PUNCH_HOLE, 0x1000, 0x1000 \(4 KiB\)\) = 0$/m,
    );
    assert.match(r.stdout, /^ {6}gmem \(guest_memfd #\d+\) index 0x1: prepared/m);
    assert.match(r.stdout, /\n2 files, 36 ops, 3 violations \(1 file with violations\)\n$/);
  });
});

describe('run --json', () => {
  test('what changed is a list of records with the scenario’s handle names', () => {
    const r = gmemlab(['run', '--json', 'examples/demo.yaml']);
    expectStatus(r, 0, 'run --json');
    const o = JSON.parse(r.stdout) as {
      steps: Array<{ line: number; changes: Array<Record<string, unknown>> }>;
    };
    const punch = o.steps.find((s) => s.line === 193)!;
    assert.deepEqual(punch.changes, [
      {
        kind: 'zap',
        vm: 'vm',
        source: 'punch_hole',
        count: 1,
        ranges: [{ start: 0x80001, end: 0x80002 }],
      },
      { kind: 'tlb_flush', vm: 'vm', source: 'punch_hole', count: 1 },
      {
        kind: 'gmem_free',
        gmem: 'gmem',
        via: 'punch_hole',
        count: 1,
        ranges: [{ start: 1, end: 2 }],
      },
    ]);
  });
});
