/**
 * kvm_amd (arch/x86/kvm/svm/svm.c `svm_x86_ops`): SVM with NPT. Guest accesses go through stage-2
 * (NPT) mappings and take the KVM MMU's fault path. With CONFIG_KVM_AMD_SEV (modelled here)
 * `mem_enc_ioctl` is `sev_mem_enc_ioctl` (svm/sev.ts); there is no `vcpu_mem_enc_ioctl`. SEV-SNP
 * (svm/sev_snp.ts): `gmem_prepare` / `gmem_invalidate` are RMP updates, `gmem_max_mapping_level`
 * reads the RMP (each a no-op for a VM that is not an SNP guest, or a host without SNP), and
 * `vm_destroy` frees the VMs' SEV state.
 */
import type { KvmX86Ops } from '../x86_ops.js';
import { guestTranslate } from '../mmu.js';
import { sevMemEncIoctl } from './sev.js';
import {
  sevGmemInvalidate,
  sevGmemMaxMappingLevel,
  sevGmemPrepare,
  sevVmDestroy,
} from './sev_snp.js';
import { sevSnpGuestOps } from './sev_guest.js';

export const SVM_OPS: KvmX86Ops = {
  name: 'kvm_amd',
  guestMemoryAccess: 'stage2',
  translate: guestTranslate,
  vmcall: 'emulate',
  memEncIoctl: sevMemEncIoctl,
  gmemPrepare: sevGmemPrepare,
  gmemInvalidate: sevGmemInvalidate,
  gmemMaxMappingLevel: sevGmemMaxMappingLevel,
  vmDestroy: sevVmDestroy,
  snpGuest: sevSnpGuestOps,
};
