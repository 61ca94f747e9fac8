/**
 * Unit tests for src/core/kvm/mem_attributes.ts: KVM_SET_MEMORY_ATTRIBUTES (kernel-uapi.md §2.7) and
 * x86 hugepage "mixed" tracking (§3.4), observed through `lpageAllowed` from mmu.ts.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { lpageAllowed } from '../../src/core/arch/x86/mmu.js';
import { asGpa, gfnAdd, gpaToGfn } from '../../src/core/base/units.js';
import {
  ATTR_PRIVATE,
  GMEM_MMAP,
  GiB,
  MEM_GUEST_MEMFD,
  MiB,
  PAGE,
  SW_PROTECTED_VM,
  createGmem,
  createVcpu,
  createVm,
  fails,
  guestLoad,
  guestStore,
  mappedPages,
  mmapAnon,
  newHost,
  ok,
  peekHex,
  poke,
  setRegion,
  vmOf,
  type Ctx,
} from './helpers.js';

const U64 = 1n << 64n;

function setAttr(
  c: Ctx,
  vm: number,
  address: bigint,
  size: bigint,
  attributes = ATTR_PRIVATE,
  flags = 0n,
) {
  return c.h.kvmSetMemoryAttributes(vm, { address, size, attributes, flags });
}

describe('KVM_SET_MEMORY_ATTRIBUTES without the config (linux-6.18-pvm) [verified]', () => {
  test('ENOTTY for any arguments, valid or not', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    fails(setAttr(c, vm, 0n, PAGE, 0n), 'ENOTTY');
    fails(setAttr(c, vm, 0n, PAGE), 'ENOTTY');
    fails(setAttr(c, vm, 1n, 0n, 1n << 40n, 7n), 'ENOTTY');
  });

  test('the fd is still looked up first: EBADF; other fd kinds answer with their own default', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    const g = createGmem(c, vm, PAGE);
    fails(setAttr(c, -1, 0n, PAGE), 'EBADF');
    fails(setAttr(c, c.kvm, 0n, PAGE), 'EINVAL', '/dev/kvm');
    fails(setAttr(c, g, 0n, PAGE), 'ENOTTY', 'guest_memfd');
  });

  test('KVM_CAP_MEMORY_ATTRIBUTES is 0 on the system and the VM', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, 233n)), 0n);
    assert.equal(ok(c.h.kvmCheckExtension(vm, 233n)), 0n);
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES checks (linux-6.18) [src]', () => {
  test('capability: PRIVATE on the system and SW_PROTECTED VMs, 0 on DEFAULT VMs', () => {
    const c = newHost();
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, 233n)), ATTR_PRIVATE);
    assert.equal(ok(c.h.kvmCheckExtension(createVm(c), 233n)), 0n);
    assert.equal(ok(c.h.kvmCheckExtension(createVm(c, SW_PROTECTED_VM), 233n)), ATTR_PRIVATE);
  });

  test('DEFAULT VM: attributes 0 accepted (no-op), PRIVATE → EINVAL', () => {
    const c = newHost();
    const vm = createVm(c);
    ok(setAttr(c, vm, 0n, PAGE, 0n));
    fails(setAttr(c, vm, 0n, PAGE), 'EINVAL');
    assert.equal(vmOf(c, vm).attrs.size, 0);
  });

  test('flags ≠ 0 → EINVAL', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    fails(setAttr(c, vm, 0n, PAGE, ATTR_PRIVATE, 1n), 'EINVAL');
    fails(setAttr(c, vm, 0n, PAGE, 0n, 1n << 63n), 'EINVAL');
  });

  test('attributes outside PRIVATE → EINVAL (every other bit)', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    for (let b = 0n; b < 64n; b++) {
      const r = setAttr(c, vm, 0n, PAGE, 1n << b);
      if (b === 3n) ok(r);
      else fails(r, 'EINVAL', `bit ${b}`);
    }
  });

  test('size 0 or address + size wrapping → EINVAL; the last page below 2^64 is fine', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    fails(setAttr(c, vm, 0n, 0n), 'EINVAL', 'size 0');
    fails(setAttr(c, vm, U64 - PAGE, PAGE), 'EINVAL', 'ends exactly at 2^64 (wraps to 0)');
    fails(setAttr(c, vm, U64 - PAGE, 2n * PAGE), 'EINVAL', 'wraps');
    ok(setAttr(c, vm, U64 - 2n * PAGE, PAGE), 'last page before the wrap');
  });

  test('address or size not page aligned → EINVAL', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    fails(setAttr(c, vm, 1n, PAGE), 'EINVAL', 'address');
    fails(setAttr(c, vm, 0n, PAGE + 1n), 'EINVAL', 'size');
    fails(setAttr(c, vm, 0n, 2048n), 'EINVAL', 'size < page');
    assert.equal(vmOf(c, vm).attrs.size, 0, 'nothing stored by failed calls');
  });

  test('gfns need not be covered by memslots; attributes survive slot delete and re-create', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const v = vmOf(c, vm);
    ok(setAttr(c, vm, 0x1_0000_0000n, 4n * PAGE));
    assert.equal(v.attrs.get(0x10_0000), 8);
    assert.equal(v.attrs.get(0x10_0004), undefined);
    ok(setRegion(c, vm, { slot: 1n, gpa: 0x1_0000_0000n, size: 4n * PAGE }));
    ok(setRegion(c, vm, { slot: 1n }));
    assert.equal(v.attrs.get(0x10_0003), 8);
    ok(setAttr(c, vm, 0x1_0000_0000n + PAGE, PAGE, 0n));
    assert.equal(v.attrs.get(0x10_0001), undefined, '0 erases');
    assert.equal(v.attrs.get(0x10_0002), 8);
  });
});

describe('effects: uniform no-op and zaps on conversion (§2.7 steps 6–10)', () => {
  /** SW_PROTECTED VM with a hybrid slot (gmem without MMAP) at 1 MiB backed by anon memory. */
  function hybrid() {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const g = createGmem(c, vm, 4n * PAGE, 0n);
    const shared = mmapAnon(c, 4n * PAGE);
    ok(
      setRegion(c, vm, {
        slot: 1n,
        flags: MEM_GUEST_MEMFD,
        gpa: MiB,
        size: 4n * PAGE,
        uaddr: shared,
        gmem: g,
      }),
    );
    const vcpu = createVcpu(c, vm);
    return { c, vm, v: vmOf(c, vm), g, shared, vcpu, gfn: Number(MiB >> 12n) };
  }

  test('setting the value a range already has is a no-op: no invalidation, no zap', () => {
    const { c, vm, v, vcpu, gfn } = hybrid();
    guestLoad(c, vcpu, MiB);
    const seq = v.mmuInvalidateSeq;
    c.h.events.drain();
    ok(setAttr(c, vm, MiB, 4n * PAGE, 0n), 'shared → shared');
    assert.equal(v.mmuInvalidateSeq, seq);
    assert.equal(mappedPages(v, gfn, gfn + 4), 1, 'mapping kept');
    ok(setAttr(c, vm, MiB + PAGE, PAGE));
    const seq2 = v.mmuInvalidateSeq;
    assert.ok(seq2 > seq);
    c.h.events.drain();
    ok(setAttr(c, vm, MiB + PAGE, PAGE), 'private → private');
    assert.equal(v.mmuInvalidateSeq, seq2);
    assert.deepEqual(c.h.events.drain(), []);
  });

  test('shared → private zaps the shared mapping; the guest then sees the (zeroed) gmem page', () => {
    const { c, vm, v, shared, vcpu, gfn } = hybrid();
    poke(c, shared, '5a5a5a5a');
    assert.equal(guestLoad(c, vcpu, MiB), '5a5a5a5a');
    assert.equal(v.stage2[0]!.get(gfn)!.source, 'hva');
    const flushes = v.tlbFlushes.get('set_memory_attributes') ?? 0;
    ok(setAttr(c, vm, MiB, PAGE));
    assert.equal(v.stage2[0]!.get(gfn), undefined, 'zapped');
    assert.equal(v.tlbFlushes.get('set_memory_attributes'), flushes + 1, 'one TLB flush');
    assert.equal(guestLoad(c, vcpu, MiB), '00000000', 'private page: independent of shared data');
    const m = v.stage2[0]!.get(gfn)!;
    assert.equal(m.source, 'gmem');
    assert.equal(m.private, true);
  });

  test('private → shared zaps the private mapping; the old shared content reappears (§5.3)', () => {
    const { c, vm, v, shared, vcpu, gfn } = hybrid();
    poke(c, shared + PAGE, '01010101');
    ok(setAttr(c, vm, MiB + PAGE, PAGE));
    guestStore(c, vcpu, MiB + PAGE, 'eeeeeeee');
    assert.equal(peekHex(c, shared + PAGE, 4), '01010101', 'host sees the shared page only');
    ok(setAttr(c, vm, MiB + PAGE, PAGE, 0n));
    assert.equal(v.stage2[0]!.get(gfn + 1), undefined, 'private mapping zapped');
    assert.equal(guestLoad(c, vcpu, MiB + PAGE), '01010101');
    ok(setAttr(c, vm, MiB + PAGE, PAGE));
    assert.equal(guestLoad(c, vcpu, MiB + PAGE), 'eeeeeeee', 'private data survives (no punch)');
  });

  test('a conversion only zaps inside its range; with nothing mapped there is no TLB flush', () => {
    const { c, vm, v, vcpu, gfn } = hybrid();
    guestLoad(c, vcpu, MiB);
    guestLoad(c, vcpu, MiB + 3n * PAGE);
    const flushes = v.tlbFlushes.get('set_memory_attributes') ?? 0;
    ok(setAttr(c, vm, MiB + PAGE, 2n * PAGE));
    assert.equal(
      v.tlbFlushes.get('set_memory_attributes') ?? 0,
      flushes,
      'nothing zapped, no flush',
    );
    assert.equal(mappedPages(v, gfn, gfn + 4), 2);
    ok(setAttr(c, vm, MiB, 4n * PAGE));
    assert.equal(mappedPages(v, gfn, gfn + 4), 0);
  });
});

describe('hugepage mixed tracking (§3.4), seen through lpageAllowed', () => {
  const L2 = 512;
  const L1G = 512 * 512;

  /** SW_PROTECTED VM; slot 1 = 1 GiB at GPA 1 GiB over a 1 GiB-aligned anonymous mapping. */
  function gigSlot(attrsFirst?: (c: Ctx, vm: number) => void) {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const ua = mmapAnon(c, GiB);
    assert.equal(ua % GiB, 0n, 'first arena mapping is 1 GiB aligned');
    attrsFirst?.(c, vm);
    ok(setRegion(c, vm, { slot: 1n, gpa: GiB, size: GiB, uaddr: ua }));
    const v = vmOf(c, vm);
    const slot = v.slots.get(1)!;
    const g0 = gpaToGfn(asGpa(GiB));
    const a2 = (frame: number) => lpageAllowed(v, slot, gfnAdd(g0, frame * L2), '2M');
    const a1 = () => lpageAllowed(v, slot, g0, '1G');
    const set = (fromPage: number, pages: number, attr = ATTR_PRIVATE) =>
      ok(setAttr(c, vm, GiB + BigInt(fromPage) * PAGE, BigInt(pages) * PAGE, attr));
    return { c, vm, v, slot, g0, a2, a1, set };
  }

  test('a fresh slot: every fully contained 2M and 1G frame is allowed', () => {
    const { a2, a1 } = gigSlot();
    for (const f of [0, 1, 255, 511]) assert.equal(a2(f), true, `2M frame ${f}`);
    assert.equal(a1(), true);
  });

  test('one private page makes its 2M frame and the 1G frame mixed; neighbours stay allowed', () => {
    const { a2, a1, set } = gigSlot();
    set(5, 1);
    assert.equal(a2(0), false);
    assert.equal(a2(1), true);
    assert.equal(a1(), false);
  });

  test('converting a whole 2M frame makes it uniform again; 1G stays mixed until it is uniform', () => {
    const { a2, a1, set } = gigSlot();
    set(5, 1);
    set(0, L2);
    assert.equal(a2(0), true, 'frame 0 is all private: uniform');
    assert.equal(a1(), false, '1G frame: private + shared');
    set(0, L1G);
    assert.equal(a1(), true, 'all private');
    assert.equal(a2(300), true);
  });

  test('partial conversions: head and tail frames straddling the range are mixed, inner frames uniform', () => {
    const { a2, a1, set } = gigSlot();
    set(100, 1400); // [100, 1500): frame 0 head, frame 1 inside, frame 2 tail (1024..1536)
    assert.equal(a2(0), false, 'head');
    assert.equal(a2(1), true, 'inside');
    assert.equal(a2(2), false, 'tail');
    assert.equal(a2(3), true, 'outside');
    assert.equal(a1(), false);
    set(1500, 36); // completes frame 2
    assert.equal(a2(2), true);
    set(0, 100); // completes frame 0
    assert.equal(a2(0), true);
    assert.equal(a1(), false, 'frames 0..2 private, the rest shared');
  });

  test('converting back to shared inside a private 1G frame: one 2M frame and the 1G frame become mixed', () => {
    const { a2, a1, set } = gigSlot();
    set(0, L1G);
    set(L2 + 3, 1, 0n);
    assert.equal(a2(1), false);
    assert.equal(a2(0), true);
    assert.equal(a2(2), true);
    assert.equal(a1(), false);
    set(L2 + 3, 1);
    assert.equal(a2(1), true);
    assert.equal(a1(), true, '1G is uniform again and no 2M sub-frame is mixed');
  });

  test('attributes set before the slot exists are evaluated at memslot creation', () => {
    const { a2, a1 } = gigSlot((c, vm) => {
      ok(setAttr(c, vm, GiB + 7n * PAGE, PAGE));
      ok(setAttr(c, vm, GiB + 2n * MiB, 2n * MiB)); // frames 1 and 2 entirely private
    });
    assert.equal(a2(0), false, 'mixed');
    assert.equal(a2(1), true, 'uniform private');
    assert.equal(a2(2), true, 'uniform private');
    assert.equal(a2(3), true, 'uniform shared');
    assert.equal(a1(), false);
  });

  test('frames that stick out of the slot, or gfn/hva misalignment, are never allowed', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const ua = mmapAnon(c, 8n * MiB);
    // Slot starts 4 KiB into a 2M frame: head frame partial; hva aligned the same way.
    ok(setRegion(c, vm, { slot: 1n, gpa: 2n * MiB + PAGE, size: 4n * MiB, uaddr: ua + PAGE }));
    // Slot whose gfn and hva disagree modulo 2M.
    ok(setRegion(c, vm, { slot: 2n, gpa: 64n * MiB, size: 4n * MiB, uaddr: ua + 4n * MiB + PAGE }));
    const v = vmOf(c, vm);
    const s1 = v.slots.get(1)!;
    const s2 = v.slots.get(2)!;
    const g = (gpa: bigint) => gpaToGfn(asGpa(gpa));
    assert.equal(lpageAllowed(v, s1, g(2n * MiB + PAGE), '2M'), false, 'head frame partial');
    assert.equal(lpageAllowed(v, s1, g(4n * MiB), '2M'), true, 'whole frame inside');
    assert.equal(lpageAllowed(v, s1, g(6n * MiB), '2M'), false, 'tail frame partial');
    assert.equal(lpageAllowed(v, s2, g(64n * MiB), '2M'), false, 'gfn/hva misaligned');
  });

  test('DEFAULT VMs do not track mixed frames (no private memory)', () => {
    const c = newHost();
    const vm = createVm(c);
    const ua = mmapAnon(c, 4n * MiB);
    ok(setRegion(c, vm, { slot: 1n, gpa: 4n * MiB, size: 4n * MiB, uaddr: ua }));
    const v = vmOf(c, vm);
    assert.equal(lpageAllowed(v, v.slots.get(1)!, gpaToGfn(asGpa(4n * MiB)), '2M'), true);
  });

  test('a gmem-only slot in a SW_PROTECTED VM (MMAP file) is tracked like any other', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const g = createGmem(c, vm, 4n * MiB, GMEM_MMAP);
    ok(
      setRegion(c, vm, {
        slot: 1n,
        flags: MEM_GUEST_MEMFD,
        gpa: 4n * MiB,
        size: 4n * MiB,
        gmem: g,
      }),
    );
    const v = vmOf(c, vm);
    const s = v.slots.get(1)!;
    const f0 = gpaToGfn(asGpa(4n * MiB));
    assert.equal(lpageAllowed(v, s, f0, '2M'), true);
    ok(setAttr(c, vm, 4n * MiB + PAGE, PAGE));
    assert.equal(lpageAllowed(v, s, f0, '2M'), false);
    assert.equal(lpageAllowed(v, s, gfnAdd(f0, L2), '2M'), true);
  });
});
