/**
 * mm/gup.c: faulting a range of one VMA in, as populate_vma_page_range() (MAP_POPULATE,
 * MAP_LOCKED) and madvise(MADV_POPULATE_*) do. KVM's own get_user_pages() of one page (hva_to_pfn()
 * in the x86 fault path) is handleMmFault() with `cpu` false (memory.ts), through HostMm.fault().
 */
import { asHvpn, asPgOff, hvpnAdd, type Hvpn } from '../base/units.js';
import { type KFile, type PageExtent } from '../vfs/file.js';
import type { RangeMap } from '../base/ranges/range_map.js';
import { VMA_HUGETLB, VMA_KVM_PROTECTED, type MmStruct, type Vma } from './mm_types.js';
import { PROT_EXEC, PROT_WRITE } from '../base/uapi.js';
import { ShmemObject } from './shmem.js';
import { handleMmFault, refuseCowAccess } from './memory.js';
import { markAnonVma } from './rmap.js';
import { notePteTable } from './pgtable.js';
import { hostLevel, splitThp } from './huge_memory.js';
import type { FrameRun } from '../base/frames.js';
import { pfnAdd, type Pfn } from '../base/units.js';

/**
 * Fault in [s, e) of one VMA in page order, as get_user_pages() does, without a per-page loop
 * for ranges (so a populated terabyte costs what its extents cost). Returns the first page that
 * could not be faulted in (e when all were).
 */
/** Back the keys of `gap` in `pages` with newly allocated, zeroed frames (in allocator runs). */
function fillGap(
  mm: MmStruct,
  pages: RangeMap<PageExtent>,
  gap: { readonly start: number; readonly end: number },
): void {
  let p = gap.start;
  for (const run of mm.k.frames.alloc(gap.end - gap.start)) {
    mm.k.frames.zero(run.base, run.count);
    pages.set(p, p + run.count, { base: run.base });
    p += run.count;
  }
}

export function populate(mm: MmStruct, s: Hvpn, e: Hvpn, write: boolean): Hvpn {
  const v = mm.vmas.get(s);
  if (v === undefined) return s;
  if (!v.shared && mm.cowFromParent.size !== 0) refuseCowAccess(mm, s, e);
  // populate_vma_page_range() reads with FOLL_FORCE, so write-only mappings populate too;
  // PROT_NONE does not, nor does an execute-only mapping whose protection key forbids reads
  // [verified with MADV_COLLAPSE]. madvise(POPULATE_*) checked the permissions before.
  if (
    write
      ? (v.prot & PROT_WRITE) === 0
      : v.prot === 0 || (v.prot === PROT_EXEC && mm.k.profile.execOnlyPkey)
  )
    return s;
  // hugetlb: the first fault gets SIGBUS (empty pool).
  if ((v.flags & VMA_HUGETLB) !== 0) return s;
  // design-2020-protnone-follkvm: a VM_KVM_PROTECTED VMA's PTEs are PROT_NONE, as NUMA hinting
  // leaves them (the RFC's patch 09; check_vma_flags() is unchanged). Populating is an internal
  // GUP, which does not honor NUMA hinting faults (no FOLL_HONOR_NUMA_FAULT): a read follows the
  // PROT_NONE PTEs and populates (the first fault of each page allocates: a protected VMA never
  // maps the zero page). A write honors them (a PROT_NONE PTE is not writable): the first page's
  // fault allocates it, the retried fault is do_numa_page()'s SIGBUS, and the populate stops
  // there (-EFAULT).
  const kvmProtected = (v.flags & VMA_KVM_PROTECTED) !== 0;
  if (kvmProtected && write) {
    handleMmFault(mm, s, true, false);
    return s;
  }
  const g = mm.guards.size === 0 ? undefined : mm.guards.piecesIn(s, e)[0];
  const end = g === undefined ? e : asHvpn(g.start);
  switch (v.kind) {
    case 'anon': {
      notePteTable(mm, s, end);
      if (write || kvmProtected) {
        const gaps = mm.anon.gapsIn(s, end);
        if (gaps.length > 0) {
          mm.notifiers.invalidateRangeStart(s, end);
          for (const gap of gaps) {
            fillGap(mm, mm.anon, gap);
            mm.k.events.push({
              kind: 'anon_alloc',
              hvpn: asHvpn(gap.start),
              pages: gap.end - gap.start,
            });
          }
          markAnonVma(mm, s);
        }
      }
      return end;
    }
    case 'shmem': {
      const obj = v.obj as ShmemObject;
      const last = hvpnAdd(s, Math.min(end - s, Math.max(0, obj.npages - v.base)));
      for (const gap of obj.pages.gapsIn(v.base, v.base + (last - s))) {
        fillGap(mm, obj.pages, gap);
        mm.k.events.push({
          kind: 'shmem_alloc',
          obj: obj.id,
          start: asPgOff(gap.start),
          end: asPgOff(gap.end),
        });
      }
      return last;
    }
    case 'gmem': {
      // __get_user_pages() → check_vma_flags(): an AS_NO_DIRECT_MAP mapping is -EFAULT
      // (`vma_has_no_direct_map()`), so nothing is populated (madvise: EFAULT).
      if ((v.obj as KFile).noDirectMap) return s;
      const n = (v.obj as KFile).vmOps!.populate!(v.base, end - s);
      if (n > 0) mm.gmemPtes.set(s, s + n, true);
      return hvpnAdd(s, n);
    }
    case 'vcpu': {
      for (let p = s; p < end; p = hvpnAdd(p, 1))
        if ('signal' in handleMmFault(mm, p, write, false)) return p;
      return end;
    }
  }
}

/** FOLL_* flags of get_user_pages() that the model distinguishes (include/linux/mm_types.h). */
export type GupFlags = {
  /** FOLL_WRITE: fault the pages in writable (a COW break on private mappings). */
  readonly write: boolean;
  /** FOLL_PIN (pin_user_pages*()) rather than FOLL_GET (get_user_pages*()). */
  readonly pin: boolean;
  /** FOLL_LONGTERM: the pin outlives the syscall (VFIO, io_uring fixed buffers). */
  readonly longterm: boolean;
  /**
   * FOLL_EXCLUSIVE (design-2024-shmem-exclusive-pin, the "mm/gup: Introduce exclusive GUP
   * pinning" RFC, Elliot Berman, June 2024): the pin is the folio's only one. Absent: false.
   */
  readonly exclusive?: boolean;
};

/**
 * `__get_user_pages()` with FOLL_GET or FOLL_PIN over `n` pages from `start`: each page is
 * faulted in as get_user_pages() does (KVM's hva_to_pfn() rules: `handleMmFault()` with `cpu`
 * false) and one reference of the asked kind taken on its frame (`try_grab_folio()`: FOLL_GET
 * adds 1 to the refcount, FOLL_PIN adds GUP_PIN_COUNTING_BIAS; the model keeps the counts
 * apart, `FrameStore.refs` / `.pins`). Stops at the first page that cannot be faulted in, as
 * __get_user_pages() returns the pages it got. Returns the frames as runs (consecutive pfns
 * merged) and how many pages it got.
 *
 * FOLL_LONGTERM (`check_and_migrate_movable_pages()`): a folio that is not long-term pinnable
 * (ZONE_MOVABLE, CMA, fsdax) is migrated first or the pin refused. The modelled host has no
 * movable zone, no CMA and no DAX, so every folio is long-term pinnable where it is and nothing
 * migrates; `check_vma_flags()` refuses secretmem and fsdax VMAs, which the model has not, and
 * (NO_DIRECT_MAP series) VMAs of AS_NO_DIRECT_MAP mappings: a NO_DIRECT_MAP guest_memfd's pages
 * are never got (`handleMmFault()` with `cpu` false refuses them).
 */
export function gupRange(
  mm: MmStruct,
  start: Hvpn,
  n: number,
  f: GupFlags,
): { readonly runs: FrameRun[]; readonly got: number; readonly busy?: boolean } {
  const runs: FrameRun[] = [];
  let got = 0;
  const roLongterm = f.pin && f.longterm && !f.write;
  const frames = mm.k.frames;
  for (let i = 0; i < n; i++) {
    const p = hvpnAdd(start, i);
    let r = handleMmFault(mm, p, f.write, false);
    if ('signal' in r) break;
    if (roLongterm) {
      const v = mm.vmas.get(p)!;
      if (mustUnshare(mm, p, v)) r = unshareFault(mm, p, v);
      if ('signal' in r) break;
    }
    if (f.write && !r.writable) break;
    if (f.pin && (frames.exclusive.size !== 0 || f.exclusive === true)) {
      // The exclusive-pin RFC's try_grab_folio(): a FOLL_PIN on a folio pinned exclusively, or
      // a FOLL_EXCLUSIVE pin on a folio that has a pin already, is refused (-EBUSY); FOLL_GET is
      // not affected. Both are decided per folio (folio_maybe_exclusive_pinned() reads a large
      // folio's _pincount, a small one's refcount).
      const excl =
        frames.exclusive.size !== 0 &&
        frames.exclusive.get(r.pfn) !== undefined &&
        !(f.exclusive !== true && mm.k.mutants.has('exclusive_pin_allows_other_pins'));
      // Stops here: the pages before it are returned (a caller asking again at this page
      // gets -EBUSY, which `busy` tells).
      if (excl) return { runs, got, busy: true };
      if (f.exclusive === true) {
        const folio = gupFolioOf(mm, p, r.pfn);
        if (folioPinCount(mm, folio) !== 0) return { runs, got, busy: true };
        frames.exclusive.set(folio.base, folio.base + folio.count, folio.base);
      }
    }
    frames.getRefs(r.pfn, 1, f.pin ? 'pin' : 'ref');
    const last = runs[runs.length - 1];
    if (last !== undefined && last.base + last.count === r.pfn)
      runs[runs.length - 1] = { base: last.base, count: last.count + 1 };
    else runs.push({ base: r.pfn, count: 1 });
    got++;
  }
  return { runs, got };
}

/**
 * `gup_must_unshare()` for a read-only FOLL_PIN | FOLL_LONGTERM (mm/internal.h): a page that is
 * not an exclusive anonymous page — the shared zero page of an untouched private anonymous page,
 * the file page a MAP_PRIVATE mapping reads until its first write — must not be pinned in a COW
 * mapping (`is_cow_mapping()`: private anonymous memory, a MAP_PRIVATE vCPU mapping; shared
 * mappings and shmem are not), or the pin would stop being the page the process maps at its
 * next write ("Don't share zero page or file pages for longterm pinning"). Every anonymous page
 * the model maps is exclusive (no fork), so only those two cases unshare.
 */
function mustUnshare(mm: MmStruct, p: Hvpn, v: Vma): boolean {
  if (v.kind !== 'anon' && !(v.kind === 'vcpu' && !v.shared)) return false;
  return mm.anon.get(p) === undefined;
}

/**
 * follow_page_pte() → -EMLINK → faultin_page() with FAULT_FLAG_UNSHARE → do_wp_page() →
 * wp_page_copy(): a new private anonymous page (zeroed for the zero page, a copy of the file
 * page) replaces the shared one, even in a read-only VMA (an unshare is not a write). In a
 * writable VMA that is what a write fault does (THP included), so it runs as one.
 */
function unshareFault(
  mm: MmStruct,
  p: Hvpn,
  v: Vma,
): { pfn: Pfn; writable: boolean } | { signal: 'SIGSEGV' | 'SIGBUS' } {
  if ((v.prot & PROT_WRITE) !== 0) return handleMmFault(mm, p, true, false);
  const q = hvpnAdd(p, 1);
  let src: Pfn | undefined;
  if (v.kind === 'vcpu') {
    const f = (v.obj as KFile).vmOps!.fault(v.base);
    if ('signal' in f) return f;
    src = f.pfn;
  } else if (mm.hugeZero.size !== 0 && mm.hugeZero.get(p) !== undefined) splitThp(mm, p, q);
  notePteTable(mm, p, q);
  mm.notifiers.invalidateRangeStart(p, q);
  const pfn = mm.k.frames.allocOne();
  if (src === undefined) mm.k.frames.zero(pfn, 1);
  else mm.k.frames.copy(src, pfn);
  mm.anon.set(p, q, { base: pfn });
  markAnonVma(mm, p);
  mm.k.events.push({ kind: 'anon_alloc', hvpn: p, pages: 1 });
  return { pfn, writable: false };
}

/**
 * `unpin_user_pages()` / `put_page()` of runs `gupRange()` returned (`unpin_exc_pages()`: an
 * exclusive pin's release also clears its folio's exclusive state).
 */
export function gupRelease(
  mm: MmStruct,
  runs: readonly FrameRun[],
  pin: boolean,
  exclusive = false,
): void {
  for (const r of runs) {
    if (exclusive) for (let i = 0; i < r.count; i++) gupDropExclusive(mm, pfnAdd(r.base, i));
    mm.k.frames.putRefs(r.base, r.count, pin ? 'pin' : 'ref');
  }
}

/**
 * The folio of the page at `hvpn`, mapped to frame `pfn`: a THP's 512 frames while a PMD maps it
 * (the model knows a large anonymous folio by its PMD mapping: after a PMD split its pages count
 * as small folios), else the one frame.
 */
export function gupFolioOf(mm: MmStruct, hvpn: Hvpn, pfn: Pfn): FrameRun {
  if (hostLevel(mm, hvpn) !== '2M') return { base: pfn, count: 1 };
  return { base: pfnAdd(pfn, -(hvpn % 512)), count: 512 };
}

/**
 * The pins of a folio as the exclusive-pin RFC counts them: a large folio's `_pincount` (every
 * pin of any of its pages), a small folio's refcount >> GUP_PIN_COUNTING_SHIFT (FOLL_GET
 * references do not reach it).
 */
export function folioPinCount(mm: MmStruct, folio: FrameRun): number {
  const pins = mm.k.frames.pins;
  if (pins.size === 0) return 0;
  let n = 0;
  for (const p of pins.piecesIn(folio.base, folio.base + folio.count))
    n += p.value * (p.end - p.start);
  return n;
}

/**
 * `unexc_user_page()` (`gup_put_folio(folio, 0, FOLL_EXCLUSIVE)`): the folio of `pfn` is no
 * longer pinned exclusively; its pins stay.
 */
export function gupDropExclusive(mm: MmStruct, pfn: Pfn): void {
  const ex = mm.k.frames.exclusive;
  if (ex.size === 0) return;
  const e = ex.entryAt(pfn);
  if (e !== undefined) ex.delete(e.start, e.end);
}
