/**
 * Page references in host mm: vmsplice holds plain references on the process's pages (fs/splice.c
 * `iov_iter_get_pages2()`), a page freed by its owner lives on while referenced (`put_page()` frees
 * at refcount zero) and is accounted to the references, and draining or closing the pipe drops
 * them. Checked runs: every invariant holds at every step.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { runCheckedLines } from './helpers.js';
import { FrameStore } from '../../src/core/base/frames.js';

const X86 = getProfile('linux-6.18')!;

function run(lines: readonly object[]): ReturnType<typeof runCheckedLines> {
  return runCheckedLines(lines, X86);
}

const MAP = { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 2, offset: 0, as: 'm' };
const PIPE = { op: 'pipe2', flags: 0, as: 'pr', write_as: 'pw' };

describe('FrameStore page references', () => {
  test('a released frame with references is held until the last one drops', () => {
    const f = new FrameStore();
    const [run0] = f.alloc(4);
    const base = run0!.base;
    f.getRefs(base, 2, 'ref');
    f.getRefs((base + 1) as never, 1, 'pin');
    assert.equal(f.firstReferenced(base, 4), base);
    assert.equal(f.maybeDmaPinned(base + 1), true);
    assert.equal(f.maybeDmaPinned(base), false);
    f.release(base, 4);
    assert.equal(f.allocated, 2);
    assert.equal(f.heldFrames, 2);
    f.putRefs(base, 2, 'ref');
    assert.equal(f.heldFrames, 1, 'the pinned frame stays');
    assert.equal(f.isFree(base), true);
    assert.equal(f.isFree(base + 1), false);
    f.putRefs((base + 1) as never, 1, 'pin');
    assert.equal(f.heldFrames, 0);
    assert.equal(f.allocated, 0);
  });
});

describe('vmsplice references', () => {
  test('munmap of a vmspliced page: the frame lives on with its contents until the pipe is read', () => {
    const r = run([
      MAP,
      { op: 'poke', addr: 'm', hex: 'aabbccdd' },
      PIPE,
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 8192, flags: 2 },
      { op: 'munmap', addr: 'm', length: 8192 },
      { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 2, offset: 0, as: 'n' },
      { op: 'vmsplice', fd: 'pr', addr: 'n', len: 8192, flags: 2 },
      { op: 'peek', addr: 'n', len: 4 },
      { op: 'vmsplice', fd: 'pr', addr: 'n', len: 8192, flags: 2 },
    ]);
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[3], '{"ok":true,"value":8192}');
    assert.equal(r.results[6], '{"ok":true,"value":8192}');
    assert.equal(r.results[7], '{"ok":true,"value":"aabbccdd"}');
    assert.equal(r.results[8], '{"ok":false,"errno":"EAGAIN"}', 'empty pipe, writer open');
    const h = r.backend.host;
    assert.equal(h.frames.heldFrames, 0);
    assert.equal(h.frames.refs.size, 0);
  });

  test('closing both ends drops the references; the held frames are freed', () => {
    const r = run([
      MAP,
      { op: 'poke', addr: 'm', hex: '01' },
      PIPE,
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 4096, flags: 2 },
      { op: 'munmap', addr: 'm', length: 8192 },
      { op: 'close', fd: 'pr' },
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 4096, flags: 2 },
      { op: 'close', fd: 'pw' },
    ]);
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[6], '{"ok":false,"errno":"EPIPE"}', 'no readers');
    assert.equal(r.backend.host.frames.heldFrames, 0);
    assert.equal(r.backend.host.frames.allocated, 0);
  });

  test('errnos: flags, fd kind, iovec, a full ring', () => {
    const r = run([
      { op: 'mmap', fd: null, length: 17 * 4096, prot: 3, flags: 2, offset: 0, as: 'm' },
      PIPE,
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 4096, flags: 16 },
      { op: 'vmsplice', fd: 0, addr: 'm', len: 4096, flags: 2 },
      { op: 'vmsplice', fd: 99, addr: 'm', len: 4096, flags: 2 },
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 0, flags: 2 },
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: -1, flags: 2 },
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 17 * 4096, flags: 2 },
      { op: 'vmsplice', fd: 'pw', addr: 'm', len: 4096, flags: 2 },
      { op: 'pipe2', flags: 1, as: 'x', write_as: 'y' },
    ]);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.results.slice(2), [
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EBADF"}',
      '{"ok":false,"errno":"EBADF"}',
      '{"ok":true,"value":0}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":true,"value":65536}',
      '{"ok":false,"errno":"EAGAIN"}',
      '{"ok":false,"errno":"EINVAL"}',
    ]);
  });

  test('vmsplice GUPs 16 pages a batch: a batch past the free slots is faulted in, then dropped (review F9)', () => {
    // iter_to_pipe(): 20 pages of shared anonymous memory into an empty 16-slot pipe return 16
    // pages' bytes, and the second batch (4 pages) was faulted in (allocated) before add_to_pipe()
    // found the ring full and put it back.
    const alloc = (len: number): { results: string[]; allocated: number } => {
      const r = run([
        { op: 'mmap', fd: null, length: 20 * 4096, prot: 3, flags: 0x21, offset: 0, as: 'm' },
        PIPE,
        { op: 'vmsplice', fd: 'pw', addr: 'm', len, flags: 2 },
      ]);
      assert.deepEqual(r.violations, []);
      return { results: r.results.slice(2), allocated: r.backend.host.frames.allocated };
    };
    const a16 = alloc(16 * 4096);
    const a20 = alloc(20 * 4096);
    assert.deepEqual(a16.results, ['{"ok":true,"value":65536}']);
    assert.deepEqual(a20.results, ['{"ok":true,"value":65536}']);
    assert.equal(a20.allocated - a16.allocated, 4);
  });
});
