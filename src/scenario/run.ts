/**
 * Running a scenario: each op step goes through the same runner as a trace; its result is checked
 * against the step's expectation, and the model's events for the step are summarised as "what
 * changed". Pure: the CLI prints.
 */
import type { ModelEvent } from '../core/base/events.js';
import type { Host } from '../core/host.js';
import { ObjectNames } from '../check/names.js';
import { resultToJson } from '../trace/format.js';
import { HandleTable, stepTrace } from '../trace/runner.js';
import type { Backend, FdArg, ResultLine, TraceOp } from '../trace/types.js';
import {
  GmemFile,
  KVM_VCPU_STAT_NAMES,
  VcpuFile,
  VmFile,
  type KvmVcpuStat,
  type Vcpu,
  type Vm,
} from '../core/kvm/objects.js';
import { snpGuestContext } from '../core/arch/x86/svm/sev_snp.js';
import { isTd, tdxTdMrtd, toKvmTdx } from '../core/arch/x86/vmx/tdx.js';
import type { SeptStateName } from '../core/platform/tdx/sept.js';
import { gfnToGmemIndex, gfnToHvpnMemslot } from '../core/kvm/objects.js';
import { ShmemObject } from '../core/mm/shmem.js';
import { gmemFolioAt } from '../core/kvm/guest_memfd/hugetlb.js';
import { asGfn, asHvpn, type Pfn } from '../core/base/units.js';
import { arm64State } from '../core/arch/arm64/state.js';
import { checkHistory } from '../core/platform/pkvm/oracle.js';
import { checkPkvmInvariants } from '../core/platform/pkvm/invariants.js';
import { PKVM_NOPAGE, PKVM_STATE_NAMES } from '../core/platform/pkvm/memory.js';
import type { PkvmHyp, PkvmVm } from '../core/platform/pkvm/hyp.js';
import {
  EFFECT_KEYS,
  type DirectMapExpectation,
  type EffectKey,
  type Expectation,
  type HugetlbExpectation,
  type PkvmExpectation,
  type Scenario,
  type ScenarioStep,
  type TdExpectation,
} from './scenario.js';

export type OpStep = Extract<ScenarioStep, { kind: 'op' }>;

export type StepOutcome = {
  readonly kind: 'op';
  readonly index: number;
  readonly step: OpStep;
  readonly result: ResultLine;
  readonly effects: Readonly<Record<EffectKey, number>>;
  /** One line per change the model recorded (empty without events). */
  readonly changes: readonly string[];
  /** The same changes as records (`run --json`). */
  readonly changeRecords: readonly ChangeRecord[];
  /** Expectation mismatches; empty when the step passed or had no expectation. */
  readonly failures: readonly string[];
};

export type SectionOutcome = { readonly kind: 'section'; readonly title: string };

export type ScenarioRun = {
  readonly scenario: Scenario;
  readonly backend: string;
  readonly outcomes: ReadonlyArray<StepOutcome | SectionOutcome>;
  readonly failedSteps: number;
  readonly checkedSteps: number;
};

export type RunOptions = {
  /** Model events recorded since the last call (the model backend's event log). */
  readonly drainEvents?: () => ModelEvent[];
  /** The model's state: "what changed" then calls objects by the scenario's handle names. */
  readonly host?: () => Host;
};

/** An index range `[start, end)` (gfns, guest_memfd indexes). */
export type Span = { readonly start: number; readonly end: number };

/**
 * One kind of change an op made, built from the model's events like the text line: `vm` and
 * `gmem` are the scenario's handle names (else the model's `vm0`, `guest_memfd #105`), ranges are
 * `[start, end)` (all of them; the text shows four), `count` pages or occurrences.
 */
export type ChangeRecord = { readonly kind: string; readonly count: number } & Readonly<
  Record<string, unknown>
>;

function zeroEffects(): Record<EffectKey, number> {
  const e = {} as Record<EffectKey, number>;
  for (const k of EFFECT_KEYS) e[k] = 0;
  return e;
}

const hexIdx = (n: number): string => '0x' + n.toString(16);

/** Count and describe model events. */
export function summarizeEvents(
  events: readonly ModelEvent[],
  names: ObjectNames = new ObjectNames(),
): {
  effects: Record<EffectKey, number>;
  changes: string[];
  records: ChangeRecord[];
} {
  const effects = zeroEffects();
  const groups = new Map<
    string,
    {
      text: (n: number, ranges: string) => string;
      n: number;
      ranges: string[];
      rec: Record<string, unknown>;
      spans: Span[];
    }
  >();
  const vmOf = (i: number): string => names.vmName(i) ?? `vm${i}`;
  const fileOf = (ino: number): string => names.gmemName(ino) ?? `guest_memfd #${ino}`;
  const add = (
    key: string,
    n: number,
    range: string | undefined,
    text: (n: number, ranges: string) => string,
    rec: Record<string, unknown> = {},
    span?: Span,
  ): void => {
    let g = groups.get(key);
    if (g === undefined) {
      g = { text, n: 0, ranges: [], rec: { kind: key.split(':')[0], ...rec }, spans: [] };
      groups.set(key, g);
    }
    g.n += n;
    if (span !== undefined) g.spans.push(span);
    if (range !== undefined && g.ranges.length < 4) g.ranges.push(range);
    else if (range !== undefined && g.ranges.length === 4) g.ranges.push('…');
  };
  const pages = (n: number): string => `${n} page${n === 1 ? '' : 's'}`;
  const rng = (s: number, e: number): string =>
    e - s === 1 ? hexIdx(s) : `[${hexIdx(s)}, ${hexIdx(e)})`;
  for (const ev of events) {
    switch (ev.kind) {
      case 'zap':
        effects.zapped += ev.pages;
        add(
          `zap:${ev.vm}:${ev.source}`,
          ev.pages,
          rng(ev.start, ev.end),
          (n, r) => `vm${ev.vm}: zapped ${pages(n)} of stage-2 mappings (${ev.source}) at gfn ${r}`,
          { kind: 'zap', vm: vmOf(ev.vm), source: ev.source },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'tlb_flush':
        effects.tlb_flushes++;
        add(
          `tlb:${ev.vm}:${ev.source}`,
          1,
          undefined,
          (n) => `vm${ev.vm}: ${n} remote TLB flush${n === 1 ? '' : 'es'} (${ev.source})`,
          { kind: 'tlb_flush', vm: vmOf(ev.vm), source: ev.source },
        );
        break;
      case 'gmem_alloc':
        effects.gmem_allocated += ev.end - ev.start;
        add(
          `galloc:${ev.ino}:${ev.via}`,
          ev.end - ev.start,
          rng(ev.start, ev.end),
          (n, r) =>
            `guest_memfd #${ev.ino}: allocated ${pages(n)} at index ${r} (${ev.via.replace('_', ' ')}, not yet zeroed)`,
          { kind: 'gmem_alloc', gmem: fileOf(ev.ino), via: ev.via },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'gmem_zero':
        effects.gmem_zeroed += ev.end - ev.start;
        add(
          `gzero:${ev.ino}:${ev.via}`,
          ev.end - ev.start,
          rng(ev.start, ev.end),
          (n, r) =>
            `guest_memfd #${ev.ino}: zeroed ${pages(n)} on first use (${ev.via.replace('_', ' ')}) at index ${r}`,
          { kind: 'gmem_zero', gmem: fileOf(ev.ino), via: ev.via },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'gmem_free':
        effects.gmem_freed += ev.end - ev.start;
        add(
          `gfree:${ev.ino}:${ev.via}`,
          ev.end - ev.start,
          rng(ev.start, ev.end),
          (n, r) =>
            `guest_memfd #${ev.ino}: freed ${pages(n)} at index ${r} (${ev.via.replace('_', ' ')})`,
          { kind: 'gmem_free', gmem: fileOf(ev.ino), via: ev.via },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'spte_install':
        effects.mapped += ev.pages;
        add(
          `map:${ev.vm}:${ev.level}:${ev.private}:${ev.source}`,
          ev.pages,
          rng(ev.gfn, ev.gfn + ev.pages),
          (n, r) =>
            `vm${ev.vm}: mapped ${pages(n)} at ${ev.level} (${ev.private ? 'private' : 'shared'}, from ${ev.source === 'gmem' ? 'guest_memfd' : 'userspace_addr'}) at gfn ${r}`,
          {
            kind: 'map',
            vm: vmOf(ev.vm),
            level: ev.level,
            private: ev.private,
            source: ev.source === 'gmem' ? 'guest_memfd' : 'userspace_addr',
          },
          { start: ev.gfn, end: ev.gfn + ev.pages },
        );
        break;
      case 'spte_split':
        add(
          `split:${ev.vm}:${ev.level}`,
          ev.pages,
          rng(ev.gfn, ev.gfn + ev.pages),
          (n, r) =>
            `vm${ev.vm}: split huge mappings of ${pages(n)} into ${ev.level} ones at gfn ${r}`,
          { kind: 'spte_split', vm: vmOf(ev.vm), level: ev.level },
          { start: ev.gfn, end: ev.gfn + ev.pages },
        );
        break;
      case 'gmem_restructure':
        add(
          `grestructure:${ev.ino}:${ev.order}`,
          ev.end - ev.start,
          rng(ev.start, ev.end),
          (n, r) =>
            ev.order === 0
              ? `guest_memfd #${ev.ino}: huge folio split into 4K folios (${pages(n)}) at index ${r}`
              : `guest_memfd #${ev.ino}: ${pages(n)} merged into order-${ev.order} folios at index ${r}`,
          { kind: 'gmem_restructure', gmem: fileOf(ev.ino), order: ev.order },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'anon_alloc':
        add(
          `anon`,
          ev.pages,
          undefined,
          (n) => `VMM: ${pages(n)} of anonymous memory allocated (zeroed)`,
          { kind: 'anon_alloc' },
        );
        break;
      case 'anon_free':
        add(`anonfree`, ev.pages, undefined, (n) => `VMM: ${pages(n)} of anonymous memory freed`, {
          kind: 'anon_free',
        });
        break;
      case 'shmem_alloc':
        add(
          `shmem:${ev.obj}`,
          ev.end - ev.start,
          undefined,
          (n) => `VMM: ${pages(n)} of shared anonymous memory allocated (zeroed)`,
          { kind: 'shmem_alloc' },
        );
        break;
      case 'shmem_free':
        add(
          `shmemfree:${ev.obj}`,
          ev.end - ev.start,
          undefined,
          (n) => `VMM: ${pages(n)} of shared anonymous memory freed`,
          { kind: 'shmem_free' },
        );
        break;
      case 'slot':
        add(
          `slot:${ev.vm}:${ev.as}:${ev.id}:${ev.change}`,
          1,
          undefined,
          () => `vm${ev.vm}: memslot ${ev.as > 0 ? `${ev.as}:` : ''}${ev.id} ${ev.change}`,
          { kind: 'memslot', vm: vmOf(ev.vm), as_id: ev.as, slot: ev.id, change: ev.change },
        );
        break;
      case 'gmem_bind':
        add(
          `bind:${ev.ino}:${ev.slot}`,
          1,
          undefined,
          () =>
            `guest_memfd #${ev.ino}: index ${rng(ev.start, ev.end)} bound to memslot ${ev.slot}`,
          { kind: 'gmem_bind', gmem: fileOf(ev.ino), vm: vmOf(ev.vm), slot: ev.slot },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'gmem_unbind':
        add(
          `unbind:${ev.ino}:${ev.slot}`,
          1,
          undefined,
          () =>
            `guest_memfd #${ev.ino}: index ${rng(ev.start, ev.end)} unbound from memslot ${ev.slot}`,
          { kind: 'gmem_unbind', gmem: fileOf(ev.ino), vm: vmOf(ev.vm), slot: ev.slot },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'gmem_release':
        add(
          `rel:${ev.ino}`,
          1,
          undefined,
          () =>
            `guest_memfd #${ev.ino}: last reference gone — released (bound memslots lose their file; its memory goes with it)`,
          { kind: 'gmem_release', gmem: fileOf(ev.ino) },
        );
        break;
      case 'attributes':
        add(
          `attr:${ev.vm}:${ev.attributes}`,
          ev.end - ev.start,
          rng(ev.start, ev.end),
          (n, r) =>
            `vm${ev.vm}: ${pages(n)} at gfn ${r} now ${ev.attributes === 0n ? 'shared' : ev.attributes === 8n ? 'PRIVATE' : `attributes ${ev.attributes}`}`,
          { kind: 'attributes', vm: vmOf(ev.vm), attributes: ev.attributes },
          { start: ev.start, end: ev.end },
        );
        break;
      case 'vm_destroy':
        add(`vmd:${ev.vm}`, 1, undefined, () => `vm${ev.vm}: last reference gone — VM destroyed`, {
          kind: 'vm_destroy',
          vm: vmOf(ev.vm),
        });
        break;
      case 'invalidate':
      case 'exit':
      case 'proc_fork':
      case 'proc_exit':
        break;
    }
  }
  const changes = [...groups.values()].map((g) => names.rename(g.text(g.n, g.ranges.join(', '))));
  const records = [...groups.values()].map(
    (g) =>
      ({
        ...g.rec,
        count: g.n,
        ...(g.spans.length > 0 ? { ranges: g.spans } : {}),
      }) as ChangeRecord,
  );
  return { effects, changes, records };
}

function big(v: unknown): bigint | undefined {
  if (typeof v === 'bigint') return v;
  if (typeof v === 'number') return BigInt(v);
  if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|-?\d+)$/.test(v)) return BigInt(v);
  return undefined;
}

/** Compare a result (and effects) with an expectation; returns mismatch descriptions. */
export function checkExpectation(
  e: Expectation,
  r: ResultLine,
  effects: Record<EffectKey, number> | undefined,
  /** The SNP launch digest of the op's VM after the step (undefined: none, or no model). */
  launchDigest?: () => string | undefined,
  /** What the step added to the vCPU stats of the model (undefined: no model). */
  kvmStats?: KvmVcpuStat,
  /** The TD the op names, as the model has it after the step (undefined: no model). */
  tdState?: () => TdState | string,
  /** The pKVM hypervisor's view after the step (undefined: no model). */
  pkvmState?: () => PkvmState | string,
  /** SEV-SNP: the RMP state of the op's VM's page at a GPA after the step (undefined: no model). */
  rmpState?: () => ((gpa: bigint) => string) | string,
  /** `expect.hugetlb` checked on the model after the step (undefined: no model). */
  hugetlbCheck?: (w: HugetlbExpectation) => string[],
  /** The kernel direct map after the step (undefined: no model). */
  directMap?: () => DirectMapState,
): string[] {
  const f: string[] = [];
  const j = resultToJson(r);
  const show = (): string => JSON.stringify(j);
  // An expected errno or fault implies failure and reports the mismatch itself (once).
  if (e.ok !== undefined && r.ok !== e.ok && e.errno === undefined && e.fault === undefined)
    f.push(`expected ${e.ok ? 'success' : 'failure'}, got ${show()}`);
  if (e.errno !== undefined && ('fault' in r || r.ok || r.errno !== e.errno))
    f.push(`expected errno ${e.errno}, got ${show()}`);
  if (e.fault !== undefined && (!('fault' in r) || r.fault !== e.fault))
    f.push(`expected ${e.fault}, got ${show()}`);
  if (e.value !== undefined) {
    const got = 'fault' in r || !r.ok ? undefined : r.value;
    if (typeof e.value === 'string') {
      if (got !== e.value)
        f.push(
          `expected value ${e.value.length > 40 ? e.value.slice(0, 40) + '…' : e.value}, got ${typeof got === 'string' && got.length > 40 ? got.slice(0, 40) + '…' : String(got)}`,
        );
    } else if (big(got) !== e.value) f.push(`expected value ${e.value}, got ${String(got)}`);
  }
  if (e.exits !== undefined) {
    const got = (j['exits'] as Array<Record<string, unknown>> | undefined) ?? [];
    if (got.length !== e.exits.length)
      f.push(`expected ${e.exits.length} exits, got ${got.length}: ${JSON.stringify(got)}`);
    else
      e.exits.forEach((want, i) => {
        for (const [k, v] of Object.entries(want)) {
          const g = got[i]![k];
          const same =
            typeof v === 'bigint'
              ? big(g) === v
              : Array.isArray(v)
                ? Array.isArray(g) && v.length === g.length && v.every((x, n) => big(g[n]) === x)
                : g === v;
          if (!same) f.push(`exit ${i}: expected ${k} ${String(v)}, got ${JSON.stringify(g)}`);
        }
      });
  }
  if (e.exit_counts !== undefined) {
    const got = (j['exits'] as Array<Record<string, unknown>> | undefined) ?? [];
    const n = new Map<unknown, number>();
    for (const x of got) n.set(x['reason'], (n.get(x['reason']) ?? 0) + 1);
    for (const [reason, want] of Object.entries(e.exit_counts))
      if ((n.get(reason) ?? 0) !== want)
        f.push(
          `expected ${want} ${reason} exit${want === 1 ? '' : 's'}, got ${n.get(reason) ?? 0}`,
        );
  }
  for (const k of ['remaining', 'stat'] as const) {
    const want = e[k];
    if (want === undefined) continue;
    const got = j[k] as Record<string, unknown> | undefined;
    for (const [sk, sv] of Object.entries(want))
      if (got === undefined || big(got[sk]) !== sv)
        f.push(`expected ${k}.${sk} ${String(sv)}, got ${JSON.stringify(got?.[sk])}`);
  }
  if (e.launch_digest !== undefined) {
    const got = launchDigest?.();
    if (launchDigest === undefined)
      f.push('launch_digest cannot be checked on this backend (no model)');
    else if (got !== e.launch_digest)
      f.push(
        `expected launch digest ${e.launch_digest.slice(0, 16)}…, got ${got === undefined ? 'no SNP guest context' : got}`,
      );
  }
  if (e.hw_error !== undefined) {
    const got = j['hw_error'];
    if (got === undefined)
      f.push(`expected hw_error ${hexInt(e.hw_error)}, got a result without hw_error: ${show()}`);
    else if (big(got) !== e.hw_error)
      f.push(`expected hw_error ${hexInt(e.hw_error)}, got ${hexInt(big(got) ?? 0n)}`);
  }
  if (e.error_offset !== undefined) {
    const got = j['error_offset'];
    if (got === undefined)
      f.push(
        `expected error_offset ${hexInt(e.error_offset)}, got a result without error_offset: ${show()}`,
      );
    else if (big(got) !== e.error_offset)
      f.push(`expected error_offset ${hexInt(e.error_offset)}, got ${hexInt(big(got) ?? 0n)}`);
  }
  if (e.td !== undefined) {
    if (tdState === undefined) f.push('td cannot be checked on this backend (no model)');
    else f.push(...checkTd(e.td, tdState()));
  }
  if (e.pkvm !== undefined) {
    if (pkvmState === undefined) f.push('pkvm cannot be checked on this backend (no model)');
    else f.push(...checkPkvm(e.pkvm, pkvmState()));
  }
  if (e.rmp !== undefined) {
    const got = rmpState?.();
    if (got === undefined) f.push('rmp cannot be checked on this backend (no model)');
    else if (typeof got === 'string') f.push(`expected an RMP: ${got}`);
    else
      for (const w of e.rmp) {
        const st = got(w.gpa);
        if (st !== w.state) f.push(`gpa ${hexInt(w.gpa)}: expected RMP ${w.state}, got ${st}`);
      }
  }
  if (e.hugetlb !== undefined) {
    if (hugetlbCheck === undefined) f.push('hugetlb cannot be checked on this backend (no model)');
    else f.push(...hugetlbCheck(e.hugetlb));
  }
  if (e.kvm_stats !== undefined) {
    if (kvmStats === undefined) f.push('kvm_stats cannot be checked on this backend (no model)');
    else
      for (const [k, v] of Object.entries(e.kvm_stats))
        if (kvmStats[k as keyof KvmVcpuStat] !== v)
          f.push(`expected kvm stat ${k} +${v}, got +${kvmStats[k as keyof KvmVcpuStat]}`);
  }
  if (e.direct_map !== undefined) {
    if (directMap === undefined) f.push('direct_map cannot be checked on this backend (no model)');
    else f.push(...checkDirectMap(e.direct_map, directMap()));
  }
  if (e.effects !== undefined) {
    if (effects === undefined)
      f.push('effects cannot be checked on this backend (no model events)');
    else
      for (const [k, v] of Object.entries(e.effects))
        if (effects[k as EffectKey] !== v)
          f.push(`expected effect ${k} = ${v}, got ${effects[k as EffectKey]}`);
  }
  return f;
}

const hexInt = (v: bigint): string => '0x' + v.toString(16);

/** A TD as `expect.td` sees it (KVM's `struct kvm_tdx` and the TDX module's TD). */
export type TdState = {
  readonly state: string;
  readonly nr_premapped: number;
  readonly bugged: boolean;
  readonly dead: boolean;
  readonly epoch: number | undefined;
  readonly mrtd: string | undefined;
  readonly sept: (gpa: bigint) => { state: SeptStateName; level: number } | undefined;
};

function checkTd(want: TdExpectation, got: TdState | string): string[] {
  if (typeof got === 'string') return [`expected a TD: ${got}`];
  const f: string[] = [];
  if (want.state !== undefined && got.state !== want.state)
    f.push(`expected TD state ${want.state}, got ${got.state}`);
  for (const k of ['nr_premapped', 'epoch'] as const)
    if (want[k] !== undefined && got[k] !== want[k])
      f.push(`expected TD ${k} ${want[k]}, got ${got[k] ?? 'none (no TD in the TDX module)'}`);
  if (want.bugged !== undefined && got.bugged !== want.bugged)
    f.push(`expected the TD ${want.bugged ? '' : 'not '}bugged (KVM_BUG_ON), got ${got.bugged}`);
  if (want.dead !== undefined && got.dead !== want.dead)
    f.push(`expected the TD ${want.dead ? '' : 'not '}dead (kvm->vm_dead), got ${got.dead}`);
  if (want.mrtd !== undefined && got.mrtd !== want.mrtd)
    f.push(
      `expected MRTD ${want.mrtd.slice(0, 16)}…, got ${got.mrtd ?? 'none (TDH.MR.FINALIZE has not succeeded)'}`,
    );
  for (const { gpa, state } of want.sept ?? []) {
    const s = got.sept(gpa);
    if (s?.state !== state)
      f.push(
        `expected S-EPT entry of GPA ${hexInt(gpa)} ${state}, got ${s === undefined ? 'none (no TD in the TDX module)' : `${s.state} (level ${s.level})`}`,
      );
  }
  return f;
}

/**
 * The TD an op names (its `fd`, `vm` or `vcpu`, else the handle it creates: a VM, vCPU or
 * guest_memfd fd of a TD) after the step, or why there is none.
 */
function tdStateOf(h: Host, t: HandleTable, op: TraceOp): TdState | string {
  let vm: Vm | undefined;
  const o = op as Record<string, unknown>;
  const args = (['fd', 'vm', 'vcpu'] as const).map((k) => o[k] as FdArg | undefined | null);
  // KVM_CREATE_VM names the VM it makes only by `as`.
  if (typeof o['as'] === 'string') args.push({ kind: 'handle', name: o['as'] });
  for (const arg of args) {
    if (arg === undefined || arg === null) continue;
    const fd = t.fd(arg);
    if (fd.kind !== 'obj') continue;
    const file = h.file(fd.fd);
    if (file instanceof VmFile || file instanceof GmemFile) vm = file.vm;
    else if (file instanceof VcpuFile) vm = file.vcpu.vm;
    if (vm !== undefined) break;
  }
  if (vm === undefined) return 'the op names no open VM, vCPU or guest_memfd fd';
  if (!isTd(vm)) return 'the VM the op names is not a TD';
  const kt = toKvmTdx(vm);
  const mtd = kt.tdr === undefined ? undefined : h.platform.tdx?.module.td(kt.tdr);
  const mrtd = tdxTdMrtd(h, vm);
  return {
    state: kt.state.replace(/^TD_STATE_/, ''),
    nr_premapped: kt.nrPremapped,
    bugged: vm.vmBugged,
    dead: vm.vmDead,
    epoch: mtd?.epoch,
    mrtd:
      mrtd === undefined
        ? undefined
        : [...mrtd].map((b) => b.toString(16).padStart(2, '0')).join(''),
    sept: (gpa) => {
      if (mtd === undefined) return undefined;
      const w = mtd.sept.walk(Number(gpa >> 12n), 0);
      return { state: w.entry.state, level: w.level };
    },
  };
}

/**
 * The pKVM hypervisor as `expect.pkvm` sees it after a step: its VM count, each page an entry
 * names (`page()`: the frame and its `struct hyp_page`, the guest state in the op's VM, whether
 * it is all zero; or why there is no such page), and the differences its history oracle and its
 * six invariants find.
 */
export type PkvmState = {
  readonly vms: number;
  readonly page: (want: PkvmExpectation) => PkvmPageView | string;
  readonly oracle: readonly string[];
  readonly invariants: readonly string[];
};

export type PkvmPageView = {
  readonly what: string;
  readonly pfn: number;
  readonly host: string;
  readonly hyp: string;
  /** In the guest stage-2 of the VM the op names; undefined when the op names no VM. */
  readonly guest: string | undefined;
  readonly share_count: number;
  readonly pins: number;
  readonly zero: boolean;
};

function checkPkvm(want: readonly PkvmExpectation[], got: PkvmState | string): string[] {
  if (typeof got === 'string') return [`expected a pKVM host: ${got}`];
  const f: string[] = [];
  for (const w of want) {
    if (w.vms !== undefined && got.vms !== w.vms)
      f.push(`expected the hypervisor to hold ${w.vms} VM(s), got ${got.vms}`);
    if (w.gpa === undefined && w.uaddr === undefined) continue;
    const p = got.page(w);
    if (typeof p === 'string') {
      f.push(`expected a page: ${p}`);
      continue;
    }
    const at = `${p.what} (pfn ${hexInt(BigInt(p.pfn))})`;
    for (const k of ['host', 'hyp', 'guest'] as const) {
      const v = w[k];
      if (v === undefined) continue;
      if (k === 'guest' && p.guest === undefined)
        f.push(`${at}: expected guest ${v}: the op names no VM whose stage-2 to read`);
      else if (p[k] !== v) f.push(`${at}: expected ${k} ${v}, got ${p[k]}`);
    }
    for (const k of ['share_count', 'pins'] as const)
      if (w[k] !== undefined && p[k] !== w[k]) f.push(`${at}: expected ${k} ${w[k]}, got ${p[k]}`);
    if (w.zero !== undefined && p.zero !== w.zero)
      f.push(
        `${at}: expected ${w.zero ? 'all zero' : 'not all zero'}, got ${p.zero ? 'all zero' : 'data'}`,
      );
  }
  // The hypercall-history oracle and the invariants hold whenever the hypervisor is asserted.
  for (const d of got.oracle) f.push(`pKVM history oracle: ${d}`);
  for (const v of got.invariants) f.push(`pKVM invariant ${v}`);
  return f;
}

/**
 * The kernel direct map as `expect.direct_map` sees it after a step: how many frames are out of
 * it, and for the page the VMM maps at an address, its frame and whether the direct map has it
 * (or why there is no page).
 */
export type DirectMapState = {
  readonly removed: number;
  readonly page: (
    uaddr: NonNullable<DirectMapExpectation['uaddr']>,
  ) => { what: string; pfn: number; present: boolean } | string;
};

function checkDirectMap(want: readonly DirectMapExpectation[], got: DirectMapState): string[] {
  const f: string[] = [];
  for (const w of want) {
    if (w.removed !== undefined && got.removed !== w.removed)
      f.push(`expected ${w.removed} frame(s) out of the direct map, got ${got.removed}`);
    if (w.uaddr === undefined || w.present === undefined) continue;
    const p = got.page(w.uaddr);
    if (typeof p === 'string') f.push(`expected a page: ${p}`);
    else if (p.present !== w.present)
      f.push(
        `${p.what} (pfn ${hexInt(BigInt(p.pfn))}): expected ${w.present ? 'in' : 'out of'} the direct map, got ${p.present ? 'in' : 'out'}`,
      );
  }
  return f;
}

/** `expect.direct_map`'s view of the model after a step (see DirectMapState). */
function directMapStateOf(h: Host, t: HandleTable): DirectMapState {
  return {
    removed: h.frames.noDirectMap.totalCovered(),
    page: (u) => {
      const addr = t.addr(u);
      const what = `uaddr ${u.kind === 'raw' ? hexInt(addr) : `${u.name}${u.offset === 0n ? '' : `+${hexInt(u.offset)}`}`}`;
      const pfn = hostFrameAt(h, asHvpn(Number(addr >> 12n)));
      if (pfn === undefined)
        return `${what}: the VMM has no page there (not mapped, or never touched)`;
      return { what, pfn, present: h.frames.inDirectMap(pfn) };
    },
  };
}

/** The frame behind host virtual page `hvpn` without faulting: anon, shmem or guest_memfd. */
function hostFrameAt(h: Host, hvpn: number): Pfn | undefined {
  for (const p of h.mm.vmas.piecesIn(hvpn, hvpn + 1)) {
    const v = p.value;
    if (!v.shared) {
      const a = h.mm.anon.get(hvpn);
      if (a !== undefined) return a.base;
    }
    if (v.obj instanceof ShmemObject || v.obj instanceof GmemFile)
      return v.obj.pages.get(v.base + (hvpn - p.start))?.base;
  }
  return undefined;
}

/** The VM an op names (its `fd`, `vm` or `vcpu`, else the handle it creates), if open. */
function vmOfOp(h: Host, t: HandleTable, op: TraceOp): Vm | undefined {
  const o = op as Record<string, unknown>;
  const args = (['fd', 'vm', 'vcpu'] as const).map((k) => o[k] as FdArg | undefined | null);
  if (typeof o['as'] === 'string') args.push({ kind: 'handle', name: o['as'] });
  for (const arg of args) {
    if (arg === undefined || arg === null) continue;
    const fd = t.fd(arg);
    if (fd.kind !== 'obj') continue;
    const file = h.file(fd.fd);
    if (file instanceof VmFile || file instanceof GmemFile) return file.vm;
    if (file instanceof VcpuFile) return file.vcpu.vm;
  }
  return undefined;
}

/**
 * `expect.hugetlb` on the model: the guest_memfd it names (`fd`, else the op's), its folio
 * orders at byte offsets, its VM's stage-2 levels at GPAs, and the hstates' free pages.
 */
function checkHugetlb(h: Host, t: HandleTable, op: TraceOp, w: HugetlbExpectation): string[] {
  const f: string[] = [];
  if (w.pool_2m !== undefined && h.hugetlbPools.available(9) !== w.pool_2m)
    f.push(`expected ${w.pool_2m} free 2M huge pages, got ${h.hugetlbPools.available(9)}`);
  if (w.pool_1g !== undefined && h.hugetlbPools.available(18) !== w.pool_1g)
    f.push(`expected ${w.pool_1g} free 1G huge pages, got ${h.hugetlbPools.available(18)}`);
  if (w.folios === undefined && w.levels === undefined) return f;
  const o = op as Record<string, unknown>;
  const arg: FdArg | undefined =
    w.fd !== undefined
      ? { kind: 'handle', name: w.fd }
      : ((o['fd'] ?? o['guest_memfd']) as FdArg | undefined);
  const fd = arg === undefined || arg === null ? undefined : t.fd(arg);
  const file = fd?.kind === 'obj' ? h.file(fd.fd) : undefined;
  if (!(file instanceof GmemFile)) return [...f, 'hugetlb: no open guest_memfd (name one with fd)'];
  for (const x of w.folios ?? []) {
    const index = Number(x.offset >> 12n);
    const got = file.pages.get(index) === undefined ? 'absent' : gmemFolioAt(file, index).order;
    if (got !== x.order)
      f.push(
        `expected a folio of order ${String(x.order)} at offset ${hexInt(x.offset)}, got ${String(got)}`,
      );
  }
  for (const x of w.levels ?? []) {
    const e = file.vm.stage2[0]?.entryAt(Number(x.gpa >> 12n));
    const got = e === undefined ? 'none' : e.value.level;
    if (got !== x.level) f.push(`expected gpa ${hexInt(x.gpa)} mapped at ${x.level}, got ${got}`);
  }
  return f;
}

/** The hypervisor's VM of `vm` (after its first KVM_RUN), if it has one. */
function hypVmOf(h: Host, hyp: PkvmHyp, vm: Vm): PkvmVm | undefined {
  const handle = arm64State(h).vm(vm).handle;
  return handle === undefined ? undefined : hyp.vms.get(handle);
}

/** `expect.pkvm`'s view of the model after a step (see PkvmState), or why there is none. */
function pkvmStateOf(h: Host, t: HandleTable, op: TraceOp): PkvmState | string {
  const hyp = h.platform.pkvm?.hyp;
  if (hyp === undefined) return `the profile ${h.profile.name} has no pKVM hypervisor`;
  const vm = vmOfOp(h, t, op);
  const hvm = vm === undefined ? undefined : hypVmOf(h, hyp, vm);
  const name = (s: number): string => PKVM_STATE_NAMES[s] ?? String(s);
  const view = (what: string, pfn: number, guest: string | undefined): PkvmPageView => {
    const hp = hyp.vmemmap.get(pfn);
    const b = new Uint8Array(4096);
    h.frames.read(pfn as Pfn, 0, b);
    return {
      what,
      pfn,
      host: name(hp.host),
      hyp: name(hp.hyp),
      guest,
      share_count: hp.shareGuestCount,
      pins: hp.refcount,
      zero: b.every((x) => x === 0),
    };
  };
  const page = (w: PkvmExpectation): PkvmPageView | string => {
    if (w.gpa !== undefined) {
      const what = `gpa ${hexInt(w.gpa)}`;
      if (vm === undefined) return `${what}: the op names no open VM, vCPU or guest_memfd fd`;
      const gfn = Number(w.gpa >> 12n);
      const leaf = hvm?.stage2.leaf(gfn);
      if (leaf !== undefined) return view(what, leaf.pfn, name(leaf.state));
      // Not in the guest's stage-2: the page its memslot would fault in (if there is one yet).
      const slot = vm.slotsByGfn[0]?.get(asGfn(gfn));
      if (slot === undefined) return `${what}: no memslot of the VM holds it`;
      const g = slot.gmem;
      const pfn =
        slot.isGuestMemfd && g !== null && g.file !== null
          ? g.file.pages.get(gfnToGmemIndex(slot, g.pgoff, asGfn(gfn)))?.base
          : hostFrameAt(h, gfnToHvpnMemslot(slot, asGfn(gfn)));
      if (pfn === undefined) return `${what}: its memslot has no page there yet`;
      return view(what, pfn, name(PKVM_NOPAGE));
    }
    const u = w.uaddr!;
    const addr = t.addr(u);
    const what = `uaddr ${u.kind === 'raw' ? hexInt(addr) : `${u.name}${u.offset === 0n ? '' : `+${hexInt(u.offset)}`}`}`;
    const pfn = hostFrameAt(h, asHvpn(Number(addr >> 12n)));
    if (pfn === undefined)
      return `${what}: the VMM has no page there (not mapped, or never touched)`;
    // The op's VM's stage-2 entry for the frame, if it maps it.
    let guest: string | undefined;
    if (vm !== undefined) {
      guest = name(PKVM_NOPAGE);
      for (const r of hvm?.stage2.leafRuns() ?? [])
        if (pfn >= r.leaf.base && pfn < r.leaf.base + (r.end - r.start)) guest = name(r.leaf.state);
    }
    return view(what, pfn, guest);
  };
  return {
    vms: hyp.vms.size,
    page,
    oracle: checkHistory(hyp).map(
      (d) => `pfn ${hexInt(BigInt(d.pfn))}: ${d.field} expected ${d.expected}, got ${d.actual}`,
    ),
    invariants: checkPkvmInvariants(hyp).map(
      (v) => `${v.invariant}: pfn ${hexInt(BigInt(v.pfn))}: ${v.reason}`,
    ),
  };
}

/** The SNP launch digest of the VM an op's `fd` names (KVM_MEMORY_ENCRYPT_OP), if it has one. */
function launchDigestOf(h: Host, t: HandleTable, op: TraceOp): string | undefined {
  const fdArg = (op as { fd?: unknown }).fd as FdArg | undefined | null;
  if (fdArg === undefined || fdArg === null) return undefined;
  const fd = t.fd(fdArg);
  if (fd.kind !== 'obj') return undefined;
  const f = h.file(fd.fd);
  return f instanceof VmFile ? snpGuestContext(h, f.vm)?.digest.hex() : undefined;
}

/**
 * `expect.rmp`'s view after a step: the RMP state (RMP_STATES) of the page the op's VM's memslot
 * holds at a GPA (its guest_memfd page, else the VMM's page at userspace_addr), or why there is
 * no RMP to read.
 */
function rmpStateOf(h: Host, t: HandleTable, op: TraceOp): ((gpa: bigint) => string) | string {
  const rmp = h.platform.sevSnp?.rmp;
  if (rmp === undefined) return `the profile ${h.profile.name} has no SEV-SNP RMP`;
  const vm = vmOfOp(h, t, op);
  if (vm === undefined) return 'the op names no open VM, vCPU or guest_memfd fd';
  return (gpa) => {
    const gfn = asGfn(Number(gpa >> 12n));
    const slot = vm.slotsByGfn[0]?.get(gfn);
    if (slot === undefined) return 'no memslot there';
    const g = slot.gmem;
    const pfn =
      slot.isGuestMemfd && g !== null && g.file !== null
        ? g.file.pages.get(gfnToGmemIndex(slot, g.pgoff, gfn))?.base
        : hostFrameAt(h, gfnToHvpnMemslot(slot, gfn));
    if (pfn === undefined) return 'NO_PAGE';
    const e = rmp.lookup(pfn);
    if (!e.assigned) return 'HYPERVISOR';
    if (e.asid === 0) return 'FIRMWARE';
    if (e.immutable) return 'PRE_GUEST';
    return e.validated ? 'GUEST_VALID' : 'GUEST_INVALID';
  };
}

/** Every vCPU's stats (a copy): the model's `struct kvm_vcpu_stat`s. */
function vcpuStats(h: Host): Map<Vcpu, KvmVcpuStat> {
  const m = new Map<Vcpu, KvmVcpuStat>();
  for (const vm of h.vms) for (const v of vm.vcpus.values()) m.set(v, { ...v.stat });
  return m;
}

/**
 * What a step added to the vCPU stats, summed over the vCPUs alive after it (as debugfs sums
 * `pf_taken` over every vCPU of every VM); a vCPU created by the step counts from zero, one that
 * went away with its VM during the step is not counted.
 */
function statsDelta(before: Map<Vcpu, KvmVcpuStat>, after: Map<Vcpu, KvmVcpuStat>): KvmVcpuStat {
  const d: KvmVcpuStat = { pf_taken: 0, pf_fixed: 0, pf_emulate: 0, pf_spurious: 0 };
  for (const [v, a] of after) {
    const b = before.get(v);
    for (const k of KVM_VCPU_STAT_NAMES) d[k] += a[k] - (b?.[k] ?? 0);
  }
  return d;
}

/** Run every step on a fresh trace context of `backend`. */
export function runScenario(s: Scenario, backend: Backend, opts: RunOptions = {}): ScenarioRun {
  const outcomes: Array<StepOutcome | SectionOutcome> = [];
  let failed = 0;
  let checked = 0;
  const kvmFd = backend.begin();
  const t = new HandleTable(kvmFd);
  const names = new ObjectNames();
  opts.drainEvents?.();
  try {
    let index = 0;
    for (const step of s.steps) {
      if (step.kind === 'section') {
        outcomes.push({ kind: 'section', title: step.title });
        continue;
      }
      index++;
      const wantStats = step.expect?.kvm_stats !== undefined && opts.host !== undefined;
      const statsBefore = wantStats ? vcpuStats(opts.host!()) : undefined;
      const result = stepTrace(step.op, backend, t);
      const stats =
        statsBefore === undefined ? undefined : statsDelta(statsBefore, vcpuStats(opts.host!()));
      if (opts.host !== undefined) names.note(step.op, t, opts.host());
      const ev = opts.drainEvents?.();
      const sum = ev === undefined ? undefined : summarizeEvents(ev, names);
      const host = opts.host;
      const digest =
        host === undefined
          ? undefined
          : (): string | undefined => launchDigestOf(host(), t, step.op);
      const td =
        host === undefined ? undefined : (): TdState | string => tdStateOf(host(), t, step.op);
      const pkvm =
        host === undefined ? undefined : (): PkvmState | string => pkvmStateOf(host(), t, step.op);
      const rmp =
        host === undefined
          ? undefined
          : (): ((gpa: bigint) => string) | string => rmpStateOf(host(), t, step.op);
      const hugetlb =
        host === undefined
          ? undefined
          : (w: HugetlbExpectation): string[] => checkHugetlb(host(), t, step.op, w);
      const dmap =
        host === undefined ? undefined : (): DirectMapState => directMapStateOf(host(), t);
      const failures =
        step.expect === undefined
          ? []
          : checkExpectation(
              step.expect,
              result,
              sum?.effects,
              digest,
              stats,
              td,
              pkvm,
              rmp,
              hugetlb,
              dmap,
            );
      if (step.expect !== undefined) checked++;
      if (failures.length > 0) failed++;
      outcomes.push({
        kind: 'op',
        index,
        step,
        result,
        effects: sum?.effects ?? zeroEffects(),
        changes: sum?.changes ?? [],
        changeRecords: sum?.records ?? [],
        failures,
      });
    }
  } finally {
    backend.end();
  }
  return {
    scenario: s,
    backend: backend.name,
    outcomes,
    failedSteps: failed,
    checkedSteps: checked,
  };
}
