/**
 * Summarise a V8 .cpuprofile (node --cpu-prof): self time per function, mapped back to the
 * TypeScript source through the compiler's .js.map files (tsconfig has sourceMap: true).
 *
 * Usage: node dist/bench/cpuprof.js FILE.cpuprofile [TOP]
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

type CallFrame = { functionName: string; url: string; lineNumber: number; columnNumber: number };
type ProfileNode = {
  id: number;
  callFrame: CallFrame;
  /** Samples per source line (1-based, generated code) where V8 recorded them. */
  positionTicks?: Array<{ line: number; ticks: number }>;
};
type CpuProfile = {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
};

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decoded source map: per generated line, segments [genCol, srcIdx, srcLine, srcCol]. */
type Decoded = { sources: string[]; lines: number[][][] };

function decodeMappings(mappings: string): number[][][] {
  const lines: number[][][] = [];
  let srcIdx = 0;
  let srcLine = 0;
  let srcCol = 0;
  let nameIdx = 0;
  for (const l of mappings.split(';')) {
    const segs: number[][] = [];
    let genCol = 0;
    if (l.length > 0) {
      for (const s of l.split(',')) {
        const vals: number[] = [];
        let shift = 0;
        let v = 0;
        for (const ch of s) {
          const d = B64.indexOf(ch);
          v += (d & 31) << shift;
          if (d & 32) shift += 5;
          else {
            vals.push(v & 1 ? -(v >>> 1) : v >>> 1);
            v = 0;
            shift = 0;
          }
        }
        genCol += vals[0] ?? 0;
        if (vals.length >= 4) {
          srcIdx += vals[1]!;
          srcLine += vals[2]!;
          srcCol += vals[3]!;
          if (vals.length >= 5) nameIdx += vals[4]!;
          segs.push([genCol, srcIdx, srcLine, srcCol]);
        }
      }
    }
    lines.push(segs);
  }
  void nameIdx;
  return lines;
}

const mapCache = new Map<string, Decoded | null>();

function loadMap(jsPath: string): Decoded | null {
  if (mapCache.has(jsPath)) return mapCache.get(jsPath)!;
  let d: Decoded | null = null;
  const mp = jsPath + '.map';
  if (existsSync(mp)) {
    const m = JSON.parse(readFileSync(mp, 'utf8')) as { sources: string[]; mappings: string };
    d = {
      sources: m.sources.map((s) => resolve(dirname(jsPath), s)),
      lines: decodeMappings(m.mappings),
    };
  }
  mapCache.set(jsPath, d);
  return d;
}

/** "src/core/arch/x86/mmu.ts:131" for a call frame, or the generated location when unmapped. */
export function locate(cf: CallFrame, root = process.cwd()): string {
  if (!cf.url.startsWith('file://')) return cf.url === '' ? '(native)' : cf.url;
  const js = fileURLToPath(cf.url);
  const m = loadMap(js);
  if (m !== null) {
    const segs = m.lines[cf.lineNumber] ?? [];
    let best: number[] | undefined;
    for (const s of segs) if (s[0]! <= cf.columnNumber) best = s;
    best ??= segs[0];
    if (best !== undefined) return `${relative(root, m.sources[best[1]!]!)}:${best[2]! + 1}`;
  }
  return `${relative(root, js)}:${cf.lineNumber + 1}`;
}

/** Does the generated line of cf have a source mapping? */
function lineIsMapped(cf: CallFrame): boolean {
  if (!cf.url.startsWith('file://')) return false;
  const m = loadMap(fileURLToPath(cf.url));
  return m !== null && (m.lines[cf.lineNumber]?.length ?? 0) > 0;
}

export type SelfTime = { fn: string; where: string; ms: number; pct: number };

export function topSelfTime(file: string, top = 25): SelfTime[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const cf = byId.get(p.samples[i]!)!.callFrame;
    const fn = cf.functionName === '' ? '(anonymous)' : cf.functionName;
    const where = locate(cf);
    const key = `${fn}@${where}`;
    const d = p.timeDeltas[i] ?? 0;
    total += d;
    const e = self.get(key);
    if (e === undefined) self.set(key, { fn, where, us: d });
    else e.us += d;
  }
  return [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, ms: e.us / 1000, pct: (100 * e.us) / total }));
}

/**
 * Hottest source lines: V8's per-line sample counts (`positionTicks`, recorded for part of the
 * samples), mapped to src/ lines, with the enclosing function. Percent of the line-attributed ticks.
 */
export function topLines(file: string, top = 20): SelfTime[] {
  const p = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const acc = new Map<string, { fn: string; where: string; ticks: number }>();
  let total = 0;
  for (const n of p.nodes) {
    for (const pt of n.positionTicks ?? []) {
      const cf = { ...n.callFrame, lineNumber: pt.line - 1, columnNumber: 0 };
      // Ticks of code inlined from another script carry that script's line numbers: they
      // cannot be placed, so they are pooled per function.
      const mapped = lineIsMapped(cf);
      const where = mapped ? locate(cf) : `${locate(n.callFrame)} (inlined callee, line unknown)`;
      const fn = n.callFrame.functionName === '' ? '(anonymous)' : n.callFrame.functionName;
      const e = acc.get(where);
      if (e === undefined) acc.set(where, { fn, where, ticks: pt.ticks });
      else e.ticks += pt.ticks;
      total += pt.ticks;
    }
  }
  return [...acc.values()]
    .sort((a, b) => b.ticks - a.ticks)
    .slice(0, top)
    .map((e) => ({ fn: e.fn, where: e.where, ms: NaN, pct: (100 * e.ticks) / total }));
}

export function formatTop(rows: readonly SelfTime[]): string {
  return rows
    .map(
      (r) =>
        `${r.pct.toFixed(1).padStart(5)}%  ${Number.isNaN(r.ms) ? '' : r.ms.toFixed(0).padStart(7) + ' ms  '}${r.fn}  ${r.where}`,
    )
    .join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) {
  const f = process.argv[2];
  if (f === undefined) {
    console.error('usage: node dist/bench/cpuprof.js FILE.cpuprofile [TOP]');
    process.exit(2);
  }
  console.log(formatTop(topSelfTime(f, Number(process.argv[3] ?? 25))));
  console.log('\n# hottest lines (share of line-attributed samples)');
  console.log(formatTop(topLines(f, Number(process.argv[3] ?? 25))));
}
