/**
 * KVM_RUN of a TD vCPU on the model (arch/x86/vmx/tdx_guest.ts over the TDX module): a TD built
 * and finalized as a VMM does, then guest programs with private and shared-bit accesses,
 * TDG.MEM.PAGE.ACCEPT and TDG.VP.VMCALL<MapGPA>: accept then access, access before accept (the VM
 * dead with SEPT_VE_DISABLE, a #VE and the guest's fatal-error report without it), ACCEPT twice
 * and 2M on 4K, a MapGPA round trip with the VMM converting (the zap's BLOCK/TRACK/REMOVE in the
 * module's state, then re-AUG and accept), MapGPA's checks, implicit conversion, non-TD VMs, the
 * trace syntax and the kvm backend's refusal.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Host } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { asGfn } from '../../src/core/base/units.js';
import { NotModelled } from '../../src/core/base/not_modelled.js';
import { PT } from '../../src/core/platform/tdx/pamt.js';
import { TDX } from '../../src/core/platform/tdx/status.js';
import { TD_ATTR } from '../../src/core/platform/tdx/td.js';
import type { TdxModule } from '../../src/core/platform/tdx/module.js';
import { KVM_TDX, toKvmTdx } from '../../src/core/arch/x86/vmx/tdx.js';
import { TDVMCALL_STATUS } from '../../src/core/arch/x86/vmx/tdx_guest.js';
import {
  guestLoad,
  guestStore,
  type GuestProgramStep,
  type RunExit,
} from '../../src/core/arch/x86/kvm_run.js';
import type { TdxGuestObserver } from '../../src/core/ctx.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { runChecked } from '../../src/check/checked_run.js';
import type { TdxGuestRecord } from '../../src/core/invariants/types.js';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseOpObject, parseTrace } from '../../src/trace/parse.js';
import { formatOp, formatResult } from '../../src/trace/format.js';
import { runTrace } from '../../src/trace/runner.js';
import { ModelBackend } from '../../src/backends/model.js';
import { OPS } from '../../src/ops/registry.js';
import {
  ATTR_PRIVATE,
  MEM_GUEST_MEMFD,
  createGmem,
  createVm,
  fails,
  mmapAnon,
  ok,
  setRegion,
  vmOf,
  type Ctx,
} from './helpers.js';

const TDX_VM = 5n;
const KVM_CAP_SPLIT_IRQCHIP = 121n;
const SHARED_BIT = 1n << 47n;

function mod(c: Ctx): TdxModule {
  return c.h.platform.tdx!.module;
}

/** KVM_MEMORY_ENCRYPT_OP with struct kvm_tdx_cmd (data at `addr`). */
function tdxCmd(c: Ctx, fd: number, id: number, addr: bigint, flags = 0): void {
  const b = new Uint8Array(24);
  const v = new DataView(b.buffer);
  v.setUint32(0, id, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, addr, true);
  ok(c.h.kvmMemoryEncryptOp(fd, { kind: 'buffer', bytes: b }), `TDX command ${id}`);
}

type Td = { c: Ctx; vm: number; vcpu: number; gmem: number };

/**
 * A TD as a VMM builds it: INIT_VM (GPAW 48; `attributes`), split irqchip, a vCPU with INIT_VCPU,
 * a guest_memfd memslot of 4 MiB at GPA 0 (PRIVATE), page 0 added with INIT_MEM_REGION (the
 * "firmware"), and FINALIZE unless `finalize` is false. KVM_CAP_EXIT_HYPERCALL with MAP_GPA_RANGE
 * unless `exitHypercall` is false.
 */
function buildTd(o: { attributes?: bigint; finalize?: boolean; exitHypercall?: boolean } = {}): Td {
  const h = new Host(getProfile('linux-6.18-tdx')!, { parts: ALL_PARTS });
  const c: Ctx = { h, kvm: h.openDevKvm() };
  const vm = createVm(c, TDX_VM);
  const params = mmapAnon(c, 0x10000n);
  const init = new Uint8Array(264 + 40);
  const v = new DataView(init.buffer);
  v.setBigUint64(0, o.attributes ?? TD_ATTR.SEPT_VE_DISABLE, true);
  v.setBigUint64(8, 0x3n, true);
  v.setUint32(256, 1, true);
  v.setUint32(264, 0x80000008, true);
  v.setUint32(264 + 12, 48 << 16, true);
  assert.ok(h.poke(params, init).ok);
  tdxCmd(c, vm, KVM_TDX.INIT_VM, params);
  ok(h.kvmEnableCap(vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]), 'SPLIT_IRQCHIP');
  if (o.exitHypercall !== false)
    ok(h.kvmEnableCap(vm, BigInt(KVM_CAP.KVM_CAP_EXIT_HYPERCALL), 0n, [1n << 12n]), 'EXIT_HC');
  const vcpu = ok(h.kvmCreateVcpu(vm, 0n), 'KVM_CREATE_VCPU');
  tdxCmd(c, vcpu, KVM_TDX.INIT_VCPU, 0n);
  const size = 0x40_0000n;
  const gmem = createGmem(c, vm, size);
  const uaddr = mmapAnon(c, size);
  ok(setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, gpa: 0n, size, uaddr, gmem }));
  ok(h.kvmSetMemoryAttributes(vm, { address: 0n, size, attributes: ATTR_PRIVATE, flags: 0n }));
  const src = mmapAnon(c, 0x1000n);
  assert.ok(h.poke(src, new Uint8Array(4096).fill(0xf4)).ok);
  const region = new Uint8Array(24);
  const r = new DataView(region.buffer);
  r.setBigUint64(0, src, true);
  r.setBigUint64(8, 0n, true);
  r.setBigUint64(16, 1n, true);
  assert.ok(h.poke(params, region).ok);
  tdxCmd(c, vcpu, KVM_TDX.INIT_MEM_REGION, params, 1);
  if (o.finalize !== false) tdxCmd(c, vm, KVM_TDX.FINALIZE_VM, 0n);
  return { c, vm, vcpu, gmem };
}

const st = (gpa: bigint, hex: string, shared = false): GuestProgramStep =>
  guestStore(gpa, Uint8Array.from(Buffer.from(hex, 'hex')), false, shared);
const ld = (gpa: bigint, shared = false): GuestProgramStep => guestLoad(gpa, 4, false, shared);
const accept = (gpa: bigint, size: '4K' | '2M' = '4K'): GuestProgramStep => ({
  kind: 'accept',
  gpa,
  size,
});
const mapGpa = (gpa: bigint, size: bigint, shared: boolean): GuestProgramStep => ({
  kind: 'map_gpa',
  gpa,
  size,
  shared,
});

/** The exits without LOAD's bytes as objects (hex instead). */
function show(exits: readonly RunExit[]): unknown[] {
  return exits.map((e) =>
    e.reason === 'LOAD'
      ? { reason: 'LOAD', gpa: e.gpa, hex: Buffer.from(e.bytes).toString('hex') }
      : e,
  );
}

function septState(td: Td, gfn: number): string {
  const t = toKvmTdx(vmOf(td.c, td.vm));
  return mod(td.c).td(t.tdr!)!.sept.walk(gfn, 0).entry.state;
}

describe('KVM_RUN of a TD vCPU', () => {
  test('boot, finalize, accept, private store and load; before finalize KVM_RUN is EINVAL', () => {
    const early = buildTd({ finalize: false });
    const r0 = early.c.h.kvmRun(early.vcpu, [ld(0n)]);
    assert.equal(r0.errno, 'EINVAL', 'tdx_vcpu_pre_run(): TD not RUNNABLE');
    assert.deepEqual(r0.exits, []);

    const td = buildTd();
    const r = td.c.h.kvmRun(td.vcpu, [accept(0x1000n), st(0x1000n, 'deadbeef'), ld(0x1000n)]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(show(r.exits), [
      { reason: 'ACCEPT', gpa: 0x1000n, status: 0n },
      { reason: 'LOAD', gpa: 0x1000n, hex: 'deadbeef' },
      { reason: 'HLT' },
    ]);
    assert.equal(septState(td, 1), 'MAPPED');
    // The firmware page, PAGE.ADDed before finalize, is MAPPED already: readable without ACCEPT.
    const fw = td.c.h.kvmRun(td.vcpu, [ld(0n)]);
    assert.deepEqual(show(fw.exits)[0], { reason: 'LOAD', gpa: 0n, hex: 'f4f4f4f4' });
    // The ACCEPT's fault counted one page fault taken and fixed (the PAGE.AUG).
    const vcpu = vmOf(td.c, td.vm).vcpus.values().next().value!;
    assert.equal(vcpu.stat.pf_fixed, 1);
    // The vCPU is out of the TD after every run.
    assert.equal(
      [
        ...mod(td.c)
          .td(toKvmTdx(vmOf(td.c, td.vm)).tdr!)!
          .vcpus.values(),
      ][0]!.inGuest,
      false,
    );
    assert.deepEqual(mod(td.c).checkConsistency(), []);
  });

  test('access before accept with SEPT_VE_DISABLE: the VM is dead, every later ioctl EIO', () => {
    const td = buildTd();
    const r = td.c.h.kvmRun(td.vcpu, [st(0x2000n, '01'), ld(0x2000n)]);
    assert.equal(r.errno, 'EIO');
    assert.deepEqual(r.exits, [{ reason: 'EPT_VIOLATION', gpa: 0x2000n }]);
    // The first touch AUGed the page (PENDING) and the retried access met it.
    assert.equal(septState(td, 2), 'PENDING');
    const { h } = td.c;
    assert.equal(h.kvmRun(td.vcpu, []).errno, 'EIO');
    fails(h.kvmCheckExtension(td.vm, 1n), 'EIO');
    fails(
      h.kvmSetMemoryAttributes(td.vm, { address: 0n, size: 4096n, attributes: 0n, flags: 0n }),
      'EIO',
    );
    fails(h.kvmCreateVcpu(td.vm, 1n), 'EIO');
    fails(h.kvmCreateGuestMemfd(td.vm, 4096n, 0n), 'EIO');
    assert.equal(h.kvmPreFaultMemory(td.vcpu, 0n, 4096n, 0n).errno, 'EIO');
    // Teardown still works.
    ok(h.close(td.vcpu));
    ok(h.close(td.vm));
  });

  test('access before accept without SEPT_VE_DISABLE: #VE, the guest reports a fatal error', () => {
    const td = buildTd({ attributes: 0n });
    const r = td.c.h.kvmRun(td.vcpu, [ld(0x2000n), ld(0n)]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(r.exits, [
      { reason: 'VE', gpa: 0x2000n },
      { reason: 'SYSTEM_EVENT', type: 7, data: [0n, 0n] },
    ]);
    // Not dead: the VMM may go on.
    assert.equal(td.c.h.kvmRun(td.vcpu, [accept(0x2000n), ld(0x2000n)]).exits.length, 3);
  });

  test('ACCEPT twice, 2M on 4K pages, a misaligned ACCEPT, ACCEPT of a shared gfn', () => {
    const td = buildTd();
    const r = td.c.h.kvmRun(td.vcpu, [
      accept(0x3000n),
      accept(0x3000n),
      accept(0n, '2M'),
      accept(0x20_0000n, '2M'),
      accept(0x3800n),
    ]);
    assert.deepEqual(
      r.exits.map((e) => (e.reason === 'ACCEPT' ? e.status : e.reason)),
      [
        TDX.SUCCESS,
        TDX.PAGE_ALREADY_ACCEPTED,
        TDX.PAGE_SIZE_MISMATCH + 1n,
        // No leaf at all: the EPT violation makes KVM AUG the first 4K page, then the retried
        // 2M ACCEPT finds a 4K table.
        TDX.PAGE_SIZE_MISMATCH + 1n,
        TDX.OPERAND_INVALID + 1n,
        'HLT',
      ],
    );
    assert.equal(septState(td, 0x200), 'PENDING');
    // A gfn made shared: the ACCEPT's private fault is an implicit conversion.
    ok(
      td.c.h.kvmSetMemoryAttributes(td.vm, {
        address: 0x5000n,
        size: 4096n,
        attributes: 0n,
        flags: 0n,
      }),
    );
    const s = td.c.h.kvmRun(td.vcpu, [accept(0x5000n)]);
    assert.equal(s.errno, 'EFAULT');
    assert.deepEqual(s.exits, [{ reason: 'MEMORY_FAULT', gpa: 0x5000n, size: 4096n, flags: 8n }]);
  });

  test('MapGPA private → shared → private with the VMM converting, and the zaps it causes', () => {
    const td = buildTd();
    const { h } = td.c;
    const m = mod(td.c);
    const t = toKvmTdx(vmOf(td.c, td.vm));
    const mtd = m.td(t.tdr!)!;
    assert.equal(h.kvmRun(td.vcpu, [accept(0x3000n), st(0x3000n, 'aabbccdd')]).errno, undefined);
    const pfn = t.leaves.get(3)!;
    const epoch = mtd.epoch;
    const r = h.kvmRun(
      td.vcpu,
      [mapGpa(0x3000n, 0x1000n, true), st(0x3000n, '11223344', true), ld(0x3000n, true)],
      'convert',
    );
    assert.equal(r.errno, undefined);
    assert.deepEqual(show(r.exits), [
      { reason: 'HYPERCALL', nr: 12n, args: [0x3000n, 1n, 0n] },
      { reason: 'TDVMCALL', status: 0n },
      { reason: 'LOAD', gpa: 0x3000n, hex: '11223344' },
      { reason: 'HLT' },
    ]);
    // The conversion zapped the private page: BLOCK, TRACK (a new epoch), REMOVE.
    assert.equal(septState(td, 3), 'FREE');
    assert.equal(mtd.epoch, epoch + 1);
    assert.equal(m.pamt.get(pfn).pt, PT.NDA);
    // Back to private: the exit asks for ENCRYPTED; the page is AUGed again on ACCEPT, zeroed.
    const b = h.kvmRun(
      td.vcpu,
      [mapGpa(0x3000n, 0x1000n, false), accept(0x3000n), ld(0x3000n)],
      'convert',
    );
    assert.deepEqual(show(b.exits), [
      { reason: 'HYPERCALL', nr: 12n, args: [0x3000n, 1n, 0x10n] },
      { reason: 'TDVMCALL', status: 0n },
      { reason: 'ACCEPT', gpa: 0x3000n, status: 0n },
      { reason: 'LOAD', gpa: 0x3000n, hex: '00000000' },
      { reason: 'HLT' },
    ]);
    assert.equal(septState(td, 3), 'MAPPED');
    assert.deepEqual(m.checkConsistency(), []);
  });

  test("MapGPA's checks, 2 MiB chunks, the VMM's error, and no KVM_CAP_EXIT_HYPERCALL", () => {
    const td = buildTd();
    const { h } = td.c;
    const r = h.kvmRun(td.vcpu, [
      mapGpa(0x1000n, 0x30_0000n, true),
      mapGpa(0x1800n, 0x1000n, true),
      mapGpa(0x1000n, 0x1000n, true),
      mapGpa(SHARED_BIT - 0x1000n, 0x2000n, false),
      mapGpa(1n << 48n, 0x1000n, false),
    ]);
    const ok0 = r.exits.filter((e) => e.reason === 'HYPERCALL');
    assert.deepEqual(
      ok0.map((e) => (e.reason === 'HYPERCALL' ? e.args : [])),
      [
        [0x1000n, 512n, 0n],
        [0x20_1000n, 256n, 0n],
        [0x1000n, 1n, 0n],
      ],
    );
    assert.deepEqual(
      r.exits.filter((e) => e.reason === 'TDVMCALL'),
      [
        { reason: 'TDVMCALL', status: 0n },
        { reason: 'TDVMCALL', status: TDVMCALL_STATUS.ALIGN_ERROR, r11: 0x1800n | SHARED_BIT },
        { reason: 'TDVMCALL', status: 0n },
        {
          reason: 'TDVMCALL',
          status: TDVMCALL_STATUS.INVALID_OPERAND,
          r11: SHARED_BIT - 0x1000n,
        },
        { reason: 'TDVMCALL', status: TDVMCALL_STATUS.INVALID_OPERAND, r11: 1n << 48n },
      ],
    );
    // The VMM answers an error: INVALID_OPERAND with R11 = the chunk's start.
    const e = h.kvmRun(td.vcpu, [mapGpa(0x1000n, 0x1000n, true)], 22n);
    assert.deepEqual(e.exits[1], {
      reason: 'TDVMCALL',
      status: TDVMCALL_STATUS.INVALID_OPERAND,
      r11: 0x1000n | SHARED_BIT,
    });
    const n = buildTd({ exitHypercall: false });
    const u = n.c.h.kvmRun(n.vcpu, [mapGpa(0x1000n, 0x1000n, true)]);
    assert.deepEqual(u.exits, [
      {
        reason: 'TDVMCALL',
        status: TDVMCALL_STATUS.SUBFUNC_UNSUPPORTED,
        r11: 0x1000n | SHARED_BIT,
      },
      { reason: 'HLT' },
    ]);
  });

  test('shared-bit accesses: the shared EPT, MMIO without a memslot, a private gfn is a memory fault', () => {
    const td = buildTd();
    const { h } = td.c;
    ok(
      h.kvmSetMemoryAttributes(td.vm, { address: 0x6000n, size: 4096n, attributes: 0n, flags: 0n }),
    );
    const r = h.kvmRun(td.vcpu, [
      st(0x6000n, '5a5a5a5a', true),
      ld(0x6000n, true),
      st(0x1000_0000n, '01', true),
    ]);
    assert.deepEqual(show(r.exits), [
      { reason: 'LOAD', gpa: 0x6000n, hex: '5a5a5a5a' },
      { reason: 'MMIO', gpa: 0x1000_0000n, len: 1, isWrite: true, bytes: Uint8Array.of(1) },
      { reason: 'HLT' },
    ]);
    // The shared page came from the memslot's userspace_addr, not guest_memfd.
    const spte = vmOf(td.c, td.vm).stage2[0]!.get(asGfn(6));
    assert.equal(spte?.private, false);
    assert.equal(spte?.source, 'hva');
    // A private access to the gfn the shared EPT maps: the mirror root has no leaf; the fault
    // meets the shared attribute (an implicit conversion).
    const q = h.kvmRun(td.vcpu, [ld(0x6000n)]);
    assert.equal(q.errno, 'EFAULT');
    assert.deepEqual(q.exits, [{ reason: 'MEMORY_FAULT', gpa: 0x6000n, size: 4096n, flags: 8n }]);
    const p = h.kvmRun(td.vcpu, [ld(0x7000n, true)]);
    assert.equal(p.errno, 'EFAULT');
    assert.deepEqual(p.exits, [{ reason: 'MEMORY_FAULT', gpa: 0x7000n, size: 4096n, flags: 0n }]);
  });

  test('the observer sees accesses, ACCEPTs and MapGPAs with the S-EPT state', () => {
    const td = buildTd();
    const seen: string[] = [];
    const obs: TdxGuestObserver = {
      access: (_vm, gfn, _pfn, write, shared, state) =>
        seen.push(`${write ? 'w' : 'r'} ${gfn} ${shared ? 'shared' : 'private'} ${state}`),
      accept: (_vm, gfn, level, status, before, after) =>
        seen.push(`accept ${gfn}/${level} ${status.toString(16)} ${before}→${after}`),
      mapGpa: (_vm, gpa, size, exits, status) =>
        seen.push(`map ${gpa.toString(16)}+${size.toString(16)} ${exits.length} ${status}`),
    };
    td.c.h.tdxGuestObserver = obs;
    td.c.h.kvmRun(
      td.vcpu,
      [
        accept(0x1000n),
        accept(0x1000n),
        st(0x1000n, '01'),
        mapGpa(0x1000n, 0x1000n, true),
        st(0x1000n, '02', true),
      ],
      'convert',
    );
    assert.deepEqual(seen, [
      'accept 1/0 0 PENDING→MAPPED',
      'accept 1/0 b0a00000000 MAPPED→MAPPED',
      'w 1 private MAPPED',
      'map 800000001000+1000 1 0',
      'w 1 shared FREE',
    ]);
  });

  test("the invariant checker records the TD guest's steps for the step's check, in order", () => {
    const td = buildTd();
    const chk = new InvariantChecker(td.c.h);
    assert.ok(td.c.h.tdxGuestObserver !== undefined);
    td.c.h.kvmRun(
      td.vcpu,
      [accept(0x1000n), ld(0x1000n), mapGpa(0x1000n, 0x1000n, true), st(0x1000n, '01', true)],
      'convert',
    );
    const recs = (chk as unknown as { tdxGuest: TdxGuestRecord[] }).tdxGuest;
    assert.deepEqual(
      recs.map((r) => `${r.kind}${r.kind === 'access' ? ` ${r.shared} ${r.septState}` : ''}`),
      ['accept', 'access false MAPPED', 'map_gpa', 'access true FREE'],
    );
    assert.deepEqual(chk.check(), []);
    assert.deepEqual((chk as unknown as { tdxGuest: TdxGuestRecord[] }).tdxGuest, []);
  });

  test('not modelled in a TD: a VMCALL step (refused, the vCPU out of the TD)', () => {
    const td = buildTd();
    assert.throws(
      () => td.c.h.kvmRun(td.vcpu, [{ kind: 'hypercall', nr: 1n, args: [0n, 0n, 0n] }]),
      NotModelled,
    );
    assert.equal(
      [
        ...mod(td.c)
          .td(toKvmTdx(vmOf(td.c, td.vm)).tdr!)!
          .vcpus.values(),
      ][0]!.inGuest,
      false,
    );
  });

  test('a non-TD VM: ACCEPT and MapGPA are TDCALL, #UD, a triple fault', () => {
    const h = new Host(getProfile('linux-6.18-tdx')!, { parts: ALL_PARTS });
    const c: Ctx = { h, kvm: h.openDevKvm() };
    const vm = createVm(c, 0n);
    const vcpu = ok(h.kvmCreateVcpu(vm, 0n));
    for (const s of [accept(0n), mapGpa(0n, 0x1000n, true)])
      assert.deepEqual(h.kvmRun(vcpu, [s]).exits, [{ reason: 'SHUTDOWN' }]);
  });
});

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const DOC = readFileSync(join(ROOT, 'docs/trace-format.md'), 'utf8');

/** The first two jsonl blocks after `heading` in docs/trace-format.md: a trace, its results. */
function docBlocks(heading: string): { trace: string; results: string[] } {
  const at = DOC.indexOf(heading);
  assert.ok(at >= 0, `${heading} is in docs/trace-format.md`);
  const blocks = [...DOC.slice(at).matchAll(/```jsonl\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
  return { trace: blocks[0]!, results: blocks[1]!.split('\n') };
}

describe('TDX guest steps in traces', () => {
  test("the document's TD guest run, after its TD build, gives the documented results", () => {
    const build = docBlocks('A TD build (`gmemlab replay --kernel linux-6.18-tdx`');
    const run = docBlocks("A TD's guest run (`gmemlab replay --kernel linux-6.18-tdx`");
    const p = parseTrace(`${build.trace}\n${run.trace}`, 't.jsonl');
    assert.deepEqual(
      p.errors.map((e) => e.message),
      [],
    );
    const b = new ModelBackend(getProfile('linux-6.18-tdx')!, { events: false });
    const got = runTrace(p.ops, b).map(formatResult);
    // Every invariant holds after every op of the same trace.
    const checked = runChecked(p.ops, getProfile('linux-6.18-tdx')!);
    assert.equal(checked.ran, p.ops.length);
    assert.deepEqual(checked.failures, []);
    assert.deepEqual(got.slice(0, build.results.length), build.results);
    assert.deepEqual(got.slice(build.results.length), run.results);
    for (const op of p.ops.filter((o) => o.op === 'KVM_RUN')) {
      const again = parseOpObject(
        't.jsonl',
        1,
        JSON.parse(formatOp(op)) as Record<string, unknown>,
      );
      assert.deepEqual({ ...again, line: 0 }, { ...op, line: 0 });
    }
  });

  const run = (guest: string): string => `{"op":"KVM_RUN","vcpu":3,"guest":${guest}}`;

  test('parse and format round trip; field errors at file:line', () => {
    const text = run(
      '[{"accept":{"gpa":4096,"size":"2M"}},{"map_gpa":{"gpa":4096,"size":8192,"shared":1}},{"store":{"gpa":4096,"hex":"01","shared":1}},{"load":{"gpa":4096,"size":4,"shared":1}}]',
    );
    const p = parseTrace(text, 't.jsonl');
    assert.deepEqual(p.errors, []);
    const again = parseTrace(formatOp(p.ops[0]!), 't.jsonl');
    assert.deepEqual({ ...again.ops[0]!, line: 0 }, { ...p.ops[0]!, line: 0 });
    for (const [g, field] of [
      ['[{"accept":{"gpa":4096,"size":"1G"}}]', 'guest[0].accept.size'],
      ['[{"accept":{"gpa":4096,"level":1}}]', 'guest[0].accept'],
      ['[{"map_gpa":{"gpa":4096,"size":4096,"shared":2}}]', 'guest[0].map_gpa.shared'],
      ['[{"map_gpa":{"gpa":4096}}]', 'guest[0].map_gpa.size'],
      ['[{"load":{"gpa":4096,"c":1,"shared":1}}]', 'guest[0].load.shared'],
      ['[{"acept":{"gpa":4096}}]', 'guest[0]'],
    ] as const) {
      const e = parseTrace(run(g), 'x.jsonl').errors;
      assert.equal(e.length, 1, g);
      assert.match(
        e[0]!.message,
        new RegExp(`x\\.jsonl:1.*${field.replace(/[[\].]/g, '\\$&')}`),
        g,
      );
    }
  });

  test('the kvm backend refuses TDX guest steps with a reason', () => {
    const spec = OPS.get('KVM_RUN')!;
    for (const g of [
      '[{"accept":{"gpa":4096}}]',
      '[{"map_gpa":{"gpa":4096,"size":4096,"shared":1}}]',
      '[{"load":{"gpa":4096,"shared":1}}]',
    ]) {
      const why = spec.kvmRefusal!(parseTrace(run(g)).ops[0]! as never, {} as never);
      assert.match(why ?? '', /TDX guest step.*no TDX/);
    }
  });
});
