/**
 * SEV-SNP and TDX on the in-place conversion kernel (`linux-next-gmem-snp`, `linux-next-gmem-tdx`;
 * the series v7 patches 07, 19, 20, 21, kernel-uapi.md §6.1): the profiles' facts, the launch
 * paths' in-place population (SNP_LAUNCH_UPDATE with uaddr 0, KVM_TDX_INIT_MEM_REGION with
 * source_addr 0) giving the copy path's launch digest / MRTD for the same bytes and the
 * measurement engines' value, the 6.18 profiles refusing a NULL source as before, and private-only
 * preparation. Every run checks every invariant after every op.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { getProfile } from '../../src/core/profiles/index.js';
import { KVM_CAP, KVM_X86_SNP_VM, KVM_X86_TDX_VM } from '../../src/core/base/uapi.js';
import { snpGuestContext } from '../../src/core/arch/x86/svm/sev_snp.js';
import { tdxTdMrtd } from '../../src/core/arch/x86/vmx/tdx.js';
import { SnpLaunchDigest, SNP_PAGE_TYPE } from '../../src/core/platform/sev_snp/launch_digest.js';
import { TdxMrtd } from '../../src/core/platform/tdx/mrtd.js';
import { toHex } from '../../src/core/base/crypto/hex.js';
import { runCheckedLines } from './helpers.js';

const SNP = 'linux-next-gmem-snp';
const TDX = 'linux-next-gmem-tdx';
const GPA = 0x8000_0000n;
const GPAN = 0x8000_0000;

/** Deterministic page contents: page `i` of seed `s`. */
function pageBytes(s: number, i: number): Uint8Array {
  const b = new Uint8Array(4096);
  let x = (s * 7919 + i * 104729 + 1) >>> 0;
  for (let j = 0; j < b.length; j++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[j] = x >>> 24;
  }
  return b;
}

function hex(b: Uint8Array): string {
  return toHex(b);
}

/** Run `lines` on `profile` with every invariant; returns the backend's host. */
function run(profile: string, lines: object[]) {
  const p = getProfile(profile)!;
  const r = runCheckedLines(lines, p);
  assert.deepEqual(r.violations, [], `invariant violations on ${profile}`);
  return r;
}

/**
 * An SNP launch of `pages` at GPA 2 GiB: in place (an MMAP|INIT_SHARED guest_memfd written
 * through its mapping, converted with KVM_SET_MEMORY_ATTRIBUTES2, LAUNCH_UPDATE uaddr 0) or by
 * copy (a private guest_memfd, LAUNCH_UPDATE from a staging buffer). The digest after the
 * updates and after LAUNCH_FINISH, and the result lines.
 */
function snpLaunch(profile: string, inPlace: boolean, pages: Uint8Array[]) {
  const n = pages.length;
  const size = (n + 4) * 4096;
  const lines: object[] = [
    { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'cmd' },
    { op: 'open', path: '/dev/sev', as: 'sev' },
    { op: 'KVM_CREATE_VM', type: Number(KVM_X86_SNP_VM), as: 'vm' },
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size, flags: inPlace ? 3 : 0, as: 'gmem' },
  ];
  if (inPlace)
    lines.push({ op: 'mmap', fd: 'gmem', length: size, prot: 3, flags: 1, offset: 0, as: 'mem' });
  else {
    lines.push({ op: 'mmap', fd: null, length: size, prot: 3, flags: 0x22, offset: 0, as: 'mem' });
  }
  lines.push(
    {
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm',
      slot: 0,
      flags: 4,
      guest_phys_addr: GPAN,
      memory_size: size,
      userspace_addr: 'mem',
      guest_memfd: 'gmem',
      guest_memfd_offset: 0,
    },
    { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 22, sev_fd: 'sev', data: {}, data_addr: 'cmd' },
    {
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: 100,
      sev_fd: 'sev',
      data: { policy: 0x30000 },
      data_addr: 'cmd',
    },
  );
  // The bytes: written into guest memory (in place) or into the staging buffer (copy).
  pages.forEach((p, i) => lines.push({ op: 'poke', addr: `mem+${i * 4096}`, hex: hex(p) }));
  if (inPlace)
    lines.push({
      op: 'KVM_SET_MEMORY_ATTRIBUTES2',
      fd: 'gmem',
      offset: 0,
      size: n * 4096,
      attributes: 8,
    });
  else
    lines.push({
      op: 'KVM_SET_MEMORY_ATTRIBUTES',
      vm: 'vm',
      address: GPAN,
      size,
      attributes: 8,
      flags: 0,
    });
  lines.push({
    op: 'KVM_MEMORY_ENCRYPT_OP',
    fd: 'vm',
    id: 101,
    sev_fd: 'sev',
    data: { gfn_start: Number(GPA >> 12n), uaddr: inPlace ? 0 : 'mem', len: n * 4096, type: 1 },
    data_addr: 'cmd',
  });
  const r1 = run(profile, lines);
  const vm = [...r1.backend.host.vms].find((v) => v.type === KVM_X86_SNP_VM)!;
  const afterUpdate = snpGuestContext(r1.backend.host, vm)?.digest.hex();
  lines.push(
    { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
    {
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: 102,
      sev_fd: 'sev',
      data: { flags: 0 },
      data_addr: 'cmd',
    },
  );
  const r2 = run(profile, lines);
  const vm2 = [...r2.backend.host.vms].find((v) => v.type === KVM_X86_SNP_VM)!;
  return {
    afterUpdate,
    final: snpGuestContext(r2.backend.host, vm2)?.digest.hex(),
    results: r2.results,
  };
}

/**
 * A TD launch of `pages` at GPA 2 GiB, measured (KVM_TDX_MEASURE_MEMORY_REGION): in place or by
 * copy as snpLaunch(); the MRTD after KVM_TDX_FINALIZE_VM.
 */
function tdxLaunch(
  profile: string,
  inPlace: boolean,
  pages: Uint8Array[],
  source: 'src' | 0 = inPlace ? 0 : 'src',
) {
  const n = pages.length;
  const size = (n + 4) * 4096;
  const lines: object[] = [
    { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x22, offset: 0, as: 'params' },
    { op: 'mmap', fd: null, length: size, prot: 3, flags: 0x22, offset: 0, as: 'src' },
    { op: 'KVM_CREATE_VM', type: Number(KVM_X86_TDX_VM), as: 'vm' },
    { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size, flags: inPlace ? 3 : 0, as: 'gmem' },
    inPlace
      ? { op: 'mmap', fd: 'gmem', length: size, prot: 3, flags: 1, offset: 0, as: 'mem' }
      : { op: 'mmap', fd: null, length: size, prot: 3, flags: 0x21, offset: 0, as: 'mem' },
    {
      op: 'KVM_SET_USER_MEMORY_REGION2',
      vm: 'vm',
      slot: 0,
      flags: 4,
      guest_phys_addr: GPAN,
      memory_size: size,
      userspace_addr: 'mem',
      guest_memfd: 'gmem',
      guest_memfd_offset: 0,
    },
  ];
  pages.forEach((p, i) =>
    lines.push({ op: 'poke', addr: `${inPlace ? 'mem' : 'src'}+${i * 4096}`, hex: hex(p) }),
  );
  lines.push(
    inPlace
      ? { op: 'KVM_SET_MEMORY_ATTRIBUTES2', fd: 'gmem', offset: 0, size, attributes: 8 }
      : {
          op: 'KVM_SET_MEMORY_ATTRIBUTES',
          vm: 'vm',
          address: GPAN,
          size,
          attributes: 8,
          flags: 0,
        },
    {
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'vm',
      id: 1,
      data: {
        attributes: 0x10000000,
        xfam: 3,
        cpuid: [{ function: 0x80000008, eax: 0x300000 }],
      },
      data_addr: 'params',
    },
    { op: 'KVM_ENABLE_CAP', fd: 'vm', cap: 121, args: [24] },
    { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
    { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'cpu', id: 2 },
    {
      op: 'KVM_MEMORY_ENCRYPT_OP',
      fd: 'cpu',
      id: 3,
      flags: 1,
      data: { source_addr: source, gpa: GPAN, nr_pages: n },
      data_addr: 'params',
    },
    { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 4 },
  );
  const r = run(profile, lines);
  const vm = [...r.backend.host.vms].find((v) => v.type === KVM_X86_TDX_VM)!;
  const m = tdxTdMrtd(r.backend.host, vm);
  return { mrtd: m === undefined ? undefined : hex(m), results: r.results };
}

describe('linux-next-gmem-snp / -tdx: the profiles', () => {
  test('compose the series (vm_memory_attributes=0) with the 6.18 SNP and TDX hosts', () => {
    for (const [name, base, type] of [
      [SNP, 'linux-6.18-snp', KVM_X86_SNP_VM],
      [TDX, 'linux-6.18-tdx', KVM_X86_TDX_VM],
    ] as const) {
      const p = getProfile(name)!;
      const b = getProfile(base)!;
      assert.equal(p.parts.gmem, 'inplace-v7');
      assert.equal(p.parts.platform, b.parts.platform);
      assert.equal(p.parts.vendor, b.parts.vendor);
      assert.equal(p.gmemMemoryAttributes, true);
      assert.equal(p.memoryAttributesConfig, false);
      assert.deepEqual([...p.vmTypes.keys()], [...b.vmTypes.keys()]);
      // INIT_SHARED for the CoCo type (patch 19), where 6.18 offers MMAP only.
      assert.equal(p.vmTypes.get(type)!.gmemFlags, 3n);
      assert.equal(b.vmTypes.get(type)!.gmemFlags, 1n);
      assert.equal(p.vmTypes.get(type)!.gmemMemAttributes, 8n);
      assert.equal(p.systemCaps.get(KVM_CAP.KVM_CAP_GUEST_MEMFD_MEMORY_ATTRIBUTES), 8n);
      assert.equal(p.systemCaps.get(KVM_CAP.KVM_CAP_MEMORY_ATTRIBUTES), undefined);
      assert.equal(
        p.systemCaps.get(KVM_CAP.KVM_CAP_VM_TYPES),
        b.systemCaps.get(KVM_CAP.KVM_CAP_VM_TYPES),
      );
    }
  });
});

describe('SNP_LAUNCH_UPDATE in place (uaddr 0)', () => {
  const pages = [pageBytes(1, 0), pageBytes(1, 1), pageBytes(1, 2)];

  test('the launch digest equals the copy path and the digest engine for the same bytes', () => {
    const inPlace = snpLaunch(SNP, true, pages);
    const copy = snpLaunch(SNP, false, pages);
    const copy618 = snpLaunch('linux-6.18-snp', false, pages);
    const d = new SnpLaunchDigest();
    pages.forEach((p, i) => d.update(SNP_PAGE_TYPE.NORMAL, GPA + BigInt(i) * 4096n, p));
    assert.equal(inPlace.afterUpdate, d.hex());
    assert.equal(copy.afterUpdate, d.hex());
    assert.equal(copy618.afterUpdate, d.hex());
    assert.ok(inPlace.final !== undefined && inPlace.final !== inPlace.afterUpdate);
    assert.equal(inPlace.final, copy.final);
    assert.equal(inPlace.final, copy618.final);
  });

  test('linux-6.18-snp refuses uaddr 0 for a NORMAL page (EINVAL in post-populate, EIO)', () => {
    const lines: object[] = [
      { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'cmd' },
      { op: 'open', path: '/dev/sev', as: 'sev' },
      { op: 'KVM_CREATE_VM', type: 4, as: 'vm' },
      { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 8192, flags: 0, as: 'gmem' },
      { op: 'mmap', fd: null, length: 8192, prot: 3, flags: 0x21, offset: 0, as: 'mem' },
      {
        op: 'KVM_SET_USER_MEMORY_REGION2',
        vm: 'vm',
        slot: 0,
        flags: 4,
        guest_phys_addr: GPAN,
        memory_size: 8192,
        userspace_addr: 'mem',
        guest_memfd: 'gmem',
        guest_memfd_offset: 0,
      },
      {
        op: 'KVM_SET_MEMORY_ATTRIBUTES',
        vm: 'vm',
        address: GPAN,
        size: 8192,
        attributes: 8,
        flags: 0,
      },
      { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 22, sev_fd: 'sev', data: {}, data_addr: 'cmd' },
      {
        op: 'KVM_MEMORY_ENCRYPT_OP',
        fd: 'vm',
        id: 100,
        sev_fd: 'sev',
        data: { policy: 0x30000 },
        data_addr: 'cmd',
      },
      {
        op: 'KVM_MEMORY_ENCRYPT_OP',
        fd: 'vm',
        id: 101,
        sev_fd: 'sev',
        data: { gfn_start: Number(GPA >> 12n), uaddr: 0, len: 4096, type: 1 },
        data_addr: 'cmd',
      },
    ];
    const r = run('linux-6.18-snp', lines);
    assert.match(r.results.at(-1)!, /"errno":"EIO"/);
  });

  test('a shared page is never prepared; a private fault makes it private in the RMP', () => {
    const lines: object[] = [
      { op: 'open', path: '/dev/sev', as: 'sev' },
      { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'cmd' },
      { op: 'KVM_CREATE_VM', type: 4, as: 'vm' },
      { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 8192, flags: 3, as: 'gmem' },
      { op: 'mmap', fd: 'gmem', length: 8192, prot: 3, flags: 1, offset: 0, as: 'mem' },
      {
        op: 'KVM_SET_USER_MEMORY_REGION2',
        vm: 'vm',
        slot: 0,
        flags: 4,
        guest_phys_addr: GPAN,
        memory_size: 8192,
        userspace_addr: 'mem',
        guest_memfd: 'gmem',
        guest_memfd_offset: 0,
      },
      { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 22, sev_fd: 'sev', data: {}, data_addr: 'cmd' },
      { op: 'KVM_CREATE_VCPU', vm: 'vm', id: 0, as: 'cpu' },
      { op: 'KVM_SET_MEMORY_ATTRIBUTES2', fd: 'gmem', offset: 4096, size: 4096, attributes: 8 },
      {
        op: 'KVM_RUN',
        vcpu: 'cpu',
        guest: [{ store: { gpa: GPAN, hex: '01020304' } }, { pvalidate: { gpa: GPAN + 4096 } }],
      },
    ];
    const r = run(SNP, lines);
    const h = r.backend.host;
    const f = [...[...h.vms][0]!.gmemFiles][0]!;
    const rmp = h.platform.sevSnp!.rmp;
    assert.equal(rmp.lookup(f.pages.get(0)!.base).assigned, false, 'shared page 0');
    const e = rmp.lookup(f.pages.get(1)!.base);
    assert.equal(e.assigned, true, 'private page 1');
    assert.equal(e.validated, true, 'private page 1 validated');
    // The guest's shared store landed in the guest_memfd page the VMM maps.
    const b = new Uint8Array(4);
    h.frames.read(f.pages.get(0)!.base, 0, b);
    assert.equal(hex(b), '01020304');
  });
});

describe('KVM_TDX_INIT_MEM_REGION in place (source_addr 0)', () => {
  const pages = [pageBytes(2, 0), pageBytes(2, 1)];

  test('the MRTD equals the copy path and the MRTD engine for the same bytes', () => {
    const inPlace = tdxLaunch(TDX, true, pages);
    const copy = tdxLaunch(TDX, false, pages);
    const copy618 = tdxLaunch('linux-6.18-tdx', false, pages);
    const m = new TdxMrtd();
    pages.forEach((p, i) => {
      const gpa = GPA + BigInt(i) * 4096n;
      m.pageAdd(gpa);
      for (let c = 0; c < 4096; c += 256) m.mrExtend(gpa + BigInt(c), p.subarray(c, c + 256));
    });
    const want = hex(m.finalize());
    assert.equal(inPlace.mrtd, want);
    assert.equal(copy.mrtd, want);
    assert.equal(copy618.mrtd, want);
  });

  test('linux-6.18-tdx: source_addr 0 is EFAULT (get_user_pages_fast of address 0)', () => {
    const r = tdxLaunch('linux-6.18-tdx', false, pages, 0);
    // Nothing was added: FINALIZE gives the empty MRTD (vector T0).
    assert.equal(
      r.mrtd,
      '38b060a751ac96384cd9327eb1b1e36a21fdb71114be07434c0cc7bf63f6e1da274edebfe76f65fbd51ad2f14898b95b',
    );
    assert.ok(r.results.some((l) => /"errno":"EFAULT"/.test(l)));
  });
});

describe('v7 as posted: populating in place a folio nobody wrote', () => {
  test('measures the previous owner of the frame (zero-before-use reports it)', () => {
    // The VMM writes and punches 4 pages (their frames go back with data), then launches 2
    // pages it never wrote or faulted while shared: kvm_gmem_populate() allocates them without
    // zeroing (kvm/next), and sev_gmem_post_populate() with no source measures them as they are.
    const lines: object[] = [
      { op: 'mmap', fd: null, length: 4096, prot: 3, flags: 0x22, offset: 0, as: 'cmd' },
      { op: 'open', path: '/dev/sev', as: 'sev' },
      { op: 'KVM_CREATE_VM', type: 4, as: 'vm' },
      { op: 'KVM_CREATE_GUEST_MEMFD', vm: 'vm', size: 32768, flags: 3, as: 'gmem' },
      { op: 'mmap', fd: 'gmem', length: 32768, prot: 3, flags: 1, offset: 0, as: 'mem' },
      { op: 'poke', addr: 'mem', hex: 'deadbeef'.repeat(4096) },
      { op: 'fallocate', fd: 'gmem', mode: 3, offset: 0, len: 16384 },
      {
        op: 'KVM_SET_USER_MEMORY_REGION2',
        vm: 'vm',
        slot: 0,
        flags: 4,
        guest_phys_addr: GPAN,
        memory_size: 32768,
        userspace_addr: 'mem',
        guest_memfd: 'gmem',
        guest_memfd_offset: 0,
      },
      { op: 'KVM_MEMORY_ENCRYPT_OP', fd: 'vm', id: 22, sev_fd: 'sev', data: {}, data_addr: 'cmd' },
      {
        op: 'KVM_MEMORY_ENCRYPT_OP',
        fd: 'vm',
        id: 100,
        sev_fd: 'sev',
        data: { policy: 0x30000 },
        data_addr: 'cmd',
      },
      { op: 'KVM_SET_MEMORY_ATTRIBUTES2', fd: 'gmem', offset: 16384, size: 8192, attributes: 8 },
      {
        op: 'KVM_MEMORY_ENCRYPT_OP',
        fd: 'vm',
        id: 101,
        sev_fd: 'sev',
        data: { gfn_start: (GPAN >>> 12) + 4, uaddr: 0, len: 8192, type: 1 },
        data_addr: 'cmd',
      },
    ];
    const r = runCheckedLines(lines, getProfile(SNP)!);
    assert.match(r.results.at(-1)!, /"ok":true/);
    assert.ok(r.violations.length > 0, 'the stale page is measured');
    assert.ok(
      r.violations.every((v) => v.startsWith('zero-before-use: ')),
      r.violations.join('\n'),
    );
  });
});
