/**
 * AMD SEV-SNP in the model: the `linux-6.18-snp` profile (VM types, capabilities, the per-host
 * platform), the RMP (every RMPUPDATE / PSMASH transition and failure, the direct-map split, the
 * host-access check), the SNP firmware's guest context (SNP_LAUNCH_START/ACTIVATE/LAUNCH_UPDATE/
 * LAUNCH_FINISH, PAGE_RECLAIM: checks, effects, the launch digest).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Host } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { NO_PLATFORM } from '../../src/core/platform/platform.js';
import { SevSnpPlatform } from '../../src/core/platform/sev_snp/platform.js';
import {
  RMP_HYPERVISOR,
  RMP_RET,
  Rmp,
  type RmpEntry,
} from '../../src/core/platform/sev_snp/rmp.js';
import { asGfn, asPfn, type Pfn } from '../../src/core/base/units.js';
import { FrameStore } from '../../src/core/base/frames.js';
import {
  SEV_RET,
  snpCpuidCorrect,
  snpSecretsPage,
} from '../../src/core/platform/sev_snp/firmware.js';
import { SNP_PAGE_TYPE, SnpLaunchDigest } from '../../src/core/platform/sev_snp/launch_digest.js';
import {
  DEFAULT_VM,
  SW_PROTECTED_VM,
  createGmem,
  createVm,
  fails,
  mmapAnon,
  ok,
  setRegion,
  vmOf,
  vcpuOf,
  createVcpu,
  MEM_GUEST_MEMFD,
  type Ctx,
} from './helpers.js';
import type { Result } from '../../src/core/base/result.js';
import type { KernelCtx } from '../../src/core/ctx.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { NotModelled } from '../../src/core/base/not_modelled.js';
import { NO_MUTANTS } from '../../src/core/base/mutants.js';
import {
  sevGmemInvalidate,
  sevGmemMaxMappingLevel,
  snpDefaultVmsa,
  snpGuestContext,
} from '../../src/core/arch/x86/svm/sev_snp.js';
import { kvmMmuFaultIsPrivate } from '../../src/core/arch/x86/mmu.js';

const SNP = getProfile('linux-6.18-snp')!;
const SEV_VM = 2n;
const SEV_ES_VM = 3n;
const SNP_VM = 4n;

function snpHost(): Ctx {
  const h = new Host(SNP, { parts: ALL_PARTS });
  return { h, kvm: h.openDevKvm() };
}

describe('profile linux-6.18-snp', () => {
  test('an AMD host with NPT, the five VM types and the SEV-SNP platform', () => {
    assert.equal(SNP.parts.vendor, 'kvm_amd');
    assert.equal(SNP.parts.platform, 'sev-snp');
    assert.equal(SNP.tdpEnabled, true);
    assert.deepEqual([...SNP.vmTypes.keys()], [0n, 1n, 2n, 3n, 4n]);
    assert.deepEqual(
      [...SNP.vmTypes.values()].map((t) => t.name),
      ['DEFAULT', 'SW_PROTECTED', 'SEV', 'SEV_ES', 'SNP'],
    );
    const snp = SNP.vmTypes.get(SNP_VM)!;
    assert.equal(snp.hasPrivateMem, true);
    assert.equal(snp.hasProtectedState, true);
    assert.equal(snp.preFaultAllowedAtCreate, false);
    assert.equal(snp.privateFaultSource, 'access');
    assert.equal(snp.gmemFlags, 1n, 'MMAP only');
    assert.equal(snp.memAttributes, 8n);
    assert.equal(snp.nrAddressSpaces, 1);
    const es = SNP.vmTypes.get(SEV_ES_VM)!;
    assert.equal(es.hasPrivateMem, false);
    assert.equal(es.hasProtectedState, true);
    assert.equal(es.preFaultAllowedAtCreate, true);
    assert.equal(es.gmemFlags, 3n);
    assert.equal(es.memAttributes, 0n);
    const sev = SNP.vmTypes.get(SEV_VM)!;
    assert.equal(sev.hasProtectedState, false);
    assert.equal(sev.nrAddressSpaces, 2);
    // The other profiles keep no platform.
    for (const n of ['linux-6.18', 'linux-6.18-pvm', 'linux-6.18-pvm-nogmem'])
      assert.equal(getProfile(n)!.parts.platform, 'none', n);
  });

  test('capabilities on /dev/kvm and per VM type', () => {
    const c = snpHost();
    assert.equal(ok(c.h.kvmCheckExtension(c.kvm, BigInt(KVM_CAP.KVM_CAP_VM_TYPES))), 0x1fn);
    const cap = (vm: number, id: number): bigint => ok(c.h.kvmCheckExtension(vm, BigInt(id)));
    const vms = [DEFAULT_VM, SW_PROTECTED_VM, SEV_VM, SEV_ES_VM, SNP_VM].map((t) => createVm(c, t));
    assert.deepEqual(
      vms.map((v) => cap(v, KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS)),
      [3n, 1n, 3n, 3n, 1n],
    );
    assert.deepEqual(
      vms.map((v) => cap(v, KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES)),
      [0n, 8n, 0n, 0n, 8n],
    );
    assert.deepEqual(
      vms.map((v) => cap(v, KVM_CAP.KVM_CAP_READONLY_MEM)),
      [1n, 1n, 1n, 0n, 0n],
    );
    assert.deepEqual(
      vms.map((v) => cap(v, KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE)),
      [2n, 1n, 2n, 2n, 1n],
    );
    assert.deepEqual(
      vms.map((v) => vmOf(c, v).preFaultAllowed),
      [true, true, true, true, false],
    );
    fails(c.h.kvmCreateVm(c.kvm, 5n), 'EINVAL', 'TDX on an AMD host');
  });

  test('no READONLY memslots for VMs with protected state', () => {
    const c = snpHost();
    for (const [t, ro] of [
      [SEV_VM, true],
      [SEV_ES_VM, false],
      [SNP_VM, false],
    ] as const) {
      const vm = createVm(c, t);
      const r = setRegion(c, vm, { flags: 2n, size: 0x1000n, uaddr: mmapAnon(c, 0x1000n) });
      if (ro) ok(r);
      else fails(r, 'EINVAL', `type ${t}`);
    }
  });

  test('each host gets its own platform; other profiles share NO_PLATFORM', () => {
    const a = new Host(SNP, { parts: ALL_PARTS });
    const b = new Host(SNP, { parts: ALL_PARTS });
    assert.ok(a.platform instanceof SevSnpPlatform);
    assert.notEqual(a.platform, b.platform);
    assert.equal(new Host(getProfile('linux-6.18')!, { parts: ALL_PARTS }).platform, NO_PLATFORM);
  });

  test('an SNP VM takes guest_memfd without INIT_SHARED', () => {
    const c = snpHost();
    const vm = createVm(c, SNP_VM);
    createGmem(c, vm, 0x4000n, 1n);
    fails(c.h.kvmCreateGuestMemfd(vm, 0x4000n, 3n), 'EINVAL');
  });
});

const p = asPfn;
function entry(e: Partial<RmpEntry>): RmpEntry {
  return { ...RMP_HYPERVISOR, ...e };
}

describe('RMP', () => {
  test('rmp_make_private / rmp_make_shared at 4K', () => {
    const r = new Rmp();
    assert.deepEqual(r.lookup(p(5)), RMP_HYPERVISOR);
    assert.equal(r.makePrivate(p(5), 0x7000n, '4K', 3, true), RMP_RET.SUCCESS);
    assert.deepEqual(
      r.lookup(p(5)),
      entry({ assigned: true, immutable: true, gpa: 0x7000n, asid: 3 }),
    );
    assert.deepEqual(r.lookup(p(4)), RMP_HYPERVISOR);
    assert.equal(r.makeShared(p(5), '4K'), RMP_RET.FAIL_PERMISSION, 'immutable');
    r.setFlags(p(5), { immutable: false, validated: true, vmsa: true });
    assert.deepEqual(
      r.lookup(p(5)),
      entry({ assigned: true, gpa: 0x7000n, asid: 3, validated: true, vmsa: true }),
    );
    // RMPUPDATE clears validated and VMSA whatever it writes.
    assert.equal(r.makePrivate(p(5), 0x8000n, '4K', 3, false), RMP_RET.SUCCESS);
    assert.deepEqual(r.lookup(p(5)), entry({ assigned: true, gpa: 0x8000n, asid: 3 }));
    assert.equal(r.makeShared(p(5), '4K'), RMP_RET.SUCCESS);
    assert.deepEqual(r.lookup(p(5)), RMP_HYPERVISOR);
    assert.equal(r.runs, 0);
  });

  test('consecutive frames at consecutive GPAs are one range; lookups give each frame its GPA', () => {
    const r = new Rmp();
    for (let i = 0; i < 16; i++)
      r.makePrivate(p(100 + i), BigInt(0x10000 + i * 0x1000), '4K', 1, false);
    assert.equal(r.runs, 1);
    assert.equal(r.lookup(p(107)).gpa, 0x17000n);
    r.makeShared(p(104), '4K');
    assert.equal(r.runs, 2);
  });

  test('2M entries: alignment, overlap with 4K entries, lookups inside', () => {
    const r = new Rmp();
    assert.equal(r.makePrivate(p(513), 0x200000n, '2M', 1, false), RMP_RET.FAIL_INPUT);
    assert.equal(r.makePrivate(p(512 + 7), 0x1000n, '4K', 1, false), RMP_RET.SUCCESS);
    assert.equal(r.makePrivate(p(512), 0x200000n, '2M', 1, false), RMP_RET.FAIL_OVERLAP);
    assert.equal(r.makeShared(p(512 + 7), '4K'), RMP_RET.SUCCESS);
    assert.equal(r.makePrivate(p(512), 0x200000n, '2M', 1, false), RMP_RET.SUCCESS);
    assert.deepEqual(
      r.lookup(p(512 + 9)),
      entry({ assigned: true, size: '2M', gpa: 0x209000n, asid: 1 }),
    );
    // A 4K write inside a 2M entry must wait for PSMASH.
    assert.equal(r.makeShared(p(512 + 9), '4K'), RMP_RET.FAIL_OVERLAP);
    assert.equal(r.makePrivate(p(512 + 9), 0x9000n, '4K', 1, false), RMP_RET.FAIL_OVERLAP);
    // 2M → 2M is fine; 2M shared clears the range.
    assert.equal(r.makeShared(p(512), '2M'), RMP_RET.SUCCESS);
    assert.equal(r.anyAssigned(512, 1024), false);
  });

  test('an immutable entry refuses a 2M update over it', () => {
    const r = new Rmp();
    r.makePrivate(p(1024 + 3), 0x3000n, '4K', 1, true);
    assert.equal(r.makePrivate(p(1024), 0x0n, '2M', 1, false), RMP_RET.FAIL_PERMISSION);
  });

  test('PSMASH splits a 2M entry into 512 4K entries with the same state and per-page GPAs', () => {
    const r = new Rmp();
    assert.equal(r.psmash(p(513)), RMP_RET.FAIL_INPUT);
    assert.equal(r.psmash(p(512)), RMP_RET.FAIL_INUSE, 'no 2M entry');
    r.makePrivate(p(512), 0x400000n, '2M', 7, false);
    r.setFlags(p(512 + 100), { validated: true });
    assert.equal(r.lookup(p(512)).validated, true, 'a 2M entry is validated whole');
    assert.equal(r.psmash(p(512)), RMP_RET.SUCCESS);
    assert.deepEqual(
      r.lookup(p(512 + 300)),
      entry({ assigned: true, gpa: 0x400000n + 300n * 0x1000n, asid: 7, validated: true }),
    );
    assert.equal(r.psmash(p(512)), RMP_RET.FAIL_INUSE, 'already 4K');
    // Now a single 4K frame may go back to the hypervisor.
    assert.equal(r.makeShared(p(512 + 300), '4K'), RMP_RET.SUCCESS);
    assert.equal(r.lookup(p(512 + 301)).assigned, true);
  });

  test('the direct map is split by 4K updates, and host writes fault as the RMP says', () => {
    const r = new Rmp();
    assert.equal(r.directMapSplit(p(1030)), false);
    r.makePrivate(p(1030), 0x1000n, '4K', 1, false);
    assert.equal(r.directMapSplit(p(1030)), true);
    assert.equal(r.directMapSplit(p(1024 + 511)), true, 'the whole 2M region');
    assert.equal(r.hostWriteFaults(p(1030), false), true);
    assert.equal(r.hostWriteFaults(p(1031), false), false);
    assert.equal(r.hostWriteFaults(p(1031), true), false, 'split: 4K direct-map mapping');
    // A 2M update does not split; a write through the 2M mapping to a shared neighbour faults.
    r.makePrivate(p(2048), 0x200000n, '2M', 1, false);
    r.psmash(p(2048));
    r.makeShared(p(2048 + 1), '4K');
    assert.equal(r.directMapSplit(p(2049)), true, 'the 4K update split it');
    const r2 = new Rmp();
    r2.makePrivate(p(2048), 0x200000n, '2M', 1, false);
    assert.equal(r2.directMapSplit(p(2048)), false);
    assert.equal(r2.hostWriteFaults(p(2048 + 5), true), true);
  });

  test('the platform: host writes to assigned frames are SIGBUS, reads are not blocked', () => {
    const plat = new SevSnpPlatform();
    assert.equal(plat.guardsHostAccess, false);
    plat.rmp.makePrivate(p(9), 0x1000n, '4K', 1, false);
    assert.equal(plat.guardsHostAccess, true);
    assert.equal(plat.hostAccess(p(9), true, 'vmm'), 'SIGBUS');
    assert.equal(plat.hostAccess(p(9), false, 'vmm'), undefined);
    assert.equal(plat.hostAccess(p(10), true, 'kvm-uaccess'), undefined);
  });
});

describe('SNP firmware', () => {
  const PAGE = 4096;
  function fw(): { plat: SevSnpPlatform; frames: FrameStore; h: number } {
    const plat = new SevSnpPlatform();
    const frames = new FrameStore();
    return { plat, frames, h: plat.firmware.gctxCreate() };
  }
  const POLICY = 0x30000n;

  test('SNP_LAUNCH_START: policy checks, then LAUNCH', () => {
    const { plat, h } = fw();
    const f = plat.firmware;
    const g = new Uint8Array(16);
    assert.equal(f.launchStart(99, POLICY, g), SEV_RET.INVALID_GUEST);
    assert.equal(f.launchStart(h, 0x10000n, g), SEV_RET.INVALID_PARAM, 'no MBO bit');
    assert.equal(f.launchStart(h, POLICY | 0x0200n, g), SEV_RET.POLICY_FAILURE, 'ABI 2.0');
    assert.equal(f.launchStart(h, POLICY | 0x0138n, g), SEV_RET.POLICY_FAILURE, 'ABI 1.56');
    assert.equal(f.launchStart(h, 0x20000n, g), SEV_RET.POLICY_FAILURE, 'SMT clear, SMT on');
    assert.equal(f.context(h)!.state, 'INIT');
    assert.equal(f.launchStart(h, POLICY | 0x0137n, g), SEV_RET.SUCCESS, 'ABI 1.55');
    assert.equal(f.context(h)!.state, 'LAUNCH');
    assert.equal(f.launchStart(h, POLICY, g), SEV_RET.INVALID_GUEST_STATE);
  });

  test('SNP_ACTIVATE binds one ASID per context', () => {
    const { plat, h } = fw();
    const f = plat.firmware;
    const h2 = f.gctxCreate();
    assert.equal(f.activate(h, 0), SEV_RET.INVALID_ASID);
    assert.equal(f.activate(h, 1), SEV_RET.SUCCESS);
    assert.equal(f.activate(h2, 1), SEV_RET.ASID_OWNED);
    assert.equal(f.activate(h2, 2), SEV_RET.SUCCESS);
    assert.equal(f.decommission(h), SEV_RET.SUCCESS);
    assert.equal(f.activate(f.gctxCreate(), 1), SEV_RET.SUCCESS, 'free again');
  });

  test('SNP_LAUNCH_UPDATE: per-page checks in order', () => {
    const { plat, frames, h } = fw();
    const f = plat.firmware;
    const pfn = frames.allocOne();
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', 1), SEV_RET.INVALID_GUEST_STATE);
    f.launchStart(h, POLICY, new Uint8Array(16));
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', 1), SEV_RET.INACTIVE);
    f.activate(h, 5);
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', 7), SEV_RET.INVALID_PARAM);
    assert.equal(f.launchUpdate(frames, h, pfn, '2M', 1), SEV_RET.INVALID_PAGE_SIZE);
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', 1), SEV_RET.INVALID_PAGE_STATE, 'shared');
    plat.rmp.makePrivate(pfn, 0x1000n, '4K', 5, false);
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', 1), SEV_RET.INVALID_PAGE_STATE, 'mutable');
    plat.rmp.makeShared(pfn, '4K');
    plat.rmp.makePrivate(pfn, 0x1000n, '4K', 6, true);
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', 1), SEV_RET.INVALID_PAGE_OWNER);
    assert.equal(f.context(h)!.measured.length, 0);
  });

  test('SNP_LAUNCH_UPDATE effects and the digest (vector S-A, then a chain)', () => {
    const { plat, frames, h } = fw();
    const f = plat.firmware;
    f.launchStart(h, POLICY, new Uint8Array(16).fill(0xab));
    f.activate(h, 5);
    const pages = frames.alloc(6)[0]!;
    const pfn = (i: number): Pfn => asPfn(pages.base + i);
    const pre = (i: number, gpa: bigint): void => {
      assert.equal(plat.rmp.makePrivate(pfn(i), gpa, '4K', 5, true), RMP_RET.SUCCESS);
    };
    frames.zero(pfn(0), 1);
    pre(0, 0n);
    assert.equal(f.launchUpdate(frames, h, pfn(0), '4K', SNP_PAGE_TYPE.NORMAL), SEV_RET.SUCCESS);
    assert.equal(
      f.context(h)!.digest.hex(),
      '9d13634b6014bb21cf059b2dc694e7bff01a8a7137041100cd2b695f3d10fb687267b97808b27f8f471d943bc6f53a20',
    );
    assert.deepEqual(
      plat.rmp.lookup(pfn(0)),
      entry({ assigned: true, gpa: 0n, asid: 5, validated: true }),
    );
    // ZERO zeroes the page whatever it held.
    frames.write(pfn(1), 0, new Uint8Array([1, 2, 3]));
    pre(1, 0x1000n);
    assert.equal(f.launchUpdate(frames, h, pfn(1), '4K', SNP_PAGE_TYPE.ZERO), SEV_RET.SUCCESS);
    assert.equal(frames.hasData(pfn(1)), false);
    // SECRETS: the firmware's layout.
    pre(2, 0x3000n);
    assert.equal(f.launchUpdate(frames, h, pfn(2), '4K', SNP_PAGE_TYPE.SECRETS), SEV_RET.SUCCESS);
    const sec = new Uint8Array(PAGE);
    frames.read(pfn(2), 0, sec);
    assert.deepEqual([...sec.subarray(0, 4)], [3, 0, 0, 0]);
    assert.deepEqual([...sec.subarray(0x10, 0x20)], new Array(16).fill(0xab));
    assert.deepEqual(sec, snpSecretsPage(f.context(h)!));
    // CPUID: a valid (empty) table passes.
    frames.zero(pfn(3), 1);
    pre(3, 0x4000n);
    assert.equal(f.launchUpdate(frames, h, pfn(3), '4K', SNP_PAGE_TYPE.CPUID), SEV_RET.SUCCESS);
    // VMSA: the VMSA bit.
    frames.zero(pfn(4), 1);
    pre(4, 0xfffffffff000n);
    assert.equal(f.launchUpdate(frames, h, pfn(4), '4K', SNP_PAGE_TYPE.VMSA), SEV_RET.SUCCESS);
    assert.equal(plat.rmp.lookup(pfn(4)).vmsa, true);
    // The same pages fed to SnpLaunchDigest directly.
    const d = new SnpLaunchDigest();
    const zero = new Uint8Array(PAGE);
    d.update(SNP_PAGE_TYPE.NORMAL, 0n, zero);
    d.update(SNP_PAGE_TYPE.ZERO, 0x1000n, undefined);
    d.update(SNP_PAGE_TYPE.SECRETS, 0x3000n, undefined);
    d.update(SNP_PAGE_TYPE.CPUID, 0x4000n, undefined);
    d.update(SNP_PAGE_TYPE.VMSA, 0xfffffffff000n, zero);
    assert.equal(f.context(h)!.digest.hex(), d.hex());
    assert.deepEqual(
      f.context(h)!.measured.map((m) => m.type),
      [1, 3, 5, 6, 2],
    );
    assert.equal(f.launchFinish(h, new Uint8Array(32)), SEV_RET.SUCCESS);
    assert.equal(f.context(h)!.state, 'RUNNING');
    pre(5, 0x5000n);
    assert.equal(
      f.launchUpdate(frames, h, pfn(5), '4K', SNP_PAGE_TYPE.NORMAL),
      SEV_RET.INVALID_GUEST_STATE,
    );
    assert.equal(f.launchFinish(h, new Uint8Array(32)), SEV_RET.INVALID_GUEST_STATE);
  });

  test('CPUID: a bad table is INVALID_PARAM, corrected in the page, left Pre-Guest; reclaim', () => {
    const { plat, frames, h } = fw();
    const f = plat.firmware;
    f.launchStart(h, POLICY, new Uint8Array(16));
    f.activate(h, 5);
    const pfn = frames.allocOne();
    const table = new Uint8Array(PAGE);
    table[0] = 2; // count
    table[16 + 48 + 40] = 0xee; // entry 1's reserved field
    table[8] = 1; // header reserved2
    frames.write(pfn, 0, table);
    plat.rmp.makePrivate(pfn, 0x4000n, '4K', 5, true);
    const before = f.context(h)!.digest.hex();
    assert.equal(f.launchUpdate(frames, h, pfn, '4K', SNP_PAGE_TYPE.CPUID), SEV_RET.INVALID_PARAM);
    assert.equal(f.context(h)!.digest.hex(), before, 'not measured');
    const got = new Uint8Array(PAGE);
    frames.read(pfn, 0, got);
    assert.equal(got[16 + 48 + 40], 0);
    assert.equal(got[8], 0);
    assert.equal(got[0], 2);
    assert.deepEqual(
      plat.rmp.lookup(pfn),
      entry({ assigned: true, immutable: true, gpa: 0x4000n, asid: 5 }),
    );
    // count > 64 is clamped.
    const big = new Uint8Array(PAGE);
    big[0] = 65;
    assert.equal(snpCpuidCorrect(big)![0], 64);
    assert.equal(snpCpuidCorrect(new Uint8Array(PAGE)), undefined);
    assert.equal(f.pageReclaim(pfn), SEV_RET.SUCCESS);
    assert.equal(plat.rmp.lookup(pfn).immutable, false);
    assert.equal(plat.rmp.makeShared(pfn, '4K'), RMP_RET.SUCCESS);
    assert.equal(f.pageReclaim(pfn), SEV_RET.INVALID_PAGE_STATE);
  });
});

// ---------------------------------------------------------------------------------------------
// KVM's SNP flow through KVM_MEMORY_ENCRYPT_OP

const ID = {
  INIT: 0,
  ES_INIT: 1,
  LAUNCH_START: 2,
  INIT2: 22,
  START: 100,
  UPDATE: 101,
  FINISH: 102,
};

type Snp = { c: Ctx; vm: number; sev: number; params: bigint; uaddr: bigint };

/** An SNP VM with a 16-page private guest_memfd slot at GPA 0 backed by `uaddr` for shared. */
function snpVm(pages = 16n): Snp {
  const c = snpHost();
  const sev = ok(c.h.openDevSev(), 'open /dev/sev');
  const vm = createVm(c, SNP_VM);
  const size = pages * 4096n;
  const gmem = createGmem(c, vm, size, 0n);
  const uaddr = mmapAnon(c, size);
  ok(setRegion(c, vm, { flags: MEM_GUEST_MEMFD, size, uaddr, gmem }));
  ok(c.h.kvmSetMemoryAttributes(vm, { address: 0n, size, attributes: 8n, flags: 0n }));
  const params = mmapAnon(c, 0x2000n);
  return { c, vm, sev, params, uaddr };
}

/** KVM_MEMORY_ENCRYPT_OP with `struct kvm_sev_cmd` {id, data, error 0, sev_fd}. */
function encOp(
  s: Snp,
  id: number,
  data: Uint8Array | bigint | undefined,
  sevFd = s.sev,
  fd = s.vm,
): { r: Result<undefined>; error: number } {
  let addr = 0n;
  if (data instanceof Uint8Array) {
    addr = s.params;
    assert.ok(s.c.h.poke(addr, data).ok);
  } else if (data !== undefined) addr = data;
  const cmd = new Uint8Array(24);
  const dv = new DataView(cmd.buffer);
  dv.setUint32(0, id, true);
  dv.setBigUint64(8, addr, true);
  dv.setInt32(20, sevFd, true);
  const r = s.c.h.kvmMemoryEncryptOp(fd, { kind: 'buffer', bytes: cmd });
  return { r, error: dv.getUint32(16, true) };
}

const init2 = (features = 0n, flags = 0, ghcb = 0): Uint8Array => {
  const b = new Uint8Array(48);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, features, true);
  dv.setUint32(8, flags, true);
  dv.setUint16(12, ghcb, true);
  return b;
};
const start = (policy = 0x30000n, flags = 0): Uint8Array => {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, policy, true);
  dv.setUint16(24, flags, true);
  return b;
};
const update = (gfn: bigint, uaddr: bigint, len: bigint, type: number, flags = 0): Uint8Array => {
  const b = new Uint8Array(64);
  const dv = new DataView(b.buffer);
  dv.setBigUint64(0, gfn, true);
  dv.setBigUint64(8, uaddr, true);
  dv.setBigUint64(16, len, true);
  b[24] = type;
  dv.setUint16(26, flags, true);
  return b;
};
const finish = (flags = 0, hostData = 0): Uint8Array => {
  const b = new Uint8Array(88);
  new DataView(b.buffer).setUint16(54, flags, true);
  b.fill(hostData, 19, 51);
  return b;
};
/** The kvm_sev_snp_launch_update the kernel wrote back. */
function progress(s: Snp): { gfn: bigint; uaddr: bigint; len: bigint } {
  const b = s.c.h.peek(s.params, 24);
  assert.ok(b.ok);
  const dv = new DataView(b.data!.buffer);
  return {
    gfn: dv.getBigUint64(0, true),
    uaddr: dv.getBigUint64(8, true),
    len: dv.getBigUint64(16, true),
  };
}

describe('KVM SNP flow', () => {
  test('KVM_SEV_INIT2: checks in order, then an SNP guest', () => {
    const s = snpVm();
    fails(encOp(s, ID.INIT, undefined).r, 'EINVAL', 'legacy INIT on an SNP VM');
    fails(encOp(s, ID.ES_INIT, undefined).r, 'EINVAL', 'legacy ES_INIT on an SNP VM');
    fails(encOp(s, ID.INIT2, 0x1000n).r, 'EFAULT', 'unmapped data');
    fails(encOp(s, ID.INIT2, init2(0n, 1)).r, 'EINVAL', 'flags');
    fails(encOp(s, ID.INIT2, init2(1n)).r, 'EINVAL', "SNP_ACTIVE is KVM's to set");
    fails(encOp(s, ID.INIT2, init2(0n, 0, 3)).r, 'EINVAL', 'ghcb_version 3');
    ok(encOp(s, ID.INIT2, init2(0x20n, 0, 2)).r);
    fails(encOp(s, ID.INIT2, init2()).r, 'EPERM', 'twice: an SNP guest takes only SNP commands');
    fails(encOp(s, ID.LAUNCH_START, undefined).r, 'EPERM', 'legacy command on an SNP guest');
    // vCPUs first: EINVAL.
    const s2 = snpVm();
    createVcpu(s2.c, s2.vm);
    fails(encOp(s2, ID.INIT2, init2()).r, 'EINVAL', 'created_vcpus');
    // DEFAULT and SW_PROTECTED VMs: INIT2 is EINVAL (!need_init).
    const d = createVm(s.c, DEFAULT_VM);
    fails(encOp(s, ID.INIT2, init2(), s.sev, d).r, 'EINVAL');
    // SEV: no vmsa_features, no ghcb_version.
    const sevVm = createVm(s.c, SEV_VM);
    fails(encOp(s, ID.INIT2, init2(0x20n), s.sev, sevVm).r, 'EINVAL');
    fails(encOp(s, ID.INIT2, init2(0n, 0, 1), s.sev, sevVm).r, 'EINVAL');
    ok(encOp(s, ID.INIT2, init2(), s.sev, sevVm).r);
    // SNP commands on an SEV guest answer as on any non-SNP VM.
    fails(encOp(s, ID.START, start(), s.sev, sevVm).r, 'ENOTTY');
    fails(encOp(s, ID.UPDATE, update(0n, 0n, 0n, 1), s.sev, sevVm).r, 'EINVAL');
    fails(encOp(s, ID.FINISH, finish(), s.sev, sevVm).r, 'ENOTTY');
  });

  test('KVM_SEV_SNP_LAUNCH_START: policy checks in order, /dev/sev, one context', () => {
    const s = snpVm();
    fails(encOp(s, ID.START, start()).r, 'ENOTTY', 'before INIT2');
    ok(encOp(s, ID.INIT2, init2()).r);
    fails(encOp(s, ID.START, 0x1000n).r, 'EFAULT');
    fails(encOp(s, ID.START, start(0x30000n, 1)).r, 'EINVAL', 'flags');
    fails(encOp(s, ID.START, start(0x30000n | (1n << 18n))).r, 'EINVAL', 'MIGRATE_MA not valid');
    fails(encOp(s, ID.START, start(0x10000n)).r, 'EINVAL', 'no RSVD_MBO');
    fails(encOp(s, ID.START, start(), s.vm).r, 'ENOTTY', 'sev_fd is not /dev/sev');
    const fw = encOp(s, ID.START, start(0x20000n));
    fails(fw.r, 'EIO', 'firmware: SMT clear');
    assert.equal(fw.error, SEV_RET.POLICY_FAILURE);
    ok(encOp(s, ID.START, start()).r);
    fails(encOp(s, ID.START, start()).r, 'EINVAL', 'a second context');
  });

  test('LAUNCH_UPDATE, vCPUs and LAUNCH_FINISH end to end: the digest equals SnpLaunchDigest fed the same pages', () => {
    const s = snpVm();
    const h = s.c.h;
    fails(encOp(s, ID.UPDATE, update(0n, s.uaddr, 0x1000n, 1)).r, 'EINVAL', 'no context');
    fails(encOp(s, ID.FINISH, finish()).r, 'ENOTTY', 'not an SNP guest yet');
    ok(encOp(s, ID.INIT2, init2(0x20n)).r);
    fails(encOp(s, ID.FINISH, finish()).r, 'EINVAL', 'no context');
    ok(encOp(s, ID.START, start()).r);
    // Source pages in the VMM: page 0 pattern, page 1 zeros.
    const src = mmapAnon(s.c, 0x4000n);
    const pat = new Uint8Array(4096).map((_, i) => i & 0xff);
    assert.ok(h.poke(src, pat).ok);
    // Checks before populate.
    fails(encOp(s, ID.UPDATE, update(0n, src, 0x800n, 1)).r, 'EINVAL', 'len not aligned');
    fails(encOp(s, ID.UPDATE, update(0n, src, 0x1000n, 2)).r, 'EINVAL', 'VMSA type');
    fails(encOp(s, ID.UPDATE, update(0n, src, 0x1000n, 1, 1)).r, 'EINVAL', 'flags');
    fails(encOp(s, ID.UPDATE, update(100n, src, 0x1000n, 1)).r, 'EINVAL', 'no memslot');
    fails(encOp(s, ID.UPDATE, update(0n, src, 0n, 1)).r, 'EIO', 'len 0: populate EINVAL');
    // NORMAL x2 at gfn 0..1.
    ok(encOp(s, ID.UPDATE, update(0n, src, 0x2000n, 1)).r);
    assert.deepEqual(progress(s), { gfn: 2n, uaddr: src + 0x2000n, len: 0n });
    // Again: the folios are prepared: EEXIST inside populate, EIO with error 0.
    const again = encOp(s, ID.UPDATE, update(0n, src, 0x1000n, 1));
    fails(again.r, 'EIO');
    assert.equal(again.error, 0);
    // ZERO at gfn 2 (uaddr ignored and not advanced), SECRETS at 3, CPUID at 4.
    ok(encOp(s, ID.UPDATE, update(2n, 0xdeadn, 0x1000n, 3)).r);
    assert.deepEqual(progress(s), { gfn: 3n, uaddr: 0xdeadn, len: 0n });
    ok(encOp(s, ID.UPDATE, update(3n, src + 0x1000n, 0x1000n, 5)).r);
    ok(encOp(s, ID.UPDATE, update(4n, src + 0x1000n, 0x1000n, 6)).r);
    // Attributes shared at gfn 6: populate stops there; gfn 5 done, progress written back.
    ok(
      h.kvmSetMemoryAttributes(s.vm, {
        address: 0x6000n,
        size: 0x1000n,
        attributes: 0n,
        flags: 0n,
      }),
    );
    ok(encOp(s, ID.UPDATE, update(5n, src + 0x1000n, 0x2000n, 4)).r);
    assert.deepEqual(progress(s), { gfn: 6n, uaddr: src + 0x2000n, len: 0x1000n });
    // The RMP after the updates: validated, not immutable, the guest's ASID and GPA.
    const vmo = vmOf(s.c, s.vm);
    const gf = [...vmo.gmemFiles][0]!;
    const rmp = (h.platform as SevSnpPlatform).rmp;
    for (let i = 0; i < 6; i++) {
      const e = rmp.lookup(gf.pages.get(i)!.base);
      assert.equal(e.assigned && e.validated && !e.immutable, true, `gfn ${i}`);
      assert.equal(e.gpa, BigInt(i) * 0x1000n);
    }
    // __kvm_gmem_get_pfn() allocated gfn 6's folio before the attribute check: not prepared.
    assert.equal(gf.pages.get(6)!.state, 'allocated');
    assert.equal(rmp.lookup(gf.pages.get(6)!.base).assigned, false);
    // vCPUs after INIT2; their VMSAs.
    const v0 = createVcpu(s.c, s.vm, 0n);
    const v1 = createVcpu(s.c, s.vm, 1n);
    const img1 = snpDefaultVmsa();
    img1[0x178] = 0x04; // another RIP for the AP
    ok(h.sevSetVcpuVmsa(v1, img1));
    fails(h.sevSetVcpuVmsa(v1, new Uint8Array(10)), 'EINVAL');
    fails(encOp(s, ID.FINISH, finish(1)).r, 'EINVAL', 'flags');
    fails(encOp(s, ID.FINISH, 0x1000n).r, 'EFAULT');
    assert.equal(vmo.preFaultAllowed, false);
    ok(encOp(s, ID.FINISH, finish(0, 0x5a)).r);
    assert.equal(vmo.preFaultAllowed, true);
    fails(h.sevSetVcpuVmsa(v0, snpDefaultVmsa()), 'EINVAL', 'guest_state_protected');
    // A second LAUNCH_FINISH would write the guest-owned VMSA: the kernel takes an RMP #PF.
    assert.throws(() => encOp(s, ID.FINISH, finish()), NotModelled);
    // The same pages fed to SnpLaunchDigest.
    const d = new SnpLaunchDigest();
    const zero = new Uint8Array(4096);
    d.update(1, 0n, pat);
    d.update(1, 0x1000n, zero);
    d.update(3, 0x2000n, undefined);
    d.update(5, 0x3000n, undefined);
    d.update(6, 0x4000n, undefined);
    d.update(4, 0x5000n, undefined);
    const vmsa = (img: Uint8Array): Uint8Array => {
      const p2 = new Uint8Array(img);
      new DataView(p2.buffer).setBigUint64(0x3b0, 0x21n, true);
      return p2;
    };
    d.update(2, 0xfffffffff000n, vmsa(snpDefaultVmsa()));
    d.update(2, 0xfffffffff000n, vmsa(img1));
    const ctx = snpGuestContext(h, vmo)!;
    assert.equal(Buffer.from(ctx.digest.value()).toString('hex'), d.hex());
    assert.equal(ctx.state, 'RUNNING');
    assert.deepEqual(ctx.hostData, new Uint8Array(32).fill(0x5a));
    // The VMSA frames: private at INITIAL_VMSA_GPA with the VMSA bit.
    const v1pfn = vcpuOf(s.c, v1).pages[2]!;
    assert.deepEqual(
      rmp.lookup(v1pfn),
      entry({ assigned: true, gpa: 0xfffffffff000n, asid: 1, validated: true, vmsa: true }),
    );
    // After finish: updates refused by the firmware, pre-fault allowed.
    const late2 = encOp(s, ID.UPDATE, update(7n, src, 0x1000n, 1));
    fails(late2.r, 'EIO');
    assert.equal(late2.error, SEV_RET.INVALID_GUEST_STATE);
    assert.equal(rmp.lookup(gf.pages.get(7)!.base).assigned, false, 'reclaimed');
  });

  test('a bad CPUID page: EIO, INVALID_PARAM, the corrected table copied back, the page shared again', () => {
    const s = snpVm();
    ok(encOp(s, ID.INIT2, init2()).r);
    ok(encOp(s, ID.START, start()).r);
    const src = mmapAnon(s.c, 0x1000n);
    const table = new Uint8Array(4096);
    table[0] = 1;
    table[16 + 40] = 0x77;
    assert.ok(s.c.h.poke(src, table).ok);
    const r = encOp(s, ID.UPDATE, update(0n, src, 0x1000n, 6));
    fails(r.r, 'EIO');
    assert.equal(r.error, SEV_RET.INVALID_PARAM);
    const back = s.c.h.peek(src, 4096);
    assert.ok(back.ok);
    assert.equal(back.data![16 + 40], 0);
    assert.equal(back.data![0], 1);
    const gf = [...vmOf(s.c, s.vm).gmemFiles][0]!;
    assert.equal(
      (s.c.h.platform as SevSnpPlatform).rmp.lookup(gf.pages.get(0)!.base).assigned,
      false,
    );
    assert.equal(gf.pages.get(0)!.state, 'allocated', 'not prepared');
  });

  test('a bad sev_fd fails LAUNCH_UPDATE with EIO and leaves the page shared', () => {
    const s = snpVm();
    ok(encOp(s, ID.INIT2, init2()).r);
    ok(encOp(s, ID.START, start()).r);
    const r = encOp(s, ID.UPDATE, update(0n, 0n, 0x1000n, 3), 99);
    fails(r.r, 'EIO');
    const gf = [...vmOf(s.c, s.vm).gmemFiles][0]!;
    assert.equal((s.c.h.platform as SevSnpPlatform).rmp.runs, 0);
    assert.equal(gf.pages.get(0)!.state, 'allocated');
  });

  test('punching the guest_memfd returns its frames to the hypervisor; destroying the VM frees everything', () => {
    const s = snpVm(4n);
    const h = s.c.h;
    ok(encOp(s, ID.INIT2, init2()).r);
    ok(encOp(s, ID.START, start()).r);
    ok(encOp(s, ID.UPDATE, update(0n, 0n, 0x4000n, 3)).r);
    createVcpu(s.c, s.vm);
    ok(encOp(s, ID.FINISH, finish()).r);
    const rmp = (h.platform as SevSnpPlatform).rmp;
    assert.equal(rmp.anyAssigned(0, 1 << 20), true);
    const gmemFd = [...h.openFds()].find(([, f]) => f.kind === 'gmem')![0];
    ok(h.fallocate(gmemFd, 3, 0n, 0x2000n));
    const gf = [...vmOf(s.c, s.vm).gmemFiles][0]!;
    assert.equal(rmp.lookup(gf.pages.get(2)!.base).assigned, true);
    for (const [fd, f] of [...h.openFds()])
      if (f.kind !== 'std' && f.kind !== 'kvm') ok(h.close(fd));
    assert.equal(h.vms.size, 0);
    assert.equal(rmp.runs, 0, 'every frame back in the hypervisor state');
  });
});

describe('SNP runtime private faults', () => {
  test('pre-fault only after LAUNCH_FINISH; a private pre-fault makes the frame private at 4K (sev_gmem_prepare)', () => {
    const s = snpVm(8n);
    const h = s.c.h;
    ok(encOp(s, ID.INIT2, init2()).r);
    ok(encOp(s, ID.START, start()).r);
    ok(encOp(s, ID.UPDATE, update(0n, 0n, 0x1000n, 3)).r);
    const v = createVcpu(s.c, s.vm);
    assert.equal(h.kvmPreFaultMemory(v, 0x3000n, 0x1000n, 0n).errno, 'EOPNOTSUPP');
    ok(encOp(s, ID.FINISH, finish()).r);
    assert.equal(h.kvmPreFaultMemory(v, 0x3000n, 0x1000n, 0n).errno, undefined);
    const vmo = vmOf(s.c, s.vm);
    const gf = [...vmo.gmemFiles][0]!;
    const pfn = gf.pages.get(3)!.base;
    assert.equal(gf.pages.get(3)!.state, 'prepared');
    assert.deepEqual(
      (h.platform as SevSnpPlatform).rmp.lookup(pfn),
      entry({ assigned: true, gpa: 0x3000n, asid: 1 }),
      'assigned, not validated, mutable: the guest must PVALIDATE',
    );
    assert.equal(vmo.stage2[0]!.get(3)!.private, true);
    assert.equal(sevGmemMaxMappingLevel(h, vmo, pfn), '4K');
    assert.equal(sevGmemMaxMappingLevel(h, vmo, asPfn(999999)), '4K');
    // The fault path's private bit comes from the access on SNP, from attributes elsewhere.
    assert.equal(kvmMmuFaultIsPrivate(vmo, asGfn(3)), false, 'a shared access');
    assert.equal(kvmMmuFaultIsPrivate(vmo, asGfn(3), true), true, 'C-bit set');
  });
});

describe('sev_gmem_invalidate', () => {
  const kOf = (plat: SevSnpPlatform): KernelCtx =>
    ({ platform: plat, mutants: NO_MUTANTS }) as unknown as KernelCtx;

  test('a whole 2M entry goes back with one 2M update; a partial range PSMASHes first', () => {
    const plat = new SevSnpPlatform();
    const rmp = plat.rmp;
    rmp.makePrivate(p(1024), 0x400000n, '2M', 3, false);
    sevGmemInvalidate(kOf(plat), p(1024), p(1024 + 512));
    assert.equal(rmp.runs, 0);
    assert.equal(rmp.directMapSplit(p(1024)), false, 'a 2M update does not split the direct map');
    rmp.makePrivate(p(1024), 0x400000n, '2M', 3, false);
    sevGmemInvalidate(kOf(plat), p(1024 + 10), p(1024 + 12));
    assert.equal(rmp.lookup(p(1024 + 10)).assigned, false);
    assert.equal(rmp.lookup(p(1024 + 11)).assigned, false);
    assert.deepEqual(
      rmp.lookup(p(1024 + 12)),
      entry({ assigned: true, gpa: 0x40c000n, asid: 3 }),
      'the rest split to 4K, still private',
    );
    // Frames never assigned are skipped; a host without SNP does nothing.
    sevGmemInvalidate(kOf(plat), p(5), p(9));
    sevGmemInvalidate({ platform: NO_PLATFORM } as unknown as KernelCtx, p(5), p(9));
  });
});

describe('SNP launch under the invariant checker', () => {
  test('every invariant holds after every step of a launch, a private pre-fault, a punch and teardown', () => {
    const s = snpVm(8n);
    const h = s.c.h;
    const checker = new InvariantChecker(h, undefined, { incremental: false });
    const step = (what: string): void => assert.deepEqual(checker.check(), [], what);
    step('setup');
    ok(encOp(s, ID.INIT2, init2(0x20n)).r);
    step('INIT2');
    ok(encOp(s, ID.START, start()).r);
    step('LAUNCH_START');
    const src = mmapAnon(s.c, 0x2000n);
    assert.ok(h.poke(src, new Uint8Array(0x2000).fill(7)).ok);
    step('poke');
    ok(encOp(s, ID.UPDATE, update(0n, src, 0x2000n, 1)).r);
    step('LAUNCH_UPDATE NORMAL');
    ok(encOp(s, ID.UPDATE, update(2n, 0n, 0x1000n, 3)).r);
    step('LAUNCH_UPDATE ZERO');
    const v = createVcpu(s.c, s.vm);
    step('vCPU');
    ok(encOp(s, ID.FINISH, finish()).r);
    step('LAUNCH_FINISH');
    assert.equal(h.kvmPreFaultMemory(v, 0x5000n, 0x1000n, 0n).errno, undefined);
    step('pre-fault');
    const gmemFd = [...h.openFds()].find(([, f]) => f.kind === 'gmem')![0];
    ok(h.fallocate(gmemFd, 3, 0n, 0x2000n));
    step('punch');
    for (const [fd, f] of [...h.openFds()])
      if (f.kind !== 'std' && f.kind !== 'kvm') ok(h.close(fd));
    step('teardown');
  });
});
