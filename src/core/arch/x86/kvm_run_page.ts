/**
 * The vCPU's `struct kvm_run` page and PIO data page, as bytes in model frames, so that a trace
 * that mmaps a vCPU fd reads exactly what the kernel (and the trace backend) left there, and a
 * trace that writes to it (immediate_exit, cr8, kvm_valid_regs) changes KVM_RUN the way the
 * kernel does. Offsets: include/uapi/linux/kvm.h, x86-64.
 */
import type { FrameStore } from '../../base/frames.js';
import type { Pfn } from '../../base/units.js';

export const RUN = {
  request_interrupt_window: 0,
  immediate_exit: 1,
  exit_reason: 8,
  ready_for_interrupt_injection: 12,
  if_flag: 13,
  flags: 14,
  cr8: 16,
  apic_base: 24,
  /** The exit union. */
  union: 32,
  io_direction: 32,
  io_size: 33,
  io_port: 34,
  io_count: 36,
  io_data_offset: 40,
  mmio_phys_addr: 32,
  mmio_data: 40,
  mmio_len: 48,
  mmio_is_write: 52,
  memory_fault_flags: 32,
  memory_fault_gpa: 40,
  memory_fault_size: 48,
  hypercall_nr: 32,
  hypercall_args: 40,
  hypercall_ret: 88,
  hypercall_flags: 96,
  internal_suberror: 32,
  internal_ndata: 36,
  internal_data: 40,
  /** struct { __u32 type; __u32 ndata; __u64 data[16]; } system_event. */
  system_event_type: 32,
  system_event_ndata: 36,
  system_event_data: 40,
  kvm_valid_regs: 288,
  kvm_dirty_regs: 296,
  /** struct kvm_sync_regs: regs (144 bytes), sregs (312), events (64). */
  sync_regs: 304,
  sync_sregs: 448,
  /** kvm_sregs.apic_base inside the sync area. */
  sync_sregs_apic_base: 448 + 272,
} as const;

export const KVM_SYNC_X86_REGS = 1n;
export const KVM_SYNC_X86_SREGS = 2n;
export const KVM_SYNC_X86_EVENTS = 4n;

/** KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS. */
export const KVM_SYNC_X86_VALID_FIELDS = 7n;

/** Little-endian field access to one frame. */
export class FrameView {
  constructor(
    private readonly frames: FrameStore,
    readonly pfn: Pfn,
  ) {}

  read(off: number, len: number): Uint8Array {
    const b = new Uint8Array(len);
    this.frames.read(this.pfn, off, b);
    return b;
  }

  readUint(off: number, len: number): bigint {
    const b = this.read(off, len);
    let v = 0n;
    for (let i = len - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    return v;
  }

  write(off: number, bytes: Uint8Array): void {
    this.frames.write(this.pfn, off, bytes);
  }

  writeUint(off: number, len: number, v: bigint): void {
    const d = this.frames.pageForWrite(this.pfn);
    const x = BigInt.asUintN(len * 8, v);
    // Low 32 bits as a number, then the high half: no per-byte BigInt arithmetic.
    let lo = Number(x & 0xffff_ffffn);
    for (let i = 0; i < Math.min(len, 4); i++) {
      d[off + i] = lo & 0xff;
      lo >>>= 8;
    }
    if (len > 4) {
      let hi = Number(x >> 32n);
      for (let i = 4; i < len; i++) {
        d[off + i] = hi & 0xff;
        hi >>>= 8;
      }
    }
  }
}
