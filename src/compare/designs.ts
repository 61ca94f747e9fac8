/**
 * The designs `gmemlab compare` knows: one `DesignAdapter` (./adapter.ts) per design, in the
 * order of the table's columns. Adding a design is one adapter module and one line here.
 */
import type { DesignAdapter } from './adapter.js';
import { DESIGN_2024_SHMEM_EXCLUSIVE_PIN } from './adapters/exclusive_pin.js';
import { LINUX_6_18, LINUX_NEXT_GMEM } from './adapters/guest_memfd.js';
import { DESIGN_2020_PROTNONE } from './adapters/protnone.js';
import { DESIGN_2023_RESTRICTEDMEM } from './adapters/restrictedmem.js';
import { LINUX_6_18_SNP, LINUX_NEXT_GMEM_SNP } from './adapters/sev_snp.js';
import { LINUX_6_18_TDX, LINUX_NEXT_GMEM_TDX } from './adapters/tdx.js';
import { LINUX_6_18_ARM64_PKVM } from './adapters/pkvm.js';
import { DESIGN_2020_SEPARATE_MM } from './adapters/separate_mm.js';

export const DESIGNS: readonly DesignAdapter[] = [
  DESIGN_2020_PROTNONE,
  DESIGN_2020_SEPARATE_MM,
  DESIGN_2023_RESTRICTEDMEM,
  LINUX_6_18,
  DESIGN_2024_SHMEM_EXCLUSIVE_PIN,
  LINUX_NEXT_GMEM,
];

export const DESIGN_NAMES: readonly string[] = DESIGNS.map((d) => d.name);

export function designByName(name: string): DesignAdapter | undefined {
  return DESIGNS.find((d) => d.name === name);
}

/**
 * The confidential-computing platforms, as adapters of their own: not run by default (the
 * default columns are the designs above); chosen by name, or together with a group name.
 */
export const PLATFORMS: readonly DesignAdapter[] = [
  LINUX_6_18_SNP,
  LINUX_6_18_TDX,
  LINUX_NEXT_GMEM_SNP,
  LINUX_NEXT_GMEM_TDX,
  LINUX_6_18_ARM64_PKVM,
];

/** Every adapter, designs first. */
export const ADAPTERS: readonly DesignAdapter[] = [...DESIGNS, ...PLATFORMS];
export const ADAPTER_NAMES: readonly string[] = ADAPTERS.map((d) => d.name);

/** Names that select several adapters at once (`--designs platforms`). */
export const ADAPTER_GROUPS: ReadonlyMap<string, readonly DesignAdapter[]> = new Map([
  ['designs', DESIGNS],
  ['platforms', PLATFORMS],
  ['all', ADAPTERS],
]);

/** A design or platform by name. */
export function adapterByName(name: string): DesignAdapter | undefined {
  return ADAPTERS.find((d) => d.name === name);
}
