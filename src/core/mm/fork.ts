/**
 * kernel/fork.c and mm/mmap.c: a forked child's address space (`dup_mmap()`, reached from
 * copy_process() → copy_mm() → dup_mm()) and its end (`exit_mmap()`, from do_exit() → exit_mm()
 * → mmput()).
 *
 * What the child gets, VMA by VMA (dup_mmap()):
 *   - VM_DONTCOPY (MADV_DONTFORK) VMAs are not copied;
 *   - every other VMA is copied with its flags and protections; a file VMA takes a reference on
 *     its file (get_file()), a MAP_SHARED anonymous one on its shmem object: MAP_SHARED file,
 *     shmem and guest_memfd mappings reach the same pages in both processes;
 *   - VM_WIPEONFORK VMAs (MADV_WIPEONFORK, MAP_DROPPABLE) are copied empty: no anon_vma, no page
 *     table, so the child reads zeros and its writes get new pages;
 *   - page tables are copied only where the kernel copies them (copy_page_range() →
 *     vma_needs_copy(): the VMA has an anon_vma): the private pages. File and guest_memfd PTEs
 *     are not copied — the child's first access refaults (so `gmemPtes` starts empty).
 * Private anonymous memory (and a MAP_PRIVATE file mapping's copied pages) is copy-on-write in
 * the kernel: both PTEs are write-protected and a write fault in either process copies the frame
 * (wp_page_copy()). The model keeps a frame in one address space only, so it does not share
 * them: the parent keeps its pages as they are (what it reads and writes is unchanged; only the
 * frame it would move to on its next write differs), and the child's access to a page that was
 * present at fork is refused as not modelled (`cowFromParent`: memory.ts's refuseCowAccess(),
 * called by handle_mm_fault(), populate() and madvise()).
 * The child's private pages that were not present at fork (zero-page reads, untouched pages)
 * behave as in the kernel: a read sees zeros, a write allocates.
 *
 * Overcommit: dup_mmap() charges each VM_ACCOUNT VMA again (security_vm_enough_memory_mm()); in
 * the heuristic mode the model follows, a VMA that passed the check at mmap() passes it here.
 */
import { asHvpn, type Hvpn } from '../base/units.js';
import { ShmemObject } from './shmem.js';
import { VMA_DONTFORK, VMA_WIPEONFORK, type MmStruct } from './mm_types.js';
import { unmapRange } from './mmap.js';

/** `dup_mmap()`: copy `old`'s VMAs into the new, empty `mm` by the fork rules above. */
export function dupMmap(old: MmStruct, mm: MmStruct): void {
  for (const v of old.vmas.entries()) {
    const vma = v.value;
    // VM_DONTCOPY: not in the child.
    if ((vma.flags & VMA_DONTFORK) !== 0) continue;
    const s = v.start;
    const e = v.end;
    const n = e - s;
    mm.vmas.set(s, e, vma);
    if (vma.obj instanceof ShmemObject) vma.obj.mappedPages += n;
    else if (vma.obj !== null) mm.k.getFileMapping(vma.obj, n);
    const wipe = (vma.flags & VMA_WIPEONFORK) !== 0;
    // Guard markers are PTE markers: copied with the page tables, dropped by VM_WIPEONFORK.
    if (!wipe) for (const g of old.guards.piecesIn(s, e)) mm.guards.set(g.start, g.end, true);
    if (vma.shared || wipe) continue;
    // anon_vma_fork(): the child's VMA has an anon_vma when the parent's has one.
    for (const a of old.anonVmas.piecesIn(s, e)) mm.anonVmas.set(a.start, a.end, true);
    // copy_page_range(): the page tables of private memory, the huge zero page's PMDs included.
    for (const t of old.pteTables.piecesIn(s, e)) mm.pteTables.set(t.start, t.end, true);
    for (const z of old.hugeZero.piecesIn(s, e)) mm.hugeZero.set(z.start, z.end, true);
    // The private pages present at fork: copy-on-write shared in the kernel, not modelled here.
    for (const p of old.anon.piecesIn(s, e)) mm.cowFromParent.set(p.start, p.end, true);
  }
  mm.cursor = old.cursor;
  mm.nextShmemId = old.nextShmemId;
}

/** `exit_mmap()`: every VMA unmapped (pages and file references dropped), as munmap would. */
export function exitMmap(mm: MmStruct): void {
  const all = mm.vmas.entries();
  const ranges: Array<[Hvpn, Hvpn]> = [];
  for (const v of all) ranges.push([asHvpn(v.start), asHvpn(v.end)]);
  for (const [s, e] of ranges) unmapRange(mm, s, e);
}
