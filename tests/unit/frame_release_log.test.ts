/**
 * FrameStore's release log (base/frames.ts): what the invariant checker uses to tell a host
 * access to a frame that was released later in the same step.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameStore } from '../../src/core/base/frames.js';

describe('FrameStore release log', () => {
  test('without a log every mark is 0 and nothing counts as released', () => {
    const f = new FrameStore();
    const [run] = f.alloc(4);
    f.release(run!.base, 4);
    assert.equal(f.releaseMark, 0);
    assert.equal(f.releasedSince(run!.base, 0), false);
  });

  test('a release after a mark covers exactly its frames; clearing starts again at 0', () => {
    const f = new FrameStore();
    f.logReleases(true);
    const [run] = f.alloc(8);
    const base = run!.base as number;
    f.release(run!.base, 2); // frames base, base + 1
    const mark = f.releaseMark;
    assert.equal(mark, 2);
    f.release((base + 4) as typeof run.base, 3); // base + 4 .. base + 6
    assert.equal(f.releasedSince(base, mark), false, 'released before the mark');
    assert.equal(f.releasedSince(base + 3, mark), false, 'never released');
    for (const p of [base + 4, base + 5, base + 6]) assert.equal(f.releasedSince(p, mark), true);
    assert.equal(f.releasedSince(base + 7, mark), false);
    assert.equal(f.releasedSince(base, 0), true, 'released since the log began');
    f.clearReleaseLog();
    assert.equal(f.releaseMark, 0);
    assert.equal(f.releasedSince(base + 4, 0), false);
    f.logReleases(false);
    f.release((base + 3) as typeof run.base, 1);
    assert.equal(f.releaseMark, 0);
  });
});
