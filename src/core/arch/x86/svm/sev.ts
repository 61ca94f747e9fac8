/**
 * AMD SEV (arch/x86/kvm/svm/sev.c): `sev_mem_enc_ioctl()`, the KVM_MEMORY_ENCRYPT_OP handler of
 * kvm_amd (CONFIG_KVM_AMD_SEV), the per-VM SEV state (`struct kvm_sev_info`) and guest
 * initialisation (`sev_guest_init()`, `sev_guest_init2()`, `__sev_guest_init()`). SEV-SNP's launch
 * commands, its guest_memfd hooks and the VMSAs are in sev_snp.ts.
 *
 * Modelled: VMs of the SEV VM types (2, 3, 4) created on a host that offers them
 * (`svm_vm_init()` sets `need_init` for them), KVM_SEV_INIT2 for all three, and the whole SNP
 * launch flow. Not modelled (an error naming the limit, which the trace op turns into a
 * refusal): the legacy SEV / SEV-ES launch commands past their guest check (LAUNCH_START,
 * LAUNCH_UPDATE_DATA, ...), KVM_SEV_INIT/ES_INIT on a DEFAULT VM (which would make it an SEV
 * guest), mirror VMs (KVM_CAP_VM_COPY_ENC_CONTEXT_FROM) and migration.
 *
 * The host's SEV facts (what `sev_hardware_setup()` read from CPUID 0x8000001F and the firmware)
 * are fixed for the model: ASIDs 1..99 for SEV-ES and SNP guests and 100..509 for SEV guests
 * (`min_sev_asid` = 100, `max_sev_asid` = 509, an EPYC 7003 with the BIOS's SEV-ES ASID space
 * limit at 100), firmware initialised, DebugSwap supported (`sev_supported_vmsa_features` =
 * SVM_SEV_FEAT_DEBUG_SWAP).
 */
import { NotModelled } from '../../../base/not_modelled.js';
import type { KernelCtx } from '../../../ctx.js';
import type { Errno } from '../../../base/errno.js';
import { err, OK_VOID, type Result } from '../../../base/result.js';
import type { UserPtr } from '../../../base/uaccess.js';
import {
  KVM_CAP,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SEV_ES_VM,
  KVM_X86_SEV_VM,
  KVM_X86_SNP_VM,
} from '../../../base/uapi.js';
import type { Vm } from '../../../kvm/objects.js';
import { snpLaunchFinish, snpLaunchStart, snpLaunchUpdate } from './sev_snp.js';
import {
  GHCB_VERSION_DEFAULT,
  GHCB_VERSION_MAX,
  KVM_SEV_INIT_SIZE,
  KvmSevCmd,
  SEV_SUPPORTED_VMSA_FEATURES,
  SVM_SEV_FEAT,
  copyFromUserAddr,
  sevAsidNew,
  sevEsGuest,
  sevGuest,
  sevSnpGuest,
  toKvmSevInfo,
} from './sev_common.js';

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
 * `sev_enabled` / `sev_es_enabled` after `sev_hardware_setup()`: the module parameter, the CPU
 * and the PSP all allow it. `sev_set_cpu_caps()` then adds the SEV (SEV-ES) VM type to
 * KVM_CAP_VM_TYPES, so the kernel's facts tell (the probed capability value).
 */
function sevVmTypeOffered(k: KernelCtx, type: bigint): boolean {
  const types = k.profile.facts.caps.system[KVM_CAP.KVM_CAP_VM_TYPES] ?? 0;
  return (BigInt(types) & (1n << type)) !== 0n;
}

/**
 * `__sev_guest_init()`: checks in the kernel's order (vCPUs already created, flags, vmsa_features
 * outside what the type allows, ghcb_version, already active), then the ASID, the platform
 * (initialised in the model) and, for SNP, the guest-request pages; `need_init` is cleared.
 */
function sevGuestInitCommon(
  k: KernelCtx,
  vm: Vm,
  init: { vmsaFeatures: bigint; flags: number; ghcbVersion: number },
  vmType: bigint,
): Result<undefined> {
  const s = toKvmSevInfo(vm);
  const esActive = vmType !== KVM_X86_SEV_VM;
  const validVmsaFeatures = esActive ? SEV_SUPPORTED_VMSA_FEATURES : 0n;
  if (vm.createdVcpus > 0) return err('EINVAL', '__sev_guest_init: vCPUs already created');
  if (init.flags !== 0) return err('EINVAL', '__sev_guest_init: flags != 0');
  if ((init.vmsaFeatures & ~validVmsaFeatures) !== 0n)
    return err('EINVAL', '__sev_guest_init: unsupported vmsa_features');
  if (init.ghcbVersion > GHCB_VERSION_MAX || (!esActive && init.ghcbVersion !== 0))
    return err('EINVAL', '__sev_guest_init: bad ghcb_version');
  if (s.active) return err('EINVAL', '__sev_guest_init: already active');
  s.active = true;
  s.esActive = esActive;
  s.vmsaFeatures = init.vmsaFeatures;
  s.ghcbVersion = init.ghcbVersion;
  if (s.esActive && s.ghcbVersion === 0) s.ghcbVersion = GHCB_VERSION_DEFAULT;
  if (vmType === KVM_X86_SNP_VM) s.vmsaFeatures |= SVM_SEV_FEAT.SNP_ACTIVE;
  const asid = sevAsidNew(k, s);
  if (typeof asid !== 'number') {
    s.vmsaFeatures = 0n;
    s.esActive = false;
    s.active = false;
    return err(asid, '__sev_guest_init: sev_asid_new');
  }
  s.asid = asid;
  s.needInit = false;
  return OK_VOID;
}

/**
 * `sev_guest_init2()`: only a VM of an SEV type that is not initialised yet (`need_init`), then
 * `struct kvm_sev_init` from `data` (-EFAULT), then `__sev_guest_init()` with the VM's type.
 */
function sevGuestInit2(k: KernelCtx, vm: Vm, cmd: KvmSevCmd): Result<undefined> {
  if (!toKvmSevInfo(vm).needInit) return err('EINVAL', 'sev_guest_init2: !sev->need_init');
  if (vm.type !== KVM_X86_SEV_VM && vm.type !== KVM_X86_SEV_ES_VM && vm.type !== KVM_X86_SNP_VM)
    return err('EINVAL', 'sev_guest_init2: not an SEV VM type');
  const b = copyFromUserAddr(k, cmd.data, KVM_SEV_INIT_SIZE);
  if (b === undefined) return err('EFAULT', 'sev_guest_init2: copy_from_user(kvm_sev_init)');
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return sevGuestInitCommon(
    k,
    vm,
    {
      vmsaFeatures: v.getBigUint64(0, true),
      flags: v.getUint32(8, true),
      ghcbVersion: v.getUint16(12, true),
    },
    vm.type,
  );
}

/**
 * What each legacy command handler answers first for a VM that is not an SEV guest: its
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
]);

/**
 * A legacy SEV / SEV-ES command: its guest check answers as the kernel does; past it (the VM is
 * an SEV guest) the legacy launch and migration flows are not modelled.
 */
function legacyCommand(vm: Vm, id: number): Result<undefined> | undefined {
  const e = NOT_SEV_GUEST.get(id);
  if (e === undefined) return undefined;
  if (!sevGuest(vm))
    return err(e, `sev_mem_enc_ioctl: command ${id} on a VM that is not an SEV guest`);
  if (id === KVM_SEV.LAUNCH_UPDATE_VMSA && !sevEsGuest(vm))
    return err('ENOTTY', 'sev_launch_update_vmsa: !sev_es_guest');
  throw new NotModelled(
    `KVM_MEMORY_ENCRYPT_OP command ${id} on an SEV/SEV-ES guest: the legacy SEV launch and migration commands are not modelled`,
  );
}

/**
 * `sev_mem_enc_ioctl()`: -ENOTTY without SEV; a NULL argument is 0 (nothing to do); the command
 * struct is copied in (-EFAULT); an SNP guest takes only the SNP commands (-EPERM, past the copy
 * back); then the switch, an unknown id -EINVAL (past the copy back); a handled command copies
 * the struct back, with the firmware's `error` (-EFAULT when that faults, whatever the handler
 * said). Mirror VMs are not modelled (`is_mirroring_enc_context()` is false).
 */
export function sevMemEncIoctl(k: KernelCtx, vm: Vm, argp: UserPtr): Result<undefined> {
  if (!sevVmTypeOffered(k, KVM_X86_SEV_VM)) return err('ENOTTY', 'sev_mem_enc_ioctl: !sev_enabled');
  if (argp.isNull) return OK_VOID;
  const raw = argp.copyFromUser(KVM_SEV_CMD_SIZE);
  if (raw === undefined) return err('EFAULT', 'sev_mem_enc_ioctl: copy_from_user(sev_cmd)');
  const cmd = new KvmSevCmd(raw);
  const id = cmd.id;
  if (sevSnpGuest(vm) && id < KVM_SEV.SNP_LAUNCH_START)
    return err('EPERM', 'sev_mem_enc_ioctl: only SNP commands on an SNP guest');
  let r: Result<undefined>;
  switch (id) {
    case KVM_SEV.ES_INIT:
    case KVM_SEV.INIT:
      // `r = -ENOTTY; goto out`: past the copy back.
      if (id === KVM_SEV.ES_INIT && !sevVmTypeOffered(k, KVM_X86_SEV_ES_VM))
        return err('ENOTTY', 'sev_mem_enc_ioctl: KVM_SEV_ES_INIT without sev_es_enabled');
      // sev_guest_init(): only a DEFAULT VM may become an SEV guest this way; the new VM types
      // must use KVM_SEV_INIT2.
      if (vm.type !== KVM_X86_DEFAULT_VM) {
        r = err('EINVAL', 'sev_guest_init: vm_type != KVM_X86_DEFAULT_VM');
        break;
      }
      throw new NotModelled(
        'sev_guest_init() on a DEFAULT VM would make it an SEV guest: SEV guests are not modelled yet',
      );
    case KVM_SEV.INIT2:
      r = sevGuestInit2(k, vm, cmd);
      break;
    case KVM_SEV.SNP_LAUNCH_START:
      r = snpLaunchStart(k, vm, cmd);
      break;
    case KVM_SEV.SNP_LAUNCH_UPDATE:
      r = snpLaunchUpdate(k, vm, cmd);
      break;
    case KVM_SEV.SNP_LAUNCH_FINISH:
      r = snpLaunchFinish(k, vm, cmd);
      break;
    default: {
      const l = legacyCommand(vm, id);
      if (l === undefined) return err('EINVAL', `sev_mem_enc_ioctl: unknown command id ${id}`);
      r = l;
    }
  }
  if (!argp.copyToUser(cmd.bytes)) return err('EFAULT', 'sev_mem_enc_ioctl: copy_to_user(sev_cmd)');
  return r;
}
