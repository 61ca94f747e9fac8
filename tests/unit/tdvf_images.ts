/**
 * Synthetic TDX firmware images for the tests: raw section data from offset 0, then the TDVF
 * metadata (TDX metadata GUID, descriptor, sections), then the locator at the end — an OVMF footer
 * GUID table with the TDX metadata offset entry, or td-shim's u32 pointer at end − 0x20.
 */
import { guidBytes } from '../../src/vmm/firmware/guid.js';
import { OVMF_TABLE_FOOTER_GUID } from '../../src/vmm/firmware/guid_table.js';
import { TDX_METADATA_GUID, TDX_METADATA_OFFSET_GUID } from '../../src/vmm/tdx/tdvf.js';

export interface SectionSpec {
  readonly type: number;
  readonly attributes: number;
  readonly gpa: bigint;
  /** MemoryDataSize in pages. */
  readonly pages: number;
  /** Raw data (RawDataSize = its length), stored in the image. */
  readonly raw?: Uint8Array;
}

export interface BuiltImage {
  readonly bytes: Uint8Array;
  /** File offset of the "TDVF" descriptor. */
  readonly descriptor: number;
  /** File offset of each section's raw data. */
  readonly dataOffsets: readonly number[];
}

/** Byte i of a page = i & 0xff (the T3 and T5 pattern). */
export function patternPage(pages = 1): Uint8Array {
  return Uint8Array.from({ length: pages * 4096 }, (_, i) => i & 0xff);
}

export function buildTdvfImage(
  sections: readonly SectionSpec[],
  format: 'ovmf' | 'td-shim' = 'ovmf',
): BuiltImage {
  const rawTotal = sections.reduce((n, s) => n + Math.ceil((s.raw?.length ?? 0) / 4096) * 4096, 0);
  const meta = 16 + 16 + 32 * sections.length;
  const size = rawTotal + Math.ceil((meta + 0x100) / 4096) * 4096;
  const b = new Uint8Array(size);
  const v = new DataView(b.buffer);
  const dataOffsets: number[] = [];
  let off = 0;
  for (const s of sections) {
    if (s.raw !== undefined && s.raw.length > 0) {
      b.set(s.raw, off);
      dataOffsets.push(off);
      off += Math.ceil(s.raw.length / 4096) * 4096;
    } else dataOffsets.push(0);
  }
  const guidAt = rawTotal;
  const d = guidAt + 16;
  b.set(guidBytes(TDX_METADATA_GUID), guidAt);
  b.set([0x54, 0x44, 0x56, 0x46], d);
  v.setUint32(d + 4, 16 + 32 * sections.length, true);
  v.setUint32(d + 8, 1, true);
  v.setUint32(d + 12, sections.length, true);
  sections.forEach((s, i) => {
    const o = d + 16 + 32 * i;
    v.setUint32(o, dataOffsets[i]!, true);
    v.setUint32(o + 4, s.raw?.length ?? 0, true);
    v.setBigUint64(o + 8, s.gpa, true);
    v.setBigUint64(o + 16, BigInt(s.pages * 4096), true);
    v.setUint32(o + 24, s.type, true);
    v.setUint32(o + 28, s.attributes, true);
  });
  if (format === 'ovmf') {
    const footer = size - 0x20 - 18;
    const entry = footer - 22;
    v.setUint32(entry, size - d, true);
    v.setUint16(entry + 4, 22, true);
    b.set(guidBytes(TDX_METADATA_OFFSET_GUID), entry + 6);
    v.setUint16(footer, 18 + 22, true);
    b.set(guidBytes(OVMF_TABLE_FOOTER_GUID), footer + 2);
  } else {
    v.setUint32(size - 0x20, d, true);
  }
  return { bytes: b, descriptor: d, dataOffsets };
}

/** shared/spec/platforms.md §1.8 T5: {1 pattern page @0xFFFFF000, MR.EXTEND}, {2 pages
 * @0x800000, 0}, {1 page @0x900000, PAGE.AUG}. */
export const T5_SECTIONS: readonly SectionSpec[] = [
  { type: 0, attributes: 1, gpa: 0xfffff000n, pages: 1, raw: patternPage() },
  { type: 3, attributes: 0, gpa: 0x800000n, pages: 2 },
  { type: 4, attributes: 2, gpa: 0x900000n, pages: 1 },
];

export const T5_MRTD =
  '61431885f09461dc17e944bc9ceec643e68589895aa6fca8d30c1f356c3b7e6739c1a6c87ec7af73ac56b4799af503fe';

/**
 * T3/T4's pages as an image: one measured section of two pages whose raw data is the first (the
 * second is the zero fill beyond RawDataSize), and a PAGE.AUG section (skipped): single pass gives
 * T3, two pass T4.
 */
export const TWO_PAGE_SECTIONS: readonly SectionSpec[] = [
  { type: 0, attributes: 1, gpa: 0xffffe000n, pages: 2, raw: patternPage() },
  { type: 4, attributes: 2, gpa: 0x900000n, pages: 1 },
];
/** platforms.md §1.8 T3 and T4 (tests/unit/tdx_mrtd.test.ts checks them on the engine). */
export const T3_MRTD =
  'fae252d5477406d8d3b78e4e479a6474c7b1bdfb524b48455603a2e8cddc2ec7b3e1eef31ccb55abf2dcd47fe2d3f128';
export const T4_MRTD =
  '1036204caf092814c0813aae131cd6c8f121aac208910d7a3fbed5c5241301210045844e87a226412cc961ddc38bf488';

/**
 * Four sections in a non-sorted GPA order, raw data covering whole sections (a pattern page then
 * a zero page; a page of 7s), an unmeasured TEMP_MEM and a PAGE.AUG section: the MRTD td-shim's
 * `td_shim_tee_info_hash.py` (commit 125eeab, single pass) prints for this image built either way.
 */
export const MIXED_SECTIONS: readonly SectionSpec[] = [
  {
    type: 0,
    attributes: 1,
    gpa: 0xffffe000n,
    pages: 2,
    raw: Uint8Array.from({ length: 8192 }, (_, i) => (i < 4096 ? i & 0xff : 0)),
  },
  { type: 3, attributes: 0, gpa: 0x800000n, pages: 3 },
  { type: 1, attributes: 0, gpa: 0xffffc000n, pages: 1, raw: new Uint8Array(4096).fill(7) },
  { type: 4, attributes: 2, gpa: 0x900000n, pages: 1 },
];
export const MIXED_MRTD =
  '763e4a74389aea5394baaa4a30abe5078fc69490de83081b01ff5d845b567a498f4a2950806e91f26c6d2120873d3b75';
