/**
 * `gmemlab fuzz` (model-based fuzzing) and `gmemlab fuzz --differential` (the model vs
 * /dev/kvm). The fuzzers (src/fuzz/) are stepped generators that pause after every op; this file
 * drives them: the budgets (--time, --ops, --traces) are checked after every op, the event loop
 * gets a turn every SLICE_MS so SIGINT and SIGTERM are seen, and findings are written to --out.
 *
 * On SIGINT or SIGTERM the run stops at the next op boundary: the current trace is cut short, a
 * shrink in progress keeps the smallest trace it reached (its file says the shrink was
 * interrupted), the summary is printed as usual with an "interrupted" marker, and the exit code
 * is 1 if something was found, else 130 (SIGINT) or 143 (SIGTERM). A second signal exits at once.
 * --time is a wall-clock bound: shrinking gets only the time that is left.
 */
import {
  accessSync,
  constants,
  existsSync,
  mkdirSync,
  readdirSync,
  rmdirSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import {
  differentialSteps,
  type Disagreement,
  type DifferentialProgress,
} from '../fuzz/differential.js';
import {
  modelFuzzSteps,
  newCoverage,
  type FoundViolation,
  type ModelFuzzProgress,
} from '../fuzz/model_fuzz.js';
import { MAX_SEED } from '../fuzz/prng.js';
import type { Phase, Steps } from '../fuzz/steps.js';
import { formatOp, formatResult } from '../trace/format.js';
import { optDuration, optInt, optString, parseArgs, UsageError, type ParsedArgs } from './args.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError } from './io.js';
import { bar, clock, ProgressLine } from './progress.js';
import { openKvmAndModel, resolveProfile } from './backends.js';
import { parseMutants } from './check.js';

/** Exit codes of an interrupted run that found nothing (128 + the signal's number). */
export const EXIT_SIGINT = 130;
export const EXIT_SIGTERM = 143;

/** The longest generated trace --trace-ops accepts. */
export const MAX_TRACE_OPS = 100_000;

/** How long the fuzzers run between two turns of the event loop (when signals are seen). */
const SLICE_MS = 20;

const EXIT_NOTE = `Exit codes: 0 nothing found, 1 something found (also when interrupted), 2 usage or input
error (a bad --out folder included), 130 / 143 interrupted by SIGINT / SIGTERM with nothing
found. On SIGINT or SIGTERM the run stops at the next op, writes what it found (a shrink cut
short is written as far as it got, and its file says so) and prints its summary with
"interrupted"; a second signal quits at once. --time bounds the whole run, shrinking included;
--ops and --traces count fuzzing only. Integers are exact: --seed 0..${MAX_SEED}, --trace-ops
1..${MAX_TRACE_OPS}, --ops and --traces 1..2^53-1; --time must be more than 0.`;

export const FUZZ_HELP = `usage: gmemlab fuzz --differential [--seed S] [--time T | --traces N] [--trace-ops N] [--kernel P]
                    [--out DIR] [--keep-going] [--quiet] [--json]
       gmemlab fuzz [--seed S] [--time T | --ops N] ...   (model-based fuzzing: gmemlab fuzz --help)

--differential: generate random traces from a grammar of plausible VMM behaviour (mostly valid
calls, edge values often), run each on the model and on this machine's /dev/kvm, and on the first
disagreement shrink the trace to a minimal one that still disagrees and write it to DIR.

  --seed S        first seed (default 1); trace i uses seed S+i (mod 2^32), so runs replay exactly
  --time T        stop after T (e.g. 30s, 5m, 1h); default 60s unless --traces is given
  --traces N      stop after N traces
  --trace-ops N   ops per trace (default 40)
  --kernel P      model profile: a name, NAME+host or a file from probe --save (default: the
                  one \`gmemlab probe\` matches, or GMEMLAB_KERNEL)
  --out DIR       where minimized disagreements go (default fuzz-out/; checked before the run,
                  removed again if the run created it and wrote nothing)
  --keep-going    collect every disagreement instead of stopping at the first
  --quiet         no progress line
  --json          print the summary (and every disagreement) as one JSON object

${EXIT_NOTE} No /dev/kvm is exit code 2.`;

export const MODEL_FUZZ_HELP = `usage: gmemlab fuzz [--seed S] [--time T | --ops N] [--kernel P] [--mutant NAME] [--trace-ops N]
                    [--out DIR] [--keep-going] [--design-holes] [--quiet] [--json]
       gmemlab fuzz --differential ...   (gmemlab fuzz --differential --help)

Model-based fuzzing: random operation sequences (mostly valid VMM behaviour, edge values often,
private-memory walks on profiles that have them) run on the model with every security invariant
checked after every op. A violation is shrunk to a minimal trace that still breaks the same
invariant and written to DIR. Deterministic for a seed.

  --seed S        first seed (default 1); trace i uses seed S+i (mod 2^32)
  --time T        stop after T (30s, 5m, 1h; default 60s unless --ops is given)
  --ops N         stop after exactly N ops (the last trace is cut short)
  --trace-ops N   ops per generated trace (default 60)
  --kernel P      profile: a name, NAME+host or a file from probe --save (default: this
                  machine's profile, else linux-6.18)
  --mutant NAMES  fuzz a model with injected bugs (gmemlab check --list)
  --out DIR       where minimized violations go (default fuzz-out/; checked before the run,
                  removed again if the run created it and wrote nothing)
  --keep-going    keep fuzzing after a violation
  --design-holes  on a historical design's profile (design-*), also make the accesses the
                  design lets happen and its invariant reports (README "Designs"); without it
                  the design walks' VMM keeps off them
  --quiet         no progress line
  --json          print the summary (and coverage) as JSON

${EXIT_NOTE}`;

// ---------------------------------------------------------------------------------------------
// Options

type Budget = {
  readonly seed: number;
  readonly timeMs: number | undefined;
  /** --ops (model-based) or --traces (differential). */
  readonly count: number | undefined;
  readonly perTrace: number;
};

function parseBudget(p: ParsedArgs, count: 'ops' | 'traces', defaultPerTrace: number): Budget {
  const seed = optInt(p, 'seed', { max: MAX_SEED }) ?? 1;
  const n = optInt(p, count, { min: 1 });
  const time = optDuration(p, 'time');
  if (time !== undefined && time <= 0)
    throw new UsageError('--time must be more than 0 (for a long run give a long time, e.g. 24h)');
  const perTrace = optInt(p, 'trace-ops') ?? defaultPerTrace;
  if (perTrace < 1) throw new UsageError('--trace-ops must be at least 1');
  if (perTrace > MAX_TRACE_OPS)
    throw new UsageError(`--trace-ops expects at most ${MAX_TRACE_OPS}, got ${perTrace}`);
  return { seed, timeMs: time ?? (n === undefined ? 60_000 : undefined), count: n, perTrace };
}

// ---------------------------------------------------------------------------------------------
// The output folder

const errCode = (e: unknown): string =>
  (e as NodeJS.ErrnoException).code ?? (e as Error).message ?? String(e);

/**
 * mkdir -p, one level at a time (Node's recursive mkdirSync spins forever on a path under /proc,
 * whose mkdir fails with ENOENT); returns the first folder it created, if any.
 */
function mkdirs(abs: string): string | undefined {
  const missing: string[] = [];
  for (let d = abs; !existsSync(d); d = dirname(d)) {
    missing.push(d);
    if (dirname(d) === d) break;
  }
  for (const d of missing.reverse()) mkdirSync(d);
  return missing[0];
}

/** The --out folder: checked (and created) before the run, removed if it stayed unused. */
export class OutDir {
  private written = 0;

  private constructor(
    readonly path: string,
    /** The first folder this run created (mkdir -p), if any. */
    private readonly created: string | undefined,
  ) {}

  /** Create the folder if needed and check it is a writable folder (InputError otherwise). */
  static prepare(path: string): OutDir {
    const abs = resolve(path);
    let exists = true;
    try {
      if (!statSync(abs).isDirectory())
        throw new InputError(`--out ${path}: exists and is not a folder (ENOTDIR)`);
    } catch (e) {
      if (e instanceof InputError) throw e;
      const code = errCode(e);
      if (code === 'ENOTDIR')
        throw new InputError(
          `--out ${path}: cannot create the folder (ENOTDIR: a parent is a file)`,
        );
      if (code !== 'ENOENT')
        throw new InputError(`--out ${path}: cannot use it as a folder (${code})`);
      exists = false;
    }
    let created: string | undefined;
    if (!exists) {
      try {
        created = mkdirs(abs);
      } catch (e) {
        throw new InputError(`--out ${path}: cannot create the folder (${errCode(e)})`);
      }
    }
    try {
      accessSync(abs, constants.W_OK | constants.X_OK);
    } catch (e) {
      throw new InputError(`--out ${path}: the folder is not writable (${errCode(e)})`);
    }
    return new OutDir(path, created);
  }

  /** Write a file into the folder; throws the file system's error. */
  write(name: string, text: string): string {
    const file = join(this.path, name);
    mkdirs(resolve(this.path));
    writeFileSync(file, text);
    this.written++;
    return file;
  }

  /** Remove the folders this run created when nothing was written into them. */
  cleanup(): void {
    if (this.created === undefined || this.written > 0) return;
    const top = resolve(this.created);
    for (let d = resolve(this.path); ; d = dirname(d)) {
      try {
        if (readdirSync(d).length > 0) return;
        rmdirSync(d);
      } catch {
        return;
      }
      if (d === top || dirname(d) === d) return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Driving a stepped fuzzer: budgets, signals, the event loop

type StopReason = 'signal' | 'time' | 'ops' | 'traces' | 'finding' | 'write-error';

/** Decides, after every op, whether the fuzzer stops; remembers why it first did. */
class Control {
  readonly start = performance.now();
  signal: NodeJS.Signals | undefined;
  writeFailed = false;
  reason: StopReason | undefined;

  constructor(
    private readonly timeMs: number | undefined,
    /** Is the fuzzing budget (--ops) spent? It does not bound shrinking. */
    private readonly countSpent: () => boolean = () => false,
  ) {}

  elapsed(): number {
    return performance.now() - this.start;
  }

  stop(phase: Phase): boolean {
    const why: StopReason | undefined =
      this.signal !== undefined
        ? 'signal'
        : this.writeFailed
          ? 'write-error'
          : this.timeMs !== undefined && this.elapsed() >= this.timeMs
            ? 'time'
            : phase === 'fuzz' && this.countSpent()
              ? 'ops'
              : undefined;
    if (why !== undefined) this.reason ??= why;
    return why !== undefined;
  }

  /** Why a shrink was cut short, for the file header and the output. */
  shrinkNote(): string {
    if (this.reason === 'signal') return `interrupted by ${this.signal ?? 'a signal'}`;
    if (this.reason === 'time') return 'cut short by --time';
    return 'stopped after a write error';
  }

  exitCode(found: number): number {
    if (found > 0) return EXIT_CHECK_FAILED;
    if (this.signal === 'SIGINT') return EXIT_SIGINT;
    if (this.signal !== undefined) return EXIT_SIGTERM;
    return EXIT_OK;
  }
}

/**
 * Catch SIGINT and SIGTERM for the run: the first one asks the fuzzer to stop at the next op, a
 * second one exits at once. Returns the function that restores the default handling.
 */
function catchSignals(control: Control, quiet: boolean, dir: OutDir): () => void {
  const handler = (sig: NodeJS.Signals): void => {
    if (control.signal !== undefined) {
      process.stderr.write(`\ngmemlab fuzz: ${sig} again: quitting at once\n`);
      dir.cleanup();
      process.exit(sig === 'SIGINT' ? EXIT_SIGINT : EXIT_SIGTERM);
    }
    control.signal = sig;
    if (!quiet)
      process.stderr.write(
        `\ngmemlab fuzz: ${sig}: stopping at the next op and writing what was found (${sig} again quits at once)\n`,
      );
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/**
 * Run a stepped fuzzer, asking `control` after every op whether to stop and giving the event loop
 * a turn (signals, `tick` for the progress line) every SLICE_MS.
 */
/**
 * Drive a fuzzer with the run's signal handlers installed, then settle why it stopped: a finding
 * ends a run that does not keep going. Returns the result, the elapsed time and whether a signal
 * stopped it.
 */
async function driveRun<T>(
  g: Steps<T>,
  control: Control,
  tick: () => void,
  opts: { quiet: boolean; dir: OutDir; keepGoing: boolean; found: (r: T) => number },
): Promise<{ r: T; el: number; interrupted: boolean }> {
  const restore = catchSignals(control, opts.quiet, opts.dir);
  let r: T;
  try {
    r = await drive(g, control, tick);
  } finally {
    restore();
  }
  if (control.reason === undefined && opts.found(r) > 0 && !opts.keepGoing)
    control.reason = 'finding';
  return { r, el: control.elapsed(), interrupted: control.signal !== undefined };
}

async function drive<T>(g: Steps<T>, control: Control, tick: () => void): Promise<T> {
  let slice = performance.now();
  let stop = false;
  for (;;) {
    const r = g.next(stop);
    if (r.done === true) return r.value;
    if (performance.now() - slice >= SLICE_MS) {
      tick();
      await new Promise<void>((res) => setImmediate(res));
      slice = performance.now();
    }
    stop = control.stop(r.value);
  }
}

const SIGNAL_NOTE = (c: Control): string =>
  `interrupted by ${c.signal ?? 'a signal'} after ${clock(c.elapsed())}: stopped at an op boundary (the last trace was cut short); the figures cover the work done`;

/** Report a finding that could not be written: the trace goes to stderr so it is not lost. */
function reportWriteError(dir: string, name: string, e: unknown, lines: readonly string[]): string {
  const msg = `cannot write ${join(dir, name)}: ${errCode(e)}`;
  process.stderr.write(
    `gmemlab fuzz: ${msg}; stopping the run. The trace that was to be written:\n${lines.join('\n')}\n`,
  );
  return msg;
}

// ---------------------------------------------------------------------------------------------
// Differential fuzzing

export function disagreementText(d: Disagreement, kernel: string, shrinkNote?: string): string {
  const op = d.ops[d.index]!;
  const lines = [
    `# gmemlab differential fuzzing: seed ${d.seed}, model ${kernel} vs /dev/kvm`,
    d.shrinkStopped
      ? `# shrinking ${shrinkNote ?? 'stopped'} after ${d.shrinkTries} runs: reduced from ${d.originalOps} ops to ${d.ops.length}, not necessarily minimal; first disagreement at op ${d.index + 1} (${op.op}):`
      : `# minimized from ${d.originalOps} ops to ${d.ops.length} (${d.shrinkTries} shrink runs); first disagreement at op ${d.index + 1} (${op.op}):`,
    `#   model:  ${formatResult(d.model)}`,
    `#   kernel: ${formatResult(d.reference)}`,
    ...d.ops.map(formatOp),
  ];
  return lines.join('\n') + '\n';
}

export const disagreementFile = (d: Disagreement): string => `disagreement-seed${d.seed}.jsonl`;

export async function fuzzDifferentialMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    differential: 'bool',
    seed: 'string',
    time: 'string',
    traces: 'string',
    'trace-ops': 'string',
    kernel: 'string',
    out: 'string',
    'keep-going': 'bool',
    quiet: 'bool',
    json: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(FUZZ_HELP);
    return EXIT_OK;
  }
  const b = parseBudget(p, 'traces', 40);
  const json = p.opts.has('json');
  const quiet = p.opts.has('quiet');
  const keepGoing = p.opts.has('keep-going');
  const dir = OutDir.prepare(optString(p, 'out') ?? 'fuzz-out');
  try {
    // A signal while the backends open (before the run's own handlers) removes the empty folder.
    const early = (sig: NodeJS.Signals): void => {
      dir.cleanup();
      process.exit(sig === 'SIGINT' ? EXIT_SIGINT : EXIT_SIGTERM);
    };
    process.on('SIGINT', early);
    process.on('SIGTERM', early);
    let opened;
    try {
      opened = await openKvmAndModel(optString(p, 'kernel'));
    } finally {
      process.off('SIGINT', early);
      process.off('SIGTERM', early);
    }
    const { kvm, model, profile } = opened;
    const kernel = profile.name;
    const progress = new ProgressLine(!quiet && !json);
    const control = new Control(b.timeMs);
    const files: Array<{ file?: string; writeError?: string }> = [];
    let live: DifferentialProgress | undefined;
    const tick = (): void => {
      if (live === undefined) return;
      const el = control.elapsed();
      const frac = b.timeMs !== undefined ? el / b.timeMs : live.traces / (b.count ?? 1);
      const rate = el > 0 ? Math.round((live.ops * 1000) / el) : 0;
      progress.update(
        `${bar(frac)} ${clock(el)} traces ${live.traces} (${el > 0 ? Math.round((live.traces * 1000) / el) : 0}/s) ops ${live.ops} (${rate}/s) refused ${live.refused} disagreements ${live.disagreements}`,
      );
    };
    const { r, el, interrupted } = await driveRun(
      differentialSteps({
        seed: b.seed,
        profile,
        model,
        reference: kvm,
        opsPerTrace: b.perTrace,
        keepGoing,
        shouldContinue: (pr) => {
          live = pr;
          if (control.stop('fuzz')) return false;
          if (b.count !== undefined && pr.traces >= b.count) {
            control.reason ??= 'traces';
            return false;
          }
          return true;
        },
        onDisagreement: (d) => {
          const name = disagreementFile(d);
          const note = d.shrinkStopped ? control.shrinkNote() : undefined;
          const text = disagreementText(d, kernel, note);
          let file: string | undefined;
          try {
            file = dir.write(name, text);
            files.push({ file });
          } catch (e) {
            control.writeFailed = true;
            files.push({ writeError: reportWriteError(dir.path, name, e, text.split('\n')) });
          }
          if (json) return;
          progress.update('', true);
          out(
            d.shrinkStopped
              ? `disagreement at seed ${d.seed}: shrinking ${note}, reduced to ${d.ops.length} ops (not necessarily minimal) → ${file ?? '(not written)'}`
              : `disagreement at seed ${d.seed}: minimized to ${d.ops.length} ops → ${file ?? '(not written)'}`,
          );
          out(`  op ${d.index + 1}: ${formatOp(d.ops[d.index]!)}`);
          out(`  model:  ${formatResult(d.model)}`);
          out(`  kernel: ${formatResult(d.reference)}`);
        },
      }),
      control,
      tick,
      { quiet, dir, keepGoing, found: (x) => x.disagreements.length },
    );
    if (json) {
      out(
        JSON.stringify({
          seed: b.seed,
          kernel,
          seconds: Math.round(el / 100) / 10,
          traces: r.progress.traces,
          ops: r.progress.ops,
          opsPerSecond: el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0,
          refused: r.progress.refused,
          interrupted,
          ...(interrupted ? { signal: control.signal } : {}),
          stoppedBy: control.reason ?? 'time',
          disagreements: r.disagreements.map((d, i) => ({
            seed: d.seed,
            file: files[i]?.file ?? null,
            ...(files[i]?.writeError !== undefined ? { writeError: files[i].writeError } : {}),
            minimizedOps: d.ops.length,
            shrinkStopped: d.shrinkStopped,
            op: formatOp(d.ops[d.index]!),
            model: formatResult(d.model),
            kernel: formatResult(d.reference),
          })),
        }),
      );
      return control.exitCode(r.disagreements.length);
    }
    progress.done(
      `done in ${clock(el)}: ${r.progress.traces} traces, ${r.progress.ops} ops (${el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0} ops/s compared), ${r.progress.refused} refused by the backend, ${r.progress.disagreements} disagreement(s)`,
    );
    if (interrupted) out(SIGNAL_NOTE(control));
    out(
      `differential fuzzing (seed ${b.seed}, model ${kernel} vs /dev/kvm): ${r.progress.traces} traces, ${r.progress.ops} ops, ${r.progress.disagreements} disagreement(s)${interrupted ? ' (interrupted)' : ''}`,
    );
    return control.exitCode(r.disagreements.length);
  } finally {
    dir.cleanup();
  }
}

// ---------------------------------------------------------------------------------------------
// Model-based fuzzing

export function violationText(
  f: FoundViolation,
  file: string,
  kernel: string,
  mutants: readonly string[],
  shrinkNote?: string,
): string {
  const m = mutants.length > 0 ? ` --mutant ${mutants.join(',')}` : '';
  const lines = [
    `# gmemlab model-based fuzzing: seed ${f.seed}, profile ${kernel}${mutants.length > 0 ? `, mutants ${mutants.join(',')}` : ''}`,
    `# invariant ${f.invariant} breaks after the last op: ${f.violation.object}: ${f.violation.message}`,
    f.shrinkStopped
      ? `# shrinking ${shrinkNote ?? 'stopped'} after ${f.shrinkTries} runs: reduced from ${f.originalOps} ops to ${f.ops.length}, not necessarily minimal; reproduce: gmemlab check --kernel ${kernel}${m} ${file}`
      : `# minimized from ${f.originalOps} ops to ${f.ops.length} (${f.shrinkTries} shrink runs); reproduce: gmemlab check --kernel ${kernel}${m} ${file}`,
    ...f.ops.map(formatOp),
  ];
  return lines.join('\n') + '\n';
}

export const violationFile = (f: FoundViolation): string =>
  `violation-${f.invariant}-seed${f.seed}.jsonl`;

function topKeys(m: Map<string, number>): string {
  return [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k}:${v}`)
    .join(' ');
}

export async function fuzzModelMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    seed: 'string',
    time: 'string',
    ops: 'string',
    'trace-ops': 'string',
    kernel: 'string',
    mutant: 'string',
    out: 'string',
    'keep-going': 'bool',
    'design-holes': 'bool',
    quiet: 'bool',
    json: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(MODEL_FUZZ_HELP);
    return EXIT_OK;
  }
  const b = parseBudget(p, 'ops', 60);
  const profile = await resolveProfile(optString(p, 'kernel'));
  const mutants = parseMutants(optString(p, 'mutant'));
  const designHoles = p.opts.has('design-holes');
  if (designHoles && profile.design === undefined)
    throw new UsageError(
      `--design-holes needs a historical design's profile (design-*), not ${profile.name}`,
    );
  const json = p.opts.has('json');
  const quiet = p.opts.has('quiet');
  const keepGoing = p.opts.has('keep-going');
  const dir = OutDir.prepare(optString(p, 'out') ?? 'fuzz-out');
  try {
    const coverage = newCoverage();
    const progress = new ProgressLine(!quiet && !json);
    let live: ModelFuzzProgress | undefined;
    const control = new Control(
      b.timeMs,
      () => b.count !== undefined && live !== undefined && live.ops >= b.count,
    );
    const files: Array<{ file?: string; writeError?: string }> = [];
    const tick = (): void => {
      if (live === undefined) return;
      const el = control.elapsed();
      const frac = b.timeMs !== undefined ? el / b.timeMs : live.ops / (b.count ?? 1);
      progress.update(
        `${bar(frac)} ${clock(el)} traces ${live.traces} ops ${live.ops} (${el > 0 ? Math.round((live.ops * 1000) / el) : 0}/s) violations ${live.violations} | errnos ${coverage.errnos.size} exits ${coverage.exits.size} faults ${coverage.faults.size}`,
      );
    };
    const { r, el, interrupted } = await driveRun(
      modelFuzzSteps({
        seed: b.seed,
        profile,
        mutants,
        opsPerTrace: b.perTrace,
        keepGoing,
        coverage,
        ...(designHoles ? { designHoles } : {}),
        // The fuzzer passes the same progress object each time; the driver reads it per op.
        shouldContinue: (pr) => {
          live = pr;
          return !control.stop('fuzz');
        },
        onViolation: (f) => {
          const name = violationFile(f);
          const note = f.shrinkStopped ? control.shrinkNote() : undefined;
          const text = violationText(f, join(dir.path, name), profile.name, mutants, note);
          let file: string | undefined;
          try {
            file = dir.write(name, text);
            files.push({ file });
          } catch (e) {
            control.writeFailed = true;
            files.push({ writeError: reportWriteError(dir.path, name, e, text.split('\n')) });
          }
          progress.update('', true);
          if (!json) {
            out(
              `VIOLATION ${f.invariant} at seed ${f.seed} after ${f.opsToDetection} ops: ${f.violation.object}: ${f.violation.message}`,
            );
            out(
              f.shrinkStopped
                ? `  shrinking ${note}: reduced to ${f.ops.length} ops (not necessarily minimal) → ${file ?? '(not written)'}`
                : `  minimized to ${f.ops.length} ops → ${file ?? '(not written)'}`,
            );
          }
        },
      }),
      control,
      tick,
      { quiet, dir, keepGoing, found: (x) => x.found.length },
    );
    progress.done(`done in ${clock(el)}`);
    const summary = {
      seed: b.seed,
      profile: profile.name,
      mutants,
      ...(designHoles ? { designHoles } : {}),
      traces: r.progress.traces,
      ops: r.progress.ops,
      opsPerSecond: el > 0 ? Math.round((r.progress.ops * 1000) / el) : 0,
      seconds: el / 1000,
      interrupted,
      ...(interrupted ? { signal: control.signal } : {}),
      stoppedBy: control.reason ?? 'time',
      violations: r.found.map((f, i) => ({
        invariant: f.invariant,
        seed: f.seed,
        opsToDetection: f.opsToDetection,
        minimizedOps: f.ops.length,
        shrinkStopped: f.shrinkStopped,
        file: files[i]?.file ?? null,
        ...(files[i]?.writeError !== undefined ? { writeError: files[i].writeError } : {}),
        object: f.violation.object,
        message: f.violation.message,
      })),
      coverage: {
        errnos: Object.fromEntries(coverage.errnos),
        exits: Object.fromEntries(coverage.exits),
        faults: Object.fromEntries(coverage.faults),
        pageStates: Object.fromEntries(coverage.pageStates),
        ops: Object.fromEntries(coverage.ops),
      },
    };
    if (json) out(JSON.stringify(summary));
    else {
      if (interrupted) out(SIGNAL_NOTE(control));
      out(
        `model-based fuzzing (seed ${b.seed}, ${profile.name}${mutants.length > 0 ? `, mutants ${mutants.join(',')}` : ''}): ${r.progress.traces} traces, ${r.progress.ops} ops in ${clock(el)} (${summary.opsPerSecond} ops/s), ${r.found.length} violation(s)${interrupted ? ' (interrupted)' : ''}`,
      );
      out(`  coverage: errnos ${topKeys(coverage.errnos)}`);
      out(`            exits ${topKeys(coverage.exits)}; host faults ${topKeys(coverage.faults)}`);
      out(`            page states (traces ending with them) ${topKeys(coverage.pageStates)}`);
    }
    return control.exitCode(r.found.length);
  } finally {
    dir.cleanup();
  }
}

export async function fuzzMain(argv: readonly string[], out: (s: string) => void): Promise<number> {
  if (argv.includes('--differential')) return fuzzDifferentialMain(argv, out);
  return fuzzModelMain(argv, out);
}
