/**
 * Op family: memory encryption — KVM_MEMORY_ENCRYPT_OP, the vendor's command ioctl on a VM (or
 * vCPU) fd. Its argument points to the vendor's command struct (`struct kvm_sev_cmd` on kvm_amd,
 * `struct kvm_tdx_cmd` on kvm_intel: both 24 bytes with the u32 command id first); the trace gives
 * the pointer as NULL or as the backend's own struct with a command id. Only what a VM that is not
 * a confidential guest reaches is modelled: SEV and TDX command sets come with their platforms.
 */
import { KVM_IOCTL } from '../core/base/uapi.js';
import { NotModelled } from '../core/base/not_modelled.js';
import { withAs } from '../trace/field_reader.js';
import { fdText, hex } from '../trace/text.js';
import { BackendRefusal, type FdArg } from '../trace/base_types.js';
import { fail, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import { kvmModule } from '../backends/kvm/host_facts.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

/**
 * `argp`: null (a NULL pointer) or "cmd" (default: a pointer to the backend's 24-byte command
 * struct, `id` first, every other field 0). `id` is the struct's u32 command id.
 */
export type MemoryEncryptOp = {
  readonly op: 'KVM_MEMORY_ENCRYPT_OP';
  readonly fd: FdArg;
  readonly argp: 'cmd' | null;
  readonly id: bigint;
};
export type MemEncFamilyOp = MemoryEncryptOp;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<MemEncFamilyOp>>;

/**
 * The command struct (x86-64, little-endian, include/uapi/linux/kvm.h and asm/kvm.h): `struct
 * kvm_sev_cmd` (u32 id, u32 pad0, u64 data, u32 error, u32 sev_fd) and `struct kvm_tdx_cmd` (u32
 * id, u32 flags, u64 data, u64 hw_error) are both 24 bytes with the id at offset 0. `data` stays
 * 0: it is a user pointer the SEV and TDX commands would follow.
 */
export const MEM_ENC_CMD_SIZE = 24;

export function packMemEncCmd(id: bigint): Uint8Array {
  const b = new Uint8Array(MEM_ENC_CMD_SIZE);
  new DataView(b.buffer).setUint32(0, Number(BigInt.asUintN(32, id)), true);
  return b;
}

/** KVM_SEV_INIT and KVM_SEV_ES_INIT: on an SEV host they make a DEFAULT VM an SEV guest. */
const STARTS_SEV_GUEST = new Set([0n, 1n]);

/** Whether /dev/kvm is kvm_amd (read once): only there can a command start an SEV guest. */
let amdHost: boolean | undefined;
function onKvmAmd(): boolean {
  amdHost ??= kvmModule() === 'kvm_amd';
  return amdHost;
}

export const memoryEncryptOp: OpSpec<MemoryEncryptOp> = {
  name: 'KVM_MEMORY_ENCRYPT_OP',
  fields: ['fd', 'argp', 'id'],
  parse(r, line, as) {
    // ioctl(vm, KVM_MEMORY_ENCRYPT_OP, void *argp): argp NULL or a struct whose first field is
    // the __u32 command id.
    let argp: 'cmd' | null = 'cmd';
    if (r.has('argp')) {
      const v = r.obj['argp'];
      if (v === null) argp = null;
      else if (v !== 'cmd') r.fail('argp', 'expected null (a NULL pointer) or "cmd" (the struct)');
    }
    return withAs(
      {
        line,
        op: 'KVM_MEMORY_ENCRYPT_OP',
        fd: r.fd('fd'),
        argp,
        id: r.int('id', 32, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd), op.argp === null ? 'NULL' : `{id=${hex(op.id)}}`);
  },
  runModel(h, op) {
    // Where the kernel would go on to make an SEV guest (KVM_SEV_INIT/ES_INIT on a DEFAULT VM of
    // an SEV host profile), the model says so instead of answering; every earlier check (fd,
    // vendor, VM type) answers as the kernel does.
    try {
      const r = h.kvmMemoryEncryptOp(
        ioctlFd(op.fd),
        op.argp === null ? { kind: 'null' } : { kind: 'buffer', bytes: packMemEncCmd(op.id) },
      );
      return { result: r.ok ? { ok: true } : fail(r) };
    } catch (e) {
      if (e instanceof NotModelled)
        throw new BackendRefusal(`KVM_MEMORY_ENCRYPT_OP id ${op.id}: ${e.message}`);
      throw e;
    }
  },
  runKvm(k, op) {
    const fd = k.ioctlFd(op.fd);
    const req = KVM_IOCTL.KVM_MEMORY_ENCRYPT_OP;
    const r =
      op.argp === null
        ? k.c.ioctlInt(fd, req, 0n)
        : k.c.ioctlBuf(fd, req, Buffer.from(packMemEncCmd(op.id)));
    return out(r.ret < 0 ? kvmFail(r.errno) : ok());
  },
  kvmRefusal(op) {
    if (op.argp !== null && STARTS_SEV_GUEST.has(op.id) && onKvmAmd())
      return `KVM_MEMORY_ENCRYPT_OP: command id ${op.id} (KVM_SEV_INIT/ES_INIT) would make a DEFAULT VM an SEV guest on this kvm_amd host; the backend starts no confidential guests; refusing to run it`;
    return undefined;
  },
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators

/**
 * KVM_MEMORY_ENCRYPT_OP on a VM (mostly), a vCPU or any fd, with a NULL pointer or a command:
 * the SEV command ids, ids the vendors' switches have no case for, and edge values. Never
 * KVM_SEV_INIT/ES_INIT (0, 1): on an SEV host they would start an SEV guest, which neither the
 * model (it refuses to run the op) nor the real backend (it refuses them on kvm_amd) does.
 */
export function genMemoryEncryptOp(g: Gen): void {
  const fd = g.r.weighted<FdArg>([
    [8, g.vmFd()],
    [2, g.vcpus.length > 0 ? { kind: 'handle', name: g.r.pick(g.vcpus).name } : g.anyFd()],
    [1, g.anyFd()],
  ]);
  const argp = g.r.chance(0.25) ? null : 'cmd';
  const id = g.r.weighted<bigint>([
    [6, BigInt(2 + g.r.int(21))],
    [2, g.r.pick([100n, 101n, 102n])],
    [2, BigInt(2 + g.r.int((1 << 16) - 2))],
    [1, g.r.pick([23n, 99n, 0xffff_ffffn])],
  ]);
  g.push({ op: 'KVM_MEMORY_ENCRYPT_OP', fd, argp, id });
}

/** The mem_enc family: its ops and fuzz generators (weights among every family's generators). */
export const MEM_ENC_FAMILY: OpFamily<MemEncFamilyOp> = {
  name: 'mem_enc',
  ops: [memoryEncryptOp],
  generators: [[1, genMemoryEncryptOp]],
};
