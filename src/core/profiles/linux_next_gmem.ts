/**
 * The in-flight guest_memfd kernel: Linux with the in-place shared/private conversion series v7
 * (kernel-uapi.md §6.1, source S8: Ackerley Tng, Sean Christopherson et al., "guest_memfd:
 * In-place conversion support" v7, 2026-05-22, 42 patches on kvm/next; tree
 * googleprodkernel/linux-cc branch guest_memfd-inplace-conversion-v7; lore
 * 20260522-gmem-inplace-conversion-v7-0-2f0fae496530@google.com) and the §6.6 changes already in
 * kvm-x86/next (S4), on x86 with the TDP MMU (kvm_intel, EPT), VM types DEFAULT and SW_PROTECTED.
 *
 * Two profiles, one per value of the read-only module parameter `kvm.vm_memory_attributes`
 * (v7 patch 18; a kernel fact, `kvmParams`):
 * - `linux-next-gmem` (`vm_memory_attributes=0`, what the series is for): attributes live in
 *   guest_memfd. KVM_SET_MEMORY_ATTRIBUTES2 on a guest_memfd fd converts in place; the VM ioctl
 *   KVM_SET_MEMORY_ATTRIBUTES is ENOTTY and KVM_CAP_MEMORY_ATTRIBUTES 0;
 *   KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES (249) is PRIVATE on /dev/kvm and on a SW_PROTECTED VM,
 *   0 on a DEFAULT VM; INIT_SHARED is offered to SW_PROTECTED VMs too (patch 19).
 * - `linux-next-gmem-vmattr` (`vm_memory_attributes=1`, the default when
 *   CONFIG_KVM_VM_MEMORY_ATTRIBUTES is built): per-VM attributes as in 6.18; the guest_memfd
 *   ioctl is ENOTTY and cap 249 reads 0; a file's attributes never change after creation, so host
 *   faults follow INIT_SHARED as in 6.18.
 * Both have the series' per-index host-fault rule and the §6.6 changes (an overlapping binding is
 * EEXIST; the bind offset and size are unsigned, so an offset whose offset + size passes 2^63 is
 * EINVAL where 6.18's signed loff_t check wraps negative and binds it: `gmemBindOffsetUnsigned`).
 *
 * The CoCo VM types (SNP, TDX) are not offered: their launch paths' in-place population
 * (optional SNP_LAUNCH_UPDATE `uaddr`, TDX INIT_MEM_REGION source, patches 20-21) and the
 * private-only folio preparation (patch 07) are not modelled yet. Everything else (caps, host
 * facts) is `linux-6.18`'s.
 */
import { KVM_CAP } from '../base/uapi.js';
import type { NamedFacts } from './compose.js';
import type { KernelFacts } from './facts.js';
import { LINUX_6_18_FACTS } from './linux_6_18.js';

/** A cap table with some values replaced. */
function withCaps(
  values: readonly number[],
  overrides: ReadonlyArray<readonly [number, number]>,
): number[] {
  const t = [...values];
  for (const [id, v] of overrides) t[id] = v;
  return t;
}

/** KVM_MEMORY_ATTRIBUTE_PRIVATE. */
const PRIVATE = 8;

/**
 * The caps that depend on `vm_memory_attributes` (kvm_vm_ioctl_check_extension_generic(), v7
 * patches 04 and 13), on /dev/kvm (kvm = NULL: `kvm_supported_mem_attributes(NULL)` is PRIVATE)
 * and on a DEFAULT VM (no private memory: 0 either way).
 */
function nextGmemFacts(vmMemoryAttributes: boolean): KernelFacts {
  const sys: ReadonlyArray<readonly [number, number]> = vmMemoryAttributes
    ? [
        [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, PRIVATE],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, 0],
      ]
    : [
        [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, 0],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, PRIVATE],
      ];
  return {
    ...LINUX_6_18_FACTS,
    release: '7.1-gmem-inplace-v7',
    kconfig: { ...LINUX_6_18_FACTS.kconfig, gmemMemoryAttributes: true },
    kvmParams: { vmMemoryAttributes },
    caps: {
      system: withCaps(LINUX_6_18_FACTS.caps.system, sys),
      vm: withCaps(LINUX_6_18_FACTS.caps.vm, [
        [KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES, 0],
        [KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES, 0],
      ]),
    },
  };
}

export const LINUX_NEXT_GMEM_FACTS: KernelFacts = nextGmemFacts(false);
export const LINUX_NEXT_GMEM_VMATTR_FACTS: KernelFacts = nextGmemFacts(true);

export const LINUX_NEXT_GMEM: NamedFacts = {
  id: {
    name: 'linux-next-gmem',
    description:
      'kvm/next with the guest_memfd in-place conversion series v7 (2026-05-22), kvm.vm_memory_attributes=0: per-guest_memfd attributes, KVM_SET_MEMORY_ATTRIBUTES2; x86 TDP, DEFAULT and SW_PROTECTED VMs; synthesized facts',
  },
  facts: LINUX_NEXT_GMEM_FACTS,
};

export const LINUX_NEXT_GMEM_VMATTR: NamedFacts = {
  id: {
    name: 'linux-next-gmem-vmattr',
    description:
      'as linux-next-gmem with kvm.vm_memory_attributes=1: per-VM attributes as in 6.18 (the guest_memfd ioctl is ENOTTY); synthesized facts',
  },
  facts: LINUX_NEXT_GMEM_VMATTR_FACTS,
};
