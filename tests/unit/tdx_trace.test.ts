/**
 * The TDX additions to the trace contract (docs/trace-format.md, "TDX commands"):
 * KVM_MEMORY_ENCRYPT_OP's `flags` and TDX `data` objects, the results' `hw_error` and `data`. The
 * document's example TD build runs on linux-6.18-tdx with the results it shows and leaves the TD
 * with the MRTD of its two measured pages; bad fields are file:line:field errors; every op prints
 * back as a line that parses to the same op.
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
import { packMemEncCmd, packTdxData } from '../../src/ops/mem_enc.js';
import { VmFile } from '../../src/core/kvm/objects.js';
import { tdxTdMrtd, toKvmTdx } from '../../src/core/arch/x86/vmx/tdx.js';
import { TdxMrtd } from '../../src/core/platform/tdx/mrtd.js';
import { BackendRefusal } from '../../src/trace/base_types.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = readFileSync(join(ROOT, 'docs/trace-format.md'), 'utf8');

function docExample(): { trace: string; results: string[] } {
  const at = DOC.indexOf('A TD build (`gmemlab replay --kernel linux-6.18-tdx`');
  assert.ok(at >= 0, 'the example is in docs/trace-format.md');
  const blocks = [...DOC.slice(at).matchAll(/```jsonl\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
  return { trace: blocks[0]!, results: blocks[1]!.split('\n') };
}

const bad = (o: Record<string, unknown>, field: string, re: RegExp): void =>
  assert.throws(
    () => parseOpObject('t.jsonl', 7, o),
    (e: unknown) =>
      e instanceof TraceInputError && e.field === field && re.test(e.message) && e.line === 7,
  );

describe('TDX trace ops', () => {
  test("the document's TD build runs on linux-6.18-tdx with the documented results", () => {
    const { trace, results } = docExample();
    const p = parseTrace(trace, 't.jsonl');
    assert.deepEqual(
      p.errors.map((e) => e.message),
      [],
    );
    const b = new ModelBackend(getProfile('linux-6.18-tdx')!, { events: false });
    assert.deepEqual(runTrace(p.ops, b).map(formatResult), results);
    // The TD is RUNNABLE with the MRTD of its two measured pages (single pass).
    const vm = [...b.host.vms][0]!;
    assert.equal(toKvmTdx(vm).state, 'TD_STATE_RUNNABLE');
    const page0 = new Uint8Array(4096);
    page0.set([0xf4, 0xf4, 0xf4, 0xf4]);
    const want = new TdxMrtd();
    for (const [gpa, page] of [
      [0n, page0],
      [0x1000n, new Uint8Array(4096)],
    ] as const) {
      want.pageAdd(gpa);
      for (let i = 0; i < 16; i++)
        want.mrExtend(gpa + BigInt(i * 256), page.subarray(i * 256, i * 256 + 256));
    }
    assert.deepEqual(tdxTdMrtd(b.host, vm), want.finalize());
    for (const op of p.ops) {
      const again = parseOpObject(
        't.jsonl',
        1,
        JSON.parse(formatOp(op)) as Record<string, unknown>,
      );
      assert.deepEqual({ ...again, line: 0 }, { ...op, line: 0 });
    }
    void VmFile;
  });

  test('a shared pre-fault without the shared bit is refused, not answered', () => {
    const { trace } = docExample();
    const lines = trace.split('\n');
    for (const extra of [
      '{"op":"KVM_SET_MEMORY_ATTRIBUTES","vm":"vm","address":"0x10000","size":"0x1000","attributes":0,"flags":0}',
    ]) {
      const text = [
        ...lines,
        extra,
        '{"op":"KVM_PRE_FAULT_MEMORY","vcpu":"cpu0","gpa":"0x10000","size":"0x1000","flags":0}',
      ].join('\n');
      const p = parseTrace(text, 't.jsonl');
      assert.deepEqual(p.errors, []);
      const b = new ModelBackend(getProfile('linux-6.18-tdx')!, { events: false });
      assert.throws(
        () => runTrace(p.ops, b),
        (e: unknown) => e instanceof BackendRefusal && /not modelled/.test(e.message),
      );
    }
  });

  test('bad TDX fields are file:line:field errors', () => {
    const base = { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 3, data_addr: 0x1000 };
    bad({ ...base, id: 2, data: {} }, 'id', /takes no data object.*KVM_TDX_INIT_MEM_REGION \(3\)/);
    bad({ ...base, id: 3, data: { gpa: 0 } }, 'data.nr_pages', /./);
    bad({ ...base, id: 3, data: { gpa: 0, nr_pages: 1, len: 2 } }, 'data.len', /./);
    bad({ ...base, id: 1, data: { cpuid: {} } }, 'data.cpuid', /array/);
    bad({ ...base, id: 1, data: { cpuid: [{ eax: 1 }] } }, 'data.cpuid.0.function', /./);
    bad({ ...base, id: 1, data: { mrowner: '00'.repeat(49) } }, 'data.mrowner', /48 bytes/);
    bad({ ...base, id: 0, data: { nent: 300 } }, 'data.nent', /256/);
    bad(
      { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 3, id: 3, argp: null, flags: 1 },
      'flags',
      /argp is null/,
    );
    bad({ op: 'KVM_MEMORY_ENCRYPT_OP', fd: 3, id: 3, flags: 1n << 33n }, 'flags', /./);
  });

  test('struct layouts: kvm_tdx_cmd with flags, kvm_tdx_init_vm, kvm_tdx_init_mem_region', () => {
    const c = packMemEncCmd(3n, 0x1000n, 0, 1n);
    assert.deepEqual([...c.subarray(0, 16)], [3, 0, 0, 0, 1, 0, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0]);
    const r = packTdxData({
      cmd: 'KVM_TDX_INIT_MEM_REGION',
      source_addr: 0x5000n,
      gpa: 0x2000n,
      nr_pages: 3n,
    });
    assert.equal(r.length, 24);
    assert.equal(new DataView(r.buffer).getBigUint64(16, true), 3n);
    const v = packTdxData({
      cmd: 'KVM_TDX_INIT_VM',
      attributes: 1n << 28n,
      xfam: 3n,
      mrconfigid: new Uint8Array(48).fill(1),
      mrowner: new Uint8Array(48).fill(2),
      mrownerconfig: new Uint8Array(48).fill(3),
      cpuid: [
        { function: 0x80000008n, index: 0n, flags: 0n, eax: 0x300000n, ebx: 0n, ecx: 0n, edx: 0n },
      ],
    });
    assert.equal(v.length, 264 + 40);
    const dv = new DataView(v.buffer);
    assert.equal(v[16], 1);
    assert.equal(v[64], 2);
    assert.equal(v[112], 3);
    assert.equal(dv.getUint32(256, true), 1);
    assert.equal(dv.getUint32(264, true), 0x80000008);
    assert.equal(dv.getUint32(264 + 12, true), 0x300000);
    const caps = packTdxData({ cmd: 'KVM_TDX_CAPABILITIES', nent: 4n });
    assert.equal(caps.length, 2056 + 160);
    assert.equal(new DataView(caps.buffer).getUint32(2048, true), 4);
  });
});
