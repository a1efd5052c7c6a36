// The message virtqueue payload: le32 messages.
import { VIRTIO_BALLOON_MSG_PRESSURE } from '../virtio/constants.js';

export interface ParsedMessages {
  pressure: number;
  unknown: number;
  trailingBytes: number;
}

export function parseMessages(buf: Buffer): ParsedMessages {
  const out: ParsedMessages = { pressure: 0, unknown: 0, trailingBytes: buf.length & 3 };
  for (let off = 0; off + 4 <= buf.length; off += 4) {
    if (buf.readUInt32LE(off) === VIRTIO_BALLOON_MSG_PRESSURE) out.pressure++;
    else out.unknown++;
  }
  return out;
}
