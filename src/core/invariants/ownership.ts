/**
 * Who owns each physical frame: the reverse map the invariants need (page cache of guest_memfd
 * and shmem files, private anonymous memory, vCPU pages). Built from the model's state in
 * O(extents); double ownership is recorded as it is found.
 */
import { RangeMap, extentOps } from '../base/ranges/range_map.js';
import type { Host } from '../host.js';
import { ShmemObject } from '../mm/host_mm.js';
import type { GmemFile, Vm } from '../kvm/objects.js';

export type Owner =
  | {
      readonly kind: 'gmem';
      readonly file: GmemFile;
      readonly base: number;
      readonly state: string;
    }
  | { readonly kind: 'anon'; readonly base: number }
  | { readonly kind: 'shmem'; readonly obj: ShmemObject; readonly base: number }
  | { readonly kind: 'vcpu'; readonly vm: Vm; readonly base: number; readonly what: string }
  /** A frame its owner freed while page references (vmsplice, GUP pins) remain (frames.held). */
  | { readonly kind: 'held'; readonly base: number };

/** Owner extents over pfns: `base` is the owner-side index (file index, host virtual page) of the extent's first frame. */
export const ownerOps = extentOps<Owner>((a, b) => {
  if (a.kind !== b.kind) return false;
  switch (a.kind) {
    case 'gmem':
      return a.file === (b as typeof a).file && a.state === (b as typeof a).state;
    case 'shmem':
      return a.obj === (b as typeof a).obj;
    case 'anon':
    case 'held':
      return true;
    case 'vcpu':
      return false;
  }
});

export type Ownership = {
  readonly owners: RangeMap<Owner>;
  /** Frames claimed by two owners. */
  readonly doubles: Array<{ pfn: number; a: string; b: string }>;
  readonly ownedFrames: number;
  /** Live shmem objects (reachable from mappings). */
  readonly shmems: Set<ShmemObject>;
};

export function describeOwner(o: Owner, pfnOffset = 0): string {
  switch (o.kind) {
    case 'gmem':
      return `guest_memfd #${o.file.ino} index 0x${(o.base + pfnOffset).toString(16)} (${o.state})`;
    case 'anon':
      return `anonymous memory at host page 0x${(o.base + pfnOffset).toString(16)}`;
    case 'shmem':
      return `shared anonymous object ${o.obj.id} page 0x${(o.base + pfnOffset).toString(16)}`;
    case 'vcpu':
      return `vm${o.vm.index} ${o.what}`;
    case 'held':
      return `page references only (pfn 0x${(o.base + pfnOffset).toString(16)}, freed by its owner, pinned or referenced)`;
  }
}

export function buildOwnership(h: Host): Ownership {
  const owners = new RangeMap<Owner>(ownerOps);
  const doubles: Array<{ pfn: number; a: string; b: string }> = [];
  let ownedFrames = 0;
  const claim = (pfn: number, n: number, o: Owner): void => {
    if (pfn === 0) return;
    if (owners.anyIn(pfn, pfn + n)) {
      const p = owners.piecesIn(pfn, pfn + n)[0]!;
      doubles.push({ pfn: p.start, a: describeOwner(p.value), b: describeOwner(o, p.start - pfn) });
      return;
    }
    owners.set(pfn, pfn + n, o);
    ownedFrames += n;
  };
  // Every process's private pages (the VMM's, and a forked child's own: fork shares none in the
  // model), then the shmem objects any of them maps, each once.
  const mms = h.manyMms ? h.allMms() : [h.mm];
  for (const mm of mms)
    for (const e of mm.anon.entries())
      claim(e.value.base, e.end - e.start, { kind: 'anon', base: e.start });
  for (const e of h.frames.held.entries())
    claim(e.value.base, e.end - e.start, { kind: 'held', base: e.start });
  const shmems = new Set<ShmemObject>();
  for (const mm of mms)
    for (const v of mm.vmas.entries())
      if (v.value.obj instanceof ShmemObject) shmems.add(v.value.obj);
  for (const o of shmems)
    for (const e of o.pages.entries())
      claim(e.value.base, e.end - e.start, { kind: 'shmem', obj: o, base: e.start });
  for (const vm of h.allVms) {
    if (vm.dead) continue;
    for (const f of vm.gmemFiles)
      for (const e of f.pages.entries())
        claim(e.value.base, e.end - e.start, {
          kind: 'gmem',
          file: f,
          base: e.start,
          state: e.value.state,
        });
    vm.sharedPages.forEach((p) =>
      claim(p, 1, { kind: 'vcpu', vm, base: 0, what: 'coalesced MMIO ring' }),
    );
    vm.archPages.forEach((p) =>
      claim(p, 1, { kind: 'vcpu', vm, base: 0, what: 'arch page (TDX control or S-EPT page)' }),
    );
    for (const vc of vm.vcpus.values())
      vc.pages.forEach((p, i) =>
        claim(p, 1, {
          kind: 'vcpu',
          vm,
          base: 0,
          what: `vcpu ${vc.id} ${i === 0 ? 'kvm_run' : 'PIO'} page`,
        }),
      );
  }
  return { owners, doubles, ownedFrames, shmems };
}
