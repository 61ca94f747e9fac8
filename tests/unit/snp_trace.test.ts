/**
 * The SEV-SNP additions to the trace contract (docs/trace-format.md, "SEV-SNP commands"): the
 * `open` op for /dev/sev, KVM_MEMORY_ENCRYPT_OP's `sev_fd`, `data` and `data_addr`, and the
 * results' `error` and LAUNCH_UPDATE progress. The document's example SNP launch trace runs on
 * linux-6.18-snp with the results the document shows; bad fields are file:line:field errors; ops
 * without the new fields keep their form.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOpObject, parseTrace, TraceInputError } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { formatOp, formatResult } from '../../src/trace/format.js';
import { packMemEncCmd, packSevData } from '../../src/ops/mem_enc.js';
import { snapshot } from '../../src/core/inspect.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = readFileSync(join(ROOT, 'docs/trace-format.md'), 'utf8');

/** The two ```jsonl blocks after the example's introduction: the trace and its results. */
function docExample(): { trace: string; results: string[] } {
  const at = DOC.indexOf('An SNP launch (`gmemlab replay --kernel linux-6.18-snp`');
  assert.ok(at >= 0, 'the example is in docs/trace-format.md');
  const blocks = [...DOC.slice(at).matchAll(/```jsonl\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
  return { trace: blocks[0]!, results: blocks[1]!.split('\n') };
}

function replay(text: string, profile: string) {
  const p = parseTrace(text, 't.jsonl');
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  const b = new ModelBackend(getProfile(profile)!, { events: false });
  return { results: runTrace(p.ops, b).map(formatResult), backend: b, ops: p.ops };
}

const bad = (o: Record<string, unknown>, field: string, re: RegExp): void =>
  assert.throws(
    () => parseOpObject('t.jsonl', 7, o),
    (e: unknown) =>
      e instanceof TraceInputError && e.field === field && re.test(e.message) && e.line === 7,
  );

describe('SEV-SNP trace ops', () => {
  test("the document's SNP launch runs on linux-6.18-snp with the documented results", () => {
    const { trace, results } = docExample();
    const r = replay(trace, 'linux-6.18-snp');
    assert.deepEqual(r.results, results);
    // The launch reached the firmware: one guest context, RUNNING, every added page measured.
    const g = snapshot(r.backend.host).sevSnp!.guests;
    assert.equal(g.length, 1);
    assert.equal(g[0]!.state, 'RUNNING');
    assert.equal(g[0]!.measuredPages, 5); // 2 NORMAL, ZERO, SECRETS, the VMSA
    // Every op prints back as a line that parses to the same op.
    for (const op of r.ops) {
      const again = parseOpObject('t.jsonl', op.line, JSON.parse(formatOp(op)));
      assert.equal(formatOp(again), formatOp(op));
    }
  });

  test('open("/dev/sev") is ENOENT where the profile has no SEV, as on the development machines', () => {
    const r = replay('{"op":"open","path":"/dev/sev","as":"sev"}\n', 'linux-6.18');
    assert.deepEqual(r.results, ['{"ok":false,"errno":"ENOENT"}']);
  });

  test('an unwritable data_addr is the VMM’s SIGSEGV, and no ioctl', () => {
    const r = replay(
      [
        '{"op":"KVM_CREATE_VM","type":4,"as":"vm"}',
        '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","id":22,"data":{},"data_addr":4096}',
        '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","id":22}',
      ].join('\n'),
      'linux-6.18-snp',
    );
    assert.deepEqual(r.results.slice(1), [
      '{"ok":false,"fault":"SIGSEGV"}',
      '{"ok":false,"errno":"EFAULT"}',
    ]);
  });

  test('file:line:field errors', () => {
    const op = { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', data_addr: 'm' };
    bad({ ...op, id: 2, data: {} }, 'id', /id 2 takes no data object/);
    bad({ ...op, id: 100, data: 5 }, 'data', /expected an object/);
    bad(
      { ...op, id: 100, data: { polcy: 1 } },
      'data.polcy',
      /unknown field.*did you mean "policy"/,
    );
    bad({ ...op, id: 101, data: { gfn_start: 0, len: 4096, type: 256 } }, 'data.type', /u8/);
    bad({ ...op, id: 101, data: { gfn_start: 0, len: 4096 } }, 'data.type', /missing/);
    bad({ ...op, id: 102, data: { host_data: '00'.repeat(33) } }, 'data.host_data', /32 bytes/);
    bad({ ...op, id: 100, data: { gosvw: 'zz' } }, 'data.gosvw', /hex/);
    bad({ op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 22, data: {} }, 'data_addr', /needs/);
    bad({ op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 22, data_addr: 'm' }, 'data', /without/);
    bad({ op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', argp: null, sev_fd: 3 }, 'sev_fd', /null/);
    bad({ op: 'open', path: '/dev/kvm' }, 'path', /only "\/dev\/sev"/);
    // A handle in data must be a mapping bound earlier.
    const t = parseTrace(
      '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":3,"id":101,"data":{"gfn_start":0,"len":0,"type":1,"uaddr":"nope"},"data_addr":4096}\n',
      't.jsonl',
    );
    assert.equal(t.errors[0]?.field, 'data.uaddr');
  });

  test('structs: kvm_sev_cmd keeps its old bytes without the new fields; SNP structs packed per uAPI', () => {
    assert.deepEqual([...packMemEncCmd(2n)], [2, ...new Array(23).fill(0)]);
    const cmd = packMemEncCmd(101n, 0x1234n, 7);
    const v = new DataView(cmd.buffer);
    assert.equal(v.getUint32(0, true), 101);
    assert.equal(v.getBigUint64(8, true), 0x1234n);
    assert.equal(v.getUint32(20, true), 7);
    const u = packSevData({
      cmd: 'KVM_SEV_SNP_LAUNCH_UPDATE',
      gfn_start: 5n,
      uaddr: 0x4000n,
      len: 0x2000n,
      type: 6n,
      flags: 0n,
    });
    assert.equal(u.length, 64);
    assert.equal(u[24], 6);
    const f = packSevData({
      cmd: 'KVM_SEV_SNP_LAUNCH_FINISH',
      id_block_uaddr: 1n,
      id_auth_uaddr: 2n,
      id_block_en: 1n,
      auth_key_en: 0n,
      vcek_disabled: 1n,
      host_data: new Uint8Array(32).fill(0xaa),
      flags: 0n,
    });
    assert.equal(f.length, 88);
    assert.deepEqual([f[16], f[17], f[18], f[19], f[50], f[51]], [1, 0, 1, 0xaa, 0xaa, 0]);
  });

  test('ops without the new fields print as before', () => {
    const op = parseOpObject('t.jsonl', 1, { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 2 });
    assert.equal(formatOp(op), '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","argp":"cmd","id":2}');
  });
});
