/**
 * mm/khugepaged.c: madvise(MADV_COLLAPSE) (madvise_collapse()), collapsing the PMD-aligned chunks
 * of a range into huge pages, or refusing.
 */
import type { Hvpn } from '../base/units.js';
import { VMA_NOHUGEPAGE, type MmStruct, type Vma } from './mm_types.js';
import { OK_VOID, err, type Result } from '../base/result.js';
import { ShmemObject } from './shmem.js';
import { hasAnonVma } from './rmap.js';

/** madvise_collapse() on [s, e) of one VMA. */
export function madviseCollapse(mm: MmStruct, s: Hvpn, e: Hvpn, v: Vma): Result<undefined> {
  // thp_vma_allowable_order(TVA_FORCED_COLLAPSE): guest_memfd and vCPU mappings are
  // refused, and so is an anonymous VMA without an anon_vma (no page was ever written in
  // it); shmem is accepted, and so are VM_LOCKED VMAs [verified].
  if (v.kind === 'gmem' || v.kind === 'vcpu')
    return err('EINVAL', 'madvise_collapse: VMA not eligible');
  // vma_thp_disabled(): VM_NOHUGEPAGE (MADV_NOHUGEPAGE, MAP_STACK) refuses even a forced
  // collapse.
  if ((v.flags & VMA_NOHUGEPAGE) !== 0) return err('EINVAL', 'madvise_collapse: VM_NOHUGEPAGE');
  if (v.kind === 'anon' && !hasAnonVma(mm, s))
    return err('EINVAL', 'madvise_collapse: anonymous VMA without anon_vma');
  // thp_vma_suitable_order(): the VMA must be able to hold a PMD-aligned huge page.
  const whole = mm.vmas.entryAt(s)!;
  if (Math.ceil(whole.start / 512) * 512 + 512 > whole.end)
    return err('EINVAL', 'madvise_collapse: VMA cannot hold a huge page');
  // The PMD-aligned chunks inside the range: hstart rounds up, hend rounds down, and the
  // call succeeds only if every chunk collapses (thps == (hend - hstart) / PMD, unsigned, so
  // a range inside one PMD that contains no boundary fails). An empty chunk (SCAN_PMD_NULL)
  // fails with EINVAL.
  const hs = Math.ceil(s / 512) * 512;
  const he = Math.floor(e / 512) * 512;
  if (he < hs) return err('EINVAL', 'madvise_collapse: range inside one PMD');
  for (let c = hs; c < he; c += 512) {
    // A guard marker in the chunk fails its scan (anonymous and shmem alike) [verified].
    if (mm.guards.size !== 0 && mm.guards.anyIn(c, c + 512))
      return err('EINVAL', 'madvise_collapse: guard marker in the PMD range');
    const populated =
      v.kind === 'anon'
        ? mm.anon.anyIn(c, c + 512) ||
          mm.pteTables.get(c) !== undefined ||
          mm.hugeZero.get(c) !== undefined
        : (v.obj as ShmemObject).pages.anyIn(v.base + (c - s), v.base + (c - s) + 512);
    if (!populated) return err('EINVAL', 'madvise_collapse: empty PMD');
  }
  return OK_VOID;
}
