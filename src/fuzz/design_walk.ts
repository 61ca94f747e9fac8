/**
 * The historical designs' walks of the trace generator (profiles with a `design` only;
 * trace_gen.ts calls `designWalk`): one VM of the design and a VMM doing, mostly validly and with
 * edge values, what makes that design what it is.
 *
 * - design-2020-protnone-follkvm (the KVM protected memory extension RFC v2, Kirill Shutemov,
 *   Oct 2020): anonymous or shmem guest RAM in plain memslots; the guest's hypercalls
 *   KVM_HC_ENABLE_MEM_PROTECTED (12), KVM_HC_MEM_SHARE (13) and KVM_HC_MEM_UNSHARE (14) over
 *   valid ranges, ranges past a memslot, zero pages, gfns outside every memslot and ranges over
 *   holes the VMM munmapped; the VMM's loads and stores, vmsplice, MADV_POPULATE_WRITE, its
 *   mprotect() attempts to lift the protection, VFIO maps made before and after the guest
 *   enabled protection and the device's DMA, memslots added after enabling.
 * - design-2023-restrictedmem (UPM v10, Chao Peng, Dec 2022): memfd_restricted() with good and
 *   bad flags, ftruncate() once, twice or unaligned, KVM_SET_USER_MEMORY_REGION_EXT memslots with
 *   good and bad restricted_fd / restricted_offset (another fd, a closed fd, unaligned,
 *   wrapping, past the size) beside anonymous shared memory, KVM_SET_MEMORY_ATTRIBUTES
 *   conversions, the guest's private and shared accesses, punches and allocations, memory_failure
 *   followed by the guest's access, pread/mmap/fstat of the restricted fd, DMA to shared pages.
 * - design-2024-shmem-exclusive-pin (exclusive GUP pinning RFC, Elliot Berman / Fuad Tabba, June
 *   2024): shmem (sometimes private anonymous) guest RAM; the guest's KVM_HC_MAP_GPA_RANGE to
 *   private and shared with edge ranges; VFIO maps of shared and private pages, unmaps and DMA;
 *   vmsplice; the VMM munmapping or discarding pages before and after conversions.
 *
 * Known holes. A design's invariant also reports what the design itself lets happen (README
 * "Designs"): on protnone-follkvm a device's DMA through a mapping pinned while the page was the
 * VMM's (before the guest enabled protection, or while it was shared) reaches it after it became
 * protected; on shmem-exclusive-pin nothing keeps the VMM's own loads and stores off a private
 * page (no hypervisor under this host). By default the walks' VMM keeps off those two accesses —
 * it believes the guest's hypercall results, and treats a page as private (protected) whenever
 * the guest may have made it so — so that a violation found is a model bug or a new property;
 * with `designHoles` it makes them too. Everything else (the accesses the design refuses, the
 * pins a mutant would let through) the walks do regardless.
 *
 * Handles are named d* (dvm, dcpu, dram, drfd, dvc): the walk's VM, vCPU, mappings and fds join
 * the generator's pools, so the generic generators act on them between walks.
 */
import type { AddrArg, FdArg, GuestStep, ResultLine, TraceOpInput } from '../trace/types.js';
import { guestLoad, guestStore } from '../core/arch/x86/kvm_run.js';
import { genClose } from '../ops/fd.js';
import { genFallocateAt } from '../ops/guest_memfd.js';
import { genMmapOf, genMunmapAt, genPeekAt, genPokeAt } from '../ops/host_mm.js';
import { genRegionOf } from '../ops/memslots.js';
import { genPipe, genVmspliceAt } from '../ops/pipe.js';
import { genRunOn, genVcpuOf } from '../ops/vcpu.js';
import { genDma, genMapDma, genUnmapDma, genVfioSetup } from '../ops/vfio.js';
import { genCreateVmOf, genEnableCapOf } from '../ops/vm.js';
import { genAttributesOf } from '../ops/attributes.js';
import { MiB, PAGE, type GenState, type MapH } from './gen_state.js';

type G = GenState<TraceOpInput>;

const h = (name: string): FdArg => ({ kind: 'handle', name });
const at0 = (name: string): AddrArg => ({ kind: 'handle', name, offset: 0n });
const hypercall = (nr: bigint, a0: bigint, a1: bigint, a2 = 0n): GuestStep => ({
  kind: 'hypercall',
  nr,
  args: [a0, a1, a2],
});

/** The values a run's hypercall steps left in EAX, in step order (as signed 32-bit numbers). */
function hypercallRets(res: ResultLine | undefined): number[] {
  if (res === undefined || !('exits' in res) || res.exits === undefined) return [];
  const out: number[] = [];
  for (const e of res.exits)
    if (e.reason === 'HYPERCALL_RET') {
      let v = 0;
      for (let i = 3; i >= 0; i--) v = v * 256 + parseInt(e.hex.slice(2 * i, 2 * i + 2), 16);
      out.push(v | 0);
    }
  return out;
}

/** One walk of the profile's design (nothing on a profile without one). */
export function designWalk(g: G): void {
  switch (g.opts.feedback?.design) {
    case 'protnone-follkvm':
      protnoneWalk(g);
      return;
    case 'restrictedmem':
      restrictedmemWalk(g);
      return;
    case 'shmem-exclusive-pin':
      exclusivePinWalk(g);
      return;
    default:
      return;
  }
}

/** The walk's VM, guest RAM (one mapping of `pages`) in one plain memslot at `gpa`, vCPU. */
type Base = {
  readonly vm: string;
  readonly cpu: string;
  readonly ram: string;
  readonly pages: number;
  readonly gpa: bigint;
  readonly slot: bigint;
};

/**
 * VM of `type`, guest RAM mapped with `ramFlags`, its plain memslot when `plainSlot`, vCPU 0. With
 * `pool` the VM, the RAM and the memslot join the generator's pools (the generic generators then
 * map, unmap and protect over the RAM and replace or delete the memslot); without, only the
 * vCPU does, so that the walk knows its VM's memory exactly.
 */
function setup(
  g: G,
  type: bigint,
  ramFlags: bigint,
  plainSlot: boolean,
  pool: boolean,
): Base | undefined {
  const r = g.r;
  const vm = g.name('dvm');
  if (genCreateVmOf(g, type, vm)?.ok !== true) return undefined;
  if (pool) {
    g.vms.push(vm);
    g.fdNames.push(vm);
  }
  const pages = 2 + r.int(7);
  const ram = g.name('dram');
  const len = BigInt(pages) * PAGE;
  if (genMmapOf(g, null, len, ramFlags, ram)?.ok === true && pool) {
    const m: MapH = { name: ram, len, kind: 'anon' };
    g.maps.push(m);
  }
  const gpa = 0x8000_0000n + BigInt(r.int(4)) * 2n * MiB;
  const slot = BigInt(r.int(4));
  if (plainSlot) {
    const res = genRegionOf(g, false, vm, slot, 0n, gpa, len, at0(ram), {
      kind: 'raw',
      value: -1n,
    });
    if (res?.ok === true && pool) g.slots.push({ vm, slot, gpa, size: len });
  }
  const cpu = g.name('dcpu');
  if (genVcpuOf(g, vm, cpu)?.ok === true) {
    g.vcpus.push({ name: cpu, vm });
    g.fdNames.push(cpu);
  }
  return { vm, cpu, ram, pages, gpa, slot };
}

/** A guest load or store at a page of the RAM (sometimes just past it), or a stray GPA. */
function guestAccess(g: G, b: Base): GuestStep {
  const r = g.r;
  const page = r.chance(0.9) ? r.int(b.pages) : b.pages + r.int(2);
  const a = r.chance(0.97) ? b.gpa + BigInt(page) * PAGE + BigInt(r.int(1024)) * 4n : 0x1000n;
  return r.chance(0.5) ? guestStore(a, r.bytes(4)) : guestLoad(a, 4);
}

/** A page range of the RAM [first, first + n) (n ≥ 1, within the RAM). */
function pageRange(g: G, pages: number): { first: number; n: number } {
  const first = g.r.int(pages);
  return { first, n: 1 + g.r.int(pages - first) };
}

/** The VMM's VFIO container, maybe, and a pipe, maybe. */
function devices(g: G): { vfio?: string; pipe?: string } {
  const r = g.r;
  const out: { vfio?: string; pipe?: string } = {};
  if (r.chance(0.6)) {
    const c = g.name('dvc');
    if (genVfioSetup(g, c, g.name('dvg'), false)) out.vfio = c;
  }
  if (r.chance(0.6)) {
    const rd = g.name('dpr');
    const wr = g.name('dpw');
    if (genPipe(g, rd, wr)) out.pipe = wr;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// design-2020-protnone-follkvm

function protnoneWalk(g: G): void {
  const r = g.r;
  // Outside the pools unless the walk is to make the hole's accesses: the walk follows which
  // pages are protected exactly, which another generator's munmap or memslot change would upset.
  const b = setup(
    g,
    r.chance(0.95) ? 0n : 1n,
    r.chance(0.7) ? 0x22n : 0x21n,
    true,
    g.opts.designHoles === true,
  );
  if (b === undefined) return;
  const gfn0 = b.gpa >> 12n;
  // Which RAM pages are protected, as `__kvm_protect_memory()` leaves them: a hypercall that ran
  // (its return is in the exits) changes the pages of its range in order up to the first one
  // the VMM munmapped; ENABLE protects the whole memslot so.
  const open = new Set<number>();
  for (let p = 0; p < b.pages; p++) open.add(p);
  const gone = new Set<number>();
  const protect = (first: number, n: number, on: boolean): void => {
    for (let p = first; p < first + n && !gone.has(p); p++)
      if (on) open.delete(p);
      else open.add(p);
  };
  const isProtected = (p: number): boolean => !open.has(p);
  // Pages pinned into the IOMMU while they were open (their DMA after protection is the
  // design's known hole), and every page the walk mapped for DMA.
  const openPins = new Set<number>();
  const dmaMapped = new Set<number>();
  const { vfio, pipe } = devices(g);
  // The VMM loads the guest image.
  for (let p = 0; p < b.pages; p++)
    if (r.chance(0.5)) genPokeAt(g, b.ram, BigInt(p) * PAGE, r.bytes(8));
  let extraSlot = false;
  const steps = 6 + r.int(14);
  for (let i = 0; i < steps; i++) {
    const page = r.int(b.pages);
    const c = r.int(20);
    if (c <= 6) {
      // The guest: accesses and the RFC's hypercalls.
      const prog: GuestStep[] = [];
      const calls: Array<{ nr: bigint; first: number; n: number } | undefined> = [];
      for (let j = 1 + r.int(4); j > 0; j--) {
        const k = r.int(10);
        if (k <= 3) prog.push(guestAccess(g, b));
        else if (k === 4 || (k === 5 && open.size > 0)) {
          prog.push(hypercall(12n, 0n, 0n));
          calls.push(undefined);
        } else {
          const nr = k <= 7 ? 13n : 14n;
          const kind = r.weighted<number>([
            [8, 0], // within the memslot
            [1, 1], // past its end (-EINVAL)
            [1, 2], // no pages, or a gfn outside every memslot (0)
            [1, 3], // a huge count
          ]);
          const { first, n } = pageRange(g, b.pages);
          let a0 = gfn0 + BigInt(first);
          let a1 = BigInt(n);
          if (kind === 1) a1 = BigInt(b.pages - first + 1 + r.int(3));
          else if (kind === 2) {
            if (r.chance(0.5)) a1 = 0n;
            else a0 = r.pick([0n, 0x10n, gfn0 + 0x1000n]);
          } else if (kind === 3) a1 = r.pick([0xffff_ffffn, 1n << 31n]);
          prog.push(hypercall(nr, a0, a1));
          calls.push(kind === 0 ? { nr, first, n } : undefined);
        }
        if (r.chance(0.05)) prog.push(hypercall(r.pick([1n, 11n, 15n, 99n]), 0n, 0n));
      }
      const rets = hypercallRets(genRunOn(g, b.cpu, prog));
      // Hypercalls in step order (every one that ran left its return in an exit); `calls`
      // holds the walk's 12/13/14 ones: the ranges it follows, undefined for those that change
      // nothing (past the memslot: -EINVAL first; no pages or no memslot: 0).
      let ri = 0;
      for (const step of prog) {
        if (step.kind !== 'hypercall') continue;
        const ran = rets[ri++] !== undefined;
        if (step.nr < 12n || step.nr > 14n) continue;
        const call = calls.shift();
        if (!ran) continue;
        if (step.nr === 12n) protect(0, b.pages, true);
        else if (call !== undefined) protect(call.first, call.n, step.nr === 14n);
      }
    } else if (c <= 8) {
      // The VMM's load or store: SIGBUS on a protected page.
      if (r.chance(0.5)) genPeekAt(g, b.ram, BigInt(page) * PAGE, 4n);
      else genPokeAt(g, b.ram, BigInt(page) * PAGE + 8n, r.bytes(4));
    } else if (c === 9 && pipe !== undefined) {
      // vmsplice: get_user_pages() without FOLL_KVM (EFAULT on a protected page).
      const { first, n } = pageRange(g, b.pages);
      genVmspliceAt(g, pipe, b.ram, BigInt(first) * PAGE, BigInt(n) * PAGE);
    } else if (c <= 12 && vfio !== undefined) {
      const k = r.int(4);
      if (k <= 1) {
        // VFIO_IOMMU_MAP_DMA pins with GUP (no FOLL_KVM): refused on a protected page.
        const was = isProtected(page);
        const res = g.push({
          op: 'VFIO_IOMMU_MAP_DMA',
          fd: h(vfio),
          argsz: 32n,
          flags: 3n,
          addr: { kind: 'handle', name: b.ram, offset: BigInt(page) * PAGE },
          iova: BigInt(page) * PAGE,
          size: PAGE,
        });
        dmaMapped.add(page);
        if (!was && res?.ok === true) openPins.add(page);
      } else if (k === 2) {
        genUnmapDma(g, vfio, BigInt(page) * PAGE, PAGE);
        openPins.delete(page);
        dmaMapped.delete(page);
      } else {
        // The device's DMA; through a pin taken while the page was open only with designHoles.
        const mapped = [...dmaMapped];
        const at = mapped.length > 0 && r.chance(0.8) ? r.pick(mapped) : page;
        if (openPins.has(at) && isProtected(at) && g.opts.designHoles !== true) continue;
        genDma(g, vfio, BigInt(at) * PAGE, r.chance(0.5) ? null : r.bytes(4));
      }
    } else if (c === 13) {
      // The VMM tries to lift the protection with mprotect() (VM_KVM_PROTECTED stays).
      const { first, n } = pageRange(g, b.pages);
      g.push({
        op: 'mprotect',
        addr: { kind: 'handle', name: b.ram, offset: BigInt(first) * PAGE },
        length: BigInt(n) * PAGE,
        prot: r.pick([3n, 1n, 0n, 7n]),
      });
    } else if (c === 14) {
      // MADV_POPULATE_WRITE (GUP without FOLL_KVM: EFAULT once protected) or MADV_DONTNEED.
      const { first, n } = pageRange(g, b.pages);
      g.push({
        op: 'madvise',
        addr: { kind: 'handle', name: b.ram, offset: BigInt(first) * PAGE },
        length: BigInt(n) * PAGE,
        advice: r.pick([23n, 4n]),
      });
    } else if (c === 15 && !extraSlot) {
      // A memslot added later: protected at once when the VM is.
      extraSlot = true;
      const n = 1 + r.int(4);
      const m = g.name('dram');
      if (genMmapOf(g, null, BigInt(n) * PAGE, 0x22n, m)?.ok === true) {
        const pool = g.opts.designHoles === true;
        if (pool) g.maps.push({ name: m, len: BigInt(n) * PAGE, kind: 'anon' });
        if (r.chance(0.5)) genPokeAt(g, m, 0n, r.bytes(4));
        const gpa = b.gpa + 0x10_0000n;
        const res = genRegionOf(g, false, b.vm, b.slot + 4n, 0n, gpa, BigInt(n) * PAGE, at0(m), {
          kind: 'raw',
          value: -1n,
        });
        if (res?.ok === true && pool)
          g.slots.push({ vm: b.vm, slot: b.slot + 4n, gpa, size: BigInt(n) * PAGE });
        genPeekAt(g, m, 0n, 4n);
      }
    } else if (c === 16) {
      // A hole in the guest RAM's VMAs (a later share over it: -ENOMEM).
      if (genMunmapAt(g, b.ram, BigInt(page) * PAGE, PAGE)?.ok === true) gone.add(page);
      openPins.delete(page);
    } else if (c === 17 && r.chance(0.3)) {
      genClose(g, h(b.vm));
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// design-2023-restrictedmem

function restrictedmemWalk(g: G): void {
  const r = g.r;
  // A VM with private memory (SW_PROTECTED stands in); DEFAULT sometimes (KVM_MEM_PRIVATE: EINVAL).
  const b = setup(g, r.chance(0.9) ? 1n : 0n, 0x22n, false, true);
  if (b === undefined) return;
  const size = BigInt(b.pages) * PAGE;
  const rfd = g.name('drfd');
  const made = g.push({
    op: 'memfd_restricted',
    flags: r.weighted<bigint>([
      [12, 0n],
      [1, r.pick([1n, 2n, 0x8000_0000n, 0xffff_ffffn])],
    ]),
    as: rfd,
  });
  const rfdOk = made?.ok === true;
  if (rfdOk) g.fdNames.push(rfd);
  // Sized once (a second size change: EPERM; an unaligned size: EINVAL).
  if (r.chance(0.95)) {
    if (r.chance(0.05)) g.push({ op: 'ftruncate', fd: h(rfd), length: size + 100n });
    g.push({ op: 'ftruncate', fd: h(rfd), length: size });
    if (r.chance(0.15)) g.push({ op: 'ftruncate', fd: h(rfd), length: size * 2n });
  }
  // The VMM cannot map or read it.
  if (r.chance(0.2)) genMmapOf(g, h(rfd), size, 1n, g.name('drm'));
  if (r.chance(0.2)) g.push({ op: 'pread', fd: h(rfd), len: 8n, offset: 0n });
  // The memslot: private half in the restricted fd, shared half at userspace_addr.
  const ext = (slot: bigint, gpa: bigint, len: bigint, off: bigint, fd: FdArg, flags = 4n) =>
    g.push({
      op: 'KVM_SET_USER_MEMORY_REGION_EXT',
      vm: h(b.vm),
      slot,
      flags,
      guest_phys_addr: gpa,
      memory_size: len,
      userspace_addr: { kind: 'handle', name: b.ram, offset: 0n },
      restricted_offset: off,
      restricted_fd: fd,
    });
  const bad = r.int(12);
  if (bad === 0) ext(b.slot, b.gpa, size, 0n, h(b.vm));
  else if (bad === 1) ext(b.slot, b.gpa, size, 0n, { kind: 'raw', value: r.pick([-1n, 999n]) });
  else if (bad === 2) ext(b.slot, b.gpa, size, r.pick([0x800n, 1n]), h(rfd));
  else if (bad === 3)
    ext(b.slot, b.gpa, size, r.pick([(1n << 64n) - PAGE, size, 1n << 40n]), h(rfd));
  let bound = false;
  if (r.chance(0.9)) {
    const res = ext(b.slot, b.gpa, size, 0n, h(rfd), r.chance(0.95) ? 4n : 0n);
    if (res?.ok === true) {
      bound = true;
      g.slots.push({ vm: b.vm, slot: b.slot, gpa: b.gpa, size });
    }
  }
  // Sometimes a second memslot on the same fd, further on (or overlapping the first's range).
  let gpa2: bigint | undefined;
  let pages2 = 0;
  if (bound && b.pages > 2 && r.chance(0.25)) {
    pages2 = 1 + r.int(b.pages - 1);
    gpa2 = b.gpa + 0x20_0000n;
    const off = r.chance(0.7) ? BigInt(b.pages - pages2) * PAGE : 0n;
    const res = ext(b.slot + 1n, gpa2, BigInt(pages2) * PAGE, off, h(rfd));
    if (res?.ok !== true) gpa2 = undefined;
    else g.slots.push({ vm: b.vm, slot: b.slot + 1n, gpa: gpa2, size: BigInt(pages2) * PAGE });
  }
  // Most VMMs take the guest's MapGPA requests (KVM_CAP_EXIT_HYPERCALL for KVM_HC_MAP_GPA_RANGE).
  if (r.chance(0.5)) genEnableCapOf(g, b.vm, 201n, [1n << 12n]);
  // The guest's memory is private (mostly all of it).
  if (r.chance(0.85)) {
    const { first, n } = r.chance(0.7) ? { first: 0, n: b.pages } : pageRange(g, b.pages);
    genAttributesOf(g, b.vm, b.gpa + BigInt(first) * PAGE, BigInt(n) * PAGE, 8n);
  }
  const { vfio, pipe } = devices(g);
  const dmaMapped: number[] = [];
  // A VFIO VMM maps the shared memory for DMA (IOVA = offset in it).
  if (vfio !== undefined && r.chance(0.7)) {
    genMapDma(g, vfio, b.ram, 0n, 0n, size);
    for (let p = 0; p < b.pages; p++) dmaMapped.push(p);
  }
  const steps = 6 + r.int(14);
  for (let i = 0; i < steps; i++) {
    const page = r.int(b.pages);
    const c = r.int(20);
    if (c <= 5) {
      const prog: GuestStep[] = [];
      for (let j = 1 + r.int(3); j > 0; j--) {
        if (r.chance(0.1)) {
          const { first, n } = pageRange(g, b.pages);
          prog.push(hypercall(12n, b.gpa + BigInt(first) * PAGE, BigInt(n), r.pick([0n, 0x10n])));
        } else if (gpa2 !== undefined && r.chance(0.2)) {
          const a = gpa2 + BigInt(r.int(pages2)) * PAGE;
          prog.push(r.chance(0.5) ? guestStore(a, r.bytes(4)) : guestLoad(a, 4));
        } else prog.push(guestAccess(g, b));
      }
      genRunOn(g, b.cpu, prog);
    } else if (c <= 8) {
      // Conversions: to shared or private, a page or a range; sometimes misaligned or odd.
      const { first, n } = pageRange(g, b.pages);
      const attrs = r.weighted<bigint>([
        [6, 0n],
        [6, 8n],
        [1, r.pick([1n, 0xffn, 1n << 63n])],
      ]);
      const at = b.gpa + BigInt(first) * PAGE + (r.chance(0.05) ? 0x800n : 0n);
      genAttributesOf(g, b.vm, at, BigInt(n) * PAGE, attrs);
    } else if (c <= 10) {
      // A punch of the private copy (mostly), an allocation, or an odd range.
      const { first, n } = pageRange(g, b.pages);
      const mode = r.weighted<bigint>([
        [8, 3n],
        [2, 0n],
        [1, 1n],
        [1, 2n],
      ]);
      const off = BigInt(first) * PAGE + (r.chance(0.05) ? 0x10n : 0n);
      genFallocateAt(g, rfd, mode, off, r.chance(0.05) ? size * 4n : BigInt(n) * PAGE);
    } else if (c === 11) {
      // A hardware memory error on a page of the fd (sometimes past its end), then the guest.
      // The guest first touches the page (mostly), so the fd holds it if it is private.
      const at = b.gpa + BigInt(page) * PAGE;
      if (r.chance(0.6)) genRunOn(g, b.cpu, [guestStore(at, r.bytes(4))]);
      const off = r.chance(0.9) ? BigInt(page) * PAGE : size + PAGE;
      g.push({ op: 'memory_failure', fd: h(rfd), offset: off });
      if (r.chance(0.7)) genRunOn(g, b.cpu, [guestLoad(at, 4)]);
    } else if (c <= 13) {
      // The VMM's shared memory: loads, stores, a discard of the shared copy.
      const k = r.int(3);
      if (k === 0) genPeekAt(g, b.ram, BigInt(page) * PAGE, 4n);
      else if (k === 1) genPokeAt(g, b.ram, BigInt(page) * PAGE, r.bytes(4));
      else
        g.push({
          op: 'madvise',
          addr: { kind: 'handle', name: b.ram, offset: BigInt(page) * PAGE },
          length: PAGE,
          advice: 4n,
        });
    } else if (c === 14) {
      // The restricted fd from the VMM's side: no read, no map, its size and blocks.
      const k = r.int(3);
      if (k === 0) g.push({ op: 'pread', fd: h(rfd), len: 8n, offset: BigInt(page) * PAGE });
      else if (k === 1) genMmapOf(g, h(rfd), PAGE, 1n, g.name('drm'));
      else g.push({ op: 'fstat', fd: h(rfd) });
    } else if (c === 15 && vfio !== undefined) {
      // DMA to the shared half (pinned at userspace_addr).
      const k = r.int(3);
      if (k === 0) {
        genMapDma(g, vfio, b.ram, BigInt(page) * PAGE, BigInt(page) * PAGE, PAGE);
        dmaMapped.push(page);
      } else if (k === 1) genUnmapDma(g, vfio, BigInt(page) * PAGE, PAGE);
      else {
        const at = dmaMapped.length > 0 && r.chance(0.8) ? r.pick(dmaMapped) : page;
        genDma(g, vfio, BigInt(at) * PAGE, r.chance(0.5) ? null : r.bytes(4));
      }
    } else if (c === 16 && pipe !== undefined) {
      genVmspliceAt(g, pipe, b.ram, BigInt(page) * PAGE, PAGE);
    } else if (c === 17 && r.chance(0.3)) {
      // The memslot deleted (the fd unbound), or re-added.
      ext(b.slot, b.gpa, r.chance(0.6) ? 0n : size, 0n, h(rfd));
    } else if (c === 18 && r.chance(0.25)) {
      genClose(g, h(rfd));
    } else if (c === 19 && r.chance(0.2)) {
      genClose(g, h(b.vm));
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// design-2024-shmem-exclusive-pin

function exclusivePinWalk(g: G): void {
  const r = g.r;
  // The RAM stays out of the generic generators' pools (their loads and stores would reach
  // private pages) unless the walk is to make those accesses.
  const b = setup(g, 0n, r.chance(0.8) ? 0x21n : 0x22n, true, g.opts.designHoles === true);
  if (b === undefined) return;
  // Pages the guest may have made private (a MAP_GPA_RANGE to private stops at its first
  // failure with the pages before it pinned, so every page it named counts) until a conversion
  // to shared of them returned 0.
  const mayBePrivate = new Set<number>();
  const { vfio, pipe } = devices(g);
  for (let p = 0; p < b.pages; p++)
    if (r.chance(0.5)) genPokeAt(g, b.ram, BigInt(p) * PAGE, r.bytes(8));
  const dmaMapped: number[] = [];
  const steps = 6 + r.int(14);
  for (let i = 0; i < steps; i++) {
    const page = r.int(b.pages);
    const c = r.int(20);
    if (c <= 6) {
      const prog: GuestStep[] = [];
      const calls: Array<{ first: number; n: number; priv: boolean; valid: boolean }> = [];
      for (let j = 1 + r.int(4); j > 0; j--) {
        if (r.chance(0.45)) {
          prog.push(guestAccess(g, b));
          continue;
        }
        const priv = r.chance(0.55);
        const { first, n } = pageRange(g, b.pages);
        const kind = r.weighted<number>([
          [10, 0], // within the memslot
          [1, 1], // unaligned (-EINVAL)
          [1, 2], // no pages (-EINVAL)
          [1, 3], // past the memslot (-EFAULT part way)
          [1, 4], // a GPA no memslot covers (-EFAULT)
        ]);
        let a0 = b.gpa + BigInt(first) * PAGE;
        let a1 = BigInt(n);
        if (kind === 1) a0 += 0x10n;
        else if (kind === 2) a1 = 0n;
        else if (kind === 3) a1 = BigInt(b.pages - first + 1 + r.int(2));
        else if (kind === 4) a0 = 0x1000_0000n;
        prog.push(hypercall(12n, a0, a1, priv ? 0x10n : 0n));
        calls.push({
          first,
          n: kind === 3 ? b.pages - first : n,
          priv,
          valid: kind !== 1 && kind !== 2 && kind !== 4,
        });
      }
      // In step order: every page a conversion to private named may be private from then on
      // (the walk stays off it whatever the result, and whether the step ran); a conversion to
      // shared that returned 0 unpinned its pages.
      const rets = hypercallRets(genRunOn(g, b.cpu, prog));
      calls.forEach((cl, ci) => {
        if (!cl.valid) return;
        for (let p = cl.first; p < cl.first + cl.n; p++)
          if (cl.priv) mayBePrivate.add(p);
          else if (rets[ci] === 0) mayBePrivate.delete(p);
      });
    } else if (c <= 9 && vfio !== undefined) {
      const k = r.int(4);
      if (k <= 1) {
        // A private page: EBUSY (the exclusive pin keeps every other pin away).
        genMapDma(g, vfio, b.ram, BigInt(page) * PAGE, BigInt(page) * PAGE, PAGE);
        dmaMapped.push(page);
      } else if (k === 2) genUnmapDma(g, vfio, BigInt(page) * PAGE, PAGE);
      else {
        const at = dmaMapped.length > 0 && r.chance(0.8) ? r.pick(dmaMapped) : page;
        genDma(g, vfio, BigInt(at) * PAGE, r.chance(0.5) ? null : r.bytes(4));
      }
    } else if (c === 10 && pipe !== undefined) {
      // vmsplice takes FOLL_GET references, which the exclusive pin does not refuse.
      genVmspliceAt(g, pipe, b.ram, BigInt(page) * PAGE, PAGE);
    } else if (c <= 13) {
      // The VMM's loads and stores: on shared pages (private ones only with designHoles).
      if (mayBePrivate.has(page) && g.opts.designHoles !== true) continue;
      if (r.chance(0.5)) genPeekAt(g, b.ram, BigInt(page) * PAGE, 4n);
      else genPokeAt(g, b.ram, BigInt(page) * PAGE, r.bytes(4));
    } else if (c === 14) {
      // Unmap (or discard) a page, then the guest converts it.
      if (r.chance(0.6)) genMunmapAt(g, b.ram, BigInt(page) * PAGE, PAGE);
      else
        g.push({
          op: 'madvise',
          addr: { kind: 'handle', name: b.ram, offset: BigInt(page) * PAGE },
          length: PAGE,
          advice: 4n,
        });
      const priv = r.chance(0.5);
      if (priv) mayBePrivate.add(page);
      const rets = hypercallRets(
        genRunOn(g, b.cpu, [hypercall(12n, b.gpa + BigInt(page) * PAGE, 1n, priv ? 0x10n : 0n)]),
      );
      if (!priv && rets[0] === 0) mayBePrivate.delete(page);
    } else if (c === 15 && r.chance(0.3)) {
      // The memslot deleted (the pins stay KVM's until the VM goes) or moved.
      const gpa = r.chance(0.5) ? b.gpa : b.gpa + 0x40_0000n;
      genRegionOf(
        g,
        false,
        b.vm,
        b.slot,
        0n,
        gpa,
        r.chance(0.5) ? 0n : BigInt(b.pages) * PAGE,
        at0(b.ram),
        {
          kind: 'raw',
          value: -1n,
        },
      );
    } else if (c === 16 && r.chance(0.2)) {
      genClose(g, h(b.vm));
      return;
    }
  }
}
