/**
 * Physical memory of the simulated host: 4 KiB frames with identities (`Pfn`) and contents.
 *
 * Frames are handed out by a deterministic allocator that reuses freed frames lowest-first (as a
 * buddy allocator reuses recently freed memory), so a model bug that forgets to zero a page on
 * first use, or keeps a freed page mapped, shows *someone else's data*: the invariant checker and
 * the mutant benchmark rely on that. Contents are stored only for frames that hold non-zero data
 * (a Map from pfn to a 4 KiB buffer); a frame without an entry reads as zeros.
 *
 * Allocation never zeroes: callers zero explicitly (`zero`) when the kernel does
 * (clear_highpage on first use of a guest_memfd folio, anonymous page faults), which is exactly
 * the behaviour the "every page is first seen as zeros" invariant checks.
 */
import { RangeMap, extentOps } from './ranges/range_map.js';
import { PAGE_SIZE, asPfn, type Pfn } from './units.js';

export type FrameRun = { readonly base: Pfn; readonly count: number };

/** A run of frames held only by references (`FrameStore.held`): value base = the first pfn. */
export type HeldExtent = { readonly base: number };
const heldOps = extentOps<HeldExtent>(() => true);

/**
 * Which count a reference adds to (include/linux/mm.h, mm/gup.c): `ref` is a plain reference
 * (`get_page()`/`folio_get()`, FOLL_GET, `iov_iter_get_pages2()` as vmsplice takes them, the
 * per-CPU LRU-add batch's own), `pin` a FOLL_PIN pin (`try_grab_folio()`: a small folio's
 * refcount grows by GUP_PIN_COUNTING_BIAS, a large folio's `_pincount` by one).
 */
export type FrameRefKind = 'ref' | 'pin';

/** No stale read since the last call (shared, never mutated). */
const NO_PFNS: readonly Pfn[] = [];

export class FrameStore {
  private nextFresh = 1;
  private readonly free = new RangeMap<true>();
  private readonly data = new Map<number, Uint8Array>();
  /**
   * Every pfn with an entry in `data` is below this bound (raised when an entry is added, never
   * lowered): frames at or above it read as zeros without a Map lookup (the fault path's fresh
   * frames).
   */
  private dataEnd = 0;
  /** Frames currently allocated (for accounting invariants). */
  allocated = 0;

  /** Allocate `n` frames; returns one or more runs of consecutive pfns, in order. */
  alloc(n: number): FrameRun[] {
    const runs: FrameRun[] = [];
    let left = n;
    while (left > 0) {
      const f = this.free.first();
      if (f === undefined) break;
      const take = Math.min(left, f.end - f.start);
      runs.push({ base: asPfn(f.start), count: take });
      this.free.delete(f.start, f.start + take);
      left -= take;
    }
    if (left > 0) {
      runs.push({ base: asPfn(this.nextFresh), count: left });
      this.nextFresh += left;
    }
    this.allocated += n;
    return runs;
  }

  /**
   * Allocate `n` physically contiguous frames whose first pfn is a multiple of `n` (a power of
   * two): a huge page (HugeTLB folios are naturally aligned). The lowest free run that holds such
   * an aligned block is used, else fresh frames above every frame handed out so far; frames
   * skipped to reach the alignment go to the free list.
   */
  allocAligned(n: number): Pfn {
    let base: number | undefined;
    for (const f of this.free.entries()) {
      const b = Math.ceil(f.start / n) * n;
      if (b + n <= f.end) {
        base = b;
        break;
      }
    }
    if (base === undefined) {
      base = Math.ceil(this.nextFresh / n) * n;
      if (base > this.nextFresh) this.free.set(this.nextFresh, base, true);
      this.nextFresh = base + n;
    }
    this.free.delete(base, base + n);
    this.allocated += n;
    return asPfn(base);
  }

  /** Allocate one frame (the fault path's common case). */
  allocOne(): Pfn {
    this.allocated++;
    // No free run (a host that has freed nothing yet): the next fresh frame.
    if (this.free.size === 0) return asPfn(this.nextFresh++);
    const f = this.free.first()!;
    this.free.delete(f.start, f.start + 1);
    return asPfn(f.start);
  }

  /** Be told every pfn range whose free/allocated state changes (the invariant checker). */
  watchFree(cb: ((start: number, end: number) => void) | undefined): void {
    this.free.onChange = cb;
  }

  /**
   * The releases since the log was last cleared, as (base, count) pairs, while someone keeps the
   * log (the invariant checker: a frame the host touched and that was released later in the
   * same step may belong to someone else by the time the step is checked).
   */
  private releaseLog: number[] | undefined = undefined;

  /** Releases so far (a change counter: the invariant checker's caches compare it). */
  releases = 0;

  /** Start (true) or stop keeping the release log. */
  logReleases(on: boolean): void {
    this.releaseLog = on ? [] : undefined;
  }

  /** The release log's current position (0 when no log is kept). */
  get releaseMark(): number {
    return this.releaseLog === undefined ? 0 : this.releaseLog.length;
  }

  /** The release log: (base, count) pairs since it was last cleared (empty when not kept). */
  releasedRanges(): readonly number[] {
    return this.releaseLog ?? NO_PFNS;
  }

  /** Whether `pfn` was released at or after log position `mark`. */
  releasedSince(pfn: number, mark: number): boolean {
    const log = this.releaseLog;
    if (log === undefined) return false;
    for (let i = mark; i < log.length; i += 2)
      if (pfn >= log[i]! && pfn < log[i]! + log[i + 1]!) return true;
    return false;
  }

  /** Empty the release log (positions start again at 0). */
  clearReleaseLog(): void {
    if (this.releaseLog !== undefined && this.releaseLog.length !== 0) this.releaseLog.length = 0;
  }

  /**
   * Page references beyond the owner's own, per frame run (the model keeps what is observable of
   * `struct page`'s `_refcount`: the count of extra references, and of FOLL_PIN pins, whose
   * GUP_PIN_COUNTING_BIAS makes `folio_maybe_dma_pinned()` true). Both maps are empty unless a
   * trace takes references (vmsplice, VFIO_IOMMU_MAP_DMA), so nothing else pays for them.
   */
  readonly refs = new RangeMap<number>();
  readonly pins = new RangeMap<number>();
  /**
   * Frames of folios pinned exclusively (design-2024-shmem-exclusive-pin: FOLL_EXCLUSIVE, the
   * "exclusive GUP pinning" RFC), each run one folio, its value the folio's first pfn (so two
   * adjacent folios stay two runs): no other FOLL_PIN may be taken on any of its pages. Empty on
   * every other profile.
   */
  readonly exclusive = new RangeMap<number>();
  /**
   * Frames their owner has freed (munmap, punch, truncation: `folio_put()` of the owner's
   * reference) while references remained: `put_page()` frees a page only at refcount zero, so
   * the frame lives on, with its contents, until the last reference drops (then it is released).
   * The invariants count these as owned by the references.
   */
  readonly held = new RangeMap<HeldExtent>(heldOps);

  /**
   * Frames removed from the kernel's direct map (GUEST_MEMFD_FLAG_NO_DIRECT_MAP, kernel-uapi.md
   * §6.3: `folio_zap_direct_map()` → `set_direct_map_valid_noflush(..., false)`), by pfn. Every
   * other frame is in the direct map. Empty unless a trace creates such a guest_memfd, so nothing
   * else pays for it.
   */
  readonly noDirectMap = new RangeMap<true>();
  /** Changes to `noDirectMap` so far (a change counter: the invariant checker compares it). */
  directMapChanges = 0;

  /** `folio_zap_direct_map()` of `count` frames from `base` (idempotent per frame). */
  zapDirectMap(base: Pfn, count: number): void {
    const m = this.noDirectMap;
    if (
      m.size !== 0 &&
      (count === 1 ? m.get(base) !== undefined : m.countIn(base, base + count) === count)
    )
      return;
    m.set(base, base + count, true);
    this.directMapChanges++;
  }

  /** `folio_restore_direct_map()` of `count` frames from `base`. */
  restoreDirectMap(base: Pfn, count: number): void {
    if (this.noDirectMap.size === 0 || !this.noDirectMap.anyIn(base, base + count)) return;
    this.noDirectMap.delete(base, base + count);
    this.directMapChanges++;
  }

  /** Whether frame `pfn` is in the kernel's direct map. */
  inDirectMap(pfn: number): boolean {
    return this.noDirectMap.size === 0 || this.noDirectMap.get(pfn) === undefined;
  }

  /** Take one reference of `kind` on each of `count` frames from `base`. */
  getRefs(base: Pfn, count: number, kind: FrameRefKind): void {
    addCount(kind === 'pin' ? this.pins : this.refs, base, base + count, 1);
  }

  /**
   * Drop one reference of `kind` on each of `count` frames from `base` (`put_page()`,
   * `unpin_user_pages()`); frames whose owner freed them and that have no reference left are
   * released now (`__folio_put()` at refcount zero).
   */
  putRefs(base: Pfn, count: number, kind: FrameRefKind): void {
    addCount(kind === 'pin' ? this.pins : this.refs, base, base + count, -1);
    if (this.held.size === 0 || !this.held.anyIn(base, base + count)) return;
    for (const h of this.held.piecesIn(base, base + count)) {
      // The runs of [h.start, h.end) without a reference of either kind.
      const busy = new RangeMap<true>();
      for (const p of this.refs.piecesIn(h.start, h.end)) busy.set(p.start, p.end, true);
      for (const p of this.pins.piecesIn(h.start, h.end)) busy.set(p.start, p.end, true);
      for (const g of busy.gapsIn(h.start, h.end)) {
        this.held.delete(g.start, g.end);
        this.release(asPfn(g.start), g.end - g.start);
      }
    }
  }

  /** The first frame of [base, base + count) with a reference beyond its owner's, if any. */
  firstReferenced(base: number, count: number): number | undefined {
    let first: number | undefined;
    for (const m of [this.refs, this.pins]) {
      if (m.size === 0) continue;
      const p = m.piecesIn(base, base + count)[0];
      if (p !== undefined && (first === undefined || p.start < first)) first = p.start;
    }
    return first;
  }

  /** `folio_maybe_dma_pinned()` of one frame (a FOLL_PIN pin is held). */
  maybeDmaPinned(pfn: number): boolean {
    return this.pins.size !== 0 && this.pins.get(pfn) !== undefined;
  }

  /** Frames held only by references (freed by their owner), for accounting. */
  get heldFrames(): number {
    return this.held.size === 0 ? 0 : this.held.totalCovered();
  }

  /** Return frames to the allocator. Contents stay (physical memory is not cleared on free). */
  release(base: Pfn, count: number): void {
    if (count <= 0) return;
    // put_page() by the owner: a frame with other references stays allocated until they drop.
    if (
      (this.refs.size !== 0 || this.pins.size !== 0) &&
      this.firstReferenced(base, count) !== undefined
    ) {
      const busy = new RangeMap<true>();
      for (const p of this.refs.piecesIn(base, base + count)) busy.set(p.start, p.end, true);
      for (const p of this.pins.piecesIn(base, base + count)) busy.set(p.start, p.end, true);
      for (const b of busy.entries()) this.held.set(b.start, b.end, { base: b.start });
      for (const g of busy.gapsIn(base, base + count))
        this.release(asPfn(g.start), g.end - g.start);
      return;
    }
    this.releases++;
    if (this.releaseLog !== undefined) this.releaseLog.push(base, count);
    this.free.set(base, base + count, true);
    this.allocated -= count;
    // Frames that still hold data are "stale" until their next owner zeroes (or overwrites) them.
    if (this.data.size !== 0) {
      if (count <= this.data.size) {
        for (let i = 0; i < count; i++)
          if (this.data.has(base + i)) this.stale.set(base + i, base + i + 1, true);
      } else
        for (const k of this.data.keys())
          if (k >= base && k < base + count) this.stale.set(k, k + 1, true);
    }
  }

  /**
   * Frames holding a previous owner's data (released with data, not yet zeroed or overwritten).
   * A read of one means someone observed another owner's old contents.
   */
  private readonly stale = new RangeMap<true>();
  private staleReads: Pfn[] = [];

  /** The stale frames read since the last call (for the zero-before-use invariant). */
  takeStaleReads(): readonly Pfn[] {
    const r = this.staleReads;
    if (r.length === 0) return NO_PFNS;
    this.staleReads = [];
    return r;
  }

  /** Whether `pfn` is free (for the freed-page invariants). */
  isFree(pfn: number): boolean {
    return this.free.get(pfn) !== undefined;
  }

  /** Whether any frame in [base, base + count) is free. */
  anyFree(base: number, count: number): boolean {
    return this.free.anyIn(base, base + count);
  }

  /** The free runs within pfns [start, end), clipped. */
  freeIn(start: number, end: number): Array<{ start: number; end: number }> {
    return this.free.piecesIn(start, end);
  }

  /** clear_highpage() on `count` frames starting at `base`. */
  zero(base: Pfn, count: number): void {
    if (this.stale.size !== 0) this.stale.delete(base, base + count);
    if (this.data.size === 0 || base >= this.dataEnd) return;
    if (count === 1) {
      this.data.delete(base);
      return;
    }
    if (count > this.data.size * 4) {
      for (const k of this.data.keys()) if (k >= base && k < base + count) this.data.delete(k);
      return;
    }
    for (let i = 0; i < count; i++) this.data.delete(base + i);
  }

  /** Copy `out.length` bytes of frame `pfn` starting at byte `off` into `out`. */
  read(pfn: Pfn, off: number, out: Uint8Array, outOff = 0, len = out.length - outOff): void {
    if (this.stale.size !== 0 && this.stale.get(pfn) !== undefined) this.staleReads.push(pfn);
    const d = pfn >= this.dataEnd ? undefined : this.data.get(pfn);
    if (d === undefined) out.fill(0, outOff, outOff + len);
    else out.set(d.subarray(off, off + len), outOff);
  }

  /** Write bytes into frame `pfn` at byte `off`. */
  write(pfn: Pfn, off: number, src: Uint8Array, srcOff = 0, len = src.length - srcOff): void {
    if (len === PAGE_SIZE && this.stale.size !== 0) this.stale.delete(pfn, pfn + 1);
    let d = this.data.size === 0 || pfn >= this.dataEnd ? undefined : this.data.get(pfn);
    if (d === undefined) {
      let allZero = true;
      for (let i = 0; i < len; i++) {
        if (src[srcOff + i] !== 0) {
          allZero = false;
          break;
        }
      }
      if (allZero) return;
      d = new Uint8Array(PAGE_SIZE);
      this.setData(pfn, d);
    }
    d.set(src.subarray(srcOff, srcOff + len), off);
  }

  /** The frame's 4 KiB buffer for in-place updates (created, zero-filled, when absent). */
  pageForWrite(pfn: Pfn): Uint8Array {
    let d = this.data.get(pfn);
    if (d === undefined) {
      d = new Uint8Array(PAGE_SIZE);
      this.setData(pfn, d);
    }
    return d;
  }

  /** Copy a whole frame's contents to another frame. */
  copy(from: Pfn, to: Pfn): void {
    if (this.stale.size !== 0) {
      if (this.stale.get(from) !== undefined) this.stale.set(to, to + 1, true);
      else this.stale.delete(to, to + 1);
    }
    const d = this.data.get(from);
    if (d === undefined) this.data.delete(to);
    else this.setData(to, d.slice());
  }

  /** Store frame `pfn`'s contents. */
  private setData(pfn: number, d: Uint8Array): void {
    this.data.set(pfn, d);
    if (pfn >= this.dataEnd) this.dataEnd = pfn + 1;
  }

  /** Whether frame `pfn` holds any non-zero byte. */
  hasData(pfn: Pfn): boolean {
    return this.data.has(pfn);
  }

  /** Number of frames ever handed out (the high-water mark of physical memory). */
  get highWater(): number {
    return this.nextFresh - 1;
  }
}

/** Add `d` to the count of every key of [s, e) in `m` (absent = 0; a count of 0 is removed). */
function addCount(m: RangeMap<number>, s: number, e: number, d: number): void {
  const pieces: Array<[number, number, number]> = [];
  let at = s;
  for (const p of m.piecesIn(s, e)) {
    if (p.start > at) pieces.push([at, p.start, d]);
    pieces.push([p.start, p.end, p.value + d]);
    at = p.end;
  }
  if (at < e) pieces.push([at, e, d]);
  for (const [a, b, v] of pieces) {
    if (v <= 0) m.delete(a, b);
    else m.set(a, b, v);
  }
}
