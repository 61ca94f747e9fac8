/**
 * Op family: pipes and vmsplice — the user-visible way to hold plain page references on the
 * process's memory (fs/splice.c `vmsplice_to_pipe()`: `iov_iter_get_pages2()`, FOLL_GET) and to
 * drop them (vmsplice of the read end copies the buffers out and releases them; closing both ends
 * frees the pipe). guest_memfd_conversions_test's elevated_refcount holds a guest_memfd folio
 * this way (kernel-uapi.md §6.1).
 *
 * pipe2 creates two fds: `as` binds the read end (fds[0]), `write_as` the write end (fds[1]).
 */
import { toS32, toU64 } from '../core/base/units.js';
import { SPLICE_F_NONBLOCK } from '../core/vfs/splice.js';
import { withAs } from '../trace/field_reader.js';
import { addrText, bitNames, fdText, type BitTable } from '../trace/text.js';
import type { AddrArg, FdArg } from '../trace/base_types.js';
import { fail, fileFd } from '../backends/model_args.js';
import { fail as kvmFail, ok } from '../backends/kvm/outcome.js';
import { addrOf, rangeRefusal } from '../backends/kvm/rules.js';
import { cU64 } from '../backends/kvm/libc.js';
import { refuseNotModelled } from './not_modelled.js';
import type { OpFamily, OpSpec } from './spec.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';

export type Pipe2Op = {
  readonly op: 'pipe2';
  readonly flags: bigint;
  /** The handle the write end binds (the op's `as` binds the read end). */
  readonly write_as?: string;
};
export type VmspliceOp = {
  readonly op: 'vmsplice';
  readonly fd: FdArg;
  /** The one iovec: iov_base, iov_len. */
  readonly addr: AddrArg;
  readonly len: bigint;
  readonly flags: bigint;
};
export type PipeFamilyOp = Pipe2Op | VmspliceOp;

/** pipe2 flags (include/uapi/asm-generic/fcntl.h, x86 values). */
const PIPE2_BITS: BitTable = [
  [0o200n, 'O_NOTIFICATION_PIPE'],
  [0o4000n, 'O_NONBLOCK'],
  [0o40000n, 'O_DIRECT'],
  [0o2000000n, 'O_CLOEXEC'],
];
/** SPLICE_F_* (include/linux/splice.h). */
const SPLICE_BITS: BitTable = [
  [1n, 'SPLICE_F_MOVE'],
  [2n, 'SPLICE_F_NONBLOCK'],
  [4n, 'SPLICE_F_MORE'],
  [8n, 'SPLICE_F_GIFT'],
];

export const pipe2: OpSpec<Pipe2Op> = {
  name: 'pipe2',
  fields: ['flags', 'write_as'],
  binds: 'fd',
  parse(r, line, as) {
    // int pipe2(int pipefd[2], int flags)
    const w = r.optStr('write_as');
    if (w !== undefined && (w === as || /^-?(0x)?[0-9a-f]+$/i.test(w) || w.includes('+')))
      r.fail('write_as', 'a handle name distinct from `as` (not a number)');
    return withAs(
      {
        line,
        op: 'pipe2',
        flags: r.int('flags', 32, 0n),
        ...(w === undefined ? {} : { write_as: w }),
      },
      as,
    );
  },
  secondHandle(op) {
    return op.write_as;
  },
  renderArgs(op, a) {
    a.push(
      `[${op.as ?? '?'}, ${op.write_as ?? '?'}]`,
      bitNames(BigInt.asUintN(32, op.flags), PIPE2_BITS, '0'),
    );
  },
  timelineValue(field, v) {
    return field === 'flags' ? bitNames(BigInt.asUintN(32, v), PIPE2_BITS, '0') : undefined;
  },
  runModel(h, op) {
    const r = refuseNotModelled('pipe2', () => h.pipe2(Number(toS32(op.flags))));
    if (!r.ok) return { result: fail(r) };
    return { result: { ok: true }, createdFd: r.value[0], createdFd2: r.value[1] };
  },
  runKvm(k, op) {
    const r = k.c.pipe2(Number(toS32(op.flags)));
    if (r.errno !== 0) return { result: kvmFail(r.errno) };
    const [rd, wr] = r.ret;
    k.st.owned.add(rd);
    k.st.owned.add(wr);
    return { result: ok(), createdFd: rd, createdFd2: wr };
  },
  kvmRefusal(op) {
    if ((BigInt.asUintN(32, op.flags) & 0o200n) !== 0n)
      return 'pipe2: O_NOTIFICATION_PIPE (watch_queue) is not modelled';
    return undefined;
  },
};

export const vmsplice: OpSpec<VmspliceOp> = {
  name: 'vmsplice',
  fields: ['fd', 'addr', 'len', 'flags'],
  parse(r, line, as) {
    // ssize_t vmsplice(int fd, const struct iovec *iov, size_t nr_segs (1), unsigned int flags)
    return withAs(
      {
        line,
        op: 'vmsplice',
        fd: r.fd('fd'),
        addr: r.addr('addr'),
        len: r.int('len', 64),
        flags: r.int('flags', 32, 0n),
      },
      as,
    );
  },
  renderArgs(op, a) {
    a.push(
      fdText(op.fd),
      `[{iov_base=${addrText(op.addr)}, iov_len=${toU64(op.len)}}]`,
      '1',
      bitNames(BigInt.asUintN(32, op.flags), SPLICE_BITS, '0'),
    );
  },
  timelineValue(field, v) {
    return field === 'flags' ? bitNames(BigInt.asUintN(32, v), SPLICE_BITS, '0') : undefined;
  },
  runModel(h, op) {
    const r = refuseNotModelled('vmsplice', () =>
      h.vmsplice(fileFd(op.fd), op.addr, toU64(op.len), Number(BigInt.asUintN(32, op.flags))),
    );
    return { result: r.ok ? { ok: true, value: BigInt(r.value) } : fail(r) };
  },
  runKvm(k, op) {
    const r = k.c.vmsplice(
      k.fileFd(op.fd),
      addrOf(op.addr),
      cU64(op.len),
      Number(BigInt.asUintN(32, op.flags)),
    );
    return { result: r.ret < 0n ? kvmFail(r.errno) : ok({ value: r.ret }) };
  },
  kvmRefusal(op, env) {
    // The real process would sleep on a full (or, reading, empty) pipe: the backend cannot know
    // the pipe's fill without tracking it, so it runs only non-blocking vmsplice (or one whose
    // unknown flags make it EINVAL before anything).
    const flags = BigInt.asUintN(32, op.flags);
    if ((flags & ~0xfn) === 0n && (flags & BigInt(SPLICE_F_NONBLOCK)) === 0n)
      return 'vmsplice without SPLICE_F_NONBLOCK may sleep in the backend process; refusing to run it';
    const len = cU64(op.len);
    const addr = addrOf(op.addr);
    // Only the trace's own memory: a read end's vmsplice writes into the range.
    return rangeRefusal(addr, addr + (len > 0x7fff_f000n ? 0x7fff_f000n : len), 'vmsplice', env);
  },
  hostRanges(op) {
    return [{ start: op.addr, end: op.addr + BigInt.asUintN(64, op.len) }];
  },
};

/** The pipe family: its ops (no fuzz generator: the in-place conversion walk drives them). */
export const PIPE_FAMILY: OpFamily<PipeFamilyOp> = {
  name: 'pipe',
  ops: [pipe2, vmsplice],
  generators: [],
};

// ---------------------------------------------------------------------------------------------
// Fuzz generators (used by the in-place conversion walk, src/fuzz/trace_gen.ts)

type Gen = GenState<OpInput<PipeFamilyOp>>;

/** pipe2(0) binding the read end to `rd` and the write end to `wr`; whether it succeeded. */
export function genPipe(g: Gen, rd: string, wr: string): boolean {
  return g.push({ op: 'pipe2', flags: 0n, as: rd, write_as: wr })?.ok === true;
}

/** vmsplice(wr, {map+offset, len}, SPLICE_F_NONBLOCK): references on the pages. */
export function genVmspliceAt(g: Gen, wr: string, map: string, offset: bigint, len: bigint): void {
  g.push({
    op: 'vmsplice',
    fd: { kind: 'handle', name: wr },
    addr: { kind: 'handle', name: map, offset },
    len,
    flags: BigInt(SPLICE_F_NONBLOCK),
  });
}
