/**
 * arm64 KVM's per-VM and per-vCPU state the model keeps (`kvm->arch`, `vcpu->arch`), in the arch
 * ops (one set per host): the pKVM handle, KVM_ARM_VCPU_INIT's target and features.
 */
import type { KernelCtx } from '../../ctx.js';
import type { Vcpu, Vm } from '../../kvm/objects.js';

export interface Arm64VmState {
  /** `kvm->arch.pkvm.handle` once `pkvm_create_hyp_vm()` ran (first KVM_RUN), else undefined. */
  handle: number | undefined;
  /**
   * The handle `pkvm_init_host_vm()` reserved at KVM_CREATE_VM on a pKVM host (v6.18:
   * `__pkvm_reserve_vm`), which `__pkvm_init_vm()` fills; undefined without pKVM.
   */
  reserved: number | undefined;
  /**
   * KVM_ARCH_FLAG_VCPU_FEATURES_CONFIGURED: the features of the first KVM_ARM_VCPU_INIT, which
   * every later vCPU must repeat (`__kvm_vcpu_set_target()`: -EINVAL otherwise).
   */
  features: number | undefined;
}

export interface Arm64VcpuState {
  /** `vcpu->arch.target`: -1 until KVM_ARM_VCPU_INIT (`kvm_vcpu_initialized()`). */
  target: number;
  /** The feature bitmap KVM_ARM_VCPU_INIT set. */
  features: number;
  /** `kvm_arm_vcpu_is_finalized()`: false only while SVE awaits KVM_ARM_VCPU_FINALIZE. */
  finalized: boolean;
  /**
   * `vcpu->arch.mp_state` is KVM_MP_STATE_STOPPED: the last KVM_ARM_VCPU_INIT asked for
   * POWER_OFF (`__kvm_arm_vcpu_power_off()`); an init without it makes the vCPU runnable.
   */
  poweredOff: boolean;
  /** The vCPU's index at EL2 once `pkvm_create_hyp_vcpu()` ran. */
  hypIdx: number | undefined;
}

export interface Arm64State {
  vm(vm: Vm): Arm64VmState;
  vcpu(vcpu: Vcpu): Arm64VcpuState;
}

/** A fresh per-host store. */
export function newArm64State(): Arm64State {
  const vms = new WeakMap<Vm, Arm64VmState>();
  const vcpus = new WeakMap<Vcpu, Arm64VcpuState>();
  return {
    vm(vm) {
      let s = vms.get(vm);
      if (s === undefined)
        vms.set(vm, (s = { handle: undefined, reserved: undefined, features: undefined }));
      return s;
    },
    vcpu(vcpu) {
      let s = vcpus.get(vcpu);
      if (s === undefined)
        vcpus.set(
          vcpu,
          (s = {
            target: -1,
            features: 0,
            finalized: true,
            poweredOff: false,
            hypIdx: undefined,
          }),
        );
      return s;
    },
  };
}

/** The arm64 state of `k` (its arch ops must be arm64's). */
export function arm64State(k: KernelCtx): Arm64State {
  const s = (k.arch as { arm64?: Arm64State }).arm64;
  if (s === undefined) throw new Error('arm64State: not an arm64 kernel');
  return s;
}
