/**
 * The host's answer to a guest HVC that reaches arm64 KVM (`kvm_smccc_call_handler()`,
 * arch/arm64/kvm/hypercalls.c, and `kvm_psci_call()`, arch/arm64/kvm/psci.c, v6.18) as far as the
 * trace's HYPERCALL_RET (the guest's x0) shows it. A call first meets the SMCCC filter
 * (`kvm_smccc_get_action()`): only the ids the firmware bitmaps enable (the defaults of
 * `kvm_arm_init_hypercalls()`: every standard, standard-hypervisor and vendor-hypervisor feature)
 * and those `kvm_smccc_default_allowed()` lets through (SMCCC_VERSION, SMCCC_ARCH_FEATURES, PSCI
 * 0.2+ function numbers 0..0x1f of the standard owner, KVM's PSCI 0.1 ids) are handled; every
 * other id is denied: SMCCC_RET_NOT_SUPPORTED. The model has no SMCCC filter ioctl
 * (KVM_ARM_VM_SMCCC_FILTER) and no firmware-register writes, so the defaults hold.
 *
 * Answered: SMCCC_VERSION (1.1), SMCCC_ARCH_FEATURES of PV_TIME_FEATURES (SUCCESS) and of ids it
 * does not list (NOT_SUPPORTED), PV_TIME_FEATURES, PV_TIME_ST (no steal-time base is ever set:
 * NOT_SUPPORTED), the KVM vendor UID (x0 = word 0 of ARM_SMCCC_VENDOR_HYP_UID_KVM),
 * VENDOR_HYP_KVM_FEATURES (the default bitmap: FEATURES | PTP), PSCI_VERSION (1.3 for a vCPU
 * with KVM_ARM_VCPU_PSCI_0_2; a PSCI 0.1 vCPU knows only KVM's CPU_ON/CPU_OFF ids, every other id
 * NOT_SUPPORTED), PSCI_FEATURES, MIGRATE_INFO_TYPE and the PSCI ids no version implements
 * (NOT_SUPPORTED). Refused (NotModelled), since their answer needs state the model does not keep:
 * the Spectre workaround ids of ARCH_FEATURES (the host CPU's mitigation state), the PTP time
 * call, TRNG, and every PSCI call that changes a vCPU's or the VM's power state or reads another
 * vCPU's (CPU_ON, CPU_OFF, CPU_SUSPEND, AFFINITY_INFO, SYSTEM_OFF/OFF2/RESET/RESET2/SUSPEND).
 */
import { NotModelled } from '../../base/not_modelled.js';
import type { KernelCtx } from '../../ctx.js';
import type { Vcpu } from '../../kvm/objects.js';
import { KVM_ARM_VCPU_PSCI_0_2 } from '../../base/uapi_arm64.js';
import { arm64State } from './state.js';

export const SMCCC_RET_NOT_SUPPORTED = -1n;
const SMCCC_RET_SUCCESS = 0n;

/** SMCCC function ids (include/linux/arm-smccc.h, include/uapi/linux/psci.h). */
const ARM_SMCCC_VERSION_FUNC_ID = 0x80000000;
const ARM_SMCCC_ARCH_FEATURES_FUNC_ID = 0x80000001;
const ARM_SMCCC_ARCH_WORKAROUND_1 = 0x80008000;
const ARM_SMCCC_ARCH_WORKAROUND_2 = 0x80007fff;
const ARM_SMCCC_ARCH_WORKAROUND_3 = 0x80003fff;
const ARM_SMCCC_HV_PV_TIME_FEATURES = 0xc5000020;
const ARM_SMCCC_HV_PV_TIME_ST = 0xc5000021;
const ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID = 0x8600ff01;
const ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID = 0x86000000;
const ARM_SMCCC_VENDOR_HYP_KVM_PTP_FUNC_ID = 0x86000001;
/** `ARM_SMCCC_VERSION_1_1`. */
export const ARM_SMCCC_VERSION_1_1 = 0x10001n;
/** `ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0`: x0 of the KVM vendor UID (28b46fb6-2ec5-11e9-a9ca-4b564d003a74). */
export const ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0 = 0xb66fb428n;
/** `kvm_arm_init_hypercalls()`: vendor_hyp_bmap = FUNC_FEAT (bit 0) | PTP (bit 1). */
const KVM_VENDOR_HYP_BMAP_DEFAULT = 0x3n;

/** TRNG: ARM_SMCCC_TRNG_VERSION .. RND64 (function numbers 0x50..0x53, 32- and 64-bit). */
function isTrng(f: number): boolean {
  return (f >= 0x84000050 && f <= 0x84000053) || (f >= 0xc4000050 && f <= 0xc4000053);
}

/** PSCI 0.2+ ids the filter lets through: the standard owner, function numbers 0..0x1f. */
function isPsci02(f: number): boolean {
  return (f >= 0x84000000 && f <= 0x8400001f) || (f >= 0xc4000000 && f <= 0xc400001f);
}
/** `KVM_PSCI_FN(0..3)`: KVM's own PSCI 0.1 ids (CPU_SUSPEND, CPU_OFF, CPU_ON, MIGRATE). */
const KVM_PSCI_FN_BASE = 0x95c1ba5e;
function isPsci01(f: number): boolean {
  return f >= KVM_PSCI_FN_BASE && f <= KVM_PSCI_FN_BASE + 3;
}
/** Whether `func` is a PSCI id the host's `kvm_psci_call()` would see. */
export function isPsciCall(func: number): boolean {
  return isPsci02(func) || isPsci01(func);
}

/** PSCI 0.2+ function ids. */
const PSCI_0_2_FN_PSCI_VERSION = 0x84000000;
const PSCI_0_2_FN_CPU_SUSPEND = 0x84000001;
const PSCI_0_2_FN_CPU_OFF = 0x84000002;
const PSCI_0_2_FN_CPU_ON = 0x84000003;
const PSCI_0_2_FN_AFFINITY_INFO = 0x84000004;
const PSCI_0_2_FN_MIGRATE_INFO_TYPE = 0x84000006;
const PSCI_0_2_FN_SYSTEM_OFF = 0x84000008;
const PSCI_0_2_FN_SYSTEM_RESET = 0x84000009;
const PSCI_1_0_FN_PSCI_FEATURES = 0x8400000a;
const PSCI_1_0_FN_SYSTEM_SUSPEND = 0x8400000e;
const PSCI_1_1_FN_SYSTEM_RESET2 = 0x84000012;
const PSCI_1_3_FN_SYSTEM_OFF2 = 0x84000015;
const PSCI_0_2_FN64 = 0x40000000;
/** `KVM_ARM_PSCI_LATEST` in 6.18: PSCI 1.3 (SYSTEM_OFF2, since 6.13). */
export const KVM_ARM_PSCI_LATEST = 0x10003n;
/** `PSCI_0_2_TOS_MP`: MIGRATE_INFO_TYPE's "no Trusted OS migration" answer. */
const PSCI_0_2_TOS_MP = 2n;
/** `PSCI_1_3_OFF_TYPE_HIBERNATE_OFF`. */
const PSCI_1_3_OFF_TYPE_HIBERNATE_OFF = 1n;

function refuse(what: string): never {
  throw new NotModelled(`HVC on arm64: ${what} is not modelled`);
}

/**
 * `kvm_psci_1_x_call(vcpu, 3)` and `kvm_psci_0_2_call()` for a vCPU with PSCI 1.3 (a 64-bit
 * guest, so `kvm_psci_check_allowed_function()` passes).
 */
function psci13(func: number, arg1: bigint): bigint {
  // Unsigned arithmetic: JS bitwise operators are signed 32-bit.
  const base = func >= 0xc0000000 ? func - PSCI_0_2_FN64 : func;
  switch (base) {
    case PSCI_1_0_FN_PSCI_FEATURES: {
      if (func !== PSCI_1_0_FN_PSCI_FEATURES) return SMCCC_RET_NOT_SUPPORTED;
      const f = Number(BigInt.asUintN(32, arg1));
      switch (f) {
        case PSCI_0_2_FN_PSCI_VERSION:
        case PSCI_0_2_FN_CPU_SUSPEND:
        case PSCI_0_2_FN_CPU_SUSPEND + PSCI_0_2_FN64:
        case PSCI_0_2_FN_CPU_OFF:
        case PSCI_0_2_FN_CPU_ON:
        case PSCI_0_2_FN_CPU_ON + PSCI_0_2_FN64:
        case PSCI_0_2_FN_AFFINITY_INFO:
        case PSCI_0_2_FN_AFFINITY_INFO + PSCI_0_2_FN64:
        case PSCI_0_2_FN_MIGRATE_INFO_TYPE:
        case PSCI_0_2_FN_SYSTEM_OFF:
        case PSCI_0_2_FN_SYSTEM_RESET:
        case PSCI_1_0_FN_PSCI_FEATURES:
        case ARM_SMCCC_VERSION_FUNC_ID:
          return 0n;
        // SYSTEM_SUSPEND needs KVM_CAP_ARM_SYSTEM_SUSPEND enabled, which the model's arm64
        // KVM_ENABLE_CAP never does.
        case PSCI_1_1_FN_SYSTEM_RESET2:
        case PSCI_1_1_FN_SYSTEM_RESET2 + PSCI_0_2_FN64:
          return 0n;
        case PSCI_1_3_FN_SYSTEM_OFF2:
        case PSCI_1_3_FN_SYSTEM_OFF2 + PSCI_0_2_FN64:
          return PSCI_1_3_OFF_TYPE_HIBERNATE_OFF;
        default:
          return SMCCC_RET_NOT_SUPPORTED;
      }
    }
    case PSCI_1_0_FN_SYSTEM_SUSPEND:
      return refuse('PSCI SYSTEM_SUSPEND');
    case PSCI_1_1_FN_SYSTEM_RESET2:
      return refuse('PSCI SYSTEM_RESET2 (a KVM_EXIT_SYSTEM_EVENT)');
    case PSCI_1_3_FN_SYSTEM_OFF2:
      return refuse('PSCI SYSTEM_OFF2 (a KVM_EXIT_SYSTEM_EVENT)');
    case PSCI_0_2_FN_PSCI_VERSION:
      return func === PSCI_0_2_FN_PSCI_VERSION ? KVM_ARM_PSCI_LATEST : SMCCC_RET_NOT_SUPPORTED;
    case PSCI_0_2_FN_CPU_SUSPEND:
      return refuse('PSCI CPU_SUSPEND (kvm_vcpu_wfi)');
    case PSCI_0_2_FN_CPU_OFF:
      return func === PSCI_0_2_FN_CPU_OFF ? refuse('PSCI CPU_OFF') : SMCCC_RET_NOT_SUPPORTED;
    case PSCI_0_2_FN_CPU_ON:
      return refuse('PSCI CPU_ON');
    case PSCI_0_2_FN_AFFINITY_INFO:
      return refuse('PSCI AFFINITY_INFO');
    case PSCI_0_2_FN_MIGRATE_INFO_TYPE:
      return func === PSCI_0_2_FN_MIGRATE_INFO_TYPE ? PSCI_0_2_TOS_MP : SMCCC_RET_NOT_SUPPORTED;
    case PSCI_0_2_FN_SYSTEM_OFF:
    case PSCI_0_2_FN_SYSTEM_RESET:
      return func === base
        ? refuse('PSCI SYSTEM_OFF / SYSTEM_RESET (a KVM_EXIT_SYSTEM_EVENT)')
        : SMCCC_RET_NOT_SUPPORTED;
    default:
      return SMCCC_RET_NOT_SUPPORTED;
  }
}

/**
 * `kvm_smccc_call_handler()` for `vcpu`'s HVC with function id `func` (W0) and x1 = `arg1`: the
 * guest's x0 afterwards.
 */
export function kvmSmcccCallHandler(k: KernelCtx, vcpu: Vcpu, func: number, arg1: bigint): bigint {
  switch (func) {
    case ARM_SMCCC_VERSION_FUNC_ID:
      return ARM_SMCCC_VERSION_1_1;
    case ARM_SMCCC_ARCH_FEATURES_FUNC_ID:
      switch (Number(BigInt.asUintN(32, arg1))) {
        case ARM_SMCCC_ARCH_WORKAROUND_1:
        case ARM_SMCCC_ARCH_WORKAROUND_2:
        case ARM_SMCCC_ARCH_WORKAROUND_3:
          return refuse("SMCCC_ARCH_FEATURES of a Spectre workaround (the host CPU's state)");
        case ARM_SMCCC_HV_PV_TIME_FEATURES:
          return SMCCC_RET_SUCCESS;
        default:
          return SMCCC_RET_NOT_SUPPORTED;
      }
    case ARM_SMCCC_HV_PV_TIME_FEATURES: {
      // kvm_hypercall_pv_features()
      const f = Number(BigInt.asUintN(32, arg1));
      return f === ARM_SMCCC_HV_PV_TIME_FEATURES || f === ARM_SMCCC_HV_PV_TIME_ST
        ? SMCCC_RET_SUCCESS
        : SMCCC_RET_NOT_SUPPORTED;
    }
    case ARM_SMCCC_HV_PV_TIME_ST:
      // kvm_init_stolen_time(): no KVM_ARM_VCPU_PVTIME_IPA was set, INVALID_GPA.
      return SMCCC_RET_NOT_SUPPORTED;
    case ARM_SMCCC_VENDOR_HYP_CALL_UID_FUNC_ID:
      return ARM_SMCCC_VENDOR_HYP_UID_KVM_REG_0;
    case ARM_SMCCC_VENDOR_HYP_KVM_FEATURES_FUNC_ID:
      return KVM_VENDOR_HYP_BMAP_DEFAULT;
    case ARM_SMCCC_VENDOR_HYP_KVM_PTP_FUNC_ID:
      return refuse('the KVM PTP call (the host clocks)');
    default:
      break;
  }
  if (isTrng(func)) return refuse('TRNG (kvm_trng_call)');
  // kvm_smccc_get_action(): anything else the filter does not let through is denied.
  if (!isPsciCall(func)) return SMCCC_RET_NOT_SUPPORTED;
  // kvm_psci_call(): the vCPU's PSCI version.
  const psci02 = (arm64State(k).vcpu(vcpu).features & (1 << KVM_ARM_VCPU_PSCI_0_2)) !== 0;
  if (psci02) return psci13(func, arg1);
  // kvm_psci_0_1_call(): KVM's CPU_OFF / CPU_ON ids only.
  if (func === KVM_PSCI_FN_BASE + 1 || func === KVM_PSCI_FN_BASE + 2)
    return refuse('PSCI 0.1 CPU_OFF / CPU_ON');
  return SMCCC_RET_NOT_SUPPORTED;
}
