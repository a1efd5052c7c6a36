// Reading the driver-readable part of a popped element, with the checks every
// queue needs: wrong-direction descriptors, empty and oversized buffers.
import type { DeviceTransport, Element } from './transport.js';
import type { BadInputKind } from './bad-input.js';

export type Recorder = (kind: BadInputKind, detail?: Record<string, unknown>, n?: number) => void;

/**
 * Concatenate the element's driver-readable bytes (at most `limit`), or null
 * when there is nothing usable. Writable descriptors are reported, not read.
 */
export function readOut(conn: DeviceTransport, elem: Element, limit: number, record: Recorder, scratch?: Buffer): Buffer | null {
  if (elem.in.length > 0) record('wrong_direction', { index: elem.index, writableDescriptors: elem.in.length });
  let total = 0;
  for (const sg of elem.out) total += sg.len;
  if (total > limit || elem.truncated) {
    record('oversized_buffer', { index: elem.index, bytes: total, limit });
    return null;
  }
  if (total === 0) {
    record('empty_buffer', { index: elem.index });
    return null;
  }
  const buf = scratch && total <= scratch.length ? scratch.subarray(0, total) : Buffer.alloc(total);
  let off = 0;
  for (const sg of elem.out) {
    conn.read(sg.addr, sg.len, buf.subarray(off, off + sg.len));
    off += sg.len;
  }
  return buf;
}
