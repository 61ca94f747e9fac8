/**
 * Helpers of the large-I/O tests (tests/unit/big_io.test.ts on the model, tests/kvm/big_io.test.ts
 * on /dev/kvm): page-distinct byte patterns, hex decoding independent of bytesToHex, and traces
 * whose pokes carry megabytes without going through the parser's hex.
 * Not a test file itself (the runner only picks `*.test.js`).
 */
import assert from 'node:assert/strict';
import { parseTrace } from '../../src/trace/parse.js';
import type { ResultLine, TraceOp } from '../../src/trace/types.js';

export const MiB = 1 << 20;
export const BIG = 16 * MiB;

/** Bytes of a hex string, decoded without bytesToHex's tables (for checking long results). */
export function hexBytes(s: string): Uint8Array {
  const digit = (c: number): number => (c <= 57 ? c - 48 : c - 87);
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++)
    out[i] = (digit(s.charCodeAt(2 * i)) << 4) | digit(s.charCodeAt(2 * i + 1));
  return out;
}

/** A pattern that differs between pages, so a misplaced page shows: byte i of page p. */
export function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 7 + (i >>> 12) * 13 + seed) & 255;
  return b;
}

/** The first index where two byte arrays differ, or -1 (assert.deepEqual on 16 MiB is slow). */
export function firstDiff(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

/** Parse small trace lines, then give the n-th poke its (large) bytes directly. */
export function ops(lines: readonly object[], pokeBytes: readonly Uint8Array[] = []): TraceOp[] {
  const { ops: parsed, errors } = parseTrace(lines.map((l) => JSON.stringify(l)).join('\n'), 't');
  assert.deepEqual(errors, []);
  let k = 0;
  return parsed.map((op) =>
    op.op === 'poke' && k < pokeBytes.length ? { ...op, bytes: pokeBytes[k++]! } : op,
  );
}

export function valueOf(r: ResultLine): string {
  assert.ok(r.ok && typeof r.value === 'string', JSON.stringify(r).slice(0, 200));
  return r.value;
}
