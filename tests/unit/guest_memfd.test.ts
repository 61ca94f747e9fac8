/**
 * Unit tests for src/core/kvm/guest_memfd/guest_memfd.ts (kernel-uapi.md §1.3, §2.2–§2.6, §7): creation checks in
 * kernel order, fallocate (VFS checks, then guest_memfd's), page states and zero-on-first-use for
 * guest and host faults, host-fault SIGBUS rules, binding errors and release.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  GMEM_INIT_SHARED,
  GMEM_MMAP,
  GMEM_SHARED,
  KEEP_SIZE,
  MAP_SHARED,
  MEM_GUEST_MEMFD,
  MiB,
  PAGE,
  PUNCH,
  PUNCH_HOLE,
  RW,
  SW_PROTECTED_VM,
  createGmem,
  createVcpu,
  createVm,
  fails,
  gmemOf,
  guestLoad,
  guestStore,
  mappedPages,
  mmapFd,
  newHost,
  ok,
  peekHex,
  poke,
  runGuest,
  load,
  setRegion,
  vmOf,
} from './helpers.js';

const KVM_CAP_GUEST_MEMFD_FLAGS = 244n;

describe('KVM_CREATE_GUEST_MEMFD: checks in kernel order (§2.2)', () => {
  test('size: 2^62 succeeds and allocates nothing; 2^63 and above are EINVAL (negative loff_t)', () => {
    const c = newHost();
    const vm = createVm(c);
    const fd = createGmem(c, vm, 1n << 62n);
    const st = ok(c.h.fstat(fd));
    assert.equal(st.size, 1n << 62n);
    assert.equal(st.blocks, 0n);
    assert.equal(st.mode, 0o100600);
    assert.equal(gmemOf(c, fd).pages.size, 0);
    fails(c.h.kvmCreateGuestMemfd(vm, 1n << 63n, 0n), 'EINVAL', '2^63');
    fails(c.h.kvmCreateGuestMemfd(vm, (1n << 64n) - PAGE, 0n), 'EINVAL', '2^64-4096');
    ok(c.h.kvmCreateGuestMemfd(vm, (1n << 63n) - PAGE, 0n), 'largest aligned positive size');
  });

  test('size: 0 and unaligned sizes are EINVAL; 4096 is the smallest', () => {
    const c = newHost();
    const vm = createVm(c);
    fails(c.h.kvmCreateGuestMemfd(vm, 0n, 0n), 'EINVAL', 'size 0');
    for (const s of [1n, 2048n, 4095n, 4097n, 8191n, (1n << 62n) + 1n])
      fails(c.h.kvmCreateGuestMemfd(vm, s, 0n), 'EINVAL', `size ${s}`);
    ok(c.h.kvmCreateGuestMemfd(vm, PAGE, 0n));
  });

  test("flags: every single bit succeeds iff it is in the VM's KVM_CAP_GUEST_MEMFD_FLAGS (selftest test_guest_memfd_flags)", () => {
    for (const [profile, type, expected] of [
      ['linux-6.18', 0n, 3n],
      ['linux-6.18', SW_PROTECTED_VM, 1n],
      ['linux-6.18-pvm', 0n, 3n],
    ] as const) {
      const c = newHost(profile);
      const vm = createVm(c, type);
      const cap = ok(c.h.kvmCheckExtension(vm, KVM_CAP_GUEST_MEMFD_FLAGS));
      assert.equal(cap, expected, `${profile} type ${type}`);
      for (let b = 0n; b < 64n; b++) {
        const r = c.h.kvmCreateGuestMemfd(vm, PAGE, 1n << b);
        if ((cap & (1n << b)) !== 0n) ok(r, `${profile} type ${type} bit ${b}`);
        else fails(r, 'EINVAL', `${profile} type ${type} bit ${b}`);
      }
      // The combination of all supported bits is valid too.
      ok(c.h.kvmCreateGuestMemfd(vm, PAGE, cap));
    }
  });

  test('SW_PROTECTED refuses INIT_SHARED (with or without MMAP); DEFAULT accepts INIT_SHARED alone', () => {
    const c = newHost();
    const sw = createVm(c, SW_PROTECTED_VM);
    fails(c.h.kvmCreateGuestMemfd(sw, PAGE, GMEM_INIT_SHARED), 'EINVAL');
    fails(c.h.kvmCreateGuestMemfd(sw, PAGE, GMEM_SHARED), 'EINVAL');
    ok(c.h.kvmCreateGuestMemfd(sw, PAGE, GMEM_MMAP));
    const d = createVm(c);
    ok(c.h.kvmCreateGuestMemfd(d, PAGE, GMEM_INIT_SHARED));
  });

  test('the flags check precedes the size check (both EINVAL; an invalid pair is EINVAL)', () => {
    const c = newHost();
    const vm = createVm(c);
    fails(c.h.kvmCreateGuestMemfd(vm, 1n, 1n << 5n), 'EINVAL');
    fails(c.h.kvmCreateGuestMemfd(vm, 0n, 1n << 63n), 'EINVAL');
  });

  test('issued on /dev/kvm → EINVAL, on a vCPU fd → EINVAL, on a guest_memfd → ENOTTY', () => {
    const c = newHost();
    const vm = createVm(c);
    fails(c.h.kvmCreateGuestMemfd(c.kvm, PAGE, 0n), 'EINVAL', '/dev/kvm');
    const vcpu = createVcpu(c, vm);
    fails(c.h.kvmCreateGuestMemfd(vcpu, PAGE, 0n), 'EINVAL', 'vCPU');
    const g = createGmem(c, vm, PAGE);
    fails(c.h.kvmCreateGuestMemfd(g, PAGE, 0n), 'ENOTTY', 'gmem');
  });

  test('two files are independent: own size, own inode number', () => {
    const c = newHost();
    const vm = createVm(c);
    const a = createGmem(c, vm, PAGE);
    const b = createGmem(c, vm, 2n * PAGE);
    const sa = ok(c.h.fstat(a));
    const sb = ok(c.h.fstat(b));
    assert.equal(sa.size, 4096n);
    assert.equal(sb.size, 8192n);
    assert.notEqual(sa.ino, sb.ino);
  });

  test('the file pins the VM: guest_memfd stays usable after the VM fd is closed [verified]', () => {
    const c = newHost();
    const vm = createVm(c);
    const v = vmOf(c, vm);
    const g = createGmem(c, vm, 2n * PAGE, GMEM_SHARED);
    ok(c.h.close(vm));
    assert.equal(v.dead, false);
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, 2n * PAGE));
    const m = mmapFd(c, g, 2n * PAGE);
    poke(c, m, 'aabb');
    assert.equal(peekHex(c, m, 2), 'aabb');
    ok(c.h.fallocate(g, PUNCH, 0n, PAGE));
    assert.equal(peekHex(c, m, 2), '0000');
    ok(c.h.munmap(m, 2n * PAGE));
    ok(c.h.close(g));
    assert.equal(v.dead, true, 'last reference gone: VM destroyed');
    assert.equal(c.h.vms.size, 0);
  });
});

describe('fallocate: VFS checks, then guest_memfd checks (§2.4)', () => {
  const setup = () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE);
    return { c, g };
  };

  test('VFS: offset < 0 or len <= 0 → EINVAL', () => {
    const { c, g } = setup();
    fails(c.h.fallocate(g, KEEP_SIZE, -PAGE, PAGE), 'EINVAL', 'offset < 0');
    fails(c.h.fallocate(g, KEEP_SIZE, 0n, 0n), 'EINVAL', 'len 0');
    fails(c.h.fallocate(g, KEEP_SIZE, 0n, -PAGE), 'EINVAL', 'len < 0');
    fails(c.h.fallocate(g, PUNCH, 0n, 0n), 'EINVAL', 'punch len 0');
  });

  test('VFS: unknown mode bits and PUNCH_HOLE without KEEP_SIZE → EOPNOTSUPP', () => {
    const { c, g } = setup();
    fails(c.h.fallocate(g, 0x100 | KEEP_SIZE, 0n, PAGE), 'EOPNOTSUPP', 'bit 8');
    fails(c.h.fallocate(g, 0x04 | KEEP_SIZE, 0n, PAGE), 'EOPNOTSUPP', 'NO_HIDE_STALE');
    fails(c.h.fallocate(g, PUNCH_HOLE, 0n, PAGE), 'EOPNOTSUPP', 'PUNCH without KEEP');
    fails(c.h.fallocate(g, 0x08 | KEEP_SIZE, 0n, PAGE), 'EOPNOTSUPP', 'COLLAPSE|KEEP');
    fails(c.h.fallocate(g, 0x0a, 0n, PAGE), 'EOPNOTSUPP', 'PUNCH|COLLAPSE');
  });

  test('VFS: offset + len beyond 2^63-1 → EFBIG', () => {
    const { c, g } = setup();
    const max = (1n << 63n) - 1n;
    fails(c.h.fallocate(g, KEEP_SIZE, max - PAGE + 1n, 2n * PAGE), 'EFBIG', 'allocate');
    fails(c.h.fallocate(g, PUNCH, 1n << 62n, 1n << 62n), 'EFBIG', 'punch to exactly 2^63');
    // Exactly 2^63-1 is still fine for the VFS: the punch is a no-op past i_size... but it is
    // unaligned, so guest_memfd answers EINVAL.
    fails(c.h.fallocate(g, PUNCH, 0n, max), 'EINVAL', 'end = 2^63-1');
  });

  test('order: the VFS offset check precedes the VFS mode check', () => {
    const { c, g } = setup();
    fails(c.h.fallocate(g, 0x100, -1n, PAGE), 'EINVAL');
    fails(c.h.fallocate(g, PUNCH_HOLE, 0n, 0n), 'EINVAL');
  });

  test('order: VFS EFBIG precedes every guest_memfd check (mode, alignment)', () => {
    const { c, g } = setup();
    const big = 1n << 62n;
    fails(c.h.fallocate(g, 0, big, big), 'EFBIG', 'no KEEP_SIZE');
    fails(c.h.fallocate(g, 0x10 | KEEP_SIZE, big, big), 'EFBIG', 'ZERO_RANGE|KEEP_SIZE');
    fails(c.h.fallocate(g, KEEP_SIZE, (1n << 63n) - 1n, 1n), 'EFBIG', 'unaligned');
  });

  test('guest_memfd: KEEP_SIZE missing → EOPNOTSUPP (plain allocation is rejected)', () => {
    const { c, g } = setup();
    fails(c.h.fallocate(g, 0, 0n, PAGE), 'EOPNOTSUPP');
    fails(c.h.fallocate(g, 0x10, 0n, PAGE), 'EOPNOTSUPP', 'ZERO_RANGE');
    fails(c.h.fallocate(g, 0x40, 0n, PAGE), 'EOPNOTSUPP', 'UNSHARE');
  });

  test('guest_memfd: modes other than KEEP_SIZE|PUNCH_HOLE → EOPNOTSUPP, before alignment', () => {
    const { c, g } = setup();
    fails(c.h.fallocate(g, 0x10 | KEEP_SIZE, 0n, PAGE), 'EOPNOTSUPP', 'ZERO_RANGE|KEEP');
    fails(c.h.fallocate(g, 0x40 | KEEP_SIZE, 0n, PAGE), 'EOPNOTSUPP', 'UNSHARE|KEEP');
    fails(c.h.fallocate(g, 0x10 | KEEP_SIZE, 1n, 1n), 'EOPNOTSUPP', 'unaligned ZERO_RANGE');
    fails(c.h.fallocate(g, 0, 1n, 1n), 'EOPNOTSUPP', 'unaligned, no KEEP');
  });

  test('guest_memfd: offset or len not 4 KiB aligned → EINVAL (selftest invalid_punch_hole)', () => {
    const { c, g } = setup();
    for (const [off, len] of [
      [0n, 1n],
      [0n, 4095n],
      [0n, 4097n],
      [1n, 4096n],
      [4095n, 4096n],
      [4096n, 1n],
      [2048n, 2048n],
    ] as const) {
      fails(c.h.fallocate(g, PUNCH, off, len), 'EINVAL', `punch ${off},${len}`);
      fails(c.h.fallocate(g, KEEP_SIZE, off, len), 'EINVAL', `alloc ${off},${len}`);
    }
  });

  test('allocate: past i_size → EINVAL; [0, size) ok; punch past i_size ok (no-op) [verified]', () => {
    const { c, g } = setup();
    const size = 4n * PAGE;
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, size), 'alloc whole file');
    fails(c.h.fallocate(g, KEEP_SIZE, size, PAGE), 'EINVAL', 'alloc at size');
    fails(c.h.fallocate(g, KEEP_SIZE, size + PAGE, PAGE), 'EINVAL', 'alloc at size+4096');
    fails(c.h.fallocate(g, KEEP_SIZE, size - PAGE, 2n * PAGE), 'EINVAL', 'alloc straddling EOF');
    ok(c.h.fallocate(g, PUNCH, size, PAGE), 'punch at size');
    ok(c.h.fallocate(g, PUNCH, size + PAGE, PAGE), 'punch at size+4096');
    ok(c.h.fallocate(g, PUNCH, 1n << 40n, 1n << 40n), 'punch far beyond EOF');
    ok(c.h.fallocate(g, PUNCH, PAGE, PAGE), 'punch page 1');
    ok(c.h.fallocate(g, KEEP_SIZE, PAGE, PAGE), 're-alloc page 1');
    ok(c.h.fallocate(g, PUNCH, size - PAGE, 4n * PAGE), 'punch straddling EOF');
    assert.equal(gmemOf(c, g).pages.get(3), undefined);
    assert.equal(gmemOf(c, g).pages.get(2)?.state, 'allocated');
  });

  test('a failed allocation past i_size allocates nothing', () => {
    const { c, g } = setup();
    fails(c.h.fallocate(g, KEEP_SIZE, 0n, 5n * PAGE), 'EINVAL');
    assert.equal(gmemOf(c, g).pages.size, 0);
  });

  test('fallocate on non-regular files: VM and vCPU fds → ENODEV', () => {
    const c = newHost();
    const vm = createVm(c);
    const vcpu = createVcpu(c, vm);
    fails(c.h.fallocate(vm, KEEP_SIZE, 0n, PAGE), 'ENODEV', 'VM');
    fails(c.h.fallocate(vcpu, KEEP_SIZE, 0n, PAGE), 'ENODEV', 'vCPU');
    fails(c.h.fallocate(c.kvm, KEEP_SIZE, 0n, PAGE), 'ENODEV', '/dev/kvm');
    // The generic checks still come first.
    fails(c.h.fallocate(vm, KEEP_SIZE, -1n, PAGE), 'EINVAL');
    fails(c.h.fallocate(vm, PUNCH_HOLE, 0n, PAGE), 'EOPNOTSUPP');
  });
});

describe('page states: absent → allocated → prepared; every page is first seen as zeros (§1.3)', () => {
  test('fallocate creates allocated folios without zeroing; the first host fault zeroes and prepares', () => {
    const c = newHost();
    const vm = createVm(c);
    // Leave stale data in a frame: write through a mapping, then punch (the frame is freed, its
    // contents stay, and the allocator hands it out again lowest-first).
    const a = createGmem(c, vm, PAGE, GMEM_SHARED);
    const ma = mmapFd(c, a, PAGE);
    poke(c, ma, 'deadbeef');
    const stalePfn = gmemOf(c, a).pages.get(0)!.base;
    ok(c.h.fallocate(a, PUNCH, 0n, PAGE));
    assert.equal(gmemOf(c, a).pages.get(0), undefined, 'punched index is absent');

    const b = createGmem(c, vm, PAGE, GMEM_SHARED);
    const gb = gmemOf(c, b);
    assert.equal(gb.pages.get(0), undefined, 'new file: absent');
    ok(c.h.fallocate(b, KEEP_SIZE, 0n, PAGE));
    const ext = gb.pages.get(0)!;
    assert.equal(ext.state, 'allocated');
    assert.equal(ext.base, stalePfn, 'the freed frame is reused');
    assert.ok(c.h.frames.hasData(ext.base), 'fallocate does not zero');
    const mb = mmapFd(c, b, PAGE);
    assert.equal(peekHex(c, mb, 4), '00000000', 'first host access sees zeros');
    assert.equal(gb.pages.get(0)!.state, 'prepared');
  });

  test('the first guest fault zeroes and prepares an allocated folio (gmem-only slot, linux-6.18)', () => {
    const c = newHost();
    const vm = createVm(c);
    const a = createGmem(c, vm, PAGE, GMEM_SHARED);
    const ma = mmapFd(c, a, PAGE);
    poke(c, ma, '11223344');
    ok(c.h.fallocate(a, PUNCH, 0n, PAGE));

    const g = createGmem(c, vm, 4n * PAGE, GMEM_SHARED);
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, PAGE));
    const gf = gmemOf(c, g);
    assert.ok(c.h.frames.hasData(gf.pages.get(0)!.base), 'stale frame reused by fallocate');
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 4n * PAGE, gmem: g }));
    const vcpu = createVcpu(c, vm);
    assert.equal(guestLoad(c, vcpu, MiB), '00000000');
    assert.equal(gf.pages.get(0)!.state, 'prepared');
    // An absent index is allocated and prepared by the guest fault directly.
    assert.equal(gf.pages.get(1), undefined);
    assert.equal(guestLoad(c, vcpu, MiB + PAGE), '00000000');
    assert.equal(gf.pages.get(1)!.state, 'prepared');
  });

  test('content persists across host and guest views until a hole is punched; allocate keeps data [verified]', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 2n * PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 2n * PAGE, gmem: g }));
    const m = mmapFd(c, g, 2n * PAGE);
    const vcpu = createVcpu(c, vm);
    poke(c, m + 16n, 'cafef00d');
    assert.equal(guestLoad(c, vcpu, MiB + 16n), 'cafef00d', 'host write visible to the guest');
    guestStore(c, vcpu, MiB + PAGE, 'a1b2c3d4');
    assert.equal(peekHex(c, m + PAGE, 4), 'a1b2c3d4', 'guest write visible to the host');
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, 2n * PAGE), 'allocate over existing data');
    assert.equal(peekHex(c, m + 16n, 4), 'cafef00d');
    assert.equal(guestLoad(c, vcpu, MiB + PAGE), 'a1b2c3d4');
    ok(c.h.fallocate(g, PUNCH, 0n, PAGE));
    assert.equal(peekHex(c, m + 16n, 4), '00000000', 'punched page reads zero (host)');
    assert.equal(guestLoad(c, vcpu, MiB + 16n), '00000000', 'punched page reads zero (guest)');
    assert.equal(guestLoad(c, vcpu, MiB + PAGE), 'a1b2c3d4', 'other page untouched');
  });

  test('punch returns indices to absent and frees their frames', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 8n * PAGE);
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, 8n * PAGE));
    const before = c.h.frames.allocated;
    ok(c.h.fallocate(g, PUNCH, 2n * PAGE, 3n * PAGE));
    const gf = gmemOf(c, g);
    assert.equal(c.h.frames.allocated, before - 3);
    for (let i = 0; i < 8; i++)
      assert.equal(gf.pages.get(i) === undefined, i >= 2 && i < 5, `index ${i}`);
  });

  test('a guest_memfd that is never touched holds no memory; fallocate/punch bump modifications only on success', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE);
    const gf = gmemOf(c, g);
    assert.equal(gf.modifications, 0);
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, PAGE));
    fails(c.h.fallocate(g, KEEP_SIZE, 0n, 8n * PAGE), 'EINVAL');
    ok(c.h.fallocate(g, PUNCH, 0n, PAGE));
    assert.equal(gf.modifications, 2);
    assert.equal(ok(c.h.fstat(g)).blocks, 0n, 'st_blocks is always 0');
  });
});

describe('host faults on a guest_memfd mapping (§2.3)', () => {
  test('SIGBUS at and past i_size, even though mmap past EOF succeeds (selftest fault_overflow)', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, PAGE, GMEM_SHARED);
    const m = mmapFd(c, g, 4n * PAGE);
    poke(c, m, 'aa');
    assert.deepEqual(c.h.peek(m + PAGE, 1), { ok: false, fault: 'SIGBUS' });
    assert.deepEqual(c.h.poke(m + 3n * PAGE, new Uint8Array([1])), { ok: false, fault: 'SIGBUS' });
    // An offset entirely past EOF maps fine, and faults.
    const m2 = ok(c.h.mmap(g, PAGE, RW, MAP_SHARED, 16n * PAGE));
    assert.deepEqual(c.h.peek(m2, 1), { ok: false, fault: 'SIGBUS' });
    assert.equal(gmemOf(c, g).pages.size, 1, 'no page allocated by the failing faults');
  });

  test('SIGBUS on every access without INIT_SHARED (selftest fault_private), nothing allocated', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 2n * PAGE, GMEM_MMAP);
    const m = mmapFd(c, g, 2n * PAGE);
    assert.deepEqual(c.h.peek(m, 1), { ok: false, fault: 'SIGBUS' });
    assert.deepEqual(c.h.poke(m + PAGE, new Uint8Array([1])), { ok: false, fault: 'SIGBUS' });
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, 2n * PAGE));
    assert.deepEqual(
      c.h.peek(m, 1),
      { ok: false, fault: 'SIGBUS' },
      'allocated folio: still SIGBUS',
    );
    assert.equal(gmemOf(c, g).pages.get(0)!.state, 'allocated');
  });

  test('the EOF check comes first: INIT_SHARED file, index ≥ i_size → SIGBUS; below → page', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 3n * PAGE, GMEM_SHARED);
    const m = mmapFd(c, g, 4n * PAGE);
    assert.equal(peekHex(c, m + 3n * PAGE - 1n, 1), '00');
    assert.deepEqual(c.h.peek(m + 3n * PAGE, 1), { ok: false, fault: 'SIGBUS' });
  });

  test('two mappings of one file are coherent', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 2n * PAGE, GMEM_SHARED);
    const m1 = mmapFd(c, g, 2n * PAGE);
    const m2 = ok(c.h.mmap(g, PAGE, RW, MAP_SHARED, PAGE));
    poke(c, m1 + PAGE + 8n, '0102');
    assert.equal(peekHex(c, m2 + 8n, 2), '0102');
  });
});

describe('binding a guest_memfd to a memslot (§2.5 step 13)', () => {
  const setup = () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    const g = createGmem(c, vm, 16n * PAGE);
    return { c, vm, g };
  };
  const gm = (gmem: number, offset = 0n, slot = 1n, gpa = MiB, size = 4n * PAGE) => ({
    slot,
    flags: MEM_GUEST_MEMFD,
    gpa,
    size,
    gmem,
    offset,
  });

  test('fd not open → EBADF, checked before the file type and the offset range', () => {
    const { c, vm } = setup();
    fails(setRegion(c, vm, gm(-1)), 'EBADF', 'fd -1');
    fails(setRegion(c, vm, gm(77)), 'EBADF', 'fd 77');
    fails(setRegion(c, vm, gm(-1, 1n << 40n)), 'EBADF', 'bad fd and offset beyond i_size');
    fails(setRegion(c, vm, gm(-1, 1n << 63n)), 'EBADF', 'bad fd and negative offset');
  });

  test('not a guest_memfd → EINVAL (VM fd, /dev/kvm, vCPU, stdin)', () => {
    const { c, vm } = setup();
    const vcpu = createVcpu(c, vm);
    for (const fd of [vm, c.kvm, vcpu, 0]) fails(setRegion(c, vm, gm(fd)), 'EINVAL', `fd ${fd}`);
  });

  test('guest_memfd of another VM → EINVAL', () => {
    const { c, vm } = setup();
    const other = createVm(c);
    const og = createGmem(c, other, 16n * PAGE);
    fails(setRegion(c, vm, gm(og)), 'EINVAL');
    ok(setRegion(c, other, gm(og)));
  });

  test('offset < 0, or offset + size > i_size → EINVAL; the exact end is fine', () => {
    const { c, vm, g } = setup();
    fails(setRegion(c, vm, gm(g, 1n << 63n)), 'EINVAL', 'negative offset');
    fails(setRegion(c, vm, gm(g, 13n * PAGE)), 'EINVAL', 'one page past i_size');
    fails(setRegion(c, vm, gm(g, 0n, 1n, MiB, 17n * PAGE)), 'EINVAL', 'slot larger than file');
    ok(setRegion(c, vm, gm(g, 12n * PAGE)), 'ends exactly at i_size');
  });

  test('an index already bound → EINVAL in 6.18 (partial overlap too); disjoint ranges bind fine', () => {
    const { c, vm, g } = setup();
    ok(setRegion(c, vm, gm(g, 4n * PAGE, 1n, MiB)));
    fails(setRegion(c, vm, gm(g, 4n * PAGE, 2n, 2n * MiB)), 'EINVAL', 'same range');
    fails(setRegion(c, vm, gm(g, 6n * PAGE, 2n, 2n * MiB)), 'EINVAL', 'tail overlap');
    fails(setRegion(c, vm, gm(g, 2n * PAGE, 2n, 2n * MiB)), 'EINVAL', 'head overlap');
    ok(setRegion(c, vm, gm(g, 0n, 2n, 2n * MiB)), 'just below');
    ok(setRegion(c, vm, gm(g, 8n * PAGE, 3n, 3n * MiB)), 'just above');
    const gf = gmemOf(c, g);
    assert.equal(gf.bindings.get(4)!.id, 1);
    assert.equal(gf.bindings.get(0)!.id, 2);
    assert.equal(gf.bindings.get(11)!.id, 3);
    assert.equal(gf.bindings.get(12), undefined);
  });

  test('bind records pgoff and GMEM_ONLY (MMAP files only); delete unbinds, the range becomes bindable again [verified]', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    const plain = createGmem(c, vm, 8n * PAGE, 0n);
    const mm = createGmem(c, vm, 8n * PAGE, GMEM_MMAP);
    ok(setRegion(c, vm, gm(plain, 4n * PAGE, 1n, MiB)));
    ok(setRegion(c, vm, gm(mm, 0n, 2n, 2n * MiB)));
    const v = vmOf(c, vm);
    const s1 = v.slots.get(1)!;
    const s2 = v.slots.get(2)!;
    assert.equal(s1.gmem!.pgoff, 4);
    assert.equal(s1.gmem!.file, gmemOf(c, plain));
    assert.equal(s1.gmemOnly, false);
    assert.equal(s2.gmemOnly, true);
    ok(setRegion(c, vm, { slot: 1n, size: 0n }), 'delete');
    assert.equal(s1.gmem!.file, null);
    assert.equal(gmemOf(c, plain).bindings.size, 0);
    ok(setRegion(c, vm, gm(plain, 4n * PAGE, 5n, 3n * MiB)), 'rebind the same range');
  });

  test('on failure after bind (beyond max gfn) the binding is undone', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE);
    fails(setRegion(c, vm, gm(g, 0n, 1n, 1n << 52n)), 'EINVAL', 'beyond the MMU max gfn');
    assert.equal(gmemOf(c, g).bindings.size, 0);
    ok(setRegion(c, vm, gm(g, 0n, 1n, MiB)));
  });

  test('bind errors win over the max-gfn check that follows them', () => {
    const c = newHost();
    const vm = createVm(c);
    fails(setRegion(c, vm, gm(-1, 0n, 1n, 1n << 52n)), 'EBADF');
  });
});

describe('release of the last file reference (§2.6)', () => {
  test('clears gmem.file in every bound slot, drops bindings, zaps bound SPTEs; later guest access → EFAULT exit (flags 0)', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 2n * PAGE, gmem: g }));
    ok(
      setRegion(c, vm, {
        slot: 2n,
        flags: MEM_GUEST_MEMFD,
        gpa: 2n * MiB,
        size: 2n * PAGE,
        gmem: g,
        offset: 2n * PAGE,
      }),
    );
    const vcpu = createVcpu(c, vm);
    guestStore(c, vcpu, MiB, '01020304');
    guestStore(c, vcpu, 2n * MiB + PAGE, '05060708');
    const v = vmOf(c, vm);
    const gfn1 = Number(MiB >> 12n);
    const gfn2 = Number((2n * MiB) >> 12n);
    assert.equal(mappedPages(v, gfn1, gfn1 + 2), 1);
    assert.equal(mappedPages(v, gfn2, gfn2 + 2), 1);
    const gf = gmemOf(c, g);
    const refsBefore = v.refs;
    ok(c.h.close(g));
    assert.equal(gf.released, true);
    assert.equal(v.slots.get(1)!.gmem!.file, null);
    assert.equal(v.slots.get(2)!.gmem!.file, null);
    assert.equal(gf.bindings.size, 0);
    assert.equal(mappedPages(v, gfn1, gfn1 + 2), 0, 'slot 1 zapped');
    assert.equal(mappedPages(v, gfn2, gfn2 + 2), 0, 'slot 2 zapped');
    assert.equal(v.refs, refsBefore - 1, 'VM reference dropped');
    assert.equal(v.slots.size, 3, 'slots stay (1, 2 and the code slot)');
    const r = runGuest(c, vcpu, [load(MiB)]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [{ reason: 'MEMORY_FAULT', gpa: MiB, size: 4096n, flags: 0n }]);
    ok(setRegion(c, vm, { slot: 1n, size: 0n }), 'a slot whose file was released can be deleted');
  });

  test('a live mapping keeps the file: release happens at the last munmap', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 2n * PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 2n * PAGE, gmem: g }));
    const gf = gmemOf(c, g);
    const m = mmapFd(c, g, 2n * PAGE);
    poke(c, m, '77');
    ok(c.h.close(g));
    assert.equal(gf.released, false);
    assert.equal(peekHex(c, m, 1), '77', 'still usable through the mapping');
    ok(c.h.munmap(m, PAGE));
    assert.equal(gf.released, false, 'one page still mapped');
    ok(c.h.munmap(m + PAGE, PAGE));
    assert.equal(gf.released, true);
    assert.equal(vmOf(c, vm).slots.get(1)!.gmem!.file, null);
  });

  test('release with the VM fd closed destroys the VM; the fd is then EBADF', () => {
    const c = newHost();
    const vm = createVm(c);
    const v = vmOf(c, vm);
    const g = createGmem(c, vm, PAGE);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: PAGE, gmem: g }));
    ok(c.h.close(vm));
    assert.equal(v.dead, false);
    ok(c.h.close(g));
    assert.equal(v.dead, true);
    fails(c.h.fallocate(g, KEEP_SIZE, 0n, PAGE), 'EBADF');
  });

  test('punch hole zaps the guest mappings of bound gfns only', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 4n * PAGE, gmem: g }));
    const vcpu = createVcpu(c, vm);
    for (let i = 0n; i < 4n; i++) guestStore(c, vcpu, MiB + i * PAGE, '09');
    const v = vmOf(c, vm);
    const gfn = Number(MiB >> 12n);
    assert.equal(mappedPages(v, gfn, gfn + 4), 4);
    ok(c.h.fallocate(g, PUNCH, PAGE, 2n * PAGE));
    assert.equal(mappedPages(v, gfn, gfn + 4), 2);
    assert.equal(v.stage2[0]!.get(gfn + 1), undefined);
    assert.equal(v.stage2[0]!.get(gfn + 2), undefined);
    assert.equal(guestLoad(c, vcpu, MiB + PAGE, 1), '00');
    assert.equal(guestLoad(c, vcpu, MiB, 1), '09');
  });

  test('punch hole unmaps the folios from every host mapping: stage-2 made via a plain slot goes', () => {
    // Found by the model fuzzer (seed 1000956): truncate_cleanup_folio() -> unmap_mapping_folio()
    // -> mmu notifier; without it the plain slot kept a stage-2 mapping of the freed page.
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE, GMEM_SHARED);
    const m = mmapFd(c, g, 4n * PAGE);
    const m2 = mmapFd(c, g, PAGE, RW, 2n * PAGE);
    ok(setRegion(c, vm, { slot: 1n, flags: 0n, gpa: MiB, size: 4n * PAGE, uaddr: m }));
    ok(setRegion(c, vm, { slot: 2n, flags: 0n, gpa: 2n * MiB, size: PAGE, uaddr: m2 }));
    const vcpu = createVcpu(c, vm);
    for (let i = 0n; i < 4n; i++) guestStore(c, vcpu, MiB + i * PAGE, '09');
    assert.equal(guestLoad(c, vcpu, 2n * MiB, 1), '09');
    const v = vmOf(c, vm);
    const gfn = Number(MiB >> 12n);
    const gfn2 = Number((2n * MiB) >> 12n);
    assert.equal(mappedPages(v, gfn, gfn + 4), 4);
    assert.equal(mappedPages(v, gfn2, gfn2 + 1), 1);
    ok(c.h.fallocate(g, PUNCH, 2n * PAGE, 8n * PAGE));
    assert.equal(mappedPages(v, gfn, gfn + 4), 2);
    assert.equal(mappedPages(v, gfn2, gfn2 + 1), 0, 'the second mapping of the file is zapped too');
    assert.equal(guestLoad(c, vcpu, MiB + 3n * PAGE, 1), '00');
    assert.equal(guestLoad(c, vcpu, 2n * MiB, 1), '00');
    assert.equal(peekHex(c, m + 2n * PAGE, 1), '00');
    assert.equal(guestLoad(c, vcpu, MiB, 1), '09');
  });
});

describe('capabilities and VM types (§2.1, §1.1)', () => {
  const caps = (c: ReturnType<typeof newHost>, fd: number, ids: number[]) =>
    ids.map((id) => ok(c.h.kvmCheckExtension(fd, BigInt(id))));
  test('linux-6.18-pvm: the values measured on the development machines [verified]', () => {
    const c = newHost('linux-6.18-pvm');
    const vm = createVm(c);
    // GUEST_MEMFD, GUEST_MEMFD_FLAGS, VM_TYPES, USER_MEMORY2, MEMORY_FAULT_INFO, EXIT_HYPERCALL,
    // MEMORY_ATTRIBUTES, PRE_FAULT_MEMORY
    const ids = [234, 244, 235, 231, 232, 201, 233, 236];
    assert.deepEqual(caps(c, c.kvm, ids), [1n, 3n, 1n, 1n, 1n, 4096n, 0n, 0n]);
    assert.deepEqual(caps(c, vm, ids), [1n, 3n, 1n, 1n, 1n, 4096n, 0n, 0n]);
    for (let t = 1n; t <= 5n; t++) fails(c.h.kvmCreateVm(c.kvm, t), 'EINVAL', `type ${t}`);
  });

  test('linux-6.18: DEFAULT and SW_PROTECTED; per-VM GUEST_MEMFD_FLAGS and MEMORY_ATTRIBUTES', () => {
    const c = newHost();
    const d = createVm(c);
    const sw = createVm(c, SW_PROTECTED_VM);
    const ids = [234, 244, 235, 233, 236];
    assert.deepEqual(caps(c, c.kvm, ids), [1n, 3n, 3n, 8n, 1n]);
    assert.deepEqual(caps(c, d, ids), [1n, 3n, 3n, 0n, 1n]);
    assert.deepEqual(caps(c, sw, ids), [1n, 1n, 3n, 8n, 1n]);
    for (let t = 2n; t <= 5n; t++) fails(c.h.kvmCreateVm(c.kvm, t), 'EINVAL', `type ${t}`);
  });

  test('KVM_CHECK_EXTENSION on a guest_memfd → ENOTTY, on a vCPU → EINVAL', () => {
    const c = newHost();
    const vm = createVm(c);
    fails(c.h.kvmCheckExtension(createGmem(c, vm, PAGE), 234n), 'ENOTTY');
    fails(c.h.kvmCheckExtension(createVcpu(c, vm), 234n), 'EINVAL');
  });
});

describe('what does not invalidate guest mappings (§3.5)', () => {
  test('fallocate allocate, mmap and host writes leave stage-2 mappings alone', () => {
    const c = newHost();
    const vm = createVm(c);
    const g = createGmem(c, vm, 4n * PAGE, GMEM_SHARED);
    ok(setRegion(c, vm, { slot: 1n, flags: MEM_GUEST_MEMFD, gpa: MiB, size: 4n * PAGE, gmem: g }));
    const vcpu = createVcpu(c, vm);
    guestStore(c, vcpu, MiB, '01');
    const v = vmOf(c, vm);
    const seq = v.mmuInvalidateSeq;
    ok(c.h.fallocate(g, KEEP_SIZE, 0n, 4n * PAGE));
    const m = mmapFd(c, g, 4n * PAGE);
    poke(c, m, '02');
    poke(c, m + PAGE, '03');
    assert.equal(v.mmuInvalidateSeq, seq);
    const gfn = Number(MiB >> 12n);
    assert.equal(mappedPages(v, gfn, gfn + 4), 1);
    assert.equal(guestLoad(c, vcpu, MiB, 1), '02', 'same page: the host write is visible');
  });
});
