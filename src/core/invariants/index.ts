/**
 * The invariant catalogue and the checker. Each invariant is its own module; this registry is
 * the only place that lists them (platform issues append theirs with an `appliesTo` predicate).
 */
import type { Host } from '../host.js';
import type { Pfn } from '../base/units.js';
import type { Rmp } from '../platform/sev_snp/rmp.js';
import { toKvmSevInfo } from '../arch/x86/svm/sev_common.js';
import { freedPageUnmapped } from './freed_page_unmapped.js';
import { gmemSingleBinding } from './gmem_single_binding.js';
import { hostNoPrivateAccess } from './host_no_private_access.js';
import {
  hostNoPrivateAccessExclusivePin,
  hostNoPrivateAccessProtnone,
  hostNoPrivateAccessRestrictedmem,
  hostNoPrivateAccessSeparateMm,
} from './host_no_private_access_designs.js';
import { memoryAccounting } from './memory_accounting.js';
import { noMixedHugepage } from './no_mixed_hugepage.js';
import { ChangeTracker } from './incremental.js';
import type { Vm } from '../kvm/objects.js';
import { buildOwnership, type Ownership } from './ownership.js';
import { slotFileLive } from './slot_file_live.js';
import { snpGuestValidated } from './snp_guest_validated.js';
import { snpPscExitMatchesRequest } from './snp_psc_exit_matches_request.js';
import { snpLaunchMeasured } from './snp_launch_measured.js';
import { snpNoHostWrite } from './snp_no_host_write.js';
import { snpReclaimBeforeReuse } from './snp_reclaim_before_reuse.js';
import { snpRmpOwner } from './snp_rmp_owner.js';
import { snpValidateOnce } from './snp_validate_once.js';
import { stage2Coherent } from './stage2_coherent.js';
import { tdxMrtdMeasured } from './tdx_mrtd_measured.js';
import { tdxGuestAccepted } from './tdx_guest_accepted.js';
import { tdxMapGpaExitMatchesRequest } from './tdx_map_gpa_exit.js';
import { tdxSeptLeaf } from './tdx_common.js';
import { tdxPrivateOwner } from './tdx_private_owner.js';
import { tdxRemoveBeforeReuse } from './tdx_remove_before_reuse.js';
import { tdxSharedEptNoPrivate } from './tdx_shared_ept_no_private.js';
import { pkvmOneOwner } from './pkvm_one_owner.js';
import { pkvmBorrowersMatch } from './pkvm_borrowers_match.js';
import { pkvmHostStage2Exact } from './pkvm_host_stage2_exact.js';
import { pkvmProtectedUnmapped } from './pkvm_protected_unmapped.js';
import { pkvmGuestTablesHypOwned } from './pkvm_guest_tables_hyp_owned.js';
import { pkvmReclaimZeroed } from './pkvm_reclaim_zeroed.js';
import { pkvmHistoryAgrees } from './pkvm_history_agrees.js';
import type { PkvmHyp } from '../platform/pkvm/hyp.js';
import type { TdxModule } from '../platform/tdx/module.js';
import {
  NO_VIOLATIONS,
  type CheckState,
  type GuestPrivateAccess,
  type HostAccess,
  type PvalidateRecord,
  type PscRecord,
  type TdxGuestRecord,
  type Invariant,
  type Mapping,
  type PerVm,
  type Violation,
} from './types.js';
import { vmRefcount } from './vm_refcount.js';
import { iommuNoPrivate, noPrivateWithReferences } from './pins_iommu.js';
import { hostPteNoPrivate } from './host_pte_no_private.js';
import { hugetlbHugeMapping, hugetlbMergedPrivate, hugetlbSplitAccounted } from './hugetlb.js';
import { nodmapFreedInDirectMap, nodmapMappedNotInDirectMap } from './no_direct_map.js';
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
  // AMD SEV-SNP (profiles whose platform is 'sev-snp').
  snpRmpOwner,
  snpNoHostWrite,
  snpLaunchMeasured,
  snpReclaimBeforeReuse,
  snpGuestValidated,
  snpValidateOnce,
  snpPscExitMatchesRequest,
  // Intel TDX (profiles whose platform is 'tdx').
  tdxPrivateOwner,
  tdxRemoveBeforeReuse,
  tdxSharedEptNoPrivate,
  tdxMrtdMeasured,
  tdxGuestAccepted,
  tdxMapGpaExitMatchesRequest,
  // arm64 pKVM (profiles whose platform is 'pkvm'): platforms.md §3.5 and the history oracle.
  pkvmOneOwner,
  pkvmBorrowersMatch,
  pkvmHostStage2Exact,
  pkvmProtectedUnmapped,
  pkvmGuestTablesHypOwned,
  pkvmReclaimZeroed,
  pkvmHistoryAgrees,
  // Page pins and IOMMU domains (profiles with a guest_memfd design beyond 6.18's).
  iommuNoPrivate,
  noPrivateWithReferences,
  // Host page tables of every process (fork) on the same profiles.
  hostPteNoPrivate,
  // HugeTLB guest_memfd (profiles with profile.gmemHugetlb).
  hugetlbSplitAccounted,
  hugetlbMergedPrivate,
  hugetlbHugeMapping,
  // GUEST_MEMFD_FLAG_NO_DIRECT_MAP (the same profiles).
  nodmapFreedInDirectMap,
  nodmapMappedNotInDirectMap,
  // The historical designs' own definitions of "the host cannot reach private memory"
  // (profiles with `design`).
  hostNoPrivateAccessProtnone,
  hostNoPrivateAccessRestrictedmem,
  hostNoPrivateAccessExclusivePin,
  hostNoPrivateAccessSeparateMm,
];

export function invariantByName(name: string): Invariant | undefined {
  return INVARIANTS.find((i) => i.name === name);
}

/** Start of the first owner extent with a free frame: the full scan. */
function scanOwnedOnFree(h: Host, o: Ownership): number | undefined {
  for (const e of o.owners.entries())
    if (h.frames.anyFree(e.start, e.end - e.start)) return e.start;
  return undefined;
}

const NO_ACCESSES: readonly HostAccess[] = [];
const NO_PFNS: readonly Pfn[] = [];
const NO_GUEST: readonly GuestPrivateAccess[] = [];
const NO_PVALIDATE: readonly PvalidateRecord[] = [];
const NO_PSC: readonly PscRecord[] = [];
const NO_TDX: readonly TdxGuestRecord[] = [];

export type CheckerOptions = {
  /**
   * Re-check only what the last step could have changed: from the first step (true), never
   * (false: every invariant over the whole state after every step, `fullCheck`), or from step
   * N (default 64: for a short trace a full check of its small state costs less than setting up
   * the change tracking).
   */
  readonly incremental?: boolean | number;
};

/**
 * Attaches to a Host and checks every applicable invariant after each step. Host accesses and
 * stale reads are collected while the step runs (the Host's observer hook and the frame store).
 *
 * Checking is change-driven (incremental.ts): per-VM invariants keep each VM's last violations
 * and re-run only for the VMs the step could have changed; the frame-ownership map is kept up to
 * date from the changes instead of being rebuilt. The result is the same list, in the same
 * order, as `fullCheck()` evaluating every invariant over the whole state.
 */
export class InvariantChecker {
  private accesses: HostAccess[] = [];
  readonly invariants: readonly Invariant[];
  private tracker: ChangeTracker | undefined;
  private state!: TrackedState;
  /** The result of the last check when it saw no host access and no stale read. */
  private last: Violation[] | undefined = undefined;
  /** The allocator's count at the last check. */
  private lastAllocated = -1;
  /** The SEV-SNP host's RMP (undefined on other platforms) and its generation at the last check. */
  private readonly rmp: Rmp | undefined;
  private lastRmpGen = 0;
  /** The TDX host's module (undefined on other platforms) and its generation at the last check. */
  private readonly tdx: TdxModule | undefined;
  private lastTdxGen = 0;
  /** The pKVM host's hypervisor (undefined on other platforms) and its version at the last check. */
  private readonly pkvm: PkvmHyp | undefined;
  private lastPkvmGen = 0;
  /** The frames' direct-map change count at the last check (NO_DIRECT_MAP guest_memfd). */
  private lastDirectMap = 0;
  /** Steps still checked in full before change tracking starts (-1: never). */
  private fullSteps: number;
  /**
   * The invariants in order, each with its per-VM form and that form's violations of the last
   * check (VMs without any left out), once change tracking has started.
   */
  private readonly tracked: Array<{
    readonly inv: Invariant;
    readonly perVm: PerVm | undefined;
    readonly byVm: Map<Vm, Violation[]>;
  }> = [];
  /** The entries of `tracked` with a per-VM form. */
  private readonly perVm: Array<{ readonly perVm: PerVm; readonly byVm: Map<Vm, Violation[]> }> =
    [];

  constructor(
    readonly host: Host,
    only?: readonly string[],
    o: CheckerOptions = {},
  ) {
    this.invariants = INVARIANTS.filter(
      (i) => (i.appliesTo?.(host.profile) ?? true) && (only === undefined || only.includes(i.name)),
    );
    const rmp = host.platform.sevSnp?.rmp;
    this.rmp = rmp;
    this.tdx = host.platform.tdx?.module;
    this.pkvm = host.platform.pkvm?.hyp;
    const frames = host.frames;
    frames.logReleases(true);
    host.observe =
      rmp === undefined
        ? (pfn: Pfn, write: boolean, path: HostAccess['path']): void => {
            this.accesses.push({ pfn, write, path, mark: frames.releaseMark });
          }
        : (pfn: Pfn, write: boolean, path: HostAccess['path'], refused: boolean): void => {
            // The RMP as the access found it (the platform's check changes no state).
            const assigned = rmp.lookup(pfn).assigned;
            this.accesses.push({ pfn, write, path, refused, assigned, mark: frames.releaseMark });
          };
    if (rmp !== undefined) {
      // SEV-SNP guests: what each private access and PVALIDATE found in the RMP, and each PSC
      // descriptor request with the exits KVM raised for it.
      host.snpGuestObserver = {
        access: (vm, gfn, pfn, write): void => {
          const e = rmp.lookup(pfn as Pfn);
          this.guestAccesses.push({
            vm: vm.index,
            gfn,
            pfn,
            write,
            assigned: e.assigned,
            asid: e.asid,
            guestAsid: toKvmSevInfo(vm).asid,
            validated: e.validated,
            gpa: e.gpa,
          });
        },
        pvalidate: (vm, gfn, pfn, validate, before, ret, cf): void => {
          this.pvalidates.push({ vm: vm.index, gfn, pfn, validate, before, ret, cf });
        },
        psc: (vm, p): void => {
          this.pscs.push({ ...p, vm: vm.index });
        },
      };
    }
    const tdxModule = host.platform.tdx?.module;
    if (tdxModule !== undefined)
      // TD guests: each access (frame, shared or private, the S-EPT leaf it met), ACCEPT and
      // MapGPA, in order (tdx-guest-accepted reads the accesses and ACCEPTs).
      host.tdxGuestObserver = {
        access: (vm, gfn, pfn, write, shared, septState): void => {
          // A private access: the S-EPT leaf as the checker reads it from the module now (its
          // state and frame), not as the access path reports it.
          const leaf = shared ? undefined : tdxSeptLeaf(tdxModule!, vm, gfn);
          this.tdxGuest.push({
            kind: 'access',
            vm: vm.index,
            gfn,
            pfn,
            write,
            shared,
            septState: leaf?.state ?? septState,
            ...(leaf === undefined ? {} : { septPfn: leaf.pfn }),
          });
        },
        accept: (vm, gfn, level, status, before, after): void => {
          this.tdxGuest.push({ kind: 'accept', vm: vm.index, gfn, level, status, before, after });
        },
        mapGpa: (vm, gpa, size, exits, status): void => {
          this.tdxGuest.push({ kind: 'map_gpa', vm: vm.index, gpa, size, exits, status });
        },
      };
    host.frames.takeStaleReads();
    const inc = o.incremental ?? 64;
    this.fullSteps = inc === false ? -1 : inc === true ? 0 : inc;
  }

  /** SEV-SNP guests' private accesses, PVALIDATEs and PSC descriptor requests during the step. */
  private guestAccesses: GuestPrivateAccess[] = [];
  private pvalidates: PvalidateRecord[] = [];
  private pscs: PscRecord[] = [];
  /** TD guests' accesses, ACCEPTs and MapGPAs during the step. */
  private tdxGuest: TdxGuestRecord[] = [];

  /** The step's observations (cleared). */
  /**
   * Mark the step's host accesses to frames released after them (a frame freed and handed to
   * another owner within one op: e.g. a KVM_RUN whose VMM discards the shared page the guest's
   * store went to, then serves a private fault with the same frame), and empty the release log.
   */
  private markFreedLater(accesses: HostAccess[], clear = true): void {
    const frames = this.host.frames;
    for (let i = 0; i < accesses.length; i++) {
      const a = accesses[i]!;
      if (frames.releasedSince(a.pfn, a.mark ?? 0)) a.freedLater = true;
    }
    if (clear) frames.clearReleaseLog();
  }

  private observed(): {
    accesses: HostAccess[];
    staleReads: readonly Pfn[];
    guestAccesses: readonly GuestPrivateAccess[];
    pvalidates: readonly PvalidateRecord[];
    pscs: readonly PscRecord[];
    tdxGuest: readonly TdxGuestRecord[];
  } {
    const accesses = this.accesses;
    this.accesses = [];
    this.markFreedLater(accesses);
    const guestAccesses = this.guestAccesses.length === 0 ? NO_GUEST : this.guestAccesses;
    if (this.guestAccesses.length !== 0) this.guestAccesses = [];
    const pvalidates = this.pvalidates.length === 0 ? NO_PVALIDATE : this.pvalidates;
    if (this.pvalidates.length !== 0) this.pvalidates = [];
    const pscs = this.pscs.length === 0 ? NO_PSC : this.pscs;
    if (this.pscs.length !== 0) this.pscs = [];
    const tdxGuest = this.tdxGuest.length === 0 ? NO_TDX : this.tdxGuest;
    if (this.tdxGuest.length !== 0) this.tdxGuest = [];
    return {
      accesses,
      staleReads: this.host.frames.takeStaleReads(),
      guestAccesses,
      pvalidates,
      pscs,
      tdxGuest,
    };
  }

  /** Check after a step; clears the step's observations. */
  check(): Violation[] {
    // A forked child's address space and fd table are not change-tracked, nor is an address
    // space of no process (design-2020-separate-mm): once a trace has one, every step is checked
    // in full (fork traces are short: scenarios, the in-place walk).
    if (this.host.manyMms) {
      if (this.tracker !== undefined) {
        this.tracker.detach();
        this.tracker = undefined;
        this.tracked.length = 0;
        this.perVm.length = 0;
      }
      this.fullSteps = -1;
      return this.fullCheck();
    }
    if (this.tracker !== undefined) return this.changed(this.tracker);
    if (this.fullSteps !== 0) {
      if (this.fullSteps > 0) this.fullSteps--;
      return this.fullCheck();
    }
    // The tracker starts from the state as it is: every VM is re-checked at its first update.
    this.tracker = new ChangeTracker(this.host);
    this.state = new TrackedState(this.host, this.tracker);
    for (const inv of this.invariants) {
      const t = { inv, perVm: inv.perVm, byVm: new Map<Vm, Violation[]>() };
      this.tracked.push(t);
      if (t.perVm !== undefined) this.perVm.push({ perVm: t.perVm, byVm: t.byVm });
    }
    return this.changed(this.tracker);
  }

  /** Every invariant over the whole state (what `check` computes, without shortcuts). */
  fullCheck(): Violation[] {
    const { accesses, staleReads, guestAccesses, pvalidates, pscs, tdxGuest } = this.observed();
    let own: Ownership | undefined;
    const state: CheckState = {
      host: this.host,
      hostAccesses: accesses,
      staleReads,
      guestAccesses,
      pvalidates,
      pscs,
      tdxGuest,
      ownership: () => (own ??= buildOwnership(this.host)),
      ownedOnFree: () => scanOwnedOnFree(this.host, state.ownership()),
    };
    const out: Violation[] = [];
    for (const inv of this.invariants) for (const v of inv.check(state)) out.push(v);
    return out;
  }

  private changed(t: ChangeTracker): Violation[] {
    const st = this.state;
    st.hostAccesses = this.accesses;
    if (this.accesses.length !== 0) this.accesses = [];
    // The release log stays until the invariants ran (`CheckState.releasedRanges`).
    this.markFreedLater(st.hostAccesses as HostAccess[], false);
    st.staleReads = this.host.frames.takeStaleReads();
    if (this.guestAccesses.length !== 0) {
      st.guestAccesses = this.guestAccesses;
      this.guestAccesses = [];
    }
    if (this.pvalidates.length !== 0) {
      st.pvalidates = this.pvalidates;
      this.pvalidates = [];
    }
    if (this.pscs.length !== 0) {
      st.pscs = this.pscs;
      this.pscs = [];
    }
    if (this.tdxGuest.length !== 0) {
      st.tdxGuest = this.tdxGuest;
      this.tdxGuest = [];
    }
    st.reset();
    const changed = t.update();
    const allocated = this.host.frames.allocated;
    const clean =
      st.hostAccesses.length === 0 &&
      st.staleReads.length === 0 &&
      st.guestAccesses.length === 0 &&
      st.pvalidates.length === 0 &&
      st.pscs.length === 0 &&
      st.tdxGuest.length === 0;
    // On SEV-SNP the RMP (and the firmware state changed with it) is read too.
    const rmpGen = this.rmp === undefined ? 0 : this.rmp.generation;
    // On TDX the module's state (PAMT, S-EPT, TDs) likewise.
    const tdxGen = this.tdx === undefined ? 0 : this.tdx.generation;
    // On pKVM the hypervisor's state likewise.
    const pkvmGen = this.pkvm === undefined ? 0 : this.pkvm.version;
    // Frames leaving or re-entering the direct map likewise.
    const directMap = this.host.frames.directMapChanges;
    // Nothing an invariant reads changed since a check that saw no host access and no stale
    // read (allocating a fresh frame moves only the allocator's count): the same result.
    if (
      !changed &&
      clean &&
      this.last !== undefined &&
      allocated === this.lastAllocated &&
      rmpGen === this.lastRmpGen &&
      tdxGen === this.lastTdxGen &&
      pkvmGen === this.lastPkvmGen &&
      directMap === this.lastDirectMap
    ) {
      st.hostAccesses = NO_ACCESSES;
      st.staleReads = NO_PFNS;
      st.guestAccesses = NO_GUEST;
      st.pvalidates = NO_PVALIDATE;
      st.pscs = NO_PSC;
      st.tdxGuest = NO_TDX;
      this.host.frames.clearReleaseLog();
      return this.last.length === 0 ? [] : this.last.slice();
    }
    if (changed) {
      for (let i = 0; i < t.changedCount; i++) {
        const vm = t.changedVms[i]!;
        this.recheck(vm, true, t.changedOwn[i]!, st);
        t.depend(vm, st.mappingsOf);
      }
      for (let i = 0; i < t.usedCount; i++) this.recheck(t.usedVms[i]!, false, true, st);
    }
    const out: Violation[] = [];
    for (const { inv, perVm, byVm } of this.tracked) {
      if (perVm === undefined) {
        const vs = inv.check(st);
        for (let i = 0; i < vs.length; i++) out.push(vs[i]!);
        continue;
      }
      // VMs are created in index order; the host lists them that way.
      if (byVm.size > 0) {
        const vms = [...byVm.keys()].sort((a, b) => a.index - b.index);
        for (const vm of vms) for (const v of byVm.get(vm)!) out.push(v);
      }
      // The host part (the VMM's page tables) can only fail when an owned frame is free.
      const host = perVm.host;
      if (host !== undefined && !t.noOwnedFree()) for (const v of host(st)) out.push(v);
    }
    st.hostAccesses = NO_ACCESSES;
    st.staleReads = NO_PFNS;
    st.guestAccesses = NO_GUEST;
    st.pvalidates = NO_PVALIDATE;
    st.pscs = NO_PSC;
    st.tdxGuest = NO_TDX;
    st.reset();
    this.last = !clean ? undefined : out.length === 0 ? NO_VIOLATIONS : out.slice();
    this.lastAllocated = allocated;
    this.lastRmpGen = rmpGen;
    this.lastTdxGen = tdxGen;
    this.lastPkvmGen = pkvmGen;
    this.lastDirectMap = directMap;
    this.host.frames.clearReleaseLog();
    return out;
  }

  /**
   * Re-run per-VM invariants for one VM: those reading mappings (`maps`), the others (`own`);
   * the rest keep their last result.
   */
  private recheck(vm: Vm, maps: boolean, own: boolean, st: CheckState): void {
    for (const { perVm: p, byVm } of this.perVm) {
      if (p.mappings ? !maps && !(own && p.own === true) : !own) continue;
      const v = p.vms === 'live' && vm.dead ? NO_VIOLATIONS : p.vm(vm, st);
      if (v.length > 0) byVm.set(vm, v);
      else if (byVm.size !== 0) byVm.delete(vm);
    }
  }
}

/** The CheckState of the change-driven checker: one object, its step fields set per check. */
class TrackedState implements CheckState {
  hostAccesses: readonly HostAccess[] = NO_ACCESSES;
  staleReads: readonly Pfn[] = NO_PFNS;
  guestAccesses: readonly GuestPrivateAccess[] = NO_GUEST;
  pvalidates: readonly PvalidateRecord[] = NO_PVALIDATE;
  pscs: readonly PscRecord[] = NO_PSC;
  tdxGuest: readonly TdxGuestRecord[] = NO_TDX;
  /** The ownership map of this check, once asked for. */
  own: Ownership | undefined = undefined;
  readonly mappingsOf = (vm: Vm): readonly Mapping[] => this.mappings(vm);

  constructor(
    readonly host: Host,
    private readonly t: ChangeTracker,
  ) {}

  ownership(): Ownership {
    return (this.own ??= this.t.ownership() ?? buildOwnership(this.host));
  }

  mappings(vm: Vm): readonly Mapping[] {
    return this.t.mappingsOf(vm);
  }

  /** A new check: the model may have changed since the last one. */
  reset(): void {
    this.own = undefined;
  }

  releasedRanges(): readonly number[] {
    return this.host.frames.releasedRanges();
  }

  ownedOnFree(): number | undefined {
    return this.t.isExact ? this.t.ownedOnFree() : scanOwnedOnFree(this.host, this.ownership());
  }
}
