/**
 * fs/splice.c: vmsplice(2) with one iovec, the user-visible way to hold plain references
 * (FOLL_GET, not pins) on a process's pages: `vmsplice_to_pipe()` → `iter_to_pipe()` →
 * `iov_iter_get_pages2()` puts each page into a pipe buffer by reference; the references drop
 * when the buffers are consumed (vmsplice of the read end, `vmsplice_to_user()`) or the pipe is
 * freed (both ends closed). This is how guest_memfd_conversions_test's elevated_refcount holds a
 * guest_memfd folio (kernel-uapi.md §6.1).
 */
import { err, ok, type Result } from '../base/result.js';
import { NotModelled } from '../base/not_modelled.js';
import { asHva, hvaToHvpn, offsetInPage, PAGE_SIZE, type Hva } from '../base/units.js';
import type { KFile } from './file.js';
import { PipeFile } from './pipe.js';
import type { MmStruct } from '../mm/mm_types.js';
import { gupRange, gupRelease } from '../mm/gup.js';
import { cpuAccess } from '../mm/memory.js';

/** SPLICE_F_* (include/linux/splice.h). */
export const SPLICE_F_MOVE = 1;
export const SPLICE_F_NONBLOCK = 2;
export const SPLICE_F_MORE = 4;
export const SPLICE_F_GIFT = 8;
export const SPLICE_F_ALL = SPLICE_F_MOVE | SPLICE_F_NONBLOCK | SPLICE_F_MORE | SPLICE_F_GIFT;

/** MAX_RW_COUNT (include/linux/fs.h): INT_MAX & PAGE_MASK, the most one read/write moves. */
const MAX_RW_COUNT = 0x7fff_f000n;

/**
 * `SYSCALL_DEFINE4(vmsplice)` with one iovec {addr, len}: the flags check, `vmsplice_type()`
 * (a write end splices user pages into the pipe, a read end copies the pipe out to user memory),
 * `import_iovec()`, then `vmsplice_to_pipe()` or `vmsplice_to_user()`. Returns the bytes moved.
 * Where the kernel would sleep (a full pipe, or an empty one with writers, without
 * SPLICE_F_NONBLOCK) the model cannot go on: NotModelled.
 */
export function vmsplice(
  mm: MmStruct,
  file: KFile | undefined,
  addr: Hva,
  len: bigint,
  flags: number,
): Result<number> {
  if ((flags & ~SPLICE_F_ALL) !== 0) return err('EINVAL', 'vmsplice: flags & ~SPLICE_F_ALL');
  // vmsplice_type(): FMODE_WRITE → ITER_SOURCE, FMODE_READ → ITER_DEST, else -EBADF. Every file
  // the model opens has FMODE_READ (O_RDWR) except a pipe's write end.
  if (file === undefined) return err('EBADF', 'vmsplice: fd not open');
  const toPipe = file instanceof PipeFile && file.writeEnd;
  // import_iovec() → __import_iovec(): a negative length is EINVAL, more than MAX_RW_COUNT is
  // truncated, and the segment must pass access_ok() (EFAULT).
  if (BigInt.asIntN(64, len) < 0n) return err('EINVAL', 'import_iovec: iov_len < 0');
  const n = len > MAX_RW_COUNT ? MAX_RW_COUNT : len;
  if (addr + n > mm.k.profile.taskSizeMax) return err('EFAULT', 'import_iovec: access_ok()');
  if (n === 0n) return ok(0);
  // get_pipe_info(file, true): not a pipe → -EBADF.
  if (!(file instanceof PipeFile)) return err('EBADF', 'vmsplice: get_pipe_info() is NULL');
  const pipe = file.pipe;
  if (toPipe) {
    // vmsplice_to_pipe() → wait_for_space(): no readers → SIGPIPE and -EPIPE; a full pipe is
    // -EAGAIN with SPLICE_F_NONBLOCK, else the caller sleeps until a reader makes room.
    if (pipe.readers === 0) return err('EPIPE', 'wait_for_space: no readers (SIGPIPE)');
    if (pipe.full) {
      if ((flags & SPLICE_F_NONBLOCK) !== 0) return err('EAGAIN', 'wait_for_space: pipe full');
      throw new NotModelled(
        'vmsplice would sleep: the pipe is full and SPLICE_F_NONBLOCK is not set',
      );
    }
    // iter_to_pipe(): `while (iov_iter_count(from))`, iov_iter_get_pages2() (get_user_pages_fast()
    // without FOLL_WRITE: the pipe reads the pages) of up to 16 pages at a time, whatever the
    // ring's free slots, then one buffer per page by add_to_pipe(); on a full ring the rest of
    // the batch is put back (put_page(), iov_iter_revert()) and the call returns what it added.
    // So a batch past the free slots is still faulted in (allocated), then dropped.
    const BATCH = 16;
    let done = 0;
    let at = addr;
    const end = addr + n;
    out: while (at < end) {
      const first = hvaToHvpn(at);
      const pages = Number(((end - 1n) >> 12n) - BigInt(first)) + 1;
      const r = gupRange(mm, first, Math.min(BATCH, pages), {
        write: false,
        pin: false,
        longterm: false,
      });
      if (r.got === 0) break;
      for (let ri = 0; ri < r.runs.length; ri++) {
        const run = r.runs[ri]!;
        for (let i = 0; i < run.count; i++) {
          if (pipe.full) {
            gupRelease(
              mm,
              [{ base: (run.base + i) as typeof run.base, count: run.count - i }],
              false,
            );
            gupRelease(mm, r.runs.slice(ri + 1), false);
            break out;
          }
          const off = offsetInPage(at);
          const chunk = Math.min(Number(end - at), PAGE_SIZE - off);
          pipe.bufs.push({ pfn: (run.base + i) as typeof run.base, offset: off, len: chunk });
          done += chunk;
          at = asHva(at + BigInt(chunk));
        }
      }
      // A short batch: the next iov_iter_get_pages2() starts at the page that failed, and fails.
      if (r.got < Math.min(BATCH, pages)) break;
    }
    // iov_iter_get_pages2() failing on the first page: -EFAULT.
    if (done === 0) return err('EFAULT', 'iter_to_pipe: iov_iter_get_pages2() got no page');
    return ok(done);
  }
  // vmsplice_to_user() → splice_from_pipe_next(): an empty pipe without writers is 0 (EOF); with
  // writers it is -EAGAIN under SPLICE_F_NONBLOCK, else the caller sleeps.
  if (pipe.bufs.length === 0) {
    if (pipe.writers === 0) return ok(0);
    if ((flags & SPLICE_F_NONBLOCK) !== 0)
      return err('EAGAIN', 'splice_from_pipe_next: empty pipe');
    throw new NotModelled(
      'vmsplice would sleep: the pipe is empty and SPLICE_F_NONBLOCK is not set',
    );
  }
  // pipe_to_user(): copy each buffer's bytes to the user range (copy_page_to_iter()); a fully
  // consumed buffer is released (pipe_buf_release() → put_page()).
  let done = 0;
  const want = Number(n);
  while (done < want && pipe.bufs.length > 0) {
    const b = pipe.bufs[0]!;
    const chunk = Math.min(b.len, want - done);
    // copy_page_to_iter() reads the page through the kernel's own mapping of it (the direct map
    // on x86-64). A frame out of the direct map (NO_DIRECT_MAP guest_memfd) would be a kernel page
    // fault, an oops the model cannot continue from: NotModelled. The kernel never gets there:
    // GUP refuses AS_NO_DIRECT_MAP VMAs (check_vma_flags()), so vmsplice cannot put such a page
    // into a pipe (EFAULT above).
    if (!mm.k.frames.inDirectMap(b.pfn))
      throw new NotModelled(
        `pipe_to_user() would read pfn 0x${b.pfn.toString(16)} through the kernel direct map, which no longer maps it (a kernel oops)`,
      );
    const data = new Uint8Array(chunk);
    mm.k.frames.read(b.pfn, b.offset, data);
    const w = cpuAccess(mm, asHva(addr + BigInt(done)), chunk, data);
    if (!w.ok) {
      if (done === 0) return err('EFAULT', 'pipe_to_user: copy_page_to_iter() faulted');
      break;
    }
    done += chunk;
    b.offset += chunk;
    b.len -= chunk;
    if (b.len === 0) pipe.releaseOldest(mm.k.frames);
  }
  return ok(done);
}
