/**
 * The kernel modules an x86 host loads, as registrations (the module boundary core/assemble.ts
 * describes): kvm.ko knows no vendor; kvm_intel, kvm_amd and the PVM module each hand their
 * `kvm_x86_ops` to it when they load (`kvm_x86_vendor_init()`, arch/x86/kvm/x86.c), with the
 * platform under them (the TDX host code, the PSP driver). A module's registration lives beside
 * its code (vmx/parts.ts, svm/parts.ts, pvm/parts.ts); a registry is the set loaded on one host.
 */
import type { ProfileParts } from '../../profiles/profile.js';
import type { KvmModule } from '../../profiles/facts.js';
import type { KernelCtx } from '../../ctx.js';
import type { KvmX86Ops } from './x86_ops.js';
import type { KvmArchOps } from '../../kvm/arch_ops.js';
import { NO_PLATFORM, type Platform } from '../../platform/platform.js';
import type { FrameStore } from '../../base/frames.js';
import type { Errno } from '../../base/errno.js';
import type { Result } from '../../base/result.js';
import type { KFile } from '../../vfs/file.js';
import type { Vcpu, Vm } from '../../kvm/objects.js';
import {
  GMEM_INPLACE_V7,
  GMEM_LINUX_6_18,
  type GmemBacking,
} from '../../kvm/guest_memfd/backing.js';

/**
 * What a module adds to the host's system calls beyond its seam's ops: the model's entry points
 * that only one vendor or platform answers.
 */
export interface HostHooks {
  /** open("/dev/sev"): the PSP driver's misc device (ccp; `sev_misc_dev`), a file of inode `ino`. */
  readonly openSevDevice?: (ino: number) => KFile;
  /**
   * The model's stand-in for the register ioctls of an SEV-ES / SNP vCPU: its VMSA image
   * (kvm_amd, arch/x86/svm/sev_snp.ts).
   */
  readonly sevSetVcpuVmsa?: (k: KernelCtx, vcpu: Vcpu, image: Uint8Array) => Result<undefined>;
  /** KVM_CAP_SPLIT_IRQCHIP on a TD (kvm_intel, arch/x86/vmx/tdx.ts: what tdx_vcpu_create() checks). */
  readonly tdxEnableSplitIrqchip?: (vm: Vm, pins: bigint) => Errno | undefined;
}

/** One loadable module's registration: the parts it carries. */
export interface KernelModule {
  /** The module's name (`/sys/module/<name>`, or the kernel directory it stands for). */
  readonly name: string;
  /** `kvm_x86_vendor_init(&ops)`: the vendor module's `kvm_x86_ops`, under `ops.name`. */
  readonly x86Vendor?: KvmX86Ops;
  /** A confidential-computing platform: its per-host state, made for each host's frames. */
  readonly platform?: {
    readonly name: ProfileParts['platform'];
    readonly create: (frames: FrameStore) => Platform;
  };
  readonly host?: HostHooks;
  /**
   * An architecture's KVM built into the kernel (no vendor module): its arch ops, made for the
   * host's platform (arm64: arch/arm64/parts.ts).
   */
  readonly arch?: {
    readonly name: 'arm64';
    readonly create: (platform: Platform) => KvmArchOps<KernelCtx>;
  };
}

/** The modules loaded on a host, as `assembleKernel` and `Host` look them up. */
export interface KernelPartsRegistry {
  /** The modules' names, in registration order. */
  readonly modules: readonly string[];
  readonly x86Vendors: ReadonlyMap<KvmModule, KvmX86Ops>;
  readonly platforms: ReadonlyMap<ProfileParts['platform'], (frames: FrameStore) => Platform>;
  readonly gmemDesigns: ReadonlyMap<ProfileParts['gmem'], GmemBacking>;
  /** Built-in arch KVMs other than x86 (arm64), by arch. */
  readonly arches: ReadonlyMap<'arm64', (platform: Platform) => KvmArchOps<KernelCtx>>;
  readonly host: HostHooks;
}

/**
 * The registry of `modules` on top of what kvm.ko itself has: the platform 'none' (no per-frame
 * state: the one shared NO_PLATFORM) and the guest_memfd design of Linux 6.18. A part registered
 * twice is a programming error.
 */
export function kernelParts(...modules: readonly KernelModule[]): KernelPartsRegistry {
  const x86Vendors = new Map<KvmModule, KvmX86Ops>();
  const platforms = new Map<ProfileParts['platform'], (frames: FrameStore) => Platform>([
    ['none', () => NO_PLATFORM],
  ]);
  const host: Record<string, unknown> = {};
  const arches = new Map<'arm64', (platform: Platform) => KvmArchOps<KernelCtx>>();
  for (const m of modules) {
    const a = m.arch;
    if (a !== undefined) {
      if (arches.has(a.name)) throw new Error(`arch ${a.name} registered twice`);
      arches.set(a.name, a.create);
    }
    const v = m.x86Vendor;
    if (v !== undefined) {
      if (x86Vendors.has(v.name)) throw new Error(`kvm_x86_ops of ${v.name} registered twice`);
      x86Vendors.set(v.name, v);
    }
    const p = m.platform;
    if (p !== undefined) {
      if (platforms.has(p.name)) throw new Error(`platform ${p.name} registered twice`);
      platforms.set(p.name, p.create);
    }
    for (const [name, hook] of Object.entries(m.host ?? {})) {
      if (name in host) throw new Error(`host hook ${name} registered twice (by ${m.name})`);
      host[name] = hook;
    }
  }
  return {
    modules: modules.map((m) => m.name),
    x86Vendors,
    platforms,
    gmemDesigns: new Map([
      ['linux-6.18', GMEM_LINUX_6_18],
      ['inplace-v7', GMEM_INPLACE_V7],
    ]),
    arches,
    host: host as HostHooks,
  };
}
