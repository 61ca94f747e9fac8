/**
 * The design-2020-separate-mm walk of the trace generator (the design's profile only; trace_gen.ts
 * calls it): a DEFAULT VM whose memslot addresses live in an address space of no process
 * (`address_space_create`, `KVM_MAP_ADDRESS_SPACE`), private anonymous memory mapped there
 * (`address_space_mmap` without a source) and shared memory of the VMM's (MAP_SHARED anonymous)
 * mapped there too; then, interleaved: guest programs of loads, stores and KVM_HC_MAP_GPA_RANGE
 * requests; the VMM's conversions (a page of the guest address space remapped to its shared
 * memory or to new private memory), unmaps, discards of its shared memory (MADV_REMOVE), loads,
 * stores and vmsplice of its own shared pages and of the guest address space's addresses (which
 * its own mm does not have: SIGSEGV, EFAULT); the uAPI's error paths (bad flags, the wrong fd,
 * a second attach, an attach after a memslot); closing the address-space fd while the VM holds
 * it, and teardowns. Handles are named s* (svm, sas, ssh, scpu).
 */
import type { AddrArg, FdArg, GuestStep, ResultLine, TraceOpInput } from '../trace/types.js';
import { guestLoad, guestStore } from '../core/arch/x86/kvm_run.js';
import { KVM_HC_MAP_GPA_RANGE } from '../core/base/uapi.js';
import {
  genAddressSpaceCreate,
  genAddressSpaceMmap,
  genAddressSpaceMunmap,
  genKvmMapAddressSpace,
} from '../ops/designs.js';
import { genClose } from '../ops/fd.js';
import {
  genMadviseRange,
  genMmapOf,
  genPeekAt,
  genPokeAt,
  genVmmAccessAt,
} from '../ops/host_mm.js';
import { genRegionOf } from '../ops/memslots.js';
import { genRunOn, genVcpuOf } from '../ops/vcpu.js';
import { genCreateVmOf, genEnableCapOf } from '../ops/vm.js';
import { PAGE, type GenState } from './gen_state.js';

type G = GenState<TraceOpInput>;

/** Where the walk puts guest RAM in the guest address space, and at which GPA. */
const AS_BASE = 0x1000_0000n;
const GPA_BASE = 0x8000_0000n;
/** KVM_CAP_EXIT_HYPERCALL and its KVM_HC_MAP_GPA_RANGE bit. */
const KVM_CAP_EXIT_HYPERCALL = 201n;
const MAP_GPA_RANGE_BIT = 1n << 12n;
const ENCRYPTED = 1n << 4n;
/** madvise advice. */
const MADV_DONTNEED = 4n;
const MADV_REMOVE = 9n;

const ok = (res: ResultLine | undefined): boolean => res !== undefined && 'ok' in res && res.ok;
const handle = (name: string): FdArg => ({ kind: 'handle', name });
const raw = (value: bigint): AddrArg => ({ kind: 'raw', value });
const at = (map: string, offset: bigint): AddrArg => ({ kind: 'handle', name: map, offset });

export function separateMmWalk(g: G): void {
  const r = g.r;
  const vm = g.name('svm');
  if (!ok(genCreateVmOf(g, 0n, vm))) return;
  const as = g.name('sas');
  // address_space_create: flags 0, sometimes an unknown bit (EINVAL).
  if (r.chance(0.1)) genAddressSpaceCreate(g, 1n << BigInt(r.int(32)));
  if (!ok(genAddressSpaceCreate(g, 0n, as))) return;
  // The uAPI's errors: the VM fd as the address space (EINVAL), an fd not open (EBADF).
  if (r.chance(0.15)) genKvmMapAddressSpace(g, handle(vm), r.pick([handle(vm), handle('kvm')]));
  const pages = BigInt(1 + r.int(8));
  const size = pages * PAGE;
  const slot = BigInt(1 + r.int(4));
  // Attached before the memslot (an attach after one is EBUSY, and the slot's address is then
  // the VMM's).
  const late = r.chance(0.1);
  if (!late) genKvmMapAddressSpace(g, handle(vm), handle(as));
  if (r.chance(0.1)) genKvmMapAddressSpace(g, handle(vm), handle(as));
  const privMap = (page: bigint, n: bigint): void => {
    genAddressSpaceMmap(
      g,
      handle(as),
      AS_BASE + page * PAGE,
      n * PAGE,
      r.chance(0.9) ? 3n : 1n,
      r.chance(0.95) ? 2n : r.pick([0n, 3n, 0x20n]),
      null,
    );
  };
  privMap(0n, pages);
  const sh = g.name('ssh');
  const shared = ok(genMmapOf(g, null, size, 0x21n, sh));
  genRegionOf(g, false, vm, slot, 0n, GPA_BASE, size, raw(AS_BASE), { kind: 'raw', value: 0n });
  if (late) genKvmMapAddressSpace(g, handle(vm), handle(as));
  const cpu = g.name('scpu');
  if (!ok(genVcpuOf(g, vm, cpu))) return;
  if (r.chance(0.7)) genEnableCapOf(g, vm, KVM_CAP_EXIT_HYPERCALL, [MAP_GPA_RANGE_BIT]);
  let asOpen = true;
  const steps = 4 + r.int(14);
  for (let i = 0; i < steps; i++) {
    const page = BigInt(r.int(Number(pages)));
    const asAddr = AS_BASE + page * PAGE;
    switch (r.int(11)) {
      case 0:
      case 1:
      case 2: {
        // The guest: loads and stores, sometimes a conversion request (answered 0 by the VMM).
        const prog: GuestStep[] = [];
        const n = 1 + r.int(4);
        for (let k = 0; k < n; k++) {
          const gpa = GPA_BASE + BigInt(r.int(Number(pages))) * PAGE;
          const c = r.int(5);
          if (c <= 1) prog.push(guestStore(gpa, Uint8Array.of(1 + r.int(255), 0x5e, 0xc2, 0xe7)));
          else if (c <= 3) prog.push(guestLoad(gpa, 4));
          else
            prog.push({
              kind: 'hypercall',
              nr: BigInt(KVM_HC_MAP_GPA_RANGE),
              args: [gpa, 1n, r.chance(0.5) ? ENCRYPTED : 0n],
            });
        }
        if (r.chance(0.5)) genRunOn(g, cpu, prog);
        // (The VMM's answer to a KVM_HC_MAP_GPA_RANGE exit is 0 either way.)
        else genRunOn(g, cpu, prog);
        break;
      }
      case 3:
        // To shared: the VMM's shared page mapped over the guest's (the private page goes).
        genAddressSpaceMmap(
          g,
          handle(as),
          asAddr,
          PAGE,
          3n,
          1n,
          shared ? at(sh, page * PAGE) : raw(asAddr),
        );
        break;
      case 4:
        // To private: new anonymous memory over the page.
        privMap(page, 1n);
        break;
      case 5:
        genAddressSpaceMunmap(g, handle(as), asAddr, PAGE);
        break;
      case 6:
        // The VMM reaches for the guest address space's address in its own mm.
        genVmmAccessAt(g, raw(asAddr), !r.chance(0.5));
        break;
      case 7:
        if (!shared) break;
        if (r.chance(0.5)) genPeekAt(g, sh, page * PAGE, 4n);
        else genPokeAt(g, sh, page * PAGE, Uint8Array.of(0xab, 0xcd));
        break;
      case 8:
        // Discarding shared memory (QEMU's ram_block_discard_range()).
        if (shared)
          genMadviseRange(
            g,
            at(sh, page * PAGE),
            PAGE,
            r.chance(0.7) ? MADV_REMOVE : MADV_DONTNEED,
          );
        break;
      case 9:
        // The address-space fd closed: the VM keeps the mm.
        if (asOpen && r.chance(0.4)) {
          genClose(g, handle(as));
          asOpen = false;
        }
        break;
      default:
        genAddressSpaceMmap(
          g,
          handle(r.chance(0.8) ? as : vm),
          asAddr + BigInt(r.pick([0, 1, 0x800])),
          r.pick([0n, PAGE, PAGE * pages]),
          3n,
          r.pick([1n, 2n]),
          r.chance(0.5) ? null : raw(asAddr),
        );
    }
  }
  // Teardown, sometimes.
  if (r.chance(0.4)) {
    genClose(g, handle(cpu));
    genClose(g, handle(vm));
    if (asOpen) genClose(g, handle(as));
  }
}
