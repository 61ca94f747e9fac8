/**
 * Matching kernel facts with profiles: which named profile describes a kernel (equal kernel facts),
 * and which host facts differ. Pure; `gmemlab probe` and the conformance suite use it.
 */
import { capName } from '../base/cap_names.js';
import { KVM_CAP } from '../base/uapi.js';
import { CAP_TABLE_MAX, type KernelFacts } from './facts.js';
import { allProfiles } from './index.js';
import type { KernelProfile } from './profile.js';

/**
 * Caps whose value is a property of the machine (its CPU), not of the kernel build: the number of
 * CPUs, the TSC deadline timer, the exits the CPU lets a guest disable (MWAIT), the XSAVE area
 * size. A difference in them is a host difference.
 */
export const HOST_CAPS: ReadonlySet<number> = new Set([
  KVM_CAP.KVM_CAP_NR_VCPUS,
  KVM_CAP.KVM_CAP_TSC_DEADLINE_TIMER,
  KVM_CAP.KVM_CAP_X86_DISABLE_EXITS,
  KVM_CAP.KVM_CAP_XSAVE2,
]);

export type FactDifferences = { readonly kernel: string[]; readonly host: string[] };

/** How live facts differ from a profile's: kernel differences decide the match; host ones warn. */
export function compareFacts(p: KernelProfile, f: KernelFacts): FactDifferences {
  const kernel: string[] = [];
  const host: string[] = [];
  const pf = p.facts;
  const say = (out: string[], what: string, live: unknown, prof: unknown): void => {
    if (live !== prof)
      out.push(`${what} is ${String(live)}, profile ${p.name} says ${String(prof)}`);
  };
  say(kernel, 'KVM module', f.kvmModule, pf.kvmModule);
  say(kernel, 'MMU', f.mmu, pf.mmu);
  say(kernel, 'guest_memfd (CONFIG_KVM_GUEST_MEMFD)', f.kconfig.guestMemfd, pf.kconfig.guestMemfd);
  say(
    kernel,
    'memory attributes (CONFIG_KVM_GENERIC_MEMORY_ATTRIBUTES)',
    f.kconfig.genericMemoryAttributes,
    pf.kconfig.genericMemoryAttributes,
  );
  say(
    kernel,
    'SW_PROTECTED VMs (CONFIG_KVM_SW_PROTECTED_VM)',
    f.kconfig.swProtectedVm,
    pf.kconfig.swProtectedVm,
  );
  say(kernel, 'SMM (CONFIG_KVM_SMM)', f.kconfig.smm, pf.kconfig.smm);
  say(
    kernel,
    'per-guest_memfd memory attributes (the in-place conversion series)',
    f.kconfig.gmemMemoryAttributes ?? false,
    pf.kconfig.gmemMemoryAttributes ?? false,
  );
  say(
    kernel,
    'kvm.vm_memory_attributes',
    f.kvmParams?.vmMemoryAttributes,
    pf.kvmParams?.vmMemoryAttributes,
  );
  for (const [where, live, prof] of [
    ['/dev/kvm', f.caps.system, pf.caps.system],
    ['a DEFAULT VM', f.caps.vm, pf.caps.vm],
  ] as const)
    for (let id = 0; id <= CAP_TABLE_MAX; id++) {
      const a = live[id] ?? 0;
      const b = prof[id] ?? 0;
      if (a !== b)
        (HOST_CAPS.has(id) ? host : kernel).push(
          `${capName(id)} on ${where} is ${a}, profile ${p.name} says ${b}`,
        );
    }
  say(host, 'THP mode', f.host.thp, pf.host.thp);
  say(host, 'RAM pages', f.host.ramPages, pf.host.ramPages);
  say(host, 'swap pages', f.host.swapPages, pf.host.swapPages);
  say(host, 'vm.max_map_count', f.host.maxMapCount, pf.host.maxMapCount);
  say(host, 'huge pages in the pool', f.host.hugePages, pf.host.hugePages);
  say(host, 'PKU (execute-only mappings unreadable)', f.host.pku, pf.host.pku);
  say(host, 'KSM', f.host.ksm, pf.host.ksm);
  say(host, 'ASLR', f.host.aslr, pf.host.aslr);
  return { kernel, host };
}

export type ProfileMatch = {
  /** The first named profile whose kernel facts equal the live ones. */
  readonly profile?: KernelProfile;
  /** Host facts of this machine that differ from the matching profile's. */
  readonly hostDifferences: string[];
  /** Per non-matching profile: its kernel differences. */
  readonly reasons: Map<string, string[]>;
};

export function matchProfile(
  f: KernelFacts,
  profiles: readonly KernelProfile[] = allProfiles(),
): ProfileMatch {
  const reasons = new Map<string, string[]>();
  for (const p of profiles) {
    // A design profile models a series that never landed: no live kernel is one.
    if (p.design !== undefined) continue;
    const d = compareFacts(p, f);
    if (d.kernel.length === 0) return { profile: p, hostDifferences: d.host, reasons };
    reasons.set(p.name, d.kernel);
  }
  return { reasons, hostDifferences: [] };
}
