/**
 * The designs `gmemlab compare` knows: one `DesignAdapter` (./adapter.ts) per design, in the
 * order of the table's columns. Adding a design is one adapter module and one line here.
 */
import type { DesignAdapter } from './adapter.js';
import { LINUX_6_18, LINUX_NEXT_GMEM } from './adapters/guest_memfd.js';

export const DESIGNS: readonly DesignAdapter[] = [LINUX_6_18, LINUX_NEXT_GMEM];

export const DESIGN_NAMES: readonly string[] = DESIGNS.map((d) => d.name);

export function designByName(name: string): DesignAdapter | undefined {
  return DESIGNS.find((d) => d.name === name);
}
