/**
 * mm/mprotect.c: mprotect(2) (do_mprotect_pkey(), mprotect_fixup() with its commit charging,
 * change_protection() notifying secondary MMUs).
 */
import {
  asHvpn,
  hvaAdd,
  hvaToHvpn,
  hvpnAdd,
  isPageAligned,
  pageAlignUp,
  pageOf,
  type Hva,
  type Hvpn,
} from '../base/units.js';
import { VMA_ACCOUNT, VMA_NORESERVE, type MmStruct, type Vma } from './mm_types.js';
import { OK_VOID, err, type Result } from '../base/result.js';
import {
  PROT_EXEC,
  PROT_GROWSDOWN,
  PROT_GROWSUP,
  PROT_READ,
  PROT_SEM,
  PROT_WRITE,
} from '../base/uapi.js';
import { hasAnonVma } from './rmap.js';
import { hugetlbSplitRefused } from './hugetlb.js';
import { splitThp } from './huge_memory.js';

/**
 * mprotect(2) (do_mprotect_pkey): validate, then change VMAs from `start` while they are
 * contiguous; a hole gives ENOMEM after the VMAs before it were changed.
 */
export function doMprotect(
  mm: MmStruct,
  addr: Hva,
  length: bigint,
  prot: number,
): Result<undefined> {
  const grows = prot & (PROT_GROWSDOWN | PROT_GROWSUP);
  if (grows === (PROT_GROWSDOWN | PROT_GROWSUP))
    return err('EINVAL', 'mprotect: both GROWSDOWN and GROWSUP');
  if (!isPageAligned(addr)) return err('EINVAL', 'mprotect: address not page aligned');
  if (length === 0n) return OK_VOID;
  const rounded = pageAlignUp(length);
  const end = hvaAdd(addr, rounded);
  if (rounded === 0n || end <= addr || end > 0xffff_ffff_ffff_ffffn)
    return err('ENOMEM', 'mprotect: range wraps');
  if (
    (prot & ~(PROT_READ | PROT_WRITE | PROT_EXEC | PROT_SEM | PROT_GROWSDOWN | PROT_GROWSUP)) !==
    0
  )
    return err('EINVAL', 'mprotect: unknown prot bits');
  const newProt = prot & (PROT_READ | PROT_WRITE | PROT_EXEC);
  if (addr >= mm.k.profile.taskSizeMax) return err('ENOMEM', 'mprotect: no VMA');
  let s = hvaToHvpn(addr);
  const e = asHvpn(Math.min(hvaToHvpn(end), pageOf(mm.k.profile.taskSizeMax) + 1));
  // do_mprotect_pkey(): vma_find() takes the first VMA that intersects [start, end).
  let first = mm.vmas.entryAt(s);
  if (first === undefined) {
    const next = mm.vmas.ceilEntry(s);
    if (next !== undefined && next.start < e) first = next;
  }
  if (first === undefined) return err('ENOMEM', 'mprotect: no VMA in range');
  if ((grows & PROT_GROWSDOWN) !== 0) {
    // PROT_GROWSDOWN moves the start to that VMA's start (down into it, or up over a hole
    // before it); only a growsdown VMA accepts it.
    if (!first.value.growsdown)
      return err('EINVAL', 'mprotect: PROT_GROWSDOWN on a non-growsdown VMA');
    s = asHvpn(first.start);
  } else {
    if (first.start > s) return err('ENOMEM', 'mprotect: no VMA at start');
    // x86 has no VM_GROWSUP.
    if ((grows & PROT_GROWSUP) !== 0)
      return err('EINVAL', 'mprotect: PROT_GROWSUP on a non-growsup VMA');
  }
  let cur = s;
  const changes: Array<{ s: Hvpn; e: Hvpn; v: Vma }> = [];
  let result: Result<undefined> = OK_VOID;
  while (cur < e) {
    const ent = mm.vmas.entryAt(cur);
    if (ent === undefined) {
      result = err('ENOMEM', 'mprotect: hole in range');
      break;
    }
    const v = mm.vmas.get(cur)!;
    // VM_MAY* checks: exec on a noexec file mapping → EACCES.
    if ((newProt & PROT_EXEC) !== 0 && !v.mayExec) {
      result = err('EACCES', 'mprotect: PROT_EXEC without VM_MAYEXEC');
      break;
    }
    const pe = asHvpn(Math.min(ent.end, e));
    if (newProt !== v.prot && hugetlbSplitRefused(v, ent, cur, pe)) {
      result = err('EINVAL', 'hugetlb_vm_op_split: not at a huge page boundary');
      break;
    }
    // mprotect_fixup(): making a private mapping writable charges its pages to the commit
    // limit (security_vm_enough_memory_mm, the overcommit heuristic: more than RAM fails, and
    // this VMA and those after it stay unchanged); a write-less anonymous VMA that never got
    // an anon_vma gives its charge back.
    let flags = v.flags;
    if ((newProt & PROT_WRITE) !== 0) {
      if (
        (v.prot & PROT_WRITE) === 0 &&
        !v.shared &&
        (v.flags & (VMA_ACCOUNT | VMA_NORESERVE)) === 0
      ) {
        if (pe - cur > mm.k.profile.hostRamPages) {
          result = err('ENOMEM', 'mprotect_fixup: __vm_enough_memory refuses the charge');
          break;
        }
        flags |= VMA_ACCOUNT;
      }
    } else if ((flags & VMA_ACCOUNT) !== 0 && v.kind === 'anon' && !hasAnonVma(mm, cur))
      flags &= ~VMA_ACCOUNT;
    changes.push({ s: cur, e: pe, v: { ...v, prot: newProt, flags } });
    cur = pe;
  }
  for (const c of changes) {
    const old = mm.vmas.get(c.s)!;
    if (old.prot === c.v.prot && old.flags === c.v.flags) continue;
    // change_protection() notifies secondary MMUs when permissions are reduced.
    if ((old.prot & ~c.v.prot) !== 0) mm.notifiers.invalidateRangeStart(c.s, c.e);
    // A VMA split inside a THP splits its PMD mapping.
    if (c.s % 512 !== 0) splitThp(mm, c.s, hvpnAdd(c.s, 1));
    if (c.e % 512 !== 0) splitThp(mm, hvpnAdd(c.e, -1), c.e);
    mm.vmas.set(c.s, c.e, c.v);
  }
  return result;
}
