/**
 * The VMM's side of a TD build: which pages of a TDVF image it puts into the TD with
 * KVM_TDX_INIT_MEM_REGION, with or without KVM_TDX_MEASURE_MEMORY_REGION, in which order, before
 * KVM_TDX_FINALIZE_VM; returned as data (nothing is measured here: measure.ts runs a plan through
 * a TdxLauncher).
 *
 * QEMU's sequence (`target/i386/kvm/tdx.c` `tdx_finalize_vm` → `tdx_init_fw_mem_region`): the
 * TDVF sections in metadata (file) order, each one KVM_TDX_INIT_MEM_REGION of MemoryDataSize / 4096
 * pages at MemoryAddress, with KVM_TDX_MEASURE_MEMORY_REGION when the section has the MR.EXTEND
 * attribute. The pages' source: BFV and CFV come from the image at DataOffset; the other sections
 * from fresh (zero) memory. Data beyond RawDataSize is zero (the older QEMU TDX trees read
 * RawDataSize bytes into a zeroed buffer, td-shim's tools pad with zeros; current QEMU copies
 * MemoryDataSize bytes from the image, which differs only for a BFV/CFV with RawDataSize <
 * MemoryDataSize, which edk2 never builds). Sections with the PAGE.AUG attribute are skipped (not
 * added before finalize, hence not in MRTD: virtee/tdx-measure, td-shim's tools; upstream QEMU
 * does not read that attribute, and edk2's TDVF sets it on no section), as are TD_INFO/TD_PARAMS
 * (no memory). A TD_HOB is unmeasured by construction (tdvf.ts refuses a measured one), so that
 * QEMU writes its HOB there does not change MRTD.
 *
 * The order of PAGE.ADD and MR.EXTEND (shared/spec/platforms.md §1.7, Appendix B.1):
 * - single pass (upstream KVM, `tdx_gmem_post_populate`): per page, TDH.MEM.PAGE.ADD and then, when
 *   measured, 16 × TDH.MR.EXTEND of its 256-byte chunks;
 * - two pass (the KVM TDX v19-era stacks: KVM_MEMORY_MAPPING added a section's pages, then
 *   KVM_TDX_EXTEND_MEMORY extended them; QEMU called both per TDVF section): per *section*, all
 *   PAGE.ADDs, then all MR.EXTENDs. That per-section granularity is what the tools that reproduce
 *   it use: dstack-mr / tinfoil tdx-measure `PageAddOrder::TwoPass` (inside their loop over
 *   sections) and td-shim's `td_shim_tee_info_hash.py` with `--add-all false`.
 *
 * Pure code (no Node APIs).
 */
import { TDVF_ATTR, TDVF_SECTION_NAME, type TdvfImage, type TdvfSection } from './tdvf.js';

const PAGE = 4096;

/** One KVM_TDX_INIT_MEM_REGION: `pages` pages from `gpa` on. */
export interface TdxInitMemRegion {
  /** The TDVF section it adds. */
  readonly section: TdvfSection;
  readonly gpa: bigint;
  readonly pages: number;
  /** KVM_TDX_MEASURE_MEMORY_REGION: the section has the MR.EXTEND attribute. */
  readonly measure: boolean;
  /** The section's raw data (RawDataSize bytes, a view into the image); the rest is zeros. */
  readonly data: Uint8Array;
  /** What it is, for traces: "BFV", "TEMP_MEM", … */
  readonly what: string;
}

/** What the VMM does with a section. */
export type TdxSectionAction =
  | 'add+measure'
  | 'add'
  | 'skipped: PAGE.AUG (added after finalize, unmeasured)'
  | 'skipped: no memory';

export type TdxPageOrder = 'single-pass' | 'two-pass';

export interface TdxLaunchPlan {
  readonly order: TdxPageOrder;
  /** The INIT_MEM_REGION calls, in order. */
  readonly regions: readonly TdxInitMemRegion[];
  /** Every section with what the VMM does with it, in metadata order. */
  readonly sections: readonly {
    readonly section: TdvfSection;
    readonly action: TdxSectionAction;
  }[];
}

export interface TdxLaunchOptions {
  /** The older stacks' order: per section, all PAGE.ADDs then all MR.EXTENDs. */
  readonly twoPass?: boolean;
}

/** The ordered INIT_MEM_REGION calls of a TD build from this image. */
export function buildTdxLaunchPlan(img: TdvfImage, o: TdxLaunchOptions = {}): TdxLaunchPlan {
  const regions: TdxInitMemRegion[] = [];
  const sections: { section: TdvfSection; action: TdxSectionAction }[] = [];
  for (const s of img.sections) {
    if (s.memSize === 0n) {
      sections.push({ section: s, action: 'skipped: no memory' });
      continue;
    }
    if ((s.attributes & TDVF_ATTR.PAGE_AUG) !== 0) {
      sections.push({
        section: s,
        action: 'skipped: PAGE.AUG (added after finalize, unmeasured)',
      });
      continue;
    }
    const measure = (s.attributes & TDVF_ATTR.MR_EXTEND) !== 0;
    sections.push({ section: s, action: measure ? 'add+measure' : 'add' });
    regions.push({
      section: s,
      gpa: s.gpa,
      pages: Number(s.memSize / BigInt(PAGE)),
      measure,
      data: img.bytes.subarray(s.dataOffset, s.dataOffset + s.rawSize),
      what: TDVF_SECTION_NAME[s.type]!,
    });
  }
  return { order: o.twoPass === true ? 'two-pass' : 'single-pass', regions, sections };
}

/** PAGE.ADD and MR.EXTEND counts of a plan (16 EXTENDs per measured page). */
export function tdxPlanCounts(plan: TdxLaunchPlan): { pageAdds: number; mrExtends: number } {
  let pageAdds = 0;
  let mrExtends = 0;
  for (const r of plan.regions) {
    pageAdds += r.pages;
    if (r.measure) mrExtends += r.pages * (PAGE / 256);
  }
  return { pageAdds, mrExtends };
}

/**
 * Where the bytes at a GPA of the plan come from, for traces: the region, and the file offset of
 * the byte (undefined when it lies beyond the section's raw data: zeros).
 */
export function tdxPlanLocator(
  plan: TdxLaunchPlan,
): (gpa: bigint) => { region: TdxInitMemRegion; fileOffset: number | undefined } | undefined {
  let last: TdxInitMemRegion | undefined;
  const within = (r: TdxInitMemRegion, gpa: bigint): boolean =>
    gpa >= r.gpa && gpa < r.gpa + BigInt(r.pages * PAGE);
  return (gpa) => {
    const r =
      last !== undefined && within(last, gpa) ? last : plan.regions.find((x) => within(x, gpa));
    if (r === undefined) return undefined;
    last = r;
    const rel = Number(gpa - r.gpa);
    return {
      region: r,
      fileOffset: rel < r.section.rawSize ? r.section.dataOffset + rel : undefined,
    };
  };
}
