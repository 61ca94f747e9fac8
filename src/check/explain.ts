/**
 * Describing the model state around a violation (its `focus`), for "state before and after".
 */
import type { Host } from '../core/host.js';
import { snapshot, type Snapshot } from '../core/inspect.js';
import type { Focus } from '../core/invariants/index.js';
import { buildOwnership, describeOwner } from '../core/invariants/ownership.js';
import { hostBacking } from '../core/invariants/stage2_coherent.js';
import { ZERO_PFN } from '../core/base/units.js';
import { GUEST_MEMFD_FLAG_INIT_SHARED } from '../core/base/uapi.js';
import type { ObjectNames } from './names.js';
import { pkvmHistoryText, pkvmPageState } from '../core/invariants/pkvm_common.js';

const hx = (n: number | bigint): string => '0x' + n.toString(16);

/**
 * The state of the objects a violation focuses on, one line each. With `names`, objects the
 * trace file named are called by their handle names (`gmem (guest_memfd #105)`).
 */
export function describeFocus(h: Host, f: Focus, names?: ObjectNames): string[] {
  const out = focusLines(h, f);
  return names === undefined ? out : out.map((l) => names.rename(l));
}

function focusLines(h: Host, f: Focus): string[] {
  const out: string[] = [];
  // The objects' summaries come from the inspection snapshot; per-gfn details (pfns, which the
  // snapshot leaves out) still read the model.
  let snap: Snapshot | undefined;
  const snapped = (): Snapshot => (snap ??= snapshot(h));
  const vm = f.vm === undefined ? undefined : h.allVms.find((v) => v.index === f.vm);
  if (vm !== undefined) {
    // struct kvm: users_count, its memslots (every address space), its live kvm_gmem files.
    const sv = snapped().vms.find((v) => v.index === vm.index)!;
    const slots = sv.addressSpaces.reduce((n, as) => n + as.memslots.length, 0);
    const files = snapped().gmemFiles.filter((g) => g.vm === vm.index).length;
    out.push(
      `vm${sv.index}: ${sv.typeName}${sv.dead ? ' (destroyed)' : ''}, ${sv.refs} reference(s), ${slots} memslot(s), ${files} live guest_memfd file(s)`,
    );
    if (f.gfn !== undefined) {
      const g = f.gfn;
      const slot = vm.slotsByGfn[0]?.get(g);
      const attr = vm.attrs.get(g);
      out.push(
        `  gfn ${hx(g)}: attribute ${attr === undefined ? 'shared' : attr === 8 ? 'PRIVATE' : attr}`,
      );
      if (slot === undefined) out.push(`  gfn ${hx(g)}: no memslot`);
      else {
        const gm = slot.gmem;
        out.push(
          `  memslot ${slot.id}: gfn [${hx(slot.baseGfn)}, ${hx(slot.endGfn)}) flags ${slot.flags}, userspace_addr ${hx(slot.userspaceAddr)}` +
            (gm === null
              ? ''
              : `, guest_memfd ${gm.file === null ? '(released)' : `#${gm.file.ino}${gm.file.released ? ' (released!)' : ''}`} from index ${hx(gm.pgoff)}${slot.gmemOnly ? ', gmem-only' : ''}`),
        );
        if (gm !== null && gm.file !== null) {
          const idx = g - slot.baseGfn + gm.pgoff;
          const p = gm.file.pages.get(idx);
          out.push(
            `  guest_memfd #${gm.file.ino} index ${hx(idx)}: ${p === undefined ? 'absent' : `${p.state}, pfn ${hx(p.base)}`}`,
          );
        } else if (gm === null) {
          const hv = slot.userspaceHvpn + (g - slot.baseGfn);
          const b = hostBacking(h, hv, hv + 1, vm.guestMm ?? h.mm)[0];
          out.push(
            `  host page ${hx(hv)}: ${b?.pfn === undefined ? 'no page' : `pfn ${hx(b.pfn)}`}`,
          );
        }
      }
      const m = vm.stage2[0]?.entryAt(g);
      if (m === undefined) out.push(`  stage-2 at gfn ${hx(g)}: not mapped`);
      else {
        const v = vm.stage2[0]!.get(g)!;
        out.push(
          `  stage-2 at gfn ${hx(g)}: ${v.level} ${v.private ? 'private' : 'shared'} ${v.writable ? 'rw' : 'ro'} from ${v.source}, pfn ${v.base === ZERO_PFN ? 'zero page' : hx(v.base)}${h.frames.isFree(v.base) && v.base !== ZERO_PFN ? ' (FREE)' : ''}`,
        );
      }
    }
  }
  if (f.ino !== undefined) {
    const file = h.allVms.flatMap((v) => [...v.gmemFiles]).find((x) => x.ino === f.ino);
    if (file === undefined) out.push(`guest_memfd #${f.ino}: released`);
    else {
      // struct kvm_gmem and its inode: i_size, flags, page cache, references.
      const g = snapped().gmemFiles.find((x) => x.ino === file.ino)!;
      const initShared = (g.flags & Number(GUEST_MEMFD_FLAG_INIT_SHARED)) !== 0;
      out.push(
        `guest_memfd #${g.ino}: size ${g.size}, flags ${g.flags}${initShared ? ' (INIT_SHARED)' : ' (private memory)'}, ${g.counts.present} page(s), fd refs ${g.fdRefs}, mapped pages ${g.mappedPages}`,
      );
      if (f.index !== undefined) {
        const p = file.pages.get(f.index);
        const b = file.bindings.get(f.index);
        out.push(
          `  index ${hx(f.index)}: ${p === undefined ? 'absent' : `${p.state}, pfn ${hx(p.base)}`}; bound to ${b === undefined ? 'no memslot' : `memslot ${b.id}`}`,
        );
      }
    }
  }
  if (f.pfn !== undefined && f.pfn !== 0) {
    const own = buildOwnership(h).owners.get(f.pfn);
    out.push(
      `pfn ${hx(f.pfn)}: ${h.frames.isFree(f.pfn) ? 'free' : 'allocated'}, owner ${own === undefined ? 'none' : describeOwner(own)}${h.frames.hasData(f.pfn as never) ? ', holds data' : ', all zeros'}`,
    );
    // pKVM: the page's state at EL2 and its call history (the oracle's input).
    const hyp = h.platform.pkvm?.hyp;
    if (hyp !== undefined) {
      out.push(`pKVM pfn ${hx(f.pfn)}: ${pkvmPageState(hyp, f.pfn)}`);
      out.push(`  history: ${pkvmHistoryText(hyp, f.pfn)}`);
    }
  }
  return out;
}
