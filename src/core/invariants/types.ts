/**
 * The invariant framework. An invariant is a named security property of the model's state that
 * the kernel upholds by some mechanism; the checker evaluates every applicable invariant after
 * every step and reports violations as values (never throws). Platform work adds invariants by
 * adding modules to the registry (index.ts) with an `appliesTo` predicate.
 */
import type { Host } from '../host.js';
import type { KernelProfile } from '../profiles/profile.js';
import type { Pfn } from '../base/units.js';
import type { Ownership } from './ownership.js';

/** What a violation points at, so that explanations can describe the state around it. */
export type Focus = {
  readonly vm?: number;
  readonly gfn?: number;
  readonly ino?: number;
  readonly index?: number;
  readonly pfn?: number;
  readonly slot?: number;
};

export type Violation = {
  /** The invariant's rule name. */
  readonly invariant: string;
  /** The object it concerns, e.g. "vm0 gfn 0x80001" or "guest_memfd #105 index 0x2". */
  readonly object: string;
  readonly message: string;
  readonly focus: Focus;
};

/** Page accesses by the host during one step (VMM loads/stores, GUP, KVM uaccess). */
export type HostAccess = {
  readonly pfn: Pfn;
  readonly write: boolean;
  readonly path: 'vmm' | 'gup' | 'kvm-uaccess';
};

/** Everything an invariant may look at after a step. */
export type CheckState = {
  readonly host: Host;
  readonly hostAccesses: readonly HostAccess[];
  readonly staleReads: readonly Pfn[];
  /** Frame ownership, built on first use during a check. */
  ownership(): Ownership;
};

export interface Invariant {
  /** Short rule name; reads as the failure message ("stage2-coherent"). */
  readonly name: string;
  readonly title: string;
  /** One paragraph: what must always hold. */
  readonly statement: string;
  /** The kernel mechanism that upholds it. */
  readonly mechanism: string;
  /** Where the property comes from (spec sections, real bugs). */
  readonly origin: string;
  /** Profiles it applies to (default: all). */
  appliesTo?(p: KernelProfile): boolean;
  check(s: CheckState): Violation[];
}

export const hx = (n: number | bigint): string => '0x' + n.toString(16);
