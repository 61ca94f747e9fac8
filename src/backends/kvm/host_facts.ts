/**
 * The host facts of this machine (`HostFacts`), read from /proc and /sys, and which KVM vendor
 * module backs /dev/kvm. Node-only: the pure core receives them through a profile.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { HostFacts, KvmModule, ThpMode } from '../../core/profiles/facts.js';

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** `always [madvise] never` -> madvise; undefined when THP is not built in. */
function thpMode(): ThpMode {
  const t = read('/sys/kernel/mm/transparent_hugepage/enabled');
  const m = t === undefined ? null : /\[(always|madvise|never)\]/.exec(t);
  return m === null ? 'never' : (m[1] as ThpMode);
}

function intFrom(path: string, fallback: number): number {
  const v = Number.parseInt(read(path) ?? '', 10);
  return Number.isSafeInteger(v) && v >= 0 ? v : fallback;
}

/** The CPU flags of /proc/cpuinfo, or undefined when it cannot be read (EMFILE, say). */
function cpuFlags(): Set<string> | undefined {
  const text = read('/proc/cpuinfo');
  if (text === undefined) return undefined;
  const m = /^flags\s*:(.*)$/m.exec(text);
  return new Set(m === null ? [] : m[1]!.trim().split(/\s+/));
}

let pkuCache: boolean | undefined;

/**
 * Whether execute-only mappings carry a protection key here (cpuinfo `ospke`), read once; a
 * failed read answers false without being remembered, so the next call reads again.
 */
export function hostHasPku(): boolean {
  if (pkuCache !== undefined) return pkuCache;
  const flags = cpuFlags();
  if (flags !== undefined) pkuCache = flags.has('ospke');
  return flags?.has('ospke') ?? false;
}

/** ADDR_NO_RANDOMIZE in the process personality (setarch -R). */
const ADDR_NO_RANDOMIZE = 0x0040000;

function aslrOn(): boolean {
  const personality = Number.parseInt(read('/proc/self/personality') ?? '0', 16);
  const mode = intFrom('/proc/sys/kernel/randomize_va_space', 2);
  return mode !== 0 && (personality & ADDR_NO_RANDOMIZE) === 0;
}

export function readHostFacts(): HostFacts {
  const meminfo = read('/proc/meminfo') ?? '';
  const kb = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(meminfo);
    return m === null ? 0 : Math.floor(Number(m[1]) / 4);
  };
  return {
    thp: thpMode(),
    ramPages: kb('MemTotal'),
    swapPages: kb('SwapTotal'),
    maxMapCount: intFrom('/proc/sys/vm/max_map_count', 65530),
    hugePages: intFrom('/proc/sys/vm/nr_hugepages', 0),
    // Execute-only protection keys need the OS to have enabled PKU (CR4.PKE): cpuinfo `ospke`.
    pku: hostHasPku(),
    ksm: existsSync('/sys/kernel/mm/ksm'),
    aslr: aslrOn(),
  };
}

/** The vendor module of /dev/kvm: /sys/module/kvm_pvm, else kvm_intel / kvm_amd by CPU vendor. */
export function kvmModule(): KvmModule {
  for (const m of ['kvm_pvm', 'kvm_intel', 'kvm_amd'] as const)
    if (existsSync(`/sys/module/${m}`)) return m;
  return /AuthenticAMD/.test(read('/proc/cpuinfo') ?? '') ? 'kvm_amd' : 'kvm_intel';
}
