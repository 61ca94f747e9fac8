/**
 * The VMM side of an SEV-SNP launch (src/vmm/snp) and `gmemlab measure snp` (src/cli/measure.ts,
 * run in-process through its command entry): every launch digest of virtee/sev-snp-measure's
 * `tests/test_guest.py` on its fixtures (tests/fixtures/sev-snp-measure), the VMSA page hashes and
 * the step trace of shared/spec/platforms.md §2.7, the OVMF footer table and SEV metadata of the
 * fixtures, and clear errors for malformed images and bad options.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { UsageError } from '../../src/cli/args.js';
import { measureMain, MeasureInputError } from '../../src/cli/measure.js';
import {
  FirmwareImageError,
  parseFirmwareImage,
  sevEsResetEip,
  sevHashTableArea,
} from '../../src/vmm/snp/ovmf.js';
import { guidBytes, guidText } from '../../src/vmm/firmware/guid.js';
import { BSP_RESET_EIP, vmsaPage } from '../../src/vmm/snp/vmsa.js';
import { cpuSignature, VCPU_TYPES } from '../../src/vmm/snp/vcpu_types.js';
import { buildSnpLaunchPlan, planPageCount } from '../../src/vmm/snp/launch_plan.js';
import { DigestLauncher, planStepLabels, runLaunchPlan } from '../../src/vmm/snp/measure.js';
import { kernelHashes, sevHashTable } from '../../src/vmm/snp/sev_hashes.js';
import {
  SNP_PAGE_TYPE,
  SNP_PAGE_TYPE_NAME,
  SnpLaunchDigest,
} from '../../src/core/platform/sev_snp/launch_digest.js';
import { toHex } from '../../src/core/base/crypto/hex.js';
import { AMDSEV, OVMFX64, SVSM, SVSM_OVMF } from './snp_fixtures.js';

const OVMF_HASH =
  '086e2e9149ebf45abdc3445fba5b2da8270bdbb04094d7a2c37faaa4b24af3aa16aff8c374c2a55c467a50da6d466b74';

const sha384hex = (b: Uint8Array): string => createHash('sha384').update(b).digest('hex');

/** Run `gmemlab measure ARGS` in-process: its output lines. */
function measure(args: readonly string[]): string[] {
  const lines: string[] = [];
  const code = measureMain(args, (s) => lines.push(...s.split('\n')));
  assert.equal(code, 0);
  return lines;
}

/** The digest line (the last line) of `gmemlab measure snp ARGS`. */
const digestOf = (args: readonly string[]): string => measure(['snp', ...args]).at(-1)!;

const EPYC_V4 = ['--vcpu-type', 'EPYC-v4'];
const DEVNULL_KERNEL = ['--kernel', '/dev/null', '--initrd', '/dev/null'];

/** virtee/sev-snp-measure tests/test_guest.py, test by test (name, options, expected digest). */
const UPSTREAM: readonly (readonly [string, readonly string[], string])[] = [
  [
    'test_snp_ovmf_hash_gen_default',
    [
      '--snp-ovmf-hash',
      OVMF_HASH,
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x21',
    ],
    '329c8ce0972ae52343b64d34a434a86f245dfd74f5ed7aae15d22efc78fb9683632b9b50e4e1d7fa41179ef98a7ef198',
  ],
  [
    'test_snp_ovmf_hash_gen_feature_snp_only',
    [
      '--snp-ovmf-hash',
      OVMF_HASH,
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x1',
    ],
    'ddc5224521617a536ee7ce9dd6224d1b58a8d4fda1c741f3ac99fc4bfa04ba6e9fc98646d4a07a9079397fa3852819b5',
  ],
  [
    'test_snp_ovmf_hash_full_default',
    [
      '--snp-ovmf-hash',
      OVMF_HASH,
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      'console=ttyS0 loglevel=7',
      '--guest-features',
      '0x21',
    ],
    '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977',
  ],
  [
    'test_snp_ovmf_hash_full_feature_snp_only',
    [
      '--snp-ovmf-hash',
      OVMF_HASH,
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      'console=ttyS0 loglevel=7',
      '--guest-features',
      '0x1',
    ],
    '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
  ],
  [
    'test_snp_ec2_default',
    [
      '--vmm-type',
      'ec2',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x21',
    ],
    '0ce9ccc06bab55eebe8abc234f3df6514883977a68a591b71052498ab52b2f1aa415db338033946ef93aa8278c0d67fb',
  ],
  [
    'test_snp_ec2_feature_snp_only',
    [
      '--vmm-type',
      'ec2',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x1',
    ],
    '0883bd0eeb716e65b7b977a321c278d1e51b33b5c655fab985443bbcc65c086b9c15e8a0bd8811050dec7e24964e5056',
  ],
  [
    'test_snp_gce_default',
    [
      '--vmm-type',
      'gce',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x1',
    ],
    '5da7106cf14cf46b1725ebab123eb9e53bd46a1e9f400cd0c08e7827b04b688ea8b4e403c8404efed4397ea5d5d0722e',
  ],
  [
    'test_snp_gce_with_multiple_vcpus_default',
    [
      '--vmm-type',
      'gce',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '4',
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x1',
    ],
    '5c5debf100fc339f90276e761ee1f1658d08922c3b20e2a2e6c7a6c3370b2452a15a00eae11886a93d6fd1e7ab81e29d',
  ],
  [
    'test_snp_default',
    [
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      'console=ttyS0 loglevel=7',
      '--guest-features',
      '0x21',
    ],
    '803f691094946e42068aaa3a8f9e26a5c89f36f7b73ecfb28c653360fe4b3aba7e534442e7e1e17895dfe778d0228977',
  ],
  [
    'test_snp_guest_feature_snp_only',
    [
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      'console=ttyS0 loglevel=7',
      '--guest-features',
      '0x1',
    ],
    '6d287813eb5222d770f75005c664e34c204f385ce832cc2ce7d0d6f354454362f390ef83a92046c042e706363b4b08fa',
  ],
  [
    'test_snp_without_kernel_default',
    ['--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--guest-features', '0x21'],
    'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
  ],
  [
    'test_snp_without_kernel_feature_snp_only',
    ['--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--guest-features', '0x1'],
    '19358ba9a7615534a9a1e2f0dfc29384dcd4dcb7062ff9c6013b26869a5fc6ecabe033c48dd6f6db5d6d76e7c5df632d',
  ],
  [
    'test_snp_with_multiple_vcpus_default',
    [
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '4',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x21',
    ],
    '4953b1fb416fa874980e8442b3706d345926d5f38879134e00813c5d7abcbe78eafe7b422907be0b4698e2414a631942',
  ],
  [
    'test_snp_with_multiple_vcpus_feature_snp_only',
    [
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '4',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
      '--guest-features',
      '0x1',
    ],
    '5061fffb019493a903613d56d54b94912a1a2f9e4502385f5c194616753720a92441310ba6c4933de877c36e23046ad5',
  ],
  [
    'test_snp_with_ovmfx64_without_default',
    ['--ovmf', OVMFX64, '--vcpus', '1', ...EPYC_V4, '--guest-features', '0x21'],
    '28797ae0afaba4005a81e629acebfb59e6687949d6be44007cd5506823b0dd66f146aaae26ff291eed7b493d8a64c385',
  ],
  [
    'test_snp_with_ovmfx64_without_kernel_feature_snp_only',
    ['--ovmf', OVMFX64, '--vcpus', '1', ...EPYC_V4, '--guest-features', '0x1'],
    'da0296de8193586a5512078dcd719eccecbd87e2b825ad4148c44f665dc87df21e5b49e21523a9ad993afdb6a30b4005',
  ],
  [
    'test_seves',
    [
      '--mode',
      'seves',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
    ],
    '13810ae661ea11e2bb205621f582fee268f0367c8f97bc297b7fadef3e12002c',
  ],
  [
    'test_seves_with_multiple_vcpus',
    [
      '--mode',
      'seves',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '4',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--append',
      '',
    ],
    '0dccbcaba8e90b261bd0d2e1863a2f9da714768b7b2a19363cd6ae35aa90de91',
  ],
  [
    'test_sev',
    ['--mode', 'sev', '--ovmf', AMDSEV, ...DEVNULL_KERNEL, '--append', 'console=ttyS0 loglevel=7'],
    '82a3ee5d537c3620628270c292ae30cb40c3c878666a7890ee7ef2a08fb535ff',
  ],
  [
    'test_sev_with_kernel_without_initrd_and_append',
    ['--mode', 'sev', '--ovmf', AMDSEV, '--kernel', '/dev/null'],
    '77f613d7bbcdf12a73782ea9e88b0172aeda50d1a54201cb903594ff52846898',
  ],
  [
    'test_sev_with_ovmfx64_without_kernel',
    ['--mode', 'sev', '--ovmf', OVMFX64],
    'b4c021e085fb83ceffe6571a3d357b4a98773c83c474e47f76c876708fe316da',
  ],
  [
    'OVMF hash of the AmdSev suffix (test_snp_ovmf_hash_full_default)',
    ['--mode', 'snp:ovmf-hash', '--ovmf', AMDSEV],
    OVMF_HASH,
  ],
];

/** Vectors computed with sev-snp-measure's CLI on options its tests do not cover. */
const MORE: readonly (readonly [string, readonly string[], string])[] = [
  [
    'ec2, 4 vCPUs, no kernel (no signature needed)',
    ['--vmm-type', 'ec2', '--ovmf', AMDSEV, '--vcpus', '4'],
    'c1cdb69c9791afdefe6547b39179f47150788b8363b1a7b84d3ea5fbf649c0d776c8daf76a9be803f4eef483d3e06846',
  ],
  [
    'ec2, 4 vCPUs, kernel /dev/null',
    ['--vmm-type', 'ec2', '--ovmf', AMDSEV, '--vcpus', '4', '--kernel', '/dev/null'],
    '011b1f26c364b296c80a51fac7bc7f957ed13814fb4ace342cca6b3db312511335ec910caa2bceb32a5957d89b5239a6',
  ],
  [
    'gce, 4 vCPUs, no kernel',
    ['--vmm-type', 'gce', '--ovmf', AMDSEV, '--vcpus', '4'],
    'ab17e200d6da7d23077e0daa1a969a5dd2901386483eaba0bd14c9b147d0b63877e65c794eeef634be92769acae79397',
  ],
  [
    '--vcpu-sig 0xa00f11, 3 vCPUs, OvmfX64',
    ['--ovmf', OVMFX64, '--vcpus', '3', '--vcpu-sig', '0xa00f11'],
    'a1f477516093171c903f1a73ff751092455ccac0a0150b142636a73d3c31cce1638492c6dd1ffd3999b09ee5f4b6a79d',
  ],
  [
    '--vcpu-family 25 --vcpu-model 17 --vcpu-stepping 0, 2 vCPUs',
    [
      '--ovmf',
      OVMFX64,
      '--vcpus',
      '2',
      '--vcpu-family',
      '25',
      '--vcpu-model',
      '17',
      '--vcpu-stepping',
      '0',
    ],
    '91ba34d4a5310ad6c3df762375881b5b46e77c23e0aba2ede7a65cded754b821f27359c73a490a57e351d96f8ab2ea43',
  ],
  [
    'QEMU, 1 vCPU, default features, kernel /dev/null, append console=ttyS0',
    ['--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, ...DEVNULL_KERNEL, '--append', 'console=ttyS0'],
    'a4a175df628175a8bd3ad5022284e9c6eaf1dad4df3fe7561c73d366ffde1e46f6535d82ce49dabb68cd29ec0fe00d49',
  ],
  [
    'seves, ec2, 4 vCPUs',
    ['--mode', 'seves', '--vmm-type', 'ec2', '--ovmf', AMDSEV, '--vcpus', '4'],
    '85108cde4a22134284f8d87c62e6ed0501b25b059787767c9f630e9f721d8611',
  ],
];

describe('gmemlab measure snp: sev-snp-measure test_guest.py vectors', () => {
  for (const [name, args, want] of UPSTREAM) {
    test(name, () => assert.equal(digestOf(args), want));
  }
  test('test_snp_svsm_4_vcpus and test_snp_svsm_2_vcpus', (t) => {
    if (!existsSync(SVSM) || !existsSync(SVSM_OVMF)) {
      t.skip(`the SVSM fixtures (${SVSM}, ${SVSM_OVMF}) are absent`);
      return;
    }
    const svsm = [
      '--mode',
      'snp:svsm',
      '--ovmf',
      SVSM_OVMF,
      '--svsm',
      SVSM,
      '--vars-size',
      '540672',
    ];
    assert.equal(
      digestOf([...svsm, '--vcpus', '4', ...EPYC_V4, '--guest-features', '0x21']),
      '27d154c27b7b359c935e250ec6fee72aa0ae8c1225e3b0e1cf46a9567e938066d7d6f94bbdc4a857818bdb79277a44b2',
    );
    assert.equal(
      digestOf([...svsm, '--vcpus', '2', ...EPYC_V4, '--guest-features', '0x21']),
      '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7',
    );
    // --svsm alone selects the mode; --vars-file gives the size of a file.
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-vars-'));
    try {
      const vars = join(dir, 'OVMF_VARS.fd');
      writeFileSync(vars, new Uint8Array(540672));
      assert.equal(
        digestOf([
          '--ovmf',
          SVSM_OVMF,
          '--svsm',
          SVSM,
          '--vars-file',
          vars,
          '--vcpus',
          '2',
          ...EPYC_V4,
        ]),
        '9b94745036aafddf4f7f8b00c7513abb5b7703178cb95aaa57928bd963d68d3bfcb715d6019b9167ee2517b11b0d9be7',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('test_snp_with_ovmfx64_and_kernel_should_fail (and seves, sev)', () => {
    for (const mode of ['snp', 'seves', 'sev']) {
      assert.throws(
        () =>
          measure([
            'snp',
            '--mode',
            mode,
            '--ovmf',
            OVMFX64,
            '--vcpus',
            '1',
            ...EPYC_V4,
            ...DEVNULL_KERNEL,
          ]),
        (e: unknown) =>
          e instanceof MeasureInputError &&
          e.file === OVMFX64 &&
          (mode === 'snp'
            ? /no SNP_KERNEL_HASHES section/.test(e.message)
            : /no SEV hash table area/.test(e.message)),
        mode,
      );
    }
  });
});

describe('gmemlab measure snp: more vectors from sev-snp-measure', () => {
  for (const [name, args, want] of MORE) {
    test(name, () => assert.equal(digestOf(args), want));
  }
  test('a kernel, an initrd and a command line with real contents', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-kernel-'));
    try {
      const k = join(dir, 'bzImage');
      const i = join(dir, 'initrd');
      writeFileSync(
        k,
        Uint8Array.from({ length: 300_000 }, (_, n) => (n * 7 + (n >> 9)) & 0xff),
      );
      writeFileSync(
        i,
        Uint8Array.from({ length: 5000 }, (_, n) => (n * 13) & 0xff),
      );
      const args = ['--ovmf', AMDSEV, '--vcpus', '2', ...EPYC_V4, '--kernel', k, '--initrd', i];
      // Checked with sev-snp-measure's CLI on the same files.
      assert.equal(
        digestOf([...args, '--append', 'root=/dev/vda console=ttyS0 é']),
        'cff40ac19df2f5cfb4be8253b672a62e05aec7ec6507be03a4d5c30ff9776fb562c02880b64b629be524a4b824a57593',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
  test('--output-format base64 and --json', () => {
    const args = ['--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--guest-features', '0x21'];
    assert.equal(
      digestOf([...args, '--output-format', 'base64']),
      Buffer.from(
        'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
        'hex',
      ).toString('base64'),
    );
    const j = JSON.parse(digestOf([...args, '--json'])) as Record<string, unknown>;
    assert.equal(
      j['digest'],
      'e1e1ca029dd7973ab9513295be68198472dcd4fc834bd9af9b63f6e8a1674dbf281a9278a4a2ebe0eed9f22adbcd0e2b',
    );
    assert.equal(j['platform'], 'sev-snp');
    assert.equal(j['vcpuSig'], '0x800f12');
    assert.equal(j['guestFeatures'], '0x21');
    assert.equal(j['pages'], 33);
  });
});

describe('measure snp --trace (platforms.md §2.7 step trace of test_snp_without_kernel_default)', () => {
  test('33 measured pages: firmware, metadata sections in file order, then the VMSA', () => {
    const lines = measure([
      'snp',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      '--guest-features',
      '0x21',
      '--trace',
    ]);
    assert.match(lines[0]!, /^# step type/);
    const steps = lines.slice(1, -1).map((l) => l.trim().split(/\s+/));
    assert.equal(steps.length, 33);
    const kinds = steps.map((s) => `${s[1]} ${s[2]}`);
    const gpas = (from: number, to: number): string[] => {
      const out: string[] = [];
      for (let g = from; g <= to; g += 0x1000) out.push(`0x${g.toString(16).padStart(12, '0')}`);
      return out;
    };
    assert.deepEqual(kinds, [
      'NORMAL 0x0000fffff000',
      ...gpas(0x800000, 0x808000).map((g) => `ZERO ${g}`),
      ...gpas(0x80a000, 0x80c000).map((g) => `ZERO ${g}`),
      'SECRETS 0x00000080d000',
      'CPUID 0x00000080e000',
      'ZERO 0x00000080f000',
      'ZERO 0x000000810000',
      ...gpas(0x811000, 0x81f000).map((g) => `ZERO ${g}`),
      'VMSA 0xfffffffff000',
    ]);
    assert.equal(steps[0]![4], OVMF_HASH);
    assert.equal(steps[0]![3], sha384hex(readFileSync(AMDSEV)));
    assert.equal(steps[1]![3], '0'.repeat(96));
    assert.equal(
      steps[32]![3],
      'ae79efa6efbe1594a2717dfd42af495a0e4ed37b00e529a5fdf349bea04c3513962ffb0c74cf65b0d9a1857271833d6e',
    );
    assert.equal(steps[32]![4], lines.at(-1));
    assert.deepEqual(
      [steps[0]![5], steps[1]![5], steps[30]![5], steps[32]![5]],
      ['OVMF', 'SNP_SEC_MEM', 'SNP_SEC_MEM', 'VMSA'],
    );
    // --json --trace: one object per page, then the summary.
    const j = measure(['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--trace', '--json']);
    assert.equal(j.length, 34);
    const first = JSON.parse(j[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(first), ['step', 'type', 'gpa', 'contents', 'digest', 'what']);
    assert.equal(first['gpa'], '0xfffff000');
  });

  test('kernel hashes page: NORMAL with the SEV hash table at its offset in the page', () => {
    const lines = measure([
      'snp',
      '--ovmf',
      AMDSEV,
      '--vcpus',
      '1',
      ...EPYC_V4,
      ...DEVNULL_KERNEL,
      '--trace',
    ]);
    const row = lines
      .find((l) => l.includes('kernel hashes'))!
      .trim()
      .split(/\s+/);
    assert.equal(row[1], 'NORMAL');
    assert.equal(row[2], '0x000000810000');
    const page = new Uint8Array(4096);
    page.set(sevHashTable(kernelHashes(new Uint8Array(0), new Uint8Array(0), undefined)), 0xc00);
    assert.equal(row[3], sha384hex(page));
  });
});

describe('VMSA pages (platforms.md §2.7 hashes)', () => {
  const sig = BigInt(VCPU_TYPES['EPYC-v4']!);
  test('QEMU BSP and AP, features 0x21 and 0x1', () => {
    const page = (eip: number, f: bigint): string =>
      sha384hex(vmsaPage({ eip, sevFeatures: f, vcpuSig: sig, vmm: 'QEMU' }));
    assert.equal(
      page(BSP_RESET_EIP, 0x21n),
      'ae79efa6efbe1594a2717dfd42af495a0e4ed37b00e529a5fdf349bea04c3513962ffb0c74cf65b0d9a1857271833d6e',
    );
    assert.equal(
      page(0x80b004, 0x21n),
      '180ef2675dc01615d31b3e84ef27a0a69d08bfbbb58ea4f6a0188f08884ab6407591ada42f99749ce9a406fb4e5d8355',
    );
    assert.match(page(BSP_RESET_EIP, 0x1n), /^77920c4c[0-9a-f]{83}c553a$/);
    assert.match(page(0x80b004, 0x1n), /^8413b852[0-9a-f]{83}bf7b4$/);
  });
  test('CPUID signatures (sev-snp-measure test_vcpu_types)', () => {
    assert.equal(cpuSignature(14, 1, 2), 0x0e12);
    assert.equal(cpuSignature(23, 1, 2), 0x800f12);
    assert.equal(VCPU_TYPES['EPYC-Milan'], 0xa00f11);
    assert.equal(VCPU_TYPES['EPYC-Genoa'], 0xa10f10);
    assert.equal(VCPU_TYPES['EPYC-Turin'], 0xb00f00);
  });
});

describe('OVMF footer table and SEV metadata', () => {
  test('the AmdSev fixture: reset block, hash table area, sections in file order', () => {
    const img = parseFirmwareImage(readFileSync(AMDSEV));
    assert.ok(img.hasFooterTable);
    assert.equal(sevEsResetEip(img), 0x80b004);
    assert.deepEqual(sevHashTableArea(img), { gpa: 0x810c00, size: 0x400 });
    assert.deepEqual(
      img.sevMetadata!.map((s) => [s.gpa, s.size, s.type]),
      [
        [0x800000, 0x9000, 1],
        [0x80a000, 0x3000, 1],
        [0x80d000, 0x1000, 2],
        [0x80e000, 0x1000, 3],
        [0x80f000, 0x1000, 4],
        [0x810000, 0x1000, 0x10],
        [0x811000, 0xf000, 1],
      ],
    );
  });
  test('GUID text and on-disk bytes', () => {
    const g = '96b582de-1fb2-45f7-baea-a366c55a082d';
    assert.deepEqual(
      Array.from(guidBytes(g).subarray(0, 8)),
      [0xde, 0x82, 0xb5, 0x96, 0xb2, 0x1f, 0xf7, 0x45],
    );
    assert.equal(guidText(guidBytes(g)), g);
  });
  test('plans: EC2 adds CPUID last, GCE adds SNP_SEC_MEM unmeasured; the firmware is a view', () => {
    const img = parseFirmwareImage(readFileSync(AMDSEV));
    const base = {
      mode: 'snp' as const,
      ovmf: img,
      vcpus: 2,
      vcpuSig: 0x800f12n,
      guestFeatures: 1n,
    };
    const ec2 = buildSnpLaunchPlan({ ...base, vmm: 'ec2' });
    assert.equal(ec2.updates.at(-1)!.what, 'CPUID');
    const gce = buildSnpLaunchPlan({ ...base, vmm: 'gce' });
    assert.equal(SNP_PAGE_TYPE_NAME[gce.updates[1]!.type], 'UNMEASURED');
    const qemu = buildSnpLaunchPlan({ ...base, vmm: 'QEMU' });
    assert.equal(qemu.updates[0]!.contents!.buffer, img.bytes.buffer);
    assert.equal(qemu.vmsas.length, 2);
    assert.equal(planPageCount(qemu), 1 + 31 + 2);
    const label = planStepLabels(qemu);
    assert.deepEqual([0, 1, 13, 31, 32, 33].map(label), [
      'OVMF',
      'SNP_SEC_MEM',
      'SNP_SECRETS',
      'SNP_SEC_MEM',
      'VMSA vCPU 0',
      'VMSA vCPU 1',
    ]);
    // The launcher sees every page once, in order.
    const seen: string[] = [];
    const digest = runLaunchPlan(qemu, {
      launchUpdate: (gpa, type) => void seen.push(`${type}@${gpa.toString(16)}`),
      launchFinish: (v) => {
        seen.push(`vmsa×${v.length}`);
        return new Uint8Array(48);
      },
    });
    assert.equal(digest.length, 48);
    assert.equal(seen.length, 32 + 1);
    assert.equal(seen[0], '1@fffff000');
    const direct = runLaunchPlan(qemu, new DigestLauncher());
    assert.equal(toHex(direct), digestOf(['--ovmf', AMDSEV, '--vcpus', '2', ...EPYC_V4]));
  });
});

describe('DigestLauncher', () => {
  test('repeated pages reuse their hash; a page differing in its last byte does not', () => {
    const a = new Uint8Array(4096).fill(0xff);
    const b = a.slice();
    b[4095] = 0xfe;
    const pages = [a, a.slice(), b, b, a];
    const launcher = new DigestLauncher();
    const direct = new SnpLaunchDigest();
    const buf = new Uint8Array(4096);
    pages.forEach((p, i) => {
      // The same buffer, rewritten between calls, as a VMM reusing its staging page would.
      buf.set(p);
      launcher.launchUpdate(BigInt(i * 4096), SNP_PAGE_TYPE.NORMAL, buf);
      direct.update(SNP_PAGE_TYPE.NORMAL, BigInt(i * 4096), p);
    });
    assert.equal(toHex(launcher.launchFinish([])), direct.hex());
  });
});

/** A copy of the AmdSev fixture with `patch` applied. */
function patched(patch: (b: Uint8Array, v: DataView) => void): Uint8Array {
  const b = new Uint8Array(readFileSync(AMDSEV));
  patch(b, new DataView(b.buffer));
  return b;
}

describe('malformed images: FirmwareImageError with the offset of the bad field', () => {
  const size = 4096;
  const footer = size - 0x20 - 18; // the footer entry's u16 length
  const metaStart = size - 0x554; // from the metadata entry's offset-from-end
  const cases: readonly (readonly [
    string,
    (b: Uint8Array, v: DataView) => void,
    RegExp,
    number,
  ])[] = [
    [
      'footer length below its header',
      (_b, v) => v.setUint16(footer, 4, true),
      /footer table.*length 4 is smaller/,
      footer,
    ],
    [
      'footer length past the start of the image',
      (_b, v) => v.setUint16(footer, 0xffff, true),
      /reaches .* before the start of the image/,
      footer,
    ],
    [
      'an entry length of 3',
      (_b, v) => v.setUint16(footer - 18, 3, true),
      /footer table entry .*: length 3 is smaller than its 18-byte header/,
      footer - 18,
    ],
    [
      'metadata signature',
      (b) => (b[metaStart] = 0x58),
      /SEV metadata .*signature "XSEV", expected "ASEV"/,
      metaStart,
    ],
    [
      'metadata version',
      (_b, v) => v.setUint32(metaStart + 8, 2, true),
      /version 2, expected 1/,
      metaStart + 8,
    ],
    [
      'metadata section count',
      (_b, v) => v.setUint32(metaStart + 12, 200, true),
      /200 sections need/,
      metaStart + 12,
    ],
  ];
  for (const [name, patch, message, offset] of cases) {
    test(name, () => {
      assert.throws(
        () => parseFirmwareImage(patched(patch)),
        (e: unknown) =>
          e instanceof FirmwareImageError && message.test(e.message) && e.offset === offset,
      );
    });
  }
  test('too small, no footer table, an unknown section type, unaligned section: named at plan time', () => {
    assert.throws(() => parseFirmwareImage(new Uint8Array(40)), /too small/);
    const none = parseFirmwareImage(new Uint8Array(4096));
    assert.equal(none.hasFooterTable, false);
    assert.throws(() => sevEsResetEip(none), /no SEV-ES reset block .*no OVMF footer table/);
    const base = {
      mode: 'snp' as const,
      vcpus: 1,
      vcpuSig: 1n,
      guestFeatures: 1n,
      vmm: 'QEMU' as const,
    };
    assert.throws(
      () => buildSnpLaunchPlan({ ...base, ovmf: none }),
      (e: unknown) => e instanceof FirmwareImageError && /no SEV metadata/.test(e.message),
    );
    const unknown = parseFirmwareImage(
      patched((_b, v) => v.setUint32(metaStart + 16 + 8, 9, true)),
    );
    assert.throws(
      () => buildSnpLaunchPlan({ ...base, ovmf: unknown }),
      (e: unknown) =>
        e instanceof FirmwareImageError &&
        /section 0: unknown type 0x9/.test(e.message) &&
        e.offset === metaStart + 24,
    );
    const unaligned = parseFirmwareImage(
      patched((_b, v) => v.setUint32(metaStart + 16, 0x800010, true)),
    );
    assert.throws(
      () => buildSnpLaunchPlan({ ...base, ovmf: unaligned }),
      /GPA 0x800010 is not page-aligned/,
    );
    const odd = parseFirmwareImage(new Uint8Array(readFileSync(AMDSEV)).subarray(0, 4000));
    assert.throws(
      () => buildSnpLaunchPlan({ ...base, ovmf: odd }),
      /not a positive multiple of 4096/,
    );
  });
  test('the command names FILE:OFFSET', () => {
    const dir = mkdtempSync(join(tmpdir(), 'gmemlab-ovmf-'));
    try {
      const f = join(dir, 'bad.fd');
      writeFileSync(
        f,
        patched((b) => (b[metaStart] = 0x58)),
      );
      assert.throws(
        () => measure(['snp', '--ovmf', f, '--vcpus', '1', ...EPYC_V4]),
        (e: unknown) =>
          e instanceof MeasureInputError &&
          e.message.startsWith(`${f}:0x${metaStart.toString(16)}: SEV metadata`) &&
          e.offset === metaStart,
      );
      assert.throws(
        () => measure(['snp', '--ovmf', join(dir, 'missing.fd'), '--vcpus', '1', ...EPYC_V4]),
        (e: unknown) => e instanceof MeasureInputError && /cannot open: ENOENT/.test(e.message),
      );
      assert.throws(
        () => measure(['snp', '--ovmf', dir, '--vcpus', '1', ...EPYC_V4]),
        (e: unknown) => e instanceof MeasureInputError && /(is a directory|EISDIR)/.test(e.message),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('usage errors', () => {
  const cases: readonly (readonly [readonly string[], RegExp])[] = [
    [[], /name the platform/],
    [['sgx'], /unknown platform "sgx"/],
    [['snp'], /--ovmf FILE is required/],
    [['snp', '--ovmf', AMDSEV, ...EPYC_V4], /--vcpus N is required/],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '1'], /needs the vCPU signature/],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '0', ...EPYC_V4], /--vcpus expects an integer 1\.\.4096/],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-type', 'EPYC-v9'], /unknown type "EPYC-v9"/],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--vcpu-sig', '1'], /one way/],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '1', '--vcpu-family', '25'], /go together/],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--vmm-type', 'xen'],
      /unknown VMM type/,
    ],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--guest-features', 'x'],
      /--guest-features expects an integer/,
    ],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--initrd', '/dev/null'],
      /--initrd needs --kernel/,
    ],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--snp-ovmf-hash', 'abcd'],
      /96 hex digits/,
    ],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--mode', 'tdx'], /unknown mode/],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--mode', 'snp:svsm'],
      /needs --svsm FILE/,
    ],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--vars-size', '4096'],
      /go with --mode snp:svsm/,
    ],
    [
      ['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--output-format', 'raw'],
      /hex or base64/,
    ],
    [['snp', '--ovmf', AMDSEV, '--vcpus', '1', ...EPYC_V4, '--bogus'], /unknown option --bogus/],
  ];
  for (const [args, message] of cases) {
    test(args.join(' ') || '(no arguments)', () => {
      assert.throws(
        () => measure(args),
        (e: unknown) => e instanceof UsageError && message.test(e.message),
      );
    });
  }
});
