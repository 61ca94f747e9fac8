/** The PVM module's registration: its `kvm_x86_ops` (kvm_pvm). See core/assemble.ts. */
import type { KernelModule } from '../modules.js';
import { PVM_OPS } from './pvm.js';

export const KVM_PVM: KernelModule = { name: 'kvm_pvm', x86Vendor: PVM_OPS };
