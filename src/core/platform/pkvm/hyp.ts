/**
 * The pKVM hypervisor's memory-ownership state machine (EL2, arm64 protected KVM; platforms.md §3,
 * Appendix A.3): the state of every physical page for the host, the hypervisor and the guests,
 * and every transition the host, the guests and teardown can ask for, each a method named after
 * its EL2 function, returning what the function returns (0 or a negative errno).
 *
 * **Kernel trees followed.**
 * - linux v6.18 `arch/arm64/kvm/hyp/nvhe/mem_protect.c` for every function it has:
 *   `__pkvm_host_share_hyp`, `__pkvm_host_unshare_hyp`, `__pkvm_host_donate_hyp`,
 *   `__pkvm_hyp_donate_host`, `hyp_pin_shared_mem` / `hyp_unpin_shared_mem`,
 *   `__pkvm_host_share_ffa` / `__pkvm_host_unshare_ffa`, `__pkvm_host_share_guest` /
 *   `__pkvm_host_unshare_guest` (with `nr_pages` and `__guest_check_transition_size()`),
 *   `host_stage2_idmap`, `host_stage2_adjust_range`, `host_stage2_set_owner_locked`,
 *   `__host_check_page_state_range`, `__guest_check_page_state_range`,
 *   `check_range_allowed_memory`, `pfn_range_is_valid` (Vincent Donnefort's "Check range args for
 *   pKVM mem transitions", posted 2025-10-16 during the 6.18 rc cycle; taken as part of v6.18, not
 *   checked against the tag); `hyp-main.c` for the handlers (`handle___pkvm_host_share_guest`
 *   refills the vCPU's memcache first, `pkvm_refill_memcache()` / `refill_memcache()`).
 * - v6.18 has no donation to protected guests. Those pieces follow the later mainline series as
 *   platforms.md §3 describes it: Will Deacon's "protected guest memory" series (2026-01, v2
 *   35 patches: "Introduce __pkvm_host_donate_guest()", "Split teardown hypercall into two
 *   phases", "Introduce __pkvm_reclaim_dying_guest_page()", "Implement the MEM_UNSHARE
 *   hypercall for protected VMs", host abort injection) and Fuad Tabba's 2026-04 fixes (Cc
 *   stable: `__guest_check_pgtable_memcache()` returns -ENOMEM before any mutation in
 *   `__pkvm_host_donate_guest()`, and — also applied here to `__pkvm_host_share_guest()` — the
 *   guest↔host share paths keep a valid last-level leaf). From that tree: `__pkvm_host_donate_guest`,
 *   `__pkvm_guest_share_host`, `__pkvm_guest_unshare_host` (`get_valid_guest_pte()`),
 *   `__pkvm_host_reclaim_page_guest`, `__pkvm_host_force_reclaim_page_guest`, the host stage-2
 *   donation annotation with VM handle + gfn (`host_stage2_encode_gfn_meta()`), poisoned guest
 *   entries, `__pkvm_start_teardown_vm` / `__pkvm_reclaim_dying_guest_page` /
 *   `__pkvm_finalize_teardown_vm`, and `kvm_handle_pvm_hvc64()`'s MEM_SHARE / MEM_UNSHARE /
 *   HYP_MEMINFO. The source of those functions was read through the 2026 patch mails (not a
 *   tree checkout); details marked [unverified] below are the model's reading.
 * - **Host stage-2 fault** (`handle_host_mem_abort()`): v6.18 `BUG_ON(ret && ret != -EAGAIN)`
 *   panics the hypervisor when the host touches a page it does not own; the later tree injects
 *   an abort into the host (`host_inject_mem_abort()`). Both are here (`config.hostAbort`); the
 *   default is the later tree's, the tree in which protected guests own pages.
 * - `host_stage2_set_owner_locked(PKVM_ID_HOST)` follows v6.18: it writes an empty entry, which
 *   the host's next access maps again (the later tree installs the valid idmap at once; the
 *   host-visible outcome is the same).
 *
 * **Check, then commit.** Every method runs the kernel's checks in the kernel's order and changes
 * nothing until all passed; the commits that the kernel wraps in WARN_ON() (EL2 WARN is a hyp
 * panic) throw `PkvmHypPanic` here if they could fail.
 *
 * **Not modelled:** concurrency and locks (one CPU), vCPU
 * load/put (a vCPU of a live VM counts as loaded; a dying VM's vCPUs cannot load), permissions
 * relax / wrprotect / young, FF-A descriptors (the model keeps its own set of FF-A-shared pages
 * in place of the secure world's), hyp text mappings (`fix_host_ownership()`), the host
 * stage-2 pool running out (`host_stage2_try()`), guest MMIO guard, MEM_RELINQUISH (Android).
 */
import type { FrameStore } from '../../base/frames.js';
import { NO_MUTANTS, type MutantSet } from '../../base/mutants.js';
import { asPfn } from '../../base/units.js';
import { RangeMap } from '../../base/ranges/range_map.js';
import { GuestStage2, KVM_PGTABLE_PROT_RWX } from './guest_stage2.js';
import { HostStage2, S2_LAST_LEVEL, S2_LEVEL_PAGES } from './host_stage2.js';
import { PkvmHistory, type PageEvent } from './history.js';
import {
  E,
  HypVmemmap,
  PKVM_ID_GUEST,
  PKVM_ID_HOST,
  PKVM_ID_HYP,
  PKVM_NOPAGE,
  PKVM_PAGE_OWNED,
  PKVM_PAGE_SHARED_BORROWED,
  PKVM_PAGE_SHARED_OWNED,
  PKVM_POISON,
  type PkvmPageState,
} from './memory.js';

/** A `hyp_memory[]` region (memblock), in pfns. */
export interface PkvmMemRegion {
  readonly base: number;
  readonly pages: number;
  /** MEMBLOCK_NOMAP: memory the host may not transition. */
  readonly nomap?: boolean;
}

export interface PkvmHypConfig {
  /** The memory regions, sorted and disjoint (everything else is MMIO). */
  readonly memory: readonly PkvmMemRegion[];
  /** Frames the hypervisor owns from boot (its own memory: host NOPAGE annotated hyp, hyp OWNED). */
  readonly hypReserved: readonly { readonly base: number; readonly pages: number }[];
  /** Guest stage-2 levels; `kvm_mmu_cache_min_pages()` = levels - 1. */
  readonly stage2Levels: number;
  /** The largest `host_share_guest_count` (U32_MAX; tests lower it to reach -EBUSY). */
  readonly shareGuestCountMax: number;
  /** What a host access to a page it does not own does (see the module comment). */
  readonly hostAbort: 'inject' | 'panic';
  /** The host stage-2's PA size in bits (`kvm_phys_shift()`), the limit of `pfn_range_is_valid()`. */
  readonly physShift: number;
}

export const PKVM_HYP_DEFAULTS: PkvmHypConfig = {
  memory: [{ base: 0, pages: 2 ** 20 }],
  hypReserved: [],
  stage2Levels: 4,
  shareGuestCountMax: 0xffff_ffff,
  hostAbort: 'inject',
  physShift: 48,
};

/** `HANDLE_OFFSET` (pkvm.c): VM handles are table index + 0x1000. */
export const PKVM_HANDLE_OFFSET = 0x1000;
/** `KVM_MAX_PVMS`. */
export const KVM_MAX_PVMS = 255;
/** Pages of a PMD block (`kvm_granule_size(KVM_PGTABLE_LAST_LEVEL - 1)`). */
export const PMD_PAGES = 512;

/**
 * What changed in the hypervisor's state since the last `takeChanges()` (the change-driven
 * invariant checker): the pfn ranges whose page state, host stage-2 entry, guest mappings, FF-A
 * share or history moved, and the VMs whose own pages (struct, pgd, vCPU, page tables, pool,
 * memcaches) or life may have. `since` is the `version` the log starts at.
 */
export interface PkvmChanges {
  readonly since: number;
  /** (start, end) pairs; undefined: too many to list (everything may have changed). */
  readonly ranges: readonly number[] | undefined;
  readonly vms: ReadonlySet<number>;
}

/**
 * A page the host regained access to (`host_stage2_set_owner_locked(PKVM_ID_HOST)`: a reclaim,
 * a forced reclaim, `__pkvm_hyp_donate_host()`) that still held data at that moment.
 */
export interface PkvmDirtyHandover {
  readonly pfn: number;
  /** The call that gave it back. */
  readonly what: string;
  /** The guest it came from (VM handle, gfn), when a guest owned it. */
  readonly handle?: number;
  readonly gfn?: number;
}

/** Ranges kept in the change log before it only says "too many". */
const CHANGE_LOG_MAX = 512;
/** Dirty handovers kept (each is a violation: a faithful model records none). */
const HANDOVER_LOG_MAX = 64;

/** A kernel BUG/WARN at EL2: the hypervisor panics (the model throws). */
export class PkvmHypPanic extends Error {
  constructor(what: string) {
    super(`hyp_panic: ${what}`);
    this.name = 'PkvmHypPanic';
  }
}

/** `struct pkvm_hyp_vcpu` as far as memory goes. */
export interface PkvmVcpu {
  readonly idx: number;
  /** The vCPU struct page donated at `__pkvm_init_vcpu()`. */
  readonly page: number;
  /** The host's `vcpu->arch.pkvm_memcache`: host pages offered for page tables (head last). */
  readonly hostMemcache: number[];
  /** The hyp's `pkvm_memcache`: pages already donated to the hypervisor (head last). */
  readonly memcache: number[];
}

/** `struct pkvm_hyp_vm` as far as memory goes. */
export interface PkvmVm {
  readonly handle: number;
  readonly isProtected: boolean;
  dying: boolean;
  /** `kvm.created_vcpus`: the host's vCPU count when `__pkvm_init_vm()` ran (the vCPU bound). */
  readonly createdVcpus: number;
  /** The VM struct pages and the pgd pages donated at `__pkvm_init_vm()`. */
  readonly vmPages: readonly number[];
  readonly pgdPages: readonly number[];
  readonly vcpus: PkvmVcpu[];
  readonly stage2: GuestStage2;
  /** `vm->pool`: free hyp-owned table pages (freed tables come back here). */
  readonly pool: number[];
}

/** What `handle_host_mem_abort()` did with a host stage-2 fault on `pfn`. */
export type HostAbortResult =
  /** `host_stage2_idmap()` mapped [start, end). */
  | { readonly kind: 'mapped'; readonly start: number; readonly end: number }
  /** The entry was already valid (-EAGAIN in v6.18, -EEXIST later): back to the host. */
  | { readonly kind: 'spurious' }
  /** -EPERM on an annotated entry: `host_inject_mem_abort()` (the host kernel sees a stage-2 abort). */
  | { readonly kind: 'abort-injected'; readonly pfn: number }
  /** v6.18's `BUG_ON()`, or any other error: the hypervisor panics. */
  | { readonly kind: 'hyp-panic'; readonly ret: number };

/** SMCCC function ids of the vendor hypercalls (Documentation/virt/kvm/arm/hypercalls.rst). */
export const ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID = 0xc6000002;
export const ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID = 0xc6000003;
export const ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID = 0xc6000004;
/** `ARM_SMCCC_VERSION_FUNC_ID`, `ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID`, `..._KVM_FEATURES_FUNC_ID`. */
export const ARM_SMCCC_VERSION_FUNC_ID = 0x80000000;
export const ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID = 0x8600ff01;
export const ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID = 0x86000000;
export const SMCCC_RET_SUCCESS = 0;
export const SMCCC_RET_NOT_SUPPORTED = -1;
export const SMCCC_RET_INVALID_PARAMETER = -3;

/** What a protected guest's HVC did (`kvm_handle_pvm_hvc64()`). */
export type GuestHvcResult =
  /** Handled at EL2: `a0` to the guest; `exitToHost` when the host is told (MEM_SHARE/UNSHARE). */
  | { readonly kind: 'ret'; readonly a0: number; readonly exitToHost: boolean }
  /** MEM_SHARE of a gfn with no page: exits to the host as a data abort; the guest retries. */
  | { readonly kind: 'mem-abort'; readonly gfn: number }
  /** Not a pKVM call, or a non-protected VM: the host's KVM handles it. */
  | { readonly kind: 'to-host' }
  /** The VM is dying or unknown: its vCPU cannot run. */
  | { readonly kind: 'not-running' };

/** What a guest access to `gfn` does. */
export type GuestAccessResult =
  | { readonly kind: 'ok'; readonly pfn: number; readonly state: PkvmPageState }
  /** No mapping: a stage-2 fault exits to the host (which donates or shares a page). */
  | { readonly kind: 'mem-abort'; readonly gfn: number }
  /**
   * A poisoned entry (forced reclaim): the fault exits to the host, whose
   * `pkvm_pgtable_stage2_map()` asks `__pkvm_vcpu_in_poison_fault` and fails KVM_RUN (-EFAULT).
   */
  | { readonly kind: 'poison'; readonly gfn: number };

export class PkvmHyp {
  /** `hyp_vmemmap`: host and hyp state, guest share count, pins. */
  readonly vmemmap = new HypVmemmap();
  /** The host stage-2 (`host_mmu.pgt`). */
  readonly hostS2 = new HostStage2();
  /** `vm_table`: live VMs by handle. */
  readonly vms = new Map<number, PkvmVm>();
  /** The per-page history of successful calls (the oracle's input). */
  readonly history = new PkvmHistory();
  /** Pages the host shared with the secure world (the FF-A proxy's view, kept by the model). */
  readonly ffaShared = new RangeMap<true>();
  /** Pages a reclaim zeroed and returned to the host in the last call (invariant 6). */
  lastReclaimed: number[] = [];
  /** Pages handed back to the host with data in them, ever (invariant 6; bounded). */
  readonly dirtyHandovers: PkvmDirtyHandover[] = [];
  readonly config: PkvmHypConfig;
  /** Seeded bugs (the Host sets its set when it has any; base/mutants.ts). */
  mutants: MutantSet = NO_MUTANTS;
  /** Bumped by every change of the state (the invariant checker re-reads it only when it moved). */
  version = 0;
  private changeBase = 0;
  private changed: number[] = [];
  private changedOverflow = false;
  private changedVms = new Set<number>();
  /** The call handing pages back (each such call sets it first), for the handover log. */
  private handoverCtx: { what: string; handle?: number; gfn?: number } = { what: '' };
  /** `vm_table`: a handle, RESERVED_ENTRY ('reserved'), or free. */
  private readonly vmSlots: Array<number | 'reserved' | undefined> = [];

  constructor(
    readonly frames: FrameStore,
    config: Partial<PkvmHypConfig> = {},
  ) {
    this.config = { ...PKVM_HYP_DEFAULTS, ...config };
    const note = (start: number, end: number): void => this.noteChange(start, end);
    this.vmemmap.onChange = note;
    this.hostS2.onChange = note;
    // __pkvm_init() / fix_host_ownership(): the hypervisor's own memory is hyp-owned and
    // annotated in the host stage-2.
    for (const r of this.config.hypReserved) {
      this.vmemmap.setHyp(r.base, r.base + r.pages, PKVM_PAGE_OWNED);
      this.vmemmap.setHost(r.base, r.base + r.pages, PKVM_NOPAGE);
      this.hostS2.annotate(r.base, r.base + r.pages, PKVM_ID_HYP);
    }
  }

  /** Whether `pfn` was the hypervisor's at boot (the oracle's initial owner). */
  hypAtBoot(pfn: number): boolean {
    return this.config.hypReserved.some((r) => pfn >= r.base && pfn < r.base + r.pages);
  }

  private rec(pfn: number, pages: number, ev: PageEvent): void {
    this.noteChange(pfn, pfn + pages);
    this.history.record(pfn, pages, ev);
  }

  // ---- the change log (the invariant checker's; no kernel counterpart) ---------------------------

  /** Pages [start, end) changed. */
  noteChange(start: number, end: number): void {
    this.version++;
    if (this.changedOverflow) return;
    const c = this.changed;
    const n = c.length;
    // Extend the last range when this one touches it (a teardown walks pages in order).
    if (n > 0 && start <= c[n - 1]! && end >= c[n - 2]!) {
      c[n - 2] = Math.min(c[n - 2]!, start);
      c[n - 1] = Math.max(c[n - 1]!, end);
      return;
    }
    if (n >= 2 * CHANGE_LOG_MAX) this.changedOverflow = true;
    else c.push(start, end);
  }

  /** VM `handle`'s own pages or life changed. */
  noteVm(handle: number): void {
    this.version++;
    this.changedVms.add(handle);
  }

  /** What changed since the last call, and forget it. */
  takeChanges(): PkvmChanges {
    const r: PkvmChanges = {
      since: this.changeBase,
      ranges: this.changedOverflow ? undefined : this.changed,
      vms: this.changedVms,
    };
    this.changed = [];
    this.changedOverflow = false;
    this.changedVms = new Set();
    this.changeBase = this.version;
    return r;
  }

  /** The host regains [pfn, pfn + pages): a page still holding data is logged (invariant 6). */
  private handover(pfn: number, pages: number): void {
    if (this.dirtyHandovers.length >= HANDOVER_LOG_MAX) return;
    for (let p = pfn; p < pfn + pages; p++)
      if (this.frames.hasData(asPfn(p))) {
        const c = this.handoverCtx;
        this.dirtyHandovers.push({
          pfn: p,
          what: c.what,
          ...(c.handle === undefined ? {} : { handle: c.handle, gfn: c.gfn! + (p - pfn) }),
        });
        this.noteChange(p, p + 1);
        return;
      }
  }

  // ---- memory ranges (find_mem_range() and friends) -------------------------------------------

  /**
   * `find_mem_range()`: the region holding `pfn`, and the range around it — the region, or the
   * gap between regions (MMIO).
   */
  findMemRange(pfn: number): { reg: PkvmMemRegion | undefined; start: number; end: number } {
    let start = 0;
    let end = Number.MAX_SAFE_INTEGER;
    for (const r of this.config.memory) {
      if (pfn < r.base) {
        end = r.base;
        break;
      }
      if (pfn >= r.base + r.pages) {
        start = r.base + r.pages;
        continue;
      }
      return { reg: r, start: r.base, end: r.base + r.pages };
    }
    return { reg: undefined, start, end };
  }

  /** `addr_is_memory()`. */
  addrIsMemory(pfn: number): boolean {
    return this.findMemRange(pfn).reg !== undefined;
  }

  /** `range_is_memory()`: [start, end) lies in one memory region. */
  rangeIsMemory(start: number, end: number): boolean {
    const r = this.findMemRange(start);
    return r.reg !== undefined && end - 1 >= r.start && end - 1 < r.end;
  }

  /**
   * `check_range_allowed_memory()`: [start, end) in one `kvm_mem_range` (-EINVAL), and that range
   * memory without MEMBLOCK_NOMAP (-EPERM). Note `end - 1`: an empty range at a region's base
   * fails with -EINVAL, elsewhere it passes.
   */
  checkRangeAllowedMemory(start: number, end: number): number {
    const r = this.findMemRange(start);
    if (!(end - 1 >= r.start && end - 1 < r.end)) return E.EINVAL;
    if (r.reg === undefined || r.reg.nomap === true) return E.EPERM;
    return 0;
  }

  /**
   * `pfn_range_is_valid()` (v6.18, "Check range args for pKVM mem transitions", 2025-10): the
   * range lies below the PA limit, without overflow (an empty range passes).
   */
  pfnRangeIsValid(pfn: number, nrPages: number): boolean {
    const limit = 2 ** (this.config.physShift - 12);
    return pfn >= 0 && pfn < limit && limit - pfn >= nrPages;
  }

  // ---- page-state checks and updates -----------------------------------------------------------

  /** `__host_check_page_state_range()`: allowed memory, then every page's host state. */
  hostCheckPageStateRange(pfn: number, pages: number, state: PkvmPageState): number {
    const ret = this.checkRangeAllowedMemory(pfn, pfn + pages);
    if (ret !== 0) return ret;
    return this.vmemmap.firstFailing(pfn, pfn + pages, (p) => p.host === state) === undefined
      ? 0
      : E.EPERM;
  }

  /** `__hyp_check_page_state_range()`: every page's hyp state (no memory check of its own). */
  hypCheckPageStateRange(pfn: number, pages: number, state: PkvmPageState): number {
    return this.vmemmap.firstFailing(pfn, pfn + pages, (p) => p.hyp === state) === undefined
      ? 0
      : E.EPERM;
  }

  /**
   * `__host_set_page_state_range()`: a page the host could not access (NOPAGE) is identity
   * mapped first (`host_stage2_idmap_locked()`), then the vmemmap says `state`.
   */
  private hostSetPageStateRange(pfn: number, pages: number, state: PkvmPageState): void {
    if (this.vmemmap.get(pfn).host === PKVM_NOPAGE) {
      const block = pages === PMD_PAGES && pfn % PMD_PAGES === 0 ? PMD_PAGES : 1;
      this.hostS2.map_(pfn, pfn + pages, block, false);
    }
    this.vmemmap.setHost(pfn, pfn + pages, state);
  }

  /**
   * `host_stage2_set_owner_locked()`: memory only (-EPERM); owner HOST writes empty entries and
   * host OWNED (v6.18), any other owner an annotation and host NOPAGE.
   */
  private hostStage2SetOwnerLocked(pfn: number, pages: number, owner: number): number {
    if (!this.rangeIsMemory(pfn, pfn + pages)) return E.EPERM;
    if (owner === PKVM_ID_HOST) {
      this.handover(pfn, pages);
      this.hostS2.clear(pfn, pfn + pages);
      this.vmemmap.setHost(pfn, pfn + pages, PKVM_PAGE_OWNED);
    } else {
      this.hostS2.annotate(pfn, pfn + pages, owner);
      this.vmemmap.setHost(pfn, pfn + pages, PKVM_NOPAGE);
    }
    return 0;
  }

  /**
   * `host_stage2_set_owner_metadata_locked()` with `host_stage2_encode_gfn_meta()` (later tree):
   * a donation annotation naming the guest's VM handle and gfn; host NOPAGE.
   */
  private hostStage2SetGuestOwner(pfn: number, handle: number, gfn: number): number {
    if (!this.rangeIsMemory(pfn, pfn + 1)) return E.EPERM;
    this.hostS2.annotate(pfn, pfn + 1, PKVM_ID_GUEST, handle, gfn);
    this.vmemmap.setHost(pfn, pfn + 1, PKVM_NOPAGE);
    return 0;
  }

  /**
   * `hyp_poison_page()` (2026 series): a guest page the host takes back is cleared first (the
   * hypervisor maps it in its fixmap, memsets it and flushes it to the PoC).
   */
  private hypPoisonPage(pfn: number): void {
    // Seeded bug: the page is not cleared (the host gets the guest's data).
    if (this.mutants.has('pkvm_poison_page_no_zero')) return;
    this.frames.zero(asPfn(pfn), 1);
  }

  private must(ret: number, what: string): void {
    if (ret !== 0) throw new PkvmHypPanic(`WARN_ON(${what}) = ${ret}`);
  }

  // ---- host <-> hypervisor -----------------------------------------------------------------------

  /**
   * `__pkvm_host_share_hyp(pfn)`: host OWNED (allowed memory: -EINVAL/-EPERM; state: -EPERM),
   * hyp NOPAGE (-EPERM) → hyp SHARED_BORROWED, host SHARED_OWNED.
   */
  hostShareHyp(pfn: number): number {
    this.lastReclaimed = [];
    let ret = this.hostCheckPageStateRange(pfn, 1, PKVM_PAGE_OWNED);
    if (ret !== 0) return ret;
    ret = this.hypCheckPageStateRange(pfn, 1, PKVM_NOPAGE);
    if (ret !== 0) return ret;
    this.vmemmap.setHyp(pfn, pfn + 1, PKVM_PAGE_SHARED_BORROWED);
    this.hostSetPageStateRange(pfn, 1, PKVM_PAGE_SHARED_OWNED);
    this.rec(pfn, 1, { op: 'host_share_hyp' });
    return 0;
  }

  /**
   * `__pkvm_host_unshare_hyp(pfn)`: host SHARED_OWNED, hyp SHARED_BORROWED (-EPERM), not pinned
   * (`hyp_page_count()`: -EBUSY) → hyp NOPAGE, host OWNED.
   */
  hostUnshareHyp(pfn: number): number {
    this.lastReclaimed = [];
    let ret = this.hostCheckPageStateRange(pfn, 1, PKVM_PAGE_SHARED_OWNED);
    if (ret !== 0) return ret;
    ret = this.hypCheckPageStateRange(pfn, 1, PKVM_PAGE_SHARED_BORROWED);
    if (ret !== 0) return ret;
    if (this.vmemmap.get(pfn).refcount !== 0) return E.EBUSY;
    this.vmemmap.setHyp(pfn, pfn + 1, PKVM_NOPAGE);
    this.hostSetPageStateRange(pfn, 1, PKVM_PAGE_OWNED);
    this.rec(pfn, 1, { op: 'host_unshare_hyp' });
    return 0;
  }

  /**
   * `__pkvm_host_donate_hyp(pfn, nr_pages)` (EL2-internal: no host hypercall; the memcache refill
   * and VM creation call it): `pfn_range_is_valid()` (-EINVAL), host OWNED, hyp NOPAGE → hyp OWNED (mapped at EL2), host NOPAGE with
   * a hyp annotation.
   */
  hostDonateHyp(pfn: number, pages: number): number {
    if (!this.pfnRangeIsValid(pfn, pages)) return E.EINVAL;
    let ret = this.hostCheckPageStateRange(pfn, pages, PKVM_PAGE_OWNED);
    if (ret !== 0) return ret;
    ret = this.hypCheckPageStateRange(pfn, pages, PKVM_NOPAGE);
    if (ret !== 0) return ret;
    this.vmemmap.setHyp(pfn, pfn + pages, PKVM_PAGE_OWNED);
    this.must(this.hostStage2SetOwnerLocked(pfn, pages, PKVM_ID_HYP), 'host_stage2_set_owner');
    this.rec(pfn, pages, { op: 'host_donate_hyp' });
    return 0;
  }

  /**
   * `__pkvm_hyp_donate_host(pfn, nr_pages)` (EL2-internal): `pfn_range_is_valid()` (-EINVAL), hyp OWNED, host NOPAGE (-EPERM; the
   * hyp check runs first and has no memory check) → hyp NOPAGE (unmapped), host OWNED. It clears
   * nothing: callers that must, zero first.
   */
  hypDonateHost(pfn: number, pages: number): number {
    if (!this.pfnRangeIsValid(pfn, pages)) return E.EINVAL;
    let ret = this.hypCheckPageStateRange(pfn, pages, PKVM_PAGE_OWNED);
    if (ret !== 0) return ret;
    ret = this.hostCheckPageStateRange(pfn, pages, PKVM_NOPAGE);
    if (ret !== 0) return ret;
    this.vmemmap.setHyp(pfn, pfn + pages, PKVM_NOPAGE);
    this.must(this.hostStage2SetOwnerLocked(pfn, pages, PKVM_ID_HOST), 'host_stage2_set_owner');
    this.rec(pfn, pages, { op: 'hyp_donate_host' });
    return 0;
  }

  /**
   * `hyp_pin_shared_mem()` over [pfn, pfn + pages): host SHARED_OWNED, hyp SHARED_BORROWED
   * (-EPERM) → refcount + 1 per page (the first pin maps the page at EL2).
   */
  hypPinSharedMem(pfn: number, pages: number): number {
    this.lastReclaimed = [];
    let ret = this.hostCheckPageStateRange(pfn, pages, PKVM_PAGE_SHARED_OWNED);
    if (ret !== 0) return ret;
    ret = this.hypCheckPageStateRange(pfn, pages, PKVM_PAGE_SHARED_BORROWED);
    if (ret !== 0) return ret;
    this.vmemmap.update(pfn, pfn + pages, (p) => ({ ...p, refcount: p.refcount + 1 }));
    this.rec(pfn, pages, { op: 'hyp_pin' });
    return 0;
  }

  /**
   * `hyp_unpin_shared_mem()`: refcount - 1 per page, no state check (`hyp_page_ref_dec()`
   * BUG_ONs on a zero count: a hyp panic).
   */
  hypUnpinSharedMem(pfn: number, pages: number): void {
    this.lastReclaimed = [];
    if (this.vmemmap.firstFailing(pfn, pfn + pages, (p) => p.refcount > 0) !== undefined)
      throw new PkvmHypPanic('BUG_ON(!p->refcount) in hyp_page_ref_dec()');
    this.vmemmap.update(pfn, pfn + pages, (p) => ({ ...p, refcount: p.refcount - 1 }));
    this.rec(pfn, pages, { op: 'hyp_unpin' });
  }

  /**
   * `__pkvm_host_share_ffa(pfn, nr_pages)`: `pfn_range_is_valid()` (-EINVAL), host OWNED →
   * SHARED_OWNED (no other side).
   */
  hostShareFfa(pfn: number, pages: number): number {
    this.lastReclaimed = [];
    if (!this.pfnRangeIsValid(pfn, pages)) return E.EINVAL;
    const ret = this.hostCheckPageStateRange(pfn, pages, PKVM_PAGE_OWNED);
    if (ret !== 0) return ret;
    this.hostSetPageStateRange(pfn, pages, PKVM_PAGE_SHARED_OWNED);
    this.noteChange(pfn, pfn + pages);
    this.ffaShared.set(pfn, pfn + pages, true);
    this.rec(pfn, pages, { op: 'host_share_ffa' });
    return 0;
  }

  /**
   * `__pkvm_host_unshare_ffa(pfn, nr_pages)`: host SHARED_OWNED → OWNED. The function checks only
   * the host state: a page shared with the hypervisor or a guest passes too (only the FF-A proxy,
   * which unshares what it shared, keeps it safe).
   */
  hostUnshareFfa(pfn: number, pages: number): number {
    this.lastReclaimed = [];
    if (!this.pfnRangeIsValid(pfn, pages)) return E.EINVAL;
    const ret = this.hostCheckPageStateRange(pfn, pages, PKVM_PAGE_SHARED_OWNED);
    if (ret !== 0) return ret;
    this.hostSetPageStateRange(pfn, pages, PKVM_PAGE_OWNED);
    this.noteChange(pfn, pfn + pages);
    this.ffaShared.delete(pfn, pfn + pages);
    this.rec(pfn, pages, { op: 'host_unshare_ffa' });
    return 0;
  }

  // ---- VMs and vCPUs (pkvm.c) ---------------------------------------------------------------------

  /**
   * `__pkvm_reserve_vm()` → `allocate_vm_table_entry()` (v6.18, Fuad Tabba's "Reserve pKVM
   * handle during pkvm_init_host_vm()": `kvm_arch_init_vm()` reserves an entry for every VM of a
   * pKVM host at KVM_CREATE_VM): the first free entry of `vm_table`, marked RESERVED_ENTRY; -ENOMEM
   * when all KVM_MAX_PVMS are taken. Returns the handle (entry index + HANDLE_OFFSET).
   */
  reserveVm(): number {
    this.lastReclaimed = [];
    let idx = this.vmSlots.findIndex((s) => s === undefined);
    if (idx < 0) idx = this.vmSlots.length;
    if (idx >= KVM_MAX_PVMS) return E.ENOMEM;
    this.vmSlots[idx] = 'reserved';
    return idx + PKVM_HANDLE_OFFSET;
  }

  /**
   * `__pkvm_unreserve_vm(handle)` (the host's `pkvm_destroy_hyp_vm()` for a VM whose hyp VM was
   * never created): a RESERVED_ENTRY is freed; anything else is left alone.
   */
  unreserveVm(handle: number): void {
    this.lastReclaimed = [];
    const idx = handle - PKVM_HANDLE_OFFSET;
    if (this.vmSlots[idx] === 'reserved') this.vmSlots[idx] = undefined;
  }

  /**
   * `__pkvm_init_vm()`: `nr_vcpus` is the host's `created_vcpus` when it is called (below 1:
   * -EINVAL); the VM struct pages and the pgd pages are donated to the hypervisor first
   * (`map_donated_memory()`: any failure is -ENOMEM, and the pages donated so far go back);
   * then `insert_vm_table_entry()` fills the handle `kvm_arch_init_vm()` reserved (not a
   * RESERVED_ENTRY: -EINVAL, the pages go back). Without `reserved` (the hypervisor's own tests)
   * an entry is reserved first, and `nrVcpus` defaults to no bound. Returns the handle (> 0) or the
   * errno.
   */
  initVm(
    isProtected: boolean,
    vmPages: readonly number[],
    pgdPages: readonly number[],
    opts: { readonly reserved?: number; readonly nrVcpus?: number } = {},
  ): number {
    this.lastReclaimed = [];
    const nrVcpus = opts.nrVcpus ?? Number.POSITIVE_INFINITY;
    if (nrVcpus < 1) return E.EINVAL;
    const done: number[] = [];
    const giveBack = (): void => {
      this.handoverCtx = { what: '__pkvm_init_vm (failed)' };
      for (const q of done) {
        this.frames.zero(asPfn(q), 1);
        this.must(this.hypDonateHost(q, 1), '__pkvm_hyp_donate_host');
      }
    };
    for (const p of [...vmPages, ...pgdPages]) {
      if (this.hostDonateHyp(p, 1) !== 0) {
        giveBack();
        return E.ENOMEM;
      }
      done.push(p);
    }
    let handle = opts.reserved;
    if (handle === undefined) {
      handle = this.reserveVm();
      if (handle < 0) {
        giveBack();
        return handle;
      }
    }
    const idx = handle - PKVM_HANDLE_OFFSET;
    if (idx < 0 || idx >= KVM_MAX_PVMS || this.vmSlots[idx] !== 'reserved') {
      giveBack();
      return E.EINVAL;
    }
    this.vmSlots[idx] = handle;
    const stage2 = new GuestStage2();
    stage2.onChange = (start, end) => this.noteChange(start, end);
    this.vms.set(handle, {
      handle,
      isProtected,
      dying: false,
      createdVcpus: nrVcpus,
      vmPages: [...vmPages],
      pgdPages: [...pgdPages],
      vcpus: [],
      stage2,
      pool: [],
    });
    this.history.vmCreated(handle, isProtected);
    this.noteVm(handle);
    return handle;
  }

  /**
   * `__pkvm_init_vcpu()`: the vCPU page donated first (-ENOMEM), the VM (-ENOENT), not dying
   * (-EINVAL), then the host's `vcpu_idx` (`vcpuIdx`; by default the next free one) below the VM's
   * `created_vcpus` at `__pkvm_init_vm()` and not taken (-EINVAL); on failure the page goes back
   * (`unmap_donated_memory()`). Returns the vCPU index.
   */
  initVcpu(handle: number, page: number, vcpuIdx?: number): number {
    this.lastReclaimed = [];
    if (this.hostDonateHyp(page, 1) !== 0) return E.ENOMEM;
    const vm = this.vms.get(handle);
    const idx = vcpuIdx ?? vm?.vcpus.length ?? 0;
    const ret =
      vm === undefined
        ? E.ENOENT
        : vm.dying || idx >= vm.createdVcpus || vm.vcpus[idx] !== undefined
          ? E.EINVAL
          : 0;
    if (vm === undefined || ret !== 0) {
      this.handoverCtx = { what: '__pkvm_init_vcpu (failed)' };
      this.frames.zero(asPfn(page), 1);
      this.must(this.hypDonateHost(page, 1), '__pkvm_hyp_donate_host');
      return ret;
    }
    this.noteVm(handle);
    vm.vcpus[idx] = { idx, page, hostMemcache: [], memcache: [] };
    return idx;
  }

  /** The host's `topup_hyp_memcache()`: host pages pushed on the vCPU's host memcache (no EL2 call). */
  hostTopupMemcache(handle: number, vcpuIdx: number, pages: readonly number[]): void {
    const v = this.vms.get(handle)?.vcpus[vcpuIdx];
    if (v !== undefined) {
      this.noteVm(handle);
      v.hostMemcache.push(...pages);
    }
  }

  /** `pkvm_load_hyp_vcpu()` as the handlers see it: a live vCPU of a VM that is not dying. */
  private loadedVcpu(handle: number, vcpuIdx: number): { vm: PkvmVm; vcpu: PkvmVcpu } | undefined {
    const vm = this.vms.get(handle);
    const vcpu = vm?.vcpus[vcpuIdx];
    if (vm === undefined || vcpu === undefined || vm.dying) return undefined;
    // Whatever the call does next may change the VM's own pages (memcache, tables).
    this.noteVm(handle);
    return { vm, vcpu };
  }

  /**
   * `pkvm_refill_memcache()` → `refill_memcache(mc, host_mc.nr_pages, host_mc)`: while the hyp
   * memcache holds fewer pages than the host memcache held at the call, pop the host's head and
   * admit it (`admit_host_page()`: `__pkvm_host_donate_hyp(pfn, 1)`); a failed admission or an
   * empty host memcache is -ENOMEM (pages admitted so far stay).
   */
  private refill(vcpu: PkvmVcpu): number {
    const min = vcpu.hostMemcache.length;
    while (vcpu.memcache.length < min) {
      const head = vcpu.hostMemcache[vcpu.hostMemcache.length - 1];
      if (head === undefined) return E.ENOMEM;
      // Seeded bug: admit_host_page() takes the page without __pkvm_host_donate_hyp().
      if (!this.mutants.has('pkvm_memcache_admit_no_donate') && this.hostDonateHyp(head, 1) !== 0)
        return E.ENOMEM;
      vcpu.hostMemcache.pop();
      vcpu.memcache.push(head);
    }
    return 0;
  }

  /**
   * `pkvm_refill_memcache()` on a vCPU (the first step of the share and donate handlers, which
   * commits on its own: pages admitted before a later check fails stay admitted).
   */
  refillMemcache(handle: number, vcpuIdx: number): number {
    const v = this.vms.get(handle)?.vcpus[vcpuIdx];
    if (v === undefined) return E.EINVAL;
    this.noteVm(handle);
    return this.refill(v);
  }

  /** `kvm_mmu_cache_min_pages()`: stage-2 levels - 1. */
  get memcacheMinPages(): number {
    return this.config.stage2Levels - 1;
  }

  /** `__guest_check_pgtable_memcache()` (2026 fix): -ENOMEM below the minimum. */
  private guestCheckPgtableMemcache(vcpu: PkvmVcpu): number {
    return vcpu.memcache.length < this.memcacheMinPages ? E.ENOMEM : 0;
  }

  /** `guest_s2_zalloc_page()`: the VM's pool first, else the memcache's head, zeroed. */
  private tableAlloc(vm: PkvmVm, vcpu: PkvmVcpu | undefined): () => number {
    return () => {
      const p = vm.pool.pop() ?? vcpu?.memcache.pop();
      if (p === undefined) throw new PkvmHypPanic('WARN_ON(kvm_pgtable_stage2_map()) = -ENOMEM');
      this.frames.zero(asPfn(p), 1);
      return p;
    };
  }

  // ---- host <-> non-protected guests ----------------------------------------------------------------

  /**
   * `__guest_check_transition_size()`: one page, or exactly a PMD block (512 pages) with `pfn`
   * (when given) and `gfn` block-aligned; else -EINVAL.
   */
  private transitionSize(pfn: number, gfn: number, nrPages: number): number {
    if (nrPages === 1) return 1;
    if (nrPages !== PMD_PAGES) return E.EINVAL;
    if ((pfn | gfn) % PMD_PAGES !== 0) return E.EINVAL;
    return PMD_PAGES;
  }

  /**
   * `handle___pkvm_host_share_guest()` + `__pkvm_host_share_guest(pfn, gfn, nr_pages, vcpu, prot)`:
   * a loaded vCPU of a non-protected VM (-EINVAL), the memcache refill; then prot within RWX
   * (-EINVAL), `pfn_range_is_valid()` (-EINVAL), the transition size (-EINVAL), allowed memory (-EINVAL/-EPERM), the guest range
   * NOPAGE (-EPERM), each host page OWNED, or SHARED_OWNED with a non-zero count below U32_MAX
   * (-EBUSY at the maximum, -EPERM for a page shared with the hypervisor or FF-A), enough memcache
   * (-ENOMEM) → host SHARED_OWNED, count + 1 per page, guest SHARED_BORROWED with `prot`.
   */
  hostShareGuest(
    handle: number,
    vcpuIdx: number,
    pfn: number,
    gfn: number,
    nrPages: number,
    prot: number,
  ): number {
    this.lastReclaimed = [];
    const l = this.loadedVcpu(handle, vcpuIdx);
    if (l === undefined || l.vm.isProtected) return E.EINVAL;
    const { vm, vcpu } = l;
    let ret = this.refill(vcpu);
    if (ret !== 0) return ret;
    if ((prot & ~KVM_PGTABLE_PROT_RWX) !== 0) return E.EINVAL;
    if (!this.pfnRangeIsValid(pfn, nrPages)) return E.EINVAL;
    const size = this.transitionSize(pfn, gfn, nrPages);
    if (size < 0) return size;
    ret = this.checkRangeAllowedMemory(pfn, pfn + size);
    if (ret !== 0) return ret;
    if (vm.stage2.firstNotIn(gfn, size, PKVM_NOPAGE) !== undefined) return E.EPERM;
    let bad = 0;
    this.vmemmap.firstFailing(pfn, pfn + size, (p) => {
      if (p.host === PKVM_PAGE_OWNED) return true;
      if (p.host === PKVM_PAGE_SHARED_OWNED) {
        if (p.shareGuestCount >= this.config.shareGuestCountMax) {
          bad = E.EBUSY;
          return false;
        }
        // Only host to np-guest multi-sharing is tolerated.
        if (p.shareGuestCount > 0) return true;
      }
      bad = E.EPERM;
      return false;
    });
    if (bad !== 0) return bad;
    ret = this.guestCheckPgtableMemcache(vcpu);
    if (ret !== 0) return ret;
    // Seeded bug: a page already shared with a guest is shared again without counting it.
    const noCount = this.mutants.has('pkvm_share_guest_no_count');
    this.vmemmap.update(pfn, pfn + size, (p) => ({
      ...p,
      host: PKVM_PAGE_SHARED_OWNED,
      shareGuestCount: p.shareGuestCount + (noCount && p.shareGuestCount > 0 ? 0 : 1),
    }));
    vm.stage2.map(gfn, pfn, size, PKVM_PAGE_SHARED_BORROWED, prot, this.tableAlloc(vm, vcpu));
    this.rec(pfn, size, { op: 'host_share_guest', handle, gfn });
    return 0;
  }

  /**
   * `handle___pkvm_host_unshare_guest()` + `__pkvm_host_unshare_guest(gfn, nr_pages, vm)`: a
   * non-protected VM (-EINVAL), the size (-EINVAL, gfn alignment only), then
   * `__check_host_shared_guest()`: a valid leaf (-ENOENT) of that size (-E2BIG), guest
   * SHARED_BORROWED (-EPERM), each host page SHARED_OWNED (-EPERM) with a count (WARN, -EINVAL)
   * → guest unmapped (empty tables freed), count - 1, host OWNED when it reaches 0.
   */
  hostUnshareGuest(handle: number, gfn: number, nrPages: number): number {
    this.lastReclaimed = [];
    const vm = this.vms.get(handle);
    if (vm === undefined || vm.isProtected) return E.EINVAL;
    this.noteVm(handle);
    const size = this.transitionSize(0, gfn, nrPages);
    if (size < 0) return size;
    const leaf = vm.stage2.leaf(gfn);
    if (leaf === undefined || leaf.state === PKVM_POISON) return E.ENOENT;
    if (leaf.pages !== size) return E.E2BIG;
    if (leaf.state !== PKVM_PAGE_SHARED_BORROWED) return E.EPERM;
    const pfn = leaf.pfn;
    this.must(this.checkRangeAllowedMemory(pfn, pfn + size), 'check_range_allowed_memory');
    let bad = 0;
    this.vmemmap.firstFailing(pfn, pfn + size, (p) => {
      if (p.host !== PKVM_PAGE_SHARED_OWNED) bad = E.EPERM;
      else if (p.shareGuestCount === 0) bad = E.EINVAL;
      return bad === 0;
    });
    if (bad !== 0) return bad;
    vm.stage2.unmap(gfn, size, (t) => vm.pool.push(t));
    // Seeded bug: the page goes back to the host at the first unshare, whatever the count.
    const early = this.mutants.has('pkvm_unshare_guest_early_owned');
    this.vmemmap.update(pfn, pfn + size, (p) => {
      const c = p.shareGuestCount - 1;
      return { ...p, shareGuestCount: c, host: c === 0 || early ? PKVM_PAGE_OWNED : p.host };
    });
    this.rec(pfn, size, { op: 'host_unshare_guest', handle, gfn });
    return 0;
  }

  // ---- host -> protected guests (later tree) ---------------------------------------------------------

  /**
   * `handle___pkvm_host_donate_guest()` + `__pkvm_host_donate_guest(pfn, gfn, vcpu)`: a loaded
   * vCPU of a protected VM (-EINVAL), the memcache refill; then host OWNED (allowed memory
   * -EINVAL/-EPERM, state -EPERM), guest NOPAGE at gfn (-EPERM), enough memcache (-ENOMEM, the
   * 2026 fix: before any mutation) → host NOPAGE with a donation annotation (handle, gfn), guest
   * OWNED RWX. One page only.
   */
  hostDonateGuest(handle: number, vcpuIdx: number, pfn: number, gfn: number): number {
    this.lastReclaimed = [];
    const l = this.loadedVcpu(handle, vcpuIdx);
    if (l === undefined || !l.vm.isProtected) return E.EINVAL;
    const { vm, vcpu } = l;
    let ret = this.refill(vcpu);
    if (ret !== 0) return ret;
    ret = this.hostCheckPageStateRange(pfn, 1, PKVM_PAGE_OWNED);
    if (ret !== 0) return ret;
    if (vm.stage2.state(gfn) !== PKVM_NOPAGE) return E.EPERM;
    ret = this.guestCheckPgtableMemcache(vcpu);
    if (ret !== 0) return ret;
    // Seeded bug: the host state says NOPAGE but its stage-2 entry is left as it was (a valid
    // idmap the host keeps using, or an empty entry the next host fault maps again).
    if (this.mutants.has('pkvm_donate_keeps_host_map'))
      this.vmemmap.setHost(pfn, pfn + 1, PKVM_NOPAGE);
    else this.must(this.hostStage2SetGuestOwner(pfn, handle, gfn), 'set_owner_metadata');
    vm.stage2.map(gfn, pfn, 1, PKVM_PAGE_OWNED, KVM_PGTABLE_PROT_RWX, this.tableAlloc(vm, vcpu));
    this.rec(pfn, 1, { op: 'host_donate_guest', handle, gfn });
    return 0;
  }

  /**
   * `get_valid_guest_pte()` (later tree): the walk of an IPA at or past the guest's `ia_bits`
   * fails (`kvm_pgtable_walk()`: -ERANGE; under pKVM a guest's IPA size is `kvm_ipa_limit`, the
   * host stage-2's `physShift`), then poisoned (-EHWPOISON), invalid (-ENOENT), not a last-level
   * leaf (-E2BIG); the pfn (allowed memory, WARN).
   */
  private validGuestPte(vm: PkvmVm, gfn: number): { pfn: number; state: number } | number {
    if (gfn >= 2 ** (this.config.physShift - 12)) return E.ERANGE;
    const leaf = vm.stage2.leaf(gfn);
    if (leaf?.state === PKVM_POISON) return E.EHWPOISON;
    if (leaf === undefined) return E.ENOENT;
    if (leaf.pages !== 1) return E.E2BIG;
    this.must(this.checkRangeAllowedMemory(leaf.pfn, leaf.pfn + 1), 'check_range_allowed_memory');
    return { pfn: leaf.pfn, state: leaf.state };
  }

  /**
   * `__pkvm_guest_share_host(vcpu, gfn)` (the guest's MEM_SHARE): a valid last-level leaf
   * (`get_valid_guest_pte()`), guest OWNED (-EPERM), host NOPAGE (-EPERM) → guest SHARED_OWNED,
   * host SHARED_BORROWED (identity mapped).
   */
  guestShareHost(handle: number, gfn: number): number {
    this.lastReclaimed = [];
    const vm = this.vms.get(handle);
    if (vm === undefined) return E.EINVAL;
    const pte = this.validGuestPte(vm, gfn);
    if (typeof pte === 'number') return pte;
    if (pte.state !== PKVM_PAGE_OWNED) return E.EPERM;
    if (this.hostCheckPageStateRange(pte.pfn, 1, PKVM_NOPAGE) !== 0) return E.EPERM;
    vm.stage2.map(gfn, pte.pfn, 1, PKVM_PAGE_SHARED_OWNED, KVM_PGTABLE_PROT_RWX, () => {
      throw new PkvmHypPanic('stage-2 map of an existing leaf allocated a table');
    });
    this.hostSetPageStateRange(pte.pfn, 1, PKVM_PAGE_SHARED_BORROWED);
    this.rec(pte.pfn, 1, { op: 'guest_share_host', handle, gfn });
    return 0;
  }

  /**
   * `__pkvm_guest_unshare_host(vcpu, gfn)` (MEM_UNSHARE): a valid last-level leaf, guest
   * SHARED_OWNED (-EPERM), host SHARED_BORROWED (-EPERM) → host NOPAGE with the donation
   * annotation again, guest OWNED.
   */
  guestUnshareHost(handle: number, gfn: number): number {
    this.lastReclaimed = [];
    const vm = this.vms.get(handle);
    if (vm === undefined) return E.EINVAL;
    const pte = this.validGuestPte(vm, gfn);
    if (typeof pte === 'number') return pte;
    // Seeded bug: the state checks skipped (a page the guest owns and never shared is "unshared").
    if (!this.mutants.has('pkvm_mem_unshare_owned')) {
      if (pte.state !== PKVM_PAGE_SHARED_OWNED) return E.EPERM;
      if (this.hostCheckPageStateRange(pte.pfn, 1, PKVM_PAGE_SHARED_BORROWED) !== 0) return E.EPERM;
    }
    this.must(this.hostStage2SetGuestOwner(pte.pfn, handle, gfn), 'set_owner_metadata');
    vm.stage2.map(gfn, pte.pfn, 1, PKVM_PAGE_OWNED, KVM_PGTABLE_PROT_RWX, () => {
      throw new PkvmHypPanic('stage-2 map of an existing leaf allocated a table');
    });
    this.rec(pte.pfn, 1, { op: 'guest_unshare_host', handle, gfn });
    return 0;
  }

  /**
   * A protected guest's HVC (`kvm_handle_pvm_hvc64()`): SMCCC_VERSION (1.1), the KVM vendor UID
   * (x0 = its word 0) and KVM_FEATURES (FEATURES | HYP_MEMINFO | MEM_SHARE | MEM_UNSHARE), HYP_MEMINFO (no arguments, else
   * INVALID_PARAMETER; returns the protection granule, 4096), MEM_SHARE (`pkvm_memshare_call()`:
   * a1 = IPA, a2 = a3 = 0; success exits to the host, -ENOENT becomes a data abort the host
   * resolves before the guest retries, anything else — an IPA past the guest's IPA size too —
   * INVALID_PARAMETER), MEM_UNSHARE (same, without the abort case). Other calls, and every call of
   * a non-protected VM, go to the host. `args` are the guest's x1..x3, full 64-bit registers
   * (`smccc_get_arg1..3()`): any bit of a reserved argument makes it non-zero.
   * [unverified: MEM_UNSHARE's argument checks mirror MEM_SHARE's.]
   */
  guestHvc(
    handle: number,
    vcpuIdx: number,
    func: number,
    args: readonly (number | bigint)[],
  ): GuestHvcResult {
    this.lastReclaimed = [];
    const l = this.loadedVcpu(handle, vcpuIdx);
    if (l === undefined) return { kind: 'not-running' };
    if (!l.vm.isProtected) return { kind: 'to-host' };
    const [a1 = 0n, a2 = 0n, a3 = 0n] = args.map((v) => BigInt.asUintN(64, BigInt(v)));
    const invalid: GuestHvcResult = {
      kind: 'ret',
      a0: SMCCC_RET_INVALID_PARAMETER,
      exitToHost: false,
    };
    // The IPA's page number: below 2^52, an exact Number.
    const ipaGfn = (ipa: bigint): number => Number(ipa >> 12n);
    switch (func) {
      // Answered at EL2 for a protected guest (the pKVM series' kvm_handle_pvm_hvc64(), 2022
      // posting, [PATCH 87/89]; [unverified: the 2026 mainline form]): x0 only.
      case ARM_SMCCC_VERSION_FUNC_ID:
        return { kind: 'ret', a0: 0x10001, exitToHost: false };
      case ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID:
        return { kind: 'ret', a0: 0xb66fb428, exitToHost: false };
      case ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID:
        // FEATURES | HYP_MEMINFO | MEM_SHARE | MEM_UNSHARE (bits 0, 2, 3, 4).
        return { kind: 'ret', a0: 0x1d, exitToHost: false };
      case ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID:
        if (a1 !== 0n || a2 !== 0n || a3 !== 0n) return invalid;
        return { kind: 'ret', a0: 4096, exitToHost: false };
      case ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID: {
        if (a2 !== 0n || a3 !== 0n) return invalid;
        const gfn = ipaGfn(a1);
        const err = this.guestShareHost(handle, gfn);
        if (err === 0) return { kind: 'ret', a0: SMCCC_RET_SUCCESS, exitToHost: true };
        if (err === E.ENOENT) return { kind: 'mem-abort', gfn };
        return invalid;
      }
      case ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID: {
        if (a2 !== 0n || a3 !== 0n) return invalid;
        const err = this.guestUnshareHost(handle, ipaGfn(a1));
        if (err === 0) return { kind: 'ret', a0: SMCCC_RET_SUCCESS, exitToHost: true };
        return invalid;
      }
      default:
        return { kind: 'to-host' };
    }
  }

  /** A guest load or store at `gfn` through its stage-2. */
  guestAccess(handle: number, gfn: number): GuestAccessResult {
    const leaf = this.vms.get(handle)?.stage2.leaf(gfn);
    if (leaf === undefined) return { kind: 'mem-abort', gfn };
    if (leaf.state === PKVM_POISON) return { kind: 'poison', gfn };
    return { kind: 'ok', pfn: leaf.pfn, state: leaf.state };
  }

  // ---- teardown and reclaim (later tree) ---------------------------------------------------------------

  /**
   * `__pkvm_start_teardown_vm(handle)`: the VM (-ENOENT), not already dying (-EINVAL) → dying: its
   * vCPUs no longer load. [unverified: the errno of an unknown handle.]
   */
  startTeardownVm(handle: number): number {
    this.lastReclaimed = [];
    const vm = this.vms.get(handle);
    if (vm === undefined) return E.ENOENT;
    if (vm.dying) return E.EINVAL;
    vm.dying = true;
    this.history.vmDying(handle);
    this.noteVm(handle);
    return 0;
  }

  /**
   * `__pkvm_reclaim_dying_guest_page(handle, gfn)`: a dying VM (-EINVAL), then
   * `__pkvm_host_reclaim_page_guest(gfn, vm)` (later tree): the entry through
   * `get_valid_guest_pte()` — invalid (-ENOENT), not a last-level leaf (-E2BIG), poisoned
   * (-EHWPOISON, which the function turns into 0: `return ret && ret != -EHWPOISON ? ret : 0`,
   * Fuad Tabba's 2026-04 patch context; a forced reclaim already gave that page back, so nothing
   * changes [unverified: whether the poisoned entry is cleared]); then the guest's state — OWNED
   * (host NOPAGE, asserted): the page is poisoned (zeroed, `hyp_poison_page()`); SHARED_OWNED
   * (host SHARED_BORROWED, asserted); anything else (SHARED_BORROWED) -EPERM — then the guest
   * entry unmapped and the page the host's (OWNED).
   */
  reclaimDyingGuestPage(handle: number, gfn: number): number {
    this.lastReclaimed = [];
    const vm = this.vms.get(handle);
    if (vm === undefined || !vm.dying) return E.EINVAL;
    this.noteVm(handle);
    const pte = this.validGuestPte(vm, gfn);
    if (typeof pte === 'number') return pte === E.EHWPOISON ? 0 : pte;
    this.handoverCtx = { what: '__pkvm_reclaim_dying_guest_page', handle, gfn };
    const pfn = pte.pfn;
    if (pte.state === PKVM_PAGE_OWNED) {
      this.must(this.hostCheckPageStateRange(pfn, 1, PKVM_NOPAGE), 'host state NOPAGE');
      this.hypPoisonPage(pfn);
      this.lastReclaimed.push(pfn);
    } else if (pte.state === PKVM_PAGE_SHARED_OWNED) {
      this.must(this.hostCheckPageStateRange(pfn, 1, PKVM_PAGE_SHARED_BORROWED), 'host state');
    } else return E.EPERM;
    vm.stage2.unmap(gfn, 1, (t) => vm.pool.push(t));
    if (pte.state === PKVM_PAGE_OWNED)
      this.must(this.hostStage2SetOwnerLocked(pfn, 1, PKVM_ID_HOST), 'host_stage2_set_owner');
    else this.vmemmap.setHost(pfn, pfn + 1, PKVM_PAGE_OWNED);
    this.rec(pfn, 1, { op: 'host_reclaim_page_guest', handle, gfn });
    return 0;
  }

  /**
   * `__pkvm_host_force_reclaim_page_guest(phys)`: memory (-EINVAL [unverified]), host NOPAGE
   * (-EAGAIN), the annotation a guest donation (`host_stage2_decode_gfn_meta()`: -EINVAL for a
   * valid or empty entry, -EPERM for another owner), the VM still there (-EAGAIN), the guest's
   * state at the annotated gfn OWNED (-EPERM) → the guest entry poisoned, the page zeroed
   * (`hyp_poison_page()`), the host owner again.
   */
  hostForceReclaimPageGuest(pfn: number): number {
    this.lastReclaimed = [];
    if (!this.addrIsMemory(pfn)) return E.EINVAL;
    if (this.vmemmap.get(pfn).host !== PKVM_NOPAGE) return E.EAGAIN;
    const pte = this.hostS2.get(pfn);
    if (pte === undefined || pte.t !== 'annot') return E.EINVAL;
    if (pte.owner !== PKVM_ID_GUEST) return E.EPERM;
    const vm = this.vms.get(pte.handle);
    if (vm === undefined) return E.EAGAIN;
    if (vm.stage2.state(pte.gfn) !== PKVM_PAGE_OWNED) return E.EPERM;
    this.handoverCtx = {
      what: '__pkvm_host_force_reclaim_page_guest',
      handle: pte.handle,
      gfn: pte.gfn,
    };
    // Seeded bug: the guest's entry is left valid (the guest keeps the page the host gets back).
    if (!this.mutants.has('pkvm_force_reclaim_no_poison')) vm.stage2.poison(pte.gfn);
    this.hypPoisonPage(pfn);
    this.lastReclaimed.push(pfn);
    this.must(this.hostStage2SetOwnerLocked(pfn, 1, PKVM_ID_HOST), 'host_stage2_set_owner');
    this.rec(pfn, 1, {
      op: 'host_force_reclaim_page_guest',
      handle: pte.handle,
      gfn: pte.gfn,
    });
    return 0;
  }

  /**
   * `__pkvm_finalize_teardown_vm(handle)`: the VM (-ENOENT), dying (-EINVAL) → out of the VM
   * table; its stage-2 destroyed (`reclaim_pgtable_pages()`: table and pool pages), and every page
   * the VM held for the hypervisor — tables, pool, pgd, the vCPUs' memcaches, the vCPU and VM
   * structs — zeroed and given back (`teardown_donated_memory()`, `__pkvm_hyp_donate_host()`).
   * Guest pages the host did not reclaim first stay as they are (owned by a VM that is gone).
   */
  finalizeTeardownVm(handle: number): number {
    this.lastReclaimed = [];
    const vm = this.vms.get(handle);
    if (vm === undefined) return E.ENOENT;
    if (!vm.dying) return E.EINVAL;
    this.noteVm(handle);
    this.handoverCtx = { what: '__pkvm_finalize_teardown_vm' };
    for (const r of vm.stage2.leafRuns())
      this.rec(r.leaf.base, r.end - r.start, {
        op: 'guest_stage2_destroyed',
        handle,
        gfn: r.start,
      });
    const back = [
      ...vm.stage2.destroy(),
      ...vm.pool,
      ...vm.pgdPages,
      ...vm.vcpus.flatMap((v) => [...v.memcache, v.page]),
      ...vm.vmPages,
    ];
    for (const p of back) {
      this.frames.zero(asPfn(p), 1);
      this.must(this.hypDonateHost(p, 1), '__pkvm_hyp_donate_host');
    }
    this.vms.delete(handle);
    this.vmSlots[handle - PKVM_HANDLE_OFFSET] = undefined;
    this.history.vmGone(handle);
    return 0;
  }

  // ---- host stage-2 faults --------------------------------------------------------------------------------

  /**
   * `host_stage2_idmap(addr)` → `host_stage2_adjust_range()`: a valid entry is -EAGAIN (v6.18),
   * an annotated one -EPERM; else the largest block (levels 1..3) whose table entry is empty and
   * which lies inside the faulting address's memory region or MMIO gap is identity mapped.
   */
  hostStage2Idmap(pfn: number): { ret: number; start: number; end: number } {
    const range = this.findMemRange(pfn);
    const pte = this.hostS2.get(pfn);
    if (pte?.t === 'map') return { ret: E.EAGAIN, start: pfn, end: pfn };
    // Seeded bug: an annotation naming a guest is not refused (the host maps the guest's page).
    if (
      pte?.t === 'annot' &&
      !(pte.owner === PKVM_ID_GUEST && this.mutants.has('pkvm_host_abort_maps_guest_page'))
    )
      return { ret: E.EPERM, start: pfn, end: pfn };
    for (let level = this.hostS2.emptyLeafLevel(pfn); level <= S2_LAST_LEVEL; level++) {
      if (level === 0) continue; // kvm_level_supports_block_mapping()
      const g = S2_LEVEL_PAGES[level]!;
      const s = pfn - (pfn % g);
      if (s < range.start || s + g > range.end) continue;
      this.hostS2.map_(s, s + g, g, range.reg === undefined);
      return { ret: 0, start: s, end: s + g };
    }
    return { ret: E.EINVAL, start: pfn, end: pfn };
  }

  /**
   * `handle_host_mem_abort()`: a host stage-2 fault on `pfn`. v6.18 panics on anything but 0 and
   * -EAGAIN; the later tree injects an abort into the host for -EPERM (`config.hostAbort`).
   */
  handleHostMemAbort(pfn: number): HostAbortResult {
    this.lastReclaimed = [];
    const r = this.hostStage2Idmap(pfn);
    if (r.ret === 0) return { kind: 'mapped', start: r.start, end: r.end };
    if (r.ret === E.EAGAIN) return { kind: 'spurious' };
    if (r.ret === E.EPERM && this.config.hostAbort === 'inject')
      return { kind: 'abort-injected', pfn };
    return { kind: 'hyp-panic', ret: r.ret };
  }

  /**
   * A host access to `pfn` through its stage-2: a valid entry proceeds; an empty one faults and
   * is mapped (then proceeds); an annotated one ends in the abort (or the panic).
   */
  hostAccess(pfn: number): 'ok' | 'abort' | 'hyp-panic' {
    if (this.hostS2.get(pfn)?.t === 'map') return 'ok';
    const r = this.handleHostMemAbort(pfn);
    if (r.kind === 'mapped' || r.kind === 'spurious') return 'ok';
    return r.kind === 'abort-injected' ? 'abort' : 'hyp-panic';
  }
}
