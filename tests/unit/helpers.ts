/**
 * Shared helpers for the unit tests of src/core: build a `Host` of a named profile, create VMs,
 * guest_memfds, memslots and mappings through the public API, and assert `Result`s.
 * Not a test file itself (the runner only picks `*.test.js`).
 */
import assert from 'node:assert/strict';
import { Host } from '../../src/core/host.js';
import { ALL_PARTS } from '../../src/core/all_parts.js';
import { getProfile } from '../../src/core/profiles/index.js';
import type { Result } from '../../src/core/base/result.js';
import { GmemFile, VcpuFile, VmFile, type Vm, type Vcpu } from '../../src/core/kvm/objects.js';
import {
  guestLoad as loadStep,
  guestStore as storeStep,
  type GuestProgramStep,
} from '../../src/core/arch/x86/kvm_run.js';
import type { MemoryRegionChange } from '../../src/core/kvm/memslots.js';
import { exitToTrace, type ModelBackend } from '../../src/backends/model.js';
import { parseTrace } from '../../src/trace/parse.js';
import { checkedRunSteps } from '../../src/check/checked_run.js';
import { resultToJson } from '../../src/trace/format.js';
import type { KernelProfile } from '../../src/core/profiles/profile.js';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  GUEST_MEMFD_FLAG_INIT_SHARED,
  GUEST_MEMFD_FLAG_MMAP,
  KVM_MEM_GUEST_MEMFD,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_MEM_READONLY,
  KVM_MEMORY_ATTRIBUTE_PRIVATE,
  KVM_MEMORY_EXIT_FLAG_PRIVATE,
  KVM_X86_DEFAULT_VM,
  KVM_X86_SW_PROTECTED_VM,
  MAP_PRIVATE,
  MAP_SHARED,
  PROT_READ,
  PROT_WRITE,
} from '../../src/core/base/uapi.js';
import { MMAP_ARENA_BASE } from '../../src/core/mm/host_layout.js';

export const PAGE = 4096n;
export const MiB = 1n << 20n;
export const GiB = 1n << 30n;

// The uAPI values, from the model's own table (one definition), under the short names the tests use.
export {
  PROT_NONE,
  PROT_READ,
  PROT_WRITE,
  PROT_EXEC,
  MAP_SHARED,
  MAP_PRIVATE,
  MAP_SHARED_VALIDATE,
  MADV_DONTNEED,
  MADV_REMOVE,
} from '../../src/core/base/uapi.js';
export const RW = PROT_READ | PROT_WRITE;

export const KEEP_SIZE = FALLOC_FL_KEEP_SIZE;
export const PUNCH_HOLE = FALLOC_FL_PUNCH_HOLE;
export const PUNCH = KEEP_SIZE | PUNCH_HOLE;

export const GMEM_MMAP = GUEST_MEMFD_FLAG_MMAP;
export const GMEM_INIT_SHARED = GUEST_MEMFD_FLAG_INIT_SHARED;
export const GMEM_SHARED = GMEM_MMAP | GMEM_INIT_SHARED;

export const MEM_LOG_DIRTY = KVM_MEM_LOG_DIRTY_PAGES;
export const MEM_READONLY = KVM_MEM_READONLY;
export const MEM_GUEST_MEMFD = KVM_MEM_GUEST_MEMFD;

export const ATTR_PRIVATE = KVM_MEMORY_ATTRIBUTE_PRIVATE;
export const EXIT_FLAG_PRIVATE = KVM_MEMORY_EXIT_FLAG_PRIVATE;

export const DEFAULT_VM = KVM_X86_DEFAULT_VM;
export const SW_PROTECTED_VM = KVM_X86_SW_PROTECTED_VM;

/** The first trace-arena address. */
export const ARENA_BASE = MMAP_ARENA_BASE;

export type Ctx = { readonly h: Host; readonly kvm: number };

/** A fresh host of `profile` with /dev/kvm open. */
export function newHost(profile = 'linux-6.18'): Ctx {
  const p = getProfile(profile);
  assert.ok(p, `profile ${profile} exists`);
  const h = new Host(p, { parts: ALL_PARTS });
  return { h, kvm: h.openDevKvm() };
}

/** Assert success and return the value. */
export function ok<T>(r: Result<T>, what = 'call'): T {
  if (!r.ok) assert.fail(`${what}: expected success, got ${r.errno} (${r.check})`);
  return r.value;
}

/** Assert failure with `errno`. */
export function fails(r: Result<unknown>, errno: string, what = 'call'): void {
  if (r.ok) assert.fail(`${what}: expected ${errno}, got success`);
  assert.equal(r.errno, errno, `${what}: expected ${errno}, got ${r.errno} (${r.check})`);
}

export function createVm(c: Ctx, type = DEFAULT_VM): number {
  return ok(c.h.kvmCreateVm(c.kvm, type), 'KVM_CREATE_VM');
}

export function createGmem(c: Ctx, vm: number, size: bigint, flags = 0n): number {
  return ok(c.h.kvmCreateGuestMemfd(vm, size, flags), 'KVM_CREATE_GUEST_MEMFD');
}

export type Region = {
  slot?: bigint;
  flags?: bigint;
  gpa?: bigint;
  size?: bigint;
  uaddr?: bigint;
  offset?: bigint;
  /** The struct's guest_memfd field (default -1: not open). */
  gmem?: number;
  v1?: boolean;
};

/** KVM_SET_USER_MEMORY_REGION(2) with defaults (slot 0, flags 0, gpa 0, size 0, uaddr 0). */
export function setRegion(c: Ctx, vm: number, r: Region): Result<MemoryRegionChange> {
  return c.h.kvmSetUserMemoryRegion(
    vm,
    {
      slot: r.slot ?? 0n,
      flags: r.flags ?? 0n,
      guest_phys_addr: r.gpa ?? 0n,
      memory_size: r.size ?? 0n,
      userspace_addr: r.uaddr ?? 0n,
      guest_memfd_offset: r.offset ?? 0n,
    },
    r.gmem ?? -1,
    r.v1 ?? false,
  );
}

export function mmapAnon(c: Ctx, len: bigint, prot = RW, flags = MAP_PRIVATE): bigint {
  return ok(c.h.mmap(null, len, prot, flags, 0n), 'mmap anon');
}

export function mmapFd(c: Ctx, fd: number, len: bigint, prot = RW, offset = 0n): bigint {
  return ok(c.h.mmap(fd, len, prot, MAP_SHARED, offset), 'mmap fd');
}

export function bytes(hex: string): Uint8Array {
  const out = new Uint8Array(hex.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join('');
}

/** peek that must succeed; returns hex. */
export function peekHex(c: Ctx, addr: bigint, len: number): string {
  const r = c.h.peek(addr, len);
  if (!r.ok) assert.fail(`peek ${addr.toString(16)}: ${r.fault}`);
  return toHex(r.data!);
}

export function poke(c: Ctx, addr: bigint, hex: string): void {
  const r = c.h.poke(addr, bytes(hex));
  if (!r.ok) assert.fail(`poke ${addr.toString(16)}: ${r.fault}`);
}

export function vmOf(c: Ctx, vmfd: number): Vm {
  const f = c.h.file(vmfd);
  assert.ok(f instanceof VmFile);
  return f.vm;
}

export function gmemOf(c: Ctx, fd: number): GmemFile {
  const f = c.h.file(fd);
  assert.ok(f instanceof GmemFile);
  return f;
}

export function vcpuOf(c: Ctx, fd: number): Vcpu {
  const f = c.h.file(fd);
  assert.ok(f instanceof VcpuFile);
  return f.vcpu;
}

export function createVcpu(c: Ctx, vm: number, id = 0n): number {
  return ok(c.h.kvmCreateVcpu(vm, id), 'KVM_CREATE_VCPU');
}

export const load = (gpa: bigint, size: 1 | 2 | 4 = 4): GuestProgramStep => loadStep(gpa, size);
export const store = (gpa: bigint, hex: string): GuestProgramStep => storeStep(gpa, bytes(hex));

/** Run a guest program and return [errno, compact exits]. */
export function runGuest(
  c: Ctx,
  vcpu: number,
  steps: readonly GuestProgramStep[],
): { errno: string | undefined; exits: Array<Record<string, unknown>> } {
  const r = c.h.kvmRun(vcpu, steps);
  return { errno: r.errno, exits: r.exits.map(exitToTrace) as Array<Record<string, unknown>> };
}

/** The value a single load at `gpa` produced (asserting the run ended with HLT). */
export function guestLoad(c: Ctx, vcpu: number, gpa: bigint, size: 1 | 2 | 4 = 4): string {
  const r = runGuest(c, vcpu, [load(gpa, size)]);
  assert.equal(r.errno, undefined, `load ${gpa.toString(16)}: ${js(r.exits)}`);
  const l = r.exits.find((e) => e.reason === 'LOAD');
  assert.ok(l, `no LOAD exit: ${js(r.exits)}`);
  assert.equal(r.exits.at(-1)!.reason, 'HLT');
  return l['hex'] as string;
}

/** A guest store that must complete normally (no exit other than HLT). */
export function guestStore(c: Ctx, vcpu: number, gpa: bigint, hex: string): void {
  const r = runGuest(c, vcpu, [store(gpa, hex)]);
  assert.equal(r.errno, undefined, `store ${gpa.toString(16)}: ${js(r.exits)}`);
  assert.deepEqual(r.exits, [{ reason: 'HLT' }]);
}

/** JSON with bigints as strings (for assertion messages). */
export function js(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (typeof x === 'bigint' ? x.toString() : x));
}

/** Number of stage-2 pages mapped in [gfnStart, gfnEnd) of address space 0. */
export function mappedPages(vm: Vm, gfnStart: number, gfnEnd: number): number {
  return vm.stage2[0]!.countIn(gfnStart, gfnEnd);
}

/**
 * Run trace `lines` (op objects, parsed as a .jsonl file: no parse error allowed) with every
 * invariant checked after every op on `profile`: each op's result line as JSON, each violation as
 * `invariant: message`, and the backend left at the end.
 */
export function runCheckedLines(
  lines: readonly object[],
  profile: KernelProfile,
): { results: string[]; violations: string[]; backend: ModelBackend } {
  const p = parseTrace(lines.map((l) => JSON.stringify(l)).join('\n') + '\n', 't.jsonl');
  assert.deepEqual(
    p.errors.map((e) => e.message),
    [],
  );
  const g = checkedRunSteps(p.ops, profile, { keepResults: true });
  let n = g.next();
  while (n.done !== true) n = g.next();
  const r = n.value;
  return {
    results: r.results.map((x) => JSON.stringify(resultToJson(x))),
    violations: r.failures.flatMap((f) => f.violations.map((v) => `${v.invariant}: ${v.message}`)),
    backend: r.backend as ModelBackend,
  };
}
