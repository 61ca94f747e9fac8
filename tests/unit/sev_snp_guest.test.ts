/**
 * The SEV-SNP guest side (svm/sev_guest.ts, kvm_run.ts): C-bit accesses with the RMP check,
 * PVALIDATE, page-state changes by GHCB MSR protocol and by PSC descriptor forwarded as
 * KVM_HC_MAP_GPA_RANGE exits, the model VMM's MAP_GPA_RANGE policies, the trace syntax and the kvm
 * backend's refusal.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import {
  bytes,
  createGmem,
  createVcpu,
  createVm,
  js,
  MEM_GUEST_MEMFD,
  mmapAnon,
  newHost,
  ok,
  setRegion,
  vmOf,
  type Ctx,
} from './helpers.js';
import { guestLoad, guestStore, type GuestProgramStep } from '../../src/core/arch/x86/kvm_run.js';
import type { PscEntry } from '../../src/core/arch/x86/x86_ops.js';
import { exitToTrace } from '../../src/backends/model_args.js';
import type { MapGpaRangePolicy } from '../../src/core/host.js';
import { parseTrace } from '../../src/trace/parse.js';
import { formatOp } from '../../src/trace/format.js';
import { OPS } from '../../src/ops/registry.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runTrace } from '../../src/trace/runner.js';
import { ModelBackend } from '../../src/backends/model.js';
import { getProfile } from '../../src/core/profiles/index.js';
import { formatResult } from '../../src/trace/format.js';

const SNP_VM = 4n;
const BASE = 0x10_0000n; // GPA of the guest_memfd slot
const PAGES = 1024n; // 4 MiB: two 2M-aligned halves
const GFN0 = BASE >> 12n;
const KVM_CAP_EXIT_HYPERCALL = 201n;

type G = { c: Ctx; vm: number; vcpu: number; uaddr: bigint; gmem: number };

/** KVM_MEMORY_ENCRYPT_OP KVM_SEV_INIT2 with zero features. */
function init2(c: Ctx, vm: number): void {
  const sev = ok(c.h.openDevSev(), 'open /dev/sev');
  const params = mmapAnon(c, 0x1000n);
  assert.ok(c.h.poke(params, new Uint8Array(48)).ok);
  const cmd = new Uint8Array(24);
  const dv = new DataView(cmd.buffer);
  dv.setUint32(0, 22, true);
  dv.setBigUint64(8, params, true);
  dv.setInt32(20, sev, true);
  ok(c.h.kvmMemoryEncryptOp(vm, { kind: 'buffer', bytes: cmd }), 'KVM_SEV_INIT2');
}

/**
 * An SNP guest (after INIT2) with a 4 MiB guest_memfd slot at 1 MiB whose pages start shared,
 * shared memory behind userspace_addr, one vCPU, and (unless `cap` is false)
 * KVM_CAP_EXIT_HYPERCALL enabled for KVM_HC_MAP_GPA_RANGE.
 */
function snpGuest(cap = true, type = SNP_VM): G {
  const c = newHost('linux-6.18-snp');
  const vm = createVm(c, type);
  if (type === SNP_VM) init2(c, vm);
  const size = PAGES * 4096n;
  const gmem = createGmem(c, vm, size);
  const uaddr = mmapAnon(c, size);
  ok(setRegion(c, vm, { flags: MEM_GUEST_MEMFD, gpa: BASE, size, uaddr, gmem }), 'memslot');
  if (cap) ok(c.h.kvmEnableCap(vm, KVM_CAP_EXIT_HYPERCALL, 0n, [1n << 12n]), 'EXIT_HYPERCALL');
  const vcpu = createVcpu(c, vm);
  return { c, vm, vcpu, uaddr, gmem };
}

function run(
  g: G,
  steps: GuestProgramStep[],
  policy: MapGpaRangePolicy | undefined = 'convert',
): { errno: string | undefined; exits: Array<Record<string, unknown>> } {
  const r = g.c.h.kvmRun(g.vcpu, steps, policy);
  return { errno: r.errno, exits: r.exits.map(exitToTrace) as Array<Record<string, unknown>> };
}

const storeC = (gpa: bigint, hex: string, c = 1): GuestProgramStep =>
  guestStore(gpa, bytes(hex), c === 1);
const loadC = (gpa: bigint, c = 1): GuestProgramStep => guestLoad(gpa, 4, c === 1);
const pvalidate = (gpa: bigint, validate = true, size: '4K' | '2M' = '4K'): GuestProgramStep => ({
  kind: 'pvalidate',
  gpa,
  size,
  validate,
});
const pscMsr = (gfn: bigint, op: number): GuestProgramStep => ({ kind: 'psc_msr', gfn, op });
const psc = (
  entries: PscEntry[],
  curEntry = 0,
  endEntry = entries.length - 1,
): GuestProgramStep => ({
  kind: 'psc',
  curEntry,
  endEntry,
  entries,
});
const ent = (gfn: bigint, op: number, pageSize: 0 | 1 = 0, curPage = 0): PscEntry => ({
  curPage,
  gfn,
  op,
  pageSize,
});
const hc = (gpa: bigint, npages: bigint, attrs: bigint): Record<string, unknown> => ({
  reason: 'HYPERCALL',
  nr: 12n,
  args: [gpa, npages, attrs],
});
const HLT = { reason: 'HLT' };
const ENC = 0x10n;

function rmpOf(g: G): NonNullable<Ctx['h']['platform']['sevSnp']>['rmp'] {
  return g.c.h.platform.sevSnp!.rmp;
}
/** The frame backing `gfn` in the VM's stage-2 mapping. */
function pfnOf(g: G, gfn: bigint): number {
  const m = vmOf(g.c, g.vm).stage2[0]!.get(Number(gfn));
  assert.ok(m !== undefined, `gfn ${gfn} mapped`);
  return m.base;
}

describe('SNP guest: a full conversion cycle', () => {
  test('PSC private, PVALIDATE, C=1 write and read, rescind, PSC shared, C=0 write', () => {
    const g = snpGuest();
    const checker = new InvariantChecker(g.c.h, undefined, { incremental: false });
    const r = run(g, [
      pscMsr(GFN0, 1),
      pvalidate(BASE),
      storeC(BASE, '11223344'),
      loadC(BASE),
      pvalidate(BASE, false),
      psc([ent(GFN0, 2)]),
      storeC(BASE, 'aabbccdd', 0),
      loadC(BASE, 0),
    ]);
    assert.equal(r.errno, undefined, js(r.exits));
    assert.deepEqual(r.exits, [
      hc(BASE, 1n, ENC),
      { reason: 'GHCB_MSR', value: 0x15n },
      { reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 0 },
      { reason: 'LOAD', gpa: BASE, hex: '11223344' },
      { reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 0 },
      hc(BASE, 1n, 0n),
      { reason: 'PSC', ret: 0n, cur_entry: 1, cur_pages: [1] },
      { reason: 'LOAD', gpa: BASE, hex: 'aabbccdd' },
      HLT,
    ]);
    // The shared write went to userspace memory; the private frame is still the guest's.
    const p = g.c.h.peek(g.uaddr, 4);
    assert.ok(p.ok);
    assert.equal(Buffer.from(p.data!).toString('hex'), 'aabbccdd');
    assert.deepEqual(checker.check(), []);
  });

  test('a 2M-aligned range by descriptor: merged exits, 2M entries, PSMASH entries ignored', () => {
    const g = snpGuest();
    const r = run(g, [
      psc([
        ent(GFN0, 1),
        ent(GFN0 + 1n, 1),
        ent(GFN0 + 2n, 1),
        ent(GFN0 + 3n, 2),
        ent(GFN0 + 9n, 3),
      ]),
      psc([ent(0x200n, 1, 1), ent(0x400n, 1, 1)]),
    ]);
    assert.equal(r.errno, undefined, js(r.exits));
    assert.deepEqual(r.exits, [
      hc(BASE, 3n, ENC),
      hc(BASE + 0x3000n, 1n, 0n),
      { reason: 'PSC', ret: 0n, cur_entry: 5, cur_pages: [1, 1, 1, 1, 1] },
      hc(0x20_0000n, 1024n, ENC | 1n),
      { reason: 'PSC', ret: 0n, cur_entry: 2, cur_pages: [512, 512] },
      HLT,
    ]);
    const attrs = vmOf(g.c, g.vm).attrs;
    assert.ok(
      attrs.get(Number(GFN0) + 2) !== undefined && attrs.get(Number(GFN0) + 3) === undefined,
    );
  });
});

describe('SNP guest: PVALIDATE', () => {
  function privatePage(): G {
    const g = snpGuest();
    assert.equal(run(g, [pscMsr(GFN0, 1)]).errno, undefined);
    return g;
  }

  test('double validation sets CF (NOUPDATE); rescinding twice too', () => {
    const g = privatePage();
    const r = run(g, [
      pvalidate(BASE),
      pvalidate(BASE),
      pvalidate(BASE, false),
      pvalidate(BASE, false),
    ]);
    assert.deepEqual(r.exits, [
      { reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 0 },
      { reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 1 },
      { reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 0 },
      { reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 1 },
      HLT,
    ]);
    assert.equal(rmpOf(g).lookup(pfnOf(g, GFN0) as never).validated, false);
  });

  test('a 2M request on 4K entries is FAIL_SIZEMISMATCH; a misaligned one FAIL_INPUT', () => {
    const g = snpGuest();
    assert.equal(run(g, [psc([ent(0x200n, 1, 1)])]).errno, undefined);
    const r = run(g, [pvalidate(0x20_0000n, true, '2M'), pvalidate(0x20_1000n, true, '2M')]);
    assert.deepEqual(r.exits, [
      { reason: 'PVALIDATE', gpa: 0x20_0000n, ret: 6, cf: 0 },
      { reason: 'PVALIDATE', gpa: 0x20_1000n, ret: 1, cf: 0 },
      HLT,
    ]);
  });

  test('a 4K request inside a 2M RMP entry: #NPF (SIZEM), KVM PSMASHes, the retry validates', () => {
    const g = privatePage();
    assert.equal(run(g, [pvalidate(BASE)]).errno, undefined);
    // Make the frame's entry a 2M one (as a 2M folio's sev_gmem_prepare() would): the stage-2
    // mapping stays 4K.
    const rmp = rmpOf(g);
    const pfn = pfnOf(g, GFN0);
    const p0 = pfn - (pfn % 512);
    const g0 = GFN0 - BigInt(pfn % 512);
    rmp.makeShared(pfn as never, '4K');
    assert.equal(
      rmp.makePrivate(p0 as never, g0 << 12n, '2M', rmp.lookup(pfn as never).asid || 1, false),
      0,
    );
    const asid = rmp.lookup(p0 as never).asid;
    assert.ok(asid > 0);
    const r = run(g, [pvalidate(BASE)]);
    assert.deepEqual(r.exits, [{ reason: 'PVALIDATE', gpa: BASE, ret: 0, cf: 0 }, HLT]);
    assert.equal(rmp.lookup(pfn as never).size, '4K', 'PSMASHed');
    assert.equal(rmp.lookup(pfn as never).validated, true);
  });
});

describe('SNP guest: access checks', () => {
  test('C=1 on an unvalidated page: #VC, then the guest terminates (KVM_EXIT_SYSTEM_EVENT)', () => {
    const g = snpGuest();
    const r = run(g, [pscMsr(GFN0, 1), storeC(BASE, '01020304'), storeC(BASE + 4n, '05060708')]);
    assert.equal(r.errno, undefined);
    assert.deepEqual(r.exits, [
      hc(BASE, 1n, ENC),
      { reason: 'GHCB_MSR', value: 0x15n },
      { reason: 'VC', gpa: BASE, error_code: 0x404n },
      { reason: 'SYSTEM_EVENT', type: 6, data: [0x100n] },
    ]);
  });

  test('C=0 write to an assigned page: #NPF (RMP) → KVM_EXIT_MEMORY_FAULT (shared)', () => {
    const g = snpGuest();
    const r = run(g, [pscMsr(GFN0, 1), pvalidate(BASE), storeC(BASE, '01'), storeC(BASE, '02', 0)]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits.slice(-1), [
      { reason: 'MEMORY_FAULT', gpa: BASE, size: 4096n, flags: 0n },
    ]);
  });

  test('C=1 to a shared gfn: implicit conversion, KVM_EXIT_MEMORY_FAULT (private)', () => {
    const g = snpGuest();
    const r = run(g, [storeC(BASE + 0x5000n, '01')]);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits, [
      { reason: 'MEMORY_FAULT', gpa: BASE + 0x5000n, size: 4096n, flags: 8n },
    ]);
    // PVALIDATE walks the page as a C=1 access: the same exit, also through a shared mapping.
    assert.equal(run(g, [storeC(BASE + 0x5000n, '02', 0)]).errno, undefined);
    const r2 = run(g, [pvalidate(BASE + 0x5000n)]);
    assert.equal(r2.errno, 'EFAULT');
    assert.deepEqual(r2.exits, [
      { reason: 'MEMORY_FAULT', gpa: BASE + 0x5000n, size: 4096n, flags: 8n },
    ]);
  });

  test('c on a VM that is not an SNP guest means nothing; PVALIDATE/PSC triple-fault', () => {
    const c = newHost('linux-6.18-snp');
    const vm = createVm(c, 0n);
    const uaddr = mmapAnon(c, 0x10000n);
    ok(setRegion(c, vm, { gpa: BASE, size: 0x10000n, uaddr }));
    const vcpu = createVcpu(c, vm);
    const r = c.h.kvmRun(vcpu, [storeC(BASE, 'abcd1234'), loadC(BASE)]);
    assert.deepEqual(r.exits.map(exitToTrace), [
      { reason: 'LOAD', gpa: BASE, hex: 'abcd1234' },
      HLT,
    ]);
    for (const s of [pvalidate(BASE), pscMsr(GFN0, 1), psc([ent(GFN0, 1)])]) {
      const x = c.h.kvmRun(vcpu, [s]);
      assert.deepEqual(x.exits.map(exitToTrace), [{ reason: 'SHUTDOWN' }]);
    }
  });
});

describe('SNP guest: page-state change errors', () => {
  test('without KVM_CAP_EXIT_HYPERCALL: MSR RESP_ERROR, descriptor GENERIC, no exits', () => {
    const g = snpGuest(false);
    const r = run(g, [pscMsr(GFN0, 1), psc([ent(GFN0, 1)])]);
    assert.deepEqual(r.exits, [
      { reason: 'GHCB_MSR', value: (1n << 63n) | 0x15n },
      { reason: 'PSC', ret: 0x100n << 32n, cur_entry: 0, cur_pages: [0] },
      HLT,
    ]);
  });

  test('MSR protocol: an operation other than private/shared is RESP_ERROR', () => {
    const g = snpGuest();
    const r = run(g, [pscMsr(GFN0, 3)]);
    assert.deepEqual(r.exits, [{ reason: 'GHCB_MSR', value: (1n << 63n) | 0x15n }, HLT]);
  });

  test('descriptor: INVALID_HDR, INVALID_ENTRY, GENERIC from the VMM, partial progress', () => {
    const g = snpGuest();
    const r = run(
      g,
      [
        psc([ent(GFN0, 1)], 0, 253),
        psc([ent(GFN0, 1), ent(0x201n, 1, 1)]),
        psc([ent(GFN0, 1), ent(0x200n, 1, 1, 600)]),
      ],
      'convert',
    );
    assert.deepEqual(r.exits, [
      { reason: 'PSC', ret: (1n << 32n) | 1n, cur_entry: 0, cur_pages: [0] },
      hc(BASE, 1n, ENC),
      { reason: 'PSC', ret: (1n << 32n) | 2n, cur_entry: 1, cur_pages: [1, 0] },
      hc(BASE, 1n, ENC),
      { reason: 'PSC', ret: (1n << 32n) | 2n, cur_entry: 1, cur_pages: [1, 600] },
      HLT,
    ]);
    // A VMM answering non-zero fails the request with GENERIC, the entry not completed.
    const r2 = run(g, [psc([ent(GFN0 + 1n, 1)]), pscMsr(GFN0 + 1n, 1)], 22n);
    assert.deepEqual(r2.exits, [
      hc(BASE + 0x1000n, 1n, ENC),
      { reason: 'PSC', ret: 0x100n << 32n, cur_entry: 0, cur_pages: [0] },
      hc(BASE + 0x1000n, 1n, ENC),
      { reason: 'GHCB_MSR', value: (1n << 63n) | 0x15n },
      HLT,
    ]);
  });

  test('a partly done 2M entry continues at 4K from cur_page', () => {
    const g = snpGuest();
    const r = run(g, [psc([ent(0x200n, 1, 1, 510), ent(0x400n, 1, 1)])]);
    assert.deepEqual(r.exits, [
      hc(0x200n * 4096n + 510n * 4096n, 2n, ENC | 1n),
      hc(0x40_0000n, 512n, ENC | 1n),
      { reason: 'PSC', ret: 0n, cur_entry: 2, cur_pages: [512, 512] },
      HLT,
    ]);
  });
});

describe('SNP guest: the VMM policy for MAP_GPA_RANGE', () => {
  test('an integer answers without converting; convert+discard punches the private copy', () => {
    const g = snpGuest();
    // Return 0 only: the attributes stay shared, so the C=1 access is an implicit conversion.
    const r = run(g, [pscMsr(GFN0, 1), storeC(BASE, '01')], 0n);
    assert.equal(r.errno, 'EFAULT');
    assert.deepEqual(r.exits.at(-1), { reason: 'MEMORY_FAULT', gpa: BASE, size: 4096n, flags: 8n });
    // Convert and validate, then convert back with discard: the guest_memfd page is punched.
    const r2 = run(g, [pscMsr(GFN0, 1), pvalidate(BASE), storeC(BASE, '01')], 'convert');
    assert.equal(r2.errno, undefined, js(r2.exits));
    const file = [...vmOf(g.c, g.vm).gmemFiles][0]!;
    assert.ok(file.pages.get(0) !== undefined, 'private page allocated');
    const r3 = run(g, [pvalidate(BASE, false), pscMsr(GFN0, 2)], 'convert+discard');
    assert.equal(r3.errno, undefined, js(r3.exits));
    assert.equal(file.pages.get(0), undefined, 'punched');
    // The frame went back to the hypervisor (sev_gmem_invalidate()).
    assert.equal(rmpOf(g).runs, 0);
    // To private with discard: the shared copy is dropped (MADV_DONTNEED reads back zeros).
    assert.equal(run(g, [storeC(BASE, 'aabbccdd', 0)]).errno, undefined);
    const before = g.c.h.peek(g.uaddr, 4);
    assert.equal(Buffer.from(before.ok ? before.data! : []).toString('hex'), 'aabbccdd');
    const r4 = run(g, [pscMsr(GFN0, 1)], 'convert+discard');
    assert.deepEqual(r4.exits.slice(-2), [{ reason: 'GHCB_MSR', value: 0x15n }, HLT]);
    const after = g.c.h.peek(g.uaddr, 4);
    assert.equal(Buffer.from(after.ok ? after.data! : []).toString('hex'), '00000000');
  });
});

describe('SNP guest steps in traces', () => {
  test("the document's SNP page conversion runs with the documented results", () => {
    const root = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
    const doc = readFileSync(join(root, 'docs/trace-format.md'), 'utf8');
    const at = doc.indexOf("An SNP guest's page conversion");
    assert.ok(at >= 0, 'the example is in docs/trace-format.md');
    const blocks = [...doc.slice(at).matchAll(/```jsonl\n([\s\S]*?)\n```/g)].map((m) => m[1]!);
    const p = parseTrace(blocks[0]!, 't.jsonl');
    assert.deepEqual(
      p.errors.map((e) => e.message),
      [],
    );
    const b = new ModelBackend(getProfile('linux-6.18-snp')!, { events: false });
    assert.deepEqual(runTrace(p.ops, b).map(formatResult), blocks[1]!.split('\n'));
  });

  const line = (guest: unknown, extra = ''): string =>
    `{"op":"KVM_RUN","vcpu":5${extra},"guest":${JSON.stringify(guest)}}`;

  test('parse and format round trip', () => {
    const guest = [
      { store: { gpa: 4096, hex: '01', c: 1 } },
      { load: { gpa: 4096, size: 4, c: 1 } },
      { pvalidate: { gpa: 4096, size: '2M', validate: false } },
      { psc_msr: { gfn: 1, op: 'shared' } },
      {
        psc: {
          cur_entry: 0,
          end_entry: 1,
          entries: [
            { cur_page: 0, gfn: 1, op: 1, pagesize: 0 },
            { cur_page: 0, gfn: 512, op: 3, pagesize: 1 },
          ],
        },
      },
    ];
    const t = parseTrace(line(guest, ',"map_gpa_range":"convert+discard"'));
    assert.deepEqual(t.errors, []);
    const op = t.ops[0]! as unknown as { guest: GuestProgramStep[]; map_gpa_range: unknown };
    assert.equal(op.map_gpa_range, 'convert+discard');
    assert.equal(op.guest[3]!.kind, 'psc_msr');
    const again = JSON.parse(formatOp(t.ops[0]! as never)) as { guest: unknown };
    assert.deepEqual(again.guest, [
      { store: { gpa: 4096, hex: '01', c: 1 } },
      { load: { gpa: 4096, size: 4, c: 1 } },
      { pvalidate: { gpa: 4096, size: '2M', validate: false } },
      { psc_msr: { gfn: 1, op: 2 } },
      guest[4],
    ]);
    // A step without c formats as before.
    const plain = parseTrace(line([{ store: { gpa: 4096, hex: '01' } }]));
    assert.deepEqual(JSON.parse(formatOp(plain.ops[0]! as never)).guest, [
      { store: { gpa: 4096, hex: '01' } },
    ]);
  });

  test('bad values give file:line and the field', () => {
    for (const [guest, extra, want] of [
      [[{ store: { gpa: 0, hex: '01', c: 2 } }], '', 'guest[0].store.c: the C-bit is 0'],
      [
        [{ pvalidate: { gpa: 0, size: '1G' } }],
        '',
        'guest[0].pvalidate.size: expected "4K" or "2M"',
      ],
      [[{ pvalidate: { gpa: 0, validate: 1 } }], '', 'guest[0].pvalidate.validate: expected true'],
      [[{ psc_msr: { gfn: 1, op: 'sharde' } }], '', 'guest[0].psc_msr.op: expected private'],
      [
        [{ psc_msr: { gfn: 2 ** 41, op: 1 } }],
        '',
        'guest[0].psc_msr.gfn: the GHCB MSR request holds a 40-bit gfn',
      ],
      [
        [{ psc: { entries: [{ gfn: 1, op: 1, pagesize: '1G' }] } }],
        '',
        'guest[0].psc.entries[0].pagesize',
      ],
      [
        [{ psc: { entries: [{ gfn: 1, op: 1, bogus: 1 }] } }],
        '',
        'guest[0].psc.entries[0].bogus: unknown field',
      ],
      [[{ psc: { entries: Array(254).fill({ gfn: 1, op: 1 }) } }], '', 'at most 253 entries'],
      [
        [{ psc: { entries: [], cur_entry: 70000 } }],
        '',
        'guest[0].psc.cur_entry: cur_entry is a u16',
      ],
      [[{ pvalidat: { gpa: 0 } }], '', 'did you mean'],
      [[], ',"map_gpa_range":"convrt"', 'map_gpa_range: expected "convert"'],
    ] as const) {
      const t = parseTrace(line(guest, extra), 'snp.jsonl');
      assert.equal(t.errors.length, 1, js(guest));
      assert.match(t.errors[0]!.message, /^snp\.jsonl:1: /);
      assert.ok(t.errors[0]!.message.includes(want), `${t.errors[0]!.message} has ${want}`);
    }
  });

  test('the kvm backend refuses SNP steps and VMM policies it cannot follow', () => {
    const spec = OPS.get('KVM_RUN')!;
    const refusal = (text: string): string | undefined =>
      spec.kvmRefusal!(parseTrace(text).ops[0]! as never, {} as never);
    assert.equal(refusal(line([{ store: { gpa: 0, hex: '01' } }])), undefined);
    assert.equal(refusal(line([{ store: { gpa: 0, hex: '01', c: 0 } }])), undefined);
    assert.match(refusal(line([{ store: { gpa: 0, hex: '01', c: 1 } }]))!, /guest\[0\].*SEV-SNP/);
    assert.match(refusal(line([{ load: { gpa: 0 } }, { pvalidate: { gpa: 0 } }]))!, /guest\[1\]/);
    assert.match(
      refusal(line([], ',"map_gpa_range":"convert"'))!,
      /answers KVM_HC_MAP_GPA_RANGE with 0/,
    );
    assert.equal(refusal(line([], ',"map_gpa_range":0')), undefined);
  });
});
