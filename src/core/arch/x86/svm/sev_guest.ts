/**
 * The SEV-SNP guest side of a KVM_RUN (trace-format.md "SEV-SNP guest steps"): what the CPU checks
 * when an SNP guest touches memory or runs PVALIDATE (platforms.md §2.2, §2.3), and what kvm_amd
 * does with the guest's page-state changes (arch/x86/kvm/svm/sev.c, v6.18).
 *
 * Reproduced here:
 * - the RMP check after the stage-2 walk of a data access (APM vol. 2 "RMP and VMPL access
 *   checks"): C=1 needs an assigned entry of this guest's ASID at this GPA, of a page size the
 *   nested mapping does not undercut, else an #NPF with the RMP bit; a C=1 access to an
 *   unvalidated page raises #VC ("page not validated"); C=0 to an assigned page is an #NPF (RMP).
 *   KVM handles the #NPF in `npf_interception()`: `kvm_mmu_page_fault()` with
 *   PFERR_PRIVATE_ACCESS from PFERR_GUEST_ENC (the C-bit), whose private/shared mismatch check is
 *   the implicit-conversion KVM_EXIT_MEMORY_FAULT, then `sev_handle_rmp_fault()` (PSMASH of a 2M
 *   entry the nested mapping undercuts, and a zap of the 2 MiB gfn range);
 * - PVALIDATE (the guest's `pvalidate()`, arch/x86/include/asm/sev.h), its operand check
 *   (FAIL_INPUT), FAIL_SIZEMISMATCH (a 2M request on 4K entries; a 4K request on a 2M entry is an
 *   #NPF with PFERR_GUEST_SIZEM that `sev_handle_rmp_fault()` resolves with PSMASH, after which
 *   the guest's retry succeeds), and CF=1 when the entry already has the requested state
 *   (Linux's PVALIDATE_FAIL_NOUPDATE);
 * - the GHCB MSR protocol page-state change (`snp_begin_psc_msr()` / `snp_complete_psc_msr()`)
 *   and the PSC descriptor NAE event (`snp_begin_psc()`, `__snp_complete_one_psc()`,
 *   `snp_complete_one_psc()`, `snp_complete_psc()`), both forwarded to the VMM as
 *   KVM_EXIT_HYPERCALL with KVM_HC_MAP_GPA_RANGE when KVM_CAP_EXIT_HYPERCALL enables it;
 * - the GHCB termination request (`sev_handle_vmgexit_msr_protocol()`, GHCB_MSR_TERM_REQ):
 *   KVM_EXIT_SYSTEM_EVENT of type KVM_SYSTEM_EVENT_SEV_TERM with the GHCB MSR as data[0]; a guest
 *   that takes a #VC it cannot handle ends this way (Linux: `sev_es_terminate()`).
 *
 * Not modelled: guest page tables (a step names the GPA and the C-bit of its PTE), VMPL
 * permissions, RMPADJUST, the VMSA bit's write protection, the GHCB page itself (the descriptor
 * is the step's own data, copied in and out as `setup_vmgexit_scratch()` does).
 */
import type { KernelCtx } from '../../../ctx.js';
import type { Gfn, MappingLevel, Pfn } from '../../../base/units.js';
import type { Vm } from '../../../kvm/objects.js';
import { kvmMemIsPrivate } from '../../../kvm/mem_attributes.js';
import { RMP_PAGES_2M, RMP_RET } from '../../../platform/sev_snp/rmp.js';
import { kvmMmuInvalidateGfnRange } from '../mmu.js';
import { sevSnpGuest, toKvmSevInfo } from './sev_common.js';
import type {
  MapGpaRangeExit,
  PscDesc,
  PscEntry,
  PvalidateResult,
  SnpAccessCheck,
  SnpGuestOps,
} from '../x86_ops.js';

/** PVALIDATE return codes (arch/x86/include/asm/sev.h); NOUPDATE is Linux's name for CF=1. */
export const PVALIDATE_RET = { SUCCESS: 0, FAIL_INPUT: 1, FAIL_SIZEMISMATCH: 6 } as const;
export const PVALIDATE_FAIL_NOUPDATE = 255;

/** The #VC error code of a C=1 access to an unvalidated page (platforms.md §2.3, unverified). */
export const SVM_EXIT_PAGE_NOT_VALIDATED = 0x404n;

/** GHCB MSR protocol (arch/x86/include/asm/sev-common.h). */
export const GHCB_MSR_PSC_REQ = 0x014n;
export const GHCB_MSR_PSC_RESP = 0x015n;
/** "Set highest bit as a generic error response" (sev-common.h, 6.18). */
export const GHCB_MSR_PSC_RESP_ERROR = (1n << 63n) | GHCB_MSR_PSC_RESP;
export const GHCB_MSR_TERM_REQ = 0x100n;
/** PSC operations (enum psc_op; sev-common.h VMGEXIT_PSC_OP_*); 3 and 4 are PSMASH/UNSMASH. */
export const SNP_PAGE_STATE_PRIVATE = 1;
export const SNP_PAGE_STATE_SHARED = 2;
/** `VMGEXIT_PSC_MAX_COUNT` and the PSC errors in SW_EXITINFO2 (sev-common.h). */
export const VMGEXIT_PSC_MAX_COUNT = 253;
export const VMGEXIT_PSC_ERROR_GENERIC = 0x100n << 32n;
export const VMGEXIT_PSC_ERROR_INVALID_HDR = (1n << 32n) | 1n;
export const VMGEXIT_PSC_ERROR_INVALID_ENTRY = (1n << 32n) | 2n;
/** KVM_MAP_GPA_RANGE_* (include/uapi/linux/kvm_para.h). */
export const KVM_MAP_GPA_RANGE_PAGE_SZ_4K = 0n;
export const KVM_MAP_GPA_RANGE_PAGE_SZ_2M = 1n;
export const KVM_MAP_GPA_RANGE_ENCRYPTED = 1n << 4n;
export const KVM_MAP_GPA_RANGE_DECRYPTED = 0n;

/**
 * The RMP check of a guest access to `gfn`, mapped to `pfn` at nested level `level`, with C-bit
 * `enc` (APM vol. 2 "RMP and VMPL access checks"; platforms.md §2.3), and KVM's handling of the
 * #NPF it raises (`npf_interception()`: `kvm_mmu_page_fault()` first, whose private/shared
 * mismatch check ends in a memory-fault exit, then `sev_handle_rmp_fault()`).
 */
export function snpCheckAccess(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  pfn: Pfn,
  level: MappingLevel,
  enc: boolean,
): SnpAccessCheck {
  const rmp = k.platform.sevSnp!.rmp;
  const e = rmp.lookup(pfn);
  if (!enc) {
    if (!e.assigned) return 'ok';
    // C=0 to an assigned page: #NPF (RMP) with PFERR_PRIVATE_ACCESS clear; the fault path's
    // mismatch check sees a PRIVATE gfn (the only way a private frame is mapped). The model takes
    // the full fault path for reads and writes alike; whether the kernel's fast_page_fault() could
    // take a write through a present, writable SPTE as spurious first is not modelled.
    return kvmMemIsPrivate(vm, gfn) ? 'memfault' : 'spin';
  }
  const asid = toKvmSevInfo(vm).asid;
  const gpa = BigInt(gfn) << 12n;
  const sizeMismatch = e.assigned && ((e.size === '2M') !== (level === '2M') || level === '1G');
  if (!e.assigned || e.asid !== asid || e.gpa !== gpa || sizeMismatch) {
    // #NPF (RMP) with PFERR_PRIVATE_ACCESS: kvm_mmu_page_fault()'s mismatch check first.
    if (!kvmMemIsPrivate(vm, gfn)) return 'memfault';
    return sevHandleRmpFault(k, vm, gfn, pfn) ? 'retry' : 'spin';
  }
  return e.validated || k.mutants.has('snp_vc_not_raised') ? 'ok' : 'vc';
}

/**
 * `sev_handle_rmp_fault()`: a 2M RMP entry behind a smaller nested mapping (or a smaller
 * PVALIDATE) is PSMASHed into 512 4K entries and the 2 MiB gfn range zapped
 * (`kvm_zap_gfn_range()`), so the retried access faults the mapping in at 4K. An unassigned or
 * 4K entry leaves nothing to fix (the kernel warns or traces and returns). Returns whether it
 * changed anything.
 */
function sevHandleRmpFault(k: KernelCtx, vm: Vm, gfn: Gfn, pfn: Pfn): boolean {
  const rmp = k.platform.sevSnp!.rmp;
  const e = rmp.lookup(pfn);
  if (!e.assigned || e.size === '4K') return false;
  // snp_rmptable_psmash(): the 2M-aligned pfn.
  const rc = rmp.psmash((pfn - (pfn % RMP_PAGES_2M)) as Pfn);
  if (rc !== RMP_RET.SUCCESS) return false;
  const g0 = gfn - (gfn % RMP_PAGES_2M);
  kvmMmuInvalidateGfnRange(k, vm, 0, g0 as Gfn, (g0 + RMP_PAGES_2M) as Gfn, 'rmp_fault');
  return true;
}

/**
 * PVALIDATE of the page at `gfn` (backed by `pfn`, reached through the nested mapping) with
 * `size` and `validate`, after the operand check: the RMP entry must be assigned to this guest at
 * this GPA (else #NPF (RMP), as for a C=1 access); a 2M request on a 4K entry is
 * FAIL_SIZEMISMATCH; a 4K request inside a 2M entry is an #NPF (SIZEM) resolved by PSMASH; an
 * entry already in the requested state sets CF (NOUPDATE); else the entry's validated bit (a 2M
 * entry's as a whole) becomes `validate`.
 */
export function snpPvalidate(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  pfn: Pfn,
  size: '4K' | '2M',
  validate: boolean,
): PvalidateResult {
  const rmp = k.platform.sevSnp!.rmp;
  const e = rmp.lookup(pfn);
  const asid = toKvmSevInfo(vm).asid;
  if (!e.assigned || e.asid !== asid || e.gpa !== BigInt(gfn) << 12n)
    // #NPF (RMP) with PFERR_PRIVATE_ACCESS, handled as for a C=1 access (snpCheckAccess()).
    return kvmMemIsPrivate(vm, gfn) ? { kind: 'spin' } : { kind: 'memfault' };
  if (size === '2M' && e.size === '4K')
    return { kind: 'done', ret: PVALIDATE_RET.FAIL_SIZEMISMATCH, cf: 0 };
  if (size === '4K' && e.size === '2M')
    return sevHandleRmpFault(k, vm, gfn, pfn) ? { kind: 'retry' } : { kind: 'spin' };
  if (e.validated === validate && !k.mutants.has('snp_pvalidate_no_noupdate'))
    return { kind: 'done', ret: PVALIDATE_RET.SUCCESS, cf: 1 };
  rmp.setFlags(pfn, { validated: validate });
  return { kind: 'done', ret: PVALIDATE_RET.SUCCESS, cf: 0 };
}

/**
 * A GHCB MSR protocol page-state change (`snp_begin_psc_msr()`, completed by
 * `snp_complete_psc_msr()`): `msr` is the value the guest wrote to the GHCB MSR before VMGEXIT.
 * Returns the GHCB MSR value the guest reads back.
 */
export function snpPscMsr(vm: Vm, msr: bigint, exit: MapGpaRangeExit): bigint {
  // GHCB_MSR_PSC_REQ_TO_GFN / _TO_OP: GHCBData[51:12] and [55:52].
  const gfn = (msr >> 12n) & ((1n << 40n) - 1n);
  const op = Number((msr >> 52n) & 0xfn);
  if (op !== SNP_PAGE_STATE_PRIVATE && op !== SNP_PAGE_STATE_SHARED) return GHCB_MSR_PSC_RESP_ERROR;
  if ((vm.hypercallExitEnabled & (1n << 12n)) === 0n) return GHCB_MSR_PSC_RESP_ERROR;
  const attrs =
    (op === SNP_PAGE_STATE_PRIVATE ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED) |
    KVM_MAP_GPA_RANGE_PAGE_SZ_4K;
  const ret = exit([gfn << 12n, 1n, attrs]);
  return ret !== 0n ? GHCB_MSR_PSC_RESP_ERROR : GHCB_MSR_PSC_RESP;
}

/**
 * The PSC NAE event (`snp_begin_psc()` and its completions): walks the descriptor from
 * cur_entry to end_entry, merging adjacent entries of the same operation and page size into one
 * KVM_HC_MAP_GPA_RANGE exit, marking each completed entry's cur_page whole and advancing
 * cur_entry (`__snp_complete_one_psc()`); PSMASH/UNSMASH entries complete without an exit.
 * Returns SW_EXITINFO2 (0 or a VMGEXIT_PSC_ERROR_*). `desc` is updated in place.
 */
export function snpPsc(k: KernelCtx, vm: Vm, desc: PscDesc, exit: MapGpaRangeExit): bigint {
  const entries = desc.entries;
  if ((vm.hypercallExitEnabled & (1n << 12n)) === 0n) return VMGEXIT_PSC_ERROR_GENERIC;
  for (;;) {
    // next_range:
    const idxStart = desc.curEntry;
    const idxEnd = desc.endEntry;
    if (idxEnd >= VMGEXIT_PSC_MAX_COUNT) return VMGEXIT_PSC_ERROR_INVALID_HDR;
    // Find the start of the next range which needs processing.
    let idx = idxStart;
    let gfn = 0n;
    let npages = 0;
    let huge = false;
    let start: PscEntry | undefined;
    for (; idx <= idxEnd; idx++, desc.curEntry++) {
      // Entries past the step's list read as zero (the rest of the GHCB shared buffer).
      const en = entries[idx] ?? { curPage: 0, gfn: 0n, op: 0, pageSize: 0 };
      start = en;
      gfn = en.gfn;
      huge = en.pageSize === 1;
      npages = huge ? 512 : 1;
      if (en.curPage > npages || gfn % BigInt(npages) !== 0n)
        return VMGEXIT_PSC_ERROR_INVALID_ENTRY;
      if (en.curPage !== 0) {
        // A partially-completed 2M range: the rest is handled at 4K.
        npages -= en.curPage;
        gfn += BigInt(en.curPage);
        huge = false;
      }
      if (npages !== 0) break;
    }
    // The header's cur_entry is a u16.
    desc.curEntry &= 0xffff;
    if (idx > idxEnd || start === undefined) return 0n;
    const psc2m = huge;
    const pscIdx = idx;
    let inflight = 1;
    // Adjacent entries with the same operation that continue the range join this exit.
    // (Mutant snp_psc_merge_mixed_ops: the operation is not compared, so an entry of the other
    // operation rides along in this exit, with this exit's attribute.)
    const mixOps = k.mutants.has('snp_psc_merge_mixed_ops');
    while (++idx <= idxEnd) {
      const en = entries[idx] ?? { curPage: 0, gfn: 0n, op: 0, pageSize: 0 };
      if (
        (en.op !== start.op && !mixOps) ||
        en.gfn !== start.gfn + BigInt(npages) ||
        en.curPage !== 0 ||
        (en.pageSize === 1) !== psc2m
      )
        break;
      inflight++;
      npages += psc2m ? 512 : 1;
    }
    if (start.op === SNP_PAGE_STATE_PRIVATE || start.op === SNP_PAGE_STATE_SHARED) {
      const attrs =
        (start.op === SNP_PAGE_STATE_PRIVATE
          ? KVM_MAP_GPA_RANGE_ENCRYPTED
          : KVM_MAP_GPA_RANGE_DECRYPTED) |
        (start.pageSize === 1 ? KVM_MAP_GPA_RANGE_PAGE_SZ_2M : KVM_MAP_GPA_RANGE_PAGE_SZ_4K);
      const ret = exit([gfn << 12n, BigInt(npages), attrs]);
      // snp_complete_one_psc(): a non-zero hypercall.ret fails the whole request.
      if (ret !== 0n) return VMGEXIT_PSC_ERROR_GENERIC;
    }
    // __snp_complete_one_psc(): the in-flight entries are done.
    let i = pscIdx;
    for (; inflight > 0; inflight--, i++) {
      const en = entries[i];
      if (en !== undefined) en.curPage = en.pageSize === 1 ? 512 : 1;
    }
    desc.curEntry = i & 0xffff;
  }
}

/** The GHCB MSR value of a termination request (GHCB_MSR_TERM_REQ with reason set and code). */
export function ghcbTermReq(reasonSet: number, reason: number): bigint {
  return GHCB_MSR_TERM_REQ | (BigInt(reasonSet & 0xf) << 12n) | (BigInt(reason & 0xff) << 16n);
}

/** The GHCB MSR value of a PSC request (GHCB_MSR_PSC_REQ_GFN(gfn, op)). */
function pscReqGfn(gfn: bigint, op: number): bigint {
  return (BigInt(op & 0xf) << 52n) | ((gfn & ((1n << 40n) - 1n)) << 12n) | GHCB_MSR_PSC_REQ;
}

const SNP_GUEST_OPS: SnpGuestOps = {
  checkAccess: snpCheckAccess,
  pvalidate: snpPvalidate,
  pscMsr: (vm, gfn, op, exit) => snpPscMsr(vm, pscReqGfn(gfn, op), exit),
  psc: snpPsc,
  vcPageNotValidated: SVM_EXIT_PAGE_NOT_VALIDATED,
  // Linux's "Unhandled #VC exception": sev_es_terminate(SEV_TERM_SET_GEN, GHCB_SEV_ES_GEN_REQ).
  termUnhandledVc: ghcbTermReq(0, 0),
  pvalidateFailInput: PVALIDATE_RET.FAIL_INPUT,
};

/** `kvm_x86_ops`' SNP guest side: for an SNP guest (`sev_snp_guest()`), else none. */
export function sevSnpGuestOps(vm: Vm): SnpGuestOps | undefined {
  return sevSnpGuest(vm) ? SNP_GUEST_OPS : undefined;
}
