/**
 * The kernel's view of this process's address space: /proc/self/maps and the guard-region bit of
 * /proc/self/pagemap. Read fresh on every call (never cached).
 */
import { closeSync, openSync, readFileSync, readSync } from 'node:fs';

export type MapsEntry = {
  readonly start: bigint;
  readonly end: bigint;
  /** e.g. "rw-p" */
  readonly perms: string;
  readonly path: string;
};

export function readMaps(): MapsEntry[] {
  const text = readFileSync('/proc/self/maps', 'utf8');
  const out: MapsEntry[] = [];
  for (const line of text.split('\n')) {
    if (line.length === 0) continue;
    const m = /^([0-9a-f]+)-([0-9a-f]+)\s+(\S+)\s+\S+\s+\S+\s+\S+\s*(.*)$/.exec(line);
    if (m === null) continue;
    out.push({
      start: BigInt('0x' + m[1]),
      end: BigInt('0x' + m[2]),
      perms: m[3]!,
      path: m[4] ?? '',
    });
  }
  return out;
}

/** The maps entry containing `addr`, if any. */
export function mappingAt(
  addr: bigint,
  maps: readonly MapsEntry[] = readMaps(),
): MapsEntry | undefined {
  return maps.find((e) => e.start <= addr && addr < e.end);
}

/** PM_GUARD_REGION (bit 58 of a pagemap entry, Linux ≥ 6.15): the page is a MADV_GUARD_INSTALL guard. */
export function isGuardPage(addr: bigint): boolean {
  let fd: number | undefined;
  try {
    fd = openSync('/proc/self/pagemap', 'r');
    const b = Buffer.alloc(8);
    const pos = Number(addr >> 12n) * 8;
    if (readSync(fd, b, 0, 8, pos) !== 8) return false;
    return ((b.readBigUInt64LE(0) >> 58n) & 1n) === 1n;
  } catch {
    return false;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
