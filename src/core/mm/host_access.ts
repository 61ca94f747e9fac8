/**
 * The host's accesses to physical frames, in one place: the VMM's loads and stores
 * (`copy_to_user`/`copy_from_user` through its page tables), `get_user_pages()` for KVM, and KVM's
 * uaccess through userspace_addr. Each is shown to the access observer (the invariant checker)
 * and checked by the platform (platform/platform.ts) before the frame is used.
 */
import type { Pfn } from '../base/units.js';
import type { HostAccessPath } from '../platform/platform.js';
import type { MmCtx } from './mm_ctx.js';

/**
 * The host is about to access `pfn` by `path`: undefined when it may, else the signal the platform
 * raises (the access does not happen).
 */
export function hostAccessFrame(
  k: MmCtx,
  pfn: Pfn,
  write: boolean,
  path: HostAccessPath,
): 'SIGBUS' | 'SIGSEGV' | undefined {
  const r = k.platform.guardsHostAccess ? k.platform.hostAccess(pfn, write, path) : undefined;
  k.observe?.(pfn, write, path, r !== undefined);
  return r;
}
