/**
 * ModelTdxLauncher (src/vmm/tdx/model_launcher.ts, the engine of `gmemlab measure tdx`): the TD
 * build QEMU performs, run on the model's linux-6.18-tdx KVM, gives the same MRTD as the direct
 * MRTD accumulation (MrtdLauncher) for every vector image, in both image formats, with the
 * existing invariants holding after each KVM call; the trace of PAGE.ADD/MR.EXTEND is the same;
 * the two-pass order (no 6.18 ioctl) and a GPA added twice are refused.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { toHex } from '../../src/core/base/crypto/hex.js';
import { InvariantChecker } from '../../src/core/invariants/index.js';
import { parseTdvfImage } from '../../src/vmm/tdx/tdvf.js';
import { buildTdxLaunchPlan, type TdxLaunchPlan } from '../../src/vmm/tdx/launch_plan.js';
import {
  MrtdLauncher,
  runTdxLaunchPlan,
  TdxLaunchError,
  type TdxMeasureOp,
} from '../../src/vmm/tdx/measure.js';
import { ModelTdxLauncher, tdxModelSlots } from '../../src/vmm/tdx/model_launcher.js';
import {
  buildTdvfImage,
  MIXED_MRTD,
  MIXED_SECTIONS,
  T3_MRTD,
  T5_MRTD,
  T5_SECTIONS,
  TWO_PAGE_SECTIONS,
  type SectionSpec,
} from './tdvf_images.js';

function planOf(sections: readonly SectionSpec[], format: 'ovmf' | 'td-shim'): TdxLaunchPlan {
  return buildTdxLaunchPlan(parseTdvfImage(buildTdvfImage(sections, format).bytes));
}

describe('ModelTdxLauncher', () => {
  for (const [name, sections, want] of [
    ['T5', T5_SECTIONS, T5_MRTD],
    ['T3', TWO_PAGE_SECTIONS, T3_MRTD],
    ['mixed sections', MIXED_SECTIONS, MIXED_MRTD],
  ] as const)
    for (const format of ['ovmf', 'td-shim'] as const)
      test(`${name} (${format}): the model's MRTD equals the direct one; invariants hold`, () => {
        const plan = planOf(sections, format);
        const direct: TdxMeasureOp[] = [];
        const d = toHex(runTdxLaunchPlan(plan, new MrtdLauncher({ trace: (o) => direct.push(o) })));
        assert.equal(d, want);
        const model: TdxMeasureOp[] = [];
        let checker: InvariantChecker | undefined;
        const l = new ModelTdxLauncher(plan, {
          trace: (o) => model.push(o),
          afterCall: (h, what) => {
            checker ??= new InvariantChecker(h, undefined, { incremental: false });
            assert.deepEqual(checker.check(), [], `invariants after ${what}`);
          },
        });
        assert.equal(toHex(runTdxLaunchPlan(plan, l)), want);
        assert.deepEqual(model, direct);
        assert.deepEqual(l.host.platform.tdx!.module.checkConsistency(), []);
      });

  test('memslots: RAM from 0 (at least 128 MiB) and the firmware region up to 4 GiB', () => {
    assert.deepEqual(tdxModelSlots(planOf(T5_SECTIONS, 'ovmf')), [
      { gpa: 0n, size: 128n << 20n },
      { gpa: 0xfffff000n, size: 0x1000n },
    ]);
  });

  test('two pass and a GPA added twice are refused with TdxLaunchError', () => {
    const plan = buildTdxLaunchPlan(parseTdvfImage(buildTdvfImage(T5_SECTIONS).bytes), {
      twoPass: true,
    });
    assert.throws(
      () => runTdxLaunchPlan(plan, new ModelTdxLauncher(plan)),
      (e: unknown) => e instanceof TdxLaunchError && /KVM_TDX_EXTEND_MEMORY/.test(e.message),
    );
    const p1 = planOf(T5_SECTIONS, 'ovmf');
    const l = new ModelTdxLauncher(p1);
    l.initMemRegion(0x800000n, new Uint8Array(4096), false);
    l.initMemRegion(0x900000n, new Uint8Array(4096), true);
    l.initMemRegion(0x800000n, new Uint8Array(4096), false);
    assert.throws(
      () => l.finalize(),
      (e: unknown) =>
        e instanceof TdxLaunchError &&
        /KVM_TDX_INIT_MEM_REGION of 1 page\(s\) at 0x800000: EEXIST/.test(e.message),
    );
  });
});
