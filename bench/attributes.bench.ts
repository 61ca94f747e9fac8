/**
 * KVM_SET_MEMORY_ATTRIBUTES cost versus range size: a 1 GiB and a 1 TiB range, with the same
 * number of distinct attribute ranges, target: per-call cost within 2x.
 *
 * Setup (untimed, fresh Host per size, events off): a SW_PROTECTED VM (linux-6.18) whose
 * attributes hold 1,000 distinct one-page PRIVATE ranges below the converted range (so the map is
 * not trivially small). The converted range R starts at GPA 1 TiB. Variants:
 * - whole range, no memslot: each call sets all of R to PRIVATE, the next back to shared
 *   (attributes 0), and so on: every call really converts;
 * - whole range, memslot: the same with a guest_memfd memslot covering exactly R, so the
 *   pre-set zap (`kvmUnmapGfnRange`) and the post-set hugepage mixed tracking
 *   (`kvmArchPostSetMemoryAttributes`, 2M and 1G levels) run for the slot;
 * - 1/1024 of the range, memslot: R is first split into 1,024 alternating PRIVATE/shared chunks;
 *   call 2m converts chunk c_m (pseudo-random) and call 2m+1 converts it back, so the map keeps
 *   ~1,024 ranges inside R and every call converts R/1024 (1 MiB vs 1 GiB).
 * Reported: µs per call (best of 5 batches of 100,000 calls) for each size, and the ratio
 * max/min of the two sizes.
 */
import { Host } from '../src/core/host.js';
import { ALL_PARTS } from '../src/core/all_parts.js';
import { getProfile } from '../src/core/profiles/index.js';
import {
  KVM_MEM_GUEST_MEMFD,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_X86_SW_PROTECTED_VM,
} from '../src/core/base/uapi.js';
import { must, now, prng, row, type BenchRow } from './util.js';

const GiB = 1n << 30n;
const TiB = 1n << 40n;
const BASE = TiB;
const BACKGROUND = 1000;
const CHUNKS = 1024;
const CALLS = 100_000;
const REPS = 5;

type Variant = 'whole' | 'whole+slot' | 'chunk+slot';

function setup(size: bigint, v: Variant): { host: Host; vmFd: number } {
  const host = new Host(getProfile('linux-6.18')!, { parts: ALL_PARTS, events: false });
  const kvm = host.openDevKvm();
  const vmFd = must(host.kvmCreateVm(kvm, KVM_X86_SW_PROTECTED_VM), 'KVM_CREATE_VM');
  for (let i = 0; i < BACKGROUND; i++) {
    must(
      host.kvmSetMemoryAttributes(vmFd, {
        address: BigInt(2 * i) << 12n,
        size: 4096n,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0n,
      }),
      'background attributes',
    );
  }
  if (v !== 'whole') {
    const gmem = must(host.kvmCreateGuestMemfd(vmFd, size, 0n), 'KVM_CREATE_GUEST_MEMFD');
    must(
      host.kvmSetUserMemoryRegion(
        vmFd,
        {
          slot: 0n,
          flags: KVM_MEM_GUEST_MEMFD,
          guest_phys_addr: BASE,
          memory_size: size,
          userspace_addr: 0n,
          guest_memfd_offset: 0n,
        },
        gmem,
        false,
      ),
      'KVM_SET_USER_MEMORY_REGION2',
    );
  }
  if (v === 'chunk+slot') {
    const c = size / BigInt(CHUNKS);
    for (let i = 0; i < CHUNKS; i += 2) {
      must(
        host.kvmSetMemoryAttributes(vmFd, {
          address: BASE + BigInt(i) * c,
          size: c,
          attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
          flags: 0n,
        }),
        'chunk attributes',
      );
    }
  }
  return { host, vmFd };
}

/** µs per call, best of REPS batches (after one warm-up batch). */
function measure(size: bigint, v: Variant): number {
  const { host, vmFd } = setup(size, v);
  // Precomputed call arguments: (address, size, attributes) per call.
  const args: Array<{ address: bigint; size: bigint; attributes: bigint; flags: bigint }> = [];
  if (v === 'chunk+slot') {
    const c = size / BigInt(CHUNKS);
    const r = prng(7);
    for (let m = 0; m < CALLS / 2; m++) {
      const i = r() % CHUNKS;
      const wasPrivate = i % 2 === 0;
      const address = BASE + BigInt(i) * c;
      const flip = wasPrivate ? 0n : KVM_MEMORY_ATTRIBUTE_PRIVATE;
      const back = wasPrivate ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0n;
      args.push({ address, size: c, attributes: flip, flags: 0n });
      args.push({ address, size: c, attributes: back, flags: 0n });
    }
  } else {
    for (let m = 0; m < CALLS; m++)
      args.push({
        address: BASE,
        size,
        attributes: m % 2 === 0 ? KVM_MEMORY_ATTRIBUTE_PRIVATE : 0n,
        flags: 0n,
      });
  }
  let best = Infinity;
  for (let rep = 0; rep <= REPS; rep++) {
    const t0 = now();
    for (const a of args) {
      const r = host.kvmSetMemoryAttributes(vmFd, a);
      if (!r.ok) throw new Error(`bench: KVM_SET_MEMORY_ATTRIBUTES failed with ${r.errno}`);
    }
    const dt = now() - t0;
    if (rep > 0 && dt < best) best = dt; // rep 0 is the warm-up
  }
  // Sanity: the state is back where it started (every call pair is a round trip).
  const vm = [...host.vms][0]!;
  const expect = BACKGROUND + (v === 'chunk+slot' ? CHUNKS / 2 : 0);
  if (vm.attrs.size !== expect)
    throw new Error(`bench: ${vm.attrs.size} attribute ranges, expected ${expect}`);
  return (best / args.length) * 1e6;
}

export function benchAttributes(): BenchRow[] {
  const out: BenchRow[] = [];
  const label: Record<Variant, string> = {
    whole: 'whole range, no memslot',
    'whole+slot': 'whole range, memslot covering it',
    'chunk+slot': `1/${CHUNKS} of the range among ${CHUNKS} ranges, memslot covering it`,
  };
  for (const v of ['whole', 'whole+slot', 'chunk+slot'] as const) {
    const small = measure(GiB, v);
    const large = measure(TiB, v);
    const note = `alternating PRIVATE/shared, ${BACKGROUND} other ranges, best of ${REPS} x ${CALLS} calls`;
    out.push(
      row('attributes', `set attributes 1 GiB, ${label[v]}`, small, 'µs/call', undefined, note),
    );
    out.push(
      row('attributes', `set attributes 1 TiB, ${label[v]}`, large, 'µs/call', undefined, note),
    );
    out.push(
      row(
        'attributes',
        `set attributes 1 TiB vs 1 GiB ratio, ${label[v]}`,
        Math.max(large / small, small / large),
        'x',
        { text: '<= 2', ok: (x) => x <= 2 },
      ),
    );
  }
  return out;
}
