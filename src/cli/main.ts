#!/usr/bin/env node
/**
 * gmemlab's entry point. It imports nothing statically, so that a failure to load the CLI itself
 * (no file descriptors left while Node reads the modules) is reported in one line, not as an
 * uncaught exception; then it runs the CLI (cli.ts), or for `gmemlab measure` that command alone
 * (`measure snp`: measure_snp.ts, `measure tdx`: measure_tdx.ts, else measure.ts), whose process
 * start is most of its run time: for those two, the one-file bundle of the same modules that the
 * build makes after tsc (scripts/bundle.mjs), when it is at least as new as tsc's last build.
 */

/** What measure_snp.ts and measure_tdx.ts export to start a command line. */
type MeasureEntry = { start(argv: readonly string[]): boolean };

/** A bundle's first line: this, then the SHA-256 of the rest, which its code cache starts with. */
const BUNDLE_TAG = '// gmemlab bundle sha256:';

/**
 * `measure_NAME.bundle.js` (scripts/bundle.mjs: the same modules in one script, which Node loads
 * in about a third of the time it takes for ~80 files, with V8's code cache of a run made at
 * build time, so that the functions a measurement runs are not parsed and compiled again) when it
 * is no older than dist/.tsbuildinfo, so that a bare `tsc` after a change never runs a stale
 * bundle; else the modules themselves. The cache is used only when it names the bundle's hash (V8
 * itself refuses a cache of another V8 version or flags: the script is then compiled as usual).
 */
async function measureEntry(name: 'snp' | 'tdx'): Promise<MeasureEntry> {
  // Built-ins through require: an ESM import of node:fs makes its module facade, which reads
  // every export (streams included).
  const require = (await import('node:module')).createRequire(import.meta.url);
  const { readFileSync, statSync } = require('node:fs') as typeof import('node:fs');
  const bundle = new URL(`./measure_${name}.bundle.js`, import.meta.url);
  let text: string | undefined;
  try {
    const built = statSync(new URL('../../.tsbuildinfo', import.meta.url)).mtimeMs;
    // The bundle is ASCII (scripts/bundle.mjs escapes the rest): read as one-byte text.
    if (statSync(bundle).mtimeMs >= built) text = readFileSync(bundle, 'latin1');
  } catch {
    // No bundle, or no build info: the modules.
  }
  if (text === undefined || !text.startsWith(BUNDLE_TAG))
    return name === 'snp' ? import('./measure_snp.js') : import('./measure_tdx.js');
  let cachedData: Buffer | undefined;
  try {
    const c = readFileSync(new URL(`./measure_${name}.bundle.cache`, import.meta.url));
    const hash = text.slice(BUNDLE_TAG.length, BUNDLE_TAG.length + 64);
    if (c.toString('latin1', 0, 64) === hash) cachedData = c.subarray(64);
  } catch {
    // No cache: compiled as usual.
  }
  const { Script } = require('node:vm') as typeof import('node:vm');
  const { fileURLToPath } = require('node:url') as typeof import('node:url');
  const script = new Script(text, {
    filename: fileURLToPath(bundle),
    ...(cachedData !== undefined ? { cachedData } : {}),
  });
  const run = script.runInThisContext() as (require: (id: string) => unknown) => MeasureEntry;
  return run(require);
}

import('./resources.js')
  .then(async (r) => {
    try {
      // `gmemlab measure` is one short computation: it starts without the rest of the CLI, and
      // each platform without the other's code (`measure tdx` without measure snp's model
      // stack), unless the platform's entry declines the command line.
      if (process.argv[2] === 'measure') {
        const argv = process.argv.slice(3);
        const direct =
          (argv[0] === 'snp' || argv[0] === 'tdx') && (await measureEntry(argv[0])).start(argv);
        if (!direct) (await import('./measure.js')).start(argv);
      } else (await import('./cli.js')).start();
    } catch (e) {
      if (!r.reportResourceError(e)) throw e;
    }
  })
  .catch((e: unknown) => {
    const code = (e as { code?: unknown } | undefined)?.code;
    process.stderr.write(
      typeof code === 'string'
        ? `gmemlab: cannot run: ${code}\n`
        : `gmemlab: internal error: ${(e as Error).stack ?? String(e)}\n`,
    );
    process.exitCode = typeof code === 'string' ? 2 : 70;
  });
