/**
 * VFIO type1 (core/vfio/vfio.ts): a container, the model host's IOMMU group, MAP_DMA pins the
 * vaddr's pages long-term and maps them by IOVA, the device's DMA goes through the domain, and a
 * page the VMM discards while it is DMA-mapped lives on: the device keeps reaching the old frame
 * (the stale-DMA sequence of vmm-ecosystem.md §1.1) until UNMAP_DMA unpins it. Checked runs.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { runCheckedLines } from './helpers.js';
import { iommuNoPrivate } from '../../src/core/invariants/pins_iommu.js';
import { buildOwnership } from '../../src/core/invariants/ownership.js';
import type { CheckState } from '../../src/core/invariants/types.js';
import { ZERO_PFN } from '../../src/core/base/units.js';

const X86 = getProfile('linux-6.18')!;
const NEXT = getProfile('linux-next-gmem')!;

function run(
  lines: readonly object[],
  profile = X86,
): {
  results: string[];
  violations: string[];
  held: number;
  pins: number;
} {
  const { results, violations, backend } = runCheckedLines(lines, profile);
  return {
    results,
    violations,
    held: backend.host.frames.heldFrames,
    pins: backend.host.frames.pins.size,
  };
}

const SETUP = [
  { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
  { op: 'open', path: '/dev/vfio/0', as: 'g' },
  { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
  { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
  { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x22, offset: 0, as: 'm' },
];

describe('VFIO type1', () => {
  test('a discarded DMA-mapped page lives on: the device reaches the old frame until UNMAP_DMA', () => {
    const r = run([
      ...SETUP,
      { op: 'poke', addr: 'm', hex: 'aa' },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0x100000, size: 8192 },
      { op: 'dma_read', fd: 'c', iova: 0x100000, len: 1 },
      { op: 'madvise', addr: 'm', length: 8192, advice: 4 },
      { op: 'poke', addr: 'm', hex: 'bb' },
      { op: 'dma_read', fd: 'c', iova: 0x100000, len: 1 },
      { op: 'dma_write', fd: 'c', iova: 0x100000, hex: 'cc' },
      { op: 'peek', addr: 'm', len: 1 },
      { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', iova: 0x100000, size: 8192 },
      { op: 'dma_read', fd: 'c', iova: 0x100000, len: 1 },
    ]);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.results.slice(5), [
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true,"value":"aa"}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true,"value":"aa"}',
      '{"ok":true}',
      '{"ok":true,"value":"bb"}',
      '{"ok":true,"value":8192}',
      '{"ok":false,"errno":"EFAULT"}',
    ]);
    assert.equal(r.held, 0);
    assert.equal(r.pins, 0);
  });

  test('errnos of the container, group and type1 ioctls', () => {
    const r = run([
      { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
      { op: 'open', path: '/dev/vfio/0', as: 'g' },
      { op: 'open', path: '/dev/vfio/0', as: 'g2' },
      { op: 'open', path: '/dev/vfio/7', as: 'g7' },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 0, iova: 0, size: 4096 },
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'g' },
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 2 },
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
      { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x22, offset: 0, as: 'm' },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 0, addr: 'm', iova: 0, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0x800, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0xfee00000, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', argsz: 8, flags: 3, addr: 'm', iova: 0, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm+0x2000', iova: 0, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0, size: 8192 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 1, addr: 'm', iova: 4096, size: 4096 },
      { op: 'dma_write', fd: 'c', iova: 0x10000, hex: '01' },
      { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', iova: 0, size: 4096 },
      { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', flags: 2, iova: 0, size: 0 },
      { op: 'close', fd: 'g' },
    ]);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.results, [
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EBUSY"}',
      '{"ok":false,"errno":"ENOENT"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EBADFD"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"ENODEV"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EFAULT"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EEXIST"}',
      '{"ok":false,"errno":"EFAULT"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":true,"value":8192}',
      '{"ok":true}',
    ]);
    assert.equal(r.pins, 0);
  });

  test('type1 v1: an UNMAP_DMA from inside a mapping unmaps nothing (size 0), the pin stays (review F1)', () => {
    // vfio_dma_do_unmap(): `if (!iommu->v2 && iova > dma->iova) break;` — so the guest_memfd page
    // stays pinned and IOMMU-mapped, and the conversion to private refuses (EAGAIN).
    const r = run(
      [
        { op: 'KVM_CREATE_VM', fd: 'kvm', type: 1, as: 'vm' },
        { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 16384, flags: 3, as: 'gmem' },
        { op: 'mmap', fd: 'gmem', length: 16384, prot: 3, flags: 1, offset: 0, as: 'mem' },
        { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
        { op: 'open', path: '/dev/vfio/0', as: 'g' },
        { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
        { op: 'VFIO_SET_IOMMU', fd: 'c', type: 1 },
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'mem', iova: 0, size: 8192 },
        {
          op: 'VFIO_IOMMU_MAP_DMA',
          fd: 'c',
          flags: 3,
          addr: 'mem+0x2000',
          iova: 0x4000,
          size: 4096,
        },
        { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', iova: 0x1000, size: 0x4000 },
        { op: 'dma_read', fd: 'c', iova: 0, len: 1 },
        { op: 'dma_read', fd: 'c', iova: 0x4000, len: 1 },
        {
          op: 'KVM_SET_MEMORY_ATTRIBUTES2',
          fd: 'gmem',
          offset: 0,
          size: 8192,
          attributes: 8,
          flags: 0,
          reserved: 0,
        },
        { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', iova: 0, size: 0x5000 },
      ],
      NEXT,
    );
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.results.slice(9), [
      '{"ok":true,"value":0}',
      '{"ok":true,"value":"00"}',
      '{"ok":true,"value":"00"}',
      '{"ok":false,"errno":"EAGAIN","error_offset":0}',
      '{"ok":true,"value":12288}',
    ]);
    assert.equal(r.pins, 0);
  });

  test('a read-only long-term pin of untouched private memory unshares: the device sees later CPU writes (review F7)', () => {
    // gup_must_unshare(): the shared zero page (and a MAP_PRIVATE file page) is never long-term
    // pinned in a COW mapping; FAULT_FLAG_UNSHARE maps a private anonymous page first.
    const r = run([
      ...SETUP,
      { op: 'mmap', fd: null, length: 8192, prot: 1, flags: 0x22, offset: 0, as: 'ro' },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 1, addr: 'm', iova: 0, size: 8192 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 1, addr: 'ro', iova: 0x10000, size: 8192 },
      { op: 'poke', addr: 'm', hex: 'abcd' },
      { op: 'dma_read', fd: 'c', iova: 0, len: 2 },
      { op: 'dma_read', fd: 'c', iova: 0x10000, len: 2 },
      { op: 'peek', addr: 'ro', len: 2 },
      { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', flags: 2, iova: 0, size: 0 },
    ]);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.results.slice(5), [
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true,"value":"abcd"}',
      '{"ok":true,"value":"0000"}',
      '{"ok":true,"value":"0000"}',
      '{"ok":true,"value":16384}',
    ]);
    assert.equal(r.pins, 0);
  });

  test('iommu-no-private: an IOMMU entry to the shared zero page is a violation (review F7)', () => {
    const r = runCheckedLines(
      [...SETUP, { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 1, addr: 'm', iova: 0, size: 4096 }],
      NEXT,
    );
    assert.deepEqual(r.violations, []);
    const host = r.backend.host;
    const state = {
      host,
      ownership: () => buildOwnership(host),
    } as unknown as CheckState;
    assert.deepEqual(iommuNoPrivate.check(state), []);
    const [d] = [...host.iommuDomains];
    assert.notEqual(d!.iopt.get(0)!.base, ZERO_PFN);
    d!.iopt.set(0, 1, { base: ZERO_PFN });
    assert.match(iommuNoPrivate.check(state)[0]!.message, /shared zero page/);
  });

  test('errnos from the review: EBADFD, VFIO_UNMAP_ALL, VADDR ENOENT, EOVERFLOW, wrong fds (F2-F6, F10)', () => {
    const r = run([
      { op: 'KVM_CREATE_VM', fd: 'kvm', type: 1, as: 'vm' },
      { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
      { op: 'mmap', fd: null, length: 16384, prot: 3, flags: 0x22, offset: 0, as: 'm' },
      { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
      { op: 'open', path: '/dev/vfio/0', as: 'g' },
      // F10: VFIO ioctls on /dev/kvm and vCPU fds are EINVAL, on a VM fd ENOTTY.
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'kvm', flags: 3, addr: 0, iova: 0, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'cpu', flags: 3, addr: 0, iova: 0, size: 4096 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'vm', flags: 3, addr: 0, iova: 0, size: 4096 },
      { op: 'VFIO_SET_IOMMU', fd: 'kvm', type: 3 },
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'kvm', container: 'vm' },
      // F5: a group ioctl on the container: EINVAL before VFIO_SET_IOMMU; a container ioctl on
      // the group: ENOTTY.
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'c', container: 'c' },
      { op: 'VFIO_SET_IOMMU', fd: 'g', type: 3 },
      // F2: a file that is not a container is EBADFD.
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'vm' },
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
      // F3: VFIO_UNMAP_ALL is an extension, not a type type1 opens: EINVAL; 6 ENODEV.
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 9 },
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 6 },
      { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
      // F5 after SET_IOMMU: type1's ioctl answers ENOTTY.
      { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'c', container: 'c' },
      // F4: VADDR without a mapping ENOENT, over one EINVAL.
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 4, addr: 'm', iova: 0x10000, size: 8192 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0x10000, size: 8192 },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 4, addr: 'm', iova: 0x10000, size: 8192 },
      // F6: a wrap is EOVERFLOW, before the prot check; size 0 stays EINVAL.
      {
        op: 'VFIO_IOMMU_MAP_DMA',
        fd: 'c',
        flags: 3,
        addr: 'm',
        iova: '0xfffffffffffff000',
        size: 8192,
      },
      {
        op: 'VFIO_IOMMU_MAP_DMA',
        fd: 'c',
        flags: 0,
        addr: 'm',
        iova: '0xfffffffffffff000',
        size: 8192,
      },
      { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 0, addr: 'm', iova: 0, size: 0 },
      { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', iova: '0xfffffffffffff000', size: 8192 },
      { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', flags: 2, iova: 0, size: 0 },
    ]);
    assert.deepEqual(r.violations, []);
    assert.deepEqual(r.results.slice(5), [
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"ENOTTY"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"ENOTTY"}',
      '{"ok":false,"errno":"EBADFD"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"ENODEV"}',
      '{"ok":true}',
      '{"ok":false,"errno":"ENOTTY"}',
      '{"ok":false,"errno":"ENOENT"}',
      '{"ok":true}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EOVERFLOW"}',
      '{"ok":false,"errno":"EOVERFLOW"}',
      '{"ok":false,"errno":"EINVAL"}',
      '{"ok":false,"errno":"EOVERFLOW"}',
      '{"ok":true,"value":8192}',
    ]);
    assert.equal(r.pins, 0);
  });

  test('UNMAP_DMA with VADDR or a dirty bitmap is not modelled (no fake errno) (review F4)', () => {
    assert.throws(
      () =>
        run([
          ...SETUP,
          { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'm', iova: 0, size: 4096 },
          { op: 'VFIO_IOMMU_UNMAP_DMA', fd: 'c', flags: 4, iova: 0, size: 4096 },
        ]),
      /not modelled|NotModelled|VADDR/i,
    );
  });
});
