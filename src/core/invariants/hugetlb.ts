/**
 * Invariants of HugeTLB-backed guest_memfd (issue 14 items 4 and 6; kernel-uapi.md §6.2;
 * kvm/guest_memfd/hugetlb.ts), on profiles with HugeTLB guest_memfd (`profile.gmemHugetlb`).
 *
 * - hugetlb-split-accounted: every allocated huge page of a HugeTLB file, whole or split, has all
 *   its 2^order indices in the file, backed by one naturally aligned contiguous run of frames:
 *   no subpage is lost or owned twice by a split (memory-accounting checks the frame totals).
 * - hugetlb-merged-private: a huge folio (an unsplit huge page) covers only private indices.
 * - hugetlb-huge-mapping: a huge guest mapping of guest_memfd memory covers only private indices
 *   of one huge page of the file (never across two: the base_gfn / pgoff rule), and never a huge
 *   page that is split unless the mapping is smaller than it (2M leaves that
 *   kvm_split_cross_boundary_leafs() leaves over a split 1G folio are the wip tree's).
 */
import { LEVEL_PAGES, asGfn } from '../base/units.js';
import { gfnToGmemIndex, type GmemFile, type Vm } from '../kvm/objects.js';
import type { KernelProfile } from '../profiles/profile.js';
import { mappingsOf } from './stage2_coherent.js';
import {
  checkEveryVm,
  hx,
  NO_VIOLATIONS,
  type CheckState,
  type Invariant,
  type PerVm,
  type Violation,
} from './types.js';

/** Profiles with HugeTLB guest_memfd. */
function hugetlbProfile(p: KernelProfile): boolean {
  return p.gmemHugetlb !== undefined;
}

function* hugetlbFiles(vm: Vm): Generator<GmemFile> {
  for (const f of vm.gmemFiles) if (f.hugetlb) yield f;
}

const SPLIT = 'hugetlb-split-accounted';

const splitPerVm: PerVm = {
  vms: 'live',
  // Re-run whenever the VM is dirty: a change to its files' pages, attributes or folio orders
  // (watched by the change-driven checker) marks it so.
  mappings: true,
  own: true,
  vm(vm: Vm): Violation[] {
    let out: Violation[] | undefined;
    const bad = (f: GmemFile, h: number, message: string): void => {
      (out ??= []).push({
        invariant: SPLIT,
        object: `guest_memfd #${f.ino} huge page at index ${hx(h)}`,
        message,
        focus: { ino: f.ino, index: h },
      });
    };
    for (const f of hugetlbFiles(vm)) {
      const n = 2 ** f.pageOrder;
      // Every allocated index belongs to a huge page the file has a folio order for.
      for (const p of f.pages.entries())
        for (const g of f.folioOrders.gapsIn(p.start, p.end))
          bad(
            f,
            Math.floor(g.start / n) * n,
            `index ${hx(g.start)} is in the file without a folio`,
          );
      for (const run of f.folioOrders.entries()) {
        if (run.value !== 0 && run.value !== f.pageOrder) {
          bad(f, run.start, `folio order ${run.value} is neither the huge order nor 0`);
          continue;
        }
        for (let h = Math.floor(run.start / n) * n; h < run.end; h += n) {
          if (!f.folioOrders.covers(h, h + n)) {
            bad(f, h, 'the huge page is partly out of the file (a subpage was lost)');
            continue;
          }
          const pieces = f.pages.piecesIn(h, h + n);
          const first = pieces[0];
          if (first === undefined || !f.pages.covers(h, h + n)) {
            bad(f, h, 'a subpage of the huge page has no frame in the file (lost by a split)');
            continue;
          }
          const base = first.value.base - (first.start - h);
          if (base % n !== 0) bad(f, h, `its frames start at pfn ${hx(base)}, not ${n}-aligned`);
          else if (pieces.some((p) => p.value.base !== base + (p.start - h)))
            bad(f, h, 'its subpages are not one contiguous run of frames');
        }
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const hugetlbSplitAccounted: Invariant = {
  name: SPLIT,
  title: "A split HugeTLB folio's pages are accounted exactly once",
  statement:
    'Every allocated huge page of a HugeTLB guest_memfd, one huge folio or split into 4K folios, has all its 2^order indices in the file, each backed by its own frame of one naturally aligned contiguous run: a split neither loses a subpage nor gives one to two indices.',
  mechanism:
    'gmem_hugetlb_alloc_folio() takes a whole huge page from the subpool; hugetlb_restructuring_restructure_folio() (kvm_gmem_restructure(), __maybe_split_fresh_folio(), merge_folios_in_range()) changes only folio boundaries, keeping every page in the page cache; truncation frees whole huge folios (merge first).',
  origin:
    'issue 14 items 4 and 6 ("a split folio\'s pages are accounted exactly once"); kernel-uapi.md §6.2 known issues (accounting after split).',
  appliesTo: hugetlbProfile,
  perVm: splitPerVm,
  check(s: CheckState) {
    return checkEveryVm(splitPerVm, s);
  },
};

const MERGED = 'hugetlb-merged-private';

const mergedPerVm: PerVm = {
  vms: 'live',
  // Re-run whenever the VM is dirty: a change to its files' pages, attributes or folio orders
  // (watched by the change-driven checker) marks it so.
  mappings: true,
  own: true,
  vm(vm: Vm): Violation[] {
    let out: Violation[] | undefined;
    for (const f of hugetlbFiles(vm))
      for (const run of f.folioOrders.entries()) {
        if (run.value === 0) continue;
        const shared = f.attrs.gapsIn(run.start, run.end)[0];
        if (shared === undefined) continue;
        const n = 2 ** f.pageOrder;
        const h = Math.floor(shared.start / n) * n;
        (out ??= []).push({
          invariant: MERGED,
          object: `guest_memfd #${f.ino} huge page at index ${hx(h)}`,
          message: `an order-${run.value} folio covers shared index ${hx(shared.start)}`,
          focus: { ino: f.ino, index: shared.start },
        });
      }
    return out ?? NO_VIOLATIONS;
  },
};

export const hugetlbMergedPrivate: Invariant = {
  name: MERGED,
  title: 'A merged HugeTLB folio has no shared page',
  statement:
    'A huge folio of a HugeTLB guest_memfd (an unsplit huge page) covers only private indices: any index of it going shared splits it to 4K first, and it merges back only when every index is private again.',
  mechanism:
    'kvm_gmem_restructure(): to order 0 on every conversion to shared, to the huge order on a conversion to private only when all_rest_private; __maybe_split_fresh_folio() splits a fresh folio over a shared index.',
  origin:
    'issue 14 items 4 and 6 ("a merged folio has no shared page"); kernel-uapi.md §6.2 split/merge rule.',
  appliesTo: hugetlbProfile,
  perVm: mergedPerVm,
  check(s: CheckState) {
    return checkEveryVm(mergedPerVm, s);
  },
};

const MAPPING = 'hugetlb-huge-mapping';

const mappingPerVm: PerVm = {
  vms: 'live',
  mappings: true,
  own: true,
  vm(vm: Vm, s: CheckState): Violation[] {
    let out: Violation[] | undefined;
    const ms = mappingsOf(vm, s);
    for (let i = 0; i < ms.length; i++) {
      const { start: g0, end: g1, spte, slot } = ms[i]!;
      if (spte.level === '4K' || spte.source !== 'gmem' || slot === undefined) continue;
      const g = slot.gmem;
      const f = g?.file;
      if (g === null || g === undefined || f === null || f === undefined || !f.hugetlb) continue;
      const L = LEVEL_PAGES[spte.level];
      const n = 2 ** f.pageOrder;
      for (let fr = Math.floor(g0 / L) * L; fr < g1; fr += L) {
        const i0 = gfnToGmemIndex(slot, g.pgoff, asGfn(fr));
        const h = Math.floor(i0 / n) * n;
        const order = f.folioOrders.get(i0);
        const bad =
          Math.floor((i0 + L - 1) / n) * n !== h
            ? 'straddles two huge pages of the file'
            : !f.attrs.covers(i0, i0 + L)
              ? 'covers a shared index'
              : order === 0 && L >= n
                ? 'covers a huge page that is split to 4K'
                : undefined;
        if (bad === undefined) continue;
        (out ??= []).push({
          invariant: MAPPING,
          object: `vm${vm.index} ${spte.level} mapping at gfn ${hx(fr)}`,
          message: `a huge guest mapping of guest_memfd #${f.ino} index ${hx(i0)} ${bad}`,
          focus: { vm: vm.index, gfn: fr },
        });
        break;
      }
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const hugetlbHugeMapping: Invariant = {
  name: MAPPING,
  title: 'A huge guest mapping of HugeTLB guest_memfd covers one private huge folio',
  statement:
    'A 2M or 1G stage-2 mapping of HugeTLB guest_memfd memory covers only private indices of one huge page of the file, and never a huge page already split to 4K unless the mapping is smaller than the huge page (the 2M leaves left over a split 1G folio).',
  mechanism:
    "__kvm_gmem_get_pfn()'s max_order is the folio's order (0 after a split); kvm_mmu_hugepage_adjust() caps it by lpage_info (mixed attributes) and the base_gfn / pgoff alignment; a conversion to shared splits the crossing leaves (kvm_split_cross_boundary_leafs()) and zaps the converted range.",
  origin:
    'issue 14 items 4 and 6 ("guest mapping level from folio order and shareability, and the base_gfn / pgoff misalignment rule"); kernel-uapi.md §6.2.',
  appliesTo: hugetlbProfile,
  perVm: mappingPerVm,
  check(s: CheckState) {
    return checkEveryVm(mappingPerVm, s);
  },
};
