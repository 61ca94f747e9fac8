/**
 * The CPUID signature (CPUID Fn0000_0001_EAX: family, model, stepping) that a vCPU's EDX holds at
 * reset, and so its VMSA's RDX: the launch digest depends on it.
 *
 * The encoding is AMD's (CPUID Specification #25481, "Fn0000_0001_EAX Family, Model, Stepping
 * Identifiers"): families above 0xF are written as BaseFamily 0xF plus ExtFamily = family - 0xF.
 * The named types are QEMU's `builtin_x86_defs` AMD EPYC models, with the names sev-snp-measure's
 * `--vcpu-type` accepts.
 */

/** The 32-bit signature of a family/model/stepping. */
export function cpuSignature(family: number, model: number, stepping: number): number {
  const familyLow = family > 0xf ? 0xf : family;
  const familyHigh = family > 0xf ? (family - 0xf) & 0xff : 0;
  return (
    ((familyHigh << 20) |
      (((model >> 4) & 0xf) << 16) |
      (familyLow << 8) |
      ((model & 0xf) << 4) |
      (stepping & 0xf)) >>>
    0
  );
}

const EPYC = cpuSignature(23, 1, 2);
const ROME = cpuSignature(23, 49, 0);
const MILAN = cpuSignature(25, 1, 1);
const GENOA = cpuSignature(25, 17, 0);
const TURIN = cpuSignature(26, 0, 0);

/** QEMU's AMD EPYC CPU models and their signatures. */
export const VCPU_TYPES: Readonly<Record<string, number>> = {
  EPYC: EPYC,
  'EPYC-v1': EPYC,
  'EPYC-v2': EPYC,
  'EPYC-IBPB': EPYC,
  'EPYC-v3': EPYC,
  'EPYC-v4': EPYC,
  'EPYC-Rome': ROME,
  'EPYC-Rome-v1': ROME,
  'EPYC-Rome-v2': ROME,
  'EPYC-Rome-v3': ROME,
  'EPYC-Milan': MILAN,
  'EPYC-Milan-v1': MILAN,
  'EPYC-Milan-v2': MILAN,
  'EPYC-Genoa': GENOA,
  'EPYC-Genoa-v1': GENOA,
  'EPYC-Turin': TURIN,
};
