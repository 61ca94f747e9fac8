/**
 * The AMD Secure Processor's SEV-SNP firmware as KVM drives it (SEV-SNP Firmware ABI, "Guest
 * Management"; linux drivers/crypto/ccp/sev-dev.c issues the commands, arch/x86/kvm/svm/sev.c
 * calls them; platforms.md §2.4, §2.6, Appendix A.2): one guest context per SNP guest, created by
 * SNP_GCTX_CREATE, started by SNP_LAUNCH_START (state INIT → LAUNCH), bound to its ASID by
 * SNP_ACTIVATE, given its initial pages by SNP_LAUNCH_UPDATE (each measured into the launch
 * digest), finished by SNP_LAUNCH_FINISH (LAUNCH → RUNNING) and destroyed by SNP_DECOMMISSION.
 * SNP_PAGE_RECLAIM returns a Pre-Guest page that a failed command left behind to the hypervisor.
 *
 * Each command answers a firmware status (`SEV_RET_*`, include/uapi/linux/psp-sev.h); the PSP
 * driver turns a non-zero status into -EIO for its caller and reports the status in the
 * command's `error` (`__sev_do_cmd_locked()`), which KVM copies to `kvm_sev_cmd.error`.
 *
 * What the model's firmware chooses where the ABI leaves it to the firmware (documented here,
 * tested in tests/unit/sev_snp.test.ts):
 * - The firmware's ABI version is 1.55; the host has SMT enabled and one socket. SNP_LAUNCH_START
 *   refuses with POLICY_FAILURE a policy asking for a newer ABI, or with SMT clear (SMT is on),
 *   and with INVALID_PARAM a policy without the reserved-must-be-one bit 17.
 * - The guest context page and the firmware pages KVM allocates (`snp_alloc_firmware_page()`) are
 *   not frames of the model: they hold no guest data and no host code path writes them.
 * - SECRETS pages get this layout (a subset of the ABI's secrets page, version 3): u32 version = 3
 *   at 0x00, u32 imi_en = 0 at 0x04, u32 fms = 0x00A00F11 (family 19h model 01h stepping 1) at
 *   0x08, the 16-byte GOSVW of SNP_LAUNCH_START at 0x10, VMPCK0..3 (32 bytes each) at 0x20, 0x40,
 *   0x60, 0x80, every other byte 0. A VMPCK's bytes are `(handle * 31 + vmpl * 7 + i) & 0xff`:
 *   deterministic stand-ins for the firmware's random keys (the model is not a key store).
 * - CPUID pages (the ABI's `SNP_CPUID_FUNCTION` table: u32 count, u32 reserved1, u64 reserved2,
 *   then 64 entries of 48 bytes {u32 eax_in, u32 ecx_in, u64 xcr0_in, u64 xss_in, u32 eax, ebx,
 *   ecx, edx, u64 reserved}) are validated on this subset of the firmware's rules: count must be
 *   at most 64, and the header's reserved fields and every counted entry's reserved field must
 *   be 0. A table that breaks a rule fails with INVALID_PARAM; the firmware then writes the
 *   corrected table into the page (count clamped to 64, reserved fields zeroed) and leaves the
 *   page unmeasured and unvalidated, in the Pre-Guest state, for KVM to reclaim and copy back.
 *   The real firmware also checks the leaf values against the CPU; the model does not.
 * - SNP_LAUNCH_UPDATE's per-page checks, in this order: the context exists (INVALID_GUEST), is in
 *   the LAUNCH state (INVALID_GUEST_STATE) and activated (INACTIVE); the page type is 1..6
 *   (INVALID_PARAM); the page size is 4K (INVALID_PAGE_SIZE: KVM only issues 4K updates); the
 *   frame's RMP entry is assigned and immutable, i.e. Pre-Guest (INVALID_PAGE_STATE), of the
 *   guest's ASID (INVALID_PAGE_OWNER) and a 4K entry (INVALID_PAGE_SIZE). The GPA measured is
 *   the entry's RMP.GPA (KVM wrote it with RMPUPDATE; VMSA pages: 0xFFFFFFFFF000).
 */
import type { FrameStore } from '../../base/frames.js';
import type { Pfn } from '../../base/units.js';
import { sha384 } from '../../base/crypto/sha384.js';
import { SnpLaunchDigest, SNP_PAGE_TYPE, type SnpPageType } from './launch_digest.js';
import type { Rmp } from './rmp.js';

/** Firmware status codes (`SEV_RET_*`, include/uapi/linux/psp-sev.h) the model returns. */
export const SEV_RET = {
  SUCCESS: 0x0,
  INVALID_GUEST_STATE: 0x2,
  POLICY_FAILURE: 0x7,
  INACTIVE: 0x8,
  INVALID_ADDRESS: 0x9,
  ASID_OWNED: 0xc,
  INVALID_ASID: 0xd,
  INVALID_GUEST: 0x10,
  INVALID_PARAM: 0x16,
  INVALID_PAGE_SIZE: 0x19,
  INVALID_PAGE_STATE: 0x1a,
  INVALID_PAGE_OWNER: 0x1c,
} as const;
export type SevRet = (typeof SEV_RET)[keyof typeof SEV_RET];

export { SNP_PAGE_TYPE };

/** The model firmware's SEV-SNP ABI version. */
export const SNP_FW_API_MAJOR = 1;
export const SNP_FW_API_MINOR = 55;

/** Guest policy bits (SNP Firmware ABI "Guest Policy"; linux svm/sev.c SNP_POLICY_MASK_*). */
export const SNP_POLICY = {
  API_MINOR: 0xffn,
  API_MAJOR: 0xff00n,
  SMT: 1n << 16n,
  RSVD_MBO: 1n << 17n,
  MIGRATE_MA: 1n << 18n,
  DEBUG: 1n << 19n,
  SINGLE_SOCKET: 1n << 20n,
} as const;

/** The firmware's view of one SNP guest (its guest context page). */
export interface SnpGuestContext {
  readonly handle: number;
  state: 'INIT' | 'LAUNCH' | 'RUNNING';
  /** The ASID SNP_ACTIVATE bound (0: not activated). */
  asid: number;
  policy: bigint;
  gosvw: Uint8Array;
  readonly digest: SnpLaunchDigest;
  /** SNP_LAUNCH_FINISH's HOST_DATA (attested, not measured). */
  hostData: Uint8Array | undefined;
  /** The pages measured so far, in order — for invariants and `--trace`. */
  readonly measured: SnpMeasuredEntry[];
}

/** One page of the firmware's launch log: what SNP_LAUNCH_UPDATE put in the digest. */
export interface SnpMeasuredEntry {
  readonly type: number;
  /** The GPA in PAGE_INFO (the RMP entry's). */
  readonly gpa: bigint;
  /** PAGE_INFO.CONTENTS: SHA-384 of the page for NORMAL and VMSA pages, else 48 zero bytes. */
  readonly contentsHash: Uint8Array;
  /** The launch digest after this page. */
  readonly digest: Uint8Array;
}

const ZERO_HASH = new Uint8Array(48);
/** The page SNP_LAUNCH_UPDATE reads to hash (used only within one call). */
const PAGE_SCRATCH = new Uint8Array(4096);

/** Bytes in a CPUID table entry and the table's maximum entry count. */
const CPUID_ENTRY_SIZE = 48;
const CPUID_MAX_ENTRIES = 64;
const PAGE = 4096;

function u32(b: Uint8Array, off: number): number {
  return (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16) | (b[off + 3]! << 24)) >>> 0;
}
function putU32(b: Uint8Array, off: number, v: number): void {
  b[off] = v & 0xff;
  b[off + 1] = (v >>> 8) & 0xff;
  b[off + 2] = (v >>> 16) & 0xff;
  b[off + 3] = (v >>> 24) & 0xff;
}
function nonZero(b: Uint8Array, off: number, len: number): boolean {
  for (let i = off; i < off + len; i++) if (b[i] !== 0) return true;
  return false;
}

/**
 * The CPUID page check (see the module comment): undefined when the table passes, else the
 * corrected table.
 */
export function snpCpuidCorrect(page: Uint8Array): Uint8Array | undefined {
  let bad = false;
  const fixed = new Uint8Array(page);
  let count = u32(page, 0);
  if (count > CPUID_MAX_ENTRIES) {
    bad = true;
    count = CPUID_MAX_ENTRIES;
    putU32(fixed, 0, count);
  }
  if (nonZero(page, 4, 12)) {
    bad = true;
    fixed.fill(0, 4, 16);
  }
  for (let i = 0; i < count; i++) {
    const rsvd = 16 + i * CPUID_ENTRY_SIZE + 40;
    if (nonZero(page, rsvd, 8)) {
      bad = true;
      fixed.fill(0, rsvd, rsvd + 8);
    }
  }
  return bad ? fixed : undefined;
}

/** The secrets page the model's firmware writes for `ctx` (layout in the module comment). */
export function snpSecretsPage(ctx: SnpGuestContext): Uint8Array {
  const p = new Uint8Array(PAGE);
  putU32(p, 0x00, 3);
  putU32(p, 0x04, 0);
  putU32(p, 0x08, 0x00a00f11);
  p.set(ctx.gosvw.subarray(0, 16), 0x10);
  for (let vmpl = 0; vmpl < 4; vmpl++)
    for (let i = 0; i < 32; i++) p[0x20 + vmpl * 32 + i] = (ctx.handle * 31 + vmpl * 7 + i) & 0xff;
  return p;
}

export class SnpFirmware {
  private readonly contexts = new Map<number, SnpGuestContext>();
  private nextHandle = 1;
  /** Host facts the policy check reads: SMT is enabled on the host. */
  readonly hostSmt = true;

  /** `hash`: the one-shot SHA-384 the firmware measures with (default core/base/crypto's). */
  constructor(
    private readonly rmp: Rmp,
    private readonly hash: (bytes: Uint8Array) => Uint8Array = sha384,
  ) {}

  context(handle: number): SnpGuestContext | undefined {
    return this.contexts.get(handle);
  }

  /** SNP_GCTX_CREATE: a new guest context in the INIT state; its handle (its page's address). */
  gctxCreate(): number {
    const handle = this.nextHandle++;
    this.contexts.set(handle, {
      handle,
      state: 'INIT',
      asid: 0,
      policy: 0n,
      gosvw: new Uint8Array(16),
      digest: new SnpLaunchDigest(undefined, this.hash),
      hostData: undefined,
      measured: [],
    });
    return handle;
  }

  /**
   * SNP_LAUNCH_START: policy checks (ABI version, SMT, the reserved-must-be-one bit), then the
   * context enters LAUNCH with a zero launch digest.
   */
  launchStart(handle: number, policy: bigint, gosvw: Uint8Array): SevRet {
    const ctx = this.contexts.get(handle);
    if (ctx === undefined) return SEV_RET.INVALID_GUEST;
    if (ctx.state !== 'INIT') return SEV_RET.INVALID_GUEST_STATE;
    if ((policy & SNP_POLICY.RSVD_MBO) === 0n) return SEV_RET.INVALID_PARAM;
    const major = Number((policy & SNP_POLICY.API_MAJOR) >> 8n);
    const minor = Number(policy & SNP_POLICY.API_MINOR);
    if (major > SNP_FW_API_MAJOR || (major === SNP_FW_API_MAJOR && minor > SNP_FW_API_MINOR))
      return SEV_RET.POLICY_FAILURE;
    if (this.hostSmt && (policy & SNP_POLICY.SMT) === 0n) return SEV_RET.POLICY_FAILURE;
    ctx.policy = policy;
    ctx.gosvw = new Uint8Array(gosvw.subarray(0, 16));
    ctx.state = 'LAUNCH';
    return SEV_RET.SUCCESS;
  }

  /** SNP_ACTIVATE: bind `asid` to the context; an ASID bound to another context is ASID_OWNED. */
  activate(handle: number, asid: number): SevRet {
    const ctx = this.contexts.get(handle);
    if (ctx === undefined) return SEV_RET.INVALID_GUEST;
    if (asid === 0) return SEV_RET.INVALID_ASID;
    for (const c of this.contexts.values())
      if (c !== ctx && c.asid === asid) return SEV_RET.ASID_OWNED;
    ctx.asid = asid;
    return SEV_RET.SUCCESS;
  }

  /**
   * SNP_LAUNCH_UPDATE of the frame `pfn` (4K) with `pageType`: the checks of the module comment,
   * then the page's effect (ZERO zeroes it, SECRETS fills it, CPUID validates it), the launch
   * digest update (PAGE_INFO with the RMP entry's GPA; NORMAL and VMSA pages measure their
   * contents), and the RMP entry becomes validated, not immutable, VMSA for a VMSA page.
   */
  launchUpdate(
    frames: FrameStore,
    handle: number,
    pfn: Pfn,
    pageSize: '4K' | '2M',
    pageType: number,
  ): SevRet {
    const ctx = this.contexts.get(handle);
    if (ctx === undefined) return SEV_RET.INVALID_GUEST;
    if (ctx.state !== 'LAUNCH' && !this.rmp.mutants.has('snp_fw_update_after_finish'))
      return SEV_RET.INVALID_GUEST_STATE;
    if (ctx.asid === 0) return SEV_RET.INACTIVE;
    if (!Number.isInteger(pageType) || pageType < 1 || pageType > 6) return SEV_RET.INVALID_PARAM;
    if (pageSize !== '4K') return SEV_RET.INVALID_PAGE_SIZE;
    const e = this.rmp.lookup(pfn);
    if (!e.assigned || !e.immutable) return SEV_RET.INVALID_PAGE_STATE;
    if (e.asid !== ctx.asid) return SEV_RET.INVALID_PAGE_OWNER;
    if (e.size !== '4K') return SEV_RET.INVALID_PAGE_SIZE;
    let contents: Uint8Array | undefined;
    switch (pageType) {
      case SNP_PAGE_TYPE.NORMAL:
      case SNP_PAGE_TYPE.VMSA:
        // Read into one scratch page: the contents are only hashed, right below.
        contents = PAGE_SCRATCH;
        frames.read(pfn, 0, contents);
        break;
      case SNP_PAGE_TYPE.ZERO:
        frames.zero(pfn, 1);
        break;
      case SNP_PAGE_TYPE.SECRETS:
        frames.write(pfn, 0, snpSecretsPage(ctx));
        break;
      case SNP_PAGE_TYPE.CPUID: {
        const page = new Uint8Array(PAGE);
        frames.read(pfn, 0, page);
        const fixed = snpCpuidCorrect(page);
        if (fixed !== undefined) {
          frames.write(pfn, 0, fixed);
          return SEV_RET.INVALID_PARAM;
        }
        break;
      }
      default:
        break;
    }
    const contentsHash = contents === undefined ? ZERO_HASH : this.hash(contents);
    ctx.digest.updateHashed(pageType as SnpPageType, e.gpa, contentsHash);
    ctx.measured.push({ type: pageType, gpa: e.gpa, contentsHash, digest: ctx.digest.value() });
    this.rmp.setFlags(pfn, {
      validated: true,
      immutable: false,
      vmsa: pageType === SNP_PAGE_TYPE.VMSA,
    });
    return SEV_RET.SUCCESS;
  }

  /** SNP_LAUNCH_FINISH: LAUNCH → RUNNING; HOST_DATA is kept (attested, not measured). */
  launchFinish(handle: number, hostData: Uint8Array): SevRet {
    const ctx = this.contexts.get(handle);
    if (ctx === undefined) return SEV_RET.INVALID_GUEST;
    if (ctx.state !== 'LAUNCH') return SEV_RET.INVALID_GUEST_STATE;
    ctx.hostData = new Uint8Array(hostData);
    ctx.state = 'RUNNING';
    return SEV_RET.SUCCESS;
  }

  /**
   * SNP_PAGE_RECLAIM: a Pre-Guest page (assigned and immutable) loses its immutable bit, so the
   * hypervisor's RMPUPDATE may make it shared again.
   */
  pageReclaim(pfn: Pfn): SevRet {
    const e = this.rmp.lookup(pfn);
    if (!e.assigned || !e.immutable) return SEV_RET.INVALID_PAGE_STATE;
    this.rmp.setFlags(pfn, { immutable: false });
    return SEV_RET.SUCCESS;
  }

  /** SNP_DECOMMISSION: the context goes, its ASID binding with it. */
  decommission(handle: number): SevRet {
    return this.contexts.delete(handle) ? SEV_RET.SUCCESS : SEV_RET.INVALID_GUEST;
  }
}
