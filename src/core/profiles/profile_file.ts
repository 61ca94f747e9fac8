/**
 * Profile files: a kernel profile as JSON, written by `gmemlab probe --save FILE` and read by
 * every `--kernel FILE` option. Pure: the caller reads and writes the text.
 *
 *   {
 *     "gmemlab_profile": 1,
 *     "name": "my-host", "description": "...", "checked_against": "6.18.44-...",
 *     "facts": {
 *       "release": "6.18.44-...", "arch": "x86_64", "kvm_module": "kvm_pvm", "mmu": "shadow",
 *       "kconfig": { "guest_memfd": true, "generic_memory_attributes": false,
 *                    "sw_protected_vm": false, "smm": false },
 *       "caps": { "system": { "KVM_CAP_USER_MEMORY": 1, ... }, "vm": { ... } },
 *       "host": { "thp": "madvise", "ram_pages": 6170914, "max_map_count": 65530,
 *                 "huge_pages": 0, "pku": true, "ksm": true }
 *     }
 *   }
 *
 * Capabilities are keyed by name (`KVM_CAP_*`, or `cap N` for an id without a name); absent caps
 * read 0. Every malformed field is reported as `FILE: facts.FIELD: message`.
 */
import { capId, capName } from '../base/cap_names.js';
import { KVM_CAP } from '../base/uapi.js';
import { getProfile } from './index.js';
import { composeProfile } from './compose.js';
import { composeArm64Profile } from './arm64.js';
import { CAP_TABLE_MAX, type KernelFacts, type KvmModule, type ThpMode } from './facts.js';
import type { KernelProfile } from './profile.js';

export const PROFILE_FILE_VERSION = 1;

export class ProfileFileError extends Error {}

function capsToJson(values: readonly number[]): Record<string, number> {
  const o: Record<string, number> = {};
  values.forEach((v, i) => {
    if (v !== 0) o[capName(i)] = v;
  });
  return o;
}

/** The profile file text for a profile (facts and identity). */
export function profileToJson(p: KernelProfile): string {
  const f = p.facts;
  const doc = {
    gmemlab_profile: PROFILE_FILE_VERSION,
    name: p.name,
    description: p.description,
    ...(p.checkedAgainst !== undefined ? { checked_against: p.checkedAgainst } : {}),
    facts: {
      release: f.release,
      arch: f.arch,
      kvm_module: f.kvmModule,
      mmu: f.mmu,
      kconfig: {
        guest_memfd: f.kconfig.guestMemfd,
        generic_memory_attributes: f.kconfig.genericMemoryAttributes,
        sw_protected_vm: f.kconfig.swProtectedVm,
        smm: f.kconfig.smm,
        ...(f.kconfig.gmemMemoryAttributes !== undefined
          ? { gmem_memory_attributes: f.kconfig.gmemMemoryAttributes }
          : {}),
        ...(f.kconfig.gmemHugetlb !== undefined ? { gmem_hugetlb: f.kconfig.gmemHugetlb } : {}),
      },
      ...(f.kvmParams !== undefined
        ? { kvm_params: { vm_memory_attributes: f.kvmParams.vmMemoryAttributes } }
        : {}),
      caps: { system: capsToJson(f.caps.system), vm: capsToJson(f.caps.vm) },
      ...(f.arm64 !== undefined
        ? { arm64: { mode: f.arm64.mode, ipa_limit: f.arm64.ipaLimit } }
        : {}),
      host: {
        thp: f.host.thp,
        ram_pages: f.host.ramPages,
        swap_pages: f.host.swapPages,
        max_map_count: f.host.maxMapCount,
        huge_pages: f.host.hugePages,
        pku: f.host.pku,
        ksm: f.host.ksm,
        aslr: f.host.aslr,
        ...(f.host.gmemHugetlbPools !== undefined
          ? {
              gmem_hugetlb_pools: {
                pages_2m: f.host.gmemHugetlbPools.pages2M,
                pages_1g: f.host.gmemHugetlbPools.pages1G,
              },
            }
          : {}),
      },
    },
  };
  return JSON.stringify(doc, null, 2) + '\n';
}

type Obj = Record<string, unknown>;

class Reader {
  constructor(private readonly file: string) {}

  fail(field: string, msg: string): never {
    throw new ProfileFileError(`${this.file}: ${field === '' ? '(top level)' : field}: ${msg}`);
  }
  obj(v: unknown, field: string, keys: readonly string[], optional: readonly string[] = []): Obj {
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      this.fail(field, 'expected an object');
    const o = v as Obj;
    for (const k of Object.keys(o))
      if (!keys.includes(k) && !optional.includes(k))
        this.fail(
          field === '' ? k : `${field}.${k}`,
          `unknown field (known: ${[...keys, ...optional].join(', ')})`,
        );
    for (const k of keys)
      if (!(k in o)) this.fail(field === '' ? k : `${field}.${k}`, 'missing field');
    return o;
  }
  str(v: unknown, field: string): string {
    if (typeof v !== 'string' || v.length === 0) this.fail(field, 'expected a non-empty string');
    return v;
  }
  bool(v: unknown, field: string): boolean {
    if (typeof v !== 'boolean') this.fail(field, 'expected true or false');
    return v;
  }
  uint(v: unknown, field: string): number {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0)
      this.fail(field, 'expected a non-negative integer');
    return v;
  }
  oneOf<T extends string>(v: unknown, field: string, values: readonly T[]): T {
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v))
      this.fail(field, `expected one of ${values.join(', ')}`);
    return v as T;
  }
  caps(v: unknown, field: string): number[] {
    if (typeof v !== 'object' || v === null || Array.isArray(v))
      this.fail(field, 'expected an object of capability values by name');
    const o = v as Obj;
    const t = new Array<number>(CAP_TABLE_MAX + 1).fill(0);
    const seen = new Map<number, string>();
    for (const [k, val] of Object.entries(o)) {
      const m = /^cap (\d+)$/.exec(k);
      const id = m !== null ? Number(m[1]) : capId(k);
      if (id === undefined || id > CAP_TABLE_MAX)
        this.fail(
          `${field}.${k}`,
          `not a capability name (KVM_CAP_*) or "cap N" with N ≤ ${CAP_TABLE_MAX}`,
        );
      const dup = seen.get(id);
      if (dup !== undefined)
        this.fail(`${field}.${k}`, `capability ${id} is given twice (also as ${dup})`);
      seen.set(id, k);
      // KVM_CHECK_EXTENSION returns an int: a negative value is an errno and never a cap value.
      t[id] = this.uint(val, `${field}.${k}`);
    }
    return t;
  }
}

/** Parse a profile file; throws ProfileFileError naming the file and the field. */
export function profileFromJson(text: string, file: string): KernelProfile {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new ProfileFileError(`${file}: not JSON: ${(e as Error).message}`);
  }
  const r = new Reader(file);
  const top = r.obj(
    doc,
    '',
    ['gmemlab_profile', 'name', 'description', 'facts'],
    ['checked_against'],
  );
  if (top['gmemlab_profile'] !== PROFILE_FILE_VERSION)
    r.fail('gmemlab_profile', `expected ${PROFILE_FILE_VERSION} (the profile file version)`);
  const name = r.str(top['name'], 'name');
  if (getProfile(name) !== undefined || name.endsWith('+host'))
    r.fail('name', `"${name}" is the name of a built-in profile; a profile file needs its own`);
  const description = r.str(top['description'], 'description');
  const checked =
    top['checked_against'] === undefined
      ? undefined
      : r.str(top['checked_against'], 'checked_against');
  const f = r.obj(
    top['facts'],
    'facts',
    ['release', 'arch', 'kvm_module', 'mmu', 'kconfig', 'caps', 'host'],
    ['arm64', 'kvm_params'],
  );
  const k = r.obj(
    f['kconfig'],
    'facts.kconfig',
    ['guest_memfd', 'generic_memory_attributes', 'sw_protected_vm', 'smm'],
    ['gmem_memory_attributes', 'gmem_hugetlb'],
  );
  const c = r.obj(f['caps'], 'facts.caps', ['system', 'vm']);
  const h = r.obj(
    f['host'],
    'facts.host',
    ['thp', 'ram_pages', 'swap_pages', 'max_map_count', 'huge_pages', 'pku', 'ksm', 'aslr'],
    ['gmem_hugetlb_pools'],
  );
  const facts: KernelFacts = {
    release: r.str(f['release'], 'facts.release'),
    arch: r.oneOf(f['arch'], 'facts.arch', ['x86_64', 'aarch64'] as const),
    kvmModule: r.oneOf<KvmModule>(f['kvm_module'], 'facts.kvm_module', [
      'kvm_intel',
      'kvm_amd',
      'kvm_pvm',
      'kvm_arm64',
    ]),
    mmu: r.oneOf(f['mmu'], 'facts.mmu', ['tdp', 'shadow'] as const),
    kconfig: {
      guestMemfd: r.bool(k['guest_memfd'], 'facts.kconfig.guest_memfd'),
      genericMemoryAttributes: r.bool(
        k['generic_memory_attributes'],
        'facts.kconfig.generic_memory_attributes',
      ),
      swProtectedVm: r.bool(k['sw_protected_vm'], 'facts.kconfig.sw_protected_vm'),
      smm: r.bool(k['smm'], 'facts.kconfig.smm'),
      ...(k['gmem_memory_attributes'] !== undefined
        ? {
            gmemMemoryAttributes: r.bool(
              k['gmem_memory_attributes'],
              'facts.kconfig.gmem_memory_attributes',
            ),
          }
        : {}),
      ...(k['gmem_hugetlb'] !== undefined
        ? { gmemHugetlb: r.bool(k['gmem_hugetlb'], 'facts.kconfig.gmem_hugetlb') }
        : {}),
    },
    caps: {
      system: r.caps(c['system'], 'facts.caps.system'),
      vm: r.caps(c['vm'], 'facts.caps.vm'),
    },
    host: {
      thp: r.oneOf<ThpMode>(h['thp'], 'facts.host.thp', ['always', 'madvise', 'never']),
      ramPages: r.uint(h['ram_pages'], 'facts.host.ram_pages'),
      swapPages: r.uint(h['swap_pages'], 'facts.host.swap_pages'),
      maxMapCount: r.uint(h['max_map_count'], 'facts.host.max_map_count'),
      hugePages: r.uint(h['huge_pages'], 'facts.host.huge_pages'),
      pku: r.bool(h['pku'], 'facts.host.pku'),
      ksm: r.bool(h['ksm'], 'facts.host.ksm'),
      aslr: r.bool(h['aslr'], 'facts.host.aslr'),
      ...(h['gmem_hugetlb_pools'] !== undefined
        ? { gmemHugetlbPools: hugetlbPools(r, h['gmem_hugetlb_pools']) }
        : {}),
    },
    ...(f['arm64'] !== undefined ? { arm64: arm64Facts(r, f['arm64']) } : {}),
    ...(f['kvm_params'] !== undefined ? { kvmParams: kvmParams(r, f['kvm_params']) } : {}),
  };
  // arm64 facts go with an arm64 kernel, and only there (its VM types and caps are arm64's).
  const arm = facts.arch === 'aarch64';
  if (arm !== (facts.kvmModule === 'kvm_arm64') || arm !== (facts.arm64 !== undefined))
    r.fail(
      'facts.arch',
      'aarch64 goes with kvm_module kvm_arm64 and the arm64 facts, and only with them',
    );
  // Facts that contradict each other: each Kconfig switch and the MMU kind show in a capability.
  const sys = facts.caps.system;
  const agree = (field: string, shown: string, holds: boolean, cap: number, why: string): void => {
    if (holds !== (sys[cap]! !== 0))
      r.fail(field, `is ${shown}, but ${capName(cap)} on /dev/kvm is ${sys[cap]} (${why})`);
  };
  agree(
    'facts.kconfig.guest_memfd',
    String(facts.kconfig.guestMemfd),
    facts.kconfig.guestMemfd,
    KVM_CAP.KVM_CAP_GUEST_MEMFD,
    'non-zero exactly with guest_memfd',
  );
  // (x86 only: arm64 always has its stage-2 and 6.18 has no KVM_PRE_FAULT_MEMORY there.)
  if (!arm)
    agree(
      'facts.mmu',
      facts.mmu,
      facts.mmu === 'tdp',
      KVM_CAP.KVM_CAP_PRE_FAULT_MEMORY,
      'non-zero exactly with tdp',
    );
  if (!facts.kconfig.genericMemoryAttributes && sys[KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES]! !== 0)
    r.fail(
      'facts.kconfig.generic_memory_attributes',
      `is false, but KVM_CAP_MEMORY_ATTRIBUTES on /dev/kvm is ${sys[KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES]}`,
    );
  const id = { name, description, ...(checked !== undefined ? { checkedAgainst: checked } : {}) };
  return arm ? composeArm64Profile(id, facts) : composeProfile(id, facts);
}

/** `facts.kvm_params`: the KVM module parameters that change the uAPI. */
function kvmParams(r: Reader, v: unknown): NonNullable<KernelFacts['kvmParams']> {
  const a = r.obj(v, 'facts.kvm_params', ['vm_memory_attributes']);
  return {
    vmMemoryAttributes: r.bool(a['vm_memory_attributes'], 'facts.kvm_params.vm_memory_attributes'),
  };
}

/** `facts.host.gmem_hugetlb_pools`: the 2M and 1G hstates' free pages for HugeTLB guest_memfd. */
function hugetlbPools(r: Reader, v: unknown): NonNullable<KernelFacts['host']['gmemHugetlbPools']> {
  const a = r.obj(v, 'facts.host.gmem_hugetlb_pools', ['pages_2m', 'pages_1g']);
  return {
    pages2M: r.uint(a['pages_2m'], 'facts.host.gmem_hugetlb_pools.pages_2m'),
    pages1G: r.uint(a['pages_1g'], 'facts.host.gmem_hugetlb_pools.pages_1g'),
  };
}

/** `facts.arm64`: `kvm-arm.mode` and `kvm_ipa_limit`. */
function arm64Facts(r: Reader, v: unknown): NonNullable<KernelFacts['arm64']> {
  const a = r.obj(v, 'facts.arm64', ['mode', 'ipa_limit']);
  const ipaLimit = r.uint(a['ipa_limit'], 'facts.arm64.ipa_limit');
  if (ipaLimit < 32 || ipaLimit > 52) r.fail('facts.arm64.ipa_limit', 'expected 32..52 (bits)');
  return {
    mode: r.oneOf(a['mode'], 'facts.arm64.mode', ['nvhe', 'vhe', 'protected'] as const),
    ipaLimit,
  };
}
