/**
 * KVM_RUN of a TD vCPU in kvm_intel (arch/x86/kvm/vmx/tdx.c, Linux 6.18) with the TDX module's
 * guest side (platform/tdx/module.ts): `tdx_vcpu_pre_run()`, TDH.VP.ENTER (`tdx_vcpu_run()`), the
 * CPU's check of a guest access (S-EPT for a private GPA, the shared EPT for one with the shared
 * bit), KVM's EPT-violation handling (`tdx_handle_ept_violation()`), TDG.MEM.PAGE.ACCEPT, and
 * TDG.VP.VMCALL<MapGPA> (`tdx_map_gpa()`, `__tdx_map_gpa()`, `tdx_complete_vmcall_map_gpa()`).
 * kvm_run.ts drives the program and the kvm_run page; this file is what KVM and the module do.
 *
 * **An EPT violation on a private GPA** (a TD exit: the S-EPT entry is not MAPPED): when the
 * module reports it as an access to a PENDING page (the extended exit qualification's type
 * PENDING_EPT_VIOLATION, which the module uses only with ATTRIBUTES.SEPT_VE_DISABLE set:
 * `tdx_is_sept_violation_unexpected_pending()`), KVM prints "Guest access before accepting",
 * calls `kvm_vm_dead()` and KVM_RUN returns -EIO; every later ioctl of the VM and its vCPUs is
 * -EIO (`kvm->vm_dead`). Otherwise it is a private write fault of the GFN
 * (`__vmx_handle_ept_violation()` with PFERR_PRIVATE_ACCESS, always a write: "TD private pages are
 * always RWX"): KVM's fault path (mmu.ts) — a private/shared mismatch with the attributes is
 * KVM_EXIT_MEMORY_FAULT (the implicit conversion, `kvm_mmu_faultin_pfn()`), else guest_memfd's
 * frame is TDH.MEM.PAGE.AUG'ed (PENDING) through the mirror root (`tdx_sept_set_private_spte()`),
 * and the vCPU re-enters; the guest re-executes the instruction and meets the PENDING page. So a
 * guest's first touch of un-accepted RAM is an access before accept: it must ACCEPT first.
 *
 * **ACCEPT** of a GPA with no S-EPT leaf is an EPT-violation TD exit of type ACCEPT (never
 * "pending"): KVM AUGs the 4 KiB page the same way and the guest retries, so a 4K ACCEPT then
 * succeeds and a 2M ACCEPT meets the 4 KiB table KVM built (TDX_PAGE_SIZE_MISMATCH: 6.18 maps
 * private memory at 4K only; a Linux guest then accepts the range 4K at a time, `try_accept_one()`).
 *
 * **Choices of the model.** The vCPU has no pending events and no signal arrives, so KVM's local
 * retry loop and `tdx_complete_vmcall_map_gpa()` never stop early (no TDVMCALL_STATUS_RETRY).
 * `kvm_vcpu_is_legal_gpa()` uses the TD's GPAW (48 or 52) as MAXPHYADDR. A machine check in the
 * TD (a host write poisoned a private page) is not modelled.
 */
import type { KernelCtx } from '../../../ctx.js';
import type { Errno } from '../../../base/errno.js';
import { NotModelled } from '../../../base/not_modelled.js';
import { KVM_MEMORY_EXIT_FLAG_PRIVATE } from '../../../base/uapi.js';
import { asGfn, asGpa, gfnToGpa, gpaToGfn, type Gfn, type Pfn } from '../../../base/units.js';
import type { FaultOutcome } from '../../../kvm/arch_ops.js';
import { kvmVmDead, type KvmVcpuStat, type Vcpu, type Vm } from '../../../kvm/objects.js';
import type { TdxModule } from '../../../platform/tdx/module.js';
import type { SeptState } from '../../../platform/tdx/sept.js';
import { TDX } from '../../../platform/tdx/status.js';
import { guestTranslate, kvmMmuDoPageFault } from '../mmu.js';
import type {
  MapGpaRangeExit,
  TdvmcallResult,
  TdxAcceptResult,
  TdxAccessResult,
  TdxGuestOps,
} from '../x86_ops.js';
import {
  isPrivateGpa,
  isTd,
  tdxModule,
  tdxSharedGpaBit,
  toKvmTdx,
  toVcpuTdx,
  type KvmTdx,
} from './tdx.js';

/** `TDVMCALL_STATUS_*` (arch/x86/include/asm/shared/tdx.h): R10 of a completed TDG.VP.VMCALL. */
export const TDVMCALL_STATUS = {
  SUCCESS: 0n,
  RETRY: 1n,
  INVALID_OPERAND: 0x8000_0000_0000_0000n,
  ALIGN_ERROR: 0x8000_0000_0000_0002n,
  SUBFUNC_UNSUPPORTED: 0x8000_0000_0000_0003n,
} as const;
/** `TDX_MAP_GPA_MAX_LEN`: one KVM_HC_MAP_GPA_RANGE exit covers at most 2 MiB. */
export const TDX_MAP_GPA_MAX_LEN = 0x20_0000n;
/** `KVM_MAP_GPA_RANGE_ENCRYPTED` / `_DECRYPTED` (the exit's args[2]). */
const KVM_MAP_GPA_RANGE_ENCRYPTED = 1n << 4n;
const KVM_MAP_GPA_RANGE_DECRYPTED = 0n;
/** KVM_CAP_EXIT_HYPERCALL's bit for KVM_HC_MAP_GPA_RANGE (`user_exit_on_hypercall()`). */
const EXIT_ON_MAP_GPA_RANGE = 1n << 12n;
/** How often KVM retries a fault that makes no progress before the model calls it a spin. */
const MAX_ATTEMPTS = 3;

/** The TDVPR frame of a TD vCPU (KVM_TDX_INIT_VCPU made it). */
function tdvprOf(vcpu: Vcpu): Pfn {
  const p = toVcpuTdx(vcpu).tdvpr;
  if (p === undefined) throw new Error('TD vCPU without a TDVPR');
  return p;
}

/** The S-EPT leaf state the module holds for `gfn` now (FREE when no leaf). */
export function tdxSeptState(k: KernelCtx, vm: Vm, gfn: number): SeptState {
  const t = toKvmTdx(vm);
  const td = t.tdr === undefined ? undefined : k.platform.tdx?.module.td(t.tdr);
  if (td === undefined) return 'FREE';
  return td.sept.walk(gfn, 0).entry.state;
}

/**
 * KVM's handling of an EPT-violation TD exit on the private GPA of `gfn` (not the "pending" kind):
 * a private write fault (`tdx_handle_ept_violation()` → `__vmx_handle_ept_violation()`); on
 * success the vCPU re-enters the TD (TDH.VP.ENTER). Returns undefined (retry the instruction) or
 * what ends the run.
 */
function privateFault(
  k: KernelCtx,
  m: TdxModule,
  vcpu: Vcpu,
  gfn: Gfn,
  stat: KvmVcpuStat,
): Extract<TdxAccessResult, { kind: 'memfault' | 'error' }> | undefined {
  const o = faultIn(k, vcpu.vm, gfn, true, true, stat);
  if (typeof o !== 'number') {
    // A private fault never ends in MMIO: without a memslot it is a memory fault too.
    const flags = o.kind === 'memfault' ? o.flags : KVM_MEMORY_EXIT_FLAG_PRIVATE;
    const errno: Errno = o.kind === 'memfault' ? o.errno : 'EFAULT';
    return { kind: 'memfault', gpa: gfnToGpa(gfn), flags, errno };
  }
  return reenter(m, vcpu);
}

/** TDH.VP.ENTER after KVM handled a TD exit in the kernel; a failure is KVM_RUN's -EIO. */
function reenter(m: TdxModule, vcpu: Vcpu): { kind: 'error'; errno: Errno } | undefined {
  return m.tdhVpEnter(tdvprOf(vcpu)) === TDX.SUCCESS ? undefined : { kind: 'error', errno: 'EIO' };
}

/**
 * A fault of `gfn` through the mirror root (`priv`) or the shared EPT. The model keeps one stage-2
 * map per VM for both roots: a leaf of the other kind at that GFN is not in the root this access
 * walks, so the access takes the fault as the kernel does (`kvm_mmu_page_fault()`, counted as
 * there), where the private/shared mismatch with the attributes is KVM_EXIT_MEMORY_FAULT.
 */
function faultIn(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  write: boolean,
  priv: boolean,
  stat: KvmVcpuStat,
): FaultOutcome {
  const e = vm.stage2[0]!.get(gfn);
  if (e === undefined || e.private === priv) return guestTranslate(k, vm, gfn, write, priv, stat);
  stat.pf_taken++;
  const o = kvmMmuDoPageFault(k, vm, gfn, write, priv);
  if (typeof o === 'number') stat.pf_fixed++;
  else if (o.kind === 'mmio') stat.pf_emulate++;
  return o;
}

/**
 * A shared access (the shared bit set): the shared EPT, which KVM fills like a normal VM's
 * stage 2 (`kvm_tdp_mmu_map()` on the direct root) for the GFN without the shared bit.
 */
function sharedAccess(
  k: KernelCtx,
  vm: Vm,
  gfn: Gfn,
  write: boolean,
  stat: KvmVcpuStat,
): TdxAccessResult {
  const o = faultIn(k, vm, gfn, write, false, stat);
  if (typeof o === 'number') return { kind: 'ok', pfn: o };
  if (o.kind === 'mmio') return { kind: 'mmio' };
  return { kind: 'memfault', gpa: gfnToGpa(gfn), flags: o.flags, errno: o.errno };
}

function access(
  k: KernelCtx,
  vcpu: Vcpu,
  gpa: bigint,
  write: boolean,
  shared: boolean,
  stat: KvmVcpuStat,
): TdxAccessResult {
  const vm = vcpu.vm;
  const t = toKvmTdx(vm);
  const m = tdxModule(k);
  const tdvpr = tdvprOf(vcpu);
  const a = shared ? gpa | tdxSharedGpaBit(t) : gpa;
  const gfn = gpaToGfn(asGpa(gpa));
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const r = m.guestAccess(tdvpr, a, write);
    switch (r.kind) {
      case 'ok':
        k.tdxGuestObserver?.access(vm, gfn, r.pfn, write, false, 'MAPPED');
        return { kind: 'ok', pfn: r.pfn };
      case 'shared': {
        const s = sharedAccess(k, vm, gfn, write, stat);
        if (s.kind === 'ok')
          k.tdxGuestObserver?.access(vm, gfn, s.pfn, write, true, tdxSeptState(k, vm, gfn));
        return s;
      }
      case 've':
        return { kind: 've', gpa: r.gpa };
      case 'machine-check':
        throw new NotModelled(
          `a machine check in a TD (guest access to poisoned private page 0x${r.gpa.toString(16)})`,
        );
      case 'ept-violation': {
        if (r.pending) {
          // tdx_is_sept_violation_unexpected_pending(): "Guest access before accepting"
          kvmVmDead(vm);
          return { kind: 'dead', gpa: r.gpa };
        }
        const f = privateFault(k, m, vcpu, gfn, stat);
        if (f !== undefined) return f;
      }
    }
  }
  return { kind: 'spin' };
}

function accept(
  k: KernelCtx,
  vcpu: Vcpu,
  gpa: bigint,
  size: '4K' | '2M',
  stat: KvmVcpuStat,
): TdxAcceptResult {
  const vm = vcpu.vm;
  const m = tdxModule(k);
  const tdvpr = tdvprOf(vcpu);
  const level = size === '2M' ? 1 : 0;
  const gfn = asGfn(Number((gpa >> 12n) & 0xff_ffff_ffffn));
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const obs = k.tdxGuestObserver;
    const before = obs === undefined ? 'FREE' : tdxSeptState(k, vm, gfn);
    const r = m.tdgMemPageAccept(tdvpr, gpa, level);
    if (r.kind === 'status') {
      obs?.accept(vm, gfn, level, r.status, before, tdxSeptState(k, vm, gfn));
      return r;
    }
    // An EPT violation of type ACCEPT: the private fault of the GPA's first page, then retry.
    const f = privateFault(k, m, vcpu, gfn, stat);
    if (f !== undefined) return f;
  }
  return { kind: 'spin' };
}

/** `kvm_vcpu_is_legal_gpa()` with the TD's GPAW as MAXPHYADDR. */
function legalGpa(t: KvmTdx, gpa: bigint): boolean {
  const bits = t.gfnDirectBits === 1n << 39n ? 52n : 48n;
  return gpa >> bits === 0n;
}

function mapGpa(
  k: KernelCtx,
  vcpu: Vcpu,
  gpa: bigint,
  size: bigint,
  exit: MapGpaRangeExit,
  stop: () => boolean,
): TdvmcallResult | undefined {
  const vm = vcpu.vm;
  const t = toKvmTdx(vm);
  const m = tdxModule(k);
  // tdx_map_gpa()
  if ((vm.hypercallExitEnabled & EXIT_ON_MAP_GPA_RANGE) === 0n)
    return { status: TDVMCALL_STATUS.SUBFUNC_UNSUPPORTED, r11: gpa };
  const end = BigInt.asUintN(64, gpa + size);
  const last = BigInt.asUintN(64, end - 1n);
  if (
    end <= gpa ||
    !legalGpa(t, gpa) ||
    !legalGpa(t, last) ||
    isPrivateGpa(t, gpa) !== isPrivateGpa(t, last)
  )
    return { status: TDVMCALL_STATUS.INVALID_OPERAND, r11: gpa };
  if (gpa % 4096n !== 0n || size % 4096n !== 0n)
    return { status: TDVMCALL_STATUS.ALIGN_ERROR, r11: gpa };
  const priv = isPrivateGpa(t, gpa);
  const strip = k.mutants.has('tdx_map_gpa_keeps_shared_bit') ? ~0n : ~tdxSharedGpaBit(t);
  const observed: Array<{ args: readonly [bigint, bigint, bigint]; ret: bigint }> = [];
  const done = (r: TdvmcallResult): TdvmcallResult => {
    k.tdxGuestObserver?.mapGpa(vm, gpa, size, observed, r.status);
    return r;
  };
  let next = gpa;
  for (;;) {
    // __tdx_map_gpa(): one KVM_HC_MAP_GPA_RANGE exit of at most 2 MiB; the vCPU leaves the TD.
    const len = end - next < TDX_MAP_GPA_MAX_LEN ? end - next : TDX_MAP_GPA_MAX_LEN;
    const args = [
      next & strip,
      len / 4096n,
      priv ? KVM_MAP_GPA_RANGE_ENCRYPTED : KVM_MAP_GPA_RANGE_DECRYPTED,
    ] as const;
    m.tdExit(tdvprOf(vcpu));
    const ret = exit(args);
    observed.push({ args, ret });
    if (stop()) return undefined;
    // tdx_complete_vmcall_map_gpa() on the next KVM_RUN
    if (ret !== 0n) {
      const e = reenter(m, vcpu);
      if (e !== undefined) throw new Error('TDH.VP.ENTER failed after MapGPA');
      return done({ status: TDVMCALL_STATUS.INVALID_OPERAND, r11: next });
    }
    next += TDX_MAP_GPA_MAX_LEN;
    if (next >= end) {
      const e = reenter(m, vcpu);
      if (e !== undefined) throw new Error('TDH.VP.ENTER failed after MapGPA');
      return done({ status: TDVMCALL_STATUS.SUCCESS, r11: 0n });
    }
  }
}

/** The TDX guest ops (`vt_x86_ops`' TD branch of KVM_RUN). */
const TDX_GUEST: TdxGuestOps = {
  // tdx_vcpu_pre_run()
  preRun(_k, vcpu) {
    const t = toKvmTdx(vcpu.vm);
    if (t.state !== 'TD_STATE_RUNNABLE' || toVcpuTdx(vcpu).state !== 'VCPU_TD_STATE_INITIALIZED')
      return 'EINVAL';
    return undefined;
  },
  enter(k, vcpu) {
    return tdxModule(k).tdhVpEnter(tdvprOf(vcpu));
  },
  exit(k, vcpu) {
    const p = toVcpuTdx(vcpu).tdvpr;
    if (p !== undefined) tdxModule(k).tdExit(p);
  },
  access,
  accept,
  mapGpa,
  sharedBit(vm) {
    return tdxSharedGpaBit(toKvmTdx(vm));
  },
  dead(vm) {
    return vm.vmDead;
  },
};

/** `vt_x86_ops`' TD guest side: the ops for a TD, undefined for other VMs. */
export function tdxGuest(vm: Vm): TdxGuestOps | undefined {
  return isTd(vm) ? TDX_GUEST : undefined;
}
