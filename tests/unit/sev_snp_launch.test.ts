/**
 * gmemlab's own VMM launch plans (src/vmm/snp) driven through the model's KVM SNP flow: the
 * firmware's launch digest after KVM_SEV_SNP_LAUNCH_UPDATE of every planned page and
 * KVM_SEV_SNP_LAUNCH_FINISH with the plan's VMSAs equals the digest the plan gives fed directly
 * (DigestLauncher) and the sev-snp-measure vectors (platforms.md §2.7).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Host } from '../../src/core/host.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { snpGuestContext } from '../../src/core/arch/x86/svm/sev_snp.js';
import { parseFirmwareImage } from '../../src/vmm/snp/ovmf.js';
import { buildSnpLaunchPlan, type SnpLaunchPlan } from '../../src/vmm/snp/launch_plan.js';
import { DigestLauncher, runLaunchPlan } from '../../src/vmm/snp/measure.js';
import { toHex } from '../../src/core/base/crypto/hex.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const AMDSEV = join(ROOT, 'tests/fixtures/sev-snp-measure/ovmf_AmdSev_suffix.bin');
const PAGE = 4096;

function okv<T>(r: { ok: true; value: T } | { ok: false; errno: string }, what: string): T {
  if (!r.ok) assert.fail(`${what}: ${r.errno}`);
  return r.value;
}

/**
 * A VMM on the model: one guest_memfd slot per run of planned pages, PRIVATE attributes,
 * INIT2 (vmsa_features = the plan's SEV_FEATURES without SNP_ACTIVE, which KVM adds),
 * LAUNCH_START, one LAUNCH_UPDATE per page from a staging page, vCPUs with the plan's VMSAs,
 * LAUNCH_FINISH. Returns the firmware's digest; every invariant is checked after every ioctl.
 */
function launchOnModel(plan: SnpLaunchPlan, guestFeatures: bigint): Uint8Array {
  const h = new Host(getProfile('linux-6.18-snp')!);
  const checker = new InvariantChecker(h, undefined, { incremental: false });
  const kvm = h.openDevKvm();
  const sev = okv(h.openDevSev(), 'open /dev/sev');
  const vm = okv(h.kvmCreateVm(kvm, 4n), 'KVM_CREATE_VM');
  const scratch = okv(h.mmap(null, 0x2000n, 3, 0x22, 0n), 'mmap');
  const params = scratch;
  const staging = scratch + 0x1000n;
  const op = (id: number, data: Uint8Array): void => {
    assert.ok(h.poke(params, data).ok);
    const cmd = new Uint8Array(24);
    const dv = new DataView(cmd.buffer);
    dv.setUint32(0, id, true);
    dv.setBigUint64(8, params, true);
    dv.setInt32(20, sev, true);
    const r = h.kvmMemoryEncryptOp(vm, { kind: 'buffer', bytes: cmd });
    assert.ok(r.ok, `command ${id}: ${r.ok ? '' : r.errno} (error ${dv.getUint32(16, true)})`);
    assert.deepEqual(checker.check(), [], `invariants after command ${id}`);
  };
  // The planned pages, as runs of consecutive GPAs.
  const gfns = new Set<number>();
  for (const u of plan.updates)
    for (let off = 0; off < u.len; off += PAGE) gfns.add(Number((u.gpa + BigInt(off)) >> 12n));
  const sorted = [...gfns].sort((a, b) => a - b);
  const runs: Array<{ start: number; n: number }> = [];
  for (const g of sorted) {
    const last = runs.at(-1);
    if (last !== undefined && last.start + last.n === g) last.n++;
    else runs.push({ start: g, n: 1 });
  }
  const total = runs.reduce((a, r) => a + r.n, 0);
  const gmem = okv(h.kvmCreateGuestMemfd(vm, BigInt(total * PAGE), 0n), 'guest_memfd');
  let off = 0;
  runs.forEach((r, i) => {
    const gpa = BigInt(r.start) * 4096n;
    const size = BigInt(r.n * PAGE);
    const uaddr = okv(h.mmap(null, size, 3, 0x22, 0n), 'mmap shared backing');
    okv(
      h.kvmSetUserMemoryRegion(
        vm,
        {
          slot: BigInt(i),
          flags: 4n,
          guest_phys_addr: gpa,
          memory_size: size,
          userspace_addr: uaddr,
          guest_memfd_offset: BigInt(off * PAGE),
        },
        gmem,
        false,
      ),
      'memslot',
    );
    okv(h.kvmSetMemoryAttributes(vm, { address: gpa, size, attributes: 8n, flags: 0n }), 'attrs');
    off += r.n;
  });
  const init2 = new Uint8Array(48);
  new DataView(init2.buffer).setBigUint64(0, guestFeatures & ~1n, true);
  op(22, init2);
  const start = new Uint8Array(64);
  new DataView(start.buffer).setBigUint64(0, 0x30000n, true);
  op(100, start);
  for (const u of plan.updates)
    for (let o = 0; o < u.len; o += PAGE) {
      const page =
        u.contents === undefined ? new Uint8Array(PAGE) : u.contents.subarray(o, o + PAGE);
      assert.ok(h.poke(staging, page).ok);
      const p = new Uint8Array(64);
      const dv = new DataView(p.buffer);
      dv.setBigUint64(0, (u.gpa + BigInt(o)) >> 12n, true);
      dv.setBigUint64(8, staging, true);
      dv.setBigUint64(16, 4096n, true);
      p[24] = u.type;
      op(101, p);
    }
  plan.vmsas.forEach((v, i) => {
    const fd = okv(h.kvmCreateVcpu(vm, BigInt(i)), 'vCPU');
    okv(h.sevSetVcpuVmsa(fd, v), 'VMSA');
  });
  op(102, new Uint8Array(88));
  const vmo = [...h.vms][0]!;
  return snpGuestContext(h, vmo)!.digest.value();
}

describe('SNP launch plans through the model', () => {
  for (const [name, vcpus, features, expected] of [
    [
      'test_snp_without_kernel_default (1 vCPU, 0x21)',
      1,
      0x21n,
      'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
    ],
    ['4 vCPUs, 0x1', 4, 0x1n, undefined],
  ] as const)
    test(name, () => {
      const plan = buildSnpLaunchPlan({
        mode: 'snp',
        ovmf: parseFirmwareImage(readFileSync(AMDSEV)),
        vcpus,
        vcpuSig: 0x800f12n,
        vmm: 'QEMU',
        guestFeatures: features,
      });
      const model = toHex(launchOnModel(plan, features));
      assert.equal(model, toHex(runLaunchPlan(plan, new DigestLauncher())));
      if (expected !== undefined) assert.equal(model, expected);
    });
});
