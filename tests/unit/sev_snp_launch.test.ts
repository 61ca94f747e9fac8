/**
 * gmemlab's own VMM launch plans (src/vmm/snp) driven through the model's KVM SNP flow by
 * ModelLauncher (src/vmm/snp/model_launcher.ts, the engine of `gmemlab measure snp`): the
 * firmware's launch digest after KVM_SEV_SNP_LAUNCH_UPDATE of every planned run and
 * KVM_SEV_SNP_LAUNCH_FINISH with the plan's VMSAs equals the digest the plan gives fed directly
 * (DigestLauncher, the cross-check) and the sev-snp-measure vectors (platforms.md §2.7), with every
 * invariant checked after every KVM call; the firmware's log is the DigestLauncher's trace.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { parseFirmwareImage, type FirmwareImage } from '../../src/vmm/snp/ovmf.js';
import { buildSnpLaunchPlan, type SnpLaunchPlan } from '../../src/vmm/snp/launch_plan.js';
import { DigestLauncher, runLaunchPlan, type SnpMeasuredPage } from '../../src/vmm/snp/measure.js';
import {
  ModelLaunchError,
  ModelLauncher,
  modelLayoutFor,
  QEMU_DEFAULT_RAM,
} from '../../src/vmm/snp/model_launcher.js';
import { kernelHashes } from '../../src/vmm/snp/sev_hashes.js';
import type { VmmType } from '../../src/vmm/snp/vmsa.js';
import { toHex } from '../../src/core/base/crypto/hex.js';
import { AMDSEV, OVMFX64, SVSM, SVSM_OVMF } from './snp_fixtures.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { snapshot } from '../../src/core/inspect.js';

/** Run `plan` on the model with every invariant checked after every KVM call. */
function launchOnModel(
  plan: SnpLaunchPlan,
  ovmf: FirmwareImage,
  guestFeatures: bigint,
): { digest: Uint8Array; launcher: ModelLauncher } {
  let checker: InvariantChecker | undefined;
  const launcher = new ModelLauncher({
    guestFeatures,
    layout: modelLayoutFor(plan, ovmf.bytes.length),
    afterCall: (h, what) => {
      checker ??= new InvariantChecker(h, undefined, { incremental: false });
      assert.deepEqual(checker.check(), [], `invariants after ${what}`);
    },
  });
  return { digest: runLaunchPlan(plan, launcher), launcher };
}

/** The plan's digest both ways; the model's trace equals the direct chain's. */
function bothWays(plan: SnpLaunchPlan, ovmf: FirmwareImage, features: bigint): string {
  const direct: SnpMeasuredPage[] = [];
  const want = toHex(runLaunchPlan(plan, new DigestLauncher({ trace: (p) => direct.push(p) })));
  const { digest, launcher } = launchOnModel(plan, ovmf, features);
  assert.equal(toHex(digest), want);
  const log = launcher.measuredPages();
  assert.equal(log.length, direct.length);
  log.forEach((p, i) => {
    const d = direct[i]!;
    assert.equal(p.index, d.index);
    assert.equal(p.gpa, d.gpa);
    assert.equal(p.type, d.type);
    assert.equal(toHex(p.contentsHash), toHex(d.contentsHash), `page ${i} contents`);
    assert.equal(toHex(p.digest), toHex(d.digest), `page ${i} digest`);
  });
  return want;
}

describe('SNP launch plans through the model (ModelLauncher)', () => {
  test('test_snp_without_kernel_default (1 vCPU, 0x21): e1e1ca02...', () => {
    const ovmf = parseFirmwareImage(readFileSync(AMDSEV));
    const plan = buildSnpLaunchPlan({
      mode: 'snp',
      ovmf,
      vcpus: 1,
      vcpuSig: 0x800f12n,
      vmm: 'QEMU',
      guestFeatures: 0x21n,
    });
    assert.equal(
      bothWays(plan, ovmf, 0x21n),
      'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
    );
  });

  // Every combination the measure vectors use: both OVMF fixtures, the three VMMs, with and
  // without measured direct boot (the AmdSev build only: OvmfX64 has no kernel-hashes page), SNP
  // alone and with DebugSwap, 1 and 4 vCPUs.
  for (const file of [AMDSEV, OVMFX64])
    for (const vmm of ['QEMU', 'ec2', 'gce'] as VmmType[])
      for (const kernel of file === AMDSEV ? [false, true] : [false])
        for (const [features, vcpus] of [
          [0x1n, 1],
          [0x21n, 4],
        ] as const)
          test(`${file.split('/').at(-1)} ${vmm} kernel=${kernel} features=0x${features.toString(16)} vcpus=${vcpus}`, () => {
            const ovmf = parseFirmwareImage(readFileSync(file));
            const plan = buildSnpLaunchPlan({
              mode: 'snp',
              ovmf,
              vcpus,
              vcpuSig: 0x800f12n,
              vmm,
              guestFeatures: features,
              kernelHashes: kernel
                ? kernelHashes(new Uint8Array(0), new Uint8Array(0), 'console=ttyS0')
                : undefined,
            });
            bothWays(plan, ovmf, features);
          });

  test('snp:ovmf-hash (firmware pages only, no vCPU) and snp:svsm', (t) => {
    const ovmf = parseFirmwareImage(readFileSync(AMDSEV));
    const fw = buildSnpLaunchPlan({
      mode: 'snp:ovmf-hash',
      ovmf,
      vcpus: 0,
      vcpuSig: undefined,
      vmm: 'QEMU',
      guestFeatures: 1n,
    });
    assert.equal(
      bothWays(fw, ovmf, 1n),
      '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74',
    );
    if (!existsSync(SVSM) || !existsSync(SVSM_OVMF)) {
      t.skip('SVSM fixtures absent');
      return;
    }
    const image = parseFirmwareImage(readFileSync(SVSM));
    const sovmf = parseFirmwareImage(readFileSync(SVSM_OVMF));
    const plan = buildSnpLaunchPlan({
      mode: 'snp:svsm',
      ovmf: sovmf,
      vcpus: 2,
      vcpuSig: 0x800f12n,
      vmm: 'QEMU',
      guestFeatures: 0x21n,
      svsm: { image, varsSize: 540672 },
    });
    bothWays(plan, sovmf, 1n);
  });

  test('layout: QEMU default RAM, the flash region ends at 4 GiB', () => {
    const ovmf = parseFirmwareImage(readFileSync(AMDSEV));
    const plan = buildSnpLaunchPlan({
      mode: 'snp',
      ovmf,
      vcpus: 1,
      vcpuSig: 0x800f12n,
      vmm: 'QEMU',
      guestFeatures: 1n,
    });
    assert.deepEqual(modelLayoutFor(plan, ovmf.bytes.length), {
      ramSize: QEMU_DEFAULT_RAM,
      flashBase: 0x1_0000_0000n - BigInt(ovmf.bytes.length),
    });
    const high = { updates: [{ gpa: 0x900_1000n, type: 3, len: 4096, what: 'x' }], vmsas: [] };
    assert.equal(modelLayoutFor(high as SnpLaunchPlan, 4096).ramSize, 0x920_0000n);
  });

  test('features KVM refuses: INIT2 is EINVAL, named', () => {
    assert.throws(
      () =>
        new ModelLauncher({
          guestFeatures: 0x3n,
          layout: { ramSize: QEMU_DEFAULT_RAM, flashBase: 0xffe0_0000n },
        }),
      (e: unknown) => e instanceof ModelLaunchError && /KVM_SEV_INIT2: EINVAL/.test(e.message),
    );
  });

  test('the inspection snapshot shows the guest context and the RMP', () => {
    const ovmf = parseFirmwareImage(readFileSync(AMDSEV));
    const plan = buildSnpLaunchPlan({
      mode: 'snp',
      ovmf,
      vcpus: 2,
      vcpuSig: 0x800f12n,
      vmm: 'QEMU',
      guestFeatures: 1n,
    });
    const { digest, launcher } = launchOnModel(plan, ovmf, 1n);
    const s = snapshot(launcher.host);
    const snp = s.sevSnp!;
    assert.equal(snp.guests.length, 1);
    const g = snp.guests[0]!;
    assert.equal(g.state, 'RUNNING');
    assert.equal(g.launchDigest, toHex(digest));
    assert.equal(g.measuredPages, launcher.measuredPages().length);
    assert.ok(g.asid > 0);
    assert.equal(g.vm, 0);
    // Every measured frame is assigned to the guest's ASID (two VMSAs among them).
    const assigned = snp.rmp.filter((r) => r.assigned).reduce((a, r) => a + (r.end - r.start), 0);
    assert.equal(assigned, launcher.measuredPages().length);
    assert.equal(
      snp.rmp.filter((r) => r.vmsa).reduce((a, r) => a + (r.end - r.start), 0),
      2,
    );
  });
});
