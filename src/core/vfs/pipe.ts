/**
 * fs/pipe.c: a pipe (pipe2(2)) as far as page references go. A pipe is one inode with a ring of
 * `pipe_buffer`s (PIPE_DEF_BUFFERS = 16 slots by default) and two open files, the read end and
 * the write end. vmsplice(2) (splice.ts) puts user pages into the ring by reference; each buffer
 * holds one reference on its page until the buffer is consumed (read(2)) or the pipe is freed
 * (`free_pipe_info()` when the last end is closed), `pipe_buf_release()` → `put_page()`.
 *
 * The ring is the kernel's own bounded array (16 slots), not an array sized by memory.
 */
import { KFile } from './file.js';
import type { Pfn } from '../base/units.js';
import type { FrameStore } from '../base/frames.js';

/** PIPE_DEF_BUFFERS (include/linux/pipe_fs_i.h): the slots of a new pipe's ring. */
export const PIPE_DEF_BUFFERS = 16;

/** `struct pipe_buffer`: a page reference and the bytes of it the buffer holds. */
export type PipeBuffer = { readonly pfn: Pfn; offset: number; len: number };

/** `struct pipe_inode_info`. */
export class PipeInode {
  /** The ring, oldest first (`pipe->tail` .. `pipe->head`). */
  readonly bufs: PipeBuffer[] = [];
  /** `pipe->max_usage`. */
  readonly maxUsage = PIPE_DEF_BUFFERS;
  readers = 1;
  writers = 1;

  /** `pipe_full()`. */
  get full(): boolean {
    return this.bufs.length >= this.maxUsage;
  }

  /** `pipe_buf_release()` of the oldest buffer: `put_page()` of its page. */
  releaseOldest(frames: FrameStore): void {
    const b = this.bufs.shift();
    if (b !== undefined) frames.putRefs(b.pfn, 1, 'ref');
  }

  /** `free_pipe_info()`: release every buffer still in the ring. */
  free(frames: FrameStore): void {
    while (this.bufs.length > 0) this.releaseOldest(frames);
  }
}

/** One end of a pipe (the `struct file` pipe2() installs: O_RDONLY for [0], O_WRONLY for [1]). */
export class PipeFile extends KFile {
  readonly kind = 'pipe' as const;
  constructor(
    ino: number,
    readonly pipe: PipeInode,
    /** FMODE_WRITE (the write end) rather than FMODE_READ. */
    readonly writeEnd: boolean,
  ) {
    super(ino);
  }

  /**
   * `pipe_release()` of this end: the end's count drops; when neither end is open any more the
   * inode's `free_pipe_info()` releases the buffers (and with them the page references).
   */
  release(frames: FrameStore): void {
    if (this.writeEnd) this.pipe.writers--;
    else this.pipe.readers--;
    if (this.pipe.readers === 0 && this.pipe.writers === 0) this.pipe.free(frames);
  }
}
