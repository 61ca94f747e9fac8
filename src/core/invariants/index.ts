/**
 * The invariant catalogue and the checker. Each invariant is its own module; this registry is
 * the only place that lists them (platform issues append theirs with an `appliesTo` predicate).
 */
import type { Host } from '../host.js';
import type { Pfn } from '../base/units.js';
import { freedPageUnmapped } from './freed_page_unmapped.js';
import { gmemSingleBinding } from './gmem_single_binding.js';
import { hostNoPrivateAccess } from './host_no_private_access.js';
import { memoryAccounting } from './memory_accounting.js';
import { noMixedHugepage } from './no_mixed_hugepage.js';
import { buildOwnership, type Ownership } from './ownership.js';
import { slotFileLive } from './slot_file_live.js';
import { stage2Coherent } from './stage2_coherent.js';
import type { CheckState, HostAccess, Invariant, Violation } from './types.js';
import { vmRefcount } from './vm_refcount.js';
import { zeroBeforeUse } from './zero_before_use.js';

export type { Focus, Invariant, Violation } from './types.js';

export const INVARIANTS: readonly Invariant[] = [
  hostNoPrivateAccess,
  stage2Coherent,
  noMixedHugepage,
  gmemSingleBinding,
  slotFileLive,
  freedPageUnmapped,
  zeroBeforeUse,
  vmRefcount,
  memoryAccounting,
];

export function invariantByName(name: string): Invariant | undefined {
  return INVARIANTS.find((i) => i.name === name);
}

/**
 * Attaches to a Host and checks every applicable invariant after each step. Host accesses and
 * stale reads are collected while the step runs (the Host's observer hook and the frame store).
 */
export class InvariantChecker {
  private accesses: HostAccess[] = [];
  readonly invariants: readonly Invariant[];

  constructor(
    readonly host: Host,
    only?: readonly string[],
  ) {
    this.invariants = INVARIANTS.filter(
      (i) => (i.appliesTo?.(host.profile) ?? true) && (only === undefined || only.includes(i.name)),
    );
    host.observe = (pfn: Pfn, write: boolean, path: HostAccess['path']): void => {
      this.accesses.push({ pfn, write, path });
    };
    host.frames.takeStaleReads();
  }

  /** Check after a step; clears the step's observations. */
  check(): Violation[] {
    const accesses = this.accesses;
    this.accesses = [];
    const staleReads = this.host.frames.takeStaleReads();
    let own: Ownership | undefined;
    const state: CheckState = {
      host: this.host,
      hostAccesses: accesses,
      staleReads,
      ownership: () => (own ??= buildOwnership(this.host)),
    };
    const out: Violation[] = [];
    for (const inv of this.invariants) for (const v of inv.check(state)) out.push(v);
    return out;
  }
}
