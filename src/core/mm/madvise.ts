/**
 * mm/madvise.c: madvise(2) (do_madvise(), madvise_walk_vmas(), the per-VMA behaviours, flag
 * updates that split VMAs). MADV_COLLAPSE is khugepaged.ts, MADV_POPULATE_* faults through gup.ts.
 */
import {
  asHvpn,
  hvaAdd,
  hvaToHvpn,
  hvpnAdd,
  hvpnDiff,
  isPageAligned,
  pageAlignUp,
  pageOf,
  pagesToBytes,
  pgoffAdd,
  pgoffToBytes,
  type Hva,
  type Hvpn,
} from '../base/units.js';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  MADV_COLD,
  MADV_COLLAPSE,
  MADV_DODUMP,
  MADV_DOFORK,
  MADV_DONTDUMP,
  MADV_DONTFORK,
  MADV_DONTNEED,
  MADV_DONTNEED_LOCKED,
  MADV_FREE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
  MADV_HUGEPAGE,
  MADV_KEEPONFORK,
  MADV_MERGEABLE,
  MADV_NOHUGEPAGE,
  MADV_NORMAL,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_RANDOM,
  MADV_REMOVE,
  MADV_SEQUENTIAL,
  MADV_UNMERGEABLE,
  MADV_WILLNEED,
  MADV_WIPEONFORK,
  PROT_READ,
  PROT_WRITE,
} from '../base/uapi.js';
import {
  VMA_DONTDUMP,
  VMA_DONTFORK,
  VMA_DROPPABLE,
  VMA_HUGEPAGE,
  VMA_HUGETLB,
  VMA_MERGEABLE,
  VMA_NOHUGEPAGE,
  VMA_RAND_READ,
  VMA_SEQ_READ,
  VMA_WIPEONFORK,
  type MmStruct,
  type Vma,
} from './mm_types.js';
import { OK_VOID, err, type Result } from '../base/result.js';
import { ShmemObject, shmemPunch } from './shmem.js';
import { freeAnon } from './memory.js';
import { hugetlbPages, hugetlbSplitRefused } from './hugetlb.js';
import { madviseCollapse } from './khugepaged.js';
import { markAnonVma } from './rmap.js';
import { notePteTable } from './pgtable.js';
import { populate } from './gup.js';
import { splitThp } from './huge_memory.js';

/** madvise(2): the behaviours in MADV_KNOWN; per-VMA checks as in mm/madvise.c. */
export function doMadvise(
  mm: MmStruct,
  addr: Hva,
  length: bigint,
  advice: number,
): Result<undefined> {
  if (!MADV_KNOWN.has(advice)) return err('EINVAL', 'madvise: unknown advice');
  if (!isPageAligned(addr)) return err('EINVAL', 'madvise: start not page aligned');
  const rounded = pageAlignUp(length);
  if (length !== 0n && rounded === 0n) return err('EINVAL', 'madvise: length overflows');
  if (rounded > 0xffff_ffff_ffff_ffffn) return err('EINVAL', 'madvise: length overflows');
  const end = hvaAdd(addr, rounded);
  if (end > 0xffff_ffff_ffff_ffffn) return err('EINVAL', 'madvise: end wraps');
  if (end === addr) return OK_VOID;
  if (addr >= mm.k.profile.taskSizeMax) return err('ENOMEM', 'madvise: no VMA');
  const s = hvaToHvpn(addr);
  const e = asHvpn(Math.min(hvaToHvpn(end), pageOf(mm.k.profile.taskSizeMax)));
  // madvise_walk_vmas(): act on each VMA piece; remember an unmapped gap as ENOMEM.
  // madvise_populate() instead faults from the start and stops at the first gap
  // (__get_user_pages() with FOLL_MADV_POPULATE: no VMA → ENOMEM).
  const populate = advice === MADV_POPULATE_READ || advice === MADV_POPULATE_WRITE;
  let unmappedError = false;
  let cur = s;
  while (cur < e) {
    const ent = mm.vmas.entryAt(cur);
    if (ent === undefined) {
      if (populate) return err('ENOMEM', 'madvise_populate: no VMA');
      unmappedError = true;
      const next = mm.vmas.ceilEntry(cur);
      if (next === undefined || next.start >= e) break;
      cur = asHvpn(next.start);
      continue;
    }
    const pe = asHvpn(Math.min(ent.end, e));
    const v = mm.vmas.get(cur)!;
    const r = madviseVma(mm, cur, pe, v, advice);
    if (!r.ok) return r;
    cur = pe;
  }
  return unmappedError ? err('ENOMEM', 'madvise: range has unmapped pages') : OK_VOID;
}

export function setVmaFlags(
  mm: MmStruct,
  s: Hvpn,
  e: Hvpn,
  v: Vma,
  set: number,
  clear: number,
): Result<undefined> {
  const flags = (v.flags | set) & ~clear;
  if (flags === v.flags) return OK_VOID;
  if (hugetlbSplitRefused(v, mm.vmas.entryAt(s)!, s, e))
    return err('EINVAL', 'hugetlb_vm_op_split: not at a huge page boundary');
  // A VMA split inside a THP splits its PMD mapping (vma_adjust_trans_huge()).
  if (s % 512 !== 0) splitThp(mm, s, hvpnAdd(s, 1));
  if (e % 512 !== 0) splitThp(mm, hvpnAdd(e, -1), e);
  mm.vmas.set(s, e, { ...v, flags });
  return OK_VOID;
}

export function madviseVma(
  mm: MmStruct,
  s: Hvpn,
  e: Hvpn,
  v: Vma,
  advice: number,
): Result<undefined> {
  if ((v.flags & VMA_HUGETLB) !== 0) {
    // hugetlb VMAs [each verified on both a private and a shared mapping]: there is nothing to
    // free, drop, collapse or guard; the flag-setting advice splits only at huge page
    // boundaries (setVmaFlags).
    switch (advice) {
      case MADV_FREE:
      case MADV_WIPEONFORK:
      case MADV_COLD:
      case MADV_PAGEOUT:
      case MADV_COLLAPSE:
      case MADV_GUARD_INSTALL:
      case MADV_GUARD_REMOVE:
        return err('EINVAL', 'madvise: not for a hugetlb VMA');
      case MADV_DONTNEED:
      case MADV_DONTNEED_LOCKED:
        // madvise_dontneed_free_valid_vma(): the start must be huge page aligned (the end is
        // rounded down); VM_LOCKED does not matter here.
        if (s % hugetlbPages(v) !== 0)
          return err('EINVAL', 'madvise_dontneed_free_valid_vma: hugetlb start not aligned');
        return OK_VOID;
      case MADV_REMOVE:
        if (v.locked) return err('EINVAL', 'madvise_remove: VM_LOCKED');
        if (!v.shared) return err('EACCES', 'madvise_remove: not a shared mapping');
        return OK_VOID;
      case MADV_MERGEABLE:
        // ksm_madvise() leaves VM_HUGETLB VMAs alone.
        return mm.k.profile.ksm ? OK_VOID : err('EINVAL', 'madvise: KSM not configured');
    }
  }
  switch (advice) {
    case MADV_NORMAL:
      return setVmaFlags(mm, s, e, v, 0, VMA_RAND_READ | VMA_SEQ_READ);
    case MADV_RANDOM:
      return setVmaFlags(mm, s, e, v, VMA_RAND_READ, VMA_SEQ_READ);
    case MADV_SEQUENTIAL:
      return setVmaFlags(mm, s, e, v, VMA_SEQ_READ, VMA_RAND_READ);
    case MADV_WILLNEED:
    case MADV_COLD:
    case MADV_PAGEOUT:
      if ((advice === MADV_COLD || advice === MADV_PAGEOUT) && v.locked)
        return err('EINVAL', 'madvise: COLD/PAGEOUT on VM_LOCKED');
      // Reclaim discards droppable pages instead of swapping them: the data is gone.
      if (advice === MADV_PAGEOUT && (v.flags & VMA_DROPPABLE) !== 0) {
        mm.notifiers.invalidateRangeStart(s, e);
        freeAnon(mm, s, e);
      }
      return OK_VOID;
    case MADV_DONTNEED:
    case MADV_DONTNEED_LOCKED:
      if (advice === MADV_DONTNEED && v.locked)
        return err('EINVAL', 'madvise_dontneed_free_valid_vma: VM_LOCKED');
      // zap_page_range_single(): notify KVM, then drop PTEs. Private anonymous pages are freed
      // (the next access sees zeros); shared and file pages stay in their page cache.
      mm.notifiers.invalidateRangeStart(s, e);
      if (!v.shared) freeAnon(mm, s, e);
      if (v.kind === 'gmem' && mm.gmemPtes.size !== 0) mm.gmemPtes.delete(s, e);
      // zap_pte_range() with reclaim_pt (CONFIG_PT_RECLAIM): a page table whose whole 2 MiB the
      // zap covers, now all none, is freed.
      if (v.kind === 'anon' && mm.pteTables.size !== 0) {
        const f0 = Math.ceil(s / 512) * 512;
        const f1 = Math.floor(e / 512) * 512;
        if (f0 < f1) mm.pteTables.delete(f0, f1);
      }
      return OK_VOID;
    case MADV_FREE:
      if (v.kind !== 'anon') return err('EINVAL', 'madvise_free: not anonymous');
      if (v.locked) return err('EINVAL', 'madvise_free: VM_LOCKED');
      // Lazy free: without memory pressure the pages (and their contents) stay.
      return OK_VOID;
    case MADV_REMOVE: {
      if (v.locked) return err('EINVAL', 'madvise_remove: VM_LOCKED');
      if (v.kind === 'anon') return err('EINVAL', 'madvise_remove: no file');
      // vma_is_shared_maywrite(): VM_SHARED and VM_MAYWRITE (every file here is open O_RDWR).
      if (!v.shared) return err('EACCES', 'madvise_remove: not a shared mapping');
      const offset = pgoffToBytes(v.base);
      const len = pagesToBytes(hvpnDiff(e, s));
      if (v.obj instanceof ShmemObject) {
        mm.notifiers.invalidateRangeStart(s, e);
        // The object's mappings in other address spaces (design-2020-separate-mm: a guest
        // address space that maps the VMM's shared memory) lose the pages too.
        mm.k.shmemUnmapElsewhere?.(mm, v.obj, v.base, pgoffAdd(v.base, hvpnDiff(e, s)));
        shmemPunch(mm.k, v.obj, v.base, pgoffAdd(v.base, hvpnDiff(e, s)));
        return OK_VOID;
      }
      return mm.k.vfsFallocate(
        v.obj!,
        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
        offset,
        len,
        'madv_remove',
      );
    }
    case MADV_DONTFORK:
      return setVmaFlags(mm, s, e, v, VMA_DONTFORK, 0);
    case MADV_DOFORK:
      return setVmaFlags(mm, s, e, v, 0, VMA_DONTFORK);
    case MADV_DONTDUMP:
      return setVmaFlags(mm, s, e, v, VMA_DONTDUMP, 0);
    case MADV_DODUMP:
      if ((v.flags & VMA_DROPPABLE) !== 0) return err('EINVAL', 'madvise: DODUMP on VM_DROPPABLE');
      return setVmaFlags(mm, s, e, v, 0, VMA_DONTDUMP);
    case MADV_WIPEONFORK:
      if (v.kind !== 'anon')
        return err('EINVAL', 'madvise: WIPEONFORK on a file or shared mapping');
      return setVmaFlags(mm, s, e, v, VMA_WIPEONFORK, 0);
    case MADV_KEEPONFORK:
      if ((v.flags & VMA_DROPPABLE) !== 0)
        return err('EINVAL', 'madvise: KEEPONFORK on VM_DROPPABLE');
      return setVmaFlags(mm, s, e, v, 0, VMA_WIPEONFORK);
    case MADV_HUGEPAGE:
      return setVmaFlags(mm, s, e, v, VMA_HUGEPAGE, VMA_NOHUGEPAGE);
    case MADV_NOHUGEPAGE:
      return setVmaFlags(mm, s, e, v, VMA_NOHUGEPAGE, VMA_HUGEPAGE);
    case MADV_MERGEABLE:
      if (!mm.k.profile.ksm) return err('EINVAL', 'madvise: KSM not configured');
      if (v.kind === 'anon') setVmaFlags(mm, s, e, v, VMA_MERGEABLE, 0);
      return OK_VOID;
    case MADV_UNMERGEABLE:
      if (!mm.k.profile.ksm) return err('EINVAL', 'madvise: KSM not configured');
      return setVmaFlags(mm, s, e, v, 0, VMA_MERGEABLE);
    case MADV_GUARD_INSTALL:
      // madvise_guard_install(): not on VM_LOCKED (or special) VMAs. Existing pages are zapped
      // (private anonymous memory is freed; file pages stay in their page cache).
      if (v.locked) return err('EINVAL', 'madvise_guard_install: VM_LOCKED');
      mm.notifiers.invalidateRangeStart(s, e);
      if (v.kind === 'gmem' && mm.gmemPtes.size !== 0) mm.gmemPtes.delete(s, e);
      if (v.kind === 'anon') {
        freeAnon(mm, s, e);
        // anon_vma_prepare(), and page tables to hold the markers.
        markAnonVma(mm, s);
        notePteTable(mm, s, e);
      }
      mm.guards.set(s, e, true);
      return OK_VOID;
    case MADV_GUARD_REMOVE:
      mm.guards.delete(s, e);
      return OK_VOID;
    case MADV_COLLAPSE:
      return madviseCollapse(mm, s, e, v);
    case MADV_POPULATE_READ:
    case MADV_POPULATE_WRITE: {
      const write = advice === MADV_POPULATE_WRITE;
      // madvise_populate(): permission mismatches are EINVAL, fault failures EFAULT.
      if (write ? (v.prot & PROT_WRITE) === 0 : (v.prot & PROT_READ) === 0)
        return err('EINVAL', 'madvise_populate: permission');
      if (populate(mm, s, e, write) < e) return err('EFAULT', 'madvise_populate: fault failed');
      return OK_VOID;
    }
    default:
      return err('EINVAL', 'madvise: advice not modelled');
  }
}

/** Advice values madvise_behavior_valid() accepts on the modelled kernels. */
export const MADV_KNOWN = new Set<number>([
  MADV_NORMAL,
  MADV_RANDOM,
  MADV_SEQUENTIAL,
  MADV_WILLNEED,
  MADV_DONTNEED,
  MADV_FREE,
  MADV_REMOVE,
  MADV_DONTFORK,
  MADV_DOFORK,
  MADV_MERGEABLE,
  MADV_UNMERGEABLE,
  MADV_HUGEPAGE,
  MADV_NOHUGEPAGE,
  MADV_DONTDUMP,
  MADV_DODUMP,
  MADV_WIPEONFORK,
  MADV_KEEPONFORK,
  MADV_COLD,
  MADV_PAGEOUT,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_DONTNEED_LOCKED,
  MADV_COLLAPSE,
  MADV_GUARD_INSTALL,
  MADV_GUARD_REMOVE,
]);
