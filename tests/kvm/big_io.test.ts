/**
 * Large reads and writes on /dev/kvm (issue 9): a 16 MiB poke/peek round trip through the
 * backend's pipe, an unaligned start, and faults in the middle of a transfer (a poke writes up to
 * the faulting page, a peek returns no data), with the same results the model gives
 * (tests/unit/big_io.test.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { runTrace } from '../../src/trace/runner.js';
import type { ResultLine } from '../../src/trace/types.js';
import { BIG, MiB, firstDiff, hexBytes, ops, pattern, valueOf } from '../unit/big_io_helpers.js';
import { backendOrSkip } from './helpers.js';

test('16 MiB poke/peek on /dev/kvm: every byte back, faults at the right page, as on the model', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const a = pattern(BIG, 11);
  const c = pattern(BIG, 200);
  const half = 8 * MiB;
  const trace = ops(
    [
      { op: 'mmap', fd: null, length: BIG + 8192, prot: 3, flags: 0x22, as: 'm' },
      { op: 'mmap', fd: null, length: half + 4096, prot: 3, flags: 0x22, as: 'short' },
      { op: 'mprotect', addr: 'm+0x800000', length: 4096, prot: 1 },
      { op: 'poke', addr: 'm+4095', hex: '00' }, // crosses the read-only page: SIGSEGV there
      { op: 'peek', addr: 'm+4095', len: BIG },
      { op: 'mprotect', addr: 'm+0x800000', length: 4096, prot: 3 },
      { op: 'poke', addr: 'm+4095', hex: '00' },
      { op: 'peek', addr: 'm+4095', len: BIG },
      { op: 'poke', addr: 'short+100', hex: '00' }, // runs into the guard page
      { op: 'peek', addr: 'short+100', len: BIG },
      { op: 'peek', addr: 'short+100', len: half + 4096 - 100 },
    ],
    [c, a, c],
  );
  const kvm = runTrace(trace, b);
  const model = runTrace(trace, new ModelBackend(getProfile('linux-6.18')!, { events: false }));
  // Equal results; the values compared as strings, so a failure does not print 32 MiB.
  const valueIn = (r: ResultLine): unknown => ('value' in r ? r.value : undefined);
  const shape = (r: ResultLine): object => ({ ...r, value: typeof valueIn(r) });
  kvm.forEach((r, i) => {
    assert.deepEqual(shape(r), shape(model[i]!), `op ${i}`);
    assert.ok(valueIn(r) === valueIn(model[i]!), `op ${i}: the values differ`);
  });
  assert.deepEqual(kvm[3], { ok: false, fault: 'SIGSEGV' });
  // The bytes before the read-only page were written, the rest of the first poke was not.
  const first = hexBytes(valueOf(kvm[4]!));
  assert.equal(kvm[4]!.ok, true);
  const upTo = 0x800000 - 4095;
  assert.equal(firstDiff(first.subarray(0, upTo), c.subarray(0, upTo)), -1);
  assert.equal(firstDiff(first.subarray(upTo), new Uint8Array(BIG - upTo)), -1);
  assert.deepEqual(kvm[6], { ok: true });
  assert.equal(firstDiff(hexBytes(valueOf(kvm[7]!)), a), -1);
  assert.deepEqual(kvm[8], { ok: false, fault: 'SIGSEGV' });
  assert.deepEqual(kvm[9], { ok: false, fault: 'SIGSEGV' });
  const rest = half + 4096 - 100;
  assert.equal(firstDiff(hexBytes(valueOf(kvm[10]!)), c.subarray(0, rest)), -1);
});
