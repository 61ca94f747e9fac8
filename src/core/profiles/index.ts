/**
 * The profile registry. Adding a kernel (a new build, a platform VM type, an in-flight design) is
 * adding its facts and identity (a `NamedFacts`) to the list here, which composes it
 * (`composeProfile`, `composeArm64Profile`) when first asked for; callers ask for a profile by
 * name, or load a profile file (`profile_file.ts`) that `gmemlab probe --save` wrote.
 */
import {
  LINUX_6_18,
  LINUX_6_18_PVM,
  LINUX_6_18_PVM_NOGMEM,
  LINUX_6_18_SNP,
  LINUX_6_18_TDX,
} from './linux_6_18.js';
import { composeArm64Profile, LINUX_6_18_ARM64_PKVM } from './arm64.js';
import { composeProfile, type NamedFacts } from './compose.js';
import {
  LINUX_NEXT_GMEM,
  LINUX_NEXT_GMEM_SNP,
  LINUX_NEXT_GMEM_TDX,
  LINUX_NEXT_GMEM_VMATTR,
} from './linux_next_gmem.js';
import {
  DESIGN_2020_PROTNONE_FOLLKVM,
  DESIGN_2020_SEPARATE_MM,
  DESIGN_2023_RESTRICTEDMEM,
  DESIGN_2024_SHMEM_EXCLUSIVE_PIN,
} from './designs.js';
import type { NeedableFact } from './facts.js';
import type { KernelProfile } from './profile.js';

/** The named profiles, in this order; each is composed once, when first asked for. */
const NAMED: readonly NamedFacts[] = [
  LINUX_6_18,
  LINUX_6_18_PVM,
  LINUX_6_18_PVM_NOGMEM,
  LINUX_6_18_SNP,
  LINUX_6_18_TDX,
  LINUX_6_18_ARM64_PKVM,
  LINUX_NEXT_GMEM,
  LINUX_NEXT_GMEM_VMATTR,
  LINUX_NEXT_GMEM_SNP,
  LINUX_NEXT_GMEM_TDX,
  // The historical private-memory designs (designs.ts), last: no live kernel matches them.
  DESIGN_2020_PROTNONE_FOLLKVM,
  DESIGN_2020_SEPARATE_MM,
  DESIGN_2023_RESTRICTEDMEM,
  DESIGN_2024_SHMEM_EXCLUSIVE_PIN,
];

const composed = new Map<string, KernelProfile>();

/**
 * The profile a command uses when it is given none and there is no usable /dev/kvm (or the live
 * kernel matches no profile): upstream x86 with the TDP MMU.
 */
export const DEFAULT_PROFILE = 'linux-6.18';

/**
 * Named profiles whose kernels differ in one fact only: a conformance recording made on one side
 * applies to the other when the case does not depend on that fact.
 */
export const PROFILE_FLIPS: ReadonlyArray<{
  readonly fact: NeedableFact;
  readonly between: readonly [string, string];
}> = [{ fact: 'guest_memfd', between: ['linux-6.18-pvm', 'linux-6.18-pvm-nogmem'] }];

/** The profile the conformance suite's `NAME.expected.jsonl` files were recorded on. */
export const REFERENCE_PROFILE = 'linux-6.18-pvm';

/** The named profile `name` (the same object on every call), or undefined. */
export function getProfile(name: string): KernelProfile | undefined {
  let p = composed.get(name);
  if (p === undefined) {
    const n = NAMED.find((x) => x.id.name === name);
    if (n === undefined) return undefined;
    p =
      n.facts.kvmModule === 'kvm_arm64'
        ? composeArm64Profile(n.id, n.facts)
        : composeProfile(n.id, n.facts);
    composed.set(name, p);
  }
  return p;
}

export function profileNames(): string[] {
  return NAMED.map((n) => n.id.name);
}

/** Every named profile, in the registry's order. */
export function allProfiles(): readonly KernelProfile[] {
  return NAMED.map((n) => getProfile(n.id.name)!);
}

export type { KernelProfile, VmTypeSpec } from './profile.js';
export type { KernelFacts, HostFacts, KernelConfig, NeedableFact } from './facts.js';
