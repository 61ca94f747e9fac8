/** Small Node helpers shared by the CLI commands. */
import { readFileSync } from 'node:fs';
import {
  getProfile,
  profileNames,
  DEFAULT_PROFILE,
  type KernelProfile,
} from '../core/profiles/index.js';
import { UsageError } from './args.js';
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

export function profileOrUsage(name: string | undefined): KernelProfile {
  const n = name ?? DEFAULT_PROFILE;
  const p = getProfile(n);
  if (p === undefined)
    throw new UsageError(`unknown kernel profile "${n}" (known: ${profileNames().join(', ')})`);
  return p;
}

/** Read and parse a trace; every malformed line becomes one error message. */
export function loadTrace(path: string): ParsedTrace {
  return parseTrace(readText(path), path);
}

/** Exit codes (documented in the README). */
export const EXIT_OK = 0;
export const EXIT_CHECK_FAILED = 1;
export const EXIT_USAGE = 2;
