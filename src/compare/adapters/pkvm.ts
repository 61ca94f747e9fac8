/**
 * VMM adapter for protected VMs on an arm64 pKVM host (`linux-6.18-arm64-pkvm`): the hypervisor
 * at EL2 owns every page's state, and a page the guest touches is donated to it
 * (`__pkvm_host_donate_guest`): the host's stage-2 loses it, so a host access is refused by the
 * hypervisor, not by the kernel (what the 2024 exclusive-pin design relies on, and 6.18's x86
 * hosts lack).
 *
 * - Boot: a protected VM (KVM_CREATE_VM type ARM_PROTECTED), all guest RAM one guest_memfd with
 *   MMAP | INIT_SHARED in a guest_memfd-only memslot (arm64's rule), mmapped by the VMM as `mem`,
 *   a vCPU with KVM_ARM_VCPU_INIT (PSCI 0.2). Private memory is what the guest touches (each
 *   first touch is a stage-2 abort that donates the page); the guest shares the shared part with
 *   MEM_SHARE at boot.
 * - Conversions: the guest's vendor hypercalls MEM_SHARE / MEM_UNSHARE (SMCCC 0xc6000003 /
 *   0xc6000004), one per 4 KiB page as Linux's `set_memory_decrypted()` / `_encrypted()` make
 *   them, handled at EL2 (`__pkvm_guest_share_host`, `__pkvm_guest_unshare_host`): no exit to the
 *   VMM, no attributes. A non-zero x0 is the guest's -EPERM (`arm_smccc_share_unshare_page()`).
 *   One copy of every page: the discard knobs have nothing to drop, and the VMM is never told of
 *   a conversion, so it cannot unmap a range from VFIO before it goes private.
 * - Host accesses are what the model's hypervisor answers: the host stage-2 entry of a donated
 *   page is annotated with its owner, the fault is -EPERM at EL2, and the later tree injects an
 *   abort that the host kernel turns into SIGSEGV (6.18 itself panics the hypervisor there:
 *   README "pKVM").
 */
import { num, type DesignAdapter, type Lowerer, type TraceBuilder } from '../adapter.js';
import { measureGuestMemfd } from '../metrics.js';
import type { Policy } from '../policy.js';
import type { ActionStep, Workload } from '../workload.js';
import { PKVM_PAGE_OWNED } from '../../core/platform/pkvm/memory.js';
import { PAGE, RAM_GPA, VmmLowerer } from './historical.js';

/** KVM_VM_TYPE_ARM_PROTECTED (bit 31); the IPA size byte 0. */
const ARM_PROTECTED = 0x8000_0000;
const MEM_SHARE = 'MEM_SHARE';
const MEM_UNSHARE = 'MEM_UNSHARE';

class PkvmLowerer extends VmmLowerer {
  /** One hypercall per page of [off, off + size). */
  private calls(nr: string, off: bigint, size: bigint): Record<string, unknown> {
    const guest: unknown[] = [];
    for (let o = off; o < off + size; o += PAGE)
      guest.push({ hypercall: { nr, args: [num(RAM_GPA + o)] } });
    return { op: 'KVM_RUN', vcpu: 'cpu', guest };
  }

  protected boot(b: TraceBuilder, a: { private: bigint; shared: bigint }): void {
    const ram = num(this.ram);
    b.op({ op: 'KVM_CREATE_VM', fd: 'kvm', type: ARM_PROTECTED, as: 'vm' });
    // GUEST_MEMFD_FLAG_MMAP | INIT_SHARED: the VMM loads the guest through its mapping.
    b.op({ op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: ram, flags: 3, as: 'gmem' });
    b.op({
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm',
      slot: 0,
      flags: 4,
      guest_phys_addr: num(RAM_GPA),
      memory_size: ram,
      userspace_addr: 0,
      guest_memfd: 'gmem',
      guest_memfd_offset: 0,
    });
    b.op({ op: 'mmap', fd: 'gmem', length: ram, prot: 3, flags: 1, offset: 0, as: 'mem' });
    b.op({ op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' });
    b.op({
      op: 'KVM_ARM_VCPU_INIT',
      vcpu: 'cpu',
      target: 'GENERIC_V8',
      features: ['PSCI_0_2'],
    });
    this.vfioMapAll(b);
    if (a.shared > 0n) b.accessSmccc(this.calls(MEM_SHARE, a.private, a.shared));
  }

  /** The guest's hypercalls only: the VMM is not told (no VFIO unmap first). */
  protected override convertStep(
    b: TraceBuilder,
    off: bigint,
    size: bigint,
    toPrivate: boolean,
  ): void {
    this.convert(b, off, size, toPrivate);
  }

  protected convert(b: TraceBuilder, off: bigint, size: bigint, toPrivate: boolean): void {
    b.accessSmccc(this.calls(toPrivate ? MEM_UNSHARE : MEM_SHARE, off, size));
  }

  /** The guest_memfd is closed after the VM (teardown), not before it. */
  protected closeDesign(): void {}

  override step(s: ActionStep, b: TraceBuilder): void {
    super.step(s, b);
    // The VM goes first: its teardown reclaims every page the guest owns or shares (the model
    // refuses a guest_memfd that drops a page a protected guest still shares, as the later tree
    // pins those pages until teardown).
    if (s.action.kind === 'teardown') b.op({ op: 'close', fd: 'gmem' });
  }
}

export const LINUX_6_18_ARM64_PKVM: DesignAdapter = {
  name: 'linux-6.18-arm64-pkvm',
  profile: 'linux-6.18-arm64-pkvm',
  summary:
    "a protected VM on arm64 pKVM: guest_memfd (MMAP, INIT_SHARED) as RAM, each page the guest touches donated to it by the EL2 hypervisor (gone from the host's stage-2), MEM_SHARE / MEM_UNSHARE hypercalls handled at EL2; private = pages the guest owns",
  origin:
    'arm64 KVM in protected mode (arch/arm64/kvm/hyp/nvhe/mem_protect.c), protected VMs as in the pKVM series of 2025-2026',
  lowerer(w: Workload, p: Policy): Lowerer | string {
    if (p.allShared)
      return "Firecracker's secret-free layout makes no protected VM: every page a protected guest touches is donated to it";
    if (p.shared === 'anon')
      return "a protected VM's RAM is guest_memfd here: the model's host does not pin anonymous memory donated to a guest (the later tree's FOLL_LONGTERM pin), so the VMM's teardown would free pages the guest owns";
    if (p.prefault) return 'KVM_PRE_FAULT_MEMORY is x86 only (arm64 has no pre-fault in 6.18)';
    return new PkvmLowerer(w, p);
  },
  // Pages a protected guest owns are private (the host's stage-2 has lost them); the rest of the
  // guest_memfd (INIT_SHARED, which the default measure counts as shared) is shared.
  measure: (h) => {
    const m = measureGuestMemfd(h);
    const hyp = h.platform.pkvm?.hyp;
    let owned = 0;
    for (const vm of hyp?.vms.values() ?? []) {
      if (!vm.isProtected || vm.dying) continue;
      for (const r of vm.stage2.leafRuns())
        if (r.leaf.state === PKVM_PAGE_OWNED) owned += r.end - r.start;
    }
    return { ...m, private: m.private + owned, shared: m.shared - owned };
  },
};
