/**
 * The op registry (src/ops/registry.ts) is complete and consistent: every family's ops are
 * registered once, each op has every part (fields, parser, text, model and /dev/kvm execution),
 * the field list is exactly what the parser reads, `as` is taken by the binding ops only, each op
 * runs on the model, and no generic module names an op (its name string is in its family only).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FAMILIES as REGISTERED, OP_GENERATORS, OP_LIST, OPS } from '../../src/ops/registry.js';
import { OP_FIELDS, OP_NAMES, bindsKind } from '../../src/trace/fields.js';
import { parseOpObject, TraceInputError } from '../../src/trace/parse.js';
import { renderOp } from '../../src/trace/strace.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { runTrace } from '../../src/trace/runner.js';

/** Each family module's ops, by the family's file name. */
const FAMILIES: Record<string, readonly { readonly name: string }[]> = Object.fromEntries(
  REGISTERED.map((f) => [`${f.name}.ts`, f.ops]),
);

/** A value for each field name (raw fds and addresses: they parse and run without handles). */
const SAMPLE: Record<string, unknown> = {
  fd: -1,
  vm: -1,
  vcpu: -1,
  guest_memfd: -1,
  addr: 4096,
  userspace_addr: 4096,
  hex: 'deadbeef',
  guest: [{ load: { gpa: 4096 } }],
  args: [1],
  len: 8,
  argp: 'cmd',
  // KVM_MEMORY_ENCRYPT_OP's SNP_LAUNCH_UPDATE (KVM_CREATE_VCPU takes the id too).
  id: 101,
  sev_fd: -1,
  data: { gfn_start: 1, uaddr: 4096, len: 4096, type: 1 },
  data_addr: 4096,
  path: '/dev/sev',
  // KVM_ARM_VCPU_INIT: a list of feature names or bit numbers.
  features: ['PSCI_0_2'],
  // pipe2's write end handle; VFIO_GROUP_SET_CONTAINER's container fd; VFIO_SET_IOMMU's flag.
  write_as: 'w',
  container: -1,
  tee_io: 0,
  // wait's process handle (unbound here: ECHILD).
  child: 'c',
};
/** Fields whose absence leaves the struct field out: the op parses without them. */
const OPTIONAL = new Set([
  'KVM_MEMORY_ENCRYPT_OP.sev_fd',
  'KVM_MEMORY_ENCRYPT_OP.flags',
  'KVM_MEMORY_ENCRYPT_OP.data',
  'pipe2.write_as',
  // HugeTLB guest_memfd: absent means 0 (kept out of the op so 6.18 traces parse as before).
  'KVM_CREATE_GUEST_MEMFD.page_order',
]);
const sample = (field: string): unknown => SAMPLE[field] ?? 4096;

/** An op object with every field of `name` set. */
function fullObject(name: string): Record<string, unknown> {
  const o: Record<string, unknown> = { op: name };
  for (const f of OPS.get(name)!.fields) o[f] = sample(f);
  return o;
}

/** The trace field a parsed op key comes from (hex data is kept as bytes). */
const fieldOf = (key: string): string => (key === 'bytes' ? 'hex' : key);

describe('op registry', () => {
  test('every family op is registered exactly once, and only those', () => {
    const fromFamilies = Object.values(FAMILIES).flatMap((ops) => ops.map((o) => o.name));
    assert.equal(new Set(fromFamilies).size, fromFamilies.length, 'an op in two families');
    assert.deepEqual([...fromFamilies].sort(), OP_LIST.map((s) => s.name).sort());
    assert.equal(OPS.size, OP_LIST.length, 'duplicate names in the registry');
    for (const s of OP_LIST) assert.equal(OPS.get(s.name), s);
    assert.deepEqual(
      OP_NAMES,
      OP_LIST.map((s) => s.name),
    );
  });

  test("the fuzz generators are the families' own, with positive weights", () => {
    assert.deepEqual(
      OP_GENERATORS,
      REGISTERED.flatMap((f) => f.generators),
    );
    for (const [w, gen] of OP_GENERATORS) {
      assert.ok(Number.isFinite(w) && w > 0, `weight ${w}`);
      assert.equal(typeof gen, 'function');
    }
  });

  test('every op has every part', () => {
    for (const s of OP_LIST) {
      // fork(void) is the one op without arguments.
      assert.ok(s.fields.length > 0 || s.name === 'fork', `${s.name}: fields`);
      assert.equal(new Set(s.fields).size, s.fields.length, `${s.name}: duplicate fields`);
      for (const m of ['parse', 'renderArgs', 'runModel', 'runKvm'] as const)
        assert.equal(typeof s[m], 'function', `${s.name}: ${m}`);
      assert.ok(
        s.binds === undefined || s.binds === 'fd' || s.binds === 'map' || s.binds === 'proc',
      );
      assert.equal(s.subSteps === undefined, s.withoutSubStep === undefined, s.name);
      assert.deepEqual(OP_FIELDS[s.name as keyof typeof OP_FIELDS], s.fields);
      assert.equal(bindsKind(s.name as keyof typeof OP_FIELDS), s.binds);
    }
  });

  test('the field list is exactly what the parser reads', () => {
    for (const s of OP_LIST) {
      const op = parseOpObject('t.jsonl', 1, fullObject(s.name));
      assert.equal(op.op, s.name);
      const keys = Object.keys(op)
        .filter((k) => k !== 'line' && k !== 'op' && k !== 'as')
        .map(fieldOf);
      assert.deepEqual(keys, s.fields, `${s.name}: parsed keys in field order`);
      // Each field is read: without it the op either fails on that field or takes a default.
      for (const f of s.fields) {
        const o = fullObject(s.name);
        delete o[f];
        if (f === 'data') delete o['data_addr']; // data_addr goes with data
        try {
          const p = parseOpObject('t.jsonl', 1, o) as unknown as Record<string, unknown>;
          if (!OPTIONAL.has(`${s.name}.${f}`))
            assert.ok(f in p, `${s.name}.${f}: parsed without it, but not defaulted`);
        } catch (e) {
          assert.ok(e instanceof TraceInputError, `${s.name}.${f}: ${String(e)}`);
          assert.equal(e.field, f, `${s.name} without ${f}: ${e.message}`);
        }
      }
      assert.throws(
        () => parseOpObject('t.jsonl', 1, { ...fullObject(s.name), bogus: 1 }),
        (e: unknown) => e instanceof TraceInputError && e.field === 'bogus',
      );
    }
  });

  test('"as" is taken by the binding ops only', () => {
    const binding = OP_LIST.filter((s) => s.binds !== undefined).map((s) => s.name);
    assert.deepEqual(binding, [
      'KVM_CREATE_VM',
      'KVM_CREATE_GUEST_MEMFD',
      'KVM_CREATE_VCPU',
      'mmap',
      'open',
      'pipe2',
      'fork',
      'memfd_restricted',
      'address_space_create',
    ]);
    for (const s of OP_LIST) {
      const o = { ...fullObject(s.name), as: 'x' };
      if (s.binds !== undefined) assert.equal(parseOpObject('t.jsonl', 1, o).as, 'x');
      else
        assert.throws(
          () => parseOpObject('t.jsonl', 1, o),
          (e: unknown) =>
            e instanceof TraceInputError &&
            e.detail ===
              `${s.name} creates nothing to name (only KVM_CREATE_VM, KVM_CREATE_GUEST_MEMFD, KVM_CREATE_VCPU, mmap, open, pipe2, fork, memfd_restricted and address_space_create take "as")`,
        );
    }
  });

  test('every op renders and runs on the model', () => {
    const profile = getProfile('linux-6.18')!;
    for (const s of OP_LIST) {
      // exit is a forked child's (the VMM's own exit is refused): it runs after a fork.
      const child = s.name === 'exit';
      const op = parseOpObject('t.jsonl', 2, {
        ...fullObject(s.name),
        ...(child ? { proc: 'c' } : {}),
      });
      assert.ok(renderOp(op).startsWith(`${child ? '[c] ' : ''}${s.name}(`), renderOp(op));
      const fork = parseOpObject('t.jsonl', 1, { op: 'fork', as: 'c' });
      const results = runTrace(
        child ? [fork, op] : [op],
        new ModelBackend(profile, { events: false }),
      );
      assert.equal(results.length, child ? 2 : 1);
      assert.equal(typeof results[results.length - 1]!.ok, 'boolean', s.name);
    }
  });

  test('no module outside src/ops names an op (but users of ops, src/core and libc bindings)', () => {
    const root = join(dirname(fileURLToPath(import.meta.url)), '../../..');
    const src = join(root, 'src');
    // Modules that use ops as data (they build traces: gmemlab compare's design adapters and the
    // adapter interface's example), and the FFI symbol table.
    const users = new Set([
      'src/cli/kernel_facts.ts',
      'src/backends/kvm/libc.ts',
      'src/compare/adapter.ts',
      // The historical designs' fuzz walk builds the designs' ops (and a few generic ones with
      // fixed fields) itself; moving them into src/ops generators is left to do.
      'src/fuzz/design_walk.ts',
    ]);
    const userDirs = ['src/compare/adapters/'];
    // backend.ts names the pipe2 syscall of its own peek/poke pipe in a setup error.
    // cli.ts's process exit and the scenario timeline's vCPU `exit` event are not the exit op;
    // compare's workload actions dma_read and dma_write are a device's accesses, named like the
    // ops the adapters lower them to.
    const syscallNames = new Set([
      'src/backends/kvm/backend.ts: pipe2',
      'src/cli/cli.ts: exit',
      'src/scenario/run.ts: exit',
      'src/compare/workload.ts: dma_read',
      'src/compare/workload.ts: dma_write',
    ]);
    const files: string[] = [];
    const walk = (d: string): void => {
      for (const n of readdirSync(d)) {
        const p = join(d, n);
        if (statSync(p).isDirectory()) walk(p);
        else if (n.endsWith('.ts')) files.push(p);
      }
    };
    walk(src);
    const owner = new Map<string, string>();
    for (const [file, ops] of Object.entries(FAMILIES))
      for (const o of ops) owner.set(o.name, `src/ops/${file}`);
    const bad: string[] = [];
    for (const p of files) {
      const rel = relative(root, p).split('\\').join('/');
      if (rel.startsWith('src/core/') || users.has(rel) || userDirs.some((d) => rel.startsWith(d)))
        continue;
      const text = readFileSync(p, 'utf8');
      for (const [name, home] of owner) {
        if (rel === home) continue;
        if (
          (text.includes(`'${name}'`) || text.includes(`"${name}"`)) &&
          !syscallNames.has(`${rel}: ${name}`)
        )
          bad.push(`${rel}: ${name}`);
      }
    }
    assert.deepEqual(bad, []);
  });
});
