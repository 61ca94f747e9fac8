#!/usr/bin/env node
/**
 * gmemlab's entry point. It imports nothing statically, so that a failure to load the CLI itself
 * (no file descriptors left while Node reads the modules) is reported in one line, not as an
 * uncaught exception; then it runs the CLI (cli.ts), or for `gmemlab measure` that command alone
 * (`measure snp`: measure_snp.ts, `measure tdx`: measure_tdx.ts, else measure.ts), whose process
 * start is most of its run time.
 */
import('./resources.js')
  .then(async (r) => {
    try {
      // `gmemlab measure` is one short computation: it starts without the rest of the CLI, and
      // each platform without the other's code (`measure tdx` without measure snp's model
      // stack), unless the platform's entry declines the command line.
      if (process.argv[2] === 'measure') {
        const argv = process.argv.slice(3);
        const direct =
          argv[0] === 'snp'
            ? (await import('./measure_snp.js')).start(argv)
            : argv[0] === 'tdx' && (await import('./measure_tdx.js')).start(argv);
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
