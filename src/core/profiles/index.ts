/**
 * The profile registry. Adding a kernel (a new build, a platform VM type, an in-flight design) is
 * adding its facts and a `composeProfile` call here; callers ask for a profile by name, or load a
 * profile file (`profile_file.ts`) that `gmemlab probe --save` wrote.
 */
import {
  LINUX_6_18,
  LINUX_6_18_PVM,
  LINUX_6_18_PVM_NOGMEM,
  LINUX_6_18_SNP,
  LINUX_6_18_TDX,
} from './linux_6_18.js';
import { LINUX_6_18_ARM64_PKVM } from './arm64.js';
import type { NeedableFact } from './facts.js';
import type { KernelProfile } from './profile.js';

export const PROFILES: readonly KernelProfile[] = [
  LINUX_6_18,
  LINUX_6_18_PVM,
  LINUX_6_18_PVM_NOGMEM,
  LINUX_6_18_SNP,
  LINUX_6_18_TDX,
  LINUX_6_18_ARM64_PKVM,
];

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

export function getProfile(name: string): KernelProfile | undefined {
  return PROFILES.find((p) => p.name === name);
}

export function profileNames(): string[] {
  return PROFILES.map((p) => p.name);
}

export type { KernelProfile, VmTypeSpec } from './profile.js';
export type { KernelFacts, HostFacts, KernelConfig, NeedableFact } from './facts.js';
