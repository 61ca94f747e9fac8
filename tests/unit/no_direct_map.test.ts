/**
 * GUEST_MEMFD_FLAG_NO_DIRECT_MAP (kernel-uapi.md §6.3, the NO_DIRECT_MAP series v12) on the
 * linux-next-gmem profiles: the flag and its cap, folios leaving the kernel direct map at their
 * first guest or host mapping and coming back when freed, GUP refusing the file's VMAs (so the
 * host-kernel read of vmsplice fails where it would have read guest data), the two invariants and
 * their mutants. Checked runs: every invariant holds at every step.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runChecked } from '../../src/check/checked_run.js';
import { snapshot } from '../../src/core/inspect.js';
import { composeProfile } from '../../src/core/profiles/compose.js';
import { LINUX_6_18_TDX_FACTS } from '../../src/core/profiles/linux_6_18.js';
import { createVm, fails, newHost, ok, runCheckedLines, PAGE } from './helpers.js';

const NEXT = getProfile('linux-next-gmem')!;
const CAP_GMEM_FLAGS = BigInt(KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS);
const NO_DIRECT_MAP = 4n;

/** A DEFAULT VM with a vCPU and a 4-page guest_memfd of `flags`, mmapped as memslot 1's userspace_addr. */
function setup(flags: number): object[] {
  return [
    { op: 'KVM_CREATE_VM', fd: 'kvm', type: 0, as: 'vm' },
    { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 16384, flags, as: 'g' },
    { op: 'mmap', fd: 'g', length: 16384, prot: 3, flags: 1, offset: 0, as: 'm' },
    {
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm',
      slot: 1,
      flags: 4,
      guest_phys_addr: 0x8000_0000,
      memory_size: 16384,
      userspace_addr: 'm',
      guest_memfd: 'g',
      guest_memfd_offset: 0,
    },
  ];
}

const N = setup(0).length;

describe('the flag', () => {
  test('linux-6.18 refuses bit 2 as before; linux-next-gmem offers it (cap 15 with HUGETLB on /dev/kvm and a DEFAULT VM)', () => {
    const old = newHost('linux-6.18');
    assert.equal(ok(old.h.kvmCheckExtension(old.kvm, CAP_GMEM_FLAGS)), 3n);
    fails(old.h.kvmCreateGuestMemfd(createVm(old), PAGE, NO_DIRECT_MAP), 'EINVAL');
    for (const name of ['linux-next-gmem', 'linux-next-gmem-vmattr']) {
      const c = newHost(name);
      assert.equal(ok(c.h.kvmCheckExtension(c.kvm, CAP_GMEM_FLAGS)), 15n, name);
      const vm = createVm(c);
      assert.equal(ok(c.h.kvmCheckExtension(vm, CAP_GMEM_FLAGS)), 15n, name);
      // Alone (no MMAP: a private-only file) or with the others.
      ok(c.h.kvmCreateGuestMemfd(vm, PAGE, NO_DIRECT_MAP));
      ok(c.h.kvmCreateGuestMemfd(vm, PAGE, 7n));
      fails(c.h.kvmCreateGuestMemfd(vm, PAGE, 16n), 'EINVAL');
    }
  });

  test('never for a TDX VM (kvm_arch_gmem_supports_no_direct_map()), whatever the kernel offers', () => {
    const vm = [...LINUX_6_18_TDX_FACTS.caps.vm];
    vm[KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS] = 7;
    const p = composeProfile(
      { name: 'tdx-with-nodmap', description: 'test' },
      { ...LINUX_6_18_TDX_FACTS, caps: { ...LINUX_6_18_TDX_FACTS.caps, vm } },
    );
    assert.equal(p.vmTypes.get(0n)!.gmemFlags, 7n);
    assert.equal(p.vmTypes.get(5n)!.gmemFlags & NO_DIRECT_MAP, 0n);
  });
});

describe('the direct map follows the folios', () => {
  test('host and guest faults zap, punch and release restore; only the flagged file is affected', () => {
    const r = runCheckedLines(
      [
        ...setup(7),
        { op: 'poke', addr: 'm', hex: 'f00d' },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ store: { gpa: 0x8000_1000, hex: 'aa' } }] },
        { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 4096, flags: 3, as: 'plain' },
        { op: 'mmap', fd: 'plain', length: 4096, prot: 3, flags: 1, offset: 0, as: 'pm' },
        { op: 'poke', addr: 'pm', hex: '01' },
        { op: 'fallocate', fd: 'g', mode: 3, offset: 0, len: 4096 },
        { op: 'peek', addr: 'm+0x1000', len: 1 },
      ],
      NEXT,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[N + 6], '{"ok":true,"value":"aa"}');
    const h = r.backend.host;
    // Page 1 (the guest's) is out; page 0 was punched (restored); the plain file's page is in.
    assert.equal(h.frames.noDirectMap.totalCovered(), 1);
    const s = snapshot(h);
    const g = s.gmemFiles.find((f) => f.flags === 7)!;
    assert.deepEqual(g.pages, [{ start: 1, end: 2, state: 'prepared', directMap: false }]);
    assert.equal(g.counts.noDirectMap, 1);
    const p = s.gmemFiles.find((f) => f.flags === 3)!;
    assert.equal(p.counts.noDirectMap, undefined);
    assert.equal(p.pages[0]!.directMap, undefined);
    assert.equal(s.frames.noDirectMap, 1);
  });

  test('closing the last reference frees every folio back into the direct map', () => {
    const r = runCheckedLines(
      [
        ...setup(7),
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 0x8000_0000, size: 4 } }] },
        { op: 'poke', addr: 'm+0x3000', hex: '01' },
        { op: 'munmap', addr: 'm', length: 16384 },
        { op: 'close', fd: 'g' },
      ],
      NEXT,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.backend.host.frames.noDirectMap.size, 0);
    assert.equal(snapshot(r.backend.host).frames.noDirectMap, undefined);
  });
});

describe('GUP refuses the mapping: the host-kernel read fails instead', () => {
  const pipeRead = (flags: number): ReturnType<typeof runCheckedLines> =>
    runCheckedLines(
      [
        ...setup(flags),
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ store: { gpa: 0x8000_0000, hex: '5ec2e7a1' } }] },
        { op: 'pipe2', flags: 0, as: 'pr', write_as: 'pw' },
        { op: 'vmsplice', fd: 'pw', addr: 'm', len: 4096, flags: 2 },
        { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 34, offset: 0, as: 'buf' },
        // The pipe's read copies the page through the kernel's mapping of it.
        { op: 'vmsplice', fd: 'pr', addr: 'buf', len: 4096, flags: 2 },
        { op: 'peek', addr: 'buf', len: 4 },
      ],
      NEXT,
    );

  test('without the flag, vmsplice then a pipe read copies guest data through the kernel', () => {
    const r = pipeRead(3);
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[N + 2], '{"ok":true,"value":4096}');
    assert.equal(r.results[N + 5], '{"ok":true,"value":"5ec2e7a1"}');
  });

  test('with it, vmsplice is EFAULT (check_vma_flags()) and nothing reaches the pipe', () => {
    const r = pipeRead(7);
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[N + 2], '{"ok":false,"errno":"EFAULT"}');
    assert.equal(r.results[N + 4], '{"ok":false,"errno":"EAGAIN"}', 'empty pipe');
    assert.equal(r.results[N + 5], '{"ok":true,"value":"00000000"}');
  });

  test('MADV_POPULATE and VFIO pinning are EFAULT; KVM through a plain memslot at the mapping gets EFAULT', () => {
    const r = runCheckedLines(
      [
        ...setup(7),
        { op: 'madvise', addr: 'm', length: 16384, advice: 23 },
        { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
        { op: 'open', path: '/dev/vfio/0', as: 'grp' },
        { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'grp', container: 'c' },
        { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0, size: 4096 },
        // A memslot without KVM_MEM_GUEST_MEMFD whose userspace_addr is the mapping: the guest's
        // fault goes through hva_to_pfn() (GUP) and fails.
        {
          op: 'KVM_SET_USER_MEMORY_REGION2',
          vm: 'vm',
          slot: 2,
          flags: 0,
          guest_phys_addr: 0x9000_0000,
          memory_size: 16384,
          userspace_addr: 'm',
        },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 0x9000_0000, size: 4 } }] },
      ],
      NEXT,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[N], '{"ok":false,"errno":"EFAULT"}');
    assert.equal(r.results[N + 5], '{"ok":false,"errno":"EFAULT"}');
    assert.match(r.results[N + 7]!, /"errno":"EFAULT".*MEMORY_FAULT/);
    assert.equal(r.backend.host.frames.noDirectMap.size, 0, 'nothing was faulted in');
  });
});

describe('the invariants catch the mutants', () => {
  const ops = (lines: readonly object[]): ReturnType<typeof parseTrace>['ops'] =>
    parseTrace(lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 't.jsonl').ops;
  const violations = (lines: readonly object[], mutant: string): string[] =>
    runChecked(ops(lines), NEXT, { mutants: [mutant] }).failures.flatMap((f) =>
      f.violations.map((v) => v.invariant),
    );

  test('nodmap_free_keeps_zapped: nodmap-freed-in-direct-map', () => {
    const t = [
      ...setup(7),
      { op: 'poke', addr: 'm', hex: '01' },
      { op: 'fallocate', fd: 'g', mode: 3, offset: 0, len: 4096 },
    ];
    assert.equal(runChecked(ops(t), NEXT).failures.length, 0);
    assert.ok(violations(t, 'nodmap_free_keeps_zapped').includes('nodmap-freed-in-direct-map'));
  });

  test('nodmap_guest_map_no_zap: nodmap-mapped-not-in-direct-map', () => {
    const t = [
      ...setup(7),
      { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 0x8000_0000, size: 4 } }] },
    ];
    assert.equal(runChecked(ops(t), NEXT).failures.length, 0);
    assert.ok(violations(t, 'nodmap_guest_map_no_zap').includes('nodmap-mapped-not-in-direct-map'));
  });
});
