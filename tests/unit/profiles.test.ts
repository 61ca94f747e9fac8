/**
 * Kernel profiles composed from facts: the named profiles, profile files (round trip and errors),
 * matching facts with profiles, and how conformance recordings are chosen for a kernel.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { capId, capName } from '../../src/core/base/cap_names.js';
import { KVM_CAP } from '../../src/core/base/uapi.js';
import { composeProfile } from '../../src/core/profiles/compose.js';
import {
  getProfile,
  PROFILE_FLIPS,
  allProfiles,
  REFERENCE_PROFILE,
} from '../../src/core/profiles/index.js';
import { matchProfile } from '../../src/core/profiles/match.js';
import {
  profileFromJson,
  profileToJson,
  ProfileFileError,
} from '../../src/core/profiles/profile_file.js';
import { factValue, NEEDABLE_FACTS, type KernelFacts } from '../../src/core/profiles/facts.js';
import { compareFacts } from '../../src/core/profiles/match.js';
import {
  chooseRecording,
  loadCase,
  recordingFileFor,
  recordingProfileOf,
} from '../../src/conformance/suite.js';
import { ModelBackend } from '../../src/backends/model.js';
import { runTrace } from '../../src/trace/runner.js';
import { parseTrace } from '../../src/trace/parse.js';
import { formatResult } from '../../src/trace/format.js';

const PVM = getProfile('linux-6.18-pvm')!;
const NOGMEM = getProfile('linux-6.18-pvm-nogmem')!;
const TDP = getProfile('linux-6.18')!;

describe('capability names', () => {
  test('every id the model uses has its uAPI name, and names map back to ids', () => {
    for (const [name, id] of Object.entries(KVM_CAP)) {
      assert.equal(capName(id), name);
      assert.equal(capId(name), id);
    }
    assert.equal(capName(5), 'cap 5');
    assert.equal(capId('KVM_CAP_NOPE'), undefined);
  });
});

describe('profiles composed from facts', () => {
  test('the named profiles differ exactly where their kernels do', () => {
    assert.deepEqual(
      allProfiles().map((p) => p.name),
      [
        'linux-6.18',
        'linux-6.18-pvm',
        'linux-6.18-pvm-nogmem',
        'linux-6.18-snp',
        'linux-6.18-tdx',
        'linux-6.18-arm64-pkvm',
        'linux-next-gmem',
        'linux-next-gmem-vmattr',
        'linux-next-gmem-snp',
        'linux-next-gmem-tdx',
        'design-2020-protnone-follkvm',
        'design-2020-separate-mm',
        'design-2023-restrictedmem',
        'design-2024-shmem-exclusive-pin',
      ],
    );
    assert.equal(PVM.guestMemfdConfig, true);
    assert.equal(NOGMEM.guestMemfdConfig, false);
    assert.equal(NOGMEM.vmTypes.get(0n)!.gmemFlags, 0n);
    assert.equal(PVM.vmTypes.get(0n)!.gmemFlags, 3n);
    assert.equal(NOGMEM.systemCaps.get(KVM_CAP.KVM_CAP_GUEST_MEMFD), undefined);
    assert.equal(PVM.systemCaps.get(KVM_CAP.KVM_CAP_GUEST_MEMFD), 1n);
    // Everything else of the two PVM builds is the same kernel.
    for (const k of ['tdpEnabled', 'userMemSlots', 'memSlotsNum'] as const)
      assert.equal(NOGMEM[k], PVM[k], k);
    assert.deepEqual(NOGMEM.parts, PVM.parts);
    assert.equal(PVM.memSlotsNum, 32767);
    assert.equal(PVM.parts.vendor, 'kvm_pvm');
    assert.equal(TDP.parts.vendor, 'kvm_intel');
    assert.deepEqual(TDP.parts, {
      arch: 'x86',
      vendor: 'kvm_intel',
      platform: 'none',
      gmem: 'linux-6.18',
    });
    assert.deepEqual([...TDP.vmTypes.keys()], [0n, 1n]);
    assert.equal(TDP.vmTypes.get(1n)!.gmemFlags, 1n, 'SW_PROTECTED: MMAP without INIT_SHARED');
    assert.equal(TDP.vmTypes.get(0n)!.nrAddressSpaces, 2, 'SMM');
  });

  test('a KVM_CREATE_GUEST_MEMFD is ENOTTY exactly on the profile without guest_memfd', () => {
    const { ops } = parseTrace(
      '{"op":"KVM_CREATE_VM","type":0,"as":"vm"}\n{"op":"KVM_CREATE_GUEST_MEMFD","vm":"vm","size":4096,"flags":0}\n',
      't',
    );
    const run = (p: typeof PVM): string[] => runTrace(ops, new ModelBackend(p)).map(formatResult);
    assert.deepEqual(run(PVM), ['{"ok":true}', '{"ok":true}']);
    assert.deepEqual(run(NOGMEM), ['{"ok":true}', '{"ok":false,"errno":"ENOTTY"}']);
  });
});

describe('profile files', () => {
  test('every named profile round-trips through a profile file unchanged (but its name)', () => {
    // A profile file may not take a built-in name: it would pass for that profile.
    assert.throws(() => profileFromJson(profileToJson(PVM), 'x.json'), {
      message:
        'x.json: name: "linux-6.18-pvm" is the name of a built-in profile; a profile file needs its own',
    });
    // A design profile's series never landed: no kernel writes its facts to a profile file.
    for (const named of allProfiles().filter((x) => x.design === undefined)) {
      const p = { ...named, name: `${named.name}-copy` };
      const q = profileFromJson(profileToJson(p), 'x.json');
      assert.deepEqual(q.facts, {
        ...p.facts,
        caps: { system: pad(p.facts.caps.system), vm: pad(p.facts.caps.vm) },
      });
      const { facts: _a, ...restP } = p;
      const { facts: _b, ...restQ } = q;
      assert.deepEqual(restQ, restP, p.name);
    }
  });

  test('errors name the file and the field', () => {
    const doc = JSON.parse(profileToJson({ ...PVM, name: 'mine' })) as Record<string, unknown> & {
      facts: Record<string, unknown> & {
        host: Record<string, unknown>;
        caps: { system: Record<string, unknown> };
      };
    };
    const bad = (mutate: (d: typeof doc) => void): string => {
      const d = JSON.parse(JSON.stringify(doc)) as typeof doc;
      mutate(d);
      try {
        profileFromJson(JSON.stringify(d), 'p.json');
      } catch (e) {
        assert.ok(e instanceof ProfileFileError);
        return e.message;
      }
      return 'no error';
    };
    assert.equal(
      bad((d) => (d.facts.host['pku'] = 'yes')),
      'p.json: facts.host.pku: expected true or false',
    );
    assert.equal(
      bad((d) => delete d.facts['mmu']),
      'p.json: facts.mmu: missing field',
    );
    assert.equal(
      bad((d) => (d['extra'] = 1)),
      'p.json: extra: unknown field (known: gmemlab_profile, name, description, facts, checked_against)',
    );
    assert.match(
      bad((d) => (d.facts.caps.system['KVM_CAP_FROB'] = 1)),
      /^p\.json: facts\.caps\.system\.KVM_CAP_FROB: not a capability name/,
    );
    assert.equal(
      bad((d) => (d.facts.caps.system['KVM_CAP_HLT'] = -1)),
      'p.json: facts.caps.system.KVM_CAP_HLT: expected a non-negative integer',
    );
    assert.equal(
      bad((d) => (d['gmemlab_profile'] = 2)),
      'p.json: gmemlab_profile: expected 1 (the profile file version)',
    );
    assert.throws(() => profileFromJson('{', 'p.json'), { message: /^p\.json: not JSON: / });
    assert.throws(() => profileFromJson('[]', 'p.json'), {
      message: 'p.json: (top level): expected an object',
    });
    assert.equal(
      bad((d) => (d.facts.caps.system['cap 0'] = 1)),
      'p.json: facts.caps.system.cap 0: capability 0 is given twice (also as KVM_CAP_IRQCHIP)',
    );
    assert.equal(
      bad((d) => (d.facts.caps.system['KVM_CAP_GUEST_MEMFD'] = 0)),
      'p.json: facts.kconfig.guest_memfd: is true, but KVM_CAP_GUEST_MEMFD on /dev/kvm is 0 (non-zero exactly with guest_memfd)',
    );
    assert.match(
      bad((d) => (d.facts['mmu'] = 'tdp')),
      /^p\.json: facts\.mmu: is tdp, but KVM_CAP_PRE_FAULT_MEMORY on \/dev\/kvm is 0 \(non-zero exactly with tdp\)$/,
    );
  });
});

function pad(t: readonly number[]): number[] {
  const out = new Array<number>(261).fill(0);
  t.forEach((v, i) => (out[i] = v));
  return out;
}

describe('matching facts with profiles', () => {
  test('the profile flips are true: each pair differs in its fact only', () => {
    for (const fl of PROFILE_FLIPS) {
      const [a, b] = fl.between.map((n) => getProfile(n)!);
      const d = compareFacts(a!, b!.facts);
      assert.deepEqual(d.host, []);
      assert.ok(d.kernel.length > 0);
      for (const line of d.kernel) assert.match(line, /GUEST_MEMFD|guest_memfd/, line);
      assert.notEqual(factValue(a!.facts, fl.fact), factValue(b!.facts, fl.fact));
    }
  });
  test('valued facts: RAM plus swap in GiB, the huge page pool, ASLR', () => {
    assert.equal(factValue(PVM.facts, 'ram'), 24);
    const h = { ...PVM.facts.host, swapPages: 262144 * 8, hugePages: 4, aslr: false };
    const f = { ...PVM.facts, host: h };
    assert.equal(factValue(f, 'ram'), 32);
    assert.equal(factValue(f, 'no_huge_pages'), false);
    assert.equal(factValue(f, 'aslr'), false);
    // The overcommit heuristic counts swap too.
    assert.equal(
      composeProfile({ name: 'x', description: 'x' }, f).hostRamPages,
      PVM.hostRamPages + 262144 * 8,
    );
  });
  const withHost = (f: KernelFacts, host: Partial<KernelFacts['host']>): KernelFacts => ({
    ...f,
    host: { ...f.host, ...host },
  });
  test('each named profile matches its own facts; host facts only warn', () => {
    // A design profile's facts match no profile: no live kernel carries a design.
    for (const p of allProfiles())
      assert.equal(
        matchProfile(p.facts).profile?.name,
        p.design === undefined ? p.name : undefined,
      );
    const m = matchProfile(withHost(NOGMEM.facts, { pku: false, ramPages: 1 }));
    assert.equal(m.profile?.name, 'linux-6.18-pvm-nogmem');
    assert.equal(m.hostDifferences.length, 2);
  });
  test('a kernel no profile describes matches none, with a reason per profile', () => {
    const f: KernelFacts = { ...PVM.facts, kconfig: { ...PVM.facts.kconfig, smm: true } };
    const m = matchProfile(f);
    assert.equal(m.profile, undefined);
    assert.deepEqual(m.reasons.get('linux-6.18-pvm'), [
      'SMM (CONFIG_KVM_SMM) is true, profile linux-6.18-pvm says false',
    ]);
  });
  test('a probe-saved profile of a new build composes like the named one', () => {
    const p = composeProfile(
      { name: 'new', description: 'd' },
      { ...NOGMEM.facts, release: '6.18.44-x' },
    );
    assert.equal(matchProfile(p.facts).profile?.name, 'linux-6.18-pvm-nogmem');
    assert.equal(factValue(p.facts, 'guest_memfd'), false);
  });
});

describe('conformance recordings per profile', () => {
  const trace = '# needs: pvm\n# depends: guest_memfd, pku\n{"op":"KVM_CREATE_VM","type":0}\n';
  const rec = (p: string): string =>
    `# recorded on Linux x /dev/kvm (profile ${p}) by gmemlab conformance --record; do not edit\n{"ok":true}\n`;
  const c = loadCase('a/b', 'conformance/a/b.jsonl', trace, [
    { file: 'conformance/a/b.expected.jsonl', text: rec(REFERENCE_PROFILE) },
    {
      file: 'conformance/a/b.linux-6.18-pvm-nogmem.expected.jsonl',
      text: rec('linux-6.18-pvm-nogmem'),
    },
  ]);
  test('file names carry the profile (names may contain dots)', () => {
    assert.ok(!('error' in c));
    assert.equal(recordingProfileOf('x/c.jsonl', 'x/c.expected.jsonl'), REFERENCE_PROFILE);
    assert.equal(
      recordingProfileOf('x/c.jsonl', 'x/c.linux-6.18-pvm-nogmem.expected.jsonl'),
      'linux-6.18-pvm-nogmem',
    );
    assert.equal(
      recordingFileFor('x/c.jsonl', 'linux-6.18-pvm-nogmem'),
      'x/c.linux-6.18-pvm-nogmem.expected.jsonl',
    );
    assert.equal(recordingFileFor('x/c.jsonl', REFERENCE_PROFILE), 'x/c.expected.jsonl');
  });
  test("a kernel gets its own profile's recording; a fact it depends on that differs skips it", () => {
    if ('error' in c) return;
    const pick = (f: KernelFacts): string => {
      const ch = chooseRecording(c, f);
      return 'skip' in ch ? `skip: ${ch.skip}` : ch.recording.profile;
    };
    assert.equal(pick(PVM.facts), 'linux-6.18-pvm');
    assert.equal(pick(NOGMEM.facts), 'linux-6.18-pvm-nogmem');
    assert.match(
      pick({ ...NOGMEM.facts, host: { ...NOGMEM.facts.host, pku: false } }),
      /^skip: depends on pku .*absent here, present where linux-6\.18-pvm-nogmem was recorded$/,
    );
    // TDP is not PVM, which the case needs.
    assert.match(pick(TDP.facts), /^skip: needs pvm /);
    // A case that needs nothing: a kernel of another profile gets a recording only through a flip
    // of a fact the case does not depend on.
    const free = loadCase('f', 'conformance/f.jsonl', '# depends: pku\n{"op":"KVM_CREATE_VM"}\n', [
      { file: 'conformance/f.expected.jsonl', text: rec(REFERENCE_PROFILE) },
    ]);
    assert.ok(!('error' in free));
    if ('error' in free) return;
    const pickFree = (f: KernelFacts): string => {
      const ch = chooseRecording(free, f);
      return 'skip' in ch ? `skip: ${ch.skip}` : ch.recording.profile;
    };
    assert.equal(pickFree(NOGMEM.facts), 'linux-6.18-pvm');
    assert.match(pickFree(TDP.facts), /^skip: no recording of linux-6\.18, nor of a profile/);
    const unknown = { ...PVM.facts, kconfig: { ...PVM.facts.kconfig, smm: true } };
    assert.match(pickFree(unknown), /^skip: this kernel matches no named profile/);
    assert.match(
      pickFree({ ...PVM.facts, host: { ...PVM.facts.host, pku: false } }),
      /^skip: depends on pku .*: absent here, present where linux-6\.18-pvm was recorded$/,
    );
  });
  test('unknown facts and mismatched headers are input errors with file:line', () => {
    assert.deepEqual(loadCase('x', 'f.jsonl', '{"op":"KVM_CREATE_VM"}\n# needs: gmem\n', []), {
      error: `f.jsonl:2: needs: unknown fact "gmem" (known: ${Object.keys(NEEDABLE_FACTS).join(', ')})`,
    });
    assert.deepEqual(
      loadCase('x', 'f.jsonl', '{"op":"KVM_CREATE_VM"}\n', [
        { file: 'f.expected.jsonl', text: rec('linux-6.18-pvm-nogmem') },
      ]),
      {
        error:
          'f.expected.jsonl:1: header says profile linux-6.18-pvm-nogmem, the file name says linux-6.18-pvm',
      },
    );
    assert.deepEqual(
      loadCase('x', 'f.jsonl', '{"op":"KVM_CREATE_VM"}\n', [
        { file: 'f.linux-9.expected.jsonl', text: '{"ok":true}\n' },
      ]),
      {
        error:
          'f.linux-9.expected.jsonl: recorded on profile "linux-9", which gmemlab does not have',
      },
    );
  });
});
