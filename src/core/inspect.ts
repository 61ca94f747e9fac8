/**
 * An inspection snapshot of the model: a read-only, plain-data view of a `Host` for people and
 * tools (`gmemlab inspect`, explanations) that should not reach into the model's objects.
 *
 * The snapshot is JSON-serialisable as it is (`JSON.stringify(snapshot(h))` round-trips):
 * - page numbers (gfns, host virtual page numbers, guest_memfd indexes) and page counts are
 *   numbers: the model keeps them below 2^53 (RangeMap keys);
 * - byte addresses and byte sizes that are u64 in the uAPI (`userspace_addr`, a guest_memfd's
 *   `i_size`) are `"0x..."` strings;
 * - flag words and small ids (memslot flags, VM type, vCPU ids, guest_memfd flags) are numbers.
 *
 * Memory is described as ranges `[start, end)`, never page by page: building a snapshot costs
 * what the model's range maps cost (a 64 TiB guest with a few attribute changes has a few
 * ranges). Adjacent ranges whose described properties are equal are merged (pfns are not part of
 * the snapshot, so extents that differ only in their frames become one range). Every list is in a
 * deterministic order: VMs by index, memslots by (address space, slot id), files by inode,
 * ranges by start. Pure: no Node APIs.
 */
import type { Host } from './host.js';
import type { RangeMap } from './base/ranges/range_map.js';
import { GmemFile, VcpuFile, gfnToHvpnMemslot, type Memslot, type Vm } from './kvm/objects.js';
import { ShmemObject } from './mm/shmem.js';
import type { HostMm } from './mm/host_mm.js';
import { snpGuestContext } from './arch/x86/svm/sev_snp.js';
import {
  VMA_ACCOUNT,
  VMA_DONTDUMP,
  VMA_DONTFORK,
  VMA_DROPPABLE,
  VMA_HUGEPAGE,
  VMA_HUGETLB,
  VMA_HUGETLB_1G,
  VMA_MERGEABLE,
  VMA_NOHUGEPAGE,
  VMA_NORESERVE,
  VMA_RAND_READ,
  VMA_SEQ_READ,
  VMA_WIPEONFORK,
  type Vma,
  type VmaKind,
} from './mm/mm_types.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE, TRACE_CODE_SLOT } from './base/uapi.js';
import { asGfn, hvpnAdd, type Gfn, type Hvpn, type PgOff } from './base/units.js';

/** A range of pages `[start, end)`. */
export type PageRange = { readonly start: number; readonly end: number };

/** Memory attributes of a gfn range (`kvm->mem_attr_array`); absent ranges are 0 (shared). */
export type AttributeRange = PageRange & {
  readonly attributes: number;
  /** KVM_MEMORY_ATTRIBUTE_PRIVATE is set. */
  readonly private: boolean;
};

/** Stage-2 mappings of a gfn range, all at one level with the same permissions. */
export type Stage2Range = PageRange & {
  readonly level: '4K' | '2M' | '1G';
  readonly writable: boolean;
  readonly private: boolean;
  /** Where the pfn came from: guest_memfd or the memslot's userspace_addr (hva). */
  readonly source: 'gmem' | 'hva';
};

/**
 * A run of a memslot's gfns with one attribute (shared or private), and what backs it:
 * `allocated` pages that have memory (guest_memfd pages in any state, or host pages behind
 * `userspace_addr`), `prepared` guest_memfd pages that were zeroed and prepared, `mapped` pages
 * with a stage-2 mapping.
 */
export type SlotRun = PageRange & {
  readonly private: boolean;
  /** guest_memfd (private runs; every run of a guest_memfd-only slot), host memory, or nothing. */
  readonly backing: 'gmem' | 'host' | 'none';
  readonly allocated: number;
  readonly prepared: number;
  readonly mapped: number;
};

/** A memslot (`struct kvm_memory_slot`). */
export type MemslotSnapshot = {
  readonly as: number;
  readonly id: number;
  readonly baseGfn: Gfn;
  readonly npages: number;
  /** `userspace_addr`, "0x...". */
  readonly userspaceAddr: string;
  /** uAPI flags (KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_MEM_GUEST_MEMFD). */
  readonly flags: number;
  /** The trace contract's code page (slot 32763), created with the first vCPU. */
  readonly codePage: boolean;
  /**
   * `slot->gmem`: the bound file's inode (null once the file was released) and the first bound
   * index (`slot->gmem.pgoff`, in pages); null for a slot without KVM_MEM_GUEST_MEMFD.
   */
  readonly guestMemfd: { readonly ino: number | null; readonly offset: PgOff } | null;
  /** KVM_MEMSLOT_GMEM_ONLY: every fault is served by guest_memfd. */
  readonly gmemOnly: boolean;
  readonly runs: readonly SlotRun[];
};

export type AddressSpaceSnapshot = {
  readonly id: number;
  readonly memslots: readonly MemslotSnapshot[];
  readonly stage2: readonly Stage2Range[];
};

export type VmSnapshot = {
  readonly index: number;
  /** KVM_CREATE_VM type and its name (`SW_PROTECTED_VM`, ...). */
  readonly type: number;
  readonly typeName: string;
  /** `kvm->users_count`. */
  readonly refs: number;
  /** Destroyed (`kvm_destroy_vm()` ran). */
  readonly dead: boolean;
  readonly vcpus: readonly number[];
  readonly preFaultAllowed: boolean;
  readonly attributes: readonly AttributeRange[];
  readonly addressSpaces: readonly AddressSpaceSnapshot[];
};

export type GmemPageRange = PageRange & {
  readonly state: 'allocated' | 'prepared' | 'poisoned';
  /**
   * false: the pages' frames are out of the kernel's direct map (a GUEST_MEMFD_FLAG_NO_DIRECT_MAP
   * file's folios once mapped to the guest or to host userspace). Absent: in the direct map.
   */
  readonly directMap?: false;
};

/** A run of a guest_memfd's indices with one attribute (the in-place conversion series). */
export type GmemAttributeRange = PageRange & {
  readonly attributes: number;
  /** KVM_MEMORY_ATTRIBUTE_PRIVATE is set. */
  readonly private: boolean;
};

/** A run of a HugeTLB guest_memfd's allocated indices whose folios are all of one order. */
export type GmemFolioRange = PageRange & {
  /** The folio order: the file's page_order (9: 2M, 18: 1G), or 0 once split. */
  readonly order: number;
};

/** A live guest_memfd (`struct kvm_gmem` and its inode). */
export type GmemSnapshot = {
  readonly ino: number;
  readonly vm: number;
  /** i_size, "0x...". */
  readonly size: string;
  readonly npages: number;
  readonly flags: number;
  readonly fdRefs: number;
  /** Pages of host VMAs that map the file. */
  readonly mappedPages: number;
  /** `gmem->bindings`: index ranges and the memslot each is bound to. */
  readonly bindings: ReadonlyArray<PageRange & { readonly as: number; readonly slot: number }>;
  readonly pages: readonly GmemPageRange[];
  /**
   * HugeTLB files only (GUEST_MEMFD_FLAG_HUGETLB): `page_order` from KVM_CREATE_GUEST_MEMFD, and
   * the folio order of every allocated index (runs of one order; absent indices have no folio).
   */
  readonly pageOrder?: number;
  readonly folios?: readonly GmemFolioRange[];
  /**
   * Profiles with per-file attributes (in-place conversion, KVM_SET_MEMORY_ATTRIBUTES2): the
   * file's own attributes over every index `[0, npages)`, shared runs included (attributes 0).
   */
  readonly attributes?: readonly GmemAttributeRange[];
  /** Pages by state, and `present` = all of them. */
  readonly counts: {
    readonly present: number;
    readonly allocated: number;
    readonly prepared: number;
    readonly poisoned: number;
    /** Pages out of the kernel's direct map (files with GUEST_MEMFD_FLAG_NO_DIRECT_MAP only). */
    readonly noDirectMap?: number;
  };
};

/** A VMA of the VMM's mm, in host virtual page numbers. */
export type VmaSnapshot = PageRange & {
  readonly kind: VmaKind;
  /** PROT_READ | PROT_WRITE | PROT_EXEC. */
  readonly prot: number;
  /** VM_SHARED. */
  readonly shared: boolean;
  readonly flags: number;
  readonly flagNames: readonly string[];
  /** vm_pgoff of the first page (the virtual page number for private anonymous memory). */
  readonly pgoff: PgOff;
  /** The mapped file's inode (guest_memfd, vCPU), or the shmem object's id. */
  readonly ino?: number;
  readonly shmem?: number;
};

/** The shmem object behind MAP_SHARED|MAP_ANONYMOUS mappings, its pages by page offset. */
export type ShmemSnapshot = {
  readonly id: number;
  readonly npages: number;
  readonly pages: readonly PageRange[];
};

export type Snapshot = {
  readonly profile: string;
  readonly vms: readonly VmSnapshot[];
  readonly gmemFiles: readonly GmemSnapshot[];
  readonly vmas: readonly VmaSnapshot[];
  /** Private anonymous pages present, by host virtual page number (the page table of anon). */
  readonly anonPages: readonly PageRange[];
  readonly shmem: readonly ShmemSnapshot[];
  /**
   * Physical frames: allocated, free (released, reusable) and ever handed out; `noDirectMap`:
   * frames out of the kernel's direct map (present only when there are some).
   */
  readonly frames: {
    readonly allocated: number;
    readonly free: number;
    readonly highWater: number;
    readonly noDirectMap?: number;
  };
  /** The SEV-SNP platform's state, on a host that has one (absent otherwise). */
  readonly sevSnp?: SevSnpSnapshot;
};

/** An SNP guest context of the PSP firmware (one per SNP VM past SNP_LAUNCH_START). */
export type SnpGuestSnapshot = {
  /** The VM's index (VmSnapshot.index). */
  readonly vm: number;
  /** The firmware's guest-context handle. */
  readonly handle: number;
  readonly state: 'INIT' | 'LAUNCH' | 'RUNNING';
  /** The ASID SNP_ACTIVATE bound (0: none). */
  readonly asid: number;
  /** The guest policy, "0x...". */
  readonly policy: string;
  /** The launch digest so far (the MEASUREMENT once RUNNING), 96 hex digits. */
  readonly launchDigest: string;
  /** Pages SNP_LAUNCH_UPDATE measured (VMSAs included). */
  readonly measuredPages: number;
};

/** A run of frames whose RMP entries are assigned alike (by pfn; Hypervisor frames are absent). */
export type RmpRange = PageRange & {
  readonly assigned: boolean;
  readonly size: '4K' | '2M';
  readonly immutable: boolean;
  readonly validated: boolean;
  readonly vmsa: boolean;
  readonly asid: number;
  /** RMP.GPA of the run's first frame, "0x...". */
  readonly gpa: string;
};

export type SevSnpSnapshot = {
  readonly guests: readonly SnpGuestSnapshot[];
  /** The RMP's assigned entries, by pfn. */
  readonly rmp: readonly RmpRange[];
};

const PRIVATE_ATTR = Number(KVM_MEMORY_ATTRIBUTE_PRIVATE);

/** The VMA flag names, in bit order (host_mm.ts VMA_*, named after the kernel's VM_* flags). */
const VMA_FLAG_NAMES: ReadonlyArray<readonly [number, string]> = [
  [VMA_HUGEPAGE, 'HUGEPAGE'],
  [VMA_NOHUGEPAGE, 'NOHUGEPAGE'],
  [VMA_DONTFORK, 'DONTCOPY'],
  [VMA_DONTDUMP, 'DONTDUMP'],
  [VMA_WIPEONFORK, 'WIPEONFORK'],
  [VMA_MERGEABLE, 'MERGEABLE'],
  [VMA_ACCOUNT, 'ACCOUNT'],
  [VMA_NORESERVE, 'NORESERVE'],
  [VMA_RAND_READ, 'RAND_READ'],
  [VMA_SEQ_READ, 'SEQ_READ'],
  [VMA_HUGETLB, 'HUGETLB'],
  [VMA_HUGETLB_1G, 'HUGETLB_1G'],
  [VMA_DROPPABLE, 'DROPPABLE'],
];

const hex = (v: bigint): string => '0x' + v.toString(16);

/**
 * The entries of `m` in [start, end) (clipped), mapped by `f` and merged where `same` says two
 * touching ranges describe the same thing.
 */
function ranges<V, R extends PageRange>(
  m: RangeMap<V>,
  start: number,
  end: number,
  f: (s: number, e: number, v: V) => R,
  same: (a: R, b: R) => boolean,
): R[] {
  const out: R[] = [];
  m.forEachIn(start, end, (s, e, v) => {
    const r = f(s, e, v);
    const last = out[out.length - 1];
    if (last !== undefined && last.end === s && same(last, r))
      out[out.length - 1] = { ...last, end: e };
    else out.push(r);
  });
  return out;
}

const ALL = Number.MAX_SAFE_INTEGER + 1;

/** Every entry of a range map as merged page ranges (values ignored). */
function covered<V>(m: RangeMap<V>, start = 0, end = ALL): PageRange[] {
  return ranges(
    m,
    start,
    end,
    (s, e) => ({ start: s, end: e }),
    () => true,
  );
}

/** Pages of guest_memfd `f` in [start, end), all of them and the prepared ones. */
function gmemCounts(
  f: GmemFile,
  start: number,
  end: number,
): { present: number; prepared: number } {
  let present = 0;
  let prepared = 0;
  f.pages.forEachIn(start, end, (s, e, v) => {
    present += e - s;
    if (v.state === 'prepared') prepared += e - s;
  });
  return { present, prepared };
}

/**
 * Host pages with memory behind host virtual pages [s, e): what a GUP of `userspace_addr` would
 * find without faulting (private anon pages and COW copies, shmem and guest_memfd page cache,
 * the vCPU's kvm_run/pio/ring pages: `kvm_vcpu_fault()`).
 */
function hostPages(mm: HostMm, s: Hvpn, e: Hvpn): number {
  let n = 0;
  for (const p of mm.vmas.piecesIn(s, e)) {
    const v: Vma = p.value;
    const len = p.end - p.start;
    if (!v.shared) n += mm.anon.countIn(p.start, p.end);
    if (v.obj instanceof ShmemObject || v.obj instanceof GmemFile)
      n += v.obj.pages.countIn(v.base, v.base + len);
    else if (v.obj instanceof VcpuFile)
      for (let i = v.base; i < Math.min(v.base + len, 3); i++)
        if (v.shared || mm.anon.get(p.start + (i - v.base)) === undefined) n++;
  }
  return n;
}

/**
 * A memslot's gfns split into runs of one attribute (shared / private), each with its backing
 * counts: private faults go to guest_memfd (`kvm_gmem_get_pfn()`), shared ones to the hva
 * (`__gfn_to_hva_memslot()`), unless the slot is guest_memfd-only (`kvm_memslot_is_gmem_only()`).
 */
function slotRuns(h: Host, vm: Vm, slot: Memslot): SlotRun[] {
  const start: number = slot.baseGfn;
  const end = slot.endGfn;
  const attrRuns: Array<{ start: number; end: number; private: boolean }> = [];
  const push = (s: number, e: number, priv: boolean): void => {
    const last = attrRuns[attrRuns.length - 1];
    if (last !== undefined && last.end === s && last.private === priv) last.end = e;
    else attrRuns.push({ start: s, end: e, private: priv });
  };
  let cur = start;
  vm.attrs.forEachIn(start, end, (s, e, v) => {
    if (s > cur) push(cur, s, false);
    push(s, e, (v & PRIVATE_ATTR) !== 0);
    cur = e;
  });
  if (cur < end) push(cur, end, false);
  const s2 = vm.stage2[slot.asId];
  const gm = slot.gmem;
  const file = gm !== null && gm.file !== null && !gm.file.released ? gm.file : null;
  return attrRuns.map((r): SlotRun => {
    const mapped = s2 === undefined ? 0 : s2.countIn(r.start, r.end);
    const viaGmem = r.private || slot.gmemOnly;
    if (viaGmem) {
      if (file === null) return { ...r, backing: 'none', allocated: 0, prepared: 0, mapped };
      const i0 = gm!.pgoff + (r.start - start);
      const c = gmemCounts(file, i0, i0 + (r.end - r.start));
      return { ...r, backing: 'gmem', allocated: c.present, prepared: c.prepared, mapped };
    }
    const hv = gfnToHvpnMemslot(slot, asGfn(r.start));
    const allocated = hostPages(vm.guestMm ?? h.mm, hv, hvpnAdd(hv, r.end - r.start));
    return { ...r, backing: 'host', allocated, prepared: 0, mapped };
  });
}

function memslotSnapshot(h: Host, vm: Vm, slot: Memslot): MemslotSnapshot {
  const gm = slot.gmem;
  return {
    as: slot.asId,
    id: slot.id,
    baseGfn: slot.baseGfn,
    npages: slot.npages,
    userspaceAddr: hex(slot.userspaceAddr),
    flags: Number(slot.flags),
    codePage: slot.id === TRACE_CODE_SLOT && slot.asId === 0,
    guestMemfd:
      gm === null ? null : { ino: gm.file === null ? null : gm.file.ino, offset: gm.pgoff },
    gmemOnly: slot.gmemOnly,
    runs: slotRuns(h, vm, slot),
  };
}

function vmSnapshot(h: Host, vm: Vm): VmSnapshot {
  const slots = [...vm.slots.values()].sort((a, b) => a.key - b.key);
  return {
    index: vm.index,
    type: Number(vm.type),
    typeName: vm.spec.name,
    refs: vm.refs,
    dead: vm.dead,
    vcpus: [...vm.vcpus.keys()].map(Number).sort((a, b) => a - b),
    preFaultAllowed: vm.preFaultAllowed,
    // kvm->mem_attr_array
    attributes: ranges(
      vm.attrs,
      0,
      ALL,
      (s, e, v) => ({ start: s, end: e, attributes: v, private: (v & PRIVATE_ATTR) !== 0 }),
      (a, b) => a.attributes === b.attributes,
    ),
    addressSpaces: vm.stage2.map((s2, as) => ({
      id: as,
      memslots: slots.filter((s) => s.asId === as).map((s) => memslotSnapshot(h, vm, s)),
      // The TDP MMU's roots for this address space, leaf SPTEs only.
      stage2: ranges(
        s2,
        0,
        ALL,
        (s, e, v) => ({
          start: s,
          end: e,
          level: v.level,
          writable: v.writable,
          private: v.private,
          source: v.source,
        }),
        (a, b) =>
          a.level === b.level &&
          a.writable === b.writable &&
          a.private === b.private &&
          a.source === b.source,
      ),
    })),
  };
}

/**
 * The page ranges of NO_DIRECT_MAP file `f`, split where the frames' direct-map state changes
 * (`FrameStore.noDirectMap`, by pfn), with the number of pages out of the direct map.
 */
function noDirectMapPages(
  h: Host,
  f: GmemFile,
  pages: readonly GmemPageRange[],
): { pages: GmemPageRange[]; out: number } {
  const res: GmemPageRange[] = [];
  let n = 0;
  const push = (r: GmemPageRange): void => {
    const last = res[res.length - 1];
    if (
      last !== undefined &&
      last.end === r.start &&
      last.state === r.state &&
      last.directMap === r.directMap
    )
      res[res.length - 1] = { ...last, end: r.end };
    else res.push(r);
  };
  for (const r of pages)
    f.pages.forEachIn(r.start, r.end, (s, e, v) => {
      let at = s;
      const base: number = v.base;
      for (const z of h.frames.noDirectMap.piecesIn(base, base + (e - s))) {
        const zs = s + (z.start - base);
        const ze = s + (z.end - base);
        if (zs > at) push({ start: at, end: zs, state: r.state });
        push({ start: zs, end: ze, state: r.state, directMap: false });
        n += ze - zs;
        at = ze;
      }
      if (at < e) push({ start: at, end: e, state: r.state });
    });
  return { pages: res, out: n };
}

/** The file's attributes (`gmem_inode->attributes`) over `[0, npages)`, gaps as shared runs. */
function gmemAttributes(f: GmemFile): GmemAttributeRange[] {
  const out: GmemAttributeRange[] = [];
  const push = (start: number, end: number, attributes: number): void => {
    const last = out[out.length - 1];
    if (last !== undefined && last.end === start && last.attributes === attributes)
      out[out.length - 1] = { ...last, end };
    else out.push({ start, end, attributes, private: (attributes & PRIVATE_ATTR) !== 0 });
  };
  let cur = 0;
  f.attrs.forEachIn(0, f.npages, (s, e, v) => {
    if (s > cur) push(cur, s, 0);
    push(s, e, v);
    cur = e;
  });
  if (cur < f.npages) push(cur, f.npages, 0);
  return out;
}

function gmemSnapshot(h: Host, f: GmemFile): GmemSnapshot {
  let allocated = 0;
  let prepared = 0;
  let poisoned = 0;
  // The inode's page cache (filemap), one range per state.
  let pages = ranges(
    f.pages,
    0,
    ALL,
    (s, e, v): GmemPageRange => {
      if (v.state === 'allocated') allocated += e - s;
      else if (v.state === 'prepared') prepared += e - s;
      else poisoned += e - s;
      return { start: s, end: e, state: v.state };
    },
    (a, b) => a.state === b.state,
  );
  // GUEST_MEMFD_FLAG_NO_DIRECT_MAP: which pages are out of the kernel's direct map.
  let noDirectMap: { noDirectMap?: number } = {};
  if (f.noDirectMap) {
    const d = noDirectMapPages(h, f, pages);
    pages = d.pages;
    noDirectMap = { noDirectMap: d.out };
  }
  return {
    ino: f.ino,
    vm: f.vm.index,
    size: hex(f.size),
    npages: f.npages,
    flags: Number(f.flags),
    fdRefs: f.fdRefs,
    mappedPages: f.mappedPages,
    bindings: ranges(
      f.bindings,
      0,
      ALL,
      (s, e, slot) => ({ start: s, end: e, as: slot.asId, slot: slot.id }),
      (a, b) => a.as === b.as && a.slot === b.slot,
    ),
    pages,
    ...(f.hugetlb
      ? {
          pageOrder: f.pageOrder,
          folios: ranges(
            f.folioOrders,
            0,
            ALL,
            (s, e, order): GmemFolioRange => ({ start: s, end: e, order }),
            (a, b) => a.order === b.order,
          ),
        }
      : {}),
    ...(h.profile.gmemMemoryAttributes === true ? { attributes: gmemAttributes(f) } : {}),
    counts: {
      present: allocated + prepared + poisoned,
      allocated,
      prepared,
      poisoned,
      ...noDirectMap,
    },
  };
}

function vmaSnapshot(s: number, e: number, v: Vma): VmaSnapshot {
  const base = {
    start: s,
    end: e,
    kind: v.kind,
    prot: v.prot,
    shared: v.shared,
    flags: v.flags,
    flagNames: VMA_FLAG_NAMES.filter(([bit]) => (v.flags & bit) !== 0).map(([, n]) => n),
    pgoff: v.base,
  };
  if (v.obj instanceof ShmemObject) return { ...base, shmem: v.obj.id };
  if (v.obj !== null) return { ...base, ino: v.obj.ino };
  return base;
}

/** A read-only, plain-data view of the model's state (see the module comment). */
export function snapshot(h: Host): Snapshot {
  const vms = [...h.allVms].sort((a, b) => a.index - b.index);
  const files = vms.flatMap((v) => [...v.gmemFiles]).sort((a, b) => a.ino - b.ino);
  // The VMM's mm: its maple tree of VMAs (no merging beyond the model's own: each is a VMA).
  const vmas: VmaSnapshot[] = [];
  const shmem = new Map<number, ShmemObject>();
  for (const x of h.mm.vmas.entries()) {
    vmas.push(vmaSnapshot(x.start, x.end, x.value));
    if (x.value.obj instanceof ShmemObject) shmem.set(x.value.obj.id, x.value.obj);
  }
  return {
    profile: h.profile.name,
    vms: vms.map((v) => vmSnapshot(h, v)),
    gmemFiles: files.map((f) => gmemSnapshot(h, f)),
    vmas,
    anonPages: covered(h.mm.anon),
    shmem: [...shmem.values()]
      .sort((a, b) => a.id - b.id)
      .map((o) => ({ id: o.id, npages: o.npages, pages: covered(o.pages) })),
    frames: {
      allocated: h.frames.allocated,
      free: h.frames.highWater - h.frames.allocated,
      highWater: h.frames.highWater,
      ...(h.frames.noDirectMap.size === 0
        ? {}
        : { noDirectMap: h.frames.noDirectMap.totalCovered() }),
    },
    ...(h.platform.sevSnp === undefined ? {} : { sevSnp: sevSnpSnapshot(h, vms) }),
  };
}

/** The SEV-SNP platform: every VM's firmware guest context, and the RMP's assigned runs. */
function sevSnpSnapshot(h: Host, vms: readonly Vm[]): SevSnpSnapshot {
  const guests: SnpGuestSnapshot[] = [];
  for (const v of vms) {
    if (!h.vms.has(v)) continue;
    const ctx = snpGuestContext(h, v);
    if (ctx === undefined) continue;
    guests.push({
      vm: v.index,
      handle: ctx.handle,
      state: ctx.state,
      asid: ctx.asid,
      policy: hex(ctx.policy),
      launchDigest: ctx.digest.hex(),
      measuredPages: ctx.measured.length,
    });
  }
  const rmp = h.platform.sevSnp!.rmp.dump().map(({ start, end, entry: e }): RmpRange => ({
    start,
    end,
    assigned: e.assigned,
    size: e.size,
    immutable: e.immutable,
    validated: e.validated,
    vmsa: e.vmsa,
    asid: e.asid,
    gpa: hex(e.gpa),
  }));
  return { guests, rmp };
}
