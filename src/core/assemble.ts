/**
 * Assembling a kernel from its profile's parts (`KernelProfile.parts`): the arch ops with the
 * vendor module's `kvm_x86_ops`, the confidential-computing platform, and the guest_memfd backing
 * design. Each part is an implementation behind one of the kernel's seams, so a new platform or
 * design is one more entry here, not a switch in its callers.
 */
import type { ProfileParts } from './profiles/profile.js';
import type { KvmModule } from './profiles/facts.js';
import { x86ArchOps } from './arch/x86/ops.js';
import type { KvmX86Ops, X86ArchOps } from './arch/x86/x86_ops.js';
import { VMX_OPS } from './arch/x86/vmx/main.js';
import { SVM_OPS } from './arch/x86/svm/svm.js';
import { PVM_OPS } from './arch/x86/pvm/pvm.js';
import { NO_PLATFORM, type Platform } from './platform/platform.js';
import { SevSnpPlatform } from './platform/sev_snp/platform.js';
import { TdxPlatform } from './platform/tdx/platform.js';
import { TdxMrtd } from './platform/tdx/mrtd.js';
import type { FrameStore } from './base/frames.js';
import { GMEM_LINUX_6_18, type GmemBacking } from './kvm/guest_memfd/backing.js';

/** The vendor modules an x86 /dev/kvm can be backed by. */
const X86_VENDORS: Readonly<Record<KvmModule, KvmX86Ops>> = {
  kvm_intel: VMX_OPS,
  kvm_amd: SVM_OPS,
  kvm_pvm: PVM_OPS,
};

/**
 * A platform per host: the RMP is per-host state, so a `sev-snp` host gets its own; a `tdx` host
 * gets its own TDX module (PAMT, TDs), over the host's frames (PAGE.ADD copies, ACCEPT zeroes,
 * MR.EXTEND reads them) with the SHA-384 MRTD of tdx/mrtd.ts; 'none' has no state and stays the
 * one shared NO_PLATFORM.
 */
const PLATFORMS: Readonly<Record<ProfileParts['platform'], (frames: FrameStore) => Platform>> = {
  none: () => NO_PLATFORM,
  'sev-snp': () => new SevSnpPlatform(),
  tdx: (frames) => new TdxPlatform(frames, () => new TdxMrtd()),
};

const GMEM_DESIGNS: Readonly<Record<ProfileParts['gmem'], GmemBacking>> = {
  'linux-6.18': GMEM_LINUX_6_18,
};

export type KernelParts = {
  readonly arch: X86ArchOps;
  readonly platform: Platform;
  readonly gmemBacking: GmemBacking;
};

/**
 * The implementations for `parts`, on the host's frame store `frames`. `vendor` replaces the
 * vendor module's ops (tests and platform work use it to run the model with an instrumented
 * `kvm_x86_ops`).
 */
export function assembleKernel(
  parts: ProfileParts,
  frames: FrameStore,
  vendor?: KvmX86Ops,
): KernelParts {
  return {
    arch: x86ArchOps(vendor ?? X86_VENDORS[parts.vendor]),
    platform: PLATFORMS[parts.platform](frames),
    gmemBacking: GMEM_DESIGNS[parts.gmem],
  };
}
