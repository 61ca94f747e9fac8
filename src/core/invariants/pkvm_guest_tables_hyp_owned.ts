/**
 * pkvm-guest-tables-hyp-owned: the pages the hypervisor holds for a VM (its stage-2 tables, pool,
 * memcaches, pgd, VM and vCPU structs) are hyp-owned (platforms.md §3.5 invariant 5).
 * Evaluated with the other pKVM checks, change-driven (pkvm_common.ts).
 */
import { pkvmInvariant } from './pkvm_common.js';

export const pkvmGuestTablesHypOwned = pkvmInvariant(5, {
  title:
    "A guest's page tables, memcache pages and VM/vCPU structs are owned by the hypervisor, not the host",
  statement:
    "Every page the hypervisor holds for a live VM \u2014 the guest stage-2's table pages, the VM's pool of free table pages, each vCPU's memcache of pages admitted for tables, the stage-2 pgd and the VM and vCPU structs \u2014 is hyp OWNED and host NOPAGE: the host, which donated them, can neither read nor rewrite a guest's page tables or vCPU state.",
  mechanism:
    '__pkvm_init_vm()/__pkvm_init_vcpu() take the VM, pgd and vCPU pages with __pkvm_host_donate_hyp() (map_donated_memory()), refill_memcache()/admit_host_page() donates each memcache page before the hypervisor uses it for a table (guest_s2_zalloc_page()), and __pkvm_finalize_teardown_vm() gives them back only after zeroing (teardown_donated_memory(), __pkvm_hyp_donate_host()) (pkvm.c, mem_protect.c, hyp-main.c).',
  origin: 'platforms.md \u00a73.1 (guest stage-2 tables from a per-vCPU memcache), \u00a73.5 (5).',
});
