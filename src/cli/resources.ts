/** The environment refusing a resource: named in one line, exit 2, never a stack trace. */

/** errno codes that mean the environment ran out of something, with what to do. */
const RESOURCE_ERRORS: ReadonlyMap<string, string> = new Map([
  ['EMFILE', 'too many open files: raise ulimit -n'],
  ['ENFILE', 'the system is out of file descriptors'],
  ['ENOMEM', 'out of memory'],
  ['EAGAIN', 'a resource is temporarily unavailable'],
]);

/** If `e` is such an error, report it, set exit code 2 and return true. */
export function reportResourceError(e: unknown): boolean {
  const code = (e as { code?: unknown } | undefined)?.code;
  if (typeof code !== 'string' || !RESOURCE_ERRORS.has(code)) return false;
  process.stderr.write(`gmemlab: cannot run: ${code} (${RESOURCE_ERRORS.get(code)})\n`);
  process.exitCode = 2;
  return true;
}
