/**
 * Symbolic values a scenario may write instead of numbers: uAPI constant names (optionally
 * combined with `|`), and sizes with units ("4 KiB", "2MiB", "1G").
 */
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
  KVM_CAP,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  MADV_DONTNEED,
  MADV_REMOVE,
  MADV_POPULATE_READ,
  MADV_POPULATE_WRITE,
  MADV_COLLAPSE,
  MADV_HUGEPAGE,
  MAP_ANONYMOUS,
  MAP_FIXED,
  MAP_NORESERVE,
  MAP_POPULATE,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_EXEC,
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
} from '../core/base/uapi.js';
import {
  KVM_VM_TYPE_ARM_IPA_SIZE_MASK,
  KVM_VM_TYPE_ARM_PROTECTED,
} from '../core/base/uapi_arm64.js';
import {
  ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID,
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID,
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID,
} from '../core/platform/pkvm/hyp.js';
import { didYouMean, quote } from './suggest.js';

const C: Record<string, bigint> = {
  DEFAULT: 0n,
  KVM_X86_DEFAULT_VM: 0n,
  SW_PROTECTED: 1n,
  KVM_X86_SW_PROTECTED_VM: 1n,
  SEV: 2n,
  SEV_ES: 3n,
  SNP: 4n,
  TDX: 5n,
  /**
   * arm64 (linux-6.18-arm64-pkvm): the protected-VM flag of the type (bit 31, the 2026 series),
   * and the mask of its IPA-size byte (`ARM_PROTECTED | 40`: protected, 40-bit IPA).
   */
  ARM_PROTECTED: KVM_VM_TYPE_ARM_PROTECTED,
  KVM_VM_TYPE_ARM_PROTECTED,
  KVM_VM_TYPE_ARM_IPA_SIZE_MASK,
  GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  MMAP: GUEST_MEMFD_FLAG_MMAP,
  INIT_SHARED: GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_HUGETLB,
  HUGETLB: GUEST_MEMFD_FLAG_HUGETLB,
  GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
  NO_DIRECT_MAP: GUEST_MEMFD_FLAG_NO_DIRECT_MAP,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEM_GUEST_MEMFD,
  GUEST_MEMFD: KVM_MEM_GUEST_MEMFD,
  /** design-2023-restrictedmem (UPM v10): the bit KVM_MEM_GUEST_MEMFD took later. */
  KVM_MEM_PRIVATE: KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PRIVATE: KVM_MEMORY_ATTRIBUTE_PRIVATE,
  SHARED: 0n,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_HC_MAP_GPA_RANGE: BigInt(KVM_HC_MAP_GPA_RANGE),
  /** design-2020-protnone-follkvm (the RFC's kvm_para.h, before 12 became MAP_GPA_RANGE). */
  KVM_HC_ENABLE_MEM_PROTECTED: 12n,
  KVM_HC_MEM_SHARE: 13n,
  KVM_HC_MEM_UNSHARE: 14n,
  /** KVM_HC_MAP_GPA_RANGE attribute bit: encrypted/private. */
  KVM_MAP_GPA_RANGE_ENCRYPTED: 1n << 4n,
  KVM_MAP_GPA_RANGE_DECRYPTED: 0n,
  /** pKVM's vendor hypercalls of a protected guest (SMCCC function ids, HVC64 vendor-hyp). */
  HYP_MEMINFO: BigInt(ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID),
  MEM_SHARE: BigInt(ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID),
  MEM_UNSHARE: BigInt(ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID),
  ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID: BigInt(
    ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID,
  ),
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID: BigInt(ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID),
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID: BigInt(
    ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID,
  ),
  PROT_NONE: BigInt(PROT_NONE),
  PROT_READ: BigInt(PROT_READ),
  PROT_WRITE: BigInt(PROT_WRITE),
  PROT_EXEC: BigInt(PROT_EXEC),
  MAP_SHARED: BigInt(MAP_SHARED),
  MAP_PRIVATE: BigInt(MAP_PRIVATE),
  MAP_FIXED: BigInt(MAP_FIXED),
  MAP_ANONYMOUS: BigInt(MAP_ANONYMOUS),
  MAP_NORESERVE: BigInt(MAP_NORESERVE),
  MAP_POPULATE: BigInt(MAP_POPULATE),
  FALLOC_FL_KEEP_SIZE: BigInt(FALLOC_FL_KEEP_SIZE),
  FALLOC_FL_PUNCH_HOLE: BigInt(FALLOC_FL_PUNCH_HOLE),
  FALLOC_FL_ZERO_RANGE: BigInt(FALLOC_FL_ZERO_RANGE),
  KEEP_SIZE: BigInt(FALLOC_FL_KEEP_SIZE),
  PUNCH_HOLE: BigInt(FALLOC_FL_PUNCH_HOLE),
  MADV_DONTNEED: BigInt(MADV_DONTNEED),
  MADV_REMOVE: BigInt(MADV_REMOVE),
  MADV_POPULATE_READ: BigInt(MADV_POPULATE_READ),
  MADV_POPULATE_WRITE: BigInt(MADV_POPULATE_WRITE),
  MADV_COLLAPSE: BigInt(MADV_COLLAPSE),
  MADV_HUGEPAGE: BigInt(MADV_HUGEPAGE),
};
for (const [k, v] of Object.entries(KVM_CAP)) C[k] = BigInt(v);

export const SYMBOLS: Readonly<Record<string, bigint>> = C;

/** Size units, as the docs spell them; matched without regard to case. All are powers of 1024. */
const UNITS: Readonly<Record<string, bigint>> = {
  B: 1n,
  K: 1n << 10n,
  KB: 1n << 10n,
  KiB: 1n << 10n,
  M: 1n << 20n,
  MB: 1n << 20n,
  MiB: 1n << 20n,
  G: 1n << 30n,
  GB: 1n << 30n,
  GiB: 1n << 30n,
  T: 1n << 40n,
  TB: 1n << 40n,
  TiB: 1n << 40n,
  P: 1n << 50n,
  PiB: 1n << 50n,
};
const UNIT_BY_UPPER = new Map(Object.entries(UNITS).map(([k, v]) => [k.toUpperCase(), v]));

/** Longest number a term may have, in digits (2^128 has 39): longer ones are rejected unread. */
export const MAX_LITERAL_DIGITS = 40;

export type Evaluated = { readonly value: bigint } | { readonly error: string };

/** A token: a number with an optional unit, a name, or an operator. */
const TOKEN =
  /\s*(?:(0x[0-9a-fA-F_]*|\d[\d_]*)(?:\s*([A-Za-z][A-Za-z0-9_]*))?|([A-Za-z_][A-Za-z0-9_]*)|([|+-])|(\S))/y;

function number(text: string, unit: string | undefined): Evaluated {
  const hex = text.startsWith('0x');
  const digits = hex ? text.slice(2) : text;
  if (!(hex ? /^[0-9a-fA-F]+(_[0-9a-fA-F]+)*$/ : /^\d+(_\d+)*$/).test(digits))
    return {
      error: !/[0-9a-fA-F]/.test(digits)
        ? `${quote(text)}: no digits`
        : /_(_|$)|^_/.test(digits)
          ? `${quote(text)}: "_" goes between two digits`
          : `${quote(text)} is not a ${hex ? 'hex' : 'decimal'} number`,
    };
  if (digits.replace(/_/g, '').length > MAX_LITERAL_DIGITS)
    return { error: `number too long (at most ${MAX_LITERAL_DIGITS} digits)` };
  let mult = 1n;
  if (unit !== undefined) {
    const u = UNIT_BY_UPPER.get(unit.toUpperCase());
    if (u === undefined)
      return {
        error: `unknown unit ${quote(unit)}${didYouMean(unit, Object.keys(UNITS)) || ` (units: ${Object.keys(UNITS).join(', ')})`}`,
      };
    mult = u;
  }
  return { value: BigInt((hex ? '0x' : '') + digits.replace(/_/g, '')) * mult };
}

/**
 * Evaluate a scenario value expression: terms joined by `|` (bitwise or) or by `+` / `-`, where a
 * term is a constant name or a decimal / 0x number with an optional unit and a leading `-`.
 * Returns the value, or why the string is not an expression (the caller decides whether a string
 * that is not one may be a handle name). `explain: false` skips the did-you-mean search.
 */
export function evaluate(s: string, explain = true): Evaluated {
  const terms: bigint[] = [];
  const ops: string[] = [];
  let negate = false;
  let expectTerm = true;
  TOKEN.lastIndex = 0;
  while (TOKEN.lastIndex < s.length) {
    const at = TOKEN.lastIndex;
    const m = TOKEN.exec(s);
    if (m === null) break; // only trailing whitespace is left
    const [, num, unit, name, op, other] = m;
    if (other !== undefined) return { error: `unexpected ${quote(other)} (character ${at + 1})` };
    if (op !== undefined) {
      if (expectTerm) {
        if (op === '-' && !negate && terms.length === 0) {
          negate = true;
          continue;
        }
        return {
          error:
            terms.length === 0
              ? `expected a term before ${quote(op)}`
              : `expected a term between ${quote(ops[ops.length - 1]!)} and ${quote(op)}`,
        };
      }
      ops.push(op);
      expectTerm = true;
      continue;
    }
    if (!expectTerm)
      return { error: `expected an operator (|, + or -) before ${quote((num ?? name)!)}` };
    let v: Evaluated;
    if (num !== undefined) v = number(num, unit);
    else if (Object.prototype.hasOwnProperty.call(SYMBOLS, name!)) v = { value: SYMBOLS[name!]! };
    else
      v = {
        error: `unknown constant ${quote(name!)}${explain ? didYouMean(name!, Object.keys(SYMBOLS)) : ''}`,
      };
    if ('error' in v) return v;
    terms.push(negate ? -v.value : v.value);
    negate = false;
    expectTerm = false;
  }
  if (terms.length === 0 && !negate) return { error: 'empty expression' };
  if (expectTerm) return { error: `expected a term after ${quote(ops[ops.length - 1] ?? '-')}` };
  const or = ops.includes('|');
  if (or && ops.some((o) => o !== '|'))
    return { error: 'an expression uses either | or + and -, not both' };
  let v = terms[0]!;
  ops.forEach((o, i) => {
    const t = terms[i + 1]!;
    v = o === '|' ? v | t : o === '+' ? v + t : v - t;
  });
  return { value: v };
}

/** The value of an expression, or undefined when `s` is not one. */
export function evalExpression(s: string): bigint | undefined {
  const r = evaluate(s, false);
  return 'value' in r ? r.value : undefined;
}
