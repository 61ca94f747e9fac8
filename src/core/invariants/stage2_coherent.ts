/**
 * stage2-coherent: every stage-2 mapping points at the page the current state selects.
 */
import { MAX_KEY, type RangeMap } from '../base/ranges/range_map.js';
import type { Memslot, Spte, Vm } from '../kvm/objects.js';
import { ShmemObject, ZERO_PFN, type HostMm } from '../mm/host_mm.js';
import type { Host } from '../host.js';
import { GmemFile, VcpuFile } from '../kvm/objects.js';
import {
  checkEveryVm,
  hx,
  NO_VIOLATIONS,
  type CheckState,
  type Invariant,
  type Mapping,
  type PerVm,
  type Violation,
} from './types.js';

/** The frames backing host virtual pages [s, e) right now, without faulting anything in. */
export function hostBacking(
  h: Host,
  s: number,
  e: number,
  mm: HostMm = h.mm,
): Array<{ start: number; end: number; pfn: number | undefined; writable: boolean }> {
  const out: Array<{ start: number; end: number; pfn: number | undefined; writable: boolean }> = [];
  forEachHostBacking(
    h,
    s,
    e,
    (start, end, pfn, writable) => {
      out.push({ start, end, pfn, writable });
    },
    mm,
  );
  return out;
}

/**
 * `hostBacking` as a visit, in order: `cb` gets each run of host pages [start, end) with the
 * frame of its first page (`undefined`: no page) and whether the mapping is writable; returning
 * false stops the visit.
 */
export function forEachHostBacking(
  h: Host,
  s: number,
  e: number,
  cb: (start: number, end: number, pfn: number | undefined, writable: boolean) => void | boolean,
  mm: HostMm = h.mm,
): void {
  let cur = s;
  let stop = false;
  const emit = (start: number, end: number, pfn: number | undefined, w: boolean): boolean => {
    if (cb(start, end, pfn, w) === false) stop = true;
    return !stop;
  };
  mm.vmas.forEachIn(s, e, (vs, ve, vma) => {
    if (vs > cur && !emit(cur, vs, undefined, false)) return false;
    const w = (vma.prot & 2) !== 0;
    const fileRange = (pages: RangeMap<{ readonly base: number }>): void => {
      let c = vs;
      pages.forEachIn(vma.base, vma.base + (ve - vs), (ps, pe, pv) => {
        const hs = vs + (ps - vma.base);
        if (hs > c && !emit(c, hs, undefined, w)) return false;
        if (!emit(hs, hs + (pe - ps), pv.base, w)) return false;
        c = hs + (pe - ps);
        return true;
      });
      if (!stop && c < ve) emit(c, ve, undefined, w);
    };
    if (vma.kind === 'anon') fileRange(mm.anon);
    else if (vma.obj instanceof ShmemObject) fileRange(vma.obj.pages);
    else if (vma.obj instanceof GmemFile) fileRange(vma.obj.pages);
    else if (vma.obj instanceof VcpuFile) {
      for (let p = vs; p < ve; p++) {
        const copy = vma.shared ? undefined : mm.anon.get(p);
        const pfn = copy?.base ?? vma.obj.pageAt(vma.base + (p - vs));
        if (!emit(p, p + 1, pfn, w)) break;
      }
    }
    cur = ve;
    return !stop;
  });
  if (!stop && cur < e) emit(cur, e, undefined, false);
}

/** Visit every stage-2 extent of a VM clipped to memslots; `slot` undefined for pieces outside any slot. */
export function forEachMapping(
  vm: Vm,
  cb: (as: number, start: number, end: number, spte: Spte, slot: Memslot | undefined) => void,
): void {
  for (let as = 0; as < vm.stage2.length; as++) {
    const s2 = vm.stage2[as]!;
    if (s2.size === 0) continue;
    const slots = vm.slotsByGfn[as]!;
    s2.forEachIn(0, MAX_KEY, (m0, m1, spte) => {
      let cur = m0;
      slots.forEachIn(m0, m1, (p0, p1, slot) => {
        if (p0 > cur) cb(as, cur, p0, shift(spte, cur - m0), undefined);
        cb(as, p0, p1, shift(spte, p0 - m0), slot);
        cur = p1;
      });
      if (cur < m1) cb(as, cur, m1, shift(spte, cur - m0), undefined);
    });
  }
}

/**
 * State of `mappingList` while it walks a VM (module-level, so that the walk allocates no
 * closure): the list, the address space and its memslots, the stage-2 extent being clipped.
 */
let mlOut: Mapping[] = [];
let mlAs = 0;
let mlSlots: RangeMap<Memslot> | undefined;
let mlM0 = 0;
let mlSpte: Spte | undefined;
let mlCur = 0;

/** `forEachMapping`'s inner visit: one memslot piece of the stage-2 extent at mlM0. */
function mlSlotPiece(p0: number, p1: number, slot: Memslot): void {
  const spte = mlSpte!;
  if (p0 > mlCur)
    mlOut.push({
      as: mlAs,
      start: mlCur,
      end: p0,
      spte: shift(spte, mlCur - mlM0),
      slot: undefined,
    });
  mlOut.push({ as: mlAs, start: p0, end: p1, spte: shift(spte, p0 - mlM0), slot });
  mlCur = p1;
}

/** `forEachMapping`'s outer visit: one stage-2 extent, clipped to memslots. */
function mlExtent(m0: number, m1: number, spte: Spte): void {
  mlM0 = m0;
  mlSpte = spte;
  mlCur = m0;
  mlSlots!.forEachIn(m0, m1, mlSlotPiece);
  if (mlCur < m1)
    mlOut.push({ as: mlAs, start: mlCur, end: m1, spte: shift(spte, mlCur - m0), slot: undefined });
}

/** The VM's mappings in `forEachMapping` order. */
export function mappingList(vm: Vm): Mapping[] {
  const out: Mapping[] = [];
  mlOut = out;
  for (let as = 0; as < vm.stage2.length; as++) {
    const s2 = vm.stage2[as]!;
    if (s2.size === 0) continue;
    mlAs = as;
    mlSlots = vm.slotsByGfn[as]!;
    s2.forEachIn(0, MAX_KEY, mlExtent);
  }
  mlOut = [];
  mlSlots = undefined;
  mlSpte = undefined;
  return out;
}

/** The VM's mappings in `forEachMapping` order: the check's list when it keeps one. */
export function mappingsOf(vm: Vm, s: CheckState): readonly Mapping[] {
  return s.mappings?.(vm) ?? mappingList(vm);
}

/** `forEachMapping`, over the check's list of the VM's mappings when it keeps one. */
export function eachMapping(
  vm: Vm,
  s: CheckState,
  cb: (as: number, start: number, end: number, spte: Spte, slot: Memslot | undefined) => void,
): void {
  const ms = s.mappings?.(vm);
  if (ms === undefined) return forEachMapping(vm, cb);
  for (let i = 0; i < ms.length; i++) {
    const m = ms[i]!;
    cb(m.as, m.start, m.end, m.spte, m.slot);
  }
}

function shift(s: Spte, d: number): Spte {
  return d === 0 ? s : { ...s, base: (s.base + d) as Spte['base'] };
}

const STAGE2 = 'stage2-coherent';

function fail(out: Violation[], vm: Vm, g0: number, g1: number, spte: Spte, msg: string): void {
  out.push({
    invariant: STAGE2,
    object: `vm${vm.index} gfn ${hx(g0)}${g1 - g0 > 1 ? `..${hx(g1 - 1)}` : ''}`,
    message: msg,
    focus: { vm: vm.index, gfn: g0, pfn: spte.base },
  });
}

/** Some key in [s, e) has a value without `bit`. */
function anyWithout(m: RangeMap<number>, s: number, e: number, bit: number): boolean {
  let found = false;
  m.forEachIn(s, e, (_s, _e, v) => {
    if ((v & bit) === 0) found = true;
    return !found;
  });
  return found;
}

/** What is wrong with a mapping of host pages [hv0, hv0 + n) by `spte`, if anything. */
function hostMismatch(h: Host, mm: HostMm, hv0: number, n: number, spte: Spte): string | undefined {
  // Usually one VMA and one page extent back the whole range with the very frames: nothing is
  // wrong (what the visit below finds too, as one run).
  if (spte.base !== ZERO_PFN) {
    const ve = mm.vmas.entryAt(hv0);
    if (ve !== undefined && ve.end >= hv0 + n) {
      const vma = ve.value;
      const pages: RangeMap<{ readonly base: number }> | undefined =
        vma.kind === 'anon'
          ? mm.anon
          : vma.obj instanceof ShmemObject || vma.obj instanceof GmemFile
            ? vma.obj.pages
            : undefined;
      if (pages !== undefined) {
        const k0 = vma.base + (hv0 - ve.start);
        const pe = pages.entryAt(k0);
        if (
          pe !== undefined &&
          pe.end >= k0 + n &&
          pe.value.base + (k0 - pe.start) === spte.base &&
          !(spte.writable && (vma.prot & 2) === 0)
        )
          return undefined;
      }
    }
  }
  let msg: string | undefined;
  forEachHostBacking(
    h,
    hv0,
    hv0 + n,
    (start, _end, pfn, writable) => {
      const expect = spte.base === ZERO_PFN ? ZERO_PFN : spte.base + (start - hv0);
      if (spte.base === ZERO_PFN) {
        if (pfn !== undefined)
          msg = `read-only zero-page mapping where the host now has a page (pfn ${hx(pfn)})`;
        else if (spte.writable) msg = `writable mapping of the shared zero page`;
        return msg === undefined;
      }
      if (pfn === undefined)
        msg = `mapping at host page ${hx(start)} which has no page (stale after munmap/MADV_DONTNEED/truncate)`;
      else if (pfn !== expect)
        msg = `mapping points at pfn ${hx(expect)} but host page ${hx(start)} is pfn ${hx(pfn)}`;
      else if (spte.writable && !writable)
        msg = `writable mapping where the host mapping is read-only`;
      return msg === undefined;
    },
    mm,
  );
  return msg;
}

/**
 * What is wrong with one stage-2 mapping of `vm` (gfns [g0, g1) by `spte` in `slot`), if
 * anything.
 */
function stage2Mismatch(
  vm: Vm,
  h: Host,
  g0: number,
  g1: number,
  spte: Spte,
  slot: Memslot | undefined,
): string | undefined {
  if (slot === undefined)
    return `mapping of a gfn that no memslot covers (stale after a memslot delete or move)`;
  const n = g1 - g0;
  const privateAttr = vm.spec.privateFaultSource === 'attributes' && vm.attrs.anyIn(g0, g1);
  if (spte.private) {
    // A VM type without attribute-driven private memory (privateFaultSource 'never': a pKVM
    // protected VM, whose pages are private through the hypervisor's stage-2 ownership, not
    // through KVM_SET_MEMORY_ATTRIBUTES) has no attribute to agree with.
    if (
      vm.spec.privateFaultSource !== 'never' &&
      (!vm.attrs.covers(g0, g1) || anyWithout(vm.attrs, g0, g1, 8))
    )
      return `private mapping of a gfn whose attribute is shared (stale after a conversion to shared)`;
    // A pKVM protected VM's page from an ordinary memslot is the VMM's page, donated to the guest
    // (the 2026 series' pkvm_mem_abort(): pinned, then __pkvm_host_donate_guest): checked below
    // against the host mapping like any userspace_addr-backed mapping.
    if (spte.source !== 'gmem' && vm.spec.privateFaultSource !== 'never')
      return `private mapping backed by userspace_addr instead of guest_memfd`;
  } else if (privateAttr)
    return `shared mapping of a PRIVATE gfn (stale after a conversion to private)`;
  if (spte.source === 'gmem') {
    if (!spte.private && !slot.gmemOnly)
      return `shared mapping backed by guest_memfd in a slot that is not gmem-only`;
    const g = slot.gmem;
    if (g === null || g.file === null || g.file.released)
      return `mapping backed by a guest_memfd that is no longer bound (stale after release)`;
    const idx0 = g0 - slot.baseGfn + g.pgoff;
    // One binding piece and one page extent over exactly [idx0, idx0 + n): the stored entry
    // at idx0 reaches idx0 + n (touching equal entries are always coalesced).
    const b = g.file.bindings.entryAt(idx0);
    if (b === undefined || b.end < idx0 + n || b.value !== slot)
      return `mapping of guest_memfd indexes not bound to this memslot`;
    const page = g.file.pages.entryAt(idx0);
    if (page === undefined || page.end < idx0 + n)
      return `mapping of guest_memfd #${g.file.ino} index ${hx(idx0)} whose page is gone (stale after a hole punch)`;
    const pfn = page.value.base + (idx0 - page.start);
    if (pfn !== spte.base)
      return `mapping points at pfn ${hx(spte.base)} but guest_memfd #${g.file.ino} index ${hx(idx0)} is pfn ${hx(pfn)}`;
    if (page.value.state !== 'prepared')
      return `mapping of a guest_memfd page that was never prepared (not zeroed)`;
    return undefined;
  }
  // userspace_addr-backed mapping.
  if (slot.gmemOnly && h.arch.guestMemoryAccess === 'stage2')
    return `mapping of a gmem-only slot backed by userspace_addr`;
  if (spte.writable && slot.isReadonly) return `writable mapping of a READONLY memslot`;
  const hv0 = slot.userspaceHvpn + (g0 - slot.baseGfn);
  // KVM's hva_to_pfn() mm (design-2020-separate-mm: the VM's address space).
  return hostMismatch(h, vm.guestMm ?? h.mm, hv0, n, spte);
}

/** One VM's stage-2 mappings against its memslots, attributes, bindings and host mappings. */
function stage2Vm(vm: Vm, s: CheckState): Violation[] {
  let out: Violation[] | undefined;
  const h = s.host;
  const ms = mappingsOf(vm, s);
  for (let i = 0; i < ms.length; i++) {
    const m = ms[i]!;
    const bad = stage2Mismatch(vm, h, m.start, m.end, m.spte, m.slot);
    if (bad !== undefined) fail((out ??= []), vm, m.start, m.end, m.spte, bad);
  }
  return out ?? NO_VIOLATIONS;
}

const stage2PerVm: PerVm = { vms: 'live', mappings: true, vm: stage2Vm };

export const stage2Coherent: Invariant = {
  name: STAGE2,
  title: 'No stale stage-2 mapping',
  statement:
    'Every stage-2 (EPT/NPT or shadow) mapping of a VM points at exactly the page that the current memory attributes, memslot and guest_memfd binding select for that gfn: a private mapping only at a PRIVATE gfn, backed by the bound guest_memfd index; a shared mapping of a gmem-only slot backed by the guest_memfd index; any other shared mapping backed by the page at userspace_addr, writable only where the host mapping and the slot allow writes. Hole punches, attribute changes, memslot deletes and moves, guest_memfd release and host unmaps leave no stale mapping behind.',
  mechanism:
    'MMU invalidation: kvm_gmem_invalidate_begin() (punch hole, release), kvm_arch_pre_set_memory_attributes() (zaps the old kind), kvm_arch_flush_shadow_memslot() (delete/move), and the mmu_notifier (munmap, mprotect, MADV_DONTNEED on userspace_addr) all zap before the backing changes; faults re-check mmu_invalidate_seq before installing.',
  origin:
    'kernel-uapi.md §3.1, §3.5, §3.6; issue #4 ("no stale mapping after punch, attribute change, slot delete/move, gmem release").',
  perVm: stage2PerVm,
  check(s) {
    return checkEveryVm(stage2PerVm, s);
  },
};
