/**
 * KVM's TDX flow on the model (arch/x86/vmx/tdx.ts over the TDX module): the `linux-6.18-tdx`
 * profile, the VM-scope commands (KVM_TDX_CAPABILITIES, KVM_TDX_INIT_VM, KVM_TDX_FINALIZE_VM) and
 * the vCPU-scope ones (KVM_TDX_INIT_VCPU, KVM_TDX_INIT_MEM_REGION) with every check in tdx.c's
 * order, the mirror page table (SEPT.ADD per level, premapped leaves, PAGE.ADD, MR.EXTEND), the
 * MRTD the TD's TDCS ends with (platforms.md §1.8 T1-T3), pre-fault and private zaps after
 * finalize, wrong orders, and teardown.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Host } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { asGfn } from '../../src/core/base/units.js';
import { NotModelled } from '../../src/core/base/not_modelled.js';
import { TdxPlatform } from '../../src/core/platform/tdx/platform.js';
import { PT } from '../../src/core/platform/tdx/pamt.js';
import { TDX } from '../../src/core/platform/tdx/status.js';
import type { TdxModule } from '../../src/core/platform/tdx/module.js';
import { KVM_TDX, toKvmTdx, tdxTdMrtd } from '../../src/core/arch/x86/vmx/tdx.js';
import { kvmMmuDoPageFault } from '../../src/core/arch/x86/mmu.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import {
  ATTR_PRIVATE,
  MEM_GUEST_MEMFD,
  MEM_READONLY,
  GMEM_INIT_SHARED,
  createGmem,
  createVm,
  fails,
  mmapAnon,
  ok,
  setRegion,
  vmOf,
  type Ctx,
} from './helpers.js';
import type { Result } from '../../src/core/base/result.js';

const TDXP = getProfile('linux-6.18-tdx')!;
const TDX_VM = 5n;
const KVM_CAP_SPLIT_IRQCHIP = 121n;
const KVM_CAP_X86_SMM = 117;

/** The MRTDs of platforms.md §1.8. */
const T1 =
  '8f3e9a8aca6784eab874f7aa4dda5d49104a88047f1f86695ef2a88f5691a90e34aac48ce45ffa1f5a23c7d62980d570';
const T2 =
  '236f0efa607ff8843f1855d7ef80dc3dda8fb455787a186b8787212951eab0096e3193bb26f817c2b63c21f5e10f9938';
const T3 =
  'fae252d5477406d8d3b78e4e479a6474c7b1bdfb524b48455603a2e8cddc2ec7b3e1eef31ccb55abf2dcd47fe2d3f128';

const hex = (b: Uint8Array | undefined): string => Buffer.from(b ?? []).toString('hex');

function tdxHost(): Ctx {
  const h = new Host(TDXP, { parts: ALL_PARTS });
  return { h, kvm: h.openDevKvm() };
}

function mod(c: Ctx): TdxModule {
  return c.h.platform.tdx!.module;
}

/** A VMM's view of one TD: its fds and a page of parameter memory. */
class Td {
  readonly vm: number;
  readonly params: bigint;
  vcpu = -1;
  constructor(readonly c: Ctx) {
    this.vm = createVm(c, TDX_VM);
    this.params = mmapAnon(c, 0x10000n);
  }

  /** KVM_MEMORY_ENCRYPT_OP with struct kvm_tdx_cmd on `fd`; the struct as KVM left it. */
  cmd(
    fd: number,
    id: number,
    data: Uint8Array | bigint | undefined,
    o: { flags?: number; hwError?: bigint } = {},
  ): { r: Result<undefined>; hwError: bigint } {
    let addr = 0n;
    if (data instanceof Uint8Array) {
      assert.ok(this.c.h.poke(this.params, data).ok);
      addr = this.params;
    } else if (typeof data === 'bigint') addr = data;
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    v.setUint32(0, id, true);
    v.setUint32(4, o.flags ?? 0, true);
    v.setBigUint64(8, addr, true);
    v.setBigUint64(16, o.hwError ?? 0n, true);
    const r = this.c.h.kvmMemoryEncryptOp(fd, { kind: 'buffer', bytes: b });
    return { r, hwError: v.getBigUint64(16, true) };
  }

  readParams(len: number, off = 0n): Uint8Array {
    const r = this.c.h.peek(this.params + off, len);
    assert.ok(r.ok);
    return r.data!;
  }

  initVm(o: { attributes?: bigint; xfam?: bigint; gpaw?: number; extra?: number[][] } = {}) {
    return this.cmd(this.vm, KVM_TDX.INIT_VM, initVmStruct(o));
  }

  /** INIT_VM, split irqchip, one vCPU with INIT_VCPU. */
  boot(o: { gpaw?: number } = {}): void {
    ok(this.initVm(o).r, 'KVM_TDX_INIT_VM');
    ok(this.c.h.kvmEnableCap(this.vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]), 'SPLIT_IRQCHIP');
    this.vcpu = ok(this.c.h.kvmCreateVcpu(this.vm, 0n), 'KVM_CREATE_VCPU');
    ok(this.cmd(this.vcpu, KVM_TDX.INIT_VCPU, 0n).r, 'KVM_TDX_INIT_VCPU');
  }

  /** A guest_memfd memslot over [gpa, gpa+size), PRIVATE. */
  privateSlot(slot: bigint, gpa: bigint, size: bigint, setPrivate = true): number {
    const gmem = createGmem(this.c, this.vm, size);
    const uaddr = mmapAnon(this.c, size);
    ok(
      setRegion(this.c, this.vm, { slot, flags: MEM_GUEST_MEMFD, gpa, size, uaddr, gmem }),
      'memslot',
    );
    if (setPrivate)
      ok(
        this.c.h.kvmSetMemoryAttributes(this.vm, {
          address: gpa,
          size,
          attributes: ATTR_PRIVATE,
          flags: 0n,
        }),
        'PRIVATE',
      );
    return gmem;
  }

  /** KVM_TDX_INIT_MEM_REGION; the struct KVM wrote back. */
  initMemRegion(
    source: bigint,
    gpa: bigint,
    nrPages: bigint,
    flags = 1,
  ): { r: Result<undefined>; region: [bigint, bigint, bigint] } {
    const s = new Uint8Array(24);
    const v = new DataView(s.buffer);
    v.setBigUint64(0, source, true);
    v.setBigUint64(8, gpa, true);
    v.setBigUint64(16, nrPages, true);
    const { r } = this.cmd(this.vcpu, KVM_TDX.INIT_MEM_REGION, s, { flags });
    const b = this.readParams(24);
    const w = new DataView(b.buffer, b.byteOffset);
    return {
      r,
      region: [w.getBigUint64(0, true), w.getBigUint64(8, true), w.getBigUint64(16, true)],
    };
  }

  finalize(): { r: Result<undefined>; hwError: bigint } {
    return this.cmd(this.vm, KVM_TDX.FINALIZE_VM, 0n);
  }
}

/** struct kvm_tdx_init_vm with its CPUID entries (0x80000008 with the GPAW, plus `extra`). */
function initVmStruct(
  o: { attributes?: bigint; xfam?: bigint; gpaw?: number; extra?: number[][] } = {},
): Uint8Array {
  const entries: number[][] = [];
  if (o.gpaw !== 0) entries.push([0x80000008, 0, 0, (o.gpaw ?? 48) << 16, 0, 0, 0]);
  entries.push(...(o.extra ?? []));
  const b = new Uint8Array(264 + 40 * entries.length);
  const v = new DataView(b.buffer);
  v.setBigUint64(0, o.attributes ?? 0n, true);
  v.setBigUint64(8, o.xfam ?? 0x3n, true);
  v.setUint32(256, entries.length, true);
  entries.forEach((e, i) => e.forEach((x, j) => v.setUint32(264 + 40 * i + 4 * j, x >>> 0, true)));
  return b;
}

/** VMM memory holding `bytes` (whole pages). */
function sourcePage(c: Ctx, bytes: Uint8Array): bigint {
  const a = mmapAnon(c, BigInt(Math.max(4096, bytes.length)));
  assert.ok(c.h.poke(a, bytes).ok);
  return a;
}

describe('profile linux-6.18-tdx', () => {
  test('an Intel host with EPT, VM types DEFAULT, SW_PROTECTED and TDX, and a TDX module', () => {
    assert.equal(TDXP.parts.vendor, 'kvm_intel');
    assert.equal(TDXP.parts.platform, 'tdx');
    assert.equal(TDXP.tdpEnabled, true);
    assert.deepEqual([...TDXP.vmTypes.keys()], [0n, 1n, 5n]);
    const t = TDXP.vmTypes.get(TDX_VM)!;
    assert.equal(t.name, 'TDX');
    assert.equal(t.hasPrivateMem, true);
    assert.equal(t.hasProtectedState, true);
    assert.equal(t.preFaultAllowedAtCreate, false);
    assert.equal(t.privateFaultSource, 'access');
    assert.equal(t.mirroredTdp, true);
    const c = tdxHost();
    assert.ok(c.h.platform instanceof TdxPlatform);
    // Every host has its own module.
    assert.notEqual(tdxHost().h.platform, c.h.platform);
    // linux-6.18's hosts have no platform.
    assert.equal(new Host(getProfile('linux-6.18')!, { parts: ALL_PARTS }).platform.name, 'none');
  });

  test('capabilities per VM type as 6.18 answers them', () => {
    const c = tdxHost();
    const cap = (fd: number, id: number): bigint => ok(c.h.kvmCheckExtension(fd, BigInt(id)));
    const dflt = createVm(c, 0n);
    const sw = createVm(c, 1n);
    const td = createVm(c, TDX_VM);
    assert.equal(cap(c.kvm, KVM_CAP.KVM_CAP_VM_TYPES), 0x23n);
    for (const fd of [dflt, sw, td]) assert.equal(cap(fd, KVM_CAP.KVM_CAP_VM_TYPES), 0x23n);
    assert.deepEqual(
      [dflt, sw, td].map((fd) => cap(fd, KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS)),
      [3n, 1n, 1n],
    );
    assert.deepEqual(
      [dflt, sw, td].map((fd) => cap(fd, KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES)),
      [0n, 8n, 8n],
    );
    assert.deepEqual(
      [dflt, sw, td].map((fd) => cap(fd, KVM_CAP.KVM_CAP_READONLY_MEM)),
      [1n, 1n, 0n],
    );
    assert.deepEqual(
      [dflt, sw, td].map((fd) => cap(fd, KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE)),
      [2n, 1n, 1n],
    );
    // kvm->max_vcpus = min(KVM_MAX_VCPUS, num_present_cpus()) for a TD.
    assert.deepEqual(
      [dflt, td].map((fd) => cap(fd, KVM_CAP.KVM_CAP_MAX_VCPUS)),
      [1024n, 2n],
    );
    assert.equal(cap(td, KVM_CAP_X86_SMM), 0n);
    assert.equal(cap(td, KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY), 1n);
    // READONLY memslots are refused for VMs with protected state; INIT_SHARED for private memory.
    const ua = mmapAnon(c, 0x10000n);
    fails(setRegion(c, td, { flags: MEM_READONLY, size: 0x10000n, uaddr: ua }), 'EINVAL');
    fails(c.h.kvmCreateGuestMemfd(td, 0x10000n, GMEM_INIT_SHARED), 'EINVAL');
  });
});

describe('KVM_TDX_* on the VM fd (tdx_vm_ioctl)', () => {
  test('errno order of the ioctl and of KVM_TDX_CAPABILITIES; its values', () => {
    const c = tdxHost();
    const td = new Td(c);
    const dflt = createVm(c, 0n);
    fails(td.cmd(dflt, KVM_TDX.CAPABILITIES, 0n).r, 'ENOTTY', 'not a TD');
    fails(c.h.kvmMemoryEncryptOp(td.vm, { kind: 'null' }), 'EFAULT', 'NULL argp');
    fails(td.cmd(td.vm, KVM_TDX.CAPABILITIES, 0n, { hwError: 1n }).r, 'EINVAL', 'hw_error');
    fails(td.cmd(td.vm, 99, 0n).r, 'EINVAL', 'unknown id');
    fails(td.cmd(td.vm, KVM_TDX.INIT_VCPU, 0n).r, 'EINVAL', 'a vCPU command on the VM');
    fails(td.cmd(td.vm, KVM_TDX.CAPABILITIES, 0n, { flags: 1 }).r, 'EINVAL', 'flags');
    fails(td.cmd(td.vm, KVM_TDX.CAPABILITIES, 0n).r, 'EFAULT', 'data NULL');
    const caps = new Uint8Array(2056);
    new DataView(caps.buffer).setUint32(2048, 2, true);
    fails(td.cmd(td.vm, KVM_TDX.CAPABILITIES, caps).r, 'E2BIG', 'nent 2');
    // Only cpuid.nent is read: the struct's first page unmapped, nent on the next one, is E2BIG.
    const two = mmapAnon(c, 0x2000n);
    ok(c.h.munmap(two, 0x1000n), 'munmap the first page');
    assert.ok(c.h.poke(two + 0x1000n, new Uint8Array(4)).ok);
    fails(td.cmd(td.vm, KVM_TDX.CAPABILITIES, two + 0x1000n - 2048n).r, 'E2BIG', 'nent 0');
    new DataView(caps.buffer).setUint32(2048, 64, true);
    // What the VMM left in the struct does not come back: KVM copies out a zeroed one.
    caps.fill(0xff, 16, 24);
    caps.fill(0xff, 32, 2048);
    caps.fill(0xff, 2052, 2056);
    ok(td.cmd(td.vm, KVM_TDX.CAPABILITIES, caps).r);
    const out = td.readParams(2056 + 6 * 40);
    const v = new DataView(out.buffer, out.byteOffset);
    assert.equal(v.getBigUint64(16, true), 0n, 'kernel_tdvmcallinfo_1_r11');
    assert.equal(
      v.getBigUint64(24, true),
      2n,
      'user_tdvmcallinfo_1_r11: SetupEventNotifyInterrupt',
    );
    assert.ok(
      out.subarray(32, 2048).every((b) => b === 0),
      'r12 words and reserved[] zero',
    );
    assert.equal(v.getUint32(2052, true), 0, 'cpuid.padding');
    assert.equal(v.getBigUint64(0, true), 1n << 28n, 'supported_attrs: SEPT_VE_DISABLE');
    assert.equal(v.getBigUint64(8, true), 0x2e7n, 'supported_xfam');
    assert.equal(v.getUint32(2048, true), 6, 'nent');
    // The 0x80000008 entry reports EAX[23:16] (GPAW) configurable.
    assert.equal(v.getUint32(2056 + 5 * 40, true), 0x80000008);
    assert.equal((v.getUint32(2056 + 5 * 40 + 12, true) >>> 16) & 0xff, 0xff);
    // CPUID 7.0: TSX (EBX 4, 11) and WAITPKG (ECX 5) are never configurable.
    assert.equal(v.getUint32(2056 + 40 + 16, true) & 0x810, 0);
    assert.equal(v.getUint32(2056 + 40 + 20, true) & 0x20, 0);
  });

  test('KVM_TDX_INIT_VM: each check in order, then the TD exists', () => {
    const c = tdxHost();
    const td = new Td(c);
    fails(td.cmd(td.vm, KVM_TDX.INIT_VM, initVmStruct(), { flags: 1 }).r, 'EINVAL', 'flags');
    fails(td.cmd(td.vm, KVM_TDX.INIT_VM, 0n).r, 'EFAULT', 'data');
    const big = initVmStruct();
    new DataView(big.buffer).setUint32(256, 257, true);
    fails(td.cmd(td.vm, KVM_TDX.INIT_VM, big).r, 'E2BIG', 'nent > 256');
    const reserved = initVmStruct();
    reserved[200] = 1;
    fails(td.cmd(td.vm, KVM_TDX.INIT_VM, reserved).r, 'EINVAL', 'reserved');
    const padding = initVmStruct();
    padding[260] = 1;
    fails(td.cmd(td.vm, KVM_TDX.INIT_VM, padding).r, 'EINVAL', 'cpuid.padding');
    fails(td.initVm({ attributes: 1n }).r, 'EINVAL', 'DEBUG is not a KVM-supported attribute');
    fails(td.initVm({ xfam: 0x3n | (1n << 40n) }).r, 'EINVAL', 'xfam');
    fails(td.initVm({ gpaw: 0 }).r, 'EINVAL', 'no CPUID 0x80000008');
    fails(td.initVm({ gpaw: 40 }).r, 'EINVAL', 'GPAW 40');
    fails(td.initVm({ extra: [[0x4, 0, 0, 0, 0, 0, 0]] }).r, 'EINVAL', 'a leaf not configurable');
    fails(td.initVm({ extra: [[0x7, 0, 1, 0, 1 << 11, 0, 0]] }).r, 'EINVAL', 'TSX (RTM) asked for');
    assert.equal(mod(c).allTds().length, 0, 'nothing created by a refused INIT_VM');
    // vCPUs: before INIT_VM -EIO.
    fails(c.h.kvmCreateVcpu(td.vm, 0n), 'EIO', 'vCPU before INIT_VM');
    const r = td.initVm({ attributes: 1n << 28n, extra: [[0x1, 0, 0, 0, 0, 0, 0]] });
    ok(r.r, 'INIT_VM');
    assert.equal(r.hwError, 0n);
    const t = toKvmTdx(vmOf(c, td.vm));
    assert.equal(t.state, 'TD_STATE_INITIALIZED');
    assert.equal(t.hkid, 32);
    assert.equal(t.gfnDirectBits, 1n << 35n, 'shared bit 47 with GPAW 48');
    const m = mod(c);
    const mtd = m.td(t.tdr!)!;
    assert.equal(mtd.opState, 'INITIALIZED');
    assert.equal(mtd.tdcx.length, m.config.tdcsPages);
    assert.equal(mtd.attributes, 1n << 28n);
    assert.equal(m.pamt.get(t.tdr!).pt, PT.TDR);
    fails(td.initVm().r, 'EINVAL', 'a second INIT_VM');
    // GPAW 52: shared bit 51, 5-level S-EPT.
    const td52 = new Td(c);
    ok(td52.initVm({ gpaw: 52 }).r);
    const t52 = toKvmTdx(vmOf(c, td52.vm));
    assert.equal(t52.gfnDirectBits, 1n << 39n);
    assert.equal(m.td(t52.tdr!)!.pwl, 4);
    assert.equal(t52.hkid, 33);
  });

  test('memslots: after INIT_VM a slot whose last gfn has the shared bit is EINVAL (kvm_is_gfn_alias)', () => {
    const c = tdxHost();
    const td = new Td(c);
    const shared = 1n << 47n;
    const uaddr = mmapAnon(c, 0x2000n);
    const region = (slot: bigint, gpa: bigint, size = 0x1000n) =>
      setRegion(c, td.vm, { slot, flags: 0n, gpa, size, uaddr });
    // Before INIT_VM the TD has no direct bits: the same GPA is an ordinary one.
    ok(region(0n, shared), 'a slot at the shared bit before INIT_VM');
    ok(region(0n, shared, 0n), 'deleted');
    ok(td.initVm().r, 'INIT_VM (GPAW 48: shared bit 47)');
    fails(region(1n, shared), 'EINVAL', 'CREATE whose last gfn is an alias');
    fails(region(1n, shared - 0x1000n, 0x2000n), 'EINVAL', 'CREATE ending past the shared bit');
    ok(region(1n, shared - 0x1000n), 'CREATE ending just below the shared bit');
    fails(region(1n, shared), 'EINVAL', 'MOVE onto an alias');
    ok(region(1n, 0x10000n), 'MOVE below it');
  });

  test('KVM_CREATE_VCPU on a TD: split irqchip required; at most num_present_cpus vCPUs', () => {
    const c = tdxHost();
    const td = new Td(c);
    ok(td.initVm().r);
    fails(c.h.kvmCreateVcpu(td.vm, 0n), 'EINVAL', 'no split irqchip');
    fails(c.h.kvmEnableCap(td.vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [49n]), 'EINVAL', '49 pins');
    ok(c.h.kvmEnableCap(td.vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]));
    fails(c.h.kvmEnableCap(td.vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]), 'EEXIST', 'twice');
    ok(c.h.kvmCreateVcpu(td.vm, 0n));
    ok(c.h.kvmCreateVcpu(td.vm, 1n));
    fails(c.h.kvmCreateVcpu(td.vm, 2n), 'EINVAL', 'a third vCPU');
    // Not modelled on other VMs (unchanged).
    fails(c.h.kvmEnableCap(createVm(c, 0n), KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]), 'EINVAL');
  });

  test('KVM_TDX_FINALIZE_VM: before INIT_VM, without a vCPU (TDX_NO_VCPUS), then RUNNABLE', () => {
    const c = tdxHost();
    const td = new Td(c);
    fails(td.finalize().r, 'EINVAL', 'before INIT_VM');
    ok(td.initVm().r);
    // A vCPU created but never KVM_TDX_INIT_VCPU'ed is none for the module.
    ok(c.h.kvmEnableCap(td.vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]), 'SPLIT_IRQCHIP');
    const cpu = ok(c.h.kvmCreateVcpu(td.vm, 0n), 'KVM_CREATE_VCPU');
    const f = td.finalize();
    fails(f.r, 'EIO', 'no vCPU: TDH.MR.FINALIZE fails, a KVM bug');
    assert.equal(f.hwError, TDX.NO_VCPUS, 'hw_error is the module status');
    assert.equal(vmOf(c, td.vm).vmBugged, true, 'KVM_BUG_ON: the VM is bugged');
    fails(td.finalize().r, 'EIO', 'a bugged VM answers -EIO');
    fails(td.cmd(td.vm, KVM_TDX.CAPABILITIES, 0n).r, 'EIO');
    // kvm_vm_ioctl() / kvm_vcpu_ioctl() check kvm->vm_dead first, for every ioctl of the VM.
    fails(
      c.h.kvmCheckExtension(td.vm, BigInt(KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS)),
      'EIO',
      'KVM_CHECK_EXTENSION',
    );
    fails(c.h.kvmCreateGuestMemfd(td.vm, 0x1000n, 0n), 'EIO', 'KVM_CREATE_GUEST_MEMFD');
    const ram = mmapAnon(c, 0x1000n);
    fails(setRegion(c, td.vm, { slot: 0n, gpa: 0n, size: 0x1000n, uaddr: ram }), 'EIO', 'memslot');
    fails(
      c.h.kvmSetMemoryAttributes(td.vm, { address: 0n, size: 0x1000n, attributes: 8n, flags: 0n }),
      'EIO',
      'KVM_SET_MEMORY_ATTRIBUTES',
    );
    fails(c.h.kvmCreateVcpu(td.vm, 1n), 'EIO', 'KVM_CREATE_VCPU');
    fails(td.cmd(cpu, KVM_TDX.INIT_VCPU, 0n).r, 'EIO', 'a vCPU command (kvm_vcpu_ioctl)');
    assert.equal(c.h.kvmRun(cpu, []).errno, 'EIO', 'KVM_RUN');
    ok(c.h.close(cpu), 'close still works');
    const td2 = new Td(c);
    td2.boot();
    const r = td2.finalize();
    ok(r.r);
    assert.equal(r.hwError, TDX.SUCCESS);
    const vm2 = vmOf(c, td2.vm);
    assert.equal(toKvmTdx(vm2).state, 'TD_STATE_RUNNABLE');
    assert.equal(vm2.preFaultAllowed, true);
    // T0: no page added.
    assert.equal(
      hex(tdxTdMrtd(c.h, vm2)),
      '38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
    );
    fails(td2.finalize().r, 'EINVAL', 'twice');
    // vCPU commands after finalize: -EINVAL before anything is read.
    fails(td2.cmd(td2.vcpu, KVM_TDX.INIT_VCPU, 0n).r, 'EINVAL');
  });
});

describe('KVM_TDX_* on a vCPU fd (tdx_vcpu_ioctl)', () => {
  test('errno order of the ioctl and of KVM_TDX_INIT_VCPU', () => {
    const c = tdxHost();
    const td = new Td(c);
    ok(td.initVm().r);
    ok(c.h.kvmEnableCap(td.vm, KVM_CAP_SPLIT_IRQCHIP, 0n, [0n]));
    td.vcpu = ok(c.h.kvmCreateVcpu(td.vm, 0n));
    fails(c.h.kvmMemoryEncryptOp(td.vcpu, { kind: 'null' }), 'EFAULT', 'NULL');
    fails(td.cmd(td.vcpu, KVM_TDX.INIT_VCPU, 0n, { hwError: 2n }).r, 'EINVAL', 'hw_error');
    fails(td.cmd(td.vcpu, KVM_TDX.CAPABILITIES, 0n).r, 'EINVAL', 'a VM command');
    fails(td.cmd(td.vcpu, KVM_TDX.INIT_VCPU, 0n, { flags: 1 }).r, 'EINVAL', 'flags');
    fails(td.initMemRegion(0n, 0n, 1n).r, 'EINVAL', 'INIT_MEM_REGION before INIT_VCPU');
    assert.throws(() => td.cmd(td.vcpu, KVM_TDX.GET_CPUID, 0n), NotModelled);
    ok(td.cmd(td.vcpu, KVM_TDX.INIT_VCPU, 0n).r);
    fails(td.cmd(td.vcpu, KVM_TDX.INIT_VCPU, 0n).r, 'EINVAL', 'twice');
    const m = mod(c);
    const mtd = m.td(toKvmTdx(vmOf(c, td.vm)).tdr!)!;
    assert.equal(mtd.numVcpus, 1);
    const [vp] = [...mtd.vcpus.values()];
    assert.equal(vp!.pages.length, m.config.tdvpsPages);
    assert.equal(vp!.state, 'VCPU_READY');
    // A vCPU of another VM type.
    const sw = createVm(c, 1n);
    const v = ok(c.h.kvmCreateVcpu(sw, 0n));
    fails(td.cmd(v, KVM_TDX.INIT_VCPU, 0n).r, 'EINVAL', 'not a TD vCPU');
  });

  test('KVM_TDX_INIT_MEM_REGION: checks in order, progress written back', () => {
    const c = tdxHost();
    const td = new Td(c);
    td.boot();
    td.privateSlot(0n, 0n, 0x10000n);
    const src = sourcePage(c, new Uint8Array(3 * 4096));
    fails(td.initMemRegion(src, 0n, 1n, 2).r, 'EINVAL', 'flags');
    fails(td.cmd(td.vcpu, KVM_TDX.INIT_MEM_REGION, 0n).r, 'EFAULT', 'region NULL');
    fails(td.initMemRegion(src + 1n, 0n, 1n).r, 'EINVAL', 'source unaligned');
    fails(td.initMemRegion(src, 0x800n, 1n).r, 'EINVAL', 'gpa unaligned');
    fails(td.initMemRegion(src, 0n, 0n).r, 'EINVAL', 'nr_pages 0');
    fails(td.initMemRegion(src, 0xfffffffffffff000n, 2n).r, 'EINVAL', 'wraps');
    fails(td.initMemRegion(src, 1n << 47n, 1n).r, 'EINVAL', 'a shared GPA');
    fails(td.initMemRegion(src, (1n << 47n) - 4096n, 2n).r, 'EINVAL', 'ends shared');
    // Past the checks: kvm_gmem_populate()'s errors, the progress written back.
    let x = td.initMemRegion(src, 0x20000n, 1n);
    fails(x.r, 'EINVAL', 'no guest_memfd memslot');
    assert.deepEqual(x.region, [src, 0x20000n, 1n]);
    x = td.initMemRegion(0x1000n, 0n, 2n);
    fails(x.r, 'EFAULT', 'source not mapped');
    assert.deepEqual(x.region, [0x1000n, 0n, 2n]);
    const t = toKvmTdx(vmOf(c, td.vm));
    assert.equal(t.nrPremapped, 0, 'GUP fails before the mirror is touched');
    assert.equal(t.septPages.size, 0);
    x = td.initMemRegion(src, 0x3000n, 2n);
    ok(x.r, 'two pages');
    assert.deepEqual(x.region, [src + 0x2000n, 0x5000n, 0n]);
    assert.equal(t.septPages.size, 3, 'SEPT.ADD at levels 3, 2, 1');
    assert.equal(t.nrPremapped, 0);
    // The range stops at the first page populate refuses: 0x4000 is populated already.
    x = td.initMemRegion(src, 0x2000n, 3n);
    fails(x.r, 'EEXIST', 'populated page');
    assert.deepEqual(x.region, [src + 0x1000n, 0x3000n, 2n], 'one page done');
    // A shared page by attributes.
    ok(
      c.h.kvmSetMemoryAttributes(td.vm, {
        address: 0x8000n,
        size: 0x1000n,
        attributes: 0n,
        flags: 0n,
      }),
    );
    x = td.initMemRegion(src, 0x7000n, 2n);
    fails(x.r, 'EINVAL', 'not PRIVATE');
    assert.deepEqual(x.region, [src + 0x1000n, 0x8000n, 1n]);
    const m = mod(c);
    const mtd = m.td(t.tdr!)!;
    for (const gfn of [2, 3, 4, 7]) assert.equal(mtd.sept.walk(gfn, 0).entry.state, 'MAPPED');
    assert.equal(mtd.sept.walk(8, 0).entry.state, 'FREE');
    // Pre-fault before finalize is refused, on a TD like on every VM without pre_fault_allowed.
    assert.equal(c.h.kvmPreFaultMemory(td.vcpu, 0x9000n, 0x1000n, 0n).errno, 'EOPNOTSUPP');
  });

  test('a TD boot: T1, T2 and T3 are the MRTD of the TDCS after FINALIZE', () => {
    const run = (pages: Array<[bigint, Uint8Array, number]>): string => {
      const c = tdxHost();
      const td = new Td(c);
      // The memslots first: the trace contract's code page (GPA 0xFFFFF000, made with the first
      // vCPU) then finds the GPA taken and stays out.
      td.privateSlot(0n, 0n, 0x10000n);
      td.privateSlot(1n, 0xffff0000n, 0x10000n);
      td.boot();
      for (const [gpa, bytes, flags] of pages)
        ok(td.initMemRegion(sourcePage(c, bytes), gpa, 1n, flags).r);
      ok(td.finalize().r);
      return hex(tdxTdMrtd(c.h, vmOf(c, td.vm)));
    };
    const zero = new Uint8Array(4096);
    const pattern = Uint8Array.from({ length: 4096 }, (_, i) => i & 0xff);
    assert.equal(run([[0n, zero, 0]]), T1);
    assert.equal(run([[0n, zero, 1]]), T2);
    assert.equal(
      run([
        [0xffffe000n, pattern, 1],
        [0xfffff000n, zero, 1],
      ]),
      T3,
    );
    // The page contents are the source's, in the private frame.
    const c = tdxHost();
    const td = new Td(c);
    td.boot();
    td.privateSlot(0n, 0n, 0x10000n);
    ok(td.initMemRegion(sourcePage(c, pattern), 0x1000n, 1n).r);
    const vm = vmOf(c, td.vm);
    const pfn = toKvmTdx(vm).leaves.get(1)!;
    assert.equal(mod(c).pamt.get(pfn).pt, PT.REG);
    const page = new Uint8Array(4096);
    c.h.frames.read(pfn, 0, page);
    assert.deepEqual(page, pattern);
    assert.equal(vm.stage2[0]!.get(asGfn(1))?.private, true);
  });

  test('FINALIZE refused while a premapped leaf waits for PAGE.ADD; its zap drops the count', () => {
    const c = tdxHost();
    const td = new Td(c);
    td.boot();
    td.privateSlot(0n, 0n, 0x10000n);
    const vm = vmOf(c, td.vm);
    // A private fault before finalize (what KVM_TDX_INIT_MEM_REGION's kvm_tdp_map_page() does
    // before its PAGE.ADD) leaves the leaf premapped.
    assert.equal(typeof kvmMmuDoPageFault(c.h, vm, asGfn(5), false, true), 'number');
    const t = toKvmTdx(vm);
    assert.equal(t.nrPremapped, 1);
    const f = td.finalize();
    fails(f.r, 'EINVAL', 'nr_premapped != 0');
    assert.equal(f.hwError, 0n, 'no SEAMCALL');
    // INIT_MEM_REGION of that GPA: the fault prepared the guest_memfd folio (zeroed, up to date),
    // so kvm_gmem_populate() refuses it: -EEXIST, and the leaf stays premapped.
    const src = sourcePage(c, new Uint8Array(4096));
    const x = td.initMemRegion(src, 0x5000n, 1n);
    fails(x.r, 'EEXIST', 'INIT_MEM_REGION of a faulted-in GPA');
    assert.deepEqual(x.region, [src, 0x5000n, 1n]);
    assert.equal(t.nrPremapped, 1);
    ok(td.initMemRegion(src, 0x4000n, 1n).r, 'another page');
    // The memslot goes: RANGE.BLOCK finds the premapped entry FREE without RWX, which
    // tdx_is_sept_zap_err_due_to_premap() takes as a premap: the count drops.
    ok(setRegion(c, td.vm, { slot: 0n, size: 0n }), 'memslot delete');
    assert.equal(t.nrPremapped, 0);
    assert.equal(vmOf(c, td.vm).vmBugged, false);
    // The added page at 4 was removed too (INITIALIZED: no BLOCK/TRACK needed, KVM blocks anyway).
    const mtd = mod(c).td(t.tdr!)!;
    assert.equal(mtd.sept.walk(4, 0).entry.state, 'FREE');
    assert.equal(mtd.sept.walk(5, 0).entry.state, 'FREE');
    ok(td.finalize().r);
  });
});

describe('after finalize: pre-fault (PAGE.AUG) and private zaps', () => {
  test('pre-fault AUGs a PENDING page; an alias is EINVAL; zaps go BLOCK, TRACK, REMOVE', () => {
    const c = tdxHost();
    const td = new Td(c);
    td.boot();
    const gmem = td.privateSlot(0n, 0n, 0x10000n);
    ok(td.initMemRegion(sourcePage(c, new Uint8Array(4096)), 0n, 1n).r);
    ok(td.finalize().r);
    const vm = vmOf(c, td.vm);
    const t = toKvmTdx(vm);
    const m = mod(c);
    const mtd = m.td(t.tdr!)!;
    const pf = c.h.kvmPreFaultMemory(td.vcpu, 0x2000n, 0x2000n, 0n);
    assert.equal(pf.errno, undefined);
    assert.deepEqual(pf.remaining, { gpa: 0x4000n, size: 0n });
    assert.equal(mtd.sept.walk(2, 0).entry.state, 'PENDING');
    assert.equal(mtd.sept.walk(3, 0).entry.state, 'PENDING');
    assert.equal(
      c.h.kvmPreFaultMemory(td.vcpu, (1n << 47n) | 0x5000n, 0x1000n, 0n).errno,
      'EINVAL',
    );
    // Shared by attributes: the private SPTEs of the range go (BLOCK, TRACK, REMOVE, WBINVD).
    const pfn = t.leaves.get(2)!;
    const epoch = mtd.epoch;
    ok(
      c.h.kvmSetMemoryAttributes(td.vm, {
        address: 0x2000n,
        size: 0x1000n,
        attributes: 0n,
        flags: 0n,
      }),
    );
    assert.equal(mtd.sept.walk(2, 0).entry.state, 'FREE');
    assert.equal(m.pamt.get(pfn).pt, PT.NDA);
    assert.equal(mtd.epoch, epoch + 1, 'TDH.MEM.TRACK');
    assert.equal(t.leaves.has(2), false);
    // A punched hole zaps the private SPTEs of the punched pages.
    const pfn0 = t.leaves.get(0)!;
    ok(c.h.fallocate(gmem, 3, 0n, 0x1000n), 'punch');
    assert.equal(mtd.sept.walk(0, 0).entry.state, 'FREE');
    assert.equal(m.pamt.get(pfn0).pt, PT.NDA);
    assert.equal(vmOf(c, td.vm).vmBugged, false);
    // KVM_RUN of the TD vCPU (tdx_guest.test.ts has the guest side): an empty program halts.
    assert.deepEqual(c.h.kvmRun(td.vcpu, []).exits, [{ reason: 'HLT' }]);
  });

  test('teardown: every page back to the host, the HKID free for the next TD', () => {
    const c = tdxHost();
    const before = c.h.frames.allocated;
    const td = new Td(c);
    td.boot();
    const gmem = td.privateSlot(0n, 0n, 0x10000n);
    ok(td.initMemRegion(sourcePage(c, new Uint8Array(2 * 4096)), 0n, 2n).r);
    ok(td.finalize().r);
    assert.equal(c.h.kvmPreFaultMemory(td.vcpu, 0x4000n, 0x1000n, 0n).errno, undefined);
    const m = mod(c);
    assert.equal(m.allTds().length, 1);
    for (const fd of [td.vcpu, td.vm, gmem]) ok(c.h.close(fd));
    assert.equal(m.allTds().length, 0, 'the TDR was reclaimed');
    assert.deepEqual(m.checkConsistency(), []);
    // Every page KVM gave the module came back (memory accounting: no leak, no double free).
    assert.deepEqual(new InvariantChecker(c.h, undefined, { incremental: false }).check(), []);
    // Only the VMM's own mappings (parameters, memslot, sources) are still allocated.
    const td2 = new Td(c);
    ok(td2.initVm().r);
    assert.equal(toKvmTdx(vmOf(c, td2.vm)).hkid, 32, 'the HKID was freed');
    assert.ok(c.h.frames.allocated >= before);
  });
});
