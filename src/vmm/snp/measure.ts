/**
 * Running an SNP launch plan (launch_plan.ts) through a launcher: the interface a VMM drives KVM's
 * SNP launch with, one 4 KiB LAUNCH_UPDATE page at a time, then LAUNCH_FINISH with the vCPUs'
 * VMSAs, which returns the launch digest.
 *
 * DigestLauncher is the direct implementation: the SNP firmware's digest chain alone
 * (core/platform/sev_snp/launch_digest.ts). Another launcher can drive the model's
 * KVM_SEV_SNP_LAUNCH_UPDATE / KVM_SEV_SNP_LAUNCH_FINISH on an SNP VM with the same plan.
 *
 * Pure code (no Node APIs).
 */
import { sha384 } from '../../core/base/crypto/sha384.js';
import {
  SNP_INITIAL_VMSA_GPA,
  SNP_LD_SIZE,
  SNP_PAGE_TYPE,
  SnpLaunchDigest,
  snpPageTypeMeasuresContents,
  type SnpPageType,
} from '../../core/platform/sev_snp/launch_digest.js';
import type { SnpLaunchPlan } from './launch_plan.js';

const PAGE = 4096;

/** A VMM's view of KVM's SNP launch. */
export interface SnpLauncher {
  /** KVM_SEV_SNP_LAUNCH_UPDATE of one 4 KiB page (contents: NORMAL pages' 4096 bytes). */
  launchUpdate(gpa: bigint, type: SnpPageType, contents: Uint8Array | undefined): void;
  /** KVM_SEV_SNP_LAUNCH_FINISH: measures the VMSAs in vCPU order; returns the launch digest. */
  launchFinish(vmsas: readonly Uint8Array[]): Uint8Array;
}

/** One measured page, for `--trace`. */
export interface SnpMeasuredPage {
  /** 0-based position in the launch. */
  readonly index: number;
  readonly gpa: bigint;
  readonly type: SnpPageType;
  /** SHA-384 of the contents (NORMAL, VMSA), else 48 zero bytes: PAGE_INFO.CONTENTS. */
  readonly contentsHash: Uint8Array;
  /** The launch digest after this page. */
  readonly digest: Uint8Array;
}

const ZERO_HASH = new Uint8Array(SNP_LD_SIZE);

/** The firmware's digest chain, fed directly. */
export class DigestLauncher implements SnpLauncher {
  private readonly ld: SnpLaunchDigest;
  private index = 0;

  constructor(
    opts: {
      /** A digest to start from (48 bytes): a precomputed firmware digest. */
      readonly seed?: Uint8Array;
      /** Called after every measured page. */
      readonly trace?: (p: SnpMeasuredPage) => void;
    } = {},
  ) {
    this.ld = new SnpLaunchDigest(opts.seed);
    this.trace = opts.trace;
  }

  private readonly trace: ((p: SnpMeasuredPage) => void) | undefined;

  /** The last measured page's contents (a copy) and hash: firmware images repeat pages. */
  private readonly lastPage = new Uint8Array(PAGE);
  private lastHash: Uint8Array | undefined;

  launchUpdate(gpa: bigint, type: SnpPageType, contents: Uint8Array | undefined): void {
    if (snpPageTypeMeasuresContents(type)) {
      if (contents === undefined || contents.length !== PAGE) {
        throw new RangeError(
          `LAUNCH_UPDATE of a measured page at 0x${gpa.toString(16)} needs 4096 bytes`,
        );
      }
      this.measured(gpa, type, this.pageHash(contents));
    } else {
      this.measured(gpa, type, ZERO_HASH);
    }
  }

  /**
   * SHA-384 of a page; a page equal to the previous one reuses its hash (most of a flash image's
   * pages are erased, all 0xFF, and comparing costs a small fraction of hashing).
   */
  private pageHash(contents: Uint8Array): Uint8Array {
    const last = this.lastPage;
    if (this.lastHash !== undefined) {
      let i = 0;
      while (i < PAGE && contents[i] === last[i]) i++;
      if (i === PAGE) return this.lastHash;
    }
    last.set(contents);
    this.lastHash = sha384(contents);
    return this.lastHash;
  }

  launchFinish(vmsas: readonly Uint8Array[]): Uint8Array {
    // KVM snp_launch_update_vmsa(): every vCPU's VMSA, in kvm_for_each_vcpu() order, at
    // INITIAL_VMSA_GPA; one hash per distinct page buffer is enough.
    let last: Uint8Array | undefined;
    let lastHash: Uint8Array = ZERO_HASH;
    for (const v of vmsas) {
      if (v.length !== PAGE) throw new RangeError(`a VMSA is 4096 bytes, got ${v.length}`);
      if (v !== last) {
        lastHash = sha384(v);
        last = v;
      }
      this.measured(SNP_INITIAL_VMSA_GPA, SNP_PAGE_TYPE.VMSA, lastHash);
    }
    return this.ld.value();
  }

  private measured(gpa: bigint, type: SnpPageType, hash: Uint8Array): void {
    this.ld.updateHashed(type, gpa, hash);
    if (this.trace !== undefined) {
      this.trace({ index: this.index, gpa, type, contentsHash: hash, digest: this.ld.value() });
    }
    this.index++;
  }
}

/** Issue a plan's LAUNCH_UPDATE pages in order, then LAUNCH_FINISH; returns the digest. */
export function runLaunchPlan(plan: SnpLaunchPlan, launcher: SnpLauncher): Uint8Array {
  for (const u of plan.updates) {
    for (let off = 0; off < u.len; off += PAGE) {
      launcher.launchUpdate(
        u.gpa + BigInt(off),
        u.type,
        u.contents === undefined ? undefined : u.contents.subarray(off, off + PAGE),
      );
    }
  }
  return launcher.launchFinish(plan.vmsas);
}

/** What the plan's page at `index` (as counted by SnpMeasuredPage.index) is, for traces. */
export function planStepLabels(plan: SnpLaunchPlan): (index: number) => string {
  const ends: number[] = [];
  let n = 0;
  for (const u of plan.updates) {
    n += u.len / PAGE;
    ends.push(n);
  }
  let k = 0;
  return (index) => {
    if (index >= n) return `VMSA vCPU ${index - n}`;
    // Pages come in order: move forward (or restart for an earlier index).
    if (k > 0 && index < ends[k - 1]!) k = 0;
    while (index >= ends[k]!) k++;
    return plan.updates[k]!.what;
  };
}
