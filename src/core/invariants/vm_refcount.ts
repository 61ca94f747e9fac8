/**
 * vm-refcount: the VM lives exactly as long as something references it.
 */
import type { Vm } from '../kvm/objects.js';
import {
  checkEveryVm,
  NO_VIOLATIONS,
  type CheckState,
  type Invariant,
  type PerVm,
  type Violation,
} from './types.js';

const perVm: PerVm = {
  vms: 'all',
  mappings: false,
  vm(vm: Vm, _s: CheckState): Violation[] {
    let expected = vm.file !== undefined && !vm.file.released ? 1 : 0;
    for (const vc of vm.vcpus.values()) if (vc.file !== undefined && !vc.file.released) expected++;
    expected += vm.gmemFiles.size;
    if (vm.dead && expected > 0)
      return [
        {
          invariant: 'vm-refcount',
          object: `vm${vm.index}`,
          message: `VM destroyed while ${expected} reference(s) remain (VM fd, vCPU fds or guest_memfd files)`,
          focus: { vm: vm.index },
        },
      ];
    if (!vm.dead && vm.refs !== expected)
      return [
        {
          invariant: 'vm-refcount',
          object: `vm${vm.index}`,
          message: `reference count ${vm.refs}, but ${expected} references exist`,
          focus: { vm: vm.index },
        },
      ];
    return NO_VIOLATIONS;
  },
};

export const vmRefcount: Invariant = {
  name: 'vm-refcount',
  title: 'References keep the VM alive',
  statement:
    'A VM is alive while its VM fd, any vCPU fd, or any guest_memfd file (fd or mapping) references it, and is destroyed when the last one goes: the VM reference count always equals the number of those references, and a live guest_memfd never belongs to a destroyed VM.',
  mechanism:
    'kvm_get_kvm()/kvm_put_kvm(): __kvm_gmem_create() and create_vcpu_fd() take references, kvm_gmem_release() and kvm_vcpu_release() drop them; "the file pins KVM, not the other way round" (kvm_gmem_bind).',
  origin:
    'kernel-uapi.md §1.1, §2.6; private_mem_conversions_test ("after the VM is freed, PUNCH_HOLE and re-allocate both succeed").',
  perVm,
  check(s) {
    return checkEveryVm(perVm, s);
  },
};
