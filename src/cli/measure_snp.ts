/**
 * `gmemlab measure snp`: the SEV-SNP launch digest of a firmware image, with virtee/sev-snp-measure's
 * options. The VMM's launch sequence (src/vmm/snp/launch_plan.ts) runs through the model's KVM
 * (src/vmm/snp/model_launcher.ts: an SNP VM of linux-6.18-snp, INIT2, guest_memfd memslots,
 * SNP_LAUNCH_START/UPDATE/FINISH); the digest is the model firmware's, and `--trace` prints every
 * page from the firmware's own log. With --snp-ovmf-hash (a digest no firmware can be seeded with)
 * the chain continues directly (src/vmm/snp/measure.ts, DigestLauncher).
 *
 * Process start matters here (a measurement is one short command): main.ts starts this module's
 * entry for `gmemlab measure snp ...` without the rest of the CLI and without measure tdx's code
 * (measure.ts, which dispatches both platforms, is loaded only when this entry declines); this
 * module loads only node:crypto, the option parser, the commands' shared I/O (measure_io.ts,
 * node:fs) and the measurement code.
 */
import { createHash, hash } from 'node:crypto';
import { optString, parseArgs, UsageError, type ParsedArgs } from './args.js';
import { Sha256 } from '../core/base/crypto/sha256.js';
import { fromHex, toHex } from '../core/base/crypto/hex.js';
import { SNP_PAGE_TYPE_NAME } from '../core/platform/sev_snp/launch_digest.js';
import {
  FirmwareImageError,
  parseFirmwareImage,
  sevEsResetEip,
  type FirmwareImage,
} from '../vmm/snp/ovmf.js';
import { cmdlineHash, type SevKernelHashes } from '../vmm/snp/sev_hashes.js';
import { cpuSignature, VCPU_TYPES } from '../vmm/snp/vcpu_types.js';
import { VMM_TYPES } from '../vmm/snp/vmsa.js';
import {
  buildSnpLaunchPlan,
  planPageCount,
  type SnpLaunchPlan,
  type SnpMode,
} from '../vmm/snp/launch_plan.js';
import {
  DigestLauncher,
  planStepLabels,
  runLaunchPlan,
  type SnpMeasuredPage,
} from '../vmm/snp/measure.js';
import {
  ModelLaunchError,
  ModelLauncher,
  modelLayoutFor,
  SNP_MEASURE_PROFILE,
} from '../vmm/snp/model_launcher.js';
import { sevEsLaunchDigest, sevLaunchDigest } from '../vmm/snp/sev_legacy.js';
import {
  MAX_IMAGE_BYTES,
  MeasureInputError,
  readChunks,
  readWhole,
  runMeasureCommand,
  startMeasure,
} from './measure_io.js';

/**
 * One-shot SHA-384 through node:crypto (`crypto.hash`: no Hash object per call, which costs more
 * than hashing a page in a short process; about 1,100 calls for a 2 MiB firmware).
 */
const nodeSha384 = (bytes: Uint8Array): Uint8Array =>
  new Uint8Array(hash('sha384', bytes, 'buffer'));

const EXIT_OK = 0;

/** KVM_MAX_VCPUS on x86. */
const MAX_VCPUS = 4096;
/** Largest kernel or initrd hashed (they are hashed as they are read, not held). */
const MAX_BLOB_BYTES = 4 * 2 ** 30;

export const MEASURE_HELP = `usage: gmemlab measure snp --ovmf FILE --vcpus N (--vcpu-type NAME | --vcpu-sig N |
                         --vcpu-family F --vcpu-model M --vcpu-stepping S) [options]

Compute the AMD SEV-SNP launch digest (the attestation report's MEASUREMENT) of a guest launched
with this firmware, as QEMU launches it, on the model's KVM (profile linux-6.18-snp): an SNP VM,
KVM_SEV_INIT2, guest_memfd memslots, SNP_LAUNCH_START, one SNP_LAUNCH_UPDATE per run of the
firmware pages and of the sections its SEV metadata asks for (secrets, CPUID, zero pages, the
kernel-hashes page), then SNP_LAUNCH_FINISH measuring one VMSA per vCPU; the digest is read from
the model firmware's guest context. The options are virtee/sev-snp-measure's. The digest is the
last line of output.

  --ovmf FILE              the firmware image (OVMF.fd), mapped to end at 4 GiB
  --vcpus N                number of vCPUs (1..${MAX_VCPUS}); one VMSA each
  --vcpu-type NAME         QEMU CPU model, for the CPUID signature in RDX
                           (${Object.keys(VCPU_TYPES).join(', ')})
  --vcpu-sig N             the CPUID signature itself (e.g. 0x800f12)
  --vcpu-family F, --vcpu-model M, --vcpu-stepping S
                           the signature from family, model and stepping
  --vmm-type TYPE          QEMU (default), ec2 or gce: their vCPU reset state and page types differ
  --guest-features N       SEV features of the VMSAs (default 0x1: SNP; 0x21 adds DebugSwap)
  --kernel FILE            measured direct boot: the kernel whose SHA-256 goes in the hashes page
  --initrd FILE            its initrd (needs --kernel)
  --append CMDLINE         its command line (needs --kernel)
  --snp-ovmf-hash HEX      start from this precomputed firmware digest instead of hashing --ovmf
                           (a firmware cannot be seeded: the chain then continues directly)
  --mode MODE              snp (default); snp:ovmf-hash (only the firmware pages: the digest for
                           --snp-ovmf-hash); snp:svsm (COCONUT-SVSM, needs --svsm and --vars-size
                           or --vars-file); sev and seves (the SHA-256 launch digests of SEV and
                           SEV-ES guests)
  --svsm FILE              the SVSM image (implies --mode snp:svsm)
  --vars-size N            size in bytes of the firmware's variable store (below the firmware)
  --vars-file FILE         the variable store file, for its size
  --output-format FORMAT   hex (default) or base64
  --trace                  print every measured page from the firmware's log: step, type, GPA,
                           contents hash (SHA-384 of the page, zeros for unmeasured types), digest
                           after it, and what it is
  --json                   print one JSON object (after one per page with --trace)

Exit codes: 0 ok, 2 usage or input error (a bad image is named with FILE:OFFSET).
(gmemlab measure tdx --help: the MRTD of an Intel TDX guest.)`;

export const SNP_SPEC = {
  ovmf: 'string',
  vcpus: 'string',
  'vcpu-type': 'string',
  'vcpu-sig': 'string',
  'vcpu-family': 'string',
  'vcpu-model': 'string',
  'vcpu-stepping': 'string',
  'vmm-type': 'string',
  'guest-features': 'string',
  kernel: 'string',
  initrd: 'string',
  append: 'string',
  'snp-ovmf-hash': 'string',
  mode: 'string',
  svsm: 'string',
  'vars-size': 'string',
  'vars-file': 'string',
  'output-format': 'string',
  trace: 'bool',
  json: 'bool',
  help: 'bool',
} as const;

type Mode = SnpMode | 'sev' | 'seves';

const MODES: Readonly<Record<string, Mode>> = {
  snp: 'snp',
  'sev-snp': 'snp',
  'snp:ovmf-hash': 'snp:ovmf-hash',
  'snp:svsm': 'snp:svsm',
  'sev-snp:svsm': 'snp:svsm',
  sev: 'sev',
  seves: 'seves',
  'sev-es': 'seves',
};

/** An integer as Python's int(x, 0) reads it (decimal, 0x, 0o, 0b), in 0..max. */
function autoInt(p: ParsedArgs, name: string, max: bigint): bigint | undefined {
  const v = optString(p, name);
  if (v === undefined) return undefined;
  const t = v.trim().replace(/_/g, '');
  if (!/^(0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+|[1-9][0-9]*|0+)$/.test(t)) {
    throw new UsageError(`--${name} expects an integer (decimal, 0x…, 0o… or 0b…), got "${v}"`);
  }
  const n = BigInt(t.replace(/^0+(?=\d)/, ''));
  if (n > max) throw new UsageError(`--${name}: ${v} is larger than ${max}`);
  return n;
}

function smallInt(p: ParsedArgs, name: string, min: number, max: number): number | undefined {
  const n = autoInt(p, name, BigInt(max));
  if (n === undefined) return undefined;
  if (n < BigInt(min))
    throw new UsageError(`--${name} expects an integer ${min}..${max}, got ${n}`);
  return Number(n);
}

const U64_MAX = (1n << 64n) - 1n;

/** The CPUID signature from the options (sev-snp-measure `get_vcpu_sig`), or undefined. */
function vcpuSignature(p: ParsedArgs): bigint | undefined {
  const type = optString(p, 'vcpu-type');
  const sig = autoInt(p, 'vcpu-sig', U64_MAX);
  const fms = ['vcpu-family', 'vcpu-model', 'vcpu-stepping'].map((n) => smallInt(p, n, 0, 0xffff));
  const given = [type !== undefined, sig !== undefined, fms.some((x) => x !== undefined)];
  if (given.filter((x) => x).length > 1) {
    throw new UsageError(
      'give the vCPU signature one way: --vcpu-type, --vcpu-sig, or --vcpu-family/--vcpu-model/--vcpu-stepping',
    );
  }
  if (fms.some((x) => x !== undefined)) {
    if (fms.some((x) => x === undefined))
      throw new UsageError('--vcpu-family, --vcpu-model and --vcpu-stepping go together');
    return BigInt(cpuSignature(fms[0]!, fms[1]!, fms[2]!));
  }
  if (sig !== undefined) return sig;
  if (type !== undefined) {
    const s = VCPU_TYPES[type];
    if (s === undefined)
      throw new UsageError(
        `--vcpu-type: unknown type "${type}" (known: ${Object.keys(VCPU_TYPES).join(', ')})`,
      );
    return BigInt(s);
  }
  return undefined;
}

// ------------------------------------------------------------------------------------------------
// Files

/**
 * SHA-256 of a file, hashed as it is read. The VMM hashes the kernel, initrd and command line with
 * its own crypto (QEMU: qcrypto); here that is Node's, so a 12 MB kernel costs milliseconds (the
 * launch digest itself is the model's: src/core/platform/sev_snp/launch_digest.ts, pure SHA-384).
 */
function hashFile(path: string, opt: string): Uint8Array {
  const h = createHash('sha256');
  readChunks(path, opt, MAX_BLOB_BYTES, (b) => h.update(b));
  return new Uint8Array(h.digest());
}

function fileSize(path: string, opt: string): number {
  let n = 0;
  readChunks(
    path,
    opt,
    MAX_IMAGE_BYTES,
    () => undefined,
    (s) => (n = s),
  );
  return n;
}

function loadImage(path: string, opt: string): FirmwareImage {
  const bytes = readWhole(path, opt);
  try {
    return parseFirmwareImage(bytes);
  } catch (e) {
    if (e instanceof FirmwareImageError) throw imageError(e, path);
    throw e;
  }
}

function imageError(e: FirmwareImageError, path: string): MeasureInputError {
  const where = e.offset === undefined ? path : `${path}:0x${e.offset.toString(16)}`;
  return new MeasureInputError(`${where}: ${e.message}`, path, e.offset);
}

// ------------------------------------------------------------------------------------------------
// The command

/** What one measurement prints. */
interface Report {
  readonly lines: string[];
  readonly digest: Uint8Array;
}

function encodeDigest(d: Uint8Array, format: string): string {
  return format === 'base64' ? Buffer.from(d).toString('base64') : toHex(d);
}

const hexN = (n: number | bigint): string => `0x${n.toString(16)}`;

/**
 * `gmemlab measure snp` with its options parsed (`p`; the platform positional checked by the
 * caller), printing through `out` (one line per call). Usage errors throw UsageError; bad files
 * throw MeasureInputError.
 */
export function measureSnp(p: ParsedArgs, out: (s: string) => void): number {
  const modeText = optString(p, 'mode');
  let mode: Mode;
  if (modeText === undefined) mode = p.opts.has('svsm') ? 'snp:svsm' : 'snp';
  else {
    const m = MODES[modeText.toLowerCase()];
    if (m === undefined)
      throw new UsageError(
        `--mode: unknown mode "${modeText}" (snp, snp:ovmf-hash, snp:svsm, sev, seves)`,
      );
    mode = m;
  }
  const format = optString(p, 'output-format') ?? 'hex';
  if (format !== 'hex' && format !== 'base64')
    throw new UsageError(`--output-format expects hex or base64, got "${format}"`);
  const ovmfPath = optString(p, 'ovmf');
  if (ovmfPath === undefined) throw new UsageError('--ovmf FILE is required');

  const vmmText = optString(p, 'vmm-type') ?? 'QEMU';
  const vmm = VMM_TYPES.find((t) => t.toLowerCase() === vmmText.toLowerCase());
  if (vmm === undefined)
    throw new UsageError(`--vmm-type: unknown VMM type "${vmmText}" (QEMU, ec2, gce)`);
  const guestFeatures = autoInt(p, 'guest-features', U64_MAX) ?? 0x1n;
  const vcpus = smallInt(p, 'vcpus', 1, MAX_VCPUS);
  const vcpuSig = vcpuSignature(p);
  const kernel = optString(p, 'kernel');
  const initrd = optString(p, 'initrd');
  const append = optString(p, 'append');
  const seedText = optString(p, 'snp-ovmf-hash');
  const svsmPath = optString(p, 'svsm');
  const varsSizeOpt = smallInt(p, 'vars-size', 0, MAX_IMAGE_BYTES);
  const varsFile = optString(p, 'vars-file');

  if (initrd !== undefined && kernel === undefined) throw new UsageError('--initrd needs --kernel');
  if (append !== undefined && kernel === undefined) throw new UsageError('--append needs --kernel');
  if (seedText !== undefined && mode !== 'snp')
    throw new UsageError('--snp-ovmf-hash goes with --mode snp');
  let seed: Uint8Array | undefined;
  if (seedText !== undefined) {
    seed = fromHex(seedText);
    if (seed === undefined || seed.length !== 48)
      throw new UsageError('--snp-ovmf-hash expects 96 hex digits (a SHA-384 digest)');
  }
  if (mode === 'snp:svsm') {
    if (svsmPath === undefined) throw new UsageError('--mode snp:svsm needs --svsm FILE');
    if ((varsSizeOpt === undefined) === (varsFile === undefined))
      throw new UsageError('--mode snp:svsm needs one of --vars-size N and --vars-file FILE');
    if (vmm !== 'QEMU') throw new UsageError('--mode snp:svsm is modelled for --vmm-type QEMU');
    if (kernel !== undefined) throw new UsageError('--mode snp:svsm takes no --kernel');
  } else if (svsmPath !== undefined || varsSizeOpt !== undefined || varsFile !== undefined) {
    throw new UsageError('--svsm, --vars-size and --vars-file go with --mode snp:svsm');
  }
  const needsVcpus = mode === 'snp' || mode === 'snp:svsm' || mode === 'seves';
  if (needsVcpus && vcpus === undefined)
    throw new UsageError(`--vcpus N is required in mode ${mode}`);
  if (needsVcpus && vmm === 'QEMU' && vcpuSig === undefined)
    throw new UsageError(
      `mode ${mode} with --vmm-type QEMU needs the vCPU signature: --vcpu-type, --vcpu-sig or --vcpu-family/--vcpu-model/--vcpu-stepping`,
    );

  const json = p.opts.has('json');
  const trace = p.opts.has('trace');
  const ovmf = loadImage(ovmfPath, 'ovmf');
  const kernelHashes: SevKernelHashes | undefined =
    kernel === undefined
      ? undefined
      : {
          kernel: hashFile(kernel, 'kernel'),
          initrd: initrd === undefined ? hashBytes(new Uint8Array(0)) : hashFile(initrd, 'initrd'),
          cmdline: cmdlineHash(append),
        };

  const summary: Record<string, unknown> = {
    platform: mode === 'sev' ? 'sev' : mode === 'seves' ? 'sev-es' : 'sev-snp',
    mode,
    ovmf: { file: ovmfPath, size: ovmf.bytes.length, gpa: hexN(0x1_0000_0000 - ovmf.bytes.length) },
  };

  if (mode === 'sev' || mode === 'seves') {
    if (trace) throw new UsageError(`--trace shows SNP's page chain; mode ${mode} has none`);
    const digest = withImage(ovmfPath, () =>
      mode === 'sev'
        ? sevLaunchDigest(ovmf, kernelHashes)
        : sevEsLaunchDigest(ovmf, kernelHashes, {
            vcpus: vcpus!,
            vcpuSig: vcpuSig ?? 0n,
            vmm,
            apEip: sevEsResetEip(ovmf),
          }),
    );
    printReport(out, { lines: [], digest }, format, json, {
      ...summary,
      ...(mode === 'seves' ? { vcpus, vmm, vcpuSig: hexN(vcpuSig ?? 0n) } : {}),
      kernel: kernel !== undefined,
    });
    return EXIT_OK;
  }

  let svsm: { image: FirmwareImage; varsSize: number } | undefined;
  if (mode === 'snp:svsm') {
    const image = loadImage(svsmPath!, 'svsm');
    const varsSize = varsSizeOpt ?? fileSize(varsFile!, 'vars-file');
    svsm = { image, varsSize };
    summary['svsm'] = { file: svsmPath, size: image.bytes.length, varsSize };
  }
  const plan: SnpLaunchPlan = withImages({ ovmf: ovmfPath, svsm: svsmPath ?? '' }, () =>
    buildSnpLaunchPlan({
      mode,
      ovmf,
      vcpus: vcpus ?? 0,
      vcpuSig,
      vmm,
      guestFeatures,
      kernelHashes,
      firmwareMeasured: seed === undefined,
      svsm,
    }),
  );
  const lines: string[] = [];
  const label = planStepLabels(plan);
  const traceLine = (s: SnpMeasuredPage): void => {
    const type = SNP_PAGE_TYPE_NAME[s.type];
    const what = label(s.index);
    lines.push(
      json
        ? JSON.stringify({
            step: s.index + 1,
            type,
            gpa: hexN(s.gpa),
            contents: toHex(s.contentsHash),
            digest: toHex(s.digest),
            what,
          })
        : `${String(s.index + 1).padStart(6)} ${type.padEnd(10)} ` +
            `0x${s.gpa.toString(16).padStart(12, '0')} ${toHex(s.contentsHash)} ` +
            `${toHex(s.digest)} ${what}`,
    );
  };
  let digest: Uint8Array;
  if (seed === undefined) {
    // The model's KVM and firmware: the VMM's launch on a linux-6.18-snp host; the trace is the
    // firmware's own log of what it measured.
    const launcher = withLaunch(
      () =>
        new ModelLauncher({
          guestFeatures: mode === 'snp:svsm' ? 1n : guestFeatures,
          layout: modelLayoutFor(plan, ovmf.bytes.length),
          // Node's SHA-384 (OpenSSL) for the firmware's page and PAGE_INFO hashes: the same bytes
          // as the pure SHA-384 (the tests' vectors run both), without its JIT warm-up.
          sha384: nodeSha384,
        }),
    );
    digest = withLaunch(() => runLaunchPlan(plan, launcher));
    if (trace) for (const s of launcher.measuredPages()) traceLine(s);
    summary['engine'] = `model (${SNP_MEASURE_PROFILE})`;
  } else {
    // A firmware's digest cannot be seeded: --snp-ovmf-hash continues the chain directly.
    digest = runLaunchPlan(
      plan,
      new DigestLauncher({ seed, trace: trace ? traceLine : undefined }),
    );
    summary['engine'] = 'digest chain (seeded)';
  }
  if (mode !== 'snp:ovmf-hash') {
    Object.assign(summary, {
      vcpus,
      vmm: mode === 'snp:svsm' ? 'QEMU' : vmm,
      vcpuSig: hexN(vcpuSig ?? 0n),
      guestFeatures: hexN(mode === 'snp:svsm' ? 1n : guestFeatures),
      kernel: kernel !== undefined,
      seeded: seed !== undefined,
    });
  }
  summary['pages'] = planPageCount(plan);
  printReport(out, { lines, digest }, format, json, summary, trace);
  return EXIT_OK;
}

function hashBytes(b: Uint8Array): Uint8Array {
  return new Sha256().update(b).digest();
}

/** Image errors of a launch plan, named with their file. */
function withImages<T>(paths: { ovmf: string; svsm: string }, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof FirmwareImageError)
      throw imageError(e, e.image === 'svsm' ? paths.svsm : paths.ovmf);
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
}

/** A launch the model's KVM refuses is an input error, with the call and its errno. */
function withLaunch<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof ModelLaunchError)
      throw new MeasureInputError(`the model's KVM refuses the launch: ${e.message}`);
    throw e;
  }
}

function withImage<T>(path: string, f: () => T): T {
  return withImages({ ovmf: path, svsm: path }, f);
}

function printReport(
  out: (s: string) => void,
  r: Report,
  format: string,
  json: boolean,
  summary: Record<string, unknown>,
  trace = false,
): void {
  if (trace && !json) {
    out(
      `# step ${'type'.padEnd(10)} ${'gpa'.padEnd(14)} ` +
        `${'contents (SHA-384 of the page; zeros: not measured)'.padEnd(96)} ` +
        `${'digest after'.padEnd(96)} what`,
    );
  }
  for (const l of r.lines) out(l);
  const d = encodeDigest(r.digest, format);
  if (json) out(JSON.stringify({ ...summary, format, digest: d }));
  else out(d);
}

/**
 * Entry for `gmemlab measure snp ...` from main.ts. Returns false, having done nothing, when the
 * command line is not one this entry takes (an unknown option, perhaps measure tdx's; no `snp`
 * first): main.ts then runs measure.ts, which says what is wrong.
 */
export function start(argv: readonly string[]): boolean {
  let p: ParsedArgs;
  try {
    p = parseArgs(argv, SNP_SPEC);
  } catch (e) {
    if (e instanceof UsageError) return false;
    throw e;
  }
  if (p.positionals[0] !== 'snp') return false;
  startMeasure(argv, (a, out) =>
    runMeasureCommand(a, out, () => {
      if (p.opts.has('help')) {
        out(MEASURE_HELP);
        return EXIT_OK;
      }
      const extra = p.positionals[1];
      if (extra !== undefined) throw new UsageError(`unexpected argument "${extra}"`);
      return measureSnp(p, out);
    }),
  );
  return true;
}
