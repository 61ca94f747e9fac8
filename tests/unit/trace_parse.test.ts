/**
 * Unit tests for src/trace/parse.ts and src/trace/format.ts against the trace contract
 * (trace-format.md): every op parses, round-trips through formatOp, defaults are applied,
 * skipped lines keep physical line numbers, and every malformed input is reported as
 * `file:line: field: message` (numbers above 2^53 must be "0x..." strings).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOpObject, parseTrace, TraceInputError } from '../../src/trace/parse.js';
import { formatOp, formatResult, jsonInt, opToJson, resultToJson } from '../../src/trace/format.js';
import type { OpName, TraceOp } from '../../src/trace/types.js';
import { runTrace } from '../../src/trace/runner.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';

/** One line per op of the contract (plus the model's additions KVM_ENABLE_CAP and hypercall). */
const LINES: Record<OpName, string> = {
  KVM_CREATE_VM: '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
  KVM_CHECK_EXTENSION: '{"op":"KVM_CHECK_EXTENSION","fd":"vm","cap":244}',
  KVM_CREATE_GUEST_MEMFD:
    '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
  KVM_SET_USER_MEMORY_REGION:
    '{"op":"KVM_SET_USER_MEMORY_REGION","vm":"vm","slot":1,"flags":2,"guest_phys_addr":1048576,"memory_size":4096,"userspace_addr":"m+0x1000"}',
  KVM_SET_USER_MEMORY_REGION2:
    '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":"m","guest_memfd":"g","guest_memfd_offset":4096}',
  KVM_SET_MEMORY_ATTRIBUTES:
    '{"op":"KVM_SET_MEMORY_ATTRIBUTES","vm":"vm","address":"0xfffffffffffff000","size":4096,"attributes":8,"flags":0}',
  KVM_SET_MEMORY_ATTRIBUTES2:
    '{"op":"KVM_SET_MEMORY_ATTRIBUTES2","fd":"g","offset":4096,"size":4096,"attributes":8,"flags":0,"reserved":0}',
  KVM_CREATE_VCPU: '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
  KVM_PRE_FAULT_MEMORY:
    '{"op":"KVM_PRE_FAULT_MEMORY","vcpu":"cpu","gpa":1048576,"size":8192,"flags":0}',
  KVM_RUN:
    '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":16}},{"load":{"gpa":17,"size":1}},{"store":{"gpa":1048576,"hex":"aabbccdd"}},{"hypercall":{"nr":12,"args":[4096,1,16]}}]}',
  KVM_ENABLE_CAP: '{"op":"KVM_ENABLE_CAP","fd":"vm","cap":201,"flags":0,"args":[4096]}',
  mmap: '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
  munmap: '{"op":"munmap","addr":"m+8192","length":4096}',
  mprotect: '{"op":"mprotect","addr":"m","length":4096,"prot":1}',
  madvise: '{"op":"madvise","addr":70368744177664,"length":4096,"advice":9}',
  fallocate: '{"op":"fallocate","fd":"g","mode":3,"offset":0,"len":4096}',
  ftruncate: '{"op":"ftruncate","fd":"g","length":-1}',
  pread: '{"op":"pread","fd":"g","len":64,"offset":0}',
  pwrite: '{"op":"pwrite","fd":-1,"hex":"00ff","offset":8}',
  fstat: '{"op":"fstat","fd":"g"}',
  close: '{"op":"close","fd":"g"}',
  peek: '{"op":"peek","addr":"m+16","len":4}',
  poke: '{"op":"poke","addr":"m+0x10","hex":"deadbeef"}',
  KVM_MEMORY_ENCRYPT_OP: '{"op":"KVM_MEMORY_ENCRYPT_OP","fd":"vm","argp":null,"id":2}',
  open: '{"op":"open","path":"/dev/sev","as":"sev"}',
  KVM_ARM_PREFERRED_TARGET: '{"op":"KVM_ARM_PREFERRED_TARGET","vm":"vm"}',
  KVM_ARM_VCPU_INIT:
    '{"op":"KVM_ARM_VCPU_INIT","vcpu":"cpu","target":5,"features":["PSCI_0_2","SVE",40]}',
  KVM_ARM_VCPU_FINALIZE: '{"op":"KVM_ARM_VCPU_FINALIZE","vcpu":"cpu","feature":4}',
  pipe2: '{"op":"pipe2","flags":524288,"write_as":"pw","as":"pr"}',
  vmsplice: '{"op":"vmsplice","fd":"pw","addr":"m","len":4096,"flags":2}',
  VFIO_GROUP_SET_CONTAINER: '{"op":"VFIO_GROUP_SET_CONTAINER","fd":"g","container":"vm"}',
  VFIO_SET_IOMMU: '{"op":"VFIO_SET_IOMMU","fd":"vm","type":3,"tee_io":1}',
  VFIO_IOMMU_MAP_DMA:
    '{"op":"VFIO_IOMMU_MAP_DMA","fd":"vm","argsz":32,"flags":3,"addr":"m","iova":1048576,"size":4096}',
  VFIO_IOMMU_UNMAP_DMA:
    '{"op":"VFIO_IOMMU_UNMAP_DMA","fd":"vm","argsz":24,"flags":0,"iova":1048576,"size":4096}',
  dma_read: '{"op":"dma_read","fd":"vm","iova":1048576,"len":4}',
  dma_write: '{"op":"dma_write","fd":"vm","iova":1048576,"hex":"aabb"}',
  fork: '{"op":"fork","as":"child"}',
  exit: '{"op":"exit","proc":"child","status":0}',
  wait: '{"op":"wait","child":"child"}',
  memfd_restricted: '{"op":"memfd_restricted","flags":0,"as":"r"}',
  KVM_SET_USER_MEMORY_REGION_EXT:
    '{"op":"KVM_SET_USER_MEMORY_REGION_EXT","vm":"vm","slot":1,"flags":4,"guest_phys_addr":2147483648,"memory_size":4096,"userspace_addr":0,"restricted_offset":0,"restricted_fd":"vm"}',
  memory_failure: '{"op":"memory_failure","fd":"vm","offset":0}',
  address_space_create: '{"op":"address_space_create","flags":0,"as":"a"}',
  address_space_mmap:
    '{"op":"address_space_mmap","fd":"vm","as_addr":65536,"length":4096,"prot":3,"flags":2,"src":null}',
  address_space_munmap: '{"op":"address_space_munmap","fd":"vm","as_addr":65536,"length":4096}',
  KVM_MAP_ADDRESS_SPACE: '{"op":"KVM_MAP_ADDRESS_SPACE","vm":"vm","fd":"vm"}',
};

/** Lines that name no handle (raw fds), for tests of whole traces. */
const RAW_FSTAT = '{"op":"fstat","fd":-1}';
const RAW_CLOSE = '{"op":"close","fd":-1}';

function parse(line: string, n = 1): TraceOp {
  return parseOpObject('t.jsonl', n, JSON.parse(line));
}

function withoutLine(op: TraceOp): Record<string, unknown> {
  const { line: _l, ...rest } = op;
  void _l;
  return rest;
}

function parseError(line: string): TraceInputError {
  const { ops, errors } = parseTrace(line, 'bad.jsonl');
  assert.equal(ops.length, 0, `expected an error for ${line}`);
  assert.equal(errors.length, 1);
  return errors[0]!;
}

describe('every op parses and round-trips through formatOp', () => {
  for (const [name, line] of Object.entries(LINES)) {
    test(name, () => {
      const op = parse(line, 7);
      assert.equal(op.op, name);
      assert.equal(op.line, 7);
      const again = parse(formatOp(op), 9);
      assert.deepEqual(withoutLine(again), withoutLine(op));
      // The formatted line is itself canonical: formatting twice gives the same text.
      assert.equal(formatOp(again), formatOp(op));
    });
  }

  test('a whole trace parses with one op per non-skipped line', () => {
    // Ops that create handles come first: a reference must name a handle an earlier op creates.
    const creates: OpName[] = [
      'KVM_CREATE_VM',
      'KVM_CREATE_GUEST_MEMFD',
      'mmap',
      'KVM_CREATE_VCPU',
    ];
    const order = [
      ...creates,
      ...(Object.keys(LINES) as OpName[]).filter((n) => !creates.includes(n)),
    ];
    const text = order.map((n) => LINES[n]).join('\n');
    const { ops, errors } = parseTrace(text);
    assert.deepEqual(errors, []);
    assert.equal(ops.length, Object.keys(LINES).length);
  });
});

describe('field values and defaults', () => {
  test('handles, raw fds and address forms', () => {
    const r2 = parse(LINES.KVM_SET_USER_MEMORY_REGION2) as Extract<
      TraceOp,
      { op: 'KVM_SET_USER_MEMORY_REGION2' }
    >;
    assert.deepEqual(r2.vm, { kind: 'handle', name: 'vm' });
    assert.deepEqual(r2.guest_memfd, { kind: 'handle', name: 'g' });
    assert.deepEqual(r2.userspace_addr, { kind: 'handle', name: 'm', offset: 0n });
    const p = parse(LINES.poke) as Extract<TraceOp, { op: 'poke' }>;
    assert.deepEqual(p.addr, { kind: 'handle', name: 'm', offset: 16n });
    assert.deepEqual(p.bytes, new Uint8Array([0xde, 0xad, 0xbe, 0xef]));
    const k = parse(LINES.peek) as Extract<TraceOp, { op: 'peek' }>;
    assert.deepEqual(k.addr, { kind: 'handle', name: 'm', offset: 16n }, 'decimal offset');
    const w = parse(LINES.pwrite) as Extract<TraceOp, { op: 'pwrite' }>;
    assert.deepEqual(w.fd, { kind: 'raw', value: -1n });
    const m = parse(LINES.madvise) as Extract<TraceOp, { op: 'madvise' }>;
    assert.deepEqual(m.addr, { kind: 'raw', value: 0x4000_0000_0000n });
    const t = parse(LINES.ftruncate) as Extract<TraceOp, { op: 'ftruncate' }>;
    assert.equal(t.length, -1n, 'negative integers are kept signed');
  });

  test('u64 values as "0x..." strings keep their full width', () => {
    const a = parse(LINES.KVM_SET_MEMORY_ATTRIBUTES) as Extract<
      TraceOp,
      { op: 'KVM_SET_MEMORY_ATTRIBUTES' }
    >;
    assert.equal(a.address, 0xffff_ffff_ffff_f000n);
    const o = JSON.parse(formatOp(a)) as Record<string, unknown>;
    assert.equal(o['address'], '0xfffffffffffff000');
    assert.equal(o['size'], 4096);
  });

  test('defaults: KVM_CREATE_VM fd "kvm"/type 0; REGION2 guest_memfd 0/offset 0; flags 0; pread offset 0; load size 4; mmap offset 0', () => {
    const vm = parse('{"op":"KVM_CREATE_VM"}') as Extract<TraceOp, { op: 'KVM_CREATE_VM' }>;
    assert.deepEqual(vm.fd, { kind: 'handle', name: 'kvm' });
    assert.equal(vm.type, 0n);
    const ce = parse('{"op":"KVM_CHECK_EXTENSION","cap":1}') as Extract<
      TraceOp,
      { op: 'KVM_CHECK_EXTENSION' }
    >;
    assert.deepEqual(ce.fd, { kind: 'handle', name: 'kvm' });
    const r2 = parse(
      '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"guest_phys_addr":0,"memory_size":0,"userspace_addr":0}',
    ) as Extract<TraceOp, { op: 'KVM_SET_USER_MEMORY_REGION2' }>;
    assert.deepEqual(r2.guest_memfd, { kind: 'raw', value: 0n });
    assert.equal(r2.guest_memfd_offset, 0n);
    assert.equal(r2.flags, 0n);
    const g = parse('{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096}') as Extract<
      TraceOp,
      { op: 'KVM_CREATE_GUEST_MEMFD' }
    >;
    assert.equal(g.flags, 0n);
    const pr = parse('{"op":"pread","fd":"g","len":1}') as Extract<TraceOp, { op: 'pread' }>;
    assert.equal(pr.offset, 0n);
    const run = parse('{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":0}}]}') as Extract<
      TraceOp,
      { op: 'KVM_RUN' }
    >;
    assert.deepEqual(run.guest, [
      { kind: 'load', gpa: 0n, gpaNum: 0, size: 4, enc: false, shared: false },
    ]);
    assert.equal(run.map_gpa_range, undefined);
    const norun = parse('{"op":"KVM_RUN","vcpu":"cpu"}') as Extract<TraceOp, { op: 'KVM_RUN' }>;
    assert.deepEqual(norun.guest, []);
    const mm = parse('{"op":"mmap","fd":null,"length":4096,"prot":3,"flags":2}') as Extract<
      TraceOp,
      { op: 'mmap' }
    >;
    assert.equal(mm.fd, null);
    assert.equal(mm.offset, 0n);
    assert.equal(opToJson(mm)['fd'], null, 'anonymous stays null when formatted');
  });

  test('`as` is kept and formatted last', () => {
    const op = parse(LINES.KVM_CREATE_GUEST_MEMFD);
    assert.equal(op.as, 'g');
    const keys = Object.keys(JSON.parse(formatOp(op)) as object);
    assert.equal(keys.at(-1), 'as');
    assert.equal(keys[0], 'op');
  });

  test('skipped lines (empty, #, //, blanks) produce no op and keep physical line numbers', () => {
    const text = [
      '# comment',
      '',
      '   ',
      '// another',
      RAW_FSTAT,
      '  # indented comment',
      RAW_CLOSE,
    ].join('\n');
    const { ops, errors } = parseTrace(text, 'x');
    assert.deepEqual(errors, []);
    assert.deepEqual(
      ops.map((o) => [o.op, o.line]),
      [
        ['fstat', 5],
        ['close', 7],
      ],
    );
  });

  test('CRLF line endings are accepted', () => {
    const { ops, errors } = parseTrace(`${RAW_FSTAT}\r\n${RAW_CLOSE}\r\n`);
    assert.deepEqual(errors, []);
    assert.equal(ops.length, 2);
  });
});

describe('errors carry file:line and the field', () => {
  const cases: Array<[string, string, RegExp?]> = [
    ['{"op":"KVM_FROB"}', 'op', /unknown op/],
    ['{"fd":"g"}', 'op', /missing/],
    ['[1,2]', 'op'],
    ['"text"', 'op'],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm"}', 'size', /missing/],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":1.5}', 'size', /not an integer/],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"12q"}', 'size'],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"0xZZ"}', 'size'],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":true}', 'size'],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":null}', 'size'],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":9007199254740994}', 'size', /2\^53/],
    [
      '{"op":"KVM_SET_MEMORY_ATTRIBUTES","vm":"vm","address":18446744073709547520,"size":4096,"attributes":8}',
      'address',
      /0x/,
    ],
    ['{"op":"KVM_CREATE_GUEST_MEMFD","size":4096}', 'vm', /missing/],
    ['{"op":"fstat","fd":"g+4"}', 'fd', /handle/],
    ['{"op":"peek","addr":"+16","len":4}', 'addr', /empty handle/],
    ['{"op":"peek","addr":"m+1z","len":4}', 'addr', /offset/],
    ['{"op":"poke","addr":"m","hex":"abc"}', 'hex', /odd/],
    ['{"op":"poke","addr":"m","hex":"zz"}', 'hex', /hex/],
    ['{"op":"poke","addr":"m","hex":17}', 'hex'],
    ['{"op":"mmap","length":4096,"prot":3,"flags":2}', 'fd', /null for anonymous/],
    ['{"op":"KVM_CREATE_VM","as":""}', 'as'],
    ['{"op":"KVM_RUN","vcpu":"c","guest":{}}', 'guest'],
    ['{"op":"KVM_RUN","vcpu":"c","guest":[1]}', 'guest[0]'],
    [
      '{"op":"KVM_RUN","vcpu":"c","guest":[{"load":{"gpa":0}},{"jump":{}}]}',
      'guest[1]',
      /unknown step/,
    ],
    [
      '{"op":"KVM_RUN","vcpu":"c","guest":[{"load":{"gpa":0},"store":{}}]}',
      'guest[0]',
      /exactly one key/,
    ],
    [
      '{"op":"KVM_RUN","vcpu":"c","guest":[{"store":{"gpa":0,"hex":"aabbcc"}}]}',
      'guest[0].store.hex',
      /1, 2 or 4/,
    ],
    ['{"op":"KVM_RUN","vcpu":"c","guest":[{"store":{"gpa":0}}]}', 'guest[0].store.hex'],
    [
      '{"op":"KVM_RUN","vcpu":"c","guest":[{"load":{"gpa":4294967296}}]}',
      'guest[0].load.gpa',
      /4 GiB/,
    ],
    ['{"op":"KVM_RUN","vcpu":"c","guest":[{"load":{"gpa":0,"size":3}}]}', 'guest[0].load.size'],
    [
      '{"op":"KVM_RUN","vcpu":"c","guest":[{"hypercall":{"nr":12,"args":[1,2,3,4]}}]}',
      'guest[0].hypercall.args',
    ],
    [
      '{"op":"KVM_RUN","vcpu":"c","guest":[{"hypercall":{"nr":12,"args":[1.5]}}]}',
      'guest[0].hypercall.args[0]',
    ],
    ['{"op":"KVM_ENABLE_CAP","fd":"vm","cap":201,"args":[1,2,3,4,5]}', 'args'],
    ['{"op":"KVM_ENABLE_CAP","fd":"vm","cap":201,"args":["x"]}', 'args[0]'],
    ['{"op":"fstat",', 'json'],
  ];
  for (const [line, field, msg] of cases) {
    test(`${field}: ${line}`, () => {
      const e = parseError(line);
      assert.ok(e instanceof TraceInputError);
      assert.equal(e.file, 'bad.jsonl');
      assert.equal(e.line, 1);
      assert.equal(e.field, field);
      assert.ok(e.message.startsWith(`bad.jsonl:1: ${field}: `), e.message);
      if (msg) assert.match(e.message, msg);
    });
  }

  test('every malformed line is reported (not only the first), valid lines still parse', () => {
    const text = [RAW_FSTAT, '{"op":"nope"}', '# c', '{"op":"close"}', RAW_CLOSE].join('\n');
    const { ops, errors } = parseTrace(text, 'multi.jsonl');
    assert.deepEqual(
      ops.map((o) => o.line),
      [1, 5],
    );
    assert.deepEqual(
      errors.map((e) => [e.line, e.field]),
      [
        [2, 'op'],
        [4, 'fd'],
      ],
    );
    assert.ok(errors[1]!.message.startsWith('multi.jsonl:4: fd: '));
  });

  test('2^53 - 1 is the largest JSON number accepted; larger values parse as hex strings', () => {
    const ok1 = parse(
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":9007199254740991}',
    ) as Extract<TraceOp, { op: 'KVM_CREATE_GUEST_MEMFD' }>;
    assert.equal(ok1.size, 2n ** 53n - 1n);
    const ok2 = parse(
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"0x20000000000001"}',
    ) as Extract<TraceOp, { op: 'KVM_CREATE_GUEST_MEMFD' }>;
    assert.equal(ok2.size, 2n ** 53n + 1n);
    const big = parse(
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":"0xffffffffffffffff"}',
    ) as Extract<TraceOp, { op: 'KVM_CREATE_GUEST_MEMFD' }>;
    assert.equal(big.size, 2n ** 64n - 1n);
  });
});

describe('result formatting', () => {
  test('jsonInt: safe integers stay numbers, larger ones become 0x strings', () => {
    assert.equal(jsonInt(0n), 0);
    assert.equal(jsonInt(-1n), -1);
    assert.equal(jsonInt(2n ** 53n - 1n), 9007199254740991);
    assert.equal(jsonInt(2n ** 53n), '0x20000000000000');
    assert.equal(jsonInt(2n ** 64n - 1n), '0xffffffffffffffff');
  });

  test('result lines: ok/errno, value, stat, remaining, exits, fault', () => {
    assert.equal(formatResult({ ok: true }), '{"ok":true}');
    assert.equal(
      formatResult({ ok: false, errno: 'EOPNOTSUPP' }),
      '{"ok":false,"errno":"EOPNOTSUPP"}',
    );
    assert.deepEqual(resultToJson({ ok: true, value: 2n ** 63n }), {
      ok: true,
      value: '0x8000000000000000',
    });
    assert.deepEqual(resultToJson({ ok: true, value: 'deadbeef' }), {
      ok: true,
      value: 'deadbeef',
    });
    assert.deepEqual(resultToJson({ ok: true, stat: { size: 1n << 62n, blocks: 0n } }), {
      ok: true,
      stat: { size: '0x4000000000000000', blocks: 0 },
    });
    assert.deepEqual(
      resultToJson({ ok: false, errno: 'ENOENT', remaining: { gpa: 0x1_0020_1000n, size: 4096n } }),
      { ok: false, errno: 'ENOENT', remaining: { gpa: 0x1_0020_1000, size: 4096 } },
    );
    assert.deepEqual(resultToJson({ ok: false, fault: 'SIGBUS' }), { ok: false, fault: 'SIGBUS' });
    assert.deepEqual(
      resultToJson({
        ok: false,
        errno: 'EFAULT',
        exits: [
          { reason: 'LOAD', gpa: 16n, hex: 'deadbeef' },
          { reason: 'MMIO', gpa: 0x100000n, len: 4, is_write: true, hex: 'aabbccdd' },
          { reason: 'MMIO', gpa: 0x100000n, len: 2, is_write: false },
          { reason: 'MEMORY_FAULT', gpa: 0xc0000000n, size: 4096n, flags: 8n },
          { reason: 'HYPERCALL', nr: 12n, args: [4096n, 1n, 16n] },
          { reason: 'HLT' },
        ],
      }),
      {
        ok: false,
        errno: 'EFAULT',
        exits: [
          { reason: 'LOAD', gpa: 16, hex: 'deadbeef' },
          { reason: 'MMIO', gpa: 1048576, len: 4, is_write: true, hex: 'aabbccdd' },
          { reason: 'MMIO', gpa: 1048576, len: 2, is_write: false },
          { reason: 'MEMORY_FAULT', gpa: 3221225472, size: 4096, flags: 8 },
          { reason: 'HYPERCALL', nr: 12, args: [4096, 1, 16] },
          { reason: 'HLT' },
        ],
      },
    );
  });
});

describe("the contract's example (trace-format.md)", () => {
  test('gives the documented result lines on linux-6.18-pvm', () => {
    const trace = [
      '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}',
      '{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":8192,"flags":3,"as":"g"}',
      '{"op":"mmap","fd":"g","length":8192,"prot":3,"flags":1,"offset":0,"as":"m"}',
      '{"op":"poke","addr":"m+16","hex":"deadbeef"}',
      '{"op":"KVM_SET_USER_MEMORY_REGION2","vm":"vm","slot":0,"flags":4,"guest_phys_addr":0,"memory_size":8192,"userspace_addr":"m","guest_memfd":"g","guest_memfd_offset":0}',
      '{"op":"KVM_CREATE_VCPU","vm":"vm","id":0,"as":"cpu"}',
      '{"op":"KVM_RUN","vcpu":"cpu","guest":[{"load":{"gpa":16}},{"store":{"gpa":1048576,"hex":"aabbccdd"}}]}',
      '{"op":"fallocate","fd":"g","mode":3,"offset":0,"len":4096}',
      '{"op":"peek","addr":"m+16","len":4}',
    ].join('\n');
    const expected = [
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true}',
      '{"ok":true,"exits":[{"reason":"LOAD","gpa":16,"hex":"deadbeef"},{"reason":"MMIO","gpa":1048576,"len":4,"is_write":true,"hex":"aabbccdd"},{"reason":"HLT"}]}',
      '{"ok":true}',
      '{"ok":true,"value":"00000000"}',
    ].map((l) => JSON.parse(l) as unknown);
    for (const profile of ['linux-6.18-pvm', 'linux-6.18']) {
      const { ops, errors } = parseTrace(trace, 'example.jsonl');
      assert.deepEqual(errors, []);
      const got = runTrace(ops, new ModelBackend(getProfile(profile)!)).map(
        (r) => JSON.parse(formatResult(r)) as unknown,
      );
      assert.deepEqual(got, expected, profile);
    }
  });
});
