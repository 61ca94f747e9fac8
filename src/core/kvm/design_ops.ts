/**
 * The historical private-memory designs' hooks into generic KVM (issue 15 item 1; README
 * "Designs"), a table in the style of `struct kvm_x86_ops`: a design kernel's KVM calls the
 * design's code through it where 6.18's KVM has its own guest private memory, instead of asking
 * which design the profile names. The table is chosen once, when the kernel is made
 * (`designOpsFor()`), and is null on every real kernel. Each design's series patched these places
 * in the kernel; the hook comments name the function each patched.
 */
import type { KernelCtx } from '../ctx.js';
import type { FaultExit } from './arch_ops.js';
import type { DesignName } from '../profiles/facts.js';
import type { KernelProfile } from '../profiles/profile.js';
import { kvmExclusivePinHypercall } from './exclusive_pin.js';
import { kvmProtectedMemHypercall } from './mem_protected.js';
import type { Vm } from './objects.js';
import { KVM_MEM_PRIVATE, UPM_V10_PRIVATE_FAULT_EXIT } from './restrictedmem.js';

export interface DesignOps {
  readonly name: DesignName;
  /**
   * `kvm_emulate_hypercall()`: the design's own hypercalls, handled in KVM before the generic
   * ones; the value left in RAX, or undefined when `nr` is not one of them.
   */
  readonly hypercall?: (
    k: KernelCtx,
    vm: Vm,
    nr: bigint,
    a0: bigint,
    a1: bigint,
    a2: bigint,
  ) => bigint | undefined;
  /** `check_memory_region_flags()`: memslot flags the design adds to the valid set. */
  readonly memslotFlags: bigint;
  /**
   * The design has a private-memory fd of its own, bound by memslots
   * (`memfd_restricted()`, KVM_SET_USER_MEMORY_REGION's `_ext` struct).
   */
  readonly restrictedFd: boolean;
  /**
   * The design has address spaces of no process (`address_space_create()` and friends,
   * KVM_MAP_ADDRESS_SPACE: mm/address_space.ts, kvm/separate_mm.ts).
   */
  readonly addressSpaces: boolean;
  /**
   * `kvm_mmu_page_fault()` on a private fault no private memslot serves: the design's own
   * memory-fault exit (UPM v10: RET_PF_USER, KVM_RUN 0), or undefined for 6.18's -EFAULT exit.
   */
  readonly privateFaultExit?: FaultExit;
}

/** design-2020-protnone-follkvm: the RFC's hypercalls 12/13/14 (kvm/mem_protected.ts). */
const PROTNONE_FOLLKVM_OPS: DesignOps = {
  name: 'protnone-follkvm',
  hypercall: (k, vm, nr, a0, a1) => kvmProtectedMemHypercall(k, vm, nr, a0, a1),
  memslotFlags: 0n,
  restrictedFd: false,
  addressSpaces: false,
};

/** design-2023-restrictedmem: KVM_MEM_PRIVATE and the restricted fd (kvm/restrictedmem.ts). */
const RESTRICTEDMEM_OPS: DesignOps = {
  name: 'restrictedmem',
  memslotFlags: KVM_MEM_PRIVATE,
  restrictedFd: true,
  addressSpaces: false,
  privateFaultExit: UPM_V10_PRIVATE_FAULT_EXIT,
};

/** design-2024-shmem-exclusive-pin: KVM_HC_MAP_GPA_RANGE handled in KVM (kvm/exclusive_pin.ts). */
const SHMEM_EXCLUSIVE_PIN_OPS: DesignOps = {
  name: 'shmem-exclusive-pin',
  hypercall: kvmExclusivePinHypercall,
  memslotFlags: 0n,
  restrictedFd: false,
  addressSpaces: false,
};

/**
 * design-2020-separate-mm: guest memory in an address space only KVM uses
 * (mm/address_space.ts, kvm/separate_mm.ts); no hypercall, memslot flag or private fd of its own.
 */
const SEPARATE_MM_OPS: DesignOps = {
  name: 'separate-mm',
  memslotFlags: 0n,
  restrictedFd: false,
  addressSpaces: true,
};

const DESIGN_OPS: Record<DesignName, DesignOps> = {
  'protnone-follkvm': PROTNONE_FOLLKVM_OPS,
  'separate-mm': SEPARATE_MM_OPS,
  restrictedmem: RESTRICTEDMEM_OPS,
  'shmem-exclusive-pin': SHMEM_EXCLUSIVE_PIN_OPS,
};

/** The design table of a kernel: null for a kernel that carries no design (every real one). */
export function designOpsFor(profile: KernelProfile): DesignOps | null {
  if (profile.design === undefined) return null;
  return DESIGN_OPS[profile.design];
}
