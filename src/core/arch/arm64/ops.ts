/**
 * arm64's implementation of the arch operations generic KVM calls (kvm/arch_ops.ts): the stage-2
 * of arch/arm64/kvm/mmu.c (mmu.ts), driven through the pKVM hypervisor on a protected-mode host
 * (pkvm.ts), and the arch ioctls of arch/arm64/kvm/arm.c (KVM_ARM_PREFERRED_TARGET on the VM fd,
 * KVM_ARM_VCPU_INIT and KVM_ARM_VCPU_FINALIZE on a vCPU fd). arm64 has no vendor module.
 */
import type { KernelCtx } from '../../ctx.js';
import { err, OK_VOID, type Result } from '../../base/result.js';
import type { UserPtr } from '../../base/uaccess.js';
import type { Vcpu, Vm } from '../../kvm/objects.js';
import type { KvmArchOps } from '../../kvm/arch_ops.js';
import type { Platform } from '../../platform/platform.js';
import { arm64MmuNotifierInvalidate, arm64PrepareMemoryRegion, arm64UnmapGfnRange } from './mmu.js';
import { hypErrno, pkvmDestroyHypVm, pkvmGmemInvalidate } from './pkvm.js';
import { newArm64State, type Arm64State } from './state.js';
import { arm64KvmRun } from './run.js';
import {
  KVM_ARM_IOCTL,
  KVM_ARM_TARGET_GENERIC_V8,
  KVM_CAP_ARM_PMU_V3,
  KVM_CAP_ARM_PTRAUTH_ADDRESS,
  KVM_CAP_ARM_SVE,
  KVM_ARM_VCPU_EL1_32BIT,
  KVM_ARM_VCPU_HAS_EL2,
  KVM_ARM_VCPU_HAS_EL2_E2H0,
  KVM_ARM_VCPU_PMU_V3,
  KVM_ARM_VCPU_POWER_OFF,
  KVM_ARM_VCPU_PTRAUTH_ADDRESS,
  KVM_ARM_VCPU_PTRAUTH_GENERIC,
  KVM_ARM_VCPU_SVE,
  KVM_VCPU_INIT_SIZE,
  KVM_VCPU_VALID_FEATURES,
} from '../../base/uapi_arm64.js';

export type Arm64ArchOps = KvmArchOps<KernelCtx> & {
  readonly arm64: Arm64State;
  /**
   * `kvm_arch_vcpu_ioctl_run()` of arm64 (arch/arm64/run.ts): reached through the ops, so that a
   * host without arm64 parts never loads arm64 code.
   */
  readonly vcpuRun: typeof arm64KvmRun;
};

/** The arch ops of an arm64 host with `platform` ('pkvm' in protected mode). */
export function arm64ArchOps(platform: Platform): Arm64ArchOps {
  const hyp = platform.pkvm?.hyp;
  return {
    arm64: newArm64State(),
    vcpuRun: arm64KvmRun,
    guestMemoryAccess: 'stage2',
    unmapGfnRange: arm64UnmapGfnRange,
    // kvm_flush_remote_tlbs(): the model keeps no TLBs.
    flushRemoteTlbs: (_k, vm, source) => {
      vm.tlbFlushes.set(source, (vm.tlbFlushes.get(source) ?? 0) + 1);
    },
    invalidateGfnRange: (k, vm, as, start, end, source) => {
      arm64UnmapGfnRange(k, vm, as, start, end, source);
      vm.mmuInvalidateSeq++;
    },
    // kvm_arch_flush_shadow_memslot(): the slot's range only (arm64 has no zap-all quirk).
    flushShadowMemslot: (k, vm, slot, source) => {
      arm64UnmapGfnRange(k, vm, slot.asId, slot.baseGfn, slot.endGfn, source);
      vm.mmuInvalidateSeq++;
    },
    // No KVM_PRE_FAULT_MEMORY on arm64 6.18 (the host refuses it before reaching here).
    vcpuPreFaultMemory: () => 'EINVAL',
    // No memory attributes on arm64 6.18.
    preSetMemoryAttributes: () => 0,
    postSetMemoryAttributes: () => undefined,
    allocMemslotMetadata: () => undefined,
    memslotLastGfnInvalid: () => undefined,
    prepareMemoryRegion: arm64PrepareMemoryRegion,
    // No kvm_arch_gmem_prepare() on arm64.
    gmemPrepare: () => undefined,
    gmemInvalidate: (k, start, end) => {
      if (hyp !== undefined) pkvmGmemInvalidate(k, hyp, start, end);
    },
    vmIoctl: kvmArchVmIoctl,
    vcpuIoctl: kvmArchVcpuIoctl,
    mmuNotifierInvalidate: arm64MmuNotifierInvalidate,
    // kvm_arch_init_vm() → pkvm_init_host_vm(): reserve the VM's hypervisor handle (-ENOMEM when
    // all KVM_MAX_PVMS entries are taken).
    initVm: (k, vm) => {
      if (hyp === undefined) return undefined;
      const handle = hyp.reserveVm();
      if (handle < 0) return hypErrno(handle);
      arm64(k).vm(vm).reserved = handle;
      return undefined;
    },
    destroyVm: (k, vm) => {
      if (hyp !== undefined) pkvmDestroyHypVm(k, hyp, vm);
    },
  };
}

function arm64(k: KernelCtx): Arm64State {
  return (k.arch as Arm64ArchOps).arm64;
}

/**
 * `kvm_arch_vm_ioctl()` (arm.c): KVM_ARM_PREFERRED_TARGET copies out a `struct kvm_vcpu_init`
 * with target GENERIC_V8 and no features (`kvm_vcpu_preferred_target()`; -EFAULT when the copy
 * fails); everything the arch does not know — KVM_SET_TSS_ADDR, KVM_MEMORY_ENCRYPT_OP — is the
 * default, -EINVAL.
 */
function kvmArchVmIoctl(_k: KernelCtx, _vm: Vm, ioctl: number, argp: UserPtr): Result<undefined> {
  if (ioctl === KVM_ARM_IOCTL.KVM_ARM_PREFERRED_TARGET) {
    const out = new Uint8Array(KVM_VCPU_INIT_SIZE);
    new DataView(out.buffer).setUint32(0, KVM_ARM_TARGET_GENERIC_V8, true);
    if (argp.isNull || !argp.copyToUser(out))
      return err('EFAULT', 'KVM_ARM_PREFERRED_TARGET: copy_to_user');
    return OK_VOID;
  }
  return err('EINVAL', 'kvm_arch_vm_ioctl: unknown ioctl (arm64 default)');
}

/**
 * `kvm_arch_vcpu_ioctl()` (arm.c): KVM_ARM_VCPU_INIT (`kvm_arch_vcpu_ioctl_vcpu_init()`) and
 * KVM_ARM_VCPU_FINALIZE; any other is the default, -EINVAL.
 */
function kvmArchVcpuIoctl(
  k: KernelCtx,
  vcpu: Vcpu,
  ioctl: number,
  argp: UserPtr,
): Result<undefined> {
  switch (ioctl) {
    case KVM_ARM_IOCTL.KVM_ARM_VCPU_INIT: {
      const b = argp.isNull ? undefined : argp.copyFromUser(KVM_VCPU_INIT_SIZE);
      if (b === undefined) return err('EFAULT', 'KVM_ARM_VCPU_INIT: copy_from_user');
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const features: number[] = [];
      for (let i = 0; i < 7; i++) features.push(dv.getUint32(4 + 4 * i, true));
      return kvmArmVcpuInit(k, vcpu, dv.getInt32(0, true), features);
    }
    case KVM_ARM_IOCTL.KVM_ARM_VCPU_FINALIZE: {
      // An uninitialised vCPU is -ENOEXEC before the argument is read (`!kvm_vcpu_initialized()`).
      const s = arm64(k).vcpu(vcpu);
      if (s.target < 0) return err('ENOEXEC', 'KVM_ARM_VCPU_FINALIZE: vCPU not initialized');
      const b = argp.isNull ? undefined : argp.copyFromUser(4);
      if (b === undefined) return err('EFAULT', 'KVM_ARM_VCPU_FINALIZE: get_user');
      const what = new DataView(b.buffer, b.byteOffset, 4).getInt32(0, true);
      // kvm_arm_vcpu_finalize(): SVE only, and only once, for a vCPU that has it.
      if (what !== KVM_ARM_VCPU_SVE || (s.features & (1 << KVM_ARM_VCPU_SVE)) === 0)
        return err('EINVAL', 'KVM_ARM_VCPU_FINALIZE: not SVE, or SVE not enabled');
      if (s.finalized) return err('EPERM', 'KVM_ARM_VCPU_FINALIZE: already finalized');
      s.finalized = true;
      return OK_VOID;
    }
    default:
      return err('EINVAL', 'kvm_arch_vcpu_ioctl: unknown ioctl (arm64 default)');
  }
}

/**
 * `system_supported_vcpu_features()` of the synthesized host: every valid feature but EL1_32BIT
 * (no ARM64_HAS_32BIT_EL1) and HAS_EL2 / HAS_EL2_E2H0 (no nested virtualisation); PMU_V3, SVE and
 * the two pointer-auth features follow the host's capabilities (KVM_CAP_ARM_PMU_V3,
 * KVM_CAP_ARM_SVE, KVM_CAP_ARM_PTRAUTH_*: 1 on the profile's /dev/kvm).
 */
function systemSupportedVcpuFeatures(k: KernelCtx): number {
  const caps = k.profile.systemCaps;
  let f = KVM_VCPU_VALID_FEATURES;
  f &= ~(1 << KVM_ARM_VCPU_EL1_32BIT);
  f &= ~(1 << KVM_ARM_VCPU_HAS_EL2);
  f &= ~(1 << KVM_ARM_VCPU_HAS_EL2_E2H0);
  if ((caps.get(KVM_CAP_ARM_PMU_V3) ?? 0n) === 0n) f &= ~(1 << KVM_ARM_VCPU_PMU_V3);
  if ((caps.get(KVM_CAP_ARM_SVE) ?? 0n) === 0n) f &= ~(1 << KVM_ARM_VCPU_SVE);
  if ((caps.get(KVM_CAP_ARM_PTRAUTH_ADDRESS) ?? 0n) === 0n)
    f &= ~((1 << KVM_ARM_VCPU_PTRAUTH_ADDRESS) | (1 << KVM_ARM_VCPU_PTRAUTH_GENERIC));
  return f;
}

/**
 * `kvm_arch_vcpu_ioctl_vcpu_init()` → `kvm_vcpu_set_target()`: POWER_OFF is ephemeral (cleared
 * before anything else: it only starts this vCPU powered off, and is no part of the feature set
 * compared below); the target must be GENERIC_V8 (or
 * the host CPU's, which the model's host reports as GENERIC_V8) (-EINVAL);
 * `kvm_vcpu_init_check_features()`: an unknown feature bit, or any bit in features[1..6], is
 * -ENOENT; a feature outside `system_supported_vcpu_features()` is -EINVAL (EL1_32BIT: the
 * synthesized host has no AArch32 EL1; HAS_EL2 / HAS_EL2_E2H0: no nested virtualisation);
 * PTRAUTH_ADDRESS and PTRAUTH_GENERIC must come together
 * (-EINVAL). A first init sets the target; the VM's first init fixes the
 * features every vCPU must use (`__kvm_vcpu_set_target()`: -EINVAL on a difference); a repeated
 * init with other features is -EINVAL (`kvm_vcpu_init_changed()`), with the same ones a reset.
 * SVE leaves the vCPU unfinalized: KVM_RUN is -EPERM until KVM_ARM_VCPU_FINALIZE.
 */
export function kvmArmVcpuInit(
  k: KernelCtx,
  vcpu: Vcpu,
  target: number,
  features: readonly number[],
): Result<undefined> {
  // kvm_arch_vcpu_ioctl_vcpu_init(): "Treat the power-off vCPU feature as ephemeral".
  const f0 = (features[0] ?? 0) & ~(1 << KVM_ARM_VCPU_POWER_OFF);
  if (target !== KVM_ARM_TARGET_GENERIC_V8) return err('EINVAL', 'kvm_vcpu_set_target: target');
  if ((f0 & ~KVM_VCPU_VALID_FEATURES) !== 0 || features.slice(1).some((f) => f !== 0))
    return err('ENOENT', 'kvm_vcpu_init_check_features: unknown feature');
  if ((f0 & ~systemSupportedVcpuFeatures(k)) !== 0)
    return err('EINVAL', 'kvm_vcpu_init_check_features: feature the system does not support');
  if (((f0 >> KVM_ARM_VCPU_PTRAUTH_ADDRESS) & 1) !== ((f0 >> KVM_ARM_VCPU_PTRAUTH_GENERIC) & 1))
    return err('EINVAL', 'kvm_vcpu_init_check_features: PTRAUTH_ADDRESS without PTRAUTH_GENERIC');
  const vs = arm64(k).vm(vcpu.vm);
  const s = arm64(k).vcpu(vcpu);
  if (s.target < 0) {
    if (vs.features !== undefined && vs.features !== f0)
      return err('EINVAL', '__kvm_vcpu_set_target: features differ from the VM configuration');
    vs.features = f0;
    s.target = target;
    s.features = f0;
    s.finalized = (f0 & (1 << KVM_ARM_VCPU_SVE)) === 0;
  } else if (s.features !== f0) return err('EINVAL', 'kvm_vcpu_init_changed');
  // kvm_reset_vcpu(): registers only, nothing the model keeps. Then "the start in power-off
  // case": mp_state STOPPED with POWER_OFF, else RUNNABLE.
  s.poweredOff = ((features[0] ?? 0) & (1 << KVM_ARM_VCPU_POWER_OFF)) !== 0;
  return OK_VOID;
}
