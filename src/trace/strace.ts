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
import { KVM_CAP } from '../core/base/uapi.js';
import { MMAP_ARENA_BASE, mmapPlacedLength, nextArenaCursor } from '../core/mm/host_layout.js';
import type { AddrArg, Exit, FdArg, GuestStep, ResultLine, TraceOp } from './types.js';
import { bindsKind } from './fields.js';

// ---------------------------------------------------------------------------------------------
// Symbolic tables

/** A bit table: `[bit, short name]`, tested in order (multi-bit values first). */
export type BitTable = ReadonlyArray<readonly [bigint, string]>;

export const VM_TYPES: readonly string[] = [
  'DEFAULT',
  'SW_PROTECTED',
  'SEV',
  'SEV_ES',
  'SNP',
  'TDX',
];
export const GMEM_FLAGS: BitTable = [
  [1n, 'MMAP'],
  [2n, 'INIT_SHARED'],
];
export const MEM_FLAGS: BitTable = [
  [1n, 'LOG_DIRTY_PAGES'],
  [2n, 'READONLY'],
  [4n, 'GUEST_MEMFD'],
];
export const ATTRIBUTE_BITS: BitTable = [[8n, 'PRIVATE']];
export const PROT_BITS: BitTable = [
  [1n, 'READ'],
  [2n, 'WRITE'],
  [4n, 'EXEC'],
];
export const MAP_BITS: BitTable = [
  [3n, 'SHARED_VALIDATE'],
  [1n, 'SHARED'],
  [2n, 'PRIVATE'],
  [0x10n, 'FIXED'],
  [0x20n, 'ANONYMOUS'],
  [0x2000n, 'LOCKED'],
  [0x4000n, 'NORESERVE'],
  [0x8000n, 'POPULATE'],
  [0x40000n, 'HUGETLB'],
];
export const FALLOC_BITS: BitTable = [
  [1n, 'KEEP_SIZE'],
  [2n, 'PUNCH_HOLE'],
  [0x10n, 'ZERO_RANGE'],
];
export const CAP_NAMES: ReadonlyMap<bigint, string> = new Map(
  Object.entries(KVM_CAP).map(([k, v]) => [BigInt(v), k]),
);
export const MADV_NAMES: ReadonlyMap<bigint, string> = new Map([
  [0n, 'MADV_NORMAL'],
  [1n, 'MADV_RANDOM'],
  [2n, 'MADV_SEQUENTIAL'],
  [3n, 'MADV_WILLNEED'],
  [4n, 'MADV_DONTNEED'],
  [8n, 'MADV_FREE'],
  [9n, 'MADV_REMOVE'],
  [10n, 'MADV_DONTFORK'],
  [11n, 'MADV_DOFORK'],
  [12n, 'MADV_MERGEABLE'],
  [13n, 'MADV_UNMERGEABLE'],
  [14n, 'MADV_HUGEPAGE'],
  [15n, 'MADV_NOHUGEPAGE'],
  [16n, 'MADV_DONTDUMP'],
  [17n, 'MADV_DODUMP'],
  [18n, 'MADV_WIPEONFORK'],
  [19n, 'MADV_KEEPONFORK'],
  [20n, 'MADV_COLD'],
  [21n, 'MADV_PAGEOUT'],
  [22n, 'MADV_POPULATE_READ'],
  [23n, 'MADV_POPULATE_WRITE'],
  [25n, 'MADV_COLLAPSE'],
  [100n, 'MADV_HWPOISON'],
  [101n, 'MADV_SOFT_OFFLINE'],
  [102n, 'MADV_GUARD_INSTALL'],
  [103n, 'MADV_GUARD_REMOVE'],
]);

/** `A|B|0x40`: the names of the set bits (`prefix` prepended), unknown bits in hex. */
export function bitNames(v: bigint, names: BitTable, zero: string, prefix = ''): string {
  if (v === 0n) return zero;
  if (v < 0n) return v.toString();
  const parts: string[] = [];
  let rest = v;
  for (const [bit, n] of names) {
    if (bit !== 0n && (rest & bit) === bit) {
      parts.push(prefix + n);
      rest &= ~bit;
    }
  }
  if (rest !== 0n) parts.push(hex(rest));
  return parts.join('|');
}

// ---------------------------------------------------------------------------------------------
// Numbers

/** `0x1f`; negative values stay signed decimal. */
export function hex(v: bigint | number): string {
  const b = BigInt(v);
  return b < 0n ? b.toString() : '0x' + b.toString(16);
}

const UNITS: ReadonlyArray<readonly [bigint, string]> = [
  [1n << 40n, 'TiB'],
  [1n << 30n, 'GiB'],
  [1n << 20n, 'MiB'],
  [1n << 10n, 'KiB'],
];

/** `2MiB` when a whole number of a unit, else hex from 4 KiB up, else decimal (timeline style). */
export function humanSize(v: bigint): string {
  if (v < 0n) return v.toString();
  for (const [u, n] of UNITS) if (v >= u && v % u === 0n) return `${v / u}${n}`;
  return v >= 4096n ? hex(v) : v.toString();
}

function unitOf(v: bigint): string | undefined {
  for (const [u, n] of UNITS) if (v >= u && v % u === 0n) return `${v / u} ${n}`;
  return undefined;
}

/** A size field: `2 MiB`, `0x1234`, `512`. */
export function sizeText(v: bigint): string {
  if (v < 0n || v < 1024n) return v.toString();
  return unitOf(v) ?? hex(v);
}

/** A syscall length: `0x200000 (2 MiB)`, `0x1234`, `512`. */
export function lengthText(v: bigint): string {
  if (v < 0n || v < 1024n) return v.toString();
  const u = unitOf(v);
  return u === undefined ? hex(v) : `${hex(v)} (${u})`;
}

/** An offset or address: `0`, `0x1000`. */
export function offsetText(v: bigint): string {
  return v === 0n ? '0' : hex(v);
}

// ---------------------------------------------------------------------------------------------
// Style

/** How a line is decorated: ANSI colour (ok green, errors red, line numbers dim), ASCII only. */
export type Style = { readonly color: boolean; readonly ascii: boolean };
export const PLAIN: Style = { color: false, ascii: false };

const ANSI = { green: '\x1b[32m', red: '\x1b[31m', dim: '\x1b[2m', reset: '\x1b[0m' } as const;

export function paint(s: string, c: keyof typeof ANSI, style: Style): string {
  return style.color && s.length > 0 ? ANSI[c] + s + ANSI.reset : s;
}

const ASCII_MAP: Readonly<Record<string, string>> = {
  '…': '...',
  '→': '->',
  '←': '<-',
  '✓': '+',
  '✗': 'x',
  '•': '*',
  '─': '-',
  '—': '-',
  '–': '-',
  '×': 'x',
  '≤': '<=',
  '≥': '>=',
  '−': '-',
};

/** Replace every character above 0x7e: known symbols by ASCII look-alikes, others by `\u{…}`. */
export function toAscii(s: string): string {
  let out = '';
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x7f) out += ch;
    else out += ASCII_MAP[ch] ?? `\\u{${c.toString(16)}}`;
  }
  return out;
}

/** `…` or `...` for the style. */
export function ellipsis(style: Style): string {
  return style.ascii ? '...' : '…';
}

// ---------------------------------------------------------------------------------------------
// Ops

/** A handle name as written: bare when it is plain, else quoted (control characters escaped). */
export function handleName(name: string): string {
  return /^[A-Za-z0-9_.:@-]+$/.test(name) ? name : JSON.stringify(name);
}

function fdText(f: FdArg | null): string {
  if (f === null) return '-1';
  return f.kind === 'handle' ? handleName(f.name) : f.value.toString();
}

function addrText(a: AddrArg): string {
  if (a.kind === 'raw') return hex(a.value);
  const n = handleName(a.name);
  return a.offset === 0n ? n : `${n}+${hex(a.offset)}`;
}

/** `"deadbeef"`, cut after 16 bytes with the length: `"00112233…" (4096 bytes)`. */
export function dataText(h: string, style: Style, max = 16): string {
  const bytes = h.length / 2;
  if (bytes <= max) return `"${h}"`;
  const zero = /^0*$/.test(h);
  return `"${h.slice(0, max * 2)}${ellipsis(style)}" (${bytes} bytes${zero ? ', all zero' : ''})`;
}

function bytesHex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += (x < 16 ? '0' : '') + x.toString(16);
  return s;
}

function stepText(s: GuestStep, style: Style): string {
  const arrow = style.ascii ? '->' : '→';
  switch (s.kind) {
    case 'store':
      return `store ${bytesHex(s.bytes)} ${arrow} ${hex(s.gpa)}`;
    case 'load':
      return `load${s.size} ${hex(s.gpa)}`;
    case 'hypercall':
      return `vmcall ${s.nr}(${s.args.map(hex).join(', ')})`;
  }
}

const MAX_STEPS = 3;

/** `NAME(args)` for one op, with the trace's own handle names. */
export function renderOp(op: TraceOp, style: Style = PLAIN): string {
  const a: string[] = [];
  switch (op.op) {
    case 'KVM_CREATE_VM':
      a.push(fdText(op.fd), `type=${VM_TYPES[Number(op.type)] ?? op.type.toString()}`);
      break;
    case 'KVM_CHECK_EXTENSION':
      a.push(fdText(op.fd), CAP_NAMES.get(op.cap) ?? op.cap.toString());
      break;
    case 'KVM_ENABLE_CAP':
      a.push(fdText(op.fd), CAP_NAMES.get(op.cap) ?? op.cap.toString());
      if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
      if (op.args.length > 0) a.push(`args=[${op.args.map(hex).join(', ')}]`);
      break;
    case 'KVM_CREATE_GUEST_MEMFD':
      a.push(
        fdText(op.vm),
        `size=${sizeText(op.size)}`,
        `flags=${bitNames(op.flags, GMEM_FLAGS, '0')}`,
      );
      break;
    case 'KVM_SET_USER_MEMORY_REGION':
    case 'KVM_SET_USER_MEMORY_REGION2':
      a.push(
        fdText(op.vm),
        `slot=${op.slot}`,
        `flags=${bitNames(op.flags, MEM_FLAGS, '0')}`,
        `gpa=${offsetText(op.guest_phys_addr)}`,
        `size=${sizeText(op.memory_size)}`,
        `ua=${addrText(op.userspace_addr)}`,
      );
      if (op.op === 'KVM_SET_USER_MEMORY_REGION2' && (op.flags & 4n) !== 0n)
        a.push(`gmem=${fdText(op.guest_memfd)}`, `offset=${offsetText(op.guest_memfd_offset)}`);
      break;
    case 'KVM_SET_MEMORY_ATTRIBUTES':
      a.push(
        fdText(op.vm),
        `gpa=${offsetText(op.address)}`,
        `size=${sizeText(op.size)}`,
        bitNames(op.attributes, ATTRIBUTE_BITS, 'SHARED'),
      );
      if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
      break;
    case 'KVM_CREATE_VCPU':
      a.push(fdText(op.vm), `id=${op.id}`);
      break;
    case 'KVM_PRE_FAULT_MEMORY':
      a.push(fdText(op.vcpu), `gpa=${offsetText(op.gpa)}`, `size=${sizeText(op.size)}`);
      if (op.flags !== 0n) a.push(`flags=${hex(op.flags)}`);
      break;
    case 'KVM_RUN': {
      a.push(fdText(op.vcpu));
      const g = op.guest;
      if (g.length > 0) {
        const shown = g.slice(0, MAX_STEPS).map((s) => stepText(s, style));
        if (g.length > MAX_STEPS) shown.push(`${ellipsis(style)} ${g.length} steps`);
        a.push(`[${shown.join('; ')}]`);
      }
      break;
    }
    case 'mmap': {
      const flags = op.fd === null ? op.flags | 0x20n : op.flags;
      a.push(
        'NULL',
        lengthText(op.length),
        bitNames(op.prot, PROT_BITS, 'PROT_NONE', 'PROT_'),
        bitNames(flags, MAP_BITS, '0', 'MAP_'),
        fdText(op.fd),
        offsetText(op.offset),
      );
      break;
    }
    case 'munmap':
      a.push(addrText(op.addr), lengthText(op.length));
      break;
    case 'mprotect':
      a.push(
        addrText(op.addr),
        lengthText(op.length),
        bitNames(op.prot, PROT_BITS, 'PROT_NONE', 'PROT_'),
      );
      break;
    case 'madvise':
      a.push(
        addrText(op.addr),
        lengthText(op.length),
        MADV_NAMES.get(op.advice) ?? op.advice.toString(),
      );
      break;
    case 'fallocate':
      a.push(
        fdText(op.fd),
        bitNames(op.mode, FALLOC_BITS, '0', 'FALLOC_FL_'),
        offsetText(op.offset),
        lengthText(op.len),
      );
      break;
    case 'ftruncate':
      a.push(fdText(op.fd), lengthText(op.length));
      break;
    case 'pread':
      a.push(fdText(op.fd), op.len.toString(), offsetText(op.offset));
      break;
    case 'pwrite':
      a.push(fdText(op.fd), dataText(bytesHex(op.bytes), style), offsetText(op.offset));
      break;
    case 'fstat':
    case 'close':
      a.push(fdText(op.fd));
      break;
    case 'peek':
      a.push(addrText(op.addr), op.len.toString());
      break;
    case 'poke':
      a.push(addrText(op.addr), dataText(bytesHex(op.bytes), style));
      break;
  }
  const s = `${op.op}(${a.join(', ')})`;
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
    else if (bindsKind(op.op) !== undefined && op.as !== undefined) v = handleName(op.as);
    else v = '0';
    if (op.op === 'mmap' && addr !== undefined)
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
    if (op.op !== 'mmap' || !r.ok) return undefined;
    const len = mmapPlacedLength(op.length, Number(op.flags & 0xffffffffn), op.fd === null);
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
