/**
 * tdx-mrtd-measured: a TD's MRTD covers exactly the pages KVM_TDX_INIT_MEM_REGION added, in
 * order, each measured page's contents right after its PAGE.ADD.
 *
 * A ghost check: the MRTD is recomputed from KVM's record of the pages it added (`mrtdLog`:
 * GPA, the measure flag, the source page's bytes) with the block layouts of platforms.md §1.7
 * written out here, independently of the module's MRTD engine (platform/tdx/mrtd.ts), and compared
 * with the MRTD TDH.MR.FINALIZE left in the TD's TDCS.
 */
import { Sha384 } from '../base/crypto/sha384.js';
import type { TdxMrtdRecord } from '../arch/x86/vmx/tdx.js';
import { liveTd, tdxModuleOf } from './tdx_common.js';
import { checkEveryVm, NO_VIOLATIONS, type Invariant } from './types.js';

const NAME = 'tdx-mrtd-measured';

/** A 128-byte block: an ASCII operation name at byte 0, the GPA (u64 little-endian) at byte 16. */
function header(name: string, gpa: bigint): Uint8Array {
  const b = new Uint8Array(128);
  for (let i = 0; i < name.length; i++) b[i] = name.charCodeAt(i);
  for (let i = 0; i < 8; i++) b[16 + i] = Number((gpa >> BigInt(8 * i)) & 0xffn);
  return b;
}

/** SHA-384 over, per added page: its PAGE.ADD block, then (measured) 16 MR.EXTEND blocks. */
function expectedMrtd(log: readonly TdxMrtdRecord[]): Uint8Array {
  const h = new Sha384();
  for (const r of log) {
    h.update(header('MEM.PAGE.ADD', r.gpa));
    if (!r.measured) continue;
    for (let off = 0; off < 4096; off += 256) {
      h.update(header('MR.EXTEND', r.gpa + BigInt(off)));
      h.update(r.contents!.subarray(off, off + 256));
    }
  }
  return h.digest();
}

const hex = (b: Uint8Array): string =>
  Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');

/** The verdict per finalized MRTD (the TDCS's array) and the log length it was computed for. */
const VERDICT = new WeakMap<Uint8Array, { n: number; want: string | undefined }>();

export const tdxMrtdMeasured: Invariant = {
  name: NAME,
  title: 'The MRTD covers exactly the pages INIT_MEM_REGION added, in order',
  statement:
    'For every TD that KVM_TDX_FINALIZE_VM finalized, the MRTD in its TDCS equals SHA-384 over the blocks of the pages KVM_TDX_INIT_MEM_REGION added to it, in the order their TDH.MEM.PAGE.ADD succeeded: for each page the 128-byte PAGE.ADD block ("MEM.PAGE.ADD", its GPA) and, for a page added with KVM_TDX_MEASURE_MEMORY_REGION, right after it the 16 MR.EXTEND blocks of its 256-byte chunks in address order ("MR.EXTEND", the chunk\'s GPA, the chunk as the source page gave it). No page measured that was not added, none left out or measured without the flag, no other order (not ADD-all-then-EXTEND), no other GPA or contents.',
  mechanism:
    'tdx_vcpu_init_mem_region() → kvm_gmem_populate() one page at a time → tdx_gmem_post_populate(): TDH.MEM.PAGE.ADD of the page, then, with KVM_TDX_MEASURE_MEMORY_REGION, TDH.MR.EXTEND of each 256-byte chunk (gpa + i * TDX_EXTENDMR_CHUNKSIZE); the module extends one SHA-384 context from TDH.MNG.INIT to TDH.MR.FINALIZE (tdh_mem_page_add.c, tdh_mr_extend.c, tdh_mr_finalize.c) and refuses both SEAMCALLs after finalize (op_state).',
  origin:
    'platforms.md §1.5 (INIT_MEM_REGION), §1.7 (MRTD formula, the single/two-pass ordering pitfall), Appendix B.1-B.3; issue 12 item 6 ("the MRTD covers exactly the pages added with the measure flag, in order").',
  appliesTo: (p) => p.parts.platform === 'tdx',
  perVm: {
    vms: 'live',
    mappings: false,
    vm(vm, s) {
      const m = tdxModuleOf(s.host);
      const x = m === undefined ? undefined : liveTd(m, vm);
      const mrtd = x?.td.mrtd;
      if (x === undefined || mrtd === undefined) return NO_VIOLATIONS;
      const log = x.t.mrtdLog;
      let v = VERDICT.get(mrtd);
      if (v === undefined || v.n !== log.length) {
        const want = hex(expectedMrtd(log));
        VERDICT.set(mrtd, (v = { n: log.length, want: want === hex(mrtd) ? undefined : want }));
      }
      if (v.want === undefined) return NO_VIOLATIONS;
      const measured = log.filter((r) => r.measured).length;
      return [
        {
          invariant: NAME,
          object: `vm${vm.index} MRTD`,
          message: `the TD's MRTD ${hex(mrtd).slice(0, 16)}... is not the measurement of the ${log.length} page(s) KVM_TDX_INIT_MEM_REGION added (${measured} with the measure flag), single pass in order: ${v.want.slice(0, 16)}...`,
          focus: { vm: vm.index },
        },
      ];
    },
  },
  check(s) {
    return checkEveryVm(this.perVm!, s);
  },
};
