/**
 * `gmemlab measure tdx` end to end: a spawned `node dist/src/cli/main.js measure tdx` on a 2 MiB
 * synthetic TDVF (OVMF layout) image, process start included (target < 0.2 s on these machines,
 * as for `measure snp`).
 *
 * The image (untimed, in a temporary folder), laid out like edk2's IntelTdx OVMF: a deterministic
 * filler (byte i = (31 i + (i >> 12)) & 0xff) with, at its end, the TDVF metadata and an OVMF
 * footer GUID table pointing at it. Sections: CFV = the first 128 KiB at 0xFFE00000 (unmeasured),
 * BFV = the rest at 0xFFE20000 (MR.EXTEND: 480 pages, 7680 MR.EXTENDs), TEMP_MEM 0x800000 (9
 * pages), TD_HOB 0x809000 (2 pages), TEMP_MEM 0x80B000 (5 pages): 528 PAGE.ADDs in all, about
 * 3.0 MB hashed.
 *
 * Reported: the spawned command's wall time, best of 10 (the target) and median, checked against
 * the MRTD td-shim's `td_shim_tee_info_hash.py` (commit 125eeab) gives for the same image; a bare
 * `node -e 0` in the same run (best of 5); single and two pass in-process, warm (best of 5); with GMEMLAB_TD_SHIM_PY=FILE (that script), its time
 * on the same image (best of 10), for comparison.
 */
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { measureMain } from '../src/cli/measure.js';
import { guidBytes } from '../src/vmm/firmware/guid.js';
import { OVMF_TABLE_FOOTER_GUID } from '../src/vmm/firmware/guid_table.js';
import { TDX_METADATA_GUID, TDX_METADATA_OFFSET_GUID } from '../src/vmm/tdx/tdvf.js';
import { atMost, row, type BenchRow } from './util.js';
import { bestOf, spawnBest } from './spawn.js';

const DIST = resolve(fileURLToPath(import.meta.url), '..', '..');
const CLI = join(DIST, 'src', 'cli', 'main.js');
const SIZE = 2 << 20;
const CFV = 0x20000;
/** td_shim_tee_info_hash.py (td-shim 125eeab) on the same image. */
const EXPECTED =
  'e012cb507094cc81a318f2dcd3420a87254a19bf88cca1a4beb2deeaea04519b44a80b388d0e7141b989d49d16dd08e9';

/** The 2 MiB image: filler, TDVF metadata 0x1000 below the end, the footer table at the end. */
export function synthTdvf(): Uint8Array {
  const img = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) img[i] = (i * 31 + (i >> 12)) & 0xff;
  const v = new DataView(img.buffer);
  const sections: readonly (readonly [number, number, bigint, number, number, number])[] = [
    // dataOffset, rawSize, gpa, memSize, type, attributes
    [0, CFV, 0xffe00000n, CFV, 1, 0],
    [CFV, SIZE - CFV, 0xffe20000n, SIZE - CFV, 0, 1],
    [0, 0, 0x800000n, 0x9000, 3, 0],
    [0, 0, 0x809000n, 0x2000, 2, 0],
    [0, 0, 0x80b000n, 0x5000, 3, 0],
  ];
  const guidAt = SIZE - 0x1000;
  const d = guidAt + 16;
  img.fill(0, guidAt, guidAt + 32 + 32 * sections.length);
  img.set(guidBytes(TDX_METADATA_GUID), guidAt);
  img.set([0x54, 0x44, 0x56, 0x46], d);
  v.setUint32(d + 4, 16 + 32 * sections.length, true);
  v.setUint32(d + 8, 1, true);
  v.setUint32(d + 12, sections.length, true);
  sections.forEach(([off, raw, gpa, mem, type, attr], i) => {
    const o = d + 16 + 32 * i;
    v.setUint32(o, off, true);
    v.setUint32(o + 4, raw, true);
    v.setBigUint64(o + 8, gpa, true);
    v.setBigUint64(o + 16, BigInt(mem), true);
    v.setUint32(o + 24, type, true);
    v.setUint32(o + 28, attr, true);
  });
  const footer = SIZE - 0x20 - 18;
  const entry = footer - 22;
  v.setUint32(entry, SIZE - d, true);
  v.setUint16(entry + 4, 22, true);
  img.set(guidBytes(TDX_METADATA_OFFSET_GUID), entry + 6);
  v.setUint16(footer, 18 + 22, true);
  img.set(guidBytes(OVMF_TABLE_FOOTER_GUID), footer + 2);
  return img;
}

export function benchMeasureTdx(): BenchRow[] {
  const dir = mkdtempSync(join(tmpdir(), 'gmemlab-measure-tdx-'));
  try {
    const file = join(dir, 'OVMF-TDX-2MiB.fd');
    writeFileSync(file, synthTdvf());
    const node = spawnBest(process.execPath, ['-e', '0'], 5);
    const cli = spawnBest(process.execPath, [CLI, 'measure', 'tdx', '--ovmf', file], 10);
    const ok = cli.out === EXPECTED;
    const single = bestOf(5, () => measureMain(['tdx', '--ovmf', file], () => undefined));
    const two = bestOf(5, () =>
      measureMain(['tdx', '--ovmf', file, '--two-pass'], () => undefined),
    );
    const rows = [
      row(
        'measure-tdx',
        'gmemlab measure tdx, 2 MiB TDVF image, spawned (best of 10)',
        cli.best,
        's',
        atMost(0.2, 's'),
        `node dist/src/cli/main.js measure tdx --ovmf <2 MiB image>: wall time from spawn to ` +
          `exit; median ${cli.median.toFixed(3)} s; MRTD ${ok ? 'matches' : 'DIFFERS from'} td-shim's Python tool's`,
      ),
      row(
        'measure-tdx',
        'bare node -e 0 (best of 5)',
        node.best,
        's',
        undefined,
        'process start alone, in the same run (compare as a ratio on a loaded machine)',
      ),
      row(
        'measure-tdx',
        'measure tdx in-process, warm (best of 5)',
        single,
        's',
        undefined,
        'read the image, parse, plan, the TD built on the model (linux-6.18-tdx): 528 PAGE.ADDs and 7680 MR.EXTENDs through KVM_TDX_INIT_MEM_REGION',
      ),
      row(
        'measure-tdx',
        'measure tdx --two-pass in-process, warm (best of 5)',
        two,
        's',
        undefined,
        'the direct MRTD engine (6.18 KVM has no separate MR.EXTEND)',
      ),
    ];
    if (cli.cpu !== undefined && node.cpu !== undefined) {
      rows.push(
        row(
          'measure-tdx',
          'gmemlab measure tdx, spawned: CPU time per run (mean of 10)',
          cli.cpu,
          's',
          undefined,
          `user + system of the child (/proc/self/stat cutime + cstime), less sensitive to load ` +
            `than wall time; bare node -e 0: ${node.cpu.toFixed(3)} s`,
        ),
      );
    }
    if (!ok) rows.push(row('measure-tdx', 'MRTD matches td-shim', 0, 'bool', atMost(0)));
    const py = process.env['GMEMLAB_TD_SHIM_PY'];
    if (py !== undefined && existsSync(py)) {
      const r = spawnBest('python3', [py, '-i', file, '-l', 'off'], 10);
      rows.push(
        row(
          'measure-tdx',
          "td-shim's td_shim_tee_info_hash.py on the same image (best of 10)",
          r.best,
          's',
          undefined,
          `median ${r.median.toFixed(3)} s; CPU ${r.cpu?.toFixed(3) ?? '?'} s per run; ` +
            `MRTD ${r.out === EXPECTED ? 'as expected' : 'DIFFERS'}`,
        ),
      );
    }
    return rows;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
