/**
 * Op family: vCPUs and guest runs — KVM_CREATE_VCPU, KVM_RUN (with its guest program steps).
 */
import { refuseNotModelled } from './not_modelled.js';
import { checkWidth, FieldReader, parseInteger, withAs, type Obj } from '../trace/field_reader.js';
import { JsonNumber } from '../trace/json.js';
import { didYouMean, quote } from '../trace/suggest.js';
import { bytesHex, ellipsis, fdText, hex, type Style } from '../trace/text.js';
import {
  BackendRefusal,
  type Exit,
  type FdArg,
  type GuestStep,
  type OpOutcome,
  type ResolvedFd,
  type ResultLine,
} from '../trace/base_types.js';
import { bytesToHex } from '../trace/format.js';
import { errnoName } from '../core/base/errno.js';
import { KVM_IOCTL, TRACE_CODE_GPA, TRACE_CODE_SLOT } from '../core/base/uapi.js';
import { toU64 } from '../core/base/units.js';
import { guestLoad, guestStore } from '../core/arch/x86/kvm_run.js';
import { VMGEXIT_PSC_MAX_COUNT } from '../core/arch/x86/svm/sev_guest.js';
import type { MapGpaRangePolicy } from '../core/host.js';
import { stepSnpText } from '../trace/format.js';
import { exitToTrace, fail, ioctlFd } from '../backends/model_args.js';
import { fail as kvmFail, ok, out } from '../backends/kvm/outcome.js';
import type { KvmOpContext, VmInfo } from '../backends/kvm/context.js';
import { EAGAIN, EFAULT, EHWPOISON, EINTR, MAP_FAILED } from '../backends/kvm/libc.js';
import { PAGE } from '../backends/kvm/rules.js';
import {
  KVM_EXIT_IO_OUT,
  KVM_SREGS_SIZE,
  RUN,
  RUN_HEADER_BYTES,
  decodeRun,
  packMemoryRegion,
  packRegs,
  writeDtable,
  writeSegment,
  writeSreg,
} from '../backends/kvm/structs.js';
import {
  CODE_PAGE_SIZE,
  FLAT_CODE,
  FLAT_DATA,
  LDT,
  TSS,
  PORT_CONTINUE,
  PORT_HYPERCALL_RET,
  PORT_LOAD,
  compileGuest,
  type CompiledProgram,
} from '../backends/kvm/guest_code.js';
import { NO_VM, vmArg, type GenState, type OpInput } from '../fuzz/gen_state.js';
import type { OpFamily, OpSpec } from './spec.js';

export type CreateVcpuOp = {
  readonly op: 'KVM_CREATE_VCPU';
  readonly vm: FdArg;
  readonly id: bigint;
};
export type RunOp = {
  readonly op: 'KVM_RUN';
  readonly vcpu: FdArg;
  readonly guest: readonly GuestStep[];
  /**
   * What the VMM does with a KVM_HC_MAP_GPA_RANGE exit (absent: answers 0 and changes nothing):
   * an integer it answers without acting, 'convert' (KVM_SET_MEMORY_ATTRIBUTES, then 0), or
   * 'convert+discard' (also drops the copy no longer in use, as QEMU does).
   */
  readonly map_gpa_range?: MapGpaRangePolicy | undefined;
};
export type VcpuFamilyOp = CreateVcpuOp | RunOp;

/** The generator state as this family's fuzz generators use it (they push its ops). */
type Gen = GenState<OpInput<VcpuFamilyOp>>;

/** Largest guest program (steps per KVM_RUN). */
export const MAX_GUEST_STEPS = 100_000;

const STEP_FIELDS: Readonly<Record<string, readonly string[]>> = {
  store: ['gpa', 'hex', 'c', 'shared'],
  load: ['gpa', 'size', 'c', 'shared'],
  hypercall: ['nr', 'args'],
  pvalidate: ['gpa', 'size', 'validate'],
  psc_msr: ['gfn', 'op'],
  psc: ['cur_entry', 'end_entry', 'entries'],
  accept: ['gpa', 'size'],
  map_gpa: ['gpa', 'size', 'shared'],
};
const STEP_KINDS = 'store, load, hypercall, pvalidate, psc_msr, psc, accept or map_gpa';
const PSC_ENTRY_FIELDS = ['cur_page', 'gfn', 'op', 'pagesize'];

/** A C-bit field: 0 (shared, the default) or 1 (private). */
function cBit(sr: FieldReader): boolean {
  const c = sr.int('c', 64, 0n);
  if (c !== 0n && c !== 1n) sr.fail('c', 'the C-bit is 0 (shared) or 1 (private)');
  return c === 1n;
}

/** The TDX shared-bit field: 0 (private, the default) or 1 (the guest sets the TD's shared bit). */
function sharedBit(sr: FieldReader): boolean {
  const v = sr.int('shared', 64, 0n);
  if (v !== 0n && v !== 1n) sr.fail('shared', 'the shared bit is 0 (private) or 1 (shared)');
  return v === 1n;
}

/** An access's C-bit and shared bit: at most one of them (SEV-SNP's and TDX's). */
function accessBits(sr: FieldReader): [boolean, boolean] {
  const c = cBit(sr);
  const shared = sharedBit(sr);
  if (c && shared)
    sr.fail('shared', 'c (the SEV-SNP C-bit) and shared (the TDX shared bit) exclude each other');
  return [c, shared];
}

/** A PSC operation: 1/"private", 2/"shared", 3/"psmash", 4/"unsmash" (any 4-bit value). */
function pscOp(sr: FieldReader): number {
  const raw = sr.obj['op'];
  if (typeof raw === 'string') {
    const i = ['private', 'shared', 'psmash', 'unsmash'].indexOf(raw);
    if (i < 0)
      sr.fail('op', `expected private, shared, psmash, unsmash or 1..15, not ${quote(raw)}`);
    return i + 1;
  }
  const v = sr.int('op', 64);
  if (v < 0n || v > 15n) sr.fail('op', 'a page-state operation is 4 bits (0..15)');
  return Number(v);
}

/** A page size field: "4K"/0 or "2M"/1 (default 4K). */
function pageSizeField(sr: FieldReader, field: string): 0 | 1 {
  const raw = sr.obj[field];
  if (raw === undefined) return 0;
  if (raw === '4K') return 0;
  if (raw === '2M') return 1;
  if (typeof raw === 'string') sr.fail(field, `expected "4K" or "2M", not ${quote(raw)}`);
  const v = sr.int(field, 64);
  if (v !== 0n && v !== 1n) sr.fail(field, 'expected "4K" (0) or "2M" (1)');
  return v === 1n ? 1 : 0;
}

function parsePsc(sr: FieldReader, body: Obj): GuestStep {
  const list: unknown = body['entries'];
  if (!Array.isArray(list)) return sr.fail('entries', 'expected a list of PSC entries');
  if (list.length > VMGEXIT_PSC_MAX_COUNT)
    sr.fail('entries', `at most ${VMGEXIT_PSC_MAX_COUNT} entries (VMGEXIT_PSC_MAX_COUNT)`);
  const entries = list.map((raw: unknown, j: number) => {
    const at = `entries[${j}]`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || raw instanceof JsonNumber)
      return sr.fail(at, 'expected an object such as {"gfn":256,"op":"private"}');
    const er = new FieldReader(sr.file, sr.line, raw as Obj, `${sr.prefix}${at}.`);
    er.only(PSC_ENTRY_FIELDS, 'a PSC entry');
    const gfn = er.int('gfn', 64);
    if (gfn < 0n || gfn >= 1n << 40n) er.fail('gfn', 'a PSC entry holds a 40-bit gfn');
    const curPage = er.int('cur_page', 64, 0n);
    if (curPage < 0n || curPage > 4095n) er.fail('cur_page', 'cur_page is 12 bits (0..4095)');
    return {
      curPage: Number(curPage),
      gfn,
      op: pscOp(er),
      pageSize: pageSizeField(er, 'pagesize'),
    };
  });
  const curEntry = sr.int('cur_entry', 64, 0n);
  if (curEntry < 0n || curEntry > 0xffffn) sr.fail('cur_entry', 'cur_entry is a u16');
  const endEntry = sr.int('end_entry', 64, BigInt(Math.max(entries.length - 1, 0)));
  if (endEntry < 0n || endEntry > 0xffffn) sr.fail('end_entry', 'end_entry is a u16');
  return { kind: 'psc', curEntry: Number(curEntry), endEntry: Number(endEntry), entries };
}

/** The KVM_RUN op's `map_gpa_range` field. */
function parseMapGpaRange(r: FieldReader): MapGpaRangePolicy {
  const raw = r.obj['map_gpa_range'];
  if (raw === 'convert' || raw === 'convert+discard') return raw;
  if (typeof raw === 'string')
    r.fail(
      'map_gpa_range',
      `expected "convert", "convert+discard" or an integer, not ${quote(raw)}`,
    );
  return r.int('map_gpa_range', 64);
}

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
    if (keys.length !== 1) r.fail(at, `a step has exactly one key: ${STEP_KINDS}`);
    const kind = keys[0]!;
    const known = STEP_FIELDS[kind];
    if (known === undefined)
      r.fail(
        at,
        `unknown step kind ${quote(kind)} (${STEP_KINDS})${didYouMean(kind, Object.keys(STEP_FIELDS))}`,
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
      const [c, shared] = accessBits(sr);
      steps.push(guestStore(gpa, bytes, c, shared));
    } else if (kind === 'load') {
      const gpa = sr.int('gpa', 64);
      const size = sr.int('size', 64, 4n);
      if (size !== 1n && size !== 2n && size !== 4n)
        sr.fail('size', 'a load reads 1, 2 or 4 bytes');
      if (gpa < 0n || gpa + size > 1n << 32n)
        sr.fail('gpa', 'guest programs access GPAs below 4 GiB');
      const [c, shared] = accessBits(sr);
      steps.push(guestLoad(gpa, Number(size) as 1 | 2 | 4, c, shared));
    } else if (kind === 'pvalidate') {
      const gpa = sr.int('gpa', 64);
      if (gpa < 0n || gpa >= 1n << 52n) sr.fail('gpa', 'a guest physical address below 2^52');
      const size = pageSizeField(sr, 'size') === 1 ? '2M' : '4K';
      const raw = (body as Obj)['validate'];
      if (raw !== undefined && typeof raw !== 'boolean')
        sr.fail('validate', 'expected true (validate) or false (rescind)');
      steps.push({ kind: 'pvalidate', gpa, size, validate: raw !== false });
    } else if (kind === 'psc_msr') {
      const gfn = sr.int('gfn', 64);
      if (gfn < 0n || gfn >= 1n << 40n) sr.fail('gfn', 'the GHCB MSR request holds a 40-bit gfn');
      steps.push({ kind: 'psc_msr', gfn, op: pscOp(sr) });
    } else if (kind === 'psc') {
      steps.push(parsePsc(sr, body as Obj));
    } else if (kind === 'accept') {
      // TDG.MEM.PAGE.ACCEPT: RCX = the GPA | the S-EPT level (the module checks the GPA).
      const gpa = sr.int('gpa', 64);
      if (gpa < 0n || gpa >= 1n << 52n) sr.fail('gpa', 'a guest physical address below 2^52');
      const size = pageSizeField(sr, 'size') === 1 ? '2M' : '4K';
      steps.push({ kind: 'accept', gpa, size });
    } else if (kind === 'map_gpa') {
      // TDG.VP.VMCALL<MapGPA>: R12 = the start GPA, R13 = the size (KVM checks both).
      const gpa = sr.int('gpa', 64);
      if (gpa < 0n || gpa >= 1n << 52n) sr.fail('gpa', 'a guest physical address below 2^52');
      const size = sr.int('size', 64);
      if (size < 0n) sr.fail('size', 'a size is an unsigned 64-bit integer');
      steps.push({ kind: 'map_gpa', gpa, size, shared: sharedBit(sr) });
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
      return `store ${bytesHex(s.bytes)} ${arrow} ${hex(s.gpa)}${s.enc ? ' c=1' : ''}${s.shared ? ' shared' : ''}`;
    case 'load':
      return `load${s.size} ${hex(s.gpa)}${s.enc ? ' c=1' : ''}${s.shared ? ' shared' : ''}`;
    case 'hypercall': {
      // pKVM's vendor hypercalls of a protected guest (an arm64 HVC with x0 = the SMCCC id).
      const hvc = PKVM_HVC_NAMES.get(s.nr);
      if (hvc !== undefined) return `hvc ${hvc}(${s.args.map(hex).join(', ')})`;
      return `vmcall ${s.nr}(${s.args.map(hex).join(', ')})`;
    }
    default:
      return stepSnpText(s);
  }
}

/** The SMCCC function ids of pKVM's vendor hypercalls, by value (strace text). */
const PKVM_HVC_NAMES: ReadonlyMap<bigint, string> = new Map([
  [0xc6000002n, 'HYP_MEMINFO'],
  [0xc6000003n, 'MEM_SHARE'],
  [0xc6000004n, 'MEM_UNSHARE'],
]);

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
    return kvmCreateVcpu(k, k.ioctlFd(op.vm), op.id);
  },
};

export const run: OpSpec<RunOp> = {
  name: 'KVM_RUN',
  fields: ['vcpu', 'guest', 'map_gpa_range'],
  // A scenario's guest program may repeat steps (and a psc step's entries), see scenario-format.md.
  scenarioRepeats: ['guest'],
  parse(r, line, as) {
    // map_gpa_range is always a key (the field list's contract) but undefined when absent, so
    // formatted traces and timelines stay as they were without it.
    return withAs(
      {
        line,
        op: 'KVM_RUN',
        vcpu: r.fd('vcpu'),
        guest: r.has('guest') ? parseGuest(r) : [],
        map_gpa_range: r.has('map_gpa_range') ? parseMapGpaRange(r) : undefined,
      },
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
    const r = refuseNotModelled('KVM_RUN', () =>
      h.kvmRun(ioctlFd(op.vcpu), op.guest, op.map_gpa_range),
    );
    const exits = r.exits.map(exitToTrace);
    return {
      result: r.errno === undefined ? { ok: true, exits } : { ok: false, errno: r.errno, exits },
    };
  },
  subSteps(op) {
    return op.guest.length;
  },
  withoutSubStep(o, j) {
    const guest = [...o.guest.slice(0, j), ...o.guest.slice(j + 1)];
    return { ...o, guest };
  },
  runKvm(k, op) {
    return out(kvmRun(k, op.vcpu, compileGuest(op.guest)));
  },
  kvmRefusal(op) {
    const i = op.guest.findIndex(
      (s) =>
        s.kind === 'pvalidate' || s.kind === 'psc' || s.kind === 'psc_msr' || ('enc' in s && s.enc),
    );
    const j = op.guest.findIndex(
      (s) => s.kind === 'accept' || s.kind === 'map_gpa' || ('shared' in s && s.shared),
    );
    if (j >= 0 && (i < 0 || j < i))
      return `KVM_RUN: guest[${j}] is a TDX guest step (${op.guest[j]!.kind}${op.guest[j]!.kind === 'store' || op.guest[j]!.kind === 'load' ? ' with shared=1' : ''}); the kvm backend starts no TDs (no TDX on this machine's backend), so it cannot run it`;
    if (i >= 0)
      return `KVM_RUN: guest[${i}] is an SEV-SNP guest step (${op.guest[i]!.kind}${op.guest[i]!.kind === 'store' || op.guest[i]!.kind === 'load' ? ' with c=1' : ''}); the kvm backend starts no SEV-SNP guests (no SEV on this machine's backend), so it cannot run it`;
    if (op.map_gpa_range !== undefined && op.map_gpa_range !== 0n)
      return `KVM_RUN: map_gpa_range ${typeof op.map_gpa_range === 'bigint' ? op.map_gpa_range.toString() : op.map_gpa_range}: the kvm backend's VMM answers KVM_HC_MAP_GPA_RANGE with 0 only`;
    return undefined;
  },
};

// ---------------------------------------------------------------------------------------------
// /dev/kvm execution (the real backend's machinery, KvmOpContext: its libc, trace state and fd policy)

const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_SHARED = 0x01;

/** KVM_RUN loop bounds. */
const RUN_TIMEOUT_MS = 2000;
const RUN_MAX_RETRIES = 10_000;
const RUN_MAX_EXITS_FLOOR = 100_000;
const SIGURG = 23;

function kvmCreateVcpu(k: KvmOpContext, vmFd: number, id: bigint): OpOutcome {
  const t = k.st;
  const r = k.c.ioctlInt(vmFd, KVM_IOCTL.KVM_CREATE_VCPU, id);
  if (r.ret < 0) return out(kvmFail(r.errno));
  const fd = r.ret;
  t.owned.add(fd);
  const vm = t.vms.get(vmFd) ?? { fd: -1, hadVcpu: false, codeSlot: false };
  const len = BigInt(k.vcpuMmapSize);
  const m = k.c.mmap(0n, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0n);
  // The vCPU exists (its fd is owned and closed at end()); without its kvm_run page the backend
  // cannot run it, which no result line can say (ENOMEM at vm.max_map_count, say).
  if (m.ret === MAP_FAILED)
    throw new BackendRefusal(
      `KVM_CREATE_VCPU: the real backend cannot map the new vCPU's kvm_run area (mmap failed with ${errnoName(m.errno)})`,
    );
  t.internal.push({ addr: m.ret, len });
  t.vcpus.set(fd, { fd, vm, run: m.ret, runSize: k.vcpuMmapSize });
  if (!vm.hadVcpu) {
    vm.hadVcpu = true;
    ensureCodeSlot(k, vm);
  }
  return out(ok(), { createdFd: fd });
}

/**
 * Create memslot 32763 (GPA 0xFFFFF000) on the trace's code page if the VM lacks it. All VMs
 * share the page: each run writes its program there before its first KVM_RUN, and runs do not
 * overlap.
 */
function ensureCodeSlot(k: KvmOpContext, vm: VmInfo): boolean {
  if (vm.codeSlot) return true;
  if (vm.fd < 0) return false;
  const region = packMemoryRegion({
    slot: BigInt(TRACE_CODE_SLOT),
    flags: 0n,
    guest_phys_addr: TRACE_CODE_GPA,
    memory_size: PAGE,
    userspace_addr: k.st.m.codePage,
  });
  vm.codeSlot = k.c.ioctlBuf(vm.fd, KVM_IOCTL.KVM_SET_USER_MEMORY_REGION, region).ret === 0;
  return vm.codeSlot;
}

function writeCode(k: KvmOpContext, page: bigint, code: Uint8Array): void {
  const b = Buffer.alloc(CODE_PAGE_SIZE, 0xf4); // hlt everywhere after the batch
  b.set(code, 0);
  k.c.copyIn(page, b);
}

function setupVcpu(k: KvmOpContext, fd: number): number {
  const c = k.c;
  const sregs = Buffer.alloc(KVM_SREGS_SIZE);
  let r = c.ioctlBuf(fd, KVM_IOCTL.KVM_GET_SREGS, sregs);
  if (r.ret < 0) return r.errno;
  writeSegment(sregs, 'cs', FLAT_CODE);
  for (const s of ['ds', 'es', 'fs', 'gs', 'ss'] as const) writeSegment(sregs, s, FLAT_DATA);
  writeSegment(sregs, 'tr', TSS);
  writeSegment(sregs, 'ldt', LDT);
  writeDtable(sregs, 'gdt', 0n, 0);
  writeDtable(sregs, 'idt', 0n, 0);
  writeSreg(sregs, 'cr0', 1n);
  writeSreg(sregs, 'cr3', 0n);
  writeSreg(sregs, 'cr4', 0n);
  writeSreg(sregs, 'efer', 0n);
  r = c.ioctlBuf(fd, KVM_IOCTL.KVM_SET_SREGS, sregs);
  if (r.ret < 0) return r.errno;
  return resetRip(k, fd);
}

function resetRip(k: KvmOpContext, fd: number): number {
  const r = k.c.ioctlBuf(fd, KVM_IOCTL.KVM_SET_REGS, packRegs({ rip: TRACE_CODE_GPA, rflags: 2n }));
  return r.ret < 0 ? r.errno : 0;
}

/**
 * Arm (ms > 0) or disarm (0) the KVM_RUN watchdog: a POSIX timer that sends SIGURG to this
 * thread after `ms`, then every 50 ms, so a guest that never exits makes KVM_RUN return EINTR.
 */
function armWatchdog(k: KvmOpContext, ms: number): void {
  if (k.timer === undefined) {
    if (ms === 0) return;
    const r = k.c.timerCreateThread(k.c.gettid(), SIGURG);
    if (r.errno !== 0) return; // no watchdog: the exit bound still applies
    k.timer = r.ret;
  }
  if (ms > 0) k.c.timerSettime(k.timer, BigInt(ms) * 1_000_000n, 50_000_000n);
  else k.c.timerSettime(k.timer, 0n, 0n);
}

function kvmRun(k: KvmOpContext, vcpuArg: ResolvedFd, prog: CompiledProgram): ResultLine {
  const c = k.c;
  const fd = k.ioctlFd(vcpuArg);
  const vcpu = k.st.vcpus.get(fd);
  if (vcpu === undefined) {
    // Not one of the trace's vCPUs: the ioctl fails (EBADF, ENOTTY); report it as is.
    const r = c.ioctlInt(fd, KVM_IOCTL.KVM_RUN, 0n);
    return r.ret < 0 ? kvmFail(r.errno, { exits: [] }) : ok({ exits: [] });
  }
  if (!ensureCodeSlot(k, vcpu.vm)) return { ok: false, errno: 'ENOEXEC', exits: [] };
  const page = k.st.m.codePage;
  const exits: Exit[] = [];
  let batch = 0;
  writeCode(k, page, prog.batches[0]!);
  const e = setupVcpu(k, fd);
  if (e !== 0) return kvmFail(e, { exits });

  const header = Buffer.alloc(RUN_HEADER_BYTES);
  const zero4 = Buffer.alloc(4);
  const zero8 = Buffer.alloc(8);
  let loadIdx = 0;
  let nExits = 0;
  let retries = 0;
  const maxExits = RUN_MAX_EXITS_FLOOR + 4 * prog.loads.length + 4 * prog.batches.length;
  // Emulated steps cost microseconds each: allow 0.1 ms per step on top of the base budget.
  const budgetMs = RUN_TIMEOUT_MS + Math.ceil(prog.steps / 10);
  const deadline = Date.now() + budgetMs;
  armWatchdog(k, budgetMs);
  try {
    for (;;) {
      c.copyIn(vcpu.run + BigInt(RUN.exit_reason), zero4); // so a stale reason is never read
      const r = c.ioctlInt(fd, KVM_IOCTL.KVM_RUN, 0n);
      if (r.ret < 0) {
        if (
          (r.errno === EINTR || r.errno === EAGAIN) &&
          ++retries <= RUN_MAX_RETRIES &&
          Date.now() < deadline
        )
          continue;
        if (r.errno === EFAULT || r.errno === EHWPOISON) {
          c.copyOut(header, vcpu.run);
          const x = decodeRun(header);
          if (x.kind === 'memory_fault')
            exits.push({ reason: 'MEMORY_FAULT', gpa: x.gpa, size: x.size, flags: x.flags });
        }
        return kvmFail(r.errno, { exits });
      }
      if (++nExits > maxExits) return { ok: false, errno: 'ELOOP', exits };
      c.copyOut(header, vcpu.run);
      const x = decodeRun(header);
      switch (x.kind) {
        case 'io': {
          if (x.direction !== KVM_EXIT_IO_OUT || x.count !== 1) break;
          if (x.port === PORT_LOAD && loadIdx < prog.loads.length) {
            const ld = prog.loads[loadIdx++]!;
            const data = Buffer.alloc(x.size);
            c.copyOut(data, vcpu.run + x.dataOffset, x.size);
            exits.push({ reason: 'LOAD', gpa: ld.gpa, hex: bytesToHex(data) });
            continue;
          }
          if (x.port === PORT_HYPERCALL_RET) {
            const data = Buffer.alloc(x.size);
            c.copyOut(data, vcpu.run + x.dataOffset, x.size);
            exits.push({ reason: 'HYPERCALL_RET', hex: bytesToHex(data) });
            continue;
          }
          if (x.port === PORT_CONTINUE && batch + 1 < prog.batches.length) {
            writeCode(k, page, prog.batches[++batch]!);
            const e2 = resetRip(k, fd);
            if (e2 !== 0) return kvmFail(e2, { exits });
            continue;
          }
          break;
        }
        case 'mmio':
          if (x.isWrite) {
            exits.push({
              reason: 'MMIO',
              gpa: x.physAddr,
              len: x.len,
              is_write: true,
              hex: bytesToHex(x.data.subarray(0, Math.min(x.len, 8))),
            });
          } else {
            exits.push({ reason: 'MMIO', gpa: x.physAddr, len: x.len, is_write: false });
            c.copyIn(vcpu.run + BigInt(RUN.mmio_data), zero8);
          }
          continue;
        case 'hypercall':
          exits.push({ reason: 'HYPERCALL', nr: x.nr, args: x.args.slice(0, 3) });
          c.copyIn(vcpu.run + BigInt(RUN.hypercall_ret), zero8);
          continue;
        case 'internal':
          exits.push({ reason: 'INTERNAL_ERROR', suberror: x.suberror });
          return ok({ exits });
        default:
          break;
      }
      if (x.reason === 5) exits.push({ reason: 'HLT' });
      else if (x.reason === 8) exits.push({ reason: 'SHUTDOWN' });
      else exits.push({ reason: 'UNKNOWN', exit_reason: x.reason });
      return ok({ exits });
    }
  } finally {
    armWatchdog(k, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Fuzz generators

export function genCreateVcpu(g: Gen): void {
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

export function genRun(g: Gen): void {
  if (g.vcpus.length === 0) return genCreateVcpu(g);
  const v = g.r.pick(g.vcpus);
  const steps: GuestStep[] = [];
  const n = 1 + g.r.int(5);
  for (let i = 0; i < n; i++) {
    const gpa = g.guestGpa();
    const size = g.r.pick([1, 2, 4, 4, 4] as const);
    if (g.r.chance(0.5)) steps.push(guestLoad(gpa, size));
    else steps.push(guestStore(gpa, g.r.bytes(size)));
  }
  g.push({
    op: 'KVM_RUN',
    vcpu: g.r.chance(0.95) ? { kind: 'handle', name: v.name } : g.anyFd(),
    guest: steps,
    // The parser's key for an absent field (a parsed trace equals the generated one).
    map_gpa_range: undefined,
  });
}

/** vCPU 0 of `vm`, named `as` (scenarios). */
export function genVcpuOf(g: Gen, vm: string, as: string, id = 0n): ResultLine | undefined {
  return g.push({ op: 'KVM_CREATE_VCPU', vm: { kind: 'handle', name: vm }, id, as });
}

/** KVM_RUN of `steps` on vCPU `cpu` (scenarios). */
export function genRunOn(g: Gen, cpu: string, steps: GuestStep[]): ResultLine | undefined {
  return g.push({
    op: 'KVM_RUN',
    vcpu: { kind: 'handle', name: cpu },
    guest: steps,
    map_gpa_range: undefined,
  });
}

/**
 * A KVM_RUN of an SEV-SNP guest over [gpa, gpa + pages pages) (SNP walks): 1-4 steps among
 * private (C=1) and shared loads and stores, PVALIDATE (validate or rescind, mostly 4K), GHCB
 * MSR page-state changes (to private or shared) and PSC descriptors (`genPscStep`), with a
 * MAP_GPA_RANGE policy of the VMM (none, convert, convert+discard).
 */
export function genSnpGuestRun(g: Gen, cpu: string, gpa: bigint, pages: number): void {
  const steps: GuestStep[] = [];
  for (let i = 1 + g.r.int(4); i > 0; i--) {
    const page = gpa + BigInt(g.r.int(pages)) * 4096n;
    const choice = g.r.int(10);
    if (choice <= 2) {
      const a = page + BigInt(g.r.int(4093));
      const enc = g.r.chance(0.75);
      steps.push(g.r.chance(0.5) ? guestStore(a, g.r.bytes(4), enc) : guestLoad(a, 4, enc));
    } else if (choice <= 5) {
      steps.push({
        kind: 'pvalidate',
        gpa: g.r.chance(0.95) ? page : page + 8n,
        size: g.r.chance(0.9) ? '4K' : '2M',
        validate: g.r.chance(0.75),
      });
    } else if (choice <= 7) {
      steps.push({ kind: 'psc_msr', gfn: page >> 12n, op: g.r.chance(0.1) ? 3 : 1 + g.r.int(2) });
    } else {
      steps.push(genPscStep(g, gpa >> 12n, pages));
    }
  }
  g.push({
    op: 'KVM_RUN',
    vcpu: { kind: 'handle', name: cpu },
    guest: steps,
    map_gpa_range: g.r.weighted<MapGpaRangePolicy | undefined>([
      [2, undefined],
      [2, 'convert'],
      [1, 'convert+discard'],
    ]),
  });
}

/**
 * A KVM_RUN of a TD's guest over [gpa, gpa + pages pages) (TD walks): 1-5 steps among private
 * loads and stores (mostly on `ready` pages: those the walk added or its guest accepted, which it
 * updates), shared-bit ones, TDG.MEM.PAGE.ACCEPT (4K mostly, 2M over the 4K mappings 6.18
 * makes, misaligned, sometimes twice in a row), ACCEPT followed by an access to the page, and
 * TDG.VP.VMCALL<MapGPA> both ways (runs of pages, 2 MiB, unaligned sizes, past the slot) alone
 * or as a round trip, with a MAP_GPA_RANGE policy of the VMM (none, convert, convert+discard).
 * The run's result.
 */
export function genTdxGuestRun(
  g: Gen,
  cpu: string,
  gpa: bigint,
  pages: number,
  ready: Set<bigint>,
): ResultLine | undefined {
  const r = g.r;
  const steps: GuestStep[] = [];
  const access = (page: bigint, shared: boolean): void => {
    const at = page + BigInt(r.int(4093));
    steps.push(
      r.chance(0.5) ? guestStore(at, r.bytes(4), false, shared) : guestLoad(at, 4, false, shared),
    );
  };
  const accept = (page: bigint): void => {
    steps.push({ kind: 'accept', gpa: page, size: '4K' });
    ready.add(page);
  };
  for (let i = 1 + r.int(5); i > 0; i--) {
    const page = gpa + BigInt(r.int(pages)) * 4096n;
    const choice = r.weighted<number>([
      [4, 0], // a private access
      [1, 1], // a shared-bit access
      [3, 2], // ACCEPT
      [2, 3], // MapGPA
      [1, 4], // ACCEPT, then use the page
      [1, 5], // a conversion round trip
    ]);
    if (choice === 0) {
      access(ready.size > 0 && r.chance(0.75) ? r.pick([...ready]) : page, false);
    } else if (choice === 1) {
      access(page, true);
    } else if (choice === 2) {
      const two = r.chance(0.12);
      let at = two ? page & ~0x1f_ffffn : page;
      if (r.chance(0.04)) at += 8n;
      const step: GuestStep = { kind: 'accept', gpa: at, size: two ? '2M' : '4K' };
      steps.push(step);
      if (r.chance(0.15)) steps.push(step);
      if (!two) ready.add(at);
    } else if (choice === 3) {
      const size = r.weighted<bigint>([
        [8, BigInt(1 + r.int(Math.min(4, pages))) * 4096n],
        [1, 0x20_0000n],
        [1, r.pick([0n, 0x800n, 4096n * BigInt(pages + 1)])],
      ]);
      const shared = r.chance(0.5);
      steps.push({ kind: 'map_gpa', gpa: r.chance(0.97) ? page : page + 0x800n, size, shared });
      if (shared) for (let p = page; p < page + size; p += 4096n) ready.delete(p);
    } else if (choice === 4) {
      // What a Linux guest does with new memory: accept, then use it.
      accept(page);
      access(page, false);
    } else {
      // To shared, used through the shared bit, back to private (and accepted, mostly).
      steps.push({ kind: 'map_gpa', gpa: page, size: 4096n, shared: true });
      ready.delete(page);
      access(page, true);
      steps.push({ kind: 'map_gpa', gpa: page, size: 4096n, shared: false });
      if (r.chance(0.8)) accept(page);
    }
  }
  return g.push({
    op: 'KVM_RUN',
    vcpu: { kind: 'handle', name: cpu },
    guest: steps,
    map_gpa_range: r.weighted<MapGpaRangePolicy | undefined>([
      [1, undefined],
      [3, 'convert'],
      [1, 'convert+discard'],
    ]),
  });
}

/** A PSC entry as the step holds it (`struct psc_entry`). */
type PscStepEntry = Extract<GuestStep, { kind: 'psc' }>['entries'][number];

/**
 * A PSC descriptor step (the PSC NAE event) for a guest whose slot holds gfns [gfn0, gfn0 +
 * pages): 1..253 entries (mostly a few), most continuing the previous entry's range with the same
 * operation (KVM merges those into one KVM_HC_MAP_GPA_RANGE exit), some switching between private
 * and shared at the next gfn (adjacent, not merged), PSMASH/UNSMASH entries, 2M entries (some
 * partly done, some with an unaligned gfn), entries just outside the slot, already completed
 * entries, and rarely an invalid one (an undefined operation, cur_page beyond the entry's pages)
 * or an invalid header (cur_entry past end_entry, end_entry ≥ 253, end_entry past the list).
 * Only SNP walks call it (`snpScenario`), so other profiles' traces are unchanged.
 */
export function genPscStep(g: Gen, gfn0: bigint, pages: number): GuestStep {
  const r = g.r;
  const n = r.weighted<number>([
    [12, 1 + r.int(4)],
    [4, 5 + r.int(12)],
    [1, VMGEXIT_PSC_MAX_COUNT - r.int(8)],
  ]);
  const entries: PscStepEntry[] = [];
  let op = 1 + r.int(2);
  let next = gfn0 + BigInt(r.int(pages));
  for (let i = 0; i < n; i++) {
    // The operation: mostly the previous one (merged), else the other of private/shared.
    op = r.weighted<number>([
      [12, op],
      [5, op === 1 ? 2 : op === 2 ? 1 : 1 + r.int(2)],
      [1, 3 + r.int(2)],
      [0.2, r.pick([0, 5, 15])],
    ]);
    const huge = r.chance(0.06);
    // The gfn: mostly where the previous entry ended, else anywhere in or just outside the slot.
    let gfn = r.weighted<bigint>([
      [12, next],
      [3, gfn0 + BigInt(r.int(pages))],
      [1, r.pick([gfn0 - 1n, gfn0 + BigInt(pages), gfn0 + BigInt(pages) + 1n])],
      [0.3, BigInt(r.int(1 << 20))],
    ]);
    if (huge) gfn = r.chance(0.9) ? gfn0 - (gfn0 % 512n) : gfn | 1n;
    if (gfn < 0n) gfn = 0n;
    const npages = huge ? 512 : 1;
    const curPage = r.weighted<number>([
      [20, 0],
      [1, npages],
      [huge ? 2 : 0, r.chance(0.5) ? 1 + r.int(511) : 512 - 1 - r.int(Math.min(pages, 8))],
      [0.3, npages + 1 + r.int(4095 - npages)],
    ]);
    entries.push({ curPage, gfn, op, pageSize: huge ? 1 : 0 });
    next = gfn + BigInt(npages);
  }
  let curEntry = 0;
  let endEntry = n - 1;
  const hdr = r.int(40);
  if (hdr === 0) curEntry = endEntry + 1 + r.int(3);
  else if (hdr === 1) endEntry = r.pick([VMGEXIT_PSC_MAX_COUNT, 0xffff]);
  else if (hdr === 2) endEntry = Math.min(n + r.int(4), VMGEXIT_PSC_MAX_COUNT - 1);
  else if (hdr <= 5 && n > 1) curEntry = 1 + r.int(n - 1);
  else if (hdr <= 7 && n > 1) endEntry = r.int(n);
  return { kind: 'psc', curEntry, endEntry, entries };
}

/** The vcpu family: its ops and fuzz generators (weights among every family's generators). */
export const VCPU_FAMILY: OpFamily<VcpuFamilyOp> = {
  name: 'vcpu',
  ops: [createVcpu, run],
  generators: [
    [2, genCreateVcpu],
    [8, genRun],
  ],
};
