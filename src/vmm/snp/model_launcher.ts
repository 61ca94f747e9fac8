/**
 * An SnpLauncher on the model: the launch a VMM (QEMU, `target/i386/sev.c` with
 * `hw/i386/pc_sysfw.c` and `accel/kvm`) performs for an SNP guest, run against gmemlab's own KVM
 * (a `Host` of the linux-6.18-snp profile), so the digest is the model firmware's, read from its
 * guest context after SNP_LAUNCH_FINISH:
 *
 *   1. open /dev/kvm and /dev/sev; KVM_CREATE_VM of type KVM_X86_SNP_VM;
 *   2. KVM_SEV_INIT2 with vmsa_features = the guest features without SNP_ACTIVE (bit 0: KVM adds
 *      it, `__sev_guest_init`), flags 0, ghcb_version 0 (KVM picks its default);
 *   3. guest_memfd-backed memslots: RAM from GPA 0 and the flash region ending at 4 GiB, each with
 *      an anonymous shared mapping as its userspace_addr (where the VMM writes the pages), and
 *      KVM_SET_MEMORY_ATTRIBUTES PRIVATE over both (QEMU converts guest_memfd RAM to private when
 *      the guest is confidential);
 *   4. SNP_LAUNCH_START (policy: QEMU's default 0x30000, SMT allowed + the reserved-must-be-one
 *      bit, unless given);
 *   5. the pages: the VMM writes each page's contents into its mapping, and one
 *      SNP_LAUNCH_UPDATE goes per contiguous run of pages of one type (QEMU
 *      `sev_snp_launch_update` per region: the flash, then each metadata section);
 *   6. one vCPU per VMSA with the plan's image (Host.sevSetVcpuVmsa: the model's stand-in for the
 *      register ioctls) and SNP_LAUNCH_FINISH, which measures them in vCPU-index order.
 *
 * Every KVM error stops the launch with a ModelLaunchError naming the command, the errno and the
 * firmware status KVM wrote back. Pure: imports only the core.
 */
import { Host } from '../../core/host.js';
import { kernelParts } from '../../core/arch/x86/modules.js';
import { CCP_SEV, ccpSev, KVM_AMD } from '../../core/arch/x86/svm/parts.js';
import { getProfile } from '../../core/profiles/index.js';
import { VmFile } from '../../core/kvm/objects.js';
import { snpGuestContext } from '../../core/arch/x86/svm/sev_snp.js';
import type { SnpGuestContext } from '../../core/platform/sev_snp/firmware.js';
import type { SnpPageType } from '../../core/platform/sev_snp/launch_digest.js';
import type { SnpLauncher, SnpMeasuredPage } from './measure.js';
import type { SnpLaunchPlan } from './launch_plan.js';

const PAGE = 4096;
const FOUR_GIB = 0x1_0000_0000n;
const TWO_MIB = 0x20_0000n;

/** The profile a measurement runs on. */
export const SNP_MEASURE_PROFILE = 'linux-6.18-snp';
/** QEMU's default SNP guest policy (`sev-snp-guest` object, `policy=0x30000`). */
export const QEMU_SNP_DEFAULT_POLICY = 0x30000n;
/** QEMU's default machine RAM (`-m 128M`): the low memslot is at least this big. */
export const QEMU_DEFAULT_RAM = 128n << 20n;

/** `enum sev_cmd_id` values this launcher issues. */
const KVM_SEV_INIT2 = 22;
const KVM_SEV_SNP_LAUNCH_START = 100;
const KVM_SEV_SNP_LAUNCH_UPDATE = 101;
const KVM_SEV_SNP_LAUNCH_FINISH = 102;
const KVM_X86_SNP_VM = 4n;
const KVM_MEM_GUEST_MEMFD = 4n;
const KVM_MEMORY_ATTRIBUTE_PRIVATE = 8n;
const PROT_RW = 3;
const MAP_PRIVATE_ANON = 0x22;

/** A KVM call of the launch failed. */
export class ModelLaunchError extends Error {
  constructor(
    message: string,
    readonly errno: string,
    /** The firmware status KVM wrote back into kvm_sev_cmd.error (0: none). */
    readonly fwError = 0,
  ) {
    super(message);
  }
}

/** Where the VMM maps guest memory: RAM from 0, and the flash region up to 4 GiB. */
export interface ModelLayout {
  readonly ramSize: bigint;
  /** Start of the region ending at 4 GiB (the firmware image; with an SVSM, it and the vars). */
  readonly flashBase: bigint;
}

export interface ModelLauncherOptions {
  /** SEV features of the VMSAs (bit 0, SNP_ACTIVE, is KVM's to add). */
  readonly guestFeatures: bigint;
  readonly layout: ModelLayout;
  /** SNP_LAUNCH_START's policy (default QEMU_SNP_DEFAULT_POLICY). */
  readonly policy?: bigint;
  /**
   * Called after every KVM call that succeeded, with its name (tests check invariants here). The
   * host records model events only when this is given: nothing else reads them.
   */
  readonly afterCall?: (host: Host, what: string) => void;
  /**
   * The one-shot SHA-384 the model's SNP firmware measures with (default: core/base/crypto's; the
   * CLI passes Node's). What is measured, and in which order, is the model's either way.
   */
  readonly sha384?: (bytes: Uint8Array) => Uint8Array;
}

/**
 * The layout a plan needs: RAM of QEMU's default size, or larger (to the next 2 MiB) when a page
 * below 2 GiB lies beyond it; the flash region from the lowest planned page at or above 2 GiB.
 */
export function modelLayoutFor(plan: SnpLaunchPlan, flashSize: number): ModelLayout {
  let ramEnd = QEMU_DEFAULT_RAM;
  let flashBase = FOUR_GIB - BigInt(flashSize);
  for (const u of plan.updates) {
    const end = u.gpa + BigInt(u.len);
    if (u.gpa >= 0x8000_0000n) {
      if (u.gpa < flashBase) flashBase = u.gpa;
    } else if (end > ramEnd) ramEnd = ((end + TWO_MIB - 1n) / TWO_MIB) * TWO_MIB;
  }
  return { ramSize: ramEnd, flashBase };
}

/**
 * The modules an SNP launch needs: kvm_amd and the PSP driver (core/assemble.ts), so that a
 * launch never loads kvm_intel, the TDX host or the PVM module.
 */
export const SNP_MEASURE_PARTS = kernelParts(KVM_AMD, CCP_SEV);

/** The model's KVM driven as QEMU drives KVM for an SNP launch (see the module comment). */
export class ModelLauncher implements SnpLauncher {
  readonly host: Host;
  private readonly vmFd: number;
  private readonly sevFd: number;
  /** A page of VMM memory for command parameter structs. */
  private readonly params: bigint;
  /** The memslots' userspace mappings: [gpa, size, hva]. */
  private readonly slots: Array<readonly [bigint, bigint, bigint]> = [];
  /** The run of pages not yet given to LAUNCH_UPDATE. */
  private run: { gpa: bigint; type: SnpPageType; pages: number } | undefined;
  /**
   * Page contents not yet written to VMM memory: a copy of `stagedLen` bytes for the pages from
   * `stagedGpa` on (one write per contiguous run: the VMM loads a flash image in one go).
   */
  private staged = new Uint8Array(16 * PAGE);
  private stagedLen = 0;
  private stagedGpa = 0n;
  private finished = false;
  private readonly afterCall: ((host: Host, what: string) => void) | undefined;

  constructor(o: ModelLauncherOptions) {
    this.afterCall = o.afterCall;
    const profile = getProfile(SNP_MEASURE_PROFILE);
    if (profile === undefined) throw new Error(`profile ${SNP_MEASURE_PROFILE} missing`);
    const h = (this.host = new Host(profile, {
      parts: o.sha384 === undefined ? SNP_MEASURE_PARTS : kernelParts(KVM_AMD, ccpSev(o.sha384)),
      events: o.afterCall !== undefined,
    }));
    const kvm = h.openDevKvm();
    this.sevFd = must(h.openDevSev(), 'open("/dev/sev")');
    this.vmFd = must(h.kvmCreateVm(kvm, KVM_X86_SNP_VM), 'KVM_CREATE_VM(KVM_X86_SNP_VM)');
    this.params = must(
      h.mmap(null, BigInt(PAGE), PROT_RW, MAP_PRIVATE_ANON, 0n),
      'mmap of the parameter page',
    );

    // KVM_SEV_INIT2: struct kvm_sev_init { u64 vmsa_features; u32 flags; u16 ghcb_version; ... }.
    const init = new Uint8Array(48);
    new DataView(init.buffer).setBigUint64(0, o.guestFeatures & ~1n, true);
    this.encOp(KVM_SEV_INIT2, init, 'KVM_SEV_INIT2');

    // Memslots over guest_memfd: RAM, then the flash region.
    const { ramSize, flashBase } = o.layout;
    if (ramSize <= 0n || ramSize % BigInt(PAGE) !== 0n || ramSize > flashBase)
      throw new RangeError(`RAM of 0x${ramSize.toString(16)} bytes does not fit below the flash`);
    const flashSize = FOUR_GIB - flashBase;
    const gmem = must(
      h.kvmCreateGuestMemfd(this.vmFd, ramSize + flashSize, 0n),
      'KVM_CREATE_GUEST_MEMFD for RAM and flash',
    );
    const regions: Array<readonly [bigint, bigint]> = [
      [0n, ramSize],
      [flashBase, flashSize],
    ];
    let gmemOff = 0n;
    regions.forEach(([gpa, size], slot) => {
      const hva = must(h.mmap(null, size, PROT_RW, MAP_PRIVATE_ANON, 0n), 'mmap guest memory');
      must(
        h.kvmSetUserMemoryRegion(
          this.vmFd,
          {
            slot: BigInt(slot),
            flags: KVM_MEM_GUEST_MEMFD,
            guest_phys_addr: gpa,
            memory_size: size,
            userspace_addr: hva,
            guest_memfd_offset: gmemOff,
          },
          gmem,
          false,
        ),
        `KVM_SET_USER_MEMORY_REGION2 slot ${slot}`,
      );
      must(
        h.kvmSetMemoryAttributes(this.vmFd, {
          address: gpa,
          size,
          attributes: KVM_MEMORY_ATTRIBUTE_PRIVATE,
          flags: 0n,
        }),
        'KVM_SET_MEMORY_ATTRIBUTES(PRIVATE)',
      );
      this.afterCall?.(h, `memslot ${slot}`);
      this.slots.push([gpa, size, hva]);
      gmemOff += size;
    });

    // SNP_LAUNCH_START: struct kvm_sev_snp_launch_start { u64 policy; u8 gosvw[16]; u16 flags; ... }.
    const start = new Uint8Array(64);
    new DataView(start.buffer).setBigUint64(0, o.policy ?? QEMU_SNP_DEFAULT_POLICY, true);
    this.encOp(KVM_SEV_SNP_LAUNCH_START, start, 'KVM_SEV_SNP_LAUNCH_START');
  }

  /** The VMM's mapping of `gpa` (a planned page lies in a memslot). */
  private hvaOf(gpa: bigint): bigint {
    for (const [base, size, hva] of this.slots)
      if (gpa >= base && gpa < base + size) return hva + (gpa - base);
    throw new RangeError(`GPA 0x${gpa.toString(16)} is outside the VMM's memslots`);
  }

  /** KVM_MEMORY_ENCRYPT_OP with `struct kvm_sev_cmd { u32 id; u64 data; u32 error; u32 sev_fd; }`. */
  private encOp(id: number, data: Uint8Array, what: string): void {
    const h = this.host;
    if (!h.poke(this.params, data).ok) throw new ModelLaunchError(`${what}: params`, 'EFAULT');
    const cmd = new Uint8Array(24);
    const dv = new DataView(cmd.buffer);
    dv.setUint32(0, id, true);
    dv.setBigUint64(8, this.params, true);
    dv.setInt32(20, this.sevFd, true);
    const r = h.kvmMemoryEncryptOp(this.vmFd, { kind: 'buffer', bytes: cmd });
    if (!r.ok) {
      const fw = dv.getUint32(16, true);
      throw new ModelLaunchError(
        `${what}: ${r.errno}${fw !== 0 ? ` (firmware error 0x${fw.toString(16)})` : ''}`,
        r.errno,
        fw,
      );
    }
    this.afterCall?.(h, what);
  }

  launchUpdate(gpa: bigint, type: SnpPageType, contents: Uint8Array | undefined): void {
    if (this.finished) throw new RangeError('LAUNCH_UPDATE after LAUNCH_FINISH');
    // The VMM puts the page's contents in its memory (QEMU: the flash is loaded into its RAM
    // block, the metadata pages are filled in place) before the region's LAUNCH_UPDATE.
    if (contents !== undefined) {
      if (contents.length !== PAGE)
        throw new RangeError(`a LAUNCH_UPDATE page is 4096 bytes, got ${contents.length}`);
      if (this.stagedLen > 0 && this.stagedGpa + BigInt(this.stagedLen) !== gpa) this.writeStaged();
      if (this.stagedLen === 0) this.stagedGpa = gpa;
      if (this.stagedLen + PAGE > this.staged.length) {
        const grown = new Uint8Array(this.staged.length * 2);
        grown.set(this.staged.subarray(0, this.stagedLen));
        this.staged = grown;
      }
      this.staged.set(contents, this.stagedLen);
      this.stagedLen += PAGE;
    }
    const r = this.run;
    if (r !== undefined && r.type === type && r.gpa + BigInt(r.pages * PAGE) === gpa) {
      r.pages++;
      return;
    }
    this.flush();
    this.run = { gpa, type, pages: 1 };
  }

  /** The VMM's write of the staged contents into its memory. */
  private writeStaged(): void {
    if (this.stagedLen === 0) return;
    const gpa = this.stagedGpa;
    const n = this.stagedLen;
    this.stagedLen = 0;
    for (const [base, size, hva] of this.slots) {
      if (gpa >= base && gpa + BigInt(n) <= base + size) {
        if (!this.host.poke(hva + (gpa - base), this.staged.subarray(0, n)).ok)
          throw new ModelLaunchError(`write of the pages at 0x${gpa.toString(16)}`, 'EFAULT');
        return;
      }
    }
    throw new RangeError(`pages at 0x${gpa.toString(16)} are outside the VMM's memslots`);
  }

  /** SNP_LAUNCH_UPDATE of the pending run: struct kvm_sev_snp_launch_update. */
  private flush(): void {
    this.writeStaged();
    const r = this.run;
    if (r === undefined) return;
    this.run = undefined;
    const p = new Uint8Array(64);
    const dv = new DataView(p.buffer);
    dv.setBigUint64(0, r.gpa >> 12n, true); // gfn_start
    dv.setBigUint64(8, this.hvaOf(r.gpa), true); // uaddr
    dv.setBigUint64(16, BigInt(r.pages * PAGE), true); // len
    p[24] = r.type;
    this.encOp(
      KVM_SEV_SNP_LAUNCH_UPDATE,
      p,
      `KVM_SEV_SNP_LAUNCH_UPDATE of ${r.pages} page(s) of type ${r.type} at 0x${r.gpa.toString(16)}`,
    );
  }

  launchFinish(vmsas: readonly Uint8Array[]): Uint8Array {
    this.flush();
    const h = this.host;
    vmsas.forEach((v, i) => {
      const fd = must(h.kvmCreateVcpu(this.vmFd, BigInt(i)), `KVM_CREATE_VCPU ${i}`);
      must(h.sevSetVcpuVmsa(fd, v), `vCPU ${i}'s VMSA`);
      this.afterCall?.(h, `vCPU ${i}`);
    });
    this.encOp(KVM_SEV_SNP_LAUNCH_FINISH, new Uint8Array(88), 'KVM_SEV_SNP_LAUNCH_FINISH');
    this.finished = true;
    return this.context().digest.value();
  }

  /** The firmware's guest context of the VM. */
  context(): SnpGuestContext {
    const f = this.host.fdFile(this.vmFd);
    const ctx = f instanceof VmFile ? snpGuestContext(this.host, f.vm) : undefined;
    if (ctx === undefined) throw new Error('the SNP VM has no firmware guest context');
    return ctx;
  }

  /** Every page the firmware measured, from its own log, in order. */
  measuredPages(): SnpMeasuredPage[] {
    return this.context().measured.map((m, index) => ({
      index,
      gpa: m.gpa,
      type: m.type as SnpPageType,
      contentsHash: m.contentsHash,
      digest: m.digest,
    }));
  }
}

function must<T>(r: { ok: true; value: T } | { ok: false; errno: string }, what: string): T {
  if (!r.ok) throw new ModelLaunchError(`${what}: ${r.errno}`, r.errno);
  return r.value;
}
