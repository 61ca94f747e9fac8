/**
 * Unit tests for src/core/arch/x86/kvm_run.ts and kvm_run_page.ts: KVM_RUN with trace guest programs, the
 * exits it reports, and the bytes it leaves in the vCPU's mmap'ed `struct kvm_run` (exit_reason
 * at +8, cr8 at +16, apic_base at +24, the exit union at +32) and PIO page; the entry checks
 * (kvm_valid_regs/kvm_dirty_regs, cr8, immediate_exit) in kernel order; KVM_HC_MAP_GPA_RANGE
 * (kernel-uapi.md §3.3, §4.4; trace-format.md "Guest programs").
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { GuestProgramStep } from '../../src/core/arch/x86/kvm_run.js';
import {
  GMEM_SHARED,
  MAP_SHARED,
  MEM_GUEST_MEMFD,
  MiB,
  PAGE,
  RW,
  createGmem,
  createVcpu,
  createVm,
  fails,
  guestLoad,
  load,
  mmapAnon,
  mmapFd,
  newHost,
  ok,
  peekHex,
  poke,
  runGuest,
  setRegion,
  store,
  type Ctx,
} from './helpers.js';

const EXIT_IO = 2n;
const EXIT_HLT = 5n;
const EXIT_MMIO = 6n;
const EXIT_INTERNAL_ERROR = 17n;
const KVM_CAP_EXIT_HYPERCALL = 201n;

function le(hex: string): bigint {
  let v = 0n;
  for (let i = hex.length - 2; i >= 0; i -= 2)
    v = (v << 8n) | BigInt(parseInt(hex.slice(i, i + 2), 16));
  return v;
}
function leHex(v: bigint, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++)
    s += Number((v >> BigInt(8 * i)) & 0xffn)
      .toString(16)
      .padStart(2, '0');
  return s;
}

type RunCtx = { c: Ctx; vm: number; vcpu: number; run: bigint; ram: bigint };

/** VM with 4 pages of RAM at GPA 1 MiB, vCPU `id`, and its kvm_run + PIO pages mapped RW. */
function setup(profile = 'linux-6.18', id = 0n): RunCtx {
  const c = newHost(profile);
  const vm = createVm(c);
  const ram = mmapAnon(c, 4n * PAGE);
  ok(setRegion(c, vm, { slot: 1n, gpa: MiB, size: 4n * PAGE, uaddr: ram }));
  const vcpu = createVcpu(c, vm, id);
  const run = ok(c.h.mmap(vcpu, 2n * PAGE, RW, MAP_SHARED, 0n));
  return { c, vm, vcpu, run, ram };
}
const u = (r: RunCtx, off: bigint, n: number) => le(peekHex(r.c, r.run + off, n));
const put = (r: RunCtx, off: bigint, v: bigint, n: number) => poke(r.c, r.run + off, leHex(v, n));

describe('exits of a guest program', () => {
  test('RAM loads and stores: LOAD entries with the data, then HLT', () => {
    const r = setup();
    poke(r.c, r.ram + 0x10n, '0102030405');
    const x = runGuest(r.c, r.vcpu, [
      load(MiB + 0x10n, 1),
      load(MiB + 0x10n, 2),
      load(MiB + 0x11n),
      store(MiB + PAGE, 'beef'),
    ]);
    assert.equal(x.errno, undefined);
    assert.deepEqual(x.exits, [
      { reason: 'LOAD', gpa: MiB + 0x10n, hex: '01' },
      { reason: 'LOAD', gpa: MiB + 0x10n, hex: '0102' },
      { reason: 'LOAD', gpa: MiB + 0x11n, hex: '02030405' },
      { reason: 'HLT' },
    ]);
    assert.equal(peekHex(r.c, r.ram + PAGE, 2), 'beef');
  });

  test('an empty program just halts', () => {
    const r = setup();
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: undefined, exits: [{ reason: 'HLT' }] });
  });

  test('MMIO: a store is an MMIO write exit; a load an MMIO read exit completed with zeros', () => {
    const r = setup();
    const x = runGuest(r.c, r.vcpu, [store(0x10_0000_0n, 'a1b2c3d4'), load(0x2000_0000n, 2)]);
    assert.deepEqual(x.exits, [
      { reason: 'MMIO', gpa: 0x10_0000_0n, len: 4, is_write: true, hex: 'a1b2c3d4' },
      { reason: 'MMIO', gpa: 0x2000_0000n, len: 2, is_write: false },
      { reason: 'LOAD', gpa: 0x2000_0000n, hex: '0000' },
      { reason: 'HLT' },
    ]);
  });

  test('KVM_RUN on a closed fd → EBADF, on a VM fd → ENOTTY, on /dev/kvm → EINVAL; no exits', () => {
    const r = setup();
    assert.deepEqual(runGuest(r.c, -1, [load(MiB)]), { errno: 'EBADF', exits: [] });
    assert.deepEqual(runGuest(r.c, r.vm, [load(MiB)]), { errno: 'ENOTTY', exits: [] });
    assert.deepEqual(runGuest(r.c, r.c.kvm, [load(MiB)]), { errno: 'EINVAL', exits: [] });
  });

  test('deleting the code slot (32763): instruction fetch from MMIO fails emulation → INTERNAL_ERROR', () => {
    const r = setup();
    ok(setRegion(r.c, r.vm, { slot: 32763n }));
    const x = runGuest(r.c, r.vcpu, [load(MiB)]);
    assert.equal(x.errno, undefined);
    assert.deepEqual(x.exits, [{ reason: 'INTERNAL_ERROR', suberror: 1 }]);
    assert.equal(u(r, 8n, 4), EXIT_INTERNAL_ERROR);
    assert.equal(u(r, 32n, 4), 1n, 'suberror KVM_INTERNAL_ERROR_EMULATION');
  });
});

describe('the kvm_run page', () => {
  test('after a normal run: exit_reason (+8) = KVM_EXIT_HLT; apic_base (+24) = 0xfee00900 for vCPU 0', () => {
    const r = setup();
    runGuest(r.c, r.vcpu, []);
    assert.equal(u(r, 8n, 4), EXIT_HLT);
    assert.equal(u(r, 24n, 8), 0xfee0_0900n);
    assert.equal(u(r, 16n, 8), 0n, 'cr8');
  });

  for (const id of [1n, 5n]) {
    test(`apic_base = 0xfee00800 for vCPU id ${id} (not the BSP)`, () => {
      const r = setup('linux-6.18', id);
      runGuest(r.c, r.vcpu, []);
      assert.equal(u(r, 24n, 8), 0xfee0_0800n);
    });
  }

  test('a second vCPU of the same VM: its own page, BSP bit only on id 0', () => {
    const r = setup();
    const v1 = createVcpu(r.c, r.vm, 1n);
    const run1 = ok(r.c.h.mmap(v1, PAGE, RW, MAP_SHARED, 0n));
    runGuest(r.c, r.vcpu, []);
    runGuest(r.c, v1, []);
    assert.equal(u(r, 24n, 8), 0xfee0_0900n);
    assert.equal(le(peekHex(r.c, run1 + 24n, 8)), 0xfee0_0800n);
  });

  test('the IO union of the last `out` stays after HLT: direction, size, port 0x10, count, data_offset; data in the PIO page', () => {
    const r = setup();
    poke(r.c, r.ram, 'c0ffee11');
    runGuest(r.c, r.vcpu, [load(MiB, 2)]);
    assert.equal(u(r, 8n, 4), EXIT_HLT);
    assert.equal(u(r, 32n, 1), 1n, 'KVM_EXIT_IO_OUT');
    assert.equal(u(r, 33n, 1), 2n, 'size');
    assert.equal(u(r, 34n, 2), 0x10n, 'port');
    assert.equal(u(r, 36n, 4), 1n, 'count');
    assert.equal(u(r, 40n, 8), 4096n, 'data_offset: the PIO page');
    assert.equal(peekHex(r.c, r.run + PAGE, 2), 'c0ff');
    void EXIT_IO;
  });

  test('the MMIO union of the last MMIO exit: phys_addr @32, data @40, len @48, is_write @52', () => {
    const r = setup();
    runGuest(r.c, r.vcpu, [store(0x3000_0004n, '11223344')]);
    assert.equal(u(r, 8n, 4), EXIT_HLT);
    assert.equal(u(r, 32n, 8), 0x3000_0004n);
    assert.equal(peekHex(r.c, r.run + 40n, 4), '11223344');
    assert.equal(u(r, 48n, 4), 4n);
    assert.equal(u(r, 52n, 1), 1n);
    void EXIT_MMIO;
  });

  test('an MMIO read is completed with zeros: the following `out` carries zeros in the PIO page', () => {
    const r = setup();
    runGuest(r.c, r.vcpu, [
      store(0x3000_0000n, 'ffffffff'),
      load(0x3000_0008n, 1),
      store(MiB, '01'),
    ]);
    // The load's `out` overwrote the union; look at the PIO data instead.
    assert.equal(peekHex(r.c, r.run + PAGE, 1), '00');
  });
});

describe('KVM_RUN entry checks, in kernel order', () => {
  test('immediate_exit (+1) → EINTR with no exits; clearing it runs normally', () => {
    const r = setup();
    put(r, 1n, 1n, 1);
    assert.deepEqual(runGuest(r.c, r.vcpu, [load(MiB)]), { errno: 'EINTR', exits: [] });
    put(r, 1n, 0n, 1);
    assert.equal(guestLoad(r.c, r.vcpu, MiB), '00000000');
  });

  test('cr8 (+16) > 15 → EINVAL; 15 is accepted and written back', () => {
    const r = setup();
    put(r, 16n, 16n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: 'EINVAL', exits: [] });
    put(r, 16n, 1n << 40n, 8);
    assert.equal(runGuest(r.c, r.vcpu, []).errno, 'EINVAL');
    put(r, 16n, 15n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: undefined, exits: [{ reason: 'HLT' }] });
    assert.equal(u(r, 16n, 8), 15n);
  });

  test('kvm_valid_regs (+288) / kvm_dirty_regs (+296) with bits outside REGS|SREGS|EVENTS → EINVAL', () => {
    const r = setup();
    put(r, 288n, 8n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: 'EINVAL', exits: [] });
    put(r, 288n, 1n << 63n, 8);
    assert.equal(runGuest(r.c, r.vcpu, []).errno, 'EINVAL');
    put(r, 288n, 0n, 8);
    put(r, 296n, 0x10n, 8);
    assert.equal(runGuest(r.c, r.vcpu, []).errno, 'EINVAL', 'dirty_regs');
    put(r, 296n, 0n, 8);
    put(r, 288n, 7n, 8);
    assert.equal(runGuest(r.c, r.vcpu, []).errno, undefined, 'valid bits accepted');
  });

  test('order: sync-regs check, then cr8, then immediate_exit', () => {
    const r = setup();
    put(r, 1n, 1n, 1);
    put(r, 16n, 99n, 8);
    put(r, 288n, 8n, 8);
    assert.equal(runGuest(r.c, r.vcpu, []).errno, 'EINVAL', 'all three: sync regs first');
    // post_kvm_run_save() runs on the error path too: cr8 now holds the guest's TPR again.
    assert.equal(u(r, 16n, 8), 0n);
    put(r, 288n, 0n, 8);
    put(r, 16n, 99n, 8);
    assert.equal(runGuest(r.c, r.vcpu, []).errno, 'EINVAL', 'cr8 before immediate_exit');
    assert.equal(u(r, 1n, 1), 1n, 'immediate_exit is left as the VMM wrote it');
    assert.equal(runGuest(r.c, r.vcpu, []).errno, 'EINTR');
  });

  test('sync_regs() applies and clears kvm_dirty_regs before the cr8 and immediate_exit checks', () => {
    const r = setup();
    put(r, 296n, 2n, 8); // KVM_SYNC_X86_SREGS
    put(r, 16n, 16n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: 'EINVAL', exits: [] });
    assert.equal(u(r, 296n, 8), 0n, 'the failed run consumed the dirty bits');
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: undefined, exits: [{ reason: 'HLT' }] });
    put(r, 296n, 2n, 8);
    put(r, 1n, 1n, 1);
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: 'EINTR', exits: [] });
    assert.equal(u(r, 296n, 8), 0n);
    put(r, 1n, 0n, 1);
    assert.deepEqual(runGuest(r.c, r.vcpu, []), { errno: undefined, exits: [{ reason: 'HLT' }] });
  });

  test('zero sync REGS fetch at RIP 0 (emulation failure) even with zero SREGS; SREGS alone shut down', () => {
    const r = setup();
    const internal = [{ reason: 'INTERNAL_ERROR', suberror: 1 }];
    put(r, 296n, 3n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, [load(MiB)]), { errno: undefined, exits: internal });
    put(r, 296n, 1n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, [load(MiB)]), { errno: undefined, exits: internal });
    put(r, 296n, 2n, 8);
    assert.deepEqual(runGuest(r.c, r.vcpu, [load(MiB)]), {
      errno: undefined,
      exits: [{ reason: 'SHUTDOWN' }],
    });
  });

  test('a valid cr8 is kept across the exits of one run and written back', () => {
    const r = setup();
    put(r, 16n, 3n, 8);
    const x = runGuest(r.c, r.vcpu, [load(MiB), load(MiB)]);
    assert.equal(x.errno, undefined);
    assert.equal(x.exits.length, 3);
    assert.equal(u(r, 16n, 8), 3n, 'cr8 round-trips');
  });
});

describe('KVM_HC_MAP_GPA_RANGE (§3.3, linux-6.18)', () => {
  const hc = (args: [bigint, bigint, bigint], nr = 12n): GuestProgramStep => ({
    kind: 'hypercall',
    nr,
    args,
  });

  test('not enabled → -KVM_ENOSYS (-1000) in EAX, no exit', () => {
    const r = setup();
    const x = runGuest(r.c, r.vcpu, [hc([MiB, 1n, 0x10n])]);
    assert.deepEqual(x.exits, [
      { reason: 'HYPERCALL_RET', hex: leHex(BigInt.asUintN(32, -1000n), 4) },
      { reason: 'HLT' },
    ]);
  });

  test('enabled: KVM_EXIT_HYPERCALL with gpa, npages, attrs; the VMM returns 0', () => {
    const r = setup();
    ok(r.c.h.kvmEnableCap(r.vm, KVM_CAP_EXIT_HYPERCALL, 0n, [1n << 12n]));
    const x = runGuest(r.c, r.vcpu, [hc([MiB, 2n, 0x10n])]);
    assert.equal(x.errno, undefined);
    assert.deepEqual(x.exits, [
      { reason: 'HYPERCALL', nr: 12n, args: [MiB, 2n, 0x10n] },
      { reason: 'HYPERCALL_RET', hex: '00000000' },
      { reason: 'HLT' },
    ]);
  });

  test('enabled, bad arguments → -KVM_EINVAL (-22) without an exit: unaligned gpa, npages 0', () => {
    const r = setup();
    ok(r.c.h.kvmEnableCap(r.vm, KVM_CAP_EXIT_HYPERCALL, 0n, [1n << 12n]));
    const einval = { reason: 'HYPERCALL_RET', hex: leHex(BigInt.asUintN(32, -22n), 4) };
    assert.deepEqual(runGuest(r.c, r.vcpu, [hc([MiB + 1n, 1n, 0n])]).exits, [
      einval,
      { reason: 'HLT' },
    ]);
    assert.deepEqual(runGuest(r.c, r.vcpu, [hc([MiB, 0n, 0n])]).exits, [einval, { reason: 'HLT' }]);
  });

  test('KVM does not change attributes itself', () => {
    const c = newHost();
    const vm = createVm(c, 1n);
    const vcpu = createVcpu(c, vm);
    ok(c.h.kvmEnableCap(vm, KVM_CAP_EXIT_HYPERCALL, 0n, [1n << 12n]));
    runGuest(c, vcpu, [hc([MiB, 4n, 0x10n])]);
    const f = c.h.file(vm) as import('../../src/core/kvm/objects.js').VmFile;
    assert.equal(f.vm.attrs.size, 0);
  });

  test('KVM_ENABLE_CAP(EXIT_HYPERCALL): bits outside 1<<12 → EINVAL; flags ≠ 0 → EINVAL; on a vCPU → EINVAL', () => {
    const r = setup();
    fails(r.c.h.kvmEnableCap(r.vm, KVM_CAP_EXIT_HYPERCALL, 0n, [1n << 11n]), 'EINVAL');
    fails(r.c.h.kvmEnableCap(r.vm, KVM_CAP_EXIT_HYPERCALL, 1n, [1n << 12n]), 'EINVAL');
    fails(r.c.h.kvmEnableCap(r.vcpu, KVM_CAP_EXIT_HYPERCALL, 0n, [1n << 12n]), 'EINVAL');
    ok(r.c.h.kvmEnableCap(r.vm, KVM_CAP_EXIT_HYPERCALL, 0n, [0n]));
    assert.equal(ok(r.c.h.kvmCheckExtension(r.vm, KVM_CAP_EXIT_HYPERCALL)), 4096n);
  });

  test('linux-6.18-pvm: a vmcall never completes; the watchdog ends KVM_RUN with EINTR after earlier exits', () => {
    const r = setup('linux-6.18-pvm');
    const x = runGuest(r.c, r.vcpu, [load(MiB), hc([MiB, 1n, 0n]), load(MiB)]);
    assert.equal(x.errno, 'EINTR');
    assert.deepEqual(x.exits, [{ reason: 'LOAD', gpa: MiB, hex: '00000000' }]);
  });
});

describe('linux-6.18-pvm: guest accesses are emulated through userspace_addr', () => {
  test('a gmem-only slot whose userspace_addr is the gmem mapping reads and writes gmem', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    const g = createGmem(c, vm, 2n * PAGE, GMEM_SHARED);
    const m = mmapFd(c, g, 2n * PAGE);
    poke(c, m + 16n, 'deadbeef');
    ok(
      setRegion(c, vm, {
        slot: 0n,
        flags: MEM_GUEST_MEMFD,
        gpa: 0n,
        size: 2n * PAGE,
        uaddr: m,
        gmem: g,
      }),
    );
    const vcpu = createVcpu(c, vm);
    const x = runGuest(c, vcpu, [load(16n), store(0x10_0000n, 'aabbccdd')]);
    // trace-format.md's example, result line 7.
    assert.deepEqual(x, {
      errno: undefined,
      exits: [
        { reason: 'LOAD', gpa: 16n, hex: 'deadbeef' },
        { reason: 'MMIO', gpa: 0x10_0000n, len: 4, is_write: true, hex: 'aabbccdd' },
        { reason: 'HLT' },
      ],
    });
    ok(c.h.fallocate(g, 3, 0n, PAGE));
    assert.equal(peekHex(c, m + 16n, 4), '00000000');
  });
});
