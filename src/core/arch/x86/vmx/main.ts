/**
 * kvm_intel (arch/x86/kvm/vmx/main.c `vt_x86_ops`): VMX with EPT. Guest accesses go through
 * stage-2 (EPT) mappings and take the KVM MMU's fault path. TDX (vmx/tdx.c) plugs in here as the
 * ops' TD branch (`is_td(kvm)`).
 */
import type { KvmX86Ops } from '../x86_ops.js';
import { guestTranslate } from '../mmu.js';

export const VMX_OPS: KvmX86Ops = {
  name: 'kvm_intel',
  guestMemoryAccess: 'stage2',
  translate: guestTranslate,
  vmcall: 'emulate',
};
