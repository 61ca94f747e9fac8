/**
 * Errors as values. Every model entry point returns a `Result`; nothing throws on bad input.
 * `check` names the kernel check that failed (for explanations); it is never compared.
 */
import type { Errno } from './errno.js';

export type Ok<T> = { readonly ok: true; readonly value: T };
export type Err = { readonly ok: false; readonly errno: Errno; readonly check: string };
export type Result<T> = Ok<T> | Err;

export function ok<T>(value: T): Ok<T> {
  return { ok: true, value };
}
export const OK_VOID: Ok<undefined> = { ok: true, value: undefined };

export function err(errno: Errno, check: string): Err {
  return { ok: false, errno, check };
}
