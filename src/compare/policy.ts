/**
 * VMM policies for `gmemlab compare`: the choices VMMs make on top of a design's uAPI
 * (../shared/spec/vmm-ecosystem.md §1.7, "what a VMM policy knob in the model should cover"),
 * each named after the VMM that makes it. A policy is a set of knobs; `NAME+MOD+MOD` changes
 * knobs of a named policy (`qemu+prefault`). Adapters read the knobs and say "n/a" (with the
 * reason) for a combination their design cannot express. Pure.
 */
import { POLICY_MODIFIERS } from './workload.js';

export type Policy = {
  /** The name as given (`qemu`, `qemu+prefault`). */
  readonly name: string;
  /** Who uses it and where it comes from (§1.7). */
  readonly about: string;
  /**
   * To-private conversion: drop the shared copy (QEMU's `ram_block_discard_range()`:
   * MADV_DONTNEED of the shared range). Only meaningful where the design keeps two copies.
   */
  readonly discardShared: boolean;
  /** To-shared conversion: punch the private copy out of guest_memfd (FALLOC_FL_PUNCH_HOLE). */
  readonly punchPrivate: boolean;
  /**
   * Where shared memory comes from: anonymous memory at `userspace_addr` (6.18's separate
   * shared memory), the guest_memfd's own mmap (in-place / Firecracker), or the design's
   * default (what the VMM does on that kernel).
   */
  readonly shared: 'anon' | 'gmem-mmap' | 'default';
  /** No private memory at all: all guest RAM shared, conversions ignored (bounce buffers). */
  readonly allShared: boolean;
  /** KVM_PRE_FAULT_MEMORY of all guest RAM at boot. */
  readonly prefault: boolean;
  /**
   * VFIO: map (pin) all guest RAM at boot, only the ranges the device uses (unmapped before
   * they go private), or no device assignment for confidential guests.
   */
  readonly vfio: 'all' | 'shared' | 'none';
};

const BASE: readonly Policy[] = [
  {
    name: 'qemu',
    about:
      'QEMU: discard the shared copy on to-private and punch the private copy on to-shared; VFIO maps shared ranges only (RamDiscardManager / RamBlockAttributes listener, 4 KiB)',
    discardShared: true,
    punchPrivate: true,
    shared: 'default',
    allShared: false,
    prefault: false,
    vfio: 'shared',
  },
  {
    name: 'qemu-vfio-legacy',
    about:
      'QEMU before the RamBlockAttributes listener: discard disabled while VFIO is in use, all guest RAM mapped for DMA (2x memory)',
    discardShared: false,
    punchPrivate: false,
    shared: 'default',
    allShared: false,
    prefault: false,
    vfio: 'all',
  },
  {
    name: 'cloud-hypervisor',
    about:
      'cloud-hypervisor: no discard of the shared copy on to-private, punch of private on to-shared; VFIO maps only shared pages (#8501)',
    discardShared: false,
    punchPrivate: true,
    shared: 'default',
    allShared: false,
    prefault: false,
    vfio: 'shared',
  },
  {
    name: 'dragonball',
    about:
      'Dragonball (Kata): private by default, no discard in either direction, no VFIO for confidential guests',
    discardShared: false,
    punchPrivate: false,
    shared: 'default',
    allShared: false,
    prefault: false,
    vfio: 'none',
  },
  {
    name: 'firecracker',
    about:
      'Firecracker secret-free: one guest_memfd for all RAM, mmapped, INIT_SHARED, no attributes; the guest bounces I/O through shared memory, conversions are not made',
    discardShared: false,
    punchPrivate: false,
    shared: 'gmem-mmap',
    allShared: true,
    prefault: false,
    vfio: 'shared',
  },
];

export const POLICY_NAMES: readonly string[] = BASE.map((p) => p.name);

/** The policies `compare` runs when neither the command line nor the workload names any. */
export const DEFAULT_POLICIES: readonly string[] = [
  'qemu',
  'qemu+prefault',
  'qemu-vfio-legacy',
  'cloud-hypervisor',
  'dragonball',
  'firecracker',
];

/** The policy `NAME[+MOD...]`, or why there is none. */
export function policyByName(spec: string): Policy | string {
  const [base, ...mods] = spec.split('+');
  const b = BASE.find((p) => p.name === base);
  if (b === undefined) return `unknown policy "${base}" (known: ${POLICY_NAMES.join(', ')})`;
  let p: Policy = { ...b, name: spec };
  for (const m of mods) {
    if (!POLICY_MODIFIERS.includes(m))
      return `unknown policy modifier "${m}" (known: ${POLICY_MODIFIERS.join(', ')})`;
    if (m === 'prefault') p = { ...p, prefault: true };
    else if (m === 'no-prefault') p = { ...p, prefault: false };
    else if (m === 'keep') p = { ...p, discardShared: false, punchPrivate: false };
    else if (m === 'discard') p = { ...p, discardShared: true, punchPrivate: true };
    else if (m === 'pin-all') p = { ...p, vfio: 'all' };
    else if (m === 'pin-shared') p = { ...p, vfio: 'shared' };
    else if (m === 'anon') p = { ...p, shared: 'anon' };
    else if (m === 'gmem-mmap') p = { ...p, shared: 'gmem-mmap' };
  }
  return p;
}

/** The knobs in one line (the table's legend). */
export function describeKnobs(p: Policy): string {
  return [
    p.allShared ? 'all RAM shared' : `discard shared copy: ${p.discardShared ? 'yes' : 'no'}`,
    ...(p.allShared ? [] : [`punch private: ${p.punchPrivate ? 'yes' : 'no'}`]),
    `shared memory: ${p.shared}`,
    `pre-fault: ${p.prefault ? 'yes' : 'no'}`,
    `VFIO: ${p.vfio === 'all' ? 'all RAM pinned' : p.vfio === 'shared' ? 'used ranges' : 'none'}`,
  ].join(', ');
}
