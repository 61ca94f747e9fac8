/**
 * Every module the model has, loaded (core/assemble.ts): the registry a `Host` gets unless a
 * command needs fewer (`gmemlab measure snp` / `measure tdx` pass their vendor's alone). A new
 * vendor module or platform registers here.
 */
import { kernelParts } from './arch/x86/modules.js';
import { KVM_INTEL, TDX_HOST } from './arch/x86/vmx/parts.js';
import { CCP_SEV, KVM_AMD } from './arch/x86/svm/parts.js';
import { KVM_PVM } from './arch/x86/pvm/parts.js';
import { KVM_ARM64, PKVM_HYP } from './arch/arm64/parts.js';

export const ALL_PARTS = kernelParts(
  KVM_INTEL,
  KVM_AMD,
  KVM_PVM,
  CCP_SEV,
  TDX_HOST,
  KVM_ARM64,
  PKVM_HYP,
);
