/**
 * Opening backends and choosing profiles for every command: `--kernel` takes a profile name or a
 * profile file (`gmemlab probe --save`); without it every command uses the same default, the
 * profile that matches this machine's kernel, else `DEFAULT_PROFILE` (README "Kernel profiles").
 */
import { existsSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { ModelBackend } from '../backends/model.js';
import type { HostOptions } from '../core/host.js';
import { composeProfile } from '../core/profiles/compose.js';
import {
  DEFAULT_PROFILE,
  getProfile,
  profileNames,
  type KernelProfile,
} from '../core/profiles/index.js';
import { profileFromJson, ProfileFileError } from '../core/profiles/profile_file.js';
import type { Backend, TraceOp } from '../trace/types.js';
import { UsageError } from './args.js';
import { InputError, MAX_SMALL_FILE_BYTES, readText } from './io.js';
import { factsFromAnswers, probe, type ProbeAnswers } from './kernel_facts.js';
import { HOST_CAPS, matchProfile, type ProfileMatch } from '../core/profiles/match.js';
import {
  factValue,
  NEEDABLE_FACTS,
  type HostFacts,
  type KernelFacts,
  type NeedableFact,
} from '../core/profiles/facts.js';
import { readHostFacts } from '../backends/kvm/host_facts.js';

export type LiveKernel = {
  readonly kvm: Backend;
  readonly answers: ProbeAnswers;
  readonly facts: KernelFacts;
  readonly match: ProfileMatch;
  /** The model of this machine: the matching profile, with this host's facts (`NAME+host`). */
  readonly profile?: KernelProfile;
};

let live: LiveKernel | undefined;

/** Probe this machine once per process (throws InputError when /dev/kvm is unusable). */
export async function liveKernel(): Promise<LiveKernel> {
  if (live !== undefined) return live;
  live = describeKernel(await openKvm());
  return live;
}

/** Probe the kernel behind a kvm backend and match its facts with the named profiles. */
export function describeKernel(kvm: Backend): LiveKernel {
  const answers = probe(kvm);
  const facts = factsFromAnswers(answers);
  const match = matchProfile(facts);
  // The matching named profile, or — when this host's facts (THP, RAM, PKU, ...) differ from that
  // profile's — its kernel facts with this host's, named `NAME+host`.
  const p = match.profile;
  const profile =
    p === undefined || match.hostDifferences.length === 0
      ? p
      : withHostFacts(
          p,
          facts.host,
          facts.caps,
          `with this host's facts (${match.hostDifferences.join('; ')})`,
        );
  return { kvm, answers, facts, match, ...(profile !== undefined ? { profile } : {}) };
}

/**
 * Profile `p`'s kernel facts with this machine's host facts (and, when the kernel is probed, the
 * values of the caps that depend on its CPU), named `NAME+host`.
 */
function withHostFacts(
  p: KernelProfile,
  host: HostFacts,
  caps: KernelFacts['caps'] | undefined,
  why: string,
): KernelProfile {
  const mix = (prof: readonly number[], live: readonly number[] | undefined): number[] =>
    prof.map((v, id) => (live !== undefined && HOST_CAPS.has(id) ? (live[id] ?? v) : v));
  return composeProfile(
    {
      name: `${p.name}+host`,
      description: `${p.description}; ${why}`,
      ...(p.checkedAgainst !== undefined ? { checkedAgainst: p.checkedAgainst } : {}),
    },
    {
      ...p.facts,
      host,
      caps: { system: mix(p.facts.caps.system, caps?.system), vm: mix(p.facts.caps.vm, caps?.vm) },
    },
  );
}

/** This machine's facts as a profile (what `probe --save` writes). */
export function liveProfile(k: LiveKernel, name?: string): KernelProfile {
  return composeProfile(
    {
      name: name ?? `local-${k.facts.release}`,
      description: `probed from Linux ${k.facts.release} by gmemlab probe --save`,
      checkedAgainst: k.facts.release,
    },
    k.facts,
  );
}

/**
 * The two backends of a model-vs-kernel comparison (diff, differential fuzzing): /dev/kvm and a
 * model of profile `kernel` (a name or a profile file), or of the profile `probe` matches to this
 * kernel when it is undefined.
 */
export async function openKvmAndModel(
  kernel: string | undefined,
): Promise<{ kvm: Backend; model: Backend; profile: KernelProfile }> {
  const k = await liveKernel();
  let profile: KernelProfile;
  if (kernel === undefined) {
    const d = await defaultProfile();
    if (d.source === 'fallback')
      throw new InputError(
        'no model profile matches this kernel (see gmemlab probe); pass --kernel NAME or a file from gmemlab probe --save',
      );
    profile = d.profile;
  } else profile = await loadProfile(kernel);
  return { kvm: k.kvm, model: openModel(profile), profile };
}

let kvmBackend: Backend | undefined;

/** This machine's /dev/kvm backend, opened once per process (InputError when unusable). */
export async function openKvm(): Promise<Backend> {
  if (kvmBackend !== undefined) return kvmBackend;
  const { openKvmBackend } = await import('../backends/kvm/index.js');
  const b = openKvmBackend();
  if ('unavailable' in b) throw new InputError(`kvm backend unavailable: ${b.unavailable}`);
  kvmBackend = b;
  return b;
}

export function openModel(p: KernelProfile, opts: HostOptions = {}): Backend {
  return new ModelBackend(p, opts);
}

/** Whether `s` is written as a path (has a `/` or ends in `.json`) rather than a profile name. */
export function isProfilePath(s: string): boolean {
  return s.includes('/') || s.endsWith('.json');
}

/** A scenario's `kernel:` value as a `--kernel` value: a relative profile file is beside the scenario. */
export function scenarioKernel(scenarioFile: string, kernel: string): string {
  return isProfilePath(kernel) && !isAbsolute(kernel)
    ? join(dirname(scenarioFile), kernel)
    : kernel;
}

/** Whether `s` names a profile file rather than a profile. */
function isProfileFile(s: string): boolean {
  return isProfilePath(s) || (getProfile(s) === undefined && existsSync(s));
}

/**
 * A profile by name, or from a profile file; `NAME+host` is profile NAME with this machine's host
 * facts (read by probing). UsageError / InputError otherwise.
 */
export async function loadProfile(nameOrFile: string): Promise<KernelProfile> {
  if (nameOrFile.endsWith('+host')) {
    const baseName = nameOrFile.slice(0, -'+host'.length);
    if (baseName.endsWith('+host') || isProfilePath(baseName))
      throw new UsageError(`"${nameOrFile}": +host follows the name of a built-in profile`);
    const base = await loadProfile(baseName);
    // Host facts come from /proc and /sys: no /dev/kvm needed.
    return withHostFacts(base, readHostFacts(), undefined, "with this host's facts");
  }
  if (!isProfileFile(nameOrFile)) {
    const p = getProfile(nameOrFile);
    if (p === undefined)
      throw new UsageError(
        `unknown kernel profile "${nameOrFile}" (known: ${profileNames().join(', ')}; or a profile file from gmemlab probe --save)`,
      );
    return p;
  }
  try {
    return profileFromJson(readText(nameOrFile, MAX_SMALL_FILE_BYTES), nameOrFile);
  } catch (e) {
    if (e instanceof ProfileFileError) throw new InputError(e.message);
    throw e;
  }
}

export type DefaultChoice = {
  readonly profile: KernelProfile;
  readonly why: string;
  /** Where it came from: GMEMLAB_KERNEL, the probed kernel, or DEFAULT_PROFILE as a fallback. */
  readonly source: 'env' | 'probe' | 'fallback';
};

let defaultChoice: DefaultChoice | undefined;

/**
 * The profile every command uses without --kernel: the one that matches this machine's kernel,
 * else DEFAULT_PROFILE (no usable /dev/kvm, or a kernel no profile matches). `GMEMLAB_KERNEL`, when
 * set, overrides the probe (a name or a profile file), so a user can pin the default.
 */
export async function defaultProfile(): Promise<DefaultChoice> {
  if (defaultChoice !== undefined) return defaultChoice;
  const env = process.env['GMEMLAB_KERNEL'];
  if (env !== undefined && env !== '')
    defaultChoice = { profile: await loadProfile(env), why: 'GMEMLAB_KERNEL', source: 'env' };
  else {
    let k: LiveKernel | undefined;
    try {
      k = await liveKernel();
    } catch (e) {
      if (!(e instanceof InputError)) throw e;
      defaultChoice = { profile: getProfile(DEFAULT_PROFILE)!, why: e.message, source: 'fallback' };
    }
    if (k !== undefined)
      defaultChoice =
        k.match.profile !== undefined && k.profile !== undefined
          ? {
              profile: k.profile,
              why:
                k.match.hostDifferences.length === 0
                  ? `matches this kernel (${k.facts.release})`
                  : `${k.match.profile.name} matches this kernel (${k.facts.release}); +host: with this host's facts`,
              source: 'probe',
            }
          : {
              profile: getProfile(DEFAULT_PROFILE)!,
              why: `no profile matches this kernel (${k.facts.release}; see gmemlab probe)`,
              source: 'fallback',
            };
  }
  return defaultChoice!;
}

/** The profile of a `--kernel` option: the named or filed one, else the default. */
export async function resolveProfile(kernel: string | undefined): Promise<KernelProfile> {
  return kernel !== undefined ? loadProfile(kernel) : (await defaultProfile()).profile;
}

/** Open the requested backend; the kernel profile only matters for the model. */
export async function openBackend(
  kind: string,
  kernel: string | undefined,
  modelOptions: HostOptions = {},
): Promise<Backend> {
  if (kind === 'model') return openModel(await resolveProfile(kernel), modelOptions);
  if (kind === 'kvm') return openKvm();
  throw new UsageError(`unknown backend "${kind}" (model or kvm)`);
}

/**
 * Refusals up front: before a trace runs on /dev/kvm, decide (on a model of this kernel) whether
 * the real backend would refuse one of its ops; the message names `file:line`. Undefined: it runs.
 */
export async function kvmRefusal(
  ops: readonly TraceOp[],
  file: string,
): Promise<string | undefined> {
  const k = await liveKernel();
  const profile = k.profile ?? getProfile(DEFAULT_PROFILE)!;
  const { precheckTrace } = await import('../backends/kvm/precheck.js');
  const r = precheckTrace(ops, profile);
  return r === undefined
    ? undefined
    : `${file}:${r.line}: ${r.op}: the real backend refuses this op (${r.reason}); the trace was not run`;
}

/**
 * The first fact among `needs` (a trace's `# needs:` lines) that this machine's kernel or host
 * lacks, said as a reason; undefined when it has them all.
 */
export async function unmetNeeds(
  needs: readonly NeedableFact[],
  file: string,
  line?: number,
): Promise<string | undefined> {
  if (needs.length === 0) return undefined;
  const k = await liveKernel();
  const f = needs.find((n) => !factValue(k.facts, n));
  return f === undefined
    ? undefined
    : `${file}${line !== undefined ? `:${line}` : ''}: needs ${f} (${NEEDABLE_FACTS[f]}), which this machine lacks; the trace was not run`;
}

/** `unmetNeeds` and `kvmRefusal` as an InputError (exit 2). */
export async function precheckOnKvm(
  ops: readonly TraceOp[],
  file: string,
  needs: readonly NeedableFact[] = [],
  needsLine?: number,
): Promise<void> {
  const why = (await unmetNeeds(needs, file, needsLine)) ?? (await kvmRefusal(ops, file));
  if (why !== undefined) throw new InputError(why);
}

/** Whether `b` is the real backend (so traces need `precheckOnKvm` and buffered output). */
export function isKvm(b: Backend): boolean {
  return b === kvmBackend;
}
