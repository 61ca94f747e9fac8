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

  test('a VMM touch or a GUP of a never-populated protected page allocates it before failing', () => {
    const r = runCheckedLines(
      [
        ...VM_WITH_RAM,
        { op: 'pipe2', flags: 0, as: 'pr', write_as: 'pw' },
        hypercall(12),
        { op: 'peek', addr: 'm+0x3000', len: 1 },
        { op: 'vmsplice', fd: 'pw', addr: 'm+0x2000', len: 4096, flags: 2 },
      ],
      PROTNONE,
    );
    assert.deepEqual(r.results.slice(6), [
      '{"ok":false,"fault":"SIGBUS"}',
      '{"ok":false,"errno":"EFAULT"}',
    ]);
    // do_anonymous_page() allocated and mapped PROT_NONE (no zero page in a protected VMA) before
    // the retried access met the PROT_NONE PTE.
    const mm = r.backend.host.mm;
    const base = mm.vmas.entries().next().value!.start;
    assert.equal(mm.anon.countIn(base + 2, base + 4), 2);
    assert.deepEqual(r.violations, []);
  });

  test('shmem guest RAM: protected pages are private whoever maps them (DMA pin, forked child)', () => {
    const SHMEM_RAM = VM_WITH_RAM.map((l) =>
      'op' in l && l.op === 'mmap' ? { ...l, flags: 0x21 } : l,
    );
    const dma = runCheckedLines(
      [
        ...SHMEM_RAM,
        ...VFIO,
        { op: 'poke', addr: 'm', hex: '5e' },
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0x100000, size: 4096 },
        hypercall(12),
        { op: 'dma_read', fd: 'c', iova: 0x100000, len: 1 },
      ],
      PROTNONE,
    );
    assert.equal(dma.results[11], '{"ok":true,"value":"5e"}');
    assert.equal(dma.violations.length, 1);
    assert.match(dma.violations[0]!, /a device DMA \(IOMMU\) read of protected guest RAM \(shmem/);
    const fork = runCheckedLines(
      [
        ...SHMEM_RAM,
        { op: 'poke', addr: 'm+0x1000', hex: '5e' },
        { op: 'fork', as: 'child' },
        hypercall(12),
        { op: 'peek', addr: 'm+0x1000', len: 1 },
        { op: 'peek', proc: 'child', addr: 'm+0x1000', len: 1 },
      ],
      PROTNONE,
    );
    // The RFC changes current->mm's VMAs only: the child's mapping of the same page reads it.
    assert.deepEqual(fork.results.slice(7), [
      '{"ok":false,"fault":"SIGBUS"}',
      '{"ok":true,"value":"5e"}',
    ]);
    assert.equal(fork.violations.length, 1);
    assert.match(fork.violations[0]!, /a VMM read of protected guest RAM \(shmem/);
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

  test('what UPM v10 accepts and the model cannot hold is not modelled, not an errno', () => {
    const slot = (o: object): object => ({
      op: 'KVM_SET_USER_MEMORY_REGION_EXT',
      vm: 'vm',
      slot: 2,
      flags: 4,
      guest_phys_addr: 0xc0000000,
      memory_size: 16384,
      userspace_addr: 'shm',
      restricted_fd: 'r',
      restricted_offset: 0,
      ...o,
    });
    const refused = (extra: object[]): void =>
      assert.throws(
        () => runCheckedLines([...RESTRICTED_SLOT, ...extra], RESTRICTEDMEM),
        /not modelled|NotModelled|UPM v10/,
      );
    // Two memslots binding one range of the fd; a binding past the fd's end.
    refused([slot({})]);
    refused([slot({ restricted_offset: 8192 })]);
    // A flags change of the private memslot without KVM_MEM_PRIVATE.
    refused([{ ...(RESTRICTED_SLOT[4] as object), flags: 1 }]);
    // shmem_fallocate() allocating in the restricted fd.
    refused([{ op: 'fallocate', fd: 'r', mode: 1, offset: 0, len: 4096 }]);
    // A private fault on a private memslot that logs dirty pages (accepted by v10).
    refused([
      { op: 'memfd_restricted', flags: 0, as: 'r2' },
      { op: 'ftruncate', fd: 'r2', length: 16384 },
      slot({ flags: 5, restricted_fd: 'r2' }),
      {
        op: 'KVM_SET_MEMORY_ATTRIBUTES',
        vm: 'vm',
        address: 0xc0000000,
        size: 4096,
        attributes: 8,
        flags: 0,
      },
      { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 0xc0000000 } }] },
    ]);
  });

  test('a memory error: every vCPU of the VM shuts down at its next KVM_RUN, nothing is zapped', () => {
    const r = runCheckedLines(
      [
        ...RESTRICTED_SLOT,
        { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 1, as: 'cpu1' },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ store: { gpa: 0x80000000, hex: '5e' } }] },
        // No page at offset 0x3000: nothing reaches KVM.
        { op: 'memory_failure', fd: 'r', offset: 0x3000 },
        { op: 'KVM_RUN', vcpu: 'cpu1', guest: [{ load: { gpa: 0x80000000 } }] },
        { op: 'memory_failure', fd: 'r', offset: 0 },
        { op: 'KVM_RUN', vcpu: 'cpu1', guest: [{ load: { gpa: 0x80000000 } }] },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 0x80000000 } }] },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ load: { gpa: 0x80000000 } }] },
      ],
      RESTRICTEDMEM,
    );
    assert.match(r.results[10]!, /"reason":"LOAD","gpa":2147483648,"hex":"5e000000"/);
    assert.match(r.results[12]!, /^\{"ok":true,"exits":\[\{"reason":"SHUTDOWN"\}\]\}$/);
    assert.match(r.results[13]!, /^\{"ok":true,"exits":\[\{"reason":"SHUTDOWN"\}\]\}$/);
    // The request is consumed; the page is still mapped and readable by the guest.
    assert.match(r.results[14]!, /"reason":"LOAD","gpa":2147483648,"hex":"5e000000"/);
    assert.deepEqual(r.violations, []);
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

  const ANON_VM = SHMEM_VM.map((l) => ('op' in l && l.op === 'mmap' ? { ...l, flags: 0x22 } : l));
  const convert = (gpa: number, priv: boolean): object => ({
    op: 'KVM_RUN',
    vcpu: 'cpu',
    guest: [{ hypercall: { nr: 12, args: [gpa, 1, priv ? 16 : 0] } }],
  });

  test('sharing keeps one ordinary pin; going private again needs it alone, on an anonymous page', () => {
    const r = runCheckedLines(
      [
        ...ANON_VM,
        ...VFIO,
        convert(0x80000000, true),
        convert(0x80000000, false),
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0x100000, size: 4096 },
        convert(0x80000000, true),
        { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', iova: 0x100000, size: 4096 },
        convert(0x80000000, true),
        { op: 'peek', addr: 'm', len: 1 },
      ],
      EXCL,
    );
    const rax = (i: number): string =>
      /"HYPERCALL_RET","hex":"([0-9a-f]+)"/.exec(r.results[i]!)![1]!;
    assert.equal(rax(8), '00000000');
    assert.equal(rax(9), '00000000');
    // KVM's kept pin is still there after the share.
    assert.equal(r.backend.host.frames.pins.size, 1);
    assert.equal(r.results[10], '{"ok":true}');
    // Two pins (KVM's and VFIO's): reexc_user_page() is -EBUSY.
    assert.equal(rax(11), 'f0ffffff');
    assert.equal(rax(13), '00000000');
    // Private again: the VMM's read is the design's violation.
    assert.equal(r.violations.length, 1);
    const s = runCheckedLines(
      [
        ...SHMEM_VM,
        convert(0x80000000, true),
        convert(0x80000000, false),
        convert(0x80000000, true),
      ],
      EXCL,
    );
    // Shmem: not PageAnonExclusive, -EINVAL.
    assert.match(s.results[6]!, /"HYPERCALL_RET","hex":"eaffffff"/);
  });

  test('exclusivity is per folio: a THP with one private page refuses pins of its other pages', () => {
    const THP_VM = [
      { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
      { op: 'mmap', fd: null, length: 0x200000, prot: 3, flags: 0x22, offset: 0, as: 'm' },
      // MADV_HUGEPAGE
      { op: 'madvise', addr: 'm', length: 0x200000, advice: 14 },
      {
        op: 'KVM_SET_USER_MEMORY_REGION',
        vm: 'vm',
        slot: 1,
        flags: 0,
        guest_phys_addr: 0x80000000,
        memory_size: 0x200000,
        userspace_addr: 'm',
      },
      { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
    ];
    const r = runCheckedLines(
      [
        ...THP_VM,
        ...VFIO,
        { op: 'poke', addr: 'm', hex: '01' },
        convert(0x80000000, true),
        {
          op: 'VFIO_IOMMU_MAP_DMA',
          fd: 'c',
          flags: 3,
          addr: 'm+0x1000',
          iova: 0x100000,
          size: 4096,
        },
        // A second private page of the same folio: the folio is pinned exclusively already.
        convert(0x80001000, true),
        // The shared page of the THP is the VMM's to touch; the private one is not.
        { op: 'peek', addr: 'm+0x1000', len: 1 },
        { op: 'peek', addr: 'm', len: 1 },
        convert(0x80000000, false),
        {
          op: 'VFIO_IOMMU_MAP_DMA',
          fd: 'c',
          flags: 3,
          addr: 'm+0x1000',
          iova: 0x100000,
          size: 4096,
        },
      ],
      EXCL,
    );
    assert.match(r.results[10]!, /"HYPERCALL_RET","hex":"00000000"/);
    assert.equal(r.results[11], '{"ok":false,"errno":"EBUSY"}');
    assert.match(r.results[12]!, /"HYPERCALL_RET","hex":"f0ffffff"/);
    assert.equal(r.violations.length, 1);
    assert.match(r.violations[0]!, /a VMM read of a private guest page/);
    assert.equal(r.results[16], '{"ok":true}');
  });
});
