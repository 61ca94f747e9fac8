/**
 * A TdxLauncher on the model: the TD build a VMM (QEMU 10.1, `target/i386/kvm/tdx.c` with
 * `hw/i386/tdvf.c`) performs, run against gmemlab's own KVM (a `Host` of the linux-6.18-tdx
 * profile), so the MRTD is the one the model's TDX module finalized in the TD's TDCS:
 *
 *   1. open /dev/kvm; KVM_CREATE_VM of type KVM_X86_TDX_VM; KVM_TDX_CAPABILITIES;
 *      KVM_TDX_INIT_VM with no attributes, the host's XFAM fixed bits (x87, SSE) and CPUID
 *      0x80000008.EAX[23:16] = 48 (GPAW 48: shared bit 47), MRCONFIGID/MROWNER/MROWNERCONFIG zero
 *      (none of it enters the MRTD);
 *   2. guest_memfd-backed memslots covering the TDVF sections: RAM from GPA 0 (QEMU's default
 *      128 MiB, or more when a section lies beyond) for sections below 2 GiB, the firmware region
 *      ending at 4 GiB for those in [2 GiB, 4 GiB), one slot per section above; each with an
 *      anonymous mapping as userspace_addr, where the VMM loads the sections (QEMU: the -bios RAM
 *      block for BFV/CFV, a zeroed buffer for TEMP_MEM/TD_HOB);
 *   3. KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP) (QEMU requires kernel-irqchip=split for a TD), one
 *      vCPU and KVM_TDX_INIT_VCPU. QEMU creates its vCPUs before the memslots; the model's order is
 *      the other way round because the model's KVM_CREATE_VCPU puts the trace contract's code page
 *      at GPA 0xFFFFF000 when nothing is there yet (the order does not change what is measured);
 *   4. per section, KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) over it and one KVM_TDX_INIT_MEM_REGION
 *      (flags KVM_TDX_MEASURE_MEMORY_REGION when the section has MR.EXTEND) from the VMM's copy.
 *      No KVM_PRE_FAULT_MEMORY: on 6.18 it is EOPNOTSUPP before finalize, and INIT_MEM_REGION maps
 *      the GPA itself (`kvm_tdp_map_page()` from `tdx_gmem_post_populate()`), which is what QEMU
 *      relies on;
 *   5. KVM_TDX_FINALIZE_VM; the MRTD is read from the TD's TDCS (`tdxTdMrtd`).
 *
 * Consecutive pages with the same flag become one INIT_MEM_REGION (a section is contiguous).
 * `extendMemory` (the two-pass order's separate MR.EXTEND, KVM_TDX_EXTEND_MEMORY of the v19
 * patches) has no 6.18 ioctl: it throws, and two-pass plans use MrtdLauncher. Every KVM error
 * stops the build with a TdxLaunchError naming the ioctl, the errno and the TDX module status KVM
 * wrote back. Pure: imports only the core.
 */
import { Host } from '../../core/host.js';
import { kernelParts } from '../../core/arch/x86/modules.js';
import { KVM_INTEL, TDX_HOST, tdxHost } from '../../core/arch/x86/vmx/parts.js';
import { getProfile } from '../../core/profiles/index.js';
import { VmFile } from '../../core/kvm/objects.js';
import { KVM_TDX, tdxTdMrtd } from '../../core/arch/x86/vmx/tdx.js';
import { TDX_MR_EXTEND_CHUNK, type Sha384Stream } from '../../core/platform/tdx/mrtd.js';
import { TdxLaunchError, type TdxLauncher, type TdxMeasureOp } from './measure.js';
import type { TdxLaunchPlan } from './launch_plan.js';

const PAGE = 4096;
const TWO_GIB = 0x8000_0000n;
const FOUR_GIB = 0x1_0000_0000n;
const TWO_MIB = 0x20_0000n;

/** The profile a TD build runs on. */
export const TDX_MEASURE_PROFILE = 'linux-6.18-tdx';
/**
 * The modules a TD build needs: kvm_intel and the TDX host (core/assemble.ts), so that a build
 * never loads kvm_amd, the PSP driver or the PVM module.
 */
export const TDX_MEASURE_PARTS = kernelParts(KVM_INTEL, TDX_HOST);
/** QEMU's default machine RAM (`-m 128M`): the low memslot is at least this big. */
const QEMU_DEFAULT_RAM = 128n << 20n;
const KVM_X86_TDX_VM = 5n;
const KVM_MEM_GUEST_MEMFD = 4n;
const KVM_MEMORY_ATTRIBUTE_PRIVATE = 8n;
const KVM_CAP_SPLIT_IRQCHIP = 121n;
const PROT_RW = 3;
const MAP_PRIVATE_ANON = 0x22;

/** One memslot of the build: [gpa, gpa + size) backed by the VMM's mapping at `hva`. */
interface Slot {
  readonly gpa: bigint;
  readonly size: bigint;
  hva: bigint;
}

/** The memslots a plan needs (module comment, step 2). */
export function tdxModelSlots(plan: TdxLaunchPlan): Array<{ gpa: bigint; size: bigint }> {
  let ramEnd = 0n;
  let flashBase = FOUR_GIB;
  const high: Array<{ gpa: bigint; size: bigint }> = [];
  for (const r of plan.regions) {
    const end = r.gpa + BigInt(r.pages * PAGE);
    if (end <= TWO_GIB) {
      if (end > ramEnd) ramEnd = end;
    } else if (r.gpa >= TWO_GIB && end <= FOUR_GIB) {
      if (r.gpa < flashBase) flashBase = r.gpa;
    } else high.push({ gpa: r.gpa, size: BigInt(r.pages * PAGE) });
  }
  const slots: Array<{ gpa: bigint; size: bigint }> = [];
  if (ramEnd > 0n) {
    const size =
      ramEnd <= QEMU_DEFAULT_RAM ? QEMU_DEFAULT_RAM : ((ramEnd + TWO_MIB - 1n) / TWO_MIB) * TWO_MIB;
    slots.push({ gpa: 0n, size: size > TWO_GIB ? TWO_GIB : size });
  }
  if (flashBase < FOUR_GIB) slots.push({ gpa: flashBase, size: FOUR_GIB - flashBase });
  return [...slots, ...high];
}

export interface ModelTdxLauncherOptions {
  /** Every PAGE.ADD and MR.EXTEND KVM issues, in order (for `--trace`). */
  readonly trace?: (op: TdxMeasureOp) => void;
  /** Called after every KVM call that succeeded, with its name (tests check invariants here). */
  readonly afterCall?: (host: Host, what: string) => void;
  /**
   * The SHA-384 the TDX module's MRTD runs (default: core/base/crypto's; the CLI passes Node's).
   * The blocks and their order are the model's either way.
   */
  readonly sha384?: () => Sha384Stream;
}

/** The model's KVM driven as QEMU drives KVM for a TD build (see the module comment). */
export class ModelTdxLauncher implements TdxLauncher {
  readonly host: Host;
  private readonly vmFd: number;
  private vcpuFd = -1;
  /** A page of VMM memory for command structs. */
  private readonly params: bigint;
  private readonly slots: Slot[] = [];
  /** The run of pages not yet given to INIT_MEM_REGION. */
  private run: { gpa: bigint; pages: number; measure: boolean } | undefined;
  private finished = false;
  private index = 0;
  private readonly trace: ((op: TdxMeasureOp) => void) | undefined;
  private readonly afterCall: ((host: Host, what: string) => void) | undefined;

  constructor(plan: TdxLaunchPlan, o: ModelTdxLauncherOptions = {}) {
    this.trace = o.trace;
    this.afterCall = o.afterCall;
    const profile = getProfile(TDX_MEASURE_PROFILE);
    if (profile === undefined) throw new Error(`profile ${TDX_MEASURE_PROFILE} missing`);
    const h = (this.host = new Host(profile, {
      parts: o.sha384 === undefined ? TDX_MEASURE_PARTS : kernelParts(KVM_INTEL, tdxHost(o.sha384)),
      events: false,
    }));
    const kvm = h.openDevKvm();
    this.vmFd = must(h.kvmCreateVm(kvm, KVM_X86_TDX_VM), 'KVM_CREATE_VM(KVM_X86_TDX_VM)');
    this.params = must(
      h.mmap(null, BigInt(3 * PAGE), PROT_RW, MAP_PRIVATE_ANON, 0n),
      'mmap of the parameter pages',
    );
    // KVM_TDX_CAPABILITIES with room for 64 CPUID entries.
    const caps = new Uint8Array(2056);
    new DataView(caps.buffer).setUint32(2048, 64, true);
    this.cmd(this.vmFd, KVM_TDX.CAPABILITIES, 0, caps, 'KVM_TDX_CAPABILITIES');
    // KVM_TDX_INIT_VM: attributes 0, XFAM x87|SSE, one CPUID entry (0x80000008: GPAW 48).
    const init = new Uint8Array(264 + 40);
    const iv = new DataView(init.buffer);
    iv.setBigUint64(8, 0x3n, true);
    iv.setUint32(256, 1, true);
    iv.setUint32(264, 0x80000008, true);
    iv.setUint32(264 + 12, 48 << 16, true);
    this.cmd(this.vmFd, KVM_TDX.INIT_VM, 0, init, 'KVM_TDX_INIT_VM');

    const wanted = tdxModelSlots(plan);
    let total = 0n;
    for (const s of wanted) total += s.size;
    const gmem = must(
      h.kvmCreateGuestMemfd(this.vmFd, total, 0n),
      'KVM_CREATE_GUEST_MEMFD for the TD memory',
    );
    let off = 0n;
    wanted.forEach((s, slot) => {
      const hva = must(h.mmap(null, s.size, PROT_RW, MAP_PRIVATE_ANON, 0n), 'mmap guest memory');
      must(
        h.kvmSetUserMemoryRegion(
          this.vmFd,
          {
            slot: BigInt(slot),
            flags: KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: s.gpa,
            memory_size: s.size,
            userspace_addr: hva,
            guest_memfd_offset: off,
          },
          gmem,
          false,
        ),
        `KVM_SET_USER_MEMORY_REGION2 slot ${slot}`,
      );
      this.afterCall?.(h, `memslot ${slot}`);
      this.slots.push({ gpa: s.gpa, size: s.size, hva });
      off += s.size;
    });

    must(h.kvmEnableCap(this.vmFd, KVM_CAP_SPLIT_IRQCHIP, 0n, [24n]), 'KVM_CAP_SPLIT_IRQCHIP');
    this.vcpuFd = must(h.kvmCreateVcpu(this.vmFd, 0n), 'KVM_CREATE_VCPU 0');
    this.cmd(this.vcpuFd, KVM_TDX.INIT_VCPU, 0, undefined, 'KVM_TDX_INIT_VCPU');
  }

  /** The VMM's mapping of `gpa`. */
  private hvaOf(gpa: bigint): bigint {
    for (const s of this.slots)
      if (gpa >= s.gpa && gpa < s.gpa + s.size) return s.hva + (gpa - s.gpa);
    throw new RangeError(`GPA 0x${gpa.toString(16)} is outside the VMM's memslots`);
  }

  /**
   * KVM_MEMORY_ENCRYPT_OP with `struct kvm_tdx_cmd { u32 id; u32 flags; u64 data; u64 hw_error; }`
   * on `fd`, its struct (if any) at the parameter page.
   */
  private cmd(
    fd: number,
    id: number,
    flags: number,
    data: Uint8Array | undefined,
    what: string,
  ): void {
    const h = this.host;
    if (data !== undefined && !h.poke(this.params, data).ok)
      throw new TdxLaunchError(`${what}: the VMM cannot write its parameters`);
    const b = new Uint8Array(24);
    const v = new DataView(b.buffer);
    v.setUint32(0, id, true);
    v.setUint32(4, flags, true);
    if (data !== undefined) v.setBigUint64(8, this.params, true);
    const r = h.kvmMemoryEncryptOp(fd, { kind: 'buffer', bytes: b });
    if (!r.ok) {
      const hw = v.getBigUint64(16, true);
      throw new TdxLaunchError(
        `${what}: ${r.errno}${hw !== 0n ? ` (TDX module status 0x${hw.toString(16)})` : ''}`,
      );
    }
    this.afterCall?.(h, what);
  }

  initMemRegion(gpa: bigint, page: Uint8Array, measure: boolean): void {
    if (this.finished)
      throw new TdxLaunchError('KVM_TDX_INIT_MEM_REGION after KVM_TDX_FINALIZE_VM');
    if (page.length !== PAGE)
      throw new RangeError(`KVM_TDX_INIT_MEM_REGION adds 4096-byte pages, got ${page.length}`);
    if (gpa % BigInt(PAGE) !== 0n)
      throw new TdxLaunchError(
        `KVM_TDX_INIT_MEM_REGION at 0x${gpa.toString(16)}: GPA not page-aligned`,
      );
    // The VMM loads the page into its copy of guest memory (all-zero pages are already zero).
    let zero = true;
    for (let i = 0; i < PAGE; i++)
      if (page[i] !== 0) {
        zero = false;
        break;
      }
    if (!zero && !this.host.poke(this.hvaOf(gpa), page).ok)
      throw new TdxLaunchError(`write of the page at 0x${gpa.toString(16)}`);
    const r = this.run;
    if (r !== undefined && r.measure === measure && r.gpa + BigInt(r.pages * PAGE) === gpa)
      r.pages++;
    else {
      this.flush();
      this.run = { gpa, pages: 1, measure };
    }
  }

  extendMemory(gpa: bigint): void {
    throw new TdxLaunchError(
      `MR.EXTEND of 0x${gpa.toString(16)} apart from its PAGE.ADD: Linux 6.18 has no ioctl for it (KVM_TDX_EXTEND_MEMORY was in the v19 patches only); the two-pass order needs the direct MRTD`,
    );
  }

  /** KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) and KVM_TDX_INIT_MEM_REGION of the pending run. */
  private flush(): void {
    const r = this.run;
    if (r === undefined) return;
    this.run = undefined;
    const size = BigInt(r.pages * PAGE);
    must(
      this.host.kvmSetMemoryAttributes(this.vmFd, {
        address: r.gpa,
        size,
        attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
        flags: 0n,
      }),
      `KVM_SET_MEMORY_ATTRIBUTES(PRIVATE) of 0x${r.gpa.toString(16)}`,
    );
    const region = new Uint8Array(24);
    const v = new DataView(region.buffer);
    v.setBigUint64(0, this.hvaOf(r.gpa), true);
    v.setBigUint64(8, r.gpa, true);
    v.setBigUint64(16, BigInt(r.pages), true);
    this.cmd(
      this.vcpuFd,
      KVM_TDX.INIT_MEM_REGION,
      r.measure ? 1 : 0,
      region,
      `KVM_TDX_INIT_MEM_REGION of ${r.pages} page(s) at 0x${r.gpa.toString(16)}`,
    );
    if (this.trace !== undefined)
      for (let p = 0; p < r.pages; p++) {
        const gpa = r.gpa + BigInt(p * PAGE);
        this.trace({ index: this.index++, op: 'PAGE.ADD', gpa });
        if (r.measure)
          for (let off = 0; off < PAGE; off += TDX_MR_EXTEND_CHUNK)
            this.trace({ index: this.index++, op: 'MR.EXTEND', gpa: gpa + BigInt(off) });
      }
  }

  finalize(): Uint8Array {
    this.flush();
    this.cmd(this.vmFd, KVM_TDX.FINALIZE_VM, 0, undefined, 'KVM_TDX_FINALIZE_VM');
    this.finished = true;
    const f = this.host.fdFile(this.vmFd);
    const mrtd = f instanceof VmFile ? tdxTdMrtd(this.host, f.vm) : undefined;
    if (mrtd === undefined) throw new Error('the TD has no MRTD after KVM_TDX_FINALIZE_VM');
    return mrtd;
  }
}

function must<T>(r: { ok: true; value: T } | { ok: false; errno: string }, what: string): T {
  if (!r.ok) throw new TdxLaunchError(`${what}: ${r.errno}`);
  return r.value;
}
