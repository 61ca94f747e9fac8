/**
 * `gmemlab probe [--json] [--profile] [--save FILE [--name NAME]]`: read the running kernel's KVM
 * facts and the host facts from /proc and /sys (kernel_facts.ts), and match them with the model's
 * kernel profiles.
 */
import { writeFileSync } from 'node:fs';
import { capName } from '../core/base/cap_names.js';
import { CAP_TABLE_MAX } from '../core/profiles/facts.js';
import { profileToJson } from '../core/profiles/profile_file.js';
import { optString, parseArgs, UsageError } from './args.js';
import { defaultProfile, liveKernel, liveProfile } from './backends.js';
import { getProfile } from '../core/profiles/index.js';
import { KVM_CAP } from '../core/base/uapi.js';
import { EXIT_CHECK_FAILED, EXIT_OK, InputError } from './io.js';

export const PROBE_HELP = `usage: gmemlab probe [--json] [--profile] [--save FILE [--name NAME]]

Read this machine's /dev/kvm and host: VM types, capabilities on /dev/kvm and on a VM fd (with
their names), guest_memfd flags, memory attributes, pre-fault, whether a vCPU runs guest code, and
the host facts the model uses (THP mode, RAM, max_map_count, huge page pool, PKU, KSM); then name
the model profile whose kernel facts match.

  --json         print the facts as JSON
  --profile      print only the matching profile name (exit 1 and the reasons when none matches)
  --save FILE    write this kernel's facts as a profile file, usable as --kernel FILE anywhere
  --name NAME    the profile name written by --save (default: local-<uname -r>)

Exit codes: 0 ok, 1 no profile matches (--profile), 2 /dev/kvm unavailable or usage error.`;

function capsByName(t: readonly number[]): Record<string, number> {
  const o: Record<string, number> = {};
  t.forEach((v, i) => {
    if (v !== 0) o[capName(i)] = v;
  });
  return o;
}

export async function probeMain(
  argv: readonly string[],
  out: (s: string) => void,
): Promise<number> {
  const p = parseArgs(argv, {
    json: 'bool',
    profile: 'bool',
    save: 'string',
    name: 'string',
    help: 'bool',
  });
  if (p.opts.has('help')) {
    out(PROBE_HELP);
    return EXIT_OK;
  }
  if (p.opts.has('name') && !p.opts.has('save')) throw new UsageError('--name needs --save FILE');
  const save = optString(p, 'save');
  const name = optString(p, 'name');
  if (save !== undefined && (p.opts.has('json') || p.opts.has('profile')))
    throw new UsageError('--save writes a file: it goes without --json and --profile');
  if (save === '') throw new UsageError('--save needs a file name');
  if (name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name))
    throw new UsageError(
      `--name "${name}": a profile name is letters, digits, '.', '_' and '-' (not starting with a symbol)`,
    );
  if (name !== undefined && getProfile(name) !== undefined)
    throw new UsageError(`--name ${name}: that is a built-in profile; choose another name`);
  const k = await liveKernel();
  const { answers: f, match: m } = k;
  // The default profile is informative here: a broken GMEMLAB_KERNEL must not stop the probe.
  let def: { name: string; why: string };
  try {
    const d = await defaultProfile();
    def = { name: d.profile.name, why: d.why };
  } catch (e) {
    if (!(e instanceof InputError) && !(e instanceof UsageError)) throw e;
    def = { name: 'none', why: `GMEMLAB_KERNEL: ${e.message}` };
  }
  if (save !== undefined) {
    const prof = liveProfile(k, name);
    try {
      writeFileSync(save, profileToJson(prof));
    } catch (e) {
      throw new InputError(
        `${save}: cannot write: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
    out(`wrote profile ${prof.name} (Linux ${k.facts.release}) to ${save}`);
    return EXIT_OK;
  }
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
        caps: { system: capsByName(k.facts.caps.system), vm: capsByName(k.facts.caps.vm) },
        facts: JSON.parse(profileToJson(liveProfile(k))).facts,
        profile: m.profile?.name ?? null,
        default: def.name,
        hostDifferences: m.hostDifferences,
        mismatches: Object.fromEntries(m.reasons),
      }),
    );
    return EXIT_OK;
  }
  const h = k.facts.host;
  out(`kernel            ${f.kernel}`);
  out(`matching profile  ${m.profile?.name ?? 'none'}`);
  out(`default profile   ${def.name} (${def.why})`);
  out(
    `KVM module        ${k.facts.kvmModule} (${k.facts.mmu === 'tdp' ? 'TDP MMU' : 'shadow paging'})`,
  );
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
  out(
    `host              THP ${h.thp}, ${h.ramPages} RAM + ${h.swapPages} swap pages, max_map_count ${h.maxMapCount}, ${h.hugePages} huge pages, PKU ${h.pku ? 'yes' : 'no'}, KSM ${h.ksm ? 'yes' : 'no'}, ASLR ${h.aslr ? 'on' : 'off'}`,
  );
  out('');
  out(
    `${'capability (non-zero, and those that tell profiles apart)'.padEnd(61)}    id   /dev/kvm    VM fd`,
  );
  const key = new Set<number>(Object.values(KVM_CAP));
  for (let id = 0; id <= CAP_TABLE_MAX; id++) {
    const s = f.systemCaps[id] ?? 0;
    const v = f.vmCaps[id] ?? 0;
    if (s === 0 && v === 0 && !key.has(id)) continue;
    out(
      `${capName(id).padEnd(61)} ${String(id).padStart(5)} ${String(s).padStart(10)} ${String(v).padStart(8)}`,
    );
  }
  if (m.profile !== undefined && m.hostDifferences.length > 0) {
    out('');
    out(
      `host facts that differ from ${m.profile.name} (${m.profile.name}+host is that profile with this host's):`,
    );
    for (const d of m.hostDifferences) out(`  ${d}`);
  }
  if (m.profile === undefined) {
    out('');
    out('no profile matches (gmemlab probe --save FILE writes one for this kernel):');
    for (const [name, rs] of m.reasons) for (const r of rs) out(`  ${name}: ${r}`);
  }
  return EXIT_OK;
}
