/**
 * What changed: every model operation records the side effects an explanation needs (zaps and
 * their source, TLB flushes, pages allocated/zeroed/freed, stage-2 installs, slot and file life
 * cycle). The scenario timeline and the invariant checker read them; nothing in the model
 * depends on them.
 */
import type { Gfn, Hvpn, PgOff } from './units.js';

/** Why guest mappings were zapped (kernel-uapi.md §3.5). */
export type ZapSource =
  | 'punch_hole'
  | 'madv_remove'
  | 'gmem_release'
  | 'memory_failure'
  | 'set_memory_attributes'
  | 'memslot_delete'
  | 'memslot_move'
  | 'mmu_notifier'
  | 'vm_destroy'
  /** `sev_handle_rmp_fault()`'s `kvm_zap_gfn_range()` after a PSMASH. */
  | 'rmp_fault';

export type ModelEvent =
  | {
      readonly kind: 'zap';
      readonly vm: number;
      readonly as: number;
      readonly start: Gfn;
      readonly end: Gfn;
      readonly pages: number;
      readonly source: ZapSource;
    }
  | { readonly kind: 'tlb_flush'; readonly vm: number; readonly source: ZapSource }
  | {
      readonly kind: 'invalidate';
      readonly vm: number;
      readonly start: Gfn;
      readonly end: Gfn;
      readonly source: ZapSource;
    }
  | {
      readonly kind: 'gmem_alloc';
      readonly ino: number;
      readonly start: PgOff;
      readonly end: PgOff;
      readonly via: 'fallocate' | 'guest_fault' | 'host_fault' | 'populate';
    }
  | {
      /**
       * A HugeTLB guest_memfd huge page [start, end) restructured
       * (`hugetlb_restructuring_restructure_folio()`): split into order-0 folios (`order` 0) or
       * merged into one folio of `order`.
       */
      readonly kind: 'gmem_restructure';
      readonly ino: number;
      readonly start: PgOff;
      readonly end: PgOff;
      readonly order: number;
    }
  | {
      readonly kind: 'gmem_zero';
      readonly ino: number;
      readonly start: PgOff;
      readonly end: PgOff;
      readonly via: 'guest_fault' | 'host_fault';
    }
  | {
      readonly kind: 'gmem_free';
      readonly ino: number;
      readonly start: PgOff;
      readonly end: PgOff;
      readonly via: 'punch_hole' | 'madv_remove' | 'inode_evict';
    }
  | { readonly kind: 'anon_alloc'; readonly hvpn: Hvpn; readonly pages: number }
  | { readonly kind: 'anon_free'; readonly hvpn: Hvpn; readonly pages: number }
  | {
      readonly kind: 'shmem_alloc';
      readonly obj: number;
      readonly start: PgOff;
      readonly end: PgOff;
    }
  | {
      readonly kind: 'shmem_free';
      readonly obj: number;
      readonly start: PgOff;
      readonly end: PgOff;
    }
  | {
      readonly kind: 'spte_install';
      readonly vm: number;
      readonly as: number;
      readonly gfn: Gfn;
      readonly pages: number;
      readonly level: '4K' | '2M' | '1G';
      readonly private: boolean;
      readonly source: 'gmem' | 'hva';
    }
  | {
      /**
       * A huge leaf of [gfn, gfn + pages) split into leaves of `level` mapping the same frames
       * (`kvm_split_cross_boundary_leafs()`, HugeTLB guest_memfd).
       */
      readonly kind: 'spte_split';
      readonly vm: number;
      readonly as: number;
      readonly gfn: Gfn;
      readonly pages: number;
      readonly level: '4K' | '2M';
    }
  | {
      readonly kind: 'slot';
      readonly vm: number;
      readonly as: number;
      readonly id: number;
      readonly change: 'CREATE' | 'DELETE' | 'MOVE' | 'FLAGS_ONLY';
    }
  | {
      readonly kind: 'gmem_bind';
      readonly ino: number;
      readonly vm: number;
      readonly slot: number;
      readonly start: PgOff;
      readonly end: PgOff;
    }
  | {
      readonly kind: 'gmem_unbind';
      readonly ino: number;
      readonly vm: number;
      readonly slot: number;
      readonly start: PgOff;
      readonly end: PgOff;
    }
  | { readonly kind: 'gmem_release'; readonly ino: number; readonly vm: number }
  | {
      readonly kind: 'attributes';
      readonly vm: number;
      readonly start: Gfn;
      readonly end: Gfn;
      readonly attributes: bigint;
    }
  | { readonly kind: 'vm_destroy'; readonly vm: number }
  | { readonly kind: 'exit'; readonly vm: number; readonly vcpu: number; readonly reason: string }
  /** fork(2) made process `child` of `parent`; process `pid` exited with `status`. */
  | { readonly kind: 'proc_fork'; readonly parent: number; readonly child: number }
  | { readonly kind: 'proc_exit'; readonly pid: number; readonly status: number };

export class EventLog {
  private buf: ModelEvent[] = [];
  enabled = true;

  push(e: ModelEvent): void {
    if (this.enabled) this.buf.push(e);
  }

  /** Take the events recorded since the last drain. */
  drain(): ModelEvent[] {
    const b = this.buf;
    this.buf = [];
    return b;
  }
}
