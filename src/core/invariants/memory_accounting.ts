/**
 * memory-accounting: every allocated frame has exactly one owner, no owned frame is on the free
 * list, and the allocator's count equals the owned frames (no leak, no double free).
 */
import { NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

export const memoryAccounting: Invariant = {
  name: 'memory-accounting',
  title: 'Memory accounting is exact',
  statement:
    'Every physical page the host has handed out belongs to exactly one owner — a guest_memfd file index, a private anonymous page of the VMM, a shmem page, or a vCPU page — and the number of allocated pages equals the number of owned pages. No page is owned twice, and no owned page is also free.',
  mechanism:
    'The page cache and the page allocator: guest_memfd folios live in the inode mapping (filemap_grab_folio, truncate_inode_pages_range frees them), anonymous pages are freed by zap_page_range when unmapped; every free goes through put_page/folio_put exactly once.',
  origin:
    'issue #4 ("memory accounting (pages allocated in guest_memfd and in shared backing, per VM) is exact"); double-consumption reports in vmm-ecosystem.md §0 and §5.1.',
  check(s) {
    const o = s.ownership();
    let out: Violation[] | undefined;
    for (const d of o.doubles)
      (out ??= []).push({
        invariant: this.name,
        object: `pfn 0x${d.pfn.toString(16)}`,
        message: `page owned twice: by ${d.a} and by ${d.b}`,
        focus: { pfn: d.pfn },
      });
    const onFree = s.ownedOnFree();
    if (onFree !== undefined)
      (out ??= []).push({
        invariant: this.name,
        object: `pfn 0x${onFree.toString(16)}`,
        message: `an owned page is on the free list (owner still uses a freed page)`,
        focus: { pfn: onFree },
      });
    const alloc = s.host.frames.allocated;
    if (alloc !== o.ownedFrames)
      (out ??= []).push({
        invariant: this.name,
        object: 'host memory',
        message: `${alloc} pages allocated but ${o.ownedFrames} owned (${alloc > o.ownedFrames ? `${alloc - o.ownedFrames} leaked` : `${o.ownedFrames - alloc} owned without being allocated`})`,
        focus: {},
      });
    return out ?? NO_VIOLATIONS;
  },
};
