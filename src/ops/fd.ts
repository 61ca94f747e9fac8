/**
 * Op family: fd lifetime — close.
 */
import { withAs } from '../trace/field_reader.js';
import { fdText } from '../trace/text.js';
import type { FdArg, ResultLine } from '../trace/base_types.js';
import { fail, fileFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import type { KvmOpContext } from '../backends/kvm/context.js';
import type { GenState, OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

export type CloseOp = { readonly op: 'close'; readonly fd: FdArg };
export type FdFamilyOp = CloseOp;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<FdFamilyOp>>;

export const close: OpSpec<CloseOp> = {
  name: 'close',
  fields: ['fd'],
  parse(r, line, as) {
    return withAs({ line, op: 'close', fd: r.fd('fd') }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.fd));
  },
  runModel(h, op) {
    const r = h.close(fileFd(op.fd));
    return { result: r.ok ? { ok: true } : fail(r) };
  },
  runKvm(k, op) {
    return out(kvmClose(k, k.fileFd(op.fd)));
  },
  closedFd(op) {
    return op.fd.kind === 'obj' ? op.fd.fd : undefined;
  },
};

// ---------------------------------------------------------------------------------------------
// /dev/kvm execution (the real backend's machinery, KvmOpContext: its libc, trace state and fd policy)

function kvmClose(k: KvmOpContext, fd: number): ResultLine {
  const t = k.st;
  const r = k.c.close(fd);
  if (r.ret < 0) return kvmFail(r.errno);
  t.owned.delete(fd);
  if (fd === t.kvmFd) t.kvmFd = -1;
  const vm = t.vms.get(fd);
  if (vm !== undefined) {
    vm.fd = -1;
    t.vms.delete(fd);
  }
  t.vcpus.delete(fd);
  return ok();
}

// ---------------------------------------------------------------------------------------------
// Fuzz generators

/** close(fd); a closed handle is remembered (later ops may still use it: EBADF cases). */
export function genClose(g: Gen, fd: FdArg): void {
  g.push({ op: 'close', fd });
  if (fd.kind === 'handle') g.closed.add(fd.name);
}

/** The fd family: its ops and fuzz generators (weights among every family's generators). */
export const FD_FAMILY: OpFamily<FdFamilyOp> = {
  name: 'fd',
  ops: [close],
  generators: [],
};
