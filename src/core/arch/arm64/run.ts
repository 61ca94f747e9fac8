/**
 * KVM_RUN on arm64 (`kvm_arch_vcpu_ioctl_run()`, arch/arm64/kvm/arm.c) with the trace's guest
 * program, loads and stores only: the vCPU must have been initialised (KVM_ARM_VCPU_INIT, else
 * -ENOEXEC) and finalized (SVE without KVM_ARM_VCPU_FINALIZE: -EPERM, `kvm_vcpu_first_run_init()`);
 * on pKVM the first run creates the hypervisor's VM and vCPU (`pkvm_create_hyp_vm()`,
 * `pkvm_create_hyp_vcpu()`). Each access takes the stage-2 path of mmu.ts: a mapped page is
 * read or written, an MMIO access exits (KVM_EXIT_MMIO ends the run), an error fails the run
 * (with KVM_EXIT_MEMORY_FAULT first for guest_memfd's). Hypercalls (HVC: PSCI, the pKVM vendor
 * calls) and the x86-only steps are not modelled on arm64 yet.
 */
import type { KernelCtx } from '../../ctx.js';
import { NotModelled } from '../../base/not_modelled.js';
import { asGfn, PAGE_SIZE, type Pfn } from '../../base/units.js';
import type { Vcpu } from '../../kvm/objects.js';
import type { GuestProgramStep, RunExit, RunResult } from '../x86/kvm_run.js';
import { kvmHandleGuestAbort } from './mmu.js';
import { pkvmCreateHypVcpu, pkvmHyp } from './pkvm.js';
import { arm64State } from './state.js';

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
  for (const step of steps) {
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
