/**
 * VFIO with the type1 IOMMU backend, minimal but faithful in its checks and errnos
 * (drivers/vfio/container.c, drivers/vfio/group.c, drivers/vfio/vfio_iommu_type1.c,
 * include/uapi/linux/vfio.h): a container (/dev/vfio/vfio), one IOMMU group (/dev/vfio/0, a
 * device bound to vfio-pci on the modelled host), VFIO_GROUP_SET_CONTAINER, VFIO_SET_IOMMU
 * (type1 or type1v2), VFIO_IOMMU_MAP_DMA / VFIO_IOMMU_UNMAP_DMA, and the device's DMA through the
 * IOMMU domain.
 *
 * MAP_DMA pins the vaddr's pages long-term (`vfio_pin_pages_remote()` → `pin_user_pages_remote()`
 * with FOLL_LONGTERM, FOLL_WRITE when the device may write) and maps them in the domain at the
 * IOVA; UNMAP_DMA unmaps and unpins (`vfio_unmap_unpin()`). Pins hold the frames: a page the VMM
 * frees while the device maps it lives on (FrameStore.held) and the device keeps reaching it.
 *
 * State is kept as ranges keyed by IOVA page (`iova >> 12`, exact below 2^53): `dmas` (the
 * `struct vfio_dma` extents) and `iopt` (the IOMMU page table: IOVA page → pfn).
 *
 * Not modelled: RLIMIT_MEMLOCK accounting (the VMM is taken to have CAP_IPC_LOCK: `lock_cap`),
 * dirty tracking and live update (UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR is NotModelled, so
 * MAP_DMA with VFIO_DMA_MAP_FLAG_VADDR never finds a vaddr-invalid mapping), iommufd, more than one
 * group or domain, and devices' own regions (BARs, interrupts).
 */
import { KFile } from '../vfs/file.js';
import { NotModelled } from '../base/not_modelled.js';
import { RangeMap, extentOps } from '../base/ranges/range_map.js';
import { err, ok, type Result } from '../base/result.js';
import { asHvpn, type Pfn } from '../base/units.js';
import type { MmStruct } from '../mm/mm_types.js';
import { gupRange, gupRelease } from '../mm/gup.js';
import { hostAccessFrame } from '../mm/host_access.js';

/** include/uapi/linux/vfio.h */
export const VFIO_TYPE1_IOMMU = 1;
export const VFIO_TYPE1v2_IOMMU = 3;
/** VFIO_UNMAP_ALL: an extension type1 announces, not an IOMMU type it opens. */
export const VFIO_UNMAP_ALL = 9;
export const VFIO_DMA_MAP_FLAG_READ = 1;
export const VFIO_DMA_MAP_FLAG_WRITE = 2;
export const VFIO_DMA_MAP_FLAG_VADDR = 4;
export const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = 1;
export const VFIO_DMA_UNMAP_FLAG_ALL = 2;
export const VFIO_DMA_UNMAP_FLAG_VADDR = 4;
/** `struct vfio_iommu_type1_dma_map` / `_unmap`: the size `argsz` must at least cover. */
export const VFIO_DMA_MAP_MINSZ = 32n;
export const VFIO_DMA_UNMAP_MINSZ = 24n;

/** vfio_iommu_type1's `dma_entry_limit` module parameter (default U16_MAX). */
export const DMA_ENTRY_LIMIT = 65535;

/** x86's IOMMU reserved region (the MSI window, IOMMU_RESV_MSI): no DMA mapping may cover it. */
const MSI_START = 0xfee00n;
const MSI_END = 0xfef00n;

/** The modelled host's one IOMMU group (a device bound to vfio-pci). */
export const VFIO_GROUP_ID = 0;

/** A `struct vfio_dma` extent: its id (one per MAP_DMA) and the vaddr page of its first page. */
type DmaExtent = { readonly id: number; readonly base: number; readonly prot: number };
const dmaOps = extentOps<DmaExtent>((a, b) => a.id === b.id && a.prot === b.prot);
/** An IOMMU page-table run: the pfn of its first IOVA page. */
type IoptExtent = { readonly base: number };
const ioptOps = extentOps<IoptExtent>(() => true);

/** `struct vfio_iommu` with its one `struct vfio_domain`. */
export class VfioIommu {
  readonly dmas = new RangeMap<DmaExtent>(dmaOps);
  readonly iopt = new RangeMap<IoptExtent>(ioptOps);
  dmaAvail = DMA_ENTRY_LIMIT;
  private nextId = 1;
  constructor(
    readonly v2: boolean,
    /** A private-capable (TEE-IO) device's domain: it may map guest-private memory. */
    readonly teeIo: boolean,
  ) {}
  newId(): number {
    return this.nextId++;
  }
}

/** /dev/vfio/vfio: `struct vfio_container`. */
export class VfioContainerFile extends KFile {
  readonly kind = 'vfio' as const;
  readonly groups = new Set<VfioGroupFile>();
  iommu: VfioIommu | undefined = undefined;
}

/** /dev/vfio/<group>: `struct vfio_group` as its fd sees it. */
export class VfioGroupFile extends KFile {
  readonly kind = 'vfio' as const;
  container: VfioContainerFile | undefined = undefined;
  constructor(
    ino: number,
    readonly group: number,
  ) {
    super(ino);
  }
}

/** Every IOMMU domain a host has (for the invariants). */
export function iommuDomains(files: Iterable<unknown>): VfioIommu[] {
  const out = new Set<VfioIommu>();
  for (const f of files)
    if (f instanceof VfioContainerFile && f.iommu !== undefined) out.add(f.iommu);
  return [...out];
}

/**
 * VFIO_GROUP_SET_CONTAINER (`vfio_group_ioctl_set_container()`): the fd must be open (EBADF),
 * the group must have no container yet (EINVAL), and the fd must be a container
 * (`vfio_container_from_file()`; an iommufd would attach through iommufd's compat layer, not
 * modelled): any other file is "not recognized", EBADFD (EINVAL before the iommufd rework of
 * 6.2). A container whose IOMMU is set attaches the group's device to its domain.
 */
export function vfioGroupSetContainer(g: VfioGroupFile, c: KFile | undefined): Result<undefined> {
  if (c === undefined) return err('EBADF', 'vfio_group_ioctl_set_container: fdget');
  if (g.container !== undefined)
    return err('EINVAL', 'vfio_group_ioctl_set_container: group has a container');
  if (!(c instanceof VfioContainerFile))
    return err('EBADFD', 'vfio_group_ioctl_set_container: the fd is not recognized');
  g.container = c;
  c.groups.add(g);
  return ok(undefined);
}

/**
 * VFIO_SET_IOMMU (`vfio_ioctl_set_iommu()`): a container without a group, or with an IOMMU
 * driver already, is EINVAL; each driver is asked `ops->ioctl(NULL, VFIO_CHECK_EXTENSION, type)`
 * and a type none supports is ENODEV. type1 says yes to VFIO_TYPE1_IOMMU, VFIO_TYPE1v2_IOMMU and
 * VFIO_UNMAP_ALL (`vfio_iommu_type1_check_extension()`), but its `open()` accepts only the two
 * IOMMU types (`default: return ERR_PTR(-EINVAL)`): VFIO_UNMAP_ALL is EINVAL.
 */
export function vfioSetIommu(
  c: VfioContainerFile,
  type: bigint,
  teeIo: boolean,
): Result<undefined> {
  if (c.groups.size === 0 || c.iommu !== undefined)
    return err('EINVAL', 'vfio_ioctl_set_iommu: no group, or an IOMMU driver already set');
  if (type === BigInt(VFIO_UNMAP_ALL))
    return err('EINVAL', 'vfio_iommu_type1_open: VFIO_UNMAP_ALL is not an IOMMU type');
  if (type !== BigInt(VFIO_TYPE1_IOMMU) && type !== BigInt(VFIO_TYPE1v2_IOMMU))
    return err('ENODEV', 'vfio_ioctl_set_iommu: no driver for this type');
  c.iommu = new VfioIommu(type === BigInt(VFIO_TYPE1v2_IOMMU), teeIo);
  return ok(undefined);
}

/** The container's IOMMU, or the errno of a type1 ioctl on a container without one. */
function iommuOf(c: VfioContainerFile): VfioIommu | undefined {
  return c.iommu;
}

/**
 * VFIO_IOMMU_MAP_DMA (`vfio_iommu_type1_map_dma()` → `vfio_dma_do_map()`), in the kernel's order
 * (since "vfio/type1: sanitize for overflow using check_*_overflow()", vfio-v6.18-rc4: size 0
 * EINVAL and an IOVA or vaddr wrap EOVERFLOW come before the prot/VADDR and alignment checks).
 * The u64 → size_t/dma_addr_t truncation check (EOVERFLOW) cannot fail on x86-64.
 */
export function vfioMapDma(
  mm: MmStruct,
  c: VfioContainerFile,
  a: { argsz: bigint; flags: bigint; vaddr: bigint; iova: bigint; size: bigint },
): Result<undefined> {
  const iommu = iommuOf(c);
  // vfio_fops_unl_ioctl(): without an IOMMU driver the ioctl is -EINVAL... the driver's ioctl
  // is reached only once VFIO_SET_IOMMU succeeded.
  if (iommu === undefined) return err('EINVAL', 'vfio_fops_unl_ioctl: no IOMMU driver');
  const mask = BigInt(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE | VFIO_DMA_MAP_FLAG_VADDR);
  if (a.argsz < VFIO_DMA_MAP_MINSZ || (a.flags & ~mask) !== 0n)
    return err('EINVAL', 'vfio_iommu_type1_map_dma: argsz or flags');
  const setVaddr = (a.flags & BigInt(VFIO_DMA_MAP_FLAG_VADDR)) !== 0n;
  const prot = Number(a.flags & 3n);
  if (a.size === 0n) return err('EINVAL', 'vfio_dma_do_map: size 0');
  const U64 = (1n << 64n) - 1n;
  if (a.iova + a.size - 1n > U64 || a.vaddr + a.size - 1n > U64)
    return err('EOVERFLOW', 'vfio_dma_do_map: check_add_overflow() of the IOVA or vaddr');
  if ((prot !== 0 && setVaddr) || (prot === 0 && !setVaddr))
    return err('EINVAL', 'vfio_dma_do_map: prot and VADDR');
  // pgsize = the smallest page size of the domain's bitmap (4 KiB).
  if (((a.size | a.iova | a.vaddr) & 0xfffn) !== 0n)
    return err('EINVAL', 'vfio_dma_do_map: unaligned');
  const s = Number(a.iova >> 12n);
  const n = Number(a.size >> 12n);
  const e = s + n;
  const found = iommu.dmas.anyIn(s, e);
  if (setVaddr) {
    // `dma = vfio_find_dma(); if (!dma) -ENOENT; else if (!dma->vaddr_invalid || ...) -EINVAL`:
    // the model has no vaddr-invalid mapping (UNMAP_DMA with VFIO_DMA_UNMAP_FLAG_VADDR is not
    // modelled), so an overlapping mapping is always EINVAL.
    return found
      ? err('EINVAL', 'vfio_dma_do_map: VADDR on a mapping whose vaddr is valid')
      : err('ENOENT', 'vfio_dma_do_map: VADDR without a mapping');
  }
  if (found) return err('EEXIST', 'vfio_dma_do_map: vfio_find_dma() found an overlap');
  if (iommu.dmaAvail === 0) return err('ENOSPC', 'vfio_dma_do_map: dma_entry_limit reached');
  // vfio_iommu_iova_dma_valid(): the range must avoid the reserved regions.
  if (BigInt(s) < MSI_END && BigInt(e) > MSI_START)
    return err('EINVAL', 'vfio_iommu_iova_dma_valid: IOVA in a reserved region');
  // vfio_pin_map_dma(): pin (FOLL_LONGTERM, FOLL_WRITE when the device writes) and map.
  const write = (prot & VFIO_DMA_MAP_FLAG_WRITE) !== 0;
  const r = gupRange(mm, asHvpn(Number(a.vaddr >> 12n)), n, {
    write,
    pin: true,
    longterm: true,
  });
  if (r.got < n) {
    // vfio_pin_pages_remote() failed: the pages pinned so far are unpinned, the vfio_dma
    // removed (-EFAULT from vaddr_get_pfns(); design-2024-shmem-exclusive-pin: -EBUSY when a
    // page is pinned exclusively: pin_user_pages_remote() returns it at that page).
    gupRelease(mm, r.runs, true);
    if (r.busy === true)
      return err('EBUSY', 'vfio_pin_pages_remote: the page is pinned exclusively (FOLL_EXCLUSIVE)');
    return err('EFAULT', 'vfio_pin_pages_remote: a page could not be pinned');
  }
  const id = iommu.newId();
  iommu.dmas.set(s, e, { id, base: Number(a.vaddr >> 12n), prot });
  let at = s;
  for (const run of r.runs) {
    iommu.iopt.set(at, at + run.count, { base: run.base });
    at += run.count;
  }
  iommu.dmaAvail--;
  return ok(undefined);
}

/**
 * VFIO_IOMMU_UNMAP_DMA (`vfio_iommu_type1_unmap_dma()` → `vfio_dma_do_unmap()`): returns the
 * bytes unmapped (the kernel writes them back into `size`).
 */
export function vfioUnmapDma(
  mm: MmStruct,
  c: VfioContainerFile,
  a: { argsz: bigint; flags: bigint; iova: bigint; size: bigint },
  mutants?: { has(name: string): boolean },
): Result<bigint> {
  const iommu = iommuOf(c);
  if (iommu === undefined) return err('EINVAL', 'vfio_fops_unl_ioctl: no IOMMU driver');
  const mask = BigInt(
    VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR,
  );
  if (a.argsz < VFIO_DMA_UNMAP_MINSZ || (a.flags & ~mask) !== 0n)
    return err('EINVAL', 'vfio_iommu_type1_unmap_dma: argsz or flags');
  if ((a.flags & BigInt(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP | VFIO_DMA_UNMAP_FLAG_VADDR)) !== 0n)
  // Dirty tracking and live update (marking the vaddr invalid) are not modelled; the kernel's
  // answers (a size, or EINVAL for combinations) are not faked.
  {
    // vfio_iommu_type1_unmap_dma(): a dirty bitmap with UNMAP_ALL or VADDR is EINVAL.
    if (
      (a.flags & BigInt(VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP)) !== 0n &&
      (a.flags & BigInt(VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR)) !== 0n
    )
      return err('EINVAL', 'vfio_iommu_type1_unmap_dma: dirty bitmap with ALL or VADDR');
    throw new NotModelled('VFIO_IOMMU_UNMAP_DMA with GET_DIRTY_BITMAP or VADDR');
  }
  const all = (a.flags & BigInt(VFIO_DMA_UNMAP_FLAG_ALL)) !== 0n;
  let iova = a.iova;
  let size = a.size;
  if (all) {
    if (iova !== 0n || size !== 0n)
      return err('EINVAL', 'vfio_dma_do_unmap: UNMAP_ALL with a range');
    size = (1n << 64n) - 1n;
  } else if (size === 0n || (size & 0xfffn) !== 0n)
    return err('EINVAL', 'vfio_dma_do_unmap: size 0 or unaligned');
  if ((iova & 0xfffn) !== 0n) return err('EINVAL', 'vfio_dma_do_unmap: iova unaligned');
  if (!all && iova + size - 1n > (1n << 64n) - 1n)
    return err('EOVERFLOW', 'vfio_dma_do_unmap: check_add_overflow() of the range');
  const MAXK = 2 ** 52;
  const s = Number(iova >> 12n);
  const e = all ? MAXK : Math.min(MAXK, Number((iova + size) >> 12n));
  // v2: a range may not split a mapping.
  if (iommu.v2 && !all) {
    const first = iommu.dmas.entryAt(s);
    if (first !== undefined && first.start !== s)
      return err('EINVAL', 'vfio_dma_do_unmap: v2 range starts inside a mapping');
    const last = iommu.dmas.entryAt(e - 1);
    if (last !== undefined && last.end !== e)
      return err('EINVAL', 'vfio_dma_do_unmap: v2 range ends inside a mapping');
  }
  // n = vfio_find_dma_first_node(); while (n) { ... vfio_remove_dma(); n = rb_next(n); }: the
  // mappings the range touches are removed whole, in IOVA order. v1 (`!iommu->v2 && iova >
  // dma->iova`) stops at the first one that starts before `iova`: an unmap from inside a mapping
  // returns success with zero bytes unmapped and leaves it mapped and pinned (only the first
  // mapping found can start before `iova`, so v1 then removes nothing).
  let unmapped = 0n;
  for (const d of iommu.dmas.piecesIn(s, e)) {
    const ent = iommu.dmas.entryAt(d.start);
    if (ent === undefined) continue;
    const ds = ent.start;
    const de = ent.end;
    if (!iommu.v2 && ds < s) break;
    // vfio_unmap_unpin(): unmap from the domain, unpin every page.
    for (const p of iommu.iopt.piecesIn(ds, de)) {
      if (mutants?.has('iommu_unmap_keeps_mapping') !== true) iommu.iopt.delete(p.start, p.end);
      gupRelease(mm, [{ base: p.value.base as Pfn, count: p.end - p.start }], true);
    }
    iommu.dmas.delete(ds, de);
    iommu.dmaAvail++;
    unmapped += BigInt(de - ds) << 12n;
  }
  iova = 0n;
  return ok(unmapped + iova);
}

/**
 * The device's DMA at `iova` through the domain (a model step, no syscall): a read returns the
 * bytes, a write stores them. An IOVA the domain does not map, or maps without the access's
 * permission, is an IOMMU fault (DMAR / IO_PAGE_FAULT): EFAULT here. The platform's check of a
 * device access to the frame (`hostAccessFrame()`, path 'dma') applies as for the host.
 */
export function vfioDma(
  mm: MmStruct,
  c: VfioContainerFile,
  iova: bigint,
  len: number,
  write: Uint8Array | null,
): Result<Uint8Array | undefined> {
  const iommu = c.iommu;
  if (iommu === undefined) return err('EFAULT', 'IOMMU: no domain');
  const out = write === null ? new Uint8Array(len) : undefined;
  let done = 0;
  while (done < len) {
    const a = iova + BigInt(done);
    const page = Number(a >> 12n);
    const off = Number(a & 0xfffn);
    const n = Math.min(len - done, 4096 - off);
    const pt = iommu.iopt.get(page);
    const d = iommu.dmas.get(page);
    const need = write === null ? VFIO_DMA_MAP_FLAG_READ : VFIO_DMA_MAP_FLAG_WRITE;
    if (pt === undefined || d === undefined || (d.prot & need) === 0)
      return err('EFAULT', 'IOMMU fault: IOVA not mapped for this access');
    const pfn = pt.base as Pfn;
    const denied = hostAccessFrame(mm.k, pfn, write !== null, 'dma');
    if (denied !== undefined) return err('EFAULT', 'IOMMU fault: the platform refused the access');
    if (write !== null) mm.k.frames.write(pfn, off, write, done, n);
    else mm.k.frames.read(pfn, off, out!, done, n);
    done += n;
  }
  return ok(out);
}
