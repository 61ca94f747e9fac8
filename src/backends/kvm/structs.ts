/**
 * Packing and unpacking of the KVM uAPI structs the backend passes to ioctls (x86-64,
 * little-endian, offsets as in include/uapi/linux/kvm.h and asm/kvm.h). Each function takes the
 * fields as bigints already meant for the C type of the slot and truncates them exactly like a C
 * assignment would (u32 fields keep the low 32 bits, u64 fields the low 64). Reserved and padding
 * bytes are always zero and never visible to callers. A struct that only one trace op passes
 * (kvm_create_guest_memfd, kvm_memory_attributes, kvm_pre_fault_memory, kvm_enable_cap) is packed
 * in that op's family module (src/ops); here are the shared ones (memory regions, which the code
 * slot uses too, registers, kvm_run, stat).
 */
import { RUN } from '../../core/arch/x86/kvm_run_page.js';

const u32 = (v: bigint): number => Number(BigInt.asUintN(32, v));
const u64 = (v: bigint): bigint => BigInt.asUintN(64, v);

/** struct kvm_userspace_memory_region (32 bytes). */
export type MemoryRegion = {
  readonly slot: bigint;
  readonly flags: bigint;
  readonly guest_phys_addr: bigint;
  readonly memory_size: bigint;
  readonly userspace_addr: bigint;
};

export function packMemoryRegion(r: MemoryRegion): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(u32(r.slot), 0);
  b.writeUInt32LE(u32(r.flags), 4);
  b.writeBigUInt64LE(u64(r.guest_phys_addr), 8);
  b.writeBigUInt64LE(u64(r.memory_size), 16);
  b.writeBigUInt64LE(u64(r.userspace_addr), 24);
  return b;
}

/** struct kvm_userspace_memory_region2 (160 bytes); `guest_memfd` is the u32 fd field. */
export type MemoryRegion2 = MemoryRegion & {
  readonly guest_memfd_offset: bigint;
  readonly guest_memfd: bigint;
};

export function packMemoryRegion2(r: MemoryRegion2): Buffer {
  const b = Buffer.alloc(160);
  packMemoryRegion(r).copy(b, 0);
  b.writeBigUInt64LE(u64(r.guest_memfd_offset), 32);
  b.writeUInt32LE(u32(r.guest_memfd), 40);
  // pad1 @44 (u32) and pad2[14] @48 stay zero.
  return b;
}

// ---------------------------------------------------------------------------------------------
// struct kvm_regs (144 bytes): rax rbx rcx rdx rsi rdi rsp rbp r8..r15 rip rflags, all u64.

export const KVM_REGS_SIZE = 144;
const REG_NAMES = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const;
export type RegName = (typeof REG_NAMES)[number];

/** A kvm_regs image with every register zero except those given. */
export function packRegs(values: Partial<Record<RegName, bigint>>): Buffer {
  const b = Buffer.alloc(KVM_REGS_SIZE);
  REG_NAMES.forEach((n, i) => b.writeBigUInt64LE(u64(values[n] ?? 0n), 8 * i));
  return b;
}

export function unpackRegs(b: Buffer): Record<RegName, bigint> {
  const out = {} as Record<RegName, bigint>;
  REG_NAMES.forEach((n, i) => (out[n] = b.readBigUInt64LE(8 * i)));
  return out;
}

// ---------------------------------------------------------------------------------------------
// struct kvm_sregs (312 bytes): cs ds es fs gs ss tr ldt (struct kvm_segment, 24 bytes each),
// gdt idt (struct kvm_dtable, 16 bytes each), cr0 cr2 cr3 cr4 cr8 efer apic_base,
// interrupt_bitmap[4].

export const KVM_SREGS_SIZE = 312;

export type Segment = {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
};

export const SEG_INDEX = { cs: 0, ds: 1, es: 2, fs: 3, gs: 4, ss: 5, tr: 6, ldt: 7 } as const;
export type SegName = keyof typeof SEG_INDEX;

export function readSegment(b: Buffer, name: SegName): Segment {
  const o = SEG_INDEX[name] * 24;
  return {
    base: b.readBigUInt64LE(o),
    limit: b.readUInt32LE(o + 8),
    selector: b.readUInt16LE(o + 12),
    type: b[o + 14]!,
    present: b[o + 15]!,
    dpl: b[o + 16]!,
    db: b[o + 17]!,
    s: b[o + 18]!,
    l: b[o + 19]!,
    g: b[o + 20]!,
    avl: b[o + 21]!,
    unusable: b[o + 22]!,
  };
}

export function writeSegment(b: Buffer, name: SegName, s: Segment): void {
  const o = SEG_INDEX[name] * 24;
  b.writeBigUInt64LE(u64(s.base), o);
  b.writeUInt32LE(s.limit >>> 0, o + 8);
  b.writeUInt16LE(s.selector & 0xffff, o + 12);
  b[o + 14] = s.type;
  b[o + 15] = s.present;
  b[o + 16] = s.dpl;
  b[o + 17] = s.db;
  b[o + 18] = s.s;
  b[o + 19] = s.l;
  b[o + 20] = s.g;
  b[o + 21] = s.avl;
  b[o + 22] = s.unusable;
  b[o + 23] = 0;
}

/** kvm_dtable: base u64, limit u16, padding[3]. */
export function writeDtable(b: Buffer, which: 'gdt' | 'idt', base: bigint, limit: number): void {
  const o = which === 'gdt' ? 192 : 208;
  b.writeBigUInt64LE(u64(base), o);
  b.writeUInt16LE(limit & 0xffff, o + 8);
  b.fill(0, o + 10, o + 16);
}

export const SREG_OFF = {
  cr0: 224,
  cr2: 232,
  cr3: 240,
  cr4: 248,
  cr8: 256,
  efer: 264,
  apic_base: 272,
} as const;

export function writeSreg(b: Buffer, name: keyof typeof SREG_OFF, v: bigint): void {
  b.writeBigUInt64LE(u64(v), SREG_OFF[name]);
}
export function readSreg(b: Buffer, name: keyof typeof SREG_OFF): bigint {
  return b.readBigUInt64LE(SREG_OFF[name]);
}

// ---------------------------------------------------------------------------------------------
// struct kvm_run: the offsets are the model's (src/core/arch/x86/kvm_run_page.ts), one table for both.

export { RUN };

/** How many leading bytes of kvm_run the backend snapshots after each exit. */
export const RUN_HEADER_BYTES = 256;

export const KVM_EXIT_IO_OUT = 1;

/** A decoded kvm_run exit (only the union member that matches exit_reason). */
export type RunExit =
  | {
      kind: 'io';
      reason: number;
      direction: number;
      size: number;
      port: number;
      count: number;
      dataOffset: bigint;
    }
  | { kind: 'mmio'; reason: number; physAddr: bigint; data: Buffer; len: number; isWrite: boolean }
  | { kind: 'hypercall'; reason: number; nr: bigint; args: bigint[]; flags: bigint }
  | { kind: 'internal'; reason: number; suberror: number }
  | { kind: 'memory_fault'; reason: number; flags: bigint; gpa: bigint; size: bigint }
  | { kind: 'other'; reason: number };

export function decodeRun(b: Buffer): RunExit {
  const reason = b.readUInt32LE(RUN.exit_reason);
  switch (reason) {
    case 2:
      return {
        kind: 'io',
        reason,
        direction: b[RUN.io_direction]!,
        size: b[RUN.io_size]!,
        port: b.readUInt16LE(RUN.io_port),
        count: b.readUInt32LE(RUN.io_count),
        dataOffset: b.readBigUInt64LE(RUN.io_data_offset),
      };
    case 6:
      return {
        kind: 'mmio',
        reason,
        physAddr: b.readBigUInt64LE(RUN.mmio_phys_addr),
        data: Buffer.from(b.subarray(RUN.mmio_data, RUN.mmio_data + 8)),
        len: b.readUInt32LE(RUN.mmio_len),
        isWrite: b[RUN.mmio_is_write]! !== 0,
      };
    case 3: {
      const args: bigint[] = [];
      for (let i = 0; i < 6; i++) args.push(b.readBigUInt64LE(RUN.hypercall_args + 8 * i));
      return {
        kind: 'hypercall',
        reason,
        nr: b.readBigUInt64LE(RUN.hypercall_nr),
        args,
        flags: b.readBigUInt64LE(RUN.hypercall_flags),
      };
    }
    case 17:
      return { kind: 'internal', reason, suberror: b.readUInt32LE(RUN.internal_suberror) };
    case 39:
      return {
        kind: 'memory_fault',
        reason,
        flags: b.readBigUInt64LE(RUN.memory_fault_flags),
        gpa: b.readBigUInt64LE(RUN.memory_fault_gpa),
        size: b.readBigUInt64LE(RUN.memory_fault_size),
      };
    default:
      return { kind: 'other', reason };
  }
}

/** struct stat (x86-64): st_size @48, st_blocks @64. */
export const STAT_SIZE = 144;
export function unpackStat(b: Buffer): { size: bigint; blocks: bigint } {
  return { size: b.readBigInt64LE(48), blocks: b.readBigInt64LE(64) };
}
