/**
 * The pKVM platform: an arm64 host booted in protected mode, whose EL2 hypervisor (`PkvmHyp`)
 * owns the page-ownership state of every physical frame, over the host's frame store (the
 * hypervisor zeroes the pages it reclaims and poisons).
 *
 * **Host access.** Every host access to a frame goes through the host stage-2. A valid entry lets
 * it through; an empty one faults to EL2, whose `handle_host_mem_abort()` identity maps the block
 * around it (the lazily built map: a cache of what the host owns, not an ownership change); an
 * entry annotated with another owner (the hypervisor, a guest the page was donated to) is -EPERM,
 * and the later tree injects a stage-2 abort into the host (`host_inject_mem_abort()`; v6.18
 * panics the hypervisor instead: `config.hostAbort`, which the model reports as a host SIGSEGV too
 * and leaves visible in the hypervisor's result). The host kernel's arch/arm64/mm/fault.c of that
 * tree recognises the injected abort (`is_pkvm_stage2_abort()`: ESR with S1PTW set) and, for a user
 * access, sends the task SIGSEGV (SEGV_ACCERR, "stage-2 fault"); a kernel access goes to
 * `no_context`, where a uaccess is fixed up (-EFAULT) — 'kvm-uaccess' is reported as the same
 * refusal. `get_user_pages()` pins without touching the page's contents, so 'gup' always passes
 * (KVM decides at the hypercall whether the page may be given to a guest).
 */
import type { FrameStore } from '../../base/frames.js';
import type { Pfn } from '../../base/units.js';
import type { HostAccessPath, Platform } from '../platform.js';
import { PkvmHyp, type PkvmHypConfig } from './hyp.js';

export class PkvmPlatform implements Platform {
  readonly name = 'pkvm';
  readonly guardsHostAccess = true;
  readonly pkvm: { readonly hyp: PkvmHyp };

  constructor(frames: FrameStore, config: Partial<PkvmHypConfig> = {}) {
    // Every frame the host's store hands out is memory (one hyp_memory region over the PA space).
    this.pkvm = { hyp: new PkvmHyp(frames, { memory: [{ base: 0, pages: 2 ** 36 }], ...config }) };
  }

  hostAccess(pfn: Pfn, _write: boolean, path: HostAccessPath): 'SIGBUS' | 'SIGSEGV' | undefined {
    if (path === 'gup') return undefined;
    return this.pkvm.hyp.hostAccess(pfn) === 'ok' ? undefined : 'SIGSEGV';
  }
}
