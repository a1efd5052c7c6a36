// struct virtio_balloon_config (16 bytes, little-endian).
import {
  CONFIG_OFFSET_ACTUAL, CONFIG_OFFSET_FREE_PAGE_HINT_CMD_ID, CONFIG_OFFSET_NUM_PAGES,
  CONFIG_OFFSET_POISON_VAL, CONFIG_SIZE,
} from './constants.js';

export interface BalloonConfig {
  /** Target balloon size in 4 KiB pages (device writes). */
  num_pages: number;
  /** Current balloon size in 4 KiB pages (driver writes). */
  actual: number;
  free_page_hint_cmd_id: number;
  poison_val: number;
}

export function encodeConfig(c: BalloonConfig): Buffer {
  const b = Buffer.alloc(CONFIG_SIZE);
  b.writeUInt32LE(c.num_pages >>> 0, CONFIG_OFFSET_NUM_PAGES);
  b.writeUInt32LE(c.actual >>> 0, CONFIG_OFFSET_ACTUAL);
  b.writeUInt32LE(c.free_page_hint_cmd_id >>> 0, CONFIG_OFFSET_FREE_PAGE_HINT_CMD_ID);
  b.writeUInt32LE(c.poison_val >>> 0, CONFIG_OFFSET_POISON_VAL);
  return b;
}

export function decodeConfig(b: Buffer): BalloonConfig {
  if (b.length < CONFIG_SIZE) throw new RangeError(`config needs ${CONFIG_SIZE} bytes, got ${b.length}`);
  return {
    num_pages: b.readUInt32LE(CONFIG_OFFSET_NUM_PAGES),
    actual: b.readUInt32LE(CONFIG_OFFSET_ACTUAL),
    free_page_hint_cmd_id: b.readUInt32LE(CONFIG_OFFSET_FREE_PAGE_HINT_CMD_ID),
    poison_val: b.readUInt32LE(CONFIG_OFFSET_POISON_VAL),
  };
}

/** Does a SET_CONFIG write of [offset, offset+size) touch the field at `field`? */
export function touchesField(offset: number, size: number, field: number): boolean {
  return offset < field + 4 && field < offset + size;
}
