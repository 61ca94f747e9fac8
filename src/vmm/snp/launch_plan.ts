/**
 * The VMM's side of an SEV-SNP launch: the ordered KVM_SEV_SNP_LAUNCH_UPDATE calls a VMM issues
 * for a firmware image and its options, and the VMSA pages KVM measures at
 * KVM_SEV_SNP_LAUNCH_FINISH, returned as data (nothing is measured here: measure.ts runs a plan
 * through an SnpLauncher).
 *
 * The sequence is QEMU's (`target/i386/sev.c`: the flash is added as NORMAL pages when it is
 * mapped, `sev_encrypt_flash`; then `snp_populate_metadata_pages` walks the OVMF SEV metadata in
 * file order; then `sev_snp_launch_finish` → KVM measures each vCPU's VMSA), with the variants of
 * AWS EC2 (CPUID pages added after every other metadata section) and Google GCE (SNP_SEC_MEM
 * added UNMEASURED instead of ZERO) that virtee/sev-snp-measure `guest.py` reproduces:
 *
 *   1. the firmware image as NORMAL pages at 4 GiB - size (skipped when the digest is seeded with
 *      a precomputed firmware digest, `--snp-ovmf-hash`); with an SVSM, then the SVSM image as
 *      NORMAL pages ending `varsSize` bytes below the firmware;
 *   2. the metadata sections (the SVSM's when there is one), each over its whole size:
 *      SNP_SEC_MEM → ZERO (GCE: UNMEASURED), SNP_SECRETS → SECRETS, CPUID → CPUID (EC2: last),
 *      SVSM_CAA → ZERO, SNP_KERNEL_HASHES → NORMAL pages holding the SEV hash table at the offset
 *      of the firmware's hash-table area in its page (QEMU `snp_launch_update_kernel_hashes`), or
 *      ZERO pages without a kernel;
 *   3. one VMSA per vCPU, in vCPU-index order.
 *
 * Pure code (no Node APIs).
 */
import { SNP_PAGE_TYPE, type SnpPageType } from '../../core/platform/sev_snp/launch_digest.js';
import {
  FirmwareImageError,
  OVMF_SEV_METADATA_GUID,
  SEV_HASH_TABLE_RV_GUID,
  SEV_SECTION,
  SEV_SECTION_NAME,
  sevEsResetEip,
  sevHashTableArea,
  svsmEntryOffset,
  type FirmwareImage,
  type SevMetadataSection,
} from './ovmf.js';
import { SEV_PADDED_HASH_TABLE_SIZE, sevHashTable, type SevKernelHashes } from './sev_hashes.js';
import { svsmVmsaPage, vmsaPages, type VmmType } from './vmsa.js';

const PAGE = 4096;
const FOUR_GIB = 0x1_0000_0000;

/** One KVM_SEV_SNP_LAUNCH_UPDATE: `len / 4096` pages of one type from `gpa` on. */
export interface SnpLaunchUpdate {
  readonly gpa: bigint;
  readonly type: SnpPageType;
  /** Bytes covered, a multiple of 4096. */
  readonly len: number;
  /** The pages' contents (`len` bytes; a view into the image, not a copy) for NORMAL pages. */
  readonly contents?: Uint8Array;
  /** What the VMM adds, for traces: 'OVMF', 'SVSM', 'SNP_SEC_MEM', 'kernel hashes', … */
  readonly what: string;
}

export interface SnpLaunchPlan {
  readonly updates: readonly SnpLaunchUpdate[];
  /** The VMSA pages in vCPU-index order (APs may share one buffer). */
  readonly vmsas: readonly Uint8Array[];
}

export type SnpMode = 'snp' | 'snp:ovmf-hash' | 'snp:svsm';

export interface SnpLaunchOptions {
  readonly mode: SnpMode;
  /** The firmware (OVMF) image. */
  readonly ovmf: FirmwareImage;
  readonly vcpus: number;
  /** The CPUID signature in RDX (QEMU and SVSM; EC2 and GCE put their own). */
  readonly vcpuSig: bigint | undefined;
  readonly vmm: VmmType;
  /** SEV_FEATURES of every VMSA (not for the SVSM, whose VMSAs have 0x1). */
  readonly guestFeatures: bigint;
  /** Measured direct boot: the hashes of `--kernel`, `--initrd`, `--append`. */
  readonly kernelHashes?: SevKernelHashes;
  /** The digest is seeded with the firmware's (`--snp-ovmf-hash`): skip the firmware pages. */
  readonly firmwareMeasured?: boolean;
  /** The SVSM image and the size of the firmware's variable store below the firmware. */
  readonly svsm?: { readonly image: FirmwareImage; readonly varsSize: number };
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

/** Where a firmware image of this size sits: its last byte at 4 GiB - 1. */
function imageGpa(img: FirmwareImage, end: number, name: string): number {
  const size = img.bytes.length;
  if (size === 0 || size % PAGE !== 0) {
    throw new FirmwareImageError(
      `image is ${size} bytes, not a positive multiple of 4096 (it is added page by page)`,
      undefined,
      name,
    );
  }
  if (size > end) {
    throw new FirmwareImageError(
      `image is ${size} bytes: it does not fit below ${hex(end)}`,
      undefined,
      name,
    );
  }
  return end - size;
}

/** The ordered LAUNCH_UPDATE calls and the VMSAs of an SNP launch with these options. */
export function buildSnpLaunchPlan(o: SnpLaunchOptions): SnpLaunchPlan {
  const updates: SnpLaunchUpdate[] = [];
  const ovmfGpa = imageGpa(o.ovmf, FOUR_GIB, 'ovmf');
  if (o.firmwareMeasured !== false || o.mode === 'snp:ovmf-hash') {
    updates.push({
      gpa: BigInt(ovmfGpa),
      type: SNP_PAGE_TYPE.NORMAL,
      len: o.ovmf.bytes.length,
      contents: o.ovmf.bytes,
      what: 'OVMF',
    });
  }
  if (o.mode === 'snp:ovmf-hash') return { updates, vmsas: [] };

  if (o.mode === 'snp:svsm') {
    if (o.svsm === undefined) throw new RangeError('snp:svsm needs an SVSM image');
    const { image, varsSize } = o.svsm;
    if (varsSize % PAGE !== 0 || varsSize > ovmfGpa) {
      throw new RangeError(
        `the variable store size ${varsSize} must be a multiple of 4096 and fit below the ` +
          `firmware at ${hex(ovmfGpa)}`,
      );
    }
    const svsmGpa = imageGpa(image, ovmfGpa - varsSize, 'svsm');
    updates.push({
      gpa: BigInt(svsmGpa),
      type: SNP_PAGE_TYPE.NORMAL,
      len: image.bytes.length,
      contents: image.bytes,
      what: 'SVSM',
    });
    addMetadataSections(updates, image, 'svsm', 'QEMU', undefined);
    const entry = svsmEntryOffset(image) + svsmGpa;
    const vcpuSig = o.vcpuSig ?? 0n;
    const page = svsmVmsaPage(entry, vcpuSig);
    return { updates, vmsas: Array.from({ length: o.vcpus }, () => page) };
  }

  addMetadataSections(updates, o.ovmf, 'ovmf', o.vmm, o.kernelHashes);
  const apEip = sevEsResetEip(o.ovmf);
  if (o.vcpus > 1 && apEip === 0) {
    throw new FirmwareImageError(
      'the SEV-ES reset block gives AP reset EIP 0: the APs have nowhere to start',
      o.ovmf.table.get('00f771de-1a7e-4fcb-890e-68c77e2fb44e')?.offset,
      'ovmf',
    );
  }
  if (o.vmm === 'QEMU' && o.vcpuSig === undefined) {
    throw new RangeError('a QEMU VMSA needs the vCPU signature (--vcpu-type, --vcpu-sig, …)');
  }
  const vmsas = vmsaPages(o.vcpus, apEip, {
    sevFeatures: o.guestFeatures,
    vcpuSig: o.vcpuSig ?? 0n,
    vmm: o.vmm,
  });
  return { updates, vmsas };
}

/** Step 2: the metadata sections, in file order (EC2: CPUID sections after all others). */
function addMetadataSections(
  updates: SnpLaunchUpdate[],
  img: FirmwareImage,
  name: string,
  vmm: VmmType,
  kernel: SevKernelHashes | undefined,
): void {
  const sections = img.sevMetadata;
  if (sections === undefined) {
    throw new FirmwareImageError(
      `no SEV metadata (GUID ${OVMF_SEV_METADATA_GUID}) in the ${img.hasFooterTable ? 'OVMF footer table' : 'image (it has no OVMF footer table)'}: ` +
        'the VMM cannot tell which pages to add (QEMU: "Failed to locate SEV metadata header")',
      img.footerOffset,
      name,
    );
  }
  if (kernel !== undefined && !sections.some((s) => s.type === SEV_SECTION.SNP_KERNEL_HASHES)) {
    throw new FirmwareImageError(
      "a kernel is given but the firmware's SEV metadata has no SNP_KERNEL_HASHES section " +
        '(this firmware does not measure a kernel: build OvmfPkg/AmdSev)',
      img.table.get(OVMF_SEV_METADATA_GUID)?.offset,
      name,
    );
  }
  const cpuidLast: SnpLaunchUpdate[] = [];
  for (const s of sections) {
    checkSection(s, name);
    const base = { gpa: BigInt(s.gpa), len: s.size };
    const label = SEV_SECTION_NAME[s.type]!;
    switch (s.type) {
      case SEV_SECTION.SNP_SEC_MEM:
        updates.push({
          ...base,
          type: vmm === 'gce' ? SNP_PAGE_TYPE.UNMEASURED : SNP_PAGE_TYPE.ZERO,
          what: label,
        });
        break;
      case SEV_SECTION.SNP_SECRETS:
        updates.push({ ...base, type: SNP_PAGE_TYPE.SECRETS, what: label });
        break;
      case SEV_SECTION.CPUID:
        (vmm === 'ec2' ? cpuidLast : updates).push({
          ...base,
          type: SNP_PAGE_TYPE.CPUID,
          what: label,
        });
        break;
      case SEV_SECTION.SVSM_CAA:
        updates.push({ ...base, type: SNP_PAGE_TYPE.ZERO, what: label });
        break;
      case SEV_SECTION.SNP_KERNEL_HASHES:
        updates.push(
          kernel === undefined
            ? { ...base, type: SNP_PAGE_TYPE.ZERO, what: label }
            : {
                ...base,
                type: SNP_PAGE_TYPE.NORMAL,
                contents: kernelHashesContents(img, s, kernel, name),
                what: 'kernel hashes',
              },
        );
        break;
    }
  }
  updates.push(...cpuidLast);
}

function checkSection(s: SevMetadataSection, name: string): void {
  const what = `SEV metadata section ${s.index}`;
  if (SEV_SECTION_NAME[s.type] === undefined) {
    throw new FirmwareImageError(
      `${what}: unknown type ${hex(s.type)} (known: 1 SNP_SEC_MEM, 2 SNP_SECRETS, 3 CPUID, ` +
        '4 SVSM_CAA, 0x10 SNP_KERNEL_HASHES)',
      s.offset + 8,
      name,
    );
  }
  if (s.gpa % PAGE !== 0) {
    throw new FirmwareImageError(
      `${what} (${SEV_SECTION_NAME[s.type]}): GPA ${hex(s.gpa)} is not page-aligned`,
      s.offset,
      name,
    );
  }
  if (s.size === 0 || s.size % PAGE !== 0) {
    throw new FirmwareImageError(
      `${what} (${SEV_SECTION_NAME[s.type]}): size ${hex(s.size)} is not a positive multiple of 4096`,
      s.offset + 4,
      name,
    );
  }
}

/**
 * The SNP_KERNEL_HASHES section's contents: zeros with the SEV hash table at the offset of the
 * firmware's hash-table area within its page (QEMU `sev_snp_build_kernel_loader_hashes`:
 * `kernel_hashes_offset = area->base & ~TARGET_PAGE_MASK`).
 */
function kernelHashesContents(
  img: FirmwareImage,
  s: SevMetadataSection,
  kernel: SevKernelHashes,
  name: string,
): Uint8Array {
  const area = sevHashTableArea(img);
  const entryOffset = img.table.get(SEV_HASH_TABLE_RV_GUID)?.offset;
  if (area === undefined) {
    throw new FirmwareImageError(
      `a kernel is given but the firmware has no SEV hash table area (GUID ${SEV_HASH_TABLE_RV_GUID})`,
      img.footerOffset,
      name,
    );
  }
  // QEMU sev_add_kernel_loader_hashes: "SEV: guest firmware hashes table area is invalid".
  if (area.gpa === 0 || area.size < SEV_PADDED_HASH_TABLE_SIZE) {
    throw new FirmwareImageError(
      `the SEV hash table area (GUID ${SEV_HASH_TABLE_RV_GUID}) is invalid: base ${hex(area.gpa)}, ` +
        `size ${area.size} (needs a base and at least ${SEV_PADDED_HASH_TABLE_SIZE} bytes)`,
      entryOffset,
      name,
    );
  }
  const offset = area.gpa % PAGE;
  if (offset + SEV_PADDED_HASH_TABLE_SIZE > s.size) {
    throw new FirmwareImageError(
      `the SEV hash table at page offset ${hex(offset)} does not fit in the ` +
        `SNP_KERNEL_HASHES section of ${s.size} bytes`,
      entryOffset,
      name,
    );
  }
  const contents = new Uint8Array(s.size);
  contents.set(sevHashTable(kernel), offset);
  return contents;
}

/** The number of pages a plan measures (LAUNCH_UPDATE pages, then VMSAs). */
export function planPageCount(plan: SnpLaunchPlan): number {
  let n = plan.vmsas.length;
  for (const u of plan.updates) n += u.len / PAGE;
  return n;
}
