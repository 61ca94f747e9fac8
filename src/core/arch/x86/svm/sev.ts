/**
 * AMD SEV (arch/x86/kvm/svm/sev.c), as far as a VM that is not an SEV guest reaches it:
 * `sev_mem_enc_ioctl()`, the KVM_MEMORY_ENCRYPT_OP handler of kvm_amd (CONFIG_KVM_AMD_SEV). The
 * model has no SEV guests yet (no profile offers the SEV VM types, KVM_CAP_VM_COPY_ENC_CONTEXT_FROM
 * and the migration caps are not modelled), so `sev_guest(kvm)`, `sev_es_guest(kvm)`,
 * `sev_snp_guest(kvm)` and `is_mirroring_enc_context(kvm)` are false for every VM; the commands
 * that would make a VM an SEV guest (KVM_SEV_INIT, KVM_SEV_ES_INIT on a DEFAULT VM) are refused
 * with an error naming the limit. SEV-SNP's RMP work (gmem_prepare, gmem_invalidate) comes here.
 */
import { NotModelled } from '../../../base/not_modelled.js';
import type { KernelCtx } from '../../../ctx.js';
import type { Errno } from '../../../base/errno.js';
import { err, OK_VOID, type Result } from '../../../base/result.js';
import { readU32, type UserPtr } from '../../../base/uaccess.js';
import {
  KVM_CAP,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
} from '../../../base/uapi.js';
import type { Vm } from '../../../kvm/objects.js';

/** sizeof(struct kvm_sev_cmd): u32 id, u32 pad0, u64 data, u32 error, u32 sev_fd. */
export const KVM_SEV_CMD_SIZE = 24;

/** `enum sev_cmd_id` (include/uapi/linux/kvm.h): the ids `sev_mem_enc_ioctl()` switches on. */
export const KVM_SEV = {
  INIT: 0,
  ES_INIT: 1,
  LAUNCH_START: 2,
  LAUNCH_UPDATE_DATA: 3,
  LAUNCH_UPDATE_VMSA: 4,
  LAUNCH_SECRET: 5,
  LAUNCH_MEASURE: 6,
  LAUNCH_FINISH: 7,
  SEND_START: 8,
  SEND_UPDATE_DATA: 9,
  SEND_UPDATE_VMSA: 10,
  SEND_FINISH: 11,
  RECEIVE_START: 12,
  RECEIVE_UPDATE_DATA: 13,
  RECEIVE_UPDATE_VMSA: 14,
  RECEIVE_FINISH: 15,
  GUEST_STATUS: 16,
  DBG_DECRYPT: 17,
  DBG_ENCRYPT: 18,
  CERT_EXPORT: 19,
  GET_ATTESTATION_REPORT: 20,
  SEND_CANCEL: 21,
  INIT2: 22,
  SNP_LAUNCH_START: 100,
  SNP_LAUNCH_UPDATE: 101,
  SNP_LAUNCH_FINISH: 102,
} as const;

/**
 * What each command handler of the switch answers first for a VM that is not an SEV guest: its
 * `sev_guest()` / `sev_es_guest()` / `sev_snp_guest()` check. Most are -ENOTTY;
 * `sev_receive_update_data()` and `snp_launch_update()` say -EINVAL. Ids not listed (and
 * SEND/RECEIVE_UPDATE_VMSA, CERT_EXPORT, which the switch has no case for) take its default.
 */
const NOT_SEV_GUEST: ReadonlyMap<number, Errno> = new Map<number, Errno>([
  [KVM_SEV.LAUNCH_START, 'ENOTTY'],
  [KVM_SEV.LAUNCH_UPDATE_DATA, 'ENOTTY'],
  [KVM_SEV.LAUNCH_UPDATE_VMSA, 'ENOTTY'],
  [KVM_SEV.LAUNCH_MEASURE, 'ENOTTY'],
  [KVM_SEV.LAUNCH_FINISH, 'ENOTTY'],
  [KVM_SEV.GUEST_STATUS, 'ENOTTY'],
  [KVM_SEV.DBG_DECRYPT, 'ENOTTY'],
  [KVM_SEV.DBG_ENCRYPT, 'ENOTTY'],
  [KVM_SEV.LAUNCH_SECRET, 'ENOTTY'],
  [KVM_SEV.GET_ATTESTATION_REPORT, 'ENOTTY'],
  [KVM_SEV.SEND_START, 'ENOTTY'],
  [KVM_SEV.SEND_UPDATE_DATA, 'ENOTTY'],
  [KVM_SEV.SEND_FINISH, 'ENOTTY'],
  [KVM_SEV.SEND_CANCEL, 'ENOTTY'],
  [KVM_SEV.RECEIVE_START, 'ENOTTY'],
  [KVM_SEV.RECEIVE_UPDATE_DATA, 'EINVAL'],
  [KVM_SEV.RECEIVE_FINISH, 'ENOTTY'],
  [KVM_SEV.SNP_LAUNCH_START, 'ENOTTY'],
  [KVM_SEV.SNP_LAUNCH_UPDATE, 'EINVAL'],
  [KVM_SEV.SNP_LAUNCH_FINISH, 'ENOTTY'],
]);

/**
 * `sev_enabled` / `sev_es_enabled` after `sev_hardware_setup()`: the module parameter, the CPU
 * and the PSP all allow it. `sev_set_cpu_caps()` then adds the SEV (SEV-ES) VM type to
 * KVM_CAP_VM_TYPES, so the kernel's facts tell: the probed capability value, not the model's
 * VM-type table (which has no SEV types yet).
 */
function sevVmTypeOffered(k: KernelCtx, type: bigint): boolean {
  const types = k.profile.facts.caps.system[KVM_CAP.KVM_CAP_VM_TYPES] ?? 0;
  return (BigInt(types) & (1n << type)) !== 0n;
}

/**
 * `sev_mem_enc_ioctl()` for a VM that is not an SEV guest: -ENOTTY without SEV; a NULL
 * argument is 0 (nothing to do); the command struct is copied in (-EFAULT); the mirror and SNP
 * checks never apply; then the switch: the INIT commands and the handlers' guest checks, an
 * unknown id -EINVAL (which skips the copy back); a handled command copies the struct back
 * (-EFAULT when that faults, whatever the handler said).
 */
export function sevMemEncIoctl(k: KernelCtx, vm: Vm, argp: UserPtr): Result<undefined> {
  if (!sevVmTypeOffered(k, KVM_X86_SEV_VM)) return err('ENOTTY', 'sev_mem_enc_ioctl: !sev_enabled');
  if (argp.isNull) return OK_VOID;
  const cmd = argp.copyFromUser(KVM_SEV_CMD_SIZE);
  if (cmd === undefined) return err('EFAULT', 'sev_mem_enc_ioctl: copy_from_user(sev_cmd)');
  // is_mirroring_enc_context(kvm) and sev_snp_guest(kvm): false (no SEV guests in the model).
  const id = readU32(cmd, 0);
  let r: Result<undefined>;
  switch (id) {
    case KVM_SEV.ES_INIT:
    case KVM_SEV.INIT:
      // `r = -ENOTTY; goto out`: past the copy back.
      if (id === KVM_SEV.ES_INIT && !sevVmTypeOffered(k, KVM_X86_SEV_ES_VM))
        return err('ENOTTY', 'sev_mem_enc_ioctl: KVM_SEV_ES_INIT without sev_es_enabled');
      // sev_guest_init(): only a DEFAULT VM may become an SEV guest this way.
      if (vm.type !== KVM_X86_DEFAULT_VM) {
        r = err('EINVAL', 'sev_guest_init: vm_type != KVM_X86_DEFAULT_VM');
        break;
      }
      throw new NotModelled(
        'sev_guest_init() on a DEFAULT VM would make it an SEV guest: SEV guests are not modelled yet',
      );
    case KVM_SEV.INIT2:
      // sev_guest_init2(): need_init is set only for the SEV VM types.
      r = err('EINVAL', 'sev_guest_init2: !sev->need_init');
      break;
    default: {
      const e = NOT_SEV_GUEST.get(id);
      if (e === undefined) return err('EINVAL', `sev_mem_enc_ioctl: unknown command id ${id}`);
      r = err(e, `sev_mem_enc_ioctl: command ${id} on a VM that is not an SEV guest`);
    }
  }
  if (!argp.copyToUser(cmd)) return err('EFAULT', 'sev_mem_enc_ioctl: copy_to_user(sev_cmd)');
  return r;
}
