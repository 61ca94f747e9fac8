/**
 * mm/rmap.c: `anon_vma_prepare()` and whether a VMA has an anon_vma.
 */
import type { Hvpn } from '../base/units.js';
import type { MmStruct } from './mm_types.js';

/** `anon_vma_prepare()`: the VMA containing hvpn now has an anon_vma. */
export function markAnonVma(mm: MmStruct, hvpn: Hvpn): void {
  const ent = mm.vmas.entryAt(hvpn)!;
  if (!mm.anonVmas.covers(ent.start, ent.end)) mm.anonVmas.set(ent.start, ent.end, true);
}

/** `vma->anon_vma` of the VMA containing hvpn. */
export function hasAnonVma(mm: MmStruct, hvpn: Hvpn): boolean {
  const ent = mm.vmas.entryAt(hvpn);
  return ent !== undefined && mm.anonVmas.anyIn(ent.start, ent.end);
}
