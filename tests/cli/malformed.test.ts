/**
 * The malformed-input sweep: every kind of bad trace, stream or output the hardened I/O issue
 * lists (and more), run through the real CLI. Each gets exit 2 with a located message in the
 * tool's own words (or the documented result), and none prints a JavaScript exception or a stack
 * trace. One test per resource bound (line length, devices, error count, long values, standard
 * input, closed and full standard output).
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CLI = join(ROOT, 'dist/src/cli/main.js');

type Run = { status: number | null; stdout: string; stderr: string };

let dir = '';
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'gmemlab-malformed-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: readonly string[], input?: string | Buffer): Run {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: dir,
    encoding: 'utf8',
    input: input ?? '',
    env: { ...process.env, GMEMLAB_KERNEL: 'linux-6.18', NO_COLOR: '1' },
    maxBuffer: 256 << 20,
    timeout: 60_000,
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string | Buffer): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return name;
}

/** No JavaScript exception text and no stack frame anywhere in the output. */
function noLeak(r: Run, what: string): void {
  const all = r.stdout + r.stderr;
  assert.doesNotMatch(
    all,
    /TypeError|SyntaxError|RangeError|ReferenceError|Cannot read properties|is not a function|internal error|\n\s+at .+:\d+:\d+\)?/,
    `${what}: leaked a JavaScript error:\n${all.slice(0, 2000)}`,
  );
}

const VM = '{"op":"KVM_CREATE_VM","as":"vm"}';

/** [what, trace lines after the VM line, the error the line-2 field gets]. */
const TRACE_CASES: ReadonlyArray<readonly [string, string, RegExp]> = [
  [
    'misspelt field',
    '{"op":"KVM_CREATE_VM","tpye":3}',
    /:2: tpye: unknown field "tpye" for KVM_CREATE_VM \(did you mean "type"\?\)/,
  ],
  [
    'misspelt flags',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"flag":3}',
    /:2: flag: unknown field "flag" .*did you mean "flags"/,
  ],
  [
    'unknown op',
    '{"op":"KVM_CREAT_VM"}',
    /:2: op: unknown op "KVM_CREAT_VM" \(did you mean "KVM_CREATE_VM"\?\)/,
  ],
  [
    'misspelt op key',
    '{"opp":"KVM_CREATE_VM"}',
    /:2: op: missing "op" \(is "opp" a misspelt "op"\?\)/,
  ],
  [
    'duplicate key',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"size":8192}',
    /:2: json: column \d+: duplicate key "size"/,
  ],
  [
    'u64 overflow',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"0x10000000000001000"}',
    /:2: size: 0x10000000000001000 does not fit the field's 64-bit C type/,
  ],
  [
    'u32 slot',
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":4294967296,"guest_phys_addr":0,"memory_size":0,"userspace_addr":0}',
    /:2: slot: 0x100000000 does not fit the field's 32-bit C type/,
  ],
  [
    'u32 flags',
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":0,"flags":"0x100000000","guest_phys_addr":0,"memory_size":0,"userspace_addr":0}',
    /:2: flags: .*32-bit/,
  ],
  [
    'int prot',
    '{"op":"mmap","fd":null,"length":4096,"prot":"0x100000003","flags":34}',
    /:2: prot: .*32-bit/,
  ],
  ['raw fd width', '{"op":"fstat","fd":"0x100000000"}', /:2: fd: .*32-bit/],
  [
    '400-digit decimal string',
    `{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"${'9'.repeat(400)}"}`,
    /:2: size: a number of 400 digits is out of range for every field/,
  ],
  [
    '400-digit JSON number',
    `{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":${'9'.repeat(400)}}`,
    /:2: size: 9{24}…\(400 digits\) is above 2\^53/,
  ],
  [
    'fraction',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":1.5}',
    /:2: size: "1.5" is not an integer/,
  ],
  [
    'exponent',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4e3}',
    /:2: size: "4e3" is not an integer/,
  ],
  [
    'unknown constant',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"flags":"MAAP"}',
    /:2: flags: "MAAP" is not an integer: unknown constant "MAAP" \(did you mean "MMAP"\?\)/,
  ],
  [
    'handle never created',
    '{"op":"fstat","fd":"vn"}',
    /:2: fd: no earlier op creates a handle named "vn" \(did you mean "vm"\?\)/,
  ],
  [
    'fd handle as an address',
    '{"op":"peek","addr":"vm","len":1}',
    /:2: addr: "vm" names an fd \(created at line 1\), not a mapping/,
  ],
  [
    'as that could never be named',
    '{"op":"KVM_CREATE_VM","as":"a+1"}',
    /:2: as: "a\+1" could never be named/,
  ],
  ['as kvm', '{"op":"KVM_CREATE_VM","as":"kvm"}', /:2: as: "kvm" is the predefined handle/],
  ['negative hex fd', '{"op":"fstat","fd":"-0x1"}', /:2: fd: a hex number has no sign/],
  [
    'a key with control characters',
    '{"op":"KVM_CREATE_VM","f\\nd\\u001b[2J":1}',
    /:2: "f\\nd\\u001b\[2J": unknown field/,
  ],
  [
    'as on an op that creates nothing',
    '{"op":"fstat","fd":"vm","as":"st"}',
    /:2: as: fstat creates nothing to name/,
  ],
  [
    'guest step key',
    '{"op":"KVM_RUN","vcpu":"vm","guest":[{"load":{"gpa":0,"szie":4}}]}',
    /:2: guest\[0\]\.load\.szie: unknown field "szie" .*did you mean "size"/,
  ],
  [
    'guest step kind',
    '{"op":"KVM_RUN","vcpu":"vm","guest":[{"laod":{"gpa":0}}]}',
    /:2: guest\[0\]: unknown step kind "laod" .*did you mean "load"/,
  ],
  [
    'poke too large',
    `{"op":"poke","addr":0,"hex":"${'00'.repeat((16 << 20) + 1)}"}`,
    /:2: hex: at most 16777216 bytes/,
  ],
  [
    'trailing comma',
    '{"op":"KVM_CREATE_VM",}',
    /:2: json: column 23: expected a "key" in double quotes/,
  ],
  ['unterminated string', '{"op":"KVM_CREATE_VM', /:2: json: column 7: unterminated string/],
  [
    'control character',
    '{"op":"KVM_CREATE\u0001VM"}',
    /:2: json: column \d+: control character in a string/,
  ],
  ['bad escape', '{"op":"KVM_CREATE\\qVM"}', /:2: json: column \d+: invalid escape/],
  [
    'deep nesting',
    `{"op":"KVM_ENABLE_CAP","fd":"vm","cap":1,"args":${'['.repeat(100)}${']'.repeat(100)}}`,
    /:2: json: column \d+: nested deeper than 32 levels/,
  ],
  [
    'text after the value',
    '{"op":"KVM_CREATE_VM"} x',
    /:2: json: column 24: unexpected text after the JSON value/,
  ],
  ['not an object', '[1,2,3]', /:2: op: each line must be a JSON object/],
  [
    'null integer',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":null}',
    /:2: size: expected an integer, got null/,
  ],
  [
    'a list for an integer',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":[1]}',
    /:2: size: expected an integer, got a list/,
  ],
  [
    'declaration near miss',
    '# need: guest_memfd',
    /:2: needs: write the declaration as "# needs: FACT, ..."/,
  ],
  [
    'unknown fact',
    '# needs: guest_memfdd',
    /:2: needs: unknown fact "guest_memfdd" \(did you mean "guest_memfd"\?\)/,
  ],
];

describe('malformed traces: exit 2, a located message of the tool, no stack trace', () => {
  for (const [what, line, msg] of TRACE_CASES) {
    test(what, () => {
      const f = file(`${what.replace(/\W+/g, '-')}.jsonl`, `${VM}\n${line}\n${VM}\n`);
      for (const cmd of ['replay', 'check']) {
        const r = cli([cmd, f]);
        assert.equal(r.status, 2, `${cmd} ${what}: ${r.stderr}`);
        assert.match(
          r.stderr,
          new RegExp(`${f.replace(/[.]/g, '\\.')}${msg.source}`),
          `${cmd} ${what}`,
        );
        assert.ok(r.stderr.length < 4000, `${cmd} ${what}: the message is short`);
        noLeak(r, `${cmd} ${what}`);
      }
    });
  }
});

describe('values the strict parser accepts', () => {
  test('constant names, size expressions, a BOM, CRLF, -1 in an unsigned field, exact integers', () => {
    const f = file(
      'good.jsonl',
      '\ufeff' +
        [
          VM,
          '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"2 MiB","flags":"MMAP|INIT_SHARED","as":"g"}',
          '{"op":"fstat","fd":"g"}',
          '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":-1,"guest_phys_addr":0,"memory_size":0,"userspace_addr":0}',
          '{"op":"KVM_CHECK_EXTENSION","cap":"KVM_CAP_GUEST_MEMFD_FLAGS"}',
          '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":9007199254740991}',
        ].join('\r\n') +
        '\r\n',
    );
    const r = cli(['replay', f]);
    assert.equal(r.status, 0, r.stderr);
    const lines = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(lines.length, 6);
    assert.deepEqual(lines[1], { ok: true });
    assert.deepEqual(lines[2], { ok: true, stat: { size: 2097152, blocks: 0 } });
  });
});

describe('resource bounds', () => {
  test('a line longer than the limit is an error, read without holding it (piped /dev/zero)', () => {
    const r = cli(['replay', '-'], Buffer.alloc(40 << 20));
    assert.equal(r.status, 2);
    assert.match(r.stderr, /^gmemlab replay: <stdin>:1: line: longer than \d+ characters/);
    noLeak(r, 'zeros');
  });

  test('devices that never end are refused; a directory and a missing file are named', () => {
    for (const dev of ['/dev/zero', '/dev/urandom']) {
      if (!existsSync(dev)) continue;
      for (const cmd of ['replay', 'check', 'run']) {
        const r = cli([cmd, dev]);
        assert.equal(r.status, 2, `${cmd} ${dev}`);
        assert.match(
          r.stderr,
          new RegExp(`${dev}: a device, not a file or a pipe`),
          `${cmd} ${dev}`,
        );
      }
    }
    const d = cli(['replay', '.']);
    assert.equal(d.status, 2);
    assert.match(d.stderr, /\.: is a directory, not a file/);
    const m = cli(['replay', 'no-such.jsonl']);
    assert.equal(m.status, 2);
    assert.match(m.stderr, /no-such\.jsonl: cannot read: ENOENT/);
  });

  test('a million malformed lines: the first 20 errors, then a count; bounded output', () => {
    const f = file('bad-lines.jsonl', 'x\n'.repeat(1_000_000));
    const r = cli(['replay', f]);
    assert.equal(r.status, 2);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 21, r.stderr.slice(0, 500));
    assert.match(lines[20]!, /^\.\.\. and 999980 more malformed line\(s\) not shown$/);
    assert.equal(r.stdout, '');
  });

  test('random bytes on a pipe: reading stops after the first 20 errors', () => {
    let seed = 7;
    const bytes = Buffer.alloc(4 << 20);
    for (let i = 0; i < bytes.length; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      bytes[i] = seed >> 16;
    }
    const r = cli(['replay', '-'], bytes);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /<stdin>: stopped reading at line \d+, after the first 20 errors/);
    assert.ok(r.stderr.length < 20_000, 'capped');
    noLeak(r, 'random bytes');
  });

  test('a 10 MB op name is cut in the message', () => {
    const f = file('long-op.jsonl', `{"op":"${'A'.repeat(10 << 20)}"}\n`);
    const r = cli(['replay', f]);
    assert.equal(r.status, 2);
    assert.match(r.stderr, /:1: op: unknown op "A{60}"… \(10485760 characters\)/);
    assert.ok(r.stderr.length < 500, `${r.stderr.length} characters`);
  });

  test('- reads standard input, once', () => {
    const r = cli(['replay', '-'], `${VM}\n{"op":"KVM_CHECK_EXTENSION","cap":1}\n`);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim().split('\n').length, 2);
    const twice = cli(['replay', '-', '-'], VM);
    assert.equal(twice.status, 2);
    assert.match(twice.stderr, /standard input \(-\) can be read only once/);
  });

  test('replay streams: results before a malformed line are printed, nothing after it runs', () => {
    const f = file('stream.jsonl', `${VM}\n${VM}\n{"op":"nope"}\n${VM}\n`);
    const r = cli(['replay', f]);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '{"ok":true}\n{"ok":true}\n');
    assert.match(
      r.stderr,
      /the results of the 2 op\(s\) before line 3 were printed; nothing after it ran/,
    );
  });
});

describe('standard output', () => {
  test('a full disk (/dev/full): exit 2 naming ENOSPC, no stack trace', (t) => {
    if (!existsSync('/dev/full')) {
      t.skip('no /dev/full on this machine');
      return;
    }
    const f = file('full.jsonl', `${VM}\n`);
    const r = spawnSync(
      'sh',
      ['-c', `exec "${process.execPath}" "${CLI}" replay ${f} > /dev/full`],
      {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, GMEMLAB_KERNEL: 'linux-6.18' },
      },
    );
    assert.equal(r.status, 2, r.stderr);
    assert.match(r.stderr, /^gmemlab: cannot write standard output: ENOSPC/);
    noLeak({ status: r.status, stdout: r.stdout, stderr: r.stderr }, '/dev/full');
  });

  test('a closed pipe (| head -1) ends the run quietly with status 141 (128 + SIGPIPE)', () => {
    const f = file(
      'many.jsonl',
      `${VM}\n` + '{"op":"KVM_CHECK_EXTENSION","cap":1}\n'.repeat(200_000),
    );
    const r = spawnSync(
      'bash',
      ['-c', `"${process.execPath}" "${CLI}" replay ${f} | head -1; exit \${PIPESTATUS[0]}`],
      { cwd: dir, encoding: 'utf8', env: { ...process.env, GMEMLAB_KERNEL: 'linux-6.18' } },
    );
    assert.equal(r.status, 141);
    assert.equal(r.stdout, '{"ok":true}\n');
    assert.equal(r.stderr, '');
  });
});

describe('environment', () => {
  test('too few file descriptors to load gmemlab: one line naming EMFILE, exit 2', () => {
    const f = file('env.jsonl', `${VM}\n`);
    const r = spawnSync(
      'bash',
      ['-c', `ulimit -n 24 && exec "${process.execPath}" "${CLI}" replay ${f}`],
      {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, GMEMLAB_KERNEL: 'linux-6.18' },
      },
    );
    // Either gmemlab loads within 24 descriptors (then it runs) or it says why it cannot.
    if (r.status === 0) assert.equal(r.stdout, '{"ok":true}\n');
    else {
      assert.equal(r.status, 2, r.stderr);
      assert.match(
        r.stderr,
        /^gmemlab: cannot run: EMFILE \(too many open files: raise ulimit -n\)\n$/,
      );
    }
  });

  test('an unknown GMEMLAB_KERNEL is a usage error naming it', () => {
    const f = file('env2.jsonl', `${VM}\n`);
    const r = spawnSync(process.execPath, [CLI, 'replay', f], {
      cwd: dir,
      encoding: 'utf8',
      env: { ...process.env, GMEMLAB_KERNEL: 'linux-9.99' },
    });
    assert.equal(r.status, 2);
    assert.match(r.stderr, /linux-9\.99/);
    noLeak({ status: r.status, stdout: r.stdout, stderr: r.stderr }, 'GMEMLAB_KERNEL');
  });
});

describe('input errors under --json', () => {
  test('one {"error": {...}} line per located error on stderr, for traces, scenarios and usage', () => {
    const f = file(
      'json-errors.jsonl',
      `${VM}\n{"op":"KVM_CREATE_VM","tpye":1}\n{"op":"fstat","fd":"g"}\n`,
    );
    const r = cli(['check', '--json', f]);
    assert.equal(r.status, 2);
    const errs = r.stderr
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { error: Record<string, unknown> });
    assert.deepEqual(errs, [
      {
        error: {
          command: 'check',
          file: f,
          line: 2,
          field: 'tpye',
          message: 'unknown field "tpye" for KVM_CREATE_VM (did you mean "type"?)',
        },
      },
      {
        error: {
          command: 'check',
          file: f,
          line: 3,
          field: 'fd',
          message: 'no earlier op creates a handle named "g"',
        },
      },
    ]);
    const y = file('json-errors.yaml', 'name: x\nsteps:\n  - do: KVM_CREATE_VM\n    expcet: ok\n');
    const s = cli(['run', '--format', 'json', y]);
    assert.equal(s.status, 2);
    assert.deepEqual(JSON.parse(s.stderr), {
      error: {
        command: 'run',
        file: y,
        line: 4,
        field: 'expcet',
        message: 'unknown key (did you mean "expect"?)',
      },
    });
    const u = cli(['replay', '--json', '--nope']);
    assert.equal(u.status, 2);
    assert.deepEqual(JSON.parse(u.stderr), {
      error: { command: 'replay', message: 'unknown option --nope' },
    });
  });
});
