/**
 * What a VMM reads from a TDX firmware image before it builds a TD: the TDVF metadata, the list of
 * sections it must put into the TD's private memory with KVM_TDX_INIT_MEM_REGION (and which of
 * them to measure into MRTD).
 *
 * Where the metadata is:
 * - an OVMF image (edk2 `OvmfPkg/IntelTdx`, `OvmfPkg/ResetVector/X64/IntelTdxMetadata.asm`): the
 *   OVMF footer GUID table (src/vmm/firmware/guid_table.ts) has an entry
 *   e47a6535-984a-4798-865e-4685a7bf8ec2 whose first u32 is the descriptor's offset from the end
 *   of the image (QEMU `hw/i386/tdvf.c` `tdvf_get_metadata`, virtee/tdx-measure `tdvf.rs`);
 * - a td-shim image (no footer table): the u32 at end − 0x20 is the descriptor's file offset, and
 *   the TDX metadata GUID e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae lies in the 16 bytes before it
 *   (td-shim `td-shim-tools/src/loader.rs`, `tee_info_hash.rs`, `td_shim_tee_info_hash.py`; the
 *   older QEMU TDX trees read the same pointer, `TDVF_METDATA_OFFSET_FROM_END`).
 *
 * The descriptor (TDVF design guide; td-shim `td-shim-interface/src/metadata.rs`): "TDVF", u32
 * length (16 + 32 × count), u32 version 1, u32 count, then per section {u32 DataOffset, u32
 * RawDataSize, u64 MemoryAddress, u64 MemoryDataSize, u32 Type, u32 Attributes}. Attributes: bit 0
 * MR.EXTEND (measure the pages' contents), bit 1 PAGE.AUG (the section is not added before
 * finalize: TDH.MEM.PAGE.AUG later, unmeasured).
 *
 * Validation: every check QEMU makes (`tdvf_get_metadata`, `tdvf_parse_metadata`,
 * `tdvf_parse_and_check_section_entry`; the older `tdvf_parse_section_entry`'s "too large
 * section"), with td-shim's section types 4–8 accepted as the td-shim tools and the older QEMU
 * trees accept them, plus what would make KVM or the TDX module refuse the VMM's sequence
 * (overlapping sections: a second PAGE.ADD of a GPA; a GPA range beyond any TD's address space)
 * or what cannot be reproduced from the image (a measured TD_HOB, whose contents the VMM writes).
 * Every error is a FirmwareImageError naming the byte offset of the bad field.
 *
 * Pure code (no Node APIs).
 */
import { guidBytes, guidText } from '../firmware/guid.js';
import {
  FirmwareImageError,
  OVMF_TABLE_FOOTER_GUID,
  parseGuidTable,
  sameBytes,
  u32,
} from '../firmware/guid_table.js';

export const TDX_METADATA_OFFSET_GUID = 'e47a6535-984a-4798-865e-4685a7bf8ec2';
export const TDX_METADATA_GUID = 'e9eaf9f3-168e-44d5-a8eb-7f4d8738f6ae';
/** td-shim: the u32 file offset of the descriptor lies this many bytes before the end. */
export const TD_SHIM_METADATA_POINTER_FROM_END = 0x20;

/** TDVF section types (TDVF design guide; td-shim `TDX_METADATA_SECTION_TYPE_*`). */
export const TDVF_SECTION = {
  BFV: 0,
  CFV: 1,
  TD_HOB: 2,
  TEMP_MEM: 3,
  PERM_MEM: 4,
  PAYLOAD: 5,
  PAYLOAD_PARAM: 6,
  TD_INFO: 7,
  TD_PARAMS: 8,
} as const;

export const TDVF_SECTION_NAME: readonly string[] = [
  'BFV',
  'CFV',
  'TD_HOB',
  'TEMP_MEM',
  'PERM_MEM',
  'PAYLOAD',
  'PAYLOAD_PARAM',
  'TD_INFO',
  'TD_PARAMS',
];

/** Section attributes (QEMU `TDVF_SECTION_ATTRIBUTES_*`). */
export const TDVF_ATTR = { MR_EXTEND: 1, PAGE_AUG: 2 } as const;

const PAGE = 4096;
const DESCRIPTOR = 16;
const SECTION = 32;
/** No TD has a guest-physical address space above 2^52 (GPAW 52, 5-level S-EPT). */
const GPA_LIMIT = 1n << 52n;

export interface TdvfSection {
  /** Position in the metadata (file order, the order QEMU adds them in). */
  readonly index: number;
  readonly dataOffset: number;
  readonly rawSize: number;
  readonly gpa: bigint;
  readonly memSize: bigint;
  readonly type: number;
  readonly attributes: number;
  /** File offset of the section's entry in the metadata. */
  readonly offset: number;
}

export interface TdvfImage {
  readonly bytes: Uint8Array;
  /** How the metadata was found: the OVMF footer table, or td-shim's pointer at end − 0x20. */
  readonly format: 'ovmf' | 'td-shim';
  /** File offset of the descriptor ("TDVF"). */
  readonly descriptorOffset: number;
  readonly sections: readonly TdvfSection[];
}

const hex = (n: number | bigint): string => `0x${n.toString(16)}`;

function u64(b: Uint8Array, off: number): bigint {
  return BigInt(u32(b, off)) | (BigInt(u32(b, off + 4)) << 32n);
}

/** A section's name for messages: "section 1 (TEMP_MEM)". */
export function tdvfSectionLabel(s: { index: number; type: number }): string {
  return `TDVF section ${s.index} (${TDVF_SECTION_NAME[s.type] ?? `type ${s.type}`})`;
}

const TDVF = new Uint8Array([0x54, 0x44, 0x56, 0x46]);
const TDX_METADATA_GUID_BYTES = guidBytes(TDX_METADATA_GUID);

/** Find, check and read the TDVF metadata of an OVMF or td-shim image (bytes not copied). */
export function parseTdvfImage(bytes: Uint8Array): TdvfImage {
  const { format, descriptorOffset } = locateDescriptor(bytes);
  const sections = parseDescriptor(bytes, descriptorOffset);
  checkOverlaps(sections);
  return { bytes, format, descriptorOffset, sections };
}

function locateDescriptor(bytes: Uint8Array): {
  format: 'ovmf' | 'td-shim';
  descriptorOffset: number;
} {
  const size = bytes.length;
  const t = parseGuidTable(bytes);
  if (t.hasFooterTable) {
    // QEMU tdvf_get_metadata: pc_system_ovmf_table_find(TDX_METADATA_OFFSET_GUID), then
    // offset = size - entry's u32; "offset + sizeof(*metadata) > size" is refused.
    const e = t.table.get(TDX_METADATA_OFFSET_GUID);
    if (e === undefined) {
      throw new FirmwareImageError(
        `no TDX metadata (GUID ${TDX_METADATA_OFFSET_GUID}) in the OVMF footer table: not a ` +
          'TDX firmware (QEMU: "Cannot find TDX_METADATA_OFFSET_GUID")',
        t.footerOffset,
      );
    }
    const what = `TDX metadata offset (GUID ${TDX_METADATA_OFFSET_GUID})`;
    if (e.data.length < 4) {
      throw new FirmwareImageError(
        `${what}: the footer entry holds ${e.data.length} bytes, not a u32 offset from the end`,
        e.offset,
      );
    }
    const fromEnd = u32(e.data, 0);
    if (fromEnd > size || size - fromEnd + DESCRIPTOR > size) {
      throw new FirmwareImageError(
        `${what}: offset from the end ${hex(fromEnd)} puts the ${DESCRIPTOR}-byte TDVF ` +
          `descriptor outside the ${size}-byte image`,
        e.offset,
      );
    }
    return { format: 'ovmf', descriptorOffset: size - fromEnd };
  }
  // td-shim: the descriptor's file offset at end - 0x20, the TDX metadata GUID just before it.
  const ptr = size - TD_SHIM_METADATA_POINTER_FROM_END;
  const d = u32(bytes, ptr);
  const neither =
    `neither an OVMF footer table (GUID ${OVMF_TABLE_FOOTER_GUID} expected at ` +
    `${hex(t.footerOffset + 2)}, found ${t.footerGuid}) nor a td-shim TDX metadata pointer: `;
  if (d < 16 || d + DESCRIPTOR > size) {
    throw new FirmwareImageError(
      `${neither}the u32 at end - 0x20 is ${hex(d)}, which puts the TDX metadata GUID and ` +
        `the ${DESCRIPTOR}-byte TDVF descriptor outside the ${size}-byte image`,
      ptr,
    );
  }
  if (!sameBytes(bytes, d - 16, TDX_METADATA_GUID_BYTES)) {
    throw new FirmwareImageError(
      `${neither}the u32 at end - 0x20 points to ${hex(d)}, but the 16 bytes before it are ` +
        `${guidText(bytes, d - 16)}, not the TDX metadata GUID ${TDX_METADATA_GUID}`,
      d - 16,
    );
  }
  return { format: 'td-shim', descriptorOffset: d };
}

function parseDescriptor(bytes: Uint8Array, d: number): TdvfSection[] {
  const size = bytes.length;
  const what = `TDVF metadata at ${hex(d)}`;
  // QEMU tdvf_get_metadata: signature, then "the TDVF doesn't overlap its own metadata", version.
  if (!sameBytes(bytes, d, TDVF)) {
    const sig = Array.from(bytes.subarray(d, d + 4), (c) =>
      c >= 0x20 && c < 0x7f ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`,
    ).join('');
    throw new FirmwareImageError(
      `${what}: signature "${sig}", expected "TDVF" (QEMU: "Invalid TDVF signature in metadata!")`,
      d,
    );
  }
  const length = u32(bytes, d + 4);
  const version = u32(bytes, d + 8);
  const count = u32(bytes, d + 12);
  if (d + length > size) {
    throw new FirmwareImageError(
      `${what}: length ${length} runs past the end of the ${size}-byte image`,
      d + 4,
    );
  }
  if (version !== 1) {
    throw new FirmwareImageError(`${what}: version ${version}, expected 1`, d + 8);
  }
  // QEMU tdvf_parse_metadata: at least two entries, and the length must be exactly theirs.
  if (count < 2) {
    throw new FirmwareImageError(
      `${what}: ${count} section${count === 1 ? '' : 's'}, at least 2 expected ` +
        `(QEMU: "Invalid number of fw entries (${count}) in TDVF Metadata")`,
      d + 12,
    );
  }
  if (length !== DESCRIPTOR + SECTION * count) {
    throw new FirmwareImageError(
      `${what}: length ${hex(length)} does not match ${count} sections ` +
        `(expected ${hex(DESCRIPTOR + SECTION * count)}; QEMU: "TDVF metadata len mismatch")`,
      d + 4,
    );
  }
  const sections: TdvfSection[] = [];
  for (let i = 0; i < count; i++) {
    const o = d + DESCRIPTOR + i * SECTION;
    const s: TdvfSection = {
      index: i,
      dataOffset: u32(bytes, o),
      rawSize: u32(bytes, o + 4),
      gpa: u64(bytes, o + 8),
      memSize: u64(bytes, o + 16),
      type: u32(bytes, o + 24),
      attributes: u32(bytes, o + 28),
      offset: o,
    };
    checkSection(s, size);
    sections.push(s);
  }
  return sections;
}

/** One section's checks, in QEMU's order (`tdvf_parse_and_check_section_entry`), then ours. */
function checkSection(s: TdvfSection, size: number): void {
  const o = s.offset;
  const err = (msg: string, at: number): FirmwareImageError =>
    new FirmwareImageError(`${tdvfSectionLabel(s)}: ${msg}`, at);
  if (s.type >= TDVF_SECTION_NAME.length) {
    throw err(
      `unknown type ${s.type} (known: ${TDVF_SECTION_NAME.map((n, i) => `${i} ${n}`).join(', ')}; ` +
        `QEMU: "TDVF contains unsupported section type ${s.type}")`,
      o + 24,
    );
  }
  if (s.type === TDVF_SECTION.TD_INFO || s.type === TDVF_SECTION.TD_PARAMS) {
    // td-shim metadata.rs: "MemoryAddress and MemoryDataSize shall be zero" (not loaded).
    if (s.gpa !== 0n || s.memSize !== 0n) {
      throw err(
        `MemoryAddress ${hex(s.gpa)} and MemoryDataSize ${hex(s.memSize)} must be zero ` +
          '(this section is data for the VMM, not loaded into the TD)',
        o + 8,
      );
    }
  } else if (s.memSize < BigInt(s.rawSize)) {
    throw err(
      `RawDataSize ${hex(s.rawSize)} is larger than MemoryDataSize ${hex(s.memSize)} ` +
        '(QEMU: "Broken metadata")',
      o + 16,
    );
  }
  if (s.gpa % BigInt(PAGE) !== 0n) {
    throw err(`MemoryAddress ${hex(s.gpa)} not page aligned`, o + 8);
  }
  if (s.memSize % BigInt(PAGE) !== 0n) {
    throw err(`MemoryDataSize ${hex(s.memSize)} not page aligned`, o + 16);
  }
  switch (s.type) {
    case TDVF_SECTION.BFV:
    case TDVF_SECTION.CFV:
      // "The sections that must be copied from firmware image to TD memory".
      if (s.rawSize === 0)
        throw err('RawDataSize is 0: this section is copied from the image', o + 4);
      break;
    case TDVF_SECTION.TD_HOB:
    case TDVF_SECTION.TEMP_MEM:
    case TDVF_SECTION.PERM_MEM:
      // "The sections that no need to be copied from firmware image".
      if (s.rawSize !== 0) {
        throw err(
          `RawDataSize ${hex(s.rawSize)}, expected 0: this section is not copied from the image`,
          o + 4,
        );
      }
      break;
  }
  // The older QEMU tdvf_parse_section_entry: "too large section".
  if (s.dataOffset + s.rawSize > size) {
    throw err(
      `DataOffset ${hex(s.dataOffset)} + RawDataSize ${hex(s.rawSize)} runs past the end of ` +
        `the ${size}-byte image`,
      o,
    );
  }
  if (s.gpa + s.memSize > GPA_LIMIT) {
    throw err(
      `MemoryAddress ${hex(s.gpa)} + MemoryDataSize ${hex(s.memSize)} runs past 2^52, the ` +
        'largest TD guest-physical address space',
      o + 8,
    );
  }
  const attrs = s.attributes;
  if ((attrs & TDVF_ATTR.MR_EXTEND) !== 0 && (attrs & TDVF_ATTR.PAGE_AUG) !== 0) {
    throw err(
      `attributes ${hex(attrs)}: MR.EXTEND with PAGE.AUG (an AUG page is added after ` +
        'TDH.MR.FINALIZE: it cannot be measured)',
      o + 28,
    );
  }
  if ((attrs & TDVF_ATTR.MR_EXTEND) !== 0 && s.type === TDVF_SECTION.TD_HOB) {
    throw err(
      `attributes ${hex(attrs)}: a measured TD_HOB (its contents are the HOB the VMM writes, ` +
        'not in the image: its measurement cannot be reproduced from the firmware)',
      o + 28,
    );
  }
}

/**
 * Sections whose guest-physical ranges overlap: the second PAGE.ADD (or AUG) of a GPA fails in the
 * TDX module (TDX_EPT_ENTRY_STATE_INCORRECT), so the VMM's sequence cannot complete.
 */
function checkOverlaps(sections: readonly TdvfSection[]): void {
  const loaded = sections.filter((s) => s.memSize > 0n).sort((a, b) => (a.gpa < b.gpa ? -1 : 1));
  for (let i = 1; i < loaded.length; i++) {
    const a = loaded[i - 1]!;
    const b = loaded[i]!;
    if (b.gpa < a.gpa + a.memSize) {
      const [first, second] = a.index < b.index ? [a, b] : [b, a];
      throw new FirmwareImageError(
        `${tdvfSectionLabel(second)}: GPA ${hex(second.gpa)}..${hex(second.gpa + second.memSize)} ` +
          `overlaps ${tdvfSectionLabel(first)} at ${hex(first.gpa)}..${hex(first.gpa + first.memSize)} ` +
          '(a GPA is added once: the second TDH.MEM.PAGE.ADD fails)',
        second.offset + 8,
      );
    }
  }
}
