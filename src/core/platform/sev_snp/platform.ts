/**
 * An AMD SEV-SNP host as the model's platform (platform/platform.ts): the RMP (rmp.ts) and the
 * PSP's SNP firmware (firmware.ts), per host — each `Host` assembled for a `sev-snp` profile gets
 * its own (core/assemble.ts; registered as CCP_SEV by arch/x86/svm/parts.ts).
 *
 * The host-access check is the RMP's: a host write to an assigned frame is an RMP #PF, which a
 * user access (the VMM's store, KVM's uaccess through userspace_addr, get_user_pages() for a
 * write) receives as SIGBUS; reads are not blocked. These paths go through the VMM's page tables
 * (4K mappings in the model), not the kernel's direct map, so only the frame's own entry counts;
 * the direct map's 2 MiB rule is `Rmp.hostWriteFaults(pfn, true)`.
 */
import type { Pfn } from '../../base/units.js';
import type { HostAccessPath, Platform } from '../platform.js';
import { SnpFirmware } from './firmware.js';
import { Rmp } from './rmp.js';

export class SevSnpPlatform implements Platform {
  readonly name = 'sev-snp';
  readonly rmp = new Rmp();
  readonly firmware: SnpFirmware;
  /** `sha384`: the one-shot SHA-384 the firmware measures with (default core/base/crypto's). */
  constructor(sha384?: (bytes: Uint8Array) => Uint8Array) {
    this.firmware = new SnpFirmware(this.rmp, sha384);
  }
  get sevSnp(): { readonly rmp: Rmp; readonly firmware: SnpFirmware } {
    return this;
  }
  /** Only an assigned frame can refuse a host access: none, none to check. */
  get guardsHostAccess(): boolean {
    return this.rmp.runs > 0;
  }
  hostAccess(pfn: Pfn, write: boolean, _path: HostAccessPath): 'SIGBUS' | undefined {
    return write && this.rmp.hostWriteFaults(pfn, false) ? 'SIGBUS' : undefined;
  }
}
