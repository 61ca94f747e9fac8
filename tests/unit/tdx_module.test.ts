/**
 * The Intel TDX module in the model (src/core/platform/tdx/): every SEAMCALL's guards in the
 * module's order and their statuses, the S-EPT allowed-state table (platforms.md §1.3) and the
 * op_state table (§1.4) driven through real calls, the transitions (S-EPT entry states, PAMT,
 * CHLDCNT, epochs), BLOCK → TRACK → REMOVE with a vCPU still in the old epoch, PAGE.REMOVE before
 * and after finalize, SEPT.REMOVE with a child present, ACCEPT (4K, 2M, already accepted, size
 * mismatch, not present), the guest access check, teardown and reclaim, the spec's MRTD vectors
 * T1-T4 from the module's calls (with tdx/mrtd.ts's TdxMrtd and a node:crypto one), and a property
 * test: random SEAMCALL sequences keep the module consistent and failing calls change nothing.
 */
import { createHash, type Hash } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { FrameStore } from '../../src/core/base/frames.js';
import { asPfn, type Pfn } from '../../src/core/base/units.js';
import { Prng } from '../../src/fuzz/prng.js';
import { NO_PLATFORM } from '../../src/core/platform/platform.js';
import { TdxModule, type TdMrtd, type TdParams } from '../../src/core/platform/tdx/module.js';
import { TdxPlatform } from '../../src/core/platform/tdx/platform.js';
import { TdxMrtd } from '../../src/core/platform/tdx/mrtd.js';
import { PT } from '../../src/core/platform/tdx/pamt.js';
import { SEPT_STATE_INFO, type SeptState } from '../../src/core/platform/tdx/sept.js';
import { TD_ATTR, type OpState } from '../../src/core/platform/tdx/td.js';
import {
  OPERAND_ID as OP,
  TDX,
  tdxIsError,
  tdxStatusCode,
  tdxStatusName,
} from '../../src/core/platform/tdx/status.js';

/** A recording MRTD (the real one is tdx/mrtd.ts). */
class FakeMrtd implements TdMrtd {
  readonly log: string[] = [];
  pageAdd(gpa: bigint): void {
    this.log.push(`ADD 0x${gpa.toString(16)}`);
  }
  mrExtend(gpa: bigint, chunk: Uint8Array): void {
    assert.equal(chunk.length, 256);
    this.log.push(`EXT 0x${gpa.toString(16)} ${chunk[0]}`);
  }
  finalize(): Uint8Array {
    this.log.push('FIN');
    return new Uint8Array(48).fill(0xab);
  }
}

const PARAMS: TdParams = {
  attributes: TD_ATTR.SEPT_VE_DISABLE,
  maxVcpus: 4,
  configFlags: 0n,
  eptPwl: 3,
};

function eq(actual: bigint, expected: bigint, what = ''): void {
  assert.equal(
    tdxStatusName(actual),
    tdxStatusName(expected),
    `${what}: got ${tdxStatusName(actual)}, expected ${tdxStatusName(expected)}`,
  );
}

/** A module, its frames and a TD built up to `upTo`. */
class Rig {
  readonly frames = new FrameStore();
  readonly mrtds: FakeMrtd[] = [];
  readonly m = new TdxModule(this.frames, () => {
    const f = new FakeMrtd();
    this.mrtds.push(f);
    return f;
  });
  tdr!: Pfn;
  vcpu!: Pfn;

  page(): Pfn {
    return this.frames.allocOne();
  }
  /** A 2 MiB-aligned run of 512 fresh frames. */
  page2m(): Pfn {
    const runs = this.frames.alloc(1024);
    const base = runs[0]!.base;
    return asPfn(Math.ceil(base / 512) * 512);
  }
  get mrtd(): FakeMrtd {
    return this.mrtds[this.mrtds.length - 1]!;
  }
  get td() {
    return this.m.td(this.tdr)!;
  }

  create(): this {
    this.tdr = this.page();
    eq(this.m.tdhMngCreate(this.tdr, 32), TDX.SUCCESS, 'MNG.CREATE');
    eq(this.m.tdhMngKeyConfig(this.tdr), TDX.SUCCESS, 'KEY.CONFIG');
    for (let i = 0; i < 6; i++) eq(this.m.tdhMngAddcx(this.tdr, this.page()), TDX.SUCCESS, 'ADDCX');
    return this;
  }
  init(params: TdParams = PARAMS): this {
    eq(this.m.tdhMngInit(this.tdr, params), TDX.SUCCESS, 'MNG.INIT');
    return this;
  }
  addVcpu(): Pfn {
    const v = this.page();
    eq(this.m.tdhVpCreate(this.tdr, v), TDX.SUCCESS, 'VP.CREATE');
    for (let i = 0; i < 5; i++) eq(this.m.tdhVpAddcx(v, this.page()), TDX.SUCCESS, 'VP.ADDCX');
    eq(this.m.tdhVpInit(v), TDX.SUCCESS, 'VP.INIT');
    return v;
  }
  vcpuReady(): this {
    this.vcpu = this.addVcpu();
    return this;
  }
  /** S-EPT tables down to `downTo` (1: a PT exists for 4K leaves; 2: a PD for 2M leaves). */
  tables(gpa: bigint, downTo = 1): this {
    for (let l = this.td.pwl; l >= downTo; l--) {
      const size = 4096n * 512n ** BigInt(l);
      const at = (gpa / size) * size;
      const e = this.td.sept.walk(Number(gpa >> 12n), l);
      if (e.level === l && e.entry.state === 'FREE')
        eq(this.m.tdhMemSeptAdd(this.tdr, at, l, this.page()), TDX.SUCCESS, `SEPT.ADD L${l}`);
    }
    return this;
  }
  finalize(): this {
    eq(this.m.tdhMrFinalize(this.tdr), TDX.SUCCESS, 'MR.FINALIZE');
    return this;
  }
  state(gpa: bigint, level: number): SeptState {
    const w = this.td.sept.walk(Number(gpa >> 12n), level);
    return w.level === level ? w.entry.state : (`walk stopped at L${w.level}` as SeptState);
  }
  consistent(): void {
    assert.deepEqual(this.m.checkConsistency(), []);
  }
}

describe('TDX module: status values', () => {
  test('64-bit codes with operand ids, as KVM masks them', () => {
    assert.equal(TDX.EPT_WALK_FAILED, 0xc0000b0000000000n);
    assert.equal(TDX.OPERAND_BUSY, 0x8000020000000000n);
    assert.equal(
      tdxStatusCode(TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX),
      TDX.EPT_ENTRY_STATE_INCORRECT,
    );
    assert.equal(tdxStatusName(TDX.EPT_WALK_FAILED + 1n), 'TDX_EPT_WALK_FAILED+1');
    assert.equal(tdxIsError(TDX.GPA_RANGE_ALREADY_BLOCKED), false);
    assert.equal(tdxIsError(TDX.PAGE_ALREADY_ACCEPTED), false);
    assert.equal(tdxIsError(TDX.TLB_TRACKING_NOT_DONE), true);
  });
  test('S-EPT encodings and public states (sept_state_lookup.c)', () => {
    const enc = (s: keyof typeof SEPT_STATE_INFO): number => SEPT_STATE_INFO[s].encoding;
    assert.deepEqual(
      [enc('FREE'), enc('REMOVED'), enc('NL_MAPPED'), enc('NL_BLOCKED'), enc('MAPPED')],
      [0x0e, 0x0c, 0x00, 0x08, 0x60],
    );
    assert.deepEqual([enc('BLOCKED'), enc('PENDING'), enc('PENDING_BLOCKED')], [0x68, 0x70, 0x78]);
    assert.equal(SEPT_STATE_INFO.MAPPED.leaf, true);
    assert.equal(SEPT_STATE_INFO.NL_MAPPED.leaf, false);
    assert.equal(SEPT_STATE_INFO.FREE.leaf, false);
  });
});

describe('TDX module: TD creation and its guards in order', () => {
  test('TDH.MNG.CREATE: HKID range, TDR page NDA, HKID free', () => {
    const r = new Rig();
    const tdr = r.page();
    eq(r.m.tdhMngCreate(tdr, 1), TDX.OPERAND_INVALID + OP.RDX, 'shared HKID');
    eq(r.m.tdhMngCreate(tdr, 64), TDX.OPERAND_INVALID + OP.RDX, 'HKID beyond range');
    eq(r.m.tdhMngCreate(tdr, 40), TDX.SUCCESS);
    assert.equal(r.m.pamt.get(tdr).pt, PT.TDR);
    assert.equal(r.m.td(tdr)!.lifecycle, 'TD_HKID_ASSIGNED');
    eq(r.m.tdhMngCreate(tdr, 41), TDX.PAGE_METADATA_INCORRECT + OP.RCX, 'TDR page in use');
    eq(r.m.tdhMngCreate(r.page(), 40), TDX.HKID_NOT_FREE, 'HKID in use');
  });
  test('KEY.CONFIG, ADDCX, MNG.INIT', () => {
    const r = new Rig();
    const tdr = r.page();
    eq(r.m.tdhMngKeyConfig(tdr), TDX.PAGE_METADATA_INCORRECT + OP.RCX, 'not a TDR');
    eq(r.m.tdhMngCreate(tdr, 32), TDX.SUCCESS);
    eq(r.m.tdhMngAddcx(tdr, r.page()), TDX.TD_KEYS_NOT_CONFIGURED);
    eq(r.m.tdhMngInit(tdr, PARAMS), TDX.TD_KEYS_NOT_CONFIGURED);
    eq(r.m.tdhMngKeyConfig(tdr), TDX.SUCCESS);
    eq(r.m.tdhMngKeyConfig(tdr), TDX.LIFECYCLE_STATE_INCORRECT, 'configured twice');
    eq(r.m.tdhMngAddcx(tdr, tdr), TDX.PAGE_METADATA_INCORRECT + OP.RCX, 'TDCX page not NDA');
    for (let i = 0; i < 5; i++) eq(r.m.tdhMngAddcx(tdr, r.page()), TDX.SUCCESS);
    eq(r.m.tdhMngInit(tdr, PARAMS), TDX.TDCS_NOT_ALLOCATED, 'five TDCS pages');
    eq(r.m.tdhVpCreate(tdr, r.page()), TDX.TDCS_NOT_ALLOCATED);
    eq(r.m.tdhMngAddcx(tdr, r.page()), TDX.SUCCESS);
    eq(r.m.tdhVpCreate(tdr, r.page()), TDX.OP_STATE_INCORRECT, 'VP.CREATE before MNG.INIT');
    const bad = (p: Partial<TdParams>): bigint => r.m.tdhMngInit(tdr, { ...PARAMS, ...p });
    eq(bad({ attributes: 1n << 5n }), TDX.OPERAND_INVALID + OP.ATTRIBUTES);
    eq(
      bad({ attributes: TD_ATTR.MIGRATABLE | TD_ATTR.DEBUG }),
      TDX.OPERAND_INVALID + OP.ATTRIBUTES,
    );
    eq(bad({ maxVcpus: 0 }), TDX.OPERAND_INVALID + OP.MAX_VCPUS);
    eq(bad({ configFlags: 1n << 3n }), TDX.OPERAND_INVALID + OP.EXEC_CONTROLS);
    eq(
      bad({ configFlags: 1n, eptPwl: 3 }),
      TDX.OPERAND_INVALID + OP.EPTP_CONTROLS,
      'GPAW 52 4-level',
    );
    eq(bad({ eptPwl: 5 }), TDX.OPERAND_INVALID + OP.EPTP_CONTROLS);
    assert.equal(r.m.td(tdr)!.opState, 'UNINITIALIZED', 'failed INITs change nothing');
    eq(r.m.tdhMngInit(tdr, PARAMS), TDX.SUCCESS);
    assert.equal(r.m.td(tdr)!.opState, 'INITIALIZED');
    eq(r.m.tdhMngInit(tdr, PARAMS), TDX.OP_STATE_INCORRECT, 'initialized twice');
    eq(r.m.tdhMngAddcx(tdr, r.page()), TDX.OP_STATE_INCORRECT, 'a 7th TDCS page after INIT');
    assert.equal(r.m.td(tdr)!.chldcnt, 6);
  });
  test('vCPUs: VP.CREATE, VP.ADDCX, VP.INIT and FINALIZE without vCPUs', () => {
    const r = new Rig().create().init();
    eq(r.m.tdhMrFinalize(r.tdr), TDX.NO_VCPUS);
    const v = r.page();
    eq(r.m.tdhVpCreate(r.tdr, v), TDX.SUCCESS);
    eq(r.m.tdhVpInit(v), TDX.TDCX_NUM_INCORRECT, 'TDVPS pages missing');
    for (let i = 0; i < 5; i++) eq(r.m.tdhVpAddcx(v, r.page()), TDX.SUCCESS);
    eq(r.m.tdhVpAddcx(r.page(), r.page()), TDX.PAGE_METADATA_INCORRECT + OP.RDX, 'not a TDVPR');
    eq(r.m.tdhVpInit(v), TDX.SUCCESS);
    eq(r.m.tdhVpInit(v), TDX.VCPU_STATE_INCORRECT);
    eq(r.m.tdhVpAddcx(v, r.page()), TDX.VCPU_STATE_INCORRECT, 'ADDCX after INIT');
    eq(r.m.tdhMrFinalize(r.tdr), TDX.SUCCESS);
    assert.equal(r.td.opState, 'RUNNABLE');
    assert.deepEqual(r.td.mrtd, new Uint8Array(48).fill(0xab));
    eq(r.m.tdhVpCreate(r.tdr, r.page()), TDX.OP_STATE_INCORRECT, 'VP.CREATE after finalize');
    eq(r.m.tdhMrFinalize(r.tdr), TDX.OP_STATE_INCORRECT, 'finalized twice');
    r.consistent();
  });
  test('max vCPUs', () => {
    const r = new Rig().create().init({ ...PARAMS, maxVcpus: 1 });
    r.addVcpu();
    const v = r.page();
    eq(r.m.tdhVpCreate(r.tdr, v), TDX.SUCCESS);
    for (let i = 0; i < 5; i++) eq(r.m.tdhVpAddcx(v, r.page()), TDX.SUCCESS);
    eq(r.m.tdhVpInit(v), TDX.MAX_VCPUS_EXCEEDED);
  });
});

describe('TDX module: building the TD image', () => {
  test('SEPT.ADD per level, PAGE.ADD copies and measures, MR.EXTEND hashes the private page', () => {
    const r = new Rig().create().init().vcpuReady();
    const gpa = 0x8000_0000n;
    const src = r.page();
    r.frames.write(src, 0, new Uint8Array(4096).fill(7));
    const page = r.page();
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, page, src), TDX.EPT_WALK_FAILED + OP.RCX, 'no tables');
    assert.equal(r.m.out.rdx & 0xffn, 3n, 'walk stopped at the root level');
    eq(r.m.tdhMemSeptAdd(r.tdr, gpa, 1, r.page()), TDX.EPT_WALK_FAILED + OP.RCX, 'PT before PD');
    eq(r.m.tdhMemSeptAdd(r.tdr, gpa, 0, r.page()), TDX.OPERAND_INVALID + OP.RCX, 'level 0');
    eq(
      r.m.tdhMemSeptAdd(r.tdr, gpa, 4, r.page()),
      TDX.OPERAND_INVALID + OP.RCX,
      'level 4, 4-level',
    );
    eq(
      r.m.tdhMemSeptAdd(r.tdr, gpa + 0x1000n, 1, r.page()),
      TDX.OPERAND_INVALID + OP.RCX,
      'unaligned',
    );
    r.tables(gpa);
    eq(r.m.tdhMemSeptAdd(r.tdr, gpa, 1, r.page()), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX, 'twice');
    eq(r.m.tdhMemSeptAdd(r.tdr, gpa + (1n << 30n), 2, r.tdr), TDX.PAGE_METADATA_INCORRECT + OP.R8);
    eq(
      r.m.tdhMemPageAdd(r.tdr, gpa | (1n << 47n), page, src),
      TDX.OPERAND_INVALID + OP.RCX,
      'shared',
    );
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.tdr, src), TDX.PAGE_METADATA_INCORRECT + OP.R8, 'target');
    eq(r.m.tdhMemPageAdd(r.page(), gpa, page, src), TDX.PAGE_METADATA_INCORRECT + OP.RDX, 'TDR');
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, page, src), TDX.SUCCESS);
    assert.equal(r.state(gpa, 0), 'MAPPED');
    assert.equal(r.m.pamt.get(page).pt, PT.REG);
    assert.equal(r.m.pamt.get(page).owner, r.tdr);
    const b = new Uint8Array(1);
    r.frames.read(page, 100, b);
    assert.equal(b[0], 7, 'copied from the source');
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), src), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX);
    // MR.EXTEND reads the private page as it is now, not the source.
    r.frames.write(page, 0x100, new Uint8Array([9]));
    eq(r.m.tdhMrExtend(r.tdr, gpa + 0x80n), TDX.OPERAND_INVALID + OP.RCX, 'unaligned chunk');
    eq(r.m.tdhMrExtend(r.tdr, gpa + 0x100n), TDX.SUCCESS);
    eq(r.m.tdhMrExtend(r.tdr, gpa + 0x1000n), TDX.EPT_ENTRY_NOT_PRESENT + OP.RCX, 'not mapped');
    assert.deepEqual(r.mrtd.log, ['ADD 0x80000000', 'EXT 0x80000100 9']);
    r.finalize();
    assert.deepEqual(r.mrtd.log.at(-1), 'FIN');
    eq(
      r.m.tdhMemPageAdd(r.tdr, gpa + 0x1000n, r.page(), src),
      TDX.OP_STATE_INCORRECT,
      'after finalize',
    );
    eq(r.m.tdhMrExtend(r.tdr, gpa), TDX.OP_STATE_INCORRECT);
    r.consistent();
  });
  test('GPAW 52: shared bit 51, 5-level S-EPT', () => {
    const r = new Rig().create().init({ ...PARAMS, configFlags: 1n, eptPwl: 4 });
    assert.equal(r.m.sharedBit(r.td), 1n << 51n);
    const gpa = 1n << 48n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    eq(
      r.m.tdhMemPageAdd(r.tdr, gpa | (1n << 51n), r.page(), r.page()),
      TDX.OPERAND_INVALID + OP.RCX,
    );
    const r4 = new Rig().create().init();
    eq(
      r4.m.tdhMemSeptAdd(r4.tdr, 1n << 48n, 3, r4.page()),
      TDX.OPERAND_INVALID + OP.RCX,
      'GPAW 48',
    );
  });
});

describe('TDX module: each guard in order, one operand fixed at a time', () => {
  test('TDH.MEM.PAGE.AUG (2M, RUNNABLE)', () => {
    const r = new Rig().create().init().vcpuReady().finalize();
    const gpa = 0x4000_0000n;
    r.tables(gpa, 2);
    eq(r.m.tdhMemSeptAdd(r.tdr, gpa, 1, r.page()), TDX.SUCCESS);
    const free2m = gpa + 0x20_0000n;
    const page = r.page2m();
    const owned = r.page2m();
    eq(r.m.tdhMemPageAug(r.tdr, gpa + 0x1000n, 0, asPfn(owned + 7)), TDX.SUCCESS);
    const steps: Array<[() => bigint, bigint]> = [
      [() => r.m.tdhMemPageAug(r.vcpu, 1n, 2, r.tdr), TDX.PAGE_METADATA_INCORRECT + OP.RDX],
      [() => r.m.tdhMemPageAug(r.tdr, 1n, 2, r.tdr), TDX.OPERAND_INVALID + OP.RCX],
      [() => r.m.tdhMemPageAug(r.tdr, free2m + 0x1000n, 1, r.tdr), TDX.OPERAND_INVALID + OP.RCX],
      [
        () => r.m.tdhMemPageAug(r.tdr, free2m | (1n << 47n), 1, r.tdr),
        TDX.OPERAND_INVALID + OP.RCX,
      ],
      [() => r.m.tdhMemPageAug(r.tdr, 1n << 40n, 1, r.tdr), TDX.EPT_WALK_FAILED + OP.RCX],
      [() => r.m.tdhMemPageAug(r.tdr, gpa, 1, r.tdr), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
      [() => r.m.tdhMemPageAug(r.tdr, free2m, 1, asPfn(page + 1)), TDX.OPERAND_INVALID + OP.R8],
      [() => r.m.tdhMemPageAug(r.tdr, free2m, 1, owned), TDX.PAGE_METADATA_INCORRECT + OP.R8],
      [() => r.m.tdhMemPageAug(r.tdr, free2m, 1, page), TDX.SUCCESS],
    ];
    steps.forEach(([run, want], i) => eq(run(), want, `step ${i}`));
    assert.equal(r.state(free2m, 1), 'PENDING');
    r.consistent();
  });
  test('TDH.MEM.PAGE.REMOVE (RUNNABLE)', () => {
    const r = new Rig().create().init().vcpuReady();
    const gpa = 0x4000_0000n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    r.finalize();
    const steps: Array<[() => bigint, bigint]> = [
      [() => r.m.tdhMemPageRemove(r.page(), 1n, 3), TDX.PAGE_METADATA_INCORRECT + OP.RDX],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa, 3), TDX.OPERAND_INVALID + OP.RCX],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa + 0x800n, 0), TDX.OPERAND_INVALID + OP.RCX],
      [() => r.m.tdhMemPageRemove(r.tdr, 1n << 40n, 0), TDX.EPT_WALK_FAILED + OP.RCX],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa + 0x1000n, 0), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa, 1), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.GPA_RANGE_NOT_BLOCKED + OP.RCX],
      [() => r.m.tdhMemRangeBlock(r.tdr, gpa, 0), TDX.SUCCESS],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.TLB_TRACKING_NOT_DONE + OP.RCX],
      [() => r.m.tdhMemTrack(r.tdr), TDX.SUCCESS],
      [() => r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.SUCCESS],
    ];
    steps.forEach(([run, want], i) => eq(run(), want, `step ${i}`));
    r.consistent();
  });
});

/** Put the level-`level` entry of `gpa` in `state` through SEAMCALLs (TD INITIALIZED). */
function prepare(r: Rig, gpa: bigint, level: number, state: SeptState): void {
  if (level === 0) {
    r.tables(gpa, 1);
    if (state === 'FREE') return;
    if (state === 'MAPPED' || state === 'BLOCKED')
      eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    else eq(r.m.tdhMemPageAug(r.tdr, gpa, 0, r.page()), TDX.SUCCESS);
    if (state === 'BLOCKED' || state === 'PENDING_BLOCKED')
      eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 0), TDX.SUCCESS);
  } else {
    r.tables(gpa, 2);
    if (state === 'FREE') return;
    eq(r.m.tdhMemSeptAdd(r.tdr, gpa, 1, r.page()), TDX.SUCCESS);
    if (state === 'NL_BLOCKED') eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 1), TDX.SUCCESS);
  }
  assert.equal(r.state(gpa, level), state);
}

/** Allowed S-EPT states per call, as platforms.md §1.3 lists them (for the model's states). */
const ALLOWED: Record<string, readonly SeptState[]> = {
  'PAGE.ADD': ['FREE'],
  'SEPT.ADD': ['FREE'],
  'PAGE.AUG': ['FREE', 'REMOVED'],
  'RANGE.BLOCK': ['NL_MAPPED', 'MAPPED', 'PENDING'],
  'MR.EXTEND': ['MAPPED'],
  'PAGE.REMOVE': ['MAPPED', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED'],
  'SEPT.REMOVE': ['NL_MAPPED', 'NL_BLOCKED'],
  'RANGE.UNBLOCK': ['NL_BLOCKED', 'BLOCKED', 'PENDING_BLOCKED'],
};
/** The status a call returns for a state it does not allow. */
const STATE_ERROR: Record<string, readonly bigint[]> = {
  'PAGE.ADD': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
  'SEPT.ADD': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
  'PAGE.AUG': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
  'RANGE.BLOCK': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX, TDX.GPA_RANGE_ALREADY_BLOCKED + OP.RCX],
  'MR.EXTEND': [TDX.EPT_ENTRY_NOT_PRESENT + OP.RCX, TDX.EPT_ENTRY_NOT_PRESENT],
  'PAGE.REMOVE': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
  'SEPT.REMOVE': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
  'RANGE.UNBLOCK': [TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX],
};
const LEVELS: Record<string, readonly number[]> = {
  'PAGE.ADD': [0],
  'SEPT.ADD': [1],
  'PAGE.AUG': [0],
  'RANGE.BLOCK': [0, 1],
  'MR.EXTEND': [0],
  'PAGE.REMOVE': [0],
  'SEPT.REMOVE': [1],
  'RANGE.UNBLOCK': [0, 1],
};
function call(r: Rig, name: string, gpa: bigint, level: number): bigint {
  switch (name) {
    case 'PAGE.ADD':
      return r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page());
    case 'SEPT.ADD':
      return r.m.tdhMemSeptAdd(r.tdr, gpa, level, r.page());
    case 'PAGE.AUG':
      return r.m.tdhMemPageAug(r.tdr, gpa, level, r.page());
    case 'RANGE.BLOCK':
      return r.m.tdhMemRangeBlock(r.tdr, gpa, level);
    case 'MR.EXTEND':
      return r.m.tdhMrExtend(r.tdr, gpa);
    case 'PAGE.REMOVE':
      return r.m.tdhMemPageRemove(r.tdr, gpa, level);
    case 'SEPT.REMOVE':
      return r.m.tdhMemSeptRemove(r.tdr, gpa, level);
    case 'RANGE.UNBLOCK':
      return r.m.tdhMemRangeUnblock(r.tdr, gpa, level);
  }
  throw new Error(name);
}

describe('TDX module: the S-EPT allowed-state table (§1.3), through the calls', () => {
  const leafStates: SeptState[] = ['FREE', 'MAPPED', 'BLOCKED', 'PENDING', 'PENDING_BLOCKED'];
  const nlStates: SeptState[] = ['FREE', 'NL_MAPPED', 'NL_BLOCKED'];
  for (const name of Object.keys(ALLOWED)) {
    test(name, () => {
      for (const level of LEVELS[name]!) {
        for (const state of level === 0 ? leafStates : nlStates) {
          const r = new Rig().create().init().vcpuReady();
          const gpa = 0x4000_0000n;
          prepare(r, gpa, level, state);
          const s = call(r, name, gpa, level);
          const refused = STATE_ERROR[name]!.includes(s);
          const allowed = ALLOWED[name]!.includes(state);
          assert.equal(
            refused,
            !allowed,
            `${name} on ${state} at L${level}: ${tdxStatusName(s)} (allowed: ${allowed})`,
          );
          if (refused && name === 'RANGE.BLOCK')
            eq(
              s,
              SEPT_STATE_INFO[state].anyBlocked
                ? TDX.GPA_RANGE_ALREADY_BLOCKED + OP.RCX
                : TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX,
              `BLOCK on ${state}`,
            );
          r.consistent();
        }
      }
    });
  }
});

/** op_state gating as platforms.md §1.4 lists it (UNINIT, INITIALIZED, RUNNABLE). */
const OP_TABLE: Record<string, readonly OpState[]> = {
  'PAGE.ADD': ['INITIALIZED'],
  'MR.EXTEND': ['INITIALIZED'],
  'MR.FINALIZE': ['INITIALIZED'],
  'SEPT.ADD': ['INITIALIZED', 'RUNNABLE'],
  'PAGE.AUG': ['INITIALIZED', 'RUNNABLE'],
  'RANGE.BLOCK': ['INITIALIZED', 'RUNNABLE'],
  'PAGE.REMOVE': ['INITIALIZED', 'RUNNABLE'],
  'RANGE.UNBLOCK': ['INITIALIZED', 'RUNNABLE'],
  'MEM.TRACK': ['INITIALIZED', 'RUNNABLE'],
  'SEPT.REMOVE': ['INITIALIZED', 'RUNNABLE'],
  'VP.ENTER': ['RUNNABLE'],
};

describe('TDX module: op_state gating (§1.4), through the calls', () => {
  for (const [name, allowed] of Object.entries(OP_TABLE)) {
    test(name, () => {
      for (const op of ['UNINITIALIZED', 'INITIALIZED', 'RUNNABLE'] as const) {
        const r = new Rig().create();
        let v: Pfn | undefined;
        if (op !== 'UNINITIALIZED') {
          r.init();
          v = r.addVcpu();
        }
        if (op === 'RUNNABLE') r.finalize();
        const s =
          name === 'MR.FINALIZE'
            ? r.m.tdhMrFinalize(r.tdr)
            : name === 'MEM.TRACK'
              ? r.m.tdhMemTrack(r.tdr)
              : name === 'VP.ENTER'
                ? v === undefined
                  ? TDX.OP_STATE_INCORRECT
                  : r.m.tdhVpEnter(v)
                : call(r, name, 0n, name.startsWith('SEPT') ? 1 : 0);
        assert.equal(
          s === TDX.OP_STATE_INCORRECT,
          !allowed.includes(op),
          `${name} in ${op}: ${tdxStatusName(s)}`,
        );
      }
    });
  }
});

describe('TDX module: zapping a private page (BLOCK → TRACK → REMOVE)', () => {
  test('a vCPU still in the old epoch holds REMOVE and the next TRACK off', () => {
    const r = new Rig().create().init().vcpuReady().finalize();
    const gpa = 0x10_0000n;
    r.tables(gpa);
    const page = r.page();
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 0, page), TDX.SUCCESS);
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    eq(r.m.tdhVpEnter(r.vcpu), TDX.OPERAND_BUSY + OP.RCX, 'already running');
    assert.deepEqual(r.td.refcount, [1, 0]);
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa, 0), { kind: 'status', status: TDX.SUCCESS });
    assert.equal(r.state(gpa, 0), 'MAPPED');
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.GPA_RANGE_NOT_BLOCKED + OP.RCX, 'not blocked');
    eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 0), TDX.SUCCESS);
    eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 0), TDX.GPA_RANGE_ALREADY_BLOCKED + OP.RCX);
    assert.equal(r.m.pamt.get(page).bepoch, 0);
    assert.equal(r.m.guestAccess(r.vcpu, gpa, false).kind, 'ept-violation', 'blocked: no access');
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.TLB_TRACKING_NOT_DONE + OP.RCX, 'no TRACK yet');
    eq(r.m.tdhMemTrack(r.tdr), TDX.SUCCESS);
    assert.equal(r.td.epoch, 1);
    eq(
      r.m.tdhMemPageRemove(r.tdr, gpa, 0),
      TDX.TLB_TRACKING_NOT_DONE + OP.RCX,
      'a vCPU entered in epoch 0 still runs',
    );
    eq(r.m.tdhMemTrack(r.tdr), TDX.PREVIOUS_TLB_EPOCH_BUSY, 'epoch 0 not drained');
    assert.equal(r.m.tdExit(r.vcpu), true, 'the kick: KVM_REQ_OUTSIDE_GUEST_MODE');
    assert.deepEqual(r.td.refcount, [0, 0]);
    const chld = r.td.chldcnt;
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.SUCCESS);
    assert.equal(r.m.out.rcx, BigInt(page) << 12n, 'RCX: the removed page');
    assert.equal(r.state(gpa, 0), 'FREE');
    assert.equal(r.m.pamt.get(page).pt, PT.NDA);
    assert.equal(r.td.chldcnt, chld - 1);
    r.consistent();
  });
  test('UNBLOCK needs tracking too; then the page is MAPPED again', () => {
    const r = new Rig().create().init().vcpuReady();
    const gpa = 0x20_0000n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    r.finalize();
    eq(r.m.tdhMemRangeUnblock(r.tdr, gpa, 0), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX);
    eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 0), TDX.SUCCESS);
    eq(r.m.tdhMemRangeUnblock(r.tdr, gpa, 0), TDX.TLB_TRACKING_NOT_DONE + OP.SEPT_TREE);
    eq(r.m.tdhMemTrack(r.tdr), TDX.SUCCESS);
    eq(r.m.tdhMemRangeUnblock(r.tdr, gpa, 0), TDX.SUCCESS);
    assert.equal(r.state(gpa, 0), 'MAPPED');
    r.consistent();
  });
  test('PAGE.REMOVE before finalize needs no BLOCK/TRACK; after finalize it does', () => {
    const r = new Rig().create().init().vcpuReady();
    const gpa = 0x30_0000n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.SUCCESS, 'INITIALIZED: removed directly');
    assert.equal(r.state(gpa, 0), 'FREE');
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    r.finalize();
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.GPA_RANGE_NOT_BLOCKED + OP.RCX, 'RUNNABLE');
    eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 0), TDX.SUCCESS);
    eq(r.m.tdhMemTrack(r.tdr), TDX.SUCCESS);
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.SUCCESS);
    eq(r.m.tdhMemPageRemove(r.tdr, gpa, 0), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX, 'FREE');
    r.consistent();
  });
  test('SEPT.REMOVE with a child present, then after it is gone', () => {
    const r = new Rig().create().init().vcpuReady();
    const gpa = 0x40_0000n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAdd(r.tdr, gpa + 0x3000n, r.page(), r.page()), TDX.SUCCESS);
    eq(r.m.tdhMemSeptRemove(r.tdr, gpa, 1), TDX.EPT_PAGE_NOT_FREE + OP.RCX);
    eq(r.m.tdhMemSeptRemove(r.tdr, 0n, 2), TDX.EPT_PAGE_NOT_FREE + OP.RCX, 'the PD holds the PT');
    eq(r.m.tdhMemPageRemove(r.tdr, gpa + 0x3000n, 0), TDX.SUCCESS);
    r.finalize();
    eq(r.m.tdhMemSeptRemove(r.tdr, gpa, 1), TDX.GPA_RANGE_NOT_BLOCKED + OP.RCX, 'RUNNABLE');
    eq(r.m.tdhMemRangeBlock(r.tdr, gpa, 1), TDX.SUCCESS);
    eq(
      r.m.tdhMemPageAug(r.tdr, gpa, 0, r.page()),
      TDX.EPT_WALK_FAILED + OP.RCX,
      'walk stops at NL_BLOCKED',
    );
    eq(r.m.tdhMemSeptRemove(r.tdr, gpa, 1), TDX.TLB_TRACKING_NOT_DONE + OP.RCX);
    eq(r.m.tdhMemTrack(r.tdr), TDX.SUCCESS);
    const pt = r.td.sept.entry(1, Number(gpa >> 21n)).pfn;
    eq(r.m.tdhMemSeptRemove(r.tdr, gpa, 1), TDX.SUCCESS);
    assert.equal(r.m.pamt.get(pt).pt, PT.NDA);
    assert.equal(r.state(gpa, 1), 'FREE');
    r.consistent();
  });
});

describe('TDX module: TDG.MEM.PAGE.ACCEPT and guest accesses', () => {
  function running(attributes = PARAMS.attributes): Rig {
    const r = new Rig()
      .create()
      .init({ ...PARAMS, attributes })
      .vcpuReady()
      .finalize();
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    return r;
  }
  test('4K: PENDING → MAPPED zeroed, then already accepted', () => {
    const r = running();
    const gpa = 0x50_0000n;
    r.tables(gpa);
    const page = r.page();
    r.frames.write(page, 0, new Uint8Array(4096).fill(0x5a), 0);
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 0, page), TDX.SUCCESS);
    assert.equal(r.state(gpa, 0), 'PENDING');
    const ev = r.m.guestAccess(r.vcpu, gpa, false);
    assert.deepEqual(ev, { kind: 'ept-violation', gpa, pending: true, level: 0 });
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa, 0), { kind: 'status', status: TDX.SUCCESS });
    assert.equal(r.frames.hasData(page), false, 'zeroed');
    assert.equal(r.state(gpa, 0), 'MAPPED');
    assert.deepEqual(r.m.guestAccess(r.vcpu, gpa + 0x10n, true), { kind: 'ok', pfn: page });
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa, 0), {
      kind: 'status',
      status: TDX.PAGE_ALREADY_ACCEPTED + 0n,
    });
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa + 0x800n, 0), {
      kind: 'status',
      status: TDX.OPERAND_INVALID + OP.RCX,
    });
    r.consistent();
  });
  test('2M: all 512 pages zeroed; a 4K accept inside is already accepted', () => {
    const r = running();
    const gpa = 0x60_0000n;
    r.tables(gpa, 2);
    const page = r.page2m();
    r.frames.write(asPfn(page + 300), 0, new Uint8Array([1, 2, 3]));
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 1, asPfn(page + 1)), TDX.OPERAND_INVALID + OP.R8, 'unaligned');
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 1, page), TDX.SUCCESS);
    assert.equal(r.m.pamt.get(page + 511).size, '2M');
    assert.equal(r.td.chldcnt, 6 + 6 + 2 + 512, 'TDCS, TDVPS, two S-EPT pages, 512 pages');
    assert.deepEqual(
      r.m.tdgMemPageAccept(r.vcpu, gpa + 0x5000n, 0),
      {
        kind: 'ept-violation',
        gpa: gpa + 0x5000n,
        level: 0,
      },
      '4K accept inside a PENDING 2M leaf',
    );
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa, 1), { kind: 'status', status: TDX.SUCCESS });
    assert.equal(r.frames.hasData(asPfn(page + 300)), false);
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa + 0x5000n, 0), {
      kind: 'status',
      status: TDX.PAGE_ALREADY_ACCEPTED + 1n,
    });
    assert.deepEqual(r.m.guestAccess(r.vcpu, gpa + 0x5000n, false), {
      kind: 'ok',
      pfn: page + 5,
    });
    r.consistent();
  });
  test('size mismatch: a 2M accept over a range mapped with 4K pages', () => {
    const r = running();
    const gpa = 0x80_0000n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 0, r.page()), TDX.SUCCESS);
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa, 1), {
      kind: 'status',
      status: TDX.PAGE_SIZE_MISMATCH + 1n,
    });
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 1, r.page2m()), TDX.EPT_ENTRY_STATE_INCORRECT + OP.RCX);
  });
  test('not present: an EPT-violation exit, the vCPU leaves the TD', () => {
    const r = running();
    const gpa = 0xa0_0000n;
    r.tables(gpa);
    assert.deepEqual(r.m.tdgMemPageAccept(r.vcpu, gpa, 0), {
      kind: 'ept-violation',
      gpa,
      level: 0,
    });
    assert.equal(r.td.vcpus.get(r.vcpu)!.inGuest, false);
    assert.deepEqual(r.td.refcount, [0, 0]);
    assert.throws(() => r.m.tdgMemPageAccept(r.vcpu, gpa, 0), /not running/);
  });
  test('guest access: shared bit, #VE without SEPT_VE_DISABLE, FREE, poison', () => {
    const r = running(0n);
    const gpa = 0xc0_0000n;
    r.tables(gpa);
    assert.deepEqual(r.m.guestAccess(r.vcpu, gpa | (1n << 47n), false), { kind: 'shared' });
    eq(r.m.tdhMemPageAug(r.tdr, gpa, 0, r.page()), TDX.SUCCESS);
    assert.deepEqual(r.m.guestAccess(r.vcpu, gpa, false), { kind: 've', gpa });
    assert.deepEqual(r.m.guestAccess(r.vcpu, gpa + 0x1000n, false), {
      kind: 'ept-violation',
      gpa: gpa + 0x1000n,
      pending: false,
      level: 0,
    });
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    assert.equal(r.m.tdgMemPageAccept(r.vcpu, gpa, 0).kind, 'status');
    const pfn = r.td.sept.entry(0, Number(gpa >> 12n)).pfn;
    r.m.hostWrite(asPfn(pfn));
    assert.equal(r.m.poisoned(asPfn(pfn)), true);
    assert.deepEqual(r.m.guestAccess(r.vcpu, gpa, false), { kind: 'machine-check', gpa, pfn });
    r.m.hostWrite(r.page());
    assert.equal(r.m.poisoned(asPfn(pfn + 1000)), false, 'a host frame is not poisoned');
  });
});

describe('TDX module: teardown', () => {
  test('VP.FLUSH, VPFLUSHDONE, CACHE.WB, KEY.FREEID, reclaim every page, then the TDR', () => {
    const r = new Rig().create().init().vcpuReady();
    const gpa = 0xe0_0000n;
    r.tables(gpa);
    eq(r.m.tdhMemPageAdd(r.tdr, gpa, r.page(), r.page()), TDX.SUCCESS);
    r.finalize();
    eq(r.m.tdhMemPageAug(r.tdr, gpa + 0x1000n, 0, r.page()), TDX.SUCCESS);
    const anyPage = asPfn(r.m.pamt.dump().find((e) => e.entry.owner === r.tdr)!.start);
    eq(r.m.tdhPhymemPageReclaim(anyPage), TDX.LIFECYCLE_STATE_INCORRECT, 'TD alive');
    eq(r.m.tdhMngKeyFreeid(r.tdr), TDX.LIFECYCLE_STATE_INCORRECT);
    eq(r.m.tdhMngVpflushdone(r.tdr), TDX.FLUSHVP_NOT_DONE, 'vCPU associated');
    eq(r.m.tdhVpEnter(r.vcpu), TDX.SUCCESS);
    eq(r.m.tdhVpFlush(r.vcpu), TDX.OPERAND_BUSY + OP.RCX, 'running');
    r.m.tdExit(r.vcpu);
    eq(r.m.tdhVpFlush(r.vcpu), TDX.SUCCESS);
    eq(r.m.tdhVpFlush(r.vcpu), TDX.VCPU_NOT_ASSOCIATED);
    eq(r.m.tdhMngVpflushdone(r.tdr), TDX.SUCCESS);
    assert.equal(r.td.lifecycle, 'TD_BLOCKED');
    eq(r.m.tdhVpEnter(r.vcpu), TDX.TD_KEYS_NOT_CONFIGURED);
    eq(r.m.tdhMemPageAug(r.tdr, gpa + 0x2000n, 0, r.page()), TDX.TD_KEYS_NOT_CONFIGURED);
    eq(r.m.tdhMngKeyFreeid(r.tdr), TDX.WBCACHE_NOT_COMPLETE);
    eq(r.m.tdhPhymemCacheWb(), TDX.SUCCESS);
    eq(r.m.tdhPhymemCacheWb(), TDX.NO_HKID_READY_TO_WBCACHE);
    eq(r.m.tdhMngKeyFreeid(r.tdr), TDX.SUCCESS);
    assert.equal(r.td.lifecycle, 'TD_TEARDOWN');
    eq(r.m.tdhPhymemPageReclaim(r.tdr), TDX.TD_ASSOCIATED_PAGES_EXIST);
    assert.equal(r.m.out.rcx, BigInt(PT.TDR), 'RCX: the page type');
    eq(r.m.tdhPhymemPageReclaim(r.page()), TDX.PAGE_METADATA_INCORRECT + OP.RCX, 'NDA page');
    for (const e of r.m.pamt.dump())
      if (e.entry.owner === r.tdr)
        for (let p = e.start; p < e.end; p += e.entry.size === '2M' ? 512 : 1) {
          eq(r.m.tdhPhymemPageWbinvd(asPfn(p)), TDX.PAGE_METADATA_INCORRECT + OP.RCX);
          eq(r.m.tdhPhymemPageReclaim(asPfn(p)), TDX.SUCCESS, `reclaim ${p}`);
          eq(r.m.tdhPhymemPageWbinvd(asPfn(p)), TDX.SUCCESS);
          r.m.movdir64bClear(asPfn(p));
        }
    assert.equal(r.td.chldcnt, 0);
    r.consistent();
    eq(r.m.tdhPhymemPageReclaim(r.tdr), TDX.SUCCESS);
    assert.equal(r.m.td(r.tdr), undefined);
    assert.equal(r.m.pamt.runs, 0, 'every frame PT_NDA again');
    eq(r.m.tdhMngCreate(r.page(), 32), TDX.SUCCESS, 'the HKID is free again');
  });
});

describe('TDX platform', () => {
  test('name, no host access refused, host reads of module frames see zeros', () => {
    const frames = new FrameStore();
    const p = new TdxPlatform(frames, () => new FakeMrtd());
    assert.equal(p.name, 'tdx');
    assert.equal(p.guardsHostAccess, false);
    assert.equal(p.tdx.module, p.module);
    const tdr = frames.allocOne();
    assert.equal(p.hostReadsZeros(tdr), false);
    eq(p.module.tdhMngCreate(tdr, 33), TDX.SUCCESS);
    assert.equal(p.hostReadsZeros(tdr), true);
    assert.equal(p.hostAccess(tdr, true, 'vmm'), undefined);
    p.hostWrite(tdr);
    assert.equal(p.module.poisoned(tdr), true);
    assert.equal(NO_PLATFORM.tdx, undefined);
  });
});

/** A snapshot of everything a SEAMCALL may change (to check that failures change nothing). */
function snapshot(r: Rig): string {
  const tds = r.m.allTds().map((td) => ({
    ...td,
    sept: td.sept.runs(),
    vcpus: [...td.vcpus.values()],
    mrtdCtx: undefined,
    log: r.mrtds.map((m) => m.log.length),
  }));
  return JSON.stringify({ pamt: r.m.pamt.dump(), tds }, (_k, v: unknown) =>
    typeof v === 'bigint' ? v.toString() : v,
  );
}

/** A test-only MRTD from platforms.md §1.7's block layout, on node:crypto's streaming SHA-384. */
class Sha384Mrtd implements TdMrtd {
  private readonly h: Hash = createHash('sha384');
  private block(name: string, gpa: bigint): Buffer {
    const b = Buffer.alloc(128);
    b.write(name, 0, 'ascii');
    b.writeBigUInt64LE(gpa, 16);
    return b;
  }
  pageAdd(gpa: bigint): void {
    this.h.update(this.block('MEM.PAGE.ADD', gpa));
  }
  mrExtend(gpa: bigint, chunk: Uint8Array): void {
    this.h.update(this.block('MR.EXTEND', gpa));
    this.h.update(chunk);
  }
  finalize(): Uint8Array {
    return new Uint8Array(this.h.digest());
  }
}

describe('TDX module: the MRTD call order reproduces the spec vectors', () => {
  // Both MRTDs: the test's node:crypto one from §1.7's layout and the model's (tdx/mrtd.ts).
  const factories: Array<() => TdMrtd> = [() => new Sha384Mrtd(), () => new TdxMrtd()];
  function mrtd(pages: Uint8Array[], base: bigint, twoPass: boolean): string {
    const out = factories.map((f) => mrtdWith(f, pages, base, twoPass));
    assert.equal(out[0], out[1], 'node:crypto and TdxMrtd agree');
    return out[0]!;
  }
  function mrtdWith(
    factory: () => TdMrtd,
    pages: Uint8Array[],
    base: bigint,
    twoPass: boolean,
  ): string {
    const frames = new FrameStore();
    const m = new TdxModule(frames, factory);
    const tdr = frames.allocOne();
    eq(m.tdhMngCreate(tdr, 32), TDX.SUCCESS);
    eq(m.tdhMngKeyConfig(tdr), TDX.SUCCESS);
    for (let i = 0; i < 6; i++) eq(m.tdhMngAddcx(tdr, frames.allocOne()), TDX.SUCCESS);
    eq(m.tdhMngInit(tdr, PARAMS), TDX.SUCCESS);
    const v = frames.allocOne();
    eq(m.tdhVpCreate(tdr, v), TDX.SUCCESS);
    for (let i = 0; i < 5; i++) eq(m.tdhVpAddcx(v, frames.allocOne()), TDX.SUCCESS);
    eq(m.tdhVpInit(v), TDX.SUCCESS);
    for (let l = 3; l >= 1; l--) {
      const size = 4096n * 512n ** BigInt(l);
      eq(m.tdhMemSeptAdd(tdr, (base / size) * size, l, frames.allocOne()), TDX.SUCCESS);
    }
    const extend = (gpa: bigint): void => {
      for (let i = 0n; i < 16n; i++) eq(m.tdhMrExtend(tdr, gpa + i * 256n), TDX.SUCCESS);
    };
    pages.forEach((bytes, i) => {
      const src = frames.allocOne();
      frames.write(src, 0, bytes);
      const gpa = base + BigInt(i) * 4096n;
      eq(m.tdhMemPageAdd(tdr, gpa, frames.allocOne(), src), TDX.SUCCESS);
      if (!twoPass && bytes.length > 0) extend(gpa);
    });
    if (twoPass) pages.forEach((_b, i) => extend(base + BigInt(i) * 4096n));
    eq(m.tdhMrFinalize(tdr), TDX.SUCCESS);
    return Buffer.from(m.td(tdr)!.mrtd!).toString('hex');
  }
  const zero = new Uint8Array(4096);
  const pattern = Uint8Array.from({ length: 4096 }, (_v, i) => i & 0xff);
  test('T1: PAGE.ADD(0)', () => {
    assert.equal(
      mrtd([new Uint8Array(0)], 0n, false),
      '8f3e9a8aca6784eab874f7aa4dda5d49104a88047f1f86695ef2a88f5691a90e34aac48ce45ffa1f5a23c7d62980d570',
    );
  });
  test('T2: PAGE.ADD(0) + 16 x MR.EXTEND of a zero page', () => {
    assert.equal(
      mrtd([zero], 0n, false),
      '236f0efa607ff8843f1855d7ef80dc3dda8fb455787a186b8787212951eab0096e3193bb26f817c2b63c21f5e10f9938',
    );
  });
  test('T3 / T4: two pages at 0xFFFFE000, single and two pass', () => {
    assert.equal(
      mrtd([pattern, zero], 0xffffe000n, false),
      'fae252d5477406d8d3b78e4e479a6474c7b1bdfb524b48455603a2e8cddc2ec7b3e1eef31ccb55abf2dcd47fe2d3f128',
    );
    assert.equal(
      mrtd([pattern, zero], 0xffffe000n, true),
      '1036204caf092814c0813aae131cd6c8f121aac208910d7a3fbed5c5241301210045844e87a226412cc961ddc38bf488',
    );
  });
});

describe('TDX module: property — random SEAMCALL sequences', () => {
  test('stay consistent (PAMT owner ⇔ S-EPT, CHLDCNT = pages owned); failures change nothing', () => {
    const seen = new Map<string, number>();
    for (let seed = 1; seed <= 40; seed++) {
      const rng = new Prng(seed);
      const r = new Rig().create().init();
      const vcpus = [r.addVcpu(), r.addVcpu()];
      const pool: Pfn[] = [];
      const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;
      const anyPage = (): Pfn => {
        if (pool.length > 0 && rng.chance(0.2)) return pick(pool);
        if (rng.chance(0.1)) return pick([r.tdr, ...vcpus]);
        const p = rng.chance(0.1) ? r.page2m() : r.page();
        pool.push(p);
        return p;
      };
      const gpa = (level: number): bigint => {
        const g = BigInt(rng.int(4)) * (1n << 21n) + BigInt(rng.int(4)) * 4096n;
        const size = 4096n * 512n ** BigInt(level);
        return (g / size) * size;
      };
      for (let step = 0; step < 300; step++) {
        const before = snapshot(r);
        const level = rng.int(3);
        const v = pick(vcpus);
        const inGuest = r.td.vcpus.get(v)!.inGuest;
        let s: bigint | undefined;
        let guest = false;
        switch (rng.int(13)) {
          case 0:
            s = r.m.tdhMemSeptAdd(r.tdr, gpa(level + 1), level + 1, anyPage());
            break;
          case 1:
            s = r.m.tdhMemPageAdd(r.tdr, gpa(0), anyPage(), r.page());
            break;
          case 2: {
            const l = rng.int(2);
            s = r.m.tdhMemPageAug(r.tdr, gpa(l), l, anyPage());
            break;
          }
          case 3:
            s = r.m.tdhMemRangeBlock(r.tdr, gpa(level), level);
            break;
          case 4:
            s = r.m.tdhMemTrack(r.tdr);
            break;
          case 5:
            s = r.m.tdhMemPageRemove(r.tdr, gpa(level), level);
            break;
          case 6:
            s = r.m.tdhMemSeptRemove(r.tdr, gpa(level + 1), level + 1);
            break;
          case 7:
            s = r.m.tdhMemRangeUnblock(r.tdr, gpa(level), level);
            break;
          case 8:
            s = rng.chance(0.2) ? r.m.tdhMrFinalize(r.tdr) : r.m.tdhMrExtend(r.tdr, gpa(0));
            break;
          case 9:
            s = r.m.tdhVpEnter(v);
            break;
          case 10:
            r.m.tdExit(v);
            guest = true;
            break;
          case 11:
            if (inGuest) {
              const l = rng.int(2);
              const res = r.m.tdgMemPageAccept(v, gpa(l), l);
              if (res.kind === 'status') s = res.status;
              guest = true;
            }
            break;
          default:
            if (inGuest) {
              const res = r.m.guestAccess(v, gpa(0) + BigInt(rng.int(4096)), rng.chance(0.5));
              if (res.kind === 'ok') assert.equal(r.m.pamt.get(res.pfn).owner, r.tdr);
              guest = true;
            }
        }
        if (s !== undefined) seen.set(tdxStatusName(s), (seen.get(tdxStatusName(s)) ?? 0) + 1);
        const errs = r.m.checkConsistency();
        assert.deepEqual(errs, [], `seed ${seed} step ${step}`);
        if (s !== undefined && !guest && tdxIsError(s))
          assert.equal(
            snapshot(r),
            before,
            `seed ${seed} step ${step}: ${tdxStatusName(s)} changed state`,
          );
      }
    }
    // The sequences reach successes and the interesting refusals, not only walk failures.
    for (const s of [
      TDX.SUCCESS,
      TDX.EPT_PAGE_NOT_FREE + OP.RCX,
      TDX.TLB_TRACKING_NOT_DONE + OP.RCX,
      TDX.GPA_RANGE_NOT_BLOCKED + OP.RCX,
      TDX.PAGE_METADATA_INCORRECT + OP.R8,
    ])
      assert.ok(
        (seen.get(tdxStatusName(s)) ?? 0) > 0,
        `never saw ${tdxStatusName(s)}: ${[...seen]}`,
      );
  });
});
