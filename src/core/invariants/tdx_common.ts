/**
 * What the TDX invariants share: the TDX module of a host whose platform is `tdx`, the live TDs
 * with their KVM state and module TD, and a per-VM result cache keyed by what a per-TD check
 * reads (the VM's stage-2 mapping list, which the change-driven checker keeps until one of the
 * VM's maps changes, the PAMT's and the S-EPT's versions and KVM's TDX counters), so that a TD is
 * re-checked only after an op that could have changed its verdict.
 */
import type { Host } from '../host.js';
import { isTd, kvmTdxIfAny, type KvmTdx } from '../arch/x86/vmx/tdx.js';
import type { TdxModule } from '../platform/tdx/module.js';
import type { Td } from '../platform/tdx/td.js';
import { SEPT_STATE_INFO, pagesAtLevel } from '../platform/tdx/sept.js';
import type { Vm } from '../kvm/objects.js';
import type { Mapping, Violation } from './types.js';

/** The host's TDX module (undefined on other platforms). */
export function tdxModuleOf(h: Host): TdxModule | undefined {
  return h.platform.tdx?.module;
}

/** The host's live TD VMs, in creation order: re-listed only when a VM was created or died. */
const TD_VMS = new WeakMap<Host, { created: number; live: number; list: Vm[] }>();

export function liveTdVms(h: Host): readonly Vm[] {
  const c = TD_VMS.get(h);
  if (c !== undefined && c.created === h.allVms.length && c.live === h.vms.size) return c.list;
  const list: Vm[] = [];
  for (const vm of h.vms) if (isTd(vm)) list.push(vm);
  TD_VMS.set(h, { created: h.allVms.length, live: h.vms.size, list });
  return list;
}

/**
 * The S-EPT leaf the walk of `gfn` reaches in `vm`'s TD: its state and the frame it maps at
 * `gfn` (-1 when it maps none); undefined when the VM has no TD in the module.
 */
export function tdxSeptLeaf(
  m: TdxModule,
  vm: Vm,
  gfn: number,
): { state: string; pfn: number } | undefined {
  const t = kvmTdxIfAny(vm);
  const td = t?.tdr === undefined ? undefined : m.td(t.tdr);
  if (td === undefined) return undefined;
  const w = td.sept.walk(gfn, 0);
  const e = w.entry;
  const leaf = SEPT_STATE_INFO[e.state].leaf;
  return { state: e.state, pfn: leaf ? e.pfn + (gfn % pagesAtLevel(w.level)) : -1 };
}

/** A live TD whose TDR the module still has, outside teardown: its KVM and module state. */
export type LiveTd = { readonly vm: Vm; readonly t: KvmTdx; readonly td: Td };

/** The TD of `vm` (undefined: not a TD, not initialized, or its keys are being released). */
export function liveTd(m: TdxModule, vm: Vm): LiveTd | undefined {
  const t = kvmTdxIfAny(vm);
  if (t?.tdr === undefined) return undefined;
  const td = m.td(t.tdr);
  if (td === undefined || td.lifecycle === 'TD_TEARDOWN' || td.lifecycle === 'TD_BLOCKED')
    return undefined;
  return { vm, t, td };
}

/** A per-VM result and the inputs it was computed from. */
type Cached = {
  readonly maps: readonly Mapping[];
  readonly pamt: number;
  readonly sept: number;
  readonly premapped: number;
  readonly state: string;
  readonly leaves: number;
  readonly septPages: number;
  readonly out: Violation[];
};

/**
 * One invariant's per-TD cache: `get` answers the last result when none of its inputs moved —
 * the VM's mapping list (`maps` undefined, as in a full check, never matches: the check runs),
 * the PAMT's and the TD's S-EPT's versions, and KVM's TDX counters.
 */
export class TdCache {
  private readonly byVm = new WeakMap<Vm, Cached>();

  get(m: TdxModule, x: LiveTd, maps: readonly Mapping[] | undefined): Violation[] | undefined {
    const c = this.byVm.get(x.vm);
    if (
      c === undefined ||
      maps === undefined ||
      c.maps !== maps ||
      c.pamt !== m.pamt.version ||
      c.sept !== x.td.sept.version ||
      c.premapped !== x.t.nrPremapped ||
      c.state !== x.t.state ||
      c.leaves !== x.t.leaves.size ||
      c.septPages !== x.t.septPages.size
    )
      return undefined;
    return c.out;
  }

  set(m: TdxModule, x: LiveTd, maps: readonly Mapping[] | undefined, out: Violation[]): void {
    if (maps === undefined) return;
    this.byVm.set(x.vm, {
      maps,
      pamt: m.pamt.version,
      sept: x.td.sept.version,
      premapped: x.t.nrPremapped,
      state: x.t.state,
      leaves: x.t.leaves.size,
      septPages: x.t.septPages.size,
      out,
    });
  }
}
