/**
 * Host memory of a guest on the model, as `gmemlab compare` reports it, for the guest_memfd
 * designs (an adapter may bring its own: DesignAdapter.measure). All range walks, no per-page
 * loops. Read-only; pure.
 *
 * - private: guest_memfd pages that only the guest may use: on 6.18 every page of a guest_memfd
 *   without INIT_SHARED (the host cannot map it), with in-place conversion the pages at private
 *   indices (`gmem_inode->attributes`);
 * - shared: pages the host can map: guest_memfd pages at shared indices, and the anonymous or
 *   shmem pages behind the memslot's `userspace_addr` (not the guest_memfd's own mapping, which
 *   is the same frames);
 * - double: gfns backed both by a guest_memfd page and by a separate host page at
 *   `userspace_addr` (6.18's two copies);
 * - pinned / referenced: frames with FOLL_PIN pins (VFIO) and with FOLL_GET references
 *   (vmsplice: the model's vhost / O_DIRECT stand-in);
 * - mapped: stage-2 leaf pages; ptPages: the page-table pages those leaves need on x86's
 *   4-level TDP (one PT per 2 MiB region with 4K leaves, one PD per 1 GiB region with 2M or
 *   smaller leaves, one PDPT per 512 GiB region, one root per address space in use). The model
 *   keeps leaf SPTEs only, so this count is derived from them, not allocated memory it tracks.
 */
import type { Host } from '../core/host.js';
import { GmemFile, type Memslot, type Vm } from '../core/kvm/objects.js';
import { ShmemObject } from '../core/mm/shmem.js';
import { TRACE_CODE_SLOT } from '../core/base/uapi.js';
import type { MemorySample } from './adapter.js';

const PRIVATE = 8;

/** Pages of `file` in [i0, i1) at private indices (in-place) or all of them (6.18 files). */
function gmemSplit(h: Host, f: GmemFile, i0: number, i1: number): { priv: number; shared: number } {
  const present = f.pages.countIn(i0, i1);
  if (h.profile.parts.gmem !== 'inplace-v7')
    return f.initShared ? { priv: 0, shared: present } : { priv: present, shared: 0 };
  let priv = 0;
  f.attrs.forEachIn(i0, i1, (s, e, v) => {
    if ((v & PRIVATE) !== 0) priv += f.pages.countIn(s, e);
  });
  return { priv, shared: present - priv };
}

/** Host pages behind a slot's userspace range that are not its guest_memfd's, and how many of
 * them double a guest_memfd page of the same gfn. */
function hostCopies(
  h: Host,
  slot: Memslot,
  file: GmemFile | null,
  pgoff: number,
): { shared: number; double: number } {
  const s0: number = slot.userspaceHvpn;
  const s1 = s0 + slot.npages;
  let shared = 0;
  let double = 0;
  const run = (hs: number, he: number): void => {
    shared += he - hs;
    if (file !== null) double += file.pages.countIn(pgoff + (hs - s0), pgoff + (he - s0));
  };
  for (const p of h.mm.vmas.piecesIn(s0, s1)) {
    const v = p.value;
    if (v.obj instanceof GmemFile) continue;
    if (!v.shared) h.mm.anon.forEachIn(p.start, p.end, (s, e) => run(s, e));
    else if (v.obj instanceof ShmemObject) {
      const o = v.obj;
      const base = v.base - p.start;
      o.pages.forEachIn(v.base, v.base + (p.end - p.start), (s, e) => run(s - base, e - base));
    }
  }
  return { shared, double };
}

/** Distinct `1 << shift`-page blocks touched by the ranges fed to `add`, in ascending order. */
class BlockCounter {
  count = 0;
  private last = -1;
  constructor(private readonly shift: number) {}
  add(s: number, e: number): void {
    const b0 = Math.floor(s / 2 ** this.shift);
    const b1 = Math.floor((e - 1) / 2 ** this.shift);
    this.count += b1 - b0 + 1 - (b0 === this.last ? 1 : 0);
    this.last = b1;
  }
}

/** Stage-2 leaf pages of `vm` and the page-table pages they need (module comment). */
export function ptPages(vm: Vm): { mapped: number; pt: number } {
  let mapped = 0;
  let pt = 0;
  for (const s2 of vm.stage2) {
    const pte = new BlockCounter(9);
    const pd = new BlockCounter(18);
    const pdpt = new BlockCounter(27);
    let any = false;
    s2.forEachIn(0, Number.MAX_SAFE_INTEGER, (s, e, v) => {
      any = true;
      mapped += e - s;
      if (v.level === '4K') pte.add(s, e);
      if (v.level !== '1G') pd.add(s, e);
      pdpt.add(s, e);
    });
    if (any) pt += pte.count + pd.count + pdpt.count + 1;
  }
  return { mapped, pt };
}

/** The default measure (module comment): every live VM's memslots but the trace code page's. */
export function measureGuestMemfd(h: Host): MemorySample {
  let priv = 0;
  let shared = 0;
  let double = 0;
  let mapped = 0;
  let pt = 0;
  for (const vm of h.allVms) {
    if (vm.dead) continue;
    for (const slot of vm.slots.values()) {
      if (slot.id === TRACE_CODE_SLOT && slot.asId === 0) continue;
      const gm = slot.gmem;
      const file = gm !== null && gm.file !== null && !gm.file.released ? gm.file : null;
      const pgoff: number = gm?.pgoff ?? 0;
      if (file !== null) {
        const g = gmemSplit(h, file, pgoff, pgoff + slot.npages);
        priv += g.priv;
        shared += g.shared;
      }
      const c = hostCopies(h, slot, file, pgoff);
      shared += c.shared;
      double += c.double;
    }
    const p = ptPages(vm);
    mapped += p.mapped;
    pt += p.pt;
  }
  return {
    private: priv,
    shared,
    double,
    pinned: h.frames.pins.totalCovered(),
    referenced: h.frames.refs.totalCovered(),
    mapped,
    ptPages: pt,
  };
}
