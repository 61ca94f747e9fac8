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
import { ModelBackend } from '../backends/model.js';
import type { KernelProfile } from '../core/profiles/profile.js';
import { MMAP_ARENA_BASE, MMAP_ARENA_END, TASK_SIZE_MAX } from '../core/mm/host_layout.js';
import { Prng } from './prng.js';

const MiB = 1n << 20n;
const PAGE = 4096n;
const CODE_GFN = 0xfffffn;

/** Before any VM exists the generator still issues VM ioctls: on fd -1 (a closed fd). */
const NO_VM = 'vm_none';
function vmArg(vm: string): FdArg {
  return vm === NO_VM ? { kind: 'raw', value: -1n } : { kind: 'handle', name: vm };
}

type GmemH = { name: string; vm: string; size: bigint; flags: bigint };
type MapH = { name: string; len: bigint; kind: 'anon' | 'gmem' | 'other'; gmem?: GmemH };
type SlotH = { vm: string; slot: bigint; gpa: bigint; size: bigint; gmem?: GmemH; map?: MapH };

export type GenOptions = {
  /** Allow VM types and attribute values that only a private-memory profile accepts. */
  readonly privateMemory?: boolean;
  /** Number of ops (default 40). */
  readonly ops?: number;
  /**
   * Profile of the lockstep model that tells the generator which ops succeeded (so later ops
   * use live handles) — default: no feedback.
   */
  readonly feedback?: KernelProfile;
  /**
   * Only emit ops the real backend runs (no raw address ranges over the process's memory).
   * Needs `feedback`: the ranges are checked on the resolved op.
   */
  readonly realSafe?: boolean;
};

/** Host address ranges of an op that the real backend checks before running it. */
export function hostRanges(op: ResolvedOp): Array<{ start: bigint; end: bigint }> {
  const r = (a: bigint, len: bigint): { start: bigint; end: bigint } => ({
    start: a,
    end: a + ((len + 4095n) & ~4095n),
  });
  switch (op.op) {
    case 'munmap':
    case 'mprotect':
    case 'madvise':
      return [r(op.addr, BigInt.asUintN(64, op.length))];
    case 'peek':
      return [{ start: op.addr, end: op.addr + BigInt.asUintN(64, op.len) }];
    case 'poke':
      return [{ start: op.addr, end: op.addr + BigInt(op.bytes.length) }];
    case 'KVM_SET_USER_MEMORY_REGION':
    case 'KVM_SET_USER_MEMORY_REGION2':
      return [
        { start: op.userspace_addr, end: op.userspace_addr + BigInt.asUintN(64, op.memory_size) },
      ];
    default:
      return [];
  }
}

/** Would the real backend run this range without checking the process's own memory? */
export function rangeIsSafe(x: { start: bigint; end: bigint }): boolean {
  if (x.end <= x.start) return true;
  if (x.start >= MMAP_ARENA_BASE && x.end <= MMAP_ARENA_END) return true;
  if (x.end <= 0x10000n) return true;
  return x.start >= TASK_SIZE_MAX;
}

export class TraceGenerator {
  private readonly r: Prng;
  private n = 0;
  private vms: string[] = [];
  private gmems: GmemH[] = [];
  private maps: MapH[] = [];
  private vcpus: Array<{ name: string; vm: string }> = [];
  private slots: SlotH[] = [];
  private fdNames: string[] = ['kvm'];
  private closed = new Set<string>();
  private out: TraceOp[] = [];
  private readonly model?: ModelBackend;
  private readonly table?: HandleTable;

  constructor(
    seed: number,
    private readonly opts: GenOptions = {},
  ) {
    this.r = new Prng(seed);
    if (opts.feedback !== undefined) {
      this.model = new ModelBackend(opts.feedback, { events: false });
      this.table = new HandleTable(this.model.begin());
    }
  }

  private name(prefix: string): string {
    return `${prefix}${this.n++}`;
  }

  /**
   * Emit an op. With feedback, run it on the lockstep model and return its result; ops the real
   * backend would refuse are dropped (undefined).
   */
  private push(op: TraceOpInput): ResultLine | undefined {
    const full = { ...op, line: this.out.length + 1 } as TraceOp;
    if (this.model !== undefined && this.table !== undefined) {
      if (
        this.opts.realSafe === true &&
        !hostRanges(resolveOp(full, this.table)).every(rangeIsSafe)
      )
        return undefined;
      this.out.push(full);
      return stepTrace(full, this.model, this.table);
    }
    this.out.push(full);
    return { ok: true };
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
      if (this.r.chance(0.9)) this.createVm();
      while (sent < this.out.length) yield this.out[sent++]!;
      if (this.r.chance(0.7)) this.createGmem();
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

  private page(maxPages: number): bigint {
    return BigInt(this.r.int(maxPages)) * PAGE;
  }

  private edgeU64(): bigint {
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

  private gmemSize(): bigint {
    return this.r.weighted<bigint>([
      [6, BigInt(1 + this.r.int(8)) * PAGE],
      [3, BigInt(1 + this.r.int(4)) * 2n * MiB],
      [1, this.r.pick([0n, 1n, 4095n, 4097n, 1n << 62n, 1n << 63n, -4096n, 1n << 40n])],
    ]);
  }

  private vmFd(): FdArg {
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

  private anyFd(): FdArg {
    return this.r.weighted<FdArg>([
      [10, { kind: 'handle', name: this.r.pick(this.fdNames) }],
      [1, { kind: 'raw', value: this.r.pick([-1n, 0n, 2n, 1000n]) }],
    ]);
  }

  private gmemFd(): FdArg {
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

  private mapAddr(extra = 8192n): { addr: AddrArg; map?: MapH } {
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

  // -------------------------------------------------------------------------------------------
  // ops

  private createVm(): void {
    const name = this.name('vm');
    const type = this.r.weighted<bigint>([
      [12, 0n],
      [this.opts.privateMemory === true ? 8 : 1, 1n],
      [1, this.r.pick([2n, 3n, 4n, 5n, 6n, 255n, -1n])],
    ]);
    const res = this.push({
      op: 'KVM_CREATE_VM',
      fd: { kind: 'handle', name: 'kvm' },
      type,
      as: name,
    });
    if (res === undefined || (!res.ok && this.r.chance(0.9))) return;
    this.vms.push(name);
    this.fdNames.push(name);
  }

  private createGmem(): void {
    const name = this.name('g');
    const vm = this.vms.length > 0 ? this.r.pick(this.vms) : NO_VM;
    const size = this.gmemSize();
    const flags = this.r.weighted<bigint>([
      [4, 3n],
      [3, 1n],
      [2, 0n],
      [1, 2n],
      [1, this.r.pick([4n, 8n, 7n, 1n << 63n, 1n << 32n])],
    ]);
    const res = this.push({
      op: 'KVM_CREATE_GUEST_MEMFD',
      vm: this.r.chance(0.95) ? vmArg(vm) : this.vmFd(),
      size,
      flags,
      as: name,
    });
    if (res === undefined || (!res.ok && this.r.chance(0.9))) return;
    this.gmems.push({ name, vm, size, flags });
    this.fdNames.push(name);
  }

  private mmap(): void {
    const name = this.name('m');
    let fd: FdArg | null;
    let kind: MapH['kind'];
    let gm: GmemH | undefined;
    let len: bigint;
    if (this.gmems.length > 0 && this.r.chance(0.6)) {
      gm = this.r.pick(this.gmems);
      fd = { kind: 'handle', name: gm.name };
      kind = 'gmem';
      const s = gm.size > 0n && gm.size <= 64n * MiB ? gm.size : 8192n;
      len = this.r.weighted<bigint>([
        [6, s],
        [2, s * 2n],
        [2, BigInt(1 + this.r.int(4)) * PAGE],
        [1, this.r.pick([0n, 1n, 4097n])],
      ]);
    } else if (this.vcpus.length > 0 && this.r.chance(0.15)) {
      // The vCPU's kvm_run area (3 pages: run, PIO data, coalesced MMIO ring).
      fd = { kind: 'handle', name: this.r.pick(this.vcpus).name };
      kind = 'other';
      len = this.r.pick([4096n, 8192n, 12288n, 16384n]);
    } else if (this.r.chance(0.85)) {
      fd = null;
      kind = 'anon';
      len = this.r.weighted<bigint>([
        [6, BigInt(1 + this.r.int(8)) * PAGE],
        [3, 2n * MiB * BigInt(1 + this.r.int(2))],
        [1, this.r.pick([0n, 1n, 1n << 40n, 1n << 46n, 1n << 47n])],
      ]);
    } else {
      fd = this.anyFd();
      kind = 'other';
      len = BigInt(1 + this.r.int(3)) * PAGE;
    }
    const prot = BigInt(
      this.r.weighted<number>([
        [10, 3],
        [2, 1],
        [1, 0],
        [1, 7],
        [1, 4],
        [1, 2],
      ]),
    );
    let flags = BigInt(
      this.r.weighted<number>([
        [12, 1],
        [4, 2],
        [1, 3],
        [1, 0],
        [1, 8],
      ]),
    );
    // NORESERVE, POPULATE, ANONYMOUS, FIXED, GROWSDOWN, LOCKED, STACK, HUGETLB (with NORESERVE).
    if (this.r.chance(0.1))
      flags |= this.r.pick([
        0x4000n,
        0x8000n,
        0x20n,
        0x10n,
        0x100n,
        0x2000n,
        0x20000n,
        0x40000n,
        0x44000n,
      ]);
    // Keep populated mappings small: MAP_POPULATE or MAP_LOCKED on big lengths would allocate
    // real memory (and the real backend refuses either above 1 GiB).
    if ((flags & 0xa000n) !== 0n && len > 4n * MiB) flags &= ~0xa000n;
    const offset = this.r.weighted<bigint>([
      [12, 0n],
      [2, this.page(4)],
      [1, 123n],
      [1, -4096n],
    ]);
    const res = this.push({ op: 'mmap', fd, length: len, prot, flags, offset, as: name });
    // A failed mmap leaves its handle at address 0: keep it only rarely (with small offsets).
    if (res === undefined || (!res.ok && this.r.chance(0.95))) return;
    this.maps.push({
      name,
      len: res.ok ? (len === 0n ? 4096n : len) : 4096n,
      kind,
      ...(gm ? { gmem: gm } : {}),
    });
  }

  private slotId(): bigint {
    return this.r.weighted<bigint>([
      [12, BigInt(this.r.int(6))],
      [2, 10n],
      [
        1,
        this.r.pick([32762n, 32764n, 32767n, 65536n, 65537n, 0xffffn, 0xffff_ffffn, 0x8000_0000n]),
      ],
    ]);
  }

  private gpa(): bigint {
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

  private region(v2: boolean): void {
    const vm = this.vms.length > 0 ? this.r.pick(this.vms) : NO_VM;
    const slot = this.slotId();
    const existing = this.slots.filter((s) => s.vm === vm);
    // Often act on an existing slot: delete, move, re-set, flags-only.
    if (existing.length > 0 && this.r.chance(0.35)) {
      const s = this.r.pick(existing);
      const mode = this.r.pick(['delete', 'delete', 'move', 'move', 'same', 'flags'] as const);
      const size = mode === 'delete' ? 0n : s.size;
      // A move wraps like the u64 field it fills.
      const gpa = mode === 'move' ? BigInt.asUintN(64, s.gpa + 0x100_0000n) : s.gpa;
      let flags = s.gmem ? 4n : 0n;
      if (mode === 'flags') flags ^= 1n;
      const ua: AddrArg = s.map
        ? { kind: 'handle', name: s.map.name, offset: 0n }
        : { kind: 'raw', value: 0n };
      this.emitRegion(
        v2 || s.gmem !== undefined,
        vm,
        s.slot,
        flags,
        gpa,
        size,
        ua,
        s.gmem ? { kind: 'handle', name: s.gmem.name } : { kind: 'raw', value: -1n },
        0n,
      );
      if (mode === 'delete') this.slots = this.slots.filter((x) => x !== s);
      return;
    }
    const useGmem = v2 && this.gmems.length > 0 && this.r.chance(0.7);
    const gm = useGmem
      ? this.r.pick(this.gmems.filter((g) => g.vm === vm).concat(this.gmems))
      : undefined;
    let flags = useGmem ? 4n : 0n;
    if (this.r.chance(0.12)) flags |= this.r.pick([1n, 2n, 8n, 1n << 16n, 1n << 31n]);
    const size = this.r.weighted<bigint>([
      [10, gm && gm.size > 0n && gm.size < 64n * MiB ? gm.size : BigInt(1 + this.r.int(8)) * PAGE],
      [3, BigInt(1 + this.r.int(4)) * PAGE],
      [1, this.r.pick([0n, 4097n, 1n << 43n, (1n << 64n) - 4096n])],
    ]);
    let gpa = this.gpa();
    // Never cover the contract's code page.
    if (gpa <= CODE_GFN * PAGE && gpa + size > CODE_GFN * PAGE) gpa = 0x1_0000_0000n;
    const m = this.maps.length > 0 && this.r.chance(0.85) ? this.r.pick(this.maps) : undefined;
    // A raw userspace_addr of 0 only for slots within the first 64 KiB (never mapped:
    // mmap_min_addr); the real backend refuses larger ones, which would reach node's memory.
    const lowOk = size > 0n && size <= 0x1_0000n;
    const ua: AddrArg = this.r.weighted<AddrArg>([
      [
        10,
        m
          ? { kind: 'handle', name: m.name, offset: 0n }
          : { kind: 'raw', value: lowOk ? 0n : 1n << 47n },
      ],
      [2, { kind: 'raw', value: lowOk ? 0n : 0x7fff_ffff_f000n }],
      [
        1,
        m
          ? { kind: 'handle', name: m.name, offset: this.r.pick([4096n, 123n, 2n * MiB]) }
          : { kind: 'raw', value: 4096n },
      ],
      [
        1,
        {
          kind: 'raw',
          value: this.r.pick([
            0x7fff_ffff_f000n,
            1n << 47n,
            (1n << 64n) - 4096n,
            0x7fff_ffff_e000n,
          ]),
        },
      ],
    ]);
    const gfd: FdArg = gm
      ? this.r.chance(0.9)
        ? { kind: 'handle', name: gm.name }
        : this.anyFd()
      : this.anyFd();
    const off = this.r.weighted<bigint>([
      [10, 0n],
      [3, this.page(4)],
      [1, this.r.pick([123n, -4096n, 1n << 62n])],
    ]);
    const res = this.emitRegion(v2, vm, slot, flags, gpa, size, ua, gfd, off);
    if (res !== undefined && res.ok && slot !== 32763n && size > 0n)
      this.slots.push({
        vm,
        slot,
        gpa,
        size,
        ...(gm ? { gmem: gm } : {}),
        ...(m ? { map: m } : {}),
      });
  }

  private emitRegion(
    v2: boolean,
    vm: string,
    slot: bigint,
    flags: bigint,
    gpa: bigint,
    size: bigint,
    ua: AddrArg,
    gfd: FdArg,
    off: bigint,
  ): ResultLine | undefined {
    if (slot === 32763n) slot = 32762n;
    const base = {
      vm: vmArg(vm),
      slot,
      flags,
      guest_phys_addr: gpa,
      memory_size: size,
      userspace_addr: ua,
    };
    if (v2)
      return this.push({
        op: 'KVM_SET_USER_MEMORY_REGION2',
        ...base,
        guest_memfd: gfd,
        guest_memfd_offset: off,
      });
    return this.push({ op: 'KVM_SET_USER_MEMORY_REGION', ...base });
  }

  private guestGpa(): bigint {
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

  private run(): void {
    if (this.vcpus.length === 0) return this.createVcpu();
    const v = this.r.pick(this.vcpus);
    const steps: GuestStep[] = [];
    const n = 1 + this.r.int(5);
    for (let i = 0; i < n; i++) {
      const gpa = this.guestGpa();
      const size = this.r.pick([1, 2, 4, 4, 4] as const);
      if (this.r.chance(0.5)) steps.push({ kind: 'load', gpa, size });
      else steps.push({ kind: 'store', gpa, bytes: this.r.bytes(size) });
    }
    this.push({
      op: 'KVM_RUN',
      vcpu: this.r.chance(0.95) ? { kind: 'handle', name: v.name } : this.anyFd(),
      guest: steps,
    });
  }

  private createVcpu(): void {
    const vm = this.vms.length > 0 ? this.r.pick(this.vms) : NO_VM;
    const name = this.name('cpu');
    const id = this.r.weighted<bigint>([
      [10, BigInt(this.vcpus.length)],
      [2, 0n],
      [1, this.r.pick([4095n, 4096n, 1n << 32n, -1n])],
    ]);
    const res = this.push({
      op: 'KVM_CREATE_VCPU',
      vm: this.r.chance(0.95) ? vmArg(vm) : this.vmFd(),
      id,
      as: name,
    });
    if (res === undefined || (!res.ok && this.r.chance(0.9))) return;
    this.vcpus.push({ name, vm });
    this.fdNames.push(name);
  }

  private fallocate(): void {
    const g = this.gmems.length > 0 ? this.r.pick(this.gmems) : undefined;
    const size = g && g.size > 0n && g.size <= 64n * MiB ? g.size : 65536n;
    const mode = BigInt(
      this.r.weighted<number>([
        [8, 3],
        [5, 1],
        [1, 0],
        [1, 2],
        [1, this.r.pick([0x10, 0x11, 0x8, 0x20, 0x40, 0x41, 0x80, 7, 0x13, 0x100])],
      ]),
    );
    let offset = this.r.weighted<bigint>([
      [8, this.page(Number(size / PAGE) + 1)],
      [1, this.r.pick([1n, 4095n, -4096n, size, size + 4096n])],
    ]);
    let len = this.r.weighted<bigint>([
      [8, BigInt(1 + this.r.int(Math.max(1, Number(size / PAGE)))) * PAGE],
      [1, this.r.pick([0n, 1n, 4095n, -4096n, 1n << 62n, (1n << 63n) - 1n])],
    ]);
    // Safety: never ask the real kernel to allocate more than 64 MiB in one call.
    if ((mode & 2n) === 0n && len > 64n * MiB) len = 4096n;
    if ((mode & 2n) === 0n && offset > 1n << 40n) offset = 0n;
    this.push({
      op: 'fallocate',
      fd: g && this.r.chance(0.9) ? { kind: 'handle', name: g.name } : this.anyFd(),
      mode,
      offset,
      len,
    });
  }

  /** Read or write struct kvm_run fields through a vCPU mapping. */
  private runPage(): void {
    const m = this.maps.filter((x) => x.kind === 'other');
    if (m.length === 0) return this.peekPoke();
    const map = this.r.pick(m);
    const field = this.r.pick([
      { off: 0n, bytes: [0, 1] },
      { off: 1n, bytes: [0, 1] },
      { off: 8n, bytes: [0, 5] },
      { off: 16n, bytes: [0, 7, 15, 16] },
      { off: 288n, bytes: [0, 8] },
      { off: 296n, bytes: [0, 2, 4, 16] },
      { off: 40n, bytes: [0xaa] },
    ]);
    if (this.r.chance(0.5))
      this.push({
        op: 'peek',
        addr: {
          kind: 'handle',
          name: map.name,
          offset: this.r.pick([0n, 8n, 32n, 288n, 4096n, 8192n]),
        },
        len: BigInt(this.r.pick([1, 8, 16, 64])),
      });
    else
      this.push({
        op: 'poke',
        addr: { kind: 'handle', name: map.name, offset: field.off },
        bytes: Uint8Array.of(this.r.pick(field.bytes)),
      });
  }

  private peekPoke(): void {
    const { addr } = this.mapAddr();
    const n = this.r.pick([1, 2, 4, 8, 16]);
    if (this.r.chance(0.5)) this.push({ op: 'peek', addr, len: BigInt(n) });
    else this.push({ op: 'poke', addr, bytes: this.r.bytes(n) });
  }

  private memOp(): void {
    const { addr, map } = this.mapAddr(0n);
    const len = this.r.weighted<bigint>([
      [6, map ? map.len : 4096n],
      [4, BigInt(1 + this.r.int(4)) * PAGE],
      [1, map ? this.r.pick([0n, 1n, 4097n, (1n << 64n) - 4096n]) : this.r.pick([0n, 1n, 4097n])],
    ]);
    const which = this.r.weighted<string>([
      [4, 'madvise'],
      [2, 'munmap'],
      [2, 'mprotect'],
    ]);
    if (which === 'munmap') {
      this.push({ op: 'munmap', addr, length: len });
    } else if (which === 'mprotect') {
      this.push({
        op: 'mprotect',
        addr,
        length: len,
        prot: BigInt(this.r.pick([0, 1, 3, 7, 4, 8, 0x10, 0x100_0001, 0x100_0003, 0x200_0001])),
      });
    } else {
      const advice = BigInt(
        this.r.weighted<number>([
          [5, 4],
          [5, 9],
          [
            1,
            this.r.pick([
              0, 1, 2, 3, 8, 10, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 102, 103,
              999,
            ]),
          ],
        ]),
      );
      this.push({ op: 'madvise', addr, length: len, advice });
    }
  }

  private fileOp(): void {
    const fd = this.r.chance(0.6) ? this.gmemFd() : this.anyFd();
    const which = this.r.pick(['fstat', 'fstat', 'pread', 'pwrite', 'ftruncate', 'close'] as const);
    switch (which) {
      case 'fstat':
        this.push({ op: 'fstat', fd });
        break;
      case 'pread':
        this.push({
          op: 'pread',
          fd,
          len: BigInt(this.r.pick([0, 8, 64])),
          offset: this.r.pick([0n, 4096n, -1n]),
        });
        break;
      case 'pwrite':
        this.push({
          op: 'pwrite',
          fd,
          bytes: this.r.bytes(this.r.pick([1, 8])),
          offset: this.r.pick([0n, 4096n, -1n]),
        });
        break;
      case 'ftruncate':
        this.push({ op: 'ftruncate', fd, length: this.r.pick([0n, 4096n, 8192n, -1n]) });
        break;
      case 'close': {
        this.push({ op: 'close', fd });
        if (fd.kind === 'handle') this.closed.add(fd.name);
        break;
      }
    }
  }

  private checkExtension(): void {
    const cap = this.r.weighted<bigint>([
      [6, BigInt(this.r.pick([3, 10, 118, 201, 231, 232, 233, 234, 235, 236, 244]))],
      [3, BigInt(this.r.int(262))],
      [1, this.r.pick([-1n, 1n << 32n, 100000n])],
    ]);
    this.push({
      op: 'KVM_CHECK_EXTENSION',
      fd: this.r.chance(0.5) ? { kind: 'handle', name: 'kvm' } : this.anyFd(),
      cap,
    });
  }

  private setAttributes(): void {
    const attributes = this.r.weighted<bigint>([
      [5, 8n],
      [4, 0n],
      [1, this.r.pick([1n, 16n, 9n, 1n << 63n])],
    ]);
    const address = this.r.weighted<bigint>([
      [8, this.slots.length > 0 ? this.r.pick(this.slots).gpa : 0n],
      [2, this.gpa()],
    ]);
    const size = this.r.weighted<bigint>([
      [8, BigInt(1 + this.r.int(16)) * PAGE],
      [1, this.r.pick([0n, 4095n, 1n << 40n, (1n << 64n) - 4096n])],
    ]);
    this.push({
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
      vm: this.vmFd(),
      address,
      size,
      attributes,
      flags: this.r.chance(0.95) ? 0n : 1n,
    });
  }

  private preFault(): void {
    if (this.vcpus.length === 0) return this.createVcpu();
    const gpa = this.r.chance(0.8) ? this.guestGpa() & ~4095n : this.edgeU64();
    const size = this.r.weighted<bigint>([
      [8, BigInt(1 + this.r.int(4)) * PAGE],
      [1, this.edgeU64()],
    ]);
    this.push({
      op: 'KVM_PRE_FAULT_MEMORY',
      vcpu: { kind: 'handle', name: this.r.pick(this.vcpus).name },
      gpa,
      size,
      flags: this.r.chance(0.95) ? 0n : 1n,
    });
  }

  /** KVM_CREATE_VM of a SW_PROTECTED VM; its handle, or undefined when the profile refuses it. */
  private createProtectedVm(prefix: string): string | undefined {
    const vm = this.name(prefix);
    const r = this.push({
      op: 'KVM_CREATE_VM',
      fd: { kind: 'handle', name: 'kvm' },
      type: 1n,
      as: vm,
    });
    if (r?.ok !== true) return undefined;
    this.vms.push(vm);
    return vm;
  }

  /**
   * A private-memory walk (SW_PROTECTED VM): a hybrid slot pairing guest_memfd with shared
   * memory, attribute conversions, guest accesses on both sides, punches and pre-faults — the
   * sequences where stage-2 invalidation matters.
   */
  private privateScenario(): void {
    const vm = this.createProtectedVm('pvm');
    if (vm === undefined) return;
    this.fdNames.push(vm);
    const pages = BigInt(2 + this.r.int(6));
    const size = pages * PAGE;
    const g = this.name('pg');
    const gflags = this.r.chance(0.7) ? 0n : 1n;
    this.push({
      op: 'KVM_CREATE_GUEST_MEMFD',
      vm: { kind: 'handle', name: vm },
      size,
      flags: gflags,
      as: g,
    });
    const gm: GmemH = { name: g, vm, size, flags: gflags };
    this.gmems.push(gm);
    this.fdNames.push(g);
    const m = this.name('pm');
    this.push({
      op: 'mmap',
      fd: null,
      length: size,
      prot: 3n,
      flags: this.r.chance(0.5) ? 1n : 2n,
      offset: 0n,
      as: m,
    });
    const map: MapH = { name: m, len: size, kind: 'anon' };
    this.maps.push(map);
    const gpa = 0x4000_0000n + BigInt(this.r.int(8)) * 0x20_0000n;
    const slotId = BigInt(this.r.int(4));
    this.push({
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: { kind: 'handle', name: vm },
      slot: slotId,
      flags: 4n,
      guest_phys_addr: gpa,
      memory_size: size,
      userspace_addr: { kind: 'handle', name: m, offset: 0n },
      guest_memfd: { kind: 'handle', name: g },
      guest_memfd_offset: 0n,
    });
    this.slots.push({ vm, slot: slotId, gpa, size, gmem: gm, map });
    const cpu = this.name('pcpu');
    this.push({ op: 'KVM_CREATE_VCPU', vm: { kind: 'handle', name: vm }, id: 0n, as: cpu });
    this.vcpus.push({ name: cpu, vm });
    this.fdNames.push(cpu);
    const n = 3 + this.r.int(8);
    for (let i = 0; i < n; i++) {
      const page = BigInt(this.r.int(Number(pages)));
      const choice = this.r.int(7);
      if (choice <= 1) {
        this.push({
          op: 'KVM_SET_MEMORY_ATTRIBUTES',
          vm: { kind: 'handle', name: vm },
          address: gpa + page * PAGE,
          size: BigInt(1 + this.r.int(Number(pages - page))) * PAGE,
          attributes: this.r.chance(0.6) ? 8n : 0n,
          flags: 0n,
        });
      } else if (choice <= 3) {
        const steps: GuestStep[] = [];
        for (let j = 0; j < 1 + this.r.int(3); j++) {
          const a = gpa + BigInt(this.r.int(Number(size) - 4));
          steps.push(
            this.r.chance(0.5)
              ? { kind: 'store', gpa: a, bytes: this.r.bytes(4) }
              : { kind: 'load', gpa: a, size: 4 },
          );
        }
        this.push({ op: 'KVM_RUN', vcpu: { kind: 'handle', name: cpu }, guest: steps });
      } else if (choice === 4) {
        this.push({
          op: 'fallocate',
          fd: { kind: 'handle', name: g },
          mode: this.r.chance(0.7) ? 3n : 1n,
          offset: page * PAGE,
          len: PAGE,
        });
      } else if (choice === 5) {
        this.push({
          op: 'KVM_PRE_FAULT_MEMORY',
          vcpu: { kind: 'handle', name: cpu },
          gpa: gpa + page * PAGE,
          size: PAGE,
          flags: 0n,
        });
      } else {
        this.push({
          op: 'poke',
          addr: { kind: 'handle', name: m, offset: page * PAGE },
          bytes: this.r.bytes(4),
        });
      }
    }
  }

  /**
   * A hugepage walk: a THP-backed (MADV_HUGEPAGE) 2 MiB-aligned hybrid slot where part of a 2 MiB
   * frame is made private before the guest touches its shared part.
   */
  private hugepageScenario(): void {
    const vm = this.createProtectedVm('hvm');
    if (vm === undefined) return;
    const size = 4n * MiB;
    const m = this.name('hm');
    this.push({ op: 'mmap', fd: null, length: size, prot: 3n, flags: 2n, offset: 0n, as: m });
    this.push({
      op: 'madvise',
      addr: { kind: 'handle', name: m, offset: 0n },
      length: size,
      advice: 14n,
    });
    const g = this.name('hg');
    this.push({
      op: 'KVM_CREATE_GUEST_MEMFD',
      vm: { kind: 'handle', name: vm },
      size,
      flags: 0n,
      as: g,
    });
    const gpa = 0x8000_0000n;
    this.push({
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: { kind: 'handle', name: vm },
      slot: 1n,
      flags: 4n,
      guest_phys_addr: gpa,
      memory_size: size,
      userspace_addr: { kind: 'handle', name: m, offset: 0n },
      guest_memfd: { kind: 'handle', name: g },
      guest_memfd_offset: 0n,
    });
    const priv = BigInt(this.r.int(1024)) * PAGE;
    this.push({
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
      vm: { kind: 'handle', name: vm },
      address: gpa + priv,
      size: PAGE,
      attributes: 8n,
      flags: 0n,
    });
    const cpu = this.name('hcpu');
    this.push({ op: 'KVM_CREATE_VCPU', vm: { kind: 'handle', name: vm }, id: 0n, as: cpu });
    const frame = priv & ~(2n * MiB - 1n);
    let other = frame + BigInt(this.r.int(512)) * PAGE;
    if (other === priv) other = frame + ((priv - frame + PAGE) % (2n * MiB));
    this.push({
      op: 'KVM_RUN',
      vcpu: { kind: 'handle', name: cpu },
      guest: [{ kind: 'store', gpa: gpa + other, bytes: this.r.bytes(4) }],
    });
    if (this.r.chance(0.5))
      this.push({
        op: 'KVM_RUN',
        vcpu: { kind: 'handle', name: cpu },
        guest: [{ kind: 'load', gpa: gpa + priv, size: 4 }],
      });
  }

  private step(): void {
    if (this.opts.privateMemory === true && this.r.chance(0.08)) {
      if (this.r.chance(0.25)) this.hugepageScenario();
      else this.privateScenario();
      return;
    }
    const pick = this.r.weighted<() => void>([
      [2, () => this.createVm()],
      [4, () => this.createGmem()],
      [6, () => this.mmap()],
      [3, () => this.region(false)],
      [9, () => this.region(true)],
      [2, () => this.createVcpu()],
      [8, () => this.run()],
      [6, () => this.fallocate()],
      [8, () => this.peekPoke()],
      [2, () => this.runPage()],
      [5, () => this.memOp()],
      [4, () => this.fileOp()],
      [2, () => this.checkExtension()],
      [2, () => this.setAttributes()],
      [1, () => this.preFault()],
    ]);
    pick();
  }
}

/** Generate one trace for a seed. */
export function generateTrace(seed: number, opts: GenOptions = {}): TraceOp[] {
  return new TraceGenerator(seed, opts).generate();
}
