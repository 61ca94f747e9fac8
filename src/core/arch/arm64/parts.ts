/**
 * arm64's registrations (core/assemble.ts): KVM built into the kernel ('kvm_arm64': the arch ops of
 * arch/arm64/, made for each host's platform), and the pKVM hypervisor ('pkvm_hyp': the EL2
 * page-ownership state machine of platform/pkvm/, one per host over its frames), which a host
 * booted with `kvm-arm.mode=protected` runs under it.
 */
import type { KernelModule } from '../x86/modules.js';
import { PkvmPlatform } from '../../platform/pkvm/platform.js';
import { arm64ArchOps } from './ops.js';

export const KVM_ARM64: KernelModule = {
  name: 'kvm_arm64',
  arch: { name: 'arm64', create: arm64ArchOps },
};

export const PKVM_HYP: KernelModule = {
  name: 'pkvm_hyp',
  platform: { name: 'pkvm', create: (frames) => new PkvmPlatform(frames) },
};
