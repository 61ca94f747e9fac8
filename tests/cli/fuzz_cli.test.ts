/**
 * `gmemlab fuzz` and `gmemlab fuzz --differential` as a user runs them (the built CLI in a child
 * process): SIGINT and SIGTERM stop the run with its summary and a documented exit code, the
 * --time / --ops budgets hold within an op, bad --out folders and out-of-range integers are clean
 * usage errors, and a finding that cannot be written is reported with the summary still
 * printed. The differential variants need a usable /dev/kvm and skip with the reason without one.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { dirname, join, resolve } from 'node:path';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { kvm, skipFor } from '../kvm/helpers.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = join(ROOT, 'dist/src/cli/main.js');

type Run = {
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Milliseconds from the signal (or the start, without one) to the exit. */
  readonly ms: number;
};

/**
 * Run gmemlab; with `signal`, send it `afterMs` after the start. The model's profile is pinned
 * (GMEMLAB_KERNEL) except for --differential, which chooses its default as a user's would.
 */
function gmemlab(
  args: readonly string[],
  o: { signal?: NodeJS.Signals; afterMs?: number; timeoutMs?: number } = {},
): Promise<Run> {
  const env = { ...process.env };
  delete env['NODE_TEST_CONTEXT'];
  if (args.includes('--differential')) delete env['GMEMLAB_KERNEL'];
  else env['GMEMLAB_KERNEL'] = 'linux-6.18';
  return new Promise((res, rej) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    let from = performance.now();
    const timers: NodeJS.Timeout[] = [];
    if (o.signal !== undefined)
      timers.push(
        setTimeout(() => {
          from = performance.now();
          child.kill(o.signal);
        }, o.afterMs ?? 1500),
      );
    timers.push(setTimeout(() => child.kill('SIGKILL'), o.timeoutMs ?? 60_000));
    child.on('error', rej);
    child.on('close', (status, signal) => {
      for (const t of timers) clearTimeout(t);
      res({ status, signal, stdout, stderr, ms: performance.now() - from });
    });
  });
}

function expectStatus(r: Run, status: number, what: string): void {
  assert.equal(
    r.status,
    status,
    `${what}: exit ${r.status} (signal ${r.signal})\nstdout: ${r.stdout.slice(0, 2000)}\nstderr: ${r.stderr.slice(0, 2000)}`,
  );
}

/** No stack trace in what was printed. */
function noStack(r: Run): void {
  assert.doesNotMatch(r.stderr, /^\s+at /m, r.stderr);
  assert.doesNotMatch(r.stderr, /internal error/, r.stderr);
}

type ModelSummary = {
  ops: number;
  traces: number;
  seconds: number;
  interrupted: boolean;
  signal?: string;
  stoppedBy: string;
  violations: Array<{
    invariant: string;
    seed: number;
    file: string | null;
    writeError?: string;
    shrinkStopped: boolean;
  }>;
  coverage: Record<string, Record<string, number>>;
};

let tmp = '';
before(() => {
  tmp = mkdtempSync(join(tmpdir(), 'gmemlab-fuzz-cli-'));
});
after(() => {
  rmSync(tmp, { recursive: true, force: true });
});

function kvmUnavailable(): string | undefined {
  const b = kvm();
  return 'unavailable' in b ? b.unavailable : undefined;
}

// ---------------------------------------------------------------------------------------------

describe('gmemlab fuzz: SIGINT and SIGTERM', () => {
  test('SIGINT with --json: exit 130 soon after, the JSON summary says interrupted', async () => {
    const out = join(tmp, 'sigint');
    const r = await gmemlab(['fuzz', '--seed', '1', '--time', '30s', '--json', '--out', out], {
      signal: 'SIGINT',
    });
    expectStatus(r, 130, 'fuzz interrupted');
    assert.ok(r.ms < 5000, `summary ${Math.round(r.ms)} ms after SIGINT`);
    const s = JSON.parse(r.stdout) as ModelSummary;
    assert.equal(s.interrupted, true);
    assert.equal(s.signal, 'SIGINT');
    assert.equal(s.stoppedBy, 'signal');
    assert.ok(s.ops > 0 && s.traces > 0, `${s.ops} ops`);
    assert.ok(s.seconds < 25, `${s.seconds} s`);
    assert.deepEqual(s.violations, []);
    // Coverage of the work done is there.
    assert.equal(
      Object.values(s.coverage['ops']!).reduce((a, b) => a + b, 0),
      s.ops,
    );
    // The run created --out and wrote nothing: the folder is gone again.
    assert.equal(existsSync(out), false);
  });

  test('SIGTERM in text mode: exit 143, the summary line marked interrupted', async () => {
    const r = await gmemlab(['fuzz', '--time', '30s', '--quiet', '--out', join(tmp, 'sigterm')], {
      signal: 'SIGTERM',
    });
    expectStatus(r, 143, 'fuzz terminated');
    assert.ok(r.ms < 5000, `summary ${Math.round(r.ms)} ms after SIGTERM`);
    assert.match(r.stdout, /^interrupted by SIGTERM after \d+:\d\d: /m);
    assert.match(
      r.stdout,
      /^model-based fuzzing \(seed 1, linux-6\.18\): \d+ traces, [1-9]\d* ops in .*, 0 violation\(s\) \(interrupted\)$/m,
    );
    assert.match(r.stdout, /^ {2}coverage: errnos /m);
  });

  test('SIGINT after a finding: exit 1, the finding is written and reported', async () => {
    const out = join(tmp, 'sigint-found');
    const r = await gmemlab(
      ['fuzz', '--mutant', 'punch_no_zap', '--keep-going', '--time', '30s', '--json', '--out', out],
      { signal: 'SIGINT', afterMs: 2500 },
    );
    expectStatus(r, 1, 'fuzz found something, then interrupted');
    const s = JSON.parse(r.stdout) as ModelSummary;
    assert.equal(s.interrupted, true);
    assert.ok(s.violations.length >= 1);
    for (const v of s.violations) {
      assert.ok(v.file !== null && existsSync(v.file), `${v.file}`);
      const head = readFileSync(v.file, 'utf8').split('\n').slice(0, 3).join('\n');
      if (v.shrinkStopped) assert.match(head, /^# shrinking interrupted by SIGINT after \d+ runs/m);
      else assert.match(head, /^# minimized from \d+ ops to \d+/m);
    }
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab fuzz: budgets', () => {
  test('--ops N runs exactly N ops (the last trace cut short)', async () => {
    for (const n of ['1', '100', '1000']) {
      const r = await gmemlab(['fuzz', '--ops', n, '--json', '--out', join(tmp, 'ops')]);
      expectStatus(r, 0, `--ops ${n}`);
      const s = JSON.parse(r.stdout) as ModelSummary;
      assert.equal(s.ops, Number(n));
      assert.equal(s.stoppedBy, 'ops');
      assert.equal(s.interrupted, false);
    }
  });

  test('--time 1s --trace-ops 100000 ends near 1 s', async () => {
    const r = await gmemlab(
      ['fuzz', '--time', '1s', '--trace-ops', '100000', '--json', '--out', join(tmp, 'time')],
      { timeoutMs: 30_000 },
    );
    expectStatus(r, 0, '--time 1s');
    assert.ok(r.ms < 10_000, `${Math.round(r.ms)} ms wall`);
    const s = JSON.parse(r.stdout) as ModelSummary;
    assert.equal(s.stoppedBy, 'time');
    assert.ok(s.seconds >= 1 && s.seconds < 2, `${s.seconds} s`);
    assert.equal(s.traces, 1, 'one long trace, cut short');
    assert.ok(s.ops > 0 && s.ops < 100_000, `${s.ops} ops`);
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab fuzz: --out and integer options', () => {
  test('an --out that cannot be a folder is exit 2 before fuzzing, naming the path and errno', async () => {
    const file = join(tmp, 'a-file');
    writeFileSync(file, 'x\n');
    for (const [out, code] of [
      ['/dev/null/x', 'ENOTDIR'],
      [file, 'ENOTDIR'],
      [join(file, 'below'), 'ENOTDIR'],
      // mkdir under /proc fails with ENOENT (Node's recursive mkdirSync loops on it forever).
      ['/proc/gmemlab-fuzz-test/x', 'ENOENT'],
    ] as const) {
      for (const budget of [
        ['--ops', '10'],
        ['--differential', '--traces', '1'],
      ]) {
        const r = await gmemlab(['fuzz', ...budget, '--out', out]);
        expectStatus(r, 2, `--out ${out} ${budget.join(' ')}`);
        noStack(r);
        assert.ok(r.stderr.includes(`--out ${out}`), r.stderr);
        assert.ok(r.stderr.includes(code), r.stderr);
        assert.equal(r.stdout, '');
      }
    }
    assert.equal(readFileSync(file, 'utf8'), 'x\n', 'the file is left alone');
  });

  test('a finding that cannot be written: reported with its trace, the summary still printed', async () => {
    // Where the first finding of seed 1 goes ...
    const first = await gmemlab([
      'fuzz',
      '--mutant',
      'punch_no_zap',
      '--ops',
      '20000',
      '--json',
      '--out',
      join(tmp, 'w1'),
    ]);
    expectStatus(first, 1, 'finding');
    const name = (JSON.parse(first.stdout) as ModelSummary).violations[0]!.file!.split('/').pop()!;
    // ... is a folder in the second run's --out.
    const out = join(tmp, 'w2');
    mkdirSync(join(out, name), { recursive: true });
    for (const json of [true, false]) {
      const r = await gmemlab([
        'fuzz',
        '--mutant',
        'punch_no_zap',
        '--keep-going',
        '--ops',
        '20000',
        ...(json ? ['--json'] : ['--quiet']),
        '--out',
        out,
      ]);
      expectStatus(r, 1, 'finding not written');
      noStack(r);
      assert.ok(r.stderr.includes(`cannot write ${join(out, name)}: EISDIR`), r.stderr);
      assert.match(r.stderr, /^\{"op":"/m, 'the trace is on stderr');
      if (json) {
        const s = JSON.parse(r.stdout) as ModelSummary;
        assert.equal(s.stoppedBy, 'write-error');
        assert.equal(s.violations.length, 1, 'the run stops at the write error');
        assert.equal(s.violations[0]!.file, null);
        assert.match(s.violations[0]!.writeError!, /EISDIR/);
      } else {
        assert.match(r.stdout, /→ \(not written\)$/m);
        assert.match(r.stdout, /^model-based fuzzing .*, 1 violation\(s\)$/m);
      }
    }
    assert.deepEqual(readdirSync(out), [name]);
  });

  test('integer options are exact: out-of-range values are usage errors, not rounded', async () => {
    const cases: Array<[string[], RegExp]> = [
      [
        ['--seed', '99999999999999999999'],
        /--seed expects an integer 0\.\.4294967295, got 99999999999999999999/,
      ],
      [['--seed', '4294967296'], /--seed expects an integer 0\.\.4294967295, got 4294967296/],
      [['--seed', '-1'], /--seed expects a non-negative integer, got "-1"/],
      [
        ['--ops', '9007199254740992'],
        /--ops expects an integer 1\.\.2\^53-1, got 9007199254740992/,
      ],
      [['--ops', '0'], /--ops expects an integer 1\.\.2\^53-1, got 0/],
      [['--trace-ops', '100001'], /--trace-ops expects at most 100000, got 100001/],
      [['--trace-ops', '1e3'], /--trace-ops expects a non-negative integer, got "1e3"/],
      [['--time', '0'], /--time must be more than 0/],
      [['--time', '99999999999999999999h'], /--time: 99999999999999999999h is too long/],
      [['--differential', '--traces', '0'], /--traces expects an integer 1\.\.2\^53-1, got 0/],
      [['--differential', '--seed', '4294967296'], /--seed expects an integer 0\.\.4294967295/],
    ];
    for (const [args, msg] of cases) {
      const r = await gmemlab(['fuzz', ...args, '--out', join(tmp, 'never')]);
      expectStatus(r, 2, args.join(' '));
      noStack(r);
      assert.match(r.stderr, msg);
    }
    assert.equal(existsSync(join(tmp, 'never')), false, 'usage errors come before --out');
    // The largest seed runs, and the seeds after it wrap to 0, 1, ...
    const top = await gmemlab([
      'fuzz',
      '--seed',
      '4294967295',
      '--ops',
      '300',
      '--json',
      '--out',
      join(tmp, 'top'),
    ]);
    expectStatus(top, 0, '--seed 4294967295');
    assert.equal((JSON.parse(top.stdout) as { seed: number }).seed, 4294967295);
  });
});

// ---------------------------------------------------------------------------------------------

describe('gmemlab fuzz --differential: SIGINT and budgets (real /dev/kvm)', () => {
  test('SIGINT with --json: exit 130, the summary says interrupted', async (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const r = await gmemlab(
      ['fuzz', '--differential', '--time', '30s', '--json', '--out', join(tmp, 'd-sigint')],
      { signal: 'SIGINT', afterMs: 2500 },
    );
    expectStatus(r, 130, 'fuzz --differential interrupted');
    assert.ok(r.ms < 5000, `summary ${Math.round(r.ms)} ms after SIGINT`);
    const s = JSON.parse(r.stdout) as {
      ops: number;
      interrupted: boolean;
      signal: string;
      disagreements: unknown[];
    };
    assert.equal(s.interrupted, true);
    assert.equal(s.signal, 'SIGINT');
    assert.ok(s.ops > 0);
    assert.deepEqual(s.disagreements, []);
  });

  test('SIGTERM in text mode: exit 143; --time 1s --trace-ops 100000 ends near 1 s', async (t) => {
    const reason = kvmUnavailable();
    if (reason !== undefined) {
      skipFor(t, 'a usable /dev/kvm', reason);
      return;
    }
    const r = await gmemlab(
      ['fuzz', '--differential', '--time', '30s', '--quiet', '--out', join(tmp, 'd-sigterm')],
      { signal: 'SIGTERM', afterMs: 2500 },
    );
    expectStatus(r, 143, 'fuzz --differential terminated');
    assert.match(r.stdout, /^interrupted by SIGTERM after /m);
    assert.match(
      r.stdout,
      /^differential fuzzing .*: \d+ traces, [1-9]\d* ops, 0 disagreement\(s\) \(interrupted\)$/m,
    );
    const b = await gmemlab(
      [
        'fuzz',
        '--differential',
        '--time',
        '1s',
        '--trace-ops',
        '100000',
        '--json',
        '--out',
        join(tmp, 'd-time'),
      ],
      { timeoutMs: 30_000 },
    );
    expectStatus(b, 0, '--time 1s');
    assert.ok(b.ms < 15_000, `${Math.round(b.ms)} ms wall`);
    const s = JSON.parse(b.stdout) as { seconds: number; traces: number; stoppedBy: string };
    assert.equal(s.stoppedBy, 'time');
    assert.equal(s.traces, 1);
    assert.ok(s.seconds >= 1 && s.seconds < 2, `${s.seconds} s`);
  });
});
