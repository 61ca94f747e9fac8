/**
 * design-2023-restrictedmem: the fd-based private memory of the UPM series v10 (Chao Peng et al.,
 * "KVM: mm: fd-based approach for supporting KVM", 2022-12-02, 9 patches; patch 01 "mm:
 * Introduce memfd_restricted system call to create restricted user memory" for mm/restrictedmem.c,
 * patch 03 "KVM: Extend the memslot to support fd-based private memory"; seed 004).
 *
 * A restricted fd is a file the VMM can neither map nor read: `memfd_restricted(flags)` makes an
 * inode on the restrictedmem pseudo filesystem (S_IFREG, so fallocate works) that wraps a shmem
 * memfd. Its fops are only `release` and `fallocate` (a punch first calls every bound notifier's
 * `invalidate_start`, then shmem's fallocate, then `invalidate_end`); its inode ops forward
 * getattr and allow one size change (`restrictedmem_setattr()`: -EPERM once i_size is set,
 * -EINVAL for an unaligned size). KVM binds a range of it to a memslot (KVM_MEM_PRIVATE with the
 * `_ext` struct's `restricted_fd`/`restricted_offset`) by registering a `restrictedmem_notifier`,
 * gets pages with `restrictedmem_get_page()` on private faults, and hears memory errors through
 * the notifier's `error` op (`restrictedmem_error_page()`; v10's KVM answers with a shutdown
 * request to every vCPU: restrictedmemError() below).
 *
 * How the model holds it: guest_memfd is restrictedmem moved into KVM (Sean Christopherson's
 * rework of v10 into KVM_CREATE_GUEST_MEMFD, 2023), and the two share the notifier-driven
 * invalidation, the no-mmap/no-read file and the private fault path. So a restricted fd's pages
 * live, once the fd is bound, in a guest_memfd file object of the binding VM (`inner`: same inode
 * number, no flags, private everywhere), which the 6.18 code drives: KVM's fault path
 * (`kvm_restricted_mem_get_pfn()` ≈ `kvm_gmem_get_pfn()`) and the punch's invalidation. What the
 * model cannot hold this way is not modelled rather than approximated: allocating with fallocate
 * (shmem_fallocate() in v10), binding one restricted fd into two VMs, binding past the end of the
 * file (v10 allocates there: restrictedmem_get_page() uses SGP_WRITE), and two memslots binding
 * one range (v10 maps the same pages into both). One difference stays: the inner file holds a
 * reference on its VM, as guest_memfd does, where restrictedmem's notifier held none (a VM whose
 * fds are closed lives until its restricted fds are closed too).
 */
import { NotModelled } from '../base/not_modelled.js';
import { err, ok, OK_VOID, type Result } from '../base/result.js';
import { isPageAligned, asPgOff, bytesToPgOff, type PgOff } from '../base/units.js';
import type { KernelCtx } from '../ctx.js';
import { hostAccessFrame } from '../mm/host_access.js';
import { KFile } from '../vfs/file.js';
import { kvmGmemCreate, kvmGmemFallocate, kvmGmemInvalidate } from './guest_memfd/guest_memfd.js';
import type { GmemFile, Vm } from './objects.js';
import type { FaultExit } from './arch_ops.js';

/** KVM_MEM_PRIVATE (v10 include/uapi/linux/kvm.h): bit 2, the bit KVM_MEM_GUEST_MEMFD took. */
export const KVM_MEM_PRIVATE = 4n;

/**
 * UPM v10's KVM_EXIT_MEMORY_FAULT (38; 6.18's is 39, after KVM_EXIT_LOONGARCH_IOCSR took 38) and
 * its KVM_MEMORY_EXIT_FLAG_PRIVATE (bit 0 of a __u32 `flags` followed by __u32 padding, at the
 * offset of 6.18's __u64 `flags`, whose PRIVATE is bit 3).
 */
export const UPM_V10_EXIT_MEMORY_FAULT = 38;
export const UPM_V10_MEMORY_EXIT_FLAG_PRIVATE = 1n;

/**
 * The private-fault exit of UPM v10 patch 8/9: `kvm_faultin_pfn_private()` on a gfn whose
 * attributes say private but whose memslot cannot be private (no KVM_MEM_PRIVATE, or no memslot)
 * calls `kvm_do_memory_fault_exit()`, which fills a KVM_EXIT_MEMORY_FAULT and returns
 * RET_PF_USER; `kvm_mmu_page_fault()` turns that into 0, so KVM_RUN succeeds with the exit.
 */
export const UPM_V10_PRIVATE_FAULT_EXIT: FaultExit = Object.freeze({
  kind: 'memfault',
  errno: 'EFAULT',
  flags: UPM_V10_MEMORY_EXIT_FLAG_PRIVATE,
  user: true,
});

/** A memfd_restricted() file. */
export class RestrictedmemFile extends KFile {
  readonly kind = 'restrictedmem' as const;
  /** i_size of the wrapped memfd: 0 until the one ftruncate() `restrictedmem_setattr()` allows. */
  size = 0n;
  /** KVM's hold on the pages once a memslot bound the fd (see the file comment). */
  inner: GmemFile | undefined;
  /** The pseudo filesystem's inode is S_IFREG (fallocate needs a regular file). */
  override get mmapMaxBytes(): bigint {
    return (1n << 63n) - 1n;
  }
}

/** `memfd_restricted(flags)` (v10 patch 01): flags must be 0. */
export function memfdRestricted(flags: bigint, ino: number): Result<RestrictedmemFile> {
  if (BigInt.asUintN(32, flags) !== 0n) return err('EINVAL', 'memfd_restricted: flags != 0');
  return ok(new RestrictedmemFile(ino));
}

/** `restrictedmem_setattr()` with ATTR_SIZE (ftruncate): once, to a page-aligned size. */
export function restrictedmemSetSize(f: RestrictedmemFile, length: bigint): Result<undefined> {
  if (f.size !== 0n) return err('EPERM', 'restrictedmem_setattr: i_size already set');
  if (!isPageAligned(length)) return err('EINVAL', 'restrictedmem_setattr: size not page aligned');
  f.size = length;
  return OK_VOID;
}

/**
 * `restrictedmem_fallocate()` after vfs_fallocate()'s generic checks. A punch goes through
 * `restrictedmem_punch_hole()`, which checks the alignment first (-EINVAL, bound or not), then
 * runs the bound notifiers' invalidate_start, shmem's punch and invalidate_end: with the fd bound,
 * kvmGmemFallocate()'s invalidation and truncation of the bound pages; unbound, no page can have
 * been allocated and nothing is removed. Anything else goes to shmem_fallocate(), which
 * allocates (and without FALLOC_FL_KEEP_SIZE grows i_size past the size ftruncate() set once):
 * not modelled.
 */
export function restrictedmemFallocate(
  k: KernelCtx,
  f: RestrictedmemFile,
  mode: number,
  offset: bigint,
  len: bigint,
): Result<undefined> {
  if ((mode & 2) === 0)
    throw new NotModelled(
      'fallocate() allocating in a restricted fd (UPM v10 passes it to shmem_fallocate(), which allocates and, without FALLOC_FL_KEEP_SIZE, grows i_size; design-2023-restrictedmem keeps the pages in the binding VM)',
    );
  if (!isPageAligned(offset) || !isPageAligned(len))
    return err('EINVAL', 'restrictedmem_punch_hole: offset or len not page aligned');
  if (f.inner === undefined) return OK_VOID;
  return kvmGmemFallocate(k, f.inner, mode, offset, len, 'fallocate');
}

/**
 * The restricted fd's file for KVM's binding of [offset, offset + size) to a memslot
 * (`kvm_restrictedmem_bind()`'s `fget()` and `file_is_restrictedmem()` have been passed): its
 * pages' home in `vm`, made on the first binding. UPM v10 checks neither the range against the
 * file's size nor against other memslots' bindings; what the model cannot hold is not modelled:
 * a range past the end of the file (restrictedmem_get_page() allocates there with SGP_WRITE; the
 * model's pages live within the file's size), a range another memslot has bound (v10 registers
 * one notifier per memslot and both memslots map the same pages; the model binds an index to one
 * memslot), and a second VM.
 */
export function restrictedmemForVm(
  k: KernelCtx,
  f: RestrictedmemFile,
  vm: Vm,
  offset: bigint,
  size: bigint,
): Result<GmemFile> {
  if (f.inner !== undefined && f.inner.vm !== vm)
    throw new NotModelled('one restricted fd bound into memslots of two VMs');
  if (offset + size > f.size)
    throw new NotModelled(
      `a KVM_MEM_PRIVATE memslot binding a restricted fd past its end (offset ${offset} + size ${size} > i_size ${f.size}): UPM v10 accepts it and allocates there on faults (SGP_WRITE)`,
    );
  if (f.inner !== undefined) {
    const start = bytesToPgOff(offset);
    if (f.inner.bindings.anyIn(start, start + Number(size >> 12n)))
      throw new NotModelled(
        'two memslots binding the same range of one restricted fd (UPM v10 accepts it: both map the same pages)',
      );
    return ok(f.inner);
  }
  const r = kvmGmemCreate(k, vm, f.size, 0n, f.ino);
  if (!r.ok) return r;
  // The restricted file holds the inner file as an fd would.
  r.value.fdRefs = 1;
  f.inner = r.value;
  return r;
}

/**
 * A memory error on the page at `offset` of a guest_memfd (`kvm_gmem_error_folio()`, 6.18): KVM
 * zaps the guest mappings of the page, and the page stays in the file poisoned, so the guest's
 * next fault on it fails with -EHWPOISON (a KVM_EXIT_MEMORY_FAULT). No page at `offset`: nothing
 * happens. Returns whether a page was hit.
 */
export function memoryFailure(k: KernelCtx, f: GmemFile, offset: bigint): boolean {
  const index: PgOff = bytesToPgOff(offset);
  const page = f.pages.get(index);
  if (page === undefined || page.state === 'poisoned') return false;
  kvmGmemInvalidate(k, f, index, asPgOff(index + 1), 'memory_failure');
  f.pages.set(index, index + 1, { ...page, state: 'poisoned' });
  return true;
}

/**
 * Mutant `restrictedmem_fd_is_memfd` only: pread() of a restricted fd as the wrapped shmem memfd
 * would answer it (`shmem_file_read_iter()`): up to `len` bytes from `offset`, clipped at i_size,
 * each page the file holds copied out (a host read of a private page), holes and poisoned pages
 * read as zeros. The faithful restrictedmem_fops have no read at all (ESPIPE).
 */
export function restrictedmemReadMutant(
  k: KernelCtx,
  f: RestrictedmemFile,
  len: bigint,
  offset: bigint,
): Result<Uint8Array> {
  if (offset >= f.size) return ok(new Uint8Array(0));
  const want = f.size - offset < len ? f.size - offset : len;
  const n = Number(want < 1n << 20n ? want : 1n << 20n);
  const out = new Uint8Array(n);
  for (let done = 0; done < n;) {
    const pos = offset + BigInt(done);
    const inPage = Number(pos & 4095n);
    const chunk = Math.min(4096 - inPage, n - done);
    const page = f.inner?.pages.get(bytesToPgOff(pos));
    if (
      page !== undefined &&
      page.state !== 'poisoned' &&
      hostAccessFrame(k, page.base, false, 'vmm') === undefined
    )
      k.frames.read(page.base, inPage, out, done, chunk);
    done += chunk;
  }
  return ok(out);
}

/**
 * A memory error on the page at `offset` of a restricted fd (UPM v10 patch 9/9):
 * `restrictedmem_error_page()` calls the `error` op of every notifier registered on the fd,
 * whatever range each memslot binds, and KVM's (`kvm_restrictedmem_error()` →
 * `kvm_arch_memory_mce()`) makes KVM_REQ_MEMORY_MCE on every vCPU of the memslot's VM; each
 * vCPU's next KVM_RUN sees the request in vcpu_enter_guest() and returns 0 with
 * KVM_EXIT_SHUTDOWN before the guest runs. Nothing is zapped and KVM records nothing about the
 * page: what memory_failure() then does to the shmem page (it stays in the page cache, marked
 * HWPoison) is outside the model, which leaves the page as it was. No page at `offset`, or no
 * memslot bound: nothing happens. Returns whether a request was made.
 */
export function restrictedmemError(f: RestrictedmemFile, offset: bigint): boolean {
  const inner = f.inner;
  if (inner === undefined || inner.bindings.size === 0) return false;
  if (inner.pages.get(bytesToPgOff(offset)) === undefined) return false;
  for (const vcpu of inner.vm.vcpus.values()) vcpu.memoryMceRequest = true;
  return true;
}
