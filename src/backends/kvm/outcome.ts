/** Result-line helpers of the real-KVM backend and the op families' /dev/kvm execution. */
import { errnoName } from '../../core/base/errno.js';
import type { OpOutcome, ResultLine } from '../../trace/base_types.js';

export const ok = (extra: Record<string, unknown> = {}): ResultLine =>
  ({ ok: true, ...extra }) as ResultLine;
export const fail = (errno: number, extra: Record<string, unknown> = {}): ResultLine =>
  ({ ok: false, errno: errnoName(errno), ...extra }) as ResultLine;
export const out = (
  result: ResultLine,
  more: { createdFd?: number; createdAddr?: bigint } = {},
): OpOutcome => ({ result, ...more });
