/**
 * What a VMM reads from an OVMF (or COCONUT-SVSM) firmware image before an SEV launch: the GUIDed
 * footer table at the end of the image, and through it the SEV-ES reset block (the APs' reset
 * EIP), the SEV metadata (the sections the VMM must add with SNP_LAUNCH_UPDATE), the SEV hash
 * table area (measured direct boot) and the SVSM information block.
 *
 * Layouts: edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` (the table ends 0x20 bytes before
 * the end of the image, footer GUID 96b582de-…, entries walked backwards, each {data, u16 length
 * including the 18-byte header, GUID}) and `OvmfPkg/ResetVector/X64/OvmfSevMetadata.asm` (header
 * "ASEV", u32 size, u32 version 1, u32 count, then {u32 gpa, u32 size, u32 type} per section);
 * QEMU `hw/i386/pc_sysfw_ovmf.c` (`pc_system_parse_ovmf_flash`, `pc_system_ovmf_table_find`) and
 * `target/i386/sev.c` read them the same way, as does virtee/sev-snp-measure `ovmf.py`. The
 * footer-table walk itself is shared with TDX: src/vmm/firmware/guid_table.ts.
 *
 * Pure code (no Node APIs): a browser can measure too. Bad images are reported as
 * FirmwareImageError with the byte offset of the bad field, never as a crash.
 */
import {
  FirmwareImageError,
  OVMF_TABLE_FOOTER_GUID,
  parseGuidTable,
  sameBytes,
  u32,
  type FooterEntry,
} from '../firmware/guid_table.js';

// The footer-table walk is shared with TDX (src/vmm/firmware/guid_table.ts); re-exported here for
// the SEV code and its tests.
export { FirmwareImageError, OVMF_TABLE_FOOTER_GUID, type FooterEntry };

export const SEV_ES_RESET_BLOCK_GUID = '00f771de-1a7e-4fcb-890e-68c77e2fb44e';
export const OVMF_SEV_METADATA_GUID = 'dc886566-984a-4798-a75e-5585a7bf67cc';
export const SEV_HASH_TABLE_RV_GUID = '7255371f-3a3b-4b04-927b-1da6efa8d454';
export const SVSM_INFO_GUID = 'a789a612-0597-4c4b-a49f-cbb1fe9d1ddd';

/** SEV metadata section types (OvmfSevMetadata.asm `OVMF_SECTION_TYPE_*`, QEMU `SEV_DESC_TYPE_*`). */
export const SEV_SECTION = {
  SNP_SEC_MEM: 1,
  SNP_SECRETS: 2,
  CPUID: 3,
  SVSM_CAA: 4,
  SNP_KERNEL_HASHES: 0x10,
} as const;

export const SEV_SECTION_NAME: Readonly<Record<number, string>> = {
  1: 'SNP_SEC_MEM',
  2: 'SNP_SECRETS',
  3: 'CPUID',
  4: 'SVSM_CAA',
  0x10: 'SNP_KERNEL_HASHES',
};

const METADATA_HEADER = 16;
const METADATA_SECTION = 12;

/** One section of the SEV metadata. */
export interface SevMetadataSection {
  /** Position in the metadata (file order). */
  readonly index: number;
  readonly gpa: number;
  readonly size: number;
  readonly type: number;
  /** File offset of the section's descriptor. */
  readonly offset: number;
}

export interface FirmwareImage {
  readonly bytes: Uint8Array;
  /** Whether the footer GUID is where it belongs; when not, `table` is empty. */
  readonly hasFooterTable: boolean;
  /** File offset of the footer entry's header (its u16 length). */
  readonly footerOffset: number;
  /** The GUID found at the footer's place. */
  readonly footerGuid: string;
  readonly table: ReadonlyMap<string, FooterEntry>;
  /** The SEV metadata sections in file order; undefined when the table has no metadata entry. */
  readonly sevMetadata: readonly SevMetadataSection[] | undefined;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** The SEV metadata signature, "ASEV". */
const ASEV = new Uint8Array([0x41, 0x53, 0x45, 0x56]);

/** Parse the footer table and the SEV metadata of a firmware image (the bytes are not copied). */
export function parseFirmwareImage(bytes: Uint8Array): FirmwareImage {
  const t = parseGuidTable(bytes);
  return {
    bytes,
    ...t,
    sevMetadata: t.hasFooterTable
      ? parseSevMetadata(bytes, t.table.get(OVMF_SEV_METADATA_GUID))
      : undefined,
  };
}

function parseSevMetadata(
  bytes: Uint8Array,
  entry: FooterEntry | undefined,
): SevMetadataSection[] | undefined {
  if (entry === undefined) return undefined;
  const size = bytes.length;
  const what = `SEV metadata (GUID ${OVMF_SEV_METADATA_GUID})`;
  if (entry.data.length < 4) {
    throw new FirmwareImageError(
      `${what}: the footer entry holds ${entry.data.length} bytes, not a u32 offset from the end`,
      entry.offset,
    );
  }
  const fromEnd = u32(entry.data, 0);
  const start = size - fromEnd;
  if (fromEnd > size || start + METADATA_HEADER > size) {
    throw new FirmwareImageError(
      `${what}: offset from the end ${hex(fromEnd)} puts the ${METADATA_HEADER}-byte header ` +
        `outside the ${size}-byte image`,
      entry.offset,
    );
  }
  if (!sameBytes(bytes, start, ASEV)) throw badSignature(bytes, start, what);
  const hsize = u32(bytes, start + 4);
  const version = u32(bytes, start + 8);
  const count = u32(bytes, start + 12);
  if (version !== 1) {
    throw new FirmwareImageError(`${what}: version ${version}, expected 1`, start + 8);
  }
  if (hsize < METADATA_HEADER || start + hsize > size) {
    throw new FirmwareImageError(
      `${what}: size ${hsize} ${hsize < METADATA_HEADER ? 'is smaller than its header' : 'runs past the end of the image'}`,
      start + 4,
    );
  }
  if (METADATA_HEADER + count * METADATA_SECTION > hsize) {
    throw new FirmwareImageError(
      `${what}: ${count} sections need ${METADATA_HEADER + count * METADATA_SECTION} bytes, ` +
        `its size is ${hsize}`,
      start + 12,
    );
  }
  const sections: SevMetadataSection[] = [];
  for (let i = 0; i < count; i++) {
    const o = start + METADATA_HEADER + i * METADATA_SECTION;
    sections.push({
      index: i,
      gpa: u32(bytes, o),
      size: u32(bytes, o + 4),
      type: u32(bytes, o + 8),
      offset: o,
    });
  }
  return sections;
}

function badSignature(bytes: Uint8Array, start: number, what: string): FirmwareImageError {
  const sig = Array.from(bytes.subarray(start, start + 4), (c) =>
    c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`,
  ).join('');
  return new FirmwareImageError(`${what}: signature "${sig}", expected "ASEV"`, start);
}

/** Why a footer-table entry is missing, for error messages. */
function missing(img: FirmwareImage, guid: string, what: string): FirmwareImageError {
  if (!img.hasFooterTable) {
    return new FirmwareImageError(
      `no ${what} (GUID ${guid}): the image has no OVMF footer table ` +
        `(GUID ${OVMF_TABLE_FOOTER_GUID} expected here, found ${img.footerGuid})`,
      img.footerOffset + 2,
    );
  }
  return new FirmwareImageError(
    `no ${what} (GUID ${guid}) in the OVMF footer table`,
    img.footerOffset,
  );
}

function entryU32(img: FirmwareImage, guid: string, what: string, index: number): number {
  const e = img.table.get(guid);
  if (e === undefined) throw missing(img, guid, what);
  if (e.data.length < 4 * (index + 1)) {
    throw new FirmwareImageError(
      `${what} (GUID ${guid}): the footer entry holds ${e.data.length} bytes, ` +
        `expected at least ${4 * (index + 1)}`,
      e.offset,
    );
  }
  return u32(e.data, 4 * index);
}

/**
 * The APs' reset EIP from the SEV-ES reset block (QEMU `sev_es_find_reset_vector`): the VMM sets
 * every AP's CS base and IP from it (the BSP starts at the architectural 0xFFFFFFF0).
 */
export function sevEsResetEip(img: FirmwareImage): number {
  return entryU32(img, SEV_ES_RESET_BLOCK_GUID, 'SEV-ES reset block', 0);
}

/**
 * Where OVMF expects the SEV hash table of measured direct boot (QEMU
 * `sev_add_kernel_loader_hashes`: `SevHashTableDescriptor {u32 base, u32 size}`); undefined when
 * the image has no such entry.
 */
export function sevHashTableArea(img: FirmwareImage): { gpa: number; size: number } | undefined {
  if (!img.table.has(SEV_HASH_TABLE_RV_GUID)) return undefined;
  return {
    gpa: entryU32(img, SEV_HASH_TABLE_RV_GUID, 'SEV hash table descriptor', 0),
    size: entryU32(img, SEV_HASH_TABLE_RV_GUID, 'SEV hash table descriptor', 1),
  };
}

/** The SVSM's entry point offset in its image (COCONUT-SVSM's information block, QEMU svsm). */
export function svsmEntryOffset(img: FirmwareImage): number {
  return entryU32(img, SVSM_INFO_GUID, 'SVSM information block', 0);
}
