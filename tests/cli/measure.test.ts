/**
 * `gmemlab measure snp` and `gmemlab measure tdx` run as a user runs them (a child process of
 * dist/src/cli/main.js, which loads the measure command alone): the digest or MRTD as the last
 * line, exit code 2 with FILE:OFFSET for a malformed image, JSON errors with --json, and a closed
 * pipe.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  buildTdvfImage,
  T3_MRTD,
  T4_MRTD,
  T5_MRTD,
  T5_SECTIONS,
  TWO_PAGE_SECTIONS,
} from '../unit/tdvf_images.js';

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

describe('gmemlab measure tdx (process)', () => {
  test('T5 through the CLI; --two-pass differs on a section of several measured pages', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-measure-tdx-'));
    try {
      const t5 = join(dir, 't5.fd');
      const two = join(dir, 'two.fd');
      writeFileSync(t5, buildTdvfImage(T5_SECTIONS).bytes);
      writeFileSync(two, buildTdvfImage(TWO_PAGE_SECTIONS).bytes);
      const r = gmemlab(['measure', 'tdx', '--ovmf', t5]);
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${T5_MRTD}\n`);
      assert.equal(r.stderr, '');
      assert.equal(gmemlab(['measure', 'tdx', '--ovmf', two]).stdout, `${T3_MRTD}\n`);
      assert.equal(gmemlab(['measure', 'tdx', '--ovmf', two, '--two-pass']).stdout, `${T4_MRTD}\n`);
      const t = gmemlab(['measure', 'tdx', '--ovmf', t5, '--trace']);
      const lines = t.stdout.trimEnd().split('\n');
      assert.equal(lines.length, 1 + 19 + 1);
      assert.equal(lines.at(-1), T5_MRTD);
      const j = gmemlab(['measure', 'tdx', '--ovmf', t5, '--json']);
      assert.equal((JSON.parse(j.stdout) as { mrtd: string }).mrtd, T5_MRTD);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a malformed image and bad options: exit 2 with a message; --json: a JSON error', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-measure-tdx-'));
    try {
      const f = join(dir, 'bad.fd');
      const img = buildTdvfImage(T5_SECTIONS);
      img.bytes[img.descriptor] = 0x58;
      writeFileSync(f, img.bytes);
      const at = `0x${img.descriptor.toString(16)}`;
      const r = gmemlab(['measure', 'tdx', '--ovmf', f]);
      assert.equal(r.status, 2);
      assert.equal(r.stdout, '');
      assert.equal(
        r.stderr,
        `gmemlab measure: ${f}:${at}: TDVF metadata at ${at}: signature "XDVF", expected "TDVF" ` +
          '(QEMU: "Invalid TDVF signature in metadata!")\n',
      );
      const j = gmemlab(['measure', 'tdx', '--ovmf', f, '--json']);
      assert.equal(j.status, 2);
      const e = JSON.parse(j.stderr) as { error: Record<string, unknown> };
      assert.deepEqual(Object.keys(e.error), ['command', 'file', 'offset', 'message']);
      assert.equal(e.error['offset'], img.descriptor);
      for (const args of [
        ['measure', 'tdx'],
        ['measure', 'tdx', '--ovmf', f, '--vcpus', '1'],
        ['measure', 'tdx', '--ovmf', f, '--output-format', 'raw'],
        ['measure', 'snp', '--ovmf', f, '--two-pass'],
      ]) {
        const u = gmemlab(args);
        assert.equal(u.status, 2, args.join(' '));
        assert.match(u.stderr, /^gmemlab measure: .*\n\(see gmemlab measure --help\)\n$/);
      }
      // An option of measure snp: the direct tdx entry declines, measure.ts says what is wrong.
      assert.equal(
        gmemlab(['measure', 'tdx', '--ovmf', f, '--vcpus', '1']).stderr,
        'gmemlab measure: --vcpus is an option of measure snp, not of measure tdx\n' +
          '(see gmemlab measure --help)\n',
      );
      const h = gmemlab(['measure', 'tdx', '--help']);
      assert.equal(h.status, 0);
      assert.match(h.stdout, /^usage: gmemlab measure tdx --ovmf FILE/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
