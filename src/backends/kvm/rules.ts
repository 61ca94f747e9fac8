/**
 * The real-KVM backend's refusal rules, as pure functions of a resolved op and an environment
 * (`RefusalEnv`) that says what the rules need to know about the trace and the process.
 *
 * Both layers use exactly this code: `KvmBackend.exec()` asks `kvmRefusalOf()` (src/ops/registry.ts:
 * each op family declares its rule with these functions) before running each op
 * with the live state (arena bookkeeping, /proc/self/maps, fstat of the real fd), and
 * `precheckTrace()` (precheck.ts) asks it before the op runs on a model replay of the trace, with
 * the model's view of the same state. The reason strings are the BackendRefusal messages.
 */
import {
  MMAP_ARENA_BASE,
  MMAP_ARENA_END,
  TASK_SIZE_MAX,
  mmapPlacedLength,
} from '../../core/mm/host_layout.js';
import { MAP_ANONYMOUS } from '../../core/base/uapi.js';
import type { ResolvedFd } from '../../trace/base_types.js';
import type { Interval } from './arena.js';
import { cInt, cU64 } from './libc.js';
import type { MapsEntry } from './maps.js';

/** Lowest address the kernel ever maps (vm.mmap_min_addr on this machine is 4096; 64 KiB is safe). */
export const MIN_MAPPABLE = 0x10000n;
export const PAGE = 4096n;

const MAP_POPULATE = 0x8000;
const MAP_LOCKED = 0x2000;
const FALLOC_FL_KEEP_SIZE = 1;

/**
 * Most real memory one op may make the kernel allocate: fallocate allocation, MAP_POPULATE or
 * MAP_LOCKED, MADV_POPULATE_*. Larger requests are refused (the model runs them as ranges; the
 * real machine would swap or invoke the OOM killer).
 */
export const MAX_POPULATE_BYTES = 1n << 30n;

export const ceilPage = (v: bigint): bigint => (v + PAGE - 1n) & ~(PAGE - 1n);
export const floorPage = (v: bigint): bigint => v & ~(PAGE - 1n);
const hex = (v: bigint): string => '0x' + v.toString(16);

/**
 * An address field of a resolved op. The runner resolves every address to a u64 bigint; the
 * static type of ResolvedOp's address fields may say otherwise, so check at run time.
 */
export function addrOf(v: unknown): bigint {
  if (typeof v === 'bigint') return v;
  throw new TypeError(`KvmBackend: expected a resolved address (bigint), got ${typeof v}`);
}

/** What the rules need to know, at the moment the op is about to run. */
export interface RefusalEnv {
  /** The arena address the next successful mmap gets. */
  readonly cursor: bigint;
  /** Parts of the arena held by memory of the backend process (no trace op may touch them). */
  readonly foreign: { intersects(s: bigint, e: bigint): boolean };
  /** The trace's own mappings (mmapped and not munmapped): sorted, disjoint. */
  readonly traceMapped: readonly Interval[];
  /** The process's mappings (/proc/self/maps); only entries outside the arena matter. */
  maps(): readonly MapsEntry[];
  /** st_size of the file a file op's fd argument names, undefined when that fd is not open. */
  fileSize(fd: ResolvedFd): bigint | undefined;
}

/**
 * A memslot request that kvm_set_memory_region() rejects (EINVAL) before any slot exists, so its
 * userspace_addr range can never be reached by a guest and needs no safety check: a slot id or
 * address space out of range, an unaligned size, GPA or userspace_addr, a userspace range that
 * fails access_ok(), a GPA range that wraps, or more than KVM_MEM_MAX_NR_PAGES pages.
 */
export function slotRejectedEarly(
  op: { slot: bigint; guest_phys_addr: bigint; memory_size: bigint },
  ua: bigint,
): boolean {
  const size = cU64(op.memory_size);
  const gpa = cU64(op.guest_phys_addr);
  const slot = cU64(op.slot) & 0xffff_ffffn;
  return (
    slot >> 16n !== 0n ||
    (slot & 0xffffn) >= 32764n ||
    (size | gpa | ua) % PAGE !== 0n ||
    size > TASK_SIZE_MAX ||
    ua > TASK_SIZE_MAX - size ||
    gpa + size > 0xffff_ffff_ffff_ffffn ||
    size >> 12n > 0x7fff_ffffn
  );
}

/**
 * The safety rule for an address range [start, end) an op would hand to the kernel: the reason
 * to refuse it when it could touch the backend process's own memory, else undefined. Ranges inside
 * the arena are the trace's, except its foreign parts; outside the arena every mapping is the
 * process's own (Node, V8, libc, and the backend's kvm_run areas, code page and pread buffer).
 */
export function rangeRefusal(
  start: bigint,
  end: bigint,
  what: string,
  env: Pick<RefusalEnv, 'foreign' | 'maps'>,
): string | undefined {
  if (end <= start) return undefined;
  if (end <= MIN_MAPPABLE || start >= TASK_SIZE_MAX) return undefined;
  const refuse = (why: string): string =>
    `${what}: range [${hex(start)}, ${hex(end)}) ${why}; refusing to run it`;
  if (env.foreign.intersects(start, end))
    return refuse('overlaps memory of the backend process inside the trace arena');
  if (start >= MMAP_ARENA_BASE && end <= MMAP_ARENA_END) return undefined;
  for (const m of env.maps()) {
    // The arena part of an entry is the trace's own (its mappings or our reservation); only
    // what lies outside the arena can be memory of the Node process.
    const pieces: [bigint, bigint][] = [
      [m.start, m.end < MMAP_ARENA_BASE ? m.end : MMAP_ARENA_BASE],
      [m.start > MMAP_ARENA_END ? m.start : MMAP_ARENA_END, m.end],
    ];
    for (const [s, e] of pieces)
      if (s < e && s < end && start < e)
        return refuse(
          `overlaps a mapping of the backend process (${hex(m.start)}-${hex(m.end)} ${m.perms} ${m.path})`,
        );
  }
  return undefined;
}

/**
 * Where an mmap goes: ENOMEM when the placed length overflows or does not fit below the arena end
 * (no refusal: the backend returns the error without calling the kernel), else the arena slot at
 * the cursor and the reason to refuse the call, if any.
 */
export type MmapPlan =
  | { readonly enomem: true }
  | {
      readonly enomem: false;
      readonly addr: bigint;
      readonly rounded: bigint;
      readonly refusal: string | undefined;
    };

/**
 * The backend's mmap placement and its two refusals. The mapping is anonymous when the trace
 * passed fd null (the backend adds MAP_ANONYMOUS) or set MAP_ANONYMOUS itself, whatever its fd:
 * ksys_mmap_pgoff() then ignores the fd, and an anonymous MAP_HUGETLB length is rounded to the
 * huge page size, as the model does.
 */
export function planMmap(
  cursor: bigint,
  length: bigint,
  flags: bigint,
  fdIsNull: boolean,
  foreign: RefusalEnv['foreign'],
): MmapPlan {
  const fl = cInt(flags);
  const anonymous = fdIsNull || (fl & MAP_ANONYMOUS) !== 0;
  const rounded = mmapPlacedLength(cU64(length), fl, anonymous);
  const addr = cursor;
  if (rounded === undefined || addr + rounded > MMAP_ARENA_END) return { enomem: true };
  let refusal: string | undefined;
  if (foreign.intersects(addr, addr + rounded))
    refusal = `mmap: the arena slot at ${hex(addr)} is occupied by the backend process's own memory`;
  else if ((fl & (MAP_POPULATE | MAP_LOCKED)) !== 0 && rounded > MAX_POPULATE_BYTES)
    refusal = `mmap: populating ${rounded} bytes of real memory exceeds the backend's 1 GiB limit`;
  return { enomem: false, addr, rounded, refusal };
}

/**
 * A range of munmap / mprotect / madvise that wraps past 2^64: the kernel's argument checks reject
 * it before any VMA is touched (munmap EINVAL, mprotect ENOMEM, madvise EINVAL).
 */
export function vmaRangeWraps(addr: bigint, length: bigint): boolean {
  return addr + ceilPage(cU64(length)) > 0xffff_ffff_ffff_ffffn;
}

/**
 * How many bytes a fallocate could allocate. Only guest_memfd files of the trace allocate, and
 * only with exactly FALLOC_FL_KEEP_SIZE, page-aligned offset and length, inside i_size
 * (kvm_gmem_fallocate(); every other call fails before allocating): those bytes, else 0. Pages
 * already allocated are counted too (an upper bound). `size` is asked last, only when needed.
 */
export function fallocateAllocates(
  mode: number,
  offset: bigint,
  len: bigint,
  size: () => bigint | undefined,
): bigint {
  if (mode !== FALLOC_FL_KEEP_SIZE || offset < 0n || len <= 0n) return 0n;
  if ((offset | len) % PAGE !== 0n) return 0n;
  const s = size();
  return s !== undefined && offset + len <= s ? len : 0n;
}
