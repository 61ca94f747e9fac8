/**
 * SEV-SNP in kvm_amd (arch/x86/kvm/svm/sev.c): the launch commands of KVM_MEMORY_ENCRYPT_OP
 * (`snp_launch_start()`, `snp_launch_update()` with `sev_gmem_post_populate()` over
 * `kvm_gmem_populate()`, `snp_launch_finish()` with `snp_launch_update_vmsa()`), the vCPUs' VMSAs,
 * the guest_memfd hooks (`sev_gmem_prepare()`, `sev_gmem_invalidate()`,
 * `sev_private_max_mapping_level()` — 6.18's gmem_max_mapping_level) and `sev_vm_destroy()` /
 * `sev_free_vcpu()`. The RMP and the firmware are the platform's (platform/sev_snp/), reached
 * through `k.platform.sevSnp`.
 *
 * Firmware commands go through `__sev_issue_cmd(fd, ...)`: `fd` must be an open /dev/sev fd
 * (else -EBADF, `sev_issue_cmd_external_user()`); a firmware status other than SUCCESS is -EIO
 * with the status in `kvm_sev_cmd.error` (the PSP driver's `__sev_do_cmd_locked()`).
 *
 * The VMSA: `sev_es_sync_vmsa()` builds each vCPU's VMSA from its register state
 * (`vmcb->save`, the GPRs, XCR0/XSS/PKRU/DR6, the FPU). The model does not parse KVM_SET_REGS,
 * KVM_SET_SREGS or KVM_SET_FPU; instead every vCPU of an SEV-ES or SNP VM has a 4 KiB save-area
 * image (`struct sev_es_save_area` layout, APM vol. 2 table B-4), KVM's reset state by default
 * (`snpDefaultVmsa()`), which `sevSetVcpuVmsa()` replaces — the model's stand-in for the register
 * ioctls. At SNP_LAUNCH_FINISH the sync copies the image into the vCPU's VMSA frame and, as
 * `sev_es_sync_vmsa()` does, writes `sev_features` (offset 0x3B0) from the VM's `vmsa_features`
 * (INIT2's features | SNP_ACTIVE). The VMSA frame is allocated with the image (the kernel's
 * `sev_es_vcpu_create()` allocates it with the vCPU) and freed with the VM.
 */
import { NotModelled } from '../../../base/not_modelled.js';
import type { KernelCtx } from '../../../ctx.js';
import type { Errno } from '../../../base/errno.js';
import { err, OK_VOID, type Result } from '../../../base/result.js';
import { asGfn, gfnToGpa, type Gfn, type MappingLevel, type Pfn } from '../../../base/units.js';
import type { Vcpu, Vm } from '../../../kvm/objects.js';
import { kvmGmemPopulate } from '../../../kvm/guest_memfd/guest_memfd.js';
import {
  SEV_RET,
  type SnpFirmware,
  type SnpGuestContext,
} from '../../../platform/sev_snp/firmware.js';
import { RMP_PAGES_2M, RMP_RET, type Rmp } from '../../../platform/sev_snp/rmp.js';
import { SevDevFile } from './sev_dev.js';
import {
  copyFromUserAddr,
  copyToUserAddr,
  sevAsidFree,
  sevSnpGuest,
  SnpLaunchRecordOf,
  toKvmSevInfo,
  type KvmSevCmd,
} from './sev_common.js';

/** `INITIAL_VMSA_GPA`: the RMP.GPA KVM gives every initial VMSA. */
export const INITIAL_VMSA_GPA = 0xfffffffff000n;
/** KVM_SEV_SNP_PAGE_TYPE_* (include/uapi/linux/kvm.h). */
export const KVM_SEV_SNP_PAGE_TYPE = {
  NORMAL: 1,
  ZERO: 3,
  UNMEASURED: 4,
  SECRETS: 5,
  CPUID: 6,
} as const;
const SNP_PAGE_TYPE_VMSA = 2;
/** SNP_POLICY_MASK_VALID (sev.c): API minor/major, SMT, RSVD_MBO, DEBUG, SINGLE_SOCKET. */
const SNP_POLICY_MASK_VALID =
  0xffn | 0xff00n | (1n << 16n) | (1n << 17n) | (1n << 19n) | (1n << 20n);
const SNP_POLICY_MASK_RSVD_MBO = 1n << 17n;
/** Struct sizes (arch/x86/include/uapi/asm/kvm.h). */
export const KVM_SEV_SNP_LAUNCH_START_SIZE = 64;
export const KVM_SEV_SNP_LAUNCH_UPDATE_SIZE = 64;
export const KVM_SEV_SNP_LAUNCH_FINISH_SIZE = 88;
/** KVM_SEV_SNP_ID_BLOCK_SIZE / KVM_SEV_SNP_ID_AUTH_SIZE; SEV_FW_BLOB_MAX_SIZE. */
const ID_BLOCK_SIZE = 96;
const ID_AUTH_SIZE = 4096;
const PAGE = 4096;

/** The platform's SNP hardware: present on every host whose profile offers SNP VMs. */
function snpHw(k: KernelCtx): { readonly rmp: Rmp; readonly firmware: SnpFirmware } {
  const hw = k.platform.sevSnp;
  if (hw === undefined) throw new Error('SNP VM on a host without the SEV-SNP platform');
  return hw;
}

/** One firmware command's outcome: 0, or the kernel's errno with the firmware status. */
type FwResult = { readonly ret: 0 } | { readonly ret: Errno; readonly fwError?: number };

/**
 * `__sev_issue_cmd(fd, ...)`: -EBADF unless `fd` is an open /dev/sev fd; then the command; a
 * status other than SUCCESS is -EIO with that status.
 */
function sevIssueCmd(k: KernelCtx, fd: number, run: () => number): FwResult {
  if (!(k.fdFile(fd) instanceof SevDevFile)) return { ret: 'EBADF' };
  const st = run();
  return st === SEV_RET.SUCCESS ? { ret: 0 } : { ret: 'EIO', fwError: st };
}

/** The kernel's `*error = status` for a failed firmware command. */
function reportFw(cmd: { error: number }, r: FwResult): void {
  if (r.ret !== 0 && 'fwError' in r && r.fwError !== undefined) cmd.error = r.fwError;
}

// ---------------------------------------------------------------------------------------------
// SNP_LAUNCH_START

/**
 * `snp_launch_start()`: an SNP guest (-ENOTTY), `struct kvm_sev_snp_launch_start` (-EFAULT), one
 * context per VM (-EINVAL), flags 0, policy within SNP_POLICY_MASK_VALID with the
 * reserved-must-be-one bit (-EINVAL); then `snp_context_create()` (SNP_GCTX_CREATE on
 * `sev_fd`; any failure is -ENOTTY), SNP_LAUNCH_START, and `snp_bind_asid()` (SNP_ACTIVATE); a
 * failure after the context exists decommissions it (`snp_decommission_context()`).
 */
export function snpLaunchStart(k: KernelCtx, vm: Vm, cmd: KvmSevCmd): Result<undefined> {
  if (!sevSnpGuest(vm)) return err('ENOTTY', 'snp_launch_start: !sev_snp_guest');
  const b = copyFromUserAddr(k, cmd.data, KVM_SEV_SNP_LAUNCH_START_SIZE);
  if (b === undefined) return err('EFAULT', 'snp_launch_start: copy_from_user(params)');
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const policy = v.getBigUint64(0, true);
  const gosvw = b.slice(8, 24);
  const flags = v.getUint16(24, true);
  const sev = toKvmSevInfo(vm);
  if (sev.snpContext !== undefined) return err('EINVAL', 'snp_launch_start: context exists');
  if (flags !== 0) return err('EINVAL', 'snp_launch_start: flags != 0');
  if ((policy & ~SNP_POLICY_MASK_VALID) !== 0n)
    return err('EINVAL', 'snp_launch_start: policy bits outside SNP_POLICY_MASK_VALID');
  if ((policy & SNP_POLICY_MASK_RSVD_MBO) === 0n)
    return err('EINVAL', 'snp_launch_start: policy without the reserved-must-be-one bit');
  sev.policy = policy;
  const fw = snpHw(k).firmware;
  // snp_context_create()
  let handle = 0;
  const c = sevIssueCmd(k, cmd.sevFd, () => ((handle = fw.gctxCreate()), SEV_RET.SUCCESS));
  if (c.ret !== 0) {
    reportFw(cmd, c);
    return err('ENOTTY', 'snp_launch_start: snp_context_create failed');
  }
  sev.snpContext = handle;
  const s = sevIssueCmd(k, cmd.sevFd, () => fw.launchStart(handle, policy, gosvw));
  if (s.ret !== 0) {
    reportFw(cmd, s);
    snpDecommissionContext(k, vm);
    return err(s.ret, 'snp_launch_start: SNP_LAUNCH_START failed');
  }
  sev.fd = cmd.sevFd;
  // snp_bind_asid(): sev_issue_cmd(kvm, SNP_ACTIVATE) on sev->fd.
  const a = sevIssueCmd(k, sev.fd, () => fw.activate(handle, sev.asid));
  if (a.ret !== 0) {
    reportFw(cmd, a);
    snpDecommissionContext(k, vm);
    return err(a.ret, 'snp_launch_start: SNP_ACTIVATE failed');
  }
  return OK_VOID;
}

/** `snp_decommission_context()`: SNP_DECOMMISSION, the context goes. */
function snpDecommissionContext(k: KernelCtx, vm: Vm): void {
  const sev = toKvmSevInfo(vm);
  if (sev.snpContext === undefined) return;
  snpHw(k).firmware.decommission(sev.snpContext);
  sev.snpContext = undefined;
}

// ---------------------------------------------------------------------------------------------
// SNP_LAUNCH_UPDATE

/**
 * `snp_page_reclaim()`: SNP_PAGE_RECLAIM then `kvm_rmp_make_shared()`; false when either fails
 * (the kernel leaks the page and bugs the VM).
 */
function snpPageReclaim(k: KernelCtx, pfn: Pfn): boolean {
  const hw = snpHw(k);
  if (hw.firmware.pageReclaim(pfn) !== SEV_RET.SUCCESS) return false;
  return hw.rmp.makeShared(pfn, '4K') === RMP_RET.SUCCESS;
}

/**
 * `snp_launch_update()`: an SNP guest with a context (-EINVAL), `struct
 * kvm_sev_snp_launch_update` (-EFAULT), len page aligned, flags 0 and a type KVM accepts
 * (-EINVAL), the gfn's memslot can be private (-EINVAL); then `kvm_gmem_populate()` with
 * `sev_gmem_post_populate()`. Any populate error is -EIO with the firmware's status (0 when the
 * failure was not the firmware's) in `error`; otherwise the progress is written back (gfn_start
 * and len advance, uaddr too unless the type is ZERO or uaddr is 0) (-EFAULT when that faults).
 * The returned detail names populate's own errno. With attributes in guest_memfd (in-place
 * conversion v7 patch 20) uaddr 0 populates in place: the page keeps what the VMM wrote into it
 * while it was shared, and the firmware measures that.
 */
export function snpLaunchUpdate(k: KernelCtx, vm: Vm, cmd: KvmSevCmd): Result<undefined> {
  const sev = toKvmSevInfo(vm);
  if (!sevSnpGuest(vm) || sev.snpContext === undefined)
    return err('EINVAL', 'snp_launch_update: !sev_snp_guest || !snp_context');
  const b = copyFromUserAddr(k, cmd.data, KVM_SEV_SNP_LAUNCH_UPDATE_SIZE);
  if (b === undefined) return err('EFAULT', 'snp_launch_update: copy_from_user(params)');
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const gfnStart = v.getBigUint64(0, true);
  const uaddr = v.getBigUint64(8, true);
  const len = v.getBigUint64(16, true);
  const type = b[24]!;
  const flags = v.getUint16(26, true);
  const T = KVM_SEV_SNP_PAGE_TYPE;
  if (
    (len & 0xfffn) !== 0n ||
    flags !== 0 ||
    (type !== T.NORMAL &&
      type !== T.ZERO &&
      type !== T.UNMEASURED &&
      type !== T.SECRETS &&
      type !== T.CPUID)
  )
    return err('EINVAL', 'snp_launch_update: len, flags or type');
  const npagesBig = len / 4096n;
  // gfn_to_memslot() + kvm_slot_can_be_private()
  const slot = gfnStart < 2n ** 52n ? vm.slotsByGfn[0]!.get(Number(gfnStart)) : undefined;
  if (slot === undefined || !slot.isGuestMemfd)
    return err('EINVAL', 'snp_launch_update: memslot cannot be private');
  // u64_to_user_ptr(): a zero uaddr is NULL. Post-populate then refuses a non-ZERO page, unless
  // attributes live in guest_memfd (kvm.vm_memory_attributes=0, in-place conversion v7 patch 20):
  // there the page is measured as it is, populated in place by the VMM while it was shared.
  const src = type === T.ZERO || uaddr === 0n ? undefined : uaddr;
  const inPlaceAllowed = k.profile.gmemMemoryAttributes === true;
  let fwError = 0;
  const handle = sev.snpContext;
  const hw = snpHw(k);
  // sev_gmem_post_populate()
  const post = (gfn: Gfn, pfn: Pfn, p: bigint | undefined, order: number): Errno | undefined => {
    // `if (vm_memory_attributes && type != ZERO && !src_page) return -EINVAL;`
    if (!inPlaceAllowed && type !== T.ZERO && p === undefined) return 'EINVAL';
    const npages = 1 << order;
    let nPrivate = 0;
    let ret: Errno | undefined;
    let i = 0;
    for (; i < npages; i++) {
      const pf = (pfn + i) as Pfn;
      if (hw.rmp.lookup(pf).assigned) {
        ret = 'EEXIST';
        break;
      }
      let data: Uint8Array | undefined;
      if (p !== undefined) {
        data = copyFromUserAddr(k, p + BigInt(i * PAGE), PAGE);
        if (data === undefined) {
          ret = 'EFAULT';
          break;
        }
        // kmap_local_pfn(): the direct map, split for any private 4K neighbour (a 2M-mapped
        // assigned neighbour would be an RMP #PF in the kernel).
        if (hw.rmp.hostWriteFaults(pf, true))
          throw new NotModelled(
            `sev_gmem_post_populate() would write frame ${pf} through a 2M direct-map mapping that overlaps an assigned frame: an RMP #PF in the kernel, which the model does not represent`,
          );
        k.frames.write(pf, 0, data);
      }
      // In place (no source page): the firmware measures the page as the VMM left it; the log
      // keeps a copy of those bytes for the types it hashes.
      if (p === undefined && type === T.NORMAL) {
        data = new Uint8Array(PAGE);
        k.frames.read(pf, 0, data);
      }
      const g = gfnToGpa(asGfn(gfn + i));
      if (hw.rmp.makePrivate(pf, g, '4K', sev.asid, true) !== RMP_RET.SUCCESS) {
        ret = 'EFAULT';
        break;
      }
      nPrivate++;
      const r = sevIssueCmd(k, cmd.sevFd, () =>
        hw.firmware.launchUpdate(k.frames, handle, pf, '4K', type),
      );
      if (r.ret !== 0) {
        if (r.ret === 'EIO') fwError = r.fwError ?? 0;
        // fw_err: reclaim this page; a CPUID page the firmware corrected goes back to userspace.
        const reclaimed =
          !k.mutants.has('snp_launch_update_keeps_failed_page') && snpPageReclaim(k, pf);
        if (reclaimed && type === T.CPUID && fwError === SEV_RET.INVALID_PARAM && p !== undefined) {
          const fixed = new Uint8Array(PAGE);
          k.frames.read(pf, 0, fixed);
          copyToUserAddr(k, p! + BigInt(i * PAGE), fixed);
        }
        nPrivate--;
        ret = r.ret;
        break;
      }
      sev.snpLaunchLog.push(
        new SnpLaunchRecordOf(type, g, type === T.NORMAL && data !== undefined ? data : undefined),
      );
    }
    if (ret !== undefined)
      for (let j = 0; j < nPrivate; j++) hw.rmp.makeShared((pfn + j) as Pfn, '4K');
    return ret;
  };
  const npages = npagesBig > 2n ** 31n ? 2 ** 31 : Number(npagesBig);
  const count = kvmGmemPopulate(k, vm, asGfn(Number(gfnStart)), src, npages, post);
  if (typeof count !== 'number') {
    cmd.error = fwError;
    return err('EIO', `snp_launch_update: kvm_gmem_populate failed with ${count}`);
  }
  v.setBigUint64(0, gfnStart + BigInt(count), true);
  v.setBigUint64(16, len - BigInt(count) * 4096n, true);
  // `if (src && type != ZERO) params.uaddr += count * PAGE_SIZE` (v7 patch 20; 6.18 has no `src
  // &&`, but a NULL source never gets this far there).
  if (src !== undefined) v.setBigUint64(8, BigInt.asUintN(64, uaddr + BigInt(count) * 4096n), true);
  if (!copyToUserAddr(k, cmd.data, b))
    return err('EFAULT', 'snp_launch_update: copy_to_user(params)');
  return OK_VOID;
}

// ---------------------------------------------------------------------------------------------
// VMSAs and SNP_LAUNCH_FINISH

/** A vCPU's SEV-ES state (`struct vcpu_sev_es_state`): its VMSA image and frame. */
interface SevEsVcpu {
  image: Uint8Array;
  vmsaPfn: Pfn | undefined;
  /** `vcpu->arch.guest_state_protected`: set once its VMSA was measured. */
  guestStateProtected: boolean;
}
const SEV_ES_VCPU = new WeakMap<Vcpu, SevEsVcpu>();

/** Write a little-endian field of `size` bytes. */
function put(b: Uint8Array, off: number, size: number, v: bigint): void {
  for (let i = 0; i < size; i++) b[off + i] = Number((v >> BigInt(8 * i)) & 0xffn);
}
function seg(
  b: Uint8Array,
  off: number,
  sel: number,
  attrib: number,
  limit: number,
  base: bigint,
): void {
  put(b, off, 2, BigInt(sel));
  put(b, off + 2, 2, BigInt(attrib));
  put(b, off + 4, 4, BigInt(limit));
  put(b, off + 8, 8, base);
}

/**
 * KVM's reset state as a VMSA image (`kvm_vcpu_reset()` + `init_vmcb()` as `sev_es_sync_vmsa()`
 * copies them; offsets of `struct sev_es_save_area`): CS 0xF000 base 0xFFFF0000 limit 0xFFFF attrib
 * 0x9B, the data segments selector 0 limit 0xFFFF attrib 0x93, LDTR attrib 0x82, TR attrib 0x8B,
 * GDTR/IDTR limit 0xFFFF, EFER 0x1000 (SVME), CR0 0x60000010, RFLAGS 2, RIP 0xFFF0, DR6 0xFFFF0FF0,
 * DR7 0x400, G_PAT 0x0007040600070406, XCR0 1, MXCSR 0x1F80, x87 FCW 0x37F; everything else 0.
 */
export function snpDefaultVmsa(): Uint8Array {
  const b = new Uint8Array(PAGE);
  for (const off of [0x00, 0x20, 0x30, 0x40, 0x50]) seg(b, off, 0, 0x93, 0xffff, 0n);
  seg(b, 0x10, 0xf000, 0x9b, 0xffff, 0xffff0000n);
  seg(b, 0x60, 0, 0, 0xffff, 0n);
  seg(b, 0x70, 0, 0x82, 0xffff, 0n);
  seg(b, 0x80, 0, 0, 0xffff, 0n);
  seg(b, 0x90, 0, 0x8b, 0xffff, 0n);
  put(b, 0xd0, 8, 0x1000n);
  put(b, 0x158, 8, 0x60000010n);
  put(b, 0x160, 8, 0x400n);
  put(b, 0x168, 8, 0xffff0ff0n);
  put(b, 0x170, 8, 2n);
  put(b, 0x178, 8, 0xfff0n);
  put(b, 0x268, 8, 0x0007040600070406n);
  put(b, 0x3e8, 8, 1n);
  put(b, 0x408, 4, 0x1f80n);
  put(b, 0x410, 2, 0x37fn);
  return b;
}

function sevEsVcpu(k: KernelCtx, vcpu: Vcpu): SevEsVcpu {
  let s = SEV_ES_VCPU.get(vcpu);
  if (s === undefined) {
    // sev_es_vcpu_create(): the VMSA page (snp_safe_alloc_page(): never 2M-aligned on an SNP
    // host, an erratum the model does not need), with the vCPU's pages.
    const pfn = k.frames.allocOne();
    k.frames.zero(pfn, 1);
    vcpu.pages.push(pfn);
    s = { image: snpDefaultVmsa(), vmsaPfn: pfn, guestStateProtected: false };
    SEV_ES_VCPU.set(vcpu, s);
  }
  return s;
}

/**
 * The model's stand-in for KVM_SET_REGS / KVM_SET_SREGS / KVM_SET_FPU on a vCPU of an SEV-ES or
 * SNP VM: replace its save-area image (4096 bytes). EINVAL when the VM has no protected state
 * (no VMSA), once the VMSA was measured (`guest_state_protected`: the register ioctls are EINVAL
 * then too), or for another size.
 */
export function sevSetVcpuVmsa(k: KernelCtx, vcpu: Vcpu, image: Uint8Array): Result<undefined> {
  if (!vcpu.vm.spec.hasProtectedState)
    return err('EINVAL', 'VMSA image: VM has no protected state');
  if (image.length !== PAGE) return err('EINVAL', 'VMSA image: not 4096 bytes');
  const s = sevEsVcpu(k, vcpu);
  if (s.guestStateProtected) return err('EINVAL', 'VMSA image: guest_state_protected');
  s.image = new Uint8Array(image);
  return OK_VOID;
}

/** The VMSA image a vCPU has (its default until set), for inspection and tests. */
export function sevVcpuVmsa(k: KernelCtx, vcpu: Vcpu): Uint8Array {
  return new Uint8Array(sevEsVcpu(k, vcpu).image);
}

/**
 * `snp_launch_update_vmsa()`: for every vCPU in index order, `sev_es_sync_vmsa()` into its VMSA
 * frame (the image, then sev_features = the VM's vmsa_features), `rmp_make_private(vmsa,
 * INITIAL_VMSA_GPA, 4K, asid, immutable)`, SNP_LAUNCH_UPDATE of type VMSA on `sev_fd` (a failure
 * reclaims the page and stops), and the vCPU's state becomes protected.
 */
function snpLaunchUpdateVmsa(k: KernelCtx, vm: Vm, cmd: KvmSevCmd): Result<undefined> {
  const sev = toKvmSevInfo(vm);
  const hw = snpHw(k);
  const vcpus = [...vm.vcpus.values()].sort((a, b) => a.index - b.index);
  for (const vcpu of vcpus) {
    const s = sevEsVcpu(k, vcpu);
    const pfn = s.vmsaPfn!;
    const page = new Uint8Array(s.image);
    put(page, 0x3b0, 8, sev.vmsaFeatures);
    // The sync writes the VMSA through the direct map: a VMSA already given to the guest (a
    // second LAUNCH_FINISH) is assigned, and the kernel would take an RMP #PF there.
    if (hw.rmp.hostWriteFaults(pfn, true))
      throw new NotModelled(
        `sev_es_sync_vmsa() would write vCPU ${vcpu.id}'s VMSA while the RMP assigns it to the guest: the host takes an RMP #PF (a kernel oops), which the model does not represent`,
      );
    k.frames.write(pfn, 0, page);
    if (hw.rmp.makePrivate(pfn, INITIAL_VMSA_GPA, '4K', sev.asid, true) !== RMP_RET.SUCCESS)
      return err('EFAULT', 'snp_launch_update_vmsa: rmp_make_private');
    const r = sevIssueCmd(k, cmd.sevFd, () =>
      hw.firmware.launchUpdate(k.frames, sev.snpContext!, pfn, '4K', SNP_PAGE_TYPE_VMSA),
    );
    if (r.ret !== 0) {
      reportFw(cmd, r);
      snpPageReclaim(k, pfn);
      return err(r.ret, `snp_launch_update_vmsa: SNP_LAUNCH_UPDATE of vCPU ${vcpu.id}'s VMSA`);
    }
    sev.snpLaunchLog.push(new SnpLaunchRecordOf(SNP_PAGE_TYPE_VMSA, INITIAL_VMSA_GPA, page));
    s.guestStateProtected = true;
  }
  return OK_VOID;
}

/** psp_copy_user_blob(): -EINVAL for a NULL address or length 0, -EFAULT when the copy faults. */
function pspCopyUserBlob(k: KernelCtx, uaddr: bigint, len: number): Uint8Array | Errno {
  if (uaddr === 0n || len === 0) return 'EINVAL';
  return copyFromUserAddr(k, uaddr, len) ?? 'EFAULT';
}

/**
 * `snp_launch_finish()`: an SNP guest (-ENOTTY) with a context (-EINVAL), `struct
 * kvm_sev_snp_launch_finish` (-EFAULT), flags 0 (-EINVAL); every vCPU's VMSA is measured; the ID
 * block and its auth structure are copied when enabled (their signatures are not checked: the
 * model's firmware accepts them); SNP_LAUNCH_FINISH on `sev->fd`; success allows pre-faulting.
 */
export function snpLaunchFinish(k: KernelCtx, vm: Vm, cmd: KvmSevCmd): Result<undefined> {
  if (!sevSnpGuest(vm)) return err('ENOTTY', 'snp_launch_finish: !sev_snp_guest');
  const sev = toKvmSevInfo(vm);
  if (sev.snpContext === undefined) return err('EINVAL', 'snp_launch_finish: no snp_context');
  const b = copyFromUserAddr(k, cmd.data, KVM_SEV_SNP_LAUNCH_FINISH_SIZE);
  if (b === undefined) return err('EFAULT', 'snp_launch_finish: copy_from_user(params)');
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  if (v.getUint16(54, true) !== 0) return err('EINVAL', 'snp_launch_finish: flags != 0');
  const r = snpLaunchUpdateVmsa(k, vm, cmd);
  if (!r.ok) return r;
  if (b[16] !== 0) {
    const idBlock = pspCopyUserBlob(k, v.getBigUint64(0, true), ID_BLOCK_SIZE);
    if (typeof idBlock === 'string') return err(idBlock, 'snp_launch_finish: id_block');
    const idAuth = pspCopyUserBlob(k, v.getBigUint64(8, true), ID_AUTH_SIZE);
    if (typeof idAuth === 'string') return err(idAuth, 'snp_launch_finish: id_auth');
  }
  const hostData = b.slice(19, 51);
  const fw = snpHw(k).firmware;
  const f = sevIssueCmd(k, sev.fd, () => fw.launchFinish(sev.snpContext!, hostData));
  if (f.ret !== 0) {
    reportFw(cmd, f);
    return err(f.ret, 'snp_launch_finish: SNP_LAUNCH_FINISH failed');
  }
  sev.snpLaunchFinishedAt = sev.snpLaunchLog.length;
  vm.preFaultAllowed = true;
  return OK_VOID;
}

/**
 * The firmware guest context of an SNP VM (its launch digest, measured pages, state), or
 * undefined before SNP_LAUNCH_START.
 */
export function snpGuestContext(k: KernelCtx, vm: Vm): SnpGuestContext | undefined {
  const h = sevSnpGuest(vm) ? toKvmSevInfo(vm).snpContext : undefined;
  return h === undefined ? undefined : snpHw(k).firmware.context(h);
}

// ---------------------------------------------------------------------------------------------
// guest_memfd hooks

/** `is_pfn_range_shared()`. */
function isPfnRangeShared(rmp: Rmp, start: number, end: number): boolean {
  return !rmp.anyAssigned(start, end);
}

/**
 * `sev_gmem_prepare()`: for an SNP guest, a frame not yet assigned becomes private to the guest
 * (`rmp_make_private(..., immutable = false)`), at 2M when the folio is large enough and the whole
 * 2M-aligned frame range is shared (`is_large_rmp_possible()`; never with 6.18's order-0 folios),
 * else at 4K; an RMPUPDATE failure is -EINVAL.
 */
export function sevGmemPrepare(
  k: KernelCtx,
  vm: Vm,
  pfn: Pfn,
  gfn: Gfn,
  order: number,
): Errno | undefined {
  if (!sevSnpGuest(vm)) return undefined;
  const rmp = snpHw(k).rmp;
  if (rmp.lookup(pfn).assigned) return undefined;
  const aligned = pfn - (pfn % RMP_PAGES_2M);
  const large = order >= 9 && isPfnRangeShared(rmp, aligned, aligned + RMP_PAGES_2M);
  const p = large ? (aligned as Pfn) : pfn;
  const g = large ? asGfn(gfn - (gfn % RMP_PAGES_2M)) : gfn;
  const rc = rmp.makePrivate(p, gfnToGpa(g), large ? '2M' : '4K', toKvmSevInfo(vm).asid, false);
  return rc === RMP_RET.SUCCESS ? undefined : 'EINVAL';
}

/**
 * `sev_gmem_invalidate()`: every assigned frame of [start, end) goes back to the hypervisor: a 2M
 * entry whole when the range covers it from its aligned start, else after PSMASH (failures are
 * only warned about, as in the kernel); the cache flush has no model state.
 */
export function sevGmemInvalidate(k: KernelCtx, start: Pfn, end: Pfn): void {
  const rmp = k.platform.sevSnp?.rmp;
  if (rmp === undefined || k.mutants.has('snp_invalidate_keeps_assigned')) return;
  for (let pfn = start as number; pfn < end;) {
    const e = rmp.lookup(pfn as Pfn);
    const use2m =
      e.assigned && pfn % RMP_PAGES_2M === 0 && end >= pfn + RMP_PAGES_2M && e.size === '2M';
    if (e.assigned) {
      if (!use2m && e.size === '2M') rmp.psmash((pfn - (pfn % RMP_PAGES_2M)) as Pfn);
      rmp.makeShared(pfn as Pfn, use2m ? '2M' : '4K');
    }
    pfn += use2m ? RMP_PAGES_2M : 1;
  }
}

/** `sev_private_max_mapping_level()`: 0 for a VM that is not SNP, else the RMP entry's size. */
export function sevGmemMaxMappingLevel(k: KernelCtx, vm: Vm, pfn: Pfn): MappingLevel | 0 {
  if (!sevSnpGuest(vm)) return 0;
  const e = snpHw(k).rmp.lookup(pfn);
  return !e.assigned ? '4K' : e.size;
}

/**
 * `sev_vm_destroy()` with `sev_free_vcpu()` for its vCPUs: each VMSA frame goes back to the
 * hypervisor state before it is freed, the context is decommissioned, the ASID freed.
 */
export function sevVmDestroy(k: KernelCtx, vm: Vm): void {
  const hw = k.platform.sevSnp;
  for (const vcpu of vm.vcpus.values()) {
    const s = SEV_ES_VCPU.get(vcpu);
    if (s?.vmsaPfn === undefined || hw === undefined || !hw.rmp.lookup(s.vmsaPfn).assigned)
      continue;
    // A VMSA left Pre-Guest by a failed measurement needs SNP_PAGE_RECLAIM first.
    if (hw.rmp.lookup(s.vmsaPfn).immutable) hw.firmware.pageReclaim(s.vmsaPfn);
    hw.rmp.makeShared(s.vmsaPfn, '4K');
  }
  const sev = toKvmSevInfo(vm);
  if (!sev.active) return;
  if (sevSnpGuest(vm)) snpDecommissionContext(k, vm);
  sevAsidFree(k, sev);
}
