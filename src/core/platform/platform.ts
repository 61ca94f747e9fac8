/**
 * The confidential-computing platform under the kernel: what the hardware or firmware tracks per
 * physical frame, beside the kernel's own view — AMD SEV-SNP's RMP entry (assigned, ASID, GPA,
 * validated), Intel TDX's PAMT owner, arm64 pKVM's page ownership — and the one check every host
 * access to a frame passes through.
 *
 * The host reaches a frame in three ways, each reported here (mm/host_access.ts calls it): the
 * VMM's own loads and stores through its page tables ('vmm'), `get_user_pages()` by KVM for a
 * shared stage-2 fault ('gup'), and KVM's instruction emulator copying through userspace_addr
 * ('kvm-uaccess'). A platform that forbids the access names the fault the host takes (on SNP a
 * host write to an assigned frame is an RMP #PF, delivered to a user access as SIGBUS).
 *
 * The platform keeps its per-frame state itself, as ranges of frames. (pKVM's check may build the
 * host stage-2 identity map the hypervisor keeps lazily — a cache of what the host owns, never
 * an ownership change; see platform/pkvm/platform.ts.)
 */
import type { Pfn } from '../base/units.js';
import type { SnpFirmware } from './sev_snp/firmware.js';
import type { Rmp } from './sev_snp/rmp.js';
import type { TdxModule } from './tdx/module.js';
import type { PkvmHyp } from './pkvm/hyp.js';

/** Who touches a frame on the host's behalf. */
/** 'dma': a device's access through an IOMMU domain (VFIO), made on the host's behalf. */
export type HostAccessPath = 'vmm' | 'gup' | 'kvm-uaccess' | 'dma';

export interface Platform {
  /** The platform's name ('none', later 'sev-snp', 'tdx', 'pkvm'). */
  readonly name: string;
  /**
   * Whether any frame can refuse host access. False lets the host-access path skip the call (the
   * model's hot paths stay as fast as without a platform).
   */
  readonly guardsHostAccess: boolean;
  /**
   * The host-access check for one frame: undefined when the access may proceed, else the signal
   * the accessing host context gets. Must not change state.
   */
  hostAccess(pfn: Pfn, write: boolean, path: HostAccessPath): 'SIGBUS' | 'SIGSEGV' | undefined;
  /**
   * An AMD SEV-SNP host's hardware (platform/sev_snp/): the RMP and the PSP's SNP firmware, which
   * kvm_amd's SEV code drives (arch/x86/svm/sev.ts). Absent on every other platform.
   */
  readonly sevSnp?: { readonly rmp: Rmp; readonly firmware: SnpFirmware };
  /**
   * An Intel TDX host's TDX module (platform/tdx/), which kvm_intel's TDX code drives
   * (arch/x86/vmx/tdx.ts). Absent on every other platform.
   */
  readonly tdx?: { readonly module: TdxModule };
  /**
   * An arm64 pKVM host's EL2 hypervisor (platform/pkvm/): page ownership for host, hyp and
   * guests, which arm64 KVM drives through its hypercalls (arch/arm64/). Absent elsewhere.
   */
  readonly pkvm?: { readonly hyp: PkvmHyp };
}

/**
 * No platform: a plain (non-confidential) host, and the software-protected VMs of upstream x86
 * (`KVM_X86_SW_PROTECTED_VM`), whose private memory is protected by the kernel alone.
 */
export const NO_PLATFORM: Platform = {
  name: 'none',
  guardsHostAccess: false,
  hostAccess: () => undefined,
};
