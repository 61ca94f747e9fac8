/**
 * src/core/inspect.ts: the snapshot of hand-built traces run on the model — memslots and their
 * runs, attribute ranges, guest_memfd page states, stage-2 levels, VMAs — its JSON round trip,
 * and a 64 TiB guest whose snapshot has as many ranges as the model has, not pages.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBackend } from '../../src/backends/model.js';
import { snapshot, type Snapshot } from '../../src/core/inspect.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { parseTrace } from '../../src/trace/parse.js';
import { HandleTable, stepTrace } from '../../src/trace/runner.js';
import type { ResultLine } from '../../src/trace/types.js';
import {
  ATTR_PRIVATE,
  createGmem,
  createVm,
  fails,
  MEM_GUEST_MEMFD,
  newHost,
  ok,
  setRegion,
  SW_PROTECTED_VM,
} from './helpers.js';

/** Run trace lines on a fresh linux-6.18 model; the snapshot at the end and every result. */
function runLines(lines: readonly string[]): { snap: Snapshot; results: ResultLine[] } {
  const t = parseTrace(lines.join('\n') + '\n', 'inspect.jsonl');
  assert.equal(t.errorCount, 0, JSON.stringify(t.errors));
  const b = new ModelBackend(getProfile('linux-6.18')!, { events: false });
  const table = new HandleTable(b.begin());
  const results = t.ops.map((op) => stepTrace(op, b, table));
  const snap = snapshot(b.host);
  b.end();
  return { snap, results };
}

const MiB = 0x10_0000;

/**
 * A SW_PROTECTED VM: 4 MiB of THP-eligible private anonymous memory and 4 MiB of guest_memfd in
 * one hybrid slot at GPA 0, the upper 2 MiB private; the guest writes one shared page (mapped 2M
 * over a host THP) and two private pages; the VMM fallocates one more guest_memfd page.
 */
const HYBRID = [
  '{"op":"KVM_CREATE_VM","type":1,"as":"vm"}',
  `{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":${4 * MiB},"flags":0,"as":"g"}`,
  `{"op":"mmap","fd":null,"length":${4 * MiB},"prot":3,"flags":34,"offset":0,"as":"a"}`,
  `{"op":"madvise","addr":"a","length":${4 * MiB},"advice":14}`,
  `{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":${4 * MiB},"userspace_addr":"a","guest_memfd":"g","guest_memfd_offset":0}`,
  `{"op":"KVM_SET_MEMORY_ATTRIBUTES","vm":"vm","address":${2 * MiB},"size":${2 * MiB},"attributes":8,"flags":0}`,
  '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
  `{"op":"KVM_RUN","vcpu":"cpu","guest":[{"store":{"gpa":${0x5000},"hex":"01"}},{"store":{"gpa":${0x201000},"hex":"02"}},{"store":{"gpa":${0x202000},"hex":"03"}}]}`,
  `{"op":"fallocate","fd":"g","mode":1,"offset":${0x300000},"len":4096}`,
];

describe('inspect: snapshot of a hybrid memslot', () => {
  const { snap, results } = runLines(HYBRID);

  test('every op of the trace succeeded', () => {
    for (const [i, r] of results.entries())
      assert.equal(r.ok, true, `op ${i + 1}: ${JSON.stringify(r)}`);
  });

  test('the VM: type, vCPUs, attributes as one PRIVATE range', () => {
    assert.equal(snap.profile, 'linux-6.18');
    assert.equal(snap.vms.length, 1);
    const vm = snap.vms[0]!;
    assert.equal(vm.index, 0);
    assert.equal(vm.type, 1);
    assert.equal(vm.dead, false);
    assert.deepEqual(vm.vcpus, [0]);
    assert.deepEqual(vm.attributes, [{ start: 0x200, end: 0x400, attributes: 8, private: true }]);
  });

  test('memslots: the hybrid slot and the trace code page, in gfn order of slot id', () => {
    const as0 = snap.vms[0]!.addressSpaces[0]!;
    assert.deepEqual(
      as0.memslots.map((s) => [s.id, s.baseGfn, s.npages, s.flags, s.codePage]),
      [
        [0, 0, 0x400, 4, false],
        [32763, 0xfffff, 1, 0, true],
      ],
    );
    const s = as0.memslots[0]!;
    assert.equal(s.userspaceAddr, '0x400000000000');
    assert.deepEqual(s.guestMemfd, { ino: snap.gmemFiles[0]!.ino, offset: 0 });
    assert.equal(s.gmemOnly, false);
  });

  test('slot runs: shared half backed by host pages, private half by guest_memfd', () => {
    const runs = snap.vms[0]!.addressSpaces[0]!.memslots[0]!.runs;
    assert.deepEqual(runs, [
      {
        start: 0,
        end: 0x200,
        private: false,
        backing: 'host',
        allocated: 512,
        prepared: 0,
        mapped: 512,
      },
      {
        start: 0x200,
        end: 0x400,
        private: true,
        backing: 'gmem',
        allocated: 3,
        prepared: 2,
        mapped: 2,
      },
    ]);
  });

  test('stage-2: a 2M shared mapping over the THP, 4K private mappings', () => {
    assert.deepEqual(snap.vms[0]!.addressSpaces[0]!.stage2, [
      { start: 0, end: 0x200, level: '2M', writable: true, private: false, source: 'hva' },
      { start: 0x201, end: 0x203, level: '4K', writable: true, private: true, source: 'gmem' },
    ]);
  });

  test('guest_memfd: size, binding, page states as ranges with counts', () => {
    assert.equal(snap.gmemFiles.length, 1);
    const g = snap.gmemFiles[0]!;
    assert.equal(g.size, '0x400000');
    assert.equal(g.npages, 0x400);
    assert.equal(g.vm, 0);
    assert.deepEqual(g.bindings, [{ start: 0, end: 0x400, as: 0, slot: 0 }]);
    assert.deepEqual(g.pages, [
      { start: 0x201, end: 0x203, state: 'prepared' },
      { start: 0x300, end: 0x301, state: 'allocated' },
    ]);
    assert.deepEqual(g.counts, { present: 3, allocated: 1, prepared: 2, poisoned: 0 });
  });

  test('VMAs and anonymous pages, in host virtual page numbers', () => {
    const a = 0x4000_0000_0000 / 4096;
    const v = snap.vmas.find((x) => x.start === a)!;
    assert.ok(v, JSON.stringify(snap.vmas));
    assert.equal(v.end, a + 0x400);
    assert.equal(v.kind, 'anon');
    assert.equal(v.prot, 3);
    assert.equal(v.shared, false);
    assert.ok(v.flagNames.includes('HUGEPAGE'), v.flagNames.join());
    assert.ok(v.flagNames.includes('ACCOUNT'), v.flagNames.join());
    assert.equal(snap.vmas.filter((x) => x.kind === 'anon').length, 2, 'the code page too');
    assert.deepEqual(snap.anonPages, [{ start: a, end: a + 512 }]);
    assert.ok(snap.frames.allocated >= 512 + 3);
    assert.equal(snap.frames.allocated + snap.frames.free, snap.frames.highWater);
  });

  test('JSON round trip: plain data, no bigint, nothing lost', () => {
    const text = JSON.stringify(snap);
    assert.deepEqual(JSON.parse(text), snap);
  });

  test('deterministic: the same trace gives the same snapshot', () => {
    assert.deepEqual(runLines(HYBRID).snap, snap);
  });
});

describe('inspect: lifetimes', () => {
  test('shmem backing, a released guest_memfd, a punched page and a destroyed VM', () => {
    const { snap } = runLines([
      '{"op":"KVM_CREATE_VM","type":1,"as":"vm"}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":65536,"flags":0,"as":"g"}',
      '{"op":"mmap","fd":null,"length":65536,"prot":3,"flags":33,"offset":0,"as":"s"}',
      '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":3,"flags":4,"guest_phys_addr":0,"memory_size":65536,"userspace_addr":"s","guest_memfd":"g","guest_memfd_offset":0}',
      '{"op":"poke","addr":"s+0x2000","hex":"aa"}',
      '{"op":"fallocate","fd":"g","mode":1,"offset":0,"len":16384}',
      '{"op":"fallocate","fd":"g","mode":3,"offset":4096,"len":4096}',
      '{"op":"KVM_CREATE_VM","type":0,"as":"vm2"}',
      '{"op":"close","fd":"vm2"}',
    ]);
    assert.equal(snap.vms.length, 2);
    assert.equal(snap.vms[1]!.dead, true);
    assert.deepEqual(snap.vms[1]!.addressSpaces[0]!.memslots, []);
    const g = snap.gmemFiles[0]!;
    assert.deepEqual(g.pages, [
      { start: 0, end: 1, state: 'allocated' },
      { start: 2, end: 4, state: 'allocated' },
    ]);
    assert.equal(snap.shmem.length, 1);
    assert.deepEqual(snap.shmem[0]!.pages, [{ start: 2, end: 3 }]);
    const runs = snap.vms[0]!.addressSpaces[0]!.memslots[0]!.runs;
    assert.deepEqual(runs, [
      { start: 0, end: 16, private: false, backing: 'host', allocated: 1, prepared: 0, mapped: 0 },
    ]);
    assert.equal(snap.vmas[0]!.kind, 'shmem');
    assert.equal(snap.vmas[0]!.shmem, 1);

    // Closing the guest_memfd releases it: the slot keeps a binding to nothing.
    const after = runLines([
      '{"op":"KVM_CREATE_VM","type":1,"as":"vm"}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":65536,"flags":0,"as":"g"}',
      '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":65536,"userspace_addr":0,"guest_memfd":"g","guest_memfd_offset":0}',
      '{"op":"KVM_SET_MEMORY_ATTRIBUTES","vm":"vm","address":0,"size":65536,"attributes":8,"flags":0}',
      '{"op":"close","fd":"g"}',
    ]).snap;
    assert.deepEqual(after.gmemFiles, []);
    const s = after.vms[0]!.addressSpaces[0]!.memslots[0]!;
    assert.deepEqual(s.guestMemfd, { ino: null, offset: 0 });
    assert.equal(s.runs[0]!.backing, 'none');
  });
});

describe('inspect: memory is ranges', () => {
  test('a 64 TiB guest with scattered attributes and pages snapshots into few ranges', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const TiB = 1n << 40n;
    const gmem = createGmem(c, vm, 64n * TiB);
    // KVM_MEM_MAX_NR_PAGES caps a memslot at 2^31 - 1 pages (8 TiB - 4 KiB): eight slots tile
    // 64 TiB of guest-physical memory, all bound to one 64 TiB guest_memfd.
    const SLOT_PAGES = 2 ** 31 - 1;
    for (let i = 0; i < 8; i++) {
      const base = BigInt(i) * 8n * TiB;
      ok(
        setRegion(c, vm, {
          slot: BigInt(i),
          flags: MEM_GUEST_MEMFD,
          gpa: base,
          size: BigInt(SLOT_PAGES) * 4096n,
          uaddr: 0n,
          gmem,
          offset: base,
        }),
        `slot ${i}`,
      );
    }
    fails(
      setRegion(c, vm, { slot: 9n, gpa: 64n * TiB, size: 8n * TiB, uaddr: 0n }),
      'EINVAL',
      'a slot of 2^31 pages',
    );
    // 1000 scattered private pages.
    const TOTAL = 2 ** 34;
    for (let k = 0; k < 1000; k++) {
      const gfn = BigInt(Math.floor((k * TOTAL) / 1000) + 7);
      ok(
        c.h.kvmSetMemoryAttributes(vm, {
          address: gfn << 12n,
          size: 4096n,
          attributes: ATTR_PRIVATE,
          flags: 0n,
        }),
        `attributes ${k}`,
      );
    }
    // guest_memfd pages behind every fifth private page (slot i binds index = gfn).
    for (let k = 0; k < 1000; k += 5) {
      const idx = BigInt(Math.floor((k * TOTAL) / 1000) + 7);
      ok(c.h.fallocate(gmem, 1, idx << 12n, 4096n), `fallocate ${k}`);
    }
    const snap = snapshot(c.h);
    const v = snap.vms[0]!;
    assert.equal(v.attributes.length, 1000);
    const slots = v.addressSpaces[0]!.memslots;
    assert.equal(slots.length, 8);
    assert.equal(
      slots.reduce((n, s) => n + s.npages, 0),
      8 * SLOT_PAGES,
    );
    const runs = slots.flatMap((s) => s.runs);
    // Each private page splits its slot's run in three: at most 2 * 1000 + 8 runs.
    assert.ok(runs.length <= 2 * 1000 + 8, `${runs.length} runs`);
    assert.equal(runs.filter((r) => r.private).length, 1000);
    assert.equal(
      runs.filter((r) => r.private && r.allocated === 1).length,
      200,
      'the fallocated pages, in the private runs',
    );
    assert.equal(
      runs.reduce((n, r) => n + r.allocated, 0),
      200,
    );
    const g = snap.gmemFiles[0]!;
    assert.equal(g.size, '0x400000000000');
    assert.equal(g.pages.length, 200);
    assert.equal(g.counts.present, 200);
    assert.equal(g.bindings.length, 8);
    assert.ok(JSON.stringify(snap).length < 1_000_000, 'the JSON is as small as the ranges');
  });
});
