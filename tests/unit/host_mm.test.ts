/**
 * Unit tests for src/core/mm/host_mm.ts (and the placement rule of host_layout.ts): mmap placement,
 * every mmap errno the trace contract relies on, munmap / mprotect / madvise errnos and effects,
 * and VMM accesses (peek/poke) with their SIGSEGV/SIGBUS outcomes (kernel-uapi.md §2.3,
 * trace-format.md).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { asHva, hvaToHvpn } from '../../src/core/base/units.js';
import {
  ARENA_BASE,
  GMEM_MMAP,
  GMEM_SHARED,
  MADV_DONTNEED,
  MADV_REMOVE,
  MAP_PRIVATE,
  MAP_SHARED,
  MAP_SHARED_VALIDATE,
  MiB,
  PAGE,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  RW,
  createGmem,
  createVcpu,
  createVm,
  fails,
  gmemOf,
  mmapAnon,
  mmapFd,
  newHost,
  ok,
  peekHex,
  poke,
  type Ctx,
} from './helpers.js';

const TWO_MIB = 2n * MiB;
const TASK_SIZE_MAX = 0x7fff_ffff_f000n;
const SEGV = { ok: false, fault: 'SIGSEGV' };
const BUS = { ok: false, fault: 'SIGBUS' };
const MAP_ANONYMOUS = 0x20;
const MAP_LOCKED = 0x2000;
const MAP_NORESERVE = 0x4000;
const MADV_COLLAPSE = 25;
const MADV_POPULATE_READ = 22;

function gmemHost(flags = GMEM_SHARED, size = 4n * PAGE): { c: Ctx; g: number } {
  const c = newHost('linux-6.18-pvm');
  const vm = createVm(c);
  return { c, g: createGmem(c, vm, size, flags) };
}

describe('mmap placement: 2 MiB aligned, a guard page after each mapping, never reused', () => {
  test('addresses grow from the arena base: 4 KiB → next 2 MiB slot; 2 MiB → next is 4 MiB on', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    assert.equal(a, ARENA_BASE);
    const b = mmapAnon(c, TWO_MIB);
    assert.equal(b, ARENA_BASE + TWO_MIB);
    const d = mmapAnon(c, 1n);
    assert.equal(d, b + 2n * TWO_MIB, '2 MiB + guard page rounds up to 4 MiB');
    const e = mmapAnon(c, TWO_MIB - PAGE);
    assert.equal(e, d + TWO_MIB);
    const f = mmapAnon(c, PAGE);
    assert.equal(f, e + TWO_MIB, '2 MiB - 4 KiB leaves exactly one guard page');
    for (const x of [a, b, d, e, f]) assert.equal(x % TWO_MIB, 0n);
  });

  test('the page after a mapping is unmapped (guard): access → SIGSEGV', () => {
    const c = newHost();
    const a = mmapAnon(c, TWO_MIB - PAGE);
    poke(c, a + TWO_MIB - PAGE - 1n, '01');
    assert.deepEqual(c.h.peek(a + TWO_MIB - PAGE, 1), SEGV);
  });

  test('a range is never reused after munmap; a stale address faults SIGSEGV', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    poke(c, a, '42');
    ok(c.h.munmap(a, PAGE));
    const b = mmapAnon(c, PAGE);
    assert.ok(b > a);
    assert.deepEqual(c.h.peek(a, 1), SEGV);
    assert.deepEqual(c.h.poke(a, new Uint8Array([1])), SEGV);
  });

  test('a failed mmap does not move the cursor', () => {
    const c = newHost();
    fails(c.h.mmap(null, 0n, RW, MAP_PRIVATE, 0n), 'EINVAL');
    assert.equal(mmapAnon(c, PAGE), ARENA_BASE);
  });
});

describe('mmap errnos', () => {
  test('offset not page aligned → EINVAL (file and anonymous), before the fd lookup', () => {
    const { c, g } = gmemHost();
    fails(c.h.mmap(g, PAGE, RW, MAP_SHARED, 1n), 'EINVAL', 'gmem');
    fails(c.h.mmap(null, PAGE, RW, MAP_PRIVATE, 2048n), 'EINVAL', 'anon');
    fails(c.h.mmap(-1, PAGE, RW, MAP_SHARED, 1n), 'EINVAL', 'closed fd');
    fails(c.h.mmap(-1, PAGE, RW, MAP_SHARED, 0n), 'EBADF', 'closed fd, aligned offset');
  });

  test('length 0 → EINVAL (after the fd lookup)', () => {
    const { c, g } = gmemHost();
    fails(c.h.mmap(null, 0n, RW, MAP_PRIVATE, 0n), 'EINVAL', 'anon');
    fails(c.h.mmap(g, 0n, RW, MAP_SHARED, 0n), 'EINVAL', 'gmem');
    fails(c.h.mmap(-1, 0n, RW, MAP_SHARED, 0n), 'EBADF', 'closed fd wins over len 0');
  });

  test('guest_memfd: MAP_PRIVATE → EINVAL (selftest mmap_cow); MAP_SHARED and MAP_SHARED_VALIDATE ok', () => {
    const { c, g } = gmemHost();
    fails(c.h.mmap(g, PAGE, RW, MAP_PRIVATE, 0n), 'EINVAL');
    fails(c.h.mmap(g, PAGE, PROT_READ, MAP_PRIVATE, 0n), 'EINVAL', 'read-only private');
    ok(c.h.mmap(g, PAGE, RW, MAP_SHARED, 0n));
    ok(c.h.mmap(g, PAGE, RW, MAP_SHARED_VALIDATE, 0n));
    fails(
      c.h.mmap(g, PAGE, RW, MAP_SHARED_VALIDATE | 0x80000, 0n),
      'EOPNOTSUPP',
      'VALIDATE + MAP_SYNC',
    );
  });

  test('guest_memfd: PROT_EXEC → EPERM, also for a file without MMAP (noexec precedes ENODEV) [§7]', () => {
    const { c, g } = gmemHost();
    fails(c.h.mmap(g, PAGE, PROT_READ | PROT_EXEC, MAP_SHARED, 0n), 'EPERM');
    const { c: c2, g: g2 } = gmemHost(0n);
    fails(c2.h.mmap(g2, PAGE, PROT_EXEC, MAP_SHARED, 0n), 'EPERM');
    fails(c2.h.mmap(g2, PAGE, PROT_EXEC, MAP_PRIVATE, 0n), 'EPERM', 'private too');
  });

  test('guest_memfd without GUEST_MEMFD_FLAG_MMAP → ENODEV (selftest mmap_not_supported)', () => {
    for (const flags of [0n, 2n]) {
      const { c, g } = gmemHost(flags);
      fails(c.h.mmap(g, PAGE, RW, MAP_SHARED, 0n), 'ENODEV', `flags ${flags}`);
      fails(c.h.mmap(g, 4n * PAGE, RW, MAP_SHARED, 0n), 'ENODEV', `flags ${flags}, whole file`);
      fails(
        c.h.mmap(g, PAGE, RW, MAP_PRIVATE, 0n),
        'ENODEV',
        'the file check comes before MAP_PRIVATE',
      );
    }
  });

  test('/dev/kvm and VM fds have no mmap → ENODEV; a vCPU fd maps', () => {
    const c = newHost();
    const vm = createVm(c);
    const vcpu = createVcpu(c, vm);
    fails(c.h.mmap(c.kvm, PAGE, RW, MAP_SHARED, 0n), 'ENODEV', '/dev/kvm');
    fails(c.h.mmap(vm, PAGE, RW, MAP_SHARED, 0n), 'ENODEV', 'VM');
    ok(c.h.mmap(vcpu, 3n * PAGE, RW, MAP_SHARED, 0n));
  });

  test('anonymous MAP_SHARED_VALIDATE → EINVAL; a bad MAP_TYPE → EINVAL', () => {
    const c = newHost();
    fails(c.h.mmap(null, PAGE, RW, MAP_SHARED_VALIDATE, 0n), 'EINVAL');
    fails(c.h.mmap(null, PAGE, RW, 0, 0n), 'EINVAL', 'type 0');
    const { c: c2, g } = gmemHost();
    fails(c2.h.mmap(g, PAGE, RW, 0, 0n), 'EINVAL', 'file, type 0');
  });

  test('MAP_ANONYMOUS ignores the fd', () => {
    const c = newHost();
    const a = ok(c.h.mmap(-1, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0n));
    poke(c, a, '01');
  });
});

describe('munmap', () => {
  test('errnos: unaligned address, length 0, beyond TASK_SIZE → EINVAL; an unmapped range is fine', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    fails(c.h.munmap(a + 1n, PAGE), 'EINVAL', 'unaligned');
    fails(c.h.munmap(a, 0n), 'EINVAL', 'len 0');
    fails(c.h.munmap(TASK_SIZE_MAX + PAGE, PAGE), 'EINVAL', 'beyond TASK_SIZE');
    fails(c.h.munmap(TASK_SIZE_MAX - PAGE, 2n * PAGE), 'EINVAL', 'end beyond TASK_SIZE');
    ok(c.h.munmap(a + 16n * MiB, PAGE), 'nothing mapped there');
    ok(c.h.munmap(a, 1n), 'len rounds up');
    assert.deepEqual(c.h.peek(a, 1), SEGV);
  });

  test('partial munmap leaves the rest mapped with its data', () => {
    const c = newHost();
    const a = mmapAnon(c, 3n * PAGE);
    poke(c, a, '01');
    poke(c, a + 2n * PAGE, '03');
    ok(c.h.munmap(a + PAGE, PAGE));
    assert.equal(peekHex(c, a, 1), '01');
    assert.deepEqual(c.h.peek(a + PAGE, 1), SEGV);
    assert.equal(peekHex(c, a + 2n * PAGE, 1), '03');
  });
});

describe('mprotect', () => {
  test('errnos: unaligned → EINVAL; unknown prot bits → EINVAL; no VMA → ENOMEM; length 0 → success', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    fails(c.h.mprotect(a + 1n, PAGE, PROT_READ), 'EINVAL');
    fails(c.h.mprotect(a, PAGE, 0x10), 'EINVAL');
    fails(c.h.mprotect(a, PAGE, 0x03000000), 'EINVAL', 'GROWSDOWN|GROWSUP');
    fails(c.h.mprotect(a + 8n * MiB, PAGE, PROT_READ), 'ENOMEM');
    ok(c.h.mprotect(a + 8n * MiB, 0n, PROT_READ), 'len 0 on nothing');
  });

  test('permissions take effect: read-only refuses writes, PROT_NONE refuses reads', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    poke(c, a, '2a');
    ok(c.h.mprotect(a, PAGE, PROT_READ));
    assert.deepEqual(c.h.poke(a, new Uint8Array([1])), SEGV);
    assert.equal(peekHex(c, a, 1), '2a');
    ok(c.h.mprotect(a, PAGE, PROT_NONE));
    assert.deepEqual(c.h.peek(a, 1), SEGV);
    ok(c.h.mprotect(a, PAGE, RW));
    assert.equal(peekHex(c, a, 1), '2a', 'data kept');
  });

  test('a hole → ENOMEM after the VMAs before it were changed', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    fails(c.h.mprotect(a, 2n * PAGE, PROT_READ), 'ENOMEM');
    assert.deepEqual(c.h.poke(a, new Uint8Array([1])), SEGV, 'first page became read-only');
  });

  test('PROT_EXEC on a guest_memfd mapping → EACCES (no VM_MAYEXEC) and nothing changes', () => {
    const { c, g } = gmemHost();
    const m = mmapFd(c, g, PAGE);
    fails(c.h.mprotect(m, PAGE, PROT_READ | PROT_EXEC), 'EACCES');
    poke(c, m, '01');
    // Anonymous memory may become executable.
    const a = mmapAnon(c, PAGE);
    ok(c.h.mprotect(a, PAGE, PROT_READ | PROT_EXEC));
  });
});

describe('madvise', () => {
  test('errnos: unknown advice, unaligned start → EINVAL; length 0 → success', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    fails(c.h.madvise(a, PAGE, 7), 'EINVAL', 'advice 7');
    fails(c.h.madvise(a, PAGE, 999), 'EINVAL', 'advice 999');
    fails(c.h.madvise(a + 1n, PAGE, MADV_DONTNEED), 'EINVAL');
    ok(c.h.madvise(a + 64n * MiB, 0n, MADV_DONTNEED), 'len 0');
  });

  test('MADV_DONTNEED: drops private anonymous data, keeps guest_memfd and shared-anonymous data', () => {
    const { c, g } = gmemHost();
    const a = mmapAnon(c, PAGE);
    const s = mmapAnon(c, PAGE, RW, MAP_SHARED);
    const m = mmapFd(c, g, PAGE);
    for (const x of [a, s, m]) poke(c, x, 'abcd');
    for (const x of [a, s, m]) ok(c.h.madvise(x, PAGE, MADV_DONTNEED));
    assert.equal(peekHex(c, a, 2), '0000', 'private anon: zero-fill on next touch');
    assert.equal(peekHex(c, s, 2), 'abcd', 'shmem keeps its pages');
    assert.equal(peekHex(c, m, 2), 'abcd', 'guest_memfd keeps its pages');
  });

  test('MADV_REMOVE on guest_memfd = PUNCH_HOLE of the mapped file range', () => {
    const { c, g } = gmemHost();
    const m = ok(c.h.mmap(g, 2n * PAGE, RW, MAP_SHARED, PAGE)); // file pages 1..2
    const whole = mmapFd(c, g, 4n * PAGE);
    for (let i = 0n; i < 4n; i++) poke(c, whole + i * PAGE, '0' + String(i + 1n));
    ok(c.h.madvise(m + PAGE, PAGE, MADV_REMOVE)); // file page 2
    assert.equal(peekHex(c, whole + PAGE, 1), '02');
    assert.equal(peekHex(c, whole + 2n * PAGE, 1), '00', 'punched');
    assert.equal(peekHex(c, whole + 3n * PAGE, 1), '04');
    // A file without INIT_SHARED can still be punched through its mapping.
    const { c: c2, g: g2 } = gmemHost(GMEM_MMAP);
    ok(c2.h.fallocate(g2, 1, 0n, 4n * PAGE));
    const m2 = mmapFd(c2, g2, 4n * PAGE);
    ok(c2.h.madvise(m2, 2n * PAGE, MADV_REMOVE));
    assert.equal(gmemOf(c2, g2).pages.get(0), undefined);
    assert.equal(gmemOf(c2, g2).pages.get(2)!.state, 'allocated');
  });

  test('MADV_REMOVE: private anonymous → EINVAL; shared anonymous → zeroes', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    poke(c, a, '11');
    fails(c.h.madvise(a, PAGE, MADV_REMOVE), 'EINVAL');
    assert.equal(peekHex(c, a, 1), '11', 'untouched');
    const s = mmapAnon(c, PAGE, RW, MAP_SHARED);
    poke(c, s, '22');
    ok(c.h.madvise(s, PAGE, MADV_REMOVE));
    assert.equal(peekHex(c, s, 1), '00');
  });

  test('MADV_COLLAPSE on a guest_memfd mapping → EINVAL', () => {
    const { c, g } = gmemHost();
    const m = mmapFd(c, g, 4n * PAGE);
    fails(c.h.madvise(m, 4n * PAGE, MADV_COLLAPSE), 'EINVAL');
  });

  test('holes → ENOMEM, after acting on the mapped part (DONTNEED and REMOVE)', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    poke(c, a, 'ff');
    fails(c.h.madvise(a, 2n * PAGE, MADV_DONTNEED), 'ENOMEM');
    assert.equal(peekHex(c, a, 1), '00', 'the mapped page was dropped');
    fails(c.h.madvise(a - PAGE, 2n * PAGE, MADV_DONTNEED), 'ENOMEM', 'hole before');
    fails(c.h.madvise(a + 4n * PAGE, PAGE, MADV_DONTNEED), 'ENOMEM', 'only a hole');

    const { c: c2, g } = gmemHost(GMEM_SHARED, PAGE);
    const m = mmapFd(c2, g, PAGE);
    poke(c2, m, 'ee');
    fails(c2.h.madvise(m, 2n * PAGE, MADV_REMOVE), 'ENOMEM');
    assert.equal(peekHex(c2, m, 1), '00', 'the mapped part was punched');
  });

  test('a VMA error stops the walk and wins over a hole (REMOVE on private anon, then hole)', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    fails(c.h.madvise(a, 2n * PAGE, MADV_REMOVE), 'EINVAL');
  });
});

describe('VMM accesses: peek / poke', () => {
  test('SIGSEGV for unmapped memory, SIGBUS for a guest_memfd page past EOF or without INIT_SHARED', () => {
    const { c, g } = gmemHost(GMEM_SHARED, PAGE);
    assert.deepEqual(c.h.peek(0x1000n, 1), SEGV);
    assert.deepEqual(c.h.peek(TASK_SIZE_MAX, 1), SEGV, 'kernel half');
    const m = mmapFd(c, g, 2n * PAGE);
    assert.deepEqual(c.h.peek(m + PAGE, 1), BUS);
    const vm = createVm(c);
    const p = createGmem(c, vm, PAGE, GMEM_MMAP);
    const mp = mmapFd(c, p, PAGE);
    assert.deepEqual(c.h.poke(mp, new Uint8Array([1])), BUS);
  });

  test('a poke across a page boundary writes its first part before faulting (SIGBUS and SIGSEGV)', () => {
    const { c, g } = gmemHost(GMEM_SHARED, PAGE);
    const m = mmapFd(c, g, 2n * PAGE);
    assert.deepEqual(c.h.poke(m + PAGE - 4n, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), BUS);
    assert.equal(peekHex(c, m + PAGE - 4n, 4), '01020304');
    const a = mmapAnon(c, PAGE);
    assert.deepEqual(c.h.poke(a + PAGE - 2n, new Uint8Array([0xaa, 0xbb, 0xcc, 0xdd])), SEGV);
    assert.equal(peekHex(c, a + PAGE - 2n, 2), 'aabb');
  });

  test('a peek across into a faulting page faults as a whole', () => {
    const c = newHost();
    const a = mmapAnon(c, PAGE);
    assert.deepEqual(c.h.peek(a + PAGE - 2n, 4), SEGV);
  });

  test('PROT_WRITE-only mappings are readable by the CPU; PROT_EXEC-only are not (PKU)', () => {
    const c = newHost();
    const w = mmapAnon(c, PAGE, PROT_WRITE);
    poke(c, w, '5a');
    assert.equal(peekHex(c, w, 1), '5a');
    const x = mmapAnon(c, PAGE, PROT_EXEC);
    assert.deepEqual(c.h.peek(x, 1), SEGV);
    assert.deepEqual(c.h.poke(x, new Uint8Array([1])), SEGV);
    const rx = mmapAnon(c, PAGE, PROT_READ | PROT_EXEC);
    assert.equal(peekHex(c, rx, 1), '00');
    const none = mmapAnon(c, PAGE, PROT_NONE);
    assert.deepEqual(c.h.peek(none, 1), SEGV);
    // Turning a mapping execute-only with mprotect has the same effect.
    const y = mmapAnon(c, PAGE);
    ok(c.h.mprotect(y, PAGE, PROT_EXEC));
    assert.deepEqual(c.h.peek(y, 1), SEGV);
  });

  test('untouched private anonymous memory reads as zeros; MAP_SHARED anonymous memory is one object', () => {
    const c = newHost();
    const a = mmapAnon(c, 2n * PAGE);
    assert.equal(peekHex(c, a + PAGE, 8), '0000000000000000');
    const s = mmapAnon(c, 2n * PAGE, RW, MAP_SHARED);
    poke(c, s + PAGE + 1n, '77');
    assert.equal(peekHex(c, s + PAGE, 2), '0077');
  });
});

describe('differential-fuzzing findings (conformance/mmap/*: recorded on the PVM kernel)', () => {
  const MADV_POPULATE_WRITE = 23;
  const MAP_POPULATE = 0x8000;
  const TiB = 1n << 40n;
  const GiB = 1n << 30n;

  test('MADV_POPULATE_*: the first gap ends the walk with ENOMEM, before a later VMA can fail', () => {
    const c = newHost('linux-6.18-pvm');
    const a = mmapAnon(c, 4n * MiB);
    mmapAnon(c, 2n * PAGE, PROT_WRITE, MAP_SHARED); // after the gap; POPULATE_READ would be EINVAL
    fails(c.h.madvise(a + 4n * MiB, 4n * MiB, MADV_POPULATE_READ), 'ENOMEM');
    // The pages before the gap are populated: the range now collapses.
    fails(c.h.madvise(a, 8n * MiB, MADV_POPULATE_WRITE), 'ENOMEM');
    ok(c.h.madvise(a, 4n * MiB, MADV_COLLAPSE));
    // Other advice walks every VMA and reports the gap last (madvise_walk_vmas).
    fails(c.h.madvise(a + 2n * MiB, 4n * MiB, MADV_COLLAPSE), 'ENOMEM');
  });

  test('MADV_SEQUENTIAL / MADV_RANDOM split the VMA; MADV_NORMAL merges it back', () => {
    const c = newHost('linux-6.18-pvm');
    const m = mmapAnon(c, 4n * MiB, RW, MAP_SHARED);
    poke(c, m + 0x2f1000n, '44');
    const mid = m + 0x296000n;
    ok(c.h.madvise(mid, 2n * PAGE, 2));
    // The walk meets the 2-page VMA (too small for a huge page) before the unmapped tail.
    fails(c.h.madvise(m + 0x167000n, 4n * MiB, MADV_COLLAPSE), 'EINVAL');
    ok(c.h.madvise(mid, 2n * PAGE, 0));
    fails(c.h.madvise(m + 0x167000n, 4n * MiB, MADV_COLLAPSE), 'ENOMEM');
    ok(c.h.madvise(mid, 2n * PAGE, 1));
    fails(c.h.madvise(m + 0x167000n, 4n * MiB, MADV_COLLAPSE), 'EINVAL');
  });

  test('MADV_COLLAPSE of private anonymous memory needs a page table in the frame, not a page', () => {
    const c = newHost('linux-6.18-pvm');
    const frame = (m: bigint, i: bigint) => c.h.madvise(m + i * TWO_MIB, TWO_MIB, MADV_COLLAPSE);
    // A zero-page read makes the page table; a write elsewhere gives the VMA its anon_vma.
    const a = mmapAnon(c, 2n * TWO_MIB);
    assert.equal(peekHex(c, a + TWO_MIB + 0x8c000n, 1), '00');
    poke(c, a + 0x1000n, '9f');
    ok(frame(a, 1n));
    // Never faulted: no page table (SCAN_PMD_NULL).
    const b = mmapAnon(c, 2n * TWO_MIB);
    poke(c, b + 0x1000n, '9f');
    fails(frame(b, 1n), 'EINVAL');
    // A 4 KiB zap keeps the table; zapping the whole 2 MiB reclaims it.
    const d = mmapAnon(c, 2n * TWO_MIB);
    poke(c, d + 0x1000n, '9f');
    poke(c, d + TWO_MIB + 0x1000n, '9f');
    ok(c.h.madvise(d + TWO_MIB + 0x1000n, PAGE, MADV_DONTNEED));
    ok(frame(d, 1n));
    ok(c.h.madvise(d + TWO_MIB, TWO_MIB, MADV_DONTNEED));
    fails(frame(d, 1n), 'EINVAL');
  });

  test('MADV_COLLAPSE accepts VM_LOCKED VMAs', () => {
    const c = newHost('linux-6.18-pvm');
    const shared = mmapAnon(c, 4n * MiB, PROT_WRITE, MAP_SHARED | MAP_LOCKED);
    const priv = mmapAnon(c, 4n * MiB, RW, MAP_PRIVATE | MAP_LOCKED);
    ok(c.h.madvise(shared, 4n * MiB, MADV_COLLAPSE));
    ok(c.h.madvise(priv, 4n * MiB, MADV_COLLAPSE));
    fails(c.h.madvise(priv + 0x8000n, 2n * PAGE, MADV_COLLAPSE), 'EINVAL', 'inside one PMD');
  });

  test('MAP_POPULATE reads with FOLL_FORCE: write-only shared memory is populated, exec-only and PROT_NONE are not', () => {
    const c = newHost('linux-6.18-pvm');
    const populated = (prot: number): boolean => {
      const m = mmapAnon(c, 4n * MiB, prot, MAP_SHARED | MAP_POPULATE);
      return c.h.madvise(m, 4n * MiB, MADV_COLLAPSE).ok;
    };
    assert.deepEqual([PROT_READ, PROT_WRITE, PROT_EXEC, RW, PROT_NONE].map(populated), [
      true,
      true,
      false,
      true,
      false,
    ]);
  });

  test('mprotect making private memory writable charges it: more than RAM is ENOMEM, nothing changes', () => {
    const c = newHost('linux-6.18-pvm');
    const m = mmapAnon(c, TiB, PROT_EXEC);
    ok(c.h.mprotect(m, 16n * PAGE, RW));
    poke(c, m, 'aa');
    fails(c.h.mprotect(m + MiB, 32n * GiB, RW), 'ENOMEM');
    assert.deepEqual(c.h.poke(m + MiB, bytes1()), SEGV, 'the range kept PROT_EXEC');
    ok(c.h.mprotect(m + MiB, 16n * GiB, RW));
    poke(c, m + MiB, 'aa');
    // Already-charged (VM_ACCOUNT) VMAs are not charged again; the uncharged half is below RAM.
    ok(c.h.mprotect(m + MiB, 32n * GiB, PROT_READ));
    ok(c.h.mprotect(m + MiB, 32n * GiB, RW));
    // MAP_NORESERVE mappings are never charged.
    const n = mmapAnon(c, TiB, PROT_READ, MAP_PRIVATE | MAP_NORESERVE);
    ok(c.h.mprotect(n, TiB, RW));
    // A failing charge stops the walk: the VMAs before it changed, this one did not.
    const q = mmapAnon(c, TiB, PROT_READ);
    ok(c.h.mprotect(q, PAGE, RW));
    fails(c.h.mprotect(q + 3n * PAGE, TiB, RW), 'ENOMEM');
    assert.deepEqual(c.h.poke(q + 3n * PAGE, bytes1()), SEGV);
  });
});

function bytes1(): Uint8Array {
  return Uint8Array.of(0xaa);
}

describe('independent-trace findings (conformance/mmap/*: recorded on the PVM kernel)', () => {
  const MADV_HUGEPAGE = 14;
  const MADV_NOHUGEPAGE = 15;
  const MADV_GUARD_INSTALL = 102;
  const MADV_GUARD_REMOVE = 103;
  const MADV_FREE = 8;
  const MAP_GROWSDOWN = 0x100;
  const MAP_STACK = 0x20000;
  const MAP_HUGETLB = 0x40000;
  const MAP_DROPPABLE = 0x08;
  const PROT_GROWSDOWN = 0x0100_0000;
  const PROT_GROWSUP = 0x0200_0000;
  const collapse = (c: Ctx, m: bigint) => c.h.madvise(m, TWO_MIB, MADV_COLLAPSE);

  test('a read fault in a THP-enabled empty frame maps the huge zero page (collapsible, no table)', () => {
    const c = newHost('linux-6.18-pvm');
    const m = mmapAnon(c, 4n * TWO_MIB);
    ok(c.h.madvise(m, 4n * TWO_MIB, MADV_HUGEPAGE));
    assert.equal(peekHex(c, m, 1), '00');
    ok(collapse(c, m), 'the huge zero PMD counts as PMD-mapped');
    // DONTNEED of the whole frame removes the PMD: nothing left to collapse.
    assert.equal(peekHex(c, m + TWO_MIB, 1), '00');
    ok(c.h.madvise(m + TWO_MIB, TWO_MIB, MADV_DONTNEED));
    fails(collapse(c, m + TWO_MIB), 'EINVAL');
    // A partial DONTNEED splits it into a page table of zero-page PTEs, which stays.
    assert.equal(peekHex(c, m + 2n * TWO_MIB, 1), '00');
    ok(c.h.madvise(m + 2n * TWO_MIB, PAGE, MADV_DONTNEED));
    ok(collapse(c, m + 2n * TWO_MIB));
    // A write replaces the zero page with a THP.
    assert.equal(peekHex(c, m + 3n * TWO_MIB, 1), '00');
    poke(c, m + 3n * TWO_MIB + 16n, '5a');
    assert.equal(c.h.mm.hostLevel(hvaToHvpn(asHva(m + 3n * TWO_MIB))), '2M');
    assert.equal(peekHex(c, m + 3n * TWO_MIB + 16n, 1), '5a');
    // Without MADV_HUGEPAGE a read makes a page table, and a later write gets no THP.
    const n = mmapAnon(c, TWO_MIB);
    assert.equal(peekHex(c, n, 1), '00');
    ok(c.h.madvise(n, TWO_MIB, MADV_HUGEPAGE));
    poke(c, n + PAGE, '01');
    assert.equal(c.h.mm.hostLevel(hvaToHvpn(asHva(n + PAGE))), '4K');
  });

  test('MADV_COLLAPSE: VM_NOHUGEPAGE (MADV_NOHUGEPAGE, MAP_STACK) and guard markers refuse it', () => {
    const c = newHost('linux-6.18-pvm');
    const a = mmapAnon(c, TWO_MIB);
    poke(c, a, '01');
    ok(c.h.madvise(a, TWO_MIB, MADV_NOHUGEPAGE));
    fails(collapse(c, a), 'EINVAL');
    ok(c.h.madvise(a, TWO_MIB, MADV_HUGEPAGE));
    ok(collapse(c, a));
    const st = mmapAnon(c, TWO_MIB, RW, MAP_PRIVATE | MAP_STACK);
    poke(c, st, '01');
    fails(collapse(c, st), 'EINVAL');
    for (const flags of [MAP_PRIVATE, MAP_SHARED]) {
      const g = mmapAnon(c, TWO_MIB, RW, flags);
      poke(c, g, '01');
      ok(c.h.madvise(g + 0x88000n, PAGE, MADV_GUARD_INSTALL));
      fails(collapse(c, g), 'EINVAL', `guard, flags ${flags}`);
      ok(c.h.madvise(g + 0x88000n, PAGE, MADV_GUARD_REMOVE));
      ok(collapse(c, g), `guard removed, flags ${flags}`);
    }
    // A guard install alone prepares the anon_vma and a page table: the frame collapses later.
    const q = mmapAnon(c, TWO_MIB);
    ok(c.h.madvise(q, PAGE, MADV_GUARD_INSTALL));
    fails(
      c.h.madvise(q + TWO_MIB - PAGE, 2n * PAGE, MADV_COLLAPSE),
      'ENOMEM',
      'no chunk, then the gap',
    );
    ok(c.h.madvise(q, PAGE, MADV_GUARD_REMOVE));
    ok(collapse(c, q));
  });

  test('truncating a mapped guest_memfd folio drops guard markers over it in every mapping', () => {
    const { c, g } = gmemHost(GMEM_MMAP | GMEM_SHARED, 4n * PAGE);
    const a = mmapFd(c, g, 4n * PAGE);
    const b = mmapFd(c, g, 4n * PAGE);
    poke(c, a + PAGE, '02'); // mapped folio at index 1
    ok(c.h.fallocate(g, 1, 2n * PAGE, PAGE)); // allocated, never mapped: index 2
    ok(c.h.madvise(b, 4n * PAGE, MADV_GUARD_INSTALL));
    ok(c.h.fallocate(g, 3, 0n, 4n * PAGE));
    assert.deepEqual(c.h.peek(b, 1), SEGV, 'no folio');
    assert.equal(peekHex(c, b + PAGE, 1), '00', 'the mapped folio took the guard with it');
    assert.deepEqual(c.h.peek(b + 2n * PAGE, 1), SEGV, 'an unmapped folio leaves the guard');
    // Shared anonymous memory (shmem) keeps its guards: the range is unmapped before truncation.
    const s = mmapAnon(c, 2n * PAGE, RW, MAP_SHARED);
    poke(c, s, '01');
    ok(c.h.madvise(s, PAGE, MADV_GUARD_INSTALL));
    ok(c.h.madvise(s, PAGE, MADV_REMOVE));
    assert.deepEqual(c.h.peek(s, 1), SEGV);
  });

  test('split VMAs merge back when only one part has an anon_vma; the merged VMA has it', () => {
    const c = newHost('linux-6.18-pvm');
    const m = mmapAnon(c, 2n * TWO_MIB, PROT_WRITE);
    ok(c.h.mprotect(m + PAGE, 2n * PAGE, RW));
    poke(c, m + 0x52n, '38');
    fails(c.h.madvise(m, PAGE, MADV_COLLAPSE), 'EINVAL', 'a one-page VMA');
    ok(c.h.mprotect(m, 2n * TWO_MIB, RW));
    ok(c.h.madvise(m, PAGE, MADV_COLLAPSE), 'one 4 MiB VMA, no PMD chunk in range');
    ok(c.h.madvise(m, TWO_MIB, MADV_COLLAPSE), 'the merged VMA has the anon_vma');
  });

  test('mprotect PROT_GROWSDOWN: from the first VMA in range, down to its start; growsdown VMAs only', () => {
    const c = newHost('linux-6.18-pvm');
    const gd = mmapAnon(c, 4n * PAGE, RW, MAP_PRIVATE | MAP_GROWSDOWN);
    ok(c.h.mprotect(gd + PAGE, PAGE, PROT_GROWSDOWN));
    assert.deepEqual(c.h.peek(gd, 1), SEGV, 'the start moved down to the VMA start');
    assert.equal(peekHex(c, gd + 2n * PAGE, 1), '00');
    const h = mmapAnon(c, 4n * PAGE, RW, MAP_PRIVATE | MAP_GROWSDOWN);
    ok(c.h.munmap(h, PAGE));
    ok(c.h.mprotect(h, 3n * PAGE, PROT_GROWSDOWN | PROT_READ), 'the hole at the start is skipped');
    assert.deepEqual(c.h.poke(h + PAGE, bytes1()), SEGV);
    fails(c.h.mprotect(h, PAGE, PROT_GROWSDOWN | PROT_READ), 'ENOMEM', 'no VMA in range');
    fails(c.h.mprotect(h + PAGE, PAGE, PROT_GROWSUP | PROT_READ), 'EINVAL');
    const p = mmapAnon(c, 2n * PAGE);
    ok(c.h.munmap(p, PAGE));
    fails(c.h.mprotect(p, 2n * PAGE, PROT_GROWSDOWN | RW), 'EINVAL', 'not a growsdown VMA');
    fails(c.h.mprotect(p, 2n * PAGE, RW), 'ENOMEM', 'without GROWSDOWN the hole counts');
  });

  test('MAP_DROPPABLE: private, uncharged anonymous memory; not with MAP_LOCKED, MAP_GROWSDOWN or a file', () => {
    const c = newHost('linux-6.18-pvm');
    const d = mmapAnon(c, 2n * PAGE, RW, MAP_DROPPABLE);
    poke(c, d, '01');
    assert.equal(peekHex(c, d, 1), '01');
    ok(c.h.madvise(d, PAGE, MADV_DONTNEED));
    assert.equal(peekHex(c, d, 1), '00');
    ok(c.h.mmap(null, 1n << 44n, RW, MAP_DROPPABLE, 0n), 'never charged');
    // VM_WIPEONFORK and VM_DONTDUMP come with it and stay.
    fails(c.h.madvise(d, 2n * PAGE, 19), 'EINVAL', 'MADV_KEEPONFORK');
    fails(c.h.madvise(d, 2n * PAGE, 17), 'EINVAL', 'MADV_DODUMP');
    ok(c.h.madvise(d, 2n * PAGE, 18), 'MADV_WIPEONFORK');
    // Reclaim discards droppable pages; ordinary anonymous pages keep their data.
    poke(c, d + PAGE, '02');
    ok(c.h.madvise(d + PAGE, PAGE, 21));
    assert.equal(peekHex(c, d + PAGE, 1), '00');
    const a = mmapAnon(c, PAGE);
    poke(c, a, '03');
    ok(c.h.madvise(a, PAGE, 21));
    assert.equal(peekHex(c, a, 1), '03');
    fails(c.h.mmap(null, PAGE, RW, MAP_DROPPABLE | MAP_LOCKED, 0n), 'EINVAL');
    fails(c.h.mmap(null, PAGE, RW, MAP_DROPPABLE | MAP_GROWSDOWN, 0n), 'EINVAL');
    const { c: c2, g } = gmemHost(GMEM_MMAP | GMEM_SHARED);
    fails(c2.h.mmap(g, PAGE, RW, MAP_DROPPABLE, 0n), 'EINVAL');
    fails(c2.h.mmap(g, PAGE, RW, MAP_SHARED | MAP_HUGETLB, 0n), 'EINVAL', 'HUGETLB on gmem');
  });

  test('anonymous MAP_HUGETLB with an empty pool: hstate, reservation, SIGBUS, huge page splits', () => {
    const c = newHost('linux-6.18-pvm');
    const huge = MAP_HUGETLB | MAP_NORESERVE;
    fails(c.h.mmap(null, 2n * PAGE, RW, MAP_PRIVATE | MAP_HUGETLB, 0n), 'ENOMEM', 'reservation');
    fails(c.h.mmap(null, 2n * PAGE, RW, MAP_PRIVATE | huge | (20 << 26), 0n), 'EINVAL', '1 MiB');
    fails(c.h.mmap(null, 2n * PAGE, RW, MAP_PRIVATE | huge | MAP_GROWSDOWN, 0n), 'EINVAL');
    fails(c.h.mmap(null, 2n * PAGE, RW, MAP_PRIVATE | huge, PAGE), 'EINVAL', 'offset');
    // file_mmap_ok() of the hugetlbfs file (MAX_LFS_FILESIZE) comes first.
    fails(c.h.mmap(null, 2n * PAGE, RW, MAP_PRIVATE | huge, (1n << 64n) - PAGE), 'EOVERFLOW');
    fails(c.h.mmap(null, 2n * PAGE, RW, MAP_SHARED | huge, (1n << 63n) - TWO_MIB), 'EOVERFLOW');
    const m = mmapAnon(c, 2n * PAGE, RW, MAP_PRIVATE | huge);
    assert.deepEqual(c.h.peek(m, 1), BUS);
    assert.deepEqual(c.h.peek(m + TWO_MIB - PAGE, 1), BUS, 'len rounded to 2 MiB');
    assert.deepEqual(c.h.peek(m + TWO_MIB, 1), SEGV);
    fails(c.h.munmap(m, PAGE), 'EINVAL');
    fails(c.h.mprotect(m + PAGE, PAGE, PROT_READ), 'EINVAL');
    fails(c.h.madvise(m + PAGE, PAGE, 1), 'EINVAL', 'MADV_RANDOM splits');
    ok(c.h.madvise(m + PAGE, PAGE, 0), 'MADV_NORMAL changes nothing');
    ok(c.h.madvise(m, PAGE, MADV_DONTNEED));
    fails(c.h.madvise(m + PAGE, PAGE, MADV_DONTNEED), 'EINVAL');
    fails(c.h.madvise(m, TWO_MIB, MADV_FREE), 'EINVAL');
    fails(c.h.madvise(m, TWO_MIB, MADV_REMOVE), 'EACCES');
    fails(c.h.madvise(m, TWO_MIB, MADV_POPULATE_READ), 'EFAULT');
    ok(c.h.mprotect(m, TWO_MIB, PROT_READ));
    const s = mmapAnon(c, PAGE, RW | PROT_EXEC, MAP_SHARED | huge);
    ok(c.h.madvise(s, TWO_MIB, MADV_REMOVE));
    ok(c.h.munmap(m, TWO_MIB));
  });
});
