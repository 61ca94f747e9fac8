/**
 * The host side of pKVM (arch/arm64/kvm/pkvm.c and the pKVM branches of mmu.c): what arm64 KVM on
 * a protected-mode host asks the EL2 hypervisor (platform/pkvm/hyp.ts), with the host pages it
 * gives it.
 *
 * - `pkvm_init_host_vm()` (KVM_CREATE_VM, v6.18): `__pkvm_reserve_vm` reserves the VM's handle
 *   (-ENOMEM past KVM_MAX_PVMS); a VM destroyed before it ran gives it back (`__pkvm_unreserve_vm`).
 * - `pkvm_create_hyp_vm()` (first KVM_RUN of any vCPU, from `kvm_arch_vcpu_run_pid_change()`):
 *   the host allocates the hyp VM struct and the stage-2 pgd and `__pkvm_init_vm()` takes them
 *   (donated to the hypervisor) into the reserved handle, sized for the vCPUs created so far; `pkvm_create_hyp_vcpu()` likewise with the hyp vCPU struct
 *   (`__pkvm_init_vcpu()`). The model gives each one page (the kernel's sizes: `PKVM_HYP_VM_SIZE`
 *   plus a pointer per vCPU, `kvm_pgtable_stage2_pgd_size()`, `PKVM_HYP_VCPU_SIZE`, page aligned).
 * - `topup_hyp_memcache()` before a stage-2 map: the host pushes pages on the vCPU's memcache
 *   until it holds `kvm_mmu_cache_min_pages()`; the map hypercall's handler admits them.
 * - `pkvm_pgtable_stage2_map()`: a non-protected VM's page is shared (`__pkvm_host_share_guest`,
 *   v6.18); a protected VM's is donated (`__pkvm_host_donate_guest`, the 2026 "protected guest
 *   memory" series: v6.18's handler refuses a protected VM with -EINVAL).
 * - `pkvm_pgtable_stage2_unmap()`: `__pkvm_host_unshare_guest` per mapping of a non-protected VM;
 *   for a protected VM nothing (the 2026 series ignores MMU notifier callbacks for protected VMs:
 *   their pages leave only at teardown or by forced reclaim).
 * - `pkvm_destroy_hyp_vm()` (VM destruction, later tree): `__pkvm_start_teardown_vm`, every
 *   guest page back (`__pkvm_reclaim_dying_guest_page` for a protected VM, which zeroes what the
 *   guest owned; unshare for a non-protected one), `__pkvm_finalize_teardown_vm` (the hypervisor
 *   zeroes and returns its VM, vCPU, pgd, table and memcache pages), then the host frees them.
 */
import type { KernelCtx } from '../../ctx.js';
import { ERRNO_NUMBERS, type Errno } from '../../base/errno.js';
import { asPfn, type Pfn } from '../../base/units.js';
import type { Vcpu, Vm } from '../../kvm/objects.js';
import { KVM_PGTABLE_PROT_R, KVM_PGTABLE_PROT_W } from '../../platform/pkvm/guest_stage2.js';
import type { PkvmHyp } from '../../platform/pkvm/hyp.js';
import { PKVM_ID_GUEST, PKVM_PAGE_SHARED_BORROWED } from '../../platform/pkvm/memory.js';
import { NotModelled } from '../../base/not_modelled.js';
import { arm64State } from './state.js';

/** The hypervisor of `k`'s platform, or undefined when the host is not in protected mode. */
export function pkvmHyp(k: KernelCtx): PkvmHyp | undefined {
  return k.platform.pkvm?.hyp;
}

/** An EL2 function's negative return as the errno name the host's caller passes on. */
export function hypErrno(ret: number): Errno {
  for (const [name, n] of Object.entries(ERRNO_NUMBERS)) if (n === -ret) return name as Errno;
  return 'EINVAL';
}

/** A zeroed host page for the hypervisor, held by the VM until teardown gives it back. */
function hostPage(k: KernelCtx, vm: Vm): Pfn {
  const p = k.frames.allocOne();
  k.frames.zero(p, 1);
  vm.archPages.push(p);
  return p;
}

/**
 * `pkvm_create_hyp_vm()` then `pkvm_create_hyp_vcpu()` for `vcpu` (each once), as the first
 * KVM_RUN of a vCPU does: 0 or the errno KVM_RUN fails with.
 */
export function pkvmCreateHypVcpu(k: KernelCtx, hyp: PkvmHyp, vcpu: Vcpu): Errno | undefined {
  const vm = vcpu.vm;
  const vs = arm64State(k).vm(vm);
  if (vs.handle === undefined) {
    // The hyp VM is sized for the vCPUs created so far (`host_kvm->created_vcpus`): a vCPU
    // created after this point never gets a hyp vCPU (its KVM_RUN fails -EINVAL below).
    const handle = hyp.initVm(
      vm.spec.arm64?.protected ?? false,
      [hostPage(k, vm)],
      [hostPage(k, vm)],
      { ...(vs.reserved !== undefined ? { reserved: vs.reserved } : {}), nrVcpus: vm.createdVcpus },
    );
    if (handle < 0) return hypErrno(handle);
    vs.handle = handle;
  }
  const cs = arm64State(k).vcpu(vcpu);
  if (cs.hypIdx === undefined) {
    // __pkvm_init_vcpu() takes the host's vcpu_idx.
    const idx = hyp.initVcpu(vs.handle, hostPage(k, vm), vcpu.index);
    if (idx < 0) return hypErrno(idx);
    cs.hypIdx = idx;
  }
  return undefined;
}

/** `topup_hyp_memcache(&vcpu->arch.pkvm_memcache, kvm_mmu_cache_min_pages())`. */
function topupHypMemcache(k: KernelCtx, hyp: PkvmHyp, handle: number, idx: number, vm: Vm): void {
  const v = hyp.vms.get(handle)?.vcpus[idx];
  if (v === undefined) return;
  const need = hyp.memcacheMinPages - v.hostMemcache.length;
  const pages: number[] = [];
  for (let i = 0; i < need; i++) pages.push(hostPage(k, vm));
  if (pages.length > 0) hyp.hostTopupMemcache(handle, idx, pages);
}

/**
 * `pkvm_pgtable_stage2_map()` of one page (`pfn` at `gfn`) from a fault of `vcpu`, the memcache
 * topped up first: share (non-protected VM) or donate (protected VM). 0 or the errno.
 */
export function pkvmStage2Map(
  k: KernelCtx,
  hyp: PkvmHyp,
  vcpu: Vcpu,
  gfn: number,
  pfn: Pfn,
  writable: boolean,
): Errno | undefined {
  const vm = vcpu.vm;
  const handle = arm64State(k).vm(vm).handle;
  const idx = arm64State(k).vcpu(vcpu).hypIdx;
  if (handle === undefined || idx === undefined) return 'EINVAL';
  topupHypMemcache(k, hyp, handle, idx, vm);
  const ret =
    vm.spec.arm64?.protected === true
      ? hyp.hostDonateGuest(handle, idx, pfn, gfn)
      : hyp.hostShareGuest(
          handle,
          idx,
          pfn,
          gfn,
          1,
          KVM_PGTABLE_PROT_R | (writable ? KVM_PGTABLE_PROT_W : 0),
        );
  return ret === 0 ? undefined : hypErrno(ret);
}

/**
 * `pkvm_pgtable_stage2_unmap()` of gfns [start, end): a non-protected VM's shares are undone
 * (`__pkvm_host_unshare_guest`, whose failure the host only WARNs about); a protected VM keeps
 * its pages (see the module comment). How many pages the guest lost.
 */
export function pkvmStage2Unmap(
  k: KernelCtx,
  hyp: PkvmHyp,
  vm: Vm,
  start: number,
  end: number,
): number {
  const handle = arm64State(k).vm(vm).handle;
  if (handle === undefined || vm.spec.arm64?.protected === true) return 0;
  const hvm = hyp.vms.get(handle);
  if (hvm === undefined) return 0;
  let n = 0;
  for (const r of hvm.stage2.leafRuns()) {
    const s = Math.max(r.start, start);
    const e = Math.min(r.end, end);
    for (let g = s; g < e; g++) if (hyp.hostUnshareGuest(handle, g, 1) === 0) n++;
  }
  return n;
}

/**
 * Frames [start, end) leave guest_memfd (`kvm_gmem_free_folio()`) on a pKVM host: a page still
 * donated to a protected guest is taken back first with `__pkvm_host_force_reclaim_page_guest`
 * (zeroed; the guest's entry poisoned), so the page allocator never gets a page the host cannot
 * touch; the host's record of that guest mapping goes with it (the guest's next access at the
 * gfn takes the poison fault). [Model's choice: neither v6.18 nor the 2026 series backs
 * protected guests with guest_memfd; the series pins VMM pages instead.]
 */
export function pkvmGmemInvalidate(k: KernelCtx, hyp: PkvmHyp, start: Pfn, end: Pfn): void {
  // A page a protected guest shares with the host (MEM_SHARE: host SHARED_BORROWED) cannot be
  // taken back (forced reclaim wants a donated page, host NOPAGE): the later tree pins a
  // protected guest's pages until teardown, and the model has no pins.
  for (let p = start; p < end; p++)
    if (hyp.vmemmap.get(p).host === PKVM_PAGE_SHARED_BORROWED)
      throw new NotModelled(
        `pfn ${p} leaves guest_memfd while a protected guest shares it with the host: the later ` +
          'tree pins such pages until teardown; the model has no pins',
      );
  for (let p = start; p < end; p++) {
    const h = hyp.hostS2.get(p);
    if (h?.t !== 'annot' || h.owner !== PKVM_ID_GUEST) continue;
    if (hyp.hostForceReclaimPageGuest(asPfn(p)) !== 0) continue;
    for (const vm of k.vms)
      if (arm64State(k).vm(vm).handle === h.handle) vm.stage2[0]!.delete(h.gfn, h.gfn + 1);
  }
}

/**
 * `pkvm_destroy_hyp_vm()` (the later tree's two-phase teardown) and the host freeing what the
 * hypervisor gave back.
 */
export function pkvmDestroyHypVm(k: KernelCtx, hyp: PkvmHyp, vm: Vm): void {
  const handle = arm64State(k).vm(vm).handle;
  if (handle !== undefined) {
    const hvm = hyp.vms.get(handle);
    if (hvm !== undefined) {
      hyp.startTeardownVm(handle);
      for (const r of hvm.stage2.leafRuns()) {
        for (let g = r.start; g < r.end; g++) {
          // Every page the host mapped, poisoned ones included (the host keeps its
          // `pkvm_mapping` after a forced reclaim; the hypervisor answers 0 for those).
          if (hvm.isProtected) hyp.reclaimDyingGuestPage(handle, g);
          else hyp.hostUnshareGuest(handle, g, 1);
        }
      }
      hyp.finalizeTeardownVm(handle);
    }
    arm64State(k).vm(vm).handle = undefined;
  } else {
    // A VM that never ran: `__pkvm_unreserve_vm` frees the handle KVM_CREATE_VM reserved.
    const reserved = arm64State(k).vm(vm).reserved;
    if (reserved !== undefined) hyp.unreserveVm(reserved);
  }
  arm64State(k).vm(vm).reserved = undefined;
  // free_hyp_memcache() and the VM/vCPU/pgd pages: every page KVM gave the hypervisor is the
  // host's again (the hypervisor zeroed it), or was never taken.
  for (const p of vm.archPages) k.frames.release(p, 1);
  vm.archPages.length = 0;
}
