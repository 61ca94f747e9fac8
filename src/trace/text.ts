/**
 * The text building blocks of the strace-style rendering (src/trace/strace.ts) and the scenario
 * timeline: symbolic tables, numbers with units, style, handle and data text. The op families
 * (src/ops) render their arguments with them. Pure (no Node APIs).
 */
import { KVM_CAP } from '../core/base/uapi.js';
import type { AddrArg, FdArg } from './base_types.js';

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
  // GUEST_MEMFD_FLAG_HUGETLB (bit 3, linux-next-gmem only) is not named here: 6.18 traces that
  // pass bit 3 as an unknown flag keep rendering it as 0x8.
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

export function fdText(f: FdArg | null): string {
  if (f === null) return '-1';
  return f.kind === 'handle' ? handleName(f.name) : f.value.toString();
}

export function addrText(a: AddrArg): string {
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

export function bytesHex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += (x < 16 ? '0' : '') + x.toString(16);
  return s;
}
