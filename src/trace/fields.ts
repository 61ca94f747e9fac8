/**
 * The fields each trace op takes (besides `op` and `as`), in struct order. The parser rejects any
 * other field; scenarios use the same table to tell an op field from a misspelt step key.
 */
import type { OpName } from './types.js';

export const OP_FIELDS: Readonly<Record<OpName, readonly string[]>> = {
  KVM_CREATE_VM: ['fd', 'type'],
  KVM_CHECK_EXTENSION: ['fd', 'cap'],
  KVM_CREATE_GUEST_MEMFD: ['vm', 'size', 'flags'],
  KVM_SET_USER_MEMORY_REGION: [
    'vm',
    'slot',
    'flags',
    'guest_phys_addr',
    'memory_size',
    'userspace_addr',
  ],
  KVM_SET_USER_MEMORY_REGION2: [
    'vm',
    'slot',
    'flags',
    'guest_phys_addr',
    'memory_size',
    'userspace_addr',
    'guest_memfd',
    'guest_memfd_offset',
  ],
  KVM_SET_MEMORY_ATTRIBUTES: ['vm', 'address', 'size', 'attributes', 'flags'],
  KVM_CREATE_VCPU: ['vm', 'id'],
  KVM_PRE_FAULT_MEMORY: ['vcpu', 'gpa', 'size', 'flags'],
  KVM_RUN: ['vcpu', 'guest'],
  KVM_ENABLE_CAP: ['fd', 'cap', 'flags', 'args'],
  mmap: ['fd', 'length', 'prot', 'flags', 'offset'],
  munmap: ['addr', 'length'],
  mprotect: ['addr', 'length', 'prot'],
  madvise: ['addr', 'length', 'advice'],
  fallocate: ['fd', 'mode', 'offset', 'len'],
  ftruncate: ['fd', 'length'],
  pread: ['fd', 'len', 'offset'],
  pwrite: ['fd', 'hex', 'offset'],
  fstat: ['fd'],
  close: ['fd'],
  peek: ['addr', 'len'],
  poke: ['addr', 'hex'],
};

export const OP_NAMES = Object.keys(OP_FIELDS) as OpName[];

export function isOpName(s: string): s is OpName {
  return Object.prototype.hasOwnProperty.call(OP_FIELDS, s);
}

/** The fields that name an fd (a handle or a raw number), and those that name an address. */
export const FD_FIELDS = ['fd', 'vm', 'vcpu', 'guest_memfd'] as const;
export const ADDR_FIELDS = ['addr', 'userspace_addr'] as const;

/** What an op's `as` binds: an fd handle, a mapping handle, or nothing (the op creates nothing). */
export function bindsKind(op: OpName): 'fd' | 'map' | undefined {
  switch (op) {
    case 'KVM_CREATE_VM':
    case 'KVM_CREATE_GUEST_MEMFD':
    case 'KVM_CREATE_VCPU':
      return 'fd';
    case 'mmap':
      return 'map';
    default:
      return undefined;
  }
}
