/**
 * The historical private-memory designs (profiles/designs.ts): each design's uAPI and mm rules,
 * and its own "host cannot reach private memory" invariant reporting what the design lets
 * through. Checked runs of trace lines.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { matchProfile } from '../../src/core/profiles/match.js';
import { runCheckedLines } from './helpers.js';

const PROTNONE = getProfile('design-2020-protnone-follkvm')!;

/** A DEFAULT VM with 4 pages of anonymous guest RAM `m` at GPA 2 GiB and vCPU `cpu`. */
const VM_WITH_RAM = [
  { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
  { op: 'mmap', fd: null, length: 16384, prot: 3, flags: 0x22, offset: 0, as: 'm' },
  {
    op: 'KVM_SET_USER_MEMORY_REGION',
    vm: 'vm',
    slot: 1,
    flags: 0,
    guest_phys_addr: 0x80000000,
    memory_size: 16384,
    userspace_addr: 'm',
  },
  { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
];
const VFIO = [
  { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
  { op: 'open', path: '/dev/vfio/0', as: 'g' },
  { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
  { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
];
const hypercall = (nr: number, a0 = 0, a1 = 0): object => ({
  op: 'KVM_RUN',
  vcpu: 'cpu',
  guest: [{ hypercall: { nr, args: [a0, a1, 0] } }],
});

describe('design-2020-protnone-follkvm', () => {
  test('is composed from its facts and never matches a live kernel', () => {
    assert.equal(PROTNONE.design, 'protnone-follkvm');
    assert.equal(PROTNONE.guestMemfdConfig, false);
    assert.equal(PROTNONE.memoryAttributesConfig, false);
    assert.deepEqual([...PROTNONE.vmTypes.keys()], [0n]);
    assert.equal(matchProfile(PROTNONE.facts).profile?.name, undefined);
  });

  test('a page DMA-mapped before the guest enabled protection stays reachable: a violation', () => {
    const r = runCheckedLines(
      [
        ...VM_WITH_RAM,
        ...VFIO,
        { op: 'poke', addr: 'm', hex: '5e' },
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0x100000, size: 4096 },
        hypercall(12),
        { op: 'peek', addr: 'm', len: 1 },
        { op: 'dma_read', fd: 'c', iova: 0x100000, len: 1 },
        {
          op: 'VFIO_IOMMU_MAP_DMA',
          fd: 'c',
          flags: 3,
          addr: 'm+0x1000',
          iova: 0x200000,
          size: 4096,
        },
      ],
      PROTNONE,
    );
    assert.deepEqual(r.results.slice(11), [
      '{"ok":false,"fault":"SIGBUS"}',
      '{"ok":true,"value":"5e"}',
      '{"ok":false,"errno":"EFAULT"}',
    ]);
    assert.equal(r.violations.length, 1);
    assert.match(
      r.violations[0]!,
      /^host-no-private-access-protnone-follkvm: a device DMA \(IOMMU\) read of protected guest RAM/,
    );
  });

  test('GUP without FOLL_KVM is refused everywhere: MADV_POPULATE_WRITE, vmsplice; KVM still maps', () => {
    const r = runCheckedLines(
      [
        ...VM_WITH_RAM,
        { op: 'pipe2', flags: 0, as: 'pr', write_as: 'pw' },
        hypercall(12),
        // MADV_POPULATE_WRITE (23)
        { op: 'madvise', addr: 'm', length: 16384, advice: 23 },
        { op: 'vmsplice', fd: 'pw', addr: 'm', len: 4096, flags: 2 },
        {
          op: 'KVM_RUN',
          vcpu: 'cpu',
          guest: [{ store: { gpa: 0x80000000, hex: 'ab' } }, { load: { gpa: 0x80000000 } }],
        },
        // A share of a range that is not backed by a memslot is 0 ("It's okay").
        hypercall(13, 0x10, 1),
      ],
      PROTNONE,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[6], '{"ok":false,"errno":"EFAULT"}');
    assert.equal(r.results[7], '{"ok":false,"errno":"EFAULT"}');
    assert.match(r.results[8]!, /"reason":"LOAD".*"hex":"ab000000"/);
    assert.match(r.results[9]!, /"reason":"HYPERCALL_RET","hex":"00000000"/);
  });

  test('on linux-6.18 hypercall 12 is KVM_HC_MAP_GPA_RANGE: -KVM_ENOSYS without the exit cap', () => {
    const r = runCheckedLines(
      [...VM_WITH_RAM, hypercall(12), { op: 'peek', addr: 'm', len: 1 }],
      getProfile('linux-6.18')!,
    );
    assert.match(r.results[4]!, /"hex":"18fcffff"/);
    assert.equal(r.results[5], '{"ok":true,"value":"00"}');
  });
});

const RESTRICTEDMEM = getProfile('design-2023-restrictedmem')!;

/** A SW_PROTECTED VM, a 4-page restricted fd `r` bound as slot 1 at 2 GiB over shared `shm`. */
const RESTRICTED_SLOT = [
  { op: 'KVM_CREATE_VM', type: 1, as: 'vm' },
  { op: 'memfd_restricted', flags: 0, as: 'r' },
  { op: 'ftruncate', fd: 'r', length: 16384 },
  { op: 'mmap', fd: null, length: 16384, prot: 3, flags: 0x21, offset: 0, as: 'shm' },
  {
    op: 'KVM_SET_USER_MEMORY_REGION_EXT',
    vm: 'vm',
    slot: 1,
    flags: 4,
    guest_phys_addr: 0x80000000,
    memory_size: 16384,
    userspace_addr: 'shm',
    restricted_fd: 'r',
    restricted_offset: 0,
  },
  {
    op: 'KVM_SET_MEMORY_ATTRIBUTES',
    vm: 'vm',
    address: 0x80000000,
    size: 16384,
    attributes: 8,
    flags: 0,
  },
  { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
];

describe('design-2023-restrictedmem', () => {
  test('is composed from its facts: memory attributes, SW_PROTECTED, no guest_memfd', () => {
    assert.equal(RESTRICTEDMEM.design, 'restrictedmem');
    assert.equal(RESTRICTEDMEM.guestMemfdConfig, false);
    assert.equal(RESTRICTEDMEM.memoryAttributesConfig, true);
    assert.deepEqual([...RESTRICTEDMEM.vmTypes.keys()], [0n, 1n]);
    assert.equal(matchProfile(RESTRICTEDMEM.facts).profile?.name, undefined);
  });

  test('the restricted fd outlives the VM fd: pages freed and the VM destroyed at its close', () => {
    const r = runCheckedLines(
      [
        ...RESTRICTED_SLOT,
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ store: { gpa: 0x80000000, hex: '5e' } }] },
        { op: 'close', fd: 'cpu' },
        { op: 'close', fd: 'vm' },
        { op: 'fstat', fd: 'r' },
        { op: 'close', fd: 'r' },
      ],
      RESTRICTEDMEM,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[10], '{"ok":true,"stat":{"size":16384,"blocks":8}}');
    assert.equal(r.backend.host.vms.size, 0);
  });

  test('other kernels: no memfd_restricted (ENOSYS), and the _ext struct is the v1 ioctl', () => {
    const r = runCheckedLines(
      [
        { op: 'KVM_CREATE_VM', type: 1, as: 'vm' },
        { op: 'memfd_restricted', flags: 0 },
        { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x21, offset: 0, as: 'shm' },
        {
          op: 'KVM_SET_USER_MEMORY_REGION_EXT',
          vm: 'vm',
          slot: 1,
          flags: 4,
          guest_phys_addr: 0x80000000,
          memory_size: 4096,
          userspace_addr: 'shm',
        },
        {
          op: 'KVM_SET_USER_MEMORY_REGION_EXT',
          vm: 'vm',
          slot: 1,
          flags: 0,
          guest_phys_addr: 0x80000000,
          memory_size: 4096,
          userspace_addr: 'shm',
        },
      ],
      getProfile('linux-6.18')!,
    );
    assert.deepEqual(r.results.slice(1), [
      '{"ok":false,"errno":"ENOSYS"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":true}',
    ]);
  });
});

describe('design-2024-shmem-exclusive-pin', () => {
  const EXCL = getProfile('design-2024-shmem-exclusive-pin')!;
  const SHMEM_VM = [
    { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
    { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x21, offset: 0, as: 'm' },
    {
      op: 'KVM_SET_USER_MEMORY_REGION',
      vm: 'vm',
      slot: 1,
      flags: 0,
      guest_phys_addr: 0x80000000,
      memory_size: 8192,
      userspace_addr: 'm',
    },
    { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
  ];

  test('the VMM reading a private page is not refused on this host: the design’s violation', () => {
    const v = runCheckedLines(
      [
        ...SHMEM_VM,
        { op: 'poke', addr: 'm', hex: '5e' },
        {
          op: 'KVM_RUN',
          vcpu: 'cpu',
          guest: [{ hypercall: { nr: 12, args: [0x80000000, 1, 16] } }],
        },
        { op: 'peek', addr: 'm', len: 1 },
        { op: 'close', fd: 'cpu' },
        { op: 'close', fd: 'vm' },
      ],
      EXCL,
    );
    assert.equal(v.results[6], '{"ok":true,"value":"5e"}');
    assert.equal(v.violations.length, 1);
    assert.match(
      v.violations[0]!,
      /^host-no-private-access-shmem-exclusive-pin: a VMM read of a private guest page/,
    );
    // The VM's exclusive pins went with it.
    assert.equal(v.backend.host.frames.exclusive.size, 0);
    assert.equal(v.backend.host.frames.pins.size, 0);
  });
});
