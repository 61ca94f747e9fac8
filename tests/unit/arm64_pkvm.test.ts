/**
 * The arm64 pKVM profile `linux-6.18-arm64-pkvm` (src/core/profiles/arm64.ts, src/core/arch/arm64/,
 * src/core/platform/pkvm/platform.ts): profile facts, KVM_CREATE_VM types, capabilities per VM
 * type, KVM_ARM_VCPU_INIT and KVM_RUN errno tables, the x86-only ioctls, a protected VM whose
 * guest_memfd pages are donated by its stage-2 faults (the hypervisor's state, oracle and
 * invariants checked after every step), a non-protected VM's pages shared, the VMM touching a
 * donated page (SIGSEGV through the host stage-2 abort), and teardown reclaiming and zeroing
 * every page.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Host, type IoctlArg } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { getProfile, profileNames } from '../../src/core/profiles/index.js';
import { vmTypeSpec } from '../../src/core/profiles/profile.js';
import { profileFromJson, profileToJson } from '../../src/core/profiles/profile_file.js';
import {
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_CAP,
  KVM_IOCTL,
  KVM_MEM_GUEST_MEMFD,
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from '../../src/core/base/uapi.js';
import { KVM_ARM_IOCTL, KVM_VM_TYPE_ARM_PROTECTED } from '../../src/core/base/uapi_arm64.js';
import { guestLoad, guestStore } from '../../src/core/arch/x86/kvm_run.js';
import { checkHistory } from '../../src/core/platform/pkvm/oracle.js';
import { checkPkvmInvariants } from '../../src/core/platform/pkvm/invariants.js';
import {
  PKVM_POISON,
  PKVM_NOPAGE,
  PKVM_PAGE_OWNED,
  PKVM_PAGE_SHARED_BORROWED,
  PKVM_PAGE_SHARED_OWNED,
} from '../../src/core/platform/pkvm/memory.js';
import type { PkvmHyp } from '../../src/core/platform/pkvm/hyp.js';
import type { Result } from '../../src/core/base/result.js';

const P = getProfile('linux-6.18-arm64-pkvm')!;
const PAGE = 4096n;
const RW = PROT_READ | PROT_WRITE;

function ok<T>(r: Result<T>): T {
  if (!r.ok) assert.fail(`expected success, got ${r.errno} (${r.check})`);
  return r.value;
}

function initArg(target: number, f0 = 0, rest: number[] = []): IoctlArg {
  const b = new Uint8Array(32);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, target, true);
  dv.setUint32(4, f0, true);
  rest.forEach((v, i) => dv.setUint32(8 + 4 * i, v, true));
  return { kind: 'buffer', bytes: b };
}

function hypOf(h: Host): PkvmHyp {
  return h.platform.pkvm!.hyp;
}

/** The hypervisor's oracle and the six invariants agree with its stepwise state. */
function checked(h: Host, what: string): void {
  const hyp = hypOf(h);
  assert.deepEqual(checkHistory(hyp), [], `oracle after ${what}`);
  assert.deepEqual(checkPkvmInvariants(hyp), [], `invariants after ${what}`);
}

/** A VM of `type` with one initialised vCPU and a gmem-only guest_memfd slot of `pages` at gpa 0. */
function vmWithGmem(type: bigint, pages: bigint) {
  const h = new Host(P, { parts: ALL_PARTS });
  const kvm = h.openDevKvm();
  const vm = ok(h.kvmCreateVm(kvm, type));
  const gmem = ok(
    h.kvmCreateGuestMemfd(vm, pages * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED),
  );
  const slot = {
    slot: 0n,
    flags: KVM_MEM_GUEST_MEMFD,
    guest_phys_addr: 0n,
    memory_size: pages * PAGE,
    userspace_addr: 0n,
    guest_memfd_offset: 0n,
  };
  ok(h.kvmSetUserMemoryRegion(vm, slot, gmem, false));
  const vcpu = ok(h.kvmCreateVcpu(vm, 0n));
  ok(h.kvmArchIoctl(vcpu, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5)));
  return { h, kvm, vm, gmem, vcpu };
}

describe('arm64 pKVM profile', () => {
  test('is listed with its parts and facts', () => {
    assert.ok(profileNames().includes('linux-6.18-arm64-pkvm'));
    assert.deepEqual(P.parts, {
      arch: 'arm64',
      vendor: 'kvm_arm64',
      platform: 'pkvm',
      gmem: 'linux-6.18',
    });
    assert.equal(P.facts.arch, 'aarch64');
    assert.equal(P.facts.arm64?.mode, 'protected');
    assert.equal(P.memSlotsNum, 32767);
    assert.equal(P.memoryAttributesConfig, false);
    // Every accepted type value is listed (the IPA size byte, with and without PROTECTED).
    assert.equal(P.vmTypes.size, 512);
    assert.equal(P.vmTypes.get(0n), P.vmTypes.get(40n));
  });

  test('round-trips through a profile file (the arm64 facts included)', () => {
    const q = profileFromJson(profileToJson({ ...P, name: 'arm-copy' }), 'x.json');
    assert.deepEqual(q.facts.arm64, { mode: 'protected', ipaLimit: 48 });
    assert.deepEqual(q.parts, P.parts);
    const bad = profileToJson({ ...P, name: 'arm-copy' }).replace('"aarch64"', '"x86_64"');
    assert.throws(() => profileFromJson(bad, 'x.json'), /aarch64 goes with kvm_module kvm_arm64/);
  });

  test('KVM_CREATE_VM types: IPA size ignored under pKVM, PROTECTED accepted, other bits EINVAL', () => {
    const rows: Array<[bigint, string | undefined, boolean?]> = [
      [0n, undefined, false],
      [40n, undefined, false],
      [20n, undefined, false], // below ARM64_MIN_PARANGE_BITS: pKVM ignores the size
      [255n, undefined, false],
      [KVM_VM_TYPE_ARM_PROTECTED, undefined, true],
      [KVM_VM_TYPE_ARM_PROTECTED | 44n, undefined, true],
      [0x100n, 'EINVAL'],
      [1n << 32n, 'EINVAL'],
      [1n << 30n, 'EINVAL'],
    ];
    for (const [type, errno, prot] of rows) {
      const h = new Host(P, { parts: ALL_PARTS });
      const r = h.kvmCreateVm(h.openDevKvm(), type);
      if (errno === undefined) {
        assert.ok(r.ok, `type ${type.toString(16)}`);
        const spec = vmTypeSpec(P, type)!;
        assert.equal(spec.arm64?.protected, prot);
        assert.equal(spec.arm64?.ipaBits, 48);
      } else assert.equal(r.ok ? undefined : r.errno, errno, `type ${type.toString(16)}`);
    }
  });

  test('capabilities: generic caps on every VM, arch caps filtered on a protected VM, no VM_TYPES', () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const kvm = h.openDevKvm();
    const np = ok(h.kvmCreateVm(kvm, 0n));
    const pv = ok(h.kvmCreateVm(kvm, KVM_VM_TYPE_ARM_PROTECTED));
    const cap = (fd: number, c: number) => ok(h.kvmCheckExtension(fd, BigInt(c)));
    for (const fd of [kvm, np, pv]) {
      assert.equal(cap(fd, KVM_CAP.KVM_CAP_GUEST_MEMFD), 1n);
      assert.equal(cap(fd, KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS), 3n);
      assert.equal(cap(fd, KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES), 0n);
      assert.equal(cap(fd, KVM_CAP.KVM_CAP_VM_TYPES), 0n);
      assert.equal(cap(fd, KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY), 0n);
      assert.equal(cap(fd, 165), 48n); // KVM_CAP_ARM_VM_IPA_SIZE: allowed for protected VMs
    }
    assert.equal(cap(np, 126), 1n); // KVM_CAP_ARM_PMU_V3
    assert.equal(cap(pv, 126), 0n); // not in kvm_pkvm_ext_allowed()
    assert.equal(cap(np, 170), 1n); // KVM_CAP_ARM_SVE
    assert.equal(cap(pv, 170), 0n);
    assert.equal(cap(pv, 171), 1n); // KVM_CAP_ARM_PTRAUTH_ADDRESS: allowed
    assert.equal(cap(pv, KVM_CAP.KVM_CAP_READONLY_MEM), 0n);
  });

  test('x86-only ioctls and pre-fault answer as arm64 does (EINVAL)', () => {
    const { h, vm, vcpu } = vmWithGmem(0n, 4n);
    const NULL: IoctlArg = { kind: 'null' };
    assert.equal(h.kvmArchIoctl(vm, KVM_ARM_IOCTL.KVM_SET_TSS_ADDR, NULL).ok, false);
    const attrs = h.kvmSetMemoryAttributes(vm, {
      address: 0n,
      size: PAGE,
      attributes: 8n,
      flags: 0n,
    });
    assert.equal(attrs.ok ? undefined : attrs.errno, 'EINVAL');
    const enc = h.kvmMemoryEncryptOp(vm, NULL);
    assert.equal(enc.ok ? undefined : enc.errno, 'EINVAL');
    assert.equal(h.kvmPreFaultMemory(vcpu, 0n, PAGE, 0n).errno, 'EINVAL');
    const cap = h.kvmEnableCap(vm, BigInt(KVM_CAP.KVM_CAP_EXIT_HYPERCALL), 0n, [0n]);
    assert.equal(cap.ok ? undefined : cap.errno, 'EINVAL');
    void KVM_IOCTL;
  });

  test('KVM_ARM_PREFERRED_TARGET reports GENERIC_V8', () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
    const buf = new Uint8Array(32).fill(0xff);
    ok(h.kvmArchIoctl(vm, KVM_ARM_IOCTL.KVM_ARM_PREFERRED_TARGET, { kind: 'buffer', bytes: buf }));
    assert.equal(new DataView(buf.buffer).getUint32(0, true), 5);
    assert.ok(buf.subarray(4).every((b) => b === 0));
  });

  test('KVM_ARM_VCPU_INIT and KVM_RUN errno table', () => {
    const rows: Array<[string, IoctlArg, string | undefined]> = [
      ['target 0', initArg(0), 'EINVAL'],
      ['unknown feature bit 9', initArg(5, 1 << 9), 'ENOENT'],
      ['features[1] set', initArg(5, 0, [1]), 'ENOENT'],
      ['EL1_32BIT', initArg(5, 1 << 1), 'EINVAL'],
      ['HAS_EL2', initArg(5, 1 << 7), 'EINVAL'],
      ['PSCI_0_2', initArg(5, 1 << 2), undefined],
      ['NULL', { kind: 'null' }, 'EFAULT'],
    ];
    for (const [what, arg, errno] of rows) {
      const h = new Host(P, { parts: ALL_PARTS });
      const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
      const vcpu = ok(h.kvmCreateVcpu(vm, 0n));
      const r = h.kvmArchIoctl(vcpu, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, arg);
      assert.equal(r.ok ? undefined : r.errno, errno, what);
    }
    // KVM_RUN before INIT: ENOEXEC; SVE before FINALIZE: EPERM; features must match across vCPUs.
    const h = new Host(P, { parts: ALL_PARTS });
    const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
    // KVM_CREATE_VCPU: an id at or past KVM_MAX_VCPU_IDS (512 on arm64) is EINVAL.
    const big = h.kvmCreateVcpu(vm, 512n);
    assert.equal(big.ok ? undefined : big.errno, 'EINVAL');
    const v0 = ok(h.kvmCreateVcpu(vm, 0n));
    assert.equal(h.kvmRun(v0, []).errno, 'ENOEXEC');
    ok(h.kvmArchIoctl(v0, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 1 << 4)));
    assert.equal(h.kvmRun(v0, []).errno, 'EPERM');
    const sve = new Uint8Array(4);
    new DataView(sve.buffer).setInt32(0, 4, true);
    ok(h.kvmArchIoctl(v0, KVM_ARM_IOCTL.KVM_ARM_VCPU_FINALIZE, { kind: 'buffer', bytes: sve }));
    assert.equal(h.kvmRun(v0, []).errno, undefined);
    const v1 = ok(h.kvmCreateVcpu(vm, 1n));
    const r = h.kvmArchIoctl(v1, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 0));
    assert.equal(r.ok ? undefined : r.errno, 'EINVAL');
    const again = h.kvmArchIoctl(v0, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 1 << 2));
    assert.equal(again.ok ? undefined : again.errno, 'EINVAL');
  });

  test('memslots: a guest_memfd slot must be gmem-only (EINVAL); past the IPA size is EFAULT', () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
    const gmem = ok(h.kvmCreateGuestMemfd(vm, 4n * PAGE, 0n));
    const slot = {
      slot: 0n,
      flags: KVM_MEM_GUEST_MEMFD,
      guest_phys_addr: 0n,
      memory_size: 4n * PAGE,
      userspace_addr: 0n,
      guest_memfd_offset: 0n,
    };
    const r = h.kvmSetUserMemoryRegion(vm, slot, gmem, false);
    assert.equal(r.ok ? undefined : r.errno, 'EINVAL');
    const ua = ok(h.mmap(null, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0n));
    const far = h.kvmSetUserMemoryRegion(
      vm,
      { ...slot, flags: 0n, guest_phys_addr: 1n << 48n, memory_size: PAGE, userspace_addr: ua },
      0,
      false,
    );
    assert.equal(far.ok ? undefined : far.errno, 'EFAULT');
  });

  test('a protected VM: stage-2 faults donate guest_memfd pages; the VMM touching one gets SIGSEGV; teardown reclaims and zeroes', () => {
    const { h, vm, gmem, vcpu } = vmWithGmem(KVM_VM_TYPE_ARM_PROTECTED, 4n);
    const hyp = hypOf(h);
    // The VMM writes the image through its guest_memfd mapping before the guest runs.
    const ua = ok(h.mmap(gmem, 4n * PAGE, RW, MAP_SHARED, 0n));
    assert.equal(h.poke(ua + PAGE, new Uint8Array([0x5a])).ok, true);
    checked(h, 'setup');
    // Store to page 0, load from page 1: each fault donates the page.
    const r = h.kvmRun(vcpu, [guestStore(0x10n, new Uint8Array([1, 2, 3, 4])), guestLoad(PAGE, 1)]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(
      r.exits.map((e) => e.reason),
      ['LOAD'],
    );
    assert.deepEqual([...(r.exits[0] as { bytes: Uint8Array }).bytes], [0x5a]);
    checked(h, 'donating run');
    const handle = [...hyp.vms.keys()][0]!;
    const hvm = hyp.vms.get(handle)!;
    assert.equal(hvm.isProtected, true);
    const pfns = [0, 1].map((g) => hvm.stage2.leaf(g)!.pfn);
    for (const p of pfns) {
      assert.equal(hyp.vmemmap.get(p).host, PKVM_NOPAGE);
      assert.equal(hvm.stage2.state(pfns.indexOf(p)), PKVM_PAGE_OWNED);
    }
    // The VMM touches a donated page: the hypervisor injects a stage-2 abort, the task SIGSEGV.
    const touch = h.peek(ua, 4);
    assert.equal(touch.ok ? undefined : touch.fault, 'SIGSEGV');
    // A page not donated is still the host's.
    assert.equal(h.peek(ua + 2n * PAGE, 1).ok, true);
    checked(h, 'host touch');
    // Teardown: close everything; every donated page comes back zeroed, the hyp's pages too.
    ok(h.munmap(ua, 4n * PAGE));
    for (const fd of [vcpu, vm, gmem]) ok(h.close(fd));
    assert.equal(hyp.vms.size, 0);
    for (const p of pfns) {
      const v = hyp.vmemmap.get(p);
      assert.equal(v.host, PKVM_PAGE_OWNED, `pfn ${p} is the host's`);
      const b = new Uint8Array(4096);
      h.frames.read(p as never, 0, b);
      assert.ok(
        b.every((x) => x === 0),
        `pfn ${p} zeroed`,
      );
    }
    checked(h, 'teardown');
  });

  test('a non-protected VM: faults share pages; guest_memfd release unshares them', () => {
    const { h, vm, gmem, vcpu } = vmWithGmem(0n, 2n);
    const hyp = hypOf(h);
    const r = h.kvmRun(vcpu, [guestStore(0n, new Uint8Array([7]))]);
    assert.equal(r.errno, undefined);
    checked(h, 'sharing run');
    const hvm = [...hyp.vms.values()][0]!;
    const pfn = hvm.stage2.leaf(0)!.pfn;
    assert.equal(hyp.vmemmap.get(pfn).host, PKVM_PAGE_SHARED_OWNED);
    assert.equal(hyp.vmemmap.get(pfn).shareGuestCount, 1);
    assert.equal(hvm.stage2.state(0), PKVM_PAGE_SHARED_BORROWED);
    // The host still reaches a page it only shared.
    const ua = ok(h.mmap(gmem, 2n * PAGE, RW, MAP_SHARED, 0n));
    const seen = h.peek(ua, 1);
    assert.deepEqual(seen.ok ? [...(seen.data ?? [])] : undefined, [7]);
    ok(h.munmap(ua, 2n * PAGE));
    for (const fd of [vcpu, vm, gmem]) ok(h.close(fd));
    assert.equal(hyp.vms.size, 0);
    assert.equal(hyp.vmemmap.get(pfn).shareGuestCount, 0);
    checked(h, 'teardown');
  });

  test('a protected guest: HYP_MEMINFO, MEM_SHARE (donating first when the page is missing) and MEM_UNSHARE', () => {
    const { h, gmem, vcpu } = vmWithGmem(KVM_VM_TYPE_ARM_PROTECTED, 4n);
    const hyp = hypOf(h);
    const ua = ok(h.mmap(gmem, 4n * PAGE, RW, MAP_SHARED, 0n));
    const x0 = (e: unknown): bigint =>
      new DataView((e as { bytes: Uint8Array }).bytes.buffer).getBigInt64(0, true);
    const hvcStep = (nr: number, a1 = 0n) => ({
      kind: 'hypercall' as const,
      nr: BigInt(nr),
      args: [a1, 0n, 0n] as const,
    });
    // HYP_MEMINFO: the granule; MEM_SHARE of gfn 2, never touched: donated, then shared.
    const r = h.kvmRun(vcpu, [
      hvcStep(0xc6000002),
      hvcStep(0xc6000003, 2n * PAGE),
      guestStore(2n * PAGE, new Uint8Array([9])),
    ]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(
      r.exits.map((e) => x0(e)),
      [4096n, 0n],
    );
    checked(h, 'share');
    const hvm = [...hyp.vms.values()][0]!;
    const pfn = hvm.stage2.leaf(2)!.pfn;
    assert.equal(hvm.stage2.state(2), PKVM_PAGE_SHARED_OWNED);
    assert.equal(hyp.vmemmap.get(pfn).host, PKVM_PAGE_SHARED_BORROWED);
    // The VMM reads the shared page (the virtio ring).
    const seen = h.peek(ua + 2n * PAGE, 1);
    assert.deepEqual(seen.ok ? [...(seen.data ?? [])] : undefined, [9]);
    // MEM_UNSHARE: the page is the guest's alone again; the VMM's touch is an abort.
    const u = h.kvmRun(vcpu, [hvcStep(0xc6000004, 2n * PAGE), hvcStep(0xc6000004, 3n * PAGE)]);
    assert.deepEqual(
      u.exits.map((e) => x0(e)),
      [0n, -3n],
    );
    assert.equal(hvm.stage2.state(2), PKVM_PAGE_OWNED);
    const touch = h.peek(ua + 2n * PAGE, 1);
    assert.equal(touch.ok ? undefined : touch.fault, 'SIGSEGV');
    checked(h, 'unshare');
  });

  test('a non-protected guest: the vendor calls reach the host, which does not support them', () => {
    const { h, vcpu } = vmWithGmem(0n, 2n);
    const r = h.kvmRun(vcpu, [{ kind: 'hypercall', nr: 0xc6000003n, args: [0n, 0n, 0n] }]);
    assert.equal(r.errno, undefined);
    const b = (r.exits[0] as { bytes: Uint8Array }).bytes;
    assert.equal(new DataView(b.buffer).getBigInt64(0, true), -1n);
    checked(h, 'np hvc');
  });
});

describe("arm64 pKVM: the independent review's findings (issue 13)", () => {
  const errnoOf = (r: Result<unknown>) => (r.ok ? undefined : r.errno);

  test("F1: KVM_ARM_VCPU_POWER_OFF is ephemeral (not part of the VM feature set); a powered-off vCPU's KVM_RUN sleeps (EINTR)", () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
    const v0 = ok(h.kvmCreateVcpu(vm, 0n));
    const v1 = ok(h.kvmCreateVcpu(vm, 1n));
    // Secondaries start powered off, the boot vCPU does not (QEMU's pattern).
    ok(h.kvmArchIoctl(v1, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 1 << 0)));
    ok(h.kvmArchIoctl(v0, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 0)));
    // Re-init without POWER_OFF: a reset, same features.
    ok(h.kvmArchIoctl(v1, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 0)));
    ok(h.kvmArchIoctl(v0, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 1 << 0)));
    // v0 is now stopped: its KVM_RUN sleeps until a signal (EINTR, the trace's watchdog).
    assert.equal(h.kvmRun(v0, []).errno, 'EINTR');
    assert.equal(h.kvmRun(v1, []).errno, undefined);
  });

  test('F2: PTRAUTH_ADDRESS and PTRAUTH_GENERIC must come together (EINVAL)', () => {
    for (const [f0, errno] of [
      [1 << 5, 'EINVAL'],
      [1 << 6, 'EINVAL'],
      [(1 << 5) | (1 << 6), undefined],
    ] as const) {
      const h = new Host(P, { parts: ALL_PARTS });
      const vm = ok(h.kvmCreateVm(h.openDevKvm(), KVM_VM_TYPE_ARM_PROTECTED));
      const v = ok(h.kvmCreateVcpu(vm, 0n));
      assert.equal(
        errnoOf(h.kvmArchIoctl(v, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, f0))),
        errno,
        `features ${f0}`,
      );
    }
  });

  test('F3: KVM_ARM_VCPU_FINALIZE before KVM_ARM_VCPU_INIT is ENOEXEC, before reading the argument', () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
    const v = ok(h.kvmCreateVcpu(vm, 0n));
    const sve = new Uint8Array(4);
    new DataView(sve.buffer).setInt32(0, 4, true);
    const fin = (arg: IoctlArg) =>
      errnoOf(h.kvmArchIoctl(v, KVM_ARM_IOCTL.KVM_ARM_VCPU_FINALIZE, arg));
    assert.equal(fin({ kind: 'buffer', bytes: sve }), 'ENOEXEC');
    assert.equal(fin({ kind: 'null' }), 'ENOEXEC');
    ok(h.kvmArchIoctl(v, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 0)));
    assert.equal(fin({ kind: 'null' }), 'EFAULT');
    assert.equal(fin({ kind: 'buffer', bytes: sve }), 'EINVAL'); // no SVE on this vCPU
  });

  test("F4 F5 F11: the cap table is 6.18's two switches; generic caps escape the protected-VM filter; no MULTI_ADDRESS_SPACE", () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const kvm = h.openDevKvm();
    const np = ok(h.kvmCreateVm(kvm, 0n));
    const pv = ok(h.kvmCreateVm(kvm, KVM_VM_TYPE_ARM_PROTECTED));
    const cap = (fd: number, c: number) => ok(h.kvmCheckExtension(fd, BigInt(c)));
    // kvm_vm_ioctl_check_extension_generic(): the same on every fd, protected or not.
    const generic: Array<[number, bigint]> = [
      [25, 4096n], // IRQ_ROUTING
      [32, 1n], // IRQFD
      [77, 1n], // SIGNAL_MSI
      [89, 1n], // DEVICE_CTRL
      [98, 1n], // ENABLE_CAP_VM
      [105, 1n], // CHECK_EXTENSION_VM
      [30, 1n], // JOIN_MEMORY_REGIONS_WORKS
      [40, 1n], // INTERNAL_ERROR_DATA
      [182, 1n], // HALT_POLL
      [203, 1n], // BINARY_STATS_FD
      [162, 1n], // COALESCED_PIO
      [168, 3n], // MANUAL_DIRTY_LOG_PROTECT2
      [223, 65536n * 16n], // DIRTY_LOG_RING_ACQ_REL
      [225, 1n], // DIRTY_LOG_RING_WITH_BITMAP
      [192, 0n], // DIRTY_LOG_RING (TSO only)
      [KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE, 0n], // KVM_MAX_NR_ADDRESS_SPACES is 1
    ];
    for (const [c, v] of generic)
      for (const fd of [kvm, np, pv]) assert.equal(cap(fd, c), v, `cap ${c} on fd ${fd}`);
    // arm.c: answered on /dev/kvm and a non-protected VM, filtered to 0 on a protected one.
    const arch: Array<[number, bigint]> = [
      [14, 1n], // MP_STATE
      [21, 1n], // DESTROY_MEMORY_REGION_WORKS
      [23, 1n], // SET_GUEST_DEBUG
      [41, 1n], // VCPU_EVENTS
      [144, 1n], // ARM_USER_IRQ
      [195, 0x30003n], // SET_GUEST_DEBUG2
      [198, 1n], // PTP_KVM
      [229, 0x40201000n], // ARM_SUPPORTED_BLOCK_SIZES
      [230, 1n], // ARM_SUPPORTED_REG_MASK_RANGES
    ];
    for (const [c, v] of arch) {
      assert.equal(cap(kvm, c), v, `cap ${c} on /dev/kvm`);
      assert.equal(cap(np, c), v, `cap ${c} on a VM`);
      assert.equal(cap(pv, c), 0n, `cap ${c} on a protected VM`);
    }
    assert.equal(cap(kvm, 148), 0n); // KVM_CAP_HYPERV_SYNIC2 is not arm64's
    assert.equal(cap(pv, 0), 1n); // IRQCHIP: on the allow-list
  });

  test('F12: guest HVC arguments are full 64-bit registers (reserved bits and high IPA bits count)', () => {
    const { h, vcpu } = vmWithGmem(KVM_VM_TYPE_ARM_PROTECTED, 8n);
    const hyp = hypOf(h);
    const x0 = (e: unknown): bigint =>
      new DataView((e as { bytes: Uint8Array }).bytes.buffer).getBigInt64(0, true);
    const hvcStep = (nr: number, args: readonly [bigint, bigint, bigint]) => ({
      kind: 'hypercall' as const,
      nr: BigInt(nr),
      args,
    });
    const r = h.kvmRun(vcpu, [
      hvcStep(0xc6000003, [0x2000n, 1n << 56n, 0n]), // MEM_SHARE, a2 non-zero
      hvcStep(0xc6000002, [1n << 60n, 0n, 0n]), // HYP_MEMINFO, a1 non-zero
      hvcStep(0xc6000003, [(1n << 60n) + 0x3000n, 0n, 0n]), // an IPA past the IPA size
      hvcStep(0xc6000004, [(1n << 63n) + 0x3000n, 0n, 0n]), // MEM_UNSHARE, same
    ]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(
      r.exits.map((e) => x0(e)),
      [-3n, -3n, -3n, -3n],
    );
    // Nothing was donated or shared: gfns 2 and 3 have no page.
    const hvm = [...hyp.vms.values()][0]!;
    assert.equal(hvm.stage2.leaf(2), undefined);
    assert.equal(hvm.stage2.leaf(3), undefined);
    checked(h, 'hvc');
  });

  test('F10: after a forced reclaim the protected guest never reaches the reclaimed frame (KVM_RUN EFAULT)', () => {
    const { h, vm, gmem, vcpu } = vmWithGmem(KVM_VM_TYPE_ARM_PROTECTED, 16n);
    const hyp = hypOf(h);
    assert.equal(h.kvmRun(vcpu, [guestStore(PAGE, new Uint8Array([0xaa, 0xbb]))]).errno, undefined);
    const hvm = [...hyp.vms.values()][0]!;
    const pfn = hvm.stage2.leaf(1)!.pfn;
    // PUNCH_HOLE: the page leaves guest_memfd; the hypervisor force-reclaims it (poisoned entry).
    ok(h.fallocate(gmem, 3, 0n, 16n * PAGE));
    assert.equal(hvm.stage2.state(1), PKVM_POISON);
    checked(h, 'forced reclaim');
    const load = h.kvmRun(vcpu, [guestLoad(PAGE, 2)]);
    assert.equal(load.errno, 'EFAULT');
    assert.deepEqual(load.exits, []);
    assert.equal(h.kvmRun(vcpu, [guestStore(PAGE, new Uint8Array([1]))]).errno, 'EFAULT');
    checked(h, 'guest access to the poisoned gfn');
    const b = new Uint8Array(4096);
    h.frames.read(pfn as never, 0, b);
    assert.ok(
      b.every((x) => x === 0),
      'the reclaimed frame stays zeroed',
    );
    // A second slot whose page may reuse the frame: the poisoned gfn still reads nothing.
    const g2 = ok(
      h.kvmCreateGuestMemfd(vm, 4n * PAGE, GUEST_MEMFD_FLAG_MMAP | GUEST_MEMFD_FLAG_INIT_SHARED),
    );
    ok(
      h.kvmSetUserMemoryRegion(
        vm,
        {
          slot: 1n,
          flags: KVM_MEM_GUEST_MEMFD,
          guest_phys_addr: 0x100000n,
          memory_size: 4n * PAGE,
          userspace_addr: 0n,
          guest_memfd_offset: 0n,
        },
        g2,
        false,
      ),
    );
    assert.equal(h.kvmRun(vcpu, [guestStore(0x100000n, new Uint8Array([0x55]))]).errno, undefined);
    assert.equal(h.kvmRun(vcpu, [guestLoad(PAGE, 1)]).errno, 'EFAULT');
    checked(h, 'second slot');
  });

  test('F14: an access past the IPA limit is an exception injected into the guest (no MMIO exit): refused as not modelled', () => {
    for (const type of [0n, KVM_VM_TYPE_ARM_PROTECTED]) {
      const { h, vcpu } = vmWithGmem(type, 2n);
      assert.throws(() => h.kvmRun(vcpu, [guestLoad(1n << 48n, 4)]), /kvm_inject_size_fault/);
      assert.throws(
        () => h.kvmRun(vcpu, [guestStore(1n << 50n, new Uint8Array([1]))]),
        /kvm_inject_size_fault/,
      );
      // Just below the limit, outside any memslot: an MMIO exit as before.
      const r = h.kvmRun(vcpu, [guestLoad((1n << 48n) - PAGE, 4)]);
      assert.deepEqual(
        r.exits.map((e) => e.reason),
        ['MMIO'],
      );
    }
  });

  test('F15: KVM_CREATE_VM reserves the hypervisor handle: the 256th VM is ENOMEM; a VM that never ran gives its handle back', () => {
    const h = new Host(P, { parts: ALL_PARTS });
    const kvm = h.openDevKvm();
    const vms: number[] = [];
    for (let i = 0; i < 255; i++)
      vms.push(ok(h.kvmCreateVm(kvm, i % 2 === 0 ? 0n : KVM_VM_TYPE_ARM_PROTECTED)));
    assert.equal(errnoOf(h.kvmCreateVm(kvm, 0n)), 'ENOMEM');
    // One VM runs (its hyp VM fills the reserved handle); another is closed without running.
    const v = ok(h.kvmCreateVcpu(vms[0]!, 0n));
    ok(h.kvmArchIoctl(v, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5)));
    assert.equal(h.kvmRun(v, []).errno, undefined);
    assert.equal(hypOf(h).vms.size, 1);
    assert.equal(errnoOf(h.kvmCreateVm(kvm, 0n)), 'ENOMEM');
    ok(h.close(vms[1]!));
    const again = ok(h.kvmCreateVm(kvm, KVM_VM_TYPE_ARM_PROTECTED));
    assert.equal(errnoOf(h.kvmCreateVm(kvm, 0n)), 'ENOMEM');
    // The VM that ran gives its handle back at teardown too.
    ok(h.close(v));
    ok(h.close(vms[0]!));
    assert.equal(hypOf(h).vms.size, 0);
    ok(h.kvmCreateVm(kvm, 0n));
    void again;
    checked(h, 'handles');
  });

  test("F7: a vCPU created after the VM's first KVM_RUN gets no hyp vCPU: its KVM_RUN is EINVAL", () => {
    for (const type of [0n, KVM_VM_TYPE_ARM_PROTECTED]) {
      const h = new Host(P, { parts: ALL_PARTS });
      const vm = ok(h.kvmCreateVm(h.openDevKvm(), type));
      const v0 = ok(h.kvmCreateVcpu(vm, 0n));
      const v1 = ok(h.kvmCreateVcpu(vm, 1n));
      for (const v of [v0, v1]) ok(h.kvmArchIoctl(v, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5)));
      // v1 runs first: vcpu_idx 1 is below created_vcpus (2), so it gets its slot.
      assert.equal(h.kvmRun(v1, []).errno, undefined);
      assert.equal(h.kvmRun(v0, []).errno, undefined);
      const v2 = ok(h.kvmCreateVcpu(vm, 2n));
      ok(h.kvmArchIoctl(v2, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5)));
      assert.equal(h.kvmRun(v2, []).errno, 'EINVAL');
      assert.equal(h.kvmRun(v2, []).errno, 'EINVAL');
      const hvm = [...hypOf(h).vms.values()][0]!;
      assert.equal(hvm.createdVcpus, 2);
      assert.deepEqual(
        hvm.vcpus.map((c) => c.idx),
        [0, 1],
      );
      checked(h, 'late vCPU');
      for (const fd of [v0, v1, v2, vm]) ok(h.close(fd));
      assert.equal(hypOf(h).vms.size, 0);
      checked(h, 'teardown');
    }
  });

  test('F8: the host answers SMCCC_VERSION, ARCH_FEATURES, the KVM vendor UID and KVM_FEATURES, PSCI_VERSION/FEATURES; a protected guest gets the EL2 answers', () => {
    const x0s = (h: Host, vcpu: number, calls: Array<[number, bigint?]>) => {
      const r = h.kvmRun(
        vcpu,
        calls.map(([nr, a1 = 0n]) => ({
          kind: 'hypercall' as const,
          nr: BigInt(nr),
          args: [a1, 0n, 0n] as const,
        })),
      );
      assert.equal(r.errno, undefined);
      return r.exits.map((e) =>
        new DataView((e as { bytes: Uint8Array }).bytes.buffer).getBigInt64(0, true),
      );
    };
    const common: Array<[number, bigint?]> = [
      [0x80000000], // SMCCC_VERSION
      [0x80000001, 0xc5000020n], // ARCH_FEATURES(PV_TIME_FEATURES)
      [0x80000001, 0x12345n], // ARCH_FEATURES(unknown)
      [0x8600ff01], // VENDOR_HYP_CALL_UID
      [0x86000000], // VENDOR_HYP_KVM_FEATURES
      [0x84000000], // PSCI_VERSION (a PSCI 0.1 vCPU)
    ];
    {
      const { h, vcpu } = vmWithGmem(0n, 2n);
      assert.deepEqual(x0s(h, vcpu, common), [0x10001n, 0n, -1n, 0xb66fb428n, 3n, -1n]);
      assert.throws(() => x0s(h, vcpu, [[0x86000001]]), /PTP/);
    }
    {
      // A PSCI 0.2+ vCPU: PSCI 1.3.
      const h = new Host(P, { parts: ALL_PARTS });
      const vm = ok(h.kvmCreateVm(h.openDevKvm(), 0n));
      const v = ok(h.kvmCreateVcpu(vm, 0n));
      ok(h.kvmArchIoctl(v, KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT, initArg(5, 1 << 2)));
      assert.deepEqual(
        x0s(h, v, [
          [0x84000000], // PSCI_VERSION
          [0x8400000a, 0xc4000003n], // PSCI_FEATURES(CPU_ON64)
          [0x8400000a, 0x8400000en], // PSCI_FEATURES(SYSTEM_SUSPEND): not enabled
          [0x84000006], // MIGRATE_INFO_TYPE
          [0x84000007], // MIGRATE_INFO_UP_CPU: not implemented
        ]),
        [0x10003n, 0n, -1n, 2n, -1n],
      );
      assert.throws(() => x0s(h, v, [[0xc4000003, 1n]]), /CPU_ON/);
    }
    {
      const { h, vcpu } = vmWithGmem(KVM_VM_TYPE_ARM_PROTECTED, 2n);
      assert.deepEqual(x0s(h, vcpu, common.slice(0, 5)), [0x10001n, 0n, -1n, 0xb66fb428n, 0x1dn]);
      assert.throws(() => x0s(h, vcpu, [[0x84000000]]), /protected VM/);
      checked(h, 'pv hvc');
    }
  });

  test('F9: arm64 VMs get no x86 trace code page (slot 32763 at 0xFFFFF000)', () => {
    for (const type of [0n, KVM_VM_TYPE_ARM_PROTECTED]) {
      const { h, vm, vcpu } = vmWithGmem(type, 2n);
      const hyp = hypOf(h);
      // The page is MMIO to the guest, not the VMM's memory (nothing donated or shared).
      const r = h.kvmRun(vcpu, [guestLoad(0xfffff000n, 4)]);
      assert.deepEqual(
        r.exits.map((e) => e.reason),
        ['MMIO'],
      );
      const hvm = [...hyp.vms.values()][0]!;
      assert.equal(hvm.stage2.leaf(0xfffff), undefined);
      // The trace may use slot 32763 itself.
      const ua = ok(h.mmap(null, PAGE, RW, MAP_PRIVATE | MAP_ANONYMOUS, 0n));
      ok(
        h.kvmSetUserMemoryRegion(
          vm,
          {
            slot: 32763n,
            flags: 0n,
            guest_phys_addr: 0x10000n,
            memory_size: PAGE,
            userspace_addr: ua,
            guest_memfd_offset: 0n,
          },
          0,
          false,
        ),
      );
      checked(h, 'no code page');
    }
  });
});
