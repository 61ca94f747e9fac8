/**
 * What the change-driven checker knows about the model between two checks: which VMs the last
 * op could have changed, and the frame-ownership map kept up to date instead of rebuilt.
 *
 * Every structure an invariant reads is a RangeMap (stage-2 tables, memslots by gfn, memory
 * attributes, guest_memfd pages and bindings, the VMM's VMAs and anonymous pages, shmem pages,
 * the allocator's free list) or VM state that changes only through a file of that VM (fd
 * lookups and file releases, reported by the Host). RangeMaps report the key range of every
 * mutation (`onChange`); the tracker queues them and, at the next check:
 * - marks dirty the VM that owns a changed map, and every VM whose last check read the changed
 *   range (dependencies: the userspace_addr range and the frames behind its stage-2 mappings);
 * - re-applies the changed range of each ownership source (anonymous memory, reachable shmem
 *   objects, guest_memfd files of live VMs, vCPU and coalesced-MMIO pages) to the ownership map,
 *   the way the page cache and the page allocator move a folio between owners.
 * A frame claimed twice (or an extent at pfn 0, which `buildOwnership` skips) makes the map
 * inexact: checks then use `buildOwnership` until no frame is claimed twice again.
 */
import { MAX_KEY, RangeMap, type RangeEntry } from '../base/ranges/range_map.js';
import type { Host } from '../host.js';
import { GmemFile, VcpuFile, VmFile, type Vm } from '../kvm/objects.js';
import type { KFile } from '../vfs/file.js';
import { ShmemObject } from '../mm/host_mm.js';
import { forEachMapping } from './stage2_coherent.js';
import { buildOwnership, ownerOps, type Owner, type Ownership } from './ownership.js';

const NO_FILES: ReadonlySet<GmemFile> = new Set();

type AnyMap = RangeMap<{ readonly base: number }>;

/** One watched RangeMap. */
type Watch = {
  readonly map: RangeMap<unknown>;
  /** The VM whose own state this map is (stage-2, memslots, attributes, its guest_memfd). */
  readonly vm: Vm | undefined;
  /** A change to this map can change what the VM's checks read (stage-2, memslots). */
  readonly layout: boolean;
  /** VMs whose last check read a range of this map (created on first use). */
  deps: RangeMap<readonly Vm[]> | undefined;
  /** VMs whose last check read all of this map (created on first use). */
  whole: Set<Vm> | undefined;
  /** This map is an ownership source that is live now. */
  active: boolean;
  /** Ownership source: the owner of a piece of the map. */
  owner: ((p: RangeEntry<{ readonly base: number }>) => Owner) | undefined;
  /** What the ownership map holds for this source (created on first use). */
  shadow: AnyMap | undefined;
};

type VmState = {
  /** Dependencies registered by the VM's last check. */
  deps: Array<{ w: Watch; start: number; end: number }>;
  /** guest_memfd files whose pages the ownership map holds. */
  files: Set<GmemFile>;
  /** Single-frame owners claimed (vCPU pages, coalesced MMIO ring). */
  fixed: Array<{ pfn: number; owner: Owner }>;
  /** vCPUs when `fixed` was taken. */
  fixedVcpus: number;
};

export class ChangeTracker {
  private readonly watches = new Map<RangeMap<unknown>, Watch>();
  private pending: Array<{ readonly w: Watch; start: number; end: number }> = [];
  /** VMs whose maps, or a range they read, changed. */
  private readonly dirty = new Set<Vm>();
  /**
   * Changed VMs whose dependencies may differ now: their stage-2 or memslot maps changed, a
   * VMA they read changed, or a guest_memfd of theirs was released (others read as before).
   */
  private readonly reread = new Set<Vm>();
  /** VMs one of whose VM or vCPU files an op used (their maps may be unchanged). */
  private readonly used = new Set<Vm>();
  private readonly vmStates = new Map<Vm, VmState>();
  private seenVms = 0;
  private readonly anon: Watch;
  private readonly vmas: Watch;
  private readonly free: Watch;
  private readonly vmasShadow: RangeMap<{ readonly obj: unknown }>;
  /** Pages of each shmem object mapped by some VMA (reachable objects). */
  private readonly shmemMapped = new Map<ShmemObject, number>();
  private readonly shmems = new Set<ShmemObject>();
  /** Claims per frame. */
  private readonly claims = new RangeMap<number>();
  /** Frames claimed more than once. */
  private readonly multi = new RangeMap<true>();
  private zeroClaims = 0;
  private owners = new RangeMap<Owner>(ownerOps);
  /** Owned frames on the free list. */
  private readonly ownedFree = new RangeMap<true>();
  /** `owners` and `ownedFree` are what buildOwnership would give. */
  private exact = true;

  constructor(private readonly h: Host) {
    this.anon = this.watch(h.mm.anon as RangeMap<unknown>, undefined);
    this.vmas = this.watch(h.mm.vmas as RangeMap<unknown>, undefined);
    this.free = this.watch(new RangeMap<unknown>(), undefined);
    h.frames.watchFree((s, e) => this.queue(this.free, s, e));
    h.watchFiles((f, release) => this.touched(f, release));
    this.vmasShadow = new RangeMap();
    this.vmasDiff(0, MAX_KEY);
    this.activate(this.anon, (p) => ({ kind: 'anon', base: p.start }));
  }

  /** Stop listening (the host may be checked again by another checker). */
  detach(): void {
    for (const w of this.watches.values()) w.map.onChange = undefined;
    this.h.frames.watchFree(undefined);
    this.h.watchFiles(undefined);
  }

  private watch(map: RangeMap<unknown>, vm: Vm | undefined, layout = false): Watch {
    let w = this.watches.get(map);
    if (w === undefined) {
      const nw: Watch = {
        map,
        vm,
        layout,
        deps: undefined,
        whole: undefined,
        active: false,
        owner: undefined,
        shadow: undefined,
      };
      map.onChange = (s, e): void => this.queue(nw, s, e);
      this.watches.set(map, nw);
      w = nw;
    }
    return w;
  }

  /** Queue a change; a run of touching changes to one map (a fault loop) becomes one range. */
  private queue(w: Watch, s: number, e: number): void {
    const last = this.pending[this.pending.length - 1];
    if (last !== undefined && last.w === w && s <= last.end && e >= last.start) {
      if (s < last.start) last.start = s;
      if (e > last.end) last.end = e;
    } else this.pending.push({ w, start: s, end: e });
  }

  private fileWatch(m: RangeMap<unknown>, f: GmemFile): Watch {
    return this.watch(m, f.vm);
  }

  /**
   * An op used a file, or its last reference may be going (`release`). Using a file changes
   * no map by itself; the release of a guest_memfd clears `slot->gmem.file` of its memslots
   * (kvm_gmem_release) and may leave the maps as they were.
   */
  private touched(f: KFile, release: boolean): void {
    if (f instanceof VmFile) this.used.add(f.vm);
    else if (f instanceof VcpuFile) this.used.add(f.vcpu.vm);
    else if (f instanceof GmemFile) {
      if (!release) {
        this.used.add(f.vm);
        return;
      }
      this.dirty.add(f.vm);
      this.reread.add(f.vm);
      // Memslots of other VMs never bind a file (kvm_gmem_bind checks gmem->kvm), but a VM's
      // checks may read the file through a mapping of it at userspace_addr.
      for (const m of [f.pages, f.bindings] as RangeMap<unknown>[]) {
        const w = this.watches.get(m);
        if (w !== undefined) this.dirtyDeps(w, 0, MAX_KEY);
      }
    }
  }

  private dirtyDeps(w: Watch, s: number, e: number): void {
    if (w.whole !== undefined) for (const vm of w.whole) this.dirty.add(vm);
    if (w.deps === undefined || w.deps.size === 0) return;
    const layout = w === this.vmas;
    w.deps.forEachIn(s, e, (_a, _b, vms) => {
      for (const vm of vms) {
        this.dirty.add(vm);
        if (layout) this.reread.add(vm);
      }
    });
  }

  /**
   * Bring everything up to date with the model. Returns the VMs to re-check (in no particular
   * order): `changed`, whose maps or whose dependencies changed (every check again, then
   * `depend`), and `used`, the others whose VM or vCPU file an op used (reference counts,
   * memslot list, bindings: the checks that do not read mappings). A destroyed VM is `changed`.
   * Undefined when nothing at all changed since the last update.
   */
  update(): { changed: Vm[]; used: Vm[] } | undefined {
    const all = this.h.allVms;
    if (
      this.pending.length === 0 &&
      this.dirty.size === 0 &&
      this.used.size === 0 &&
      this.seenVms === all.length
    )
      return undefined;
    for (; this.seenVms < all.length; this.seenVms++) {
      const vm = all[this.seenVms]!;
      for (const m of vm.stage2) this.watch(m as RangeMap<unknown>, vm, true);
      for (const m of vm.slotsByGfn) this.watch(m as RangeMap<unknown>, vm, true);
      this.watch(vm.attrs as RangeMap<unknown>, vm);
      this.vmStates.set(vm, { deps: [], files: new Set(), fixed: [], fixedVcpus: -1 });
      this.dirty.add(vm);
      this.reread.add(vm);
    }
    const pending = this.pending;
    this.pending = [];
    for (const { w, start, end } of pending) {
      if (w.vm !== undefined) {
        this.dirty.add(w.vm);
        if (w.layout) this.reread.add(w.vm);
      }
      this.dirtyDeps(w, start, end);
      if (w === this.vmas) this.vmasDiff(start, end);
      else if (w === this.free) {
        // An allocation only shrinks the free list; a release may put owned frames on it.
        if (!this.exact) continue;
        if (this.h.frames.anyFree(start, end - start)) this.refreshOwnedFree(start, end);
        else if (this.ownedFree.size !== 0) this.ownedFree.delete(start, end);
      } else if (w.active) this.sourceDiff(w, start, end);
    }
    for (const vm of this.used)
      if (vm.dead) {
        this.dirty.add(vm);
        this.reread.add(vm);
      }
    const dirty = [...this.dirty];
    const used = [...this.used].filter((vm) => !this.dirty.has(vm));
    this.dirty.clear();
    this.used.clear();
    for (const vm of dirty) this.vmOwnership(vm);
    for (const vm of used) this.vmOwnership(vm);
    if (!this.exact && this.multi.size === 0 && this.zeroClaims === 0) {
      // No frame is claimed twice any more: the incremental map is exact again.
      this.owners = buildOwnership(this.h).owners;
      this.exact = true;
      this.ownedFree.clear();
      this.refreshOwnedFree(0, MAX_KEY);
    }
    return { changed: dirty, used };
  }

  /**
   * Record what the checks of `vm` just read outside the VM's own maps (replacing what its
   * previous check read): the frames its stage-2 mappings point at (free or not), and for
   * mappings backed by userspace_addr the host's VMAs, anonymous pages and mapped objects over
   * that range; the guest_memfd files its memslots bind. A later change there makes the VM
   * dirty. A destroyed VM reads nothing.
   */
  depend(vm: Vm): void {
    if (!this.reread.delete(vm)) return;
    const st = this.vmStates.get(vm)!;
    const next: Array<{ w: Watch; start: number; end: number }> = [];
    if (!vm.dead) {
      const h = this.h;
      const files = new Set<GmemFile>();
      const file = (f: GmemFile | null | undefined): void => {
        if (f === null || f === undefined || files.has(f)) return;
        files.add(f);
        next.push({ w: this.fileWatch(f.pages as RangeMap<unknown>, f), start: 0, end: MAX_KEY });
        next.push({
          w: this.fileWatch(f.bindings as RangeMap<unknown>, f),
          start: 0,
          end: MAX_KEY,
        });
      };
      for (const slot of vm.slots.values()) file(slot.gmem?.file);
      forEachMapping(vm, (_as, g0, g1, spte, slot) => {
        const n = g1 - g0;
        if (spte.base !== 0) next.push({ w: this.free, start: spte.base, end: spte.base + n });
        if (slot === undefined) return;
        file(slot.gmem?.file);
        if (spte.source === 'gmem') return;
        const hv0 = Number(slot.userspaceAddr >> 12n) + (g0 - slot.baseGfn);
        next.push({ w: this.vmas, start: hv0, end: hv0 + n });
        next.push({ w: this.anon, start: hv0, end: hv0 + n });
        for (const v of h.mm.vmas.piecesIn(hv0, hv0 + n)) {
          const obj = v.value.obj;
          if (obj instanceof ShmemObject)
            next.push({
              w: this.watch(obj.pages as RangeMap<unknown>, undefined),
              start: 0,
              end: MAX_KEY,
            });
          else if (obj instanceof GmemFile) file(obj);
        }
      });
    }
    // Usually a re-check reads what the previous one did.
    const prev = st.deps;
    if (
      prev.length === next.length &&
      prev.every(
        (d, i) => d.w === next[i]!.w && d.start === next[i]!.start && d.end === next[i]!.end,
      )
    )
      return;
    for (const d of prev) {
      if (d.start === 0 && d.end === MAX_KEY) {
        d.w.whole!.delete(vm);
        continue;
      }
      const deps = d.w.deps!;
      for (const p of deps.piecesIn(d.start, d.end)) {
        const rest = p.value.filter((x) => x !== vm);
        if (rest.length === 0) deps.delete(p.start, p.end);
        else deps.set(p.start, p.end, rest);
      }
    }
    for (const d of next) {
      if (d.start === 0 && d.end === MAX_KEY) {
        (d.w.whole ??= new Set()).add(vm);
        continue;
      }
      const deps = (d.w.deps ??= new RangeMap());
      let cur = d.start;
      const gaps: Array<{ start: number; end: number }> = [];
      for (const p of deps.piecesIn(d.start, d.end)) {
        if (p.start > cur) gaps.push({ start: cur, end: p.start });
        if (!p.value.includes(vm)) deps.set(p.start, p.end, [...p.value, vm]);
        cur = p.end;
      }
      if (cur < d.end) gaps.push({ start: cur, end: d.end });
      for (const g of gaps) deps.set(g.start, g.end, [vm]);
    }
    st.deps = next;
  }

  // --- ownership --------------------------------------------------------------------------------

  /** The ownership map, or undefined when it is not exact (use buildOwnership). */
  ownership(): Ownership | undefined {
    if (!this.exact) return undefined;
    return {
      owners: this.owners,
      doubles: [],
      ownedFrames: this.claims.totalCovered(),
      shmems: this.shmems,
    };
  }

  /** memory-accounting's "owned page on the free list" (exact map only). */
  ownedOnFree(): number | undefined {
    const f = this.ownedFree.first();
    return f === undefined ? undefined : this.owners.entryAt(f.start)!.start;
  }

  /** True when no owned frame is free (exact map only): then no anonymous page is free either. */
  noOwnedFree(): boolean {
    return this.exact && this.ownedFree.size === 0;
  }

  get isExact(): boolean {
    return this.exact;
  }

  private activate(w: Watch, owner: (p: RangeEntry<{ readonly base: number }>) => Owner): void {
    if (w.active) return;
    w.active = true;
    w.owner = owner;
    w.shadow = undefined;
    const map = w.map as unknown as AnyMap;
    if (map.size === 0) return;
    w.shadow = map.clone();
    for (const p of w.shadow.entries()) {
      if (p.value.base === 0) this.zeroClaims = 1;
      this.claim(p.value.base, p.end - p.start, owner(p));
    }
  }

  private deactivate(w: Watch): void {
    if (!w.active) return;
    w.active = false;
    const sh = w.shadow;
    w.shadow = undefined;
    if (sh !== undefined) for (const p of sh.entries()) this.unclaim(p.value.base, p.end - p.start);
  }

  /** Re-apply [s, e) of an ownership source: what the map held there goes, what it holds comes. */
  private sourceDiff(w: Watch, s: number, e: number): void {
    const map = w.map as unknown as AnyMap;
    let sh = w.shadow;
    if (sh !== undefined) {
      for (const p of sh.piecesIn(s, e)) this.unclaim(p.value.base, p.end - p.start);
      sh.delete(s, e);
    }
    for (const p of map.piecesIn(s, e)) {
      // buildOwnership skips an extent at pfn 0 (a whole stored entry), never a piece of one.
      if (map.entryAt(p.start)!.value.base === 0) this.zeroClaims = 1;
      this.claim(p.value.base, p.end - p.start, w.owner!(p));
      sh ??= w.shadow = map.emptyLike();
      sh.set(p.start, p.end, p.value);
    }
  }

  private vmasDiff(s: number, e: number): void {
    const bump = (obj: unknown, d: number): void => {
      if (!(obj instanceof ShmemObject)) return;
      const n = (this.shmemMapped.get(obj) ?? 0) + d;
      const w = this.watch(obj.pages as RangeMap<unknown>, undefined);
      if (n === 0) {
        this.shmemMapped.delete(obj);
        this.shmems.delete(obj);
        this.deactivate(w);
      } else {
        this.shmemMapped.set(obj, n);
        this.shmems.add(obj);
        this.activate(w, (p) => ({ kind: 'shmem', obj, base: p.start }));
      }
    };
    const gone = this.vmasShadow.piecesIn(s, e);
    this.vmasShadow.delete(s, e);
    const now = this.h.mm.vmas.piecesIn(s, e);
    for (const p of now) this.vmasShadow.set(p.start, p.end, p.value);
    // Count the new mappings first so an object mapped both before and after stays live.
    for (const p of now) bump(p.value.obj, p.end - p.start);
    for (const p of gone) bump(p.value.obj, -(p.end - p.start));
  }

  /** A VM's guest_memfd files and single-frame pages, while it lives. */
  private vmOwnership(vm: Vm): void {
    const st = this.vmStates.get(vm)!;
    const files = vm.dead ? NO_FILES : vm.gmemFiles;
    for (const f of st.files)
      if (!files.has(f)) this.deactivate(this.fileWatch(f.pages as RangeMap<unknown>, f));
    for (const f of files)
      if (!st.files.has(f))
        this.activate(this.fileWatch(f.pages as RangeMap<unknown>, f), (p) => ({
          kind: 'gmem',
          file: f,
          base: p.start,
          state: (p.value as unknown as { state: string }).state,
        }));
    let same = st.files.size === files.size;
    if (same) for (const f of files) if (!st.files.has(f)) same = false;
    if (!same) st.files = new Set(files);
    // The single-frame pages change only when the VM gets a vCPU or dies.
    let frames = vm.sharedPages.length;
    for (const vc of vm.vcpus.values()) frames += vc.pages.length;
    if (!vm.dead && frames === st.fixed.length && st.fixedVcpus === vm.vcpus.size) return;
    for (const x of st.fixed) this.unclaim(x.pfn, 1);
    st.fixed = [];
    st.fixedVcpus = vm.vcpus.size;
    if (vm.dead) return;
    for (const p of vm.sharedPages)
      st.fixed.push({ pfn: p, owner: { kind: 'vcpu', vm, base: 0, what: 'coalesced MMIO ring' } });
    for (const vc of vm.vcpus.values())
      vc.pages.forEach((p, i) =>
        st.fixed.push({
          pfn: p,
          owner: {
            kind: 'vcpu',
            vm,
            base: 0,
            what: `vcpu ${vc.id} ${i === 0 ? 'kvm_run' : 'PIO'} page`,
          },
        }),
      );
    for (const x of st.fixed) {
      if (x.pfn === 0) this.zeroClaims = 1;
      this.claim(x.pfn, 1, x.owner);
    }
  }

  /** Add `d` to the claim count of every frame in [pfn, pfn + n); true if one was claimed before. */
  private count(pfn: number, n: number, d: number): boolean {
    const segs: Array<{ start: number; end: number; c: number }> = [];
    let cur = pfn;
    let shared = false;
    for (const p of this.claims.piecesIn(pfn, pfn + n)) {
      if (p.start > cur) segs.push({ start: cur, end: p.start, c: d });
      segs.push({ start: p.start, end: p.end, c: p.value + d });
      if (d > 0 || p.value > 1) shared = true;
      cur = p.end;
    }
    if (cur < pfn + n) segs.push({ start: cur, end: pfn + n, c: d });
    for (const g of segs) {
      if (g.c <= 0) this.claims.delete(g.start, g.end);
      else this.claims.set(g.start, g.end, g.c);
      if (g.c > 1) this.multi.set(g.start, g.end, true);
      else if (this.multi.size !== 0) this.multi.delete(g.start, g.end);
    }
    return shared;
  }

  private claim(pfn: number, n: number, o: Owner): void {
    if (n <= 0) return;
    if (this.count(pfn, n, 1)) this.exact = false;
    if (!this.exact) return;
    this.owners.set(pfn, pfn + n, o);
    if (this.h.frames.anyFree(pfn, n)) this.refreshOwnedFree(pfn, pfn + n);
  }

  private unclaim(pfn: number, n: number): void {
    if (n <= 0) return;
    if (this.count(pfn, n, -1)) this.exact = false;
    if (!this.exact) return;
    this.owners.delete(pfn, pfn + n);
    if (this.ownedFree.size !== 0) this.ownedFree.delete(pfn, pfn + n);
  }

  private refreshOwnedFree(s: number, e: number): void {
    this.ownedFree.delete(s, e);
    const frames = this.h.frames;
    for (const o of this.owners.piecesIn(s, e))
      for (const f of frames.freeIn(o.start, o.end)) this.ownedFree.set(f.start, f.end, true);
  }
}
