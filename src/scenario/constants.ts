/**
 * Symbolic values a scenario may write instead of numbers: uAPI constant names (optionally
 * combined with `|`), and sizes with units ("4 KiB", "2MiB", "1G").
 */
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
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
} from '../core/uapi.js';

const C: Record<string, bigint> = {
  DEFAULT: 0n,
  KVM_X86_DEFAULT_VM: 0n,
  SW_PROTECTED: 1n,
  KVM_X86_SW_PROTECTED_VM: 1n,
  SEV: 2n,
  SEV_ES: 3n,
  SNP: 4n,
  TDX: 5n,
  GUEST_MEMFD_FLAG_MMAP,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  MMAP: GUEST_MEMFD_FLAG_MMAP,
  INIT_SHARED: GUEST_MEMFD_FLAG_INIT_SHARED,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEM_GUEST_MEMFD,
  GUEST_MEMFD: KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  PRIVATE: KVM_MEMORY_ATTRIBUTE_PRIVATE,
  SHARED: 0n,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_HC_MAP_GPA_RANGE: BigInt(KVM_HC_MAP_GPA_RANGE),
  /** KVM_HC_MAP_GPA_RANGE attribute bit: encrypted/private. */
  KVM_MAP_GPA_RANGE_ENCRYPTED: 1n << 4n,
  KVM_MAP_GPA_RANGE_DECRYPTED: 0n,
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

const UNITS: Record<string, bigint> = {
  '': 1n,
  B: 1n,
  K: 1024n,
  KB: 1024n,
  KIB: 1024n,
  M: 1n << 20n,
  MB: 1n << 20n,
  MIB: 1n << 20n,
  G: 1n << 30n,
  GB: 1n << 30n,
  GIB: 1n << 30n,
  T: 1n << 40n,
  TB: 1n << 40n,
  TIB: 1n << 40n,
  P: 1n << 50n,
  PIB: 1n << 50n,
};

/** One term: a number (decimal or 0x), optionally with a size unit, or a symbol. */
function term(t: string): bigint | undefined {
  const s = t.trim();
  if (s.length === 0) return undefined;
  if (Object.prototype.hasOwnProperty.call(C, s)) return C[s];
  const m = /^(-?)(0x[0-9a-fA-F_]+|\d[\d_]*)\s*([A-Za-z]*)$/.exec(s);
  if (!m) return undefined;
  const unit = UNITS[m[3]!.toUpperCase()];
  if (unit === undefined) return undefined;
  const n = BigInt(m[2]!.replace(/_/g, ''));
  return (m[1] === '-' ? -n : n) * unit;
}

/**
 * Evaluate a scenario value expression: terms joined by `|` (bitwise or) or `+` / `-` (between
 * sizes). Returns undefined when the string is not an expression (it is then a handle name).
 */
export function evalExpression(s: string): bigint | undefined {
  if (s.includes('|')) {
    let v = 0n;
    for (const part of s.split('|')) {
      const t = term(part);
      if (t === undefined) return undefined;
      v |= t;
    }
    return v;
  }
  // a + b - c (sizes and offsets)
  const parts = s
    .split(/(?=[+-])|(?<=[+-])/)
    .map((x) => x.trim())
    .filter((x) => x.length > 0);
  if (
    parts.length > 1 &&
    parts.every((p, i) => (i % 2 === 1 ? p === '+' || p === '-' : term(p) !== undefined))
  ) {
    let v = term(parts[0]!)!;
    for (let i = 1; i < parts.length; i += 2) {
      const t = term(parts[i + 1]!)!;
      v = parts[i] === '+' ? v + t : v - t;
    }
    return v;
  }
  return term(s);
}
