/**
 * mm/shmem.c: the shmem object behind a MAP_SHARED|MAP_ANONYMOUS mapping (shmem_zero_setup()
 * gives such a mapping a shmem file of its size), its pages (the page cache of that file), hole
 * punching (shmem_fallocate(FALLOC_FL_PUNCH_HOLE), as MADV_REMOVE reaches it) and the release of
 * its pages when the last mapping goes.
 */
import type { MmCtx } from './mm_ctx.js';
import { RangeMap, type RangeEntry } from '../base/ranges/range_map.js';
import { asPgOff, type PgOff } from '../base/units.js';
import { pageExtentOps, type PageExtent } from '../vfs/file.js';

/** Object behind a MAP_SHARED|MAP_ANONYMOUS mapping (a shmem file of the mapping's size). */
export class ShmemObject {
  readonly pages = new RangeMap<PageExtent>(pageExtentOps);
  mappedPages = 0;
  constructor(
    readonly id: number,
    readonly npages: number,
  ) {}
}

/** Punch [start, end) page offsets out of a shmem object. */
export function shmemPunch(k: MmCtx, obj: ShmemObject, start: PgOff, end: PgOff): void {
  const pieces = obj.pages.piecesIn(start, end);
  if (pieces.length === 0) return;
  obj.pages.delete(start, end);
  for (const p of pieces) freeShmemPages(k, obj, p);
}

/** The frames of one piece of a shmem object go back to the allocator (`shmem_free` event). */
function freeShmemPages(k: MmCtx, obj: ShmemObject, p: RangeEntry<PageExtent>): void {
  k.frames.release(p.value.base, p.end - p.start);
  k.events.push({ kind: 'shmem_free', obj: obj.id, start: asPgOff(p.start), end: asPgOff(p.end) });
}

export function putShmem(k: MmCtx, obj: ShmemObject, pages: number): void {
  obj.mappedPages -= pages;
  if (obj.mappedPages > 0) return;
  for (const p of obj.pages.entries()) freeShmemPages(k, obj, p);
  obj.pages.clear();
}
