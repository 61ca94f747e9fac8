/**
 * `gmemlab measure snp` run as a user runs it (a child process of dist/src/cli/main.js, which
 * loads the measure command alone): the digest as the last line, exit code 2 with FILE:OFFSET for
 * a malformed image, JSON errors with --json, and a closed pipe.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const MAIN = join(ROOT, 'dist/src/cli/main.js');
const AMDSEV = join(ROOT, 'tests/fixtures/sev-snp-measure/ovmf_AmdSev_suffix.bin');
const E1E1 =
  'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b';

function gmemlab(args: readonly string[], shell?: string) {
  const r = shell
    ? spawnSync('sh', ['-c', shell], { encoding: 'utf8', cwd: ROOT })
    : spawnSync(process.execPath, [MAIN, ...args], { encoding: 'utf8', cwd: ROOT });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const BASE = ['measure', 'snp', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v4'];

describe('gmemlab measure snp (process)', () => {
  test('prints the digest as its last line; --trace lines before it', () => {
    const r = gmemlab([...BASE, '--guest-features', '0x21']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${E1E1}\n`);
    assert.equal(r.stderr, '');
    const t = gmemlab([...BASE, '--guest-features', '0x21', '--trace']);
    const lines = t.stdout.trimEnd().split('\n');
    assert.equal(lines.length, 1 + 33 + 1);
    assert.equal(lines.at(-1), E1E1);
  });

  test('the main help lists measure', () => {
    const r = gmemlab(['--help']);
    assert.match(r.stdout, /^ {2}measure +\S/m);
  });

  test('a malformed image: exit 2, FILE:OFFSET: message; --json: a JSON error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-measure-'));
    try {
      const f = join(dir, 'bad.fd');
      const b = new Uint8Array(readFileSync(AMDSEV));
      b[4096 - 0x554 + 8] = 7; // SEV metadata version
      writeFileSync(f, b);
      const args = ['measure', 'snp', '--ovmf', f, '--vcpus', '1', '--vcpu-type', 'EPYC-v4'];
      const r = gmemlab(args);
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `gmemlab measure: ${f}:0xab4: SEV metadata (GUID dc886566-984a-4798-a75e-5585a7bf67cc): version 7, expected 1\n`,
      );
      const j = gmemlab([...args, '--json']);
      assert.equal(j.status, 2);
      const e = JSON.parse(j.stderr) as { error: Record<string, unknown> };
      assert.deepEqual(Object.keys(e.error), ['command', 'file', 'offset', 'message']);
      assert.equal(e.error['offset'], 0xab4);
      const u = gmemlab(['measure', 'snp', '--ovmf', f]);
      assert.equal(u.status, 2);
      assert.equal(
        u.stderr,
        'gmemlab measure: --vcpus N is required in mode snp\n(see gmemlab measure --help)\n',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a closed output pipe ends quietly', () => {
    const r = gmemlab(
      [],
      `"${process.execPath}" "${MAIN}" ${BASE.map((a) => `"${a}"`).join(' ')} --trace | head -1`,
    );
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^# step/);
    assert.equal(r.stderr, '');
  });
});
