/**
 * What the change-driven checker knows about the model between two checks: which VMs the last
 * op could have changed, and the frame-ownership map kept up to date instead of rebuilt.
 *
 * Every structure an invariant reads is a RangeMap (stage-2 tables, memslots by gfn, memory
 * attributes, guest_memfd pages and bindings, the VMM's VMAs and anonymous pages, shmem pages,
 * the allocator's free list) or VM state that changes only through a file of that VM (fd
 * lookups and file releases, reported by the Host). RangeMaps report the key range of every
 * mutation (`onChange`): a change to a VM's own maps (stage-2, memslots, attributes) marks the
 * VM dirty at once; changes to the others are queued and, at the next check, the tracker:
 * - marks dirty the VM that owns a changed map (its guest_memfd), and every VM whose last check
 *   read the changed range (dependencies: the userspace_addr range and the frames behind its
 *   stage-2 mappings);
 * - re-applies the changed range of each ownership source (anonymous memory, reachable shmem
 *   objects, guest_memfd files of live VMs, vCPU and coalesced-MMIO pages) to the ownership map,
 *   the way the page cache and the page allocator move a folio between owners.
 * A frame claimed twice (or an extent at pfn 0, which `buildOwnership` skips) makes the map
 * inexact: checks then use `buildOwnership` until no frame is claimed twice again.
 */
import { MAX_KEY, RangeMap } from '../base/ranges/range_map.js';
import type { Host } from '../host.js';
import { GmemFile, VcpuFile, VmFile, type Vm } from '../kvm/objects.js';
import type { KFile } from '../vfs/file.js';
import { ShmemObject } from '../mm/host_mm.js';
import type { Mapping } from './types.js';
import { buildOwnership, ownerOps, type Owner, type Ownership } from './ownership.js';
import { mappingList } from './stage2_coherent.js';

const NO_FILES: ReadonlySet<GmemFile> = new Set();

type AnyMap = RangeMap<{ readonly base: number }>;

/** The owner of the piece of an ownership source that starts at key `start`. */
type OwnerOf = (start: number, value: { readonly base: number }) => Owner;

/** Owner of a piece of the VMM's private anonymous memory. */
const anonOwner: OwnerOf = (start) => ({ kind: 'anon', base: start });

/** Owner of frames held only by page references (`FrameStore.held`, keyed by pfn). */
const heldOwner: OwnerOf = (start) => ({ kind: 'held', base: start });

/** One watched RangeMap. */
type Watch = {
  readonly map: RangeMap<unknown>;
  /** The VM whose guest_memfd this map is (its pages or bindings). */
  readonly vm: Vm | undefined;
  /** VMs whose last check read a range of this map (created on first use). */
  deps: RangeMap<VmList> | undefined;
  /** VMs whose last check read all of this map (created on first use). */
  whole: Set<Vm> | undefined;
  /** This map is an ownership source that is live now. */
  active: boolean;
  /** Ownership source: the owner of the piece of the map at `start`. */
  owner: OwnerOf | undefined;
  /**
   * Key ranges of this (active) source changed since the last update, sorted and disjoint:
   * [pend[2i], pend[2i + 1]). Their frames were unclaimed before the change (the map's
   * `onChange` runs before the mutation); the update claims what they hold now. Elsewhere the
   * ownership map holds what the source holds.
   */
  readonly pend: number[];
  /** Used length of `pend` (twice the number of ranges). */
  pendN: number;
  /** All of the source is pending (too many ranges): the update claims all of it. */
  pendAll: boolean;
  /** In the tracker's list of sources with pending ranges. */
  pendListed: boolean;
};

/** Pending ranges a source keeps before it is wholly pending (bounds the work per change). */
const PEND_MAX = 16;

/** The VMs that read a range: one VM, or several (arrays are never mutated: pieces share them). */
type VmList = Vm | readonly Vm[];

/** `list` without `vm` (undefined: none left). */
function withoutVm(list: VmList, vm: Vm): VmList | undefined {
  if (!Array.isArray(list)) return list === vm ? undefined : list;
  const vms = list as readonly Vm[];
  if (!vms.includes(vm)) return list;
  const rest = vms.filter((x) => x !== vm);
  return rest.length === 0 ? undefined : rest.length === 1 ? rest[0]! : rest;
}

/** `list` with `vm` (the same list when it has it). */
function withVm(list: VmList, vm: Vm): VmList {
  if (!Array.isArray(list)) return list === vm ? list : [list as Vm, vm];
  const vms = list as readonly Vm[];
  return vms.includes(vm) ? list : [...vms, vm];
}

/**
 * A single-frame page a VM claims: the coalesced MMIO ring (`vcpu` undefined) or a vCPU's
 * kvm_run page (`run`) or PIO page; the owner's `what` follows from them.
 */
type FixedPage = {
  readonly pfn: number;
  readonly owner: Owner;
  readonly vcpu: bigint | undefined;
  readonly run: boolean;
};

/** A piece of a VMA as the tracker reads it. */
type VmaPiece = { readonly obj: unknown };

/** VmState.flags: the VM is in the dirty list, the used list; its dependencies may differ. */
const DIRTY = 1;
const USED = 2;
const REREAD = 4;
/**
 * The VM's files, vCPUs, single-frame pages or life may differ (see `vmOwnership`): they change
 * only in ops that look up its VM fd (KVM_CREATE_GUEST_MEMFD and KVM_CREATE_VCPU) or release
 * one of its files (guest_memfd release, VM destruction), or when the VM is created.
 */
const FILES = 8;

type VmState = {
  flags: number;
  /** Dependencies registered by the VM's last check: depW[i] over [depS[i], depE[i]), i < depN. */
  depN: number;
  depW: Watch[];
  depS: number[];
  depE: number[];
  /** guest_memfd files whose pages the ownership map holds. */
  files: GmemFile[];
  /** Single-frame owners claimed (vCPU pages, coalesced MMIO ring). */
  fixed: FixedPage[];
  /** vCPUs when `fixed` was taken. */
  fixedVcpus: number;
  /**
   * The VM's mappings (`mappingList`), kept until one of its stage-2 or memslot maps changes:
   * the list reads nothing else (its sptes and memslots are the maps' values).
   */
  maps: readonly Mapping[] | undefined;
};

/** Index of the dependency (w, start, end) among the first n of W/S/E, or -1. */
function indexOfDep(
  W: readonly Watch[],
  S: readonly number[],
  E: readonly number[],
  n: number,
  w: Watch,
  start: number,
  end: number,
): number {
  for (let i = 0; i < n; i++) if (W[i] === w && S[i] === start && E[i] === end) return i;
  return -1;
}

export class ChangeTracker {
  private readonly watches = new Map<RangeMap<unknown>, Watch>();
  /**
   * Changes queued since the last update: pendW[i] over [pendS[i], pendE[i]), i < pendN. Kept
   * in parallel arrays that live as long as the tracker (a change is queued inside every
   * mutation of a watched map: no object per change).
   */
  private readonly pendW: Watch[] = [];
  private readonly pendS: number[] = [];
  private readonly pendE: number[] = [];
  private pendN = 0;
  /**
   * VMs whose maps, or a range they read, changed (`dirtyN` of them, in the order first marked,
   * flag DIRTY). Those whose dependencies may differ now have flag REREAD: their stage-2 or
   * memslot maps changed, a VMA they read changed, or a guest_memfd of theirs was released
   * (others read as before).
   */
  private readonly dirtyL: Vm[] = [];
  private dirtyN = 0;
  /**
   * VMs whose VM fd an op used or one of whose files it released (maps may be unchanged; flag
   * USED).
   */
  private readonly usedL: Vm[] = [];
  private usedN = 0;
  /**
   * What the last `update` found (see there): the first `changedCount` of `changedVms` and the
   * first `usedCount` of `usedVms` (the arrays are reused from one update to the next).
   */
  readonly changedVms: Vm[] = [];
  changedCount = 0;
  /**
   * Per entry of `changedVms`: whether the VM's own state (what the checks that do not read
   * mappings read) may differ too, i.e. whether it was also used, released a file or is new
   * (flag FILES); otherwise only its maps or what they read changed.
   */
  readonly changedOwn: boolean[] = [];
  readonly usedVms: Vm[] = [];
  usedCount = 0;
  /** Per VM, by index. */
  private readonly vmStates: VmState[] = [];
  private seenVms = 0;
  private readonly anon: Watch;
  private readonly vmas: Watch;
  private readonly free: Watch;
  private readonly vmasShadow: RangeMap<VmaPiece>;
  /** Pages of each shmem object mapped by some VMA (reachable objects). */
  private readonly shmemMapped = new Map<ShmemObject, number>();
  private readonly shmems = new Set<ShmemObject>();
  /**
   * Claims per frame, counted while the map is not exact (some frame was claimed twice); while
   * exact, `owners` holds the claimed frames.
   */
  private readonly claims = new RangeMap<number>();
  /** Frames claimed more than once (while not exact). */
  private readonly multi = new RangeMap<true>();
  private zeroClaims = 0;
  private owners = new RangeMap<Owner>(ownerOps);
  /** Owned frames on the free list. */
  private readonly ownedFree = new RangeMap<true>();
  /** `owners` and `ownedFree` are what buildOwnership would give. */
  private exact = true;
  /** The exact ownership map as `Ownership` (one object; `ownedFrames` is read when asked). */
  private readonly own: Ownership;
  /** Scratch of `depend`: the dependencies being collected. */
  private nextW: Watch[] = [];
  private nextS: number[] = [];
  private nextE: number[] = [];
  private nextN = 0;
  private readonly nextFiles: GmemFile[] = [];
  private nextFilesN = 0;
  /** Ownership sources with pending ranges (`pendSourcesN` of them). */
  private readonly pendSources: Watch[] = [];
  private pendSourcesN = 0;
  /** Scratch of `depend`: indexes of the dependencies dropped. */
  private readonly gone: number[] = [];
  /** Scratch of `collect`: the pieces of a dependency map over a range. */
  private readonly colS: number[] = [];
  private readonly colE: number[] = [];
  private readonly colV: VmList[] = [];
  private colN = 0;
  private readonly colPiece = (s: number, e: number, v: VmList): void => {
    const n = this.colN++;
    this.colS[n] = s;
    this.colE[n] = e;
    this.colV[n] = v;
  };

  /** The pieces of `deps` over [s, e) into colS/colE/colV; their number. */
  private collect(deps: RangeMap<VmList>, s: number, e: number): number {
    this.colN = 0;
    deps.forEachIn(s, e, this.colPiece);
    return this.colN;
  }

  /** Scratch of `count`: claim counts per segment. */
  private readonly segS: number[] = [];
  private readonly segE: number[] = [];
  private readonly segC: number[] = [];

  constructor(private readonly h: Host) {
    this.anon = this.watch(h.mm.anon as RangeMap<unknown>, undefined);
    this.vmas = this.watch(h.mm.vmas as RangeMap<unknown>, undefined);
    this.free = this.watch(new RangeMap<unknown>(), undefined);
    h.frames.watchFree((s, e) => this.queue(this.free, s, e));
    h.watchFiles((f, release) => this.touched(f, release));
    this.vmasShadow = new RangeMap();
    const owners = (): RangeMap<Owner> => this.owners;
    this.own = {
      get owners() {
        return owners();
      },
      doubles: [],
      get ownedFrames() {
        return owners().totalCovered();
      },
      shmems: this.shmems,
    };
    this.vmasDiff(0, MAX_KEY);
    this.activate(this.anon, anonOwner);
    // Frames freed by their owner while page references remain (vmsplice, GUP pins).
    this.activate(this.watch(h.frames.held as RangeMap<unknown>, undefined), heldOwner);
  }

  /** Stop listening (the host may be checked again by another checker). */
  detach(): void {
    for (const w of this.watches.values()) w.map.onChange = undefined;
    for (const vm of this.h.allVms.slice(0, this.seenVms)) {
      for (const m of [...vm.stage2, ...vm.slotsByGfn, vm.attrs]) m.onChange = undefined;
    }
    this.h.frames.watchFree(undefined);
    this.h.watchFiles(undefined);
  }

  private watch(map: RangeMap<unknown>, vm: Vm | undefined): Watch {
    let w = this.watches.get(map);
    if (w === undefined) {
      const nw: Watch = {
        map,
        vm,
        deps: undefined,
        whole: undefined,
        active: false,
        owner: undefined,
        pend: [],
        pendN: 0,
        pendAll: false,
        pendListed: false,
      };
      map.onChange = (s, e): void => {
        this.queue(nw, s, e);
        if (nw.active) this.beforeSourceChange(nw, s, e);
      };
      this.watches.set(map, nw);
      w = nw;
    }
    return w;
  }

  /** Queue a change; a run of touching changes to one map (a fault loop) becomes one range. */
  private queue(w: Watch, s: number, e: number): void {
    const n = this.pendN;
    if (n > 0 && this.pendW[n - 1] === w && s <= this.pendE[n - 1]! && e >= this.pendS[n - 1]!) {
      if (s < this.pendS[n - 1]!) this.pendS[n - 1] = s;
      if (e > this.pendE[n - 1]!) this.pendE[n - 1] = e;
    } else {
      this.pendW[n] = w;
      this.pendS[n] = s;
      this.pendE[n] = e;
      this.pendN = n + 1;
    }
  }

  private stateOf(vm: Vm): VmState {
    let st = this.vmStates[vm.index];
    if (st === undefined)
      this.vmStates[vm.index] = st = {
        flags: 0,
        depN: 0,
        depW: [],
        depS: [],
        depE: [],
        files: [],
        fixed: [],
        fixedVcpus: -1,
        maps: undefined,
      };
    return st;
  }

  /** The VM's stage-2 mappings in `forEachMapping` order (see VmState.maps). */
  mappingsOf(vm: Vm): readonly Mapping[] {
    const st = this.stateOf(vm);
    return (st.maps ??= mappingList(vm));
  }

  /** Add a VM to the dirty list (`reread`: its dependencies may differ too). */
  private markDirty(vm: Vm, reread: boolean): void {
    const st = this.stateOf(vm);
    if ((st.flags & DIRTY) === 0) this.dirtyL[this.dirtyN++] = vm;
    st.flags |= reread ? DIRTY | REREAD : DIRTY;
  }

  private markUsed(vm: Vm): void {
    const st = this.stateOf(vm);
    st.flags |= FILES;
    if ((st.flags & USED) !== 0) return;
    st.flags |= USED;
    this.usedL[this.usedN++] = vm;
  }

  /** The watch of a guest_memfd file's pages, by inode number (found without hashing). */
  private pagesWatch(f: GmemFile): Watch {
    return (this.pagesByIno[f.ino] ??= this.watch(f.pages as RangeMap<unknown>, f.vm));
  }

  /** The watch of a guest_memfd file's bindings, by inode number. */
  private bindingsWatch(f: GmemFile): Watch {
    return (this.bindingsByIno[f.ino] ??= this.watch(f.bindings as RangeMap<unknown>, f.vm));
  }

  private readonly pagesByIno: Array<Watch | undefined> = [];
  private readonly bindingsByIno: Array<Watch | undefined> = [];

  /**
   * An op used a file, or its last reference may be going (`release`). Using a file changes
   * no map by itself; the release of a guest_memfd clears `slot->gmem.file` of its memslots
   * (kvm_gmem_release) and may leave the maps as they were.
   *
   * What the used-VM checks read (the VM's reference count, files, vCPUs, memslot list and
   * bindings) changes only in ioctls on the VM fd (KVM_CREATE_VCPU, KVM_CREATE_GUEST_MEMFD,
   * memslot changes, which bind and unbind guest_memfd ranges) and in releases: an op on a vCPU
   * fd (KVM_RUN, KVM_PRE_FAULT_MEMORY) or a guest_memfd fd (fallocate, mmap, read, fstat) that
   * releases nothing leaves them as they were (its map changes are reported as such) — except
   * a TD's or an arm64 VM's arch pages (`Vm.archPages`), which its vCPU ioctls add to.
   */
  private touched(f: KFile, release: boolean): void {
    if (f instanceof VmFile) this.markUsed(f.vm);
    else if (f instanceof VcpuFile) {
      // A TD's vCPU ioctls allocate pages for the TDX module (KVM_TDX_INIT_VCPU's TDVPR and
      // TDCX pages, the S-EPT pages a pre-fault or guest fault links): the VM's single-frame
      // pages are re-read after any op on the vCPU fd of a VM that has such pages. An arm64
      // VM's vCPU ioctls add them from none: a pKVM VM's first KVM_RUN donates the hyp VM,
      // pgd and vCPU pages (`pkvm_create_hyp_vm()`), each stage-2 fault tops up the memcache.
      const vm = f.vcpu.vm;
      if (release || vm.archPages.length !== 0 || vm.spec.arm64 !== undefined) this.markUsed(vm);
    } else if (f instanceof GmemFile) {
      if (!release) return;
      this.markDirty(f.vm, true);
      this.vmStates[f.vm.index]!.flags |= FILES;
      // Memslots of other VMs never bind a file (kvm_gmem_bind checks gmem->kvm), but a VM's
      // checks may read the file through a mapping of it at userspace_addr.
      for (const m of [f.pages, f.bindings] as RangeMap<unknown>[]) {
        const w = this.watches.get(m);
        if (w !== undefined) this.dirtyDeps(w, 0, MAX_KEY);
      }
    }
  }

  private dirtyDeps(w: Watch, s: number, e: number): void {
    if (w.whole !== undefined) for (const vm of w.whole) this.markDirty(vm, false);
    if (w.deps === undefined || w.deps.size === 0) return;
    this.dirtyLayout = w === this.vmas;
    w.deps.forEachIn(s, e, this.dirtyList);
  }

  /** Whether `dirtyList` marks its VMs for a re-read of their dependencies. */
  private dirtyLayout = false;
  private readonly dirtyList = (_a: number, _b: number, vms: VmList): void => {
    if (!Array.isArray(vms)) this.markDirty(vms as Vm, this.dirtyLayout);
    else for (const vm of vms as readonly Vm[]) this.markDirty(vm, this.dirtyLayout);
  };

  /**
   * Bring everything up to date with the model. False when nothing at all changed since the
   * last update. Else it leaves the VMs to re-check (in no particular order) in `changedVms`,
   * whose maps or whose dependencies changed (the checks reading mappings again, the others
   * too where `changedOwn` says so, then `depend`), and in `usedVms`, the others whose VM fd an
   * op used or one of whose files it released (reference counts, memslot list, bindings: the
   * checks that do not read mappings). A destroyed VM is changed.
   *
   * What the checks that do not read mappings read (the VM's reference count, files, vCPUs,
   * memslot list, bindings and the released state of its files) changes only in ops on the VM
   * fd, in releases and when the VM is created, all of which set FILES: a VM that is changed
   * only because its maps or what they read changed keeps those checks' last results.
   */
  update(): boolean {
    const all = this.h.allVms;
    this.changedCount = 0;
    this.usedCount = 0;
    if (this.pendN === 0 && this.dirtyN === 0 && this.usedN === 0 && this.seenVms === all.length)
      return false;
    for (; this.seenVms < all.length; this.seenVms++) {
      const vm = all[this.seenVms]!;
      // The VM's own maps: a change makes the VM dirty right away (no other VM reads them);
      // one of its stage-2 or memslot maps changes what its checks read, and its mappings.
      const st = this.stateOf(vm);
      const layout = (): void => {
        st.maps = undefined;
        this.markDirty(vm, true);
      };
      for (const m of vm.stage2) m.onChange = layout;
      for (const m of vm.slotsByGfn) m.onChange = layout;
      vm.attrs.onChange = (): void => this.markDirty(vm, false);
      this.markDirty(vm, true);
      st.flags |= FILES;
    }
    // Nothing below changes a watched map: no change is queued while the queue is read.
    // The ownership sources first: claim what their changed ranges hold now.
    for (let i = 0; i < this.pendSourcesN; i++) {
      const w = this.pendSources[i]!;
      this.pendSources[i] = undefined as unknown as Watch;
      if (w.active) {
        if (w.pendAll) this.claimIn(w, 0, MAX_KEY);
        else for (let j = 0; j < w.pendN; j += 2) this.claimIn(w, w.pend[j]!, w.pend[j + 1]!);
      }
      w.pendN = 0;
      w.pendAll = false;
      w.pendListed = false;
    }
    this.pendSourcesN = 0;
    const pw = this.pendW;
    for (let i = 0; i < this.pendN; i++) {
      const w = pw[i]!;
      const start = this.pendS[i]!;
      const end = this.pendE[i]!;
      pw[i] = undefined as unknown as Watch;
      if (w.vm !== undefined) this.markDirty(w.vm, false);
      this.dirtyDeps(w, start, end);
      if (w === this.vmas) this.vmasDiff(start, end);
      else if (w === this.free) {
        // An allocation only shrinks the free list; a release may put owned frames on it.
        if (!this.exact) continue;
        if (this.h.frames.anyFree(start, end - start)) this.refreshOwnedFree(start, end);
        else if (this.ownedFree.size !== 0) this.ownedFree.delete(start, end);
      }
    }
    this.pendN = 0;
    for (let i = 0; i < this.usedN; i++) {
      const vm = this.usedL[i]!;
      if (vm.dead) this.markDirty(vm, true);
    }
    const dirty = this.changedVms;
    const used = this.usedVms;
    let nd = 0;
    let nu = 0;
    const own = this.changedOwn;
    for (let i = 0; i < this.dirtyN; i++) {
      const vm = this.dirtyL[i]!;
      const st = this.vmStates[vm.index]!;
      own[nd] = (st.flags & FILES) !== 0;
      dirty[nd++] = vm;
      st.flags &= ~(DIRTY | USED);
    }
    for (let i = 0; i < this.usedN; i++) {
      const vm = this.usedL[i]!;
      const st = this.vmStates[vm.index]!;
      if ((st.flags & USED) === 0) continue;
      used[nu++] = vm;
      st.flags &= ~USED;
    }
    this.dirtyN = 0;
    this.usedN = 0;
    this.changedCount = nd;
    this.usedCount = nu;
    for (let i = 0; i < nd; i++) this.vmOwnership(dirty[i]!);
    for (let i = 0; i < nu; i++) this.vmOwnership(used[i]!);
    if (!this.exact && this.multi.size === 0 && this.zeroClaims === 0) {
      // No frame is claimed twice any more: the incremental map is exact again.
      this.owners = buildOwnership(this.h).owners;
      this.exact = true;
      this.claims.clear();
      this.ownedFree.clear();
      this.refreshOwnedFree(0, MAX_KEY);
    }
    return true;
  }

  private dep(w: Watch, start: number, end: number): void {
    const n = this.nextN++;
    this.nextW[n] = w;
    this.nextS[n] = start;
    this.nextE[n] = end;
  }

  /** The object a VMA maps over a range the VM's checks read. */
  private depVma(obj: unknown): void {
    if (obj instanceof ShmemObject)
      this.dep(this.watch(obj.pages as RangeMap<unknown>, undefined), 0, MAX_KEY);
    else if (obj instanceof GmemFile) this.depFile(obj);
  }

  /**
   * `depVma` for every VMA over host pages [s, e), in order. The stored VMAs are read as they
   * are: only the object they map matters, so no piece is clipped (`forEachIn` would copy the
   * VMA to shift its file offset).
   */
  private depVmas(s: number, e: number): void {
    const vmas = this.h.mm.vmas;
    let v = vmas.entryAt(s) ?? vmas.ceilEntry(s);
    while (v !== undefined && v.start < e) {
      this.depVma(v.value.obj);
      if (v.end >= e) break;
      v = vmas.ceilEntry(v.end);
    }
  }

  /** The pages and bindings of a guest_memfd file the VM's checks read, once. */
  private depFile(f: GmemFile | null | undefined): void {
    if (f === null || f === undefined) return;
    for (let i = 0; i < this.nextFilesN; i++) if (this.nextFiles[i] === f) return;
    this.nextFiles[this.nextFilesN++] = f;
    this.dep(this.pagesWatch(f), 0, MAX_KEY);
    this.dep(this.bindingsWatch(f), 0, MAX_KEY);
  }

  /**
   * Record what the checks of `vm` just read outside the VM's own maps (replacing what its
   * previous check read): the frames its stage-2 mappings point at (free or not), and for
   * mappings backed by userspace_addr the host's VMAs, anonymous pages and mapped objects over
   * that range; the guest_memfd files its memslots bind. A later change there makes the VM
   * dirty. A destroyed VM reads nothing.
   */
  depend(vm: Vm, mappings: (vm: Vm) => readonly Mapping[]): void {
    const st = this.vmStates[vm.index]!;
    if ((st.flags & REREAD) === 0) return;
    st.flags &= ~REREAD;
    this.nextN = 0;
    this.nextFilesN = 0;
    if (!vm.dead) {
      for (const slot of vm.slots.values()) this.depFile(slot.gmem?.file);
      const ms = mappings(vm);
      for (let i = 0; i < ms.length; i++) {
        const { start: g0, end: g1, spte, slot } = ms[i]!;
        const n = g1 - g0;
        if (spte.base !== 0) this.dep(this.free, spte.base, spte.base + n);
        if (slot === undefined) continue;
        this.depFile(slot.gmem?.file);
        if (spte.source === 'gmem') continue;
        const hv0 = slot.userspaceHvpn + (g0 - slot.baseGfn);
        this.dep(this.vmas, hv0, hv0 + n);
        this.dep(this.anon, hv0, hv0 + n);
        this.depVmas(hv0, hv0 + n);
      }
    }
    this.nextFilesN = 0;
    // Usually a re-check reads what the previous one did.
    const n = this.nextN;
    const { nextW, nextS, nextE } = this;
    let same = st.depN === n;
    for (let i = 0; same && i < n; i++)
      same = st.depW[i] === nextW[i] && st.depS[i] === nextS[i] && st.depE[i] === nextE[i];
    if (same) {
      for (let i = 0; i < n; i++) nextW[i] = undefined as unknown as Watch;
      return;
    }
    // Drop what is read no more, add what is read now (a range kept from before is added again
    // when a dropped range of the same map overlapped it).
    const { depW: prevW, depS: prevS, depE: prevE } = st;
    const m = st.depN;
    const gone = this.gone;
    let goneN = 0;
    for (let i = 0; i < m; i++) {
      const w = prevW[i]!;
      const start = prevS[i]!;
      const end = prevE[i]!;
      if (indexOfDep(nextW, nextS, nextE, n, w, start, end) >= 0) continue;
      gone[goneN++] = i;
      if (start === 0 && end === MAX_KEY) {
        w.whole!.delete(vm);
        continue;
      }
      const deps = w.deps!;
      const k = this.collect(deps, start, end);
      const { colS, colE, colV } = this;
      for (let q = 0; q < k; q++) {
        const rest = withoutVm(colV[q]!, vm);
        if (rest === undefined) deps.delete(colS[q]!, colE[q]!);
        else if (rest !== colV[q]) deps.set(colS[q]!, colE[q]!, rest);
        colV[q] = undefined as unknown as VmList;
      }
    }
    for (let i = 0; i < n; i++) {
      const w = nextW[i]!;
      const start = nextS[i]!;
      const end = nextE[i]!;
      if (indexOfDep(prevW, prevS, prevE, m, w, start, end) >= 0) {
        let overlapped = false;
        for (let g = 0; g < goneN; g++) {
          const j = gone[g]!;
          if (prevW[j] === w && prevS[j]! < end && start < prevE[j]!) overlapped = true;
        }
        if (!overlapped) continue;
      }
      if (start === 0 && end === MAX_KEY) {
        (w.whole ??= new Set()).add(vm);
        continue;
      }
      const deps = (w.deps ??= new RangeMap());
      // The pieces there get the VM added, the gaps between them get the VM alone.
      const k = this.collect(deps, start, end);
      const { colS, colE, colV } = this;
      let cur = start;
      for (let q = 0; q < k; q++) {
        const ps = colS[q]!;
        const pe = colE[q]!;
        if (ps > cur) deps.set(cur, ps, vm);
        const more = withVm(colV[q]!, vm);
        if (more !== colV[q]) deps.set(ps, pe, more);
        colV[q] = undefined as unknown as VmList;
        cur = pe;
      }
      if (cur < end) deps.set(cur, end, vm);
    }
    // The collected arrays become the VM's; its previous ones collect the next VM's.
    st.depN = n;
    st.depW = nextW;
    st.depS = nextS;
    st.depE = nextE;
    this.nextW = prevW;
    this.nextS = prevS;
    this.nextE = prevE;
  }

  // --- ownership --------------------------------------------------------------------------------

  /** The ownership map, or undefined when it is not exact (use buildOwnership). */
  ownership(): Ownership | undefined {
    return this.exact ? this.own : undefined;
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

  private activate(w: Watch, owner: OwnerOf): void {
    if (w.active) return;
    w.active = true;
    w.owner = owner;
    w.pendN = 0;
    w.pendAll = false;
    const map = w.map as unknown as AnyMap;
    if (map.size === 0) return;
    for (const p of map.entries()) {
      if (p.value.base === 0) this.zeroClaims = 1;
      this.claim(p.value.base, p.end - p.start, owner(p.start, p.value));
    }
  }

  /** Unclaim what the source holds, except its pending ranges (unclaimed already). */
  private deactivate(w: Watch): void {
    if (!w.active) return;
    w.active = false;
    if (!w.pendAll) {
      const P = w.pend;
      let cur = 0;
      for (let j = 0; j < w.pendN; j += 2) {
        this.unclaimIn(w, cur, P[j]!);
        cur = P[j + 1]!;
      }
      this.unclaimIn(w, cur, MAX_KEY);
    }
    w.pendN = 0;
    w.pendAll = false;
  }

  /** Unclaim the frames the source holds in [s, e) (as claimed: nothing there is pending). */
  private unclaimIn(w: Watch, s: number, e: number): void {
    const map = w.map as unknown as AnyMap;
    if (s >= e || map.size === 0) return;
    map.forEachIn(s, e, this.unclaimPiece);
  }

  private readonly unclaimPiece = (p0: number, p1: number, v: { readonly base: number }): void =>
    this.unclaim(v.base, p1 - p0);

  /** Claim the frames the source holds in [s, e) now. */
  private claimIn(w: Watch, s: number, e: number): void {
    const map = w.map as unknown as AnyMap;
    if (map.size === 0) return;
    this.claimW = w;
    this.claimS = s;
    map.forEachIn(s, e, this.claimPiece);
    this.claimW = undefined;
  }

  private claimW: Watch | undefined = undefined;
  private claimS = 0;
  private readonly claimPiece = (p0: number, p1: number, v: { readonly base: number }): void => {
    const w = this.claimW!;
    const map = w.map as unknown as AnyMap;
    // buildOwnership skips an extent at pfn 0 (a whole stored entry), never a piece of one.
    // Only the first piece can be clipped (its value shifted to p0); others are stored ones.
    // (The stored entry's base is v.base - (p0 - its start): never 0 when v.base > p0.)
    if ((v.base === 0 || (p0 === this.claimS && v.base <= p0)) && map.entryAt(p0)!.value.base === 0)
      this.zeroClaims = 1;
    this.claim(v.base, p1 - p0, w.owner!(p0, v));
  };

  /**
   * [s, e) of an active ownership source is about to change (the map's `onChange` runs before
   * the mutation): unclaim what it holds in the parts not pending yet, and make [s, e) pending.
   */
  private beforeSourceChange(w: Watch, s: number, e: number): void {
    if (w.pendAll) return;
    if (!w.pendListed) {
      w.pendListed = true;
      this.pendSources[this.pendSourcesN++] = w;
    }
    const P = w.pend;
    const n = w.pendN;
    if (n === 0) {
      this.unclaimIn(w, s, e);
      P[0] = s;
      P[1] = e;
      w.pendN = 2;
      return;
    }
    // A fault loop: [s, e) continues or lies inside the last range.
    if (s >= P[n - 2]! && s <= P[n - 1]!) {
      if (e > P[n - 1]!) {
        this.unclaimIn(w, P[n - 1]!, e);
        P[n - 1] = e;
      }
      return;
    }
    if (n >= 2 * PEND_MAX) {
      // Too many ranges: unclaim all that is still claimed, and claim all at the update.
      let cur = 0;
      for (let j = 0; j < n; j += 2) {
        this.unclaimIn(w, cur, P[j]!);
        cur = P[j + 1]!;
      }
      this.unclaimIn(w, cur, MAX_KEY);
      w.pendN = 0;
      w.pendAll = true;
      return;
    }
    // The ranges that overlap or touch [s, e) are [i, j) (pairs); unclaim the gaps between them.
    let i = 0;
    while (i < n && P[i + 1]! < s) i += 2;
    let j = i;
    let cur = s;
    while (j < n && P[j]! <= e) {
      if (P[j]! > cur) this.unclaimIn(w, cur, P[j]!);
      if (P[j + 1]! > cur) cur = P[j + 1]!;
      j += 2;
    }
    if (cur < e) this.unclaimIn(w, cur, e);
    const ns = j > i && P[i]! < s ? P[i]! : s;
    const ne = j > i && P[j - 1]! > e ? P[j - 1]! : e;
    // Ranges [i, j) become the one range [ns, ne).
    if (j === i) {
      for (let k = n - 1; k >= i; k--) P[k + 2] = P[k]!;
    } else if (j - i > 2) {
      const d = j - i - 2;
      for (let k = j; k < n; k++) P[k - d] = P[k]!;
    }
    P[i] = ns;
    P[i + 1] = ne;
    w.pendN = n - (j - i) + 2;
  }

  /** `d` more pages of `obj` mapped by some VMA: a shmem object is a source while mapped. */
  private bump(obj: unknown, d: number): void {
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
      if (!w.active) this.activate(w, (start) => ({ kind: 'shmem', obj, base: start }));
    }
  }

  private vmasDiff(s: number, e: number): void {
    // The pieces there before (gS/gE/gO) and now (nS/nE/nO), in the scratch arrays.
    const { gS, gE, gO, nS, nE, nO } = this;
    this.vmaS = gS;
    this.vmaE = gE;
    this.vmaO = gO;
    this.vmaN = 0;
    if (this.vmasShadow.size !== 0) this.vmasShadow.forEachIn(s, e, this.vmaPiece);
    const ng = this.vmaN;
    if (ng !== 0) this.vmasShadow.delete(s, e);
    this.vmaS = nS;
    this.vmaE = nE;
    this.vmaO = nO;
    this.vmaN = 0;
    // The stored VMAs, clipped to [s, e) but not copied (only the object they map is read).
    const vmas = this.h.mm.vmas;
    let v = vmas.entryAt(s) ?? vmas.ceilEntry(s);
    while (v !== undefined && v.start < e) {
      this.vmaPiece(v.start < s ? s : v.start, v.end > e ? e : v.end, v.value);
      if (v.end >= e) break;
      v = vmas.ceilEntry(v.end);
    }
    const nn = this.vmaN;
    for (let i = 0; i < nn; i++) this.vmasShadow.set(nS[i]!, nE[i]!, nO[i]!);
    // Count the new mappings first so an object mapped both before and after stays live.
    for (let i = 0; i < nn; i++) this.bump(nO[i]!.obj, nE[i]! - nS[i]!);
    for (let i = 0; i < ng; i++) this.bump(gO[i]!.obj, -(gE[i]! - gS[i]!));
    for (let i = 0; i < nn; i++) nO[i] = undefined;
    for (let i = 0; i < ng; i++) gO[i] = undefined;
  }

  /** Scratch of `vmasDiff`: VMA pieces (start, end, value). */
  private readonly gS: number[] = [];
  private readonly gE: number[] = [];
  private readonly gO: Array<VmaPiece | undefined> = [];
  private readonly nS: number[] = [];
  private readonly nE: number[] = [];
  private readonly nO: Array<VmaPiece | undefined> = [];
  private vmaS: number[] = this.gS;
  private vmaE: number[] = this.gE;
  private vmaO: Array<VmaPiece | undefined> = this.gO;
  private vmaN = 0;
  private readonly vmaPiece = (s: number, e: number, v: VmaPiece): void => {
    const n = this.vmaN++;
    this.vmaS[n] = s;
    this.vmaE[n] = e;
    this.vmaO[n] = v;
  };

  /**
   * A VM's guest_memfd files and single-frame pages, while it lives: brought up to date when
   * they may differ (flag FILES).
   */
  private vmOwnership(vm: Vm): void {
    const st = this.vmStates[vm.index]!;
    if ((st.flags & FILES) === 0) return;
    st.flags &= ~FILES;
    const files = vm.dead ? NO_FILES : vm.gmemFiles;
    // Usually the VM has the files it had (as many, each of them still there).
    const had = st.files;
    let same = had.length === files.size;
    for (let i = 0; same && i < had.length; i++) same = files.has(had[i]!);
    if (!same) this.vmFiles(st, files);
    // The single-frame pages change only when the VM gets a vCPU, arch pages (a TD) or dies.
    let frames = vm.sharedPages.length + vm.archPages.length;
    if (vm.vcpus.size !== 0) for (const vc of vm.vcpus.values()) frames += vc.pages.length;
    if (!vm.dead && frames === st.fixed.length && st.fixedVcpus === vm.vcpus.size) return;
    this.vmFixed(vm, st);
  }

  /** The VM's guest_memfd files are now `files`: sources come and go. */
  private vmFiles(st: VmState, files: ReadonlySet<GmemFile>): void {
    for (const f of st.files) if (!files.has(f)) this.deactivate(this.pagesWatch(f));
    for (const f of files)
      if (!st.files.includes(f)) {
        // A HugeTLB file's folio orders and attributes are read by the hugetlb invariants
        // (hugetlb.ts): a conversion or a split changes them without always changing a map of
        // the VM (nothing mapped), so their changes mark the file's VM dirty too.
        if (f.hugetlb) {
          this.watch(f.attrs as RangeMap<unknown>, f.vm);
          this.watch(f.folioOrders as RangeMap<unknown>, f.vm);
        }
        this.activate(this.pagesWatch(f), (start, v) => ({
          kind: 'gmem',
          file: f,
          base: start,
          state: (v as unknown as { state: string }).state,
        }));
      }
    st.files = [...files];
  }

  /** The VM's single-frame pages (coalesced MMIO ring, vCPU pages) are claimed anew. */
  private vmFixed(vm: Vm, st: VmState): void {
    const prev = st.fixed;
    const next: FixedPage[] = [];
    st.fixed = next;
    st.fixedVcpus = vm.vcpus.size;
    if (!vm.dead) {
      // An entry that is still there (same place, frame and owner) stays claimed; a new vCPU
      // only adds its pages after those of the others.
      // (The owner's `what` is the same exactly when `vcpu` and `run` are.)
      const vmPage = (p: number, what: string): void => {
        const o = prev[next.length];
        next.push(
          o !== undefined && o.pfn === p && o.vcpu === undefined
            ? o
            : { pfn: p, owner: { kind: 'vcpu', vm, base: 0, what }, vcpu: undefined, run: false },
        );
      };
      for (const p of vm.sharedPages) vmPage(p, 'coalesced MMIO ring');
      for (const p of vm.archPages) vmPage(p, 'arch page (TDX control or S-EPT page)');
      for (const vc of vm.vcpus.values()) {
        const pages = vc.pages;
        for (let i = 0; i < pages.length; i++) {
          const p = pages[i]!;
          const o = prev[next.length];
          next.push(
            o !== undefined && o.pfn === p && o.vcpu === vc.id && o.run === (i === 0)
              ? o
              : {
                  pfn: p,
                  owner: {
                    kind: 'vcpu',
                    vm,
                    base: 0,
                    what: `vcpu ${vc.id} ${i === 0 ? 'kvm_run' : 'PIO'} page`,
                  },
                  vcpu: vc.id,
                  run: i === 0,
                },
          );
        }
      }
    }
    for (let i = 0; i < prev.length; i++) if (next[i] !== prev[i]) this.unclaim(prev[i]!.pfn, 1);
    for (let i = 0; i < next.length; i++) {
      const x = next[i]!;
      if (x === prev[i]) continue;
      if (x.pfn === 0) this.zeroClaims = 1;
      this.claim(x.pfn, 1, x.owner);
    }
  }

  /** Add `d` to the claim count of every frame in [pfn, pfn + n); true if one was claimed before. */
  private count(pfn: number, n: number, d: number): boolean {
    const end = pfn + n;
    const claims = this.claims;
    // Usually a fresh frame run is claimed, or a run claimed once is released whole.
    const at = claims.size === 0 ? undefined : claims.entryAt(pfn);
    if (at === undefined ? !claims.anyIn(pfn, end) : at.end >= end && at.value === 1) {
      const c = at === undefined ? d : 1 + d;
      if (c <= 0) claims.delete(pfn, end);
      else claims.set(pfn, end, c);
      if (c > 1) this.multi.set(pfn, end, true);
      else if (this.multi.size !== 0) this.multi.delete(pfn, end);
      return at !== undefined && d > 0;
    }
    const { segS, segE, segC } = this;
    let k = 0;
    let cur = pfn;
    let shared = false;
    claims.forEachIn(pfn, end, (s, e, c) => {
      if (s > cur) {
        segS[k] = cur;
        segE[k] = s;
        segC[k++] = d;
      }
      segS[k] = s;
      segE[k] = e;
      segC[k++] = c + d;
      if (d > 0 || c > 1) shared = true;
      cur = e;
    });
    if (cur < end) {
      segS[k] = cur;
      segE[k] = end;
      segC[k++] = d;
    }
    for (let i = 0; i < k; i++) {
      const s = segS[i]!;
      const e = segE[i]!;
      const c = segC[i]!;
      if (c <= 0) claims.delete(s, e);
      else claims.set(s, e, c);
      if (c > 1) this.multi.set(s, e, true);
      else if (this.multi.size !== 0) this.multi.delete(s, e);
    }
    return shared;
  }

  private claim(pfn: number, n: number, o: Owner): void {
    if (n <= 0) return;
    if (this.exact) {
      const end = pfn + n;
      // While exact, the owned frames are the claimed ones, each claimed once.
      if (!this.owners.anyIn(pfn, end)) {
        this.owners.set(pfn, end, o);
        if (this.h.frames.anyFree(pfn, n)) this.refreshOwnedFree(pfn, end);
        return;
      }
      // A frame claimed twice: count the claims per frame until none is shared again.
      this.exact = false;
      for (const e of this.owners.entries()) this.claims.set(e.start, e.end, 1);
    }
    this.count(pfn, n, 1);
  }

  private unclaim(pfn: number, n: number): void {
    if (n <= 0) return;
    if (this.exact) {
      this.owners.delete(pfn, pfn + n);
      if (this.ownedFree.size !== 0) this.ownedFree.delete(pfn, pfn + n);
      return;
    }
    this.count(pfn, n, -1);
  }

  private refreshOwnedFree(s: number, e: number): void {
    this.ownedFree.delete(s, e);
    const frames = this.h.frames;
    for (const o of this.owners.piecesIn(s, e))
      for (const f of frames.freeIn(o.start, o.end)) this.ownedFree.set(f.start, f.end, true);
  }
}
