/**
 * Kernel facts of the live machine: the probe trace (only trace ops: KVM_CHECK_EXTENSION on
 * /dev/kvm and a VM, KVM_CREATE_VM per type, KVM_CREATE_GUEST_MEMFD per flag, a vCPU running an
 * empty guest program, KVM_SET_MEMORY_ATTRIBUTES, KVM_PRE_FAULT_MEMORY) and the facts its answers
 * show. Matching them with profiles is core/profiles/match.ts.
 */
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { CAP_TABLE_MAX, type KernelFacts } from '../core/profiles/facts.js';
import { KVM_CAP } from '../core/base/uapi.js';
import { runTrace } from '../trace/runner.js';
import type { Backend, ResultLine, TraceOpInput, TraceOp } from '../trace/types.js';
import { kvmModule, readHostFacts } from '../backends/kvm/host_facts.js';

/** What the live kernel answered to the probe trace. */
export type ProbeAnswers = {
  readonly kernel: string;
  readonly systemCaps: number[];
  readonly vmCaps: number[];
  readonly vmTypes: Record<string, string>;
  readonly gmemFlags: Record<string, string>;
  readonly vcpuRuns: string;
  readonly memoryAttributes: string;
  readonly preFault: string;
};

const H = (name: string) => ({ kind: 'handle' as const, name });

function valueOf(r: ResultLine): number {
  return !('fault' in r) && r.ok && typeof r.value === 'bigint' ? Number(r.value) : -1;
}
function brief(r: ResultLine): string {
  if ('fault' in r) return r.fault;
  if (!r.ok) return r.errno;
  if (r.exits !== undefined) return r.exits.map((e) => e.reason).join(',');
  return 'ok';
}

/** Run the probe trace on a backend and collect its answers. */
export function probe(b: Backend): ProbeAnswers {
  const ops: TraceOpInput[] = [];
  for (let c = 0; c <= CAP_TABLE_MAX; c++)
    ops.push({ op: 'KVM_CHECK_EXTENSION', fd: H('kvm'), cap: BigInt(c) });
  ops.push({ op: 'KVM_CREATE_VM', fd: H('kvm'), type: 0n, as: 'vm' });
  for (let c = 0; c <= CAP_TABLE_MAX; c++)
    ops.push({ op: 'KVM_CHECK_EXTENSION', fd: H('vm'), cap: BigInt(c) });
  for (let t = 0; t <= 5; t++) ops.push({ op: 'KVM_CREATE_VM', fd: H('kvm'), type: BigInt(t) });
  for (const f of [0n, 1n, 2n, 3n, 4n])
    ops.push({ op: 'KVM_CREATE_GUEST_MEMFD', vm: H('vm'), size: 4096n, flags: f });
  ops.push({ op: 'KVM_CREATE_VCPU', vm: H('vm'), id: 0n, as: 'cpu' });
  ops.push({ op: 'KVM_RUN', vcpu: H('cpu'), guest: [] });
  ops.push({
    op: 'KVM_SET_MEMORY_ATTRIBUTES',
    vm: H('vm'),
    address: 0n,
    size: 4096n,
    attributes: 0n,
    flags: 0n,
  });
  ops.push({
    op: 'KVM_PRE_FAULT_MEMORY',
    vcpu: H('cpu'),
    gpa: 0xfffff000n,
    size: 4096n,
    flags: 0n,
  });
  const full = ops.map((o, i) => ({ ...o, line: i + 1 }) as TraceOp);
  const r = runTrace(full, b);
  let i = 0;
  const systemCaps = r.slice(0, CAP_TABLE_MAX + 1).map(valueOf);
  i = CAP_TABLE_MAX + 2;
  const vmCaps = r.slice(i, i + CAP_TABLE_MAX + 1).map(valueOf);
  i += CAP_TABLE_MAX + 1;
  const vmTypes: Record<string, string> = {};
  for (let t = 0; t <= 5; t++) vmTypes[String(t)] = brief(r[i++]!);
  const gmemFlags: Record<string, string> = {};
  for (const f of [0, 1, 2, 3, 4]) gmemFlags[String(f)] = brief(r[i++]!);
  i++; // vCPU
  const vcpuRuns = brief(r[i++]!);
  const memoryAttributes = brief(r[i++]!);
  const preFault = brief(r[i++]!);
  return {
    kernel: release(),
    systemCaps,
    vmCaps,
    vmTypes,
    gmemFlags,
    vcpuRuns,
    memoryAttributes,
    preFault,
  };
}

/**
 * `kvm.vm_memory_attributes` (the in-place conversion series with CONFIG_KVM_VM_MEMORY_ATTRIBUTES,
 * a read-only bool parameter: Y or N), or undefined where the kernel has no such parameter.
 */
function vmMemoryAttributesParam(): boolean | undefined {
  try {
    const v = readFileSync('/sys/module/kvm/parameters/vm_memory_attributes', 'utf8').trim();
    return v === 'Y' || v === '1';
  } catch {
    return undefined;
  }
}

/**
 * The kernel facts the answers show. Each Kconfig switch is read off the ioctl it adds: ENOTTY
 * means the ioctl is not compiled in. The in-place conversion series shows in its module
 * parameter or, without CONFIG_KVM_VM_MEMORY_ATTRIBUTES, in KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES.
 */
export function factsFromAnswers(a: ProbeAnswers): KernelFacts {
  const caps = (t: readonly number[]): number[] => t.map((v) => (v < 0 ? 0 : v));
  const param = vmMemoryAttributesParam();
  const series =
    param !== undefined || (a.systemCaps[KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES] ?? 0) > 0;
  return {
    release: a.kernel,
    arch: 'x86_64',
    kvmModule: kvmModule(),
    // KVM_CAP_PRE_FAULT_MEMORY is `tdp_enabled` (kvm_vm_ioctl_check_extension()).
    mmu: (a.systemCaps[KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY] ?? 0) > 0 ? 'tdp' : 'shadow',
    kconfig: {
      guestMemfd: a.gmemFlags['0'] !== 'ENOTTY',
      genericMemoryAttributes: a.memoryAttributes !== 'ENOTTY',
      swProtectedVm: a.vmTypes['1'] === 'ok',
      smm: (a.vmCaps[KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE] ?? 0) > 1,
      ...(series ? { gmemMemoryAttributes: true } : {}),
    },
    ...(param !== undefined ? { kvmParams: { vmMemoryAttributes: param } } : {}),
    caps: { system: caps(a.systemCaps), vm: caps(a.vmCaps) },
    host: readHostFacts(),
  };
}
