/**
 * KVM_RUN with trace guest programs (trace-format.md "Guest programs"): each step is one guest
 * instruction — a 1/2/4-byte store or load at a guest-physical address in 32-bit flat protected
 * mode, or a hypercall — followed by HLT. The model executes the steps directly; a real backend
 * compiles them to x86 code in the reserved code page.
 *
 * Accesses that stay inside one page use the stage-2 mapping or take a fault (mmu.ts): RAM,
 * emulated MMIO (KVM_EXIT_MMIO, reads completed with zeros by the VMM), or KVM_EXIT_MEMORY_FAULT
 * which ends the run with KVM_RUN failing. An access that straddles a page boundary is handled
 * like the instruction emulator does: a fault on either page ends the run; otherwise RAM pieces
 * are accessed and MMIO pieces become separate exits.
 */
import type { KernelCtx } from './ctx.js';
import { guestTranslate, type FaultOutcome } from './mmu.js';
import type { Vcpu, Vm } from './objects.js';
import { KVM_HC_MAP_GPA_RANGE } from './uapi.js';
import type { Errno } from './errno.js';

export type GuestProgramStep =
  | { readonly kind: 'store'; readonly gpa: bigint; readonly bytes: Uint8Array }
  | { readonly kind: 'load'; readonly gpa: bigint; readonly size: 1 | 2 | 4 }
  | { readonly kind: 'hypercall'; readonly nr: bigint; readonly args: readonly [bigint, bigint, bigint] };

export type RunExit =
  | { readonly reason: 'LOAD'; readonly gpa: bigint; readonly bytes: Uint8Array }
  | { readonly reason: 'MMIO'; readonly gpa: bigint; readonly len: number; readonly isWrite: boolean; readonly bytes?: Uint8Array }
  | { readonly reason: 'MEMORY_FAULT'; readonly gpa: bigint; readonly size: bigint; readonly flags: bigint }
  | { readonly reason: 'HYPERCALL'; readonly nr: bigint; readonly args: readonly bigint[] }
  | { readonly reason: 'HYPERCALL_RET'; readonly bytes: Uint8Array }
  | { readonly reason: 'HLT' };

export type RunResult = { readonly errno?: Errno; readonly exits: RunExit[] };

const KVM_ENOSYS = 1000n;
const KVM_EINVAL = 22n;

type Piece = { readonly gpa: bigint; readonly off: number; readonly len: number; readonly gfn: number; out: FaultOutcome | undefined };

function splitPages(gpa: bigint, len: number): Piece[] {
  const pieces: Piece[] = [];
  let done = 0;
  while (done < len) {
    const a = gpa + BigInt(done);
    const inPage = 4096 - Number(a & 4095n);
    const n = Math.min(len - done, inPage);
    pieces.push({ gpa: a, off: done, len: n, gfn: Number(a >> 12n), out: undefined });
    done += n;
  }
  return pieces;
}

/**
 * One guest data access. Returns the exits it produced and, for a memory fault, the errno that
 * ends the run. `buf` is filled for loads.
 */
function guestAccess(k: KernelCtx, vm: Vm, gpa: bigint, buf: Uint8Array, write: boolean, exits: RunExit[]): Errno | undefined {
  const pieces = splitPages(gpa, buf.length);
  for (const p of pieces) {
    p.out = guestTranslate(k, vm, p.gfn, write);
    if (p.out.kind === 'memfault') {
      exits.push({ reason: 'MEMORY_FAULT', gpa: BigInt(p.gfn) << 12n, size: 4096n, flags: p.out.flags });
      return p.out.errno;
    }
  }
  for (const p of pieces) {
    const o = p.out!;
    const off = Number(p.gpa & 4095n);
    if (o.kind === 'ram') {
      if (write) k.frames.write(o.pfn, off, buf, p.off, p.len);
      else k.frames.read(o.pfn, off, buf, p.off, p.len);
    } else if (write) {
      exits.push({ reason: 'MMIO', gpa: p.gpa, len: p.len, isWrite: true, bytes: buf.slice(p.off, p.off + p.len) });
    } else {
      exits.push({ reason: 'MMIO', gpa: p.gpa, len: p.len, isWrite: false });
      buf.fill(0, p.off, p.off + p.len);
    }
  }
  return undefined;
}

/** `kvm_emulate_hypercall()` in 32-bit protected mode at CPL 0: the value left in EAX. */
function emulateHypercall(vm: Vm, nr: bigint, a: readonly [bigint, bigint, bigint], exits: RunExit[]): bigint {
  // Not in 64-bit mode: arguments are truncated to 32 bits.
  const n = nr & 0xffff_ffffn;
  const a0 = a[0] & 0xffff_ffffn;
  const a1 = a[1] & 0xffff_ffffn;
  const a2 = a[2] & 0xffff_ffffn;
  let ret = -KVM_ENOSYS;
  if (n === 1n) ret = 0n; // KVM_HC_VAPIC_POLL_IRQ
  else if (n === BigInt(KVM_HC_MAP_GPA_RANGE)) {
    if ((vm.hypercallExitEnabled & (1n << 12n)) !== 0n) {
      const gfn = a0 >> 12n;
      if ((a0 & 4095n) !== 0n || a1 === 0n || gfn + a1 <= gfn) ret = -KVM_EINVAL;
      else {
        exits.push({ reason: 'HYPERCALL', nr: n, args: [a0, a1, a2] });
        ret = 0n; // the VMM completes the exit with hypercall.ret = 0
      }
    }
  }
  return ret & 0xffff_ffffn;
}

/** Run a guest program on a vCPU whose code page is in place. */
export function kvmRunProgram(k: KernelCtx, vcpu: Vcpu, steps: readonly GuestProgramStep[]): RunResult {
  const vm = vcpu.vm;
  vcpu.runs++;
  const exits: RunExit[] = [];
  for (const s of steps) {
    if (s.kind === 'store') {
      const e = guestAccess(k, vm, s.gpa, s.bytes.slice(), true, exits);
      if (e !== undefined) return { errno: e, exits };
    } else if (s.kind === 'load') {
      const buf = new Uint8Array(s.size);
      const e = guestAccess(k, vm, s.gpa, buf, false, exits);
      if (e !== undefined) return { errno: e, exits };
      exits.push({ reason: 'LOAD', gpa: s.gpa, bytes: buf });
    } else {
      const eax = emulateHypercall(vm, s.nr, s.args, exits);
      const b = new Uint8Array(4);
      for (let i = 0; i < 4; i++) b[i] = Number((eax >> BigInt(8 * i)) & 0xffn);
      exits.push({ reason: 'HYPERCALL_RET', bytes: b });
    }
  }
  exits.push({ reason: 'HLT' });
  return { exits };
}
