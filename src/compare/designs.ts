/**
 * The designs `gmemlab compare` knows: one `DesignAdapter` (./adapter.ts) per design, in the
 * order of the table's columns. Adding a design is one adapter module and one line here.
 */
import type { DesignAdapter } from './adapter.js';
import { DESIGN_2024_SHMEM_EXCLUSIVE_PIN } from './adapters/exclusive_pin.js';
import { LINUX_6_18, LINUX_NEXT_GMEM } from './adapters/guest_memfd.js';
import { DESIGN_2020_PROTNONE } from './adapters/protnone.js';
import { DESIGN_2023_RESTRICTEDMEM } from './adapters/restrictedmem.js';

export const DESIGNS: readonly DesignAdapter[] = [
  DESIGN_2020_PROTNONE,
  DESIGN_2023_RESTRICTEDMEM,
  LINUX_6_18,
  DESIGN_2024_SHMEM_EXCLUSIVE_PIN,
  LINUX_NEXT_GMEM,
];

export const DESIGN_NAMES: readonly string[] = DESIGNS.map((d) => d.name);

export function designByName(name: string): DesignAdapter | undefined {
  return DESIGNS.find((d) => d.name === name);
}
