/**
 * kvm_amd's registration (`svm_init()` → `kvm_x86_vendor_init(&svm_init_ops)`): the SVM
 * `kvm_x86_ops`, SEV, SEV-ES and SNP included (svm/sev.c is part of kvm_amd), and the PSP driver
 * under it (drivers/crypto/ccp: the SNP firmware and the RMP, per host, and /dev/sev). See
 * core/assemble.ts.
 */
import type { KernelModule } from '../modules.js';
import { SevSnpPlatform } from '../../../platform/sev_snp/platform.js';
import { SVM_OPS } from './svm.js';
import { sevSetVcpuVmsa } from './sev_snp.js';
import { SevDevFile } from './sev_dev.js';

export const KVM_AMD: KernelModule = {
  name: 'kvm_amd',
  x86Vendor: SVM_OPS,
  host: { sevSetVcpuVmsa },
};

/**
 * The PSP (ccp): a `sev-snp` host gets its own RMP and SNP firmware, and /dev/sev; the firmware
 * measures with `sha384` (default: core/base/crypto's SHA-384).
 */
export function ccpSev(sha384?: (bytes: Uint8Array) => Uint8Array): KernelModule {
  return {
    name: 'ccp',
    platform: { name: 'sev-snp', create: () => new SevSnpPlatform(sha384) },
    host: { openSevDevice: (ino) => new SevDevFile(ino) },
  };
}

export const CCP_SEV: KernelModule = ccpSev();
