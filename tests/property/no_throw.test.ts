/**
 * Robustness: no input makes the model throw. 100,000+ random API calls — arbitrary ops with
 * arbitrary (often absurd) arguments, on both profiles — must each return a result line.
 * Deterministic: fixed fast-check seed.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { HandleTable, stepTrace } from '../../src/trace/runner.js';
import type { AddrArg, FdArg, GuestStep, TraceOp, TraceOpInput } from '../../src/trace/types.js';
import { guestLoad, guestStore } from '../../src/core/arch/x86/kvm_run.js';

const SEED = 20261122;

const interesting = [
  0n,
  1n,
  2n,
  3n,
  4n,
  7n,
  8n,
  12n,
  16n,
  4095n,
  4096n,
  4097n,
  8192n,
  65536n,
  0x20_0000n,
  0x20_1000n,
  1n << 31n,
  (1n << 31n) - 1n,
  1n << 32n,
  0xffff_ffffn,
  0xffff_f000n,
  1n << 40n,
  1n << 46n,
  1n << 47n,
  0x7fff_ffff_f000n,
  1n << 51n,
  1n << 52n,
  1n << 62n,
  1n << 63n,
  (1n << 63n) - 1n,
  (1n << 64n) - 4096n,
  (1n << 64n) - 1n,
  -1n,
  -4096n,
  32763n,
  32764n,
  65536n,
];
const big = fc.oneof(
  fc.constantFrom(...interesting),
  fc.bigInt({ min: 0n, max: 1n << 20n }),
  fc.bigInt({ min: -(1n << 63n), max: (1n << 64n) - 1n }),
  fc.bigInt({ min: 0n, max: 64n }).map((n) => n * 4096n),
);
const names = ['kvm', 'vm', 'vm2', 'g', 'g2', 'm', 'm2', 'cpu', 'cpu2', 'nope'];
const fdArg: fc.Arbitrary<FdArg> = fc.oneof(
  fc.constantFrom(...names).map((name): FdArg => ({ kind: 'handle', name })),
  fc
    .constantFrom(-1n, 0n, 1n, 2n, 3n, 999n, 1n << 31n)
    .map((value): FdArg => ({ kind: 'raw', value })),
);
const addrArg: fc.Arbitrary<AddrArg> = fc.oneof(
  fc.tuple(fc.constantFrom(...names), big).map(([name, offset]): AddrArg => ({
    kind: 'handle',
    name,
    offset: offset < 0n ? -offset : offset,
  })),
  big.map((value): AddrArg => ({ kind: 'raw', value })),
);
const bytes = fc.uint8Array({ minLength: 0, maxLength: 24 });
const step: fc.Arbitrary<GuestStep> = fc.oneof(
  fc
    .tuple(fc.bigInt({ min: 0n, max: 0xffff_fffbn }), fc.constantFrom(1, 2, 4))
    .map(([gpa, n]): GuestStep => guestStore(gpa, new Uint8Array(n).fill(0xab))),
  fc
    .tuple(
      fc.bigInt({ min: 0n, max: 0xffff_fffbn }),
      fc.constantFrom(1 as const, 2 as const, 4 as const),
    )
    .map(([gpa, size]): GuestStep => guestLoad(gpa, size)),
  fc
    .tuple(big, big, big, big)
    .map(([nr, a, b, c]): GuestStep => ({ kind: 'hypercall', nr, args: [a, b, c] })),
);
const as = fc.constantFrom(...names);

const opArb: fc.Arbitrary<TraceOpInput> = fc.oneof(
  fc.record({ op: fc.constant('KVM_CREATE_VM' as const), fd: fdArg, type: big, as }),
  fc.record({ op: fc.constant('KVM_CHECK_EXTENSION' as const), fd: fdArg, cap: big }),
  fc.record({
    op: fc.constant('KVM_CREATE_GUEST_MEMFD' as const),
    vm: fdArg,
    size: big,
    flags: big,
    as,
  }),
  fc.record({
    op: fc.constant('KVM_SET_USER_MEMORY_REGION' as const),
    vm: fdArg,
    slot: big,
    flags: big,
    guest_phys_addr: big,
    memory_size: big,
    userspace_addr: addrArg,
  }),
  fc.record({
    op: fc.constant('KVM_SET_USER_MEMORY_REGION2' as const),
    vm: fdArg,
    slot: big,
    flags: big,
    guest_phys_addr: big,
    memory_size: big,
    userspace_addr: addrArg,
    guest_memfd: fdArg,
    guest_memfd_offset: big,
  }),
  fc.record({
    op: fc.constant('KVM_SET_MEMORY_ATTRIBUTES' as const),
    vm: fdArg,
    address: big,
    size: big,
    attributes: big,
    flags: big,
  }),
  fc.record({ op: fc.constant('KVM_CREATE_VCPU' as const), vm: fdArg, id: big, as }),
  fc.record({
    op: fc.constant('KVM_PRE_FAULT_MEMORY' as const),
    vcpu: fdArg,
    gpa: big,
    size: big,
    flags: big,
  }),
  fc.record({
    op: fc.constant('KVM_RUN' as const),
    vcpu: fdArg,
    guest: fc.array(step, { maxLength: 6 }),
  }),
  fc.record({
    op: fc.constant('KVM_ENABLE_CAP' as const),
    fd: fdArg,
    cap: big,
    flags: big,
    args: fc.array(big, { maxLength: 4 }),
  }),
  fc.record({
    op: fc.constant('mmap' as const),
    fd: fc.option(fdArg, { nil: null }),
    length: big,
    prot: big,
    flags: big,
    offset: big,
    as,
  }),
  fc.record({ op: fc.constant('munmap' as const), addr: addrArg, length: big }),
  fc.record({ op: fc.constant('mprotect' as const), addr: addrArg, length: big, prot: big }),
  fc.record({ op: fc.constant('madvise' as const), addr: addrArg, length: big, advice: big }),
  fc.record({ op: fc.constant('fallocate' as const), fd: fdArg, mode: big, offset: big, len: big }),
  fc.record({ op: fc.constant('ftruncate' as const), fd: fdArg, length: big }),
  fc.record({
    op: fc.constant('pread' as const),
    fd: fdArg,
    len: fc.bigInt({ min: 0n, max: 4096n }),
    offset: big,
  }),
  fc.record({ op: fc.constant('pwrite' as const), fd: fdArg, bytes, offset: big }),
  fc.record({ op: fc.constant('fstat' as const), fd: fdArg }),
  fc.record({ op: fc.constant('close' as const), fd: fdArg }),
  fc.record({
    op: fc.constant('peek' as const),
    addr: addrArg,
    len: fc.bigInt({ min: 0n, max: 9000n }),
  }),
  fc.record({ op: fc.constant('poke' as const), addr: addrArg, bytes }),
) as fc.Arbitrary<TraceOpInput>;

// A prologue that creates every named handle, so random ops mostly hit live objects.
const prologue: TraceOpInput[] = [
  { op: 'KVM_CREATE_VM', fd: { kind: 'handle', name: 'kvm' }, type: 0n, as: 'vm' },
  { op: 'KVM_CREATE_VM', fd: { kind: 'handle', name: 'kvm' }, type: 1n, as: 'vm2' },
  {
    op: 'KVM_CREATE_GUEST_MEMFD',
    vm: { kind: 'handle', name: 'vm' },
    size: 0x40_0000n,
    flags: 3n,
    as: 'g',
  },
  {
    op: 'KVM_CREATE_GUEST_MEMFD',
    vm: { kind: 'handle', name: 'vm2' },
    size: 0x40_0000n,
    flags: 0n,
    as: 'g2',
  },
  {
    op: 'mmap',
    fd: { kind: 'handle', name: 'g' },
    length: 0x40_0000n,
    prot: 3n,
    flags: 1n,
    offset: 0n,
    as: 'm',
  },
  { op: 'mmap', fd: null, length: 0x40_0000n, prot: 3n, flags: 2n, offset: 0n, as: 'm2' },
  {
    op: 'KVM_SET_USER_MEMORY_REGION2',
    vm: { kind: 'handle', name: 'vm' },
    slot: 0n,
    flags: 4n,
    guest_phys_addr: 0n,
    memory_size: 0x40_0000n,
    userspace_addr: { kind: 'handle', name: 'm', offset: 0n },
    guest_memfd: { kind: 'handle', name: 'g' },
    guest_memfd_offset: 0n,
  },
  { op: 'KVM_CREATE_VCPU', vm: { kind: 'handle', name: 'vm' }, id: 0n, as: 'cpu' },
  { op: 'KVM_CREATE_VCPU', vm: { kind: 'handle', name: 'vm2' }, id: 0n, as: 'cpu2' },
];

for (const profile of ['linux-6.18', 'linux-6.18-pvm']) {
  test(`no exception escapes the model: 100,000 random calls on ${profile} (seed ${SEED})`, () => {
    const backend = new ModelBackend(getProfile(profile)!, { events: false });
    let calls = 0;
    fc.assert(
      fc.property(fc.array(opArb, { minLength: 150, maxLength: 250 }), (ops) => {
        const t = new HandleTable(backend.begin());
        for (const [i, op] of [...prologue, ...ops].entries()) {
          const full = { ...op, line: i + 1 } as TraceOp;
          const r = stepTrace(full, backend, t);
          assert.equal(typeof r.ok, 'boolean');
          calls++;
        }
        backend.end();
      }),
      { seed: SEED, numRuns: 520 },
    );
    assert.ok(calls >= 100_000, `only ${calls} calls`);
  });
}
