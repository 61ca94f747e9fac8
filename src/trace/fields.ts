/**
 * The fields each trace op takes (besides `op` and `as`), in struct order, as its op family
 * declares them (src/ops/registry.ts). The parser rejects any other field; scenarios use the same
 * table to tell an op field from a misspelt step key.
 */
import type { OpName } from './types.js';
import { OP_LIST, OPS } from '../ops/registry.js';

export const OP_FIELDS: Readonly<Record<OpName, readonly string[]>> = Object.fromEntries(
  OP_LIST.map((s) => [s.name, s.fields]),
) as Record<OpName, readonly string[]>;

export const OP_NAMES = OP_LIST.map((s) => s.name) as OpName[];

export function isOpName(s: string): s is OpName {
  return OPS.has(s);
}

/** The fields that name an fd (a handle or a raw number), and those that name an address. */
export const FD_FIELDS = [
  'fd',
  'vm',
  'vcpu',
  'guest_memfd',
  'sev_fd',
  'container',
  'restricted_fd',
] as const;
export const ADDR_FIELDS = ['addr', 'userspace_addr', 'data_addr', 'src'] as const;
/** The fields that name a process (a handle `fork` bound): any op's `proc`, wait's `child`. */
export const PROC_FIELDS = ['proc', 'child'] as const;
/**
 * Address fields inside an op's `data` object (KVM_MEMORY_ENCRYPT_OP's SNP command structs and
 * KVM_TDX_INIT_MEM_REGION's `source_addr`).
 */
export const DATA_ADDR_FIELDS = [
  'uaddr',
  'id_block_uaddr',
  'id_auth_uaddr',
  'source_addr',
] as const;

/** The op's `data` object when it has one (the struct a KVM_MEMORY_ENCRYPT_OP command points to). */
export function dataObject(op: object): Record<string, unknown> | undefined {
  const d = (op as { data?: unknown }).data;
  return typeof d === 'object' && d !== null && !(d instanceof Uint8Array)
    ? (d as Record<string, unknown>)
    : undefined;
}

/** The fd handle a second fd the op creates binds (pipe2's `write_as`), if any. */
export function secondHandleOf(op: { readonly op: OpName }): string | undefined {
  const s = OPS.get(op.op)!;
  return s.secondHandle === undefined ? undefined : s.secondHandle(op as never);
}

/** Whether the op fills an fd array rather than returning the fd it creates (pipe2: 0). */
export function createsFdArray(op: OpName): boolean {
  return OPS.get(op)!.secondHandle !== undefined;
}

/**
 * What an op's `as` binds: an fd handle, a mapping handle, a process (fork), or nothing (the op
 * creates nothing).
 */
export function bindsKind(op: OpName): 'fd' | 'map' | 'proc' | undefined {
  return OPS.get(op)!.binds;
}
