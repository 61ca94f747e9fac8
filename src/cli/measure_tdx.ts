/**
 * `gmemlab measure tdx`: the MRTD of a TD built from a TDVF firmware image (OVMF with TDVF metadata,
 * or td-shim). The VMM's build sequence (src/vmm/tdx/launch_plan.ts: the TDVF sections in order,
 * KVM_TDX_INIT_MEM_REGION with or without the measure flag, single or two pass) runs through a
 * TdxLauncher (src/vmm/tdx/measure.ts): the single-pass order (upstream KVM) runs on the model
 * (ModelTdxLauncher, src/vmm/tdx/model_launcher.ts: a TD on the model's linux-6.18-tdx KVM, the
 * MRTD read from the TDX module's TDCS after KVM_TDX_FINALIZE_VM); the two-pass order of the older
 * stacks, which 6.18 KVM cannot issue (no separate MR.EXTEND ioctl), runs through MrtdLauncher,
 * the TDX module's MRTD accumulation over its own private pages (src/core/platform/tdx/mrtd.ts).
 *
 * Two ways in: measure.ts parses the options of `gmemlab measure` (its spec includes TDX_OPTIONS)
 * and hands `measure tdx` to measureTdx(); and main.ts starts `gmemlab measure tdx ...` here
 * directly (start()), without loading measure.ts and the SNP model stack (process start is most
 * of a measurement), falling back to measure.ts for a command line this entry does not take (an
 * option of measure snp), so that its messages are the same.
 */
import { createHash, type Hash } from 'node:crypto';
import { optString, parseArgs, UsageError, type ParsedArgs } from './args.js';
import { MeasureInputError, readWhole, runMeasureCommand, startMeasure } from './measure_io.js';
import { toHex } from '../core/base/crypto/hex.js';
import { FirmwareImageError } from '../vmm/firmware/guid_table.js';
import { parseTdvfImage, TDVF_SECTION_NAME, type TdvfImage } from '../vmm/tdx/tdvf.js';
import {
  buildTdxLaunchPlan,
  tdxPlanCounts,
  tdxPlanLocator,
  type TdxLaunchPlan,
} from '../vmm/tdx/launch_plan.js';
import {
  MrtdLauncher,
  runTdxLaunchPlan,
  TdxLaunchError,
  type TdxLauncher,
  type TdxMeasureOp,
} from '../vmm/tdx/measure.js';
import { ModelTdxLauncher, TDX_MEASURE_PROFILE } from '../vmm/tdx/model_launcher.js';
import type { Sha384Stream } from '../core/platform/tdx/mrtd.js';

/** The options of `measure tdx` that `measure snp` does not have (merged into measure's spec). */
export const TDX_OPTIONS = { 'two-pass': 'bool' } as const;

/** The options `measure tdx` takes (of the merged spec). */
const TDX_TAKES = new Set(['ovmf', 'two-pass', 'output-format', 'trace', 'json', 'help']);

export const TDX_HELP = `usage: gmemlab measure tdx --ovmf FILE [--two-pass] [--output-format hex|base64] [--trace] [--json]

Compute the MRTD (the TD's build-time measurement, in its TD report and quote) of an Intel TDX guest
built from this firmware, as the VMM builds it: the sections of the firmware's TDVF metadata in
order, each added with KVM_TDX_INIT_MEM_REGION (TDH.MEM.PAGE.ADD per page) and, when the section
has the MR.EXTEND attribute, measured (16 x TDH.MR.EXTEND per page); PAGE.AUG sections are
skipped; then KVM_TDX_FINALIZE_VM (TDH.MR.FINALIZE). The MRTD is the last line of output.

  --ovmf FILE              the firmware: an OVMF image with TDVF metadata (found through the OVMF
                           footer GUID table) or a td-shim image (metadata pointer at end - 0x20)
  --two-pass               the older order (KVM TDX v19-era stacks, dstack-mr's two_pass_add_pages):
                           per section, every PAGE.ADD, then every MR.EXTEND; default: single pass,
                           upstream KVM's order (per page: PAGE.ADD, then its 16 MR.EXTENDs)
  --output-format FORMAT   hex (default) or base64
  --trace                  print every PAGE.ADD and MR.EXTEND: step, operation, GPA, section, and
                           for MR.EXTEND the file offset of the 256 measured bytes ("zeros" beyond
                           the section's raw data)
  --json                   print one JSON object (after one per operation with --trace)

Exit codes: 0 ok, 2 usage or input error (a bad image is named with FILE:OFFSET).`;

const hexN = (n: number | bigint): string => `0x${n.toString(16)}`;

/**
 * Node's SHA-384 (OpenSSL) for the MRTD the model's TDX module accumulates: the module's 128- and
 * 256-byte updates (about 16,000 for a 2 MiB firmware) are gathered into 64 KiB and handed over in
 * order, so the hash costs a few native calls instead of the pure TypeScript SHA-384's JIT warm-up
 * and per-block work. The blocks, their order and the MRTD are the model's (the pure SHA-384 gives
 * the same bytes: T0-T5 in the tests run it).
 */
class NodeSha384 implements Sha384Stream {
  private readonly h: Hash = createHash('sha384');
  private readonly buf = new Uint8Array(64 << 10);
  private used = 0;

  update(bytes: Uint8Array): this {
    if (this.used + bytes.length > this.buf.length) this.flush();
    if (bytes.length > this.buf.length) this.h.update(bytes);
    else {
      this.buf.set(bytes, this.used);
      this.used += bytes.length;
    }
    return this;
  }

  digest(): Uint8Array {
    this.flush();
    return new Uint8Array(this.h.digest());
  }

  private flush(): void {
    if (this.used > 0) this.h.update(this.buf.subarray(0, this.used));
    this.used = 0;
  }
}

/** Run `gmemlab measure tdx` with parsed options; prints through `out`. */
export function measureTdx(p: ParsedArgs, out: (s: string) => void): number {
  for (const name of p.opts.keys()) {
    if (!TDX_TAKES.has(name))
      throw new UsageError(`--${name} is an option of measure snp, not of measure tdx`);
  }
  const format = optString(p, 'output-format') ?? 'hex';
  if (format !== 'hex' && format !== 'base64')
    throw new UsageError(`--output-format expects hex or base64, got "${format}"`);
  const path = optString(p, 'ovmf');
  if (path === undefined) throw new UsageError('--ovmf FILE is required');
  const json = p.opts.has('json');
  const trace = p.opts.has('trace');
  const twoPass = p.opts.has('two-pass');

  const bytes = readWhole(path, 'ovmf');
  let img: TdvfImage;
  try {
    img = parseTdvfImage(bytes);
  } catch (e) {
    if (e instanceof FirmwareImageError) {
      const where = e.offset === undefined ? path : `${path}:0x${e.offset.toString(16)}`;
      throw new MeasureInputError(`${where}: ${e.message}`, path, e.offset);
    }
    throw e;
  }
  const plan = buildTdxLaunchPlan(img, { twoPass });
  const lines: string[] = [];
  const locate = tdxPlanLocator(plan);
  const traceLine = (op: TdxMeasureOp): void => {
    const at = locate(op.gpa);
    const section = at?.region.section;
    const source =
      op.op === 'PAGE.ADD' ? undefined : at?.fileOffset === undefined ? null : at.fileOffset;
    if (json) {
      lines.push(
        JSON.stringify({
          step: op.index + 1,
          op: op.op,
          gpa: hexN(op.gpa),
          section: section?.index,
          type: section === undefined ? undefined : TDVF_SECTION_NAME[section.type],
          ...(source === undefined ? {} : { offset: source === null ? null : hexN(source) }),
        }),
      );
    } else {
      const what = section === undefined ? '?' : `${section.index} ${at!.region.what}`;
      const src = source === undefined ? '' : source === null ? 'zeros' : hexN(source);
      lines.push(
        `${String(op.index + 1).padStart(7)} ${op.op.padEnd(9)} ` +
          `0x${op.gpa.toString(16).padStart(12, '0')} ${what.padEnd(16)} ${src}`.trimEnd(),
      );
    }
  };
  let mrtd: Uint8Array;
  try {
    const opts = { trace: trace ? traceLine : undefined, sha384: () => new NodeSha384() };
    const launcher: TdxLauncher = twoPass
      ? new MrtdLauncher(opts)
      : new ModelTdxLauncher(plan, opts);
    mrtd = runTdxLaunchPlan(plan, launcher);
  } catch (e) {
    if (e instanceof TdxLaunchError)
      throw new MeasureInputError(`${path}: the TDX module refuses the build: ${e.message}`, path);
    throw e;
  }
  if (trace && !json) out(`#  step op        gpa            section          measured bytes at`);
  for (const l of lines) out(l);
  const d = format === 'base64' ? Buffer.from(mrtd).toString('base64') : toHex(mrtd);
  if (json) out(JSON.stringify({ ...summary(path, img, plan), format, mrtd: d }));
  else out(d);
  return 0;
}

function summary(path: string, img: TdvfImage, plan: TdxLaunchPlan): Record<string, unknown> {
  const counts = tdxPlanCounts(plan);
  return {
    platform: 'tdx',
    firmware: {
      file: path,
      size: img.bytes.length,
      format: img.format,
      metadata: hexN(img.descriptorOffset),
    },
    order: plan.order,
    sections: plan.sections.map(({ section: s, action }) => ({
      index: s.index,
      type: TDVF_SECTION_NAME[s.type],
      gpa: hexN(s.gpa),
      size: hexN(s.memSize),
      dataOffset: hexN(s.dataOffset),
      rawSize: hexN(s.rawSize),
      attributes: hexN(s.attributes),
      action,
    })),
    pageAdds: counts.pageAdds,
    mrExtends: counts.mrExtends,
    engine:
      plan.order === 'two-pass' ? 'TDX module MRTD (direct)' : `model (${TDX_MEASURE_PROFILE})`,
  };
}

/** The options of `gmemlab measure tdx` alone (the direct entry's spec). */
const TDX_SPEC = {
  ovmf: 'string',
  'output-format': 'string',
  trace: 'bool',
  json: 'bool',
  help: 'bool',
  ...TDX_OPTIONS,
} as const;

/**
 * Entry for `gmemlab measure tdx ...` from main.ts. Returns false, having done nothing, when the
 * command line is not one this entry takes (an unknown option, perhaps one of measure snp's; no
 * `tdx` first): main.ts then runs measure.ts, which says what is wrong.
 */
export function start(argv: readonly string[]): boolean {
  let p: ParsedArgs;
  try {
    p = parseArgs(argv, TDX_SPEC);
  } catch (e) {
    if (e instanceof UsageError) return false;
    throw e;
  }
  if (p.positionals[0] !== 'tdx') return false;
  startMeasure(argv, (a, out) =>
    runMeasureCommand(a, out, () => {
      if (p.opts.has('help')) {
        out(TDX_HELP);
        return 0;
      }
      const extra = p.positionals[1];
      if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
      return measureTdx(p, out);
    }),
  );
  return true;
}
