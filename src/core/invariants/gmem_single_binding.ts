/**
 * gmem-single-binding: a guest_memfd index is bound to at most one memslot, and bindings and
 * memslots agree.
 */
import { MAX_KEY } from '../base/ranges/range_map.js';
import type { GmemFile, Memslot, Vm } from '../kvm/objects.js';
import {
  checkEveryVm,
  hx,
  NO_VIOLATIONS,
  type CheckState,
  type Invariant,
  type PerVm,
  type Violation,
} from './types.js';

/** The VM and file `boundElsewhere` looks at, and what it found (no closure per scan). */
let scanVm: Vm | undefined;
let scanFile: GmemFile | undefined;
let scanBad = false;

/** A binding naming a memslot that is gone or does not point back at the file: stop. */
function boundElsewhere(_start: number, _end: number, slot: Memslot): boolean {
  if (scanVm!.slots.get(slot.key) === slot && slot.gmem !== null && slot.gmem.file === scanFile)
    return true;
  scanBad = true;
  return false;
}

const perVm: PerVm = {
  vms: 'live',
  mappings: false,
  vm(vm: Vm, _s: CheckState): Violation[] {
    let out: Violation[] | undefined;
    for (const f of vm.gmemFiles) {
      if (f.bindings.size === 0) continue;
      // Usually every binding is fine: look without collecting first.
      scanVm = vm;
      scanFile = f;
      scanBad = false;
      f.bindings.forEachIn(0, MAX_KEY, boundElsewhere);
      scanVm = scanFile = undefined;
      if (!scanBad) continue;
      f.bindings.forEachIn(0, MAX_KEY, (start, _end, slot) => {
        const live = vm.slots.get(slot.key) === slot;
        if (!live || slot.gmem === null || slot.gmem.file !== f)
          (out ??= []).push({
            invariant: 'gmem-single-binding',
            object: `guest_memfd #${f.ino} index ${hx(start)}`,
            message: `index bound to memslot ${slot.id}, which ${live ? 'no longer points at this file' : 'no longer exists'}`,
            focus: { ino: f.ino, index: start, vm: vm.index },
          });
      });
    }
    for (const slot of vm.slots.values()) {
      const g = slot.gmem;
      if (g === null || g.file === null || g.file.released) continue;
      // One binding piece over exactly [pgoff, pgoff + npages): the stored entry at pgoff
      // reaches the end.
      const at = slot.npages > 0 ? g.file.bindings.entryAt(g.pgoff) : undefined;
      if (at !== undefined && at.end >= g.pgoff + slot.npages && at.value === slot) continue;
      const pieces = g.file.bindings.piecesIn(g.pgoff, g.pgoff + slot.npages);
      const other = pieces.find((p) => p.value !== slot);
      (out ??= []).push({
        invariant: 'gmem-single-binding',
        object: `vm${vm.index} memslot ${slot.id}`,
        message:
          other !== undefined
            ? `guest_memfd #${g.file.ino} index ${hx(other.start)} of memslot ${slot.id} is bound to memslot ${other.value.id} too (overlapping bindings)`
            : `memslot ${slot.id} has guest_memfd indexes without a binding`,
        focus: { vm: vm.index, slot: slot.id, ino: g.file.ino, index: other?.start ?? g.pgoff },
      });
    }
    return out ?? NO_VIOLATIONS;
  },
};

export const gmemSingleBinding: Invariant = {
  name: 'gmem-single-binding',
  title: 'A guest_memfd index is bound to at most one memslot',
  statement:
    'Every index of a guest_memfd file is bound to at most one memslot, each live GUEST_MEMFD memslot owns exactly the indexes [guest_memfd_offset, +npages) of its file, and every binding names a memslot that exists and points back at the file. Two gfns can therefore never share a private page.',
  mechanism:
    'kvm_gmem_bind() refuses a range that already has a binding (xa_find over gmem->bindings → EINVAL in 6.18, EEXIST later) and stores the slot for every index; kvm_gmem_unbind() and kvm_gmem_release() clear them.',
  origin:
    'kernel-uapi.md §1.3 ("a given index is bound to at most one memslot"), §2.5 step 13e; test_add_overlapping_private_memory_regions.',
  perVm,
  check(s) {
    return checkEveryVm(perVm, s);
  },
};
