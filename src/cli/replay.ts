/**
 * `gmemlab replay [--kernel PROFILE] [--backend model|kvm] TRACE.jsonl`: run a trace and print one
 * result line per op, exactly as the trace contract says.
 */
import { runTrace } from '../trace/runner.js';
import { BackendRefusal } from '../trace/types.js';
import { parseArgs, optString, UsageError } from './args.js';
import { EXIT_OK, EXIT_USAGE, InputError, loadTrace } from './io.js';
import { isKvm, openBackend, precheckOnKvm } from './backends.js';
import { chooseFormat, defaultFormat, makeResultPrinter, styleFor } from './output.js';

export const REPLAY_HELP = `usage: gmemlab replay [--kernel PROFILE] [--backend model|kvm] [--format text|json] [-v] TRACE.jsonl...

Run each trace and print one result line per op: the contract's JSON result lines
(trace-format.md), or one readable strace-style line per op and result.

  --kernel PROFILE   model profile: a name, NAME+host or a file from probe --save (default:
                     this machine's profile, else linux-6.18; GMEMLAB_KERNEL pins it);
                     ignored by --backend kvm
  --backend B        model (default) or kvm (the real /dev/kvm of this machine)
  --format F         text or json (default: text on a terminal, json when piped)
  --json, -j         the same as --format json
  --verbose, -v      print each op (as a # comment line) before its result

Text is coloured on a terminal (not with NO_COLOR) and ASCII-only when the locale is not UTF-8.

Exit codes: 0 ok, 2 usage error, malformed trace (file:line: field: message) or unavailable backend.`;

export async function replayMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    kernel: 'string',
    backend: 'string',
    format: 'string',
    json: 'bool',
    verbose: 'bool',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(REPLAY_HELP);
    return EXIT_OK;
  }
  const format = chooseFormat(p, defaultFormat());
  if (p.positionals.length === 0) throw new UsageError('replay needs a trace file');
  const backend = await openBackend(optString(p, 'backend') ?? 'model', optString(p, 'kernel'));
  // Every trace is read, and on /dev/kvm checked for refusals, before any result is printed.
  const traces = p.positionals.map((file) => {
    const t = loadTrace(file);
    if (t.errors.length > 0) throw new InputError(t.errors.map((e) => e.message).join('\n'));
    return { file, ops: t.ops, needs: t.needs, needsLine: t.needsLine };
  });
  const kvm = isKvm(backend);
  if (kvm) for (const t of traces) await precheckOnKvm(t.ops, t.file, t.needs, t.needsLine);
  for (const { file, ops } of traces) {
    // On /dev/kvm a trace's lines are printed once it has run to its end.
    const lines: string[] = [];
    const emit = kvm ? (s: string): number => lines.push(s) : out;
    try {
      const print = makeResultPrinter(format, styleFor(), { verbose: p.opts.has('verbose') });
      runTrace(ops, backend, (op, r) => {
        for (const l of print(file, op, r)) emit(l);
      });
    } catch (e) {
      if (e instanceof BackendRefusal)
        throw new InputError(
          `${file}: ${e.message} (at run time; no result of this trace was printed)`,
        );
      throw e;
    }
    for (const l of lines) out(l);
  }
  return EXIT_OK;
}

export { EXIT_USAGE };
