/**
 * A 64 TiB guest with one million distinct attribute ranges, target: heap < 1 GiB.
 *
 * A SW_PROTECTED VM (linux-6.18, events off) with one 64 TiB guest_memfd bound to 9 memslots
 * covering GPA [0, 64 TiB) (a slot holds at most 2^31-1 pages, 8 TiB - 4 KiB: 8 full slots and
 * one of 8 pages), and attributes set with KVM_SET_MEMORY_ATTRIBUTES to 2^20 PRIVATE ranges of
 * 32 MiB separated by 32 MiB shared gaps (2^20 ranges in the attribute map, 2^21 distinct ranges
 * counting the shared gaps). Every range boundary is one page off 2 MiB alignment, the worst case
 * for hugepage mixed tracking: every boundary makes its 2 MiB frame (and its 1 GiB frame) mixed.
 *
 * Two build orders, each measured on its own:
 * - slots first, then the 2^20 attribute calls (the runtime case: each call also runs the
 *   post-set mixed tracking on the slot it hits);
 * - attributes first, then the 9 slots (each slot creation runs
 *   `kvmMmuInitMemslotMemoryAttributes` over the ranges it covers).
 * Heap = heapUsed + arrayBuffers after a full gc, minus the same before the build (node must run
 * with --expose-gc; run.ts does that). Build time is wall time of the whole build.
 */
import { Host } from '../src/core/host.js';
import { ALL_PARTS } from '../src/core/all_parts.js';
import { getProfile } from '../src/core/profiles/index.js';
import {
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_SW_PROTECTED_VM,
} from '../src/core/base/uapi.js';
import { atMost, gc, hasGc, heapBytes, must, now, row, type BenchRow } from './util.js';

const TOTAL_PAGES = 2 ** 34; // 64 TiB
const RANGES = 2 ** 20;
const CHUNK = TOTAL_PAGES / (2 * RANGES); // 8192 pages = 32 MiB
const MAX_SLOT_PAGES = 2 ** 31 - 1;

function createSlots(host: Host, vmFd: number, gmem: number): number {
  let slot = 0;
  for (let base = 0; base < TOTAL_PAGES; base += MAX_SLOT_PAGES, slot++) {
    const npages = Math.min(MAX_SLOT_PAGES, TOTAL_PAGES - base);
    must(
      host.kvmSetUserMemoryRegion(
        vmFd,
        {
          slot: BigInt(slot),
          flags: KVM_MEM_GUEST_MEMFD,
          guest_phys_addr: BigInt(base) << 12n,
          memory_size: BigInt(npages) << 12n,
          userspace_addr: 0n,
          guest_memfd_offset: BigInt(base) << 12n,
        },
        gmem,
        false,
      ),
      `KVM_SET_USER_MEMORY_REGION2 slot ${slot}`,
    );
  }
  return slot;
}

function setAttributes(host: Host, vmFd: number): void {
  for (let j = 0; j < RANGES; j++) {
    const start = 2 * j * CHUNK + 1; // one page off 2 MiB alignment
    must(
      host.kvmSetMemoryAttributes(vmFd, {
        address: BigInt(start) << 12n,
        size: BigInt(CHUNK) << 12n,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0n,
      }),
      'KVM_SET_MEMORY_ATTRIBUTES',
    );
  }
}

type Built = { host: Host; slots: number; seconds: number };

function build(order: 'slots-first' | 'attrs-first'): Built {
  const t0 = now();
  const host = new Host(getProfile('linux-6.18')!, { parts: ALL_PARTS, events: false });
  const kvm = host.openDevKvm();
  const vmFd = must(host.kvmCreateVm(kvm, KVM_X86_SW_PROTECTED_VM), 'KVM_CREATE_VM');
  const gmem = must(
    host.kvmCreateGuestMemfd(vmFd, BigInt(TOTAL_PAGES) << 12n, 0n),
    'KVM_CREATE_GUEST_MEMFD',
  );
  let slots: number;
  if (order === 'slots-first') {
    slots = createSlots(host, vmFd, gmem);
    setAttributes(host, vmFd);
  } else {
    setAttributes(host, vmFd);
    slots = createSlots(host, vmFd, gmem);
  }
  return { host, slots, seconds: now() - t0 };
}

export function benchBigGuest(): BenchRow[] {
  const out: BenchRow[] = [];
  if (!hasGc()) throw new Error('bench: big guest heap figures need node --expose-gc');
  for (const order of ['slots-first', 'attrs-first'] as const) {
    gc();
    const h0 = heapBytes();
    let b: Built | undefined = build(order);
    gc();
    const bytes = heapBytes() - h0;
    const vm = [...b.host.vms][0]!;
    if (vm.attrs.size !== RANGES) throw new Error(`bench: ${vm.attrs.size} attribute ranges`);
    let mixed2m = 0;
    let mixed1g = 0;
    for (const s of vm.slots.values()) {
      mixed2m += s.lpage[0]?.mixed.size ?? 0;
      mixed1g += s.lpage[1]?.mixed.size ?? 0;
    }
    const what =
      order === 'slots-first'
        ? 'memslots, then 2^20 attribute calls'
        : '2^20 attribute calls, then memslots';
    const note =
      `64 TiB, ${b.slots} memslots, ${vm.attrs.size} PRIVATE ranges (+ shared gaps), ` +
      `mixed-tracking entries: ${mixed2m} (2M), ${mixed1g} (1G)`;
    out.push(
      row(
        'bigguest',
        `64 TiB guest heap (${what})`,
        bytes / 2 ** 20,
        'MiB',
        atMost(1024, 'MiB'),
        note,
      ),
    );
    out.push(row('bigguest', `64 TiB guest build time (${what})`, b.seconds, 's', undefined, note));
    b = undefined;
  }
  return out;
}
