/**
 * The VMM side of a TD build (src/vmm/tdx) and `gmemlab measure tdx` (src/cli/measure_tdx.ts, run
 * in-process through measure's entry): TDVF metadata from synthetic OVMF and td-shim images, T5 of
 * shared/spec/platforms.md §1.8 both ways, the single- and two-pass orders (T3, T4 as an image),
 * the plan and the launcher, and clear errors (file, offset, field) for malformed images.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { UsageError } from '../../src/cli/args.js';
import { measureMain, MeasureInputError } from '../../src/cli/measure.js';
import { FirmwareImageError } from '../../src/vmm/firmware/guid_table.js';
import { parseTdvfImage, TDVF_SECTION } from '../../src/vmm/tdx/tdvf.js';
import { buildTdxLaunchPlan, tdxPlanCounts } from '../../src/vmm/tdx/launch_plan.js';
import {
  MrtdLauncher,
  runTdxLaunchPlan,
  TdxLaunchError,
  type TdxMeasureOp,
} from '../../src/vmm/tdx/measure.js';
import { toHex } from '../../src/core/base/crypto/hex.js';
import {
  buildTdvfImage,
  patternPage,
  T3_MRTD,
  T4_MRTD,
  T5_MRTD,
  T5_SECTIONS,
  TWO_PAGE_SECTIONS,
  MIXED_MRTD,
  MIXED_SECTIONS,
  type SectionSpec,
} from './tdvf_images.js';

const mrtdOf = (bytes: Uint8Array, twoPass = false): string =>
  toHex(
    runTdxLaunchPlan(buildTdxLaunchPlan(parseTdvfImage(bytes), { twoPass }), new MrtdLauncher()),
  );

describe('TDVF metadata', () => {
  for (const format of ['ovmf', 'td-shim'] as const) {
    test(`T5 as ${format === 'ovmf' ? 'an OVMF image (footer GUID table)' : 'a td-shim image (pointer at end - 0x20)'}`, () => {
      const { bytes, descriptor, dataOffsets } = buildTdvfImage(T5_SECTIONS, format);
      const img = parseTdvfImage(bytes);
      assert.equal(img.format, format);
      assert.equal(img.descriptorOffset, descriptor);
      assert.deepEqual(
        img.sections.map((s) => [s.index, s.type, s.gpa, s.memSize, s.rawSize, s.attributes]),
        [
          [0, 0, 0xfffff000n, 4096n, 4096, 1],
          [1, 3, 0x800000n, 8192n, 0, 0],
          [2, 4, 0x900000n, 4096n, 0, 2],
        ],
      );
      assert.equal(img.sections[0]!.dataOffset, dataOffsets[0]);
      assert.equal(img.sections[1]!.offset, descriptor + 16 + 32);
      assert.equal(mrtdOf(bytes), T5_MRTD);
      // One measured page: two pass is the same sequence.
      assert.equal(mrtdOf(bytes, true), T5_MRTD);
    });
  }

  test("four mixed sections: td-shim's Python tool's MRTD, from both image formats", () => {
    assert.equal(mrtdOf(buildTdvfImage(MIXED_SECTIONS).bytes), MIXED_MRTD);
    assert.equal(mrtdOf(buildTdvfImage(MIXED_SECTIONS, 'td-shim').bytes), MIXED_MRTD);
  });

  test('T3 and T4 as an image: single pass and two pass per section; zero fill beyond RawDataSize', () => {
    const { bytes } = buildTdvfImage(TWO_PAGE_SECTIONS);
    assert.equal(mrtdOf(bytes), T3_MRTD);
    assert.equal(mrtdOf(bytes, true), T4_MRTD);
  });

  test('the plan: sections in order, PAGE.AUG skipped, counts', () => {
    const plan = buildTdxLaunchPlan(parseTdvfImage(buildTdvfImage(T5_SECTIONS).bytes));
    assert.deepEqual(
      plan.sections.map((s) => s.action),
      ['add+measure', 'add', 'skipped: PAGE.AUG (added after finalize, unmeasured)'],
    );
    assert.deepEqual(
      plan.regions.map((r) => [r.gpa, r.pages, r.measure, r.what]),
      [
        [0xfffff000n, 1, true, 'BFV'],
        [0x800000n, 2, false, 'TEMP_MEM'],
      ],
    );
    assert.deepEqual(tdxPlanCounts(plan), { pageAdds: 3, mrExtends: 16 });
  });

  test('the launcher: operations in order, single and two pass', () => {
    const seq = (twoPass: boolean): string[] => {
      const ops: TdxMeasureOp[] = [];
      const plan = buildTdxLaunchPlan(parseTdvfImage(buildTdvfImage(TWO_PAGE_SECTIONS).bytes), {
        twoPass,
      });
      runTdxLaunchPlan(plan, new MrtdLauncher({ trace: (o) => ops.push(o) }));
      assert.deepEqual(
        ops.map((o) => o.index),
        ops.map((_, i) => i),
      );
      return ops.map((o) => `${o.op}@${o.gpa.toString(16)}`);
    };
    const ext = (page: number): string[] =>
      Array.from(
        { length: 16 },
        (_, i) => `MR.EXTEND@${(0xffffe000 + page * 4096 + i * 256).toString(16)}`,
      );
    assert.deepEqual(seq(false), ['PAGE.ADD@ffffe000', ...ext(0), 'PAGE.ADD@fffff000', ...ext(1)]);
    assert.deepEqual(seq(true), ['PAGE.ADD@ffffe000', 'PAGE.ADD@fffff000', ...ext(0), ...ext(1)]);
  });

  test('the launcher refuses what the TDX module refuses', () => {
    const l = new MrtdLauncher();
    l.initMemRegion(0x1000n, new Uint8Array(4096), false);
    assert.throws(
      () => l.initMemRegion(0x1000n, new Uint8Array(4096), false),
      (e: unknown) => e instanceof TdxLaunchError && /already mapped/.test(e.message),
    );
    assert.throws(() => l.extendMemory(0x2000n), /no page added there/);
    assert.throws(() => l.initMemRegion(0x2800n, new Uint8Array(4096), false), /not page-aligned/);
    // MR.EXTEND hashes the TD's page as added, not the caller's buffer afterwards.
    const page = patternPage();
    const a = new MrtdLauncher();
    a.initMemRegion(0n, page, false);
    page.fill(0x55);
    a.extendMemory(0n);
    const b = new MrtdLauncher();
    b.initMemRegion(0n, patternPage(), true);
    assert.deepEqual(a.finalize(), b.finalize());
  });
});

/** A T5 image with `patch` applied to its bytes (descriptor offset given). */
function patchedT5(
  patch: (v: DataView, d: number, b: Uint8Array) => void,
  format: 'ovmf' | 'td-shim' = 'ovmf',
) {
  const img = buildTdvfImage(T5_SECTIONS, format);
  patch(new DataView(img.bytes.buffer), img.descriptor, img.bytes);
  return img;
}

function imageWith(sections: readonly SectionSpec[]) {
  return buildTdvfImage(sections);
}

describe('malformed TDVF images: FirmwareImageError with the offset of the bad field', () => {
  const sec = (d: number, i: number): number => d + 16 + 32 * i;
  const cases: readonly (readonly [
    string,
    () => { bytes: Uint8Array; descriptor: number },
    RegExp,
    (d: number, size: number) => number,
  ])[] = [
    [
      'signature',
      () => patchedT5((_v, d, b) => (b[d] = 0x58)),
      /TDVF metadata at 0x[0-9a-f]+: signature "XDVF", expected "TDVF"/,
      (d) => d,
    ],
    [
      'version',
      () => patchedT5((v, d) => v.setUint32(d + 8, 2, true)),
      /version 2, expected 1/,
      (d) => d + 8,
    ],
    [
      'one section',
      () => imageWith([T5_SECTIONS[0]!]),
      /1 section, at least 2 expected .*Invalid number of fw entries/,
      (d) => d + 12,
    ],
    [
      'length mismatch',
      () => patchedT5((v, d) => v.setUint32(d + 4, 16 + 32 * 2, true)),
      /length 0x50 does not match 3 sections \(expected 0x70/,
      (d) => d + 4,
    ],
    [
      'length past the end',
      () => patchedT5((v, d) => v.setUint32(d + 4, 0x100000, true)),
      /length 1048576 runs past the end/,
      (d) => d + 4,
    ],
    [
      'unknown type',
      () => patchedT5((v, d) => v.setUint32(sec(d, 1) + 24, 9, true)),
      /TDVF section 1 \(type 9\): unknown type 9/,
      (d) => sec(d, 1) + 24,
    ],
    [
      'unaligned GPA',
      () => patchedT5((v, d) => v.setBigUint64(sec(d, 1) + 8, 0x800010n, true)),
      /section 1 \(TEMP_MEM\): MemoryAddress 0x800010 not page aligned/,
      (d) => sec(d, 1) + 8,
    ],
    [
      'unaligned size',
      () => patchedT5((v, d) => v.setBigUint64(sec(d, 1) + 16, 0x1800n, true)),
      /MemoryDataSize 0x1800 not page aligned/,
      (d) => sec(d, 1) + 16,
    ],
    [
      'raw larger than memory',
      () => patchedT5((v, d) => v.setBigUint64(sec(d, 0) + 16, 0n, true)),
      /section 0 \(BFV\): RawDataSize 0x1000 is larger than MemoryDataSize 0x0/,
      (d) => sec(d, 0) + 16,
    ],
    [
      'BFV without raw data',
      () => patchedT5((v, d) => v.setUint32(sec(d, 0) + 4, 0, true)),
      /section 0 \(BFV\): RawDataSize is 0/,
      (d) => sec(d, 0) + 4,
    ],
    [
      'TEMP_MEM with raw data',
      () => patchedT5((v, d) => v.setUint32(sec(d, 1) + 4, 0x1000, true)),
      /section 1 \(TEMP_MEM\): RawDataSize 0x1000, expected 0/,
      (d) => sec(d, 1) + 4,
    ],
    [
      'raw data past the end of the image',
      () => patchedT5((v, d) => v.setUint32(sec(d, 0), 0x100000, true)),
      /DataOffset 0x100000 \+ RawDataSize 0x1000 runs past the end/,
      (d) => sec(d, 0),
    ],
    [
      'GPA range past 2^52',
      () => patchedT5((v, d) => v.setBigUint64(sec(d, 1) + 8, 1n << 52n, true)),
      /runs past 2\^52/,
      (d) => sec(d, 1) + 8,
    ],
    [
      'MR.EXTEND with PAGE.AUG',
      () => patchedT5((v, d) => v.setUint32(sec(d, 2) + 28, 3, true)),
      /section 2 \(PERM_MEM\): attributes 0x3: MR.EXTEND with PAGE.AUG/,
      (d) => sec(d, 2) + 28,
    ],
    [
      'a measured TD_HOB',
      () =>
        patchedT5((v, d) => {
          v.setUint32(sec(d, 1) + 24, TDVF_SECTION.TD_HOB, true);
          v.setUint32(sec(d, 1) + 28, 1, true);
        }),
      /section 1 \(TD_HOB\): attributes 0x1: a measured TD_HOB/,
      (d) => sec(d, 1) + 28,
    ],
    [
      'overlapping sections',
      () => patchedT5((v, d) => v.setBigUint64(sec(d, 2) + 8, 0x801000n, true)),
      /section 2 \(PERM_MEM\): GPA 0x801000..0x802000 overlaps TDVF section 1 \(TEMP_MEM\) at 0x800000..0x802000/,
      (d) => sec(d, 2) + 8,
    ],
    [
      'no TDX entry in the footer table',
      () =>
        patchedT5((_v, _d, b) => {
          b[b.length - 0x20 - 18 - 22 + 6] ^= 0xff;
        }),
      /no TDX metadata \(GUID e47a6535-.*\) in the OVMF footer table/,
      (_d, size) => size - 0x20 - 18,
    ],
    [
      'OVMF offset outside the image',
      () => patchedT5((v, _d, b) => v.setUint32(b.length - 0x20 - 18 - 22, 0x100000, true)),
      /offset from the end 0x100000 puts the 16-byte TDVF descriptor outside/,
      (_d, size) => size - 0x20 - 18 - 22,
    ],
    [
      'td-shim pointer outside the image',
      () => patchedT5((v, _d, b) => v.setUint32(b.length - 0x20, 0x100000, true), 'td-shim'),
      /neither an OVMF footer table .* nor a td-shim TDX metadata pointer: the u32 at end - 0x20 is 0x100000/,
      (_d, size) => size - 0x20,
    ],
    [
      'td-shim without the TDX metadata GUID',
      () => patchedT5((_v, d, b) => (b[d - 16] ^= 0xff), 'td-shim'),
      /the 16 bytes before it are .*, not the TDX metadata GUID e9eaf9f3-/,
      (d) => d - 16,
    ],
  ];
  for (const [name, make, message, offset] of cases) {
    test(name, () => {
      const { bytes, descriptor } = make();
      assert.throws(
        () => parseTdvfImage(bytes),
        (e: unknown) =>
          e instanceof FirmwareImageError &&
          message.test(e.message) &&
          e.offset === offset(descriptor, bytes.length),
      );
    });
  }
  test('too small for anything', () => {
    assert.throws(() => parseTdvfImage(new Uint8Array(40)), /too small/);
  });
});

/** Run `gmemlab measure ARGS` in-process: its output lines. */
function measure(args: readonly string[]): string[] {
  const lines: string[] = [];
  const code = measureMain(args, (s) => lines.push(...s.split('\n')));
  assert.equal(code, 0);
  return lines;
}

describe('gmemlab measure tdx (in-process)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-tdx-'));
  const t5 = join(dir, 't5.fd');
  const shim = join(dir, 't5-shim.bin');
  const two = join(dir, 'two.fd');
  const bad = join(dir, 'bad.fd');
  writeFileSync(t5, buildTdvfImage(T5_SECTIONS).bytes);
  writeFileSync(shim, buildTdvfImage(T5_SECTIONS, 'td-shim').bytes);
  writeFileSync(two, buildTdvfImage(TWO_PAGE_SECTIONS).bytes);
  const badImg = patchedT5((v, d) => v.setUint32(d + 8, 7, true));
  writeFileSync(bad, badImg.bytes);
  test.after(() => rmSync(dir, { recursive: true, force: true }));

  test('T5: the MRTD as the only line, from either image format', () => {
    assert.deepEqual(measure(['tdx', '--ovmf', t5]), [T5_MRTD]);
    assert.deepEqual(measure(['tdx', '--ovmf', shim]), [T5_MRTD]);
    assert.deepEqual(measure(['tdx', '--ovmf', t5, '--output-format', 'base64']), [
      Buffer.from(T5_MRTD, 'hex').toString('base64'),
    ]);
  });

  test('--two-pass changes the MRTD of a section with several measured pages', () => {
    assert.equal(measure(['tdx', '--ovmf', two]).at(-1), T3_MRTD);
    assert.equal(measure(['tdx', '--ovmf', two, '--two-pass']).at(-1), T4_MRTD);
  });

  test('--trace: every PAGE.ADD and MR.EXTEND with its section and source offset', () => {
    const lines = measure(['tdx', '--ovmf', two, '--trace']);
    assert.equal(lines.length, 1 + 2 + 32 + 1);
    assert.match(lines[0]!, /^# +step op +gpa +section +measured bytes at$/);
    assert.match(lines[1]!, /^ +1 PAGE\.ADD +0x0000ffffe000 0 BFV$/);
    assert.match(lines[2]!, /^ +2 MR\.EXTEND 0x0000ffffe000 0 BFV +0x0$/);
    assert.match(lines[3]!, /^ +3 MR\.EXTEND 0x0000ffffe100 0 BFV +0x100$/);
    assert.match(lines[18]!, /^ +18 PAGE\.ADD +0x0000fffff000 0 BFV$/);
    assert.match(lines[19]!, /^ +19 MR\.EXTEND 0x0000fffff000 0 BFV +zeros$/);
    assert.equal(lines.at(-1), T3_MRTD);
  });

  test('--json: one object per operation with --trace, then the summary', () => {
    const [summary, ...rest] = measure(['tdx', '--ovmf', t5, '--json']);
    assert.equal(rest.length, 0);
    const s = JSON.parse(summary!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(s), [
      'platform',
      'firmware',
      'order',
      'sections',
      'pageAdds',
      'mrExtends',
      'engine',
      'format',
      'mrtd',
    ]);
    assert.equal(s['platform'], 'tdx');
    assert.equal(s['order'], 'single-pass');
    assert.equal(s['mrtd'], T5_MRTD);
    assert.equal(s['pageAdds'], 3);
    assert.equal(s['mrExtends'], 16);
    assert.deepEqual((s['firmware'] as Record<string, unknown>)['format'], 'ovmf');
    assert.deepEqual((s['sections'] as Record<string, unknown>[])[2], {
      index: 2,
      type: 'PERM_MEM',
      gpa: '0x900000',
      size: '0x1000',
      dataOffset: '0x0',
      rawSize: '0x0',
      attributes: '0x2',
      action: 'skipped: PAGE.AUG (added after finalize, unmeasured)',
    });
    const t = measure(['tdx', '--ovmf', t5, '--json', '--trace', '--two-pass']).map(
      (l) => JSON.parse(l) as Record<string, unknown>,
    );
    assert.equal(t.length, 19 + 1);
    assert.deepEqual(t[0], { step: 1, op: 'PAGE.ADD', gpa: '0xfffff000', section: 0, type: 'BFV' });
    assert.deepEqual(t[16], {
      step: 17,
      op: 'MR.EXTEND',
      gpa: '0xffffff00',
      section: 0,
      type: 'BFV',
      offset: '0xf00',
    });
    assert.equal(t.at(-1)!['order'], 'two-pass');
  });

  test('a malformed image names FILE:OFFSET', () => {
    assert.throws(
      () => measure(['tdx', '--ovmf', bad]),
      (e: unknown) =>
        e instanceof MeasureInputError &&
        e.message ===
          `${bad}:0x${(badImg.descriptor + 8).toString(16)}: TDVF metadata at ` +
            `0x${badImg.descriptor.toString(16)}: version 7, expected 1` &&
        e.offset === badImg.descriptor + 8 &&
        e.file === bad,
    );
    assert.throws(
      () => measure(['tdx', '--ovmf', join(dir, 'missing.fd')]),
      (e: unknown) => e instanceof MeasureInputError && /cannot open: ENOENT/.test(e.message),
    );
  });

  const usage: readonly (readonly [readonly string[], RegExp])[] = [
    [['tdx'], /--ovmf FILE is required/],
    [
      ['tdx', '--ovmf', t5, '--vcpus', '1'],
      /--vcpus is an option of measure snp, not of measure tdx/,
    ],
    [['tdx', '--ovmf', t5, '--output-format', 'raw'], /hex or base64/],
    [['tdx', '--ovmf', t5, 'extra'], /unexpected argument "extra"/],
    [['tdx', '--ovmf', t5, '--bogus'], /unknown option --bogus/],
    [['snp', '--ovmf', t5, '--two-pass'], /--two-pass goes with gmemlab measure tdx/],
    [['sgx'], /unknown platform "sgx" \(gmemlab measure knows snp and tdx\)/],
  ];
  for (const [args, message] of usage) {
    test(`usage: ${args.join(' ').replace(dir, 'DIR')}`, () => {
      assert.throws(
        () => measure(args),
        (e: unknown) => e instanceof UsageError && message.test(e.message),
      );
    });
  }

  test('--help: measure tdx has its own', () => {
    assert.match(measure(['tdx', '--help']).join('\n'), /^usage: gmemlab measure tdx --ovmf FILE/);
    assert.match(measure(['--help']).join('\n'), /gmemlab measure tdx --help/);
  });
});
