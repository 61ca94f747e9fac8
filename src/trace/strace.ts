/**
 * A strace-style text rendering of trace ops and their results, one readable line per op:
 *
 *     7  KVM_CREATE_GUEST_MEMFD(vm, size=2 MiB, flags=MMAP|INIT_SHARED) = gmem
 *     9  mmap(NULL, 0x200000 (2 MiB), PROT_READ|PROT_WRITE, MAP_SHARED, gmem, 0) = shared @ 0x400000000000
 *    12  peek(shared+0x1000, 4) = "deadbeef"
 *
 * Handles keep the trace file's own names, constants are printed by name, addresses in hex and
 * sizes with units. Pure (no Node APIs): the CLI decides colour and ASCII (src/cli/output.ts).
 * The symbolic tables here are shared with the scenario timeline (src/cli/describe.ts).
 */
import { MMAP_ARENA_BASE, nextArenaCursor } from '../core/mm/host_layout.js';
import type { Exit, ResultLine, TraceOp } from './types.js';
import { bindsKind, createsFdArray } from './fields.js';
import { OPS } from '../ops/registry.js';
import { targetText } from '../ops/arm64.js';
import {
  ATTRIBUTE_BITS,
  bitNames,
  dataText,
  ellipsis,
  handleName,
  hex,
  paint,
  PLAIN,
  sizeText,
  toAscii,
  type Style,
} from './text.js';

export * from './text.js';

// ---------------------------------------------------------------------------------------------
// Ops

/** `NAME(args)` for one op, with the trace's own handle names. */
export function renderOp(op: TraceOp, style: Style = PLAIN): string {
  const a: string[] = [];
  OPS.get(op.op)!.renderArgs(op, a, style);
  // strace -f's `[pid N]` prefix: a forked child's op names its process handle.
  const s = `${op.proc === undefined ? '' : `[${op.proc}] `}${op.op}(${a.join(', ')})`;
  return style.ascii ? toAscii(s) : s;
}

// ---------------------------------------------------------------------------------------------
// Results

const MAX_EXITS = 8;

/** One exit: `LOAD 0x80001000 = 5ec2e7ed`, `MMIO write 0xfee00000 len 4 = deadbeef`, `HLT`. */
export function renderExit(e: Exit, style: Style = PLAIN): string {
  switch (e.reason) {
    case 'LOAD':
      return `LOAD ${hex(e.gpa)} = ${dataText(e.hex, style)}`;
    case 'MMIO':
      return e.is_write
        ? `MMIO write ${hex(e.gpa)} len ${e.len} = ${dataText(e.hex, style)}`
        : `MMIO read ${hex(e.gpa)} len ${e.len}`;
    case 'MEMORY_FAULT':
      return `MEMORY_FAULT ${hex(e.gpa)} size ${sizeText(e.size)} flags ${bitNames(e.flags, ATTRIBUTE_BITS, '0')}`;
    case 'HYPERCALL':
      return `HYPERCALL ${e.nr === 12n ? 'MAP_GPA_RANGE' : e.nr.toString()}(${e.args.map(hex).join(', ')})`;
    case 'HYPERCALL_RET':
      return `vmcall returned ${e.hex}`;
    case 'INTERNAL_ERROR':
      return `INTERNAL_ERROR suberror ${e.suberror}`;
    case 'UNKNOWN':
      return `exit reason ${e.exit_reason}`;
    case 'PVALIDATE':
      return `PVALIDATE ${hex(e.gpa)} = ${e.ret} CF=${e.cf}`;
    case 'VC':
      return `#VC ${hex(e.gpa)} error ${hex(e.error_code)}`;
    case 'SYSTEM_EVENT':
      return `SYSTEM_EVENT type ${e.type} (${e.data.map(hex).join(', ')})`;
    case 'GHCB_MSR':
      return `GHCB MSR = ${hex(e.value)}`;
    case 'PSC':
      return `PSC = ${hex(e.ret)} cur_entry ${e.cur_entry}`;
    case 'ACCEPT':
      return `ACCEPT ${hex(e.gpa)} = ${hex(e.status)}`;
    case 'TDVMCALL':
      return `TDVMCALL = ${hex(e.status)}${e.r11 === undefined ? '' : ` r11 ${hex(e.r11)}`}`;
    case 'VE':
      return `#VE ${hex(e.gpa)}`;
    case 'EPT_VIOLATION':
      return `EPT violation ${hex(e.gpa)} (guest access before accepting)`;
    default:
      return e.reason;
  }
}

/** What follows the result: `  exits: …`, `  remaining: …`, `  {size=…, blocks=…}`. */
function resultExtras(r: ResultLine, style: Style): string {
  if ('fault' in r) return '';
  let s = '';
  if (r.exits !== undefined) {
    const shown = r.exits.slice(0, MAX_EXITS).map((e) => renderExit(e, style));
    if (r.exits.length > MAX_EXITS)
      shown.push(`${ellipsis(style)} ${r.exits.length - MAX_EXITS} more (${r.exits.length} exits)`);
    s += `  exits: ${shown.length === 0 ? 'none' : shown.join('; ')}`;
  }
  if (r.remaining !== undefined)
    s += `  remaining: gpa ${hex(r.remaining.gpa)} size ${sizeText(r.remaining.size)}`;
  if (r.ok && r.stat !== undefined)
    s += `  {size=${sizeText(r.stat.size)}, blocks=${r.stat.blocks}}`;
  if (r.ok && r.init !== undefined)
    s += `  {target=${targetText(r.init.target)}, features=[${r.init.features.join(', ')}]}`;
  if (!r.ok && r.error_offset !== undefined) s += `  error_offset=${hex(r.error_offset)}`;
  if (r.sev !== undefined) {
    if (r.sev.error !== 0n || !r.ok) s += `  error=${hex(r.sev.error)}`;
    const p = r.sev.progress;
    if (p !== undefined)
      s += `  {gfn_start=${hex(p.gfn_start)}, uaddr=${hex(p.uaddr)}, len=${sizeText(p.len)}}`;
  }
  if (r.tdx !== undefined) {
    if (r.tdx.hw_error !== 0n) s += `  hw_error=${hex(r.tdx.hw_error)}`;
    const c = r.tdx.caps;
    if (c !== undefined)
      s += `  {supported_attrs=${hex(c.supported_attrs)}, supported_xfam=${hex(c.supported_xfam)}, nent=${c.nent}}`;
    const p = r.tdx.progress;
    if (p !== undefined)
      s += `  {source_addr=${hex(p.source_addr)}, gpa=${hex(p.gpa)}, nr_pages=${p.nr_pages}}`;
  }
  return s;
}

/**
 * `= 0`, `= gmem`, `= shared @ 0x400000000000`, `= 1`, `= "deadbeef"`, `= -1 EINVAL`, `= SIGBUS`,
 * with the op's extra result fields after two spaces. `addr` is the address an `mmap` got.
 */
export function renderResult(
  op: TraceOp,
  r: ResultLine,
  style: Style = PLAIN,
  addr?: bigint,
): string {
  let head: string;
  if ('fault' in r) head = paint(`= ${r.fault}`, 'red', style);
  else if (!r.ok) head = paint(`= -1 ${r.errno}`, 'red', style);
  else {
    let v: string;
    if (typeof r.value === 'string') v = dataText(r.value, style);
    else if (typeof r.value === 'bigint') v = r.value.toString();
    else if (bindsKind(op.op) !== undefined && op.as !== undefined && !createsFdArray(op.op))
      v = handleName(op.as);
    else v = '0';
    if (addr !== undefined && bindsKind(op.op) === 'map')
      v = op.as === undefined ? hex(addr) : `${v} @ ${hex(addr)}`;
    head = paint(`= ${v}`, 'green', style);
  }
  const s = head + resultExtras(r, style);
  return style.ascii ? toAscii(s) : s;
}

/**
 * Renders the ops of one trace run in order. Keeps the arena cursor, so a successful `mmap`
 * shows the address every backend places it at (trace-format.md, Addresses).
 */
export class StraceRenderer {
  private cursor = MMAP_ARENA_BASE;

  constructor(readonly style: Style = PLAIN) {}

  /** The address the next successful mmap of `op` gets (undefined for other ops). */
  private placed(op: TraceOp, r: ResultLine): bigint | undefined {
    if (!r.ok) return undefined;
    const len = OPS.get(op.op)!.arenaLength?.(op);
    if (len === undefined) return undefined;
    const at = this.cursor;
    this.cursor = nextArenaCursor(at, len);
    return at;
  }

  /** `  12  OP(args) = result`, with `label` (a line number) right-aligned in `width`. */
  line(op: TraceOp, r: ResultLine, label: string | number = op.line, width = 4): string {
    const addr = this.placed(op, r);
    const lab = paint(String(label).padStart(width), 'dim', this.style);
    return `${lab}  ${renderOp(op, this.style)} ${renderResult(op, r, this.style, addr)}`;
  }
}
