/**
 * HugeTLB-backed guest_memfd on linux-next-gmem (kernel-uapi.md §6.2; kvm/guest_memfd/hugetlb.ts):
 * the create checks and the pool, 6.18's refusal of the flag, folio orders as ranges across
 * split and merge, and the invariants that catch the two HugeTLB mutants.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { runCheckedLines } from './helpers.js';

const NEXT = getProfile('linux-next-gmem')!;
const V618 = getProfile('linux-6.18')!;

/** A SW_PROTECTED VM with a vCPU and a guest_memfd of `size` (flags MMAP | HUGETLB, `order`). */
function setup(size: number, order: number): object[] {
  return [
    { op: 'KVM_CREATE_VM', fd: 'kvm', type: 1, as: 'vm' },
    { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size, flags: 9, page_order: order, as: 'g' },
    { op: 'mmap', fd: 'g', length: size, prot: 3, flags: 1, offset: 0, as: 'm' },
    {
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm',
      slot: 1,
      flags: 4,
      guest_phys_addr: 0x8000_0000,
      memory_size: size,
      userspace_addr: 'm',
      guest_memfd: 'g',
      guest_memfd_offset: 0,
    },
  ];
}

const attrs = (offset: number, size: number, attributes: number): object => ({
  op: 'KVM_SET_MEMORY_ATTRIBUTES2',
  fd: 'g',
  offset,
  size,
  attributes,
  flags: 0,
  reserved: 0,
});

test('create: the checks in kernel order, the pool, and 6.18 refusing the flag', () => {
  const vm = [{ op: 'KVM_CREATE_VM', fd: 'kvm', type: 1, as: 'vm' }];
  const create = (size: number, flags: number, page_order?: number): object => ({
    op: 'KVM_CREATE_GUEST_MEMFD',
    vm: 'vm',
    size,
    flags,
    ...(page_order !== undefined ? { page_order } : {}),
  });
  const lines = [
    ...vm,
    create(2 << 20, 1, 9), // page_order without HUGETLB
    create(2 << 20, 11, 9), // INIT_SHARED
    create(2 << 20, 9, 10), // no hstate
    create(2 << 20, 9), // no order
    create((2 << 20) + 4096, 9, 9), // size
    create(5 * 2 ** 30, 9, 18), // 5 x 1G: more than the pool
    create(4 * 2 ** 30, 9, 18), // the whole 1G pool
    create(2 ** 30, 9, 18), // ENOMEM now
    create(2 << 20, 9, 9), // the 2M pool is separate
  ];
  const r = runCheckedLines(lines, NEXT);
  assert.deepEqual(r.violations, []);
  assert.deepEqual(r.results.slice(1), [
    '{"ok":false,"errno":"EINVAL"}',
    '{"ok":false,"errno":"EINVAL"}',
    '{"ok":false,"errno":"EINVAL"}',
    '{"ok":false,"errno":"EINVAL"}',
    '{"ok":false,"errno":"EINVAL"}',
    '{"ok":false,"errno":"ENOMEM"}',
    '{"ok":true}',
    '{"ok":false,"errno":"ENOMEM"}',
    '{"ok":true}',
  ]);
  // 6.18: HUGETLB is an unknown flag; page_order is a reserved byte nobody reads.
  const old = runCheckedLines([...vm, create(2 << 20, 9, 9), create(2 << 20, 1, 9)], V618);
  assert.deepEqual(old.results.slice(1), ['{"ok":false,"errno":"EINVAL"}', '{"ok":true}']);
});

test('a 2M folio splits on a shared page, merges back, and maps at 2M only while whole', () => {
  const run = (steps: object[]): object => ({ op: 'KVM_RUN', vcpu: 'cpu', guest: steps });
  const lines = [
    ...setup(4 << 20, 9),
    run([{ store: { gpa: 0x8000_0000, hex: 'aa' } }]),
    attrs(0x1000, 0x1000, 0),
    { op: 'poke', addr: 'm+0x1000', hex: 'bb' },
    run([{ load: { gpa: 0x8000_1000, size: 1 } }, { load: { gpa: 0x8000_0000, size: 1 } }]),
    attrs(0x1000, 0x1000, 8),
    run([{ load: { gpa: 0x8000_1000, size: 1 } }]),
    { op: 'fallocate', fd: 'g', mode: 3, offset: 0, len: 4 << 20 },
  ];
  const r = runCheckedLines(lines, NEXT);
  assert.deepEqual(r.violations, []);
  const f = [...r.backend.host.vms][0]!.gmemFiles.values().next().value!;
  assert.equal(f.pageOrder, 9);
  assert.equal(f.folioOrders.size, 0, 'the punch freed the whole file');
  assert.equal(f.pages.size, 0);
  assert.equal(r.backend.host.hugetlbPools.available(9), 1022);
  assert.match(r.results[8]!, /"hex":"bb"/);
});

for (const mutant of ['hugetlb_split_loses_page', 'hugetlb_merge_with_shared']) {
  test(`the invariants catch ${mutant}`, async () => {
    const { checkedRunSteps } = await import('../../src/check/checked_run.js');
    const { parseTrace } = await import('../../src/trace/parse.js');
    const lines = [
      ...setup(2 << 20, 9),
      { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ store: { gpa: 0x8000_0000, hex: 'aa' } }] },
      attrs(0x1000, 0x1000, 0),
      attrs(0x2000, 0x1000, 0),
      attrs(0x1000, 0x1000, 8),
    ];
    const p = parseTrace(lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 't.jsonl');
    const g = checkedRunSteps(p.ops, NEXT, { mutants: [mutant] });
    let n = g.next();
    while (n.done !== true) n = g.next();
    const names = new Set(n.value.failures.flatMap((x) => x.violations.map((v) => v.invariant)));
    assert.ok(
      names.has(
        mutant === 'hugetlb_split_loses_page'
          ? 'hugetlb-split-accounted'
          : 'hugetlb-merged-private',
      ),
      [...names].join(', '),
    );
  });
}

test('regression (fuzz seed 678): a folio merged from a split huge page with one used page is zeroed where unused before a 2M mapping', () => {
  const lines = [
    ...setup(6 << 20, 9),
    attrs(2 << 20, 2772992, 0),
    { op: 'peek', addr: 'm+0x400000', len: 4 },
    attrs(2 << 20, 2834432, 8),
    { op: 'KVM_RUN', vcpu: 'cpu', guest: [{ store: { gpa: 0x8040_0c5c, hex: '9cf9e7df' } }] },
  ];
  const r = runCheckedLines(lines, NEXT);
  assert.deepEqual(r.violations, []);
});
