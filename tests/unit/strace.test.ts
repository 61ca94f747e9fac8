/**
 * The strace-style renderer (src/trace/strace.ts): every op kind, results with errnos, faults,
 * exits, remaining and stat, the file's own handle names, hex addresses and sizes with units,
 * ASCII mode (no character above 0x7e) and colour (ANSI codes only when asked for).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOpObject } from '../../src/trace/parse.js';
import type { OpName, ResultLine, TraceOp } from '../../src/trace/types.js';
import {
  renderExit,
  renderOp,
  renderResult,
  StraceRenderer,
  toAscii,
  type Style,
} from '../../src/trace/strace.js';

const op = (o: Record<string, unknown>, line = 1): TraceOp => parseOpObject('t.jsonl', line, o);
const ASCII: Style = { color: false, ascii: true };
const COLOR: Style = { color: true, ascii: false };
const OK: ResultLine = { ok: true };

/** One op of each kind, and the line it renders to (with its result). */
const CASES: Record<OpName, [Record<string, unknown>, ResultLine, string]> = {
  KVM_CREATE_VM: [
    { op: 'KVM_CREATE_VM', type: 1, as: 'vm4' },
    OK,
    'KVM_CREATE_VM(kvm, type=SW_PROTECTED) = vm4',
  ],
  KVM_CHECK_EXTENSION: [
    { op: 'KVM_CHECK_EXTENSION', fd: 'vm4', cap: 234 },
    { ok: true, value: 1n },
    'KVM_CHECK_EXTENSION(vm4, KVM_CAP_GUEST_MEMFD) = 1',
  ],
  KVM_ENABLE_CAP: [
    { op: 'KVM_ENABLE_CAP', fd: 'vm4', cap: 201, args: [4096] },
    OK,
    'KVM_ENABLE_CAP(vm4, KVM_CAP_EXIT_HYPERCALL, args=[0x1000]) = 0',
  ],
  KVM_CREATE_GUEST_MEMFD: [
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm4', size: 2097152, flags: 3, as: 'gmem' },
    OK,
    'KVM_CREATE_GUEST_MEMFD(vm4, size=2 MiB, flags=MMAP|INIT_SHARED) = gmem',
  ],
  KVM_SET_USER_MEMORY_REGION: [
    {
      op: 'KVM_SET_USER_MEMORY_REGION',
      vm: 'vm4',
      slot: 1,
      flags: 2,
      guest_phys_addr: 1048576,
      memory_size: 4096,
      userspace_addr: 'shared+0x1000',
    },
    { ok: false, errno: 'EINVAL' },
    'KVM_SET_USER_MEMORY_REGION(vm4, slot=1, flags=READONLY, gpa=0x100000, size=4 KiB, ua=shared+0x1000) = -1 EINVAL',
  ],
  KVM_SET_USER_MEMORY_REGION2: [
    {
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm4',
      slot: 0,
      flags: 4,
      guest_phys_addr: '0x80000000',
      memory_size: 2097152,
      userspace_addr: 'shared',
      guest_memfd: 'gmem',
      guest_memfd_offset: 0,
    },
    OK,
    'KVM_SET_USER_MEMORY_REGION2(vm4, slot=0, flags=GUEST_MEMFD, gpa=0x80000000, size=2 MiB, ua=shared, gmem=gmem, offset=0) = 0',
  ],
  KVM_SET_MEMORY_ATTRIBUTES: [
    {
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
      vm: 'vm4',
      address: '0x80000000',
      size: 4096,
      attributes: 8,
    },
    { ok: false, errno: 'ENOTTY' },
    'KVM_SET_MEMORY_ATTRIBUTES(vm4, gpa=0x80000000, size=4 KiB, PRIVATE) = -1 ENOTTY',
  ],
  KVM_SET_MEMORY_ATTRIBUTES2: [
    {
      op: 'KVM_SET_MEMORY_ATTRIBUTES2',
      fd: 'g',
      offset: '0x3000',
      size: 4096,
      attributes: 8,
    },
    { ok: false, errno: 'EAGAIN', error_offset: 12288n },
    'KVM_SET_MEMORY_ATTRIBUTES2(g, offset=0x3000, size=4 KiB, PRIVATE) = -1 EAGAIN  error_offset=0x3000',
  ],
  KVM_CREATE_VCPU: [
    { op: 'KVM_CREATE_VCPU', vm: 'vm4', id: 0, as: 'cpu' },
    OK,
    'KVM_CREATE_VCPU(vm4, id=0) = cpu',
  ],
  KVM_PRE_FAULT_MEMORY: [
    { op: 'KVM_PRE_FAULT_MEMORY', vcpu: 'cpu', gpa: '0x80000000', size: 8192 },
    { ok: true, remaining: { gpa: 0x80002000n, size: 0n } },
    'KVM_PRE_FAULT_MEMORY(cpu, gpa=0x80000000, size=8 KiB) = 0  remaining: gpa 0x80002000 size 0',
  ],
  KVM_RUN: [
    {
      op: 'KVM_RUN',
      vcpu: 'cpu',
      guest: [{ store: { gpa: '0xfee00000', hex: 'deadbeef' } }, { load: { gpa: 16 } }],
    },
    {
      ok: true,
      exits: [
        { reason: 'MMIO', gpa: 0xfee00000n, len: 4, is_write: true, hex: 'deadbeef' },
        { reason: 'LOAD', gpa: 16n, hex: '00000000' },
        { reason: 'HLT' },
      ],
    },
    'KVM_RUN(cpu, [store deadbeef → 0xfee00000; load4 0x10]) = 0  exits: MMIO write 0xfee00000 len 4 = "deadbeef"; LOAD 0x10 = "00000000"; HLT',
  ],
  mmap: [
    { op: 'mmap', fd: 'gmem', length: 2097152, prot: 3, flags: 1, offset: 0, as: 'shared' },
    OK,
    'mmap(NULL, 0x200000 (2 MiB), PROT_READ|PROT_WRITE, MAP_SHARED, gmem, 0) = shared @ 0x400000000000',
  ],
  munmap: [
    { op: 'munmap', addr: 'shared', length: 2097152 },
    OK,
    'munmap(shared, 0x200000 (2 MiB)) = 0',
  ],
  mprotect: [
    { op: 'mprotect', addr: 'shared', length: 4096, prot: 0 },
    OK,
    'mprotect(shared, 0x1000 (4 KiB), PROT_NONE) = 0',
  ],
  madvise: [
    { op: 'madvise', addr: 'shared+0x1000', length: 4096, advice: 9 },
    OK,
    'madvise(shared+0x1000, 0x1000 (4 KiB), MADV_REMOVE) = 0',
  ],
  fallocate: [
    { op: 'fallocate', fd: 'gmem', mode: 3, offset: 4096, len: 4096 },
    { ok: false, errno: 'EOPNOTSUPP' },
    'fallocate(gmem, FALLOC_FL_KEEP_SIZE|FALLOC_FL_PUNCH_HOLE, 0x1000, 0x1000 (4 KiB)) = -1 EOPNOTSUPP',
  ],
  ftruncate: [
    { op: 'ftruncate', fd: 'gmem', length: 4096 },
    { ok: false, errno: 'EINVAL' },
    'ftruncate(gmem, 0x1000 (4 KiB)) = -1 EINVAL',
  ],
  pread: [
    { op: 'pread', fd: 'gmem', len: 4, offset: 0 },
    { ok: false, errno: 'ESPIPE' },
    'pread(gmem, 4, 0) = -1 ESPIPE',
  ],
  pwrite: [
    { op: 'pwrite', fd: 'gmem', hex: 'aabb', offset: 16 },
    { ok: true, value: 2n },
    'pwrite(gmem, "aabb", 0x10) = 2',
  ],
  fstat: [
    { op: 'fstat', fd: 'gmem' },
    { ok: true, stat: { size: 2097152n, blocks: 0n } },
    'fstat(gmem) = 0  {size=2 MiB, blocks=0}',
  ],
  close: [{ op: 'close', fd: 'gmem' }, OK, 'close(gmem) = 0'],
  peek: [
    { op: 'peek', addr: 'shared+0x1000', len: 4 },
    { ok: true, value: 'deadbeef' },
    'peek(shared+0x1000, 4) = "deadbeef"',
  ],
  poke: [
    { op: 'poke', addr: 'shared', hex: 'deadbeef' },
    { ok: false, fault: 'SIGBUS' },
    'poke(shared, "deadbeef") = SIGBUS',
  ],
  KVM_ARM_PREFERRED_TARGET: [
    { op: 'KVM_ARM_PREFERRED_TARGET', vm: 'vm4' },
    { ok: true, init: { target: 5n, features: [] } },
    'KVM_ARM_PREFERRED_TARGET(vm4) = 0  {target=GENERIC_V8, features=[]}',
  ],
  KVM_ARM_VCPU_INIT: [
    { op: 'KVM_ARM_VCPU_INIT', vcpu: 'cpu', features: ['SVE', 'KVM_ARM_VCPU_PSCI_0_2', 33] },
    OK,
    'KVM_ARM_VCPU_INIT(cpu, {target=GENERIC_V8, features=[PSCI_0_2, SVE, bit 33]}) = 0',
  ],
  KVM_ARM_VCPU_FINALIZE: [
    { op: 'KVM_ARM_VCPU_FINALIZE', vcpu: 'cpu', feature: 'SVE' },
    { ok: false, errno: 'EPERM' },
    'KVM_ARM_VCPU_FINALIZE(cpu, [SVE]) = -1 EPERM',
  ],
  open: [
    { op: 'open', path: '/dev/sev', as: 'sev' },
    { ok: false, errno: 'ENOENT' },
    'open("/dev/sev", O_RDWR|O_CLOEXEC) = -1 ENOENT',
  ],
  KVM_MEMORY_ENCRYPT_OP: [
    { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm4', id: 2 },
    { ok: false, errno: 'ENOTTY' },
    'KVM_MEMORY_ENCRYPT_OP(vm4, {id=0x2}) = -1 ENOTTY',
  ],
  pipe2: [
    { op: 'pipe2', flags: 0x80000, as: 'pr', write_as: 'pw' },
    OK,
    'pipe2([pr, pw], O_CLOEXEC) = 0',
  ],
  vmsplice: [
    { op: 'vmsplice', fd: 'pw', addr: 'shared', len: 4096, flags: 2 },
    { ok: true, value: 4096n },
    'vmsplice(pw, [{iov_base=shared, iov_len=4096}], 1, SPLICE_F_NONBLOCK) = 4096',
  ],
  VFIO_GROUP_SET_CONTAINER: [
    { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'gmem', container: 'vm4' },
    OK,
    'VFIO_GROUP_SET_CONTAINER(gmem, [vm4]) = 0',
  ],
  VFIO_SET_IOMMU: [
    { op: 'VFIO_SET_IOMMU', fd: 'vm4', type: 3, tee_io: 1 },
    OK,
    'VFIO_SET_IOMMU(vm4, VFIO_TYPE1v2_IOMMU, tee_io) = 0',
  ],
  VFIO_IOMMU_MAP_DMA: [
    { op: 'VFIO_IOMMU_MAP_DMA', fd: 'vm4', flags: 3, addr: 'shared', iova: 0x100000, size: 4096 },
    OK,
    'VFIO_IOMMU_MAP_DMA(vm4, {flags=VFIO_DMA_MAP_FLAG_READ|VFIO_DMA_MAP_FLAG_WRITE, vaddr=shared, iova=0x100000, size=0x1000}) = 0',
  ],
  VFIO_IOMMU_UNMAP_DMA: [
    { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'vm4', iova: 0x100000, size: 4096 },
    { ok: true, value: 4096n },
    'VFIO_IOMMU_UNMAP_DMA(vm4, {flags=0, iova=0x100000, size=0x1000}) = 4096',
  ],
  dma_read: [
    { op: 'dma_read', fd: 'vm4', iova: 0x100000, len: 2 },
    { ok: true, value: 'aabb' },
    'dma_read(vm4, 0x100000, 2) = "aabb"',
  ],
  dma_write: [
    { op: 'dma_write', fd: 'vm4', iova: 0x100000, hex: 'aabb' },
    OK,
    'dma_write(vm4, 0x100000, "aabb") = 0',
  ],
  fork: [{ op: 'fork', as: 'child' }, OK, 'fork() = child'],
  exit: [{ op: 'exit', proc: 'child', status: 0 }, OK, '[child] exit(0) = 0'],
  wait: [{ op: 'wait', child: 'child' }, { ok: true, value: 0n }, 'wait(child, [status], 0) = 0'],
  memfd_restricted: [
    { op: 'memfd_restricted', flags: 0, as: 'rfd' },
    { ok: true, fd: 7 } as never,
    'memfd_restricted(0) = rfd',
  ],
  KVM_SET_USER_MEMORY_REGION_EXT: [
    {
      op: 'KVM_SET_USER_MEMORY_REGION_EXT',
      vm: 'vm4',
      slot: 1,
      flags: 4,
      guest_phys_addr: 0x80000000,
      memory_size: 8192,
      userspace_addr: 0,
      restricted_fd: 'vm4',
      restricted_offset: 0,
    },
    OK,
    'KVM_SET_USER_MEMORY_REGION_EXT(vm4, slot=1, flags=PRIVATE, gpa=0x80000000, size=8 KiB, ua=0x0, restricted_fd=vm4, restricted_offset=0) = 0',
  ],
  memory_failure: [
    { op: 'memory_failure', fd: 'vm4', offset: 4096 },
    OK,
    'memory_failure(vm4, 0x1000) = 0',
  ],
  address_space_create: [
    { op: 'address_space_create', flags: 0, as: 'as' },
    { ok: true, fd: 7 } as never,
    'address_space_create(0) = as',
  ],
  address_space_mmap: [
    {
      op: 'address_space_mmap',
      fd: 'vm4',
      as_addr: 0x10000,
      length: 8192,
      prot: 3,
      flags: 1,
      src: 'm5+0x1000',
    },
    OK,
    'address_space_mmap(vm4, 0x10000, 0x2000 (8 KiB), PROT_READ|PROT_WRITE, MAP_SHARED, m5+0x1000) = 0',
  ],
  address_space_munmap: [
    { op: 'address_space_munmap', fd: 'vm4', as_addr: 0x10000, length: 4096 },
    OK,
    'address_space_munmap(vm4, 0x10000, 0x1000 (4 KiB)) = 0',
  ],
  KVM_MAP_ADDRESS_SPACE: [
    { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm4', fd: 'vm4' },
    OK,
    'KVM_MAP_ADDRESS_SPACE(vm4, fd=vm4) = 0',
  ],
};

describe('strace renderer', () => {
  test('every op kind renders with the file’s handle names, constants, hex and units', () => {
    for (const [name, [o, r, want]] of Object.entries(CASES)) {
      const x = op(o);
      assert.equal(
        `${renderOp(x)} ${renderResult(x, r, undefined, name === 'mmap' ? 0x400000000000n : undefined)}`,
        want,
        name,
      );
    }
  });

  test('the renderer keeps the arena cursor: the second mmap is at the next 2 MiB after a guard page', () => {
    const r = new StraceRenderer();
    const m = op({ op: 'mmap', fd: null, length: 2097152, prot: 3, flags: 2, as: 'a' }, 7);
    assert.equal(
      r.line(m, OK),
      '   7  mmap(NULL, 0x200000 (2 MiB), PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0) = a @ 0x400000000000',
    );
    // A failed mmap uses up no address.
    assert.match(r.line(m, { ok: false, errno: 'ENOMEM' }), /= -1 ENOMEM$/);
    assert.match(r.line({ ...m, as: 'b' }, OK), /= b @ 0x400000400000$/);
  });

  test('long data is cut with its length; a fault and an errno with exits', () => {
    const p = op({ op: 'peek', addr: 'm', len: 4096 });
    assert.equal(
      renderResult(p, { ok: true, value: '00'.repeat(4096) }),
      `= "${'00'.repeat(16)}…" (4096 bytes, all zero)`,
    );
    assert.equal(
      renderResult(p, { ok: true, value: 'ab'.repeat(20) }),
      `= "${'ab'.repeat(16)}…" (20 bytes)`,
    );
    assert.equal(renderResult(p, { ok: false, fault: 'SIGSEGV' }), '= SIGSEGV');
    const run = op({ op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: '0x80001000' } }] });
    assert.equal(
      renderResult(run, {
        ok: false,
        errno: 'EFAULT',
        exits: [{ reason: 'MEMORY_FAULT', gpa: 0x80001000n, size: 4096n, flags: 8n }],
      }),
      '= -1 EFAULT  exits: MEMORY_FAULT 0x80001000 size 4 KiB flags PRIVATE',
    );
    assert.equal(
      renderResult(run, { ok: false, errno: 'EBADF', exits: [] }),
      '= -1 EBADF  exits: none',
    );
  });

  test('every exit reason', () => {
    assert.equal(
      renderExit({ reason: 'MMIO', gpa: 16n, len: 2, is_write: false }),
      'MMIO read 0x10 len 2',
    );
    assert.equal(
      renderExit({ reason: 'HYPERCALL', nr: 12n, args: [0x80000000n, 1n, 16n] }),
      'HYPERCALL MAP_GPA_RANGE(0x80000000, 0x1, 0x10)',
    );
    assert.equal(
      renderExit({ reason: 'HYPERCALL_RET', hex: '00000000' }),
      'vmcall returned 00000000',
    );
    assert.equal(renderExit({ reason: 'SHUTDOWN' }), 'SHUTDOWN');
    assert.equal(
      renderExit({ reason: 'INTERNAL_ERROR', suberror: 1 }),
      'INTERNAL_ERROR suberror 1',
    );
    assert.equal(renderExit({ reason: 'UNKNOWN', exit_reason: 99 }), 'exit reason 99');
  });

  test('raw fds and addresses, unknown bits, odd handle names quoted', () => {
    assert.equal(renderOp(op({ op: 'close', fd: 7 })), 'close(7)');
    assert.equal(
      renderOp(op({ op: 'peek', addr: '0xfffffffffffff000', len: 1 })),
      'peek(0xfffffffffffff000, 1)',
    );
    assert.equal(
      renderOp(op({ op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 4097, flags: 0x14 })),
      'KVM_CREATE_GUEST_MEMFD(vm, size=0x1001, flags=0x14)',
    );
    assert.equal(renderOp(op({ op: 'fstat', fd: 'a b\u001b[31m' })), 'fstat("a b\\u001b[31m")');
  });

  test('ASCII mode: no character above 0x7e, whatever the input', () => {
    const lines: string[] = [];
    for (const [o, r] of Object.values(CASES)) {
      const x = op(o);
      lines.push(new StraceRenderer(ASCII).line(x, r));
    }
    lines.push(
      new StraceRenderer(ASCII).line(op({ op: 'fstat', fd: 'gmém→' }), {
        ok: false,
        errno: 'EBADF',
      }),
      renderResult(
        op({ op: 'peek', addr: 'm', len: 64 }),
        { ok: true, value: '00'.repeat(64) },
        ASCII,
      ),
      toAscii('✓ ✗ → • ── … — x'),
    );
    for (const l of lines)
      for (const ch of l) assert.ok(ch.codePointAt(0)! < 0x7f, `${JSON.stringify(l)} has ${ch}`);
    assert.equal(toAscii('✓ ✗ → • ── …'), '+ x -> * -- ...');
    assert.match(lines.at(-3)!, /fstat\("gm\\u\{e9\}m->"\)/);
  });

  test('colour: ok green, errno and fault red, line number dim; none without colour', () => {
    const c = new StraceRenderer(COLOR);
    const close = op({ op: 'close', fd: 'g' }, 12);
    const ok = c.line(close, OK);
    assert.ok(ok.includes('\x1b[2m  12\x1b[0m'), ok);
    assert.ok(ok.includes('\x1b[32m= 0\x1b[0m'), ok);
    assert.ok(c.line(close, { ok: false, errno: 'EBADF' }).includes('\x1b[31m= -1 EBADF\x1b[0m'));
    assert.ok(
      c
        .line(op({ op: 'peek', addr: 'm', len: 1 }), { ok: false, fault: 'SIGBUS' })
        .includes('\x1b[31m= SIGBUS'),
    );
    const plain = new StraceRenderer().line(close, OK);
    assert.ok(!plain.includes('\x1b'), plain);
    assert.equal(plain, '  12  close(g) = 0');
  });
});
