/**
 * Unit tests for the in-place conversion profiles (`linux-next-gmem`, `linux-next-gmem-vmattr`;
 * kernel-uapi.md §6.1, the series v7): the `kvm.vm_memory_attributes` fact both ways, per-file
 * attributes, KVM_SET_MEMORY_ATTRIBUTES2 with its checks in kernel order, KVM's attribute lookup
 * through the file, host faults per index, and that the 6.18 profiles answer as before.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { kvmMemIsPrivate } from '../../src/core/kvm/mem_attributes.js';
import { asGfn } from '../../src/core/base/units.js';
import type { KvmMemoryAttributes2 } from '../../src/core/kvm/guest_memfd/attributes.js';
import {
  ATTR_PRIVATE,
  GMEM_MMAP,
  GMEM_SHARED,
  MEM_GUEST_MEMFD,
  PAGE,
  PUNCH,
  SW_PROTECTED_VM,
  createGmem,
  createVcpu,
  createVm,
  fails,
  gmemOf,
  js,
  mmapFd,
  newHost,
  ok,
  peekHex,
  poke,
  runGuest,
  load,
  setRegion,
  vmOf,
  type Ctx,
} from './helpers.js';

const GPA = 0x8000_0000n;
const GFN = Number(GPA >> 12n);
const CAP_GMEM_ATTRS = BigInt(KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES);
const CAP_ATTRS = BigInt(KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES);
const CAP_GMEM_FLAGS = BigInt(KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS);

function attrs2(
  offset: bigint,
  size: bigint,
  attributes = ATTR_PRIVATE,
  more: Partial<KvmMemoryAttributes2> = {},
): KvmMemoryAttributes2 {
  return { offset, size, attributes, flags: 0n, reserved: new Array(11).fill(0n), ...more };
}

function set2(c: Ctx, fd: number, a: KvmMemoryAttributes2) {
  return c.h.kvmSetMemoryAttributes2(fd, a);
}

/** A SW_PROTECTED VM with a vCPU and a gmem-only slot of `pages` at GPA, mmapped at `mem`. */
function setup(profile: string, pages: number, flags: bigint) {
  const c = newHost(profile);
  const vm = createVm(c, SW_PROTECTED_VM);
  const cpu = createVcpu(c, vm);
  const g = createGmem(c, vm, BigInt(pages) * PAGE, flags);
  const mem = mmapFd(c, g, BigInt(pages) * PAGE);
  ok(
    setRegion(c, vm, {
      slot: 1n,
      flags: MEM_GUEST_MEMFD,
      gpa: GPA,
      size: BigInt(pages) * PAGE,
      uaddr: mem,
      gmem: g,
    }),
  );
  return { c, vm, cpu, g, mem };
}

describe('linux-next-gmem: capabilities and the vm_memory_attributes fact', () => {
  test('vm_memory_attributes=0: cap 249 PRIVATE on /dev/kvm and SW_PROTECTED, 0 on DEFAULT; cap 233 0', () => {
    const c = newHost('linux-next-gmem');
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, CAP_GMEM_ATTRS)), 8n);
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, CAP_ATTRS)), 0n);
    const sw = createVm(c, SW_PROTECTED_VM);
    assert.equal(ok(c.h.kvmCheckExtension(sw, CAP_GMEM_ATTRS)), 8n);
    assert.equal(ok(c.h.kvmCheckExtension(sw, CAP_ATTRS)), 0n);
    // INIT_SHARED is offered to a VM with private memory once attributes are per file (and
    // NO_DIRECT_MAP, bit 2, to every non-TDX VM: tests/unit/no_direct_map.test.ts; HUGETLB, bit 3).
    assert.equal(ok(c.h.kvmCheckExtension(sw, CAP_GMEM_FLAGS)), 15n);
    const def = createVm(c);
    assert.equal(ok(c.h.kvmCheckExtension(def, CAP_GMEM_ATTRS)), 0n);
  });

  test('vm_memory_attributes=1: 6.18 answers (cap 249 0, cap 233 PRIVATE, no INIT_SHARED for SW_PROTECTED)', () => {
    const c = newHost('linux-next-gmem-vmattr');
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, CAP_GMEM_ATTRS)), 0n);
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, CAP_ATTRS)), 8n);
    const sw = createVm(c, SW_PROTECTED_VM);
    assert.equal(ok(c.h.kvmCheckExtension(sw, CAP_GMEM_ATTRS)), 0n);
    assert.equal(ok(c.h.kvmCheckExtension(sw, CAP_ATTRS)), 8n);
    // MMAP | NO_DIRECT_MAP | HUGETLB: no INIT_SHARED for a VM with private memory, as in 6.18.
    assert.equal(ok(c.h.kvmCheckExtension(sw, CAP_GMEM_FLAGS)), 13n);
    fails(c.h.kvmCreateGuestMemfd(sw, PAGE, GMEM_SHARED), 'EINVAL');
  });

  test('which ioctl exists follows the fact: the VM ioctl or the guest_memfd one, never both', () => {
    for (const [profile, vmIoctl, gmemIoctl] of [
      ['linux-next-gmem', 'ENOTTY', undefined],
      ['linux-next-gmem-vmattr', undefined, 'ENOTTY'],
      ['linux-6.18', undefined, 'ENOTTY'],
    ] as const) {
      const c = newHost(profile);
      const vm = createVm(c, SW_PROTECTED_VM);
      const g = createGmem(c, vm, PAGE, GMEM_MMAP);
      const v = c.h.kvmSetMemoryAttributes(vm, {
        address: 0n,
        size: PAGE,
        attributes: ATTR_PRIVATE,
        flags: 0n,
      });
      if (vmIoctl === undefined) ok(v, profile);
      else fails(v, vmIoctl, profile);
      const r = set2(c, g, attrs2(0n, PAGE, 0n)).result;
      if (gmemIoctl === undefined) ok(r, profile);
      else fails(r, gmemIoctl, profile);
    }
  });

  test('KVM_SET_MEMORY_ATTRIBUTES2 on other fds: EBADF, the VM default ENOTTY, /dev/kvm and vCPU EINVAL', () => {
    const c = newHost('linux-next-gmem');
    const vm = createVm(c, SW_PROTECTED_VM);
    const cpu = createVcpu(c, vm);
    fails(set2(c, 9999, attrs2(0n, PAGE)).result, 'EBADF');
    fails(set2(c, vm, attrs2(0n, PAGE)).result, 'ENOTTY');
    fails(set2(c, c.kvm, attrs2(0n, PAGE)).result, 'EINVAL');
    fails(set2(c, cpu, attrs2(0n, PAGE)).result, 'EINVAL');
  });
});

describe('KVM_SET_MEMORY_ATTRIBUTES2: the checks of kvm_gmem_set_attributes() in kernel order', () => {
  const c = newHost('linux-next-gmem');
  const vm = createVm(c, SW_PROTECTED_VM);
  const g = createGmem(c, vm, 4n * PAGE, GMEM_MMAP);
  const def = createVm(c);
  const gd = createGmem(c, def, PAGE, GMEM_MMAP);
  const U64 = 1n << 64n;
  const reserved = (i: number) => {
    const r = new Array<bigint>(11).fill(0n);
    r[i] = 1n;
    return r;
  };
  const cases: Array<[string, number, KvmMemoryAttributes2, string]> = [
    // flags first: every other field also wrong.
    ['flags', g, attrs2(1n, 0n, 1n, { flags: 1n, reserved: reserved(0) }), 'EINVAL'],
    ['reserved[10]', g, attrs2(0n, PAGE, ATTR_PRIVATE, { reserved: reserved(10) }), 'EINVAL'],
    ['attributes outside PRIVATE', g, attrs2(0n, PAGE, 16n), 'EINVAL'],
    ['PRIVATE on a VM without private memory', gd, attrs2(0n, PAGE), 'EINVAL'],
    ['size 0', g, attrs2(0n, 0n), 'EINVAL'],
    ['offset + size wraps', g, attrs2(U64 - PAGE, 2n * PAGE), 'EINVAL'],
    ['offset unaligned', g, attrs2(1n, PAGE), 'EINVAL'],
    ['size unaligned', g, attrs2(0n, 1n), 'EINVAL'],
    ['offset at i_size', g, attrs2(4n * PAGE, PAGE), 'EINVAL'],
    ['offset + size past i_size', g, attrs2(3n * PAGE, 2n * PAGE), 'EINVAL'],
  ];
  for (const [what, fd, a, errno] of cases)
    test(`${what} → ${errno}, no error_offset`, () => {
      const r = set2(c, fd, a);
      fails(r.result, errno);
      assert.equal(r.errorOffset, undefined);
    });

  test('shared (0) on a VM without private memory is accepted: no attribute requested', () => {
    ok(set2(c, gd, attrs2(0n, PAGE, 0n)).result);
  });
});

describe("per-file attributes and KVM's lookup through the file", () => {
  test('initial state: PRIVATE over [0, size) without INIT_SHARED, shared with it', () => {
    const c = newHost('linux-next-gmem');
    const vm = createVm(c, SW_PROTECTED_VM);
    const p = gmemOf(c, createGmem(c, vm, 8n * PAGE, GMEM_MMAP));
    assert.deepEqual(
      [...p.attrs.entries()].map((e) => [e.start, e.end, e.value]),
      [[0, 8, 8]],
    );
    const s = gmemOf(c, createGmem(c, vm, 8n * PAGE, GMEM_SHARED));
    assert.equal(s.attrs.anyIn(0, 8), false);
  });

  test('KVM sees the file: bind, convert, delete the memslot (shared again), release the file', () => {
    const { c, vm, g } = setup('linux-next-gmem', 4, GMEM_MMAP);
    const v = vmOf(c, vm);
    assert.equal(kvmMemIsPrivate(v, asGfn(GFN)), true, 'private from creation, once bound');
    ok(set2(c, g, attrs2(PAGE, PAGE, 0n)).result);
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => kvmMemIsPrivate(v, asGfn(GFN + i))),
      [true, false, true, true],
    );
    // Punching a hole keeps the attributes.
    ok(c.h.fallocate(g, Number(PUNCH), 0n, 4n * PAGE));
    assert.deepEqual(
      [0, 1, 2, 3].map((i) => kvmMemIsPrivate(v, asGfn(GFN + i))),
      [true, false, true, true],
    );
    // No memslot: kvm_gmem_get_memory_attributes() answers 0 (shared).
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: GPA, size: 0n }));
    assert.equal(kvmMemIsPrivate(v, asGfn(GFN)), false);
  });

  test('the file released: its memslot reads shared (no file → 0)', () => {
    const { c, vm, g, mem } = setup('linux-next-gmem', 2, GMEM_MMAP);
    const v = vmOf(c, vm);
    assert.equal(kvmMemIsPrivate(v, asGfn(GFN)), true);
    ok(c.h.munmap(mem, 2n * PAGE));
    ok(c.h.close(g));
    assert.equal(kvmMemIsPrivate(v, asGfn(GFN)), false);
  });

  test('vm_memory_attributes=1: the file never reaches KVM (per-VM attributes stay empty)', () => {
    const { c, vm } = setup('linux-next-gmem-vmattr', 2, GMEM_MMAP);
    assert.equal(kvmMemIsPrivate(vmOf(c, vm), asGfn(GFN)), false);
  });
});

describe('conversions: host faults per index, unmapping, contents kept', () => {
  test('host faults only on shared indices (SIGBUS elsewhere); to private unmaps a mapped page', () => {
    const { c, g, mem } = setup('linux-next-gmem', 2, GMEM_SHARED);
    poke(c, mem, 'aa');
    poke(c, mem + PAGE, 'bb');
    ok(set2(c, g, attrs2(0n, PAGE)).result);
    const r = c.h.peek(mem, 1);
    assert.equal(r.ok, false);
    assert.equal(r.ok ? undefined : r.fault, 'SIGBUS');
    assert.equal(peekHex(c, mem + PAGE, 1), 'bb');
    // Back to shared: the data written while shared is still there.
    ok(set2(c, g, attrs2(0n, PAGE, 0n)).result);
    assert.equal(peekHex(c, mem, 1), 'aa');
  });

  test('the guest sees the same page through both states; a private fault is served by guest_memfd', () => {
    const { c, g, cpu, mem } = setup('linux-next-gmem', 1, GMEM_SHARED);
    poke(c, mem, '5a');
    ok(set2(c, g, attrs2(0n, PAGE)).result);
    const r = runGuest(c, cpu, [load(GPA, 1)]);
    assert.deepEqual(r.exits, [{ reason: 'LOAD', gpa: GPA, hex: '5a' }, { reason: 'HLT' }], js(r));
  });

  test('an already-uniform range is a no-op (nothing zapped)', () => {
    const { c, g, cpu } = setup('linux-next-gmem', 1, GMEM_MMAP);
    runGuest(c, cpu, [load(GPA, 1)]);
    c.h.events.drain();
    ok(set2(c, g, attrs2(0n, PAGE)).result);
    assert.deepEqual(c.h.events.drain(), []);
  });

  test("memslot deleted: a private access becomes emulated MMIO (the series' kvm_exits test)", () => {
    const { c, vm, cpu } = setup('linux-next-gmem', 1, GMEM_MMAP);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: GPA, size: 0n }));
    const r = runGuest(c, cpu, [load(GPA, 4)]);
    assert.equal(r.exits[0]!['reason'], 'MMIO', js(r));
  });

  test('§6.6: an overlapping binding is EEXIST', () => {
    const { c, vm, g } = setup('linux-next-gmem', 2, GMEM_MMAP);
    const r = setRegion(c, vm, {
      slot: 2n,
      flags: MEM_GUEST_MEMFD,
      gpa: 2n * GPA,
      size: PAGE,
      uaddr: 0n,
      gmem: g,
      offset: PAGE,
    });
    fails(r, 'EEXIST');
  });

  test('§6.6: the bind offset is unsigned: offset + size past 2^63 is EINVAL, 6.18 binds it (review F8)', () => {
    for (const [profile, expect] of [
      ['linux-next-gmem', 'EINVAL'],
      ['linux-6.18', undefined],
    ] as const) {
      const c = newHost(profile);
      const vm = createVm(c, SW_PROTECTED_VM);
      const g = createGmem(c, vm, 4n * PAGE, 0n);
      for (const offset of [0x7fff_ffff_ffff_f000n, 0x8000_0000_0000_0000n]) {
        const r = setRegion(c, vm, {
          slot: offset > 0x7fff_ffff_ffff_f000n ? 2n : 1n,
          flags: MEM_GUEST_MEMFD,
          gpa: offset > 0x7fff_ffff_ffff_f000n ? 2n * GPA : GPA,
          size: 2n * PAGE,
          uaddr: 0n,
          gmem: g,
          offset,
        });
        // 6.18: 0x7ffffffffffff000 + 8 KiB wraps negative in loff_t and binds (kernel-uapi.md
        // §7.1); 2^63 is negative as loff_t there: EINVAL on both.
        if (expect === undefined && offset === 0x7fff_ffff_ffff_f000n) ok(r, profile);
        else fails(r, 'EINVAL');
      }
    }
  });
});

describe("compose: the series' facts on other kernels", () => {
  test('INIT_SHARED is offered to the CoCo types too once attributes are per guest_memfd', async () => {
    const { composeProfile } = await import('../../src/core/profiles/compose.js');
    const { LINUX_6_18_SNP_FACTS, LINUX_6_18_TDX_FACTS } =
      await import('../../src/core/profiles/linux_6_18.js');
    for (const [facts, type] of [
      [LINUX_6_18_SNP_FACTS, 4n],
      [LINUX_6_18_TDX_FACTS, 5n],
    ] as const) {
      const series = { ...facts.kconfig, gmemMemoryAttributes: true };
      const off = composeProfile(
        { name: 't0', description: '' },
        { ...facts, kconfig: series, kvmParams: { vmMemoryAttributes: false } },
      );
      const on = composeProfile(
        { name: 't1', description: '' },
        { ...facts, kconfig: series, kvmParams: { vmMemoryAttributes: true } },
      );
      assert.equal(off.vmTypes.get(type)!.gmemFlags, 3n);
      assert.equal(off.vmTypes.get(type)!.gmemMemAttributes, 8n);
      assert.equal(off.memoryAttributesConfig, false);
      assert.equal(off.gmemMemoryAttributes, true);
      assert.equal(off.parts.gmem, 'inplace-v7');
      assert.equal(on.vmTypes.get(type)!.gmemFlags, 1n);
      assert.equal(on.vmTypes.get(type)!.gmemMemAttributes, undefined);
      assert.equal(on.memoryAttributesConfig, true);
      assert.equal(on.gmemMemoryAttributes, undefined);
      assert.equal(on.parts.gmem, 'inplace-v7');
    }
  });

  test('without CONFIG_KVM_VM_MEMORY_ATTRIBUTES the parameter does not exist: attributes are per file', async () => {
    const { composeProfile } = await import('../../src/core/profiles/compose.js');
    const { LINUX_6_18_FACTS } = await import('../../src/core/profiles/linux_6_18.js');
    const p = composeProfile(
      { name: 't', description: '' },
      {
        ...LINUX_6_18_FACTS,
        kconfig: {
          ...LINUX_6_18_FACTS.kconfig,
          genericMemoryAttributes: false,
          gmemMemoryAttributes: true,
        },
      },
    );
    assert.equal(p.gmemMemoryAttributes, true);
    assert.equal(p.vmTypes.get(1n)!.gmemFlags, 3n);
  });
});
