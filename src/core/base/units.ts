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

/** Page number of a byte address (floor). Exact for any u64. */
export function pageOf(v: bigint): number {
  return Number(v >> 12n);
}
/** Number of pages needed to cover `len` bytes (round up). */
export function pagesCeil(len: bigint): number {
  return Number((len + PAGE_MASK_N) >> 12n);
}

export function gpaToGfn(gpa: Gpa): Gfn {
  return Number(gpa >> 12n) as Gfn;
}
export function gfnToGpa(gfn: Gfn): Gpa {
  return (BigInt(gfn) << 12n) as Gpa;
}
export function hvaToHvpn(hva: Hva): Hvpn {
  return Number(hva >> 12n) as Hvpn;
}
export function hvpnToHva(p: Hvpn): Hva {
  return (BigInt(p) << 12n) as Hva;
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
