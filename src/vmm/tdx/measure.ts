/**
 * Running a TD build plan (launch_plan.ts) through a launcher: the interface a VMM drives KVM's TDX
 * build with, one 4 KiB page at a time, then KVM_TDX_FINALIZE_VM, which returns the MRTD.
 *
 * MrtdLauncher is the direct implementation: the TDX module's MRTD accumulation alone
 * (core/platform/tdx/mrtd.ts) over its own copy of the TD's private pages, doing what the module
 * does for each call (TDH.MEM.PAGE.ADD, TDH.MR.EXTEND of the page as it now is, TDH.MR.FINALIZE).
 *
 * A model launcher plugs in here once the model has KVM's TDX flow: it opens `/dev/kvm`, creates a
 * TDX VM, issues KVM_TDX_INIT_VM, creates a vCPU (KVM_TDX_INIT_VCPU), a guest_memfd and memslots
 * over the sections, sets them PRIVATE, pre-faults them, and turns the per-page calls below into
 * KVM_TDX_INIT_MEM_REGION ioctls (coalescing consecutive pages with the same flag into one call, as
 * the SNP ModelLauncher coalesces its LAUNCH_UPDATE pages), `extendMemory` into the MR.EXTENDs of
 * the older order, and `finalize` into KVM_TDX_FINALIZE_VM, reading the TD's MRTD from the TDX
 * module model (whose TDCS holds a TdxMrtd through its `TdMrtd` interface). Plans and the CLI do not
 * change.
 *
 * Pure code (no Node APIs).
 */
import { TdxMrtd, TDX_MR_EXTEND_CHUNK, type Sha384Stream } from '../../core/platform/tdx/mrtd.js';
import type { TdxLaunchPlan } from './launch_plan.js';

const PAGE = 4096;

/** A VMM's view of KVM's TDX build. */
export interface TdxLauncher {
  /**
   * KVM_TDX_INIT_MEM_REGION of one 4 KiB page (`page`: its 4096 bytes): TDH.MEM.PAGE.ADD, and with
   * `measure` (KVM_TDX_MEASURE_MEMORY_REGION) 16 × TDH.MR.EXTEND of it right after.
   */
  initMemRegion(gpa: bigint, page: Uint8Array, measure: boolean): void;
  /**
   * The older stacks' separate extend of a page added before (KVM_TDX_EXTEND_MEMORY of the KVM TDX
   * v19 patches): 16 × TDH.MR.EXTEND of the TD's page at `gpa` as it is now. Two-pass plans use it.
   */
  extendMemory(gpa: bigint): void;
  /** KVM_TDX_FINALIZE_VM: TDH.MR.FINALIZE; returns the MRTD (48 bytes). */
  finalize(): Uint8Array;
}

/** One measurement operation, for `--trace`. */
export interface TdxMeasureOp {
  /** 0-based position among the PAGE.ADD and MR.EXTEND operations. */
  readonly index: number;
  readonly op: 'PAGE.ADD' | 'MR.EXTEND';
  /** The page's GPA (PAGE.ADD) or the 256-byte chunk's (MR.EXTEND). */
  readonly gpa: bigint;
}

/** A call the TDX module refuses (as the VMM would see it: the SEAMCALL and why). */
export class TdxLaunchError extends Error {}

const ZERO_PAGE = new Uint8Array(PAGE);

function isZero(b: Uint8Array): boolean {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
}

const hex = (n: bigint): string => `0x${n.toString(16)}`;

/** The TDX module's MRTD, fed directly, over its own copy of the TD's private pages. */
export class MrtdLauncher implements TdxLauncher {
  private readonly mrtd: TdxMrtd;
  /** The TD's private pages by GPA (all-zero pages share one buffer). */
  private readonly pages = new Map<bigint, Uint8Array>();
  private readonly trace: ((op: TdxMeasureOp) => void) | undefined;
  private index = 0;

  /** `sha384`: the SHA-384 the MRTD runs (default: core/base/crypto's). */
  constructor(
    opts: {
      readonly trace?: (op: TdxMeasureOp) => void;
      readonly sha384?: () => Sha384Stream;
    } = {},
  ) {
    this.trace = opts.trace;
    this.mrtd = new TdxMrtd(opts.sha384?.());
  }

  initMemRegion(gpa: bigint, page: Uint8Array, measure: boolean): void {
    if (page.length !== PAGE) {
      throw new RangeError(`KVM_TDX_INIT_MEM_REGION adds 4096-byte pages, got ${page.length}`);
    }
    if (gpa % BigInt(PAGE) !== 0n) {
      throw new TdxLaunchError(`TDH.MEM.PAGE.ADD at ${hex(gpa)}: GPA not page-aligned`);
    }
    if (this.pages.has(gpa)) {
      throw new TdxLaunchError(
        `TDH.MEM.PAGE.ADD at ${hex(gpa)}: the GPA is already mapped (TDX_EPT_ENTRY_STATE_INCORRECT)`,
      );
    }
    // PAGE.ADD copies the source page into the TD's page; MR.EXTEND reads the TD's page.
    const copy = isZero(page) ? ZERO_PAGE : page.slice();
    this.pages.set(gpa, copy);
    this.mrtd.pageAdd(gpa);
    this.traced('PAGE.ADD', gpa);
    if (measure) this.extend(gpa, copy);
  }

  extendMemory(gpa: bigint): void {
    const page = this.pages.get(gpa);
    if (page === undefined) {
      throw new TdxLaunchError(
        `TDH.MR.EXTEND at ${hex(gpa)}: no page added there (TDX_EPT_ENTRY_NOT_PRESENT)`,
      );
    }
    this.extend(gpa, page);
  }

  finalize(): Uint8Array {
    return this.mrtd.finalize();
  }

  /** 16 × TDH.MR.EXTEND, one per 256-byte chunk of the page, in address order. */
  private extend(gpa: bigint, page: Uint8Array): void {
    for (let off = 0; off < PAGE; off += TDX_MR_EXTEND_CHUNK) {
      const at = gpa + BigInt(off);
      this.mrtd.mrExtend(at, page.subarray(off, off + TDX_MR_EXTEND_CHUNK));
      this.traced('MR.EXTEND', at);
    }
  }

  private traced(op: TdxMeasureOp['op'], gpa: bigint): void {
    if (this.trace !== undefined) this.trace({ index: this.index, op, gpa });
    this.index++;
  }
}

/**
 * Issue a plan's pages in its order (single pass: INIT_MEM_REGION per page, measured ones
 * extended right away; two pass: per region, every page added unmeasured, then every page of a
 * measured region extended), then finalize; returns the MRTD.
 */
export function runTdxLaunchPlan(plan: TdxLaunchPlan, launcher: TdxLauncher): Uint8Array {
  const scratch = new Uint8Array(PAGE);
  for (const r of plan.regions) {
    const twoPass = plan.order === 'two-pass';
    for (let i = 0; i < r.pages; i++) {
      launcher.initMemRegion(
        r.gpa + BigInt(i * PAGE),
        pageOf(r.data, i, scratch),
        r.measure && !twoPass,
      );
    }
    if (twoPass && r.measure) {
      for (let i = 0; i < r.pages; i++) launcher.extendMemory(r.gpa + BigInt(i * PAGE));
    }
  }
  return launcher.finalize();
}

/** Page `i` of a section whose raw data is `data`: a view, or zero-padded into `scratch`. */
function pageOf(data: Uint8Array, i: number, scratch: Uint8Array): Uint8Array {
  const start = i * PAGE;
  if (start + PAGE <= data.length) return data.subarray(start, start + PAGE);
  if (start >= data.length) return ZERO_PAGE;
  scratch.fill(0);
  scratch.set(data.subarray(start));
  return scratch;
}
