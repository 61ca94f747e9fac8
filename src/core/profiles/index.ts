/**
 * The profile registry. Adding a kernel (a new version, a platform VM type, an in-flight design)
 * is adding a `KernelProfile` value here; callers only ever ask for a profile by name.
 */
import { LINUX_6_18, LINUX_6_18_PVM } from './linux_6_18.js';
import type { KernelProfile } from './profile.js';

export const PROFILES: readonly KernelProfile[] = [LINUX_6_18, LINUX_6_18_PVM];

export const DEFAULT_PROFILE = 'linux-6.18';

export function getProfile(name: string): KernelProfile | undefined {
  return PROFILES.find((p) => p.name === name);
}

export function profileNames(): string[] {
  return PROFILES.map((p) => p.name);
}

export type { KernelProfile, VmTypeSpec } from './profile.js';
