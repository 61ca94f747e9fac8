/**
 * design-2020-separate-mm (profiles/designs.ts; mm/address_space.ts, kvm/separate_mm.ts): guest
 * memory in an address space of no process that KVM mirrors; its uAPI and errors, what the VMM
 * gets for each attempt, conversions by remapping, the notifier on the guest address space, the
 * address space's lifetime, and the design's invariant catching its mutant. Checked runs of trace
 * lines.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { matchProfile } from '../../src/core/profiles/match.js';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { MMAP_ARENA_BASE } from '../../src/core/mm/host_layout.js';
import { mutantFuzzProfile, mutantInfo, mutantsFor } from '../../src/core/base/mutants.js';
import { checkedRunSteps } from '../../src/check/checked_run.js';
import { parseTrace } from '../../src/trace/parse.js';
import { resultToJson } from '../../src/trace/format.js';
import type { KernelProfile } from '../../src/core/profiles/profile.js';
import { runCheckedLines } from './helpers.js';

const SEP = getProfile('design-2020-separate-mm')!;
/** Guest RAM's address in the guest address space. */
const AS = 0x1000_0000;
const OK = '{"ok":true}';

/**
 * A DEFAULT VM attached to address space `as` with 4 pages of private memory at AS, a memslot of
 * them at GPA 2 GiB, vCPU `cpu`, and 4 pages of the VMM's shared memory `sh`.
 */
const VM_IN_AS = [
  { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
  { op: 'address_space_create', flags: 0, as: 'as' },
  { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 'as' },
  {
    op: 'address_space_mmap',
    fd: 'as',
    as_addr: AS,
    length: 16384,
    prot: 3,
    flags: 2,
    src: null,
  },
  { op: 'mmap', fd: null, length: 16384, prot: 3, flags: 0x21, offset: 0, as: 'sh' },
  {
    op: 'KVM_SET_USER_MEMORY_REGION',
    vm: 'vm',
    slot: 1,
    flags: 0,
    guest_phys_addr: 0x80000000,
    memory_size: 16384,
    userspace_addr: AS,
  },
  { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
];
const N = VM_IN_AS.length;
const run = (...guest: object[]): object => ({ op: 'KVM_RUN', vcpu: 'cpu', guest });
const store = (off: number, hex: string): object => ({
  store: { gpa: 0x80000000 + off, hex },
});
const load = (off: number): object => ({ load: { gpa: 0x80000000 + off } });
const toShared = (page: number): object => ({
  op: 'address_space_mmap',
  fd: 'as',
  as_addr: AS + page * 4096,
  length: 4096,
  prot: 3,
  flags: 1,
  src: `sh+${page * 4096}`,
});
const toPrivate = (page: number): object => ({
  op: 'address_space_mmap',
  fd: 'as',
  as_addr: AS + page * 4096,
  length: 4096,
  prot: 3,
  flags: 2,
  src: null,
});
/** The exits of a KVM_RUN result line, as "REASON[=hex]". */
const exits = (line: string): string[] =>
  (JSON.parse(line) as { exits: Array<{ reason: string; hex?: string }> }).exits.map(
    (e) => e.reason + (e.hex === undefined ? '' : `=${e.hex}`),
  );

function runWithMutants(
  lines: readonly object[],
  profile: KernelProfile,
  mutants: string[],
): { results: string[]; violations: string[] } {
  const p = parseTrace(lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 't.jsonl');
  assert.deepEqual(p.errors, []);
  const g = checkedRunSteps(p.ops, profile, { keepResults: true, mutants });
  let n = g.next();
  while (n.done !== true) n = g.next();
  return {
    results: n.value.results.map((x) => JSON.stringify(resultToJson(x))),
    violations: n.value.failures.flatMap((f) =>
      f.violations.map((v) => `${v.invariant}: ${v.message}`),
    ),
  };
}

describe('design-2020-separate-mm', () => {
  test('is composed from its facts: no guest_memfd, DEFAULT VMs, the hypercall exit kept', () => {
    assert.equal(SEP.design, 'separate-mm');
    assert.equal(SEP.guestMemfdConfig, false);
    assert.equal(SEP.memoryAttributesConfig, false);
    assert.deepEqual([...SEP.vmTypes.keys()], [0n]);
    assert.notEqual(SEP.facts.caps.vm[KVM_CAP.KVM_CAP_EXIT_HYPERCALL], 0);
    assert.equal(matchProfile(SEP.facts).profile?.name, undefined);
  });

  test('other kernels: address_space_* are ENOSYS, KVM_MAP_ADDRESS_SPACE an unknown ioctl', () => {
    for (const name of ['linux-6.18', 'design-2020-protnone-follkvm']) {
      const r = runCheckedLines(
        [
          { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
          { op: 'address_space_create', flags: 0, as: 'as' },
          { op: 'address_space_munmap', fd: 'vm', as_addr: AS, length: 4096 },
          { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 'vm' },
        ],
        getProfile(name)!,
      );
      assert.deepEqual(
        r.results.slice(1),
        [
          '{"ok":false,"errno":"ENOSYS"}',
          '{"ok":false,"errno":"ENOSYS"}',
          '{"ok":false,"errno":"ENOTTY"}',
        ],
        name,
      );
    }
  });

  test('the uAPI errors, in order', () => {
    const r = runCheckedLines(
      [
        { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
        { op: 'address_space_create', flags: 1 },
        { op: 'address_space_create', flags: 0, as: 'as' },
        // KVM_MAP_ADDRESS_SPACE: not an address space; not open.
        { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 'vm' },
        { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 77 },
        // address_space_mmap: wrong fd; MAP_SHARED without a source; unaligned; length 0;
        // beyond TASK_SIZE.
        { op: 'address_space_mmap', fd: 'vm', as_addr: AS, length: 4096, prot: 3, flags: 2 },
        { op: 'address_space_mmap', fd: 'as', as_addr: AS, length: 4096, prot: 3, flags: 1 },
        { op: 'address_space_mmap', fd: 'as', as_addr: AS + 1, length: 4096, prot: 3, flags: 2 },
        { op: 'address_space_mmap', fd: 'as', as_addr: AS, length: 0, prot: 3, flags: 2 },
        {
          op: 'address_space_mmap',
          fd: 'as',
          as_addr: 0x7fff_ffff_f000,
          length: 8192,
          prot: 3,
          flags: 2,
        },
        // A source: nothing there; a private mapping; read-only for PROT_WRITE; MAP_PRIVATE.
        { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'priv' },
        { op: 'mmap', fd: null, length: 4096, prot: 1, flags: 0x21, offset: 0, as: 'ro' },
        {
          op: 'address_space_mmap',
          fd: 'as',
          as_addr: AS,
          length: 4096,
          prot: 3,
          flags: 1,
          src: 0x1000,
        },
        {
          op: 'address_space_mmap',
          fd: 'as',
          as_addr: AS,
          length: 4096,
          prot: 3,
          flags: 1,
          src: 'priv',
        },
        {
          op: 'address_space_mmap',
          fd: 'as',
          as_addr: AS,
          length: 4096,
          prot: 3,
          flags: 1,
          src: 'ro',
        },
        {
          op: 'address_space_mmap',
          fd: 'as',
          as_addr: AS,
          length: 4096,
          prot: 1,
          flags: 2,
          src: 'ro',
        },
        {
          op: 'address_space_mmap',
          fd: 'as',
          as_addr: AS,
          length: 4096,
          prot: 1,
          flags: 1,
          src: 'ro',
        },
        // A memslot first: the attach is EBUSY; a second attach is EEXIST.
        {
          op: 'KVM_SET_USER_MEMORY_REGION',
          vm: 'vm',
          slot: 1,
          flags: 0,
          guest_phys_addr: 0x80000000,
          memory_size: 4096,
          userspace_addr: 'priv',
        },
        { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 'as' },
        { op: 'KVM_CREATE_VM', type: 0, as: 'vm2' },
        { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm2', fd: 'as' },
        { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm2', fd: 'as' },
        // The address-space fd: no read, no mmap, not a regular file.
        { op: 'pread', fd: 'as', len: 4, offset: 0 },
        { op: 'mmap', fd: 'as', length: 4096, prot: 3, flags: 1, offset: 0 },
        { op: 'fallocate', fd: 'as', mode: 0, offset: 0, len: 4096 },
      ],
      SEP,
    );
    const e = (x: string): string => `{"ok":false,"errno":"${x}"}`;
    assert.deepEqual(r.results.slice(1), [
      e('EINVAL'),
      OK, // address_space_create
      e('EINVAL'),
      e('EBADF'),
      e('EINVAL'),
      e('EINVAL'),
      e('EINVAL'),
      e('EINVAL'),
      e('ENOMEM'),
      OK, // mmap priv
      OK, // mmap ro
      e('EFAULT'),
      e('EINVAL'),
      e('EACCES'),
      e('EINVAL'),
      OK,
      OK,
      e('EBUSY'),
      OK, // KVM_CREATE_VM vm2
      OK,
      e('EEXIST'),
      e('ESPIPE'),
      e('ENODEV'),
      e('ENODEV'),
    ]);
    assert.deepEqual(r.violations, []);
  });

  test("KVM resolves userspace_addr in the guest address space, never in the VMM's", () => {
    // The VMM's first mapping and the guest's RAM at the same address, in two address spaces.
    const base = Number(MMAP_ARENA_BASE);
    const r = runCheckedLines(
      [
        { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
        { op: 'address_space_create', flags: 0, as: 'as' },
        { op: 'KVM_MAP_ADDRESS_SPACE', vm: 'vm', fd: 'as' },
        { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'm' },
        { op: 'poke', addr: 'm', hex: 'aaaaaaaa' },
        { op: 'address_space_mmap', fd: 'as', as_addr: base, length: 4096, prot: 3, flags: 2 },
        {
          op: 'KVM_SET_USER_MEMORY_REGION',
          vm: 'vm',
          slot: 1,
          flags: 0,
          guest_phys_addr: 0x80000000,
          memory_size: 4096,
          userspace_addr: 'm',
        },
        { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
        run(load(0), store(0, '5ec2e700')),
        { op: 'peek', addr: 'm', len: 4 },
        // The VMM's munmap of its own page does not reach the guest's mapping.
        { op: 'munmap', addr: 'm', length: 4096 },
        run(load(0)),
      ],
      SEP,
    );
    assert.deepEqual(exits(r.results[8]!), ['LOAD=00000000', 'HLT']);
    assert.equal(r.results[9], '{"ok":true,"value":"aaaaaaaa"}');
    assert.deepEqual(exits(r.results[11]!), ['LOAD=5ec2e700', 'HLT']);
    assert.deepEqual(r.violations, []);
  });

  test('the VMM cannot reach private memory: SIGSEGV, EFAULT for vmsplice and VFIO', () => {
    const r = runCheckedLines(
      [
        ...VM_IN_AS,
        run(store(0, '5ec2e700'), load(0)),
        { op: 'peek', addr: AS, len: 4 },
        { op: 'poke', addr: AS, hex: '00' },
        { op: 'pipe2', flags: 0, as: 'pr', write_as: 'pw' },
        { op: 'vmsplice', fd: 'pw', addr: AS, len: 4096, flags: 2 },
        { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
        { op: 'open', path: '/dev/vfio/0', as: 'g' },
        { op: 'VFIO_GROUP_SET_CONTAINER', fd: 'g', container: 'c' },
        { op: 'VFIO_SET_IOMMU', fd: 'c', type: 3 },
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: AS, iova: 0x100000, size: 4096 },
        // Shared memory is the VMM's: a device may have it.
        { op: 'VFIO_IOMMU_MAP_DMA', fd: 'c', flags: 3, addr: 'sh', iova: 0x100000, size: 4096 },
        run(load(0)),
      ],
      SEP,
    );
    assert.deepEqual(exits(r.results[N]!), ['LOAD=5ec2e700', 'HLT']);
    assert.deepEqual(r.results.slice(N + 1, N + 3), [
      '{"ok":false,"fault":"SIGSEGV"}',
      '{"ok":false,"fault":"SIGSEGV"}',
    ]);
    assert.equal(r.results[N + 4], '{"ok":false,"errno":"EFAULT"}');
    assert.equal(r.results[N + 9], '{"ok":false,"errno":"EFAULT"}');
    assert.equal(r.results[N + 10], OK);
    assert.deepEqual(exits(r.results[N + 11]!), ['LOAD=5ec2e700', 'HLT']);
    assert.deepEqual(r.violations, []);
  });

  test('conversion by remapping: one shared frame, private content lost, the stage-2 zapped', () => {
    const r = runCheckedLines(
      [
        ...VM_IN_AS,
        { op: 'KVM_ENABLE_CAP', fd: 'vm', cap: 201, flags: 0, args: [4096] },
        run(store(0x1000, '11111111')),
        // The guest asks (KVM_HC_MAP_GPA_RANGE exit, the VMM answers 0), the VMM remaps.
        {
          op: 'KVM_RUN',
          vcpu: 'cpu',
          map_gpa_range: 0,
          guest: [{ hypercall: { nr: 12, args: [0x80001000, 1, 0] } }],
        },
        toShared(1),
        run(load(0x1000), store(0x1000, '10b0f000')),
        { op: 'peek', addr: 'sh+0x1000', len: 4 },
        { op: 'poke', addr: 'sh+0x1000', hex: 'cafef00d' },
        run(load(0x1000)),
        // Back to private: new anonymous memory; the shared page keeps its data for the VMM.
        toPrivate(1),
        run(load(0x1000)),
        { op: 'peek', addr: 'sh+0x1000', len: 4 },
      ],
      SEP,
    );
    assert.deepEqual(exits(r.results[N + 2]!), ['HYPERCALL', 'HYPERCALL_RET=00000000', 'HLT']);
    assert.deepEqual(exits(r.results[N + 4]!), ['LOAD=00000000', 'HLT']);
    assert.equal(r.results[N + 5], '{"ok":true,"value":"10b0f000"}');
    assert.deepEqual(exits(r.results[N + 7]!), ['LOAD=cafef00d', 'HLT']);
    assert.deepEqual(exits(r.results[N + 9]!), ['LOAD=00000000', 'HLT']);
    assert.equal(r.results[N + 10], '{"ok":true,"value":"cafef00d"}');
    assert.deepEqual(r.violations, []);
  });

  test("the VMM's discard of shared memory reaches the guest address space's notifier", () => {
    // Without it the stage-2 mapping would outlive the punched page (stage2-coherent).
    const r = runCheckedLines(
      [
        ...VM_IN_AS,
        toShared(2),
        { op: 'poke', addr: 'sh+0x2000', hex: '77' },
        run(load(0x2000)),
        { op: 'madvise', addr: 'sh+0x2000', length: 4096, advice: 9 },
        run(load(0x2000)),
      ],
      SEP,
    );
    assert.deepEqual(exits(r.results[N + 2]!), ['LOAD=77000000', 'HLT']);
    assert.deepEqual(exits(r.results[N + 4]!), ['LOAD=00000000', 'HLT']);
    assert.deepEqual(r.violations, []);
  });

  test('an unmap in the guest address space zaps the guest; its next access is EFAULT', () => {
    const r = runCheckedLines(
      [
        ...VM_IN_AS,
        run(store(0x3000, '01020304')),
        { op: 'address_space_munmap', fd: 'as', as_addr: AS + 0x3000, length: 4096 },
        run(load(0x3000)),
      ],
      SEP,
    );
    const last = JSON.parse(r.results[N + 2]!) as { ok: boolean; errno?: string };
    assert.deepEqual([last.ok, last.errno], [false, 'EFAULT']);
    assert.deepEqual(r.violations, []);
  });

  test('the VM holds the address space: closing the fd keeps it, the VM close frees it', () => {
    const r = runCheckedLines(
      [
        ...VM_IN_AS,
        run(store(0, 'abcdef01')),
        { op: 'close', fd: 'as' },
        run(load(0)),
        { op: 'close', fd: 'cpu' },
        { op: 'close', fd: 'vm' },
      ],
      SEP,
    );
    assert.deepEqual(exits(r.results[N + 2]!), ['LOAD=abcdef01', 'HLT']);
    const h = r.backend.host;
    assert.equal(h.guestMms.size, 0);
    assert.deepEqual(r.violations, []);
  });

  test('mutant vmm_access_reaches_guest_mm: the design’s invariant reports the VMM’s read', () => {
    const m = mutantInfo('vmm_access_reaches_guest_mm')!;
    assert.equal(mutantFuzzProfile(m), 'design-2020-separate-mm');
    assert.ok(mutantsFor('none', 'linux-6.18', 'separate-mm').includes(m));
    assert.ok(!mutantsFor('none', 'linux-6.18').includes(m));
    const lines = [...VM_IN_AS, run(store(0, '5ec2e700')), { op: 'peek', addr: AS, len: 4 }];
    const bad = runWithMutants(lines, SEP, ['vmm_access_reaches_guest_mm']);
    assert.equal(bad.results[N + 1], '{"ok":true,"value":"5ec2e700"}');
    assert.equal(bad.violations.length, 1);
    assert.match(
      bad.violations[0]!,
      /^host-no-private-access-separate-mm: a VMM read of private memory of a guest address space/,
    );
    const good = runWithMutants(lines, SEP, []);
    assert.equal(good.results[N + 1], '{"ok":false,"fault":"SIGSEGV"}');
    assert.deepEqual(good.violations, []);
  });
});
