/**
 * The GUIDed footer table at the end of an OVMF image, which every confidential-VM launch reads
 * first: SEV (the SEV-ES reset block, the SEV metadata, the hash-table area, the SVSM block,
 * src/vmm/snp/ovmf.ts) and TDX (the offset of the TDVF metadata, src/vmm/tdx/tdvf.ts).
 *
 * Layout: edk2 `OvmfPkg/ResetVector/Ia16/ResetVectorVtf0.asm` (the table ends 0x20 bytes before
 * the end of the image, footer GUID 96b582de-…, entries walked backwards, each {data, u16 length
 * including the 18-byte header, GUID}); QEMU `hw/i386/pc_sysfw_ovmf.c`
 * (`pc_system_parse_ovmf_flash`, `pc_system_ovmf_table_find`) reads it the same way, as do
 * virtee/sev-snp-measure `ovmf.py`, virtee/tdx-measure `tdvf.rs` and td-shim's
 * `td_shim_tee_info_hash.py`.
 *
 * Pure code (no Node APIs). Bad images are reported as FirmwareImageError with the byte offset of
 * the bad field, never as a crash.
 */
import { guidBytes, guidText } from './guid.js';

export const OVMF_TABLE_FOOTER_GUID = '96b582de-1fb2-45f7-baea-a366c55a082d';

/** The table's footer: its last entry ends this many bytes before the end of the image. */
export const FOOTER_END_GAP = 0x20;
/** Each entry's header, after its data: u16 length (header included), then the GUID. */
export const ENTRY_HEADER = 2 + 16;

/** A malformed firmware image: `offset` is the byte offset in the file of what is wrong. */
export class FirmwareImageError extends Error {
  constructor(
    message: string,
    readonly offset: number | undefined,
    /** Which image, where more than one is read ('ovmf', 'svsm'); set by the launch plan. */
    readonly image?: string,
  ) {
    super(message);
  }
}

/** One entry of the GUIDed footer table. */
export interface FooterEntry {
  readonly guid: string;
  /** File offset of the entry's data (its header follows the data). */
  readonly offset: number;
  readonly data: Uint8Array;
}

/** The footer table of an image, as found (or not) at its end. */
export interface GuidTable {
  /** Whether the footer GUID is where it belongs; when not, `table` is empty. */
  readonly hasFooterTable: boolean;
  /** File offset of the footer entry's header (its u16 length). */
  readonly footerOffset: number;
  /** The GUID found at the footer's place. */
  readonly footerGuid: string;
  readonly table: ReadonlyMap<string, FooterEntry>;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

export function u16(b: Uint8Array, off: number): number {
  return b[off]! | (b[off + 1]! << 8);
}

export function u32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}

export function sameBytes(a: Uint8Array, off: number, b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (a[off + i] !== b[i]) return false;
  return true;
}

const FOOTER_GUID_BYTES = guidBytes(OVMF_TABLE_FOOTER_GUID);

/** Walk the footer table of an image (the bytes are not copied). */
export function parseGuidTable(bytes: Uint8Array): GuidTable {
  const size = bytes.length;
  if (size < FOOTER_END_GAP + ENTRY_HEADER) {
    throw new FirmwareImageError(
      `image is ${size} bytes, too small to hold an OVMF footer table ` +
        `(its footer entry ends ${FOOTER_END_GAP} bytes before the end: at least ` +
        `${FOOTER_END_GAP + ENTRY_HEADER} bytes)`,
      0,
    );
  }
  const footerOffset = size - FOOTER_END_GAP - ENTRY_HEADER;
  const footerGuid = guidText(bytes, footerOffset + 2);
  const table = new Map<string, FooterEntry>();
  if (!sameBytes(bytes, footerOffset + 2, FOOTER_GUID_BYTES)) {
    return { hasFooterTable: false, footerOffset, footerGuid, table };
  }
  const tableLen = u16(bytes, footerOffset);
  if (tableLen < ENTRY_HEADER) {
    throw new FirmwareImageError(
      `OVMF footer table (GUID ${OVMF_TABLE_FOOTER_GUID}): length ${tableLen} is smaller than ` +
        `its own ${ENTRY_HEADER}-byte header`,
      footerOffset,
    );
  }
  const tableStart = footerOffset - (tableLen - ENTRY_HEADER);
  if (tableStart < 0) {
    throw new FirmwareImageError(
      `OVMF footer table (GUID ${OVMF_TABLE_FOOTER_GUID}): length ${tableLen} reaches ` +
        `${-tableStart} bytes before the start of the image`,
      footerOffset,
    );
  }
  // Entries are walked backwards from the footer: each entry's header follows its data.
  let end = footerOffset;
  while (end - tableStart >= ENTRY_HEADER) {
    const hdr = end - ENTRY_HEADER;
    const len = u16(bytes, hdr);
    const guid = guidText(bytes, hdr + 2);
    if (len < ENTRY_HEADER) {
      throw new FirmwareImageError(
        `OVMF footer table entry ${guid}: length ${len} is smaller than its ${ENTRY_HEADER}-byte header`,
        hdr,
      );
    }
    if (len > end - tableStart) {
      throw new FirmwareImageError(
        `OVMF footer table entry ${guid}: length ${len} runs past the start of the table ` +
          `(${hex(tableStart)}, ${end - tableStart} bytes left)`,
        hdr,
      );
    }
    const offset = end - len;
    table.set(guid, { guid, offset, data: bytes.subarray(offset, hdr) });
    end = offset;
  }
  return { hasFooterTable: true, footerOffset, footerGuid, table };
}
