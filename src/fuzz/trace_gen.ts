/**
 * Random trace generator: a grammar of plausible VMM behaviour over the trace contract's ops.
 * Mostly valid calls on live handles, edge values often, invalid handles and raw values
 * sometimes. Deterministic for a seed. Used by the differential fuzzer (model vs /dev/kvm) and by
 * model-only fuzzing.
 *
 * Respects the contract and the real backend's safety limits: never uses slot 32763 or the code
 * page GPA 0xFFFFF000, keeps guest_memfd allocations and populated mappings small.
 */
import type {
  AddrArg,
  FdArg,
  GuestStep,
  ResolvedOp,
  ResultLine,
  TraceOp,
  TraceOpInput,
} from '../trace/types.js';
import { HandleTable, resolveOp, stepTrace } from '../trace/runner.js';
import { BackendRefusal } from '../trace/base_types.js';
import { ModelBackend } from '../backends/model.js';
import { guestLoad, guestStore } from '../core/arch/x86/kvm_run.js';
import { MMAP_ARENA_BASE, MMAP_ARENA_END, TASK_SIZE_MAX } from '../core/mm/host_layout.js';
import { OP_GENERATORS, OPS } from '../ops/registry.js';
import type { HostRange } from '../ops/spec.js';
import { genCreateProtectedVm, genCreateVm, genEnableCapOf } from '../ops/vm.js';
import { genCreateGmem, genFallocateAt, genFallocatePage, genGmemOf } from '../ops/guest_memfd.js';
import { genGmemSlot } from '../ops/memslots.js';
import { genAttributes2At, genAttributes2Of, genAttributesOf } from '../ops/attributes.js';
import { genRunOn, genSnpGuestRun, genTdxGuestRun, genVcpuOf } from '../ops/vcpu.js';
import { genPreFaultPage } from '../ops/pre_fault.js';
import { genAnonMap, genFileMap, genMadviseMap, genPeekAt, genPokeAt } from '../ops/host_mm.js';
import { genClose } from '../ops/fd.js';
import { genPipe, genVmspliceAt } from '../ops/pipe.js';
import { genDma, genMapDma, genUnmapDma, genVfioSetup } from '../ops/vfio.js';
import { genExitWait, genFork } from '../ops/process.js';
import {
  genOpenSev,
  genSnpInit2,
  genSnpLaunchFinish,
  genSnpLaunchStart,
  genSnpLaunchUpdate,
  genTdxCapabilities,
  genTdxFinalize,
  genTdxInitMemRegion,
  genTdxInitVcpu,
  genTdxInitVm,
} from '../ops/mem_enc.js';
import {
  CODE_GFN,
  MiB,
  PAGE,
  type GenOptions,
  type GenState,
  type GmemH,
  type MapH,
  type SlotH,
} from './gen_state.js';
import { Prng } from './prng.js';
import { pkvmWalk } from './pkvm_walk.js';
import { designWalk } from './design_walk.js';
import { separateMmWalk } from './separate_mm_walk.js';

export type { GenOptions } from './gen_state.js';

/** Host address ranges of an op that the real backend checks before running it. */
export function hostRanges(op: ResolvedOp): HostRange[] {
  const spec = OPS.get(op.op)!;
  return spec.hostRanges === undefined ? [] : spec.hostRanges(op);
}

/** Would the real backend run this range without checking the process's own memory? */
export function rangeIsSafe(x: { start: bigint; end: bigint }): boolean {
  if (x.end <= x.start) return true;
  if (x.start >= MMAP_ARENA_BASE && x.end <= MMAP_ARENA_END) return true;
  if (x.end <= 0x10000n) return true;
  return x.start >= TASK_SIZE_MAX;
}

export class TraceGenerator implements GenState<TraceOpInput> {
  readonly r: Prng;
  private n = 0;
  readonly vms: string[] = [];
  readonly gmems: GmemH[] = [];
  readonly maps: MapH[] = [];
  readonly vcpus: Array<{ name: string; vm: string }> = [];
  slots: SlotH[] = [];
  readonly fdNames: string[] = ['kvm'];
  readonly closed = new Set<string>();
  private out: TraceOp[] = [];
  private model?: ModelBackend;
  private table?: HandleTable;

  constructor(
    seed: number,
    readonly opts: GenOptions = {},
  ) {
    this.r = new Prng(seed);
    if (opts.feedback !== undefined) {
      this.model = new ModelBackend(opts.feedback, { events: false });
      this.table = new HandleTable(this.model.begin());
    }
  }

  name(prefix: string): string {
    return `${prefix}${this.n++}`;
  }

  /**
   * Emit an op. With feedback, run it on the lockstep model and return its result; ops the real
   * backend would refuse are dropped (undefined).
   */
  push(op: TraceOpInput): ResultLine | undefined {
    const full = { ...op, line: this.out.length + 1 } as TraceOp;
    if (this.model !== undefined && this.table !== undefined) {
      if (
        this.opts.realSafe === true &&
        !hostRanges(resolveOp(full, this.table)).every(rangeIsSafe)
      )
        return undefined;
      this.out.push(full);
      try {
        return stepTrace(full, this.model, this.table);
      } catch (e) {
        // An op the model refuses to run (where the kernel would go somewhere it does not
        // model, e.g. an RMP #PF in the kernel) is dropped like one the real backend refuses.
        if (!(e instanceof BackendRefusal)) throw e;
        this.out.pop();
        this.resync();
        return undefined;
      }
    }
    this.out.push(full);
    return { ok: true };
  }

  /**
   * After a refusal: the refused op may have changed the lockstep model before it stopped (a
   * guest program's first steps, an munmap whose file release was refused), so the model is
   * made again from the ops kept, and the feedback stays what a replay of the trace sees.
   */
  private resync(): void {
    const opts = this.opts.feedback!;
    this.model!.end();
    this.model = new ModelBackend(opts, { events: false });
    this.table = new HandleTable(this.model.begin());
    for (const op of this.out) stepTrace(op, this.model, this.table);
  }

  /** Generate a whole trace. */
  generate(): TraceOp[] {
    for (const _ of this.stream());
    return this.out;
  }

  /**
   * Generate the trace lazily, handing out each op as soon as it is made (a fuzzer runs it
   * before the next one is generated, so a long trace can be cut short at any op). The ops are
   * those `generate()` returns, in order. Closing the iterator early releases the lockstep model.
   */
  *stream(): Generator<TraceOp, void, undefined> {
    const count = this.opts.ops ?? 40;
    let sent = 0;
    try {
      // A plausible prologue most of the time: VM, guest_memfd, mapping.
      if (this.r.chance(0.9)) genCreateVm(this);
      while (sent < this.out.length) yield this.out[sent++]!;
      if (this.r.chance(0.7)) genCreateGmem(this);
      while (sent < this.out.length) yield this.out[sent++]!;
      let attempts = 0;
      while (this.out.length < count && attempts++ < count * 20) {
        this.step();
        while (sent < this.out.length) yield this.out[sent++]!;
      }
    } finally {
      this.model?.end();
    }
  }

  // -------------------------------------------------------------------------------------------
  // value pools

  page(maxPages: number): bigint {
    return BigInt(this.r.int(maxPages)) * PAGE;
  }

  edgeU64(): bigint {
    return this.r.pick([
      0n,
      1n,
      4095n,
      4096n,
      4097n,
      1n << 31n,
      1n << 32n,
      1n << 62n,
      1n << 63n,
      (1n << 64n) - 4096n,
      (1n << 64n) - 1n,
      -1n,
    ]);
  }

  vmFd(): FdArg {
    return this.r.weighted<FdArg>([
      [
        20,
        this.vms.length > 0
          ? { kind: 'handle', name: this.r.pick(this.vms) }
          : { kind: 'raw', value: -1n },
      ],
      [1, { kind: 'handle', name: 'kvm' }],
      [
        1,
        this.gmems.length > 0
          ? { kind: 'handle', name: this.r.pick(this.gmems).name }
          : { kind: 'raw', value: -1n },
      ],
      [
        1,
        this.vcpus.length > 0
          ? { kind: 'handle', name: this.r.pick(this.vcpus).name }
          : { kind: 'raw', value: 0n },
      ],
      [1, { kind: 'raw', value: this.r.pick([-1n, 0n, 1n, 999n]) }],
    ]);
  }

  anyFd(): FdArg {
    return this.r.weighted<FdArg>([
      [10, { kind: 'handle', name: this.r.pick(this.fdNames) }],
      [1, { kind: 'raw', value: this.r.pick([-1n, 0n, 2n, 1000n]) }],
    ]);
  }

  gmemFd(): FdArg {
    return this.r.weighted<FdArg>([
      [
        12,
        this.gmems.length > 0
          ? { kind: 'handle', name: this.r.pick(this.gmems).name }
          : { kind: 'raw', value: -1n },
      ],
      [2, this.anyFd()],
    ]);
  }

  mapAddr(extra = 8192n): { addr: AddrArg; map?: MapH } {
    // Raw addresses stay where nothing of the backend process lives (below 4 MiB: the node
    // binary is mapped at 0x400000), or beyond the user address space.
    if (this.maps.length === 0 || this.r.chance(0.05))
      return {
        addr: {
          kind: 'raw',
          value: this.r.pick([
            0n,
            4096n,
            0x10000n,
            0x20_0000n,
            (1n << 47n) - 4096n,
            1n << 47n,
            0xffff_ffff_ffff_f000n,
          ]),
        },
      };
    const m = this.r.pick(this.maps);
    const off = this.r.weighted<bigint>([
      [6, this.page(Number((m.len + extra) / PAGE) + 1)],
      [3, BigInt(this.r.int(Number(m.len < 65536n ? m.len : 65536n) + 64))],
      [1, m.len],
    ]);
    return { addr: { kind: 'handle', name: m.name, offset: off }, map: m };
  }

  gpa(): bigint {
    return this.r.weighted<bigint>([
      [10, BigInt(this.r.int(64)) * 0x10000n],
      [3, this.r.pick([0x10_0000n, 0xc000_0000n, 0x1_0000_0000n, 0x8000_0000n])],
      [
        1,
        this.r.pick([
          1n << 40n,
          1n << 51n,
          1n << 52n,
          (1n << 52n) - 4096n,
          123n,
          (1n << 64n) - 4096n,
          0xffff_e000n,
        ]),
      ],
    ]);
  }

  guestGpa(): bigint {
    if (this.slots.length > 0 && this.r.chance(0.8)) {
      const s = this.r.pick(this.slots);
      const span = s.size > 0n && s.size < 64n * MiB ? s.size : 8192n;
      const off = this.r.weighted<bigint>([
        [8, BigInt(this.r.int(Number(span)))],
        [2, span - BigInt(this.r.int(4))],
        [1, span + BigInt(this.r.int(8192))],
      ]);
      const g = s.gpa + off;
      // Stay off the contract's code page, including accesses that would straddle into it.
      if (g + 4n <= CODE_GFN * PAGE) return g;
    }
    return BigInt(this.r.int(0x4000_0000));
  }

  // -------------------------------------------------------------------------------------------
  // Walks across op families (each op is emitted by its family's generator)

  /**
   * A private-memory walk (SW_PROTECTED VM): a hybrid slot pairing guest_memfd with shared
   * memory, attribute conversions, guest accesses on both sides, punches and pre-faults — the
   * sequences where stage-2 invalidation matters.
   */
  /**
   * The in-place conversion series with per-guest_memfd attributes (kernel-uapi.md §6.1): a
   * SW_PROTECTED VM whose memslot's userspace_addr is an mmap of its own guest_memfd (MMAP, maybe
   * INIT_SHARED, maybe NO_DIRECT_MAP), then conversions with KVM_SET_MEMORY_ATTRIBUTES2 mixed with guest accesses,
   * VMM loads and stores through the mapping (SIGBUS on private indices), and hole punches.
   */
  private inplaceScenario(): void {
    const vm = genCreateProtectedVm(this, 'ivm');
    if (vm === undefined) return;
    this.fdNames.push(vm);
    const pages = BigInt(1 + this.r.int(8));
    const size = pages * PAGE;
    const g = this.name('ig');
    // GUEST_MEMFD_FLAG_NO_DIRECT_MAP in one walk of three (NO_DIRECT_MAP series, offered where
    // the in-place walk runs): folios leave the direct map when first mapped, pins are refused.
    const gflags = (this.r.chance(0.5) ? 3n : 1n) | (this.r.chance(0.33) ? 4n : 0n);
    genGmemOf(this, vm, size, gflags, g);
    const gm: GmemH = { name: g, vm, size, flags: gflags };
    this.gmems.push(gm);
    this.fdNames.push(g);
    const m = this.name('im');
    genFileMap(this, g, size, m);
    const map: MapH = { name: m, len: size, kind: 'gmem', gmem: gm };
    this.maps.push(map);
    const gpa = 0x4000_0000n + BigInt(this.r.int(8)) * 0x20_0000n;
    const slotId = BigInt(this.r.int(4));
    genGmemSlot(this, vm, slotId, gpa, size, m, g);
    this.slots.push({ vm, slot: slotId, gpa, size, gmem: gm, map });
    const cpu = this.name('icpu');
    genVcpuOf(this, vm, cpu);
    this.vcpus.push({ name: cpu, vm });
    this.fdNames.push(cpu);
    // Page references and the IOMMU (issue 14 items 2, 3): a pipe for vmsplice references and,
    // in one walk of two, a VFIO container whose IOMMU maps pages of the mapping by IOVA
    // (IOVA = the file offset), so conversions meet pins.
    let pipe: { rd: string; wr: string } | undefined;
    const vfio = this.r.chance(0.5) ? this.name('ivc') : undefined;
    const vfioOk =
      vfio !== undefined && genVfioSetup(this, vfio, this.name('ivg'), this.r.chance(0.25));
    const dma: bigint[] = [];
    // fork (issue 14 item 1, forked_accesses): in one walk of four a child shares the mapping
    // (and may map the file itself); its loads and stores go through its own page tables, which
    // the parent's conversions and punches must unmap.
    const child = this.r.chance(0.25) ? genFork(this) : undefined;
    let childMap = m;
    if (child !== undefined && this.r.chance(0.5)) {
      childMap = this.name('icm');
      genFileMap(this, g, size, childMap, child);
    }
    const n = 4 + this.r.int(10);
    for (let i = 0; i < n; i++) {
      const page = BigInt(this.r.int(Number(pages)));
      const pin = this.r.int(10);
      if (pin === 0) {
        // vmsplice one page into the pipe (pin_pages() of elevated_refcount).
        if (pipe === undefined) {
          const p = { rd: this.name('ipr'), wr: this.name('ipw') };
          if (genPipe(this, p.rd, p.wr)) pipe = p;
        }
        if (pipe !== undefined) genVmspliceAt(this, pipe.wr, m, page * PAGE, PAGE);
        continue;
      }
      if (pin === 1 && pipe !== undefined) {
        // unpin_pages(): close both ends.
        genClose(this, { kind: 'handle', name: pipe.wr });
        genClose(this, { kind: 'handle', name: pipe.rd });
        pipe = undefined;
        continue;
      }
      if (pin <= 3 && vfioOk) {
        // Map a page, unmap one the walk mapped (or any page), or DMA at a mapped IOVA.
        const k = this.r.int(4);
        const at = dma.length > 0 && this.r.chance(0.75) ? dma[this.r.int(dma.length)]! : page;
        if (k === 0) {
          genMapDma(this, vfio, m, page * PAGE, page * PAGE, PAGE);
          dma.push(page);
        } else if (k === 1) genUnmapDma(this, vfio, at * PAGE, PAGE);
        else genDma(this, vfio, at * PAGE, k === 2 ? null : this.r.bytes(4));
        continue;
      }
      const choice = this.r.int(8);
      if (choice <= 2) genAttributes2Of(this, g, size);
      else if (choice <= 4) {
        const steps: GuestStep[] = [];
        for (let j = 0; j < 1 + this.r.int(3); j++) {
          const a = gpa + BigInt(this.r.int(Number(size) - 4));
          steps.push(this.r.chance(0.5) ? guestStore(a, this.r.bytes(4)) : guestLoad(a, 4));
        }
        genRunOn(this, cpu, steps);
      } else if (choice === 5) genFallocatePage(this, g, page * PAGE);
      else {
        const byChild = child !== undefined && this.r.chance(0.5);
        const at = byChild ? childMap : m;
        const who = byChild ? child : undefined;
        if (choice === 6) genPokeAt(this, at, page * PAGE, this.r.bytes(4), who);
        else genPeekAt(this, at, page * PAGE, 4n, who);
      }
    }
    if (child !== undefined && this.r.chance(0.5)) genExitWait(this, child);
  }

  /**
   * HugeTLB-backed guest_memfd on the in-place conversion kernel (kernel-uapi.md §6.2): a
   * SW_PROTECTED VM whose memslot maps a HUGETLB | MMAP guest_memfd of a few 2M huge pages (one
   * walk in five: 1G huge pages, whose pool holds only four), sometimes with a create error
   * (size not a multiple of the huge page, an order without hstate, INIT_SHARED, or more than
   * the pool: ENOMEM), a memslot sometimes misaligned with the file (no huge guest mappings),
   * then conversions of single pages and of ranges (splits and merges), guest accesses, VMM
   * loads and stores through the mapping, vmsplice references, and huge-page fallocates and
   * punches (and unaligned ones: EINVAL). Accesses go to a few hot pages per huge page, so
   * conversions, faults and punches meet. Every size is a range: a 1G file costs what a 2M one
   * does.
   */
  private hugetlbScenario(): void {
    const r = this.r;
    const vm = genCreateProtectedVm(this, 'hvm');
    if (vm === undefined) return;
    this.fdNames.push(vm);
    const order = r.chance(0.2) ? 18 : 9;
    const huge = PAGE << BigInt(order);
    const hpages = BigInt(1 + r.int(order === 18 ? 2 : 4));
    let size = hpages * huge;
    let pageOrder = BigInt(order);
    let flags = 9n; // MMAP | HUGETLB
    if (r.chance(0.12)) {
      // A create the kernel refuses (then the walk ends).
      switch (r.int(5)) {
        case 0:
          size += PAGE; // not a multiple of the huge page: EINVAL
          break;
        case 1:
          pageOrder = r.pick([1n, 10n, 0n]); // no hstate (0: HUGETLB without order): EINVAL
          break;
        case 2:
          flags |= 2n; // INIT_SHARED: EINVAL
          break;
        case 3:
          flags = 1n; // page_order without HUGETLB: EINVAL
          break;
        default:
          size = (order === 18 ? 5n : 1025n) * huge; // more than the pool: ENOMEM
      }
    }
    const g = this.name('hg');
    const created = genGmemOf(this, vm, size, flags, g, pageOrder);
    if (created?.ok !== true) return;
    const gm: GmemH = { name: g, vm, size, flags };
    this.gmems.push(gm);
    this.fdNames.push(g);
    const m = this.name('hm');
    genFileMap(this, g, size, m);
    const map: MapH = { name: m, len: size, kind: 'gmem', gmem: gm };
    this.maps.push(map);
    // 1G-aligned, or (one in five) misaligned with the file by 2M (1G files) or 4K (2M files).
    const misalign = r.chance(0.2) ? (order === 18 ? 0x20_0000n : PAGE) : 0n;
    const gpa = 0x4000_0000n * BigInt(1 + r.int(4)) + misalign;
    const slotId = BigInt(r.int(4));
    genGmemSlot(this, vm, slotId, gpa, size, m, g);
    this.slots.push({ vm, slot: slotId, gpa, size, gmem: gm, map });
    const cpu = this.name('hcpu');
    genVcpuOf(this, vm, cpu);
    this.vcpus.push({ name: cpu, vm });
    this.fdNames.push(cpu);
    const hugeN = Number(hpages);
    const perHuge = 1 << order;
    // A few hot pages in each huge page: its first, second and last, and one at random.
    const hotIn = (h: number): number => h * perHuge + r.pick([0, 1, perHuge - 1, r.int(perHuge)]);
    const hot = (): bigint => BigInt(hotIn(r.int(hugeN)));
    let pipe: { rd: string; wr: string } | undefined;
    const n = 6 + r.int(14);
    for (let i = 0; i < n; i++) {
      const choice = r.int(12);
      if (choice <= 2) {
        // Convert one page, or a range inside one huge page or across two.
        const first = hot();
        const len =
          choice === 0 ? 1n : BigInt(1 + r.int(Math.min(perHuge * 2, Number(size / PAGE - first))));
        genAttributes2At(this, g, first * PAGE, len * PAGE, r.chance(0.5) ? 8n : 0n);
      } else if (choice <= 4) {
        const steps: GuestStep[] = [];
        for (let j = 0; j < 1 + r.int(3); j++) {
          const a = gpa + hot() * PAGE + BigInt(r.int(4092));
          steps.push(r.chance(0.5) ? guestStore(a, r.bytes(4)) : guestLoad(a, 4));
        }
        genRunOn(this, cpu, steps);
      } else if (choice === 5) genPokeAt(this, m, hot() * PAGE, r.bytes(4));
      else if (choice === 6) genPeekAt(this, m, hot() * PAGE, 4n);
      else if (choice === 7) {
        // A huge page allocated or punched (1 in 8 unaligned: EINVAL).
        const h = BigInt(r.int(hugeN)) * huge;
        const off = r.chance(0.125) ? PAGE : 0n;
        genFallocateAt(this, g, r.chance(0.6) ? 3n : 1n, h + off, huge);
      } else if (choice === 8) {
        // vmsplice a (shared) page: a reference that blocks going private and punching.
        if (pipe === undefined) {
          const p = { rd: this.name('hpr'), wr: this.name('hpw') };
          if (genPipe(this, p.rd, p.wr)) pipe = p;
        }
        if (pipe !== undefined) genVmspliceAt(this, pipe.wr, m, hot() * PAGE, PAGE);
      } else if (choice === 9 && pipe !== undefined) {
        genClose(this, { kind: 'handle', name: pipe.wr });
        genClose(this, { kind: 'handle', name: pipe.rd });
        pipe = undefined;
      } else genAttributes2Of(this, g, size);
    }
  }

  private privateScenario(): void {
    const vm = genCreateProtectedVm(this, 'pvm');
    if (vm === undefined) return;
    this.fdNames.push(vm);
    const pages = BigInt(2 + this.r.int(6));
    const size = pages * PAGE;
    const g = this.name('pg');
    const gflags = this.r.chance(0.7) ? 0n : 1n;
    genGmemOf(this, vm, size, gflags, g);
    const gm: GmemH = { name: g, vm, size, flags: gflags };
    this.gmems.push(gm);
    this.fdNames.push(g);
    const m = this.name('pm');
    genAnonMap(this, size, this.r.chance(0.5) ? 1n : 2n, m);
    const map: MapH = { name: m, len: size, kind: 'anon' };
    this.maps.push(map);
    const gpa = 0x4000_0000n + BigInt(this.r.int(8)) * 0x20_0000n;
    const slotId = BigInt(this.r.int(4));
    genGmemSlot(this, vm, slotId, gpa, size, m, g);
    this.slots.push({ vm, slot: slotId, gpa, size, gmem: gm, map });
    const cpu = this.name('pcpu');
    genVcpuOf(this, vm, cpu);
    this.vcpus.push({ name: cpu, vm });
    this.fdNames.push(cpu);
    const n = 3 + this.r.int(8);
    for (let i = 0; i < n; i++) {
      const page = BigInt(this.r.int(Number(pages)));
      const choice = this.r.int(7);
      if (choice <= 1) {
        genAttributesOf(
          this,
          vm,
          gpa + page * PAGE,
          BigInt(1 + this.r.int(Number(pages - page))) * PAGE,
          this.r.chance(0.6) ? 8n : 0n,
        );
      } else if (choice <= 3) {
        const steps: GuestStep[] = [];
        for (let j = 0; j < 1 + this.r.int(3); j++) {
          const a = gpa + BigInt(this.r.int(Number(size) - 4));
          steps.push(this.r.chance(0.5) ? guestStore(a, this.r.bytes(4)) : guestLoad(a, 4));
        }
        genRunOn(this, cpu, steps);
      } else if (choice === 4) {
        genFallocatePage(this, g, page * PAGE);
      } else if (choice === 5) {
        genPreFaultPage(this, cpu, gpa + page * PAGE);
      } else {
        genPokeAt(this, m, page * PAGE, this.r.bytes(4));
      }
    }
  }

  /**
   * A hugepage walk: a THP-backed (MADV_HUGEPAGE) 2 MiB-aligned hybrid slot where part of a 2 MiB
   * frame is made private before the guest touches its shared part.
   */
  private hugepageScenario(): void {
    const vm = genCreateProtectedVm(this, 'hvm');
    if (vm === undefined) return;
    const size = 4n * MiB;
    const m = this.name('hm');
    genAnonMap(this, size, 2n, m);
    genMadviseMap(this, m, size, 14n);
    const g = this.name('hg');
    genGmemOf(this, vm, size, 0n, g);
    const gpa = 0x8000_0000n;
    genGmemSlot(this, vm, 1n, gpa, size, m, g);
    const priv = BigInt(this.r.int(1024)) * PAGE;
    genAttributesOf(this, vm, gpa + priv, PAGE, 8n);
    const cpu = this.name('hcpu');
    genVcpuOf(this, vm, cpu);
    const frame = priv & ~(2n * MiB - 1n);
    let other = frame + BigInt(this.r.int(512)) * PAGE;
    if (other === priv) other = frame + ((priv - frame + PAGE) % (2n * MiB));
    genRunOn(this, cpu, [guestStore(gpa + other, this.r.bytes(4))]);
    if (this.r.chance(0.5)) genRunOn(this, cpu, [guestLoad(gpa + priv, 4)]);
  }

  /**
   * An SEV-SNP VMM walk (profiles with the sev-snp platform only): an SNP VM (type 4), /dev/sev,
   * a guest_memfd slot with PRIVATE attributes, (mostly) KVM_HC_MAP_GPA_RANGE exits enabled,
   * KVM_SEV_INIT2, SNP_LAUNCH_START, LAUNCH_UPDATEs
   * of every page type (valid and invalid, some over pages already added), vCPUs, LAUNCH_FINISH,
   * then pre-faults, more updates, guest runs, attribute changes, punches and closes — the
   * sequences where the RMP must follow guest_memfd.
   */
  private snpScenario(): void {
    const r = this.r;
    // Attributes in guest_memfd (the in-place conversion series): the VMM's guest_memfd is
    // MMAP | INIT_SHARED and mapped as the memslot's userspace_addr, it writes pages in place and
    // converts them with KVM_SET_MEMORY_ATTRIBUTES2, and LAUNCH_UPDATE mostly takes uaddr 0. A
    // profile fact: no PRNG draw decides it (the 6.18 walk draws as before).
    const inPlace = this.opts.feedback?.gmemMemoryAttributes === true;
    const vm = genCreateProtectedVm(this, 'svm', 4n);
    if (vm === undefined) return;
    this.fdNames.push(vm);
    const sev = this.name('sev');
    if (!genOpenSev(this, sev)) return;
    this.fdNames.push(sev);
    const pages = BigInt(2 + r.int(7));
    const size = pages * PAGE;
    const g = this.name('sg');
    const gflags = inPlace ? 3n : 0n;
    genGmemOf(this, vm, size, gflags, g);
    const gm: GmemH = { name: g, vm, size, flags: gflags };
    this.gmems.push(gm);
    this.fdNames.push(g);
    const m = this.name('sm');
    let map: MapH;
    if (inPlace) {
      genFileMap(this, g, size, m);
      map = { name: m, len: size, kind: 'gmem', gmem: gm };
    } else {
      genAnonMap(this, size, 2n, m);
      map = { name: m, len: size, kind: 'anon' };
    }
    this.maps.push(map);
    // The VMM's command structs and its staging pages for LAUNCH_UPDATE.
    const params = this.name('sp');
    genAnonMap(this, PAGE, 2n, params);
    const src = this.name('ss');
    genAnonMap(this, 2n * PAGE, 2n, src);
    const poke = (bytes: Uint8Array): void => genPokeAt(this, src, 0n, bytes);
    const gpa = 0x4000_0000n + BigInt(r.int(8)) * 0x20_0000n;
    const slotId = BigInt(r.int(4));
    genGmemSlot(this, vm, slotId, gpa, size, m, g);
    this.slots.push({ vm, slot: slotId, gpa, size, gmem: gm, map });
    // Pages the VMM wrote through its mapping while they were shared (and not punched since):
    // the ones it launches in place.
    const written = new Set<bigint>();
    const allWritten = (at: bigint, n: bigint): boolean => {
      for (let i = 0n; i < n; i++) if (!written.has(at + i)) return false;
      return true;
    };
    if (inPlace) {
      // The firmware written in place (mostly every page, while shared), then converted: the
      // whole file, or its first pages.
      for (let i = 0n; i < pages; i++)
        if (r.chance(0.8)) {
          genPokeAt(this, m, i * PAGE, r.bytes(8));
          written.add(i);
        }
      const n = r.chance(0.85) ? pages : BigInt(1 + r.int(Number(pages)));
      genAttributes2At(this, g, 0n, n * PAGE, 8n);
    } else if (r.chance(0.9)) genAttributesOf(this, vm, gpa, size, 8n);
    else genAttributesOf(this, vm, gpa, BigInt(1 + r.int(Number(pages))) * PAGE, 8n);
    // Most VMMs take the guest's page-state changes: KVM_CAP_EXIT_HYPERCALL for
    // KVM_HC_MAP_GPA_RANGE (12), without which KVM fails every PSC request itself.
    if (r.chance(0.8)) genEnableCapOf(this, vm, 201n, [r.chance(0.95) ? 1n << 12n : 0n]);
    const cpus: string[] = [];
    const vcpu = (): void => {
      const cpu = this.name('scpu');
      genVcpuOf(this, vm, cpu, BigInt(cpus.length));
      cpus.push(cpu);
      this.vcpus.push({ name: cpu, vm });
      this.fdNames.push(cpu);
    };
    if (r.chance(0.03)) vcpu();
    if (r.chance(0.97)) genSnpInit2(this, vm, sev, params);
    if (r.chance(0.97)) genSnpLaunchStart(this, vm, sev, params);
    const gfn0 = gpa / PAGE;
    const update = (): void => {
      const at = BigInt(r.int(Number(pages)));
      const n = r.chance(0.8) ? 1n : BigInt(1 + r.int(Number(pages - at)));
      const count = n < 2n ? n : 2n;
      const w = inPlace ? (allWritten(at, count) ? 'written' : 'unwritten') : undefined;
      genSnpLaunchUpdate(this, vm, sev, params, gfn0 + at, count, src, poke, w);
    };
    for (let i = 1 + r.int(Number(pages)); i > 0; i--) update();
    for (let i = r.int(3); i > 0; i--) vcpu();
    // A second LAUNCH_FINISH after one that measured VMSAs is refused by the model (the kernel
    // would write the guest-owned VMSA: an RMP #PF), so it follows only a failed one.
    let finished = r.chance(0.85) && genSnpLaunchFinish(this, vm, sev, params);
    for (let i = 2 + r.int(9); i > 0; i--) {
      const page = BigInt(r.int(Number(pages)));
      const choice = r.int(12);
      if (choice <= 2 && cpus.length > 0) {
        genPreFaultPage(this, r.pick(cpus), gpa + page * PAGE);
      } else if (choice <= 4) {
        genFallocatePage(this, g, page * PAGE);
        written.delete(page);
      } else if (choice === 5) {
        update();
      } else if (choice === 6 && cpus.length > 0) {
        // The guest: private and shared accesses, PVALIDATE, page-state changes (GHCB MSR
        // protocol and PSC descriptors).
        genSnpGuestRun(this, r.pick(cpus), gpa, Number(pages));
      } else if (choice === 7) {
        const a = r.chance(0.5) ? 8n : 0n;
        if (inPlace) genAttributes2At(this, g, page * PAGE, PAGE, a);
        else genAttributesOf(this, vm, gpa + page * PAGE, PAGE, a);
      } else if (choice === 8) {
        // In place: the VMM writes guest memory through its mapping (SIGBUS where private).
        if (inPlace && r.chance(0.5)) genPokeAt(this, m, page * PAGE, r.bytes(4));
        else genPokeAt(this, src, 0n, r.bytes(4));
      } else if (choice === 9 && r.chance(0.3)) {
        genClose(this, { kind: 'handle', name: g });
      } else if (choice === 10 && !finished && r.chance(0.5)) {
        finished = genSnpLaunchFinish(this, vm, sev, params);
      } else if (choice === 11 && r.chance(0.2)) {
        genClose(this, { kind: 'handle', name: r.chance(0.5) ? vm : sev });
      }
    }
  }

  /**
   * A TD walk (profiles with the tdx platform only): a TD (type 5), KVM_TDX_CAPABILITIES,
   * KVM_TDX_INIT_VM (valid, or refused and then mostly retried valid), one or two guest_memfd
   * memslots made PRIVATE (whole, partly, or with a misaligned request first), a split irqchip,
   * vCPUs with KVM_TDX_INIT_VCPU (sometimes missing or twice), pre-faults before finalize,
   * KVM_TDX_INIT_MEM_REGION with and without the measure flag (valid, over added pages,
   * unaligned, zero or wrapping lengths, outside the slots, with the shared bit, over shared
   * gfns, sources in the VMM's staging map or the slot's shared backing, unmapped), FINALIZE
   * (sometimes early, twice, or never), then guest runs (`genTdxGuestRun`: private and
   * shared-bit accesses, ACCEPT, MapGPA answered by the VMM's policy; KVM_HC_MAP_GPA_RANGE exits
   * mostly enabled), pre-faults (PAGE.AUG), attribute flips, punches, memslot deletes, more
   * commands and closes of the guest_memfd, vCPU and VM fds in varied order — the sequences where the S-EPT, the PAMT and KVM's mirror must follow guest_memfd.
   */
  private tdxScenario(): void {
    const r = this.r;
    // Attributes in guest_memfd (as in snpScenario): guest_memfds MMAP | INIT_SHARED (mostly),
    // each mapped as its memslot's userspace_addr, written in place and converted with
    // KVM_SET_MEMORY_ATTRIBUTES2; INIT_MEM_REGION mostly with source_addr 0. No draw decides it.
    const inPlace = this.opts.feedback?.gmemMemoryAttributes === true;
    const vm = genCreateProtectedVm(this, 'tvm', 5n);
    if (vm === undefined) return;
    this.fdNames.push(vm);
    // The VMM's command structs (KVM_TDX_CAPABILITIES takes 2056 bytes + its CPUID entries).
    const params = this.name('tp');
    genAnonMap(this, 2n * PAGE, 2n, params);
    // The staging pages INIT_MEM_REGION copies from.
    const srcPages = 4n;
    const src = this.name('ts');
    genAnonMap(this, srcPages * PAGE, 2n, src);
    const cpus: string[] = [];
    const vcpu = (): string => {
      const cpu = this.name('tcpu');
      genVcpuOf(this, vm, cpu, BigInt(cpus.length));
      cpus.push(cpu);
      this.vcpus.push({ name: cpu, vm });
      this.fdNames.push(cpu);
      return cpu;
    };
    if (r.chance(0.9)) genTdxCapabilities(this, vm, params);
    // A vCPU before INIT_VM is -EIO (rarely).
    if (r.chance(0.03)) vcpu();
    let init = r.chance(0.97)
      ? genTdxInitVm(this, vm, params)
      : { ok: false, sharedBit: 1n << 47n };
    if (!init.ok && r.chance(0.8)) init = genTdxInitVm(this, vm, params, true);
    const shared = init.sharedBit;
    // Memory: slot A, sometimes slot B (its own guest_memfd, or the same one further on),
    // adjacent to A or 2 MiB further.
    type TdSlot = { slot: bigint; gpa: bigint; pages: bigint; map: string; gmem: string };
    const tdSlots: TdSlot[] = [];
    const gmemFlags = inPlace ? (r.chance(0.9) ? 3n : 0n) : r.chance(0.1) ? 1n : 0n;
    const pagesA = BigInt(2 + r.int(7));
    const two = r.chance(0.3);
    const pagesB = two ? BigInt(1 + r.int(4)) : 0n;
    // In place each slot maps its own guest_memfd (from offset 0).
    const sameGmem = two && !inPlace && r.chance(0.4);
    const g = this.name('tg');
    const gsize = (sameGmem ? pagesA + pagesB : pagesA) * PAGE;
    genGmemOf(this, vm, gsize, gmemFlags, g);
    const gmA: GmemH = { name: g, vm, size: gsize, flags: gmemFlags };
    const gmemNames = [g];
    this.gmems.push(gmA);
    this.fdNames.push(g);
    const gpa = 0x4000_0000n + BigInt(r.int(8)) * 0x20_0000n;
    const slotA = BigInt(r.int(4));
    const addSlot = (slot: bigint, at: bigint, pages: bigint, gm: GmemH, offset: bigint): void => {
      const m = this.name('tm');
      let map: MapH;
      if (inPlace && (gm.flags & 1n) !== 0n) {
        genFileMap(this, gm.name, pages * PAGE, m);
        map = { name: m, len: pages * PAGE, kind: 'gmem', gmem: gm };
      } else {
        genAnonMap(this, pages * PAGE, 2n, m);
        map = { name: m, len: pages * PAGE, kind: 'anon' };
      }
      this.maps.push(map);
      const res = genGmemSlot(this, vm, slot, at, pages * PAGE, m, gm.name, offset);
      if (res?.ok !== true) return;
      tdSlots.push({ slot, gpa: at, pages, map: m, gmem: gm.name });
      this.slots.push({ vm, slot, gpa: at, size: pages * PAGE, gmem: gm, map });
    };
    addSlot(slotA, gpa, pagesA, gmA, 0n);
    if (two) {
      let gmB = gmA;
      if (!sameGmem) {
        const g2 = this.name('tg');
        genGmemOf(this, vm, pagesB * PAGE, gmemFlags, g2);
        gmB = { name: g2, vm, size: pagesB * PAGE, flags: gmemFlags };
        gmemNames.push(g2);
        this.gmems.push(gmB);
        this.fdNames.push(g2);
      }
      const at = r.chance(0.6) ? gpa + pagesA * PAGE : gpa + 0x20_0000n;
      addSlot(slotA + 1n, at, pagesB, gmB, sameGmem ? pagesA * PAGE : 0n);
    }
    // A page of the slots' GPA space (index into A then B), and its GPA.
    const total = pagesA + pagesB;
    const gpaOf = (page: bigint): bigint =>
      page < pagesA
        ? gpa + page * PAGE
        : (tdSlots[1]?.gpa ?? gpa + pagesA * PAGE) + (page - pagesA) * PAGE;
    const anyPage = (): bigint => BigInt(r.int(Number(total)));
    // PRIVATE attributes: over every slot (mostly), over part of them, or a misaligned request
    // (-EINVAL) first.
    // In place: the firmware written through the mappings while shared, then the slots converted
    // with KVM_SET_MEMORY_ATTRIBUTES2 (whole, mostly, or the first pages).
    // Pages (indexes into A then B) the VMM wrote through its mapping while shared and has not
    // punched since: the ones it populates in place.
    const written = new Set<bigint>();
    const allWritten = (at: bigint, n: bigint): boolean => {
      for (let i = 0n; i < n; i++) if (!written.has(at + i)) return false;
      return true;
    };
    if (inPlace) {
      for (const s of tdSlots) {
        const base = s.gpa === gpa ? 0n : pagesA;
        if (this.maps.find((x) => x.name === s.map)?.kind === 'gmem')
          for (let i = 0n; i < s.pages; i++)
            if (r.chance(0.7)) {
              genPokeAt(this, s.map, i * PAGE, r.bytes(8));
              written.add(base + i);
            }
        const n = r.chance(0.85) ? s.pages : BigInt(1 + r.int(Number(s.pages)));
        genAttributes2At(this, s.gmem, 0n, n * PAGE, 8n);
      }
    } else {
      const attrs = r.int(10);
      if (attrs === 0) genAttributesOf(this, vm, gpa + 0x800n, pagesA * PAGE, 8n);
      if (attrs <= 7) {
        for (const s of tdSlots) genAttributesOf(this, vm, s.gpa, s.pages * PAGE, 8n);
      } else {
        const at = anyPage();
        genAttributesOf(this, vm, gpaOf(at), BigInt(1 + r.int(Number(total - at))) * PAGE, 8n);
      }
    }
    // QEMU's kernel-irqchip=split (a TD vCPU needs it), sometimes with too many pins first.
    if (r.chance(0.05)) genEnableCapOf(this, vm, 121n, [49n]);
    if (r.chance(0.95)) genEnableCapOf(this, vm, 121n, [24n]);
    // Most VMMs take the guest's MapGPA requests: KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE
    // (without it KVM answers TDVMCALL_STATUS_SUBFUNC_UNSUPPORTED).
    if (r.chance(0.8)) genEnableCapOf(this, vm, 201n, [1n << 12n]);
    const initVcpu = (cpu: string): boolean => genTdxInitVcpu(this, cpu, params);
    for (let i = 1 + r.int(2); i > 0; i--) {
      const cpu = vcpu();
      if (r.chance(0.9)) initVcpu(cpu);
      if (r.chance(0.05)) initVcpu(cpu);
    }
    const cpuFd = (): string => (cpus.length > 0 && r.chance(0.97) ? r.pick(cpus) : vm);
    // Before finalize pre-faulting is refused (-EOPNOTSUPP).
    if (cpus.length > 0 && r.chance(0.3)) genPreFaultPage(this, r.pick(cpus), gpaOf(anyPage()));
    const added = new Set<bigint>();
    // GPAs of pages the guest may use: added by INIT_MEM_REGION or accepted (as the walk believes).
    const ready = new Set<bigint>();
    let finalized = false;
    const finalize = (): void => {
      if (genTdxFinalize(this, vm, params)) finalized = true;
    };
    const region = (): void => {
      const kind = r.weighted<number>([
        [10, 0], // valid
        [2, 1], // over an added page
        [1, 2], // unaligned GPA or source
        [1, 3], // zero or wrapping nr_pages
        [1, 4], // outside the slots
        [1, 5], // the shared bit
        [1, 6], // an unmapped source
      ]);
      let at = anyPage();
      if (kind === 1 && added.size > 0) at = r.pick([...added]);
      let n = r.chance(0.7) ? 1n : BigInt(1 + r.int(Math.min(3, Number(total - at))));
      let g0 = gpaOf(at);
      // The source: the staging map (mostly), or the slot's own shared backing.
      const slotMap = tdSlots.length > 0 && r.chance(0.2) ? r.pick(tdSlots) : undefined;
      let source: AddrArg = slotMap
        ? { kind: 'handle', name: slotMap.map, offset: 0n }
        : { kind: 'handle', name: src, offset: BigInt(r.int(Number(srcPages))) * PAGE };
      if (kind === 2) {
        if (r.chance(0.5)) g0 += BigInt(1 + r.int(4095));
        else source = { kind: 'handle', name: src, offset: BigInt(1 + r.int(4095)) };
      } else if (kind === 3) n = r.pick([0n, (1n << 64n) - 1n, 1n << 52n]);
      else if (kind === 4)
        g0 = r.pick([gpa - PAGE, gpaOf(total - 1n) + PAGE, 0x1_0000_0000n, gpa + 0x40_0000n]);
      else if (kind === 5) g0 |= shared;
      else if (kind === 6) source = { kind: 'raw', value: inPlace ? 4096n : r.pick([0n, 4096n]) };
      // In place: mostly source_addr 0, the guest_memfd page itself (v7 patch 21).
      if (inPlace && kind !== 2 && kind !== 6 && allWritten(at, n) && r.chance(0.6))
        source = { kind: 'raw', value: 0n };
      if (r.chance(0.4)) genPokeAt(this, src, 0n, r.bytes(8));
      const res = genTdxInitMemRegion(this, cpuFd(), params, source, g0, n);
      if (res?.ok === true && kind === 0)
        for (let i = 0n; i < n; i++) {
          added.add(at + i);
          ready.add(gpaOf(at + i));
        }
    };
    // FINALIZE sometimes before any page was added.
    if (r.chance(0.08)) finalize();
    for (let i = r.int(Number(total) + 1); i > 0; i--) region();
    if (r.chance(0.85)) finalize();
    if (r.chance(0.1)) finalize();
    for (let i = 3 + r.int(10); i > 0; i--) {
      const page = anyPage();
      const choice = r.int(18);
      if (choice <= 2 && cpus.length > 0) {
        // After finalize a private GPA is AUGed (PENDING); with the shared bit -EINVAL.
        genPreFaultPage(this, r.pick(cpus), gpaOf(page) | (r.chance(0.15) ? shared : 0n));
      } else if (choice === 3) {
        region();
      } else if (choice === 4) {
        const len = BigInt(1 + r.int(Number(total - page))) * PAGE;
        const a = r.chance(0.5) ? 0n : 8n;
        if (inPlace) {
          // The guest_memfd behind the page, clipped to its slot.
          const inA = page < pagesA;
          const off = inA ? page : page - pagesA;
          const room = (inA ? pagesA : pagesB) - off;
          const l = len < room * PAGE ? len : room * PAGE;
          genAttributes2At(this, inA ? g : (gmemNames[1] ?? g), off * PAGE, l, a);
        } else genAttributesOf(this, vm, gpaOf(page), len, a);
      } else if (choice === 5) {
        // Punch (mostly) or allocate the guest_memfd page behind it.
        if (page < pagesA || sameGmem || gmemNames.length < 2)
          genFallocatePage(this, g, page * PAGE);
        else genFallocatePage(this, gmemNames[1]!, (page - pagesA) * PAGE);
        written.delete(page);
      } else if (choice === 6) {
        if (!finalized || r.chance(0.3)) finalize();
      } else if (choice === 7 && tdSlots.length > 0 && r.chance(0.3)) {
        const s = r.pick(tdSlots);
        genGmemSlot(this, vm, s.slot, s.gpa, 0n, s.map, s.gmem);
        this.slots = this.slots.filter((x) => !(x.vm === vm && x.slot === s.slot));
        tdSlots.splice(tdSlots.indexOf(s), 1);
      } else if (choice === 8 && r.chance(0.3)) {
        genClose(this, { kind: 'handle', name: r.pick(gmemNames) });
      } else if (choice === 9 && cpus.length > 0 && r.chance(0.2)) {
        genClose(this, { kind: 'handle', name: r.pick(cpus) });
      } else if (choice === 10 && r.chance(0.15)) {
        genClose(this, { kind: 'handle', name: vm });
      } else if (choice === 11) {
        const s = tdSlots.length > 0 ? r.pick(tdSlots) : undefined;
        if (s !== undefined)
          genPokeAt(this, s.map, BigInt(r.int(Number(s.pages))) * PAGE, r.bytes(4));
        else genPokeAt(this, src, 0n, r.bytes(4));
      } else if (choice === 12) {
        // INIT_VCPU again (-EINVAL), or a vCPU created late (after finalize: -EIO).
        if (cpus.length > 0 && r.chance(0.6)) initVcpu(r.pick(cpus));
        else if (cpus.length < 2) vcpu();
      } else if (choice === 13 && r.chance(0.3)) {
        // Teardown: every fd of the TD closed, in a random order.
        const fds = [vm, ...cpus, ...gmemNames];
        while (fds.length > 0)
          genClose(this, { kind: 'handle', name: fds.splice(r.int(fds.length), 1)[0]! });
        return;
      } else if (choice >= 14 && cpus.length > 0) {
        // The guest: private and shared-bit accesses, ACCEPT, MapGPA (KVM_RUN of a TD vCPU).
        const s = tdSlots.length > 0 ? r.pick(tdSlots) : undefined;
        const res = genTdxGuestRun(
          this,
          r.pick(cpus),
          s?.gpa ?? gpa,
          Number(s?.pages ?? total),
          ready,
        );
        // As QEMU answers a KVM_EXIT_MEMORY_FAULT (kvm_convert_memory()): the page converted
        // to what the guest asked for (mostly), before the next run.
        const f = res !== undefined && 'exits' in res ? res.exits?.at(-1) : undefined;
        if (f?.reason === 'MEMORY_FAULT' && r.chance(0.7)) {
          const fg = f.gpa & ~(PAGE - 1n);
          const sl = inPlace
            ? tdSlots.find((x) => fg >= x.gpa && fg < x.gpa + x.pages * PAGE)
            : undefined;
          if (sl !== undefined) genAttributes2At(this, sl.gmem, fg - sl.gpa, PAGE, f.flags & 8n);
          else genAttributesOf(this, vm, fg, PAGE, f.flags & 8n);
        }
      }
    }
  }

  /** One step: a walk, or a generator of some op family picked by weight. */
  private step(): void {
    // SEV-SNP walks only where the profile has the platform (no PRNG draw elsewhere).
    if (this.opts.feedback?.parts.platform === 'sev-snp' && this.r.chance(0.12)) {
      this.snpScenario();
      return;
    }
    // TD walks only where the profile has the tdx platform (no PRNG draw elsewhere).
    if (this.opts.feedback?.parts.platform === 'tdx' && this.r.chance(0.12)) {
      this.tdxScenario();
      return;
    }
    // pKVM walks only where the profile has the pkvm platform (no PRNG draw elsewhere). Most of
    // the generic generators' ops are x86 ones arm64 answers -EINVAL, so the walks take most
    // of a pKVM trace.
    if (this.opts.feedback?.parts.platform === 'pkvm' && this.r.chance(0.3)) {
      pkvmWalk(this);
      return;
    }
    // design-2020-separate-mm walks only on that design's profile (no PRNG draw elsewhere).
    if (this.opts.feedback?.design === 'separate-mm' && this.r.chance(0.3)) {
      separateMmWalk(this);
      return;
    }
    // A historical design's walks only on its profile (no PRNG draw elsewhere): most of what
    // the generic generators make is 6.18 uAPI the design compiled out.
    if (
      this.opts.feedback?.design !== undefined &&
      this.opts.feedback.design !== 'separate-mm' &&
      this.r.chance(0.3)
    ) {
      designWalk(this);
      return;
    }
    // In-place conversion walks only where attributes live in guest_memfd (no PRNG draw
    // elsewhere).
    if (this.opts.feedback?.gmemMemoryAttributes === true && this.r.chance(0.06)) {
      // HugeTLB files on kernels that have them (one in three in-place walks).
      if (this.opts.feedback.gmemHugetlb !== undefined && this.r.chance(0.35))
        this.hugetlbScenario();
      else this.inplaceScenario();
      return;
    }
    if (this.opts.privateMemory === true && this.r.chance(0.08)) {
      if (this.r.chance(0.25)) this.hugepageScenario();
      else this.privateScenario();
      return;
    }
    this.r.weighted(OP_GENERATORS)(this);
  }
}

/** Generate one trace for a seed. */
export function generateTrace(seed: number, opts: GenOptions = {}): TraceOp[] {
  return new TraceGenerator(seed, opts).generate();
}
