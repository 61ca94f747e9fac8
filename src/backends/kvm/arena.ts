/**
 * The trace arena [MMAP_ARENA_BASE, MMAP_ARENA_END) in this (Node) process.
 *
 * The arena is not naturally empty: V8 places many of its own reservations at random hint
 * addresses in the low 46 bits of the address space, i.e. largely inside the arena. So the
 * backend reserves every free part of the arena with PROT_NONE | MAP_NORESERVE anonymous
 * mappings (no memory, no commit charge) while a KvmBackend exists. Hinted mmaps by V8 or libc
 * then land elsewhere, and:
 *
 * - `foreign`: the parts of the arena that were already taken by somebody else when the
 *   reservation was made. No trace op may touch them (BackendRefusal).
 * - `traceMapped`: the parts the active trace has mapped (mmap at the cursor) and not unmapped.
 * - everything else is our reservation. To the kernel a reserved page is PROT_NONE memory, which
 *   for accesses (SIGSEGV / EFAULT / KVM fault) is indistinguishable from an unmapped page; for the
 *   ops that can tell the difference (mmap, munmap, mprotect, madvise) the backend lifts the
 *   reservation over the op's range first and puts it back afterwards, so the kernel sees exactly
 *   the trace's own mappings.
 */
import { MMAP_ARENA_BASE, MMAP_ARENA_END } from '../../core/mm/host_layout.js';
import { EEXIST, libc } from './libc.js';
import { readMaps } from './maps.js';

export type Interval = { readonly s: bigint; readonly e: bigint };

/** Sorted, disjoint, non-empty intervals. */
export class IntervalSet {
  private items: Interval[] = [];

  get list(): readonly Interval[] {
    return this.items;
  }

  add(s: bigint, e: bigint): void {
    if (e <= s) return;
    const out: Interval[] = [];
    let ns = s;
    let ne = e;
    for (const it of this.items) {
      if (it.e < ns || it.s > ne) out.push(it);
      else {
        ns = it.s < ns ? it.s : ns;
        ne = it.e > ne ? it.e : ne;
      }
    }
    out.push({ s: ns, e: ne });
    out.sort((a, b) => (a.s < b.s ? -1 : a.s > b.s ? 1 : 0));
    this.items = out;
  }

  remove(s: bigint, e: bigint): void {
    if (e <= s) return;
    const out: Interval[] = [];
    for (const it of this.items) {
      if (it.e <= s || it.s >= e) {
        out.push(it);
        continue;
      }
      if (it.s < s) out.push({ s: it.s, e: s });
      if (it.e > e) out.push({ s: e, e: it.e });
    }
    this.items = out;
  }

  intersects(s: bigint, e: bigint): boolean {
    return this.items.some((it) => it.s < e && s < it.e);
  }

  /** [s, e) minus this set. */
  complementWithin(s: bigint, e: bigint): Interval[] {
    const out: Interval[] = [];
    let cur = s;
    for (const it of this.items) {
      if (it.e <= cur) continue;
      if (it.s >= e) break;
      if (it.s > cur) out.push({ s: cur, e: it.s });
      cur = it.e > cur ? it.e : cur;
      if (cur >= e) break;
    }
    if (cur < e) out.push({ s: cur, e });
    return out;
  }

  clear(): void {
    this.items = [];
  }
}

const PROT_NONE = 0;
const RESERVE_FLAGS =
  0x02 /* PRIVATE */ |
  0x20 /* ANONYMOUS */ |
  0x4000 /* NORESERVE */ |
  0x100000; /* FIXED_NOREPLACE */

class Arena {
  readonly foreign = new IntervalSet();
  readonly traceMapped = new IntervalSet();
  private refs = 0;
  /** The backend whose trace currently owns the arena, if any. */
  owner: object | undefined;

  /** True while some KvmBackend holds the reservation (then `foreign` is meaningful). */
  get reserved(): boolean {
    return this.refs > 0;
  }

  acquire(): void {
    if (this.refs === 0) this.reserveAll();
    this.refs++;
  }

  release(): void {
    if (--this.refs > 0) return;
    const c = libc();
    for (const piece of this.reservedWithin(MMAP_ARENA_BASE, MMAP_ARENA_END))
      c.munmap(piece.s, piece.e - piece.s);
    this.foreign.clear();
    this.traceMapped.clear();
    this.owner = undefined;
  }

  private reserveAll(): void {
    const c = libc();
    const ours = new IntervalSet();
    for (let attempt = 0; attempt < 20; attempt++) {
      const taken = new IntervalSet();
      for (const m of readMaps())
        if (m.end > MMAP_ARENA_BASE && m.start < MMAP_ARENA_END) taken.add(m.start, m.end);
      let raced = false;
      for (const gap of taken.complementWithin(MMAP_ARENA_BASE, MMAP_ARENA_END)) {
        const r = c.mmap(gap.s, gap.e - gap.s, PROT_NONE, RESERVE_FLAGS, -1, 0n);
        if (r.errno === 0) {
          ours.add(gap.s, gap.e);
          continue;
        }
        if (r.errno === EEXIST) {
          raced = true;
          break;
        }
        // Undo the pieces reserved so far (openKvmBackend() reports the backend unavailable).
        for (const piece of ours.list) c.munmap(piece.s, piece.e - piece.s);
        throw new Error(
          `cannot reserve the trace arena at 0x${gap.s.toString(16)}: errno ${r.errno}`,
        );
      }
      if (!raced) break;
    }
    this.foreign.clear();
    for (const f of ours.complementWithin(MMAP_ARENA_BASE, MMAP_ARENA_END))
      this.foreign.add(f.s, f.e);
  }

  /** True when [s, e) lies entirely inside the arena. */
  contains(s: bigint, e: bigint): boolean {
    return s >= MMAP_ARENA_BASE && e <= MMAP_ARENA_END;
  }

  /** Parts of [s, e) ∩ arena that currently hold our PROT_NONE reservation. */
  reservedWithin(s: bigint, e: bigint): Interval[] {
    const lo = s > MMAP_ARENA_BASE ? s : MMAP_ARENA_BASE;
    const hi = e < MMAP_ARENA_END ? e : MMAP_ARENA_END;
    if (hi <= lo) return [];
    const busy = new IntervalSet();
    for (const f of this.foreign.list) busy.add(f.s, f.e);
    for (const t of this.traceMapped.list) busy.add(t.s, t.e);
    return busy.complementWithin(lo, hi);
  }

  /** Unmap our reservation over [s, e) (page-aligned) so the kernel sees the trace's layout. */
  lift(s: bigint, e: bigint): Interval[] {
    const c = libc();
    const pieces = this.reservedWithin(s, e);
    for (const p of pieces) c.munmap(p.s, p.e - p.s);
    return pieces;
  }

  /** Reserve again pieces that are unmapped now. A piece somebody else grabbed becomes foreign. */
  restore(pieces: readonly Interval[]): void {
    const c = libc();
    for (const p of pieces) {
      const r = c.mmap(p.s, p.e - p.s, PROT_NONE, RESERVE_FLAGS, -1, 0n);
      if (r.errno !== 0) this.foreign.add(p.s, p.e);
    }
  }
}

/** The process-wide arena (one address space, one arena). */
export const arena = new Arena();
