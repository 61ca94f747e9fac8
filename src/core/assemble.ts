/**
 * Assembling a kernel from its profile's parts (`KernelProfile.parts`): the arch ops with the
 * vendor module's `kvm_x86_ops`, the confidential-computing platform, and the guest_memfd backing
 * design. Each part is an implementation behind one of the kernel's seams, registered by the module
 * that carries it, so a new vendor or platform is one more registration, not a switch in its
 * callers, and this file imports none of them.
 *
 * The kernel's module boundary, mirrored: kvm.ko knows no vendor; kvm_intel and kvm_amd are
 * separate modules that hand their `kvm_x86_ops` to kvm.ko when they load
 * (`kvm_x86_vendor_init()` from `vmx_init()` / `svm_init()`), and the platforms under them are the
 * TDX host code (arch/x86/virt/vmx/tdx) and the PSP driver (drivers/crypto/ccp, /dev/sev). Here a
 * `KernelModule` (arch/x86/modules.ts) is such a module's registration (arch/x86/vmx/parts.ts,
 * svm/parts.ts, pvm/parts.ts), and a `KernelPartsRegistry` is the set of modules loaded on a
 * host, which `Host` receives (`HostInit.parts`): all of them (core/all_parts.ts, what the CLI's
 * replay, check, run and fuzz use), or only the ones a command needs (`gmemlab measure snp`:
 * kvm_amd and ccp; `measure tdx`: kvm_intel and the TDX host), so the other vendor's code is
 * never loaded. arm64 has no vendor module: its KVM is built in, registered as an arch part
 * ('kvm_arm64', arch/arm64/parts.ts) whose ops are made for the host's platform (pKVM's
 * hypervisor, registered as 'pkvm_hyp').
 */
import type { ProfileParts } from './profiles/profile.js';
import { x86ArchOps } from './arch/x86/ops.js';
import type { KvmX86Ops, X86ArchOps } from './arch/x86/x86_ops.js';
import type { KernelPartsRegistry } from './arch/x86/modules.js';
import type { KvmArchOps } from './kvm/arch_ops.js';
import type { KernelCtx } from './ctx.js';
import type { Platform } from './platform/platform.js';
import type { FrameStore } from './base/frames.js';
import type { GmemBacking } from './kvm/guest_memfd/backing.js';

export type KernelParts = {
  readonly arch: X86ArchOps | KvmArchOps<KernelCtx>;
  readonly platform: Platform;
  readonly gmemBacking: GmemBacking;
};

/**
 * The implementations for `parts` from `registry`, on the host's frame store `frames`. `vendor`
 * replaces the vendor module's ops (tests and platform work use it to run the model with an
 * instrumented `kvm_x86_ops`). A part the registry lacks is an error naming it (a host whose
 * profile needs a module that was not loaded).
 */
export function assembleKernel(
  registry: KernelPartsRegistry,
  parts: ProfileParts,
  frames: FrameStore,
  vendor?: KvmX86Ops,
): KernelParts {
  const missing = (what: string): Error =>
    new Error(
      `the kernel's parts registry (${registry.modules.join(', ') || 'kvm.ko alone'}) has no ${what}`,
    );
  if (parts.arch === 'arm64') {
    // arm64 has no vendor module: its arch ops are made for the host's platform (pKVM's hypervisor).
    const arm64 = registry.arches.get('arm64');
    if (arm64 === undefined) throw missing('arm64 KVM (kvm_arm64)');
    const platform = registry.platforms.get(parts.platform);
    if (platform === undefined) throw missing(`platform ${parts.platform}`);
    const gmemBacking = registry.gmemDesigns.get(parts.gmem);
    if (gmemBacking === undefined) throw missing(`guest_memfd design ${parts.gmem}`);
    const p = platform(frames);
    return { arch: arm64(p), platform: p, gmemBacking };
  }
  const ops = vendor ?? registry.x86Vendors.get(parts.vendor);
  if (ops === undefined) throw missing(`x86 vendor module ${parts.vendor}`);
  const platform = registry.platforms.get(parts.platform);
  if (platform === undefined) throw missing(`platform ${parts.platform}`);
  const gmemBacking = registry.gmemDesigns.get(parts.gmem);
  if (gmemBacking === undefined) throw missing(`guest_memfd design ${parts.gmem}`);
  return { arch: x86ArchOps(ops), platform: platform(frames), gmemBacking };
}
