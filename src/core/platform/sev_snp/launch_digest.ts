/**
 * The AMD SEV-SNP firmware's launch digest: the hash chain the PSP extends on every page measured
 * by SNP_LAUNCH_UPDATE between SNP_LAUNCH_START and SNP_LAUNCH_FINISH, and that the guest's
 * attestation report carries as MEASUREMENT.
 *
 * Sources of the layout: AMD "SEV Secure Nested Paging Firmware ABI Specification" (#56860),
 * SNP_LAUNCH_UPDATE ("the firmware ... calculates the new launch digest as SHA-384 of the
 * PAGE_INFO structure") and the PAGE_INFO table; cross-checked with virtee/sev-snp-measure
 * `sevsnpmeasure/gctx.py` (class GCTX, `_update`), and with the vectors of
 * shared/spec/platforms.md §2.6/§2.7.
 *
 * PAGE_INFO (0x70 bytes), LD' = SHA-384(PAGE_INFO):
 *   0x00 DIGEST_CUR[48]  the launch digest so far (48 zero bytes after SNP_LAUNCH_START)
 *   0x30 CONTENTS[48]    SHA-384 of the 4 KiB page for NORMAL and VMSA pages; zeros otherwise
 *   0x60 LENGTH u16      0x70
 *   0x62 PAGE_TYPE u8    NORMAL 1, VMSA 2, ZERO 3, UNMEASURED 4, SECRETS 5, CPUID 6
 *   0x63 IMI_PAGE u8     0 (1 only for a migration agent's pages)
 *   0x64 VMPL3_PERMS, 0x65 VMPL2_PERMS, 0x66 VMPL1_PERMS u8   0 (launch pages carry none)
 *   0x67 reserved u8
 *   0x68 GPA u64         the page's guest-physical address (RMP.GPA; KVM's VMSA pages use
 *                        INITIAL_VMSA_GPA 0xFFFFFFFFF000), little-endian
 */
import { sha384 } from '../../base/crypto/sha384.js';
import { toHex } from '../../base/crypto/hex.js';

/** SNP_LAUNCH_UPDATE page types (SNP ABI, PAGE_TYPE; linux `KVM_SEV_SNP_PAGE_TYPE_*`). */
export const SNP_PAGE_TYPE = {
  NORMAL: 1,
  VMSA: 2,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
} as const;
export type SnpPageType = (typeof SNP_PAGE_TYPE)[keyof typeof SNP_PAGE_TYPE];

/** The page-type names, by value (for traces and errors). */
export const SNP_PAGE_TYPE_NAME: Readonly<Record<SnpPageType, string>> = {
  1: 'NORMAL',
  2: 'VMSA',
  3: 'ZERO',
  4: 'UNMEASURED',
  5: 'SECRETS',
  6: 'CPUID',
};

/** KVM's GPA for every vCPU's VMSA page in the digest (linux sev.c `INITIAL_VMSA_GPA`). */
export const SNP_INITIAL_VMSA_GPA = 0xfffffffff000n;

export const SNP_LD_SIZE = 48;
const PAGE_INFO_SIZE = 0x70;
const PAGE_SIZE = 4096;
const ZERO_HASH = new Uint8Array(SNP_LD_SIZE);

/** Whether the firmware hashes the page's contents into PAGE_INFO.CONTENTS for this type. */
export function snpPageTypeMeasuresContents(type: SnpPageType): boolean {
  return type === SNP_PAGE_TYPE.NORMAL || type === SNP_PAGE_TYPE.VMSA;
}

function isPageType(t: number): t is SnpPageType {
  return Number.isInteger(t) && t >= 1 && t <= 6;
}

/** The launch digest of one guest context, extended one LAUNCH_UPDATE page at a time. */
export class SnpLaunchDigest {
  /** PAGE_INFO under construction; bytes 0..47 always hold the current digest. */
  private readonly info = new Uint8Array(PAGE_INFO_SIZE);
  private readonly view = new DataView(this.info.buffer);

  /**
   * `initial`: a digest to continue from (48 bytes, e.g. `--snp-ovmf-hash`); default zeros.
   * `hash`: the one-shot SHA-384 it runs (default core/base/crypto's; a host may pass a native one).
   */
  constructor(
    initial?: Uint8Array,
    private readonly hash: (bytes: Uint8Array) => Uint8Array = sha384,
  ) {
    if (initial !== undefined) {
      if (initial.length !== SNP_LD_SIZE) {
        throw new RangeError(
          `SNP launch digest seed must be ${SNP_LD_SIZE} bytes, got ${initial.length}`,
        );
      }
      this.info.set(initial, 0);
    }
  }

  /**
   * One LAUNCH_UPDATE of a 4 KiB page (SNP_LAUNCH_UPDATE with PAGE_SIZE 4K): `contents` are hashed
   * for NORMAL and VMSA pages and must then be 4096 bytes; for the other types the firmware
   * measures no contents and `contents` is ignored (it may be undefined).
   */
  update(type: SnpPageType, gpa: bigint, contents: Uint8Array | undefined): void {
    if (snpPageTypeMeasuresContents(type)) {
      if (contents === undefined || contents.length !== PAGE_SIZE) {
        throw new RangeError(
          `SNP LAUNCH_UPDATE of a ${SNP_PAGE_TYPE_NAME[type]} page needs 4096 bytes of contents, ` +
            `got ${contents === undefined ? 'none' : contents.length}`,
        );
      }
      this.extend(type, gpa, this.hash(contents));
    } else {
      this.extend(type, gpa, ZERO_HASH);
    }
  }

  /**
   * The same with the page's SHA-384 already known (NORMAL and VMSA pages); for the other types
   * the hash is ignored, as the contents would be.
   */
  updateHashed(type: SnpPageType, gpa: bigint, contentsHash: Uint8Array): void {
    if (!snpPageTypeMeasuresContents(type)) {
      this.extend(type, gpa, ZERO_HASH);
      return;
    }
    if (contentsHash.length !== SNP_LD_SIZE) {
      throw new RangeError(
        `SNP page contents hash must be ${SNP_LD_SIZE} bytes, got ${contentsHash.length}`,
      );
    }
    this.extend(type, gpa, contentsHash);
  }

  /** LD' = SHA-384(PAGE_INFO{LD, contents hash, 0x70, type, imi 0, perms 0, gpa}). */
  private extend(type: SnpPageType, gpa: bigint, contentsHash: Uint8Array): void {
    if (!isPageType(type)) throw new RangeError(`not an SNP page type: ${String(type)}`);
    if (typeof gpa !== 'bigint' || gpa < 0n || gpa >= 1n << 64n) {
      throw new RangeError(`SNP page GPA out of u64 range: ${String(gpa)}`);
    }
    const info = this.info;
    info.set(contentsHash, 0x30);
    this.view.setUint16(0x60, PAGE_INFO_SIZE, true);
    info[0x62] = type;
    info[0x63] = 0; // IMI_PAGE
    info[0x64] = 0; // VMPL3_PERMS
    info[0x65] = 0; // VMPL2_PERMS
    info[0x66] = 0; // VMPL1_PERMS
    info[0x67] = 0;
    this.view.setBigUint64(0x68, gpa, true);
    info.set(this.hash(info), 0);
  }

  /** The digest so far (a copy, 48 bytes). */
  value(): Uint8Array {
    return this.info.slice(0, SNP_LD_SIZE);
  }

  hex(): string {
    return toHex(this.info.subarray(0, SNP_LD_SIZE));
  }
}
