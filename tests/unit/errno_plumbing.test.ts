/**
 * Errno plumbing: every `Host` entry point that takes an fd answers EBADF for an fd that is not
 * open (-1, a closed fd of each kind, a number never opened) — except where the kernel checks an
 * argument before looking the fd up:
 * - pread64/pwrite64: `pos < 0` → EINVAL first (ksys_pread64/ksys_pwrite64);
 * - ftruncate: `length < 0` → EINVAL first (do_sys_ftruncate);
 * - mmap: an unaligned offset → EINVAL first (x86 sys_mmap), and MAP_ANONYMOUS ignores the fd.
 * Every ioctl looks the fd up before reading its argument, so even invalid arguments give EBADF.
 * The same holds at the trace level: closed or unbound handles pass -1.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { resultToJson } from '../../src/trace/format.js';
import {
  GMEM_SHARED,
  MAP_PRIVATE,
  MAP_SHARED,
  MEM_GUEST_MEMFD,
  PAGE,
  RW,
  createGmem,
  createVcpu,
  createVm,
  fails,
  newHost,
  ok,
  setRegion,
  type Ctx,
} from './helpers.js';

type Entry = {
  readonly name: string;
  /** Call the entry point with `fd`, with otherwise valid arguments; returns the errno or 'ok'. */
  readonly valid: (c: Ctx, fd: number) => string;
  /** The same with invalid non-fd arguments (the fd must still be looked up first). */
  readonly invalid?: (c: Ctx, fd: number) => string;
};

const E = (r: { ok: boolean; errno?: string }): string => (r.ok ? 'ok' : r.errno!);
const pf = (r: { errno?: string }): string => r.errno ?? 'ok';

const ENTRIES: Entry[] = [
  {
    name: 'KVM_CREATE_VM',
    valid: (c, fd) => E(c.h.kvmCreateVm(fd, 0n)),
    invalid: (c, fd) => E(c.h.kvmCreateVm(fd, 99n)),
  },
  {
    name: 'KVM_CHECK_EXTENSION',
    valid: (c, fd) => E(c.h.kvmCheckExtension(fd, 234n)),
    invalid: (c, fd) => E(c.h.kvmCheckExtension(fd, -1n)),
  },
  {
    name: 'KVM_CREATE_GUEST_MEMFD',
    valid: (c, fd) => E(c.h.kvmCreateGuestMemfd(fd, PAGE, 0n)),
    invalid: (c, fd) => E(c.h.kvmCreateGuestMemfd(fd, 1n, 1n << 40n)),
  },
  {
    name: 'KVM_SET_USER_MEMORY_REGION2',
    valid: (c, fd) => E(setRegion(c, fd, { slot: 0n, gpa: 0n, size: PAGE })),
    invalid: (c, fd) =>
      E(setRegion(c, fd, { slot: 40000n, flags: 0xf0n, gpa: 1n, size: 3n, uaddr: 5n })),
  },
  {
    name: 'KVM_SET_USER_MEMORY_REGION',
    valid: (c, fd) => E(setRegion(c, fd, { slot: 0n, gpa: 0n, size: PAGE, v1: true })),
    invalid: (c, fd) => E(setRegion(c, fd, { slot: 0n, flags: MEM_GUEST_MEMFD, v1: true })),
  },
  {
    name: 'KVM_SET_MEMORY_ATTRIBUTES',
    valid: (c, fd) =>
      E(c.h.kvmSetMemoryAttributes(fd, { address: 0n, size: PAGE, attributes: 0n, flags: 0n })),
    invalid: (c, fd) =>
      E(c.h.kvmSetMemoryAttributes(fd, { address: 1n, size: 0n, attributes: 1n, flags: 1n })),
  },
  {
    name: 'KVM_CREATE_VCPU',
    valid: (c, fd) => E(c.h.kvmCreateVcpu(fd, 3n)),
    invalid: (c, fd) => E(c.h.kvmCreateVcpu(fd, 1n << 40n)),
  },
  {
    name: 'KVM_ENABLE_CAP',
    valid: (c, fd) => E(c.h.kvmEnableCap(fd, 201n, 0n, [4096n])),
    invalid: (c, fd) => E(c.h.kvmEnableCap(fd, 201n, 1n, [1n])),
  },
  {
    name: 'KVM_PRE_FAULT_MEMORY',
    valid: (c, fd) => pf(c.h.kvmPreFaultMemory(fd, 0n, PAGE, 0n)),
    invalid: (c, fd) => pf(c.h.kvmPreFaultMemory(fd, 1n, 0n, 1n)),
  },
  { name: 'KVM_RUN', valid: (c, fd) => pf(c.h.kvmRun(fd, [])) },
  {
    name: 'fallocate',
    valid: (c, fd) => E(c.h.fallocate(fd, 1, 0n, PAGE)),
    invalid: (c, fd) => E(c.h.fallocate(fd, 0x100, -1n, 0n)),
  },
  { name: 'ftruncate', valid: (c, fd) => E(c.h.ftruncate(fd, PAGE)) },
  { name: 'pread', valid: (c, fd) => E(c.h.pread(fd, 16n, 0n)) },
  { name: 'pwrite', valid: (c, fd) => E(c.h.pwrite(fd, new Uint8Array(4), 0n)) },
  { name: 'fstat', valid: (c, fd) => E(c.h.fstat(fd)) },
  { name: 'close', valid: (c, fd) => E(c.h.close(fd)) },
  {
    name: 'mmap',
    valid: (c, fd) => E(c.h.mmap(fd, PAGE, RW, MAP_SHARED, 0n)),
    invalid: (c, fd) => E(c.h.mmap(fd, 0n, RW | 4, 0, 0n)),
  },
];

/** fds that are not open, built on a host of `profile`. */
function badFds(profile: string): Array<{ what: string; c: Ctx; fd: number }> {
  const out: Array<{ what: string; c: Ctx; fd: number }> = [];
  for (const [what, make] of [
    ['-1', (_c: Ctx) => -1],
    ['never opened (1000)', (_c: Ctx) => 1000],
    ['INT_MAX', (_c: Ctx) => 0x7fff_ffff],
    [
      'closed VM fd',
      (c: Ctx) => {
        const vm = createVm(c);
        createGmem(c, vm, PAGE); // keeps the VM alive: the fd is closed, not the VM
        ok(c.h.close(vm));
        return vm;
      },
    ],
    [
      'closed guest_memfd',
      (c: Ctx) => {
        const g = createGmem(c, createVm(c), PAGE, GMEM_SHARED);
        ok(c.h.close(g));
        return g;
      },
    ],
    [
      'closed vCPU fd',
      (c: Ctx) => {
        const v = createVcpu(c, createVm(c));
        ok(c.h.close(v));
        return v;
      },
    ],
    [
      'closed /dev/kvm',
      (c: Ctx) => {
        const k = c.h.openDevKvm();
        ok(c.h.close(k));
        return k;
      },
    ],
  ] as const) {
    const c = newHost(profile);
    out.push({ what, c, fd: make(c) });
  }
  return out;
}

for (const profile of ['linux-6.18', 'linux-6.18-pvm']) {
  describe(`${profile}: an fd that is not open → EBADF from every entry point`, () => {
    for (const e of ENTRIES) {
      test(e.name, () => {
        for (const { what, c, fd } of badFds(profile)) {
          assert.equal(c.h.file(fd), undefined, `${what} is not open`);
          assert.equal(e.valid(c, fd), 'EBADF', `${e.name} with ${what}`);
          if (e.invalid)
            assert.equal(e.invalid(c, fd), 'EBADF', `${e.name} with ${what} and invalid arguments`);
        }
      });
    }
  });
}

describe('arguments the kernel checks before the fd lookup', () => {
  test('pread/pwrite: negative offset → EINVAL before EBADF; otherwise EBADF', () => {
    const c = newHost();
    fails(c.h.pread(-1, 16n, -1n), 'EINVAL');
    fails(c.h.pwrite(-1, new Uint8Array(1), -4096n), 'EINVAL');
    fails(c.h.pread(-1, 16n, 1n << 62n), 'EBADF', 'large positive offset');
    // On an open guest_memfd: ESPIPE (no FMODE_PREAD), but a negative offset is still EINVAL.
    const g = createGmem(c, createVm(c), PAGE);
    fails(c.h.pread(g, 16n, 0n), 'ESPIPE');
    fails(c.h.pwrite(g, new Uint8Array(1), 0n), 'ESPIPE');
    fails(c.h.pread(g, 16n, -1n), 'EINVAL');
    // u64 offsets ≥ 2^63 are negative loff_t.
    fails(c.h.pread(-1, 16n, 1n << 63n), 'EINVAL');
  });

  test('ftruncate: negative length → EINVAL before EBADF; a guest_memfd refuses any length (EINVAL)', () => {
    const c = newHost();
    fails(c.h.ftruncate(-1, -1n), 'EINVAL');
    fails(c.h.ftruncate(-1, 1n << 63n), 'EINVAL', 'as loff_t');
    fails(c.h.ftruncate(-1, 0n), 'EBADF');
    const g = createGmem(c, createVm(c), PAGE);
    fails(c.h.ftruncate(g, PAGE), 'EINVAL', 'same size');
    fails(c.h.ftruncate(g, 0n), 'EINVAL');
  });

  test('mmap: unaligned offset → EINVAL before EBADF; MAP_ANONYMOUS never looks at the fd', () => {
    const c = newHost();
    fails(c.h.mmap(-1, PAGE, RW, MAP_SHARED, 1n), 'EINVAL');
    fails(c.h.mmap(-1, PAGE, RW, MAP_SHARED, 0n), 'EBADF');
    fails(c.h.mmap(-1, 0n, RW, MAP_SHARED, 0n), 'EBADF', 'len 0 is checked after the fd');
    ok(c.h.mmap(-1, PAGE, RW, MAP_PRIVATE | 0x20, 0n));
  });

  test('fallocate looks the fd up before any VFS check', () => {
    const c = newHost();
    fails(c.h.fallocate(-1, 0, -1n, 0n), 'EBADF');
    fails(c.h.fallocate(-1, 0xff, 1n << 62n, 1n << 62n), 'EBADF');
  });

  test('KVM_SET_USER_MEMORY_REGION2: the guest_memfd field is looked up late (bind): EBADF only for a valid region', () => {
    const c = newHost();
    const vm = createVm(c);
    fails(setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, size: PAGE, gmem: -1 }), 'EBADF');
    fails(
      setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, size: PAGE, gmem: -1, offset: 1n }),
      'EINVAL',
    );
    fails(
      setRegion(c, vm, { slot: 40000n, flags: MEM_GUEST_MEMFD, size: PAGE, gmem: -1 }),
      'EINVAL',
    );
  });
});

describe('read/write-style calls on each kind of open fd', () => {
  test('pread/pwrite: /dev/kvm → EINVAL (no read/write op), VM/vCPU/guest_memfd → ESPIPE (no FMODE_PREAD)', () => {
    const c = newHost();
    const vm = createVm(c);
    const vcpu = createVcpu(c, vm);
    const g = createGmem(c, vm, PAGE);
    fails(c.h.pread(c.kvm, 8n, 0n), 'EINVAL');
    fails(c.h.pwrite(c.kvm, new Uint8Array(8), 0n), 'EINVAL');
    for (const fd of [vm, vcpu, g]) {
      fails(c.h.pread(fd, 8n, 0n), 'ESPIPE');
      fails(c.h.pwrite(fd, new Uint8Array(8), 0n), 'ESPIPE');
    }
  });

  test('ftruncate: EINVAL on every KVM fd (not regular, or guest_memfd setattr)', () => {
    const c = newHost();
    const vm = createVm(c);
    for (const fd of [c.kvm, vm, createVcpu(c, vm), createGmem(c, vm, PAGE)])
      fails(c.h.ftruncate(fd, PAGE), 'EINVAL');
  });
});

describe('std streams (fds 0..2): open, but not KVM objects', () => {
  test('ioctls answer ENOTTY; as a guest_memfd field, EINVAL; close/fstat/fallocate EBADF', () => {
    const c = newHost();
    const vm = createVm(c);
    for (const fd of [0, 1, 2]) {
      fails(c.h.kvmCreateVm(fd, 0n), 'ENOTTY');
      fails(c.h.kvmCreateGuestMemfd(fd, PAGE, 0n), 'ENOTTY');
      fails(setRegion(c, vm, { slot: 0n, flags: MEM_GUEST_MEMFD, size: PAGE, gmem: fd }), 'EINVAL');
      fails(c.h.close(fd), 'EBADF');
      fails(c.h.fstat(fd), 'EBADF');
    }
  });
});

describe('trace level: closed and unbound handles pass -1', () => {
  const run = (lines: string[]) => {
    const { ops, errors } = parseTrace(lines.join('\n'));
    assert.deepEqual(errors, []);
    return runTrace(ops, new ModelBackend(getProfile('linux-6.18-pvm')!)).map((r) =>
      resultToJson(r),
    );
  };

  test('after close, every use of the handle is EBADF; a second close too', () => {
    const out = run([
      '{"op":"KVM_CREATE_VM","as":"vm"}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"flags":3,"as":"g"}',
      '{"op":"close","fd":"g"}',
      '{"op":"fallocate","fd":"g","mode":1,"offset":0,"len":4096}',
      '{"op":"fstat","fd":"g"}',
      '{"op":"mmap","fd":"g","length":4096,"prot":3,"flags":1,"as":"m"}',
      '{"op":"close","fd":"g"}',
      '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":4096,"userspace_addr":0,"guest_memfd":"g"}',
      '{"op":"close","fd":"vm"}',
      '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0}',
    ]);
    assert.deepEqual(out, [
      { ok: true },
      { ok: true },
      { ok: true },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: true },
      { ok: false, errno: 'EBADF' },
    ]);
  });

  test('a handle whose creating op failed is unbound (fd -1, address 0)', () => {
    const out = run([
      '{"op":"KVM_CREATE_VM","type":1,"as":"vm"}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"as":"g"}',
      '{"op":"fstat","fd":"g"}',
      '{"op":"KVM_CREATE_VM","as":"vm2"}',
      '{"op":"mmap","fd":null,"length":0,"prot":3,"flags":2,"as":"m"}',
      '{"op":"peek","addr":"m","len":1}',
      '{"op":"fstat","fd":"vm"}',
      '{"op":"KVM_PRE_FAULT_MEMORY","vcpu":"vm","gpa":4096,"size":4096}',
    ]);
    assert.deepEqual(out, [
      { ok: false, errno: 'EINVAL' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: true },
      { ok: false, errno: 'EINVAL' },
      { ok: false, fault: 'SIGSEGV' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF', remaining: { gpa: 4096, size: 4096 } },
    ]);
  });

  test("raw integer fds are never the trace's objects: file syscalls see them as not open", () => {
    const out = run([
      '{"op":"KVM_CREATE_VM","as":"vm"}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"as":"g"}',
      '{"op":"fstat","fd":3}',
      '{"op":"fstat","fd":4}',
      '{"op":"close","fd":0}',
      '{"op":"fstat","fd":"g"}',
    ]);
    assert.deepEqual(out.slice(2), [
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: false, errno: 'EBADF' },
      { ok: true, stat: { size: 4096, blocks: 0 } },
    ]);
  });
});
