/**
 * Large reads and writes (issue 9): bytesToHex against a byte-by-byte reference, and 16 MiB
 * peeks and pokes on the model, checked byte for byte (content, length, page order, a fault in
 * the middle). The figures for time and memory are in bench/big_io.bench.ts; no test times
 * anything.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { bytesToHex } from '../../src/trace/format.js';
import { runTrace } from '../../src/trace/runner.js';
import { BIG, MiB, firstDiff, hexBytes, ops, pattern, valueOf } from './big_io_helpers.js';

/** The reference: two digits per byte, the slow obvious way. */
function naiveHex(b: Uint8Array): string {
  return Array.from(b, (v) => v.toString(16).padStart(2, '0')).join('');
}

const model = (): ModelBackend => new ModelBackend(getProfile('linux-6.18')!, { events: false });

test('bytesToHex matches the byte-by-byte reference on every length around its cut-over', () => {
  for (let n = 0; n <= 300; n++) {
    const b = pattern(n, n);
    assert.equal(bytesToHex(b), naiveHex(b), `length ${n}`);
  }
  const all = Uint8Array.from({ length: 256 }, (_, i) => i);
  assert.equal(bytesToHex(all), naiveHex(all));
  // A view into a larger buffer: only its own bytes.
  const whole = pattern(4096, 3);
  assert.equal(bytesToHex(whole.subarray(100, 300)), naiveHex(whole.subarray(100, 300)));
  const mib = pattern(MiB, 9);
  assert.equal(bytesToHex(mib), naiveHex(mib));
});

test('a 16 MiB peek on the model returns every byte, in order, as 32 Mi hex digits', () => {
  const data = pattern(BIG, 1);
  const r = runTrace(
    ops(
      [
        { op: 'mmap', fd: null, length: BIG + 8192, prot: 3, flags: 0x22, as: 'm' },
        { op: 'poke', addr: 'm+4095', hex: '00' },
        { op: 'peek', addr: 'm+4095', len: BIG },
        { op: 'peek', addr: 'm', len: BIG },
      ],
      [data],
    ),
    model(),
  );
  assert.deepEqual(r[1], { ok: true });
  const at = valueOf(r[2]!);
  assert.equal(at.length, 2 * BIG);
  assert.equal(firstDiff(hexBytes(at), data), -1);
  // From the mapping's start: 4095 bytes never written (zeros), then the pattern.
  const from0 = hexBytes(valueOf(r[3]!));
  assert.equal(from0.length, BIG);
  assert.equal(firstDiff(from0.subarray(0, 4095), new Uint8Array(4095)), -1);
  assert.equal(firstDiff(from0.subarray(4095), data.subarray(0, BIG - 4095)), -1);
});

test('16 MiB poke/peek round trips on the model, and a fault in the middle', () => {
  const a = pattern(BIG, 5);
  const b = pattern(BIG, 77);
  const half = 8 * MiB;
  const r = runTrace(
    ops(
      [
        { op: 'mmap', fd: null, length: BIG, prot: 3, flags: 0x22, as: 'm' },
        { op: 'mmap', fd: null, length: half + 4096, prot: 3, flags: 0x22, as: 'short' },
        { op: 'poke', addr: 'm', hex: '00' },
        { op: 'peek', addr: 'm', len: BIG },
        { op: 'poke', addr: 'm', hex: '00' },
        { op: 'peek', addr: 'm', len: BIG },
        // 8 MiB + 4 KiB of memory, then the guard page: the poke writes up to it and faults.
        { op: 'poke', addr: 'short+4096', hex: '00' },
        { op: 'peek', addr: 'short+4096', len: BIG },
        { op: 'peek', addr: 'short+4096', len: half },
      ],
      [a, b, a],
    ),
    model(),
  );
  assert.deepEqual(r.slice(0, 3), [{ ok: true }, { ok: true }, { ok: true }]);
  assert.equal(firstDiff(hexBytes(valueOf(r[3]!)), a), -1);
  assert.deepEqual(r[4], { ok: true });
  assert.equal(firstDiff(hexBytes(valueOf(r[5]!)), b), -1);
  assert.deepEqual(r[6], { ok: false, fault: 'SIGSEGV' });
  assert.deepEqual(r[7], { ok: false, fault: 'SIGSEGV' });
  assert.equal(firstDiff(hexBytes(valueOf(r[8]!)), a.subarray(0, half)), -1);
});
