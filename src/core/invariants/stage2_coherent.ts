/**
 * stage2-coherent: every stage-2 mapping points at the page the current state selects.
 */
import type { Memslot, Spte, Vm } from '../kvm/objects.js';
import { ShmemObject, ZERO_PFN } from '../mm/host_mm.js';
import type { Host } from '../host.js';
import { GmemFile, VcpuFile } from '../kvm/objects.js';
import {
  checkEveryVm,
  hx,
  type CheckState,
  type Invariant,
  type PerVm,
  type Violation,
} from './types.js';

/** The frames backing host virtual pages [s, e) right now, without faulting anything in. */
export function hostBacking(
  h: Host,
  s: number,
  e: number,
): Array<{ start: number; end: number; pfn: number | undefined; writable: boolean }> {
  const out: Array<{ start: number; end: number; pfn: number | undefined; writable: boolean }> = [];
  let cur = s;
  for (const v of h.mm.vmas.piecesIn(s, e)) {
    if (v.start > cur) out.push({ start: cur, end: v.start, pfn: undefined, writable: false });
    const w = (v.value.prot & 2) !== 0;
    const vma = v.value;
    const fileRange = (pages: {
      piecesIn(
        a: number,
        b: number,
      ): Array<{ start: number; end: number; value: { base: number } }>;
    }): void => {
      let c = v.start;
      for (const p of pages.piecesIn(vma.base, vma.base + (v.end - v.start))) {
        const hs = v.start + (p.start - vma.base);
        if (hs > c) out.push({ start: c, end: hs, pfn: undefined, writable: w });
        out.push({ start: hs, end: hs + (p.end - p.start), pfn: p.value.base, writable: w });
        c = hs + (p.end - p.start);
      }
      if (c < v.end) out.push({ start: c, end: v.end, pfn: undefined, writable: w });
    };
    if (vma.kind === 'anon') fileRange({ piecesIn: (a, b) => h.mm.anon.piecesIn(a, b) });
    else if (vma.obj instanceof ShmemObject) fileRange(vma.obj.pages);
    else if (vma.obj instanceof GmemFile) fileRange(vma.obj.pages);
    else if (vma.obj instanceof VcpuFile) {
      for (let p = v.start; p < v.end; p++) {
        const copy = vma.shared ? undefined : h.mm.anon.get(p);
        const pfn = copy?.base ?? vma.obj.pageAt(vma.base + (p - v.start));
        out.push({ start: p, end: p + 1, pfn, writable: w });
      }
    }
    cur = v.end;
  }
  if (cur < e) out.push({ start: cur, end: e, pfn: undefined, writable: false });
  return out;
}

/** Visit every stage-2 extent of a VM clipped to memslots; `slot` undefined for pieces outside any slot. */
export function forEachMapping(
  vm: Vm,
  cb: (as: number, start: number, end: number, spte: Spte, slot: Memslot | undefined) => void,
): void {
  vm.stage2.forEach((s2, as) => {
    for (const m of s2.entries()) {
      let cur = m.start;
      for (const p of vm.slotsByGfn[as]!.piecesIn(m.start, m.end)) {
        if (p.start > cur) cb(as, cur, p.start, shift(m.value, cur - m.start), undefined);
        cb(as, p.start, p.end, shift(m.value, p.start - m.start), p.value);
        cur = p.end;
      }
      if (cur < m.end) cb(as, cur, m.end, shift(m.value, cur - m.start), undefined);
    }
  });
}

function shift(s: Spte, d: number): Spte {
  return d === 0 ? s : { ...s, base: (s.base + d) as Spte['base'] };
}

const STAGE2 = 'stage2-coherent';

/** One VM's stage-2 mappings against its memslots, attributes, bindings and host mappings. */
function stage2Vm(vm: Vm, s: CheckState): Violation[] {
  const out: Violation[] = [];
  const h = s.host;
  forEachMapping(vm, (as, g0, g1, spte, slot) => {
    const fail = (msg: string): void => {
      out.push({
        invariant: STAGE2,
        object: `vm${vm.index} gfn ${hx(g0)}${g1 - g0 > 1 ? `..${hx(g1 - 1)}` : ''}`,
        message: msg,
        focus: { vm: vm.index, gfn: g0, pfn: spte.base },
      });
    };
    if (slot === undefined)
      return fail(`mapping of a gfn that no memslot covers (stale after a memslot delete or move)`);
    const n = g1 - g0;
    const privateAttr = vm.spec.privateFaultSource === 'attributes' && vm.attrs.anyIn(g0, g1);
    if (spte.private) {
      if (!vm.attrs.covers(g0, g1) || vm.attrs.piecesIn(g0, g1).some((p) => (p.value & 8) === 0))
        return fail(
          `private mapping of a gfn whose attribute is shared (stale after a conversion to shared)`,
        );
      if (spte.source !== 'gmem')
        return fail(`private mapping backed by userspace_addr instead of guest_memfd`);
    } else if (privateAttr)
      return fail(`shared mapping of a PRIVATE gfn (stale after a conversion to private)`);
    if (spte.source === 'gmem') {
      if (!spte.private && !slot.gmemOnly)
        return fail(`shared mapping backed by guest_memfd in a slot that is not gmem-only`);
      const g = slot.gmem;
      if (g === null || g.file === null || g.file.released)
        return fail(
          `mapping backed by a guest_memfd that is no longer bound (stale after release)`,
        );
      const idx0 = g0 - slot.baseGfn + g.pgoff;
      const b = g.file.bindings.piecesIn(idx0, idx0 + n);
      if (b.length !== 1 || b[0]!.start !== idx0 || b[0]!.end !== idx0 + n || b[0]!.value !== slot)
        return fail(`mapping of guest_memfd indexes not bound to this memslot`);
      const pages = g.file.pages.piecesIn(idx0, idx0 + n);
      if (pages.length !== 1 || pages[0]!.start !== idx0 || pages[0]!.end !== idx0 + n)
        return fail(
          `mapping of guest_memfd #${g.file.ino} index ${hx(idx0)} whose page is gone (stale after a hole punch)`,
        );
      if (pages[0]!.value.base !== spte.base)
        return fail(
          `mapping points at pfn ${hx(spte.base)} but guest_memfd #${g.file.ino} index ${hx(idx0)} is pfn ${hx(pages[0]!.value.base)}`,
        );
      if (pages[0]!.value.state !== 'prepared')
        return fail(`mapping of a guest_memfd page that was never prepared (not zeroed)`);
      return;
    }
    // userspace_addr-backed mapping.
    if (slot.gmemOnly && h.arch.guestMemoryAccess === 'stage2')
      return fail(`mapping of a gmem-only slot backed by userspace_addr`);
    if (spte.writable && slot.isReadonly) return fail(`writable mapping of a READONLY memslot`);
    const hv0 = Number(slot.userspaceAddr >> 12n) + (g0 - slot.baseGfn);
    for (const p of hostBacking(h, hv0, hv0 + n)) {
      const expect = spte.base === ZERO_PFN ? ZERO_PFN : spte.base + (p.start - hv0);
      if (spte.base === ZERO_PFN) {
        if (p.pfn !== undefined)
          return fail(
            `read-only zero-page mapping where the host now has a page (pfn ${hx(p.pfn)})`,
          );
        if (spte.writable) return fail(`writable mapping of the shared zero page`);
        continue;
      }
      if (p.pfn === undefined)
        return fail(
          `mapping at host page ${hx(p.start)} which has no page (stale after munmap/MADV_DONTNEED/truncate)`,
        );
      if (p.pfn !== expect)
        return fail(
          `mapping points at pfn ${hx(expect)} but host page ${hx(p.start)} is pfn ${hx(p.pfn)}`,
        );
      if (spte.writable && !p.writable)
        return fail(`writable mapping where the host mapping is read-only`);
    }
    void as;
  });
  return out;
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
