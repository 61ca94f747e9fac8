/**
 * `gmemlab probe [--json] [--profile]`: read the running kernel's KVM capabilities through the
 * real backend (only trace ops: KVM_CHECK_EXTENSION on /dev/kvm and a VM, KVM_CREATE_VM per type,
 * KVM_CREATE_GUEST_MEMFD per flag, a vCPU running an empty guest program) and match them with the
 * model's kernel profiles.
 */
import { release } from 'node:os';
import { PROFILES, type KernelProfile } from '../core/profiles/index.js';
import { KVM_CAP } from '../core/uapi.js';
import { vmTypesMask } from '../core/profiles/profile.js';
import { runTrace } from '../trace/runner.js';
import type { Backend, ResultLine, TraceOpInput, TraceOp } from '../trace/types.js';
import { parseArgs } from './args.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError, profileOrUsage } from './io.js';
import { openBackend } from './replay.js';

export const PROBE_HELP = `usage: gmemlab probe [--json] [--profile]

Read this machine's /dev/kvm: API version, VM types, capabilities on /dev/kvm and on a VM fd,
guest_memfd flags, whether a vCPU runs guest code; then name the model profile that matches.

  --json      print the facts as JSON
  --profile   print only the matching profile name (exit 1 and the reason when none matches)

Exit codes: 0 ok, 1 no profile matches (--profile), 2 /dev/kvm unavailable.`;

export const MAX_CAP = 260;

export type ProbeFacts = {
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

/** Run the probe trace on a backend and collect the facts. */
export function probe(b: Backend): ProbeFacts {
  const ops: TraceOpInput[] = [];
  for (let c = 0; c <= MAX_CAP; c++)
    ops.push({ op: 'KVM_CHECK_EXTENSION', fd: H('kvm'), cap: BigInt(c) });
  ops.push({ op: 'KVM_CREATE_VM', fd: H('kvm'), type: 0n, as: 'vm' });
  for (let c = 0; c <= MAX_CAP; c++)
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
  const systemCaps = r.slice(0, MAX_CAP + 1).map(valueOf);
  i = MAX_CAP + 2;
  const vmCaps = r.slice(i, i + MAX_CAP + 1).map(valueOf);
  i += MAX_CAP + 1;
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

/** Capabilities that decide which profile describes a kernel. */
const KEY_CAPS: ReadonlyArray<readonly [string, number]> = [
  ['KVM_CAP_VM_TYPES', KVM_CAP.KVM_CAP_VM_TYPES],
  ['KVM_CAP_GUEST_MEMFD', KVM_CAP.KVM_CAP_GUEST_MEMFD],
  ['KVM_CAP_GUEST_MEMFD_FLAGS', KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS],
  ['KVM_CAP_MEMORY_ATTRIBUTES', KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES],
  ['KVM_CAP_PRE_FAULT_MEMORY', KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY],
  ['KVM_CAP_USER_MEMORY2', KVM_CAP.KVM_CAP_USER_MEMORY2],
  ['KVM_CAP_MEMORY_FAULT_INFO', KVM_CAP.KVM_CAP_MEMORY_FAULT_INFO],
  ['KVM_CAP_EXIT_HYPERCALL', KVM_CAP.KVM_CAP_EXIT_HYPERCALL],
  ['KVM_CAP_NR_MEMSLOTS', KVM_CAP.KVM_CAP_NR_MEMSLOTS],
  ['KVM_CAP_MULTI_ADDRESS_SPACE', KVM_CAP.KVM_CAP_MULTI_ADDRESS_SPACE],
  ['KVM_CAP_MAX_VCPUS', KVM_CAP.KVM_CAP_MAX_VCPUS],
  ['KVM_CAP_MAX_VCPU_ID', KVM_CAP.KVM_CAP_MAX_VCPU_ID],
];

/** Differences between the facts and what a profile predicts (empty: the profile matches). */
export function profileMismatches(p: KernelProfile, f: ProbeFacts): string[] {
  const out: string[] = [];
  for (const [name, id] of KEY_CAPS) {
    const sys = id === KVM_CAP.KVM_CAP_VM_TYPES ? vmTypesMask(p) : (p.systemCaps.get(id) ?? 0n);
    if (BigInt(f.systemCaps[id] ?? -1) !== sys)
      out.push(`${name} on /dev/kvm is ${f.systemCaps[id]}, profile ${p.name} says ${sys}`);
  }
  const def = p.vmTypes.get(0n);
  if (def !== undefined) {
    const gm = f.vmCaps[KVM_CAP.KVM_CAP_GUEST_MEMFD_FLAGS];
    if (BigInt(gm ?? -1) !== def.gmemFlags)
      out.push(
        `KVM_CAP_GUEST_MEMFD_FLAGS on a DEFAULT VM is ${gm}, profile ${p.name} says ${def.gmemFlags}`,
      );
  }
  for (let t = 0; t <= 5; t++) {
    const offered = p.vmTypes.has(BigInt(t));
    const got = f.vmTypes[String(t)] === 'ok';
    if (offered !== got)
      out.push(
        `KVM_CREATE_VM(${t}) ${got ? 'succeeds' : 'fails'}, profile ${p.name} says it ${offered ? 'succeeds' : 'fails'}`,
      );
  }
  const attrs = f.memoryAttributes === 'ENOTTY' ? false : true;
  if (attrs !== p.memoryAttributesConfig)
    out.push(
      `KVM_SET_MEMORY_ATTRIBUTES is ${f.memoryAttributes}, profile ${p.name} ${p.memoryAttributesConfig ? 'has' : 'lacks'} it`,
    );
  return out;
}

export function matchProfile(f: ProbeFacts): {
  profile?: KernelProfile;
  reasons: Map<string, string[]>;
} {
  const reasons = new Map<string, string[]>();
  for (const p of PROFILES) {
    const m = profileMismatches(p, f);
    if (m.length === 0) return { profile: p, reasons };
    reasons.set(p.name, m);
  }
  return { reasons };
}

export async function probeMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, { json: 'bool', profile: 'bool', help: 'bool' });
  if (p.opts.has('help')) {
    out(PROBE_HELP);
    return EXIT_OK;
  }
  const b = await openBackend('kvm', undefined);
  const f = probe(b);
  const m = matchProfile(f);
  if (p.opts.has('profile')) {
    if (m.profile !== undefined) {
      out(m.profile.name);
      return EXIT_OK;
    }
    out('no matching profile:');
    for (const [name, rs] of m.reasons) for (const r of rs) out(`  ${name}: ${r}`);
    return EXIT_CHECK_FAILED;
  }
  if (p.opts.has('json')) {
    out(
      JSON.stringify({
        ...f,
        profile: m.profile?.name ?? null,
        mismatches: Object.fromEntries(m.reasons),
      }),
    );
    return EXIT_OK;
  }
  out(`kernel            ${f.kernel}`);
  out(`matching profile  ${m.profile?.name ?? 'none'}`);
  out(
    `VM types          ${Object.entries(f.vmTypes)
      .map(([t, v]) => `${t}:${v}`)
      .join(' ')}`,
  );
  out(
    `guest_memfd flags ${Object.entries(f.gmemFlags)
      .map(([t, v]) => `${t}:${v}`)
      .join(' ')}`,
  );
  out(`vCPU runs         ${f.vcpuRuns}`);
  out(`set attributes    ${f.memoryAttributes}`);
  out(`pre-fault         ${f.preFault}`);
  out('');
  out('capability                         /dev/kvm    VM fd');
  for (const [name, id] of Object.entries(KVM_CAP))
    out(
      `${name.padEnd(34)} ${String(f.systemCaps[id]).padStart(8)} ${String(f.vmCaps[id]).padStart(8)}`,
    );
  const nonzero = f.systemCaps
    .map((v, i) => [i, v, f.vmCaps[i]] as const)
    .filter(([, s, v]) => s !== 0 || v !== 0);
  out('');
  out(
    `all non-zero caps (id:system/vm): ${nonzero.map(([i, s, v]) => (s === v ? `${i}:${s}` : `${i}:${s}/${v}`)).join(' ')}`,
  );
  if (m.profile === undefined) {
    out('');
    out('no profile matches:');
    for (const [name, rs] of m.reasons) for (const r of rs) out(`  ${name}: ${r}`);
  }
  return EXIT_OK;
}

/**
 * The two backends of a model-vs-kernel comparison (diff, differential fuzzing): /dev/kvm and a
 * model of profile `kernel`, or of the profile `probe` matches to this kernel when it is undefined.
 */
export async function openKvmAndModel(
  kernel: string | undefined,
): Promise<{ kvm: Backend; model: Backend; profile: KernelProfile }> {
  const kvm = await openBackend('kvm', undefined);
  let profile: KernelProfile;
  if (kernel === undefined) {
    const m = matchProfile(probe(kvm));
    if (m.profile === undefined)
      throw new InputError(
        'no model profile matches this kernel (see gmemlab probe); pass --kernel',
      );
    profile = m.profile;
  } else profile = profileOrUsage(kernel);
  return { kvm, model: await openBackend('model', profile.name), profile };
}
