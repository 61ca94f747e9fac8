/**
 * tdx-private-owner: a TD's private GPA maps at most one frame, that frame is the TD's own in the
 * PAMT, and KVM's mirror page table agrees with the TDX module's Secure EPT.
 */
import { RangeMap } from '../base/ranges/range_map.js';
import { PT, PT_NAMES } from '../platform/tdx/pamt.js';
import { SEPT_STATE_INFO, pagesAtLevel } from '../platform/tdx/sept.js';
import { mappingsOf } from './stage2_coherent.js';
import { liveTd, tdxModuleOf, TdCache, type LiveTd } from './tdx_common.js';
import type { TdxModule } from '../platform/tdx/module.js';
import {
  checkEveryVm,
  hx,
  NO_VIOLATIONS,
  type CheckState,
  type Invariant,
  type Violation,
} from './types.js';

const NAME = 'tdx-private-owner';
const cache = new TdCache();

/** The key of KVM's `septPages` map (tdx.ts `septKey`). */
const septKey = (level: number, index: number): number => level * 2 ** 40 + index;

function checkTd(m: TdxModule, x: LiveTd, s: CheckState): Violation[] {
  const { vm, t, td } = x;
  const maps = mappingsOf(vm, s);
  const hit = cache.get(m, x, s.mappings === undefined ? undefined : maps);
  if (hit !== undefined) return hit;
  let out: Violation[] | undefined;
  const bad = (gfn: number | undefined, message: string, pfn?: number): void => {
    (out ??= []).push({
      invariant: NAME,
      object: gfn === undefined ? `vm${vm.index} S-EPT` : `vm${vm.index} gfn ${hx(gfn)}`,
      message,
      focus: {
        vm: vm.index,
        ...(gfn === undefined ? {} : { gfn }),
        ...(pfn === undefined ? {} : { pfn }),
      },
    });
  };
  const s2 = vm.stage2[0]!;
  const framesSeen = new RangeMap<number>();
  let nonLeaf = 0;
  // The S-EPT's entries: every leaf maps frames the PAMT gives this TD (PT_REG at the leaf's
  // size), no frame twice, and only where the mirror root has the same private leaf; every
  // non-leaf entry is an S-EPT page of this TD that KVM linked at that level and index.
  for (const r of td.sept.runs()) {
    const inf = SEPT_STATE_INFO[r.state];
    if (!inf.leaf) {
      nonLeaf += r.end - r.start;
      for (let i = r.start; i < r.end; i++) {
        const e = td.sept.entry(r.level, i);
        const gfn = i * pagesAtLevel(r.level);
        const p = m.pamt.get(e.pfn);
        if (p.pt !== PT.EPT || p.owner !== td.tdr)
          bad(
            gfn,
            `the S-EPT's level-${r.level} entry ${r.state} points to frame ${hx(e.pfn)}, which the PAMT says is ${PT_NAMES[p.pt]} of TDR ${hx(p.owner)}, not an S-EPT page of this TD (TDR ${hx(td.tdr)})`,
            e.pfn,
          );
        if (t.septPages.get(septKey(r.level, i)) !== e.pfn)
          bad(
            gfn,
            `the S-EPT's level-${r.level} entry points to S-EPT page ${hx(e.pfn)}, but KVM's mirror root has ${t.septPages.has(septKey(r.level, i)) ? `page ${hx(t.septPages.get(septKey(r.level, i))!)}` : 'no page'} there`,
            e.pfn,
          );
      }
      continue;
    }
    const per = pagesAtLevel(r.level);
    const g0 = r.start * per;
    const n = (r.end - r.start) * per;
    const size = r.level === 1 ? '2M' : '4K';
    if (
      !m.pamt.uniform(
        r.pfn,
        r.pfn + n,
        (p) => p.pt === PT.REG && p.owner === td.tdr && p.size === size,
      )
    ) {
      const p = m.pamt.get(r.pfn);
      bad(
        g0,
        `the S-EPT maps gfn ${hx(g0)} (${r.state}) to frame ${hx(r.pfn)}, which the PAMT says is ${PT_NAMES[p.pt]} of TDR ${hx(p.owner)} at ${p.size}, not a ${size} PT_REG page of this TD (TDR ${hx(td.tdr)})`,
        r.pfn,
      );
    }
    if (framesSeen.anyIn(r.pfn, r.pfn + n)) {
      const other = framesSeen.piecesIn(r.pfn, r.pfn + n)[0]!;
      bad(
        g0,
        `frame ${hx(other.start)} is mapped by the S-EPT at two GPAs (gfn ${hx(g0 + other.start - r.pfn)} and gfn ${hx(other.value)})`,
        other.start,
      );
    } else framesSeen.set(r.pfn, r.pfn + n, g0);
    // The mirror root over the leaf: the same frames, private.
    let cur = g0;
    for (const p of s2.piecesIn(g0, g0 + n)) {
      if (p.start > cur) break;
      const want = r.pfn + (p.start - g0);
      if (!p.value.private || p.value.base !== want) {
        bad(
          p.start,
          `the S-EPT maps gfn ${hx(p.start)} to frame ${hx(want)} (${r.state}) but KVM's ${p.value.private ? 'mirror root maps it to frame ' + hx(p.value.base) : 'stage-2 maps it shared'}: a private GPA with two frames`,
          want,
        );
        cur = -1;
        break;
      }
      cur = p.end;
    }
    if (cur >= 0 && cur < g0 + n)
      bad(
        cur,
        `the S-EPT still maps gfn ${hx(cur)} to frame ${hx(r.pfn + (cur - g0))} (${r.state}), but KVM's mirror root has no leaf there: nothing will remove it`,
        r.pfn + (cur - g0),
      );
  }
  if (nonLeaf !== t.septPages.size)
    bad(
      undefined,
      `KVM's mirror root links ${t.septPages.size} S-EPT page(s), the S-EPT has ${nonLeaf} non-leaf entries`,
    );
  // The mirror root's private leaves: each where the S-EPT maps the same frame, or premapped
  // (before KVM_TDX_FINALIZE_VM, waiting for PAGE.ADD, counted by nr_premapped).
  let mirror = 0;
  let premapped = 0;
  let firstPremap = -1;
  for (const mp of maps) {
    if (mp.as !== 0 || !mp.spte.private) continue;
    mirror += mp.end - mp.start;
    // (Where the S-EPT has a leaf, the loop above compared the frames.)
    let cur = mp.start;
    td.sept.leafPiecesIn(mp.start, mp.end, (ps, pe) => {
      if (ps > cur) {
        premapped += ps - cur;
        if (firstPremap < 0) firstPremap = cur;
      }
      cur = pe;
    });
    if (cur < mp.end) {
      premapped += mp.end - cur;
      if (firstPremap < 0) firstPremap = cur;
    }
  }
  if (premapped > 0 && t.state === 'TD_STATE_RUNNABLE')
    bad(
      firstPremap,
      `the TD is RUNNABLE but ${premapped} private leaf/leaves of KVM's mirror root (from gfn ${hx(firstPremap)}) have no S-EPT entry: premapped pages FINALIZE should have waited for`,
    );
  if (premapped !== t.nrPremapped)
    bad(
      premapped > 0 ? firstPremap : undefined,
      `nr_premapped is ${t.nrPremapped} but ${premapped} private leaf/leaves of KVM's mirror root have no S-EPT entry`,
    );
  if (mirror !== t.leaves.size)
    bad(
      undefined,
      `KVM's mirror root has ${mirror} private leaves but its record of present leaves (which teardown zaps) has ${t.leaves.size}`,
    );
  const res = out ?? NO_VIOLATIONS;
  cache.set(m, x, s.mappings === undefined ? undefined : maps, res);
  return res;
}

export const tdxPrivateOwner: Invariant = {
  name: NAME,
  title: "A TD's private GPA maps one frame, the TD's own, and KVM's mirror agrees with the S-EPT",
  statement:
    "For every TD (from KVM_TDX_INIT_VM until its keys are released at teardown): every leaf of the TDX module's Secure EPT maps frames the PAMT records as PT_REG pages of this TD (owner = its TDR, at the leaf's size), no frame is mapped at two GPAs, and KVM's mirror root has a private leaf to the same frame at that GPA; every private leaf of the mirror root is either the S-EPT's leaf to the same frame or, only before KVM_TDX_FINALIZE_VM, a premapped leaf waiting for TDH.MEM.PAGE.ADD, and there are exactly nr_premapped of those; every non-leaf S-EPT entry is a PT_EPT page of this TD that KVM linked at that level and index, and KVM's record of present leaves (which teardown zaps) counts the mirror root's. So a private GPA never reaches two frames (one in KVM's view, another in the TD's), a TD never maps a frame it does not own, and KVM can always zap what the S-EPT maps.",
  mechanism:
    "tdx_sept_link_private_spt() (TDH.MEM.SEPT.ADD of the page the TDP MMU allocated for the mirror level), tdx_sept_set_private_spte() (TDH.MEM.PAGE.AUG of the guest_memfd pfn the fault resolved, or a premap counted in nr_premapped before finalize), tdx_gmem_post_populate() (TDH.MEM.PAGE.ADD of the guest_memfd pfn at the GPA it just premapped), tdx_sept_remove_private_spte() for every mirror leaf the TDP MMU zaps, tdx_td_finalize() refusing while nr_premapped != 0 (arch/x86/kvm/vmx/tdx.c v6.18); the module's PAMT and S-EPT checks in TDH.MEM.PAGE.ADD/AUG/SEPT.ADD (target PT_NDA, becomes PT_REG/PT_EPT of the TDR).",
  origin:
    'platforms.md §1.1, §1.3, §1.5, Appendix A.1; issue 12 item 6 ("a private GPA maps at most one frame and that frame belongs to this TD").',
  appliesTo: (p) => p.parts.platform === 'tdx',
  perVm: {
    vms: 'live',
    mappings: true,
    own: true,
    vm(vm, s) {
      const m = tdxModuleOf(s.host);
      const x = m === undefined ? undefined : liveTd(m, vm);
      return x === undefined ? NO_VIOLATIONS : checkTd(m!, x, s);
    },
  },
  check(s) {
    return checkEveryVm(this.perVm!, s);
  },
};
