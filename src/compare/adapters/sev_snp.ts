/**
 * VMM adapters for AMD SEV-SNP guests: `linux-6.18-snp` (guest_memfd for private memory, separate
 * shared memory at `userspace_addr`, as `linux-6.18`) and `linux-next-gmem-snp` (the in-place
 * conversion series on SNP: one guest_memfd with MMAP, KVM_SET_MEMORY_ATTRIBUTES2).
 *
 * Boot is QEMU's SNP launch cut to its minimum: `/dev/sev`, an SNP VM (type 4), KVM_SEV_INIT2,
 * guest RAM, KVM_SEV_SNP_LAUNCH_START (policy 0x30000), a vCPU and KVM_SEV_SNP_LAUNCH_FINISH with
 * nothing added by LAUNCH_UPDATE (the model measures the vCPU's VMSA only; the guest's memory is
 * validated by the guest, ./confidential.ts). The command structs live in a page of the VMM
 * (`cmd`). Page-state changes are the guest's PSC descriptor (NAE event SVM_VMGEXIT_PSC, 2M
 * entries where the range allows, as Linux's `__set_pages_state()`), which KVM's
 * `snp_begin_psc()` turns into KVM_HC_MAP_GPA_RANGE exits; the VMM converts as on 6.18 /
 * next-gmem, and KVM's `sev_gmem_prepare()` / `sev_gmem_invalidate()` do the RMP work when pages
 * are faulted in or freed. Before sharing a page the guest rescinds its validation (PVALIDATE
 * with validate=0), after making one private it validates it.
 *
 * What the host gets when it tries a private page is what the model's platform code answers: the
 * VMM's mapping is the separate shared memory on 6.18 (a different page); on next-gmem the
 * guest_memfd's own fault refuses a private index (SIGBUS) before the RMP is ever consulted; the
 * RMP refuses a host write to an assigned frame (an RMP #PF: SIGBUS for a user access) where the
 * host reaches one.
 */
import { num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import type { Policy } from '../policy.js';
import type { Workload } from '../workload.js';
import { accessArgs, ConfidentialLowerer, type GuestStep } from './confidential.js';
import { gmemRamAttributes, gmemRamSlot, type Variant } from './guest_memfd.js';
import { PAGE, RAM_GPA } from './historical.js';

/** KVM_X86_SNP_VM. */
const SNP_VM = 4;
/** KVM_SEV_INIT2, KVM_SEV_SNP_LAUNCH_START, KVM_SEV_SNP_LAUNCH_FINISH. */
const KVM_SEV_INIT2 = 22;
const KVM_SEV_SNP_LAUNCH_START = 100;
const KVM_SEV_SNP_LAUNCH_FINISH = 102;
/** Guest policy: SMT allowed (bit 16) and the must-be-one bit 17. */
const SNP_POLICY = 0x30000;
/** KVM_CAP_EXIT_HYPERCALL (201) for KVM_HC_MAP_GPA_RANGE (bit 12). */
const KVM_CAP_EXIT_HYPERCALL = 201;
const EXIT_MAP_GPA_RANGE = 1 << 12;
/** VMGEXIT_PSC_MAX_COUNT: entries per PSC descriptor. */
const PSC_MAX_ENTRIES = 253;
const PAGES_2M = 512n;

class SnpLowerer extends ConfidentialLowerer {
  protected makeReady(gpa: bigint): GuestStep {
    return { pvalidate: { gpa: num(gpa) } };
  }

  protected accessStep(
    kind: 'load' | 'store',
    gpa: bigint,
    arg: { size: number } | { hex: string },
    priv: boolean,
  ): GuestStep {
    return { [kind]: { ...accessArgs(gpa, arg), c: priv ? 1 : 0 } };
  }

  /** Linux rescinds the validation of every page it shares (`snp_set_memory_shared()`). */
  protected override beforeShare(off: bigint, size: bigint): GuestStep[] {
    const out: GuestStep[] = [];
    this.ready.forEachIn(Number(off / PAGE), Number((off + size) / PAGE), (s, e) => {
      for (let p = s; p < e; p++)
        out.push({ pvalidate: { gpa: num(RAM_GPA + BigInt(p) * PAGE), validate: false } });
    });
    return out;
  }

  /** PSC descriptors of at most 253 entries, 2M entries for aligned 2 MiB pieces. */
  protected requestSteps(off: bigint, size: bigint, toPrivate: boolean): GuestStep[] {
    const op = toPrivate ? 'private' : 'shared';
    const entries: GuestStep[] = [];
    let gfn = (RAM_GPA + off) / PAGE;
    const end = (RAM_GPA + off + size) / PAGE;
    while (gfn < end) {
      const big = gfn % PAGES_2M === 0n && end - gfn >= PAGES_2M;
      entries.push({ gfn: num(gfn), op, pagesize: big ? '2M' : '4K' });
      gfn += big ? PAGES_2M : 1n;
    }
    const steps: GuestStep[] = [];
    for (let i = 0; i < entries.length; i += PSC_MAX_ENTRIES)
      steps.push({ psc: { entries: entries.slice(i, i + PSC_MAX_ENTRIES) } });
    return steps;
  }

  protected override boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    const ram = num(this.ram);
    const inplace = this.v === 'inplace';
    b.op({ op: 'open', path: '/dev/sev', as: 'sev' });
    // The VMM's page for the command structs (MAP_PRIVATE | MAP_ANONYMOUS).
    b.op({ op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'cmd' });
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: SNP_VM, as: 'vm' });
    b.op({
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: KVM_SEV_INIT2,
      sev_fd: 'sev',
      data: { vmsa_features: 0 },
      data_addr: 'cmd',
    });
    // GUEST_MEMFD_FLAG_MMAP for in-place conversion; SNP takes no other flag.
    gmemRamSlot(b, ram, inplace ? 1 : 0, inplace);
    b.op({
      op: 'KVM_ENABLE_CAP',
      fd: 'vm',
      cap: KVM_CAP_EXIT_HYPERCALL,
      flags: 0,
      args: [EXIT_MAP_GPA_RANGE],
    });
    gmemRamAttributes(b, this.v, a);
    b.op({
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: KVM_SEV_SNP_LAUNCH_START,
      sev_fd: 'sev',
      data: { policy: SNP_POLICY },
      data_addr: 'cmd',
    });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    b.op({
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: KVM_SEV_SNP_LAUNCH_FINISH,
      sev_fd: 'sev',
      data: { flags: 0 },
      data_addr: 'cmd',
    });
    this.bootView(a);
    // Allowed only after LAUNCH_FINISH (pre_fault_allowed).
    this.prefault(b);
    this.vfioMapAll(b);
  }

  protected override closeDesign(b: TraceBuilder): void {
    b.op({ op: 'close', fd: 'gmem' });
    b.op({ op: 'munmap', addr: 'cmd', length: 4096 });
    b.op({ op: 'close', fd: 'sev' });
  }
}

/** Why a policy cannot run on an SNP or TDX guest, or undefined. */
export function cocoPolicyNa(platform: string, v: Variant, p: Policy): string | undefined {
  if (p.allShared)
    return `Firecracker's secret-free layout makes no confidential guest: every page of a ${platform} guest is private until the guest shares it`;
  if (v === 'separate' && p.shared === 'gmem-mmap')
    return `a ${platform} guest's guest_memfd cannot be mapped shared on 6.18 (no INIT_SHARED): shared memory is separate`;
  if (v === 'inplace' && p.shared === 'anon')
    return 'in-place conversion keeps shared pages in guest_memfd: shared memory from anonymous memory is the 6.18 layout';
  return undefined;
}

function snpAdapter(name: string, v: Variant, summary: string, origin: string): DesignAdapter {
  return {
    name,
    profile: name,
    summary,
    origin,
    lowerer(w: Workload, p: Policy): Lowerer | string {
      return cocoPolicyNa('SEV-SNP', v, p) ?? new SnpLowerer(v, w, p);
    },
  };
}

export const LINUX_6_18_SNP = snpAdapter(
  'linux-6.18-snp',
  'separate',
  'an SEV-SNP guest on 6.18: guest_memfd private memory (RMP-assigned when faulted in), separate shared memory, PSC descriptors → KVM_HC_MAP_GPA_RANGE → KVM_SET_MEMORY_ATTRIBUTES, PVALIDATE by the guest',
  'kvm_amd SEV-SNP as merged in 6.11 and kept through 6.18 (arch/x86/kvm/svm/sev.c)',
);

export const LINUX_NEXT_GMEM_SNP = snpAdapter(
  'linux-next-gmem-snp',
  'inplace',
  'an SEV-SNP guest with in-place conversion: one guest_memfd mmapped as userspace_addr, PSC → KVM_HC_MAP_GPA_RANGE → KVM_SET_MEMORY_ATTRIBUTES2, PVALIDATE by the guest',
  'the in-place conversion series v7 on SEV-SNP',
);
