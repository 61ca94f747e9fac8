/**
 * Paths of sev-snp-measure's data fixtures (tests/fixtures/sev-snp-measure, Apache-2.0), shared by
 * the measure and model-launch tests.
 */
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/tests/unit/ → the repository root. */
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const FIX = join(ROOT, 'tests/fixtures/sev-snp-measure');
export const AMDSEV = join(FIX, 'ovmf_AmdSev_suffix.bin');
export const OVMFX64 = join(FIX, 'ovmf_OvmfX64_suffix.bin');
export const SVSM = join(FIX, 'svsm.bin');
export const SVSM_OVMF = join(FIX, 'svsm_ovmf.fd');
