/**
 * EFI GUIDs as they lie in firmware images: 16 bytes, the first three fields little-endian
 * (`EFI_GUID` {UINT32, UINT16, UINT16, UINT8[8]}; Python's `uuid.UUID.bytes_le`).
 */

/** The 16 on-disk bytes of a GUID written as text (8-4-4-4-12 hex digits). */
export function guidBytes(text: string): Uint8Array {
  const m = /^([0-9a-f]{8})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{4})-([0-9a-f]{12})$/i.exec(text);
  if (m === null) throw new RangeError(`not a GUID: ${text}`);
  const hex = (s: string): number[] => s.match(/../g)!.map((b) => parseInt(b, 16));
  return new Uint8Array([
    ...hex(m[1]!).reverse(),
    ...hex(m[2]!).reverse(),
    ...hex(m[3]!).reverse(),
    ...hex(m[4]!),
    ...hex(m[5]!),
  ]);
}

/** The text form (lower case) of the 16 on-disk bytes of a GUID at `off`. */
export function guidText(b: Uint8Array, off = 0): string {
  const h = (i: number): string => b[off + i]!.toString(16).padStart(2, '0');
  const run = (idx: number[]): string => idx.map(h).join('');
  return [
    run([3, 2, 1, 0]),
    run([5, 4]),
    run([7, 6]),
    run([8, 9]),
    run([10, 11, 12, 13, 14, 15]),
  ].join('-');
}
