/**
 * `gmemlab inspect`, run as a user runs it (a child process, the default profile pinned to
 * linux-6.18): the text map of examples/demo.yaml at its end and after op 5, the snapshot as
 * JSON, the SVG picture, the folio orders and per-file attributes of a HugeTLB guest_memfd with
 * in-place conversion (linux-next-gmem), and the usage and write errors (exit 2, no stack trace).
 */
import { describe, test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';

/** dist/tests/cli/ → the repository root. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = join(ROOT, 'dist/src/cli/main.js');
const DEMO = 'examples/demo.yaml';
const HUGETLB = 'examples/next-gmem/hugetlb_1g_convert.yaml';

type Run = { readonly status: number | null; readonly stdout: string; readonly stderr: string };

function gmemlab(args: readonly string[]): Run {
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  delete env['FORCE_COLOR'];
  env['GMEMLAB_KERNEL'] = 'linux-6.18';
  env['LC_ALL'] = 'C.UTF-8';
  const r = spawnSync(process.execPath, [MAIN, 'inspect', ...args], {
    cwd: ROOT,
    env,
    encoding: 'utf8',
    timeout: 60_000,
  });
  if (r.error !== undefined) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function expectStatus(r: Run, status: number, what: string): void {
  assert.equal(r.status, status, `${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
}

/** Every element opened is closed, in order (a well-formedness check enough for our SVG). */
function balanced(xml: string): boolean {
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([A-Za-z][\w:-]*)[^>]*?(\/?)>/g)) {
    const [, close, name, self] = m;
    if (self === '/') continue;
    if (close === '/') {
      if (stack.pop() !== name) return false;
    } else stack.push(name!);
  }
  return stack.length === 0;
}

const tmp = mkdtempSync(join(tmpdir(), 'gmemlab-inspect-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

describe('gmemlab inspect', () => {
  test('--help: its usage, exit 0', () => {
    const r = gmemlab(['--help']);
    expectStatus(r, 0, '--help');
    assert.ok(r.stdout.startsWith('usage: gmemlab inspect'), r.stdout);
    assert.match(r.stdout, /Exit codes:/);
  });

  test('examples/demo.yaml at its end: the memslot points at a released guest_memfd', () => {
    const r = gmemlab([DEMO]);
    expectStatus(r, 0, 'inspect demo');
    assert.equal(r.stderr, '');
    const lines = r.stdout.split('\n');
    assert.match(lines[0]!, /^# examples\/demo\.yaml after op (\d+) of \1 \(linux-6\.18\)$/);
    assert.equal(lines[1], 'vm (vm0): SW_PROTECTED, 3 references, vCPU 0, pre-fault allowed');
    assert.ok(
      lines.includes(
        '    0x80000000-0x80200000 (2 MiB)  slot 0  shared backing ua=0x400000000000 | guest_memfd (released)@0x0',
      ),
      r.stdout,
    );
    assert.ok(
      lines.includes(
        '      0x80000000-0x80200000 (2 MiB)  private  no backing: allocated 0, mapped 0',
      ),
      r.stdout,
    );
    assert.match(r.stdout, /^host VMAs:$/m);
    assert.match(
      r.stdout,
      /^ {2}0x400000000000-0x400000200000 \(2 MiB\) {2}rw-s {2}shmem #1@0x0$/m,
    );
    assert.match(
      r.stdout,
      /^host pages: \d+ anonymous, \d+ shmem; frames: \d+ allocated, \d+ free$/m,
    );
  });

  test('--at 5: the state after the fifth op (a VM, a guest_memfd, the shared mapping)', () => {
    const r = gmemlab(['--at', '5', DEMO]);
    expectStatus(r, 0, '--at 5');
    assert.equal(
      r.stdout,
      [
        '# examples/demo.yaml after op 5 of 28 (linux-6.18)',
        'vm (vm0): SW_PROTECTED, 2 references, no vCPU, pre-fault allowed',
        '  address space 0: 0 memslots, 0 pages mapped at stage 2',
        'guest_memfd files:',
        '  gmem (guest_memfd #105): 2 MiB, flags 0, vm (vm0), 1 fd, 0 pages mapped by VMAs; 0 present (0 allocated, 0 prepared, 0 poisoned)',
        'host VMAs:',
        '  0x400000000000-0x400000200000 (2 MiB)  rw-s  shmem #1@0x0',
        'host pages: 0 anonymous, 0 shmem; frames: 1 allocated, 0 free',
        '',
      ].join('\n'),
    );
  });

  test('--json: one JSON object, the snapshot', () => {
    const r = gmemlab(['--json', '--at', '12', DEMO]);
    expectStatus(r, 0, '--json');
    assert.equal(r.stdout.trim().split('\n').length, 1);
    const s = JSON.parse(r.stdout) as {
      profile: string;
      vms: Array<{ addressSpaces: Array<{ stage2: Array<{ level: string; private: boolean }> }> }>;
      gmemFiles: Array<{ counts: { prepared: number } }>;
    };
    assert.equal(s.profile, 'linux-6.18');
    assert.deepEqual(
      s.vms[0]!.addressSpaces[0]!.stage2.map((m) => [m.level, m.private]),
      [['4K', true]],
    );
    assert.equal(s.gmemFiles[0]!.counts.prepared, 1);
  });

  test('--svg FILE: an SVG picture with balanced tags, a band per address space and a legend', () => {
    const f = join(tmp, 'map.svg');
    const r = gmemlab(['--svg', f, '--at', '20', DEMO]);
    expectStatus(r, 0, '--svg');
    const svg = readFileSync(f, 'utf8');
    assert.ok(svg.startsWith('<svg'), svg.slice(0, 100));
    assert.ok(balanced(svg), 'balanced tags');
    assert.match(svg, /address space 0/);
    assert.match(svg, /vm \(vm0\)/);
    assert.match(svg, /stage-2 mapped pages/);
    assert.match(svg, /fill="#c0392b"/, 'a private run');
  });

  test('a HugeTLB guest_memfd: folio orders and the file attributes per index, split and merged', () => {
    const file = (at: string): string[] => {
      const r = gmemlab(['--at', at, HUGETLB]);
      expectStatus(r, 0, `inspect --at ${at}`);
      const lines = r.stdout.split('\n');
      return lines.slice(lines.indexOf('guest_memfd files:'), lines.indexOf('host VMAs:'));
    };
    const header =
      '  gmem (guest_memfd #106): 1 GiB, flags 9, page order 18, vm (vm0), 1 fd, 262144 pages mapped by VMAs; 262144 present (0 allocated, 262144 prepared, 0 poisoned)';
    const whole = [
      'guest_memfd files:',
      header,
      '    index 0x0-0x40000 bound to slot 1',
      '    index 0x0-0x40000 prepared',
      '    index 0x0-0x40000 1 folio of order 18 (1 GiB)',
      '    index 0x0-0x40000 attribute private',
    ];
    // The guest touched its memory: one 1G folio, all private.
    assert.deepEqual(file('8'), whole);
    // One page converted to shared (KVM_SET_MEMORY_ATTRIBUTES2): the folio split to 4K.
    assert.deepEqual(file('13'), [
      'guest_memfd files:',
      header,
      '    index 0x0-0x40000 bound to slot 1',
      '    index 0x0-0x40000 prepared',
      '    index 0x0-0x40000 262144 folios of order 0 (4 KiB each)',
      '    index 0x0-0x1 attribute private',
      '    index 0x1-0x2 attribute shared',
      '    index 0x2-0x40000 attribute private',
    ]);
    // Back to private: merged into one 1G folio again.
    assert.deepEqual(file('16'), whole);
  });

  test('--json: a HugeTLB file has pageOrder, folios and attributes; a 6.18 file has none', () => {
    const r = gmemlab(['--json', '--at', '13', HUGETLB]);
    expectStatus(r, 0, '--json hugetlb');
    const g = (JSON.parse(r.stdout) as { gmemFiles: Array<Record<string, unknown>> }).gmemFiles[0]!;
    assert.equal(g['pageOrder'], 18);
    assert.deepEqual(g['folios'], [{ start: 0, end: 262144, order: 0 }]);
    assert.deepEqual(g['attributes'], [
      { start: 0, end: 1, attributes: 8, private: true },
      { start: 1, end: 2, attributes: 0, private: false },
      { start: 2, end: 262144, attributes: 8, private: true },
    ]);
    const d = gmemlab(['--json', '--at', '12', DEMO]);
    const f = (JSON.parse(d.stdout) as { gmemFiles: Array<Record<string, unknown>> }).gmemFiles[0]!;
    for (const k of ['pageOrder', 'folios', 'attributes']) assert.ok(!(k in f), k);
  });

  test('--svg of a HugeTLB guest: each run names the folio orders behind it', () => {
    const f = join(tmp, 'hugetlb.svg');
    expectStatus(gmemlab(['--svg', f, '--at', '13', HUGETLB]), 0, '--svg hugetlb');
    const svg = readFileSync(f, 'utf8');
    assert.ok(balanced(svg), 'balanced tags');
    assert.match(
      svg,
      /<title>shared 0x40001000-0x40002000 \(4 KiB\): allocated 1, prepared 1, mapped 1, folios of order 0<\/title>/,
    );
    const g = join(tmp, 'hugetlb16.svg');
    expectStatus(gmemlab(['--svg', g, '--at', '16', HUGETLB]), 0, '--svg hugetlb 16');
    assert.match(readFileSync(g, 'utf8'), /mapped \d+, folios of order 18<\/title>/);
  });

  test('--at 999: out of range, a usage error (exit 2)', () => {
    const r = gmemlab(['--at', '999', DEMO]);
    expectStatus(r, 2, '--at 999');
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /--at expects an integer 0\.\.28, got 999/);
  });

  test('--svg /dev/null/x: cannot be written, exit 2 with the path and errno, no stack', () => {
    const r = gmemlab(['--svg', '/dev/null/x', DEMO]);
    expectStatus(r, 2, 'unwritable --svg');
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /\/dev\/null\/x: cannot write the file \(ENOTDIR\)/);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  });

  test('no file, two files, a missing file: exit 2', () => {
    expectStatus(gmemlab([]), 2, 'no file');
    expectStatus(gmemlab([DEMO, DEMO]), 2, 'two files');
    const r = gmemlab(['examples/no-such-file.yaml']);
    expectStatus(r, 2, 'missing file');
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});
