/**
 * `gmemlab inspect [--kernel P] [--at STEP] [--svg FILE] [--json] FILE`: run a trace or scenario
 * on the model up to a step and show the model's state there — a guest-physical memory map per
 * VM (memslots, their shared and private runs with allocated, prepared and mapped pages, stage-2
 * mappings), the guest_memfd files and the VMM's VMAs — as text, as the snapshot's JSON
 * (src/core/inspect.ts), or as an SVG picture.
 */
import { writeFileSync } from 'node:fs';
import { ModelBackend } from '../backends/model.js';
import { ObjectNames } from '../check/names.js';
import {
  snapshot,
  type MemslotSnapshot,
  type Snapshot,
  type SlotRun,
  type VmaSnapshot,
} from '../core/inspect.js';
import { KVM_MEMORY_ATTRIBUTE_PRIVATE } from '../core/base/uapi.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import { sizeText } from '../trace/strace.js';
import { optInt, optString, parseArgs, UsageError } from './args.js';
import { loadOps } from './check.js';
import { resolveProfile } from './backends.js';
import { EXIT_OK, InputError } from './io.js';
import { chooseFormat, FORMAT_OPTIONS, styled, styleFor } from './output.js';

export const INSPECT_HELP = `usage: gmemlab inspect [--kernel PROFILE] [--at STEP] [--svg FILE] [--json] FILE

Run a trace (.jsonl) or scenario (.yaml) on the model and show its state after the last op (or
after op STEP): for each VM (by the file's handle names, the model id in parentheses) and address
space, every memslot as a guest-physical range with its backing, split into shared and private
runs with their allocated, prepared and stage-2 mapped pages; the stage-2 mappings with their
level; the guest_memfd files (with the folio orders of a HugeTLB file and the file's own
attributes where guest_memfd holds them); the VMM's VMAs; the frame totals. Ranges are
[start, end).

  --kernel PROFILE   profile: a name, NAME+host or a file from probe --save (default: the
                     scenario's kernel, else this machine's profile, else linux-6.18)
  --at STEP          the state after op STEP (0: before the first op; default: the last op)
  --svg FILE         also write an SVG picture of the guest-physical map to FILE
  --format F         text (default) or json: the snapshot as one JSON object (page numbers and
                     counts are numbers, byte addresses and sizes "0x..." strings)
  --json, -j         the same as --format json

Exit codes: 0 ok, 2 usage or input error (STEP out of range, FILE unreadable or malformed,
the SVG file cannot be written).`;

const hx = (n: number | bigint): string => '0x' + n.toString(16);
const PAGE = 4096n;
const KVM_MEMORY_ATTRIBUTE_PRIVATE_NUM = Number(KVM_MEMORY_ATTRIBUTE_PRIVATE);

/** `0x80000000-0x80200000 (2 MiB)`: a page range as bytes, end exclusive (as /proc/PID/maps). */
function pageRange(start: number, end: number): string {
  const s = BigInt(start) * PAGE;
  const e = BigInt(end) * PAGE;
  return `${hx(s)}-${hx(e)} (${sizeText(e - s)})`;
}

const plural = (n: number, what: string): string => `${n} ${what}${n === 1 ? '' : 's'}`;

/** `rw-s`: PROT bits and shared/private, as /proc/PID/maps writes them. */
function protText(prot: number, shared: boolean): string {
  return (
    ((prot & 1) !== 0 ? 'r' : '-') +
    ((prot & 2) !== 0 ? 'w' : '-') +
    ((prot & 4) !== 0 ? 'x' : '-') +
    (shared ? 's' : 'p')
  );
}

const MEM_FLAGS: ReadonlyArray<readonly [number, string]> = [
  [1, 'LOG_DIRTY_PAGES'],
  [2, 'READONLY'],
  [4, 'GUEST_MEMFD'],
];

function slotLine(s: MemslotSnapshot, gmemName: (ino: number) => string): string {
  const flags = MEM_FLAGS.filter(([b]) => (s.flags & b) !== 0).map(([, n]) => n);
  let backing = s.gmemOnly ? '' : `shared backing ua=${s.userspaceAddr}`;
  if (s.guestMemfd !== null) {
    const g = s.guestMemfd;
    const file = g.ino === null ? 'guest_memfd (released)' : gmemName(g.ino);
    backing += `${backing === '' ? '' : ' | '}${file}@${hx(g.offset)}`;
    if (s.gmemOnly) backing += ` (guest_memfd only, ua=${s.userspaceAddr})`;
  }
  return (
    `${pageRange(s.baseGfn, s.baseGfn + s.npages)}  slot ${s.id}${s.codePage ? ' (trace code page)' : ''}` +
    `  ${backing}${flags
      .filter((f) => f !== 'GUEST_MEMFD')
      .map((f) => `  ${f}`)
      .join('')}`
  );
}

/** `2 folios of order 18 (1 GiB each)`: a run of folios of one order. */
function folioText(order: number, pages: number): string {
  const n = pages / 2 ** order;
  const size = sizeText(BigInt(2 ** order) * PAGE);
  if (n === 1) return `1 folio of order ${order} (${size})`;
  return Number.isInteger(n)
    ? `${n} folios of order ${order} (${size} each)`
    : `folios of order ${order} (${size} each)`;
}

/** A guest_memfd attribute word: `private`, `shared`, or the bits when others are set. */
function attributeText(a: number): string {
  if (a === 0) return 'shared';
  if (a === KVM_MEMORY_ATTRIBUTE_PRIVATE_NUM) return 'private';
  return hx(a);
}

function runLine(r: SlotRun): string {
  const what = r.private ? 'private' : 'shared ';
  const from = r.backing === 'gmem' ? 'guest_memfd' : r.backing === 'host' ? 'host' : 'no backing';
  const counts =
    r.backing === 'gmem'
      ? `allocated ${r.allocated}, prepared ${r.prepared}, mapped ${r.mapped}`
      : `allocated ${r.allocated}, mapped ${r.mapped}`;
  return `${pageRange(r.start, r.end)}  ${what}  ${from}: ${counts}`;
}

function vmaLine(v: VmaSnapshot, gmemName: (ino: number) => string): string {
  const obj =
    v.kind === 'gmem' && v.ino !== undefined
      ? `${gmemName(v.ino)}@${hx(v.pgoff)}`
      : v.kind === 'shmem'
        ? `shmem #${v.shmem ?? '?'}@${hx(v.pgoff)}`
        : v.kind === 'vcpu'
          ? `vcpu file #${v.ino ?? '?'}@${hx(v.pgoff)}`
          : 'anon';
  const flags = v.flagNames.length === 0 ? '' : `  ${v.flagNames.join('|')}`;
  return `${pageRange(v.start, v.end)}  ${protText(v.prot, v.shared)}  ${obj}${flags}`;
}

/** The guest-physical map as text lines, objects named by the file's handles. */
export function formatMap(snap: Snapshot, names: ObjectNames): string[] {
  const out: string[] = [];
  const gmemName = (ino: number): string => names.rename(`guest_memfd #${ino}`);
  for (const vm of snap.vms) {
    const vcpus =
      vm.vcpus.length === 0
        ? 'no vCPU'
        : `${vm.vcpus.length === 1 ? 'vCPU' : 'vCPUs'} ${vm.vcpus.join(',')}`;
    out.push(
      `${names.rename(`vm${vm.index}`)}: ${vm.typeName}${vm.dead ? ' (destroyed)' : ''}, ${plural(vm.refs, 'reference')}, ${vcpus}` +
        `${vm.preFaultAllowed ? ', pre-fault allowed' : ''}`,
    );
    for (const as of vm.addressSpaces) {
      if (as.memslots.length === 0 && as.stage2.length === 0 && as.id !== 0) continue;
      const mapped = as.stage2.reduce((n, r) => n + (r.end - r.start), 0);
      out.push(
        `  address space ${as.id}: ${plural(as.memslots.length, 'memslot')}, ${plural(mapped, 'page')} mapped at stage 2`,
      );
      for (const s of [...as.memslots].sort((a, b) => a.baseGfn - b.baseGfn)) {
        out.push(`    ${slotLine(s, gmemName)}`);
        for (const r of s.runs) out.push(`      ${runLine(r)}`);
      }
      for (const m of as.stage2)
        out.push(
          `    stage-2 ${pageRange(m.start, m.end)}  ${m.level} ${m.private ? 'private' : 'shared'} ${m.writable ? 'rw' : 'ro'} from ${m.source}`,
        );
    }
  }
  if (snap.vms.length === 0) out.push('no VM');
  out.push('guest_memfd files:');
  if (snap.gmemFiles.length === 0) out.push('  none');
  for (const g of snap.gmemFiles) {
    const c = g.counts;
    const order = g.pageOrder === undefined ? '' : `, page order ${g.pageOrder}`;
    out.push(
      `  ${gmemName(g.ino)}: ${sizeText(BigInt(g.size))}, flags ${g.flags}${order}, ${names.rename(`vm${g.vm}`)}, ${plural(g.fdRefs, 'fd')}, ${plural(g.mappedPages, 'page')} mapped by VMAs; ` +
        `${c.present} present (${c.allocated} allocated, ${c.prepared} prepared, ${c.poisoned} poisoned)` +
        (c.noDirectMap === undefined ? '' : `, ${c.noDirectMap} out of the direct map`),
    );
    for (const b of g.bindings)
      out.push(
        `    index ${hx(b.start)}-${hx(b.end)} bound to slot ${b.slot}${b.as === 0 ? '' : ` (address space ${b.as})`}`,
      );
    for (const p of g.pages)
      out.push(
        `    index ${hx(p.start)}-${hx(p.end)} ${p.state}${p.directMap === false ? ', not in the direct map' : ''}`,
      );
    for (const f of g.folios ?? [])
      out.push(`    index ${hx(f.start)}-${hx(f.end)} ${folioText(f.order, f.end - f.start)}`);
    for (const a of g.attributes ?? [])
      out.push(`    index ${hx(a.start)}-${hx(a.end)} attribute ${attributeText(a.attributes)}`);
  }
  out.push('host VMAs:');
  if (snap.vmas.length === 0) out.push('  none');
  for (const v of snap.vmas) out.push(`  ${vmaLine(v, gmemName)}`);
  const anon = snap.anonPages.reduce((n, r) => n + (r.end - r.start), 0);
  const shmem = snap.shmem.reduce(
    (n, o) => n + o.pages.reduce((m, r) => m + (r.end - r.start), 0),
    0,
  );
  out.push(
    `host pages: ${anon} anonymous, ${shmem} shmem; frames: ${snap.frames.allocated} allocated, ${snap.frames.free} free` +
      (snap.frames.noDirectMap === undefined
        ? ''
        : `, ${snap.frames.noDirectMap} out of the kernel direct map`),
  );
  return out;
}

// ---------------------------------------------------------------------------------------------
// SVG

const esc = (s: string): string =>
  s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Width weight of `pages`: logarithmic, so a 4 KiB slot and an 8 TiB one are both visible. */
const weight = (pages: number): number => 1 + Math.log2(Math.max(1, pages));

const COLOURS = {
  private: '#c0392b',
  shared: '#2e86c1',
  none: '#f5b7b1',
  allocated: '#555555',
  mapped: '#27ae60',
};

/**
 * `, folios of order 0, 18`: the folio orders behind a guest_memfd-backed run of a slot bound to
 * a HugeTLB file (its indices from the binding's offset), empty otherwise.
 */
function runFolios(snap: Snapshot, s: MemslotSnapshot, r: SlotRun): string {
  const g = s.guestMemfd;
  if (r.backing !== 'gmem' || g === null || g.ino === null) return '';
  const folios = snap.gmemFiles.find((f) => f.ino === g.ino)?.folios;
  if (folios === undefined) return '';
  const i0 = g.offset + (r.start - s.baseGfn);
  const i1 = i0 + (r.end - r.start);
  const orders = [
    ...new Set(folios.filter((f) => f.start < i1 && f.end > i0).map((f) => f.order)),
  ].sort((a, b) => a - b);
  return orders.length === 0 ? '' : `, folios of order ${orders.join(', ')}`;
}

/**
 * An SVG picture of the guest-physical map: one band per VM address space, each memslot a box
 * whose width grows with the logarithm of its size (gaps between slots are a fixed break), its
 * runs coloured private or shared, and under each run two marks whose length is the share of its
 * pages that are allocated and mapped at stage 2. Plain SVG 1.1 text.
 */
export function renderSvg(snap: Snapshot, names: ObjectNames, title: string): string {
  const W = 1000;
  const LEFT = 170;
  const RIGHT = 20;
  const BAND = 96;
  const GAP = 14;
  const bands = snap.vms.flatMap((vm) =>
    vm.addressSpaces
      .filter((as) => as.id === 0 || as.memslots.length > 0)
      .map((as) => ({ vm, as })),
  );
  const H = 50 + Math.max(1, bands.length) * BAND + 70;
  const o: string[] = [];
  o.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="monospace" font-size="11">`,
  );
  o.push(`<title>${esc(title)}</title>`);
  o.push(`<rect x="0" y="0" width="${W}" height="${H}" fill="#ffffff"/>`);
  o.push(`<text x="10" y="22" font-size="14">${esc(title)}</text>`);
  if (bands.length === 0) o.push(`<text x="10" y="70">${esc('no VM')}</text>`);
  bands.forEach(({ vm, as }, bi) => {
    const y = 50 + bi * BAND;
    const label = `${names.rename(`vm${vm.index}`)}${vm.dead ? ' (destroyed)' : ''}`;
    o.push(`<text x="10" y="${y + 30}">${esc(label)}</text>`);
    o.push(`<text x="10" y="${y + 44}" fill="#666666">${esc(`address space ${as.id}`)}</text>`);
    const slots = [...as.memslots].sort((a, b) => a.baseGfn - b.baseGfn);
    if (slots.length === 0) {
      o.push(`<text x="${LEFT}" y="${y + 36}" fill="#666666">no memslot</text>`);
      return;
    }
    const breaks = slots.filter(
      (s, i) => i > 0 && slots[i - 1]!.baseGfn + slots[i - 1]!.npages < s.baseGfn,
    ).length;
    const avail = W - LEFT - RIGHT - GAP * breaks - 2 * (slots.length - 1);
    const total = slots.reduce((n, s) => n + weight(s.npages), 0);
    let x = LEFT;
    slots.forEach((s, i) => {
      if (i > 0) {
        const prev = slots[i - 1]!;
        if (prev.baseGfn + prev.npages < s.baseGfn) {
          o.push(
            `<text x="${(x + GAP / 2).toFixed(1)}" y="${y + 36}" text-anchor="middle" fill="#999999">~</text>`,
          );
          x += GAP;
        }
        x += 2;
      }
      const w = (avail * weight(s.npages)) / total;
      // The slot's runs, each as wide as its logarithmic share of the slot.
      const rt = s.runs.reduce((n, r) => n + weight(r.end - r.start), 0);
      let rx = x;
      for (const r of s.runs) {
        const rw = (w * weight(r.end - r.start)) / rt;
        const fill =
          r.backing === 'none' ? COLOURS.none : r.private ? COLOURS.private : COLOURS.shared;
        const tip = `${r.private ? 'private' : 'shared'} ${pageRange(r.start, r.end)}: allocated ${r.allocated}, prepared ${r.prepared}, mapped ${r.mapped}${runFolios(snap, s, r)}`;
        o.push(
          `<rect x="${rx.toFixed(1)}" y="${y + 20}" width="${rw.toFixed(1)}" height="28" fill="${fill}"><title>${esc(tip)}</title></rect>`,
        );
        const len = r.end - r.start;
        const mark = (n: number, dy: number, colour: string): void => {
          if (n === 0) return;
          const mw = Math.max(2, (rw * n) / len);
          o.push(
            `<rect x="${rx.toFixed(1)}" y="${y + dy}" width="${mw.toFixed(1)}" height="4" fill="${colour}"/>`,
          );
        };
        mark(r.allocated, 50, COLOURS.allocated);
        mark(r.mapped, 56, COLOURS.mapped);
        rx += rw;
      }
      o.push(
        `<rect x="${x.toFixed(1)}" y="${y + 20}" width="${w.toFixed(1)}" height="28" fill="none" stroke="#000000"/>`,
      );
      const gpa = hx(BigInt(s.baseGfn) * PAGE);
      o.push(`<text x="${x.toFixed(1)}" y="${y + 16}" fill="#333333">${esc(gpa)}</text>`);
      o.push(
        `<text x="${x.toFixed(1)}" y="${y + 74}">${esc(`slot ${s.id} ${sizeText(BigInt(s.npages) * PAGE)}`)}</text>`,
      );
      x += w;
    });
  });
  const ly = H - 40;
  const legend: Array<[string, string]> = [
    [COLOURS.private, 'private'],
    [COLOURS.shared, 'shared'],
    [COLOURS.none, 'private, guest_memfd gone'],
    [COLOURS.allocated, 'allocated pages'],
    [COLOURS.mapped, 'stage-2 mapped pages'],
  ];
  let lx = 10;
  for (const [c, t] of legend) {
    o.push(`<rect x="${lx}" y="${ly}" width="12" height="12" fill="${c}"/>`);
    o.push(`<text x="${lx + 16}" y="${ly + 10}">${esc(t)}</text>`);
    lx += 24 + t.length * 7;
  }
  o.push(
    `<text x="10" y="${ly + 30}" fill="#666666">${esc('widths grow with log2(pages); ~ marks a gap in guest-physical addresses')}</text>`,
  );
  o.push('</svg>');
  return o.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// The command

const errCode = (e: unknown): string =>
  (e as NodeJS.ErrnoException).code ?? (e as Error).message ?? String(e);

export async function inspectMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    kernel: 'string',
    at: 'string',
    svg: 'string',
    ...FORMAT_OPTIONS,
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(INSPECT_HELP);
    return EXIT_OK;
  }
  const json = chooseFormat(p, 'text') === 'json';
  if (p.positionals.length !== 1)
    throw new UsageError('inspect needs exactly one trace or scenario file');
  const file = p.positionals[0]!;
  // The option's syntax is checked before the file is read, its range once the ops are known.
  optInt(p, 'at');
  const svg = optString(p, 'svg');
  if (svg === '') throw new UsageError('--svg needs a file name');
  const { ops, kernel } = await loadOps(file);
  const at = optInt(p, 'at', { max: ops.length }) ?? ops.length;
  const profile = await resolveProfile(optString(p, 'kernel') ?? kernel);
  const backend = new ModelBackend(profile, { events: false });
  const table = new HandleTable(backend.begin());
  const names = new ObjectNames();
  for (const op of ops.slice(0, at)) {
    stepTrace(op, backend, table);
    names.note(op, table, backend.host);
  }
  const snap = snapshot(backend.host);
  backend.end();
  const where = `${file} after op ${at} of ${ops.length} (${profile.name})`;
  if (svg !== undefined) {
    try {
      writeFileSync(svg, renderSvg(snap, names, where));
    } catch (e) {
      throw new InputError(`--svg ${svg}: cannot write the file (${errCode(e)})`);
    }
  }
  if (json) {
    out(JSON.stringify(snap));
    return EXIT_OK;
  }
  const style = styleFor();
  out(styled(`# ${where}`, style));
  for (const l of formatMap(snap, names)) out(styled(l, style));
  return EXIT_OK;
}
