/**
 * A `void __user *` ioctl argument as kernel code sees it: whether it is NULL, and the user
 * copies (`copy_from_user()`, `copy_to_user()`), which fault instead of trapping. The caller of an
 * ioctl (Host) builds it from what the VMM passed: NULL, a buffer of its own (the real backend's
 * struct), or an address in the VMM's address space (copied through the mm).
 */
export interface UserPtr {
  /** The pointer is NULL (`!argp`). */
  readonly isNull: boolean;
  /** `copy_from_user()` of `len` bytes: the bytes, or undefined when the copy faults (-EFAULT). */
  copyFromUser(len: number): Uint8Array | undefined;
  /** `copy_to_user()` of `bytes`: false when the copy faults (-EFAULT). */
  copyToUser(bytes: Uint8Array): boolean;
}

/** The u32 at byte `off` of a copied struct (x86-64: little-endian). */
export function readU32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}
