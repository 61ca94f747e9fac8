/** Small Node helpers shared by the CLI commands. */
import { readFileSync } from 'node:fs';
import { parseTrace, type ParsedTrace } from '../trace/parse.js';

export function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    throw new InputError(
      `${path}: cannot read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
}

/** Bad input files (exit code 2), reported without a stack trace. */
export class InputError extends Error {}

/** Read and parse a trace; every malformed line becomes one error message. */
export function loadTrace(path: string): ParsedTrace {
  return parseTrace(readText(path), path);
}

/** Exit codes (documented in the README). */
export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_USAGE = 2;
