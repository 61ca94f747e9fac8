/**
 * fork in traces (issue 14 items 1 and 7): the child's copy of the fd table and of the address
 * space by dup_mmap()'s rules, KVM's EIO for another mm, conversions and punches that unmap every
 * process's mapping of a guest_memfd, exit and wait, the real backend's refusal, and the checked
 * runs (every invariant, memory accounting over every process) along the way.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { parseTrace } from '../../src/trace/parse.js';
import { runTrace } from '../../src/trace/runner.js';
import { resultToJson } from '../../src/trace/format.js';
import { ModelBackend } from '../../src/backends/model.js';
import { BackendRefusal } from '../../src/trace/types.js';
import { kvmRefusalOf } from '../../src/ops/registry.js';
import { resolveOp, HandleTable } from '../../src/trace/runner.js';
import { rawForUnboundHandles } from '../../src/trace/unbound.js';
import { formatOp } from '../../src/trace/format.js';
import { runCheckedLines } from './helpers.js';
import { generateTrace } from '../../src/fuzz/trace_gen.js';
import type { RefusalEnv } from '../../src/backends/kvm/rules.js';

const X86 = getProfile('linux-6.18')!;
const NEXT = getProfile('linux-next-gmem')!;

const ANON = (as: string, flags = 2): object => ({
  op: 'mmap',
  fd: null,
  length: 8192,
  prot: 3,
  flags,
  offset: 0,
  as,
});

/** A SW_PROTECTED VM with a 2-page INIT_SHARED guest_memfd mapped at `m` as its memslot. */
const GMEM_SETUP: readonly object[] = [
  { op: 'KVM_CREATE_VM', type: 1, as: 'vm' },
  { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
  { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 8192, flags: 3, as: 'g' },
  { op: 'mmap', fd: 'g', length: 8192, prot: 3, flags: 1, offset: 0, as: 'm' },
  {
    op: 'KVM_SET_USER_MEMORY_REGION2',
    vm: 'vm',
    slot: 1,
    flags: 4,
    guest_phys_addr: 0x80000000,
    memory_size: 8192,
    userspace_addr: 'm',
    guest_memfd: 'g',
    guest_memfd_offset: 0,
  },
];

/** Run on the model without the checker; refusals throw. */
function runPlain(lines: readonly object[], profile = X86): string[] {
  const p = parseTrace(lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 't.jsonl');
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  return runTrace(p.ops, new ModelBackend(profile)).map((r) => JSON.stringify(resultToJson(r)));
}

describe('fork: the fd table', () => {
  test('the child shares open files: its close drops its own reference only; the VM fd is EIO there', () => {
    const r = runCheckedLines(
      [
        { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
        { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 8192, flags: 0, as: 'g' },
        { op: 'fork', as: 'c' },
        { op: 'KVM_CHECK_EXTENSION', proc: 'c', fd: 'vm', cap: 1 },
        { op: 'KVM_CREATE_VCPU', proc: 'c', vm: 'vm', id: 0, as: 'cpu' },
        { op: 'fstat', proc: 'c', fd: 'g' },
        { op: 'fallocate', proc: 'c', fd: 'g', mode: 1, offset: 0, len: 4096 },
        { op: 'close', proc: 'c', fd: 'g' },
        { op: 'fstat', proc: 'c', fd: 'g' },
        { op: 'fstat', fd: 'g' },
        { op: 'KVM_CHECK_EXTENSION', fd: 'vm', cap: 1 },
        { op: 'exit', proc: 'c', status: 3 },
        { op: 'wait', child: 'c' },
        { op: 'wait', child: 'c' },
        { op: 'fstat', fd: 'g' },
      ],
      X86,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[2], '{"ok":true}');
    assert.equal(r.results[3], '{"ok":false,"errno":"EIO"}', 'kvm->mm != current->mm');
    assert.equal(r.results[4], '{"ok":false,"errno":"EIO"}');
    assert.match(r.results[5]!, /"ok":true/, 'guest_memfd works from the child');
    assert.equal(r.results[6], '{"ok":true}', 'fallocate from the child');
    assert.equal(r.results[8], '{"ok":false,"errno":"EBADF"}', 'closed in the child');
    assert.match(r.results[9]!, /"ok":true/, 'still open in the parent');
    assert.match(r.results[10]!, /"ok":true/);
    assert.equal(r.results[12], '{"ok":true,"value":768}', 'WEXITSTATUS 3');
    assert.equal(r.results[13], '{"ok":false,"errno":"ECHILD"}', 'reaped');
    assert.match(r.results[14]!, /"ok":true/, "the child's exit leaves the parent's fd open");
  });
});

describe('fork: dup_mmap() rules', () => {
  test('MAP_SHARED anonymous memory is shared; DONTFORK is not copied; WIPEONFORK is copied empty', () => {
    const r = runCheckedLines(
      [
        ANON('sh', 0x21),
        ANON('df'),
        ANON('wf'),
        { op: 'poke', addr: 'sh', hex: '11' },
        { op: 'poke', addr: 'df', hex: '22' },
        { op: 'poke', addr: 'wf', hex: '33' },
        { op: 'madvise', addr: 'df', length: 8192, advice: 10 },
        { op: 'madvise', addr: 'wf', length: 8192, advice: 18 },
        { op: 'fork', as: 'c' },
        { op: 'peek', proc: 'c', addr: 'sh', len: 1 },
        { op: 'poke', proc: 'c', addr: 'sh+4096', hex: '44' },
        { op: 'peek', addr: 'sh+4096', len: 1 },
        { op: 'peek', proc: 'c', addr: 'df', len: 1 },
        { op: 'peek', proc: 'c', addr: 'wf', len: 1 },
        { op: 'poke', proc: 'c', addr: 'wf', hex: '55' },
        { op: 'peek', proc: 'c', addr: 'wf', len: 1 },
        { op: 'peek', addr: 'wf', len: 1 },
        { op: 'peek', addr: 'df', len: 1 },
        { op: 'exit', proc: 'c' },
        { op: 'peek', addr: 'sh+4096', len: 1 },
      ],
      X86,
    );
    assert.deepEqual(r.violations, []);
    assert.equal(r.results[9], '{"ok":true,"value":"11"}', 'shmem seen by the child');
    assert.equal(r.results[11], '{"ok":true,"value":"44"}', "the child's store seen by the parent");
    assert.equal(r.results[12], '{"ok":false,"fault":"SIGSEGV"}', 'VM_DONTCOPY: not in the child');
    assert.equal(r.results[13], '{"ok":true,"value":"00"}', 'VM_WIPEONFORK: zeros in the child');
    assert.equal(r.results[15], '{"ok":true,"value":"55"}');
    assert.equal(r.results[16], '{"ok":true,"value":"33"}', "the parent's page is its own");
    assert.equal(r.results[17], '{"ok":true,"value":"22"}');
    assert.equal(r.results[19], '{"ok":true,"value":"44"}', 'the shmem outlives the child');
  });

  test("a child's access to a private page present at fork is not modelled (copy-on-write); an untouched one is its own", () => {
    const base = [ANON('p'), { op: 'poke', addr: 'p', hex: 'aa' }, { op: 'fork', as: 'c' }];
    assert.deepEqual(
      runPlain([
        ...base,
        { op: 'peek', proc: 'c', addr: 'p+4096', len: 1 },
        { op: 'poke', proc: 'c', addr: 'p+4096', hex: 'bb' },
        { op: 'peek', proc: 'c', addr: 'p+4096', len: 1 },
        { op: 'peek', addr: 'p+4096', len: 1 },
        { op: 'peek', addr: 'p', len: 1 },
      ]),
      [
        '{"ok":true}',
        '{"ok":true}',
        '{"ok":true}',
        '{"ok":true,"value":"00"}',
        '{"ok":true}',
        '{"ok":true,"value":"bb"}',
        '{"ok":true,"value":"00"}',
        '{"ok":true,"value":"aa"}',
      ],
    );
    assert.throws(
      () => runPlain([...base, { op: 'peek', proc: 'c', addr: 'p', len: 1 }]),
      (e: unknown) => e instanceof BackendRefusal && /copy-on-write/.test(e.message),
    );
    // Unmapping the range in the child ends the refusal: a new mapping elsewhere is its own.
    assert.deepEqual(
      runPlain([
        ...base,
        { op: 'munmap', proc: 'c', addr: 'p', length: 8192 },
        { op: 'peek', proc: 'c', addr: 'p', len: 1 },
      ]).slice(3),
      ['{"ok":true}', '{"ok":false,"fault":"SIGSEGV"}'],
    );
  });

  test('exit of the VMM, an op of an exited child and a wait that would block are refused', () => {
    for (const tail of [
      [{ op: 'exit' }],
      [
        { op: 'exit', proc: 'c' },
        { op: 'peek', proc: 'c', addr: 0, len: 1 },
      ],
      [{ op: 'wait', child: 'c' }],
      [{ op: 'KVM_CREATE_VM', proc: 'c', type: 0 }],
    ])
      assert.throws(
        () => runPlain([{ op: 'fork', as: 'c' }, ...tail]),
        (e: unknown) => e instanceof BackendRefusal,
        JSON.stringify(tail),
      );
  });
});

describe('fork on linux-next-gmem: conversions and punches reach every process', () => {
  test('forked_accesses: the parent converts, the child SIGBUSes; a punch from the child is seen by the parent', () => {
    const r = runCheckedLines(
      [
        ...GMEM_SETUP,
        { op: 'fork', as: 'c' },
        { op: 'poke', proc: 'c', addr: 'm', hex: '0c' },
        { op: 'mmap', proc: 'c', fd: 'g', length: 8192, prot: 3, flags: 1, offset: 0, as: 'cm' },
        { op: 'peek', proc: 'c', addr: 'cm', len: 1 },
        {
          op: 'KVM_SET_MEMORY_ATTRIBUTES2',
          fd: 'g',
          offset: 0,
          size: 4096,
          attributes: 8,
        },
        { op: 'peek', proc: 'c', addr: 'm', len: 1 },
        { op: 'poke', proc: 'c', addr: 'cm', hex: 'dd' },
        { op: 'peek', proc: 'c', addr: 'cm+4096', len: 1 },
        { op: 'poke', addr: 'm+4096', hex: '77' },
        { op: 'fallocate', proc: 'c', fd: 'g', mode: 3, offset: 4096, len: 4096 },
        { op: 'peek', addr: 'm+4096', len: 1 },
        { op: 'exit', proc: 'c' },
        { op: 'wait', child: 'c' },
      ],
      NEXT,
    );
    assert.deepEqual(r.violations, []);
    const at = GMEM_SETUP.length;
    assert.equal(r.results[at + 3], '{"ok":true,"value":"0c"}', 'one folio, two mappings');
    assert.equal(r.results[at + 4], '{"ok":true}');
    assert.equal(r.results[at + 5], '{"ok":false,"fault":"SIGBUS"}');
    assert.equal(r.results[at + 6], '{"ok":false,"fault":"SIGBUS"}');
    assert.equal(r.results[at + 7], '{"ok":true,"value":"00"}');
    assert.equal(r.results[at + 10], '{"ok":true,"value":"00"}', "the child's punch");
    assert.equal(r.results[at + 12], '{"ok":true,"value":0}');
  });

  test("the mutant conversion_unmaps_current_mm leaves the child's PTE: host-pte-no-private", () => {
    const lines = [
      ...GMEM_SETUP,
      { op: 'fork', as: 'c' },
      { op: 'peek', proc: 'c', addr: 'm', len: 1 },
      { op: 'KVM_SET_MEMORY_ATTRIBUTES2', fd: 'g', offset: 0, size: 4096, attributes: 8 },
    ];
    const p = parseTrace(lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 't.jsonl');
    const mutant = new ModelBackend(NEXT, { mutants: ['conversion_unmaps_current_mm'] });
    runTrace(p.ops, mutant);
    const mms = mutant.host.allMms();
    assert.equal(mms.length, 2);
    assert.equal(mms[1]!.gmemPtes.size, 1, "the child's PTE stays");
    const faithful = new ModelBackend(NEXT);
    runTrace(p.ops, faithful);
    assert.equal(faithful.host.allMms()[1]!.gmemPtes.size, 0);
  });
});

describe('fork in traces: parsing, the real backend, the shrinker', () => {
  test('proc names a process handle; it is written after op; unknown or wrong-kind names are errors', () => {
    const p = parseTrace(
      ['{"op":"fork","as":"c"}', '{"addr":"0x1000","len":1,"op":"peek","proc":"c"}'].join('\n'),
    );
    assert.deepEqual(p.errors, []);
    assert.equal(formatOp(p.ops[1]!), '{"op":"peek","proc":"c","addr":4096,"len":1}');
    const bad = parseTrace('{"op":"peek","proc":"kvm","addr":0,"len":1}');
    assert.match(bad.errors[0]!.message, /proc: "kvm" names an fd \(predefined\), not a process/);
    const none = parseTrace('{"op":"wait","child":"x"}');
    assert.match(none.errors[0]!.message, /child: no earlier op creates a handle named "x"/);
  });

  test('the kvm backend refuses fork, exit, wait and any op of a child', () => {
    const p = parseTrace(
      ['{"op":"fork","as":"c"}', '{"op":"peek","proc":"c","addr":0,"len":1}'].join('\n'),
    );
    const t = new HandleTable(3);
    const env = {} as RefusalEnv;
    assert.match(kvmRefusalOf(resolveOp(p.ops[0]!, t), env)!, /cannot fork/);
    t.bindProc('c', 2);
    assert.match(kvmRefusalOf(resolveOp(p.ops[1]!, t), env)!, /cannot fork/);
  });

  test('a shrunk trace without its fork drops the ops of that process', () => {
    const p = parseTrace(
      [
        '{"op":"peek","proc":"c","addr":0,"len":1}',
        '{"op":"wait","child":"c"}',
        '{"op":"peek","addr":0,"len":1}',
      ].join('\n'),
    );
    // (The parser refuses the unbound names; a shrinker builds such lists by dropping the fork.)
    assert.equal(p.ops.length, 1);
    const ops = [
      { line: 1, op: 'peek', proc: 'c', addr: { kind: 'raw', value: 0n }, len: 1n },
      { line: 2, op: 'wait', child: 'c' },
      p.ops[0]!,
    ] as never[];
    assert.deepEqual(
      rawForUnboundHandles(ops).map((o) => formatOp(o)),
      ['{"op":"peek","addr":0,"len":1}'],
    );
  });
});

describe('fork in the fuzz generator', () => {
  test('the in-place walk forks on linux-next-gmem only: never on the 6.18 profiles the differential fuzzer uses', () => {
    const forks = (profile: string, realSafe: boolean): number => {
      const p = getProfile(profile)!;
      let n = 0;
      for (let seed = 1; seed <= 60; seed++)
        for (const op of generateTrace(seed, {
          ops: 80,
          feedback: p,
          realSafe,
          privateMemory: p.memoryAttributesConfig,
        }))
          if (op.op === 'fork' || op.proc !== undefined) n++;
      return n;
    };
    assert.equal(forks('linux-6.18', false), 0);
    assert.equal(forks('linux-6.18-pvm', true), 0);
    assert.ok(forks('linux-next-gmem', false) > 0);
  });
});

describe('fork: the vCPU mapping', () => {
  test('the child reads kvm_run through its copy of the vCPU mapping; its KVM_RUN is EIO', () => {
    const r = runCheckedLines(
      [
        { op: 'KVM_CREATE_VM', type: 0, as: 'vm' },
        { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
        { op: 'mmap', fd: 'cpu', length: 4096, prot: 1, flags: 1, offset: 0, as: 'run' },
        { op: 'KVM_RUN', vcpu: 'cpu', guest: [] },
        { op: 'fork', as: 'c' },
        { op: 'peek', addr: 'run+8', len: 4 },
        { op: 'peek', proc: 'c', addr: 'run+8', len: 4 },
        { op: 'KVM_RUN', proc: 'c', vcpu: 'cpu', guest: [] },
        {
          op: 'mmap',
          proc: 'c',
          fd: 'cpu',
          length: 4096,
          prot: 1,
          flags: 1,
          offset: 0,
          as: 'crun',
        },
        { op: 'peek', proc: 'c', addr: 'crun+8', len: 4 },
      ],
      X86,
    );
    assert.deepEqual(r.violations, []);
    assert.match(r.results[5]!, /"ok":true,"value":"[0-9a-f]{8}"/);
    assert.equal(r.results[6], r.results[5], 'the same kvm_run page');
    assert.equal(r.results[7], '{"ok":false,"errno":"EIO","exits":[]}');
    assert.equal(r.results[8], '{"ok":true}', 'kvm_vcpu_mmap() has no mm check');
    assert.equal(r.results[9], r.results[5]);
  });
});
