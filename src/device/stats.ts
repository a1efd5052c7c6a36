// The stats virtqueue payload: packed { le16 tag; le64 val } entries.
import { STAT_ENTRY_SIZE, STAT_NAMES, StatName, VIRTIO_BALLOON_S_NR } from '../virtio/constants.js';

export type GuestStats = Partial<Record<StatName, number>>;

export interface ParsedStats {
  stats: GuestStats;
  /** Tags above the ones we know (newer guests); counted, not kept. */
  unknownTags: number;
  /** Bytes at the end that do not make a whole entry. */
  trailingBytes: number;
}

export function parseStats(buf: Buffer): ParsedStats {
  const stats: GuestStats = {};
  let unknownTags = 0;
  const whole = Math.floor(buf.length / STAT_ENTRY_SIZE);
  for (let i = 0; i < whole; i++) {
    const off = i * STAT_ENTRY_SIZE;
    const tag = buf.readUInt16LE(off);
    const val = buf.readBigUInt64LE(off + 2);
    if (tag >= VIRTIO_BALLOON_S_NR) {
      unknownTags++;
      continue;
    }
    // Counters beyond 2^53 are not meaningful for a balloon; clamp for JSON.
    stats[STAT_NAMES[tag] as StatName] = val > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(val);
  }
  return { stats, unknownTags, trailingBytes: buf.length - whole * STAT_ENTRY_SIZE };
}

export function encodeStats(stats: ReadonlyArray<[number, bigint | number]>): Buffer {
  const b = Buffer.alloc(stats.length * STAT_ENTRY_SIZE);
  stats.forEach(([tag, val], i) => {
    b.writeUInt16LE(tag, i * STAT_ENTRY_SIZE);
    b.writeBigUInt64LE(BigInt(val), i * STAT_ENTRY_SIZE + 2);
  });
  return b;
}
