/**
 * slot-file-live: a memslot never refers to a released guest_memfd.
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
  vms: 'live',
  mappings: false,
  vm(vm: Vm, _s: CheckState): Violation[] {
    let out: Violation[] | undefined;
    for (const slot of vm.slots.values()) {
      const f = slot.gmem?.file;
      if (f !== undefined && f !== null && f.released)
        (out ??= []).push({
          invariant: 'slot-file-live',
          object: `vm${vm.index} memslot ${slot.id}`,
          message: `memslot still points at guest_memfd #${f.ino}, which was released`,
          focus: { vm: vm.index, slot: slot.id, ino: f.ino },
        });
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const slotFileLive: Invariant = {
  name: 'slot-file-live',
  title: 'Memslots never keep a released guest_memfd',
  statement:
    'When the last reference to a guest_memfd file goes, every memslot bound to it forgets the file (slot->gmem.file = NULL), so no later fault can reach the file or its freed memory; the memslot itself stays and faults needing guest_memfd fail with EFAULT and KVM_EXIT_MEMORY_FAULT.',
  mechanism:
    'kvm_gmem_release() clears slot->gmem.file for every binding under slots_lock; kvm_gmem_get_file() uses get_file_active() so a dying file is never returned.',
  origin: 'kernel-uapi.md §2.6; issue #4 mutant "release does not clear the slot\'s file pointer".',
  perVm,
  check(s) {
    return checkEveryVm(perVm, s);
  },
};
