/**
 * The kernel's view of this process's address space: /proc/self/maps and the guard-region bit of
 * /proc/self/pagemap. Read fresh on every call (never cached).
 *
 * `readMaps()` opens the file for each call (start-up, the up-front refusal check). While a trace
 * runs the backend reads both files through `ProcFiles`, whose descriptors are opened once when
 * the trace begins, so a trace that uses up every descriptor of the process cannot keep the
 * backend from classifying a fault or checking a range.
 */
import { readFileSync } from 'node:fs';
import { errnoName } from '../../core/base/errno.js';
import { BackendRefusal } from '../../trace/base_types.js';
import { O_CLOEXEC, libc } from './libc.js';

export type MapsEntry = {
  readonly start: bigint;
  readonly end: bigint;
  /** e.g. "rw-p" */
  readonly perms: string;
  readonly path: string;
};

export function readMaps(): MapsEntry[] {
  return parseMaps(readFileSync('/proc/self/maps', 'utf8'));
}

function parseMaps(text: string): MapsEntry[] {
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

const O_RDONLY = 0;
/** PM_GUARD_REGION (Linux >= 6.15): the page is a MADV_GUARD_INSTALL guard. */
const PM_GUARD_REGION_BIT = 58n;
/** ENOMEM, ENFILE, EMFILE: the process or the system is out of memory or descriptors. */
const RESOURCE_ERRNOS = new Set([12, 23, 24]);

/**
 * /proc/self/maps and /proc/self/pagemap opened once (O_CLOEXEC) and read with pread(2) from
 * offset 0 on each call: seq_read_iter() restarts the walk of the VMAs at position 0, so every
 * read is a fresh snapshot, and no read needs a new descriptor.
 */
export class ProcFiles {
  private readonly buf = Buffer.alloc(64 * 1024);
  private readonly entry = Buffer.alloc(8);

  private constructor(
    private readonly mapsFd: number,
    private readonly pagemapFd: number,
  ) {}

  /** Open both files, or the failing one's path and errno (nothing stays open then). */
  static open(): ProcFiles | { readonly path: string; readonly errno: number } {
    const c = libc();
    const maps = c.open('/proc/self/maps', O_RDONLY | O_CLOEXEC);
    if (maps.ret < 0) return { path: '/proc/self/maps', errno: maps.errno };
    // pagemap may be closed to this process by policy; then no page is taken for a guard page
    // (as before guard regions existed). Running out of descriptors or memory is a failure.
    const pagemap = c.open('/proc/self/pagemap', O_RDONLY | O_CLOEXEC);
    if (pagemap.ret < 0 && RESOURCE_ERRNOS.has(pagemap.errno)) {
      c.close(maps.ret);
      return { path: '/proc/self/pagemap', errno: pagemap.errno };
    }
    return new ProcFiles(maps.ret, pagemap.ret);
  }

  /** The current /proc/self/maps. A read error (ENOMEM in the seq_file buffer) is a refusal. */
  maps(): MapsEntry[] {
    const c = libc();
    let text = '';
    for (let pos = 0n; ;) {
      const r = c.pread(this.mapsFd, this.buf, BigInt(this.buf.length), pos);
      if (r.ret < 0n)
        throw new BackendRefusal(
          `cannot read /proc/self/maps: ${errnoName(r.errno)}; the backend cannot check this op`,
        );
      if (r.ret === 0n) break;
      text += this.buf.toString('latin1', 0, Number(r.ret));
      pos += r.ret;
    }
    return parseMaps(text);
  }

  /** PM_GUARD_REGION of the page at `addr` (bit 58 of its pagemap entry; false when unreadable). */
  isGuardPage(addr: bigint): boolean {
    if (this.pagemapFd < 0) return false;
    const r = libc().pread(this.pagemapFd, this.entry, 8n, (addr >> 12n) * 8n);
    if (r.ret !== 8n) return false;
    return ((this.entry.readBigUInt64LE(0) >> PM_GUARD_REGION_BIT) & 1n) === 1n;
  }

  close(): void {
    const c = libc();
    c.close(this.mapsFd);
    if (this.pagemapFd >= 0) c.close(this.pagemapFd);
  }
}
