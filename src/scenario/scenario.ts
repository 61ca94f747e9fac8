/**
 * Scenario files (YAML): human-friendly walkthroughs that compile to trace ops plus assertions.
 *
 * ```yaml
 * name: Guest converts a page
 * kernel: linux-6.18            # default profile (CLI --kernel overrides)
 * description: |
 *   Free text.
 * steps:
 *   - section: Setup            # a heading in the timeline
 *   - say: Create a VM with private memory.
 *     do: KVM_CREATE_VM         # any trace op; fields as in trace-format.md
 *     type: SW_PROTECTED        # numbers, uAPI constant names (A | B), sizes ("2 MiB")
 *     as: vm
 *     expect: ok                # ok | ERRNO | SIGBUS/SIGSEGV | a map (below)
 *   - do: peek
 *     addr: shared+0x1000
 *     len: 4
 *     expect: { value: "00000000" }
 * ```
 *
 * `expect` maps may hold: ok, errno, fault, value (hex string, integer, or {repeat, count}),
 * exits (a list; each entry matches the actual exit at the same position on the keys it names),
 * remaining {gpa, size}, stat {size, blocks}, effects {zapped, tlb_flushes, gmem_allocated,
 * gmem_zeroed, gmem_freed, mapped} counted from the model's events (model backend only),
 * launch_digest, exit_counts, kvm_stats, for TDX hw_error (the result's) and td {state,
 * nr_premapped, bugged, dead, epoch, mrtd, sept} (the model's TD after the step), and for pKVM
 * pkvm {gpa | uaddr, host, hyp, guest, share_count, pins, zero, vms} (the hypervisor's pages),
 * and for SEV-SNP rmp {GPA: state} (the RMP entries of the op's VM's pages).
 * and direct_map {uaddr, present; removed} (NO_DIRECT_MAP guest_memfd: the kernel direct map).
 *
 * Every problem is reported as `file:line: field: message`.
 */
import {
  isAlias,
  isMap,
  isNode,
  isPair,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Node as YamlNode,
} from 'yaml';
import { ERRNO_NUMBERS, isErrnoName } from '../core/base/errno.js';
import { isOpName, OP_FIELDS, OP_NAMES } from '../trace/fields.js';
import { OPS } from '../ops/registry.js';
import { HandleScope, parseOpObject, TraceInputError } from '../trace/parse.js';
import { didYouMean, quote } from '../trace/suggest.js';
import type { TraceOp } from '../trace/types.js';
import { evaluate, MAX_LITERAL_DIGITS } from '../trace/constants.js';
import { Repeater, sourceField, type Origin, type RepeatBudget } from './repeat.js';
import { KVM_VCPU_STAT_NAMES, type KvmVcpuStat } from '../core/kvm/objects.js';
import { SEPT_STATES, type SeptStateName } from '../core/platform/tdx/sept.js';

export type EffectKey =
  'zapped' | 'tlb_flushes' | 'gmem_allocated' | 'gmem_zeroed' | 'gmem_freed' | 'mapped';
export const EFFECT_KEYS: readonly EffectKey[] = [
  'zapped',
  'tlb_flushes',
  'gmem_allocated',
  'gmem_zeroed',
  'gmem_freed',
  'mapped',
];

export type Expectation = {
  readonly ok?: boolean;
  readonly errno?: string;
  readonly fault?: 'SIGBUS' | 'SIGSEGV';
  readonly value?: string | bigint;
  readonly exits?: ReadonlyArray<Readonly<Record<string, unknown>>>;
  readonly remaining?: { readonly gpa?: bigint; readonly size?: bigint };
  readonly stat?: { readonly size?: bigint; readonly blocks?: bigint };
  readonly effects?: Readonly<Partial<Record<EffectKey, number>>>;
  /** SEV-SNP: the launch digest (96 hex digits) of the op's VM after the step (model only). */
  readonly launch_digest?: string;
  /** How many exits of each named reason `KVM_RUN` reported (reasons not named are not checked). */
  readonly exit_counts?: Readonly<Record<string, number>>;
  /**
   * By how much the step raised the vCPU page-fault counters, summed over every vCPU of the
   * model (`struct kvm_vcpu_stat`; model only).
   */
  readonly kvm_stats?: Readonly<Partial<KvmVcpuStat>>;
  /** TDX: `kvm_tdx_cmd.hw_error` as KVM wrote it back (the result's `hw_error`). */
  readonly hw_error?: bigint;
  /** KVM_SET_MEMORY_ATTRIBUTES2: the `error_offset` KVM wrote back (the result's). */
  readonly error_offset?: bigint;
  /** TDX: the state of the TD the op names, after the step (model only). */
  readonly td?: TdExpectation;
  /**
   * pKVM: pages as the hypervisor holds them after the step, one entry per page (model only);
   * the hypervisor's history oracle and its six invariants are checked with them.
   */
  readonly pkvm?: readonly PkvmExpectation[];
  /**
   * SEV-SNP: the RMP state of the page at each GPA of the VM the op names, after the step (model
   * only): the frame the guest's memslot holds there (its guest_memfd page).
   */
  readonly rmp?: ReadonlyArray<{ readonly gpa: bigint; readonly state: RmpStateName }>;
  /** HugeTLB guest_memfd: a file's folios, its VM's guest mapping levels, the pools (model only). */
  readonly hugetlb?: HugetlbExpectation;
  /**
   * NO_DIRECT_MAP guest_memfd: pages in or out of the kernel's direct map after the step, and
   * how many frames are out of it (model only).
   */
  readonly direct_map?: readonly DirectMapExpectation[];
};

export const DIRECT_MAP_KEYS = ['uaddr', 'present', 'removed'] as const;

/**
 * One entry of `expect.direct_map`: the frame the VMM maps at `uaddr` is (`present: true`) or is
 * not in the kernel's direct map; `removed`: how many frames of the host are out of it.
 */
export type DirectMapExpectation = {
  readonly uaddr?: PkvmExpectation['uaddr'];
  readonly present?: boolean;
  readonly removed?: number;
};

/**
 * The RMP states `expect.rmp` names (platforms.md §2.1, the SNP white paper's page states):
 * HYPERVISOR (not assigned), GUEST_INVALID (assigned to a guest, not validated), GUEST_VALID
 * (assigned and validated), PRE_GUEST (assigned, immutable: between rmp_make_private() and
 * SNP_LAUNCH_UPDATE), FIRMWARE (assigned to ASID 0); NO_PAGE: guest_memfd has no page there.
 */
export const RMP_STATES = [
  'HYPERVISOR',
  'GUEST_INVALID',
  'GUEST_VALID',
  'PRE_GUEST',
  'FIRMWARE',
  'NO_PAGE',
] as const;
export type RmpStateName = (typeof RMP_STATES)[number];

/**
 * `expect.hugetlb` (model only): after the step, the guest_memfd `fd` (a handle) has, at each
 * byte offset of `folios`, a folio of that order (0: a 4K folio, e.g. of a split huge page) or
 * none (`absent`); its VM's stage-2 maps each GPA of `levels` at that level (4K, 2M, 1G) or not
 * at all (`none`); and the hstates have `pool_2m` / `pool_1g` free unreserved huge pages.
 */
export type HugetlbExpectation = {
  readonly fd?: string;
  readonly folios?: ReadonlyArray<{ readonly offset: bigint; readonly order: number | 'absent' }>;
  readonly levels?: ReadonlyArray<{ readonly gpa: bigint; readonly level: string }>;
  readonly pool_2m?: number;
  readonly pool_1g?: number;
};
export const HUGETLB_KEYS = ['fd', 'folios', 'levels', 'pool_2m', 'pool_1g'] as const;

/** The states of `enum pkvm_page_state` (host and hyp), and a guest's (POISON: force-reclaimed). */
export const PKVM_STATES = ['OWNED', 'SHARED_OWNED', 'SHARED_BORROWED', 'NOPAGE'] as const;
export const PKVM_GUEST_STATES = [...PKVM_STATES, 'POISON'] as const;
export type PkvmStateName = (typeof PKVM_GUEST_STATES)[number];
export const PKVM_KEYS = [
  'gpa',
  'uaddr',
  'host',
  'hyp',
  'guest',
  'share_count',
  'pins',
  'zero',
  'vms',
] as const;

/**
 * What one entry of `expect.pkvm` asserts (any subset; docs/scenario-format.md): the page at
 * `gpa` of the VM the op names, or the one the VMM maps at `uaddr`, and the hypervisor's count
 * of VMs.
 */
export type PkvmExpectation = {
  readonly gpa?: bigint;
  /** A mapping handle with an offset (`ring+0x1000`) or an address, resolved when checked. */
  readonly uaddr?:
    | { readonly kind: 'handle'; readonly name: string; readonly offset: bigint }
    | { readonly kind: 'raw'; readonly value: bigint };
  readonly host?: PkvmStateName;
  readonly hyp?: PkvmStateName;
  readonly guest?: PkvmStateName;
  /** `hyp_page.host_share_guest_count`. */
  readonly share_count?: number;
  /** `hyp_page.refcount`: hyp pins. */
  readonly pins?: number;
  /** Every byte of the page is 0. */
  readonly zero?: boolean;
  /** How many VMs the hypervisor holds (`vm_table`). */
  readonly vms?: number;
};

/** KVM's `kvm_tdx->state` without its `TD_STATE_` prefix. */
export const TD_STATES = ['UNINITIALIZED', 'INITIALIZED', 'RUNNABLE'] as const;
export const TD_KEYS = [
  'state',
  'nr_premapped',
  'bugged',
  'dead',
  'epoch',
  'mrtd',
  'sept',
] as const;

/** What `expect.td` asserts about a TD (any subset; docs/scenario-format.md). */
export type TdExpectation = {
  readonly state?: (typeof TD_STATES)[number];
  readonly nr_premapped?: number;
  readonly bugged?: boolean;
  /** `kvm->vm_dead`: every ioctl of the VM and its vCPUs is -EIO (a KVM_BUG_ON, `kvm_vm_dead()`). */
  readonly dead?: boolean;
  /** TD_EPOCH of the TDX module (TDH.MEM.TRACK advances it). */
  readonly epoch?: number;
  /** The MRTD after KVM_TDX_FINALIZE_VM, 96 hex digits. */
  readonly mrtd?: string;
  /** GPA → the state of its S-EPT entry (where the module's walk for the 4K entry stops). */
  readonly sept?: ReadonlyArray<{ readonly gpa: bigint; readonly state: SeptStateName }>;
};

export type ScenarioStep =
  | { readonly kind: 'section'; readonly line: number; readonly title: string }
  | {
      readonly kind: 'op';
      readonly line: number;
      readonly say?: string;
      readonly op: TraceOp;
      readonly expect?: Expectation;
      /** The guest program was written with repetitions (repeat.ts). */
      readonly repeated?: true;
    };

export type Scenario = {
  readonly file: string;
  readonly name: string;
  readonly description?: string;
  readonly kernel?: string;
  /** The line of the `kernel:` key. */
  readonly kernelLine?: number;
  readonly steps: readonly ScenarioStep[];
};

export type ParsedScenario = { readonly scenario?: Scenario; readonly errors: TraceInputError[] };

const STEP_KEYS = ['say', 'do', 'as', 'proc', 'expect', 'section'];
const TOP_KEYS = ['name', 'description', 'kernel', 'steps'];
const EXPECT_KEYS = [
  'ok',
  'errno',
  'fault',
  'value',
  'exits',
  'remaining',
  'stat',
  'effects',
  'launch_digest',
  'exit_counts',
  'kvm_stats',
  'hw_error',
  'error_offset',
  'td',
  'pkvm',
  'rmp',
  'hugetlb',
  'direct_map',
];
/** Fields whose string values may be handle names: kept as written when not an expression. */
const NAME_FIELDS = new Set([
  'vm',
  'fd',
  'vcpu',
  'guest_memfd',
  'addr',
  'userspace_addr',
  // KVM_MEMORY_ENCRYPT_OP: the /dev/sev fd, where the struct is kept, its address fields.
  'sev_fd',
  'data_addr',
  'uaddr',
  'id_block_uaddr',
  'id_auth_uaddr',
  'source_addr',
  // KVM_RUN's VMM policy: "convert" / "convert+discard" kept as written, else an integer.
  'map_gpa_range',
  // VFIO_GROUP_SET_CONTAINER's container fd.
  'container',
  // KVM_SET_USER_MEMORY_REGION_EXT's restricted fd (design-2023-restrictedmem).
  'restricted_fd',
  // address_space_mmap's source: the VMM's shared mapping (design-2020-separate-mm).
  'src',
]);
/**
 * Fields whose values are text passed to the trace parser as written: `open`'s path, the
 * byte fields of the SNP command structs (hex), and the arm64 vCPU fields whose names the op
 * reads itself (KVM_ARM_VCPU_INIT's `target` and `features` list, KVM_ARM_VCPU_FINALIZE's
 * `feature`: `GENERIC_V8`, `[PSCI_0_2, SVE]`; YAML numbers still become integers), and pipe2's
 * `write_as` handle name.
 */
const TEXT_FIELDS = new Set([
  'path',
  'gosvw',
  'host_data',
  'target',
  'features',
  'feature',
  // pipe2's second handle name (the write end).
  'write_as',
  // wait's process handle (a name a fork bound).
  'child',
]);
/** Exit reasons and the keys each exit has (besides `reason`). */
const EXIT_KEYS: Readonly<Record<string, readonly string[]>> = {
  LOAD: ['gpa', 'hex'],
  MMIO: ['gpa', 'len', 'is_write', 'hex'],
  MEMORY_FAULT: ['gpa', 'size', 'flags'],
  HYPERCALL: ['nr', 'args'],
  HYPERCALL_RET: ['hex'],
  HLT: [],
  SHUTDOWN: [],
  INTERNAL_ERROR: ['suberror'],
  UNKNOWN: ['exit_reason'],
  PVALIDATE: ['gpa', 'ret', 'cf'],
  VC: ['gpa', 'error_code'],
  SYSTEM_EVENT: ['type', 'data'],
  GHCB_MSR: ['value'],
  PSC: ['ret', 'cur_entry', 'cur_pages'],
  ACCEPT: ['gpa', 'status'],
  TDVMCALL: ['status', 'r11'],
  VE: ['gpa'],
  EPT_VIOLATION: ['gpa'],
};
const ALL_EXIT_KEYS = [...new Set(Object.values(EXIT_KEYS).flat())];

/**
 * The nodes that aliases may add to a scenario, in total (an alias adds as many nodes as the node
 * it names has). Stops "billion laughs" documents before anything expands them.
 */
export const MAX_ALIAS_NODES = 10_000;
/** Deepest nesting of YAML collections (a scenario needs about 6). */
export const MAX_DEPTH = 64;
/** Largest `{repeat, count}` byte count. */
const MAX_REPEAT_BYTES = 16n << 20n;

type Fail = (field: string, message: string) => never;
/**
 * How a field's string values are read: integers, handle names (or integers), hex bytes, or a
 * page-state change's operation (its names, or an integer).
 */
type Kind = 'int' | 'name' | 'hex' | 'psc_op';
/** The names a PSC operation (`op` of `psc_msr` and of PSC entries) may be written with. */
const PSC_OP_NAMES = ['private', 'shared', 'psmash', 'unsmash'];
/** The page sizes of a TDX guest `accept` step (trace-format.md, "TDX guest steps"). */
const ACCEPT_SIZES = ['4K', '2M'];

const hasOwn = (o: object, k: string): boolean => Object.prototype.hasOwnProperty.call(o, k);

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const p = Object.getPrototypeOf(v) as unknown;
  return p === Object.prototype || p === null;
}

/** A key as the field of a message (keys can be arbitrarily long). */
function fieldName(k: string): string {
  return k.length > 60 ? `${k.slice(0, 60)}…` : k;
}

/** `unknown WHAT (did you mean "x"?)`, or the known names when none is close. */
function unknown(what: string, word: string, known: readonly string[]): string {
  const d = didYouMean(word, known);
  return `unknown ${what}${d !== '' ? d : ` (known: ${known.join(', ')})`}`;
}

const unknownKey = (k: string, known: readonly string[]): string => unknown('key', k, known);

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  if (isPlainObject(v)) return 'a map';
  if (typeof v === 'object') return 'a tagged YAML value';
  return typeof v === 'string' ? quote(v) : String(v);
}

function kindOf(key: string): Kind {
  if (key === 'op') return 'psc_op';
  return key === 'hex' || TEXT_FIELDS.has(key) ? 'hex' : NAME_FIELDS.has(key) ? 'name' : 'int';
}

/** Why `s` is not an integer (the expression error, without repeating `s`). */
function expressionError(s: string, error: string, what = 'not an integer'): string {
  const q = quote(s);
  return `${q} is ${what}: ${error.startsWith(`${q}: `) ? error.slice(q.length + 2) : error}`;
}

function checkDigits(v: bigint, field: string, fail: Fail): bigint {
  if ((v < 0n ? -v : v) >= 10n ** BigInt(MAX_LITERAL_DIGITS))
    fail(field, `integer too long (at most ${MAX_LITERAL_DIGITS} digits)`);
  return v;
}

/** An integer as the trace parser takes it: a safe number, else a "0x..." or decimal string. */
function traceInt(v: bigint, field: string, fail: Fail): number | string {
  checkDigits(v, field, fail);
  if (v <= BigInt(Number.MAX_SAFE_INTEGER) && v >= -BigInt(Number.MAX_SAFE_INTEGER))
    return Number(v);
  return v >= 0n ? '0x' + v.toString(16) : v.toString();
}

/** An integer (YAML integer or expression) for an expectation. */
function toBig(v: unknown, field: string, fail: Fail): bigint {
  if (typeof v === 'bigint') return checkDigits(v, field, fail);
  if (typeof v === 'string') {
    const r = evaluate(v);
    if ('error' in r) return fail(field, expressionError(v, r.error));
    return checkDigits(r.value, field, fail);
  }
  return fail(field, `expected an integer, got ${describe(v)}`);
}

/**
 * Convert a YAML-derived value for the trace parser: expressions become integers. A string that
 * is not an expression is an error, except in handle fields (the parser reads it as a name) and
 * `hex` fields (never evaluated).
 */
function convertValue(v: unknown, field: string, kind: Kind, fail: Fail): unknown {
  if (typeof v === 'bigint') return traceInt(v, field, fail);
  if (typeof v === 'string') {
    if (kind === 'hex') return v;
    // A TDX guest `accept` step's page size is a level name ("4K", "2M"), not a byte count.
    if (ACCEPT_SIZES.includes(v) && /(^|\.)accept\.size$/.test(field)) return v;
    if (kind === 'psc_op') {
      if (PSC_OP_NAMES.includes(v)) return v;
      // PRIVATE and SHARED are constants of other meanings (memory attributes): not operations.
      const r = PSC_OP_NAMES.includes(v.toLowerCase()) ? undefined : evaluate(v);
      if (r !== undefined && 'value' in r) return traceInt(r.value, field, fail);
      return fail(
        field,
        `${quote(v)}: expected a page-state operation (${PSC_OP_NAMES.join(', ')}) or an integer${didYouMean(v.toLowerCase(), PSC_OP_NAMES)}`,
      );
    }
    // A handle name is not an expression: no need to explain why.
    const r = evaluate(v, kind !== 'name');
    if ('value' in r) return traceInt(r.value, field, fail);
    return kind === 'name' ? v : fail(field, expressionError(v, r.error));
  }
  if (Array.isArray(v)) return v.map((x, i) => convertValue(x, `${field}[${i}]`, kind, fail));
  if (v !== null && typeof v === 'object') {
    if (!isPlainObject(v))
      return fail(field, 'a tagged YAML value (!!binary, !!set, ...) is not a scenario value');
    if (hasOwn(v, 'repeat') || hasOwn(v, 'count')) return repeatHex(v, field, fail);
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v))
      Object.defineProperty(out, k, {
        value: convertValue(x, `${field}.${fieldName(k)}`, kindOf(k), fail),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    return out;
  }
  return v;
}

/** Most bytes all the `{repeat, count}` values of one scenario may expand to. */
export const MAX_SCENARIO_REPEAT_BYTES = 64n << 20n;
/** Bytes expanded so far by the scenario being parsed (parsing is synchronous). */
let repeated = 0n;
/** Items made by the `repeat` items of the scenario being parsed. */
let repeatBudget: RepeatBudget = { made: 0 };

/** `{repeat: "aa", count: 4096}` → a hex string. */
function repeatHex(o: Record<string, unknown>, field: string, fail: Fail): string {
  for (const k of Object.keys(o))
    if (k !== 'repeat' && k !== 'count')
      fail(`${field}.${fieldName(k)}`, unknownKey(k, ['repeat', 'count']));
  const pat = o['repeat'];
  if (typeof pat !== 'string' || !/^([0-9a-fA-F]{2})+$/.test(pat))
    return fail(`${field}.repeat`, 'expected a hex byte pattern such as "aa"');
  if (!hasOwn(o, 'count')) return fail(`${field}.count`, 'missing: the number of bytes');
  const c = toBig(o['count'], `${field}.count`, fail);
  if (c < 0n || c > MAX_REPEAT_BYTES)
    return fail(`${field}.count`, 'expected a byte count up to 16 MiB');
  repeated += c;
  if (repeated > MAX_SCENARIO_REPEAT_BYTES)
    return fail(
      `${field}.count`,
      `the scenario's {repeat, count} values expand to more than ${MAX_SCENARIO_REPEAT_BYTES >> 20n} MiB in all`,
    );
  const n = Number(c);
  return pat.repeat(Math.ceil(n / (pat.length / 2))).slice(0, n * 2);
}

function parseExit(ex: unknown, at: string, fail: Fail): Record<string, unknown> {
  if (!isPlainObject(ex)) return fail(at, 'expected a map such as {reason: HLT}');
  const reason = ex['reason'];
  if (reason !== undefined && (typeof reason !== 'string' || !hasOwn(EXIT_KEYS, reason)))
    fail(
      `${at}.reason`,
      typeof reason === 'string'
        ? unknown(`exit reason ${quote(reason)}`, reason, Object.keys(EXIT_KEYS))
        : `expected an exit reason such as HLT, got ${describe(reason)}`,
    );
  const known = typeof reason === 'string' ? EXIT_KEYS[reason]! : ALL_EXIT_KEYS;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(ex)) {
    const f = `${at}.${fieldName(k)}`;
    if (k === 'reason') out[k] = v;
    else if (!known.includes(k))
      fail(
        f,
        typeof reason === 'string' && ALL_EXIT_KEYS.includes(k)
          ? `a ${reason} exit has no ${k}${known.length > 0 ? ` (it has ${known.join(', ')})` : ''}`
          : unknownKey(k, ['reason', ...known]),
      );
    else if (k === 'hex') {
      if (typeof v !== 'string' || !/^([0-9a-fA-F]{2})*$/.test(v))
        fail(f, "expected a quoted hex string such as '00000000'");
      out[k] = v.toLowerCase();
    } else if (k === 'is_write') {
      if (typeof v !== 'boolean') fail(f, 'expected true or false');
      out[k] = v;
    } else if (k === 'args') {
      if (!Array.isArray(v)) fail(f, 'expected a list of integers');
      out[k] = v.map((a, j) => toBig(a, `${f}[${j}]`, fail));
    } else out[k] = toBig(v, f, fail);
  }
  return out;
}

function parseExpect(v: unknown, fail: Fail): Expectation {
  if (v === 'ok' || v === true) return { ok: true };
  if (typeof v === 'string') {
    if (v === 'SIGBUS' || v === 'SIGSEGV') return { ok: false, fault: v };
    if (isErrnoName(v)) return { ok: false, errno: v };
    if (/^E[A-Z0-9]+$/.test(v))
      return fail(
        'expect',
        `unknown errno ${quote(v)}${didYouMean(v, Object.keys(ERRNO_NUMBERS))}`,
      );
    return fail(
      'expect',
      `${quote(v)}: expected ok, an errno name (EINVAL), SIGBUS/SIGSEGV, or a map${didYouMean(v, ['ok', 'SIGBUS', 'SIGSEGV'])}`,
    );
  }
  if (!isPlainObject(v)) return fail('expect', 'expected ok, an errno name, a signal or a map');
  const e: { -readonly [K in keyof Expectation]: Expectation[K] } = {};
  for (const [k, x] of Object.entries(v)) {
    const f = `expect.${fieldName(k)}`;
    switch (k) {
      case 'ok':
        if (typeof x !== 'boolean') fail(f, 'expected true or false');
        e.ok = x;
        break;
      case 'errno':
        if (typeof x !== 'string') fail(f, 'expected an errno name such as EINVAL');
        if (!isErrnoName(x))
          fail(f, `unknown errno ${quote(x)}${didYouMean(x, Object.keys(ERRNO_NUMBERS))}`);
        e.errno = x;
        e.ok = false;
        break;
      case 'fault':
        if (x !== 'SIGBUS' && x !== 'SIGSEGV') fail(f, 'expected SIGBUS or SIGSEGV');
        e.fault = x;
        e.ok = false;
        break;
      case 'value':
        // Hex byte strings (peek/pread results) stay strings; numbers and expressions are integers.
        if (typeof x === 'string' && /^([0-9a-fA-F]{2})*$/.test(x)) e.value = x.toLowerCase();
        else if (isPlainObject(x)) e.value = repeatHex(x, f, fail).toLowerCase();
        else if (typeof x === 'string') {
          const r = evaluate(x);
          if ('error' in r)
            fail(f, expressionError(x, r.error, "neither hex bytes such as '00ff' nor an integer"));
          e.value = checkDigits(r.value, f, fail);
        } else e.value = toBig(x, f, fail);
        break;
      case 'exits':
        if (!Array.isArray(x)) fail(f, 'expected a list of exits');
        e.exits = x.map((ex, i) => parseExit(ex, `${f}[${i}]`, fail));
        break;
      case 'remaining':
      case 'stat': {
        if (!isPlainObject(x)) fail(f, 'expected a map');
        const known = k === 'remaining' ? ['gpa', 'size'] : ['size', 'blocks'];
        const m: Record<string, bigint> = {};
        for (const [sk, sv] of Object.entries(x)) {
          if (!known.includes(sk)) fail(`${f}.${fieldName(sk)}`, unknownKey(sk, known));
          m[sk] = toBig(sv, `${f}.${sk}`, fail);
        }
        if (k === 'remaining') e.remaining = m;
        else e.stat = m;
        break;
      }
      case 'effects': {
        if (!isPlainObject(x)) fail(f, 'expected a map');
        const m: Partial<Record<EffectKey, number>> = {};
        for (const [sk, sv] of Object.entries(x)) {
          if (!(EFFECT_KEYS as readonly string[]).includes(sk))
            fail(`${f}.${fieldName(sk)}`, unknownKey(sk, EFFECT_KEYS));
          const n = toBig(sv, `${f}.${sk}`, fail);
          if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER))
            fail(`${f}.${sk}`, 'expected a count (a non-negative integer up to 2^53)');
          m[sk as EffectKey] = Number(n);
        }
        e.effects = m;
        break;
      }
      case 'exit_counts':
      case 'kvm_stats': {
        if (!isPlainObject(x)) fail(f, 'expected a map of counts');
        const known: readonly string[] =
          k === 'exit_counts' ? Object.keys(EXIT_KEYS) : KVM_VCPU_STAT_NAMES;
        const m: Record<string, number> = {};
        for (const [sk, sv] of Object.entries(x)) {
          const sf = `${f}.${fieldName(sk)}`;
          if (!known.includes(sk))
            fail(
              sf,
              k === 'exit_counts' ? unknown('exit reason', sk, known) : unknownKey(sk, known),
            );
          const n = toBig(sv, sf, fail);
          if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER))
            fail(sf, 'expected a count (a non-negative integer up to 2^53)');
          m[sk] = Number(n);
        }
        if (k === 'exit_counts') e.exit_counts = m;
        else e.kvm_stats = m;
        break;
      }
      case 'launch_digest':
        if (typeof x !== 'string' || !/^[0-9a-fA-F]{96}$/.test(x))
          fail(f, 'expected the 48-byte SNP launch digest as 96 hex digits');
        e.launch_digest = x.toLowerCase();
        break;
      case 'hw_error':
        e.hw_error = toBig(x, f, fail);
        break;
      case 'error_offset':
        e.error_offset = toBig(x, f, fail);
        break;
      case 'td':
        e.td = parseTdExpect(x, f, fail);
        break;
      case 'rmp': {
        if (!isPlainObject(x)) fail(f, 'expected a map of GPAs to RMP states');
        const list: Array<{ gpa: bigint; state: RmpStateName }> = [];
        for (const [g, st] of Object.entries(x)) {
          const gf = `${f}.${fieldName(g)}`;
          const gpa = toBig(g, gf, fail);
          if (gpa < 0n || gpa >= 1n << 64n) fail(gf, 'expected a GPA (a 64-bit value)');
          if (typeof st !== 'string' || !(RMP_STATES as readonly string[]).includes(st))
            fail(
              gf,
              typeof st === 'string'
                ? unknown('RMP state', st, RMP_STATES)
                : `expected an RMP state (${RMP_STATES.join(', ')})`,
            );
          list.push({ gpa, state: st as RmpStateName });
        }
        e.rmp = list;
        break;
      }
      case 'hugetlb':
        e.hugetlb = parseHugetlbExpect(x, f, fail);
        break;
      case 'pkvm':
        e.pkvm = Array.isArray(x)
          ? x.map((p, i) => parsePkvmExpect(p, `${f}[${i}]`, fail))
          : [parsePkvmExpect(x, f, fail)];
        break;
      case 'direct_map':
        e.direct_map = Array.isArray(x)
          ? x.map((p, i) => parseDirectMapExpect(p, `${f}[${i}]`, fail))
          : [parseDirectMapExpect(x, f, fail)];
        break;
      default:
        fail(f, unknownKey(k, EXPECT_KEYS));
    }
  }
  return e;
}

/** `expect.hugetlb`: a map of HUGETLB_KEYS. */
function parseHugetlbExpect(x: unknown, f: string, fail: Fail): HugetlbExpectation {
  if (!isPlainObject(x)) return fail(f, 'expected a map (fd, folios, levels, pool_2m, pool_1g)');
  const e: { -readonly [K in keyof HugetlbExpectation]: HugetlbExpectation[K] } = {};
  for (const [k, v] of Object.entries(x)) {
    const sf = `${f}.${fieldName(k)}`;
    switch (k) {
      case 'fd':
        if (typeof v !== 'string') fail(sf, 'expected a guest_memfd handle');
        e.fd = v;
        break;
      case 'folios':
      case 'levels': {
        if (!isPlainObject(v))
          fail(
            sf,
            k === 'folios'
              ? 'expected a map of offsets to orders'
              : 'expected a map of GPAs to levels',
          );
        const list: Array<{ at: bigint; what: string | number }> = [];
        for (const [a, w] of Object.entries(v)) {
          const af = `${sf}.${fieldName(a)}`;
          const at = toBig(a, af, fail);
          if (at < 0n || at >= 1n << 64n) fail(af, 'expected a 64-bit value');
          if (k === 'folios') {
            if (w === 'absent') list.push({ at, what: 'absent' });
            else list.push({ at, what: count(w, af, fail) });
          } else {
            if (typeof w !== 'string' || !['4K', '2M', '1G', 'none'].includes(w))
              fail(af, 'expected a mapping level: 4K, 2M, 1G or none');
            list.push({ at, what: w as string });
          }
        }
        if (k === 'folios')
          e.folios = list.map((l) => ({ offset: l.at, order: l.what as number | 'absent' }));
        else e.levels = list.map((l) => ({ gpa: l.at, level: l.what as string }));
        break;
      }
      case 'pool_2m':
      case 'pool_1g':
        e[k] = count(v, sf, fail);
        break;
      default:
        fail(sf, unknownKey(k, HUGETLB_KEYS));
    }
  }
  return e;
}

/** A count for an expectation: a non-negative integer up to 2^53. */
function count(v: unknown, f: string, fail: Fail): number {
  const n = toBig(v, f, fail);
  if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER))
    fail(f, 'expected a count (a non-negative integer up to 2^53)');
  return Number(n);
}

/** `expect.td`: a map of TD_KEYS. */
function parseTdExpect(x: unknown, f: string, fail: Fail): TdExpectation {
  if (!isPlainObject(x))
    return fail(f, 'expected a map (state, nr_premapped, bugged, dead, epoch, mrtd, sept)');
  const td: { -readonly [K in keyof TdExpectation]: TdExpectation[K] } = {};
  for (const [k, v] of Object.entries(x)) {
    const sf = `${f}.${fieldName(k)}`;
    switch (k) {
      case 'state':
        if (typeof v !== 'string' || !(TD_STATES as readonly string[]).includes(v))
          fail(
            sf,
            typeof v === 'string'
              ? unknown('TD state', v, TD_STATES)
              : `expected a TD state (${TD_STATES.join(', ')})`,
          );
        td.state = v as (typeof TD_STATES)[number];
        break;
      case 'nr_premapped':
      case 'epoch':
        td[k] = count(v, sf, fail);
        break;
      case 'bugged':
      case 'dead':
        if (typeof v !== 'boolean') fail(sf, 'expected true or false');
        td[k] = v;
        break;
      case 'mrtd':
        if (typeof v !== 'string' || !/^[0-9a-fA-F]{96}$/.test(v))
          fail(sf, 'expected the 48-byte MRTD as 96 hex digits');
        td.mrtd = v.toLowerCase();
        break;
      case 'sept': {
        if (!isPlainObject(v)) fail(sf, 'expected a map of GPAs to S-EPT entry states');
        const list: Array<{ gpa: bigint; state: SeptStateName }> = [];
        for (const [g, st] of Object.entries(v)) {
          const gf = `${sf}.${fieldName(g)}`;
          const gpa = toBig(g, gf, fail);
          if (gpa < 0n || gpa >= 1n << 64n) fail(gf, 'expected a GPA (a 64-bit value)');
          if (typeof st !== 'string' || !(SEPT_STATES as readonly string[]).includes(st))
            fail(
              gf,
              typeof st === 'string'
                ? unknown('S-EPT state', st, SEPT_STATES)
                : 'expected an S-EPT entry state such as PENDING',
            );
          list.push({ gpa, state: st as SeptStateName });
        }
        td.sept = list;
        break;
      }
      default:
        fail(sf, unknownKey(k, TD_KEYS));
    }
  }
  return td;
}

/** An address of `expect.pkvm.uaddr`: `handle`, `handle+OFFSET` or an integer (expressions too). */
function pkvmAddr(v: unknown, f: string, fail: Fail): NonNullable<PkvmExpectation['uaddr']> {
  if (typeof v === 'bigint') return { kind: 'raw', value: checkDigits(v, f, fail) };
  if (typeof v !== 'string')
    return fail(
      f,
      `expected a mapping handle (ring, ring+0x1000) or an address, got ${describe(v)}`,
    );
  const r = evaluate(v, false);
  if ('value' in r) return { kind: 'raw', value: r.value };
  const plus = v.indexOf('+');
  const name = (plus < 0 ? v : v.slice(0, plus)).trim();
  if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name))
    return fail(f, `${quote(v)}: expected a mapping handle (ring, ring+0x1000) or an address`);
  if (plus < 0) return { kind: 'handle', name, offset: 0n };
  const off = evaluate(v.slice(plus + 1));
  if ('error' in off) return fail(f, expressionError(v.slice(plus + 1).trim(), off.error));
  return { kind: 'handle', name, offset: off.value };
}

/** One entry of `expect.pkvm`: a map of PKVM_KEYS. */
function parsePkvmExpect(x: unknown, f: string, fail: Fail): PkvmExpectation {
  if (!isPlainObject(x))
    return fail(
      f,
      'expected a map (gpa or uaddr, host, hyp, guest, share_count, pins, zero; vms), or a list of them',
    );
  const p: { -readonly [K in keyof PkvmExpectation]: PkvmExpectation[K] } = {};
  const state = (v: unknown, sf: string, guest: boolean): PkvmStateName => {
    const known: readonly string[] = guest ? PKVM_GUEST_STATES : PKVM_STATES;
    if (typeof v !== 'string' || !known.includes(v))
      fail(
        sf,
        typeof v === 'string'
          ? unknown('page state', v, known)
          : `expected a page state (${known.join(', ')})`,
      );
    return v as PkvmStateName;
  };
  for (const [k, v] of Object.entries(x)) {
    const sf = `${f}.${fieldName(k)}`;
    switch (k) {
      case 'gpa': {
        const g = toBig(v, sf, fail);
        if (g < 0n || g >= 1n << 64n) fail(sf, 'expected a GPA (a 64-bit value)');
        p.gpa = g;
        break;
      }
      case 'uaddr':
        p.uaddr = pkvmAddr(v, sf, fail);
        break;
      case 'host':
      case 'hyp':
        p[k] = state(v, sf, false);
        break;
      case 'guest':
        p.guest = state(v, sf, true);
        break;
      case 'share_count':
      case 'pins':
      case 'vms':
        p[k] = count(v, sf, fail);
        break;
      case 'zero':
        if (typeof v !== 'boolean') fail(sf, 'expected true or false');
        p.zero = v;
        break;
      default:
        fail(sf, unknownKey(k, PKVM_KEYS));
    }
  }
  if (p.gpa !== undefined && p.uaddr !== undefined)
    fail(`${f}.uaddr`, 'a page is named by gpa or by uaddr, not both');
  const pageKeys = (['host', 'hyp', 'guest', 'share_count', 'pins', 'zero'] as const).filter(
    (k) => p[k] !== undefined,
  );
  if (pageKeys.length > 0 && p.gpa === undefined && p.uaddr === undefined)
    fail(`${f}.${pageKeys[0]}`, 'which page? name it with gpa (of the VM the op names) or uaddr');
  return p;
}

/** One entry of `expect.direct_map`: a map of DIRECT_MAP_KEYS. */
function parseDirectMapExpect(x: unknown, f: string, fail: Fail): DirectMapExpectation {
  if (!isPlainObject(x))
    return fail(f, 'expected a map (uaddr and present; removed), or a list of them');
  const d: { -readonly [K in keyof DirectMapExpectation]: DirectMapExpectation[K] } = {};
  for (const [k, v] of Object.entries(x)) {
    const sf = `${f}.${fieldName(k)}`;
    switch (k) {
      case 'uaddr':
        d.uaddr = pkvmAddr(v, sf, fail);
        break;
      case 'present':
        if (typeof v !== 'boolean') fail(sf, 'expected true or false');
        d.present = v;
        break;
      case 'removed':
        d.removed = count(v, sf, fail);
        break;
      default:
        fail(sf, unknownKey(k, DIRECT_MAP_KEYS));
    }
  }
  if ((d.uaddr === undefined) !== (d.present === undefined))
    fail(
      `${f}.${d.uaddr === undefined ? 'present' : 'uaddr'}`,
      'a page is asserted with both uaddr (which page) and present (in the direct map or not)',
    );
  return d;
}

/** A problem found in the YAML structure, at a node. */
class NodeProblem {
  constructor(
    readonly node: unknown,
    readonly message: string,
  ) {}
}

/**
 * Check the document before converting it: every alias names an anchor defined before it and
 * outside it, the nodes aliases add stay within MAX_ALIAS_NODES, nesting within MAX_DEPTH, and
 * keys are plain scalars. Aliases resolve as yaml resolves them (the last anchor of that name
 * before the alias, in document order).
 */
function checkStructure(root: unknown): NodeProblem | undefined {
  const latest = new Map<string, YamlNode>();
  const sizes = new Map<YamlNode, number>();
  const open = new Set<YamlNode>();
  let added = 0;
  const walk = (n: unknown, depth: number): number => {
    if (isAlias(n)) {
      const target = latest.get(n.source);
      if (target === undefined)
        throw new NodeProblem(n, `alias *${n.source} has no anchor &${n.source} before it`);
      if (open.has(target))
        throw new NodeProblem(n, `alias *${n.source} is inside the node it refers to`);
      const size = sizes.get(target) ?? 1;
      added += size;
      if (added > MAX_ALIAS_NODES)
        throw new NodeProblem(
          n,
          `aliases expand the scenario by more than ${MAX_ALIAS_NODES} nodes (an alias counts the nodes it stands for)`,
        );
      return size;
    }
    if (!isNode(n)) return 1;
    if (depth > MAX_DEPTH) throw new NodeProblem(n, `nested more than ${MAX_DEPTH} levels deep`);
    if (n.anchor !== undefined) latest.set(n.anchor, n);
    let size = 1;
    if (isMap(n) || isSeq(n)) {
      open.add(n);
      for (const it of n.items as unknown[]) {
        if (isPair(it)) {
          if (it.key !== null && !isScalar(it.key))
            throw new NodeProblem(it.key, 'a key must be a plain name, not a list, map or alias');
          size += walk(it.key, depth + 1) + walk(it.value, depth + 1);
        } else size += walk(it, depth + 1);
      }
      open.delete(n);
    }
    if (n.anchor !== undefined) sizes.set(n, size);
    return size;
  };
  try {
    walk(root, 0);
  } catch (e) {
    if (e instanceof NodeProblem) return e;
    throw e;
  }
  return undefined;
}

/** Parse a scenario file. Never throws. */
export function parseScenario(text: string, file = '<scenario>'): ParsedScenario {
  try {
    return parseScenarioText(text, file);
  } catch (e) {
    // Not reached by any known input; kept so that a bug is reported, not thrown.
    const why = e instanceof Error ? e.message : String(e);
    return { errors: [new TraceInputError(file, 1, 'scenario', `internal error: ${why}`)] };
  }
}

function parseScenarioText(text: string, file: string): ParsedScenario {
  repeated = 0n;
  repeatBudget = { made: 0 };
  const lc = new LineCounter();
  // Pretty errors quote the source around the error, which costs memory with deep nesting.
  const doc = parseDocument(text, {
    lineCounter: lc,
    intAsBigInt: true,
    uniqueKeys: true,
    prettyErrors: false,
  });
  const errors: TraceInputError[] = [];
  const lineOf = (n: unknown): number => {
    const r = isNode(n) ? n.range : undefined;
    return r ? lc.linePos(r[0]).line : 1;
  };
  const seen = new Set<string>();
  for (const e of doc.errors) {
    const m0 = e.message.split('\n')[0]!;
    const m = /call stack/i.test(m0)
      ? 'nested too deeply'
      : /multiple documents/.test(m0)
        ? 'a scenario is one YAML document (remove the second "---")'
        : m0;
    // One syntax problem can make yaml repeat an error many times: report each message once.
    if (seen.has(m)) continue;
    seen.add(m);
    errors.push(new TraceInputError(file, lc.linePos(e.pos[0]).line, 'yaml', m));
  }
  if (errors.length > 0) return { errors };
  const problem = checkStructure(doc.contents);
  if (problem !== undefined)
    return { errors: [new TraceInputError(file, lineOf(problem.node), 'yaml', problem.message)] };
  const root = doc.contents;
  if (!isMap(root))
    return {
      errors: [new TraceInputError(file, 1, 'scenario', 'expected a map with name and steps')],
    };
  const resolve = (n: unknown): unknown => (isAlias(n) ? n.resolve(doc) : n);
  /** The line of `path` (e.g. `expect.exits[1].reason`) under `start`: of its deepest key found. */
  const lineAt = (start: unknown, path: string, dflt: number): number => {
    let node = resolve(start);
    let line = dflt;
    for (const seg of path.split(/\.|(?=\[)/)) {
      if (isMap(node)) {
        const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === seg);
        if (pair === undefined) break;
        line = lineOf(pair.key);
        node = resolve(pair.value);
      } else if (isSeq(node) && /^\[\d+\]$/.test(seg)) {
        const it: unknown = node.items[Number(seg.slice(1, -1))];
        if (it === undefined) break;
        line = lineOf(it);
        node = resolve(it);
      } else break;
    }
    return line;
  };
  // Aliases are checked above (checkStructure); yaml's own count check is off.
  const top = doc.toJS({ mapAsMap: false, maxAliasCount: -1 }) as Record<string, unknown>;
  const topError = (k: string, m: string): void => {
    errors.push(new TraceInputError(file, lineAt(root, k, 1), k, m));
  };
  for (const k of Object.keys(top))
    if (!TOP_KEYS.includes(k)) topError(fieldName(k), unknownKey(k, TOP_KEYS));
  const name = top['name'];
  if (name === undefined) topError('name', 'missing scenario name');
  else if (typeof name !== 'string' || name.trim() === '')
    topError('name', 'expected a non-empty title');
  const description = top['description'];
  if (description !== undefined && typeof description !== 'string')
    topError('description', 'expected text');
  const kernel = top['kernel'];
  const kernelLine = lineOf(root.get('kernel', true));
  if (kernel !== undefined && (typeof kernel !== 'string' || kernel === ''))
    errors.push(new TraceInputError(file, kernelLine, 'kernel', 'expected a profile name'));
  const stepsNode = resolve(root.get('steps', true));
  const stepsJs = top['steps'];
  if (!isSeq(stepsNode) || !Array.isArray(stepsJs)) {
    topError('steps', 'expected a list of steps');
    return { errors };
  }
  const steps: ScenarioStep[] = [];
  const scope = new HandleScope();
  stepsNode.items.forEach((item, i) => {
    const line = lineOf(item);
    const node = resolve(item);
    try {
      const m: unknown = stepsJs[i];
      if (!isMap(node) || !isPlainObject(m))
        throw new TraceInputError(file, line, `steps[${i}]`, 'expected a map (a step)');
      steps.push(parseStep(m, file, line, (field) => lineAt(node, field, line), scope));
    } catch (e) {
      if (!(e instanceof TraceInputError)) throw e;
      errors.push(e);
    }
  });
  if (errors.length > 0) return { errors };
  const scenario: Scenario = {
    file,
    name: name as string,
    ...(typeof description === 'string' ? { description } : {}),
    ...(typeof kernel === 'string' ? { kernel, kernelLine } : {}),
    steps,
  };
  return { scenario, errors };
}

function parseStep(
  m: Record<string, unknown>,
  file: string,
  line: number,
  lineAt: (field: string) => number,
  scope: HandleScope,
): ScenarioStep {
  const failAt: Fail = (field, msg) => {
    throw new TraceInputError(file, lineAt(field), field, msg);
  };
  if (hasOwn(m, 'section')) {
    if (typeof m['section'] !== 'string') failAt('section', 'expected a heading text');
    for (const k of Object.keys(m))
      if (k !== 'section') failAt(fieldName(k), 'a section step has no other keys');
    return { kind: 'section', line, title: m['section'] };
  }
  if (hasOwn(m, 'op')) failAt('op', 'use "do" for the op name');
  const opName = m['do'];
  if (opName === undefined) failAt('do', 'missing "do" (the op to run, e.g. KVM_CREATE_VM)');
  if (typeof opName !== 'string') return failAt('do', 'expected an op name such as KVM_CREATE_VM');
  // Named `op` as in a trace (and the parser's error), at the line of `do`.
  if (!isOpName(opName))
    throw new TraceInputError(
      file,
      lineAt('do'),
      'op',
      `unknown op ${quote(opName)}${didYouMean(opName, OP_NAMES)}`,
    );
  const fields = OP_FIELDS[opName];
  for (const k of Object.keys(m))
    if (!STEP_KEYS.includes(k) && !fields.includes(k))
      failAt(fieldName(k), unknownKey(k, [...STEP_KEYS.filter((s) => s !== 'section'), ...fields]));
  const say = m['say'];
  if (say !== undefined && typeof say !== 'string') failAt('say', 'expected one line of text');
  const obj: Record<string, unknown> = { op: opName };
  // A list field such as KVM_RUN's guest program may hold repetitions (repeat.ts): expanded here,
  // and the origin of each expanded item kept to locate the trace parser's errors at their source.
  let origins: { readonly field: string; readonly list: Origin[] } | undefined;
  for (const k of fields) {
    if (!hasOwn(m, k)) continue;
    if (OPS.get(opName)?.scenarioRepeats?.includes(k) === true) {
      const convert = (v: unknown, f: string): unknown => convertValue(v, f, 'int', failAt);
      const x = new Repeater(convert, failAt, repeatBudget).guest(m[k], k);
      obj[k] = x.items;
      origins = { field: k, list: x.origins };
    } else obj[k] = convertValue(m[k], k, kindOf(k), failAt);
  }
  if (m['as'] !== undefined) obj['as'] = m['as'];
  // The process that issues the op (a handle a `fork` step bound); absent: the VMM.
  if (m['proc'] !== undefined) obj['proc'] = m['proc'];
  let op: TraceOp;
  try {
    op = parseOpObject(file, line, obj);
    // Handle names as in traces: created (with `as`) by an earlier step, of the right kind.
    scope.visit(file, op);
  } catch (e) {
    if (!(e instanceof TraceInputError)) throw e;
    // Re-locate the parser's error at the line of its field (in the source of a repeated step).
    if (origins !== undefined) {
      const s = sourceField(e.field, origins.field, origins.list);
      return failAt(s.field, e.detail + s.note);
    }
    return failAt(e.field, e.detail);
  }
  const expect = m['expect'] === undefined ? undefined : parseExpect(m['expect'], failAt);
  return {
    kind: 'op',
    line,
    ...(typeof say === 'string' ? { say } : {}),
    op,
    ...(expect ? { expect } : {}),
    ...(origins?.list.some(
      (o) => o.reps.length > 0 || o.entries?.some((x) => x.reps.length > 0),
    ) === true
      ? { repeated: true as const }
      : {}),
  };
}
