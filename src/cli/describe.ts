/** Compact, readable renderings of ops, results and exits for timelines. */
import { jsonInt, resultToJson } from '../trace/format.js';
import type { AddrArg, FdArg, GuestStep, ResultLine, TraceOp } from '../trace/types.js';
import { bytesToHex, stepSnpText } from '../trace/format.js';
import { humanSize } from '../trace/strace.js';
import { OPS } from '../ops/registry.js';
import { targetText } from '../ops/arm64.js';

const SIZE_FIELDS = new Set([
  'size',
  'memory_size',
  'length',
  'len',
  'guest_memfd_offset',
  'offset',
]);
const DECIMAL_FIELDS = new Set(['slot', 'id', 'nr']);

function fd(f: FdArg): string {
  return f.kind === 'handle' ? f.name : `fd ${f.value}`;
}
function addr(a: AddrArg): string {
  if (a.kind === 'raw') return '0x' + a.value.toString(16);
  return a.offset === 0n ? a.name : `${a.name}+0x${a.offset.toString(16)}`;
}
/** The SMCCC function ids of pKVM's vendor hypercalls, by value. */
const PKVM_HVC_NAMES: ReadonlyMap<bigint, string> = new Map([
  [0xc6000002n, 'HYP_MEMINFO'],
  [0xc6000003n, 'MEM_SHARE'],
  [0xc6000004n, 'MEM_UNSHARE'],
]);

function step(s: GuestStep): string {
  switch (s.kind) {
    case 'store':
      return `store ${bytesToHex(s.bytes)}→0x${s.gpa.toString(16)}${s.enc ? ' c=1' : ''}${s.shared ? ' shared' : ''}`;
    case 'load':
      return `load${s.size}@0x${s.gpa.toString(16)}${s.enc ? ' c=1' : ''}${s.shared ? ' shared' : ''}`;
    case 'hypercall': {
      const args = s.args.map((a) => '0x' + a.toString(16)).join(', ');
      // pKVM's vendor hypercalls (an arm64 HVC with x0 = the SMCCC function id).
      const hvc = PKVM_HVC_NAMES.get(s.nr);
      return hvc !== undefined ? `hvc ${hvc}(${args})` : `hypercall ${s.nr}(${args})`;
    }
    default:
      return stepSnpText(s);
  }
}

/**
 * Longest guest program and exit list the timeline shows in full when the step's program was
 * written with repetitions (scenario-format.md, "Repetition"): a longer one shows its head and
 * tail around a count of what it leaves out. Programs written out in full are shown in full.
 */
const FULL_GUEST_STEPS = 16;
const FULL_EXITS = 32;

/** The items of a long list: the first `head`, a line for the rest, the last `tail`. */
function elide<T>(
  xs: readonly T[],
  head: number,
  tail: number,
  show: (x: T) => string,
  middle: (left: readonly T[]) => string,
): string[] {
  return [
    ...xs.slice(0, head).map(show),
    middle(xs.slice(head, xs.length - tail)),
    ...xs.slice(xs.length - tail).map(show),
  ];
}

/** `psc_msr ×1012, GHCB_MSR ×1012`: how many of each kind, in order of first appearance. */
function tally(kinds: readonly string[]): string {
  const n = new Map<string, number>();
  for (const k of kinds) n.set(k, (n.get(k) ?? 0) + 1);
  return [...n].map(([k, c]) => `${k} ×${c}`).join(', ');
}

function guestText(g: readonly GuestStep[], elideLong: boolean): string {
  if (!elideLong || g.length <= FULL_GUEST_STEPS) return `[${g.map(step).join('; ')}]`;
  const parts = elide(
    g,
    4,
    2,
    step,
    (left) => `… ${left.length} more: ${tally(left.map((x) => x.kind))} …`,
  );
  return `[${parts.join('; ')}] (${g.length} steps)`;
}

/**
 * `KVM_SET_USER_MEMORY_REGION2 vm slot=0 gpa=0x0 size=2MiB …`. `elideLong`: shorten a long guest
 * program (one written with repetitions).
 */
export function describeOp(op: TraceOp, elideLong = false): string {
  const parts: string[] = [op.op];
  const spec = OPS.get(op.op)!;
  for (const [k, v] of Object.entries(op)) {
    if (k === 'op' || k === 'line' || k === 'as' || v === undefined) continue;
    if (spec.timelineHides?.(k, v) === true) continue;
    if (v === null) parts.push(`${k}=anon`);
    else if (typeof v === 'bigint') {
      const name = k === 'guest_phys_addr' ? 'gpa' : k;
      const sym = spec.timelineValue?.(k, v);
      const val =
        sym ??
        (SIZE_FIELDS.has(k)
          ? humanSize(v)
          : DECIMAL_FIELDS.has(k)
            ? v.toString()
            : '0x' + v.toString(16));
      parts.push(`${name}=${val}`);
    } else if (v instanceof Uint8Array)
      parts.push(`hex=${bytesToHex(v).slice(0, 24)}${v.length > 12 ? '…' : ''}`);
    else if (k === 'guest') parts.push(guestText(v as GuestStep[], elideLong));
    else if (k === 'args')
      parts.push(`args=[${(v as bigint[]).map((x) => '0x' + x.toString(16)).join(',')}]`);
    // KVM_ARM_VCPU_INIT's feature list (names and bit numbers).
    else if (k === 'features') parts.push(`features=[${(v as unknown[]).join(',')}]`);
    // The process fields (a forked child's handle): `proc=child`, wait's `child=child`.
    else if (k === 'proc' || k === 'child') parts.push(`${k}=${String(v)}`);
    else if (typeof v === 'object' && v !== null && 'kind' in v) {
      const a = v as FdArg | AddrArg;
      parts.push(
        `${k === 'userspace_addr' ? 'ua' : k}=${'offset' in a || k === 'addr' || k === 'userspace_addr' ? addr(a as AddrArg) : fd(a as FdArg)}`,
      );
    }
  }
  if (op.as !== undefined) parts.push(`→ ${op.as}`);
  return parts.join(' ');
}

/** `ok`, `ok value=…`, `EINVAL`, `SIGBUS`. */
export function describeResult(r: ResultLine): string {
  if ('fault' in r) return r.fault;
  const j = resultToJson(r);
  const extra: string[] = [];
  if (j['value'] !== undefined) {
    const v = j['value'];
    extra.push(
      `value=${typeof v === 'string' && v.length > 32 ? v.slice(0, 32) + '…' : String(v)}`,
    );
  }
  if (j['remaining'] !== undefined) {
    const rem = j['remaining'] as { gpa: number | string; size: number | string };
    extra.push(`remaining={gpa ${rem.gpa}, size ${rem.size}}`);
  }
  if (j['stat'] !== undefined) {
    const st = j['stat'] as { size: number | string; blocks: number | string };
    extra.push(`size=${st.size} blocks=${st.blocks}`);
  }
  // KVM_ARM_PREFERRED_TARGET: the struct kvm_vcpu_init the kernel filled.
  if (r.ok && r.init !== undefined)
    extra.push(`target=${targetText(r.init.target)} features=[${r.init.features.join(',')}]`);
  const head = r.ok ? 'ok' : r.errno;
  return [head, ...extra].join(' ');
}

/**
 * One line per exit of a KVM_RUN result; with `elideLong`, a long list shows its head and tail
 * and a count of the rest.
 */
export function describeExits(r: ResultLine, elideLong = false): string[] {
  if ('fault' in r || r.exits === undefined) return [];
  const exits = r.exits;
  if (!elideLong || exits.length <= FULL_EXITS) return exits.map(describeExit);
  return elide(
    exits,
    8,
    4,
    describeExit,
    (left) => `… ${left.length} more exits: ${tally(left.map((e) => e.reason))} …`,
  );
}

type TraceExit = NonNullable<Extract<ResultLine, { exits?: unknown }>['exits']>[number];

function describeExit(e: TraceExit): string {
  {
    switch (e.reason) {
      case 'LOAD':
        return `exit LOAD gpa=0x${e.gpa.toString(16)} → ${e.hex}`;
      case 'MMIO':
        return e.is_write
          ? `exit MMIO write gpa=0x${e.gpa.toString(16)} len=${e.len} data=${e.hex}`
          : `exit MMIO read gpa=0x${e.gpa.toString(16)} len=${e.len} (VMM answers zeros)`;
      case 'MEMORY_FAULT':
        return `exit MEMORY_FAULT gpa=0x${e.gpa.toString(16)} size=${jsonInt(e.size)} flags=${e.flags === 8n ? 'PRIVATE' : jsonInt(e.flags)}`;
      case 'HYPERCALL':
        return `exit HYPERCALL nr=${e.nr} args=[${e.args.map((a) => '0x' + a.toString(16)).join(', ')}]`;
      case 'HYPERCALL_RET':
        // 4 bytes of EAX on x86; 8 bytes of x0 after an arm64 HVC.
        return `hypercall returned ${e.hex.length === 16 ? 'x0' : 'eax'}=${e.hex}`;
      case 'INTERNAL_ERROR':
        return `exit INTERNAL_ERROR suberror=${e.suberror}`;
      case 'UNKNOWN':
        return `exit reason ${e.exit_reason}`;
      case 'PVALIDATE':
        return `pvalidate gpa=0x${e.gpa.toString(16)} → rax=${e.ret} CF=${e.cf}`;
      case 'VC':
        return `guest #VC gpa=0x${e.gpa.toString(16)} error_code=0x${e.error_code.toString(16)}`;
      case 'SYSTEM_EVENT':
        return `exit SYSTEM_EVENT type=${e.type} data=[${e.data.map((a) => '0x' + a.toString(16)).join(', ')}]`;
      case 'GHCB_MSR':
        return `GHCB MSR = 0x${e.value.toString(16)}`;
      case 'PSC':
        return `PSC sw_exit_info_2=0x${e.ret.toString(16)} cur_entry=${e.cur_entry}`;
      case 'ACCEPT':
        return `tdg.mem.page.accept gpa=0x${e.gpa.toString(16)} → status=0x${e.status.toString(16)}`;
      case 'TDVMCALL':
        return `tdvmcall → r10=0x${e.status.toString(16)}${e.r11 === undefined ? '' : ` r11=0x${e.r11.toString(16)}`}`;
      case 'VE':
        return `guest #VE gpa=0x${e.gpa.toString(16)}`;
      case 'EPT_VIOLATION':
        return `TD exit EPT violation gpa=0x${e.gpa.toString(16)} (guest access before accepting: VM dead)`;
      default:
        return `exit ${e.reason}`;
    }
  }
}
