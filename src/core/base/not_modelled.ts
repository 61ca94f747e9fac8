/**
 * `NotModelled`: thrown where the kernel would go on into something this model does not represent
 * yet (an SEV guest made by KVM_SEV_INIT, a guest_memfd folio of order > 0). It is not a model
 * answer (no errno): callers that run trace ops turn it into a refusal that names the gap, so a
 * run stops with a clear message instead of an internal error.
 */
export class NotModelled extends Error {}
