/**
 * Compiles a trace's guest program to 32-bit flat protected-mode x86 machine code (no paging,
 * CS/DS base 0, 4 GiB limits), as the trace contract describes:
 *
 * - store of 1/2/4 bytes: one `mov` to an absolute 32-bit address
 *   (`C6 05 disp32 imm8`, `66 C7 05 disp32 imm16`, `C7 05 disp32 imm32`); the immediate's bytes in
 *   memory order are the step's bytes;
 * - load of 1/2/4 bytes: `mov al/ax/eax, [moffs32]` (`A0`, `66 A1`, `A1`) then
 *   `out 0x10, al/ax/eax` (`E6 10`, `66 E7 10`, `E7 10`);
 * - hypercall: `mov eax,nr; mov ebx,a0; mov ecx,a1; mov edx,a2; vmcall; out 0x11, eax`;
 * - the program ends with `hlt`.
 *
 * A program that does not fit in one code page is split into batches; every batch but the last
 * ends with `out 0x12, al` (a continuation marker: the VMM loads the next batch and restarts at
 * the top of the page).
 */
import type { GuestStep } from '../../trace/base_types.js';
import type { Segment } from './structs.js';

export const PORT_LOAD = 0x10;
export const PORT_HYPERCALL_RET = 0x11;
export const PORT_CONTINUE = 0x12;

export const CODE_PAGE_SIZE = 4096;

/** What the VMM needs to interpret the port-I/O exits of one compiled program. */
export type CompiledProgram = {
  /** Machine code of each batch, in order; each fits in one code page. */
  readonly batches: readonly Uint8Array[];
  /** The loads in program order: the n-th `out 0x10` reports the n-th load. */
  readonly loads: readonly { readonly gpa: bigint; readonly size: 1 | 2 | 4 }[];
  /** Number of steps compiled. */
  readonly steps: number;
};

function le32(v: bigint): number[] {
  const n = Number(BigInt.asUintN(32, v));
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** Machine code of one step (without the trailing hlt / continuation). */
export function encodeStep(s: GuestStep): number[] {
  switch (s.kind) {
    case 'store': {
      const addr = le32(s.gpa);
      const imm = Array.from(s.bytes);
      if (imm.length === 1) return [0xc6, 0x05, ...addr, ...imm];
      if (imm.length === 2) return [0x66, 0xc7, 0x05, ...addr, ...imm];
      if (imm.length === 4) return [0xc7, 0x05, ...addr, ...imm];
      throw new RangeError(`a store writes 1, 2 or 4 bytes, not ${imm.length}`);
    }
    case 'load': {
      const addr = le32(s.gpa);
      if (s.size === 1) return [0xa0, ...addr, 0xe6, PORT_LOAD];
      if (s.size === 2) return [0x66, 0xa1, ...addr, 0x66, 0xe7, PORT_LOAD];
      return [0xa1, ...addr, 0xe7, PORT_LOAD];
    }
    case 'hypercall':
      return [
        0xb8,
        ...le32(s.nr), // mov eax, nr
        0xbb,
        ...le32(s.args[0]), // mov ebx, a0
        0xb9,
        ...le32(s.args[1]), // mov ecx, a1
        0xba,
        ...le32(s.args[2]), // mov edx, a2
        0x0f,
        0x01,
        0xc1, // vmcall
        0xe7,
        PORT_HYPERCALL_RET, // out 0x11, eax
      ];
    default:
      // The SEV-SNP and TDX guest steps: refused before a run (the KVM_RUN op's kvmRefusal).
      throw new RangeError(
        `the kvm backend does not compile ${s.kind} steps (SEV-SNP and TDX guests)`,
      );
  }
}

const HLT = [0xf4];
const CONTINUE = [0xe6, PORT_CONTINUE];

/** Compile a guest program into code-page batches. `pageSize` is for tests of the batching. */
export function compileGuest(
  steps: readonly GuestStep[],
  pageSize = CODE_PAGE_SIZE,
): CompiledProgram {
  const batches: Uint8Array[] = [];
  const loads: { gpa: bigint; size: 1 | 2 | 4 }[] = [];
  let cur: number[] = [];
  // Every batch keeps room for its terminator (2 bytes covers both hlt and the marker).
  const room = pageSize - CONTINUE.length;
  for (const s of steps) {
    const code = encodeStep(s);
    if (cur.length + code.length > room) {
      batches.push(Uint8Array.from([...cur, ...CONTINUE]));
      cur = [];
    }
    cur.push(...code);
    if (s.kind === 'load') loads.push({ gpa: s.gpa, size: s.size });
  }
  batches.push(Uint8Array.from([...cur, ...HLT]));
  return { batches, loads, steps: steps.length };
}

/** The flat 32-bit protected-mode segments the guest code runs in (one code, one data). */
export const FLAT_CODE: Segment = {
  base: 0n,
  limit: 0xffff_ffff,
  selector: 8,
  type: 11,
  present: 1,
  dpl: 0,
  db: 1,
  s: 1,
  l: 0,
  g: 1,
  avl: 0,
  unusable: 0,
};
export const FLAT_DATA: Segment = { ...FLAT_CODE, selector: 16, type: 3 };
/** A minimal TSS and LDT, as VMX requires usable TR and LDTR. */
export const TSS: Segment = {
  base: 0n,
  limit: 0xffff,
  selector: 0x18,
  type: 11,
  present: 1,
  dpl: 0,
  db: 0,
  s: 0,
  l: 0,
  g: 0,
  avl: 0,
  unusable: 0,
};
export const LDT: Segment = { ...TSS, selector: 0, type: 2 };
