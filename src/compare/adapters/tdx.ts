/**
 * VMM adapters for Intel TDX guests: `linux-6.18-tdx` (guest_memfd for private memory, separate
 * shared memory at `userspace_addr`, as `linux-6.18`) and `linux-next-gmem-tdx` (the in-place
 * conversion series on TDX: one guest_memfd with MMAP, KVM_SET_MEMORY_ATTRIBUTES2).
 *
 * Boot is QEMU's TD build cut to its minimum: a TD (type 5), guest RAM, KVM_CAP_EXIT_HYPERCALL
 * for KVM_HC_MAP_GPA_RANGE, KVM_TDX_INIT_VM (SEPT_VE_DISABLE, GPAW 48), the split irqchip a TD's
 * vCPU needs, a vCPU with KVM_TDX_INIT_VCPU and KVM_TDX_FINALIZE_VM with nothing added by
 * KVM_TDX_INIT_MEM_REGION (the guest accepts its RAM itself, ./confidential.ts). The command
 * structs live in two pages of the VMM (`cmd`). Conversions are the guest's
 * TDG.VP.VMCALL<MapGPA>, which KVM's `tdx_map_gpa()` forwards as KVM_HC_MAP_GPA_RANGE exits of at
 * most 2 MiB; the VMM converts as on 6.18 / next-gmem, KVM zaps the S-EPT (BLOCK, TRACK, REMOVE)
 * when pages go shared, and the guest accepts a range it made private (TDG.MEM.PAGE.ACCEPT: an
 * EPT violation, TDH.MEM.PAGE.AUG, the retry). Shared accesses carry the TD's shared GPA bit.
 *
 * What the host gets when it tries a private page is what the model's platform code answers (the
 * VMM's mapping is the separate shared memory on 6.18; on next-gmem guest_memfd's own fault
 * refuses a private index before the TDX module's PAMT is consulted).
 */
import { num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { accessArgs, ConfidentialLowerer, type GuestStep } from './confidential.js';
import { gmemRamAttributes, gmemRamSlot, type Variant } from './guest_memfd.js';
import { RAM_GPA } from './historical.js';
import { cocoPolicyNa } from './sev_snp.js';

/** KVM_X86_TDX_VM. */
const TDX_VM = 5;
/** KVM_TDX_INIT_VM, KVM_TDX_INIT_VCPU, KVM_TDX_FINALIZE_VM. */
const KVM_TDX_INIT_VM = 1;
const KVM_TDX_INIT_VCPU = 2;
const KVM_TDX_FINALIZE_VM = 4;
/** TDX_TD_ATTR_SEPT_VE_DISABLE: an access before ACCEPT kills the TD instead of a #VE. */
const TD_ATTR_SEPT_VE_DISABLE = 0x1000_0000;
/** CPUID 0x80000008 EAX with GPAW 48 (bits 23:16). */
const CPUID_GPAW_48 = 0x30_0000;
/** KVM_CAP_EXIT_HYPERCALL (201) for KVM_HC_MAP_GPA_RANGE (bit 12); KVM_CAP_SPLIT_IRQCHIP (121). */
const KVM_CAP_EXIT_HYPERCALL = 201;
const EXIT_MAP_GPA_RANGE = 1 << 12;
const KVM_CAP_SPLIT_IRQCHIP = 121;

class TdxLowerer extends ConfidentialLowerer {
  /** The boot-time private part (bytes from the start of RAM). */
  private bootPrivate = 0n;

  /**
   * KVM_PRE_FAULT_MEMORY of the private part only: a TD's shared gfns are reached through the
   * shared bit, and a pre-fault of one without it (the mirror root) is a path the model refuses.
   */
  protected override prefault(b: TraceBuilder): void {
    if (this.p.prefault && this.bootPrivate > 0n)
      b.op({
        op: 'KVM_PRE_FAULT_MEMORY',
        vcpu: 'cpu',
        gpa: num(RAM_GPA),
        size: num(this.bootPrivate),
        flags: 0,
      });
  }
  protected makeReady(gpa: bigint): GuestStep {
    return { accept: { gpa: num(gpa) } };
  }

  protected accessStep(
    kind: 'load' | 'store',
    gpa: bigint,
    arg: { size: number } | { hex: string },
    priv: boolean,
  ): GuestStep {
    return { [kind]: { ...accessArgs(gpa, arg), ...(priv ? {} : { shared: 1 }) } };
  }

  /** One MapGPA of the whole range (KVM splits it into 2 MiB exits). */
  protected requestSteps(off: bigint, size: bigint, toPrivate: boolean): GuestStep[] {
    return [{ map_gpa: { gpa: num(RAM_GPA + off), size: num(size), shared: toPrivate ? 0 : 1 } }];
  }

  protected override boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    const ram = num(this.ram);
    const inplace = this.v === 'inplace';
    // The VMM's pages for the command structs (MAP_PRIVATE | MAP_ANONYMOUS).
    b.op({ op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x22, offset: 0, as: 'cmd' });
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: TDX_VM, as: 'vm' });
    gmemRamSlot(b, ram, inplace ? 1 : 0, inplace);
    gmemRamAttributes(b, this.v, a);
    b.op({
      op: 'KVM_ENABLE_CAP',
      fd: 'vm',
      cap: KVM_CAP_EXIT_HYPERCALL,
      flags: 0,
      args: [EXIT_MAP_GPA_RANGE],
    });
    b.op({
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: KVM_TDX_INIT_VM,
      data: {
        attributes: TD_ATTR_SEPT_VE_DISABLE,
        xfam: 3,
        cpuid: [{ function: 0x8000_0008, eax: CPUID_GPAW_48 }],
      },
      data_addr: 'cmd',
    });
    b.op({ op: 'KVM_ENABLE_CAP', fd: 'vm', cap: KVM_CAP_SPLIT_IRQCHIP, flags: 0, args: [24] });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    b.op({ op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'cpu', id: KVM_TDX_INIT_VCPU });
    b.op({ op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: KVM_TDX_FINALIZE_VM });
    this.bootView(a);
    this.bootPrivate = a.private;
    this.prefault(b);
    this.vfioMapAll(b);
  }

  protected override closeDesign(b: TraceBuilder): void {
    b.op({ op: 'close', fd: 'gmem' });
    b.op({ op: 'munmap', addr: 'cmd', length: 8192 });
  }
}

function tdxAdapter(name: string, v: Variant, summary: string, origin: string): DesignAdapter {
  return {
    name,
    profile: name,
    summary,
    origin,
    lowerer(w: Workload, p: Policy): Lowerer | string {
      return cocoPolicyNa('TDX', v, p) ?? new TdxLowerer(v, w, p);
    },
  };
}

export const LINUX_6_18_TDX = tdxAdapter(
  'linux-6.18-tdx',
  'separate',
  'an Intel TDX guest on 6.18: guest_memfd private memory (S-EPT, TDH.MEM.PAGE.AUG when faulted in), separate shared memory, MapGPA → KVM_HC_MAP_GPA_RANGE → KVM_SET_MEMORY_ATTRIBUTES, ACCEPT by the guest',
  'kvm_intel TDX as merged in 6.16 and kept through 6.18 (arch/x86/kvm/vmx/tdx.c)',
);

export const LINUX_NEXT_GMEM_TDX = tdxAdapter(
  'linux-next-gmem-tdx',
  'inplace',
  'an Intel TDX guest with in-place conversion: one guest_memfd mmapped as userspace_addr, MapGPA → KVM_HC_MAP_GPA_RANGE → KVM_SET_MEMORY_ATTRIBUTES2, ACCEPT by the guest',
  'the in-place conversion series v7 on TDX',
);
