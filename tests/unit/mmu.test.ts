/**
 * Unit tests for src/core/arch/x86/mmu.ts on the `linux-6.18` profile (TDP, stage-2 guest accesses):
 * the backing decision matrix of kernel-uapi.md §3.6, the fault procedure of §3.1,
 * KVM_EXIT_MEMORY_FAULT (§3.2) including its kvm_run payload, mapping levels (§3.4) and the
 * invalidation sources of §3.5.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ATTR_PRIVATE,
  EXIT_FLAG_PRIVATE,
  GMEM_INIT_SHARED,
  GMEM_MMAP,
  GMEM_SHARED,
  MADV_DONTNEED,
  MAP_SHARED,
  MEM_GUEST_MEMFD,
  MEM_READONLY,
  MiB,
  PAGE,
  PROT_READ,
  PUNCH,
  SW_PROTECTED_VM,
  createGmem,
  createVcpu,
  createVm,
  guestLoad,
  guestStore,
  load,
  mappedPages,
  mmapAnon,
  mmapFd,
  newHost,
  ok,
  peekHex,
  poke,
  runGuest,
  setRegion,
  store,
  vmOf,
  type Ctx,
} from './helpers.js';

const GPA = MiB;
const GFN = Number(GPA >> 12n);
const MADV_HUGEPAGE = 14;

function le(hex: string): bigint {
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2)
    v = (v << 8n) | BigInt(parseInt(hex.slice(i, i + 2), 16));
  return v;
}

function setAttr(c: Ctx, vm: number, address: bigint, size: bigint, attributes = ATTR_PRIVATE) {
  return ok(c.h.kvmSetMemoryAttributes(vm, { address, size, attributes, flags: 0n }));
}

type Setup = {
  c: Ctx;
  vm: number;
  vcpu: number;
  /** The slot's userspace_addr mapping (anonymous, 4 pages), or 0. */
  shared: bigint;
  /** The guest_memfd fd, or -1. */
  g: number;
};

/** A VM of `type` with slot 1 at GPA 1 MiB (4 pages): plain, or bound to a gmem with `gflags`. */
function setup(type: bigint, gmem: bigint | 'none', opts: { uaddr0?: boolean } = {}): Setup {
  const c = newHost('linux-6.18');
  const vm = createVm(c, type);
  const shared = opts.uaddr0 ? 0n : mmapAnon(c, 4n * PAGE);
  let g = -1;
  if (gmem === 'none') ok(setRegion(c, vm, { slot: 1n, gpa: GPA, size: 4n * PAGE, uaddr: shared }));
  else {
    g = createGmem(c, vm, 4n * PAGE, gmem);
    ok(
      setRegion(c, vm, {
        slot: 1n,
        flags: MEM_GUEST_MEMFD,
        gpa: GPA,
        size: 4n * PAGE,
        uaddr: shared,
        gmem: g,
      }),
    );
  }
  return { c, vm, vcpu: createVcpu(c, vm), shared, g };
}

function spte(s: Setup, gfn = GFN) {
  return vmOf(s.c, s.vm).stage2[0]!.get(gfn);
}

describe('§3.6 behaviour matrix: which page backs a guest access', () => {
  test('DEFAULT, no gmem: shared access → userspace_addr', () => {
    const s = setup(0n, 'none');
    poke(s.c, s.shared + 8n, '11223344');
    assert.equal(guestLoad(s.c, s.vcpu, GPA + 8n), '11223344');
    guestStore(s.c, s.vcpu, GPA + PAGE, 'a0a1a2a3');
    assert.equal(peekHex(s.c, s.shared + PAGE, 4), 'a0a1a2a3');
    assert.deepEqual(
      { ...spte(s, GFN + 1)!, base: 0 },
      { base: 0, level: '4K', private: false, source: 'hva', writable: true },
    );
  });

  for (const gflags of [0n, GMEM_INIT_SHARED]) {
    test(`DEFAULT, gmem flags ${gflags} (no MMAP, hybrid): always userspace_addr; gmem contents never reach the guest`, () => {
      const s = setup(0n, gflags);
      poke(s.c, s.shared, '0badf00d');
      ok(s.c.h.fallocate(s.g, 1, 0n, 4n * PAGE));
      assert.equal(guestLoad(s.c, s.vcpu, GPA), '0badf00d');
      guestStore(s.c, s.vcpu, GPA + PAGE, '12345678');
      assert.equal(peekHex(s.c, s.shared + PAGE, 4), '12345678');
      assert.equal(spte(s)!.source, 'hva');
      const gf = s.c.h.file(s.g) as import('../../src/core/kvm/objects.js').GmemFile;
      for (let i = 0; i < 4; i++)
        assert.equal(gf.pages.get(i)!.state, 'allocated', 'never prepared');
    });
  }

  test('DEFAULT, hybrid: punching the gmem still zaps the bound gfns (harmless refault)', () => {
    const s = setup(0n, 0n);
    poke(s.c, s.shared, '42');
    assert.equal(guestLoad(s.c, s.vcpu, GPA, 1), '42');
    assert.ok(spte(s));
    ok(s.c.h.fallocate(s.g, PUNCH, 0n, PAGE));
    assert.equal(spte(s), undefined);
    assert.equal(guestLoad(s.c, s.vcpu, GPA, 1), '42', 'refault finds the same shared page');
  });

  test('DEFAULT, gmem MMAP|INIT_SHARED (gmem-only): the gmem page, coherent with the host mapping; userspace_addr may be 0', () => {
    const s = setup(0n, GMEM_SHARED, { uaddr0: true });
    const m = mmapFd(s.c, s.g, 4n * PAGE);
    poke(s.c, m + 4n, 'feedface');
    assert.equal(guestLoad(s.c, s.vcpu, GPA + 4n), 'feedface');
    guestStore(s.c, s.vcpu, GPA + 3n * PAGE, '01020304');
    assert.equal(peekHex(s.c, m + 3n * PAGE, 4), '01020304');
    assert.deepEqual(
      { ...spte(s)!, base: 0 },
      { base: 0, level: '4K', private: false, source: 'gmem', writable: true },
    );
  });

  test('DEFAULT, gmem MMAP only: the guest uses the gmem pages while the host mapping SIGBUSes', () => {
    const s = setup(0n, GMEM_MMAP);
    poke(s.c, s.shared, 'dddddddd');
    const m = mmapFd(s.c, s.g, 4n * PAGE);
    guestStore(s.c, s.vcpu, GPA, 'c3c3c3c3');
    assert.equal(guestLoad(s.c, s.vcpu, GPA), 'c3c3c3c3');
    assert.equal(peekHex(s.c, s.shared, 4), 'dddddddd', 'userspace_addr untouched');
    assert.deepEqual(s.c.h.peek(m, 4), { ok: false, fault: 'SIGBUS' });
    assert.equal(spte(s)!.source, 'gmem');
  });

  test('SW_PROTECTED, no gmem: shared → userspace_addr; PRIVATE attribute → MEMORY_FAULT exit (c), flags PRIVATE', () => {
    const s = setup(SW_PROTECTED_VM, 'none');
    poke(s.c, s.shared, '99');
    assert.equal(guestLoad(s.c, s.vcpu, GPA, 1), '99');
    setAttr(s.c, s.vm, GPA + PAGE, PAGE);
    const r = runGuest(s.c, s.vcpu, [load(GPA), load(GPA + PAGE + 12n), load(GPA + 2n * PAGE)]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [
      { reason: 'LOAD', gpa: GPA, hex: '99000000' },
      { reason: 'MEMORY_FAULT', gpa: GPA + PAGE, size: 4096n, flags: EXIT_FLAG_PRIVATE },
    ]);
  });

  test('SW_PROTECTED, gmem flags 0 (hybrid): attr shared → userspace_addr, attr private → gmem page', () => {
    const s = setup(SW_PROTECTED_VM, 0n);
    poke(s.c, s.shared, '5e5e5e5e');
    assert.equal(guestLoad(s.c, s.vcpu, GPA), '5e5e5e5e');
    setAttr(s.c, s.vm, GPA, PAGE);
    assert.equal(guestLoad(s.c, s.vcpu, GPA), '00000000');
    assert.deepEqual(
      { ...spte(s)!, base: 0 },
      { base: 0, level: '4K', private: true, source: 'gmem', writable: true },
    );
    guestStore(s.c, s.vcpu, GPA, '70707070');
    assert.equal(peekHex(s.c, s.shared, 4), '5e5e5e5e', 'data independent of the shared page');
  });

  test('SW_PROTECTED, gmem MMAP (gmem-only): shared and private accesses both use the gmem page; the host SIGBUSes', () => {
    const s = setup(SW_PROTECTED_VM, GMEM_MMAP);
    poke(s.c, s.shared, 'abababab');
    guestStore(s.c, s.vcpu, GPA, '13579bdf');
    assert.equal(spte(s)!.private, false);
    assert.equal(spte(s)!.source, 'gmem');
    setAttr(s.c, s.vm, GPA, PAGE);
    assert.equal(spte(s), undefined, 'conversion zapped the mapping');
    assert.equal(guestLoad(s.c, s.vcpu, GPA), '13579bdf', 'same gmem page when private');
    assert.equal(spte(s)!.private, true);
    const m = mmapFd(s.c, s.g, PAGE);
    assert.deepEqual(s.c.h.peek(m, 1), { ok: false, fault: 'SIGBUS' });
  });
});

describe('§3.1 / §3.2: no memslot, released gmem, KVM_EXIT_MEMORY_FAULT', () => {
  test('no memslot: shared access → KVM_EXIT_MMIO; a private access → MEMORY_FAULT flags PRIVATE', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const vcpu = createVcpu(c, vm);
    let r = runGuest(c, vcpu, [load(0x4000_0000n), store(0x4000_0010n, 'aabb')]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(r.exits, [
      { reason: 'MMIO', gpa: 0x4000_0000n, len: 4, is_write: false },
      { reason: 'LOAD', gpa: 0x4000_0000n, hex: '00000000' },
      { reason: 'MMIO', gpa: 0x4000_0010n, len: 2, is_write: true, hex: 'aabb' },
      { reason: 'HLT' },
    ]);
    // A gfn never accessed before (no cached MMIO SPTE yet).
    setAttr(c, vm, 0x5000_0000n, PAGE);
    r = runGuest(c, vcpu, [store(0x5000_0ffcn, '01')]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [
      { reason: 'MEMORY_FAULT', gpa: 0x5000_0000n, size: 4096n, flags: EXIT_FLAG_PRIVATE },
    ]);
  });

  test(
    'a cached MMIO SPTE survives an attribute change on a gfn without memslot: the reserved-bit fault is handled as MMIO (§3.1 step 1)',
    {},
    () => {
      const c = newHost();
      const vm = createVm(c, SW_PROTECTED_VM);
      const vcpu = createVcpu(c, vm);
      assert.equal(runGuest(c, vcpu, [load(0x4000_0000n)]).exits[0]!['reason'], 'MMIO');
      // KVM_SET_MEMORY_ATTRIBUTES only zaps inside memslots and does not change the memslot
      // generation, so the MMIO SPTE stays valid; kvm_mmu_page_fault() does not mark reserved
      // faults private ("emulated MMIO is shared-only") and emulates.
      setAttr(c, vm, 0x4000_0000n, PAGE);
      const r = runGuest(c, vcpu, [load(0x4000_0000n)]);
      assert.equal(r.errno, undefined);
      assert.deepEqual(r.exits[0], { reason: 'MMIO', gpa: 0x4000_0000n, len: 4, is_write: false });
    },
  );

  test('private access after the slot is deleted → MEMORY_FAULT (private_access_memslot_deleted)', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const g = createGmem(c, vm, PAGE);
    ok(
      setRegion(c, vm, {
        slot: 10n,
        flags: MEM_GUEST_MEMFD,
        gpa: 0xc000_0000n,
        size: PAGE,
        gmem: g,
      }),
    );
    setAttr(c, vm, 0xc000_0000n, PAGE);
    const vcpu = createVcpu(c, vm);
    assert.equal(guestLoad(c, vcpu, 0xc000_0000n), '00000000');
    ok(setRegion(c, vm, { slot: 10n }));
    const r = runGuest(c, vcpu, [load(0xc000_0000n)]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [
      { reason: 'MEMORY_FAULT', gpa: 0xc000_0000n, size: 4096n, flags: EXIT_FLAG_PRIVATE },
    ]);
  });

  test('gmem file released: private access → EFAULT flags PRIVATE; gmem-only shared access → EFAULT flags 0 (§3.2 d)', () => {
    const p = setup(SW_PROTECTED_VM, 0n);
    setAttr(p.c, p.vm, GPA, PAGE);
    guestLoad(p.c, p.vcpu, GPA);
    ok(p.c.h.close(p.g));
    assert.equal(spte(p), undefined, 'release zapped');
    let r = runGuest(p.c, p.vcpu, [load(GPA)]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [
      { reason: 'MEMORY_FAULT', gpa: GPA, size: 4096n, flags: EXIT_FLAG_PRIVATE },
    ]);
    // The shared part of the hybrid slot still works through userspace_addr.
    assert.equal(guestLoad(p.c, p.vcpu, GPA + PAGE), '00000000');

    const s = setup(0n, GMEM_SHARED);
    guestLoad(s.c, s.vcpu, GPA);
    ok(s.c.h.close(s.g));
    r = runGuest(s.c, s.vcpu, [store(GPA + PAGE, '01')]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [
      { reason: 'MEMORY_FAULT', gpa: GPA + PAGE, size: 4096n, flags: 0n },
    ]);
  });

  test('the MEMORY_FAULT payload in the kvm_run page: exit_reason 39 @8, flags @32, gpa @40, size @48', () => {
    const s = setup(SW_PROTECTED_VM, 'none');
    setAttr(s.c, s.vm, GPA + 2n * PAGE, PAGE);
    const run = ok(s.c.h.mmap(s.vcpu, PAGE, PROT_READ, MAP_SHARED, 0n));
    const r = runGuest(s.c, s.vcpu, [load(GPA + 2n * PAGE + 100n, 2)]);
    assert.equal(r.errno, 'EFAULT');
    assert.equal(le(peekHex(s.c, run + 8n, 4)), 39n);
    assert.equal(le(peekHex(s.c, run + 32n, 8)), EXIT_FLAG_PRIVATE);
    assert.equal(le(peekHex(s.c, run + 40n, 8)), GPA + 2n * PAGE);
    assert.equal(le(peekHex(s.c, run + 48n, 8)), 4096n);
  });

  test('a MEMORY_FAULT ends the run: later steps do not execute', () => {
    const s = setup(SW_PROTECTED_VM, 'none');
    setAttr(s.c, s.vm, GPA, PAGE);
    const r = runGuest(s.c, s.vcpu, [load(GPA), store(GPA + PAGE, 'ff')]);
    assert.equal(r.exits.length, 1);
    assert.equal(peekHex(s.c, s.shared + PAGE, 1), '00');
  });
});

describe('hva-backed faults', () => {
  test('READONLY slot: loads read memory, stores become MMIO exits', () => {
    const c = newHost();
    const vm = createVm(c);
    const a = mmapAnon(c, PAGE);
    poke(c, a, '7f7f7f7f');
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_READONLY, gpa: GPA, size: PAGE, uaddr: a }));
    const vcpu = createVcpu(c, vm);
    const r = runGuest(c, vcpu, [load(GPA), store(GPA, '01020304'), load(GPA)]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(r.exits, [
      { reason: 'LOAD', gpa: GPA, hex: '7f7f7f7f' },
      { reason: 'MMIO', gpa: GPA, len: 4, is_write: true, hex: '01020304' },
      { reason: 'LOAD', gpa: GPA, hex: '7f7f7f7f' },
      { reason: 'HLT' },
    ]);
  });

  test('a read of untouched anonymous memory maps the zero page read-only; a later write refaults to a new page', () => {
    const s = setup(0n, 'none');
    assert.equal(guestLoad(s.c, s.vcpu, GPA), '00000000');
    assert.equal(spte(s)!.writable, false);
    guestStore(s.c, s.vcpu, GPA, '0a0b0c0d');
    assert.equal(spte(s)!.writable, true);
    assert.equal(peekHex(s.c, s.shared, 4), '0a0b0c0d');
  });

  test('host invalidations zap: MADV_DONTNEED on userspace_addr drops the mapping and the data', () => {
    const s = setup(0n, 'none');
    guestStore(s.c, s.vcpu, GPA, '11111111');
    assert.ok(spte(s));
    ok(s.c.h.madvise(s.shared, PAGE, MADV_DONTNEED));
    assert.equal(spte(s), undefined);
    assert.equal(guestLoad(s.c, s.vcpu, GPA), '00000000');
  });

  test('munmap of userspace_addr zaps; the next access fails with EFAULT', () => {
    const s = setup(0n, 'none');
    guestStore(s.c, s.vcpu, GPA, '22');
    ok(s.c.h.munmap(s.shared, 4n * PAGE));
    assert.equal(spte(s), undefined);
    const r = runGuest(s.c, s.vcpu, [load(GPA)]);
    assert.equal(r.errno, 'EFAULT');
    // Whether kvm_handle_error_pfn() fills a memory-fault exit for a failed hva lookup is not in
    // the spec; if an exit is reported it must be a shared (flags 0) one for this page.
    for (const e of r.exits)
      assert.deepEqual(e, { reason: 'MEMORY_FAULT', gpa: GPA, size: 4096n, flags: 0n });
  });
});

describe('§3.4 mapping level', () => {
  function thpSetup(type: bigint) {
    const c = newHost();
    const vm = createVm(c, type);
    const a = mmapAnon(c, 4n * MiB);
    ok(c.h.madvise(a, 4n * MiB, MADV_HUGEPAGE));
    ok(setRegion(c, vm, { slot: 1n, gpa: 4n * MiB, size: 4n * MiB, uaddr: a }));
    return { c, vm, vcpu: createVcpu(c, vm), a, v: vmOf(c, vm), g0: Number((4n * MiB) >> 12n) };
  }

  test('DEFAULT: a write fault into an empty THP-eligible frame is mapped 2M', () => {
    const { c, vcpu, v, g0 } = thpSetup(0n);
    guestStore(c, vcpu, 4n * MiB + 5n * PAGE, '01');
    const e = v.stage2[0]!.entryAt(g0 + 5)!;
    assert.equal(e.value.level, '2M');
    assert.equal(e.start, g0);
    assert.equal(e.end, g0 + 512);
  });

  test('SW_PROTECTED: a mixed frame caps the level at 4K; a uniform neighbour frame still maps 2M', () => {
    const { c, vm, vcpu, v, g0 } = thpSetup(SW_PROTECTED_VM);
    setAttr(c, vm, 4n * MiB + 100n * PAGE, PAGE);
    guestStore(c, vcpu, 4n * MiB + 5n * PAGE, '01');
    assert.equal(v.stage2[0]!.entryAt(g0 + 5)!.value.level, '4K');
    guestStore(c, vcpu, 6n * MiB, '02');
    assert.equal(v.stage2[0]!.entryAt(g0 + 512)!.value.level, '2M');
  });

  test('zapping a 4K part of a 2M mapping removes the whole huge mapping', () => {
    const { c, vm, vcpu, v, g0 } = thpSetup(SW_PROTECTED_VM);
    guestStore(c, vcpu, 4n * MiB, '01');
    assert.equal(mappedPages(v, g0, g0 + 512), 512);
    setAttr(c, vm, 4n * MiB + 7n * PAGE, PAGE);
    assert.equal(mappedPages(v, g0, g0 + 512), 0);
    assert.equal(guestLoad(c, vcpu, 4n * MiB, 1), '01', 'data still there (host THP)');
    assert.equal(v.stage2[0]!.entryAt(g0)!.value.level, '4K');
  });

  test(
    'a refault over an existing host THP maps 2M again (backing level = host page-table level)',
    {},
    () => {
      const { c, vm, vcpu, v, g0 } = thpSetup(0n);
      guestStore(c, vcpu, 4n * MiB, '01');
      assert.equal(v.stage2[0]!.entryAt(g0)!.value.level, '2M');
      // Zap everything without touching the host memory: create and delete an unrelated slot
      // (KVM_X86_QUIRK_SLOT_ZAP_ALL).
      ok(setRegion(c, vm, { slot: 2n, gpa: 64n * MiB, size: PAGE }));
      ok(setRegion(c, vm, { slot: 2n }));
      assert.equal(mappedPages(v, g0, g0 + 512), 0);
      assert.equal(guestLoad(c, vcpu, 4n * MiB, 1), '01');
      assert.equal(v.stage2[0]!.entryAt(g0)!.value.level, '2M', 'read refault');
      guestStore(c, vcpu, 4n * MiB + 8n * PAGE, '02');
      assert.equal(v.stage2[0]!.entryAt(g0 + 8)!.value.level, '2M', 'write refault');
    },
  );

  test('a madvise that splits the VMA inside a host THP splits it and zaps the 2M mapping', () => {
    const { c, vcpu, v, g0, a } = thpSetup(0n);
    guestStore(c, vcpu, 4n * MiB, '01');
    assert.equal(v.stage2[0]!.entryAt(g0)!.value.level, '2M');
    // MADV_SEQUENTIAL sets VM_SEQ_READ on 2 pages: __split_vma() -> __split_huge_pmd(), whose
    // mmu notifier removes the huge stage-2 mapping.
    ok(c.h.madvise(a + 16n * PAGE, 2n * PAGE, 2));
    assert.equal(mappedPages(v, g0, g0 + 512), 0);
    assert.equal(guestLoad(c, vcpu, 4n * MiB, 1), '01');
    assert.equal(v.stage2[0]!.entryAt(g0)!.value.level, '4K', 'the host page is 4K now');
  });

  test('gmem-sourced mappings are always 4K in 6.18 (order-0 folios)', () => {
    const s = setup(0n, GMEM_SHARED);
    guestStore(s.c, s.vcpu, GPA, '01');
    assert.equal(spte(s)!.level, '4K');
    assert.equal(mappedPages(vmOf(s.c, s.vm), GFN, GFN + 4), 1);
  });
});
