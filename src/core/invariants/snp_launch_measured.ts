/**
 * snp-launch-measured: the launch digest covers exactly the pages added through
 * SNP_LAUNCH_UPDATE, in that order.
 */
import { toKvmSevInfo, type SnpLaunchRecord } from '../arch/x86/svm/sev_common.js';
import { snpGuestContext } from '../arch/x86/svm/sev_snp.js';
import { SnpLaunchDigest, type SnpPageType } from '../platform/sev_snp/launch_digest.js';
import { NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

const ZERO_HASH = new Uint8Array(48);

/** The digest recomputed from a log, kept per log and extended as the log grows. */
const RECOMPUTED = new WeakMap<readonly SnpLaunchRecord[], { n: number; d: SnpLaunchDigest }>();

function recompute(log: readonly SnpLaunchRecord[]): string {
  let c = RECOMPUTED.get(log);
  if (c === undefined || c.n > log.length)
    RECOMPUTED.set(log, (c = { n: 0, d: new SnpLaunchDigest() }));
  for (; c.n < log.length; c.n++) {
    const r = log[c.n]!;
    c.d.updateHashed(r.type as SnpPageType, r.gpa, r.hash ?? ZERO_HASH);
  }
  return c.d.hex();
}

export const snpLaunchMeasured: Invariant = {
  name: 'snp-launch-measured',
  title: "The launch digest covers exactly the guest's LAUNCH_UPDATE pages, in order",
  statement:
    "For every SNP guest with a firmware guest context, the context's launch digest equals the digest recomputed from the SNP_LAUNCH_UPDATE commands KVM completed for it, in the order it completed them (each page's type, GPA and, for NORMAL and VMSA pages, the SHA-384 of the contents KVM handed over): no page is measured that was not added through LAUNCH_UPDATE, none twice, none out of order, none with other contents or at another GPA; a command the firmware refused leaves the digest as it was, and none is measured after SNP_LAUNCH_FINISH.",
  mechanism:
    "sev_gmem_post_populate() issues one SNP_LAUNCH_UPDATE per page after rmp_make_private(pfn, gpa, 4K, asid, immutable) and stops at the first failure (reclaiming that page); snp_launch_update_vmsa() measures each vCPU's synced VMSA at INITIAL_VMSA_GPA in vcpu_idx order; the firmware extends the digest only on success and only in the LAUNCH state (SEV-SNP Firmware ABI, SNP_LAUNCH_UPDATE; PAGE_INFO of the measured page's RMP.GPA).",
  origin:
    'platforms.md §2.4, §2.6, Appendix A.2 (LAUNCH_UPDATE, PAGE_INFO); issue 11 items 3 and 6.',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    if (s.host.platform.sevSnp === undefined) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const vm of s.host.vms) {
      const ctx = snpGuestContext(s.host, vm);
      if (ctx === undefined) continue;
      const sev = toKvmSevInfo(vm);
      const log = sev.snpLaunchLog;
      if (sev.snpLaunchFinishedAt >= 0 && log.length > sev.snpLaunchFinishedAt)
        (out ??= []).push({
          invariant: 'snp-launch-measured',
          object: `vm${vm.index} launch digest`,
          message: `${log.length - sev.snpLaunchFinishedAt} page(s) were measured after SNP_LAUNCH_FINISH (the digest the guest attests is no longer the launch's)`,
          focus: { vm: vm.index },
        });
      const fw = ctx.digest.hex();
      const want = recompute(log);
      if (fw !== want)
        (out ??= []).push({
          invariant: 'snp-launch-measured',
          object: `vm${vm.index} launch digest`,
          message: `the firmware's launch digest ${fw.slice(0, 16)}... (${ctx.measured.length} page(s) measured) is not the digest of the ${log.length} page(s) KVM added through SNP_LAUNCH_UPDATE (${want.slice(0, 16)}...)`,
          focus: { vm: vm.index },
        });
    }
    return out ?? NO_VIOLATIONS;
  },
};
