/**
 * kvm_amd (arch/x86/kvm/svm/svm.c `svm_x86_ops`): SVM with NPT. Guest accesses go through stage-2
 * (NPT) mappings and take the KVM MMU's fault path. SEV-SNP (svm/sev.c) plugs in here: its
 * `gmem_prepare` / `gmem_invalidate` are RMP updates. With CONFIG_KVM_AMD_SEV (modelled here)
 * `mem_enc_ioctl` is `sev_mem_enc_ioctl` (svm/sev.ts); there is no `vcpu_mem_enc_ioctl`.
 */
import type { KvmX86Ops } from '../x86_ops.js';
import { guestTranslate } from '../mmu.js';
import { sevMemEncIoctl } from './sev.js';

export const SVM_OPS: KvmX86Ops = {
  name: 'kvm_amd',
  guestMemoryAccess: 'stage2',
  translate: guestTranslate,
  vmcall: 'emulate',
  memEncIoctl: sevMemEncIoctl,
};
