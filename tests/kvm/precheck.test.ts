/**
 * precheckTrace(): the kvm backend's refusals decided before a trace runs, on a model replay.
 * These need no /dev/kvm (only /proc/self/maps), except the last test, which checks against the
 * live backend that both layers refuse the same op with the same message.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { precheckTrace, type Refusal } from '../../src/backends/kvm/precheck.js';
import { arena } from '../../src/backends/kvm/arena.js';
import { readMaps, type MapsEntry } from '../../src/backends/kvm/maps.js';
import { libc } from '../../src/backends/kvm/libc.js';
import { MMAP_ARENA_BASE, MMAP_ARENA_END, nextArenaCursor } from '../../src/core/mm/host_layout.js';
import { getProfile } from '../../src/core/profiles/index.js';
import type { KernelProfile } from '../../src/core/profiles/profile.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { BackendRefusal, type TraceOp } from '../../src/trace/types.js';
import { backendOrSkip, L, memslotOp, type Json } from './helpers.js';

const hex = (v: bigint): string => '0x' + v.toString(16);
const GiB = 1n << 30n;
const MAP_PRIVATE = 0x02;
const MAP_LOCKED = 0x2000;
const MAP_POPULATE = 0x8000;
const MADV_POPULATE_WRITE = 23;

function pvm(): KernelProfile {
  const p = getProfile('linux-6.18-pvm');
  assert.ok(p, 'profile linux-6.18-pvm exists');
  return p;
}

function ops(lines: readonly Json[]): TraceOp[] {
  const { ops: parsed, errors } = parseTrace(lines.map(L).join('\n'), '<test>');
  if (errors.length > 0) throw new Error(errors.map((e) => e.message).join('\n'));
  return parsed;
}

const precheck = (lines: readonly Json[], profile = pvm()): Refusal | undefined =>
  precheckTrace(ops(lines), profile);

/** The first mapping of this process outside the arena that overlaps [s, e). */
function ownMappingIn(s: bigint, e: bigint): MapsEntry | undefined {
  return readMaps().find(
    (m) => m.start < e && s < m.end && (m.start < MMAP_ARENA_BASE || m.end > MMAP_ARENA_END),
  );
}

/** The message checkRange gives for [s, e) overlapping `m`. */
const overlapReason = (what: string, s: bigint, e: bigint, m: MapsEntry): string =>
  `${what}: range [${hex(s)}, ${hex(e)}) overlaps a mapping of the backend process ` +
  `(${hex(m.start)}-${hex(m.end)} ${m.perms} ${m.path}); refusing to run it`;

/** 0x400000 when the node binary is mapped there (non-PIE x86-64 builds), else its first page. */
function nodeBinaryAddr(): bigint {
  const node = readMaps().filter((m) => m.path === process.execPath || m.path.endsWith('/node'));
  assert.ok(node.length > 0, 'the node binary appears in /proc/self/maps');
  return node.some((m) => m.start <= 0x400000n && 0x400000n < m.end) ? 0x400000n : node[0]!.start;
}

const VM = { op: 'KVM_CREATE_VM', type: 0, as: 'vm' };
const ANON = (length: bigint | number, as: string, flags = MAP_PRIVATE): Json => ({
  op: 'mmap',
  fd: null,
  length: hex(BigInt(length)),
  prot: 3,
  flags,
  offset: 0,
  as,
});

test('a munmap over the node binary is refused at its line, with the run-time message', () => {
  const addr = nodeBinaryAddr();
  const m = ownMappingIn(addr, addr + 0x1000n)!;
  const r = precheck([
    VM,
    ANON(8192, 'm'),
    { op: 'poke', addr: 'm', hex: '01' },
    { op: 'munmap', addr: hex(addr), length: 0x1000 },
    { op: 'peek', addr: 'm', len: 1 },
  ]);
  assert.deepEqual(r, {
    line: 4,
    op: 'munmap',
    reason: overlapReason('munmap', addr, addr + 0x1000n, m),
  });
});

test('an unbound mapping handle after a failed mmap resolves to its offset and is checked', (t) => {
  const s = 0x147000n;
  const e = s + 0x800000n;
  const m = ownMappingIn(s, e);
  if (m === undefined) {
    t.skip(`nothing of this process is mapped in [${hex(s)}, ${hex(e)})`);
    return;
  }
  const failedMmap = [VM, ANON(0, 'c')]; // length 0: EINVAL, so "c" is unbound (address 0)
  assert.deepEqual(
    precheck([...failedMmap, { op: 'munmap', addr: 'c+0x147000', length: '0x800000' }]),
    { line: 3, op: 'munmap', reason: overlapReason('munmap', s, e, m) },
  );
  const slot = memslotOp;
  assert.deepEqual(precheck([...failedMmap, slot('c+0x147000', '0x800000')]), {
    line: 3,
    op: 'KVM_SET_USER_MEMORY_REGION',
    reason: overlapReason('KVM_SET_USER_MEMORY_REGION userspace_addr', s, e, m),
  });
  // Requests kvm_set_memory_region() rejects before any slot exists are exempt, as at run time:
  // an unaligned size, a slot id out of range.
  assert.equal(precheck([...failedMmap, slot('c+0x147000', '0x800001')]), undefined);
  assert.equal(precheck([...failedMmap, slot('c+0x147000', '0x800000', 40000)]), undefined);
  // userspace_addr 0 (the unbound handle itself): up to 64 KiB is below any mapping.
  assert.equal(precheck([...failedMmap, slot('c', '0x10000')]), undefined);
});

test('madvise HWPOISON and SOFT_OFFLINE are refused whatever the range', () => {
  for (const advice of [100, 101])
    assert.deepEqual(
      precheck([VM, ANON(4096, 'm'), { op: 'madvise', addr: 'm', length: 4096, advice }]),
      {
        line: 3,
        op: 'madvise',
        reason: `madvise advice ${advice} would poison or offline host physical memory; refusing to run it`,
      },
    );
});

test('populating more than 1 GiB is refused: MAP_POPULATE, MAP_LOCKED, MADV_POPULATE_*', () => {
  const over = GiB + 4096n;
  for (const flag of [MAP_POPULATE, MAP_LOCKED])
    assert.deepEqual(
      precheck([VM, ANON(GiB, 'a', MAP_PRIVATE | flag), ANON(over, 'b', MAP_PRIVATE | flag)]),
      {
        line: 3,
        op: 'mmap',
        reason: `mmap: populating ${over} bytes of real memory exceeds the backend's 1 GiB limit`,
      },
    );
  // Without MAP_POPULATE the mapping is lazy; populating it with madvise is what is refused.
  const big = [VM, ANON(2n * GiB, 'big')];
  const populate: Json = {
    op: 'madvise',
    addr: 'big',
    length: hex(2n * GiB),
    advice: MADV_POPULATE_WRITE,
  };
  assert.deepEqual(precheck([...big, populate]), {
    line: 3,
    op: 'madvise',
    reason: `madvise: populating ${2n * GiB} bytes of real memory exceeds the backend's 1 GiB limit`,
  });
  // Only the trace's own mappings count: after unmapping half, 1 GiB is left, which is allowed.
  const unmapHalf = { op: 'munmap', addr: `big+${hex(GiB)}`, length: hex(GiB) };
  assert.equal(precheck([...big, unmapHalf, populate]), undefined);
});

test('a fallocate that would allocate more than 1 GiB of guest_memfd is refused', () => {
  const vmGmem = [
    VM,
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: '0x100000000', flags: 0, as: 'g' },
  ];
  const fa = (mode: number, offset: number, len: string): Json => ({
    op: 'fallocate',
    fd: 'g',
    mode,
    offset,
    len,
  });
  assert.deepEqual(precheck([...vmGmem, fa(1, 0, '0x40000000'), fa(1, 0, '0x80000000')]), {
    line: 4,
    op: 'fallocate',
    reason: `fallocate: allocating ${2n * GiB} bytes of real memory exceeds the backend's 1 GiB limit`,
  });
  // Past EOF, without KEEP_SIZE, unaligned: the kernel fails before allocating.
  assert.equal(
    precheck([
      ...vmGmem,
      fa(1, 0, '0x200000000'),
      fa(0, 0, '0x80000000'),
      fa(1, 1, '0x80000000'),
      fa(3, 0, '0x80000000'), // punch hole frees
    ]),
    undefined,
  );
  // A guest_memfd that could not be created (unknown flag): its handle is unbound, nothing runs.
  const badGmem = {
    op: 'KVM_CREATE_GUEST_MEMFD',
    vm: 'vm',
    size: '0x100000000',
    flags: 1024,
    as: 'g',
  };
  assert.equal(precheck([VM, badGmem, fa(1, 0, '0x80000000')]), undefined);
});

test('a clean trace is not refused', () => {
  const trace = [
    VM,
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 8192, flags: 3, as: 'g' },
    { op: 'mmap', fd: 'g', length: 8192, prot: 3, flags: 1, offset: 0, as: 'm' },
    { op: 'poke', addr: 'm+16', hex: 'deadbeef' },
    {
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm',
      slot: 0,
      flags: 4,
      guest_phys_addr: 0,
      memory_size: 8192,
      userspace_addr: 'm',
      guest_memfd: 'g',
      guest_memfd_offset: 0,
    },
    { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
    { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 16 } }] },
    { op: 'fallocate', fd: 'g', mode: 3, offset: 0, len: 4096 },
    { op: 'peek', addr: 'm+16', len: 4 },
    ANON(GiB, 'pop', MAP_PRIVATE | MAP_POPULATE),
    { op: 'munmap', addr: 'pop', length: hex(GiB) },
    { op: 'peek', addr: hex(MMAP_ARENA_BASE - 4096n), len: 8192 },
    { op: 'munmap', addr: '0xfffffffffffff000', length: 8192 }, // wraps: the kernel says EINVAL
    { op: 'close', fd: 'g' },
  ];
  assert.equal(precheck(trace), undefined);
});

test('arena memory held by the process is refused, up front and live (arena slot occupied)', (t) => {
  // Runs before any test opens the backend: the arena is not reserved yet, so the precheck takes
  // every mapping inside the arena as foreign, as the reservation will.
  assert.equal(arena.reserved, false, 'no KvmBackend holds the arena yet');
  let c;
  try {
    c = libc();
  } catch (e) {
    t.skip(`no libc through koffi: ${(e as Error).message}`);
    return;
  }
  // One PROT_NONE page of "somebody else's" memory where a trace's second mmap lands after a
  // first one of 16 GiB (no other test maps that much first: the page stays foreign afterwards).
  const big = 16n * GiB;
  const slot2 = nextArenaCursor(MMAP_ARENA_BASE, big);
  const r = c.mmap(slot2, 4096n, 0, 0x02 | 0x20 | 0x100000, -1, 0n);
  if (r.errno !== 0) {
    t.skip(`cannot map a page at ${hex(slot2)}: errno ${r.errno}`);
    return;
  }
  try {
    // The 16 GiB mapping is PROT_NONE: no commit charge on the real machine.
    const bigNone = { ...ANON(big, 'a'), prot: 0 };
    const slotTrace = ops([VM, bigNone, ANON(4096, 'b')]);
    const peekTrace = ops([VM, { op: 'peek', addr: hex(slot2 + 8n), len: 8 }]);
    const expected = [
      {
        line: 3,
        op: 'mmap',
        reason: `mmap: the arena slot at ${hex(slot2)} is occupied by the backend process's own memory`,
      },
      {
        line: 2,
        op: 'peek',
        reason: `peek: range [${hex(slot2 + 8n)}, ${hex(slot2 + 16n)}) overlaps memory of the backend process inside the trace arena; refusing to run it`,
      },
    ];
    assert.deepEqual(precheckTrace(slotTrace, pvm()), expected[0]);
    assert.deepEqual(precheckTrace(peekTrace, pvm()), expected[1]);
    // The live backend reserves the arena around the page (now foreign) and refuses the same.
    for (const [i, trace] of [slotTrace, peekTrace].entries()) {
      const live = liveRefusal(t, trace);
      if (live === 'skip') return;
      assert.deepEqual(live, { line: expected[i]!.line, reason: expected[i]!.reason });
      assert.deepEqual(precheckTrace(trace, pvm()), expected[i], 'with the arena reserved');
    }
  } finally {
    c.munmap(slot2, 4096n);
  }
});

/** Run `lines` on the live backend: the refusal it throws and the line of the op that threw. */
function liveRefusal(
  t: TestContext,
  trace: readonly TraceOp[],
): { line: number; reason: string } | undefined | 'skip' {
  const b = backendOrSkip(t);
  if (!b) return 'skip';
  let done = 0;
  try {
    runTrace(trace, b, () => done++);
  } catch (e) {
    if (!(e instanceof BackendRefusal)) throw e;
    return { line: trace[done]!.line, reason: e.message };
  }
  return undefined;
}

test('the live backend refuses the same op with the same message as the precheck', (t) => {
  const addr = nodeBinaryAddr();
  // Each trace and the line the refusal is expected at (undefined: no refusal).
  // Each trace and the line the refusal is expected at (undefined: no refusal).
  const traces: [Json[], number | undefined][] = [
    [
      [
        VM,
        ANON(8192, 'm'),
        { op: 'poke', addr: 'm', hex: '01' },
        { op: 'munmap', addr: hex(addr), length: 4096 },
      ],
      4,
    ],
    [
      [
        VM,
        ANON(0, 'c'),
        { op: 'peek', addr: 'c+0x147000', len: 8 },
        { op: 'munmap', addr: 'c+0x147000', length: '0x800000' },
      ],
      ownMappingIn(0x147000n, 0x947000n) === undefined ? undefined : 4,
    ],
    [
      [
        VM,
        ANON(4096, 'm'),
        { op: 'madvise', addr: 'm', length: 4096, advice: 4 },
        { op: 'madvise', addr: 'm', length: 4096, advice: 100 },
      ],
      4,
    ],
    [[VM, ANON(4096, 'm'), ANON(2n * GiB, 'b', MAP_PRIVATE | MAP_POPULATE)], 3],
    [
      [
        VM,
        ANON(2n * GiB, 'big'),
        { op: 'madvise', addr: 'big', length: hex(2n * GiB), advice: MADV_POPULATE_WRITE },
      ],
      3,
    ],
    // Clean: both layers run it.
    [
      [
        VM,
        ANON(8192, 'm'),
        { op: 'poke', addr: 'm', hex: '01' },
        { op: 'munmap', addr: 'm', length: 8192 },
      ],
      undefined,
    ],
  ];
  for (const [lines, line] of traces) {
    const trace = ops(lines);
    const live = liveRefusal(t, trace);
    if (live === 'skip') return;
    const pre = precheckTrace(trace, pvm());
    assert.equal(pre?.line, line, JSON.stringify(lines));
    assert.deepEqual(
      pre === undefined ? undefined : { line: pre.line, reason: pre.reason },
      live,
      JSON.stringify(lines),
    );
  }
});
