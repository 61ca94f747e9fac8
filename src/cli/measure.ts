/**
 * `gmemlab measure`: the platform's launch measurement of a firmware image. `gmemlab measure snp`
 * (the SEV-SNP launch digest, run through the model's KVM) is measure_snp.ts, `gmemlab measure tdx`
 * (a TD's MRTD) is measure_tdx.ts: this module parses both's options and hands over. main.ts
 * starts either platform's own entry directly (its process start is most of a measurement's run
 * time) and loads this module only when that entry declines a command line, so that the messages
 * are the same either way.
 */
import { parseArgs, UsageError } from './args.js';
import { MEASURE_HELP, measureSnp, SNP_SPEC } from './measure_snp.js';
import { measureTdx, TDX_HELP, TDX_OPTIONS } from './measure_tdx.js';
import { MeasureInputError, runMeasureCommand, startMeasure } from './measure_io.js';

export { MeasureInputError, MEASURE_HELP };

const EXIT_OK = 0;

/**
 * Run `gmemlab measure ARGS`, printing through `out` (one line per call). Usage errors throw
 * UsageError; bad files throw MeasureInputError.
 */
export function measureMain(argv: readonly string[], out: (s: string) => void): number {
  const p = parseArgs(argv, { ...SNP_SPEC, ...TDX_OPTIONS });
  if (p.opts.has('help')) {
    out(p.positionals[0] === 'tdx' ? TDX_HELP : MEASURE_HELP);
    return EXIT_OK;
  }
  const [platform, ...extra] = p.positionals;
  if (platform === undefined)
    throw new UsageError('name the platform to measure: gmemlab measure snp|tdx ...');
  if (platform !== 'snp' && platform !== 'tdx')
    throw new UsageError(`unknown platform "${platform}" (gmemlab measure knows snp and tdx)`);
  if (extra.length > 0) throw new UsageError(`unexpected argument "${extra[0]}"`);
  if (platform === 'tdx') return measureTdx(p, out);
  if (p.opts.has('two-pass')) throw new UsageError('--two-pass goes with gmemlab measure tdx');

  return measureSnp(p, out);
}

/**
 * `gmemlab measure` as a command: errors are printed here (text, or JSON with --json) with exit
 * code 2, in the same words the CLI uses for other commands (measure_io.ts).
 */
export function measureCommand(argv: readonly string[], out: (s: string) => void): number {
  return runMeasureCommand(argv, out, measureMain);
}

/**
 * Entry for `gmemlab measure` from main.ts, without the rest of the CLI: output is gathered and
 * written with one synchronous write (in 64 KiB pieces for long traces; measure_io.ts).
 */
export function start(argv: readonly string[]): void {
  startMeasure(argv, measureCommand);
}
