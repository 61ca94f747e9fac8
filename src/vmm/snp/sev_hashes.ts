/**
 * The SEV hash table of measured direct boot: the VMM puts the SHA-256 of the kernel, the initrd
 * and the command line in a GUID-headed table where OVMF expects it (the footer table's
 * SEV_HASH_TABLE_RV_GUID area); the page holding it is measured, so the launch digest covers the
 * kernel, and OVMF refuses a kernel, initrd or command line whose hash differs.
 *
 * Layout: QEMU `target/i386/sev.c` (`SevHashTable`, `PaddedSevHashTable`,
 * `build_kernel_loader_hashes`) and OVMF `OvmfPkg/AmdSev/BlobVerifierLibSevHashes`; the same
 * bytes as virtee/sev-snp-measure `sev_hashes.py`:
 *   GUID 9438d606-4f22-4cc9-b479-a793d411fd21, u16 length 168,
 *   then three entries {GUID, u16 length 50, SHA-256[32]}: cmdline, initrd, kernel,
 *   zero-padded to a multiple of 16 bytes (176).
 * The command line is hashed with its terminating NUL (an absent one as a lone NUL); an absent
 * initrd is hashed as empty.
 *
 * Pure code (no Node APIs).
 */
import { sha256 } from '../../core/base/crypto/sha256.js';
import { guidBytes } from '../firmware/guid.js';

export const SEV_HASH_TABLE_HEADER_GUID = '9438d606-4f22-4cc9-b479-a793d411fd21';
export const SEV_KERNEL_ENTRY_GUID = '4de79437-abd2-427f-b835-d5b172d2045b';
export const SEV_INITRD_ENTRY_GUID = '44baf731-3a2f-4bd7-9af1-41e29169781d';
export const SEV_CMDLINE_ENTRY_GUID = '97d02dd8-bd20-4c94-aa78-e7714d36ab2a';

const ENTRY_SIZE = 16 + 2 + 32;
/** sizeof(SevHashTable): header GUID, u16 length, three entries. */
export const SEV_HASH_TABLE_SIZE = 16 + 2 + 3 * ENTRY_SIZE;
/** sizeof(PaddedSevHashTable). */
export const SEV_PADDED_HASH_TABLE_SIZE = (SEV_HASH_TABLE_SIZE + 15) & ~15;

/** The three SHA-256 hashes the table holds. */
export interface SevKernelHashes {
  readonly kernel: Uint8Array;
  readonly initrd: Uint8Array;
  readonly cmdline: Uint8Array;
}

/** SHA-256 of the command line as the VMM hashes it: UTF-8 with its NUL (none given: a NUL). */
export function cmdlineHash(append: string | undefined): Uint8Array {
  const text = new TextEncoder().encode(append ?? '');
  const withNul = new Uint8Array(text.length + 1);
  withNul.set(text, 0);
  return sha256(withNul);
}

/** The hashes of a kernel, an initrd (undefined: none) and a command line. */
export function kernelHashes(
  kernel: Uint8Array,
  initrd: Uint8Array | undefined,
  append: string | undefined,
): SevKernelHashes {
  return {
    kernel: sha256(kernel),
    initrd: sha256(initrd ?? new Uint8Array(0)),
    cmdline: cmdlineHash(append),
  };
}

/** The padded SEV hash table (176 bytes). */
export function sevHashTable(h: SevKernelHashes): Uint8Array {
  const t = new Uint8Array(SEV_PADDED_HASH_TABLE_SIZE);
  const v = new DataView(t.buffer);
  t.set(guidBytes(SEV_HASH_TABLE_HEADER_GUID), 0);
  v.setUint16(16, SEV_HASH_TABLE_SIZE, true);
  const entries: [string, Uint8Array][] = [
    [SEV_CMDLINE_ENTRY_GUID, h.cmdline],
    [SEV_INITRD_ENTRY_GUID, h.initrd],
    [SEV_KERNEL_ENTRY_GUID, h.kernel],
  ];
  entries.forEach(([guid, hash], i) => {
    if (hash.length !== 32) throw new RangeError(`SEV hash table: a SHA-256 is 32 bytes`);
    const o = 18 + i * ENTRY_SIZE;
    t.set(guidBytes(guid), o);
    v.setUint16(o + 16, ENTRY_SIZE, true);
    t.set(hash, o + 18);
  });
  return t;
}
