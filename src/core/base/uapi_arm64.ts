/**
 * arm64 KVM uAPI constants the model uses (include/uapi/linux/kvm.h, arch/arm64/include/uapi/asm/kvm.h
 * as of v6.18).
 */

/** `KVM_VM_TYPE_ARM_IPA_SIZE_MASK`: the low byte of the KVM_CREATE_VM type is the IPA size in bits. */
export const KVM_VM_TYPE_ARM_IPA_SIZE_MASK = 0xffn;
/**
 * `KVM_VM_TYPE_ARM_PROTECTED`: a pKVM protected VM. Not in v6.18's uapi (there the bit is -EINVAL):
 * it comes with the 2026 protected-guest-memory series (bit 31, as Android's).
 */
export const KVM_VM_TYPE_ARM_PROTECTED = 1n << 31n;
/** `KVM_VM_TYPE_ARM_MASK`: every bit a type may have. */
export const KVM_VM_TYPE_ARM_MASK = KVM_VM_TYPE_ARM_IPA_SIZE_MASK | KVM_VM_TYPE_ARM_PROTECTED;
/** `KVM_PHYS_SHIFT`: the IPA size of a type whose size field is 0. */
export const KVM_PHYS_SHIFT = 40;
/** `ARM64_MIN_PARANGE_BITS`: the smallest IPA size a type may ask for. */
export const ARM64_MIN_PARANGE_BITS = 32;

/** `KVM_ARM_TARGET_GENERIC_V8`: the target KVM_ARM_PREFERRED_TARGET reports on every host. */
export const KVM_ARM_TARGET_GENERIC_V8 = 5;

/** `struct kvm_vcpu_init` feature bits (`KVM_ARM_VCPU_*`). */
export const KVM_ARM_VCPU_POWER_OFF = 0;
export const KVM_ARM_VCPU_EL1_32BIT = 1;
export const KVM_ARM_VCPU_PSCI_0_2 = 2;
export const KVM_ARM_VCPU_PMU_V3 = 3;
export const KVM_ARM_VCPU_SVE = 4;
export const KVM_ARM_VCPU_PTRAUTH_ADDRESS = 5;
export const KVM_ARM_VCPU_PTRAUTH_GENERIC = 6;
export const KVM_ARM_VCPU_HAS_EL2 = 7;
export const KVM_ARM_VCPU_HAS_EL2_E2H0 = 8;
/** `KVM_VCPU_MAX_FEATURES` (arch/arm64/include/asm/kvm_host.h, 6.18: through HAS_EL2_E2H0). */
export const KVM_VCPU_MAX_FEATURES = 9;
/** `KVM_VCPU_VALID_FEATURES`. */
export const KVM_VCPU_VALID_FEATURES = (1 << KVM_VCPU_MAX_FEATURES) - 1;
/** `struct kvm_vcpu_init`: `__u32 target; __u32 features[7];`. */
export const KVM_VCPU_INIT_SIZE = 32;

/** arm64 VM/vCPU ioctls: `_IOW/_IOR(KVMIO, nr, struct kvm_vcpu_init)` and `_IOW(KVMIO, 0xc2, int)`. */
export const KVM_ARM_IOCTL = {
  KVM_ARM_VCPU_INIT: 0x4020aeae,
  KVM_ARM_PREFERRED_TARGET: 0x8020aeaf,
  KVM_ARM_VCPU_FINALIZE: 0x4004aec2,
  /** x86-only VM ioctl: arm64's `kvm_arch_vm_ioctl()` has no case for it. */
  KVM_SET_TSS_ADDR: 0xae47,
} as const;

/** `KVM_EXIT_MMIO` and `KVM_EXIT_MEMORY_FAULT` (exit_reason values). */
export const KVM_EXIT_MMIO = 6;
export const KVM_EXIT_MEMORY_FAULT = 39;

/** arm64 capability ids KVM_ARM_VCPU_INIT's feature mask follows (include/uapi/linux/kvm.h). */
export const KVM_CAP_ARM_PMU_V3 = 126;
export const KVM_CAP_ARM_SVE = 170;
export const KVM_CAP_ARM_PTRAUTH_ADDRESS = 171;
