/**
 * Refusals up front: decide, before a trace runs on the real-KVM backend, whether the backend
 * would refuse one of its ops (BackendRefusal), and which.
 *
 * The trace is replayed on a fresh model of the given kernel profile through the runner's handle
 * table. The model places every mapping at the contract address the backend uses (host_layout.ts),
 * so every op resolves to the same addresses as on the real backend, and the model's results say
 * which creating ops succeed. Before each op runs on the model, the backend's own rules
 * (rules.ts `refusalOf`, the code KvmBackend.exec() runs) are applied to the resolved op with an
 * environment built from the model's view instead of live state:
 *
 * - cursor and trace mappings: the backend's bookkeeping (KvmBackend.mmap / vmaOp) replayed from
 *   the model's results: a successful mmap takes `planMmap()`'s slot, a successful munmap removes
 *   its page-rounded range.
 * - fstat size for fallocate: the model file's st_size (a guest_memfd's i_size, fixed at creation).
 * - process maps: /proc/self/maps, read once; the arena's foreign parts are the backend's own set
 *   when a KvmBackend already holds the arena reservation, else every mapping inside the arena now
 *   (what the reservation will find taken).
 *
 * Decided exactly (same answer as the run, provided the model gives the real kernel's results for
 * the earlier ops, i.e. `profile` matches the machine): madvise HWPOISON / SOFT_OFFLINE, the
 * memslot and munmap / mprotect / madvise / peek / poke ranges with the slotRejectedEarly()
 * exemption, the arena-slot-occupied and MAP_POPULATE / MAP_LOCKED mmap rules,
 * MADV_POPULATE_*, and fallocate. The last two are conservative rules of the backend itself
 * (populate counts every trace-mapped byte in the range, fallocate every byte inside i_size,
 * allocated or not); precheck applies them unchanged, so it refuses exactly what the backend does.
 *
 * Not decidable up front, left to the run-time checks (which stay in KvmBackend.exec()): mappings
 * the process makes after the precheck (V8 growth, the backend's own kvm_run areas, code page and
 * pread buffer at kernel-chosen addresses outside the arena) and arena pieces that become foreign while the
 * trace runs. No trace can name such addresses deliberately, but a wide raw range may hit one.
 */
import { MMAP_ARENA_BASE, MMAP_ARENA_END } from '../../core/mm/host_layout.js';
import type { KernelProfile } from '../../core/profiles/profile.js';
import { HandleTable, resolveOp, stepTrace } from '../../trace/runner.js';
import type { TraceOp } from '../../trace/types.js';
import { ModelBackend, fileFd } from '../model.js';
import { IntervalSet, arena } from './arena.js';
import { kvmRefusalOf, OPS } from '../../ops/registry.js';
import type { ArenaBook } from '../../ops/spec.js';
import { readMaps, type MapsEntry } from './maps.js';
import type { RefusalEnv } from './rules.js';

export type Refusal = { readonly line: number; readonly op: string; readonly reason: string };

/** The parts of the arena that mappings of this process occupy now. */
function arenaOccupants(maps: readonly MapsEntry[]): IntervalSet {
  const set = new IntervalSet();
  for (const m of maps) {
    const s = m.start > MMAP_ARENA_BASE ? m.start : MMAP_ARENA_BASE;
    const e = m.end < MMAP_ARENA_END ? m.end : MMAP_ARENA_END;
    set.add(s, e);
  }
  return set;
}

/**
 * Decide before running `ops` on the kvm backend whether it would refuse any of them: the first op
 * it would refuse (its source line, name, and the BackendRefusal message the run would give), or
 * undefined. Needs no /dev/kvm: it runs `ops` on a ModelBackend of `profile` and reads
 * /proc/self/maps.
 */
export function precheckTrace(
  ops: readonly TraceOp[],
  profile: KernelProfile,
): Refusal | undefined {
  let maps: readonly MapsEntry[] | undefined;
  const procMaps = (): readonly MapsEntry[] => (maps ??= readMaps());
  const foreign = arena.reserved ? arena.foreign : arenaOccupants(procMaps());
  const traceMapped = new IntervalSet();
  const book: ArenaBook = { cursor: MMAP_ARENA_BASE, traceMapped, foreign };

  const model = new ModelBackend(profile, { events: false });
  const table = new HandleTable(model.begin());
  const env: RefusalEnv = {
    get cursor() {
      return book.cursor;
    },
    foreign,
    get traceMapped() {
      return traceMapped.list;
    },
    maps: procMaps,
    fileSize: (f) => {
      const r = model.host.fstat(fileFd(f));
      return r.ok ? r.value.size : undefined;
    },
  };
  try {
    for (const op of ops) {
      const resolved = resolveOp(op, table);
      const reason = kvmRefusalOf(resolved, env);
      if (reason !== undefined) return { line: op.line, op: op.op, reason };
      const result = stepTrace(op, model, table);
      if (!result.ok) continue;
      // The backend's bookkeeping after a successful op (the op family's mmap and munmap).
      const spec = OPS.get(resolved.op)!;
      if (spec.kvmArena !== undefined) spec.kvmArena(resolved, book);
    }
  } finally {
    model.end();
  }
  return undefined;
}
