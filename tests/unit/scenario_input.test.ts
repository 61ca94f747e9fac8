/**
 * Strict scenario input (issue 9): every malformed scenario is one `file:line: field: message`
 * error at the line of the offending field, in the tool's words, and parseScenario never throws
 * (a seeded mutation test over examples/).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseScenario, type Scenario } from '../../src/scenario/scenario.js';
import { evaluate } from '../../src/trace/constants.js';
import { loadOps } from '../../src/cli/check.js';
import { InputError } from '../../src/cli/io.js';

const HEAD = 'name: t\nsteps:\n';

/** The only error of `text` (steps appended to a minimal header unless `whole`). */
function errorOf(text: string, whole = false): { line: number; field: string; message: string } {
  const p = parseScenario(whole ? text : HEAD + text, 's.yaml');
  assert.equal(p.scenario, undefined, 'expected an error');
  assert.equal(p.errors.length, 1, p.errors.map((e) => e.message).join('\n'));
  const e = p.errors[0]!;
  return { line: e.line, field: e.field, message: e.message };
}

function ok(text: string, whole = false): Scenario {
  const p = parseScenario(whole ? text : HEAD + text, 's.yaml');
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  return p.scenario!;
}

function opStep(s: Scenario, i: number): Record<string, unknown> {
  const st = s.steps[i]!;
  assert.equal(st.kind, 'op');
  return st.kind === 'op' ? (st.op as unknown as Record<string, unknown>) : {};
}

/** [name, steps text, line, field, full message]. */
const CASES: ReadonlyArray<readonly [string, string, number, string, string]> = [
  [
    'misspelt step key',
    '  - do: KVM_CREATE_VM\n    expcet: EINVAL\n',
    4,
    'expcet',
    'unknown key (did you mean "expect"?)',
  ],
  [
    'misspelt op field',
    '  - do: KVM_CREATE_GUEST_MEMFD\n    vm: vm\n    size: 4096\n    flgs: MMAP\n',
    6,
    'flgs',
    'unknown key (did you mean "flags"?)',
  ],
  [
    'a key neither step nor op takes',
    '  - do: close\n    fd: g\n    zzzzzz: 1\n',
    5,
    'zzzzzz',
    'unknown key (known: say, do, as, proc, expect, fd)',
  ],
  [
    'unknown op',
    '  - say: hi\n    do: KVM_CRATE_VM\n',
    4,
    'op',
    'unknown op "KVM_CRATE_VM" (did you mean "KVM_CREATE_VM"?)',
  ],
  ['op: instead of do:', '  - op: KVM_CREATE_VM\n', 3, 'op', 'use "do" for the op name'],
  ['missing do', '  - say: hi\n', 3, 'do', 'missing "do" (the op to run, e.g. KVM_CREATE_VM)'],
  [
    'section with another key',
    '  - section: Setup\n    say: x\n',
    4,
    'say',
    'a section step has no other keys',
  ],
  [
    'unknown errno (shorthand)',
    '  - do: KVM_CREATE_VM\n    expect: EFAULTT\n',
    4,
    'expect',
    'unknown errno "EFAULTT" (did you mean "EFAULT"?)',
  ],
  [
    'unknown errno (map)',
    '  - do: KVM_CREATE_VM\n    expect:\n      ok: false\n      errno: EFAULTT\n',
    6,
    'expect.errno',
    'unknown errno "EFAULTT" (did you mean "EFAULT"?)',
  ],
  [
    'misspelt expect key',
    '  - do: KVM_CREATE_VM\n    expect: { errnoo: EINVAL }\n',
    4,
    'expect.errnoo',
    'unknown key (did you mean "errno"?)',
  ],
  [
    'unknown exit reason',
    '  - do: KVM_RUN\n    vcpu: -1\n    expect:\n      exits:\n        - { reason: LOAD }\n        - { reason: HLTT }\n',
    8,
    'expect.exits[1].reason',
    'unknown exit reason "HLTT" (did you mean "HLT"?)',
  ],
  [
    'misspelt exit key',
    '  - do: KVM_RUN\n    vcpu: -1\n    expect:\n      exits:\n        - reason: LOAD\n          gap: 0x1000\n',
    8,
    'expect.exits[0].gap',
    'unknown key (did you mean "gpa"?)',
  ],
  [
    'exit key of another reason',
    '  - do: KVM_RUN\n    vcpu: -1\n    expect:\n      exits: [{ reason: HLT, gpa: 1 }]\n',
    6,
    'expect.exits[0].gpa',
    'a HLT exit has no gpa',
  ],
  [
    'misspelt remaining key',
    '  - do: KVM_PRE_FAULT_MEMORY\n    vcpu: -1\n    gpa: 0\n    size: 4096\n    expect:\n      remaining:\n        gap: 0\n',
    9,
    'expect.remaining.gap',
    'unknown key (did you mean "gpa"?)',
  ],
  [
    'misspelt stat key',
    '  - do: fstat\n    fd: -1\n    expect:\n      stat: { size: 0, blokcs: 0 }\n',
    6,
    'expect.stat.blokcs',
    'unknown key (did you mean "blocks"?)',
  ],
  [
    'negative effect',
    '  - do: fstat\n    fd: -1\n    expect:\n      effects:\n        zapped: -1\n',
    7,
    'expect.effects.zapped',
    'expected a count (a non-negative integer up to 2^53)',
  ],
  [
    'effect above 2^53',
    '  - do: fstat\n    fd: -1\n    expect:\n      effects: { mapped: 0x20000000000000 }\n',
    6,
    'expect.effects.mapped',
    'expected a count (a non-negative integer up to 2^53)',
  ],
  [
    'misspelt effect',
    '  - do: fstat\n    fd: -1\n    expect:\n      effects: { zaped: 1 }\n',
    6,
    'expect.effects.zaped',
    'unknown key (did you mean "zapped"?)',
  ],
  [
    'dangling +',
    '  - do: KVM_CREATE_VM\n    type: 4096 +\n',
    4,
    'type',
    '"4096 +" is not an integer: expected a term after "+"',
  ],
  [
    '0x_',
    '  - do: KVM_CREATE_VM\n    type: 0x_\n',
    4,
    'type',
    '"0x_" is not an integer: no digits',
  ],
  [
    '1__0',
    '  - do: KVM_CREATE_VM\n    type: 1__0\n',
    4,
    'type',
    '"1__0" is not an integer: "_" goes between two digits',
  ],
  [
    'a lone -',
    '  - do: KVM_CREATE_VM\n    type: "-"\n',
    4,
    'type',
    '"-" is not an integer: expected a term after "-"',
  ],
  [
    'leading |',
    '  - do: KVM_CREATE_VM\n    type: "| MMAP"\n',
    4,
    'type',
    '"| MMAP" is not an integer: expected a term before "|"',
  ],
  [
    '||',
    '  - do: KVM_CREATE_VM\n    type: MMAP||X\n',
    4,
    'type',
    '"MMAP||X" is not an integer: expected a term between "|" and "|"',
  ],
  [
    '2 MiB +',
    '  - do: KVM_CREATE_GUEST_MEMFD\n    vm: vm\n    size: 2 MiB +\n',
    5,
    'size',
    '"2 MiB +" is not an integer: expected a term after "+"',
  ],
  [
    'unknown unit',
    '  - do: KVM_CREATE_GUEST_MEMFD\n    vm: vm\n    size: 4 KIBB\n',
    5,
    'size',
    '"4 KIBB" is not an integer: unknown unit "KIBB" (did you mean "KiB"?)',
  ],
  [
    'unknown constant',
    '  - do: KVM_CREATE_GUEST_MEMFD\n    vm: vm\n    size: 4096\n    flags: MMAP | INIT_SHARD\n',
    6,
    'flags',
    '"MMAP | INIT_SHARD" is not an integer: unknown constant "INIT_SHARD" (did you mean "INIT_SHARED"?)',
  ],
  [
    'MAAP',
    '  - do: KVM_CREATE_VM\n    type: MAAP\n',
    4,
    'type',
    '"MAAP" is not an integer: unknown constant "MAAP" (did you mean "MMAP"?)',
  ],
  [
    'mixed operators',
    '  - do: KVM_CREATE_VM\n    type: MMAP | 1 + 2\n',
    4,
    'type',
    '"MMAP | 1 + 2" is not an integer: an expression uses either | or + and -, not both',
  ],
  [
    'a 400-digit string',
    `  - do: KVM_CREATE_VM\n    type: "${'9'.repeat(400)}"\n`,
    4,
    'type',
    `"${'9'.repeat(60)}"… (400 characters) is not an integer: number too long (at most 40 digits)`,
  ],
  [
    'a 400-digit YAML integer',
    `  - do: KVM_CREATE_VM\n    type: ${'9'.repeat(400)}\n`,
    4,
    'type',
    'integer too long (at most 40 digits)',
  ],
  [
    'an expression in a guest program',
    '  - do: KVM_RUN\n    vcpu: -1\n    guest:\n      - store: { gpa: 0x1000, hex: "00" }\n      - load: { gpa: 1 GiB + }\n',
    7,
    'guest[1].load.gpa',
    '"1 GiB +" is not an integer: expected a term after "+"',
  ],
  [
    'count that is no number',
    '  - do: poke\n    addr: m\n    hex:\n      repeat: aa\n      count: x\n',
    7,
    'hex.count',
    '"x" is not an integer: unknown constant "x"',
  ],
  [
    'count above 16 MiB',
    '  - do: poke\n    addr: m\n    hex: { repeat: aa, count: 17 MiB }\n',
    5,
    'hex.count',
    'expected a byte count up to 16 MiB',
  ],
  [
    'misspelt count',
    '  - do: poke\n    addr: m\n    hex: { repeat: aa, cuont: 4 }\n',
    5,
    'hex.cuont',
    'unknown key (did you mean "count"?)',
  ],
  [
    'a value neither hex nor integer',
    '  - do: peek\n    addr: 0x1000\n    len: 1\n    expect: { value: zz }\n',
    6,
    'expect.value',
    '"zz" is neither hex bytes such as \'00ff\' nor an integer: unknown constant "zz"',
  ],
  [
    'a !!binary value',
    '  - do: KVM_CREATE_VM\n    type: !!binary aGVsbG8=\n',
    4,
    'type',
    'a tagged YAML value (!!binary, !!set, ...) is not a scenario value',
  ],
  [
    'the parser error at its field line',
    '  - do: KVM_CREATE_GUEST_MEMFD\n    as: g\n    size: 4096\n',
    3,
    'vm',
    'missing fd field (a handle name or an integer)',
  ],
  [
    'an alias of an undefined anchor',
    '  - do: KVM_CREATE_VM\n    type: *nope\n',
    4,
    'yaml',
    'alias *nope has no anchor &nope before it',
  ],
  [
    'an alias inside its own anchor',
    '  - &a { do: KVM_CREATE_VM, type: [*a] }\n',
    3,
    'yaml',
    'alias *a is inside the node it refers to',
  ],
  [
    'a duplicate key',
    '  - do: KVM_CREATE_VM\n    type: 1\n    type: 2\n',
    5,
    'yaml',
    'Map keys must be unique',
  ],
  [
    'a tab as indentation',
    '  - do: KVM_CREATE_VM\n\ttype: 1\n',
    4,
    'yaml',
    'Tabs are not allowed as indentation',
  ],
  [
    'a merge key (not YAML 1.2)',
    '  - do: KVM_CREATE_VM\n    <<: { type: 1 }\n',
    4,
    '<<',
    'unknown key (known: say, do, as, proc, expect, fd, type)',
  ],
  [
    'a map as a key',
    '  - do: KVM_CREATE_VM\n    ? { a: 1 }\n    : 2\n',
    4,
    'yaml',
    'a key must be a plain name, not a list, map or alias',
  ],
  [
    'deep nesting',
    `  - do: KVM_CREATE_VM\n    type: ${'['.repeat(100)}${']'.repeat(100)}\n`,
    4,
    'yaml',
    'nested more than 64 levels deep',
  ],
];

describe('malformed scenarios: one error at the offending field', () => {
  for (const [name, text, line, field, message] of CASES)
    test(name, () => {
      assert.deepEqual(errorOf(text), {
        line,
        field,
        // A field path that is not plain (a YAML merge key, say) is quoted in the message.
        message: `s.yaml:${line}: ${/^[A-Za-z0-9_.[\]-]+$/.test(field) ? field : JSON.stringify(field)}: ${message}`,
      });
    });

  test('top level: misspelt key, bad name, two documents', () => {
    assert.deepEqual(errorOf('name: t\nstpes: []\nsteps: []\n', true), {
      line: 2,
      field: 'stpes',
      message: 's.yaml:2: stpes: unknown key (did you mean "steps"?)',
    });
    assert.equal(
      errorOf('name: ""\nsteps: []\n', true).message,
      's.yaml:1: name: expected a non-empty title',
    );
    assert.equal(
      errorOf('name: t\ndescription: [a]\nsteps: []\n', true).message,
      's.yaml:2: description: expected text',
    );
    assert.equal(
      errorOf('name: t\nsteps: []\n---\nname: u\n', true).message,
      's.yaml:3: yaml: a scenario is one YAML document (remove the second "---")',
    );
  });

  test('billion laughs: aliases may add at most 10000 nodes', () => {
    const lines = ['a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]'];
    for (let i = 1; i < 9; i++) {
      const [p, c] = [String.fromCharCode(96 + i), String.fromCharCode(97 + i)];
      lines.push(`${c}: &${c} [${Array<string>(10).fill(`*${p}`).join(', ')}]`);
    }
    const e = errorOf(`name: t\nsteps: []\n${lines.join('\n')}\n`, true);
    assert.deepEqual([e.line, e.field], [6, 'yaml']);
    assert.match(e.message, /aliases expand the scenario by more than 10000 nodes/);
  });

  test('deep flow nesting beyond what yaml composes is an error, not a crash', () => {
    const e = errorOf(`  - do: KVM_CREATE_VM\n    type: ${'['.repeat(3000)}${']'.repeat(3000)}\n`);
    assert.deepEqual([e.line, e.field], [4, 'yaml']);
  });

  test('errors of several steps are all reported', () => {
    const p = parseScenario(
      HEAD + '  - do: KVM_CREATE_VM\n    tpye: 1\n  - do: KVM_CREATE_VM\n    expect: EINAVL\n',
      's.yaml',
    );
    assert.deepEqual(
      p.errors.map((e) => [e.line, e.field]),
      [
        [4, 'tpye'],
        [6, 'expect'],
      ],
    );
  });
});

describe('well-formed scenarios still read', () => {
  test('aliased steps, a scalar anchor used 150 times', () => {
    const many = ok(
      '  - &s1\n    do: KVM_CREATE_VM\n    type: &t SW_PROTECTED\n    as: vm\n  - *s1\n' +
        '  - { do: KVM_CREATE_VM, type: *t }\n'.repeat(150),
    );
    assert.equal(many.steps.length, 152);
    assert.equal(many.steps[1]!.line, 7);
    assert.deepEqual({ ...opStep(many, 1), line: 0 }, { ...opStep(many, 0), line: 0 });
    assert.equal(opStep(many, 151)['type'], 1n);
  });

  test('a UTF-8 byte order mark is accepted', () => {
    const s = ok('\uFEFFname: t\nsteps:\n  - do: KVM_CREATE_VM\n    type: 1\n', true);
    assert.equal(s.steps[0]!.line, 3);
  });

  test('handle names and address expressions pass to the trace parser', () => {
    const s = ok(
      '  - do: KVM_CREATE_VM\n    as: myvm\n  - do: KVM_CREATE_VM\n    as: vm\n' +
        '  - do: mmap\n    fd: null\n    length: 4096\n    prot: 3\n    flags: 34\n    as: shared\n' +
        '  - do: KVM_CREATE_GUEST_MEMFD\n    vm: myvm\n    size: 2 MiB + 0x1000\n    flags: MMAP|INIT_SHARED\n' +
        '  - do: peek\n    addr: shared+0x1000\n    len: 1_0\n' +
        '  - do: KVM_SET_USER_MEMORY_REGION\n    vm: vm\n    slot: 0\n    guest_phys_addr: 1 GiB - 4 KiB\n    memory_size: 0x1000\n    userspace_addr: 0x7f00_0000_0000\n',
    );
    const g = opStep(s, 3);
    assert.deepEqual(g['vm'], { kind: 'handle', name: 'myvm' });
    assert.equal(g['size'], 0x201000n);
    assert.equal(g['flags'], 3n);
    assert.deepEqual(opStep(s, 4)['addr'], { kind: 'handle', name: 'shared', offset: 0x1000n });
    assert.equal(opStep(s, 4)['len'], 10n);
    assert.equal(opStep(s, 5)['guest_phys_addr'], (1n << 30n) - 4096n);
    assert.deepEqual(opStep(s, 5)['userspace_addr'], { kind: 'raw', value: 0x7f0000000000n });
  });

  test('expectations: shorthands and maps', () => {
    const s = ok(
      '  - do: KVM_CREATE_VM\n    expect: EINVAL\n' +
        '  - do: KVM_RUN\n    vcpu: -1\n    expect:\n      exits:\n        - { reason: MEMORY_FAULT, gpa: 2 GiB, size: 4 KiB, flags: KVM_MEMORY_EXIT_FLAG_PRIVATE }\n        - { reason: HYPERCALL, nr: KVM_HC_MAP_GPA_RANGE, args: [1, 2] }\n' +
        '  - do: peek\n    addr: 0x1000\n    len: 2\n    expect: { value: { repeat: AB, count: 2 }, effects: { zapped: 0 } }\n',
    );
    const e = s.steps.map((x) => (x.kind === 'op' ? x.expect : undefined));
    assert.deepEqual(e[0], { ok: false, errno: 'EINVAL' });
    assert.equal(e[1]!.exits![0]!['flags'], 1n << 3n);
    assert.deepEqual(e[1]!.exits![1]!['args'], [1n, 2n]);
    assert.deepEqual(e[2], { value: 'abab', effects: { zapped: 0 } });
  });
});

describe('evaluate', () => {
  test('values', () => {
    const v = (s: string): bigint | undefined => {
      const r = evaluate(s);
      return 'value' in r ? r.value : undefined;
    };
    assert.equal(v('4k'), 4096n);
    assert.equal(v('-1'), -1n);
    assert.equal(v('1 GiB - 4 KiB + 1'), (1n << 30n) - 4095n);
    assert.equal(v('PROT_READ | PROT_WRITE'), 3n);
    assert.equal(v('0x4000_0000'), 1n << 30n);
    assert.equal(v(`1${'0'.repeat(39)}`), 10n ** 39n);
    assert.equal(v(`1${'0'.repeat(40)}`), undefined);
    assert.equal(v(''), undefined);
    assert.equal(v('mem+0x1000'), undefined);
    assert.equal(v('2 * 3'), undefined);
  });
});

describe('gmemlab check: the scenario kernel', () => {
  test('an unknown kernel: is an input error at its line', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-scn-'));
    const f = join(dir, 'k.yaml');
    writeFileSync(f, 'name: t\n\nkernel: linux-6.81\nsteps:\n  - do: KVM_CREATE_VM\n');
    await assert.rejects(loadOps(f), (e: unknown) => {
      assert.ok(e instanceof InputError);
      assert.match(e.message, new RegExp(`^${f}:3: kernel: unknown kernel profile "linux-6.81"`));
      return true;
    });
    writeFileSync(f, 'name: t\nkernel: linux-6.18-pvm\nsteps:\n  - do: KVM_CREATE_VM\n');
    const r = await loadOps(f);
    assert.deepEqual([r.ops.length, r.kernel], [1, 'linux-6.18-pvm']);
  });
});

// --- parseScenario never throws: seeded mutations of the example scenarios ---

function examples(dir: string, out: string[] = []): string[] {
  for (const n of readdirSync(dir).sort()) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) examples(p, out);
    else if (n.endsWith('.yaml')) out.push(p);
  }
  return out;
}

/** The examples cut into quick pieces: each file's header, then whole steps, about 25 lines. */
function corpus(): string[] {
  const out: string[] = [];
  for (const f of examples(join(process.cwd(), 'examples'))) {
    const lines = readFileSync(f, 'utf8').split('\n');
    const s = lines.findIndex((l) => l.startsWith('steps:'));
    const starts = lines.flatMap((l, i) => (i > s && l.startsWith('  - ') ? [i] : []));
    starts.push(lines.length);
    // A piece keeps the earlier steps that create handles (`as:`), so that every handle name it
    // uses is still created by an earlier step.
    const creating: string[] = [];
    let from = starts[0]!;
    starts.slice(1).forEach((at, k) => {
      if (at - from >= 25 || at === lines.length) {
        out.push([...lines.slice(0, s + 1), ...creating, ...lines.slice(from, at)].join('\n'));
        for (let i = starts.indexOf(from); starts[i]! < at; i++) {
          const step = lines.slice(starts[i], starts[i + 1]);
          if (step.some((l) => /^\s+as: /.test(l))) creating.push(...step);
        }
        from = at;
      }
      void k;
    });
  }
  return out;
}

/** mulberry32: a small deterministic PRNG. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const TOKENS = [
  '*x',
  '&a ',
  '*a',
  '<<: ',
  '!!binary ',
  '!!set ',
  '? ',
  '\t',
  ': ',
  '- ',
  '[',
  ']',
  '{',
  '}',
  '"',
  "'",
  '#',
  '|',
  '>',
  '---\n',
  '%YAML 1.1\n',
  '\uFEFF',
  '0x_',
  '1__0',
  '+',
  ' -',
  'MAAP',
  '4 KIBB',
  '9'.repeat(60),
  '__proto__: ',
  'constructor',
  '\n',
  '  ',
  '~',
  'null',
  '.nan',
  '!!int ',
  '&b [*b]',
];

const BAD = [
  'TypeError',
  'SyntaxError',
  'RangeError',
  'ReferenceError',
  'Cannot read properties',
  'undefined (reading',
  'is not a function',
  'internal error',
];

function mutate(text: string, rnd: () => number): string {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  let s = text;
  const n = 1 + Math.floor(rnd() * 4);
  for (let k = 0; k < n; k++) {
    const at = Math.floor(rnd() * (s.length + 1));
    switch (Math.floor(rnd() * 6)) {
      case 0: // delete a run of characters
        s = s.slice(0, at) + s.slice(at + 1 + Math.floor(rnd() * 8));
        break;
      case 1: // duplicate a run
        s = s.slice(0, at) + s.slice(at, at + 1 + Math.floor(rnd() * 40)) + s.slice(at);
        break;
      case 2: // insert a character
        s = s.slice(0, at) + String.fromCharCode(Math.floor(rnd() * 128)) + s.slice(at);
        break;
      case 3: {
        // swap two lines
        const lines = s.split('\n');
        const [i, j] = [Math.floor(rnd() * lines.length), Math.floor(rnd() * lines.length)];
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
        s = lines.join('\n');
        break;
      }
      default: // insert a YAML token
        s = s.slice(0, at) + pick(TOKENS) + s.slice(at);
    }
  }
  return s;
}

test('parseScenario never throws on mutated examples (seeded)', () => {
  const files = corpus();
  assert.ok(files.length > 100);
  for (const f of files.slice(0, 20)) assert.deepEqual(parseScenario(f).errors, []);
  // SCENARIO_MUTANTS=N SCENARIO_SEED=S run a longer search locally.
  const total = Number(process.env['SCENARIO_MUTANTS'] ?? 600);
  const rnd = prng(Number(process.env['SCENARIO_SEED'] ?? 20260509));
  let runs = 0;
  let rejected = 0;
  while (runs < total) {
    const text = mutate(files[runs % files.length]!, rnd);
    let p;
    try {
      p = parseScenario(text, 'm.yaml');
    } catch (e) {
      assert.fail(`parseScenario threw ${String(e)} on:\n${text}`);
    }
    const lines = text.split('\n').length;
    for (const e of p.errors) {
      for (const b of BAD)
        assert.ok(!e.message.includes(b), `"${b}" in "${e.message}" for:\n${text}`);
      // No stack frame (yaml's own words may say "at node end").
      assert.doesNotMatch(e.message, /\n\s*at |\(file:|node:internal|:\d+:\d+\)/);
      assert.match(e.message, /^m\.yaml:\d+: /);
      assert.ok(e.line >= 1 && e.line <= lines + 1, `${e.message}: line out of range`);
    }
    assert.ok(p.scenario !== undefined || p.errors.length > 0);
    if (p.scenario === undefined) rejected++;
    runs++;
  }
  assert.ok(rejected > runs / 10, `mutants should mostly be rejected (${rejected}/${runs})`);
});
