/**
 * `gmemlab conformance [--backend model|kvm] [--kernel P] [--record] [--json] [PATH...]`: run the
 * conformance suite (trace cases with results recorded on the real kernel) and report every
 * disagreement. `--record` re-records the expected results from /dev/kvm.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';
import { release } from 'node:os';
import {
  checkCase,
  loadCase,
  type CaseResult,
  type ConformanceCase,
} from '../conformance/suite.js';
import { formatResult } from '../trace/format.js';
import { runTrace } from '../trace/runner.js';
import { BackendRefusal } from '../trace/types.js';
import { optString, parseArgs, UsageError } from './args.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError } from './io.js';
import { openBackend } from './backends.js';

export const CONFORMANCE_HELP = `usage: gmemlab conformance [--backend model|kvm] [--kernel PROFILE] [--record] [--json] [PATH...]

Run the conformance suite: every conformance/**/NAME.jsonl trace is replayed and its result
lines compared with NAME.expected.jsonl, which holds what the real kernel returned. PATH may be
case files or directories (default: conformance/).

  --backend B       model (default) or kvm (checks that this machine's kernel still agrees)
  --kernel PROFILE  model profile (default linux-6.18-pvm, the kernel the results came from)
  --record          run every case on /dev/kvm and (re)write its .expected.jsonl
  --json            one JSON object per case

Exit codes: 0 all cases agree, 1 a case disagrees (or has no recorded results), 2 usage/input error.`;

/** All case files under the given paths. */
export function findCases(paths: readonly string[]): string[] {
  const out: string[] = [];
  const walk = (p: string): void => {
    if (statSync(p).isDirectory()) {
      for (const n of readdirSync(p).sort()) walk(join(p, n));
    } else if (p.endsWith('.jsonl') && !p.endsWith('.expected.jsonl')) out.push(p);
  };
  for (const p of paths) {
    if (!existsSync(p)) throw new InputError(`${p}: no such file or directory`);
    walk(p);
  }
  return out;
}

export function expectedPath(caseFile: string): string {
  return caseFile.replace(/\.jsonl$/, '.expected.jsonl');
}

/**
 * A case's name: its path below the nearest enclosing `conformance/` directory (`run/basic_exits`),
 * else its path relative to `root` (default: the working directory), without `.jsonl`.
 */
export function caseName(file: string, root?: string): string {
  const parts = resolve(file).split(sep);
  const i = parts.lastIndexOf('conformance');
  const rel =
    root === undefined && i >= 0 && i < parts.length - 1
      ? parts.slice(i + 1).join('/')
      : relative(root ?? '.', file);
  return rel.replace(/\.jsonl$/, '');
}

export function readCase(file: string, root?: string): ConformanceCase {
  const exp = expectedPath(file);
  const read = (f: string): string => {
    try {
      return readFileSync(f, 'utf8');
    } catch (e) {
      throw new InputError(`${f}: ${(e as Error).message}`);
    }
  };
  const c = loadCase(
    caseName(file, root),
    file,
    read(file),
    existsSync(exp) ? read(exp) : undefined,
  );
  if ('error' in c) throw new InputError(c.error);
  return c;
}

export async function conformanceMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    backend: 'string',
    kernel: 'string',
    record: 'bool',
    json: 'bool',
    help: 'bool',
    verbose: 'bool',
  });
  if (p.opts.has('help')) {
    out(CONFORMANCE_HELP);
    return EXIT_OK;
  }
  const files = findCases(p.positionals.length > 0 ? p.positionals : ['conformance']);
  if (files.length === 0) throw new UsageError('no conformance cases found');
  if (p.opts.has('record')) {
    const kvm = await openBackend('kvm', undefined);
    for (const f of files) {
      const c = readCase(f);
      let lines: string[];
      try {
        lines = runTrace(c.ops, kvm).map(formatResult);
      } catch (e) {
        if (e instanceof BackendRefusal) throw new InputError(`${f}: ${e.message}`);
        throw e;
      }
      writeFileSync(
        expectedPath(f),
        `# recorded on Linux ${release()} /dev/kvm by gmemlab conformance --record; do not edit\n${lines.join('\n')}\n`,
      );
      out(`recorded ${c.name} (${lines.length} results)`);
    }
    return EXIT_OK;
  }
  const backend = await openBackend(
    optString(p, 'backend') ?? 'model',
    optString(p, 'kernel') ?? 'linux-6.18-pvm',
  );
  const json = p.opts.has('json');
  let failed = 0;
  const results: CaseResult[] = [];
  for (const f of files) {
    const r = checkCase(readCase(f), backend);
    results.push(r);
    if (!r.ok) failed++;
    if (json) {
      out(JSON.stringify(r));
      continue;
    }
    if (r.ok) {
      if (p.opts.has('verbose')) out(`ok    ${r.name}`);
      continue;
    }
    out(`FAIL  ${r.name}${r.error !== undefined ? `: ${r.error}` : ''}`);
    for (const m of r.mismatches) {
      out(`      op ${m.index} (${f}:${m.line}) ${m.op}`);
      out(`        kernel: ${JSON.stringify(m.expected)}`);
      out(`        ${backend.name}: ${JSON.stringify(m.actual)}`);
    }
  }
  if (!json)
    out(
      `${results.length} cases on ${backend.name}: ${results.length - failed} agree, ${failed} disagree`,
    );
  return failed > 0 ? EXIT_CHECK_FAILED : EXIT_OK;
}
