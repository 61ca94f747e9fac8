/**
 * snp-psc-exit-matches-request: every KVM_HC_MAP_GPA_RANGE exit KVM raises for an SEV-SNP guest's
 * PSC descriptor asks the VMM for exactly what the entries it completes requested.
 *
 * A ghost check of `snp_begin_psc()` / `__snp_complete_one_psc()` (arch/x86/kvm/svm/sev.c,
 * v6.18): from the descriptor the guest passed, the exits KVM raised and the descriptor as KVM
 * left it at each exit and at the end, it recomputes which entries each exit completed and what
 * that exit must then have been, without following KVM's walk.
 */
import type { PscRecord } from './types.js';
import { hx, NO_VIOLATIONS, type Invariant, type Violation } from './types.js';

/** `VMGEXIT_PSC_OP_PRIVATE` / `_SHARED` (sev-common.h); other operations need no exit. */
const OP_PRIVATE = 1;
const OP_SHARED = 2;
/** KVM_MAP_GPA_RANGE_ENCRYPTED and KVM_MAP_GPA_RANGE_PAGE_SZ_2M (uapi kvm_para.h). */
const ENCRYPTED = 1n << 4n;
const PAGE_SZ_2M = 1n;

const NAME = 'snp-psc-exit-matches-request';
const opName = (op: number): string =>
  op === OP_PRIVATE ? 'private' : op === OP_SHARED ? 'shared' : `operation ${op}`;

/** The violations of one PSC request. */
function checkPsc(p: PscRecord, out: Violation[]): void {
  const entries = p.entries;
  const before = entries.map((e) => e.curPage);
  const bad = (gfn: bigint, message: string): void => {
    out.push({
      invariant: NAME,
      object: `vm${p.vm} gfn ${hx(gfn)}`,
      message,
      focus: { vm: p.vm, gfn: Number(gfn) },
    });
  };
  /**
   * The private/shared entries whose cur_page changed between two views of the descriptor (KVM
   * writes an entry only to complete it): the entries the exit between them completed.
   */
  const completed = (from: readonly number[], to: readonly number[]): number[] => {
    const idx: number[] = [];
    for (let i = 0; i < entries.length; i++) {
      const op = entries[i]!.op;
      if (from[i] !== to[i] && (op === OP_PRIVATE || op === OP_SHARED)) idx.push(i);
    }
    return idx;
  };
  const pages = (i: number): number => (entries[i]!.pageSize === 1 ? 512 : 1);
  /** The pages entry i still asked for when the guest made the request. */
  const pendingStart = (i: number): bigint => entries[i]!.gfn + BigInt(before[i]!);
  const pendingCount = (i: number): number => pages(i) - before[i]!;

  // Before the first exit (or without any): KVM completes PSMASH/UNSMASH entries only.
  const first = p.exits[0]?.curPages ?? p.curPages;
  for (const i of completed(before, first))
    bad(
      entries[i]!.gfn,
      `PSC entry ${i} (${opName(entries[i]!.op)}, gfn ${hx(entries[i]!.gfn)}) was marked done without a KVM_HC_MAP_GPA_RANGE exit: the VMM never converted it`,
    );
  for (let x = 0; x < p.exits.length; x++) {
    const ex = p.exits[x]!;
    const next = p.exits[x + 1]?.curPages ?? p.curPages;
    const done = completed(ex.curPages, next);
    const [gpa, npages, attrs] = ex.args;
    const gfn0 = gpa >> 12n;
    const exitText = `exit [gpa ${hx(gpa)}, ${npages} pages, ${(attrs & ENCRYPTED) !== 0n ? 'ENCRYPTED' : 'DECRYPTED'}${(attrs & PAGE_SZ_2M) !== 0n ? ' 2M' : ''}]`;
    if ((attrs & ~(ENCRYPTED | PAGE_SZ_2M)) !== 0n || (gpa & 0xfffn) !== 0n)
      bad(gfn0, `the PSC ${exitText} has attributes ${hx(attrs)} or an unaligned GPA`);
    if (ex.ret !== 0n) {
      // snp_complete_one_psc(): a failed exit fails the request; nothing more is marked done.
      if (done.length > 0)
        bad(
          entries[done[0]!]!.gfn,
          `PSC entry ${done[0]} was marked done after the VMM failed its ${exitText} (ret ${ex.ret})`,
        );
      continue;
    }
    if (done.length === 0) {
      bad(gfn0, `the PSC ${exitText} completed no entry the guest asked for`);
      continue;
    }
    const want = (attrs & ENCRYPTED) !== 0n ? OP_PRIVATE : OP_SHARED;
    let sum = 0;
    let ok = true;
    for (const i of done) {
      const e = entries[i]!;
      if (i < p.curEntry || i > p.endEntry || before[i]! >= pages(i)) {
        bad(
          e.gfn,
          `PSC entry ${i} was marked done by the ${exitText} though the guest did not ask for it (entries ${p.curEntry}..${p.endEntry}, its cur_page ${before[i]} of ${pages(i)})`,
        );
        ok = false;
      }
      if (e.op !== want) {
        bad(
          e.gfn,
          `PSC entry ${i} asked for gfn ${hx(e.gfn)} to become ${opName(e.op)}, but KVM completed it with the ${exitText}, which asks the VMM for ${opName(want)}`,
        );
        ok = false;
      }
      if (next[i] !== pages(i)) {
        bad(e.gfn, `PSC entry ${i} was left at cur_page ${next[i]} of ${pages(i)} by its exit`);
        ok = false;
      }
      sum += pendingCount(i);
    }
    if (!ok) continue;
    const s = done[0]!;
    // The exit starts at the first entry's first pending page, takes its page size, and counts
    // exactly the pages its entries asked for.
    if (
      gfn0 !== pendingStart(s) ||
      npages !== BigInt(sum) ||
      ((attrs & PAGE_SZ_2M) !== 0n) !== (entries[s]!.pageSize === 1)
    ) {
      bad(
        gfn0,
        `the PSC ${exitText} does not match the entries it completed (${done.join(', ')}: ${sum} pages from gfn ${hx(pendingStart(s))}, page size ${entries[s]!.pageSize === 1 ? '2M' : '4K'})`,
      );
      continue;
    }
    // The entries tile the exit in order. Not after a partly done 2M entry: KVM compares the
    // next entry's gfn with entry_start.gfn + npages, npages already less cur_page, so the 4K
    // entries it merges there start inside the 2M range and the exit runs past it by as many
    // pages (the count above still holds).
    if (entries[s]!.pageSize === 1 && before[s]! > 0) continue;
    let at = gfn0;
    for (const i of done) {
      if (pendingStart(i) !== at) {
        bad(
          entries[i]!.gfn,
          `PSC entry ${i} (gfn ${hx(pendingStart(i))}) does not continue the ${exitText} at gfn ${hx(at)}: the exit covers pages it did not ask for`,
        );
        break;
      }
      at += BigInt(pendingCount(i));
    }
  }
}

export const snpPscExitMatchesRequest: Invariant = {
  name: NAME,
  title: 'A PSC exit asks the VMM for exactly what the guest requested',
  statement:
    "Every KVM_HC_MAP_GPA_RANGE exit KVM raises for an SEV-SNP guest's PSC descriptor (the Page State Change NAE event) converts only what the entries it completes asked for: its attribute is ENCRYPTED when they asked for private and DECRYPTED when they asked for shared (an exit never mixes the two), it starts at the first entry's first pending page (gfn + cur_page) with that entry's page size, and it counts exactly the pages those entries still asked for, entry after entry. Entries are marked done (cur_page = 1 or 512) only by an exit the VMM answered with 0, only inside the header's cur_entry..end_entry, and a private or shared entry is never marked done without an exit; PSMASH and UNSMASH entries complete without one. So the guest's descriptor, which it trusts to tell it which pages changed state, never claims a conversion the VMM was not asked for.",
  mechanism:
    'snp_begin_psc() extends a run only over entries with the same operation (entry.operation == entry_start.operation), contiguous gfns, cur_page 0 and the same page size, and raises one exit per run with ENCRYPTED or DECRYPTED from entry_start.operation; only __snp_complete_one_psc(), after snp_complete_one_psc() saw hypercall.ret == 0, marks the in-flight entries done; unsupported operations (PSMASH/UNSMASH) are completed without an exit. The one irregularity is reproduced and allowed: after a partly done 2M entry the next entry is compared with entry_start.gfn + npages, npages already reduced by cur_page, so merged 4K entries need not tile the exit (its page count still equals theirs).',
  origin:
    'platforms.md §2.5 (PSC descriptor, merging of adjacent same-operation entries); issue 11 item 4; arch/x86/kvm/svm/sev.c v6.18 snp_begin_psc(), __snp_complete_one_psc(), snp_complete_one_psc(), snp_complete_psc().',
  appliesTo: (p) => p.parts.platform === 'sev-snp',
  check(s) {
    if (s.pscs.length === 0) return NO_VIOLATIONS;
    const out: Violation[] = [];
    for (const p of s.pscs) checkPsc(p, out);
    return out.length === 0 ? NO_VIOLATIONS : out;
  },
};
