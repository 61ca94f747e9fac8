/**
 * tdx-map-gpa-exit-matches-request: every KVM_HC_MAP_GPA_RANGE exit KVM raises for a TD's
 * TDG.VP.VMCALL<MapGPA> asks the VMM for exactly the range the guest named, without the shared
 * bit, in order.
 *
 * A ghost check of `tdx_map_gpa()` / `__tdx_map_gpa()` / `tdx_complete_vmcall_map_gpa()`
 * (arch/x86/kvm/vmx/tdx.c v6.18) from the guest's request (GPA, size), the exits KVM raised with
 * the VMM's answers, and the status the guest got.
 */
import { kvmGfnDirectBits } from '../arch/x86/vmx/tdx.js';
import { hx, NO_VIOLATIONS, type Invariant, type TdxGuestRecord, type Violation } from './types.js';

const NAME = 'tdx-map-gpa-exit-matches-request';
/** `TDX_MAP_GPA_MAX_LEN` (2 MiB) and KVM_MAP_GPA_RANGE_ENCRYPTED (uapi kvm_para.h). */
const MAX_LEN = 0x20_0000n;
const ENCRYPTED = 1n << 4n;

type MapGpa = Extract<TdxGuestRecord, { kind: 'map_gpa' }>;

function checkMapGpa(r: MapGpa, sharedBit: bigint, out: Violation[]): void {
  const bad = (gpa: bigint, message: string): void => {
    out.push({
      invariant: NAME,
      object: `vm${r.vm} gfn ${hx(gpa >> 12n)}`,
      message,
      focus: { vm: r.vm, gfn: Number(gpa >> 12n) },
    });
  };
  const toPrivate = (r.gpa & sharedBit) === 0n;
  const base = r.gpa & ~sharedBit;
  const end = base + r.size;
  let next = base;
  for (let i = 0; i < r.exits.length; i++) {
    const [gpa, npages, attrs] = r.exits[i]!.args;
    const len = end - next < MAX_LEN ? end - next : MAX_LEN;
    const want: readonly [bigint, bigint, bigint] = [next, len / 4096n, toPrivate ? ENCRYPTED : 0n];
    if (gpa !== want[0] || npages !== want[1] || attrs !== want[2]) {
      bad(
        gpa,
        `exit ${i} of the guest's MapGPA [${hx(r.gpa)}, +${hx(r.size)}) to ${toPrivate ? 'private' : 'shared'} is [gpa ${hx(gpa)}, ${npages} pages, attributes ${hx(attrs)}], not [gpa ${hx(want[0])}, ${want[1]} pages, ${hx(want[2])}] (the range without the shared bit, 2 MiB at a time)`,
      );
      return;
    }
    if (r.exits[i]!.ret !== 0n && i !== r.exits.length - 1) {
      bad(gpa, `KVM raised another exit after the VMM failed exit ${i} (ret ${r.exits[i]!.ret})`);
      return;
    }
    next += MAX_LEN;
  }
  const last = r.exits[r.exits.length - 1];
  if (r.exits.length > 0 && last!.ret === 0n && next < end)
    bad(
      next,
      `the guest's MapGPA got status ${hx(r.status)} with [${hx(next)}, ${hx(end)}) never asked of the VMM`,
    );
  if (r.status === 0n && (r.exits.length === 0 || last!.ret !== 0n || next < end))
    bad(
      base,
      `the guest's MapGPA [${hx(r.gpa)}, +${hx(r.size)}) reported success without every page converted by the VMM`,
    );
}

export const tdxMapGpaExitMatchesRequest: Invariant = {
  name: NAME,
  title: "A TD's MapGPA exits ask the VMM for exactly the guest's range",
  statement:
    "Every KVM_HC_MAP_GPA_RANGE exit KVM raises for a TD guest's TDG.VP.VMCALL<MapGPA>(gpa, size) names the guest's range without the TD's shared bit, in order and 2 MiB at a time (exit i: gpa + i * 2 MiB, the pages left up to 2 MiB), with ENCRYPTED when the guest's GPA is private (shared bit clear) and DECRYPTED (0) when it is shared; KVM raises no exit after one the VMM failed, and the guest's MapGPA reports success only when the VMM converted every page. So the VMM converts exactly the pages the guest asked for, never an alias of them or a range the guest did not name.",
  mechanism:
    'tdx_map_gpa() checks the range (alignment, legal GPAs, the same privateness at both ends); __tdx_map_gpa() fills hypercall.args with gpa_to_gfn(map_gpa_next) & ~kvm_gfn_direct_bits(kvm) shifted back, the page count of at most TDX_MAP_GPA_MAX_LEN and KVM_MAP_GPA_RANGE_ENCRYPTED or _DECRYPTED from the shared bit; tdx_complete_vmcall_map_gpa() stops at a non-zero hypercall.ret (TDVMCALL_STATUS_INVALID_OPERAND) and advances map_gpa_next by TDX_MAP_GPA_MAX_LEN (arch/x86/kvm/vmx/tdx.c v6.18).',
  origin:
    'platforms.md §1.2 (KVM strips the shared bit before reporting GPAs to userspace), §1.5 (conversion: MapGPA forwarded as KVM_HC_MAP_GPA_RANGE in chunks of at most 2 MiB); issue 12 items 3 and 6.',
  appliesTo: (p) => p.parts.platform === 'tdx',
  check(s) {
    const g = s.tdxGuest;
    if (g.length === 0) return NO_VIOLATIONS;
    let out: Violation[] | undefined;
    for (const r of g) {
      if (r.kind !== 'map_gpa' || r.exits.length === 0) continue;
      const vm = s.host.allVms.find((v) => v.index === r.vm);
      if (vm === undefined) continue;
      const o: Violation[] = [];
      checkMapGpa(r, kvmGfnDirectBits(vm) << 12n, o);
      if (o.length !== 0) (out ??= []).push(...o);
    }
    return out ?? NO_VIOLATIONS;
  },
};
