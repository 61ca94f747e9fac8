/**
 * The pKVM walk of the trace generator (profiles with the pkvm platform only; trace_gen.ts calls
 * it): one to three arm64 VMs, protected (KVM_VM_TYPE_ARM_PROTECTED) or not, on one host; their
 * memory (guest_memfd with MMAP, mostly INIT_SHARED, in gmem-only slots; anonymous VMM memory in
 * the non-protected VMs' slots, sometimes the same pages in two VMs' slots, sometimes another
 * VM's guest_memfd mapping); vCPUs with KVM_ARM_VCPU_INIT; then host, guest and teardown steps
 * interleaved: guest programs of loads, stores and HVCs (HYP_MEMINFO, MEM_SHARE, MEM_UNSHARE,
 * valid and invalid), the VMM reading and writing its mappings (donated, shared and unshared
 * pages), punches and allocations of guest_memfd pages, munmaps, memslot deletes and re-adds,
 * closes of vCPU, guest_memfd and VM fds, and whole teardowns in random orders — the sequences
 * where the hypervisor's page-state triple must follow KVM (platforms.md §3.3: share to
 * non-protected guests, donation to protected ones by their faults, the guest's share and
 * unshare, reclaim at teardown, forced reclaim when guest_memfd drops a donated page).
 *
 * Handles are named a* (avm, acpu, ag, am, aa): tests tell the walk's ops from the rest by them.
 * A non-protected VM's handles join the generator's pools (the generic generators act on them
 * between walks); a protected VM's stay the walk's own, which keeps to what the model represents
 * for a protected guest:
 * - its memory is guest_memfd (the later tree pins a protected guest's VMM pages; the model's mm
 *   has no pins, README "pKVM", known gap);
 * - no memslot delete or move once it has run [open question: the 2022 pKVM series returns
 *   -EPERM there (Fuad Tabba, "KVM: arm64: Do not allow memslot changes after first VM run under
 *   pKVM"); the model keeps the guest's pages and its record of them, which the stage-2 checks
 *   read as stale];
 * - guest_memfd never frees a page the guest shares with the host while the VM lives (no punch
 *   of it, the file's release last in a teardown): `__pkvm_host_force_reclaim_page_guest` takes
 *   back donated pages only (host NOPAGE), and the model has no pin that would keep a shared one.
 */
import type { AddrArg, FdArg, GuestStep, ResultLine, TraceOpInput } from '../trace/types.js';
import { guestLoad, guestStore } from '../core/arch/x86/kvm_run.js';
import { KVM_VM_TYPE_ARM_PROTECTED } from '../core/base/uapi_arm64.js';
import {
  ARM_SMCCC_VENDOR_HYP_KVM_HYP_MEMINFO_FUNC_ID as HYP_MEMINFO_ID,
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_SHARE_FUNC_ID as MEM_SHARE_ID,
  ARM_SMCCC_VENDOR_HYP_KVM_MEM_UNSHARE_FUNC_ID as MEM_UNSHARE_ID,
} from '../core/platform/pkvm/hyp.js';
import { genArmVcpuFinalize, genArmVcpuInit, type ArmFeature } from '../ops/arm64.js';
import { genClose } from '../ops/fd.js';
import { genFallocateAt, genGmemOf } from '../ops/guest_memfd.js';
import { genMmapOf, genMunmapAt, genPeekAt, genPokeAt } from '../ops/host_mm.js';
import { genRegionOf } from '../ops/memslots.js';
import { genRunOn, genVcpuOf } from '../ops/vcpu.js';
import { genCreateVmOf } from '../ops/vm.js';
import { PAGE, type GenState } from './gen_state.js';

type G = GenState<TraceOpInput>;

type PkMap = {
  readonly name: string;
  readonly pages: bigint;
  /** Some page is still mapped. */
  live: boolean;
  /** Pages unmapped one by one. */
  readonly gone: Set<bigint>;
};
type PkGmem = {
  readonly name: string;
  readonly pages: bigint;
  open: boolean;
  /** The VMM's mapping of the file (MAP_SHARED), if made. */
  map?: PkMap;
};
type PkSlot = {
  readonly slot: bigint;
  gpa: bigint;
  readonly pages: bigint;
  readonly gmem?: PkGmem;
  readonly map?: PkMap;
  live: boolean;
};
type PkCpu = {
  readonly name: string;
  open: boolean;
  init: boolean;
  /** KVM_RUN passes the vCPU checks (initialised; SVE finalized): it makes the hyp VM. */
  ready: boolean;
};
type PkVm = {
  readonly name: string;
  readonly prot: boolean;
  open: boolean;
  readonly cpus: PkCpu[];
  readonly slots: PkSlot[];
  readonly gmems: PkGmem[];
  /** GPAs of pages the guest shared with MEM_SHARE (as the walk believes: from the exits). */
  readonly shared: Set<bigint>;
  /** A KVM_RUN got past the vCPU checks (the hypervisor has the VM). */
  ran: boolean;
};

/** The vendor hypercalls' SMCCC function ids (x0 of the HVC). */
const HYP_MEMINFO = BigInt(HYP_MEMINFO_ID);
const MEM_SHARE = BigInt(MEM_SHARE_ID);
const MEM_UNSHARE = BigInt(MEM_UNSHARE_ID);
/** SMCCC_RET_SUCCESS as the HYPERCALL_RET exit shows x0 (8 bytes, little-endian). */
const X0_SUCCESS = '0000000000000000';

/** `struct kvm_vcpu_init` target `KVM_ARM_TARGET_GENERIC_V8`; the finalizable feature SVE. */
const GENERIC_V8 = 5n;
const SVE = 4n;
/** SMCCC ids the host answers (NOT_SUPPORTED in the model): MMIO_GUARD, PSCI_VERSION, PTP, 0. */
const OTHER_HVCS = [0xc6000007n, 0x84000000n, 0xc6000001n, 0n];
const SLOT_BASE = 0x4000_0000n;
const SLOT_STRIDE = 0x20_0000n;

const ok = (res: ResultLine | undefined): boolean => res !== undefined && 'ok' in res && res.ok;
const handle = (name: string): FdArg => ({ kind: 'handle', name });
const at = (map: string, offset: bigint): AddrArg => ({ kind: 'handle', name: map, offset });

export function pkvmWalk(g: G): void {
  const r = g.r;
  const vms: PkVm[] = [];
  // The VMM's anonymous memory behind non-protected VMs' slots (shared between VMs sometimes).
  const anon: PkMap[] = [];
  let slotIdx = 0;
  /** The VM and file behind each guest_memfd mapping. */
  const mapOwner = new Map<PkMap, { vm: PkVm; gm: PkGmem }>();

  const newMap = (
    fd: FdArg | null,
    pages: bigint,
    flags: bigint,
    prefix: string,
    pub: boolean,
  ): PkMap | undefined => {
    const name = g.name(prefix);
    if (!ok(genMmapOf(g, fd, pages * PAGE, flags, name))) return undefined;
    if (pub) g.maps.push({ name, len: pages * PAGE, kind: fd === null ? 'anon' : 'gmem' });
    return { name, pages, live: true, gone: new Set() };
  };

  const addSlot = (vm: PkVm, s: PkSlot): void => {
    const flags = s.gmem !== undefined ? 4n : 0n;
    const ua: AddrArg = s.map !== undefined ? at(s.map.name, 0n) : { kind: 'raw', value: 0n };
    const v2 = s.gmem !== undefined || r.chance(0.5);
    const gfd: FdArg = s.gmem !== undefined ? handle(s.gmem.name) : { kind: 'raw', value: -1n };
    const res = genRegionOf(g, v2, vm.name, s.slot, flags, s.gpa, s.pages * PAGE, ua, gfd);
    if (!ok(res)) return;
    s.live = true;
    if (!vm.slots.includes(s)) vm.slots.push(s);
    if (!vm.prot) g.slots.push({ vm: vm.name, slot: s.slot, gpa: s.gpa, size: s.pages * PAGE });
  };

  const deleteSlot = (vm: PkVm, s: PkSlot): void => {
    const res = genRegionOf(
      g,
      true,
      vm.name,
      s.slot,
      s.gmem !== undefined ? 4n : 0n,
      s.gpa,
      0n,
      s.map !== undefined ? at(s.map.name, 0n) : { kind: 'raw', value: 0n },
      s.gmem !== undefined ? handle(s.gmem.name) : { kind: 'raw', value: -1n },
    );
    if (ok(res)) {
      s.live = false;
      g.slots = g.slots.filter((x) => !(x.vm === vm.name && x.slot === s.slot));
    }
  };

  /** A guest_memfd slot: the file (MMAP, mostly INIT_SHARED), the VMM's mapping of it, the slot. */
  const gmemSlot = (vm: PkVm): void => {
    const pages = BigInt(2 + r.int(7));
    const flags = r.weighted<bigint>([
      [10, 3n], // MMAP | INIT_SHARED
      [6, 1n], // MMAP
      [1, 0n], // not gmem-only: the slot is -EINVAL on arm64
    ]);
    const name = g.name('ag');
    if (!ok(genGmemOf(g, vm.name, pages * PAGE, flags, name))) return;
    const gm: PkGmem = { name, pages, open: true };
    vm.gmems.push(gm);
    if (!vm.prot) {
      g.gmems.push({ name, vm: vm.name, size: pages * PAGE, flags });
      g.fdNames.push(name);
    }
    if ((flags & 1n) !== 0n && r.chance(0.85)) {
      const m = newMap(handle(name), pages, 1n, 'am', !vm.prot);
      if (m !== undefined) {
        gm.map = m;
        mapOwner.set(m, { vm, gm });
      }
    }
    const slot = BigInt(slotIdx++);
    let gpa = SLOT_BASE + slot * SLOT_STRIDE;
    // Rarely past the IPA size (-EFAULT).
    if (r.chance(0.03)) gpa = 1n << 48n;
    addSlot(vm, { slot, gpa, pages, gmem: gm, ...(gm.map ? { map: gm.map } : {}), live: false });
  };

  /**
   * An anonymous-memory slot of a non-protected VM: fresh VMM memory, the memory another VM's
   * slot uses (one host page in two VMs: the share count goes above 1), or another VM's
   * guest_memfd mapping.
   */
  const anonSlot = (vm: PkVm): void => {
    let m: PkMap | undefined;
    const other = vms.flatMap((v) =>
      v.gmems.filter((x) => x.map?.live === true).map((x) => x.map!),
    );
    const pick = r.int(10);
    if (pick < 4 && anon.some((x) => x.live)) m = r.pick(anon.filter((x) => x.live));
    else if (pick < 7 && other.length > 0) m = r.pick(other);
    else {
      m = newMap(null, BigInt(2 + r.int(7)), r.chance(0.7) ? 2n : 1n, 'aa', true);
      if (m !== undefined) anon.push(m);
    }
    if (m === undefined) return;
    const slot = BigInt(slotIdx++);
    addSlot(vm, { slot, gpa: SLOT_BASE + slot * SLOT_STRIDE, pages: m.pages, map: m, live: false });
  };

  const initCpu = (vm: PkVm, cpu: PkCpu): void => {
    const features = r.weighted<readonly ArmFeature[]>([
      [10, []],
      [5, ['PSCI_0_2']],
      [2, ['PSCI_0_2', 'PTRAUTH_ADDRESS', 'PTRAUTH_GENERIC']],
      [2, ['SVE']], // KVM_RUN is -EPERM until FINALIZE
      [1, ['POWER_OFF']], // not runnable: KVM_RUN ends with -EINTR
      // Refused: an unknown bit (-ENOENT), EL1_32BIT, HAS_EL2, half of PTRAUTH (-EINVAL).
      [1, r.pick<readonly ArmFeature[]>([[9], ['EL1_32BIT'], ['HAS_EL2'], ['PTRAUTH_ADDRESS']])],
    ]);
    const target = r.chance(0.03) ? 0n : GENERIC_V8;
    const res = genArmVcpuInit(g, cpu.name, target, features);
    if (!ok(res)) return;
    if (!cpu.init) cpu.ready = !features.includes('SVE');
    cpu.init = true;
    if (features.includes('SVE') && r.chance(0.6) && ok(genArmVcpuFinalize(g, cpu.name, SVE)))
      cpu.ready = true;
    void vm;
  };

  const newCpu = (vm: PkVm): void => {
    const name = g.name('acpu');
    if (!ok(genVcpuOf(g, vm.name, name, BigInt(vm.cpus.length)))) return;
    const cpu: PkCpu = { name, open: true, init: false, ready: false };
    vm.cpus.push(cpu);
    if (!vm.prot) {
      g.vcpus.push({ name, vm: vm.name });
      g.fdNames.push(name);
    }
    if (r.chance(0.95)) initCpu(vm, cpu);
  };

  const newVm = (): void => {
    const name = g.name('avm');
    const prot = r.chance(0.6);
    let type = prot ? KVM_VM_TYPE_ARM_PROTECTED : 0n;
    // The IPA size byte (ignored under pKVM), rarely an undefined bit (-EINVAL).
    if (r.chance(0.3)) type |= r.pick([32n, 40n, 44n, 48n]);
    if (r.chance(0.02)) type |= 1n << 30n;
    if (!ok(genCreateVmOf(g, type, name))) return;
    if (!prot) {
      g.vms.push(name);
      g.fdNames.push(name);
    }
    const vm: PkVm = {
      name,
      prot,
      open: true,
      cpus: [],
      slots: [],
      gmems: [],
      shared: new Set(),
      ran: false,
    };
    vms.push(vm);
    // Protected VMs get guest_memfd slots (the model has no pins for VMM memory donated to a
    // protected guest); non-protected ones either kind.
    const nSlots = 1 + r.int(2);
    for (let i = 0; i < nSlots; i++) {
      if (prot || r.chance(0.5)) gmemSlot(vm);
      else anonSlot(vm);
    }
    for (let i = r.chance(0.3) ? 2 : 1; i > 0; i--) newCpu(vm);
  };

  /** A GPA in one of `vm`'s slots: page `p` (or just past the end, rarely) at `off`. */
  const slotGpa = (vm: PkVm, off: bigint): bigint | undefined => {
    const live = vm.slots.filter((s) => s.live);
    if (live.length === 0) return undefined;
    const s = r.pick(live);
    // A slot on another VM's guest_memfd mapping: often a page that VM's guest shares (the
    // host's share with this guest meets the other guest's ownership).
    const o = s.map === undefined ? undefined : mapOwner.get(s.map);
    if (o !== undefined && o.vm !== vm && r.chance(0.5)) {
      const base = slotOf(o.vm, o.gm)?.gpa;
      const mine = base === undefined ? [] : [...o.vm.shared].filter((x) => x >= base);
      const idx = mine.map((x) => (x - base!) / PAGE).filter((i) => i < s.pages);
      if (idx.length > 0) return s.gpa + r.pick(idx) * PAGE + off;
    }
    const p = r.chance(0.05) ? s.pages : BigInt(r.int(Number(s.pages)));
    return s.gpa + p * PAGE + off;
  };

  /** A guest program of 1-4 steps: loads, stores (never across a page) and vendor HVCs. */
  const guestRun = (vm: PkVm, cpu: PkCpu): void => {
    const steps: GuestStep[] = [];
    const hvc = (nr: bigint, a1 = 0n, a2 = 0n): GuestStep => ({
      kind: 'hypercall',
      nr,
      args: [a1, a2, 0n],
    });
    const shared = [...vm.shared];
    for (let i = 1 + r.int(4); i > 0; i--) {
      const kind = r.weighted<number>([
        [8, 0], // load or store
        [3, 1], // MEM_SHARE
        [2, 2], // MEM_UNSHARE
        [1, 3], // HYP_MEMINFO
        [1, 4], // another SMCCC call
      ]);
      if (kind === 0) {
        const size = r.pick([1, 2, 4] as const);
        const off = BigInt(r.int(4096 / 4)) * 4n;
        const gpa = r.chance(0.95) ? slotGpa(vm, off) : undefined;
        const a = gpa ?? 0x1000_0000n + off; // no slot there: an MMIO exit
        steps.push(r.chance(0.5) ? guestStore(a, r.bytes(size)) : guestLoad(a, size));
      } else if (kind === 1) {
        const gpa = r.weighted<() => bigint | undefined>([
          [8, () => slotGpa(vm, 0n)], // a page of the guest's (donated already, or not yet)
          [3, () => (shared.length > 0 ? r.pick(shared) : slotGpa(vm, 0n))], // shared already
          [1, () => slotGpa(vm, BigInt(1 + r.int(4095)))], // unaligned
          [1, () => r.pick([1n << 48n, 1n << 52n, 0x1000_0000n, (1n << 64n) - 4096n])], // outside
        ])();
        steps.push(hvc(MEM_SHARE, gpa ?? 0n, r.chance(0.05) ? r.pick([1n, PAGE]) : 0n));
      } else if (kind === 2) {
        const gpa = r.weighted<() => bigint | undefined>([
          [6, () => (shared.length > 0 ? r.pick(shared) : slotGpa(vm, 0n))], // shared: back
          [3, () => slotGpa(vm, 0n)], // owned, not shared (or missing)
          [1, () => r.pick([1n << 52n, 0x1000_0000n, 0x1000_0123n])], // outside
        ])();
        steps.push(hvc(MEM_UNSHARE, gpa ?? 0n, r.chance(0.05) ? 1n : 0n));
      } else if (kind === 3) {
        steps.push(hvc(HYP_MEMINFO, r.chance(0.8) ? 0n : 1n));
      } else steps.push(hvc(r.pick(OTHER_HVCS)));
    }
    const res = genRunOn(g, cpu.name, steps);
    if (res !== undefined && cpu.ready) vm.ran = true;
    noteShares(vm, steps, res);
  };

  /**
   * What the guest's calls returned (x0 in the HYPERCALL_RET exits, in step order): the walk's
   * belief about which pages are shared.
   */
  const noteShares = (vm: PkVm, steps: readonly GuestStep[], res: ResultLine | undefined): void => {
    const exits = res !== undefined && 'exits' in res ? (res.exits ?? []) : [];
    let e = 0;
    for (const s of steps) {
      const x = exits[e];
      if (x === undefined) break;
      if (s.kind === 'store') continue;
      e++;
      if (s.kind !== 'hypercall' || x.reason !== 'HYPERCALL_RET') continue;
      if (x.hex !== X0_SUCCESS) continue;
      const gpa = s.args[0] & ~(PAGE - 1n);
      if (s.nr === MEM_SHARE) vm.shared.add(gpa);
      else if (s.nr === MEM_UNSHARE) vm.shared.delete(gpa);
    }
  };

  /** The guest gives back every page it shares (MEM_UNSHARE each), as before a shutdown. */
  const unshareAll = (vm: PkVm, cpu: PkCpu): void => {
    const steps: GuestStep[] = [...vm.shared].map((gpa) => ({
      kind: 'hypercall',
      nr: MEM_UNSHARE,
      args: [gpa, 0n, 0n],
    }));
    if (steps.length === 0) return;
    noteShares(vm, steps, genRunOn(g, cpu.name, steps));
  };

  /** The VMM reads or writes a page of one of its mappings (donated, shared or its own). */
  const hostTouch = (): void => {
    const maps = [...anon, ...vms.flatMap((v) => v.gmems.flatMap((x) => (x.map ? [x.map] : [])))];
    const live = maps.filter((m) => m.live);
    if (live.length === 0) return;
    const m = r.pick(live);
    const off = BigInt(r.int(Number(m.pages))) * PAGE + BigInt(r.int(4096 / 8)) * 8n;
    if (r.chance(0.5)) genPeekAt(g, m.name, off, BigInt(r.pick([1, 8])));
    else genPokeAt(g, m.name, off, r.bytes(r.pick([1, 8])));
  };

  const close = (name: string): void => genClose(g, handle(name));

  /** munmap of page `p` of `m`, or of all of it (`p` undefined). */
  const munmap = (m: PkMap, p?: bigint): void => {
    const res = genMunmapAt(g, m.name, (p ?? 0n) * PAGE, p === undefined ? m.pages * PAGE : PAGE);
    if (!ok(res)) return;
    if (p !== undefined) m.gone.add(p);
    if (p === undefined || m.gone.size === Number(m.pages)) m.live = false;
  };

  /** The slot of `vm` backed by `gm` (the walk binds each file to one slot, from offset 0). */
  const slotOf = (vm: PkVm, gm: PkGmem): PkSlot | undefined => vm.slots.find((s) => s.gmem === gm);
  /** Pages [p, p + n) of `gm` include one the protected guest shares with the host. */
  const sharesIn = (vm: PkVm, gm: PkGmem, p = 0n, n = gm.pages): boolean => {
    const sl = slotOf(vm, gm);
    if (!vm.prot || sl === undefined) return false;
    for (const gpa of vm.shared)
      if (gpa >= sl.gpa + p * PAGE && gpa < sl.gpa + (p + n) * PAGE) return true;
    return false;
  };
  /** Closing `gm`'s fd or its mapping would release the file (nothing else holds it). */
  const lastRef = (gm: PkGmem, what: 'fd' | 'map'): boolean =>
    what === 'fd' ? gm.map?.live !== true : !gm.open;

  /**
   * Every fd of `vm` closed (its vCPUs', guest_memfds' and its own) in a random order; the
   * guest_memfd mappings unmapped somewhere in between (mostly), the slots deleted first
   * (sometimes). The VM is destroyed when the last reference goes.
   */
  const teardown = (vm: PkVm): void => {
    if (r.chance(0.3) && !(vm.prot && vm.ran))
      for (const s of vm.slots) if (s.live) deleteSlot(vm, s);
    const steps: Array<() => void> = [];
    // A file holding pages the guest shares goes last (its release may be the VM's last
    // reference: destruction reclaims them first); two such files: the guest unshares first.
    const last: Array<() => void> = [];
    if (vm.open)
      steps.push(() => {
        close(vm.name);
        vm.open = false;
      });
    for (const c of vm.cpus)
      if (c.open)
        steps.push(() => {
          close(c.name);
          c.open = false;
        });
    const holding = vm.gmems.filter((gm) => sharesIn(vm, gm));
    if (holding.length > 1) {
      const cpu = vm.cpus.find((c) => c.open && c.init);
      if (cpu === undefined) return;
      unshareAll(vm, cpu);
      if (vm.gmems.filter((gm) => sharesIn(vm, gm)).length > 1) return;
    }
    for (const gm of vm.gmems) {
      const to = sharesIn(vm, gm) ? last : steps;
      if (gm.open)
        to.push(() => {
          close(gm.name);
          gm.open = false;
        });
      const m = gm.map;
      // (Every file released when one holds shared pages: a mapping left would keep the VM.)
      if (m?.live === true && (holding.length > 0 || r.chance(0.8))) to.push(() => munmap(m));
    }
    while (steps.length > 0) steps.splice(r.int(steps.length), 1)[0]!();
    for (const f of last) f();
  };

  // Setup: the VMs, their memory and vCPUs.
  for (
    let n = r.weighted<number>([
      [4, 1],
      [4, 2],
      [2, 3],
    ]);
    n > 0;
    n--
  )
    newVm();
  if (vms.length === 0) return;

  for (let i = 6 + r.int(24); i > 0; i--) {
    const vm = r.pick(vms);
    const choice = r.weighted<number>([
      [12, 0], // guest
      [5, 1], // the VMM touches its memory
      [3, 2], // punch or allocate a guest_memfd page
      [1, 3], // munmap
      [1, 4], // memslot delete / re-add / move
      [1, 5], // close a guest_memfd
      [1, 6], // close a vCPU
      [1, 7], // close the VM fd
      [1, 8], // a vCPU more, or KVM_ARM_VCPU_INIT again
      [1, 9], // teardown of a whole VM
    ]);
    if (choice === 0) {
      // Mostly an initialised vCPU (else KVM_RUN is -ENOEXEC).
      const cpus = vm.cpus.filter((c) => c.open && (c.init || r.chance(0.05)));
      if (cpus.length > 0) guestRun(vm, r.pick(cpus));
    } else if (choice === 1) hostTouch();
    else if (choice === 2) {
      const open = vm.gmems.filter((x) => x.open);
      if (open.length === 0) continue;
      const gm = r.pick(open);
      const p = BigInt(r.int(Number(gm.pages)));
      const mode = r.weighted<bigint>([
        [6, 3n], // PUNCH_HOLE | KEEP_SIZE: forced reclaim of a donated page, unshare of a shared one
        [2, 0n],
        [1, 1n],
      ]);
      const n = r.chance(0.8) ? 1n : gm.pages - p;
      if (mode === 3n && sharesIn(vm, gm, p, n)) continue;
      genFallocateAt(g, gm.name, mode, p * PAGE, n * PAGE);
    } else if (choice === 3) {
      const maps = [...anon, ...vm.gmems.flatMap((x) => (x.map ? [x.map] : []))].filter(
        (m) => m.live,
      );
      if (maps.length === 0) continue;
      const m = r.pick(maps);
      const p = r.chance(0.5) ? undefined : BigInt(r.int(Number(m.pages)));
      const empties = p === undefined || (m.gone.size === Number(m.pages) - 1 && !m.gone.has(p));
      const gm = vm.gmems.find((x) => x.map === m);
      if (empties && gm !== undefined && lastRef(gm, 'map') && sharesIn(vm, gm)) continue;
      munmap(m, p);
    } else if (choice === 4) {
      if (vm.slots.length === 0 || (vm.prot && vm.ran)) continue;
      const s = r.pick(vm.slots);
      if (s.live) deleteSlot(vm, s);
      else {
        // Re-added where it was, or moved.
        if (r.chance(0.3)) s.gpa += 0x100_0000n;
        addSlot(vm, s);
      }
    } else if (choice === 5) {
      const open = vm.gmems.filter((x) => x.open);
      if (open.length === 0) continue;
      const gm = r.pick(open);
      if (lastRef(gm, 'fd') && sharesIn(vm, gm)) continue;
      close(gm.name);
      gm.open = false;
    } else if (choice === 6) {
      const open = vm.cpus.filter((c) => c.open);
      if (open.length === 0) continue;
      const c = r.pick(open);
      close(c.name);
      c.open = false;
    } else if (choice === 7) {
      if (!vm.open) continue;
      close(vm.name);
      vm.open = false;
    } else if (choice === 8) {
      if (!vm.open) continue;
      const open = vm.cpus.filter((c) => c.open);
      if (open.length > 0 && r.chance(0.5)) initCpu(vm, r.pick(open));
      else newCpu(vm);
    } else teardown(vm);
  }
  // Mostly the end of the VMs too: destruction reclaims what the guests own.
  if (r.chance(0.6)) for (const vm of vms) if (r.chance(0.8)) teardown(vm);
}
