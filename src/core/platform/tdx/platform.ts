/**
 * An Intel TDX host as the model's platform (platform/platform.ts): the TDX module (module.ts) with
 * its PAMT, per host: each `Host` assembled for a `tdx` profile (`linux-6.18-tdx`) gets its own,
 * with the host's frame store and the MRTD implementation (tdx/mrtd.ts) (core/assemble.ts;
 * registered as TDX_HOST by arch/x86/vmx/parts.ts).
 *
 * **Host access to frames the module owns** (PT_REG, PT_EPT, PT_TDR, PT_TDCX, PT_TDVPR;
 * platforms.md §1.6). The host never takes a fault for them: TDX does not check host accesses
 * the way SNP's RMP does, so `hostAccess()` refuses nothing and `guardsHostAccess` is false (the
 * host-access path skips the call). What the access does is modelled here, for the host-access
 * path to apply when the TDX flow wires it in:
 * - a host read (KeyID 0) of a module-owned frame reads zeros (`hostReadsZeros()`): the choice
 *   for logical-integrity mode, where a non-TD read of a line whose TD-owner bit is set returns
 *   zeros (the spec marks the exact value unverified; ciphertext would be the other choice).
 *   PAGE.ADD's copy from a module-owned source reads zeros for the same reason;
 * - a host write poisons the frame (`hostWrite()`): the line's TD-owner/integrity state no longer
 *   matches. The model tracks poison per frame (not per 64-byte line). Nothing happens at the
 *   write; a later TD access to the frame is a machine check (`TdxModule.guestAccess` returns
 *   `machine-check`, a TD exit the run reports), and a whole-page write by the module (PAGE.ADD,
 *   ACCEPT) or KVM's MOVDIR64B clear (`movdir64bClear()`) removes the poison.
 */
import type { FrameStore } from '../../base/frames.js';
import type { Pfn } from '../../base/units.js';
import type { HostAccessPath, Platform } from '../platform.js';
import { TdxModule, type TdMrtd, type TdxModuleConfig } from './module.js';

export class TdxPlatform implements Platform {
  readonly name = 'tdx';
  readonly module: TdxModule;
  /** No host access is ever refused (see the module comment). */
  readonly guardsHostAccess = false;

  constructor(frames: FrameStore, mrtd: () => TdMrtd, config: Partial<TdxModuleConfig> = {}) {
    this.module = new TdxModule(frames, mrtd, config);
  }

  get tdx(): { readonly module: TdxModule } {
    return this;
  }

  hostAccess(_pfn: Pfn, _write: boolean, _path: HostAccessPath): undefined {
    return undefined;
  }

  /** A host read of `pfn` sees zeros instead of the frame's contents (a module-owned frame). */
  hostReadsZeros(pfn: Pfn): boolean {
    return this.module.owns(pfn);
  }

  /** A host write to `pfn` happened: poisons it if the module owns it. */
  hostWrite(pfn: Pfn): void {
    this.module.hostWrite(pfn);
  }
}
