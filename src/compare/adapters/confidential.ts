/**
 * What the x86 confidential-computing adapters (./sev_snp.ts, ./tdx.ts) share on top of the
 * guest_memfd lowering (./guest_memfd.ts): a guest that knows which of its pages are private and
 * which of those it has already made usable, as a Linux guest does.
 *
 * - A private page must be validated (SEV-SNP: PVALIDATE) or accepted (TDX: TDG.MEM.PAGE.ACCEPT)
 *   before the guest touches it. Boot-time private RAM is made usable lazily, on the guest's first
 *   access to a page (Linux's unaccepted-memory support accepts memory when it is first
 *   allocated; the model's guest does it at the first access); a range the guest converts to
 *   private is made usable right after the conversion, as `set_memory_encrypted()` does
 *   (`snp_set_memory_private()` → `pvalidate_pages()`, `tdx_enc_status_changed()` →
 *   `tdx_accept_memory()`).
 * - A guest access to a private page is a private access (SNP: the C-bit; TDX: no shared bit),
 *   to a shared page a shared one.
 * - A conversion is the guest's own request (the platform's: a PSC, a MapGPA), which KVM turns
 *   into a KVM_HC_MAP_GPA_RANGE exit; the VMM converts as on 6.18 or next-gmem (attributes, the
 *   policy's VFIO unmap and discards), then the guest validates or accepts the range.
 *
 * The guest's view is kept as ranges of RAM pages (offset / 4 KiB); it follows the guest's
 * requests, not their results (a lowering is made before anything runs).
 */
import { RangeMap } from '../../core/base/ranges/range_map.js';
import { num, type TraceBuilder } from '../adapter.js';
import type { ActionStep } from '../workload.js';
import { GmemLowerer } from './guest_memfd.js';
import { PAGE, RAM_GPA } from './historical.js';

/** One guest program step (a trace-format JSON object). */
export type GuestStep = Record<string, unknown>;

export abstract class ConfidentialLowerer extends GmemLowerer {
  /** Pages the guest holds private. */
  protected readonly priv = new RangeMap<true>();
  /** Private pages the guest has validated or accepted. */
  protected readonly ready = new RangeMap<true>();

  /** The step that makes the private page at `gpa` usable (PVALIDATE, ACCEPT). */
  protected abstract makeReady(gpa: bigint): GuestStep;
  /** The guest's access step, private or shared. */
  protected abstract accessStep(
    kind: 'load' | 'store',
    gpa: bigint,
    arg: { size: number } | { hex: string },
    priv: boolean,
  ): GuestStep;
  /** Steps the guest runs before it asks to share [off, off + size) (SNP: rescind). */
  protected beforeShare(_off: bigint, _size: bigint): GuestStep[] {
    return [];
  }
  /** The guest's conversion request for [off, off + size) (a PSC, a MapGPA). */
  protected abstract requestSteps(off: bigint, size: bigint, toPrivate: boolean): GuestStep[];

  protected bootView(a: { private: bigint }): void {
    if (a.private > 0n) this.priv.set(0, Number(a.private / PAGE), true);
  }

  protected override guestRequest(
    b: TraceBuilder,
    off: bigint,
    size: bigint,
    toPrivate: boolean,
  ): void {
    const p0 = Number(off / PAGE);
    const p1 = Number((off + size) / PAGE);
    const guest = [
      ...(toPrivate ? [] : this.beforeShare(off, size)),
      ...this.requestSteps(off, size, toPrivate),
    ];
    // The VMM answers the exit with 0 and converts with its own ops (convert()).
    b.op({ op: 'KVM_RUN', vcpu: 'cpu', guest });
    this.ready.delete(p0, p1);
    if (toPrivate) this.priv.set(p0, p1, true);
    else this.priv.delete(p0, p1);
  }

  protected override afterConvert(
    b: TraceBuilder,
    off: bigint,
    size: bigint,
    toPrivate: boolean,
  ): void {
    if (!toPrivate) return;
    const guest: GuestStep[] = [];
    for (let o = off; o < off + size; o += PAGE) guest.push(this.makeReady(RAM_GPA + o));
    b.op({ op: 'KVM_RUN', vcpu: 'cpu', guest });
    this.ready.set(Number(off / PAGE), Number((off + size) / PAGE), true);
  }

  override step(s: ActionStep, b: TraceBuilder): void {
    const a = s.action;
    if (a.kind !== 'guest_read' && a.kind !== 'guest_write') return super.step(s, b);
    const page = Number(a.at / PAGE);
    const priv = this.priv.get(page) === true;
    const guest: GuestStep[] = [];
    if (priv && this.ready.get(page) !== true) {
      guest.push(this.makeReady(RAM_GPA + BigInt(page) * PAGE));
      this.ready.set(page, page + 1, true);
    }
    const gpa = RAM_GPA + a.at;
    guest.push(
      a.kind === 'guest_read'
        ? this.accessStep('load', gpa, { size: a.len }, priv)
        : this.accessStep('store', gpa, { hex: a.hex }, priv),
    );
    b.access({ op: 'KVM_RUN', vcpu: 'cpu', guest });
  }
}

/** `{ gpa, ...arg }` of an access step, the GPA as a trace integer. */
export function accessArgs(gpa: bigint, arg: { size: number } | { hex: string }): GuestStep {
  return { gpa: num(gpa), ...arg };
}
