/**
 * kvm_intel's registration (`vmx_init()` → `kvm_x86_vendor_init(&vt_init_ops)`): the VMX
 * `kvm_x86_ops`, TDX included (vmx/tdx.c is part of kvm_intel: a TD is a VM type of the VMX
 * module), and the TDX host code under it (arch/x86/virt/vmx/tdx: the TDX module's PAMT, TDs and
 * S-EPT, with the SHA-384 MRTD of platform/tdx/mrtd.ts). See core/assemble.ts.
 */
import type { KernelModule } from '../modules.js';
import { TdxPlatform } from '../../../platform/tdx/platform.js';
import { TdxMrtd, type Sha384Stream } from '../../../platform/tdx/mrtd.js';
import { VMX_OPS } from './main.js';
import { tdxEnableSplitIrqchip } from './tdx.js';

export const KVM_INTEL: KernelModule = {
  name: 'kvm_intel',
  x86Vendor: VMX_OPS,
  host: { tdxEnableSplitIrqchip },
};

/**
 * The TDX host (arch/x86/virt/vmx/tdx): a `tdx` host gets its own TDX module (PAMT, TDs), over
 * the host's frames (PAGE.ADD copies, ACCEPT zeroes, MR.EXTEND reads them), each TD's MRTD
 * running `sha384()` (default: core/base/crypto's SHA-384).
 */
export function tdxHost(sha384?: () => Sha384Stream): KernelModule {
  return {
    name: 'tdx_host',
    platform: {
      name: 'tdx',
      create: (frames) => new TdxPlatform(frames, () => new TdxMrtd(sha384?.())),
    },
  };
}

export const TDX_HOST: KernelModule = tdxHost();
