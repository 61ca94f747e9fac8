/**
 * Pure tests (no /dev/kvm needed) of the guest-program compiler, the uAPI struct packing and the
 * arena's interval bookkeeping used by the real-KVM backend.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  compileGuest,
  encodeStep,
  FLAT_CODE,
  PORT_CONTINUE,
} from '../../src/backends/kvm/guest_code.js';
import {
  decodeRun,
  packMemoryRegion,
  packMemoryRegion2,
  packRegs,
  readSegment,
  writeSegment,
  KVM_SREGS_SIZE,
} from '../../src/backends/kvm/structs.js';
import { packCreateGuestMemfd } from '../../src/ops/guest_memfd.js';
import { packEnableCap } from '../../src/ops/vm.js';
import { packPreFaultMemory, unpackPreFaultMemory } from '../../src/ops/pre_fault.js';
import { IntervalSet } from '../../src/backends/kvm/arena.js';
import { guestLoad, guestStore } from '../../src/core/arch/x86/kvm_run.js';

const hex = (b: Uint8Array | number[]): string => Buffer.from(b).toString('hex');

test('stores, loads and hypercalls encode as the contract says', () => {
  const st = (gpa: bigint, h: string) =>
    encodeStep(guestStore(gpa, Uint8Array.from(Buffer.from(h, 'hex'))));
  assert.equal(hex(st(0x12345678n, 'aa')), 'c60578563412aa');
  assert.equal(hex(st(0x10n, 'aabb')), '66c70510000000aabb');
  assert.equal(hex(st(0xfffff000n, 'deadbeef')), 'c70500f0ffffdeadbeef');
  assert.equal(hex(encodeStep(guestLoad(0x100000n, 1))), 'a000001000e610');
  assert.equal(hex(encodeStep(guestLoad(0x100000n, 2))), '66a10000100066e710');
  assert.equal(hex(encodeStep(guestLoad(0x100000n, 4))), 'a100001000e710');
  assert.equal(
    hex(encodeStep({ kind: 'hypercall', nr: 12n, args: [0x1000n, 1n, 0x10n] })),
    'b80c000000' + 'bb00100000' + 'b901000000' + 'ba10000000' + '0f01c1' + 'e711',
  );
  assert.equal(hex(compileGuest([]).batches[0]!), 'f4');
});

test('long programs split into page-sized batches ending in the continuation marker', () => {
  const steps = Array.from({ length: 1000 }, (_, i) => guestLoad(BigInt(i * 4), 4));
  const p = compileGuest(steps);
  assert.equal(p.loads.length, 1000);
  assert.ok(p.batches.length >= 2);
  let total = 0;
  p.batches.forEach((b, i) => {
    assert.ok(b.length <= 4096);
    const last = i === p.batches.length - 1;
    if (last) assert.equal(b[b.length - 1], 0xf4);
    else assert.deepEqual([...b.subarray(b.length - 2)], [0xe6, PORT_CONTINUE]);
    total += b.length - (last ? 1 : 2);
  });
  assert.equal(total, 1000 * 7);
  // A tiny page: every batch holds whole steps only.
  const q = compileGuest(steps.slice(0, 5), 16);
  assert.deepEqual(
    q.batches.map((b) => b.length),
    [16, 16, 8],
  );
});

test('uAPI structs have the documented layout and truncate like C', () => {
  const r = packMemoryRegion({
    slot: 0x1_0000_0005n,
    flags: 4n,
    guest_phys_addr: 0x1000n,
    memory_size: 0x2000n,
    userspace_addr: -1n,
  });
  assert.equal(r.length, 32);
  assert.equal(
    hex(r),
    '05000000' + '04000000' + '0010000000000000' + '0020000000000000' + 'ffffffffffffffff',
  );
  const r2 = packMemoryRegion2({
    slot: 1n,
    flags: 4n,
    guest_phys_addr: 0n,
    memory_size: 0n,
    userspace_addr: 0n,
    guest_memfd_offset: 0x3000n,
    guest_memfd: -1n,
  });
  assert.equal(r2.length, 160);
  assert.equal(r2.readBigUInt64LE(32), 0x3000n);
  assert.equal(r2.readUInt32LE(40), 0xffffffff);
  assert.ok(r2.subarray(44).every((x) => x === 0));
  const g = packCreateGuestMemfd(8192n, 3n);
  assert.equal(g.length, 64);
  assert.equal(hex(g.subarray(0, 16)), '0020000000000000' + '0300000000000000');
  const c = packEnableCap(201n, 0n, [4096n]);
  assert.equal(c.length, 104);
  assert.equal(c.readUInt32LE(0), 201);
  assert.equal(c.readBigUInt64LE(8), 4096n);
  const pf = packPreFaultMemory(0x1000n, 0x2000n, 0n);
  assert.deepEqual(unpackPreFaultMemory(pf), { gpa: 0x1000n, size: 0x2000n });
  const regs = packRegs({ rip: 0xfffff000n, rflags: 2n });
  assert.equal(regs.readBigUInt64LE(128), 0xfffff000n);
  assert.equal(regs.readBigUInt64LE(136), 2n);
  const sregs = Buffer.alloc(KVM_SREGS_SIZE);
  const seg = FLAT_CODE;
  writeSegment(sregs, 'ss', seg);
  assert.deepEqual(readSegment(sregs, 'ss'), seg);
  assert.equal(sregs.readUInt16LE(5 * 24 + 12), 8);
});

test('kvm_run exits decode from the documented offsets', () => {
  const b = Buffer.alloc(256);
  b.writeUInt32LE(39, 8);
  b.writeBigUInt64LE(0n, 32);
  b.writeBigUInt64LE(0x5000n, 40);
  b.writeBigUInt64LE(4096n, 48);
  assert.deepEqual(decodeRun(b), {
    kind: 'memory_fault',
    reason: 39,
    flags: 0n,
    gpa: 0x5000n,
    size: 4096n,
  });
  b.fill(0);
  b.writeUInt32LE(6, 8);
  b.writeBigUInt64LE(0x100000n, 32);
  b.set([0xaa, 0xbb, 0xcc, 0xdd], 40);
  b.writeUInt32LE(4, 48);
  b[52] = 1;
  const m = decodeRun(b);
  assert.equal(m.kind, 'mmio');
  if (m.kind === 'mmio')
    assert.deepEqual(
      [m.physAddr, hex(m.data.subarray(0, m.len)), m.isWrite],
      [0x100000n, 'aabbccdd', true],
    );
  b.fill(0);
  b.writeUInt32LE(2, 8);
  b[32] = 1;
  b[33] = 2;
  b.writeUInt16LE(0x10, 34);
  b.writeUInt32LE(1, 36);
  b.writeBigUInt64LE(4096n, 40);
  assert.deepEqual(decodeRun(b), {
    kind: 'io',
    reason: 2,
    direction: 1,
    size: 2,
    port: 0x10,
    count: 1,
    dataOffset: 4096n,
  });
  b.fill(0);
  b.writeUInt32LE(17, 8);
  b.writeUInt32LE(1, 32);
  assert.deepEqual(decodeRun(b), { kind: 'internal', reason: 17, suberror: 1 });
});

test('IntervalSet add / remove / complement', () => {
  const s = new IntervalSet();
  s.add(10n, 20n);
  s.add(30n, 40n);
  s.add(20n, 25n);
  assert.deepEqual(s.list, [
    { s: 10n, e: 25n },
    { s: 30n, e: 40n },
  ]);
  s.remove(12n, 35n);
  assert.deepEqual(s.list, [
    { s: 10n, e: 12n },
    { s: 35n, e: 40n },
  ]);
  assert.deepEqual(s.complementWithin(0n, 50n), [
    { s: 0n, e: 10n },
    { s: 12n, e: 35n },
    { s: 40n, e: 50n },
  ]);
  assert.ok(s.intersects(11n, 13n));
  assert.ok(!s.intersects(12n, 35n));
});
