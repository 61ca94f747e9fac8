/**
 * Result-line and trace-line serialisation. Integers at or below 2^53 are JSON numbers, larger
 * ones "0x..." strings, as the contract writes them.
 */
import type { AddrArg, Exit, FdArg, GuestStep, ResultLine } from './base_types.js';

const SAFE = BigInt(Number.MAX_SAFE_INTEGER);

export function jsonInt(v: bigint): number | string {
  if (v >= -SAFE && v <= SAFE) return Number(v);
  if (v < 0n) return v.toString();
  return '0x' + v.toString(16);
}

function exitToJson(e: Exit): Record<string, unknown> {
  switch (e.reason) {
    case 'LOAD':
      return { reason: e.reason, gpa: jsonInt(e.gpa), hex: e.hex };
    case 'MMIO':
      return e.is_write
        ? { reason: e.reason, gpa: jsonInt(e.gpa), len: e.len, is_write: true, hex: e.hex }
        : { reason: e.reason, gpa: jsonInt(e.gpa), len: e.len, is_write: false };
    case 'MEMORY_FAULT':
      return {
        reason: e.reason,
        gpa: jsonInt(e.gpa),
        size: jsonInt(e.size),
        flags: jsonInt(e.flags),
      };
    case 'HYPERCALL':
      return { reason: e.reason, nr: jsonInt(e.nr), args: e.args.map(jsonInt) };
    case 'PVALIDATE':
      return { reason: e.reason, gpa: jsonInt(e.gpa), ret: e.ret, cf: e.cf };
    case 'VC':
      return { reason: e.reason, gpa: jsonInt(e.gpa), error_code: jsonInt(e.error_code) };
    case 'SYSTEM_EVENT':
      return { reason: e.reason, type: e.type, data: e.data.map(jsonInt) };
    case 'GHCB_MSR':
      return { reason: e.reason, value: jsonInt(e.value) };
    case 'PSC':
      return {
        reason: e.reason,
        ret: jsonInt(e.ret),
        cur_entry: e.cur_entry,
        cur_pages: [...e.cur_pages],
      };
    case 'ACCEPT':
      return { reason: e.reason, gpa: jsonInt(e.gpa), status: jsonInt(e.status) };
    case 'TDVMCALL':
      return e.r11 === undefined
        ? { reason: e.reason, status: jsonInt(e.status) }
        : { reason: e.reason, status: jsonInt(e.status), r11: jsonInt(e.r11) };
    case 'VE':
    case 'EPT_VIOLATION':
      return { reason: e.reason, gpa: jsonInt(e.gpa) };
    default:
      return { ...e };
  }
}

/** The JSON object of a result line (bigints converted). */
export function resultToJson(r: ResultLine): Record<string, unknown> {
  const o: Record<string, unknown> = { ok: r.ok };
  if ('fault' in r) {
    o['fault'] = r.fault;
    return o;
  }
  if (!r.ok) o['errno'] = r.errno;
  if (r.ok && r.value !== undefined)
    o['value'] = typeof r.value === 'bigint' ? jsonInt(r.value) : r.value;
  if (r.ok && r.stat !== undefined)
    o['stat'] = { size: jsonInt(r.stat.size), blocks: jsonInt(r.stat.blocks) };
  if (r.ok && r.init !== undefined)
    o['init'] = { target: jsonInt(r.init.target), features: [...r.init.features] };
  if (r.remaining !== undefined)
    o['remaining'] = { gpa: jsonInt(r.remaining.gpa), size: jsonInt(r.remaining.size) };
  if (r.exits !== undefined) o['exits'] = r.exits.map(exitToJson);
  if (!r.ok && r.error_offset !== undefined) o['error_offset'] = jsonInt(r.error_offset);
  if (r.sev !== undefined) {
    o['error'] = jsonInt(r.sev.error);
    const p = r.sev.progress;
    if (p !== undefined)
      o['data'] = { gfn_start: jsonInt(p.gfn_start), uaddr: jsonInt(p.uaddr), len: jsonInt(p.len) };
  }
  if (r.tdx !== undefined) {
    o['hw_error'] = jsonInt(r.tdx.hw_error);
    const c = r.tdx.caps;
    if (c !== undefined)
      o['data'] = {
        supported_attrs: jsonInt(c.supported_attrs),
        supported_xfam: jsonInt(c.supported_xfam),
        nent: jsonInt(c.nent),
      };
    const p = r.tdx.progress;
    if (p !== undefined)
      o['data'] = {
        source_addr: jsonInt(p.source_addr),
        gpa: jsonInt(p.gpa),
        nr_pages: jsonInt(p.nr_pages),
      };
  }
  return o;
}

export function formatResult(r: ResultLine): string {
  return JSON.stringify(resultToJson(r));
}

const HEX_DIGITS = '0123456789abcdef';
/** The two lowercase hex digits of each byte value, as strings (short inputs) ... */
const HEX_PAIRS: readonly string[] = Array.from(
  { length: 256 },
  (_, v) => HEX_DIGITS[v >> 4]! + HEX_DIGITS[v & 15]!,
);
/** ... and as ASCII codes (long inputs), high digit first. */
const HEX_HI = Uint8Array.from({ length: 256 }, (_, v) => HEX_DIGITS.charCodeAt(v >> 4));
const HEX_LO = Uint8Array.from({ length: 256 }, (_, v) => HEX_DIGITS.charCodeAt(v & 15));
/** Below this many bytes concatenating pairs is cheaper than a TextDecoder call. */
const HEX_SHORT = 64;
/** The WHATWG decoder (a JavaScript global, not a Node API); hex digits are ASCII. */
const asciiDecoder = new TextDecoder();

/**
 * Lowercase hex of `b` in memory order. Long inputs are written as ASCII codes into one
 * Uint8Array and decoded once, so a 16 MiB read costs one 32 MiB buffer and one flat string
 * (per-byte string concatenation built a rope of 16 M nodes: seconds and a gigabyte).
 */
export function bytesToHex(b: Uint8Array): string {
  const n = b.length;
  if (n < HEX_SHORT) {
    let s = '';
    for (let i = 0; i < n; i++) s += HEX_PAIRS[b[i]!]!;
    return s;
  }
  const ascii = new Uint8Array(2 * n);
  for (let i = 0, j = 0; i < n; i++, j += 2) {
    const v = b[i]!;
    ascii[j] = HEX_HI[v]!;
    ascii[j + 1] = HEX_LO[v]!;
  }
  return asciiDecoder.decode(ascii);
}

function fdToJson(f: FdArg): string | number {
  return f.kind === 'handle' ? f.name : jsonInt(f.value);
}
function addrToJson(a: AddrArg): string | number {
  if (a.kind === 'raw') return jsonInt(a.value);
  return a.offset === 0n ? a.name : `${a.name}+0x${a.offset.toString(16)}`;
}
function stepToJson(s: GuestStep): Record<string, unknown> {
  switch (s.kind) {
    case 'store':
      return s.enc
        ? { store: { gpa: jsonInt(s.gpa), hex: bytesToHex(s.bytes), c: 1 } }
        : s.shared
          ? { store: { gpa: jsonInt(s.gpa), hex: bytesToHex(s.bytes), shared: 1 } }
          : { store: { gpa: jsonInt(s.gpa), hex: bytesToHex(s.bytes) } };
    case 'load':
      return s.enc
        ? { load: { gpa: jsonInt(s.gpa), size: s.size, c: 1 } }
        : s.shared
          ? { load: { gpa: jsonInt(s.gpa), size: s.size, shared: 1 } }
          : { load: { gpa: jsonInt(s.gpa), size: s.size } };
    case 'accept':
      return { accept: { gpa: jsonInt(s.gpa), size: s.size } };
    case 'map_gpa':
      return { map_gpa: { gpa: jsonInt(s.gpa), size: jsonInt(s.size), shared: s.shared ? 1 : 0 } };
    case 'hypercall':
      return { hypercall: { nr: jsonInt(s.nr), args: s.args.map(jsonInt) } };
    case 'pvalidate':
      return { pvalidate: { gpa: jsonInt(s.gpa), size: s.size, validate: s.validate } };
    case 'psc_msr':
      return { psc_msr: { gfn: jsonInt(s.gfn), op: s.op } };
    case 'psc':
      return {
        psc: {
          cur_entry: s.curEntry,
          end_entry: s.endEntry,
          entries: s.entries.map((e) => ({
            cur_page: e.curPage,
            gfn: jsonInt(e.gfn),
            op: e.op,
            pagesize: e.pageSize,
          })),
        },
      };
  }
}

/** Short text of an SEV-SNP guest step (describe, timelines). */
export function stepSnpText(s: GuestStep): string {
  switch (s.kind) {
    case 'pvalidate':
      return `pvalidate${s.size === '2M' ? '2M' : ''}(${s.validate ? 'validate' : 'rescind'})@0x${s.gpa.toString(16)}`;
    case 'psc_msr':
      return `psc_msr gfn=0x${s.gfn.toString(16)} op=${s.op}`;
    case 'psc':
      return `psc ${s.entries.length} entries [${s.curEntry}..${s.endEntry}]`;
    case 'accept':
      return `accept${s.size === '2M' ? '2M' : ''}@0x${s.gpa.toString(16)}`;
    case 'map_gpa':
      return `map_gpa 0x${s.gpa.toString(16)}+0x${s.size.toString(16)} → ${s.shared ? 'shared' : 'private'}`;
    default:
      return s.kind;
  }
}

/** A parsed op of any family: its name, its optional handle and its fields. */
type AnyOp = { readonly op: string; readonly as?: string; readonly proc?: string };

/** Serialise a parsed op back to a trace line (round-trips through parseOpObject). */
export function opToJson(op: AnyOp): Record<string, unknown> {
  const o: Record<string, unknown> = { op: op.op };
  if (op.proc !== undefined) o['proc'] = op.proc;
  for (const [k, v] of Object.entries(op as object)) {
    if (k === 'op' || k === 'line' || k === 'as' || k === 'proc' || v === undefined) continue;
    if (v === null) o[k] = null;
    else if (typeof v === 'bigint') o[k] = jsonInt(v);
    else if (v instanceof Uint8Array) o['hex'] = bytesToHex(v);
    else if (k === 'guest') o[k] = (v as GuestStep[]).map(stepToJson);
    else if (k === 'args') o[k] = (v as bigint[]).map(jsonInt);
    else if (k === 'data') o[k] = sevDataToJson(v as Record<string, unknown>);
    else if (typeof v === 'object' && 'kind' in v && (v.kind === 'handle' || v.kind === 'raw')) {
      o[k] =
        'offset' in v || k === 'addr' || k === 'userspace_addr' || k === 'data_addr' || k === 'src'
          ? addrToJson(v as AddrArg)
          : fdToJson(v as FdArg);
    } else o[k] = v;
  }
  if (op.as !== undefined) o['as'] = op.as;
  return o;
}

/** A KVM_MEMORY_ENCRYPT_OP `data` object (its `cmd` tag is the op's id, not a field). */
function sevDataToJson(d: Record<string, unknown>): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) {
    if (k === 'cmd') continue;
    if (typeof v === 'bigint') o[k] = jsonInt(v);
    else if (v instanceof Uint8Array) o[k] = bytesToHex(v);
    else if (Array.isArray(v))
      // KVM_TDX_INIT_VM's CPUID entries: objects of integers.
      o[k] = v.map((e: Record<string, bigint>) =>
        Object.fromEntries(Object.entries(e).map(([f, x]) => [f, jsonInt(x)])),
      );
    else o[k] = addrToJson(v as AddrArg);
  }
  return o;
}

export function formatOp(op: AnyOp): string {
  return JSON.stringify(opToJson(op));
}
