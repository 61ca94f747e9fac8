/**
 * kvm_amd's per-VM SEV state and the helpers every SEV command handler shares (arch/x86/kvm/svm/
 * sev.c): `struct kvm_sev_info` and `sev_guest()` / `sev_es_guest()` / `sev_snp_guest()`, the ASID
 * allocator, `struct kvm_sev_cmd`, and the user copies of a command's `data` pointer. sev.ts
 * (the ioctl and guest init) and sev_snp.ts (the SNP commands and hooks) build on it.
 */
import type { KernelCtx } from '../../../ctx.js';
import type { Errno } from '../../../base/errno.js';
import { sha384 } from '../../../base/crypto/sha384.js';
import { readU32 } from '../../../base/uaccess.js';
import { KVM_X86_SEV_ES_VM, KVM_X86_SEV_VM, KVM_X86_SNP_VM } from '../../../base/uapi.js';
import { asHva } from '../../../base/units.js';
import type { Vm } from '../../../kvm/objects.js';

/** `vmsa_features` bits (arch/x86/include/asm/svm.h SVM_SEV_FEAT_*). */
export const SVM_SEV_FEAT = { SNP_ACTIVE: 1n << 0n, DEBUG_SWAP: 1n << 5n } as const;
/** GHCB protocol versions KVM supports (sev.c GHCB_VERSION_*). */
export const GHCB_VERSION_MAX = 2;
export const GHCB_VERSION_DEFAULT = 2;
/** sizeof(struct kvm_sev_init) (arch/x86/include/uapi/asm/kvm.h). */
export const KVM_SEV_INIT_SIZE = 48;

/** The host's SEV facts (module comment). */
export const MIN_SEV_ASID = 100;
export const MAX_SEV_ASID = 509;
export const SEV_SUPPORTED_VMSA_FEATURES = SVM_SEV_FEAT.DEBUG_SWAP;

/** `struct kvm_sev_info`: the per-VM SEV state, as far as the model needs it. */
export interface KvmSevInfo {
  /** `need_init`: set by `svm_vm_init()` for the SEV VM types until a successful INIT2. */
  needInit: boolean;
  active: boolean;
  esActive: boolean;
  asid: number;
  vmsaFeatures: bigint;
  ghcbVersion: number;
  policy: bigint;
  /** `snp_context`: the firmware guest context's handle (undefined: none). */
  snpContext: number | undefined;
  /** `sev->fd`: the /dev/sev fd LAUNCH_START used (sev_issue_cmd() for later commands). */
  fd: number;
  /**
   * The SNP_LAUNCH_UPDATE commands KVM completed for this guest, in order: what the launch
   * digest must cover (the snp-launch-measured invariant recomputes it from this log). Not
   * kernel state: the model's record of the commands sev_gmem_post_populate() and
   * snp_launch_update_vmsa() issued, with the SHA-384 of the page contents KVM handed over for
   * the types the firmware hashes.
   */
  readonly snpLaunchLog: SnpLaunchRecord[];
  /** Length of `snpLaunchLog` when SNP_LAUNCH_FINISH succeeded (-1: not finished). */
  snpLaunchFinishedAt: number;
}

/** One completed SNP_LAUNCH_UPDATE (see KvmSevInfo.snpLaunchLog). */
export interface SnpLaunchRecord {
  readonly type: number;
  readonly gpa: bigint;
  /** SHA-384 of the page KVM copied in (NORMAL) or synced (VMSA); undefined for other types. */
  readonly hash: Uint8Array | undefined;
}

/**
 * A log record that keeps the page KVM handed over (its own copy, never written again) and
 * hashes it when first asked: the firmware already hashed the page for the digest, and only the
 * snp-launch-measured invariant reads this hash, so a launch nobody checks hashes each page once.
 */
export class SnpLaunchRecordOf implements SnpLaunchRecord {
  private page: Uint8Array | undefined;
  private digest: Uint8Array | undefined;

  constructor(
    readonly type: number,
    readonly gpa: bigint,
    /** The page's 4096 bytes (NORMAL, VMSA), else undefined. */
    page: Uint8Array | undefined,
  ) {
    this.page = page;
  }

  get hash(): Uint8Array | undefined {
    if (this.page !== undefined) {
      this.digest = sha384(this.page);
      this.page = undefined;
    }
    return this.digest;
  }
}

const SEV_INFO = new WeakMap<Vm, KvmSevInfo>();

/** `to_kvm_sev_info(kvm)`: created as `svm_vm_init()` leaves it. */
export function toKvmSevInfo(vm: Vm): KvmSevInfo {
  let s = SEV_INFO.get(vm);
  if (s === undefined) {
    const t = vm.type;
    s = {
      needInit: t === KVM_X86_SEV_VM || t === KVM_X86_SEV_ES_VM || t === KVM_X86_SNP_VM,
      active: false,
      esActive: false,
      asid: 0,
      vmsaFeatures: 0n,
      ghcbVersion: 0,
      policy: 0n,
      snpContext: undefined,
      fd: -1,
      snpLaunchLog: [],
      snpLaunchFinishedAt: -1,
    };
    SEV_INFO.set(vm, s);
  }
  return s;
}

/** `sev_guest(kvm)`. */
export function sevGuest(vm: Vm): boolean {
  return SEV_INFO.get(vm)?.active === true;
}
/** `sev_es_guest(kvm)`. */
export function sevEsGuest(vm: Vm): boolean {
  const s = SEV_INFO.get(vm);
  return s !== undefined && s.active && s.esActive;
}
/** `sev_snp_guest(kvm)`: SNP_ACTIVE in vmsa_features (set by INIT2 of an SNP VM). */
export function sevSnpGuest(vm: Vm): boolean {
  const s = SEV_INFO.get(vm);
  return s !== undefined && (s.vmsaFeatures & SVM_SEV_FEAT.SNP_ACTIVE) !== 0n && sevEsGuest(vm);
}

/** The host's SEV ASID bitmap (`sev_asid_bitmap`), per host. */
const ASIDS = new WeakMap<KernelCtx, Set<number>>();

/**
 * `sev_asid_new()`: SEV-ES and SNP guests take ASIDs 1..min_sev_asid-1, SEV guests
 * min_sev_asid..max_sev_asid; none free is -EBUSY (the model has no reclaim to retry).
 */
export function sevAsidNew(k: KernelCtx, s: KvmSevInfo): number | Errno {
  const min = s.esActive ? 1 : MIN_SEV_ASID;
  const max = s.esActive ? MIN_SEV_ASID - 1 : MAX_SEV_ASID;
  if (min > max) return 'ENOTTY';
  let used = ASIDS.get(k);
  if (used === undefined) ASIDS.set(k, (used = new Set()));
  for (let a = min; a <= max; a++)
    if (!used.has(a)) {
      used.add(a);
      return a;
    }
  return 'EBUSY';
}

/** `sev_asid_free()`. */
export function sevAsidFree(k: KernelCtx, s: KvmSevInfo): void {
  ASIDS.get(k)?.delete(s.asid);
}

/**
 * `copy_from_user()` / `copy_to_user()` on a user address the command struct holds
 * (`u64_to_user_ptr(argp->data)`): through the VMM's page tables, as the kernel's uaccess goes;
 * a fault is -EFAULT.
 */
export function copyFromUserAddr(k: KernelCtx, addr: bigint, len: number): Uint8Array | undefined {
  if (addr >= k.profile.taskSizeMax) return undefined;
  const r = k.mm.access(asHva(addr), len, null);
  return r.ok ? r.data! : undefined;
}
export function copyToUserAddr(k: KernelCtx, addr: bigint, bytes: Uint8Array): boolean {
  if (addr >= k.profile.taskSizeMax) return false;
  return k.mm.access(asHva(addr), bytes.length, bytes).ok;
}

/** The command struct `sev_mem_enc_ioctl()` copied in (`struct kvm_sev_cmd`). */
export class KvmSevCmd {
  constructor(readonly bytes: Uint8Array) {}
  private get view(): DataView {
    return new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }
  get id(): number {
    return readU32(this.bytes, 0);
  }
  get data(): bigint {
    return this.view.getBigUint64(8, true);
  }
  get error(): number {
    return readU32(this.bytes, 16);
  }
  set error(v: number) {
    this.view.setUint32(16, v >>> 0, true);
  }
  get sevFd(): number {
    return this.view.getInt32(20, true);
  }
}
