/**
 * The kernel's seams as the model exposes them: the vendor module's kvm_x86_ops (gmem_prepare,
 * gmem_invalidate, how guest accesses reach memory), the platform's host-access check and the
 * guest_memfd backing design. Each test plugs an instrumented implementation into a Host and
 * checks when and with what the generic code calls it.
 */
import { describe, test } from 'node:test';
import { ModelBackend } from '../../src/backends/model.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { BackendRefusal } from '../../src/trace/base_types.js';
import assert from 'node:assert/strict';
import { Host, type HostOptions, type IoctlArg } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { composeProfile } from '../../src/core/profiles/compose.js';
import { OK_VOID, type Result } from '../../src/core/base/result.js';
import type { UserPtr } from '../../src/core/base/uaccess.js';
import { SVM_OPS } from '../../src/core/arch/x86/svm/svm.js';
import { sevMemEncIoctl } from '../../src/core/arch/x86/svm/sev.js';
import { getProfile } from '../../src/core/profiles/index.js';
import type { Errno } from '../../src/core/base/errno.js';
import { asHva, hvaToHvpn, hvpnAdd, type Pfn } from '../../src/core/base/units.js';
import type { KvmX86Ops } from '../../src/core/arch/x86/x86_ops.js';
import { VMX_OPS } from '../../src/core/arch/x86/vmx/main.js';
import { kvmMaxPrivateMappingLevel } from '../../src/core/arch/x86/mmu.js';
import { PVM_OPS } from '../../src/core/arch/x86/pvm/pvm.js';
import { GMEM_LINUX_6_18, type GmemBacking } from '../../src/core/kvm/guest_memfd/backing.js';
import type { Platform } from '../../src/core/platform/platform.js';
import {
  ATTR_PRIVATE,
  GMEM_MMAP,
  GMEM_SHARED,
  MEM_GUEST_MEMFD,
  PUNCH,
  SW_PROTECTED_VM,
  DEFAULT_VM,
  createGmem,
  createVcpu,
  createVm,
  fails,
  gmemOf,
  mmapAnon,
  mmapFd,
  ok,
  setRegion,
  store,
  vmOf,
  type Ctx,
} from './helpers.js';

const PAGES = 8n;
const SIZE = PAGES * 4096n;

function host(opts: HostOptions, profile = 'linux-6.18'): Ctx {
  const h = new Host(getProfile(profile)!, { ...opts, parts: ALL_PARTS });
  return { h, kvm: h.openDevKvm() };
}

/** A SW_PROTECTED VM with an 8-page private guest_memfd slot at GPA 0 and one vCPU. */
function privateGuest(c: Ctx): { vcpu: number; gmem: number } {
  const vm = createVm(c, SW_PROTECTED_VM);
  const gmem = createGmem(c, vm, SIZE);
  ok(setRegion(c, vm, { flags: MEM_GUEST_MEMFD, size: SIZE, uaddr: mmapAnon(c, SIZE), gmem }));
  ok(
    c.h.kvmSetMemoryAttributes(vm, {
      address: 0n,
      size: SIZE,
      attributes: ATTR_PRIVATE,
      flags: 0n,
    }),
    'KVM_SET_MEMORY_ATTRIBUTES',
  );
  return { vcpu: createVcpu(c, vm), gmem };
}

type PrepareCall = { pfn: Pfn; gfn: number; order: number };

function vendorWith(extra: Partial<KvmX86Ops>): KvmX86Ops {
  return { ...VMX_OPS, ...extra };
}

describe('kvm_x86_ops: gmem_prepare and gmem_invalidate', () => {
  test('gmem_prepare runs once per folio, on its first guest fault, with its gfn and pfn', () => {
    const calls: PrepareCall[] = [];
    const c = host({
      vendorOps: vendorWith({
        gmemPrepare: (_k, _vm, pfn, gfn, order) => {
          calls.push({ pfn, gfn, order });
          return undefined;
        },
      }),
    });
    const { vcpu } = privateGuest(c);
    const r = c.h.kvmRun(vcpu, [store(0x3000n, 'aa'), store(0x1000n, 'bb'), store(0x3008n, 'cc')]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(
      calls.map((x) => [x.gfn, x.order]),
      [
        [3, 0],
        [1, 0],
      ],
    );
    // The pfn handed to the hook is the one the stage-2 mapping points at.
    const vm = [...c.h.vms][0]!;
    assert.equal(vm.stage2[0]!.get(3)!.base, calls[0]!.pfn);
  });

  test('a failing gmem_prepare fails the fault with its errno and leaves the folio unprepared', () => {
    let fail: Errno | undefined = 'EIO';
    let n = 0;
    const c = host({
      vendorOps: vendorWith({
        gmemPrepare: () => {
          n++;
          return fail;
        },
      }),
    });
    const { vcpu, gmem } = privateGuest(c);
    const r1 = c.h.kvmRun(vcpu, [store(0x2000n, 'aa')]);
    assert.equal(r1.errno, 'EIO');
    const f = gmemOf(c, gmem);
    assert.equal(f.pages.get(2)?.state, 'allocated', 'allocated, not prepared');
    fail = undefined;
    const r2 = c.h.kvmRun(vcpu, [store(0x2000n, 'aa')]);
    assert.equal(r2.errno, undefined);
    assert.equal(n, 2, 'prepared on the retry');
    assert.equal(f.pages.get(2)?.state, 'prepared');
  });

  test('host (mmap) faults zero a folio without gmem_prepare', () => {
    let n = 0;
    const c = host({ vendorOps: vendorWith({ gmemPrepare: () => (n++, undefined) }) });
    const vm = createVm(c, DEFAULT_VM);
    const gmem = createGmem(c, vm, SIZE, GMEM_SHARED);
    const ua = mmapFd(c, gmem, SIZE);
    assert.ok(c.h.poke(ua, new Uint8Array([1])).ok);
    assert.equal(n, 0);
  });

  test('gmem_invalidate gets exactly the frames that leave the file, before they are freed', () => {
    const ranges: Array<[number, number]> = [];
    const c: Ctx = host({
      vendorOps: vendorWith({
        gmemInvalidate: (_k, start, end) => {
          ranges.push([start, end]);
          // Not yet back in the allocator.
          for (let p = start; p < end; p++) assert.ok(!c.h.frames.isFree(p));
        },
      }),
    });
    const { vcpu, gmem } = privateGuest(c);
    assert.equal(c.h.kvmRun(vcpu, [store(0x0n, '01'), store(0x5000n, '02')]).errno, undefined);
    const vm = [...c.h.vms][0]!;
    const pfn0 = vm.stage2[0]!.get(0)!.base;
    const pfn5 = vm.stage2[0]!.get(5)!.base;
    ok(c.h.fallocate(gmem, Number(PUNCH), 0n, SIZE), 'punch');
    const freed = ranges.flatMap(([s, e]) => Array.from({ length: e - s }, (_, i) => s + i));
    assert.deepEqual(freed.sort(), [pfn0, pfn5].sort());
  });
});

describe('kvm_x86_ops: gmem_max_mapping_level', () => {
  test('order-0 guest_memfd folios map at 4K without asking the vendor (6.18)', () => {
    let asked = 0;
    const c = host({ vendorOps: vendorWith({ gmemMaxMappingLevel: () => (asked++, 0) }) });
    const { vcpu } = privateGuest(c);
    assert.equal(c.h.kvmRun(vcpu, [store(0x2000n, 'aa')]).errno, undefined);
    assert.equal([...c.h.vms][0]!.stage2[0]!.get(2)!.level, '4K');
    assert.equal(asked, 0);
  });

  test('kvm_max_private_mapping_level: order and slot cap first, then the vendor may lower it', () => {
    const calls: Array<[number, Pfn]> = [];
    let answer: '4K' | '2M' | 0 = 0;
    const c = host({
      vendorOps: vendorWith({
        gmemMaxMappingLevel: (_k, vm, pfn) => (calls.push([vm.index, pfn]), answer),
      }),
    });
    const vm = vmOf(c, createVm(c, SW_PROTECTED_VM));
    const pfn = 1024 as Pfn;
    const lvl = (max: '4K' | '2M' | '1G', order: number): string =>
      kvmMaxPrivateMappingLevel(c.h, vm, pfn, max, order);
    assert.equal(lvl('1G', 0), '4K');
    assert.equal(lvl('1G', 8), '4K');
    assert.equal(lvl('4K', 18), '4K');
    assert.equal(calls.length, 0, 'a 4K answer needs no vendor');
    assert.equal(lvl('1G', 9), '2M', 'vendor without a limit of its own');
    assert.equal(lvl('1G', 18), '1G');
    assert.equal(lvl('2M', 18), '2M', 'the slot caps the level');
    answer = '4K';
    assert.equal(lvl('1G', 18), '4K', 'TDX: tdx_gmem_max_mapping_level is 4K');
    answer = '2M';
    assert.equal(lvl('1G', 18), '2M');
    assert.equal(lvl('2M', 9), '2M');
    assert.deepEqual(calls.at(-1), [vm.index, pfn]);
    assert.equal(calls.length, 6);
  });
});

describe('kvm_x86_ops: how guest accesses reach memory', () => {
  test('each profile is assembled with its vendor module', () => {
    assert.equal(host({}, 'linux-6.18').h.arch.guestMemoryAccess, 'stage2');
    assert.equal(host({}, 'linux-6.18-pvm').h.arch.guestMemoryAccess, 'emulated');
  });

  test('the PVM vendor on a TDP profile: a gmem-only slot is reached through userspace_addr', () => {
    for (const [vendorOps, expectMmio] of [
      [VMX_OPS, false],
      [PVM_OPS, true],
    ] as const) {
      const c = host({ vendorOps });
      const vm = createVm(c, DEFAULT_VM);
      const gmem = createGmem(c, vm, SIZE, GMEM_MMAP);
      // userspace_addr points at nothing mapped: stage-2 does not care, the emulator does.
      ok(setRegion(c, vm, { flags: MEM_GUEST_MEMFD, size: SIZE, uaddr: 0x1000_0000n, gmem }));
      const r = c.h.kvmRun(createVcpu(c, vm), [store(0x1000n, 'aa')]);
      assert.equal(
        r.exits.some((x) => x.reason === 'MMIO'),
        expectMmio,
        vendorOps.name,
      );
    }
  });
});

describe('the platform: one host-access check per frame', () => {
  /** A platform that refuses host writes (SNP-like: an assigned frame) to the frames in `owned`. */
  function ownedFrames(owned: Set<number>, log: string[]): Platform {
    return {
      name: 'test',
      guardsHostAccess: true,
      hostAccess: (pfn, write, path) => {
        log.push(`${path}:${write ? 'w' : 'r'}`);
        return write && owned.has(pfn) ? 'SIGBUS' : undefined;
      },
    };
  }

  test('VMM stores to a refused frame fault with the platform signal; loads pass', () => {
    const owned = new Set<number>();
    const log: string[] = [];
    const c = host({ platform: ownedFrames(owned, log) });
    const ua = mmapAnon(c, SIZE);
    assert.ok(c.h.poke(ua, new Uint8Array([7])).ok);
    const pfn = c.h.mm.fault(hvaToHvpn(asHva(ua)), false, true);
    assert.ok(!('signal' in pfn));
    owned.add(pfn.pfn);
    const w = c.h.poke(ua, new Uint8Array([8]));
    assert.deepEqual(w, { ok: false, fault: 'SIGBUS' });
    const r = c.h.peek(ua, 1);
    assert.ok(r.ok);
    assert.equal(r.data![0], 7, 'the refused store did not happen');
    assert.ok(log.includes('vmm:w') && log.includes('vmm:r'));
  });

  test("KVM's get_user_pages for a shared fault is checked too: a refused frame is EFAULT", () => {
    const owned = new Set<number>();
    const log: string[] = [];
    const c = host({ platform: ownedFrames(owned, log) });
    const vm = createVm(c, DEFAULT_VM);
    const ua = mmapAnon(c, SIZE);
    ok(setRegion(c, vm, { size: SIZE, uaddr: ua }));
    assert.ok(c.h.poke(ua + 0x2000n, new Uint8Array([1])).ok);
    const f = c.h.mm.fault(hvpnAdd(hvaToHvpn(asHva(ua)), 2), false, true);
    assert.ok(!('signal' in f));
    owned.add(f.pfn);
    const r = c.h.kvmRun(createVcpu(c, vm), [store(0x2000n, 'aa')]);
    assert.equal(r.errno, 'EFAULT');
    assert.ok(log.includes('gup:w'));
  });
});

describe('the guest_memfd backing design', () => {
  test('host faults ask the backing whether an index is shareable', () => {
    const evenOnly: GmemBacking = {
      ...GMEM_LINUX_6_18,
      name: 'even-only',
      hostFaultAllowed: (_f, i) => i % 2 === 0,
      hostFaultAllowedRun: (_f, i, count) => (i % 2 === 0 ? Math.min(count, 1) : 0),
    };
    const c = host({ gmemBacking: evenOnly });
    const vm = createVm(c, DEFAULT_VM);
    const gmem = createGmem(c, vm, SIZE, GMEM_MMAP);
    const ua = mmapFd(c, gmem, SIZE);
    assert.ok(c.h.peek(ua, 1).ok);
    assert.deepEqual(c.h.peek(ua + 0x1000n, 1), { ok: false, fault: 'SIGBUS' });
    assert.ok(c.h.peek(ua + 0x2000n, 1).ok);
    // 6.18's design: the file's INIT_SHARED flag decides for every index.
    const d = host({});
    const vm2 = createVm(d, DEFAULT_VM);
    const ua2 = mmapFd(d, createGmem(d, vm2, SIZE, GMEM_MMAP), SIZE);
    assert.deepEqual(d.h.peek(ua2, 1), { ok: false, fault: 'SIGBUS' });
    assert.equal(d.h.gmemBacking, GMEM_LINUX_6_18);
  });
});

describe('the guest_memfd backing: folio order and conversion check', () => {
  type OrderCall = { ino: number; index: number };

  function orderLog(order: (index: number) => number, calls: OrderCall[]): GmemBacking {
    return {
      ...GMEM_LINUX_6_18,
      name: 'order-log',
      folioOrder: (f, index) => (calls.push({ ino: f.ino, index }), order(index)),
    };
  }

  test('kvm_gmem_get_folio asks the folio order of each absent index it allocates', () => {
    const calls: OrderCall[] = [];
    const c = host({ gmemBacking: orderLog(() => 0, calls) });
    const { vcpu, gmem } = privateGuest(c);
    const ino = gmemOf(c, gmem).ino;
    // Guest faults on absent indices 3 and 1; the second store to index 3 allocates nothing.
    const r = c.h.kvmRun(vcpu, [store(0x3000n, 'aa'), store(0x1000n, 'bb'), store(0x3008n, 'cc')]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(calls, [
      { ino, index: 3 },
      { ino, index: 1 },
    ]);
    // fallocate asks once per absent run, at its first index: [0,1) and [2,3) and [4,8).
    calls.length = 0;
    ok(c.h.fallocate(gmem, 1, 0n, SIZE));
    assert.deepEqual(
      calls.map((x) => x.index),
      [0, 2, 4],
    );
    // Host faults on a shared file: the fault and populate paths ask too.
    calls.length = 0;
    const vm = createVm(c, DEFAULT_VM);
    const shared = createGmem(c, vm, SIZE, GMEM_SHARED);
    const ua = mmapFd(c, shared, SIZE);
    assert.ok(c.h.poke(ua + 0x5000n, new Uint8Array([1])).ok);
    ok(c.h.madvise(ua, SIZE, 23 /* MADV_POPULATE_WRITE */));
    assert.deepEqual(
      calls.map((x) => x.index),
      [5, 0, 6],
    );
    assert.equal(new Set(calls.map((x) => x.ino)).size, 1);
  });

  test('an order the model cannot represent stops the allocation with a clear error', () => {
    const calls: OrderCall[] = [];
    const c = host({ gmemBacking: orderLog((i) => (i === 2 ? 9 : 0), calls) });
    const { vcpu, gmem } = privateGuest(c);
    const f = gmemOf(c, gmem);
    assert.equal(c.h.kvmRun(vcpu, [store(0x1000n, 'aa')]).errno, undefined);
    assert.throws(
      () => c.h.kvmRun(vcpu, [store(0x2000n, 'bb')]),
      /backing 'order-log': kvm_gmem_get_folio\(\) at index 2 of inode \d+ wants an order-9 folio; the model represents order-0 folios only/,
    );
    assert.equal(f.pages.get(2), undefined, 'nothing was allocated at index 2');
    assert.throws(() => c.h.fallocate(gmem, 1, 0x2000n, 0x1000n), /order-9 folio/);
    assert.equal(f.pages.get(2), undefined);
  });

  type ConvertCall = { ino: number; start: number; end: number; toPrivate: boolean };

  function convertLog(
    calls: ConvertCall[],
    refuse?: (start: number) => { errno: Errno; index: number } | undefined,
  ): GmemBacking {
    return {
      ...GMEM_LINUX_6_18,
      name: 'convert-log',
      canConvert: (f, start, end, toPrivate) => {
        calls.push({ ino: f.ino, start, end, toPrivate });
        const r = refuse?.(start);
        return r === undefined ? undefined : { errno: r.errno, index: r.index as never };
      },
    };
  }

  /** A SW_PROTECTED VM: slot 0 at GPA 1 MiB bound to file pages [2, 10), slot 1 anonymous after it. */
  function boundVm(c: Ctx): { vm: number; ino: number } {
    const vm = createVm(c, SW_PROTECTED_VM);
    const gmem = createGmem(c, vm, 16n * 4096n);
    ok(
      setRegion(c, vm, {
        flags: MEM_GUEST_MEMFD,
        gpa: 0x10_0000n,
        size: SIZE,
        uaddr: mmapAnon(c, SIZE),
        gmem,
        offset: 0x2000n,
      }),
    );
    ok(
      setRegion(c, vm, { slot: 1n, gpa: 0x10_0000n + SIZE, size: SIZE, uaddr: mmapAnon(c, SIZE) }),
    );
    return { vm, ino: gmemOf(c, gmem).ino };
  }

  const attrs = (address: bigint, size: bigint, attributes: bigint) => ({
    address,
    size,
    attributes,
    flags: 0n,
  });

  test('an attribute change asks the backing for the guest_memfd-bound ranges it covers', () => {
    const calls: ConvertCall[] = [];
    const c = host({ gmemBacking: convertLog(calls) });
    const { vm, ino } = boundVm(c);
    // GPA [1 MiB + 3 pages, 1 MiB + 12 pages): slot 0's gfns 3..8 (file 5..10), then slot 1.
    ok(c.h.kvmSetMemoryAttributes(vm, attrs(0x10_3000n, 9n * 4096n, ATTR_PRIVATE)));
    assert.deepEqual(calls, [{ ino, start: 5, end: 10, toPrivate: true }]);
    // Unchanged attributes are a no-op before the check; back to shared asks with toPrivate false.
    calls.length = 0;
    ok(c.h.kvmSetMemoryAttributes(vm, attrs(0x10_3000n, 4096n, ATTR_PRIVATE)));
    assert.deepEqual(calls, []);
    ok(c.h.kvmSetMemoryAttributes(vm, attrs(0x10_4000n, 4096n, 0n)));
    assert.deepEqual(calls, [{ ino, start: 6, end: 7, toPrivate: false }]);
    // A range with no guest_memfd binding never asks.
    calls.length = 0;
    ok(c.h.kvmSetMemoryAttributes(vm, attrs(0x10_0000n + SIZE, 4096n, ATTR_PRIVATE)));
    assert.deepEqual(calls, []);
  });

  test("a refusal fails KVM_SET_MEMORY_ATTRIBUTES with the backing's errno and changes nothing", () => {
    const calls: ConvertCall[] = [];
    const c = host({
      gmemBacking: convertLog(calls, (start) => ({ errno: 'EAGAIN', index: start + 1 })),
    });
    const { vm, ino } = boundVm(c);
    const r = c.h.kvmSetMemoryAttributes(vm, attrs(0x10_0000n, SIZE, ATTR_PRIVATE));
    assert.deepEqual(r, {
      ok: false,
      errno: 'EAGAIN',
      check: `set_mem_attributes: guest_memfd backing 'convert-log' refused the conversion at index 3 of inode ${ino}`,
    });
    const v = vmOf(c, vm);
    assert.equal(v.attrs.get(0x100), undefined, 'attributes unchanged');
    assert.equal(v.mmuInvalidateSeq, 0, 'no invalidation started');
  });

  test("6.18's backing never refuses and allocates order-0 folios", () => {
    const c = host({});
    const { vm } = boundVm(c);
    ok(c.h.kvmSetMemoryAttributes(vm, attrs(0x10_0000n, SIZE, ATTR_PRIVATE)));
    const f = [...vmOf(c, vm).gmemFiles][0]!;
    assert.equal(GMEM_LINUX_6_18.folioOrder(f, 0 as never), 0);
    assert.equal(GMEM_LINUX_6_18.canConvert(f, 0 as never, 8 as never, true), undefined);
  });
});

describe('kvm_x86_ops: mem_enc_ioctl (KVM_MEMORY_ENCRYPT_OP)', () => {
  type EncCall = { vm?: number; vcpu?: bigint; isNull: boolean; id?: number };
  const cmd = (id: number): IoctlArg => {
    const bytes = new Uint8Array(24);
    new DataView(bytes.buffer).setUint32(0, id, true);
    return { kind: 'buffer', bytes };
  };
  const NULL_ARG: IoctlArg = { kind: 'null' };
  const idOf = (p: UserPtr): number | undefined => {
    const b = p.copyFromUser(24);
    return b === undefined ? undefined : new DataView(b.buffer).getUint32(0, true);
  };

  test('the VM ioctl reaches the vendor with the VM and the pointer; its result is the answer', () => {
    const calls: EncCall[] = [];
    let answer: Result<undefined> = { ok: false, errno: 'EPERM', check: 'instrumented' };
    const c = host({
      vendorOps: vendorWith({
        memEncIoctl: (_k, vm, argp) => {
          calls.push({
            vm: vm.index,
            isNull: argp.isNull,
            id: argp.isNull ? undefined : idOf(argp),
          });
          return answer;
        },
        vcpuMemEncIoctl: (_k, vcpu, argp) => {
          calls.push({ vcpu: vcpu.id, isNull: argp.isNull });
          return OK_VOID;
        },
      }),
    });
    createVm(c, DEFAULT_VM);
    const vm = createVm(c, DEFAULT_VM);
    fails(c.h.kvmMemoryEncryptOp(vm, cmd(7)), 'EPERM');
    answer = OK_VOID;
    ok(c.h.kvmMemoryEncryptOp(vm, NULL_ARG));
    ok(c.h.kvmMemoryEncryptOp(createVcpu(c, vm, 3n), cmd(1)));
    assert.deepEqual(calls, [
      { vm: 1, isNull: false, id: 7 },
      { vm: 1, isNull: true, id: undefined },
      { vcpu: 3n, isNull: false },
    ]);
    // /dev/kvm (kvm_arch_dev_ioctl: EINVAL), a guest_memfd (no ioctls: ENOTTY), a closed fd.
    calls.length = 0;
    fails(c.h.kvmMemoryEncryptOp(c.kvm, cmd(7)), 'EINVAL');
    fails(c.h.kvmMemoryEncryptOp(createGmem(c, vm, SIZE), cmd(7)), 'ENOTTY');
    fails(c.h.kvmMemoryEncryptOp(999, cmd(7)), 'EBADF');
    assert.deepEqual(calls, []);
  });

  test('without the vendor op (a NULL static call) both ioctls are ENOTTY', () => {
    const c = host({
      vendorOps: { ...VMX_OPS, memEncIoctl: undefined, vcpuMemEncIoctl: undefined },
    });
    const vm = createVm(c, DEFAULT_VM);
    fails(c.h.kvmMemoryEncryptOp(vm, cmd(0)), 'ENOTTY');
    fails(c.h.kvmMemoryEncryptOp(createVcpu(c, vm), NULL_ARG), 'ENOTTY');
  });

  test('each vendor on a VM that is not confidential: VMX, PVM, SVM without SEV', () => {
    const answers = (profile: string, vendorOps?: KvmX86Ops): string[] => {
      const c = host(vendorOps === undefined ? {} : { vendorOps }, profile);
      const vm = createVm(c, DEFAULT_VM);
      const cpu = createVcpu(c, vm);
      return [
        c.h.kvmMemoryEncryptOp(vm, NULL_ARG),
        c.h.kvmMemoryEncryptOp(vm, cmd(2)),
        c.h.kvmMemoryEncryptOp(cpu, NULL_ARG),
      ].map((r) => (r.ok ? 'ok' : r.errno));
    };
    // vt_mem_enc_ioctl: !is_td → ENOTTY; vt_vcpu_mem_enc_ioctl: !is_td_vcpu → EINVAL.
    assert.deepEqual(answers('linux-6.18'), ['ENOTTY', 'ENOTTY', 'EINVAL']);
    // pvm_x86_ops sets neither op (as the development machines' kernel answers).
    assert.deepEqual(answers('linux-6.18-pvm'), ['ENOTTY', 'ENOTTY', 'ENOTTY']);
    // svm: sev_mem_enc_ioctl without sev_enabled → ENOTTY; no vcpu_mem_enc_ioctl.
    assert.deepEqual(answers('linux-6.18', SVM_OPS), ['ENOTTY', 'ENOTTY', 'ENOTTY']);
  });

  /** linux-6.18 facts on kvm_amd whose KVM_CAP_VM_TYPES offers SEV (and SEV-ES when `es`). */
  function sevHost(es: boolean): Ctx {
    const base = getProfile('linux-6.18')!;
    const system = [...base.facts.caps.system];
    system[235] = (system[235] ?? 0) | 4 | (es ? 8 : 0);
    const p = composeProfile(
      { name: 'amd-sev', description: 'test' },
      { ...base.facts, kvmModule: 'kvm_amd', caps: { ...base.facts.caps, system } },
    );
    const h = new Host(p, { parts: ALL_PARTS });
    return { h, kvm: h.openDevKvm() };
  }

  test('sev_mem_enc_ioctl with SEV enabled: its order of checks on a VM that is not an SEV guest', () => {
    const c = sevHost(false);
    const vm = createVm(c, DEFAULT_VM);
    const r = (a: IoctlArg): string => {
      const x = c.h.kvmMemoryEncryptOp(vm, a);
      return x.ok ? 'ok' : x.errno;
    };
    assert.equal(r(NULL_ARG), 'ok', '!argp: 0 before anything is copied');
    assert.equal(r(cmd(2)), 'ENOTTY', 'LAUNCH_START: !sev_guest');
    assert.equal(r(cmd(13)), 'EINVAL', 'RECEIVE_UPDATE_DATA: !sev_guest is EINVAL');
    assert.equal(r(cmd(22)), 'EINVAL', 'INIT2: !need_init');
    assert.equal(r(cmd(1)), 'ENOTTY', 'ES_INIT without sev_es_enabled');
    assert.equal(r(cmd(10)), 'EINVAL', 'SEND_UPDATE_VMSA: no case in the switch');
    assert.equal(r(cmd(0xffff_ffff)), 'EINVAL', 'unknown id');
    assert.throws(() => r(cmd(0)), /SEV guests are not modelled/);
    const es = sevHost(true);
    const sw = createVm(es, SW_PROTECTED_VM);
    fails(es.h.kvmMemoryEncryptOp(sw, cmd(1)), 'EINVAL', 'ES_INIT on SW_PROTECTED: vm_type');
    fails(es.h.kvmMemoryEncryptOp(sw, cmd(0)), 'EINVAL', 'INIT on SW_PROTECTED: vm_type');
  });

  test('the trace op refuses KVM_SEV_INIT on an SEV host profile (the model keeps running)', () => {
    const p = sevHost(false).h.profile;
    const run = (id: number): unknown =>
      runTrace(
        parseTrace(
          `{"op":"KVM_CREATE_VM","type":0,"as":"vm"}\n{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","id":${id}}\n`,
        ).ops,
        new ModelBackend(p),
      );
    assert.throws(
      () => run(0),
      (e) => e instanceof BackendRefusal && /SEV guests are not modelled yet/.test(e.message),
    );
    assert.doesNotThrow(() => run(2));
    // Only where the kernel would make an SEV guest: a SW_PROTECTED VM answers EINVAL, a vCPU fd
    // ENOTTY (svm has no vcpu_mem_enc_ioctl), a closed fd EBADF.
    const other = JSON.stringify(
      runTrace(
        parseTrace(
          [
            `{"op":"KVM_CREATE_VM","type":1,"as":"sw"}`,
            `{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"sw","id":0}`,
            `{"op":"KVM_CREATE_VM","type":0,"as":"vm"}`,
            `{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}`,
            `{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"cpu","id":0}`,
            `{"op":"KVM_MEMORY_ENCRYPT_OP","fd":99,"id":0}`,
          ].join('\n'),
        ).ops,
        new ModelBackend(p),
      ),
    );
    assert.equal(
      other,
      JSON.stringify([
        { ok: true },
        { ok: false, errno: 'EINVAL' },
        { ok: true },
        { ok: true },
        { ok: false, errno: 'ENOTTY' },
        { ok: false, errno: 'EBADF' },
      ]),
    );
  });

  test('sev_mem_enc_ioctl: copy_from_user faults first; copy_to_user only for a handled command', () => {
    const c = sevHost(false);
    const vm = vmOf(c, createVm(c, DEFAULT_VM));
    const ptr = (id: number, readable: boolean, writable: boolean): UserPtr => ({
      isNull: false,
      copyFromUser: () => (readable ? (cmd(id) as { bytes: Uint8Array }).bytes : undefined),
      copyToUser: () => writable,
    });
    const errno = (p: UserPtr): string => {
      const x = sevMemEncIoctl(c.h, vm, p);
      return x.ok ? 'ok' : x.errno;
    };
    assert.equal(errno(ptr(2, false, false)), 'EFAULT');
    assert.equal(
      errno(ptr(2, true, false)),
      'EFAULT',
      'the handler said ENOTTY; the copy back wins',
    );
    assert.equal(errno(ptr(999, true, false)), 'EINVAL', 'the default skips the copy back');
    assert.equal(errno(ptr(2, true, true)), 'ENOTTY');
  });
});

describe('the kernel parts registry (core/assemble.ts)', () => {
  test('a host gets the vendor and platform its registry has, and names a missing one', async () => {
    const { SNP_MEASURE_PARTS } = await import('../../src/vmm/snp/model_launcher.js');
    const { TDX_MEASURE_PARTS } = await import('../../src/vmm/tdx/model_launcher.js');
    assert.deepEqual(SNP_MEASURE_PARTS.modules, ['kvm_amd', 'ccp']);
    assert.deepEqual(TDX_MEASURE_PARTS.modules, ['kvm_intel', 'tdx_host']);
    const snp = new Host(getProfile('linux-6.18-snp')!, { parts: SNP_MEASURE_PARTS });
    assert.equal(snp.platform.name, 'sev-snp');
    assert.ok(snp.openDevSev().ok);
    assert.throws(
      () => new Host(getProfile('linux-6.18-tdx')!, { parts: SNP_MEASURE_PARTS }),
      /has no x86 vendor module kvm_intel/,
    );
    const tdx = new Host(getProfile('linux-6.18-tdx')!, { parts: TDX_MEASURE_PARTS });
    assert.equal(tdx.platform.name, 'tdx');
    assert.throws(
      () => new Host(getProfile('linux-6.18-snp')!, { parts: TDX_MEASURE_PARTS }),
      /has no x86 vendor module kvm_amd/,
    );
    // Every module the model has, each registered once.
    assert.deepEqual(ALL_PARTS.modules, [
      'kvm_intel',
      'kvm_amd',
      'kvm_pvm',
      'ccp',
      'tdx_host',
      'kvm_arm64',
      'pkvm_hyp',
    ]);
    assert.deepEqual([...ALL_PARTS.platforms.keys()].sort(), ['none', 'pkvm', 'sev-snp', 'tdx']);
    assert.deepEqual([...ALL_PARTS.arches.keys()], ['arm64']);
    // An arm64 profile on a registry without arm64's KVM.
    assert.throws(
      () => new Host(getProfile('linux-6.18-arm64-pkvm')!, { parts: TDX_MEASURE_PARTS }),
      /has no arm64 KVM \(kvm_arm64\)/,
    );
  });
});
