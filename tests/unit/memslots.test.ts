/**
 * Unit tests for src/core/kvm/memslots.ts: KVM_SET_USER_MEMORY_REGION(2) (kernel-uapi.md §2.5, §7).
 * Every check of the kernel order, with both sides of each boundary, and which errno wins when
 * several checks would fail; then CREATE / DELETE / MOVE / FLAGS_ONLY effects.
 * Most cases run on `linux-6.18-pvm`, the profile checked against the live kernel.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MEM_GUEST_MEMFD,
  MEM_LOG_DIRTY,
  MEM_READONLY,
  MiB,
  PAGE,
  SW_PROTECTED_VM,
  createGmem,
  createVcpu,
  createVm,
  fails,
  guestLoad,
  mappedPages,
  mmapAnon,
  newHost,
  ok,
  poke,
  runGuest,
  load,
  setRegion,
  vmOf,
  type Ctx,
  type Region,
} from './helpers.js';

const TASK_SIZE_MAX = 0x7fff_ffff_f000n;
const U64 = 1n << 64n;

function pvm(): { c: Ctx; vm: number } {
  const c = newHost('linux-6.18-pvm');
  return { c, vm: createVm(c) };
}
const plain = (slot: bigint, gpa: bigint, size = PAGE, extra: Region = {}): Region => ({
  slot,
  gpa,
  size,
  ...extra,
});

describe('step 1: (u16)slot >= KVM_USER_MEM_SLOTS (32764)', () => {
  test('slot 32763 is the last valid id, 32764 and above are EINVAL', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(32763n, 0n)));
    fails(setRegion(c, vm, plain(32764n, MiB)), 'EINVAL', '32764');
    fails(setRegion(c, vm, plain(32766n, MiB)), 'EINVAL', '32766 (internal slot)');
    fails(setRegion(c, vm, plain(0xffffn, MiB)), 'EINVAL', '0xffff');
  });

  test('the check is on the low 16 bits only; the high bits are the address space', () => {
    const { c, vm } = pvm();
    fails(setRegion(c, vm, plain((1n << 16n) | 32764n, MiB)), 'EINVAL', 'as 1, id 32764');
    fails(setRegion(c, vm, plain(1n << 16n, MiB)), 'EINVAL', 'as 1 without SMM');
    fails(setRegion(c, vm, plain(0xffff_0005n, MiB)), 'EINVAL', 'as 0xffff');
  });

  test('linux-6.18: DEFAULT VMs have two address spaces (SMM), SW_PROTECTED one', () => {
    const c = newHost();
    const d = createVm(c);
    ok(setRegion(c, d, plain(1n << 16n, 0n)), 'DEFAULT as 1');
    ok(setRegion(c, d, plain(0n, 0n)), 'same GPA in as 0: address spaces do not overlap');
    fails(setRegion(c, d, plain(2n << 16n, 0n)), 'EINVAL', 'DEFAULT as 2');
    const sw = createVm(c, SW_PROTECTED_VM);
    fails(setRegion(c, sw, plain(1n << 16n, 0n)), 'EINVAL', 'SW_PROTECTED as 1');
  });

  test('32764 user slots can all be created; the trace code slot is the last of them', () => {
    const { c, vm } = pvm();
    for (let i = 0n; i < 32764n; i++) ok(setRegion(c, vm, plain(i, i * PAGE)), `slot ${i}`);
    assert.equal(vmOf(c, vm).slots.size, 32764);
    fails(setRegion(c, vm, plain(32764n, 32764n * PAGE)), 'EINVAL', 'one more');
    // Deleting with every slot in use works.
    ok(setRegion(c, vm, { slot: 100n }));
    ok(setRegion(c, vm, plain(100n, 100n * PAGE)));
  });
});

describe('step 2: flags (checked even for deletes)', () => {
  test('valid: LOG_DIRTY, READONLY, GUEST_MEMFD; every other bit 3..31 is EINVAL', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, 0n, PAGE, { flags: MEM_LOG_DIRTY })));
    ok(setRegion(c, vm, plain(1n, MiB, PAGE, { flags: MEM_READONLY })));
    ok(setRegion(c, vm, plain(2n, 2n * MiB, PAGE, { flags: MEM_LOG_DIRTY | MEM_READONLY })));
    for (let b = 3n; b < 32n; b++)
      fails(setRegion(c, vm, plain(5n, 5n * MiB, PAGE, { flags: 1n << b })), 'EINVAL', `bit ${b}`);
  });

  test('GUEST_MEMFD excludes LOG_DIRTY and READONLY', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, PAGE);
    fails(
      setRegion(c, vm, plain(0n, 0n, PAGE, { flags: MEM_GUEST_MEMFD | MEM_LOG_DIRTY, gmem: g })),
      'EINVAL',
    );
    fails(
      setRegion(c, vm, plain(0n, 0n, PAGE, { flags: MEM_GUEST_MEMFD | MEM_READONLY, gmem: g })),
      'EINVAL',
    );
    ok(setRegion(c, vm, plain(0n, 0n, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g })));
  });

  test('delete: GUEST_MEMFD with a bad fd succeeds, GUEST_MEMFD|LOG_DIRTY fails [§7]', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, 0n)));
    ok(setRegion(c, vm, plain(1n, MiB)));
    fails(setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD | MEM_LOG_DIRTY }), 'EINVAL');
    fails(setRegion(c, vm, { slot: 0n, flags: 1n << 7n }), 'EINVAL', 'unknown bit on delete');
    assert.equal(vmOf(c, vm).slots.has(0), true, 'failed deletes leave the slot');
    assert.equal(ok(setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, gmem: -1 })), 'DELETE');
    assert.equal(
      ok(setRegion(c, vm, { slot: 1n, flags: MEM_READONLY, gmem: 99, uaddr: 0x1000n })),
      'DELETE',
    );
  });

  test('legacy KVM_SET_USER_MEMORY_REGION rejects GUEST_MEMFD and unknown bits, accepts LOG_DIRTY|READONLY', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, PAGE);
    fails(
      setRegion(c, vm, plain(0n, 0n, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g, v1: true })),
      'EINVAL',
    );
    fails(setRegion(c, vm, plain(0n, 0n, PAGE, { flags: 8n, v1: true })), 'EINVAL');
    ok(setRegion(c, vm, plain(0n, 0n, PAGE, { flags: MEM_LOG_DIRTY | MEM_READONLY, v1: true })));
    // A delete through v1 of a slot created by v2 with the v2-only flag still fails on the flag.
    ok(setRegion(c, vm, plain(1n, MiB, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g })));
    fails(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, v1: true }), 'EINVAL');
    assert.equal(ok(setRegion(c, vm, { slot: 1n, v1: true })), 'DELETE');
  });
});

describe('steps 3–9: sanity checks', () => {
  test('memory_size and guest_phys_addr must be page aligned', () => {
    const { c, vm } = pvm();
    fails(setRegion(c, vm, plain(0n, 0n, PAGE + 1n)), 'EINVAL', 'size');
    fails(setRegion(c, vm, plain(0n, 0n, 2048n)), 'EINVAL', 'size 2048');
    fails(setRegion(c, vm, plain(0n, 0x800n)), 'EINVAL', 'gpa');
    fails(setRegion(c, vm, { slot: 0n, size: 1n }), 'EINVAL', 'size 1 is not a delete');
    ok(setRegion(c, vm, plain(0n, PAGE)));
  });

  test('userspace_addr: unaligned → EINVAL; 0 is acceptable (plain and guest_memfd slots)', () => {
    const { c, vm } = pvm();
    fails(setRegion(c, vm, plain(0n, 0n, PAGE, { uaddr: 0x1001n })), 'EINVAL');
    ok(setRegion(c, vm, plain(0n, 0n, PAGE, { uaddr: 0n })));
    const g = createGmem(c, vm, PAGE);
    ok(setRegion(c, vm, plain(1n, MiB, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g, uaddr: 0n })));
  });

  test('access_ok: a range ending exactly at 0x7ffffffff000 is accepted, one page more is EINVAL', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, 0n, PAGE, { uaddr: TASK_SIZE_MAX - PAGE })));
    ok(setRegion(c, vm, plain(1n, MiB, 2n * MiB, { uaddr: TASK_SIZE_MAX - 2n * MiB })));
    fails(setRegion(c, vm, plain(2n, 8n * MiB, PAGE, { uaddr: TASK_SIZE_MAX })), 'EINVAL');
    fails(
      setRegion(c, vm, plain(2n, 8n * MiB, 2n * PAGE, { uaddr: TASK_SIZE_MAX - PAGE })),
      'EINVAL',
    );
    fails(setRegion(c, vm, plain(2n, 8n * MiB, PAGE, { uaddr: 1n << 47n })), 'EINVAL', '2^47');
    fails(
      setRegion(c, vm, plain(2n, 8n * MiB, 2n * PAGE, { uaddr: U64 - PAGE })),
      'EINVAL',
      'wraps',
    );
    fails(
      setRegion(c, vm, plain(2n, 8n * MiB, PAGE, { uaddr: 0xffff_8000_0000_0000n })),
      'EINVAL',
      'kernel half',
    );
  });

  test('access_ok applies to guest_memfd slots too', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 2n * PAGE);
    const r = (uaddr: bigint, slot: bigint) =>
      setRegion(
        c,
        vm,
        plain(slot, slot * MiB, PAGE, {
          flags: MEM_GUEST_MEMFD,
          gmem: g,
          uaddr,
          offset: slot * PAGE,
        }),
      );
    fails(r(TASK_SIZE_MAX, 0n), 'EINVAL');
    ok(r(TASK_SIZE_MAX - PAGE, 0n));
  });

  test('GUEST_MEMFD: offset unaligned or offset + size wrapping u64 → EINVAL (even for a delete)', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 4n * PAGE);
    const gm = (offset: bigint, size = PAGE): Region => ({
      slot: 0n,
      flags: MEM_GUEST_MEMFD,
      gpa: 0n,
      size,
      gmem: g,
      offset,
    });
    for (const off of [1n, 2048n, 4095n, 4097n])
      fails(setRegion(c, vm, gm(off)), 'EINVAL', `offset ${off}`);
    fails(setRegion(c, vm, gm(U64 - PAGE, 2n * PAGE)), 'EINVAL', 'offset + size wraps');
    ok(setRegion(c, vm, gm(PAGE)));
    fails(
      setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, offset: 1n }),
      'EINVAL',
      'delete, unaligned offset',
    );
    assert.equal(
      ok(setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, offset: PAGE })),
      'DELETE',
    );
    // Without GUEST_MEMFD the offset is not looked at.
    ok(setRegion(c, vm, plain(1n, MiB, PAGE, { offset: 1n })));
  });

  test('guest_phys_addr + memory_size wrapping → EINVAL', () => {
    const { c, vm } = pvm();
    fails(setRegion(c, vm, plain(0n, U64 - PAGE, 2n * PAGE)), 'EINVAL');
  });

  test('npages > KVM_MEM_MAX_NR_PAGES (2^31-1) → EINVAL; exactly 2^31-1 is fine [verified]', () => {
    const { c, vm } = pvm();
    fails(setRegion(c, vm, plain(0n, 0n, (1n << 31n) * PAGE)), 'EINVAL');
    ok(setRegion(c, vm, plain(0n, 0n, ((1n << 31n) - 1n) * PAGE)));
  });
});

describe('step 10: delete', () => {
  test('the sanity checks of steps 2–9 apply to deletes too (uaddr, gpa alignment, access_ok)', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, MiB)));
    fails(setRegion(c, vm, { slot: 0n, uaddr: 0x1001n }), 'EINVAL', 'unaligned uaddr');
    fails(setRegion(c, vm, { slot: 0n, gpa: 0x800n }), 'EINVAL', 'unaligned gpa');
    fails(
      setRegion(c, vm, { slot: 0n, uaddr: TASK_SIZE_MAX + PAGE }),
      'EINVAL',
      'uaddr beyond TASK_SIZE',
    );
    fails(setRegion(c, vm, { slot: 1n << 16n }), 'EINVAL', 'address space 1 without SMM');
    assert.equal(
      ok(setRegion(c, vm, { slot: 0n, uaddr: TASK_SIZE_MAX })),
      'DELETE',
      'access_ok(TASK_SIZE_MAX, 0)',
    );
  });

  test('deleting an absent slot → EINVAL; fd, offset, uaddr and gpa are ignored', () => {
    const { c, vm } = pvm();
    fails(setRegion(c, vm, { slot: 3n }), 'EINVAL');
    ok(setRegion(c, vm, plain(3n, MiB, 4n * PAGE, { uaddr: 0x10000n })));
    assert.equal(
      ok(setRegion(c, vm, { slot: 3n, gpa: 7n * MiB, uaddr: 0x20000n, gmem: 42 })),
      'DELETE',
    );
    assert.equal(vmOf(c, vm).slots.has(3), false);
    fails(setRegion(c, vm, { slot: 3n }), 'EINVAL', 'twice');
    ok(setRegion(c, vm, plain(4n, MiB, 4n * PAGE)), 'its GPA range is free again');
  });

  test('delete zaps stage-2 mappings (linux-6.18: every root, not only the slot)', () => {
    const c = newHost();
    const vm = createVm(c);
    const a = mmapAnon(c, 2n * PAGE);
    const b = mmapAnon(c, PAGE);
    ok(setRegion(c, vm, plain(1n, MiB, 2n * PAGE, { uaddr: a })));
    ok(setRegion(c, vm, plain(2n, 2n * MiB, PAGE, { uaddr: b })));
    const vcpu = createVcpu(c, vm);
    guestLoad(c, vcpu, MiB);
    guestLoad(c, vcpu, 2n * MiB);
    const v = vmOf(c, vm);
    assert.equal(mappedPages(v, 0, 2 ** 20), 2);
    ok(setRegion(c, vm, { slot: 1n }));
    assert.equal(mappedPages(v, 0, 2 ** 20), 0, 'slot 2 zapped too (KVM_X86_QUIRK_SLOT_ZAP_ALL)');
    const r = runGuest(c, vcpu, [load(MiB)]);
    assert.deepEqual(
      r.exits[0],
      { reason: 'MMIO', gpa: MiB, len: 4, is_write: false },
      'deleted range is MMIO',
    );
  });
});

describe('step 11: create vs modify', () => {
  test('identical re-set of a plain slot → success, no change', () => {
    const { c, vm } = pvm();
    assert.equal(ok(setRegion(c, vm, plain(0n, MiB, PAGE, { uaddr: 0x5000n }))), 'CREATE');
    assert.equal(ok(setRegion(c, vm, plain(0n, MiB, PAGE, { uaddr: 0x5000n }))), 'NONE');
  });

  test('modify: changing userspace_addr or npages or toggling READONLY → EINVAL', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, MiB, 2n * PAGE, { uaddr: 0x5000n })));
    fails(setRegion(c, vm, plain(0n, MiB, 2n * PAGE, { uaddr: 0x6000n })), 'EINVAL', 'uaddr');
    fails(setRegion(c, vm, plain(0n, MiB, PAGE, { uaddr: 0x5000n })), 'EINVAL', 'npages');
    fails(
      setRegion(c, vm, plain(0n, MiB, 2n * PAGE, { uaddr: 0x5000n, flags: MEM_READONLY })),
      'EINVAL',
      'READONLY on',
    );
    ok(setRegion(c, vm, plain(1n, 2n * MiB, PAGE, { flags: MEM_READONLY })));
    fails(setRegion(c, vm, plain(1n, 2n * MiB, PAGE)), 'EINVAL', 'READONLY off');
  });

  test('FLAGS_ONLY: toggling LOG_DIRTY', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, MiB, PAGE)));
    assert.equal(
      ok(setRegion(c, vm, plain(0n, MiB, PAGE, { flags: MEM_LOG_DIRTY }))),
      'FLAGS_ONLY',
    );
    assert.equal(vmOf(c, vm).slots.get(0)!.flags, MEM_LOG_DIRTY);
    assert.equal(ok(setRegion(c, vm, plain(0n, MiB, PAGE))), 'FLAGS_ONLY');
    assert.equal(vmOf(c, vm).slots.get(0)!.flags, 0n);
  });

  test('MOVE: a new base gfn; the guest then sees the memory at the new GPA (linux-6.18)', () => {
    const c = newHost();
    const vm = createVm(c);
    const a = mmapAnon(c, PAGE);
    poke(c, a, 'c0ffee00');
    ok(setRegion(c, vm, plain(1n, MiB, PAGE, { uaddr: a })));
    const vcpu = createVcpu(c, vm);
    assert.equal(guestLoad(c, vcpu, MiB), 'c0ffee00');
    assert.equal(ok(setRegion(c, vm, plain(1n, 3n * MiB, PAGE, { uaddr: a }))), 'MOVE');
    const v = vmOf(c, vm);
    assert.equal(v.slots.get(1)!.baseGfn, Number((3n * MiB) >> 12n));
    assert.equal(
      mappedPages(v, Number(MiB >> 12n), Number(MiB >> 12n) + 1),
      0,
      'old mapping zapped',
    );
    assert.equal(guestLoad(c, vcpu, 3n * MiB), 'c0ffee00');
    const r = runGuest(c, vcpu, [load(MiB)]);
    assert.equal(r.exits[0]!['reason'], 'MMIO');
  });

  test('MOVE may overlap its own old range; MOVE onto another slot → EEXIST', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, MiB, 4n * PAGE)));
    ok(setRegion(c, vm, plain(1n, 2n * MiB, PAGE)));
    assert.equal(ok(setRegion(c, vm, plain(0n, MiB + PAGE, 4n * PAGE))), 'MOVE');
    fails(setRegion(c, vm, plain(0n, 2n * MiB - 2n * PAGE, 4n * PAGE)), 'EEXIST');
  });

  test('guest_memfd slots are immutable: identical re-set, flags 0, move → EINVAL [§7]', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 4n * PAGE);
    const r: Region = { slot: 0n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: PAGE, gmem: g };
    ok(setRegion(c, vm, r));
    fails(setRegion(c, vm, r), 'EINVAL', 'identical re-set');
    fails(setRegion(c, vm, { ...r, flags: 0n }), 'EINVAL', 'drop GUEST_MEMFD (FLAGS_ONLY shape)');
    fails(setRegion(c, vm, { ...r, gpa: 2n * MiB }), 'EINVAL', 'move');
    fails(setRegion(c, vm, { ...r, flags: 0n, gpa: 2n * MiB }), 'EINVAL', 'move without the flag');
    assert.equal(ok(setRegion(c, vm, { slot: 0n })), 'DELETE', 'but it can be deleted');
  });

  test('GUEST_MEMFD cannot be added to an existing plain slot [§7]', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 4n * PAGE);
    ok(setRegion(c, vm, plain(0n, MiB)));
    fails(setRegion(c, vm, plain(0n, MiB, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g })), 'EINVAL');
    assert.equal(vmOf(c, vm).slots.get(0)!.gmem, null);
  });

  test('immutability (EINVAL) is checked before the overlap (EEXIST)', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 4n * PAGE);
    ok(setRegion(c, vm, plain(0n, MiB, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g })));
    ok(setRegion(c, vm, plain(1n, 2n * MiB)));
    fails(
      setRegion(c, vm, plain(0n, 2n * MiB, PAGE, { flags: MEM_GUEST_MEMFD, gmem: g })),
      'EINVAL',
    );
  });
});

describe('step 12: GPA overlap → EEXIST, and which errno wins', () => {
  test('overlap with any part of another slot → EEXIST; adjacent slots are fine', () => {
    const { c, vm } = pvm();
    ok(setRegion(c, vm, plain(0n, MiB, 4n * PAGE)));
    fails(setRegion(c, vm, plain(1n, MiB - PAGE, 2n * PAGE)), 'EEXIST', 'front');
    fails(setRegion(c, vm, plain(1n, MiB + 3n * PAGE, 2n * PAGE)), 'EEXIST', 'back');
    fails(setRegion(c, vm, plain(1n, MiB + PAGE, PAGE)), 'EEXIST', 'inside');
    fails(setRegion(c, vm, plain(1n, 0n, 2n * MiB)), 'EEXIST', 'covering');
    ok(setRegion(c, vm, plain(1n, MiB - PAGE, PAGE)), 'adjacent below');
    ok(setRegion(c, vm, plain(2n, MiB + 4n * PAGE, PAGE)), 'adjacent above');
  });

  test('EEXIST (GPA overlap) wins over bind errors: bad fd, non-gmem fd, bad offset range [§7]', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, PAGE);
    ok(setRegion(c, vm, plain(0n, MiB, 4n * PAGE)));
    const over = (extra: Region) =>
      setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: PAGE, ...extra });
    fails(over({ gmem: -1 }), 'EEXIST', 'fd -1');
    fails(over({ gmem: vm }), 'EEXIST', 'VM fd');
    fails(over({ gmem: g, offset: 8n * PAGE }), 'EEXIST', 'offset past i_size');
  });

  test('EINVAL (unaligned offset) wins over EEXIST [§7]; so do all earlier sanity checks', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 4n * PAGE);
    ok(setRegion(c, vm, plain(0n, MiB, 4n * PAGE)));
    const over: Region = { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: PAGE, gmem: g };
    fails(setRegion(c, vm, { ...over, offset: 1n }), 'EINVAL', 'unaligned offset');
    fails(setRegion(c, vm, { ...over, uaddr: 0x123n }), 'EINVAL', 'unaligned uaddr');
    fails(setRegion(c, vm, { ...over, flags: MEM_GUEST_MEMFD | MEM_READONLY }), 'EINVAL', 'flags');
    fails(setRegion(c, vm, { ...over, size: PAGE + 8n }), 'EINVAL', 'size');
    fails(setRegion(c, vm, { ...over, slot: 32764n }), 'EINVAL', 'slot id');
  });

  test('EEXIST precedes the max-gfn check (arch prepare)', () => {
    const c = newHost();
    const vm = createVm(c);
    ok(setRegion(c, vm, plain(0n, (1n << 52n) - PAGE)));
    fails(setRegion(c, vm, plain(1n, (1n << 52n) - PAGE, 2n * PAGE)), 'EEXIST');
  });

  test('gmem-offset-only overlap (disjoint GPAs) is the bind check: EINVAL in 6.18, not EEXIST', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, 10n * MiB);
    ok(
      setRegion(c, vm, {
        slot: 10n,
        flags: MEM_GUEST_MEMFD,
        gpa: 0xc000_0000n,
        size: 4n * MiB,
        gmem: g,
      }),
    );
    ok(
      setRegion(c, vm, {
        slot: 11n,
        flags: MEM_GUEST_MEMFD,
        gpa: 0x1_8000_0000n,
        size: 4n * MiB,
        gmem: g,
        offset: 4n * MiB,
      }),
    );
    ok(setRegion(c, vm, { slot: 10n }));
    const a: Region = { slot: 10n, flags: MEM_GUEST_MEMFD, size: 4n * MiB, gmem: g };
    fails(setRegion(c, vm, { ...a, gpa: 0x1_8000_0000n - 2n * MiB }), 'EEXIST', 'GPA front half');
    fails(setRegion(c, vm, { ...a, gpa: 0x1_8000_0000n + 2n * MiB }), 'EEXIST', 'GPA back half');
    fails(
      setRegion(c, vm, { ...a, gpa: 0xc000_0000n, offset: 2n * MiB }),
      'EINVAL',
      'offset front',
    );
    fails(setRegion(c, vm, { ...a, gpa: 0xc000_0000n, offset: 6n * MiB }), 'EINVAL', 'offset back');
    ok(setRegion(c, vm, { ...a, gpa: 0xc000_0000n, offset: 0n }));
  });
});

describe('step 14: the MMU max gfn (arch prepare)', () => {
  for (const profile of ['linux-6.18', 'linux-6.18-pvm']) {
    test(`${profile}: a slot ending exactly at GPA 2^52 is accepted, beyond is EINVAL`, () => {
      const c = newHost(profile);
      const vm = createVm(c);
      ok(setRegion(c, vm, plain(0n, (1n << 52n) - PAGE)), 'last page below 2^52');
      fails(setRegion(c, vm, plain(1n, 1n << 52n)), 'EINVAL', 'at 2^52');
      fails(
        setRegion(c, vm, plain(1n, (1n << 52n) - 2n * PAGE, 2n * PAGE)),
        'EEXIST',
        'overlaps slot 0',
      );
      fails(setRegion(c, vm, plain(2n, (1n << 52n) - 2n * MiB, 4n * MiB)), 'EEXIST');
      fails(setRegion(c, vm, plain(2n, 1n << 53n, PAGE)), 'EINVAL', '2^53');
      ok(setRegion(c, vm, plain(3n, 1n << 51n)), '2^51 [verified]');
    });
  }

  test('MOVE beyond the max gfn → EINVAL and the slot stays where it was', () => {
    const c = newHost();
    const vm = createVm(c);
    ok(setRegion(c, vm, plain(0n, MiB)));
    fails(setRegion(c, vm, plain(0n, 1n << 52n)), 'EINVAL');
    const s = vmOf(c, vm).slots.get(0)!;
    assert.equal(s.baseGfn, Number(MiB >> 12n));
    ok(setRegion(c, vm, plain(1n, 1n << 51n)), 'nothing is left at the target');
    fails(setRegion(c, vm, plain(2n, MiB)), 'EEXIST', 'the old range is still occupied');
  });
});

describe('capabilities', () => {
  test('KVM_CAP_NR_MEMSLOTS = 32764; KVM_CAP_MULTI_ADDRESS_SPACE: pvm 0, linux-6.18 2 (DEFAULT) / 1 (SW_PROTECTED)', () => {
    const { c, vm } = pvm();
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, 10n)), 32764n);
    assert.equal(ok(c.h.kvmCheckExtension(vm, 10n)), 32764n);
    assert.equal(ok(c.h.kvmCheckExtension(vm, 118n)), 0n);
    const c2 = newHost();
    assert.equal(ok(c2.h.kvmCheckExtension(c2.kvm, 118n)), 2n);
    assert.equal(ok(c2.h.kvmCheckExtension(createVm(c2), 118n)), 2n);
    assert.equal(ok(c2.h.kvmCheckExtension(createVm(c2, SW_PROTECTED_VM), 118n)), 1n);
  });
});

describe('closed or wrong VM fd', () => {
  test('closed VM fd → EBADF; /dev/kvm → EINVAL; guest_memfd → ENOTTY; vCPU → EINVAL', () => {
    const { c, vm } = pvm();
    const g = createGmem(c, vm, PAGE);
    const vcpu = createVcpu(c, vm);
    fails(setRegion(c, -1, plain(0n, 0n)), 'EBADF');
    fails(setRegion(c, c.kvm, plain(0n, 0n)), 'EINVAL');
    fails(setRegion(c, g, plain(0n, 0n)), 'ENOTTY');
    fails(setRegion(c, vcpu, plain(0n, 0n)), 'EINVAL');
  });
});
