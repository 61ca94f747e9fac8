/**
 * `gmemlab compare`'s output: the text tables, the JSON document (the same data) and the SVG
 * chart of host memory over the workload's steps. Pure (strings in, strings out).
 */
import type { MemorySample } from './adapter.js';
import type { CompareRun, StepOutcome } from './run.js';
import type { ActionStep, Workload } from './workload.js';

const PAGE = 4096;

/** Pages as a short size: 0, 12 KiB, 1.5 MiB, 1.0 GiB. */
export function size(pages: number): string {
  const b = pages * PAGE;
  if (b === 0) return '0';
  if (b < 1 << 20) return `${b / 1024} KiB`;
  if (b < 1 << 30) return `${trim(b / (1 << 20))} MiB`;
  return `${trim(b / (1 << 30))} GiB`;
}
const trim = (x: number): string => (Number.isInteger(x) ? String(x) : x.toFixed(1));

function describeAction(s: ActionStep): string {
  const a = s.action;
  const hex = (v: bigint): string => '0x' + v.toString(16);
  switch (a.kind) {
    case 'boot':
      return `boot ${size(Number(a.private) / PAGE)} private${a.shared > 0n ? ` + ${size(Number(a.shared) / PAGE)} shared` : ''}`;
    case 'teardown':
    case 'gup_release':
      return a.kind;
    default:
      return `${a.kind} ${hex(a.at)}${'size' in a ? `+${size(Number(a.size) / PAGE)}` : 'len' in a ? ` len ${a.len}` : ` ${a.hex}`}`;
  }
}

/** The steps a table shows: accesses, asserted steps, and any step that was not plainly ok. */
function shownSteps(runs: readonly CompareRun[]): ActionStep[] {
  const ACCESS = /^(host_|dma_|gup$|guest_)/;
  const ids = new Map<number, ActionStep>();
  for (const r of runs)
    for (const s of r.steps) {
      const plain = s.outcomes.size === 1 && (s.outcomes.has('ok') || s.outcomes.has('n/a'));
      if (ACCESS.test(s.step.action.kind) || s.step.expect.size > 0 || !plain || r.na !== undefined)
        if (r.na === undefined || ACCESS.test(s.step.action.kind) || s.step.expect.size > 0)
          ids.set(s.step.id, s.step);
    }
  return [...ids.values()].sort((a, b) => a.id - b.id);
}

function cell(o: StepOutcome | undefined): string {
  if (o === undefined) return '-';
  const parts = [...o.outcomes.entries()].map(([k, n]) =>
    o.outcomes.size > 1 || n > 1 ? `${k}×${n}` : k,
  );
  const mark = o.expected === undefined ? '' : o.mismatches === 0 ? ' ✓' : ' ✗';
  return parts.join(' ') + mark;
}

function pad(rows: string[][]): string[] {
  const w: number[] = [];
  for (const r of rows) r.forEach((c, i) => (w[i] = Math.max(w[i] ?? 0, [...c].length)));
  return rows.map((r) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(w[i]! - [...c].length)))
      .join('  ')
      .trimEnd(),
  );
}

const both = (m: MemorySample): number => m.private + m.shared;

function exitsText(e: Record<string, number>): string {
  const k = Object.keys(e).sort();
  return k.length === 0 ? '0' : k.map((x) => `${x} ${e[x]}`).join(', ');
}

/** The text report of one workload. */
export function formatText(w: Workload, runs: readonly CompareRun[], quiet = false): string[] {
  const out: string[] = [];
  if (!quiet) {
    out.push(`Workload: ${w.name}`, `  ${w.file}`);
    if (w.description !== undefined)
      for (const d of w.description.trim().split('\n')) out.push(`  ${d}`);
    out.push('');
    out.push(
      'Host memory, peak / end before teardown (private = guest-only frames, shared = host-mappable frames)',
    );
    const rows: string[][] = [
      [
        'design',
        'policy',
        'private',
        'shared',
        'both',
        'double-allocated',
        'pinned',
        'GUP refs',
        'pt pages*',
        'exits',
        'zaps (pages)',
        'TLB flushes',
        'violations',
      ],
    ];
    for (const r of runs) {
      if (r.na !== undefined) {
        rows.push([r.design, r.policy, `n/a: ${r.na}`]);
        continue;
      }
      const pf = (f: (m: MemorySample) => number): string =>
        `${size(f(r.peak))} / ${size(f(r.final))}`;
      rows.push([
        r.design,
        r.policy,
        pf((m) => m.private),
        pf((m) => m.shared),
        `${size(r.peakTotal)} / ${size(both(r.final))}`,
        pf((m) => m.double),
        pf((m) => m.pinned),
        pf((m) => m.referenced),
        `${r.peak.ptPages} / ${r.final.ptPages}`,
        exitsText(r.exits),
        `${r.zaps.events} (${r.zaps.pages})`,
        String(r.tlbFlushes),
        String(r.violationCount),
      ]);
    }
    out.push(...pad(rows).map((l) => `  ${l}`));
    for (const r of runs) {
      const a = r.afterTeardown;
      if (a !== undefined && both(a) + a.pinned + a.referenced > 0)
        out.push(
          `  ${r.design}/${r.policy}: after teardown ${size(both(a))} still allocated, ${size(a.pinned)} pinned, ${size(a.referenced)} referenced`,
        );
    }
    out.push(
      '  * page-table pages derived from the stage-2 leaves (the model keeps leaves only); exits: VM exits to the VMM, not counting the HLT that ends each guest program; zaps, TLB flushes: before teardown',
    );
    out.push('');
  }
  const shown = shownSteps(runs);
  if (shown.length > 0) {
    out.push(
      'Outcomes (ok = allowed; errno / SIGBUS / SIGSEGV = refused; violation:INVARIANT = an invariant broke; ✓/✗ = as asserted or not)',
    );
    // One row per run, one column per step (the steps are listed below the table).
    const rows: string[][] = [['design', 'policy', ...shown.map((s) => `#${s.id}`)]];
    for (const r of runs) {
      const by = new Map(r.steps.map((s) => [s.step.id, s]));
      rows.push([r.design, r.policy, ...shown.map((s) => cell(by.get(s.id)))]);
    }
    out.push(...pad(rows).map((l) => `  ${l}`));
    for (const s of shown) {
      out.push(
        `  #${s.id} (line ${s.line}) ${describeAction(s)}${s.say !== undefined ? ` — ${s.say}` : ''}`,
      );
      if (quiet) continue;
      // What decided the outcome (the op, a value read, an n/a reason), with the runs it holds for.
      const by = new Map<string, string[]>();
      for (const r of runs) {
        const o = r.steps.find((x) => x.step.id === s.id);
        // A bare op name says nothing the outcome does not.
        if (o?.detail === undefined || r.na !== undefined || /^\w+$/.test(o.detail)) continue;
        const k = o.detail;
        by.set(k, [...(by.get(k) ?? []), `${r.design}/${r.policy}`]);
      }
      for (const [k, rs] of by) out.push(`      ${k}: ${rs.join(', ')}`);
    }
    out.push('');
  }
  const details: string[] = [];
  for (const r of runs) {
    for (const v of r.violations.slice(0, 5))
      details.push(
        `  ${r.design}/${r.policy}: #${v.stepId} (line ${v.line}) ${v.op}: ${v.invariant}: ${v.object}: ${v.message}`,
      );
    if (r.violationCount > 5)
      details.push(`  ${r.design}/${r.policy}: ... ${r.violationCount - 5} more`);
  }
  if (details.length > 0) out.push('Violations', ...details, '');
  const fails = runs.flatMap((r) => r.failures);
  out.push(
    fails.length === 0
      ? `${w.name}: ${runs.length} runs, every asserted outcome holds`
      : `${w.name}: ${fails.length} asserted outcome(s) did not hold`,
  );
  for (const f of fails) out.push(`  ✗ ${f}`);
  return out;
}

/** At most `n` samples of a series: the maximum of each bucket (peaks stay visible), and the last. */
export function downsample(xs: readonly number[], n: number): Array<[number, number]> {
  if (xs.length <= n) return xs.map((v, i) => [i, v]);
  const out: Array<[number, number]> = [];
  const per = xs.length / n;
  for (let b = 0; b < n; b++) {
    const s = Math.floor(b * per);
    const e = Math.min(xs.length, Math.floor((b + 1) * per));
    let best = s;
    for (let i = s; i < e; i++) if (xs[i]! > xs[best]!) best = i;
    out.push([best, xs[best]!]);
  }
  const last = xs.length - 1;
  if (out[out.length - 1]![0] !== last) out.push([last, xs[last]!]);
  return out;
}

const bytes = (pages: number): number => pages * PAGE;

/** The JSON document: the same data as the tables (memory in bytes) and the chart's series. */
export function toJson(w: Workload, runs: readonly CompareRun[]): Record<string, unknown> {
  const mem = (m: MemorySample): Record<string, number> => ({
    private: bytes(m.private),
    shared: bytes(m.shared),
    both: bytes(both(m)),
    double_allocated: bytes(m.double),
    pinned: bytes(m.pinned),
    gup_referenced: bytes(m.referenced),
    stage2_mapped: bytes(m.mapped),
    page_table_pages: m.ptPages,
  });
  return {
    workload: w.name,
    file: w.file,
    runs: runs.map((r) => ({
      design: r.design,
      profile: r.profile,
      policy: r.policy,
      ...(r.na !== undefined ? { na: r.na } : {}),
      ops: r.ops,
      peak: { ...mem(r.peak), both: bytes(r.peakTotal) },
      final: mem(r.final),
      ...(r.afterTeardown !== undefined ? { after_teardown: mem(r.afterTeardown) } : {}),
      exits: r.exits,
      zaps: r.zaps,
      tlb_flushes: r.tlbFlushes,
      steps: r.steps.map((s) => ({
        step: s.step.id,
        line: s.step.line,
        action: s.step.action.kind,
        outcomes: Object.fromEntries(s.outcomes),
        ...(s.detail !== undefined ? { detail: s.detail } : {}),
        ...(s.expected !== undefined ? { expected: s.expected, holds: s.mismatches === 0 } : {}),
      })),
      violations: r.violations,
      violation_count: r.violationCount,
      failures: r.failures,
      memory_over_steps: downsample(r.series.map(both), 200).map(([i, v]) => ({
        exec: i,
        step: r.seriesSteps[i],
        both: bytes(v),
      })),
    })),
    failures: runs.flatMap((r) => r.failures),
  };
}

const COLORS = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#ff7f0e',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
];
/** Dash patterns by policy (solid first), so that lines drawn on top of each other show. */
const DASHES = ['', '7 4', '2 3', '10 3 2 3', '4 4', '1 5'];
const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * The SVG chart: one panel per design, host memory (private + shared) after every executed
 * workload step, one line per policy (at most 600 points each, bucket maxima).
 */
export function toSvg(w: Workload, runs: readonly CompareRun[]): string {
  const designs = [...new Set(runs.map((r) => r.design))];
  const policies = [...new Set(runs.map((r) => r.policy))];
  const W = 860;
  const H = 240;
  const M = { l: 70, r: 310, t: 30, b: 40 };
  const pw = W - M.l - M.r;
  const ph = H - M.t - M.b;
  const maxY = Math.max(1, ...runs.map((r) => r.peakTotal));
  const maxX = Math.max(1, ...runs.map((r) => r.series.length - 1));
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * designs.length + 30}" font-family="sans-serif" font-size="11">`,
    `<text x="10" y="18" font-size="13">${esc(w.name)}: host memory (private + shared) after each workload step</text>`,
  ];
  designs.forEach((d, di) => {
    const y0 = 30 + di * H;
    const X = (x: number): string => (M.l + (x / maxX) * pw).toFixed(1);
    const Y = (v: number): string => (y0 + M.t + ph - (v / maxY) * ph).toFixed(1);
    parts.push(`<text x="${M.l}" y="${y0 + 20}" font-weight="bold">${esc(d)}</text>`);
    parts.push(
      `<rect x="${M.l}" y="${y0 + M.t}" width="${pw}" height="${ph}" fill="none" stroke="#999"/>`,
    );
    for (const f of [0, 0.5, 1])
      parts.push(
        `<text x="${M.l - 6}" y="${Y(maxY * f)}" text-anchor="end" dy="4">${size(Math.round(maxY * f))}</text>`,
      );
    parts.push(`<text x="${M.l}" y="${y0 + M.t + ph + 16}">1</text>`);
    parts.push(
      `<text x="${M.l + pw / 2}" y="${y0 + M.t + ph + 16}" text-anchor="middle" fill="#555">workload step executed (repeats counted)</text>`,
    );
    parts.push(
      `<text x="${M.l + pw}" y="${y0 + M.t + ph + 16}" text-anchor="end">${maxX + 1}</text>`,
    );
    let li = 0;
    for (const r of runs.filter((x) => x.design === d)) {
      const c = COLORS[policies.indexOf(r.policy) % COLORS.length]!;
      const ly = y0 + M.t + 12 + li * 14;
      li++;
      if (r.na !== undefined) {
        parts.push(`<text x="${M.l + pw + 40}" y="${ly}" fill="#999">${esc(r.policy)}: n/a</text>`);
        continue;
      }
      const pts = downsample(r.series.map(both), 600)
        .map(([i, v]) => `${X(i)},${Y(v)}`)
        .join(' ');
      // Policies often use the same memory: a dash pattern each keeps overlapping lines apart.
      const dash = DASHES[policies.indexOf(r.policy) % DASHES.length]!;
      const da = dash === '' ? '' : ` stroke-dasharray="${dash}"`;
      parts.push(
        `<polyline fill="none" stroke="${c}" stroke-width="1.5"${da} points="${pts}"/>`,
        `<line x1="${M.l + pw + 10}" y1="${ly - 4}" x2="${M.l + pw + 34}" y2="${ly - 4}" stroke="${c}" stroke-width="1.5"${da}/>`,
        `<text x="${M.l + pw + 40}" y="${ly}" fill="${c}">${esc(r.policy)} (peak ${size(r.peakTotal)})</text>`,
      );
    }
  });
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}
