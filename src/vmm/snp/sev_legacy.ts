/**
 * The launch digests of SEV and SEV-ES guests (no SNP): the firmware's LAUNCH_MEASURE is one
 * SHA-256 over everything LAUNCH_UPDATE_DATA encrypted, in order — the firmware image, then the
 * SEV hash table when a kernel is measured (QEMU copies it into the firmware's hash-table area and
 * encrypts just that table) — and for SEV-ES, then every vCPU's VMSA (LAUNCH_UPDATE_VMSA). The
 * SEV API (#55766) defines the digest; virtee/sev-snp-measure `guest.py` (`sev_calc_launch_digest`,
 * `seves_calc_launch_digest`) computes the same. (The attestation MAC over it, with the mnonce and
 * the TIK, is not part of the digest.)
 *
 * Pure code (no Node APIs).
 */
import { Sha256 } from '../../core/base/crypto/sha256.js';
import {
  FirmwareImageError,
  SEV_HASH_TABLE_RV_GUID,
  sevHashTableArea,
  type FirmwareImage,
} from './ovmf.js';
import { sevHashTable, type SevKernelHashes } from './sev_hashes.js';
import { vmsaPages, type VmmType } from './vmsa.js';

function firmwareAndHashes(ovmf: FirmwareImage, kernel: SevKernelHashes | undefined): Sha256 {
  const h = new Sha256().update(ovmf.bytes);
  if (kernel !== undefined) {
    const area = sevHashTableArea(ovmf);
    if (area === undefined || area.gpa === 0) {
      throw new FirmwareImageError(
        `a kernel is given but the firmware has no SEV hash table area (GUID ${SEV_HASH_TABLE_RV_GUID}` +
          `${area === undefined ? '' : ' gives base 0'}): it does not measure a kernel`,
        ovmf.table.get(SEV_HASH_TABLE_RV_GUID)?.offset ?? ovmf.footerOffset,
        'ovmf',
      );
    }
    h.update(sevHashTable(kernel));
  }
  return h;
}

/** The SEV launch digest: SHA-256(firmware ‖ SEV hash table if a kernel is measured). */
export function sevLaunchDigest(
  ovmf: FirmwareImage,
  kernel: SevKernelHashes | undefined,
): Uint8Array {
  return firmwareAndHashes(ovmf, kernel).digest();
}

/** The SEV-ES launch digest: the SEV one's input, then every vCPU's VMSA (SEV features 0). */
export function sevEsLaunchDigest(
  ovmf: FirmwareImage,
  kernel: SevKernelHashes | undefined,
  o: { vcpus: number; vcpuSig: bigint; vmm: VmmType; apEip: number },
): Uint8Array {
  const h = firmwareAndHashes(ovmf, kernel);
  if (o.vcpus > 1 && o.apEip === 0) {
    throw new FirmwareImageError(
      'the SEV-ES reset block gives AP reset EIP 0: the APs have nowhere to start',
      undefined,
      'ovmf',
    );
  }
  for (const v of vmsaPages(o.vcpus, o.apEip, { sevFeatures: 0n, vcpuSig: o.vcpuSig, vmm: o.vmm }))
    h.update(v);
  return h.digest();
}
