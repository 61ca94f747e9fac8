/**
 * mm/memory.c (and the x86 user page fault, arch/x86/mm/fault.c): handle_mm_fault() for one host
 * virtual page, the VMM's own loads and stores (peek/poke: SIGSEGV/SIGBUS), zapping private
 * anonymous pages (zap_page_range_single() → zap_pte_range()), and unmap_mapping_range() as
 * truncation of a mapped file reaches it.
 */
import { type KFile } from '../vfs/file.js';
import { VMA_HUGETLB, VMA_KVM_PROTECTED, type MmStruct } from './mm_types.js';
import {
  PAGE_SIZE,
  ZERO_PFN,
  asHvpn,
  hvaAdd,
  hvaToHvpn,
  hvpnAdd,
  hvpnAlignDown,
  offsetInPage,
  pgoffAdd,
  pgoffDiff,
  type Hva,
  type Hvpn,
  type PgOff,
  type Pfn,
} from '../base/units.js';
import { PROT_EXEC, PROT_READ, PROT_WRITE } from '../base/uapi.js';
import { RangeMap } from '../base/ranges/range_map.js';
import { ShmemObject } from './shmem.js';
import { markAnonVma } from './rmap.js';
import { notePteTable } from './pgtable.js';
import { splitThp, thpAllowed, tryThp } from './huge_memory.js';
import { hostAccessFrame } from './host_access.js';
import { NotModelled } from '../base/not_modelled.js';

/**
 * The model's refusal of an access to a private page that fork left copy-on-write between two
 * address spaces (mm/fork.ts: the model keeps each frame in one address space), or nothing.
 */
export function refuseCowAccess(mm: MmStruct, s: Hvpn, e: Hvpn): void {
  if (mm.cowFromParent.size === 0 || !mm.cowFromParent.anyIn(s, e)) return;
  throw new NotModelled(
    'a private page shared copy-on-write with the parent since fork (dup_mmap() → copy_page_range()) is not modelled: the model keeps each frame in one address space',
  );
}

export type UserAccess =
  | { readonly ok: true; readonly data?: Uint8Array }
  | { readonly ok: false; readonly fault: 'SIGSEGV' | 'SIGBUS' };

/**
 * Resolve one host virtual page for an access. `cpu` selects the CPU page-fault rules (a read
 * is allowed on any of R/W/X, as x86 access_error() does) versus get_user_pages() rules (a read
 * needs VM_READ). Returns the frame (ZERO_PFN for an untouched anonymous page read) or the
 * signal/errno the access gets. `follKvm`: a GUP that follows PROT_NONE PTEs (KVM's hva_to_pfn()
 * with FOLL_KVM on the design-2020-protnone-follkvm kernel), the only fault a VM_KVM_PROTECTED
 * VMA completes (a populating read follows the PTEs without a fault: gup.ts).
 */
export function handleMmFault(
  mm: MmStruct,
  hvpn: Hvpn,
  write: boolean,
  cpu: boolean,
  follKvm = false,
): { pfn: Pfn; writable: boolean } | { signal: 'SIGSEGV' | 'SIGBUS' } {
  const v = mm.vmas.get(hvpn);
  if (v === undefined) return { signal: 'SIGSEGV' };
  if (mm.guards.size !== 0 && mm.guards.get(hvpn) !== undefined) return { signal: 'SIGSEGV' };
  if (!v.shared && mm.cowFromParent.size !== 0) refuseCowAccess(mm, hvpn, hvpnAdd(hvpn, 1));
  if (write) {
    if ((v.prot & PROT_WRITE) === 0) return { signal: 'SIGSEGV' };
  } else if (cpu) {
    if ((v.prot & (PROT_READ | PROT_WRITE | PROT_EXEC)) === 0) return { signal: 'SIGSEGV' };
    // An execute-only mapping carries the execute-only protection key: data reads fault.
    if (v.prot === PROT_EXEC && mm.k.profile.execOnlyPkey) return { signal: 'SIGSEGV' };
  } else if ((v.prot & PROT_READ) === 0) return { signal: 'SIGSEGV' };
  const writable = (v.prot & PROT_WRITE) !== 0;
  // hugetlb_no_page(): no huge page can be allocated (empty pool, MAP_NORESERVE).
  if ((v.flags & VMA_HUGETLB) !== 0) return { signal: 'SIGBUS' };
  // The KVM protected memory extension (RFC v2, Oct 2020): a VM_KVM_PROTECTED VMA keeps its
  // vm_flags, so access_error() passed above, but vm_page_prot is PAGE_NONE (patch 09, as NUMA
  // hinting makes PTEs): a missing page is allocated and mapped PROT_NONE by the first fault
  // (do_anonymous_page(), shmem's fault), and the retried access meets the PROT_NONE PTE, which
  // do_numa_page() turns into VM_FAULT_SIGBUS for a protected VMA. A GUP that honors NUMA
  // hinting faults (every external get_user_pages() without FOLL_KVM) faults the same way and
  // fails with -EFAULT; KVM's hva_to_pfn_slow() passes FOLL_KVM, follows the PROT_NONE PTE and
  // gets the page.
  const kvmProtected = (v.flags & VMA_KVM_PROTECTED) !== 0;
  if (
    kvmProtected &&
    !follKvm &&
    (cpu || !mm.k.mutants.has('protnone_gup_ignores_kvm_protected'))
  ) {
    const r = handleMmFault(mm, hvpn, write, cpu, true);
    return 'signal' in r ? r : { signal: cpu ? 'SIGBUS' : 'SIGSEGV' };
  }
  switch (v.kind) {
    case 'anon': {
      const ex = mm.anon.get(hvpn);
      if (ex !== undefined) return { pfn: ex.base, writable };
      // __handle_mm_fault(): a huge PMD is tried only while the frame has none (no page table).
      const pmdNone = mm.pteTables.size === 0 || mm.pteTables.get(hvpn) === undefined;
      const hugeZero = mm.hugeZero.size !== 0 && mm.hugeZero.get(hvpn) !== undefined;
      const h0 = hvpnAlignDown(hvpn, 512);
      // vma_forbids_zeropage() (the RFC): a protected VMA never maps the shared zero page, which
      // cannot leave the direct map; a read allocates as a write does.
      if (!write && !kvmProtected) {
        if (!hugeZero && pmdNone && thpAllowed(mm, hvpn, v)) {
          // do_huge_pmd_anonymous_page() prepares the anon_vma before it maps the zero page.
          markAnonVma(mm, hvpn);
          mm.hugeZero.set(h0, h0 + 512, true);
        } else if (!hugeZero) notePteTable(mm, hvpn, hvpnAdd(hvpn, 1));
        return { pfn: ZERO_PFN, writable: false };
      }
      // do_huge_pmd_anonymous_page() / do_huge_zero_wp_pmd(): an eligible, completely empty
      // 2 MiB frame (or one mapping the huge zero page) gets a THP.
      if (pmdNone) {
        const huge = tryThp(mm, hvpn, v);
        if (huge !== undefined) {
          if (hugeZero) mm.hugeZero.delete(h0, h0 + 512);
          return { pfn: huge, writable };
        }
      }
      if (hugeZero) splitThp(mm, hvpn, hvpnAdd(hvpn, 1));
      notePteTable(mm, hvpn, hvpnAdd(hvpn, 1));
      // Replacing the zero page (or nothing) with a new page notifies secondary MMUs.
      mm.notifiers.invalidateRangeStart(hvpn, hvpnAdd(hvpn, 1));
      const pfn = mm.k.frames.allocOne();
      if (!mm.k.mutants.has('anon_fault_no_zero')) mm.k.frames.zero(pfn, 1);
      mm.anon.set(hvpn, hvpn + 1, { base: pfn });
      markAnonVma(mm, hvpn);
      mm.k.events.push({ kind: 'anon_alloc', hvpn, pages: 1 });
      return { pfn, writable };
    }
    case 'shmem': {
      const obj = v.obj as ShmemObject;
      const idx = v.base;
      if (idx >= obj.npages) return { signal: 'SIGBUS' };
      const ex = obj.pages.get(idx);
      if (ex !== undefined) return { pfn: ex.base, writable };
      const pfn = mm.k.frames.allocOne();
      mm.k.frames.zero(pfn, 1);
      obj.pages.set(idx, idx + 1, { base: pfn });
      mm.k.events.push({ kind: 'shmem_alloc', obj: obj.id, start: idx, end: pgoffAdd(idx, 1) });
      return { pfn, writable };
    }
    case 'gmem': {
      // get_user_pages() → check_vma_flags(): a VMA whose mapping is AS_NO_DIRECT_MAP
      // (`vma_has_no_direct_map()`, secretmem's check generalised by the NO_DIRECT_MAP series) is
      // -EFAULT before any fault: GUP never hands out a page the kernel cannot reach.
      if (!cpu && (v.obj as KFile).noDirectMap) return { signal: 'SIGBUS' };
      // handle_mm_fault() → vma->vm_ops->fault()
      const r = (v.obj as KFile).vmOps!.fault(v.base);
      if ('signal' in r) return r;
      mm.gmemPtes.set(hvpn, hvpn + 1, true);
      return { pfn: r.pfn, writable };
    }
    case 'vcpu': {
      // A MAP_PRIVATE mapping reads the file page until the first write copies it (CoW).
      if (!v.shared) {
        const copy = mm.anon.get(hvpn);
        if (copy !== undefined) return { pfn: copy.base, writable };
      }
      // kvm_vcpu_fault() through the file's vm_ops; mm does the copy-on-write.
      const f = (v.obj as KFile).vmOps!.fault(v.base);
      if ('signal' in f) return f;
      const r = f.pfn;
      if (v.shared || !write) return { pfn: r, writable: writable && v.shared };
      mm.notifiers.invalidateRangeStart(hvpn, hvpnAdd(hvpn, 1));
      const pfn = mm.k.frames.allocOne();
      mm.k.frames.copy(r, pfn);
      mm.anon.set(hvpn, hvpn + 1, { base: pfn });
      markAnonVma(mm, hvpn);
      mm.k.events.push({ kind: 'anon_alloc', hvpn, pages: 1 });
      return { pfn, writable };
    }
  }
}

/**
 * A CPU access by the VMM to [addr, addr+len): bytes move in address order and the access
 * stops at the first page that faults, so a poke across into a bad page writes its first part.
 */
export function cpuAccess(
  mm: MmStruct,
  addr: Hva,
  len: number,
  write: Uint8Array | null,
): UserAccess {
  const out = write === null ? new Uint8Array(len) : undefined;
  let done = 0;
  while (done < len) {
    const a = hvaAdd(addr, BigInt(done));
    if (a >= mm.k.profile.taskSizeMax) return { ok: false, fault: 'SIGSEGV' };
    const hvpn = hvaToHvpn(a);
    const off = offsetInPage(a);
    const n = Math.min(len - done, PAGE_SIZE - off);
    const r = handleMmFault(mm, hvpn, write !== null, true);
    if ('signal' in r) return { ok: false, fault: r.signal };
    const denied = hostAccessFrame(mm.k, r.pfn, write !== null, 'vmm');
    if (denied !== undefined) return { ok: false, fault: denied };
    if (write !== null) mm.k.frames.write(r.pfn, off, write, done, n);
    else mm.k.frames.read(r.pfn, off, out!, done, n);
    done += n;
  }
  return out === undefined ? { ok: true } : { ok: true, data: out };
}

/**
 * `unmap_mapping_range()` as truncation reaches it (truncate_cleanup_folio() on a mapped
 * folio): remove the PTEs of file pages [startPgoff, endPgoff) from every VMA that maps them,
 * each removal notifying KVM for the host pages concerned. The VMAs stay.
 */
export function unmapMappingRange(
  mm: MmStruct,
  obj: KFile,
  startPgoff: PgOff,
  endPgoff: PgOff,
): void {
  unmapMappingRangeAll([mm], obj, startPgoff, endPgoff);
}

/**
 * `unmap_mapping_range()` over every address space: the file's i_mmap tree holds the VMAs of
 * every mm that maps it (a forked child's included), and each one's PTEs go, with that mm's
 * notifiers called.
 */
export function unmapMappingRangeAll(
  mms: readonly MmStruct[],
  obj: KFile | ShmemObject,
  startPgoff: PgOff,
  endPgoff: PgOff,
): void {
  if (obj.mappedPages === 0) return;
  const views: Array<{ mm: MmStruct; s: Hvpn; e: Hvpn; lo: PgOff }> = [];
  // unmap_mapping_folio() runs only for folios mapped somewhere, and it drops guard markers
  // (ZAP_FLAG_DROP_MARKER) over the folio in every mapping of the file [verified].
  const mapped = new RangeMap<true>();
  for (const mm of mms)
    for (const v of mm.vmas.entries()) {
      if (v.value.obj !== obj) continue;
      const lo = startPgoff > v.value.base ? startPgoff : v.value.base;
      const hi = Math.min(endPgoff, v.value.base + (v.end - v.start));
      if (lo >= hi) continue;
      const start = asHvpn(v.start);
      const view = {
        mm,
        s: hvpnAdd(start, pgoffDiff(lo, v.value.base)),
        e: hvpnAdd(start, hi - v.value.base),
        lo,
      };
      views.push(view);
      if (mm.gmemPtes.size !== 0)
        for (const p of mm.gmemPtes.piecesIn(view.s, view.e))
          mapped.set(lo + (p.start - view.s), lo + (p.end - view.s), true);
    }
  for (const view of views) {
    const mm = view.mm;
    mm.notifiers.invalidateRangeStart(view.s, view.e);
    if (mm.gmemPtes.size !== 0) mm.gmemPtes.delete(view.s, view.e);
    if (mm.guards.size === 0 || mapped.size === 0) continue;
    for (const m of mapped.piecesIn(view.lo, view.lo + (view.e - view.s)))
      mm.guards.delete(view.s + (m.start - view.lo), view.s + (m.end - view.lo));
  }
}

export function freeAnon(mm: MmStruct, s: Hvpn, e: Hvpn): void {
  splitThp(mm, s, e);
  const pages = mm.anon.piecesIn(s, e);
  if (pages.length === 0) return;
  mm.anon.delete(s, e);
  for (const p of pages) {
    mm.k.frames.release(p.value.base, p.end - p.start);
    mm.k.events.push({ kind: 'anon_free', hvpn: asHvpn(p.start), pages: p.end - p.start });
  }
}
