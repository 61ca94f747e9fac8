/**
 * Op family: vCPUs and guest runs — KVM_CREATE_VCPU, KVM_RUN (with its guest program steps).
 */
import {
  checkWidth,
  FieldReader,
  MAX_GUEST_STEPS,
  parseInteger,
  withAs,
  type Obj,
} from '../trace/field_reader.js';
import { JsonNumber } from '../trace/json.js';
import { didYouMean, quote } from '../trace/suggest.js';
import { bytesHex, ellipsis, fdText, hex, type Style } from '../trace/text.js';
import type { FdArg, GuestStep } from '../trace/types.js';
import { toU64 } from '../core/base/units.js';
import { exitToTrace, fail, ioctlFd } from '../backends/model_args.js';
import { out } from '../backends/kvm/outcome.js';
import { compileGuest } from '../backends/kvm/guest_code.js';
import { NO_VM, vmArg, type GenState } from '../fuzz/gen_state.js';
import type { OpSpec } from './spec.js';

export type CreateVcpuOp = {
  readonly op: 'KVM_CREATE_VCPU';
  readonly vm: FdArg;
  readonly id: bigint;
};
export type RunOp = {
  readonly op: 'KVM_RUN';
  readonly vcpu: FdArg;
  readonly guest: readonly GuestStep[];
};
export type VcpuFamilyOp = CreateVcpuOp | RunOp;

const STEP_FIELDS: Readonly<Record<string, readonly string[]>> = {
  store: ['gpa', 'hex'],
  load: ['gpa', 'size'],
  hypercall: ['nr', 'args'],
};

function parseGuest(r: FieldReader): GuestStep[] {
  const v = r.obj['guest'];
  if (!Array.isArray(v)) r.fail('guest', 'expected a list of guest steps');
  const steps: GuestStep[] = [];
  if (v.length > MAX_GUEST_STEPS) r.fail('guest', `at most ${MAX_GUEST_STEPS} steps per KVM_RUN`);
  v.forEach((raw: unknown, i: number) => {
    const at = `guest[${i}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof JsonNumber)
      r.fail(at, 'expected an object such as {"load":{"gpa":4096}}');
    const step = raw as Obj;
    const keys = Object.keys(step);
    if (keys.length !== 1) r.fail(at, 'a step has exactly one key: store, load or hypercall');
    const kind = keys[0]!;
    const known = STEP_FIELDS[kind];
    if (known === undefined)
      r.fail(
        at,
        `unknown step kind ${quote(kind)} (store, load or hypercall)${didYouMean(kind, Object.keys(STEP_FIELDS))}`,
      );
    const body = step[kind];
    if (
      typeof body !== 'object' ||
      body === null ||
      Array.isArray(body) ||
      body instanceof JsonNumber
    )
      r.fail(`${at}.${kind}`, 'expected an object');
    const sr = new FieldReader(r.file, r.line, body as Obj, `${at}.${kind}.`);
    sr.only(known, `a ${kind} step`);
    if (kind === 'store') {
      const gpa = sr.int('gpa', 64);
      const bytes = sr.hexBytes('hex', 4n);
      if (bytes.length !== 1 && bytes.length !== 2 && bytes.length !== 4)
        sr.fail('hex', `a store writes 1, 2 or 4 bytes, not ${bytes.length}`);
      if (gpa < 0n || gpa + BigInt(bytes.length) > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      steps.push({ kind: 'store', gpa, bytes });
    } else if (kind === 'load') {
      const gpa = sr.int('gpa', 64);
      const size = sr.int('size', 64, 4n);
      if (size !== 1n && size !== 2n && size !== 4n)
        sr.fail('size', 'a load reads 1, 2 or 4 bytes');
      if (gpa < 0n || gpa + size > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      steps.push({ kind: 'load', gpa, size: Number(size) as 1 | 2 | 4 });
    } else {
      const nr = sr.int('nr', 64);
      const a: unknown = sr.has('args') ? (body as Obj)['args'] : [];
      if (!Array.isArray(a) || a.length > 3)
        return sr.fail('args', 'expected a list of at most 3 integers');
      const args = [0n, 0n, 0n] as [bigint, bigint, bigint];
      a.forEach((x: unknown, j: number) => {
        const f = (m: string): never => sr.fail(`args[${j}]`, m);
        args[j] = checkWidth(parseInteger(x, f), 64, f);
      });
      steps.push({ kind: 'hypercall', nr, args });
    }
  });
  return steps;
}

function stepText(s: GuestStep, style: Style): string {
  const arrow = style.ascii ? '->' : '→';
  switch (s.kind) {
    case 'store':
      return `store ${bytesHex(s.bytes)} ${arrow} ${hex(s.gpa)}`;
    case 'load':
      return `load${s.size} ${hex(s.gpa)}`;
    case 'hypercall':
      return `vmcall ${s.nr}(${s.args.map(hex).join(', ')})`;
  }
}

const MAX_STEPS = 3;

export const createVcpu: OpSpec<CreateVcpuOp> = {
  name: 'KVM_CREATE_VCPU',
  fields: ['vm', 'id'],
  binds: 'fd',
  parse(r, line, as) {
    // ioctl(vm, KVM_CREATE_VCPU, unsigned long id)
    return withAs({ line, op: 'KVM_CREATE_VCPU', vm: r.fd('vm'), id: r.int('id', 64) }, as);
  },
  renderArgs(op, a) {
    a.push(fdText(op.vm), `id=${op.id}`);
  },
  runModel(h, op) {
    const r = h.kvmCreateVcpu(ioctlFd(op.vm), toU64(op.id));
    return r.ok ? { result: { ok: true }, createdFd: r.value } : { result: fail(r) };
  },
  runKvm(k, op) {
    return k.createVcpu(k.ioctlFd(op.vm), op.id);
  },
};

export const run: OpSpec<RunOp> = {
  name: 'KVM_RUN',
  fields: ['vcpu', 'guest'],
  parse(r, line, as) {
    return withAs(
      { line, op: 'KVM_RUN', vcpu: r.fd('vcpu'), guest: r.has('guest') ? parseGuest(r) : [] },
      as,
    );
  },
  renderArgs(op, a, style) {
    a.push(fdText(op.vcpu));
    const g = op.guest;
    if (g.length > 0) {
      const shown = g.slice(0, MAX_STEPS).map((s) => stepText(s, style));
      if (g.length > MAX_STEPS) shown.push(`${ellipsis(style)} ${g.length} steps`);
      a.push(`[${shown.join('; ')}]`);
    }
  },
  runModel(h, op) {
    const r = h.kvmRun(ioctlFd(op.vcpu), op.guest);
    const exits = r.exits.map(exitToTrace);
    return {
      result: r.errno === undefined ? { ok: true, exits } : { ok: false, errno: r.errno, exits },
    };
  },
  runKvm(k, op) {
    return out(k.run(op.vcpu, compileGuest(op.guest)));
  },
};

export const VCPU_OPS = [createVcpu, run] as const;

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genCreateVcpu(g: GenState): void {
  const vm = g.vms.length > 0 ? g.r.pick(g.vms) : NO_VM;
  const name = g.name('cpu');
  const id = g.r.weighted<bigint>([
    [10, BigInt(g.vcpus.length)],
    [2, 0n],
    [1, g.r.pick([4095n, 4096n, 1n << 32n, -1n])],
  ]);
  const res = g.push({
    op: 'KVM_CREATE_VCPU',
    vm: g.r.chance(0.95) ? vmArg(vm) : g.vmFd(),
    id,
    as: name,
  });
  if (res === undefined || (!res.ok && g.r.chance(0.9))) return;
  g.vcpus.push({ name, vm });
  g.fdNames.push(name);
}

export function genRun(g: GenState): void {
  if (g.vcpus.length === 0) return genCreateVcpu(g);
  const v = g.r.pick(g.vcpus);
  const steps: GuestStep[] = [];
  const n = 1 + g.r.int(5);
  for (let i = 0; i < n; i++) {
    const gpa = g.guestGpa();
    const size = g.r.pick([1, 2, 4, 4, 4] as const);
    if (g.r.chance(0.5)) steps.push({ kind: 'load', gpa, size });
    else steps.push({ kind: 'store', gpa, bytes: g.r.bytes(size) });
  }
  g.push({
    op: 'KVM_RUN',
    vcpu: g.r.chance(0.95) ? { kind: 'handle', name: v.name } : g.anyFd(),
    guest: steps,
  });
}

/** vCPU 0 of `vm`, named `as` (scenarios). */
export function genVcpuOf(g: GenState, vm: string, as: string): void {
  g.push({ op: 'KVM_CREATE_VCPU', vm: { kind: 'handle', name: vm }, id: 0n, as });
}

/** KVM_RUN of `steps` on vCPU `cpu` (scenarios). */
export function genRunOn(g: GenState, cpu: string, steps: GuestStep[]): void {
  g.push({ op: 'KVM_RUN', vcpu: { kind: 'handle', name: cpu }, guest: steps });
}
