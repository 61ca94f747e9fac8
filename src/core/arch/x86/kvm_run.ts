/**
 * KVM_RUN with trace guest programs (trace-format.md "Guest programs"): each step is one guest
 * instruction — a 1/2/4-byte store or load at a guest-physical address in 32-bit flat protected
 * mode, or a hypercall — followed by HLT. The model executes the steps directly; a real backend
 * compiles them to x86 code in the reserved code page.
 *
 * Accesses that stay inside one page use the stage-2 mapping or take a fault (mmu.ts): RAM,
 * emulated MMIO (KVM_EXIT_MMIO, reads completed with zeros by the VMM), or KVM_EXIT_MEMORY_FAULT
 * which ends the run with KVM_RUN failing. An access that straddles a page boundary is handled
 * like the instruction emulator does: a fault on either page ends the run; otherwise RAM pieces
 * are accessed and MMIO pieces become separate exits.
 */
import type { KernelCtx } from '../../ctx.js';
import type { FaultOutcome } from './mmu.js';
import {
  x86Ops,
  type PscEntry,
  type SnpGuestOps,
  type TdxAccessResult,
  type TdxGuestOps,
} from './x86_ops.js';
import { NotModelled } from '../../base/not_modelled.js';
import { FAULT_MMIO } from '../../kvm/arch_ops.js';
import { UPM_V10_EXIT_MEMORY_FAULT } from '../../kvm/restrictedmem.js';
import type { KvmVcpuStat, Vcpu, Vm } from '../../kvm/objects.js';
import {
  KVM_EXIT_HLT,
  KVM_EXIT_HYPERCALL,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_MMIO,
  KVM_EXIT_SHUTDOWN,
  KVM_HC_MAP_GPA_RANGE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_SYSTEM_EVENT_SEV_TERM,
  KVM_SYSTEM_EVENT_TDX_FATAL,
} from '../../base/uapi.js';
import {
  FrameView,
  KVM_SYNC_X86_REGS,
  KVM_SYNC_X86_SREGS,
  KVM_SYNC_X86_VALID_FIELDS,
  RUN,
} from './kvm_run_page.js';
import type { Errno } from '../../base/errno.js';
import {
  PAGE_SIZE,
  asGpa,
  bytesToPagesN,
  exactGpaOffset,
  exactGpaToGfn,
  gfnToGpa,
  gpaAdd,
  gpaExact,
  gpaToGfn,
  isPageAligned,
  offsetInPage,
  type Gfn,
  type Pfn,
  type Gpa,
} from '../../base/units.js';

/**
 * One step of a guest program. A store's or load's `gpaNum` is its `gpa` as a double when that is
 * exact (`gpaExact`), else -1: KVM_RUN converts no bigint per access (a conversion is a runtime
 * call that costs a first-touch fault about 8%). Build accesses with `guestStore` / `guestLoad`.
 */
export type GuestProgramStep =
  | {
      readonly kind: 'store';
      readonly gpa: bigint;
      readonly gpaNum: number;
      readonly bytes: Uint8Array;
      /** The C-bit of the guest PTE (SEV-SNP: a private access); false elsewhere. */
      readonly enc: boolean;
      /** The guest PTE sets the TD's shared GPA bit (TDX: a shared access); false elsewhere. */
      readonly shared: boolean;
    }
  | {
      readonly kind: 'load';
      readonly gpa: bigint;
      readonly gpaNum: number;
      readonly size: 1 | 2 | 4;
      readonly enc: boolean;
      readonly shared: boolean;
    }
  | {
      readonly kind: 'hypercall';
      readonly nr: bigint;
      readonly args: readonly [bigint, bigint, bigint];
    }
  /** SEV-SNP PVALIDATE of the page at `gpa`. */
  | {
      readonly kind: 'pvalidate';
      readonly gpa: bigint;
      readonly size: '4K' | '2M';
      readonly validate: boolean;
    }
  /** TDX TDG.MEM.PAGE.ACCEPT of the page at `gpa` (a private GPA). */
  | { readonly kind: 'accept'; readonly gpa: bigint; readonly size: '4K' | '2M' }
  /**
   * TDX TDG.VP.VMCALL<MapGPA> of [gpa, gpa + size), `shared`: the guest sets the TD's shared bit
   * in the start GPA (a conversion to shared), else converts to private.
   */
  | {
      readonly kind: 'map_gpa';
      readonly gpa: bigint;
      readonly size: bigint;
      readonly shared: boolean;
    }
  /** SEV-SNP page-state change by GHCB MSR protocol: the request's GFN and operation. */
  | { readonly kind: 'psc_msr'; readonly gfn: bigint; readonly op: number }
  /** SEV-SNP page-state change NAE event with a descriptor (copied per run: KVM updates it). */
  | {
      readonly kind: 'psc';
      readonly curEntry: number;
      readonly endEntry: number;
      readonly entries: readonly PscEntry[];
    };

/**
 * A guest store of `bytes` (1, 2 or 4) at `gpa`; `enc`: the C-bit (SEV-SNP); `shared`: the TD's
 * shared bit (TDX).
 */
export function guestStore(
  gpa: bigint,
  bytes: Uint8Array,
  enc = false,
  shared = false,
): GuestProgramStep {
  return { kind: 'store', gpa, gpaNum: gpaExact(asGpa(gpa)), bytes, enc, shared };
}

/** A guest load of `size` bytes at `gpa`; `enc`: the C-bit (SEV-SNP); `shared`: TDX's shared bit. */
export function guestLoad(
  gpa: bigint,
  size: 1 | 2 | 4,
  enc = false,
  shared = false,
): GuestProgramStep {
  return { kind: 'load', gpa, gpaNum: gpaExact(asGpa(gpa)), size, enc, shared };
}

/**
 * The VMM's handling of a KVM_HC_MAP_GPA_RANGE exit (`args`: gpa, npages, attributes): it may
 * act on the VM (convert, discard) and returns what it writes to `hypercall.ret`. The default
 * answers 0 and does nothing.
 */
export type MapGpaRangeVmm = (vm: Vm, args: readonly [bigint, bigint, bigint]) => bigint;
const VMM_RETURN_0: MapGpaRangeVmm = () => 0n;

export type RunExit =
  | { readonly reason: 'LOAD'; readonly gpa: bigint; readonly bytes: Uint8Array }
  | {
      readonly reason: 'MMIO';
      readonly gpa: bigint;
      readonly len: number;
      readonly isWrite: boolean;
      readonly bytes?: Uint8Array;
    }
  | {
      readonly reason: 'MEMORY_FAULT';
      readonly gpa: bigint;
      readonly size: bigint;
      readonly flags: bigint;
    }
  | { readonly reason: 'HYPERCALL'; readonly nr: bigint; readonly args: readonly bigint[] }
  | { readonly reason: 'HYPERCALL_RET'; readonly bytes: Uint8Array }
  | { readonly reason: 'HLT' }
  /** Emulation failure (KVM_INTERNAL_ERROR_EMULATION = 1), e.g. fetching code from MMIO. */
  | { readonly reason: 'INTERNAL_ERROR'; readonly suberror: number }
  /** Triple fault. */
  | { readonly reason: 'SHUTDOWN' }
  /** SEV-SNP PVALIDATE's result: RAX and rFLAGS.CF. */
  | { readonly reason: 'PVALIDATE'; readonly gpa: bigint; readonly ret: number; readonly cf: 0 | 1 }
  /** A #VC the SNP guest took (error code = the exit code, 0x404: page not validated). */
  | { readonly reason: 'VC'; readonly gpa: bigint; readonly errorCode: bigint }
  /** KVM_EXIT_SYSTEM_EVENT (SEV termination: type 6, data[0] = the GHCB MSR). */
  | { readonly reason: 'SYSTEM_EVENT'; readonly type: number; readonly data: readonly bigint[] }
  /** The GHCB MSR value an SNP guest reads back after a GHCB MSR protocol request. */
  | { readonly reason: 'GHCB_MSR'; readonly value: bigint }
  /** TDG.MEM.PAGE.ACCEPT's result: the TDX module's status (RAX) the guest reads. */
  | { readonly reason: 'ACCEPT'; readonly gpa: bigint; readonly status: bigint }
  /** A TDG.VP.VMCALL's result: R10 (status) and, when it failed, R11. */
  | { readonly reason: 'TDVMCALL'; readonly status: bigint; readonly r11?: bigint }
  /** A #VE the TD guest took (an access to a PENDING page with SEPT_VE_DISABLE clear). */
  | { readonly reason: 'VE'; readonly gpa: bigint }
  /**
   * A TD exit KVM answered with `kvm_vm_dead()`: an EPT violation on a PENDING private page
   * ("Guest access before accepting"); KVM_RUN fails with EIO.
   */
  | { readonly reason: 'EPT_VIOLATION'; readonly gpa: bigint }
  /** A PSC NAE event's result: SW_EXITINFO2 and the descriptor as KVM left it. */
  | {
      readonly reason: 'PSC';
      readonly ret: bigint;
      readonly curEntry: number;
      readonly curPages: readonly number[];
    };

export type RunResult = { readonly errno?: Errno; readonly exits: RunExit[] };

const KVM_ENOSYS = 1000n;
const KVM_EINVAL = 22n;

type Piece = {
  readonly gpa: Gpa;
  readonly off: number;
  readonly len: number;
  readonly gfn: Gfn;
  out: FaultOutcome | undefined;
};

function splitPages(gpa: Gpa, len: number): Piece[] {
  const pieces: Piece[] = [];
  let done = 0;
  while (done < len) {
    const a = gpaAdd(gpa, BigInt(done));
    const inPage = PAGE_SIZE - offsetInPage(a);
    const n = Math.min(len - done, inPage);
    pieces.push({ gpa: a, off: done, len: n, gfn: gpaToGfn(a), out: undefined });
    done += n;
  }
  return pieces;
}

/**
 * One guest data access at `gpa` (`n`: the same as a double, or -1 when that is not exact).
 * Returns the exits it produced and, for a memory fault, the errno that ends the run. `buf` is
 * filled for loads. `stat`: the vCPU's fault counters.
 */
function guestAccess(
  k: KernelCtx,
  vm: Vm,
  gpa: Gpa,
  n: number,
  buf: Uint8Array,
  write: boolean,
  exits: RunExit[],
  stat: KvmVcpuStat,
): Errno | 'user' | undefined {
  const translate = x86Ops(k).translate;
  // Fast path: an access inside one page (the common case) needs no piece list.
  const off = n >= 0 ? exactGpaOffset(n) : offsetInPage(gpa);
  if (off + buf.length <= 4096) {
    const gfn = n >= 0 ? exactGpaToGfn(n) : gpaToGfn(gpa);
    const o = translate(k, vm, gfn, write, false, stat);
    if (typeof o === 'number') {
      if (write) k.frames.write(o, off, buf, 0, buf.length);
      else k.frames.read(o, off, buf, 0, buf.length);
      return undefined;
    }
    if (o.kind === 'memfault') {
      exits.push({ reason: 'MEMORY_FAULT', gpa: gfnToGpa(gfn), size: 4096n, flags: o.flags });
      return o.user === true ? 'user' : o.errno;
    }
    if (write)
      exits.push({ reason: 'MMIO', gpa, len: buf.length, isWrite: true, bytes: buf.slice() });
    else {
      exits.push({ reason: 'MMIO', gpa, len: buf.length, isWrite: false });
      buf.fill(0);
    }
    return undefined;
  }
  const pieces = splitPages(gpa, buf.length);
  for (const p of pieces) {
    const o = translate(k, vm, p.gfn, write, false, stat);
    p.out = o;
    if (typeof o !== 'number' && o.kind === 'memfault') {
      exits.push({
        reason: 'MEMORY_FAULT',
        gpa: gfnToGpa(p.gfn),
        size: 4096n,
        flags: o.flags,
      });
      return o.user === true ? 'user' : o.errno;
    }
  }
  completePieces(k, pieces, buf, write, exits);
  return undefined;
}

/**
 * The data movement of an access whose every page resolved: RAM pages are read or written (each
 * reported to `onRam` first), MMIO pages become MMIO exit entries (a load's bytes read as zeros).
 */
function completePieces(
  k: KernelCtx,
  pieces: readonly Piece[],
  buf: Uint8Array,
  write: boolean,
  exits: RunExit[],
  onRam?: (p: Piece, pfn: Pfn) => void,
): void {
  for (const p of pieces) {
    const o = p.out!;
    const off = offsetInPage(p.gpa);
    if (typeof o === 'number') {
      onRam?.(p, o);
      if (write) k.frames.write(o, off, buf, p.off, p.len);
      else k.frames.read(o, off, buf, p.off, p.len);
    } else if (write) {
      exits.push({
        reason: 'MMIO',
        gpa: p.gpa,
        len: p.len,
        isWrite: true,
        bytes: buf.slice(p.off, p.off + p.len),
      });
    } else {
      exits.push({ reason: 'MMIO', gpa: p.gpa, len: p.len, isWrite: false });
      buf.fill(0, p.off, p.off + p.len);
    }
  }
}

/**
 * A data access of an SEV-SNP guest (`enc`: the C-bit of its PTE): each page is walked through
 * the nested mapping (faulting it in with PFERR_PRIVATE_ACCESS from the C-bit) and then passes
 * the RMP check (svm/sev_guest.ts `snpCheckAccess()`). Returns undefined (done), the errno of a
 * memory-fault exit, the GPA of a page that raised #VC (a bigint), or 'spin' when the access
 * re-faults forever. Nothing is written unless every page passed.
 */
function snpGuestAccess(
  k: KernelCtx,
  snp: SnpGuestOps,
  vm: Vm,
  gpa: Gpa,
  buf: Uint8Array,
  write: boolean,
  enc: boolean,
  exits: RunExit[],
  stat: KvmVcpuStat,
): Errno | bigint | 'spin' | undefined {
  const translate = x86Ops(k).translate;
  const pieces = splitPages(gpa, buf.length);
  for (const p of pieces) {
    // One retry per page after sev_handle_rmp_fault() PSMASHed an entry (then the entry is 4K).
    for (let attempt = 0; ; attempt++) {
      const o = translate(k, vm, p.gfn, write, enc, stat);
      if (typeof o !== 'number') {
        if (o.kind === 'memfault') {
          exits.push({ reason: 'MEMORY_FAULT', gpa: gfnToGpa(p.gfn), size: 4096n, flags: o.flags });
          return o.errno;
        }
        p.out = o;
        break;
      }
      const level = vm.stage2[0]!.get(p.gfn)?.level ?? '4K';
      const c = snp.checkAccess(k, vm, p.gfn, o, level, enc);
      if (c === 'ok') {
        p.out = o;
        break;
      }
      if (c === 'vc') return p.gpa;
      rmpFaultStat(stat, c);
      if (c === 'memfault') {
        // kvm_mmu_page_fault() → kvm_mmu_faultin_pfn(): the private/shared mismatch.
        const flags = enc ? KVM_MEMORY_EXIT_FLAG_PRIVATE : 0n;
        exits.push({ reason: 'MEMORY_FAULT', gpa: gfnToGpa(p.gfn), size: 4096n, flags });
        return 'EFAULT';
      }
      if (c === 'spin' || attempt > 0) return 'spin';
    }
  }
  // The access happens now: the checker sees what the RMP says of each frame (C=1 only).
  const obs = enc ? k.snpGuestObserver : undefined;
  completePieces(
    k,
    pieces,
    buf,
    write,
    exits,
    obs === undefined ? undefined : (p, pfn) => obs.access(vm, p.gfn, pfn, write),
  );
  return undefined;
}

/**
 * The fault counters of an #NPF with the RMP bit on a page whose nested mapping is present
 * (`npf_interception()` → `kvm_mmu_page_fault()`): pf_taken, and pf_spurious when the fault path
 * finds the mapping it would install already there (`tdp_mmu_map_handle_target_level()`:
 * RET_PF_SPURIOUS) before `sev_handle_rmp_fault()` runs ('retry', 'spin'); a private/shared
 * mismatch ('memfault') ends in -EFAULT, which counts nothing more. A guest that re-faults forever
 * ('spin') counts its first fault (the run ends there).
 */
function rmpFaultStat(stat: KvmVcpuStat, c: 'retry' | 'memfault' | 'spin'): void {
  stat.pf_taken++;
  if (c !== 'memfault') stat.pf_spurious++;
}

/**
 * A data access of a TD guest (`shared`: the guest PTE sets the shared bit): each page through the
 * TDX module's check and KVM's EPT-violation handling (vmx/tdx_guest.ts). Returns undefined (every
 * page resolved: the access happened, RAM pieces moved and MMIO pieces as exits), or the result of
 * the page that ended it. Nothing is written unless every page resolved.
 */
function tdxGuestAccess(
  k: KernelCtx,
  tdx: TdxGuestOps,
  vcpu: Vcpu,
  gpa: Gpa,
  buf: Uint8Array,
  write: boolean,
  shared: boolean,
  exits: RunExit[],
): Exclude<TdxAccessResult, { kind: 'ok' | 'mmio' }> | undefined {
  const pieces = splitPages(gpa, buf.length);
  for (const p of pieces) {
    const r = tdx.access(k, vcpu, p.gpa, write, shared, vcpu.stat);
    if (r.kind === 'ok') p.out = r.pfn;
    else if (r.kind === 'mmio') p.out = FAULT_MMIO;
    else return r;
  }
  completePieces(k, pieces, buf, write, exits);
  return undefined;
}

/**
 * One PVALIDATE step of an SNP guest: the operand check (the address aligned to the size, else
 * FAIL_INPUT), the nested walk of the page as a C=1 access (a memory-fault exit ends the run:
 * returns its errno), then the RMP checks (`snpPvalidate()`); the result is a PVALIDATE exit
 * entry. 'spin': the instruction re-faults forever.
 */
function pvalidateStep(
  k: KernelCtx,
  snp: SnpGuestOps,
  vm: Vm,
  gpa: bigint,
  size: '4K' | '2M',
  validate: boolean,
  exits: RunExit[],
  stat: KvmVcpuStat,
): Errno | 'spin' | undefined {
  const align = size === '2M' ? 0x20_0000n : 0x1000n;
  if (gpa % align !== 0n) {
    exits.push({ reason: 'PVALIDATE', gpa, ret: snp.pvalidateFailInput, cf: 0 });
    return undefined;
  }
  const gfn = gpaToGfn(asGpa(gpa));
  for (let attempt = 0; attempt < 2; attempt++) {
    const o = x86Ops(k).translate(k, vm, gfn, false, true, stat);
    if (typeof o !== 'number') {
      // A C=1 walk never ends in MMIO: a private fault without a memslot is a memory fault.
      const flags = o.kind === 'memfault' ? o.flags : KVM_MEMORY_EXIT_FLAG_PRIVATE;
      exits.push({ reason: 'MEMORY_FAULT', gpa: gfnToGpa(gfn), size: 4096n, flags });
      return o.kind === 'memfault' ? o.errno : 'EFAULT';
    }
    // The entry's validated bit before the instruction, for the checker.
    const obs = k.snpGuestObserver;
    const before = obs !== undefined && k.platform.sevSnp!.rmp.lookup(o).validated;
    const r = snp.pvalidate(k, vm, gfn, o, size, validate);
    if (r.kind === 'done') {
      obs?.pvalidate(vm, gfn, o, validate, before, r.ret, r.cf);
      exits.push({ reason: 'PVALIDATE', gpa, ret: r.ret, cf: r.cf });
      return undefined;
    }
    rmpFaultStat(stat, r.kind);
    if (r.kind === 'memfault') {
      const flags = KVM_MEMORY_EXIT_FLAG_PRIVATE;
      exits.push({ reason: 'MEMORY_FAULT', gpa: gfnToGpa(gfn), size: 4096n, flags });
      return 'EFAULT';
    }
    if (r.kind === 'spin') return 'spin';
  }
  return 'spin';
}

/** `kvm_emulate_hypercall()` in 32-bit protected mode at CPL 0: the value left in EAX. */
function emulateHypercall(
  k: KernelCtx,
  vm: Vm,
  nr: bigint,
  a: readonly [bigint, bigint, bigint],
  toVmm: (args: readonly [bigint, bigint, bigint]) => bigint,
): bigint {
  // Not in 64-bit mode: arguments are truncated to 32 bits.
  const n = nr & 0xffff_ffffn;
  const a0 = a[0] & 0xffff_ffffn;
  const a1 = a[1] & 0xffff_ffffn;
  const a2 = a[2] & 0xffff_ffffn;
  let ret = -KVM_ENOSYS;
  // A design kernel's own hypercalls first (kvm/design_ops.ts): design-2020-protnone-follkvm's
  // KVM_HC_ENABLE_MEM_PROTECTED (12, before KVM_HC_MAP_GPA_RANGE took the number),
  // KVM_HC_MEM_SHARE and KVM_HC_MEM_UNSHARE; design-2024-shmem-exclusive-pin's
  // KVM_HC_MAP_GPA_RANGE handled in KVM (exclusive pins).
  const prot = k.design?.hypercall?.(k, vm, n, a0, a1, a2);
  if (prot !== undefined) ret = prot;
  else if (n === 1n)
    ret = 0n; // KVM_HC_VAPIC_POLL_IRQ
  else if (n === BigInt(KVM_HC_MAP_GPA_RANGE)) {
    if ((vm.hypercallExitEnabled & (1n << 12n)) !== 0n) {
      const gfn = bytesToPagesN(a0);
      if (!isPageAligned(a0) || a1 === 0n || gfn + a1 <= gfn) ret = -KVM_EINVAL;
      // complete_hypercall_exit(): EAX is what the VMM wrote to hypercall.ret.
      else ret = toVmm([a0, a1, a2]);
    }
  }
  return ret & 0xffff_ffffn;
}

/** PVM's exit information in an emulation-failure KVM_EXIT_INTERNAL_ERROR (observed: ndata 6). */
const EMULATION_FAILURE_DATA = [0n, 0x1000n, 0n, 0n, 0n, 0n];

/**
 * One KVM_RUN of the trace backend: a sequence of KVM_RUN ioctls, one per userspace exit, with
 * the kvm_run page updated the way the kernel and the backend update it (kvm_run_page.ts).
 * `codeInPlace` is false when the trace deleted the code slot: instruction fetch from MMIO
 * fails emulation.
 */
export function kvmRunProgram(
  k: KernelCtx,
  vcpu: Vcpu,
  steps: readonly GuestProgramStep[],
  codeInPlace = true,
  vmm: MapGpaRangeVmm = VMM_RETURN_0,
): RunResult {
  const vm = vcpu.vm;
  vcpu.runs++;
  const run = new FrameView(k.frames, vcpu.pages[0]!);
  const pio = new FrameView(k.frames, vcpu.pages[1]!);
  const exits: RunExit[] = [];
  const tdx = x86Ops(k).tdxGuest?.(vm);

  // post_kvm_run_save(): what every KVM_RUN ioctl leaves in kvm_run on its way out (a TD vCPU
  // has left the TD by then).
  const leave = (): void => {
    if (tdx !== undefined) tdx.exit(k, vcpu);
    run.writeUint(RUN.if_flag, 1, 0n);
    run.writeUint(RUN.cr8, 8, vcpu.cr8);
    run.writeUint(RUN.apic_base, 8, vcpu.apicBase);
    run.writeUint(RUN.ready_for_interrupt_injection, 1, 0n);
  };
  // sync_regs(): KVM_CAP_SYNC_REGS state the trace wrote into kvm_run replaces what the backend
  // set with KVM_SET_REGS/SREGS; each applied bit is cleared. Modelled for the sync area as the
  // kernel leaves it (zeros): zero SREGS put the vCPU in real mode with a zero CS limit, which
  // triple-faults (SHUTDOWN); zero REGS start at RIP 0, where instruction fetch fails emulation.
  let shutdown = false;
  let badRip = false;
  // The start of one KVM_RUN ioctl: the backend clears exit_reason, then
  // kvm_arch_vcpu_ioctl_run() checks kvm_run in this order.
  const enter = (): Errno | undefined => {
    run.writeUint(RUN.exit_reason, 4, 0n);
    run.writeUint(RUN.flags, 2, 0n);
    const valid = run.readUint(RUN.kvm_valid_regs, 8);
    const dirty = run.readUint(RUN.kvm_dirty_regs, 8);
    let e: Errno | undefined;
    if ((valid & ~KVM_SYNC_X86_VALID_FIELDS) !== 0n || (dirty & ~KVM_SYNC_X86_VALID_FIELDS) !== 0n)
      e = 'EINVAL';
    else {
      // sync_regs() runs before the TPR and immediate_exit checks, so its effects (and the
      // cleared dirty bits) stay even when this KVM_RUN then fails.
      if (tdx !== undefined && dirty !== 0n)
        throw new NotModelled(
          'KVM_CAP_SYNC_REGS state written for a TD vCPU (sync_regs() of a guest with protected state)',
        );
      if ((dirty & KVM_SYNC_X86_REGS) !== 0n) badRip = true;
      if ((dirty & KVM_SYNC_X86_SREGS) !== 0n) {
        vcpu.apicBase = run.readUint(RUN.sync_sregs_apic_base, 8);
        shutdown = true;
      }
      if (dirty !== 0n) run.writeUint(RUN.kvm_dirty_regs, 8, 0n);
      // Without an in-kernel LAPIC, kvm_run->cr8 is written to the guest's TPR (4 bits). A TD's
      // vCPU has one (tdx_vcpu_create() requires it): kvm_run->cr8 is not read.
      const cr8 = tdx === undefined ? run.readUint(RUN.cr8, 8) : vcpu.cr8;
      if ((cr8 & ~0xfn) !== 0n) e = 'EINVAL';
      else {
        vcpu.cr8 = cr8;
        if (run.readUint(RUN.immediate_exit, 1) !== 0n) e = 'EINTR';
      }
    }
    if (e !== undefined) leave();
    return e;
  };
  // The next KVM_RUN after a userspace exit: its entry checks, then (a TD) TDH.VP.ENTER.
  const reenter = (): Errno | undefined => {
    const r = enter();
    if (r === undefined && tdx !== undefined && tdx.enter(k, vcpu) !== 0n) return 'EIO';
    return r;
  };
  const exitMmio = (
    gpa: bigint,
    len: number,
    isWrite: boolean,
    data?: Uint8Array,
  ): Errno | undefined => {
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_MMIO));
    run.writeUint(RUN.mmio_phys_addr, 8, gpa);
    if (data !== undefined) run.write(RUN.mmio_data, data.subarray(0, Math.min(8, data.length)));
    run.writeUint(RUN.mmio_len, 4, BigInt(len));
    run.writeUint(RUN.mmio_is_write, 1, isWrite ? 1n : 0n);
    leave();
    // The backend completes MMIO reads with zeros.
    if (!isWrite) run.write(RUN.mmio_data, new Uint8Array(8));
    return reenter();
  };
  const memoryFaultExit = (x: Extract<RunExit, { reason: 'MEMORY_FAULT' }>): void => {
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_MEMORY_FAULT));
    run.writeUint(RUN.memory_fault_flags, 8, x.flags);
    run.writeUint(RUN.memory_fault_gpa, 8, x.gpa);
    run.writeUint(RUN.memory_fault_size, 8, x.size);
    leave();
  };
  // sev_handle_vmgexit_msr_protocol(), GHCB_MSR_TERM_REQ: KVM_EXIT_SYSTEM_EVENT of type
  // KVM_SYSTEM_EVENT_SEV_TERM, ndata 1, data[0] = the GHCB MSR; KVM_RUN returns 0.
  const systemEvent = (type: number, data: readonly bigint[]): RunResult => {
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_SYSTEM_EVENT));
    run.writeUint(RUN.system_event_type, 4, BigInt(type));
    run.writeUint(RUN.system_event_ndata, 4, BigInt(data.length));
    data.forEach((d, i) => run.writeUint(RUN.system_event_data + 8 * i, 8, d));
    leave();
    exits.push({ reason: 'SYSTEM_EVENT', type, data });
    return { exits };
  };
  const sevTerminate = (msr: bigint): RunResult => systemEvent(KVM_SYSTEM_EVENT_SEV_TERM, [msr]);
  // A TD guest's #VE it cannot handle: the guest reports a fatal error as Linux's tdx_panic()
  // does (TDG.VP.VMCALL<ReportFatalError>, R12 = 0, no message registers); KVM:
  // tdx_report_fatal_error(), KVM_EXIT_SYSTEM_EVENT of type KVM_SYSTEM_EVENT_TDX_FATAL with
  // data[0] = R12, data[1] = R13; KVM_RUN returns 0.
  const tdxFatal = (): RunResult => systemEvent(KVM_SYSTEM_EVENT_TDX_FATAL, [0n, 0n]);
  // An error that ends a TD vCPU's run without an exit (KVM_RUN fails).
  const fail = (errno: Errno): RunResult => {
    leave();
    return { errno, exits };
  };
  // The end of a TD access or ACCEPT that did not complete.
  const tdxEnd = (r: Exclude<TdxAccessResult, { kind: 'ok' | 'mmio' }>): RunResult => {
    switch (r.kind) {
      case 'memfault': {
        const x = { reason: 'MEMORY_FAULT', gpa: r.gpa, size: 4096n, flags: r.flags } as const;
        exits.push(x);
        memoryFaultExit(x);
        return { errno: r.errno, exits };
      }
      case 've':
        exits.push({ reason: 'VE', gpa: r.gpa });
        return tdxFatal();
      case 'dead':
        // tdx_handle_ept_violation(): "Guest access before accepting", kvm_vm_dead(), -EIO.
        exits.push({ reason: 'EPT_VIOLATION', gpa: r.gpa });
        return fail('EIO');
      case 'error':
        return fail(r.errno);
      case 'spin':
        return fail('EINTR');
    }
  };
  const exitOut = (port: number, data: Uint8Array): Errno | undefined => {
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_IO));
    run.writeUint(RUN.io_direction, 1, 1n);
    run.writeUint(RUN.io_size, 1, BigInt(data.length));
    run.writeUint(RUN.io_port, 2, BigInt(port));
    run.writeUint(RUN.io_count, 4, 1n);
    run.writeUint(RUN.io_data_offset, 8, 4096n);
    pio.write(0, data);
    leave();
    return reenter();
  };

  // A KVM_HC_MAP_GPA_RANGE exit (a vmcall, or an SNP page-state change forwarded by
  // snp_begin_psc*()): the VMM sees it, acts and writes hypercall.ret; the next KVM_RUN's entry
  // check may fail (then `pending` ends the run after the step).
  let pending: Errno | undefined;
  const toVmm = (args: readonly [bigint, bigint, bigint]): bigint => {
    const nr = BigInt(KVM_HC_MAP_GPA_RANGE);
    exits.push({ reason: 'HYPERCALL', nr, args });
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_HYPERCALL));
    run.writeUint(RUN.hypercall_nr, 8, nr);
    args.forEach((a, i) => run.writeUint(RUN.hypercall_args + 8 * i, 8, a));
    // __tdx_map_gpa(): KVM_EXIT_HYPERCALL_LONG_MODE (a TD runs in 64-bit mode).
    run.writeUint(RUN.hypercall_flags, 8, tdx === undefined ? 0n : 1n);
    leave();
    const ret = vmm(vm, args) & 0xffff_ffff_ffff_ffffn;
    run.writeUint(RUN.hypercall_ret, 8, ret);
    pending ??= enter();
    return ret;
  };
  const snp = x86Ops(k).snpGuest?.(vm);

  let e = enter();
  if (e !== undefined) return { errno: e, exits };
  if (tdx !== undefined) {
    // vt_vcpu_pre_run() → tdx_vcpu_pre_run(), then tdx_vcpu_run(): TDH.VP.ENTER. The TD's code is
    // its own (in its private memory): the trace's code page and sync registers play no part.
    const pre = tdx.preRun(k, vcpu);
    if (pre !== undefined) return fail(pre);
    const st = tdx.enter(k, vcpu);
    if (st !== 0n) {
      // tdx_handle_exit(): a VP.ENTER error is an unhandled exit (KVM_EXIT_INTERNAL_ERROR,
      // KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON, data[0] = the status).
      run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_INTERNAL_ERROR));
      run.writeUint(RUN.internal_suberror, 4, 4n);
      run.writeUint(RUN.internal_ndata, 4, 2n);
      run.writeUint(RUN.internal_data, 8, st);
      run.writeUint(RUN.internal_data + 8, 8, 0n);
      leave();
      exits.push({ reason: 'INTERNAL_ERROR', suberror: 4 });
      return { exits };
    }
    codeInPlace = true;
    shutdown = false;
  }
  // design-2023-restrictedmem (UPM v10 patch 9/9): vcpu_enter_guest() finds KVM_REQ_MEMORY_MCE
  // (a memory error in a bound restricted fd) and returns 0 with KVM_EXIT_SHUTDOWN; the guest
  // does not run.
  if (vcpu.memoryMceRequest) {
    vcpu.memoryMceRequest = false;
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_SHUTDOWN));
    leave();
    exits.push({ reason: 'SHUTDOWN' });
    return { exits };
  }
  // Zero REGS start the fetch at RIP 0 (in either mode), so an unbacked GPA 0 fails emulation
  // before a zero CS limit could fault; only SREGS alone leave RIP beyond that limit.
  if (shutdown && !badRip) {
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_SHUTDOWN));
    leave();
    exits.push({ reason: 'SHUTDOWN' });
    return { exits };
  }
  if (badRip) codeInPlace = false;
  if (!codeInPlace) {
    run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_INTERNAL_ERROR));
    run.writeUint(RUN.internal_suberror, 4, 1n);
    run.writeUint(RUN.internal_ndata, 4, BigInt(EMULATION_FAILURE_DATA.length));
    EMULATION_FAILURE_DATA.forEach((d, i) => run.writeUint(RUN.internal_data + 8 * i, 8, d));
    leave();
    exits.push({ reason: 'INTERNAL_ERROR', suberror: 1 });
    return { exits };
  }
  // The exits of one access (reused from step to step: most accesses have none).
  const pieces: RunExit[] = [];
  for (let si = 0; si < steps.length; si++) {
    const s = steps[si]!;
    if (s.kind === 'store' || s.kind === 'load') {
      const write = s.kind === 'store';
      // Stores only read their bytes (MMIO exits copy them).
      const buf = write ? s.bytes : new Uint8Array(s.size);
      if (pieces.length !== 0) pieces.length = 0;
      if (tdx !== undefined) {
        const r = tdxGuestAccess(k, tdx, vcpu, asGpa(s.gpa), buf, write, s.shared, pieces);
        if (r !== undefined) return tdxEnd(r);
      }
      const fault =
        tdx !== undefined
          ? undefined
          : snp
            ? snpGuestAccess(k, snp, vm, asGpa(s.gpa), buf, write, s.enc, pieces, vcpu.stat)
            : guestAccess(k, vm, asGpa(s.gpa), s.gpaNum, buf, write, pieces, vcpu.stat);
      if (fault === 'spin') {
        leave();
        return { errno: 'EINTR', exits };
      }
      if (typeof fault === 'bigint') {
        // #VC: the guest's handler cannot handle it and terminates through the GHCB MSR
        // protocol (Linux: "Unhandled #VC exception", sev_es_terminate(SEV_TERM_SET_GEN,
        // GHCB_SEV_ES_GEN_REQ)); KVM: sev_handle_vmgexit_msr_protocol(), GHCB_MSR_TERM_REQ.
        exits.push({ reason: 'VC', gpa: fault, errorCode: snp!.vcPageNotValidated });
        return sevTerminate(snp!.termUnhandledVc);
      }
      // An index loop: `for...of` here allocated an iterator per step.
      for (let i = 0; i < pieces.length; i++) {
        const x = pieces[i]!;
        if (x.reason === 'MMIO') {
          exits.push(x);
          e = exitMmio(x.gpa, x.len, x.isWrite, x.bytes);
          if (e !== undefined) return { errno: e, exits };
        } else if (x.reason === 'MEMORY_FAULT') {
          exits.push(x);
          memoryFaultExit(x);
        }
      }
      if (fault === 'user') {
        // RET_PF_USER (design-2023-restrictedmem, UPM v10): KVM_RUN returns 0 with the exit,
        // under v10's exit number.
        run.writeUint(RUN.exit_reason, 4, BigInt(UPM_V10_EXIT_MEMORY_FAULT));
        return { exits };
      }
      if (fault !== undefined) return { errno: fault, exits };
      if (!write) {
        exits.push({ reason: 'LOAD', gpa: s.gpa, bytes: buf });
        e = exitOut(0x10, buf);
        if (e !== undefined) return { errno: e, exits };
      }
    } else if (s.kind === 'accept' || s.kind === 'map_gpa') {
      // Not a TD: TDCALL is #UD, which triple-faults (no IDT).
      if (tdx === undefined) {
        run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_SHUTDOWN));
        leave();
        exits.push({ reason: 'SHUTDOWN' });
        return { exits };
      }
      if (s.kind === 'accept') {
        const r = tdx.accept(k, vcpu, s.gpa, s.size, vcpu.stat);
        if (r.kind !== 'status') return tdxEnd(r);
        exits.push({ reason: 'ACCEPT', gpa: s.gpa, status: r.status });
      } else {
        const gpa = s.shared ? s.gpa | tdx.sharedBit(vm) : s.gpa;
        const r = tdx.mapGpa(k, vcpu, gpa, s.size, toVmm, () => pending !== undefined);
        if (r === undefined) return { errno: pending, exits };
        exits.push(
          r.status === 0n
            ? { reason: 'TDVMCALL', status: r.status }
            : { reason: 'TDVMCALL', status: r.status, r11: r.r11 },
        );
      }
    } else if (s.kind === 'pvalidate' || s.kind === 'psc_msr' || s.kind === 'psc') {
      // Not an SNP guest: PVALIDATE is #UD, the GHCB MSR write #GP; the program sets up no IDT,
      // so the exception triple-faults.
      if (snp === undefined) {
        run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_SHUTDOWN));
        leave();
        exits.push({ reason: 'SHUTDOWN' });
        return { exits };
      }
      if (s.kind === 'pvalidate') {
        const r = pvalidateStep(k, snp, vm, s.gpa, s.size, s.validate, exits, vcpu.stat);
        if (r === 'spin') {
          leave();
          return { errno: 'EINTR', exits };
        }
        if (r !== undefined) {
          const x = exits[exits.length - 1] as Extract<RunExit, { reason: 'MEMORY_FAULT' }>;
          memoryFaultExit(x);
          return { errno: r, exits };
        }
      } else if (s.kind === 'psc_msr') {
        const value = snp.pscMsr(vm, s.gfn, s.op, toVmm);
        if (pending !== undefined) return { errno: pending, exits };
        exits.push({ reason: 'GHCB_MSR', value });
      } else {
        const desc = {
          curEntry: s.curEntry,
          endEntry: s.endEntry,
          entries: s.entries.map((x) => ({ ...x })),
        };
        const obs = k.snpGuestObserver;
        let ret: bigint;
        if (obs === undefined) ret = snp.psc(k, vm, desc, toVmm);
        else {
          // The checker sees the descriptor as KVM left it at each exit and at the end.
          const curPages = (): number[] => desc.entries.map((x) => x.curPage);
          const seen: Array<{
            args: readonly [bigint, bigint, bigint];
            ret: bigint;
            curPages: number[];
          }> = [];
          ret = snp.psc(k, vm, desc, (args) => {
            const at = curPages();
            const r = toVmm(args);
            seen.push({ args, ret: r, curPages: at });
            return r;
          });
          obs.psc(vm, {
            curEntry: s.curEntry,
            endEntry: s.endEntry,
            entries: s.entries,
            exits: seen,
            curPages: curPages(),
            ret,
          });
        }
        if (pending !== undefined) return { errno: pending, exits };
        exits.push({
          reason: 'PSC',
          ret,
          curEntry: desc.curEntry,
          curPages: desc.entries.map((x) => x.curPage),
        });
      }
    } else {
      if (tdx !== undefined) {
        tdx.exit(k, vcpu); // the vCPU leaves the TD as the run stops
        throw new NotModelled('a VMCALL instruction in a TD guest (the trace hypercall step)');
      }
      // PVM never completes a vmcall: the vCPU spins until the backend's watchdog signal.
      if (x86Ops(k).vmcall === 'spin') {
        leave();
        return { errno: 'EINTR', exits };
      }
      const eax = emulateHypercall(k, vm, s.nr, s.args, toVmm);
      if (pending !== undefined) return { errno: pending, exits };
      const b = new Uint8Array(4);
      for (let i = 0; i < 4; i++) b[i] = Number((eax >> BigInt(8 * i)) & 0xffn);
      exits.push({ reason: 'HYPERCALL_RET', bytes: b });
      e = exitOut(0x11, b);
      if (e !== undefined) return { errno: e, exits };
    }
  }
  run.writeUint(RUN.exit_reason, 4, BigInt(KVM_EXIT_HLT));
  leave();
  exits.push({ reason: 'HLT' });
  return { exits };
}
