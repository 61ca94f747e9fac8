/**
 * Where trace mappings live in the VMM's address space. Both backends place every successful
 * mmap at the same deterministic address (trace contract: addresses grow upwards, each mapping
 * 2 MiB aligned with at least one unmapped page after it, never reused after munmap), so raw
 * addresses and stale handles behave identically on the model and on a real /dev/kvm.
 *
 * The arena [MMAP_ARENA_BASE, MMAP_ARENA_END) is reserved for the trace: a mapping that would not
 * fit below MMAP_ARENA_END fails with ENOMEM on every backend.
 */

import { MAP_HUGETLB } from '../base/uapi.js';
import { pageAlignUp } from '../base/units.js';

/**
 * 64 TiB: above every address V8 picks for its heap pages (random hints below 2^46), far below
 * the kernel's top-down mmap area (just under 128 TiB), far above the executable and brk heap.
 */
export const MMAP_ARENA_BASE = 0x4000_0000_0000n;
/** 112 TiB. */
export const MMAP_ARENA_END = 0x7000_0000_0000n;
export const MMAP_ALIGN = 0x20_0000n;

/** x86-64 4-level paging: highest user address + 1 (TASK_SIZE_MAX). */
export const TASK_SIZE_MAX = 0x7fff_ffff_f000n;

/** Page-rounded length of a mapping request (size_t arithmetic; undefined when it overflows). */
export function mmapRoundLength(length: bigint): bigint | undefined {
  const r = pageAlignUp(length);
  return r > 0xffff_ffff_ffff_ffffn ? undefined : r;
}

/**
 * ksys_mmap_pgoff(): the huge page size an anonymous MAP_HUGETLB request selects with its
 * MAP_HUGE_* field (bits 26-31, log2 of the size; hstate_sizelog(): 0 is the default 2 MiB; x86-64
 * registers 2 MiB and, with gbpages, 1 GiB), or undefined for a size with no hstate (EINVAL).
 */
export function hugetlbPageSize(flags: number): bigint | undefined {
  const log = (flags >>> 26) & 0x3f;
  if (log === 0 || log === 21) return 1n << 21n;
  if (log === 30) return 1n << 30n;
  return undefined;
}

/**
 * The length a mapping request occupies: page-rounded, or rounded to the huge page size for an
 * anonymous MAP_HUGETLB request (ksys_mmap_pgoff() aligns len before do_mmap() places it).
 */
export function mmapPlacedLength(
  length: bigint,
  flags: number,
  anonymous: boolean,
): bigint | undefined {
  const huge = anonymous && (flags & MAP_HUGETLB) !== 0 ? hugetlbPageSize(flags) : undefined;
  if (huge === undefined) return mmapRoundLength(length);
  const r = (length + huge - 1n) & ~(huge - 1n);
  return r > 0xffff_ffff_ffff_ffffn ? undefined : r;
}

/** The address after a mapping `[addr, addr+len)`: one unmapped guard page, then 2 MiB alignment. */
export function nextArenaCursor(addr: bigint, roundedLen: bigint): bigint {
  const afterGuard = addr + roundedLen + 4096n;
  return (afterGuard + MMAP_ALIGN - 1n) & ~(MMAP_ALIGN - 1n);
}
