/**
 * The invariant framework. An invariant is a named security property of the model's state that
 * the kernel upholds by some mechanism; the checker evaluates every applicable invariant after
 * every step and reports violations as values (never throws). Platform work adds invariants by
 * adding modules to the registry (index.ts) with an `appliesTo` predicate.
 */
import type { PscObservation } from '../ctx.js';
import type { Host } from '../host.js';
import type { KernelProfile } from '../profiles/profile.js';
import type { Pfn } from '../base/units.js';
import type { Ownership } from './ownership.js';
import type { Memslot, Spte, Vm } from '../kvm/objects.js';
import type { HostAccessPath } from '../platform/platform.js';

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

/**
 * The empty result shared by checks that found nothing (never mutated: a check that finds a
 * violation returns an array of its own).
 */
export const NO_VIOLATIONS: Violation[] = [];

/** Page accesses by the host during one step (VMM loads/stores, GUP, KVM uaccess). */
export type HostAccess = {
  readonly pfn: Pfn;
  readonly write: boolean;
  readonly path: HostAccessPath;
  /**
   * On a platform with per-frame state (SEV-SNP): whether the platform refused the access, and
   * whether the frame was assigned to a guest when it was made (absent on other platforms).
   */
  readonly refused?: boolean;
  readonly assigned?: boolean;
  /** The frames' release-log position when the access was made (the checker's). */
  readonly mark?: number;
  /**
   * The frame was released after the access, in the same step, and may have another owner by
   * the time the step is checked: checks of the owner as it is then do not apply to it (set by
   * the checker before the invariants run).
   */
  freedLater?: boolean;
};

/** A completed SEV-SNP guest access with the C-bit set, as the RMP was when it happened. */
export type GuestPrivateAccess = {
  readonly vm: number;
  readonly gfn: number;
  readonly pfn: number;
  readonly write: boolean;
  readonly assigned: boolean;
  readonly asid: number;
  readonly guestAsid: number;
  readonly validated: boolean;
  /** The entry's GPA (RMP.GPA) when the access happened. */
  readonly gpa: bigint;
};

/** A completed SEV-SNP PVALIDATE: the entry's validated bit before it, and what it returned. */
export type PvalidateRecord = {
  readonly vm: number;
  readonly gfn: number;
  readonly pfn: number;
  readonly validate: boolean;
  readonly before: boolean;
  readonly ret: number;
  readonly cf: number;
};

/** A PSC descriptor request of an SEV-SNP guest (the PSC NAE event), as KVM handled it. */
export type PscRecord = PscObservation & { readonly vm: number };

/**
 * What a TD guest did during a step, in order (`KernelCtx.tdxGuestObserver`): a completed access
 * (`shared`: through a shared-bit GPA; `septState`: the S-EPT leaf state of the gfn when it
 * happened), a TDG.MEM.PAGE.ACCEPT (status, S-EPT state before and after), a completed
 * TDG.VP.VMCALL<MapGPA> (its KVM_HC_MAP_GPA_RANGE exits and TDVMCALL status).
 */
export type TdxGuestRecord =
  | {
      readonly kind: 'access';
      readonly vm: number;
      readonly gfn: number;
      readonly pfn: number;
      readonly write: boolean;
      readonly shared: boolean;
      readonly septState: string;
      /** A private access: the frame the S-EPT leaf maps at the gfn (-1: none). */
      readonly septPfn?: number;
    }
  | {
      readonly kind: 'accept';
      readonly vm: number;
      readonly gfn: number;
      readonly level: number;
      readonly status: bigint;
      readonly before: string;
      readonly after: string;
    }
  | {
      readonly kind: 'map_gpa';
      readonly vm: number;
      readonly gpa: bigint;
      readonly size: bigint;
      readonly exits: readonly {
        readonly args: readonly [bigint, bigint, bigint];
        readonly ret: bigint;
      }[];
      readonly status: bigint;
    };

/** Everything an invariant may look at after a step. */
export type CheckState = {
  readonly host: Host;
  readonly hostAccesses: readonly HostAccess[];
  readonly staleReads: readonly Pfn[];
  /** SEV-SNP guests' private accesses and PVALIDATEs during the step (empty elsewhere). */
  readonly guestAccesses: readonly GuestPrivateAccess[];
  readonly pvalidates: readonly PvalidateRecord[];
  /** SEV-SNP guests' PSC descriptor requests during the step (empty elsewhere). */
  readonly pscs: readonly PscRecord[];
  /** TD guests' accesses, ACCEPTs and MapGPAs during the step, in order (empty elsewhere). */
  readonly tdxGuest: readonly TdxGuestRecord[];
  /** Frame ownership, built on first use during a check. */
  ownership(): Ownership;
  /** Start of the first owner extent (in pfn order) with a frame on the free list, if any. */
  ownedOnFree(): number | undefined;
  /**
   * The VM's stage-2 mappings as `forEachMapping` visits them, listed once for all the checks
   * of the VM in this check (the change-driven checker); without it, each check walks them.
   */
  mappings?(vm: Vm): readonly Mapping[];
  /**
   * The frames released during the step, as (base, count) pairs (the change-driven checker;
   * a full check has none and reads the whole state).
   */
  releasedRanges?(): readonly number[];
};

/** One stage-2 extent clipped to a memslot (`slot` undefined outside every memslot). */
export type Mapping = {
  readonly as: number;
  readonly start: number;
  readonly end: number;
  readonly spte: Spte;
  readonly slot: Memslot | undefined;
};

/**
 * The per-VM form of an invariant, for the change-driven checker (index.ts): `check()` equals
 * `vm()` over every VM in creation order (`vms: 'live'`: the host's live VMs, `'all'`: destroyed
 * ones too), followed by `host()`. The checker re-runs `vm()` only for the VMs an op could
 * have changed.
 */
export type PerVm = {
  readonly vms: 'live' | 'all';
  /**
   * Reads the VM's stage-2 mappings (and what they point at): re-run only when one of the VM's
   * maps, or a range they read, changed. Otherwise it is re-run only when an op used the VM's
   * fd or released one of its files, or the VM is new (reference counts, the memslot list and
   * bindings change only then).
   */
  readonly mappings: boolean;
  /**
   * With `mappings`: re-run also when the VM's own state may differ (as the checks that do not
   * read mappings are): a TD's checks read the TDX module's state for it, which its VM and vCPU
   * fd ioctls change without always changing its maps.
   */
  readonly own?: boolean;
  vm(vm: Vm, s: CheckState): Violation[];
  host?(s: CheckState): Violation[];
};

/** `check()` of an invariant with a per-VM form. */
export function checkEveryVm(p: PerVm, s: CheckState): Violation[] {
  const out: Violation[] = [];
  for (const vm of p.vms === 'live' ? s.host.vms : s.host.allVms)
    for (const v of p.vm(vm, s)) out.push(v);
  if (p.host !== undefined) for (const v of p.host(s)) out.push(v);
  return out;
}

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
  /** Per-VM form (same violations, same order), when the invariant has one. */
  readonly perVm?: PerVm;
}

export const hx = (n: number | bigint): string => '0x' + n.toString(16);
