/**
 * AMD SEV-SNP in the model: the `linux-6.18-snp` profile (VM types, capabilities, the per-host
 * platform), the RMP (every RMPUPDATE / PSMASH transition and failure, the direct-map split, the
 * host-access check).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Host } from '../../src/core/host.js';
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
import { asPfn } from '../../src/core/base/units.js';
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
  type Ctx,
} from './helpers.js';

const SNP = getProfile('linux-6.18-snp')!;
const SEV_VM = 2n;
const SEV_ES_VM = 3n;
const SNP_VM = 4n;

function snpHost(): Ctx {
  const h = new Host(SNP);
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
    const a = new Host(SNP);
    const b = new Host(SNP);
    assert.ok(a.platform instanceof SevSnpPlatform);
    assert.notEqual(a.platform, b.platform);
    assert.equal(new Host(getProfile('linux-6.18')!).platform, NO_PLATFORM);
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
