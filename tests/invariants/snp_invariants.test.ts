/**
 * The SEV-SNP invariants (snp-rmp-owner, snp-no-host-write, snp-launch-measured,
 * snp-reclaim-before-reuse): each holds through a faithful SNP launch, pre-fault, punch and
 * teardown, and each reports a state that breaks it (a good and a bad example per invariant).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { Host } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { InvariantChecker, type Violation } from '../../src/core/invariants/index.js';
import { toKvmSevInfo } from '../../src/core/arch/x86/svm/sev_common.js';
import { guestLoad, guestStore } from '../../src/core/arch/x86/kvm_run.js';
import type { Pfn } from '../../src/core/base/units.js';
import type { Vm } from '../../src/core/kvm/objects.js';
import { packMemEncCmd, packSevData } from '../../src/ops/mem_enc.js';
import { runChecked } from '../../src/check/checked_run.js';
import { parseTrace } from '../../src/trace/parse.js';

const SNP_CMD = { INIT2: 22n, LAUNCH_START: 100n, LAUNCH_UPDATE: 101n, LAUNCH_FINISH: 102n };
const packSevInit2 = (vmsa_features: bigint): Uint8Array =>
  packSevData({ cmd: 'KVM_SEV_INIT2', vmsa_features, flags: 0n, ghcb_version: 0n });
const packSnpLaunchStart = (policy: bigint): Uint8Array =>
  packSevData({ cmd: 'KVM_SEV_SNP_LAUNCH_START', policy, gosvw: new Uint8Array(16), flags: 0n });
const packSnpLaunchUpdate = (gfn: bigint, uaddr: bigint, len: bigint, type: number): Uint8Array =>
  packSevData({
    cmd: 'KVM_SEV_SNP_LAUNCH_UPDATE',
    gfn_start: gfn,
    uaddr,
    len,
    type: BigInt(type),
    flags: 0n,
  });
const packSnpLaunchFinish = (): Uint8Array =>
  packSevData({
    cmd: 'KVM_SEV_SNP_LAUNCH_FINISH',
    id_block_uaddr: 0n,
    id_auth_uaddr: 0n,
    id_block_en: 0n,
    auth_key_en: 0n,
    vcek_disabled: 0n,
    host_data: new Uint8Array(32),
    flags: 0n,
  });

const PAGE = 4096n;
const GPA = 0x4000_0000n;
const SNP_INVARIANTS = [
  'snp-rmp-owner',
  'snp-no-host-write',
  'snp-launch-measured',
  'snp-reclaim-before-reuse',
  'snp-guest-validated',
  'snp-validate-once',
  'snp-psc-exit-matches-request',
];

function okv<T>(r: { ok: true; value: T } | { ok: false; errno: string }, what: string): T {
  if (!r.ok) assert.fail(`${what}: ${r.errno}`);
  return r.value;
}

/** An SNP VM with a 4-page guest_memfd slot, launched (2 NORMAL pages, 1 vCPU), checked throughout. */
function launched(mutants: string[] = []): {
  h: Host;
  checker: InvariantChecker;
  vm: Vm;
  vmFd: number;
  gmem: number;
  vcpu: number;
  src: bigint;
  cmd: (id: bigint, data: Uint8Array) => boolean;
  check: () => Violation[];
} {
  const h = new Host(getProfile('linux-6.18-snp')!, { parts: ALL_PARTS, mutants });
  const checker = new InvariantChecker(h, undefined, { incremental: true });
  const check = (): Violation[] => checker.check();
  const kvm = h.openDevKvm();
  const sev = okv(h.openDevSev(), '/dev/sev');
  const vmFd = okv(h.kvmCreateVm(kvm, 4n), 'KVM_CREATE_VM');
  const params = okv(h.mmap(null, PAGE, 3, 0x22, 0n), 'mmap params');
  const src = okv(h.mmap(null, 2n * PAGE, 3, 0x22, 0n), 'mmap src');
  const shared = okv(h.mmap(null, 4n * PAGE, 3, 0x22, 0n), 'mmap shared');
  const gmem = okv(h.kvmCreateGuestMemfd(vmFd, 4n * PAGE, 0n), 'guest_memfd');
  okv(
    h.kvmSetUserMemoryRegion(
      vmFd,
      {
        slot: 0n,
        flags: 4n,
        guest_phys_addr: GPA,
        memory_size: 4n * PAGE,
        userspace_addr: shared,
        guest_memfd_offset: 0n,
      },
      gmem,
      false,
    ),
    'memslot',
  );
  okv(
    h.kvmSetMemoryAttributes(vmFd, { address: GPA, size: 4n * PAGE, attributes: 8n, flags: 0n }),
    'attributes',
  );
  const cmd = (id: bigint, data: Uint8Array): boolean => {
    assert.ok(h.poke(params, data).ok);
    return h.kvmMemoryEncryptOp(vmFd, {
      kind: 'buffer',
      bytes: packMemEncCmd(id, params, sev),
    }).ok;
  };
  assert.ok(cmd(SNP_CMD.INIT2, packSevInit2(0n)));
  assert.deepEqual(check(), []);
  assert.ok(cmd(SNP_CMD.LAUNCH_START, packSnpLaunchStart(0x30000n)));
  assert.ok(h.poke(src, new Uint8Array(8192).fill(0xa5)).ok);
  assert.ok(cmd(SNP_CMD.LAUNCH_UPDATE, packSnpLaunchUpdate(GPA / PAGE, src, 2n * PAGE, 1)));
  assert.deepEqual(check(), []);
  const vcpu = okv(h.kvmCreateVcpu(vmFd, 0n), 'vCPU');
  assert.ok(cmd(SNP_CMD.LAUNCH_FINISH, packSnpLaunchFinish()));
  assert.deepEqual(check(), []);
  const vm = [...h.vms][0]!;
  return { h, checker, vm, vmFd, gmem, vcpu, src, cmd, check };
}

const names = (vs: readonly Violation[]): string[] => [...new Set(vs.map((v) => v.invariant))];

describe('SEV-SNP invariants: good examples', () => {
  test('a launch, a private pre-fault, a punch and teardown break none', () => {
    const { h, gmem, vcpu, check } = launched();
    const pf = h.kvmPreFaultMemory(vcpu, GPA + 2n * PAGE, PAGE, 0n);
    assert.equal(pf.errno, undefined);
    assert.deepEqual(check(), []);
    assert.ok(h.fallocate(gmem, 3, 0n, PAGE).ok);
    assert.deepEqual(check(), []);
    assert.ok(h.close(gmem).ok);
    assert.ok(h.close(vcpu).ok);
    assert.deepEqual(check(), []);
  });
  test('the SNP invariants apply to linux-6.18-snp only', () => {
    const snp = new InvariantChecker(new Host(getProfile('linux-6.18-snp')!, { parts: ALL_PARTS }));
    const plain = new InvariantChecker(new Host(getProfile('linux-6.18')!, { parts: ALL_PARTS }));
    for (const n of SNP_INVARIANTS) {
      assert.ok(
        snp.invariants.some((i) => i.name === n),
        n,
      );
      assert.ok(!plain.invariants.some((i) => i.name === n), n);
    }
  });
});

describe('SEV-SNP guest: real runs break no invariant', () => {
  test('a memslot re-bound at another GPA: the prepared page keeps its GPA, the guest spins on it', () => {
    const { h, vm, vmFd, gmem, vcpu, check } = launched();
    const rmp = h.platform.sevSnp!.rmp;
    const NEW = 0x8000_0000n;
    // The launched page at index 0: assigned at GPA, validated, mapped by the guest's load.
    let r = h.kvmRun(vcpu, [guestLoad(GPA, 4, true)]);
    assert.equal(r.errno, undefined);
    const pfn = vm.stage2[0]!.get(Number(GPA / PAGE))!.base as Pfn;
    const region = (gpa: bigint, size: bigint, ua: bigint) => ({
      slot: 0n,
      flags: 4n,
      guest_phys_addr: gpa,
      memory_size: size,
      userspace_addr: ua,
      guest_memfd_offset: 0n,
    });
    // The VMM deletes the memslot and binds the same guest_memfd range at NEW.
    const ua = okv(h.mmap(null, 4n * PAGE, 3, 0x22, 0n), 'mmap');
    assert.ok(h.kvmSetUserMemoryRegion(vmFd, region(GPA, 0n, ua), gmem, false).ok);
    assert.ok(h.kvmSetUserMemoryRegion(vmFd, region(NEW, 4n * PAGE, ua), gmem, false).ok);
    assert.ok(
      h.kvmSetMemoryAttributes(vmFd, { address: NEW, size: 4n * PAGE, attributes: 8n, flags: 0n })
        .ok,
    );
    assert.deepEqual(check(), []);
    // The guest's private load at NEW: kvm_gmem_get_pfn() finds the folio up to date (no
    // sev_gmem_prepare()), KVM maps it at NEW, the RMP check fails (GPA mismatch), and
    // sev_handle_rmp_fault() leaves the 4K entry alone: the access faults forever (EINTR when
    // the VMM's signal ends KVM_RUN).
    r = h.kvmRun(vcpu, [guestLoad(NEW, 4, true)]);
    assert.equal(r.errno, 'EINTR');
    assert.equal(vm.stage2[0]!.get(Number(NEW / PAGE))?.base, pfn);
    const e = rmp.lookup(pfn);
    assert.deepEqual([e.assigned, e.gpa, e.validated], [true, GPA, true]);
    // Neither the mapping nor the stale entry breaks an invariant (snp-rmp-owner included).
    assert.deepEqual(check(), []);
    // PVALIDATE at NEW faults the same way.
    r = h.kvmRun(vcpu, [{ kind: 'pvalidate', gpa: NEW, size: '4K', validate: true }]);
    assert.equal(r.errno, 'EINTR');
    // The VMM discards the page: sev_gmem_invalidate() makes it shared; the next fault prepares
    // a fresh page at NEW, which the guest must validate before it uses it.
    assert.ok(h.fallocate(gmem, 3, 0n, PAGE).ok);
    assert.deepEqual(check(), []);
    r = h.kvmRun(vcpu, [
      { kind: 'pvalidate', gpa: NEW, size: '4K', validate: true },
      guestStore(NEW, new Uint8Array([1, 2, 3, 4]), true),
    ]);
    assert.equal(r.errno, undefined, String(r.errno) + r.exits.map((x) => x.reason).join(','));
    const f = vm.stage2[0]!.get(Number(NEW / PAGE))!.base as Pfn;
    assert.deepEqual([rmp.lookup(f).assigned, rmp.lookup(f).gpa], [true, NEW]);
    assert.deepEqual(check(), []);
  });
  test('private loads of launched pages, PVALIDATE of a fresh page, NOUPDATE, #VC', () => {
    const { h, vcpu, check } = launched();
    // A launched (validated) page: a private load completes.
    let r = h.kvmRun(vcpu, [guestLoad(GPA, 4, true)]);
    assert.equal(r.errno, undefined, String(r.errno) + r.exits.map((e) => e.reason).join(','));
    assert.deepEqual(check(), []);
    // Validating it again is NOUPDATE (CF = 1).
    r = h.kvmRun(vcpu, [{ kind: 'pvalidate', gpa: GPA, size: '4K', validate: true }]);
    assert.deepEqual(
      r.exits.find((e) => e.reason === 'PVALIDATE'),
      { reason: 'PVALIDATE', gpa: GPA, ret: 0, cf: 1 },
    );
    assert.deepEqual(check(), []);
    // A page never added: the first private store faults it in unvalidated → #VC.
    r = h.kvmRun(vcpu, [guestStore(GPA + 2n * PAGE, new Uint8Array(4), true)]);
    assert.ok(
      r.exits.some((e) => e.reason === 'VC'),
      r.exits.map((e) => e.reason).join(','),
    );
    assert.deepEqual(check(), []);
  });
});

describe('SEV-SNP invariants: bad examples', () => {
  test('snp-rmp-owner: a private access completed at a GPA its RMP entry does not name, or anon memory assigned', () => {
    const { h, vm, vcpu, check } = launched();
    const rmp = h.platform.sevSnp!.rmp;
    // A private pre-fault assigns and maps gfn 0x40002 (sev_gmem_prepare)...
    assert.equal(h.kvmPreFaultMemory(vcpu, GPA + 2n * PAGE, PAGE, 0n).errno, undefined);
    assert.deepEqual(check(), []);
    const run = rmp.dump().find((x) => x.entry.gpa === GPA + 2n * PAGE)!;
    // ...then its entry is rewritten with another GPA (an RMPUPDATE with the wrong gfn). The
    // state alone is no violation: the CPU's RMP check stops the guest's access there.
    assert.equal(rmp.makeShared(run.start, '4K'), 0);
    assert.equal(
      rmp.makePrivate(run.start, GPA + 3n * PAGE, '4K', toKvmSevInfo(vm).asid, false),
      0,
    );
    assert.deepEqual(check(), []);
    const r = h.kvmRun(vcpu, [guestLoad(GPA + 2n * PAGE, 4, true)]);
    assert.equal(r.errno, 'EINTR');
    assert.deepEqual(check(), []);
    // A CPU that let the access complete (what the access path reports on completion).
    // (RMPUPDATE cleared the validated bit too: snp-guest-validated reports that.)
    h.snpGuestObserver!.access(vm, Number((GPA + 2n * PAGE) / PAGE), run.start, false);
    const v = check().filter((x) => x.invariant === 'snp-rmp-owner');
    assert.equal(v.length, 1);
    assert.match(
      v[0]!.message,
      /private guest load at gfn 0x40002 completed on frame 0x[0-9a-f]+, whose RMP entry says GPA 0x40003000/,
    );
    // A frame of the VMM's anonymous memory assigned to the guest.
    const anon = [...h.mm.anon.entries()][0]!.value.base as Pfn;
    assert.equal(rmp.makePrivate(anon, 0n, '4K', toKvmSevInfo(vm).asid, false), 0);
    assert.match(
      check()
        .map((x) => x.message)
        .join('\n'),
      /anonymous memory at host page/,
    );
  });
  test('snp-no-host-write: a VMM write the platform let through to an assigned frame', () => {
    const { h, check } = launched();
    const rmp = h.platform.sevSnp!.rmp;
    const anon = [...h.mm.anon.entries()][0]!;
    // The observer reports what the access found: assigned, not refused.
    h.observe!(anon.value.base as Pfn, true, 'vmm', false);
    assert.deepEqual(check(), []);
    assert.equal(rmp.makePrivate(anon.value.base as Pfn, 0n, '4K', 1, false), 0);
    h.observe!(anon.value.base as Pfn, true, 'vmm', false);
    const v = check().filter((x) => x.invariant === 'snp-no-host-write');
    assert.equal(v.length, 1);
    assert.match(v[0]!.message, /reached a frame assigned to a guest/);
    // Refused writes and reads are fine.
    h.observe!(anon.value.base as Pfn, true, 'vmm', true);
    h.observe!(anon.value.base as Pfn, false, 'vmm', false);
    assert.deepEqual(
      check().filter((x) => x.invariant === 'snp-no-host-write'),
      [],
    );
  });
  test('snp-no-host-write: a 4K assignment without the direct-map split (mutant)', () => {
    const h = new Host(getProfile('linux-6.18-snp')!, {
      parts: ALL_PARTS,
      mutants: ['snp_rmp_no_direct_map_split'],
    });
    const checker = new InvariantChecker(h, ['snp-no-host-write']);
    const pfn = h.frames.allocOne();
    h.platform.sevSnp!.rmp.makePrivate(pfn, 0n, '4K', 1, false);
    const v = checker.check();
    assert.equal(v.length, 1);
    assert.match(v[0]!.message, /never split/);
  });
  test('snp-launch-measured: a page measured that KVM never added, and one after FINISH', () => {
    const { vm, checker } = launched();
    const log = toKvmSevInfo(vm).snpLaunchLog;
    const extra = log.pop()!;
    // (The log is edited behind the change-driven checker's back: check everything.)
    let v = checker.fullCheck();
    assert.deepEqual(names(v), ['snp-launch-measured']);
    assert.match(v[0]!.message, /is not the digest of the 2 page\(s\)/);
    log.push(extra);
    assert.deepEqual(checker.fullCheck(), []);
    const { h: h2, vm: vm2, cmd, src, check: check2 } = launched(['snp_fw_update_after_finish']);
    void h2;
    assert.ok(cmd(SNP_CMD.LAUNCH_UPDATE, packSnpLaunchUpdate(GPA / PAGE + 3n, src, PAGE, 1)));
    v = check2();
    assert.deepEqual(names(v), ['snp-launch-measured']);
    assert.match(v[0]!.message, /1 page\(s\) were measured after SNP_LAUNCH_FINISH/);
    assert.equal(toKvmSevInfo(vm2).snpLaunchLog.length, 4);
  });
  test('snp-launch-measured: faithful, an update after FINISH is refused and measures nothing', () => {
    const { cmd, src, check } = launched();
    assert.ok(!cmd(SNP_CMD.LAUNCH_UPDATE, packSnpLaunchUpdate(GPA / PAGE + 3n, src, PAGE, 1)));
    assert.deepEqual(check(), []);
  });
  test('snp-reclaim-before-reuse: a punched page freed while still assigned (mutant)', () => {
    const { h, gmem, check } = launched(['snp_invalidate_keeps_assigned']);
    assert.ok(h.fallocate(gmem, 3, 0n, PAGE).ok);
    const v = check();
    assert.ok(names(v).includes('snp-reclaim-before-reuse'), JSON.stringify(v));
    assert.match(
      v.find((x) => x.invariant === 'snp-reclaim-before-reuse')!.message,
      /freed while the RMP still assigns it to ASID 1 at GPA 0x40000000/,
    );
  });
  test('snp-guest-validated: a private access that completed on an unvalidated page', () => {
    const { h, vm, vcpu, check } = launched();
    const rmp = h.platform.sevSnp!.rmp;
    // A launched page is validated (LAUNCH_UPDATE): a private load of it is fine.
    const launchedPfn = rmp.dump().find((x) => x.entry.gpa === GPA)!.start;
    h.snpGuestObserver!.access(vm, Number(GPA / PAGE), launchedPfn, false);
    assert.deepEqual(check(), []);
    // A page pre-faulted after the launch is assigned but not validated.
    assert.equal(h.kvmPreFaultMemory(vcpu, GPA + 2n * PAGE, PAGE, 0n).errno, undefined);
    const fresh = rmp.dump().find((x) => x.entry.gpa === GPA + 2n * PAGE)!.start;
    assert.equal(rmp.lookup(fresh).validated, false);
    h.snpGuestObserver!.access(vm, Number(GPA / PAGE) + 2, fresh, true);
    const v = check();
    assert.deepEqual(names(v), ['snp-guest-validated']);
    assert.match(v[0]!.message, /private guest store completed on frame .* has not validated/);
  });
  test('snp-validate-once: a PVALIDATE that validated an already-validated page', () => {
    const { h, vm, check } = launched();
    const rmp = h.platform.sevSnp!.rmp;
    const pfn = rmp.dump().find((x) => x.entry.gpa === GPA)!.start;
    // Validated already: NOUPDATE (CF = 1) is the faithful answer...
    h.snpGuestObserver!.pvalidate(vm, Number(GPA / PAGE), pfn, true, true, 0, 1);
    assert.deepEqual(check(), []);
    // ...a rescind, then a validate, each change the bit once...
    h.snpGuestObserver!.pvalidate(vm, Number(GPA / PAGE), pfn, false, true, 0, 0);
    h.snpGuestObserver!.pvalidate(vm, Number(GPA / PAGE), pfn, true, false, 0, 0);
    assert.deepEqual(check(), []);
    // ...but a second validation reported as a change is a violation.
    h.snpGuestObserver!.pvalidate(vm, Number(GPA / PAGE), pfn, true, true, 0, 0);
    const v = check();
    assert.deepEqual(names(v), ['snp-validate-once']);
    assert.match(v[0]!.message, /validated frame .* again/);
  });
});

/**
 * Found by the model-based fuzzer (linux-6.18-snp, seed 71011677, minimized): in one KVM_RUN the
 * guest stores to a shared page (get_user_pages writes an anonymous frame), asks by PSC
 * descriptor for the range to go private, the VMM converts and discards the shared copy (the
 * frame is freed), and a private load faults the gfn in through guest_memfd, which takes the same
 * frame. The host's write met an anonymous page; only the step's end state shows the frame as
 * private guest_memfd memory.
 */
const REUSED_FRAME_TRACE = [
  '{"op":"KVM_CREATE_VM","fd":"kvm","type":4,"as":"svm9"}',
  '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"svm9","size":32768,"flags":0,"as":"sg11"}',
  '{"op":"mmap","fd":null,"length":32768,"prot":3,"flags":2,"offset":0,"as":"sm12"}',
  '{"op":"mmap","fd":null,"length":4096,"prot":3,"flags":2,"offset":0,"as":"sp13"}',
  '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"svm9","slot":3,"flags":4,"guest_phys_addr":1077936128,"memory_size":32768,"userspace_addr":"sm12","guest_memfd":"sg11","guest_memfd_offset":0}',
  '{"op":"KVM_ENABLE_CAP","fd":"svm9","cap":201,"flags":0,"args":[4096]}',
  '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"svm9","argp":"cmd","id":22,"sev_fd":-1,"data":{"vmsa_features":0,"flags":0,"ghcb_version":2},"data_addr":"sp13"}',
  '{"op":"KVM_CREATE_VCPU","vm":"svm9","id":0,"as":"scpu15"}',
  '{"op":"KVM_RUN","vcpu":"scpu15","guest":[{"store":{"gpa":1077945424,"hex":"0f5da4f7"}},{"psc":{"cur_entry":0,"end_entry":1,"entries":[{"cur_page":0,"gfn":263168,"op":1,"pagesize":1},{"cur_page":0,"gfn":263680,"op":1,"pagesize":0}]}},{"load":{"gpa":1077963830,"size":4,"c":1}}],"map_gpa_range":"convert+discard"}',
].join('\n');

describe('host-no-private-access: a frame freed and reused within one op', () => {
  test('a host write to a frame that is then freed and becomes private in the same KVM_RUN is no violation', () => {
    const r = runChecked(parseTrace(REUSED_FRAME_TRACE).ops, getProfile('linux-6.18-snp')!);
    assert.equal(r.ran, 9);
    assert.deepEqual(r.failures, []);
  });
});
