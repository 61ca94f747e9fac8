/**
 * The VMSA page (the encrypted vCPU register state) of each vCPU at launch, as KVM builds it from
 * the VMM's vCPU reset state (linux `arch/x86/kvm/svm/sev.c` `sev_es_sync_vmsa()`, called for
 * every vCPU by `snp_launch_update_vmsa()` at KVM_SEV_SNP_LAUNCH_FINISH) and the firmware
 * measures it as a VMSA page.
 *
 * Layout: AMD APM vol. 2, Table B-4 "VMSA Layout, State Save Area for SEV-ES"; linux
 * `arch/x86/include/asm/svm.h` `struct sev_es_save_area` (4 KiB, the rest zero).
 *
 * The register values are the x86 reset state as each VMM leaves it (QEMU `x86_cpu_reset_hold`,
 * with KVM adding EFER.SVME and CR4.MCE in `init_vmcb()`/`svm_set_cr4`; AWS EC2 and Google GCE
 * differ in segment attributes, RDX, MXCSR/FCW and PAT), the same values virtee/sev-snp-measure
 * `vmsa.py` writes and that shared/spec/platforms.md §2.7 checks by hash:
 * - the BSP starts at 0xFFFFFFF0 (CS base 0xFFFF0000, IP 0xFFF0), the APs at the EIP of the
 *   firmware's SEV-ES reset block (CS base = EIP & 0xFFFF0000, IP = EIP & 0xFFFF);
 * - RDX holds the CPUID signature (QEMU) or 0x600 (EC2, GCE);
 * - SEV_FEATURES is the guest's SEV features (KVM `sev->vmsa_features`: SNP 0x1, DebugSwap 0x20…).
 *
 * Pure code (no Node APIs).
 */

export type VmmType = 'QEMU' | 'ec2' | 'gce';
export const VMM_TYPES: readonly VmmType[] = ['QEMU', 'ec2', 'gce'];

/** The architectural reset vector (the BSP's first instruction). */
export const BSP_RESET_EIP = 0xfffffff0;

/** Byte offsets of the VMSA fields this file writes (struct sev_es_save_area). */
const VMSA = {
  es: 0x000,
  cs: 0x010,
  ss: 0x020,
  ds: 0x030,
  fs: 0x040,
  gs: 0x050,
  gdtr: 0x060,
  ldtr: 0x070,
  idtr: 0x080,
  tr: 0x090,
  efer: 0x0d0,
  cr4: 0x148,
  cr0: 0x158,
  dr7: 0x160,
  dr6: 0x168,
  rflags: 0x170,
  rip: 0x178,
  g_pat: 0x268,
  rdx: 0x310,
  sev_features: 0x3b0,
  xcr0: 0x3e8,
  mxcsr: 0x408,
  x87_fcw: 0x410,
} as const;

export const VMSA_PAGE_SIZE = 4096;

/** x86 reset values (AMD APM vol. 2 §14.1.3 "Processor Initialization State"). */
const EFER_SVME = 0x1000n;
const CR4_MCE = 0x40n;
const CR0_ET = 0x10n;
const DR7_RESET = 0x400n;
const DR6_RESET = 0xffff0ff0n;
const RFLAGS_RESET = 0x2n;
const PAT_RESET = 0x0007040600070406n;
const XCR0_X87 = 0x1n;

/** A vmcb_seg {u16 selector, u16 attrib, u32 limit, u64 base}. */
function seg(
  v: DataView,
  off: number,
  selector: number,
  attrib: number,
  limit: number,
  base: bigint,
): void {
  v.setUint16(off, selector, true);
  v.setUint16(off + 2, attrib, true);
  v.setUint32(off + 4, limit, true);
  v.setBigUint64(off + 8, base, true);
}

const u64 = (v: DataView, off: number, x: bigint): void => v.setBigUint64(off, x, true);

export interface VmsaOptions {
  /** The vCPU's reset EIP: BSP_RESET_EIP for vCPU 0, the SEV-ES reset block's for the APs. */
  readonly eip: number;
  /** SEV_FEATURES (the guest features: 0x1 SNP, 0x21 SNP + DebugSwap, …); 0 for SEV-ES. */
  readonly sevFeatures: bigint;
  /** The CPUID signature QEMU leaves in RDX (ignored for EC2 and GCE, which put 0x600). */
  readonly vcpuSig: bigint;
  readonly vmm: VmmType;
}

/** One vCPU's VMSA page at launch, for a VMM that starts it in real mode at its reset vector. */
export function vmsaPage(o: VmsaOptions): Uint8Array {
  const page = new Uint8Array(VMSA_PAGE_SIZE);
  const v = new DataView(page.buffer);
  let csAttr = 0x9b;
  let ssAttr = 0x93;
  let trAttr = 0x8b;
  let rdx = o.vcpuSig;
  let mxcsr = 0x1f80;
  let fcw = 0x37f;
  let gpat = PAT_RESET;
  if (o.vmm === 'ec2') {
    // EC2 leaves the BSP's code segment not yet accessed, SS and TR with other type bits.
    csAttr = o.eip === BSP_RESET_EIP ? 0x9a : 0x9b;
    ssAttr = 0x92;
    trAttr = 0x83;
    rdx = 0x600n;
    mxcsr = 0;
    fcw = 0;
  } else if (o.vmm === 'gce') {
    rdx = 0x600n;
    mxcsr = 0;
    fcw = 0;
    gpat = 0x00070106n; // GCE's hypervisor writes its own PAT
  }
  seg(v, VMSA.es, 0, 0x93, 0xffff, 0n);
  seg(v, VMSA.cs, 0xf000, csAttr, 0xffff, BigInt(o.eip & 0xffff0000) & 0xffffffffn);
  seg(v, VMSA.ss, 0, ssAttr, 0xffff, 0n);
  seg(v, VMSA.ds, 0, 0x93, 0xffff, 0n);
  seg(v, VMSA.fs, 0, 0x93, 0xffff, 0n);
  seg(v, VMSA.gs, 0, 0x93, 0xffff, 0n);
  seg(v, VMSA.gdtr, 0, 0, 0xffff, 0n);
  seg(v, VMSA.ldtr, 0, 0x82, 0xffff, 0n);
  seg(v, VMSA.idtr, 0, 0, 0xffff, 0n);
  seg(v, VMSA.tr, 0, trAttr, 0xffff, 0n);
  u64(v, VMSA.efer, EFER_SVME);
  u64(v, VMSA.cr4, CR4_MCE);
  u64(v, VMSA.cr0, CR0_ET);
  u64(v, VMSA.dr7, DR7_RESET);
  u64(v, VMSA.dr6, DR6_RESET);
  u64(v, VMSA.rflags, RFLAGS_RESET);
  u64(v, VMSA.rip, BigInt(o.eip & 0xffff));
  u64(v, VMSA.g_pat, gpat);
  u64(v, VMSA.rdx, BigInt.asUintN(64, rdx));
  u64(v, VMSA.sev_features, BigInt.asUintN(64, o.sevFeatures));
  u64(v, VMSA.xcr0, XCR0_X87);
  v.setUint32(VMSA.mxcsr, mxcsr, true);
  v.setUint16(VMSA.x87_fcw, fcw, true);
  return page;
}

/**
 * The VMSA pages of `vcpus` vCPUs in vCPU-index order (the order KVM measures them): the BSP's,
 * then one page shared by every AP (all APs start alike). `apEip` undefined: no AP may exist.
 */
export function vmsaPages(
  vcpus: number,
  apEip: number | undefined,
  o: Omit<VmsaOptions, 'eip'>,
): Uint8Array[] {
  const out: Uint8Array[] = [];
  if (vcpus === 0) return out;
  out.push(vmsaPage({ ...o, eip: BSP_RESET_EIP }));
  if (vcpus > 1) {
    if (apEip === undefined) throw new RangeError('APs need a reset EIP');
    const ap = vmsaPage({ ...o, eip: apEip });
    for (let i = 1; i < vcpus; i++) out.push(ap);
  }
  return out;
}

/**
 * The VMSA of a vCPU that starts in the COCONUT-SVSM (QEMU with an SVSM, IGVM-free launch, as
 * sev-snp-measure's `snp:svsm` mode and the fixture captured from a real launch): 32-bit
 * protected mode with flat segments (selectors 8 code, 16 data), CR0.PE, at the SVSM's entry
 * point; SEV_FEATURES 0x1. Every vCPU gets the same page. The captured launch had FCW 0 (only
 * MXCSR is set).
 */
export function svsmVmsaPage(eip: number, vcpuSig: bigint): Uint8Array {
  const page = new Uint8Array(VMSA_PAGE_SIZE);
  const v = new DataView(page.buffer);
  seg(v, VMSA.es, 16, 0xc93, 0xffffffff, 0n);
  seg(v, VMSA.cs, 8, 0xc9b, 0xffffffff, 0n);
  seg(v, VMSA.ss, 16, 0xc93, 0xffffffff, 0n);
  seg(v, VMSA.ds, 16, 0xc93, 0xffffffff, 0n);
  seg(v, VMSA.fs, 16, 0xc93, 0xffffffff, 0n);
  seg(v, VMSA.gs, 0, 0x093, 0xffff, 0n);
  seg(v, VMSA.gdtr, 0, 0, 0xffff, 0n);
  seg(v, VMSA.ldtr, 0, 0x82, 0xffff, 0n);
  seg(v, VMSA.idtr, 0, 0, 0xffff, 0n);
  seg(v, VMSA.tr, 0, 0x8b, 0xffff, 0n);
  u64(v, VMSA.efer, EFER_SVME);
  u64(v, VMSA.cr4, CR4_MCE);
  u64(v, VMSA.cr0, CR0_ET | 0x1n);
  u64(v, VMSA.dr7, DR7_RESET);
  u64(v, VMSA.dr6, DR6_RESET);
  u64(v, VMSA.rflags, RFLAGS_RESET);
  u64(v, VMSA.rip, BigInt.asUintN(64, BigInt(eip)));
  u64(v, VMSA.g_pat, PAT_RESET);
  u64(v, VMSA.rdx, BigInt.asUintN(64, vcpuSig));
  u64(v, VMSA.sev_features, 0x1n);
  u64(v, VMSA.xcr0, XCR0_X87);
  v.setUint32(VMSA.mxcsr, 0x1f80, true);
  return page;
}
