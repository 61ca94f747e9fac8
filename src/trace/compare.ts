/**
 * Comparing result lines of two backends: parsed objects, field order ignored.
 */
import { resultToJson } from './format.js';
import type { ResultLine } from './types.js';

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== typeof b || a === null || b === null || typeof a !== 'object') return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (Array.isArray(a)) {
    const bb = b as unknown[];
    if (a.length !== bb.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], bb[i])) return false;
    return true;
  }
  const ao = a as Record<string, unknown>;
  const bo = b as Record<string, unknown>;
  const ak = Object.keys(ao).filter((k) => ao[k] !== undefined);
  const bk = Object.keys(bo).filter((k) => bo[k] !== undefined);
  if (ak.length !== bk.length) return false;
  for (const k of ak) if (!deepEqual(ao[k], bo[k])) return false;
  return true;
}

export function resultsEqual(a: ResultLine, b: ResultLine): boolean {
  return deepEqual(resultToJson(a), resultToJson(b));
}

/** Index of the first differing result line, or -1. */
export function firstDifference(a: readonly ResultLine[], b: readonly ResultLine[]): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined || !resultsEqual(x, y)) return i;
  }
  return -1;
}
