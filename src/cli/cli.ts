/**
 * gmemlab command-line interface: a thin shell over the pure core and the backends.
 * Exit codes: 0 ok, 1 a check failed (diff disagreement, scenario expectation, invariant
 * violation), 2 usage or input error.
 */
import { UsageError } from './args.js';
import { reportResourceError } from './resources.js';
import {
  EXIT_CHECK_FAILED,
  EXIT_PIPE_CLOSED,
  EXIT_USAGE,
  InputError,
  inputErrorJson,
  OutputClosed,
  OutputFailed,
  stdout,
} from './io.js';

type Main = (argv: readonly string[], out: (s: string) => void) => Promise<number>;

// Each command's module is loaded when it runs: a command starts without loading the others
// (the YAML parser, the fuzzers, the kvm backend), so a replay's first result comes sooner.
const runMain: Main = async (a, o) => (await import('./run.js')).runMain(a, o);
const replayMain: Main = async (a, o) => (await import('./replay.js')).replayMain(a, o);
const checkMain: Main = async (a, o) => (await import('./check.js')).checkMain(a, o);
const diffMain: Main = async (a, o) => (await import('./diff.js')).diffMain(a, o);
const fuzzMain: Main = async (a, o) => (await import('./fuzz.js')).fuzzMain(a, o);
const probeMain: Main = async (a, o) => (await import('./probe.js')).probeMain(a, o);
const inspectMain: Main = async (a, o) => (await import('./inspect.js')).inspectMain(a, o);
const conformanceMain: Main = async (a, o) =>
  (await import('./conformance.js')).conformanceMain(a, o);
const measureMain: Main = async (a, o) => (await import('./measure.js')).measureCommand(a, o);
const compareMain: Main = async (a, o) => (await import('./compare.js')).compareMain(a, o);

type Command = {
  readonly summary: string;
  readonly run: Main;
};

const COMMANDS: Record<string, Command> = {
  run: { summary: 'run a scenario (YAML) and print a readable timeline with checks', run: runMain },
  replay: {
    summary: 'run a trace on the model (or --backend kvm) and print result lines',
    run: replayMain,
  },
  check: {
    summary: 'run a trace/scenario with every security invariant checked after every op',
    run: checkMain,
  },
  diff: {
    summary: 'run traces on the model and on /dev/kvm and print every disagreement',
    run: diffMain,
  },
  fuzz: {
    summary: 'fuzz: --differential compares the model with /dev/kvm on random traces',
    run: fuzzMain,
  },
  inspect: {
    summary: 'run a trace/scenario on the model and show its guest-physical memory map at a step',
    run: inspectMain,
  },
  probe: {
    summary:
      "read this machine's kernel and host facts, name the matching profile, or save them as one",
    run: probeMain,
  },
  compare: {
    summary:
      'run a design-neutral workload on every design × VMM policy and compare memory, exits and access outcomes',
    run: compareMain,
  },
  conformance: {
    summary: 'check the model (or this kernel) against results recorded on /dev/kvm',
    run: conformanceMain,
  },
  measure: {
    summary:
      "compute an SEV-SNP guest's launch digest (sev-snp-measure options) or a TD's MRTD from its firmware",
    run: measureMain,
  },
};

export function mainHelp(): string {
  const lines = Object.entries(COMMANDS).map(([n, c]) => `  ${n.padEnd(12)} ${c.summary}`);
  return `usage: gmemlab COMMAND [options]   (gmemlab COMMAND --help for details)

gmemlab is an executable model of Linux KVM guest private memory (guest_memfd).

commands:
${lines.join('\n')}

Exit codes: 0 ok, 1 a check failed, 2 usage or input error.`;
}

/**
 * Whether the command line asks for JSON (`--json`, `-j` alone or bundled, or a last `--format`
 * of json), read the way the commands' option parser reads it: errors are JSON too.
 */
function wantsJson(argv: readonly string[]): boolean {
  const end = argv.indexOf('--');
  const a = end >= 0 ? argv.slice(0, end) : argv;
  let json = false;
  let format: string | undefined;
  a.forEach((x, i) => {
    if (x === '--json' || /^-[A-Za-z]*j[A-Za-z]*$/.test(x)) json = true;
    else if (x.startsWith('--format=')) format = x.slice('--format='.length);
    else if (x === '--format') format = a[i + 1];
  });
  return format !== undefined ? format === 'json' : json;
}

export async function main(argv: readonly string[]): Promise<number> {
  const out = (s: string): void => stdout.write(s);
  try {
    const code = await dispatch(argv, out);
    stdout.flush();
    return code;
  } catch (e) {
    // A closed pipe (gmemlab ... | head) ends the command quietly, with the status a process
    // killed by SIGPIPE has (the command did not finish); other write errors are named.
    if (e instanceof OutputClosed) return EXIT_PIPE_CLOSED;
    if (e instanceof OutputFailed) {
      process.stderr.write(`gmemlab: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}

async function dispatch(argv: readonly string[], out: (s: string) => void): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined) {
    process.stderr.write(`${mainHelp()}\n`);
    return EXIT_USAGE;
  }
  if (cmd === '--help' || cmd === '-h' || cmd === 'help') {
    out(mainHelp());
    return 0;
  }
  if (cmd === '--version') {
    out('gmemlab 0.1.0');
    return 0;
  }
  const c = COMMANDS[cmd];
  if (c === undefined) {
    process.stderr.write(`gmemlab: unknown command "${cmd}"\n\n${mainHelp()}\n`);
    return EXIT_USAGE;
  }
  try {
    return await c.run(rest, out);
  } catch (e) {
    if (e instanceof UsageError || e instanceof InputError) {
      stdout.flush();
      if (wantsJson(rest)) for (const l of inputErrorJson(e, cmd)) process.stderr.write(`${l}\n`);
      else if (e instanceof UsageError)
        process.stderr.write(`gmemlab ${cmd}: ${e.message}\n(see gmemlab ${cmd} --help)\n`);
      else process.stderr.write(`gmemlab ${cmd}: ${e.message}\n`);
      return EXIT_USAGE;
    }
    throw e;
  }
}

void EXIT_CHECK_FAILED;
/** Run the CLI on this process's arguments and set its exit code (called by main.ts). */
export function start(): void {
  // Standard error is written with process.stderr (progress lines): a closed or failing stderr
  // is ignored, there is nowhere left to report it.
  process.stderr.on('error', () => undefined);
  process.stdout.on('error', () => undefined);
  // Whatever a command printed reaches standard output even if it ends the process itself.
  process.on('exit', () => {
    try {
      stdout.flush();
    } catch {
      // reported (or quiet, for EPIPE) where the flush failed first
    }
  });
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      // The environment refusing a resource (no descriptors left while loading a command's
      // modules, no memory) is not a bug: name it without a stack trace.
      if (reportResourceError(e)) return;
      process.stderr.write(`gmemlab: internal error: ${(e as Error).stack ?? String(e)}\n`);
      process.exitCode = 70;
    },
  );
}
