/**
 * The real-KVM backend. `openKvmBackend()` returns a backend bound to this machine's /dev/kvm, or
 * `{ unavailable: reason }` when there is none (no device, no permission, no libc/FFI).
 */
import { errnoName } from '../../core/base/errno.js';
import { KVM_IOCTL } from '../../core/base/uapi.js';
import { KvmBackend } from './backend.js';
import { O_CLOEXEC, O_RDWR, libc } from './libc.js';

export { KvmBackend, CLOSED_FD } from './backend.js';
export { compileGuest } from './guest_code.js';

export function openKvmBackend(): KvmBackend | { unavailable: string } {
  let c;
  try {
    c = libc();
  } catch (e) {
    return { unavailable: `cannot load libc through koffi: ${(e as Error).message}` };
  }
  const r = c.open('/dev/kvm', O_RDWR | O_CLOEXEC);
  if (r.ret < 0) return { unavailable: `cannot open /dev/kvm: ${errnoName(r.errno)}` };
  try {
    const api = c.ioctlInt(r.ret, 0xae00 /* KVM_GET_API_VERSION */, 0n);
    if (api.ret !== 12)
      return { unavailable: `/dev/kvm reports API version ${api.ret} (expected 12)` };
    const size = c.ioctlInt(r.ret, KVM_IOCTL.KVM_GET_VCPU_MMAP_SIZE, 0n);
    if (size.ret <= 0)
      return { unavailable: `KVM_GET_VCPU_MMAP_SIZE failed: ${errnoName(size.errno)}` };
    try {
      return new KvmBackend(size.ret);
    } catch (e) {
      return { unavailable: `cannot set up the backend: ${(e as Error).message}` };
    }
  } finally {
    c.close(r.ret);
  }
}
