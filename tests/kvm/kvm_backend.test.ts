/**
 * The real-KVM backend against this machine's /dev/kvm. Every test is skipped (with the reason)
 * when /dev/kvm cannot be opened.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { MMAP_ARENA_BASE, MMAP_ARENA_END, nextArenaCursor } from '../../src/core/mm/host_layout.js';
import { BackendRefusal } from '../../src/trace/types.js';
import { arena } from '../../src/backends/kvm/arena.js';
import { compileGuest } from '../../src/backends/kvm/guest_code.js';
import { readMaps } from '../../src/backends/kvm/maps.js';
import { backendOrSkip, backendWith, L, memslotOp, runLines, type Json } from './helpers.js';
import { guestLoad, guestStore, type GuestProgramStep } from '../../src/core/arch/x86/kvm_run.js';

const hex = (v: bigint): string => '0x' + v.toString(16);

test('the worked example of trace-format.md gives exactly the expected result lines', (t) => {
  const b = backendWith(t, 'guest_memfd', 'guest_memfd_mmap', 'guest_memfd_init_shared');
  if (!b) return;
  const trace = [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
    '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
    '{"op":"poke","addr":"m+16","hex":"deadbeef"}',
    '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":"m","guest_memfd":"g","guest_memfd_offset":0}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":16}},{"store":{"gpa":1048576,"hex":"aabbccdd"}}]}',
    '{"op":"fallocate","fd":"g","mode":3,"offset":0,"len":4096}',
    '{"op":"peek","addr":"m+16","len":4}',
  ];
  const expected = [
    '{"ok":true}',
    '{"ok":true}',
    '{"ok":true}',
    '{"ok":true}',
    '{"ok":true}',
    '{"ok":true}',
    '{"ok":true,"exits":[{"reason":"LOAD","gpa":16,"hex":"deadbeef"},{"reason":"MMIO","gpa":1048576,"len":4,"is_write":true,"hex":"aabbccdd"},{"reason":"HLT"}]}',
    '{"ok":true}',
    '{"ok":true,"value":"00000000"}',
  ].map((s) => JSON.parse(s) as Json);
  assert.deepEqual(runLines(b, trace), expected);
});

test('a trace leaks no fds and no mappings', (t) => {
  const b = backendWith(t, 'guest_memfd', 'guest_memfd_mmap', 'guest_memfd_init_shared');
  if (!b) return;
  const trace = [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
    '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
    '{"op":"mmap","fd":null,"length":8192,"prot":3,"flags":2,"offset":0,"as":"a"}',
    '{"op":"munmap","addr":"a+4096","length":4096}',
    '{"op":"mprotect","addr":"a","length":4096,"prot":1}',
    '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":"m","guest_memfd":"g","guest_memfd_offset":0}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":1,"as":"cpu1"}',
    '{"op":"mmap","fd":"cpu","length":12288,"prot":3,"flags":1,"offset":0,"as":"r"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":16}}]}',
    '{"op":"peek","addr":"m","len":16}',
    '{"op":"poke","addr":"m","hex":"01"}',
    '{"op":"close","fd":"cpu1"}',
  ];
  const fds = (): string[] => readdirSync('/proc/self/fd').sort();
  const inArena = (): string[] =>
    readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .filter((l) => {
        if (l.length === 0) return false;
        const start = BigInt('0x' + l.split('-')[0]);
        return start >= MMAP_ARENA_BASE && start < MMAP_ARENA_END;
      });
  const kvmMaps = (): string[] =>
    readFileSync('/proc/self/maps', 'utf8')
      .split('\n')
      .filter((l) => /kvm|gmem/.test(l));
  runLines(b, trace); // warm-up (lazy libc/koffi allocations)
  const fd0 = fds();
  const a0 = inArena();
  const codePageLike = (): Set<string> =>
    new Set(
      readMaps()
        .filter((m) => m.end - m.start === 4096n && m.perms === 'rw-p' && m.path === '')
        .map((m) => hex(m.start)),
    );
  const pages0 = codePageLike();
  const results = runLines(b, trace);
  assert.ok(
    results.every((r) => r['ok'] === true),
    JSON.stringify(results),
  );
  assert.deepEqual(fds(), fd0, 'open fds after the trace');
  assert.deepEqual(inArena(), a0, 'arena mappings after the trace');
  assert.deepEqual(kvmMaps(), [], 'no kvm / guest_memfd mappings remain');
  const newPages = [...codePageLike()].filter((a) => !pages0.has(a));
  assert.deepEqual(newPages, [], 'no new 4 KiB anonymous pages (the code pages are unmapped)');
});

test('mmap places mappings at the arena cursor and fails ENOMEM past the arena', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const a = MMAP_ARENA_BASE;
  const bAddr = nextArenaCursor(a, 4096n);
  const c = nextArenaCursor(bAddr, 0x300000n);
  const r = runLines(b, [
    L({ op: 'mmap', fd: null, length: 1, prot: 3, flags: 2, offset: 0, as: 'a' }),
    L({ op: 'mmap', fd: null, length: 0x300000, prot: 3, flags: 2, offset: 0, as: 'b' }),
    L({ op: 'mmap', fd: null, length: 0, prot: 3, flags: 2, offset: 0, as: 'zero' }),
    L({ op: 'mmap', fd: null, length: 4096, prot: 3, flags: 2, offset: 0, as: 'c' }),
    L({ op: 'poke', addr: hex(a), hex: '11' }),
    L({ op: 'peek', addr: 'a', len: 1 }),
    L({ op: 'poke', addr: hex(bAddr + 0x2fffffn), hex: '22' }),
    L({ op: 'peek', addr: 'b+0x2fffff', len: 1 }),
    L({ op: 'poke', addr: hex(c), hex: '33' }),
    L({ op: 'peek', addr: 'c', len: 1 }),
    L({ op: 'peek', addr: hex(a + 4096n), len: 1 }), // guard page after a
    L({
      op: 'mmap',
      fd: null,
      length: hex(MMAP_ARENA_END - MMAP_ARENA_BASE),
      prot: 0,
      flags: 0x4002,
      offset: 0,
    }),
    L({ op: 'mmap', fd: null, length: '0xffffffffffffffff', prot: 3, flags: 2, offset: 0 }),
  ]);
  assert.deepEqual(r, [
    { ok: true },
    { ok: true },
    { ok: false, errno: 'EINVAL' },
    { ok: true },
    { ok: true },
    { ok: true, value: '11' },
    { ok: true },
    { ok: true, value: '22' },
    { ok: true },
    { ok: true, value: '33' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, errno: 'ENOMEM' },
    { ok: false, errno: 'ENOMEM' },
  ]);
});

test('peek/poke report SIGSEGV for unmapped, PROT_NONE and stale mappings', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const r = runLines(b, [
    L({ op: 'mmap', fd: null, length: 8192, prot: 3, flags: 2, offset: 0, as: 'a' }),
    L({ op: 'peek', addr: 'a+8192', len: 1 }), // the guard page after the mapping: unmapped
    L({ op: 'poke', addr: 'a+8192', hex: '00' }),
    L({ op: 'peek', addr: hex(MMAP_ARENA_BASE + (1n << 40n) + 0x1000n), len: 4 }), // never mapped
    L({ op: 'mprotect', addr: 'a', length: 4096, prot: 0 }),
    L({ op: 'peek', addr: 'a', len: 4 }),
    L({ op: 'poke', addr: 'a', hex: '00' }),
    L({ op: 'mprotect', addr: 'a', length: 4096, prot: 1 }),
    L({ op: 'peek', addr: 'a', len: 4 }),
    L({ op: 'poke', addr: 'a', hex: '00' }), // read-only: a store faults
    L({ op: 'munmap', addr: 'a', length: 8192 }),
    L({ op: 'peek', addr: 'a+4096', len: 4 }), // stale handle
    L({ op: 'poke', addr: 'a', hex: '00' }),
    L({ op: 'peek', addr: 16, len: 4 }), // below mmap_min_addr
    L({ op: 'peek', addr: '0xffff800000000000', len: 4 }), // kernel half
  ]);
  assert.deepEqual(r, [
    { ok: true },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: true },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: true },
    { ok: true, value: '00000000' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: true },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, fault: 'SIGSEGV' },
    { ok: false, fault: 'SIGSEGV' },
  ]);
});

test('peek/poke report SIGBUS for private guest_memfd pages and pages past EOF', (t) => {
  const b = backendWith(t, 'guest_memfd', 'guest_memfd_mmap', 'guest_memfd_init_shared');
  if (!b) return;
  const r = runLines(b, [
    L({ op: 'KVM_CREATE_VM', type: 0, as: 'vm' }),
    L({ op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 8192, flags: 1, as: 'priv' }),
    L({ op: 'mmap', fd: 'priv', length: 8192, prot: 3, flags: 1, offset: 0, as: 'p' }),
    L({ op: 'peek', addr: 'p', len: 4 }),
    L({ op: 'poke', addr: 'p+4096', hex: '01' }),
    L({ op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 4096, flags: 3, as: 'sh' }),
    L({ op: 'mmap', fd: 'sh', length: 8192, prot: 3, flags: 1, offset: 0, as: 's' }),
    L({ op: 'poke', addr: 's+4092', hex: '01020304' }),
    L({ op: 'peek', addr: 's+4092', len: 4 }),
    L({ op: 'peek', addr: 's+4096', len: 4 }),
    L({ op: 'poke', addr: 's+4096', hex: '01' }),
    L({ op: 'peek', addr: 's+4092', len: 8 }),
  ]);
  assert.deepEqual(r, [
    { ok: true },
    { ok: true },
    { ok: true },
    { ok: false, fault: 'SIGBUS' },
    { ok: false, fault: 'SIGBUS' },
    { ok: true },
    { ok: true },
    { ok: true },
    { ok: true, value: '01020304' },
    { ok: false, fault: 'SIGBUS' },
    { ok: false, fault: 'SIGBUS' },
    { ok: false, fault: 'SIGBUS' },
  ]);
});

test('a poke across a page boundary into an unmapped page writes the first part', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const r = runLines(b, [
    L({ op: 'mmap', fd: null, length: 8192, prot: 3, flags: 2, offset: 0, as: 'a' }),
    L({ op: 'munmap', addr: 'a+4096', length: 4096 }),
    L({ op: 'poke', addr: 'a+4094', hex: 'aabbccdd' }),
    L({ op: 'peek', addr: 'a+4092', len: 4 }),
    L({ op: 'peek', addr: 'a+4092', len: 8 }),
  ]);
  assert.deepEqual(r, [
    { ok: true },
    { ok: true },
    { ok: false, fault: 'SIGSEGV' },
    { ok: true, value: '0000aabb' },
    { ok: false, fault: 'SIGSEGV' },
  ]);
});

test('raw addresses that overlap the backend process memory are refused', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const own = readMaps().find((m) => m.start >= 0x10000n && m.end <= MMAP_ARENA_BASE);
  assert.ok(own !== undefined, 'the process has some mapping below the arena');
  const attempts: Json[] = [
    { op: 'peek', addr: hex(own.start), len: 8 },
    { op: 'poke', addr: hex(own.start), hex: '00' },
    { op: 'munmap', addr: hex(own.start), length: 4096 },
    { op: 'mprotect', addr: hex(own.start), length: 4096, prot: 0 },
    { op: 'madvise', addr: hex(own.start), length: 4096, advice: 4 },
  ];
  for (const a of attempts) {
    const before: unknown = readMaps().find((m) => m.start === own.start);
    assert.throws(
      () => runLines(b, ['{"op":"KVM_CREATE_VM","type":0,"as":"vm"}', L(a)]),
      BackendRefusal,
      JSON.stringify(a),
    );
    assert.deepEqual(
      readMaps().find((m) => m.start === own.start),
      before,
    );
  }
  const region = [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    L({
      op: 'KVM_SET_USER_MEMORY_REGION',
      vm: 'vm',
      slot: 0,
      flags: 0,
      guest_phys_addr: 0,
      memory_size: 4096,
      userspace_addr: hex(own.start),
    }),
  ];
  assert.throws(() => runLines(b, region), BackendRefusal);
  // Arena memory that somebody else (V8) held when the arena was reserved is refused as well.
  const foreign = arena.foreign.list[0];
  if (foreign !== undefined)
    assert.throws(
      () => runLines(b, [L({ op: 'peek', addr: hex(foreign.s), len: 1 })]),
      BackendRefusal,
    );
  // A range straddling the arena start is fine when the part outside the arena is unmapped.
  assert.deepEqual(
    runLines(b, [L({ op: 'peek', addr: hex(MMAP_ARENA_BASE - 4096n), len: 8192 })]),
    [{ ok: false, fault: 'SIGSEGV' }],
  );
  // The backend is still usable after refusals.
  assert.deepEqual(runLines(b, ['{"op":"KVM_CHECK_EXTENSION","cap":3}']), [{ ok: true, value: 1 }]);
});

test('memory limits: fallocate of a guest_memfd is refused only when it could allocate', (t) => {
  const b = backendWith(t, 'guest_memfd', 'guest_memfd_init_shared');
  if (!b) return;
  const gib2 = '0x80000000';
  const vmGmem = [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    L({ op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: '0x100000000', flags: 3, as: 'g' }),
  ];
  // 2 GiB inside i_size with KEEP_SIZE would allocate: refused before anything runs.
  assert.throws(
    () => runLines(b, [...vmGmem, L({ op: 'fallocate', fd: 'g', mode: 1, offset: 0, len: gib2 })]),
    BackendRefusal,
  );
  // Past EOF, without KEEP_SIZE, unaligned: the kernel refuses before allocating.
  assert.deepEqual(
    runLines(b, [
      ...vmGmem,
      L({ op: 'fallocate', fd: 'g', mode: 1, offset: 0, len: '0x200000000' }),
      L({ op: 'fallocate', fd: 'g', mode: 0, offset: 0, len: gib2 }),
      L({ op: 'fallocate', fd: 'g', mode: 1, offset: 1, len: gib2 }),
    ]).slice(2),
    [
      { ok: false, errno: 'EINVAL' },
      { ok: false, errno: 'EOPNOTSUPP' },
      { ok: false, errno: 'EINVAL' },
    ],
  );
});

test('memory limits refuse only calls that could allocate; early kernel rejections run', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  // MADV_POPULATE counts only the trace's mapped bytes; a wrapping length is EINVAL at once.
  assert.deepEqual(
    runLines(b, [
      L({ op: 'mmap', fd: null, length: 8192, prot: 3, flags: 2, offset: 0, as: 'm' }),
      L({ op: 'madvise', addr: 'm', length: '0x100000000', advice: 22 }),
      L({ op: 'madvise', addr: 'm', length: '0xfffffffffffff000', advice: 23 }),
    ]),
    [{ ok: true }, { ok: false, errno: 'ENOMEM' }, { ok: false, errno: 'EINVAL' }],
  );
  // Memslots the kernel rejects before creating them run even over the process's memory.
  const own = readMaps().find((m) => m.start >= 0x10000n && m.end <= MMAP_ARENA_BASE)!;
  const slot = (size: string, ua: string, slotId = 0): string => L(memslotOp(ua, size, slotId));
  assert.deepEqual(
    runLines(b, [
      '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
      slot('0x80000000000', '0'),
      slot('0xfffffffffffff000', hex(own.start)),
      slot('0x1000', hex(own.start + 1n)),
      slot('0x1000', hex(own.start), 32764),
    ]).slice(1),
    Array(4).fill({ ok: false, errno: 'EINVAL' }),
  );
});

test('madvise(MADV_HWPOISON / MADV_SOFT_OFFLINE) is refused', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  for (const advice of [100, 101])
    assert.throws(
      () =>
        runLines(b, [
          L({ op: 'mmap', fd: null, length: 4096, prot: 3, flags: 2, offset: 0, as: 'a' }),
          L({ op: 'madvise', addr: 'a', length: 4096, advice }),
        ]),
      BackendRefusal,
    );
});

test('raw fds never reach the process’s own files', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const r = runLines(b, [
    L({ op: 'pread', fd: 0, len: 4, offset: 0 }),
    L({ op: 'pwrite', fd: 1, hex: '41', offset: 0 }),
    L({ op: 'fstat', fd: 2 }),
    L({ op: 'close', fd: 2 }),
    L({ op: 'close', fd: 3 }),
    L({ op: 'mmap', fd: 1, length: 4096, prot: 1, flags: 2, offset: 0 }),
    L({ op: 'close', fd: -1 }),
    L({ op: 'KVM_CHECK_EXTENSION', fd: 0, cap: 234 }),
    L({ op: 'KVM_CHECK_EXTENSION', fd: 4, cap: 234 }),
    // 0xffffffff is -1 as the C int it fills (wider values are input errors).
    L({ op: 'KVM_CHECK_EXTENSION', fd: '0xffffffff', cap: 234 }),
  ]);
  assert.deepEqual(r, [
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'ENOTTY' },
    { ok: false, errno: 'EBADF' },
    { ok: false, errno: 'EBADF' },
  ]);
});

test('KVM_RUN: MMIO reads complete with zeros and stores to unbacked GPAs exit as MMIO writes', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const r = runLines(b, [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"mmap","fd":null,"length":8192,"prot":3,"flags":2,"offset":0,"as":"ram"}',
    '{"op":"poke","addr":"ram+8188","hex":"11223344"}',
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":0,"flags":0,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":"ram"}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":"0x200000","size":4}},{"load":{"gpa":"0x200000","size":2}},{"load":{"gpa":"0x200001","size":1}},{"store":{"gpa":"0x200000","hex":"0102"}},{"store":{"gpa":16,"hex":"aa"}},{"load":{"gpa":16}},{"load":{"gpa":8188}}]}',
  ]);
  assert.deepEqual(r[5], {
    ok: true,
    exits: [
      { reason: 'MMIO', gpa: 0x200000, len: 4, is_write: false },
      { reason: 'LOAD', gpa: 0x200000, hex: '00000000' },
      { reason: 'MMIO', gpa: 0x200000, len: 2, is_write: false },
      { reason: 'LOAD', gpa: 0x200000, hex: '0000' },
      { reason: 'MMIO', gpa: 0x200001, len: 1, is_write: false },
      { reason: 'LOAD', gpa: 0x200001, hex: '00' },
      { reason: 'MMIO', gpa: 0x200000, len: 2, is_write: true, hex: '0102' },
      { reason: 'LOAD', gpa: 16, hex: 'aa000000' },
      { reason: 'LOAD', gpa: 8188, hex: '11223344' },
      { reason: 'HLT' },
    ],
  });
});

test('KVM_RUN: a program longer than one code page runs in batches', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const steps: Json[] = [];
  const expected: Json[] = [];
  for (let i = 0; i < 700; i++) {
    const v = (0x01000000 + i).toString(16).padStart(8, '0');
    const memHex = v.match(/../g)!.join('');
    steps.push({ store: { gpa: 4 * i, hex: memHex } });
    steps.push({ load: { gpa: 4 * i } });
    expected.push({ reason: 'LOAD', gpa: 4 * i, hex: memHex });
  }
  expected.push({ reason: 'HLT' });
  assert.ok(
    compileGuest(steps.map((s) => ('store' in s ? storeStep(s) : loadStep(s)))).batches.length >= 3,
    'needs several batches',
  );
  const r = runLines(b, [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"mmap","fd":null,"length":8192,"prot":3,"flags":2,"offset":0,"as":"ram"}',
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":0,"flags":0,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":"ram"}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    L({ op: 'KVM_RUN', vcpu: 'cpu', guest: steps }),
    '{"op":"peek","addr":"ram+2796","len":4}',
  ]);
  assert.deepEqual(r[4], { ok: true, exits: expected });
  assert.deepEqual(r[5], { ok: true, value: '010002bb' });
});

function storeStep(s: Json): GuestProgramStep {
  const st = s['store'] as { gpa: number; hex: string };
  return guestStore(BigInt(st.gpa), Uint8Array.from(Buffer.from(st.hex, 'hex')));
}
function loadStep(s: Json): GuestProgramStep {
  return guestLoad(BigInt((s['load'] as { gpa: number }).gpa), 4);
}

test('KVM_RUN: ENOEXEC while the trace blocks the code slot, normal again once it is free', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const r = runLines(b, [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"mmap","fd":null,"length":"0x200000","prot":3,"flags":2,"offset":0,"as":"top"}',
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":7,"flags":0,"guest_phys_addr":"0xffe00000","memory_size":"0x200000","userspace_addr":"top"}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":"0x100000"}}]}',
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":7,"flags":0,"guest_phys_addr":"0xffe00000","memory_size":0,"userspace_addr":"top"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":"0x100000","size":1}}]}',
  ]);
  assert.deepEqual(r.slice(4), [
    { ok: false, errno: 'ENOEXEC', exits: [] },
    { ok: true },
    {
      ok: true,
      exits: [
        { reason: 'MMIO', gpa: 0x100000, len: 1, is_write: false },
        { reason: 'LOAD', gpa: 0x100000, hex: '00' },
        { reason: 'HLT' },
      ],
    },
  ]);
});

test('KVM_RUN on objects that are not vCPUs reports the ioctl error', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  const r = runLines(b, [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"KVM_RUN","vcpu":"vm","guest":[]}',
    '{"op":"KVM_RUN","vcpu":"kvm","guest":[]}',
    '{"op":"KVM_RUN","vcpu":-1,"guest":[]}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"close","fd":"cpu"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[]}',
  ]);
  assert.deepEqual(r, [
    { ok: true },
    { ok: false, errno: 'ENOTTY', exits: [] },
    { ok: false, errno: 'EINVAL', exits: [] },
    { ok: false, errno: 'EBADF', exits: [] },
    { ok: true },
    { ok: true },
    { ok: false, errno: 'EBADF', exits: [] },
  ]);
});

test('KVM_RUN: a gmem-only slot whose guest_memfd file was released', (t) => {
  const b = backendWith(t, 'guest_memfd', 'guest_memfd_init_shared');
  if (!b) return;
  const r = runLines(b, [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
    '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":0,"guest_memfd":"g","guest_memfd_offset":0}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"close","fd":"g"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":16}}]}',
  ]);
  const run = r[5]!;
  const memoryFault = {
    ok: false,
    errno: 'EFAULT',
    exits: [{ reason: 'MEMORY_FAULT', gpa: 16 & ~4095, size: 4096, flags: 0 }],
  };
  // On a PVM host with the guest's paging off, KVM emulates every guest instruction and reads
  // guest memory through userspace_addr (0 here): the failed user copy becomes an MMIO read.
  const emulated = {
    ok: true,
    exits: [
      { reason: 'MMIO', gpa: 16, len: 4, is_write: false },
      { reason: 'LOAD', gpa: 16, hex: '00000000' },
      { reason: 'HLT' },
    ],
  };
  const which =
    JSON.stringify(run) === JSON.stringify(emulated) ? 'emulated MMIO read (PVM)' : 'MEMORY_FAULT';
  console.log(`# gmem-only slot after release: ${which}: ${JSON.stringify(run)}`);
  assert.ok(
    JSON.stringify(run) === JSON.stringify(emulated) ||
      JSON.stringify(run) === JSON.stringify(memoryFault),
    JSON.stringify(run),
  );
});

test('KVM_RUN: a guest that never exits is interrupted by the watchdog', (t) => {
  const b = backendOrSkip(t);
  if (!b) return;
  // The first step (a 2-byte store, 9 bytes of code) overwrites the next instruction with
  // `jmp $` (EB FE) in the code page itself, so the vCPU spins without exits.
  const t0 = Date.now();
  const r = runLines(b, [
    '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
    '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"store":{"gpa":"0xfffff009","hex":"ebfe"}},{"load":{"gpa":16}}]}',
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":"0x100000","size":1}}]}',
  ]);
  assert.deepEqual(r[2], { ok: false, errno: 'EINTR', exits: [] });
  assert.ok(Date.now() - t0 < 10_000);
  assert.equal((r[3] as { ok: boolean }).ok, true, 'the vCPU runs normally afterwards');
});
