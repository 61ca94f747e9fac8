/**
 * design-2020-separate-mm: an address space that belongs to no process (Andy Lutomirski's reply
 * to "[RFCv2 00/16] KVM protected memory extension", 2020-10-26: "create an mm_struct that is
 * not loaded in CR3 anywhere. Instead, KVM will reference it, much as it currently references
 * QEMU's mm_struct, to mirror mappings into the guest"). The thread links an earlier sketch of his
 * (Sept 2020, `address_space_create()` / `KVM_MAP_ADDRESS_SPACE`) that is not among the sources
 * this model was built from: the uAPI below is this model's reading of the reply, the least
 * surprising one in the spirit of those names (core/profiles/designs.ts lists the choices).
 *
 * - `address_space_create(flags)`: an fd (an anonymous inode, "[address_space]") that owns a new,
 *   empty `mm_struct`. No task runs in it, so no CPU access, no get_user_pages() of a process
 *   and no /proc/PID/mem reaches it. The fd has no read, write or mmap (ESPIPE, ENODEV: the
 *   generic answers for an anonymous inode without those operations).
 * - `address_space_mmap(as_fd, addr, length, prot, flags, src)`: maps [addr, addr + length) of
 *   that mm, replacing what was there (MAP_FIXED: the old mapping is unmapped first, so its mmu
 *   notifiers hear about it and private pages are freed). `src` null: private anonymous memory
 *   (MAP_PRIVATE), which nothing but this mm maps: the guest's private memory. `src` an address
 *   of the caller's own mm: the shmem object behind the caller's MAP_SHARED mapping there
 *   (MAP_SHARED), so the page is one frame in both address spaces (the model has no
 *   memfd_create(): the shared memory is named by the VMM's own mapping of it).
 * - `address_space_munmap(as_fd, addr, length)`: munmap(2) of that mm.
 */
import { err, ok, OK_VOID, type Result } from '../base/result.js';
import {
  MAP_ANONYMOUS,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_READ,
  PROT_WRITE,
} from '../base/uapi.js';
import {
  asHva,
  bytesToPagesN,
  hvaToHvpn,
  hvpnAdd,
  isPageAligned,
  pageAlignUp,
  type Hva,
} from '../base/units.js';
import { KFile } from '../vfs/file.js';
import type { MmCtx } from './mm_ctx.js';
import { HostMm } from './host_mm.js';
import { ShmemObject } from './shmem.js';
import { unmapRange } from './mmap.js';
import type { Vma } from './mm_types.js';

/** The fd `address_space_create()` returns: it owns an mm no task runs in. */
export class AddressSpaceFile extends KFile {
  readonly kind = 'address_space' as const;
  /** VMs that resolve their memslots in this mm (KVM_MAP_ADDRESS_SPACE holds the file). */
  vmRefs = 0;
  constructor(
    ino: number,
    readonly mm: HostMm,
  ) {
    super(ino);
  }
  /** An anonymous inode: noexec mount, no mmap (do_mmap(): ENODEV). */
  override get noexec(): boolean {
    return true;
  }
}

/** `address_space_create(flags)`: flags must be 0 (EINVAL). */
export function addressSpaceCreate(k: MmCtx, flags: bigint, ino: number): Result<AddressSpaceFile> {
  if (BigInt.asUintN(32, flags) !== 0n) return err('EINVAL', 'address_space_create: flags != 0');
  return ok(new AddressSpaceFile(ino, new HostMm(k)));
}

/**
 * `address_space_mmap()` into `target` (the address space's mm); `caller` is the calling
 * process's own mm, where `src` is looked up. Checks in order: flags (MAP_PRIVATE or MAP_SHARED,
 * nothing else: EINVAL), prot (R/W/X only: EINVAL), addr page aligned and length non-zero
 * (EINVAL), the range below TASK_SIZE (ENOMEM, as get_unmapped_area() with MAP_FIXED); with
 * `src`: MAP_SHARED only (EINVAL), src page aligned (EINVAL), nothing mapped at src (EFAULT),
 * not one MAP_SHARED anonymous (shmem) mapping over the whole source range (EINVAL), PROT_WRITE
 * where the source is not writable (EACCES); without: MAP_PRIVATE only (EINVAL).
 */
export function addressSpaceMmap(
  target: HostMm,
  caller: HostMm,
  addr: Hva,
  length: bigint,
  prot: number,
  flags: number,
  src: Hva | null,
): Result<undefined> {
  const type = flags & ~MAP_ANONYMOUS;
  if (type !== MAP_PRIVATE && type !== MAP_SHARED)
    return err('EINVAL', 'address_space_mmap: flags must be MAP_PRIVATE or MAP_SHARED');
  if ((prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC)) !== 0)
    return err('EINVAL', 'address_space_mmap: unknown prot bits');
  if (!isPageAligned(addr)) return err('EINVAL', 'address_space_mmap: addr not page aligned');
  const rounded = pageAlignUp(length);
  if (length === 0n || rounded === 0n) return err('EINVAL', 'address_space_mmap: length 0');
  const task = target.k.profile.taskSizeMax;
  if (addr > task || rounded > task - addr)
    return err('ENOMEM', 'address_space_mmap: range beyond TASK_SIZE');
  const npages = Number(bytesToPagesN(rounded));
  const s = hvaToHvpn(addr);
  const e = hvpnAdd(s, npages);
  if (src === null) {
    if (type !== MAP_PRIVATE)
      return err('EINVAL', 'address_space_mmap: anonymous memory is MAP_PRIVATE');
    unmapRange(target, s, e);
    const r = target.mmap(undefined, rounded, prot, MAP_PRIVATE | MAP_ANONYMOUS, 0n, addr);
    return r.ok ? OK_VOID : r;
  }
  if (type !== MAP_SHARED)
    return err('EINVAL', "address_space_mmap: the caller's memory is mapped MAP_SHARED");
  if (!isPageAligned(src)) return err('EINVAL', 'address_space_mmap: src not page aligned');
  const ss = hvaToHvpn(src);
  const ve = caller.vmas.entryAt(ss);
  if (ve === undefined) return err('EFAULT', 'address_space_mmap: nothing mapped at src');
  const v = ve.value;
  if (!(v.obj instanceof ShmemObject) || !v.shared || ve.end < ss + npages)
    return err(
      'EINVAL',
      'address_space_mmap: src is not one MAP_SHARED anonymous mapping of the whole length',
    );
  if ((prot & PROT_WRITE) !== 0 && (v.prot & PROT_WRITE) === 0)
    return err('EACCES', 'address_space_mmap: PROT_WRITE of a read-only source');
  const obj = v.obj;
  unmapRange(target, s, e);
  const vma: Vma = {
    base: (v.base + (ss - ve.start)) as Vma['base'],
    kind: 'shmem',
    obj,
    prot,
    shared: true,
    mayExec: v.mayExec,
    locked: false,
    growsdown: false,
    flags: 0,
  };
  target.vmas.set(s, e, vma);
  obj.mappedPages += npages;
  return OK_VOID;
}

/** `address_space_munmap()`: munmap(2) of the address space's mm. */
export function addressSpaceMunmap(
  target: HostMm,
  addr: bigint,
  length: bigint,
): Result<undefined> {
  return target.munmap(asHva(addr), length);
}
