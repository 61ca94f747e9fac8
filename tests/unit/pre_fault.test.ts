/**
 * Unit tests for src/core/kvm/pre_fault.ts: KVM_PRE_FAULT_MEMORY (kernel-uapi.md §2.8, §5.5, §7).
 * The generic checks, the progress rule (an error only from a call that made no progress, the
 * range always copied back), and the x86 step on a shadow-paging (PVM) and a TDP kernel.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmVcpuPreFaultMemory } from '../../src/core/kvm/pre_fault.js';
import { Vcpu, Vm } from '../../src/core/kvm/objects.js';
import { getProfile } from '../../src/core/profiles/index.js';
import {
  ATTR_PRIVATE,
  GMEM_SHARED,
  MEM_GUEST_MEMFD,
  MiB,
  PAGE,
  SW_PROTECTED_VM,
  createGmem,
  createVcpu,
  createVm,
  gmemOf,
  guestStore,
  mappedPages,
  mmapAnon,
  newHost,
  ok,
  setRegion,
  vmOf,
  type Ctx,
} from './helpers.js';

const U64 = 1n << 64n;
const MADV_HUGEPAGE = 14;

function pf(c: Ctx, vcpu: number, gpa: bigint, size: bigint, flags = 0n) {
  const r = c.h.kvmPreFaultMemory(vcpu, gpa, size, flags);
  return { errno: r.errno, gpa: r.remaining.gpa, size: r.remaining.size };
}

describe('generic checks (every profile)', () => {
  for (const profile of ['linux-6.18', 'linux-6.18-pvm']) {
    test(`${profile}: flags ≠ 0, unaligned gpa/size, size 0, wrap → EINVAL with the range unchanged`, () => {
      const c = newHost(profile);
      const vm = createVm(c);
      const vcpu = createVcpu(c, vm);
      assert.deepEqual(pf(c, vcpu, 0n, PAGE, 1n), { errno: 'EINVAL', gpa: 0n, size: PAGE });
      assert.deepEqual(pf(c, vcpu, 0x800n, PAGE), { errno: 'EINVAL', gpa: 0x800n, size: PAGE });
      assert.deepEqual(pf(c, vcpu, 0n, PAGE + 1n), { errno: 'EINVAL', gpa: 0n, size: PAGE + 1n });
      assert.deepEqual(pf(c, vcpu, MiB, 0n), { errno: 'EINVAL', gpa: MiB, size: 0n });
      assert.deepEqual(
        pf(c, vcpu, U64 - PAGE, PAGE),
        { errno: 'EINVAL', gpa: U64 - PAGE, size: PAGE },
        'ends at 2^64',
      );
      assert.deepEqual(pf(c, vcpu, U64 - PAGE, 2n * PAGE), {
        errno: 'EINVAL',
        gpa: U64 - PAGE,
        size: 2n * PAGE,
      });
    });
  }

  test('only a vCPU fd takes it: closed → EBADF, VM fd → ENOTTY, /dev/kvm → EINVAL (range echoed)', () => {
    const c = newHost();
    const vm = createVm(c);
    assert.deepEqual(pf(c, -1, MiB, PAGE), { errno: 'EBADF', gpa: MiB, size: PAGE });
    assert.deepEqual(pf(c, vm, MiB, PAGE), { errno: 'ENOTTY', gpa: MiB, size: PAGE });
    assert.deepEqual(pf(c, c.kvm, MiB, PAGE), { errno: 'EINVAL', gpa: MiB, size: PAGE });
  });
});

describe('linux-6.18-pvm (shadow paging) [verified §7]', () => {
  test('with a memslot: EOPNOTSUPP and the struct is copied back unchanged', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    const a = mmapAnon(c, 4n * PAGE);
    ok(setRegion(c, vm, { slot: 1n, gpa: MiB, size: 4n * PAGE, uaddr: a }));
    const vcpu = createVcpu(c, vm);
    assert.deepEqual(pf(c, vcpu, MiB, 4n * PAGE), {
      errno: 'EOPNOTSUPP',
      gpa: MiB,
      size: 4n * PAGE,
    });
    assert.deepEqual(
      pf(c, vcpu, 8n * MiB, PAGE),
      { errno: 'EOPNOTSUPP', gpa: 8n * MiB, size: PAGE },
      'outside any slot too',
    );
    assert.equal(mappedPages(vmOf(c, vm), 0, 2 ** 30), 0);
  });

  test('the capability says so: KVM_CAP_PRE_FAULT_MEMORY is 0', () => {
    const c = newHost('linux-6.18-pvm');
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, 236n)), 0n);
    assert.equal(ok(c.h.kvmCheckExtension(createVm(c), 236n)), 0n);
  });

  test('without any memslot commit yet: ENOSPC (kvm_mmu_reload on a shadow MMU with no pages)', () => {
    // Unreachable through Host (creating a vCPU creates the trace code slot), so the vCPU is
    // built directly.
    const c = newHost('linux-6.18-pvm');
    const vm = new Vm(99, 0n, getProfile('linux-6.18-pvm')!.vmTypes.get(0n)!);
    const vcpu = new Vcpu(vm, 0n, 0);
    const r = kvmVcpuPreFaultMemory(c.h, vcpu, MiB, PAGE, 0n);
    assert.deepEqual(r, { errno: 'ENOSPC', remaining: { gpa: MiB, size: PAGE } });
    vm.mmuPagesSized = true;
    assert.equal(kvmVcpuPreFaultMemory(c.h, vcpu, MiB, PAGE, 0n).errno, 'EOPNOTSUPP');
  });
});

describe('linux-6.18 (TDP): progress semantics', () => {
  function plainSlot(type = 0n, pages = 3n) {
    const c = newHost();
    const vm = createVm(c, type);
    const a = mmapAnon(c, pages * PAGE);
    ok(setRegion(c, vm, { slot: 1n, gpa: MiB, size: pages * PAGE, uaddr: a }));
    return { c, vm, vcpu: createVcpu(c, vm), a, v: vmOf(c, vm) };
  }

  test('KVM_CAP_PRE_FAULT_MEMORY is 1', () => {
    const c = newHost();
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, 236n)), 1n);
  });

  test('a range inside a slot is mapped completely: success, size 0, gpa advanced', () => {
    const { c, vcpu, v } = plainSlot();
    assert.deepEqual(pf(c, vcpu, MiB, 3n * PAGE), {
      errno: undefined,
      gpa: MiB + 3n * PAGE,
      size: 0n,
    });
    const g = Number(MiB >> 12n);
    assert.equal(mappedPages(v, g, g + 3), 3);
  });

  test('no memslot at gpa → ENOENT, nothing processed, range unchanged', () => {
    const { c, vcpu } = plainSlot();
    assert.deepEqual(pf(c, vcpu, 64n * MiB, 2n * PAGE), {
      errno: 'ENOENT',
      gpa: 64n * MiB,
      size: 2n * PAGE,
    });
  });

  test('partial progress is success; the error comes from the next call, which makes none', () => {
    const { c, vcpu } = plainSlot();
    const first = pf(c, vcpu, MiB, 5n * PAGE);
    assert.deepEqual(first, { errno: undefined, gpa: MiB + 3n * PAGE, size: 2n * PAGE });
    assert.deepEqual(pf(c, vcpu, first.gpa, first.size), {
      errno: 'ENOENT',
      gpa: MiB + 3n * PAGE,
      size: 2n * PAGE,
    });
    // Starting before the slot: the first page already fails, so the call fails.
    assert.deepEqual(pf(c, vcpu, MiB - PAGE, 2n * PAGE), {
      errno: 'ENOENT',
      gpa: MiB - PAGE,
      size: 2n * PAGE,
    });
  });

  test('pre_fault_memory_test shape: slot of 2 MiB + 4 KiB at a 2 MiB-aligned GPA', () => {
    const c = newHost();
    const vm = createVm(c);
    const base = 0x1_0000_0000n;
    const a = mmapAnon(c, 2n * MiB + PAGE);
    ok(setRegion(c, vm, { slot: 10n, gpa: base, size: 2n * MiB + PAGE, uaddr: a }));
    const vcpu = createVcpu(c, vm);
    assert.deepEqual(pf(c, vcpu, base, 2n * MiB), {
      errno: undefined,
      gpa: base + 2n * MiB,
      size: 0n,
    });
    let r = pf(c, vcpu, base + 2n * MiB, 2n * PAGE);
    assert.deepEqual(
      r,
      { errno: undefined, gpa: base + 2n * MiB + PAGE, size: PAGE },
      '4 KiB left',
    );
    r = pf(c, vcpu, r.gpa, r.size);
    assert.deepEqual(r, { errno: 'ENOENT', gpa: base + 2n * MiB + PAGE, size: PAGE });
    assert.deepEqual(pf(c, vcpu, base + 2n * MiB + PAGE, PAGE), {
      errno: 'ENOENT',
      gpa: base + 2n * MiB + PAGE,
      size: PAGE,
    });
  });

  test('a read fault: the zero page is mapped read-only and no anonymous page is allocated (CoW not broken)', () => {
    const { c, vcpu, v } = plainSlot();
    const before = c.h.frames.allocated;
    assert.equal(pf(c, vcpu, MiB, PAGE).errno, undefined);
    const g = Number(MiB >> 12n);
    assert.equal(v.stage2[0]!.get(g)!.writable, false);
    assert.equal(c.h.frames.allocated, before, 'no frame allocated');
    assert.equal(c.h.mm.anon.size, 0);
  });

  test('gmem-only slot: pre-faulting allocates and prepares (zeroes) the gmem pages, 4 KiB per step', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 4n * PAGE, gmem: g }));
    const vcpu = createVcpu(c, vm);
    c.h.events.drain();
    assert.deepEqual(pf(c, vcpu, MiB + PAGE, 2n * PAGE), {
      errno: undefined,
      gpa: MiB + 3n * PAGE,
      size: 0n,
    });
    const gf = gmemOf(c, g);
    assert.equal(gf.pages.get(0), undefined);
    assert.equal(gf.pages.get(1)!.state, 'prepared');
    assert.equal(gf.pages.get(2)!.state, 'prepared');
    const installs = c.h.events.drain().filter((e) => e.kind === 'spte_install');
    assert.equal(installs.length, 2);
  });

  test('SW_PROTECTED: a private gfn in a slot without gmem → EFAULT (no progress); in a hybrid slot → private gmem mapping', () => {
    const { c, vm, vcpu, v } = plainSlot(SW_PROTECTED_VM);
    ok(
      c.h.kvmSetMemoryAttributes(vm, {
        address: MiB + PAGE,
        size: PAGE,
        attributes: ATTR_PRIVATE,
        flags: 0n,
      }),
    );
    assert.deepEqual(pf(c, vcpu, MiB + PAGE, PAGE), {
      errno: 'EFAULT',
      gpa: MiB + PAGE,
      size: PAGE,
    });
    assert.deepEqual(
      pf(c, vcpu, MiB, 3n * PAGE),
      { errno: undefined, gpa: MiB + PAGE, size: 2n * PAGE },
      'stops at the private page',
    );

    const g = createGmem(c, vm, PAGE, 0n);
    const a2 = mmapAnon(c, PAGE);
    ok(
      setRegion(c, vm, {
        slot: 2n,
        flags: MEM_GUEST_MEMFD,
        gpa: 8n * MiB,
        size: PAGE,
        uaddr: a2,
        gmem: g,
      }),
    );
    ok(
      c.h.kvmSetMemoryAttributes(vm, {
        address: 8n * MiB,
        size: PAGE,
        attributes: ATTR_PRIVATE,
        flags: 0n,
      }),
    );
    assert.deepEqual(pf(c, vcpu, 8n * MiB, PAGE), {
      errno: undefined,
      gpa: 8n * MiB + PAGE,
      size: 0n,
    });
    const m = v.stage2[0]!.get(Number((8n * MiB) >> 12n))!;
    assert.equal(m.private, true);
    assert.equal(m.source, 'gmem');
  });

  test('SW_PROTECTED: a private gfn with no memslot → EFAULT (a private fault never becomes MMIO)', () => {
    const c = newHost();
    const vm = createVm(c, SW_PROTECTED_VM);
    const vcpu = createVcpu(c, vm);
    ok(
      c.h.kvmSetMemoryAttributes(vm, {
        address: 64n * MiB,
        size: PAGE,
        attributes: ATTR_PRIVATE,
        flags: 0n,
      }),
    );
    assert.deepEqual(pf(c, vcpu, 64n * MiB, PAGE), { errno: 'EFAULT', gpa: 64n * MiB, size: PAGE });
    assert.deepEqual(pf(c, vcpu, 64n * MiB + PAGE, PAGE), {
      errno: 'ENOENT',
      gpa: 64n * MiB + PAGE,
      size: PAGE,
    });
  });

  test('a gmem-only slot whose file was released → EFAULT from the gmem lookup', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: PAGE, gmem: g }));
    const vcpu = createVcpu(c, vm);
    ok(c.h.close(g));
    assert.deepEqual(pf(c, vcpu, MiB, PAGE), { errno: 'EFAULT', gpa: MiB, size: PAGE });
  });

  test(
    'a step over an existing 2M mapping completes the whole huge page and keeps the mapping 2M (§2.8 "bytes processed", §3.4 host level)',
    {},
    () => {
      const c = newHost();
      const vm = createVm(c);
      const a = mmapAnon(c, 2n * MiB);
      ok(c.h.madvise(a, 2n * MiB, MADV_HUGEPAGE));
      ok(setRegion(c, vm, { slot: 1n, gpa: 2n * MiB, size: 2n * MiB, uaddr: a }));
      const vcpu = createVcpu(c, vm);
      guestStore(c, vcpu, 2n * MiB, '01');
      const v = vmOf(c, vm);
      const g0 = Number((2n * MiB) >> 12n);
      assert.equal(v.stage2[0]!.entryAt(g0)!.value.level, '2M');
      c.h.events.drain();
      assert.deepEqual(pf(c, vcpu, 2n * MiB + 5n * PAGE, 2n * MiB - 5n * PAGE), {
        errno: undefined,
        gpa: 4n * MiB,
        size: 0n,
      });
      const e = v.stage2[0]!.entryAt(g0 + 5)!;
      assert.deepEqual([e.start, e.end, e.value.level], [g0, g0 + 512, '2M']);
      assert.ok(
        c.h.events.drain().filter((x) => x.kind === 'spte_install').length <= 1,
        'one step',
      );
    },
  );
});
