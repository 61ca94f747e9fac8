/**
 * Branded units for addresses and page numbers.
 *
 * Byte addresses that cross the uAPI (guest-physical `Gpa`, host-virtual `Hva`, file offsets) are
 * `bigint`, because u64 wraparound checks are part of fidelity. Page-granular quantities used
 * inside the model (`Gfn`, `PgOff`, `Pfn`, host virtual page numbers `Hvpn`) are `number`: every
 * 64-bit byte address has a page number below 2^52, which a double represents exactly, and the
 * fault path stays free of bigint allocation.
 *
 * Conversions are named functions; there are no arithmetic helpers that can wrap silently.
 */

declare const unitBrand: unique symbol;
type Brand<T, B extends string> = T & { readonly [unitBrand]: B };

/** Guest-physical byte address (u64). */
export type Gpa = Brand<bigint, 'Gpa'>;
/** Host-virtual byte address (u64) in the VMM process. */
export type Hva = Brand<bigint, 'Hva'>;
/** Guest frame number: gpa >> 12. */
export type Gfn = Brand<number, 'Gfn'>;
/** Page index inside a guest_memfd file (`kvm_gmem_get_index()`): offset >> 12. */
export type PgOff = Brand<number, 'PgOff'>;
/** Model physical frame number: the identity of one 4 KiB host page. */
export type Pfn = Brand<number, 'Pfn'>;
/** Host virtual page number: hva >> 12. */
export type Hvpn = Brand<number, 'Hvpn'>;

/** The shared zero page: what a read of untouched private anonymous memory maps. */
export const ZERO_PFN = 0 as Pfn;

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 4096;
export const PAGE_SIZE_N = 4096n;
export const PAGE_MASK_N = 4095n;
export const U64_MAX = (1n << 64n) - 1n;
export const S64_MAX = (1n << 63n) - 1n;
export const U32_MAX = 0xffff_ffffn;

export const asGpa = (v: bigint): Gpa => v as Gpa;
export const asHva = (v: bigint): Hva => v as Hva;
export const asGfn = (v: number): Gfn => v as Gfn;
export const asPgOff = (v: number): PgOff => v as PgOff;
export const asPfn = (v: number): Pfn => v as Pfn;
export const asHvpn = (v: number): Hvpn => v as Hvpn;

/** Truncate to u64 (two's complement for negatives), as a C cast would. */
export function toU64(v: bigint): bigint {
  return BigInt.asUintN(64, v);
}
/** Truncate to u32, as a C cast would. */
export function toU32(v: bigint): bigint {
  return BigInt.asUintN(32, v);
}
/** Reinterpret a u64 as signed 64-bit. */
export function toS64(v: bigint): bigint {
  return BigInt.asIntN(64, v);
}
/** Reinterpret as a signed 32-bit C int. */
export function toS32(v: bigint): bigint {
  return BigInt.asIntN(32, v);
}

/** `a + b` on u64, or undefined when the sum wraps. */
export function u64CheckedAdd(a: bigint, b: bigint): bigint | undefined {
  const s = a + b;
  return s > U64_MAX ? undefined : s;
}

export function isPageAligned(v: bigint): boolean {
  return (v & PAGE_MASK_N) === 0n;
}
/**
 * Below 2^53 a non-negative bigint converts to a double exactly, and page arithmetic on doubles
 * (a division by 4096 and a floor) gives what the bigint shift and mask give, without allocating a
 * bigint: the hot paths (one guest access per KVM_RUN step) take that way. The range check is made
 * on the converted double (cheaper than bigint comparisons): a bigint of 2^53 or more converts to
 * 2^53 or more, a negative one to a negative double.
 */
const EXACT_MAX = Number.MAX_SAFE_INTEGER;
/** The byte offset of an address inside its page (`offset_in_page()`). */
export function offsetInPage(v: bigint): number {
  const n = gpaExact(v as Gpa);
  return n >= 0 ? exactGpaOffset(n) : Number(v & PAGE_MASK_N);
}
/** `PAGE_ALIGN()` of a length or address on unbounded integers (callers check for u64 overflow). */
export function pageAlignUp(v: bigint): bigint {
  return (v + PAGE_MASK_N) & ~PAGE_MASK_N;
}

/** Page number of a byte address (floor). Exact for any u64. */
export function pageOf(v: bigint): number {
  return Number(v >> 12n);
}
/** Number of pages needed to cover `len` bytes (round up). */
export function pagesCeil(len: bigint): number {
  return Number((len + PAGE_MASK_N) >> 12n);
}
/** Number of whole pages in `len` bytes (`len >> PAGE_SHIFT`), as a bigint (no precision loss). */
export function bytesToPagesN(len: bigint): bigint {
  return len >> 12n;
}
/** Byte length of `n` pages. */
export function pagesToBytes(n: number): bigint {
  return BigInt(n) << 12n;
}

// Guest-physical: gpa_to_gfn(), gfn_to_gpa().
export function gpaToGfn(gpa: Gpa): Gfn {
  const n = gpaExact(gpa);
  return n >= 0 ? exactGpaToGfn(n) : (Number(gpa >> 12n) as Gfn);
}
/**
 * The gpa as a double when that is exact (0 <= gpa < 2^53), else -1. A caller that needs both
 * the gfn and the offset converts once (a bigint-to-double conversion is a runtime call) and
 * takes them with `exactGpaToGfn` and `exactGpaOffset`; for -1 it uses `gpaToGfn` and
 * `offsetInPage`.
 */
export function gpaExact(gpa: Gpa): number {
  const n = Number(gpa);
  return n >= 0 && n <= EXACT_MAX ? n : -1;
}
/** `gpa_to_gfn()` of a gpa from `gpaExact` (not -1). */
export function exactGpaToGfn(n: number): Gfn {
  return Math.floor(n / 4096) as Gfn;
}
/** `offset_in_page()` of a gpa from `gpaExact` (not -1). */
export function exactGpaOffset(n: number): number {
  return n - Math.floor(n / 4096) * 4096;
}
export function gfnToGpa(gfn: Gfn): Gpa {
  return (BigInt(gfn) << 12n) as Gpa;
}
// Host-virtual.
export function hvaToHvpn(hva: Hva): Hvpn {
  return Number(hva >> 12n) as Hvpn;
}
export function hvpnToHva(p: Hvpn): Hva {
  return (BigInt(p) << 12n) as Hva;
}
// File offsets: a byte offset (loff_t) and its page index (pgoff_t).
export function bytesToPgOff(offset: bigint): PgOff {
  return Number(offset >> 12n) as PgOff;
}
export function pgoffToBytes(p: PgOff): bigint {
  return BigInt(p) << 12n;
}
/**
 * The vm_pgoff of a private anonymous VMA: its virtual page number, as in Linux
 * (`vma->vm_pgoff = addr >> PAGE_SHIFT`), and back (`linear_page_index()` of such a VMA).
 */
export function hvpnToPgOff(p: Hvpn): PgOff {
  return p as number as PgOff;
}
export function pgoffToHvpn(p: PgOff): Hvpn {
  return p as number as Hvpn;
}

// Page-number arithmetic: a page count added to (or the distance between) page numbers of one
// kind. Mixing kinds (a Gfn plus a Pfn) does not type-check.
export function gfnAdd(g: Gfn, n: number): Gfn {
  return (g + n) as Gfn;
}
export function gfnDiff(a: Gfn, b: Gfn): number {
  return a - b;
}
export function hvpnAdd(h: Hvpn, n: number): Hvpn {
  return (h + n) as Hvpn;
}
export function hvpnDiff(a: Hvpn, b: Hvpn): number {
  return a - b;
}
export function pfnAdd(p: Pfn, n: number): Pfn {
  return (p + n) as Pfn;
}
export function pgoffAdd(p: PgOff, n: number): PgOff {
  return (p + n) as PgOff;
}
export function pgoffDiff(a: PgOff, b: PgOff): number {
  return a - b;
}
/** The first page of the `pages`-page frame (2M: 512, 1G: 262144) holding `g` (`gfn_round_for_level()`). */
export function gfnAlignDown(g: Gfn, pages: number): Gfn {
  return (Math.floor(g / pages) * pages) as Gfn;
}
export function gfnAlignUp(g: Gfn, pages: number): Gfn {
  return (Math.ceil(g / pages) * pages) as Gfn;
}
export function hvpnAlignDown(h: Hvpn, pages: number): Hvpn {
  return (Math.floor(h / pages) * pages) as Hvpn;
}
export function hvpnAlignUp(h: Hvpn, pages: number): Hvpn {
  return (Math.ceil(h / pages) * pages) as Hvpn;
}
/** A byte address rounded down to a page boundary. */
export function gpaAlignDown(gpa: Gpa): Gpa {
  return (gpa & ~PAGE_MASK_N) as Gpa;
}
export function hvaAlignDown(hva: Hva): Hva {
  return (hva & ~PAGE_MASK_N) as Hva;
}
/** A byte address plus a byte count (no wrap check: callers check u64 overflow where the kernel does). */
export function gpaAdd(gpa: Gpa, bytes: bigint): Gpa {
  return (gpa + bytes) as Gpa;
}
export function hvaAdd(hva: Hva, bytes: bigint): Hva {
  return (hva + bytes) as Hva;
}

/** Format a bigint or number as 0x-hex. */
export function hex(v: bigint | number): string {
  return '0x' + v.toString(16);
}

/** Levels of a stage-2 mapping, as page counts. */
export const LEVEL_4K = 1;
export const LEVEL_2M = 512;
export const LEVEL_1G = 512 * 512;
export type MappingLevel = '4K' | '2M' | '1G';
export const LEVEL_PAGES: Record<MappingLevel, number> = { '4K': 1, '2M': 512, '1G': 262144 };
