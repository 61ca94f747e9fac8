/**
 * KVM_RUN on arm64 (`kvm_arch_vcpu_ioctl_run()`, arch/arm64/kvm/arm.c) with the trace's guest
 * program, loads and stores only: the vCPU must have been initialised (KVM_ARM_VCPU_INIT, else
 * -ENOEXEC) and finalized (SVE without KVM_ARM_VCPU_FINALIZE: -EPERM, `kvm_vcpu_first_run_init()`);
 * on pKVM the first run creates the hypervisor's VM and vCPU (`pkvm_create_hyp_vm()`,
 * `pkvm_create_hyp_vcpu()`). Each access takes the stage-2 path of mmu.ts: a mapped page is
 * read or written, an MMIO access exits (KVM_EXIT_MMIO ends the run; the trace's plain loads and
 * stores always have a valid syndrome, so `io_mem_abort()`'s -ENOSYS / KVM_EXIT_ARM_NISV for one
 * without does not arise), an error fails the run (with KVM_EXIT_MEMORY_FAULT first for
 * guest_memfd's), and an access past the IPA space is an exception KVM injects into the guest
 * without an exit, which the model refuses (NotModelled; see `injected()`).
 *
 * A `hypercall` step is an HVC #0 with x0 = `nr` (the SMCCC function id) and x1..x3 = `args`; the
 * guest's x0 afterwards is reported as a HYPERCALL_RET exit (8 bytes, little-endian). On pKVM the
 * hypervisor sees it first (`kvm_handle_pvm_hvc64()`, platform/pkvm/hyp.ts): a protected guest's
 * HYP_MEMINFO, MEM_SHARE and MEM_UNSHARE are handled at EL2 (a MEM_SHARE of a gfn with no page
 * exits to the host as a data abort at that gfn — the host's fault path donates the page — and the
 * guest retries the call); a successful share or unshare also exits to the host, which resumes
 * the guest without telling the VMM [the model's reading: the later tree's host handling of that
 * exit is not modelled]; SMCCC_VERSION, the KVM vendor UID and KVM_FEATURES (with the pKVM
 * bits) are also answered at EL2 for a protected guest. Every other call (and every call of a
 * non-protected VM, or without pKVM) reaches the host's `kvm_smccc_call_handler()`
 * (hypercalls.ts: SMCCC, vendor and PSCI answers, or NotModelled where the answer needs state the
 * model lacks); a protected guest's PSCI calls are refused (EL2's in the pKVM trees). The x86-only
 * steps are refused (NotModelled).
 */
import type { KernelCtx } from '../../ctx.js';
import { NotModelled } from '../../base/not_modelled.js';
import { asGfn, PAGE_SIZE, type Pfn } from '../../base/units.js';
import type { Vcpu } from '../../kvm/objects.js';
import type { GuestProgramStep, RunExit, RunResult } from '../x86/kvm_run.js';
import { kvmHandleGuestAbort } from './mmu.js';
import { pkvmCreateHypVcpu, pkvmHyp } from './pkvm.js';
import { arm64State } from './state.js';
import type { Errno } from '../../base/errno.js';
import { SMCCC_RET_NOT_SUPPORTED } from '../../platform/pkvm/hyp.js';
import { isPsciCall, kvmSmcccCallHandler } from './hypercalls.js';

/** The guest's x0 after an HVC, as the HYPERCALL_RET exit reports it. */
function x0Exit(x0: bigint, exits: RunExit[]): void {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, x0), true);
  exits.push({ reason: 'HYPERCALL_RET', bytes: b });
}

/**
 * A guest access past the IPA space: KVM injects an exception and re-enters the guest, with no
 * exit and nothing the VMM sees (`kvm_inject_size_fault()`, `kvm_inject_sea()`). What the guest
 * does next is its own exception handler's business, which a trace's guest program does not
 * describe: the model refuses the run rather than guess (not an MMIO exit, as it once said).
 */
function injected(fault: 'size' | 'sea'): NotModelled {
  return new NotModelled(
    `KVM_RUN on arm64: an access past the IPA space; KVM injects ${
      fault === 'size'
        ? 'an address size fault (kvm_inject_size_fault)'
        : 'a synchronous external abort (kvm_inject_sea)'
    } into the guest and re-enters it without an exit: the guest's exception handling is not modelled`,
  );
}

/** An HVC of `vcpu` (see the module comment): undefined, or the errno that ends KVM_RUN. */
function hvc(
  k: KernelCtx,
  vcpu: Vcpu,
  nr: bigint,
  args: readonly bigint[],
  exits: RunExit[],
): Errno | undefined {
  const hyp = pkvmHyp(k);
  const handle = arm64State(k).vm(vcpu.vm).handle;
  const idx = arm64State(k).vcpu(vcpu).hypIdx;
  // The function id is W0 (`smccc_get_function()` is a u32); x1..x3 as the guest left them:
  // full 64-bit registers.
  const func = Number(BigInt.asUintN(32, nr));
  const a = args.map((v) => BigInt.asUintN(64, v));
  const host = (): undefined => {
    // A protected guest's PSCI calls are the hypervisor's in the pKVM trees (pkvm_handle_psci());
    // the mainline form is not in the sources read.
    if (vcpu.vm.spec.arm64?.protected === true && isPsciCall(func))
      throw new NotModelled(
        'HVC on arm64: PSCI of a protected VM (handled at EL2) is not modelled',
      );
    x0Exit(kvmSmcccCallHandler(k, vcpu, func, a[0] ?? 0n), exits);
    return undefined;
  };
  if (hyp === undefined || handle === undefined || idx === undefined) return host();
  let r = hyp.guestHvc(handle, idx, func, a);
  if (r.kind === 'mem-abort') {
    // The host's data abort handling at the gfn (a donation), then the guest's retry.
    const f = kvmHandleGuestAbort(k, vcpu, asGfn(r.gfn), false);
    if (f.kind === 'error') return f.errno;
    if (f.kind === 'mmio') return 'ENOSYS'; // io_mem_abort() without a valid syndrome
    if (f.kind === 'inject') throw injected(f.fault);
    r = hyp.guestHvc(handle, idx, func, a);
  }
  if (r.kind === 'ret') x0Exit(BigInt(r.a0), exits);
  else if (r.kind === 'to-host') return host();
  else if (r.kind === 'mem-abort') x0Exit(BigInt(SMCCC_RET_NOT_SUPPORTED), exits);
  else return 'EINVAL';
  return undefined;
}

export function arm64KvmRun(
  k: KernelCtx,
  vcpu: Vcpu,
  steps: readonly GuestProgramStep[],
): RunResult {
  const s = arm64State(k).vcpu(vcpu);
  const exits: RunExit[] = [];
  if (s.target < 0) return { errno: 'ENOEXEC', exits };
  if (!s.finalized) return { errno: 'EPERM', exits };
  vcpu.runs++;
  const hyp = pkvmHyp(k);
  if (hyp !== undefined) {
    const e = pkvmCreateHypVcpu(k, hyp, vcpu);
    if (e !== undefined) return { errno: e, exits };
  }
  // A vCPU initialised with POWER_OFF is not runnable (`kvm_arch_vcpu_runnable()`): KVM_RUN
  // sleeps in `vcpu_req_sleep()` until a PSCI CPU_ON from another vCPU (not modelled) or a
  // signal, which ends it with -EINTR (the trace's watchdog, as for a spinning guest).
  if (s.poweredOff) return { errno: 'EINTR', exits };
  for (const step of steps) {
    if (step.kind === 'hypercall') {
      const e = hvc(k, vcpu, step.nr, step.args, exits);
      if (e !== undefined) return { errno: e, exits };
      continue;
    }
    if (step.kind !== 'load' && step.kind !== 'store')
      throw new NotModelled(`KVM_RUN on arm64: the ${step.kind} step is not modelled`);
    const write = step.kind === 'store';
    const len = write ? step.bytes.length : step.size;
    const buf = write ? step.bytes : new Uint8Array(len);
    const off = Number(step.gpa % BigInt(PAGE_SIZE));
    if (off + len > PAGE_SIZE)
      throw new NotModelled('KVM_RUN on arm64: an access across a page boundary');
    const gfn = asGfn(Number(step.gpa / BigInt(PAGE_SIZE)));
    const a = kvmHandleGuestAbort(k, vcpu, gfn, write);
    if (a.kind === 'inject') throw injected(a.fault);
    if (a.kind === 'mmio') {
      exits.push({
        reason: 'MMIO',
        gpa: step.gpa,
        len,
        isWrite: write,
        ...(write ? { bytes: buf } : {}),
      });
      return { exits };
    }
    if (a.kind === 'error') {
      if (a.memoryFault)
        exits.push({
          reason: 'MEMORY_FAULT',
          gpa: step.gpa - BigInt(off),
          size: BigInt(PAGE_SIZE),
          flags: 0n,
        });
      return { errno: a.errno, exits };
    }
    const pfn: Pfn = a.pfn;
    if (write) k.frames.write(pfn, off, buf);
    else {
      k.frames.read(pfn, off, buf);
      exits.push({ reason: 'LOAD', gpa: step.gpa, bytes: buf });
    }
  }
  return { exits };
}
