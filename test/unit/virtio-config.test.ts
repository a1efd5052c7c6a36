import { describe, expect, it } from 'vitest';
import { decodeConfig, encodeConfig, touchesField } from '../../src/virtio/config.js';

describe('struct virtio_balloon_config', () => {
  it('is 16 little-endian bytes in spec order', () => {
    const b = encodeConfig({ num_pages: 0x01020304, actual: 0x0a0b0c0d, free_page_hint_cmd_id: 7, poison_val: 0xffffffff });
    expect(b.toString('hex')).toBe('04030201' + '0d0c0b0a' + '07000000' + 'ffffffff');
    expect(decodeConfig(b)).toEqual({ num_pages: 0x01020304, actual: 0x0a0b0c0d, free_page_hint_cmd_id: 7, poison_val: 0xffffffff });
  });

  it('refuses a short buffer', () => {
    expect(() => decodeConfig(Buffer.alloc(8))).toThrow(RangeError);
  });

  it.each([
    [0, 4, 0, true], [0, 4, 4, false], [4, 4, 4, true], [0, 16, 4, true], [2, 4, 4, true], [8, 8, 4, false], [0, 8, 4, true],
  ])('write of [%d,+%d) touches field at %d: %s', (off, size, field, expected) => {
    expect(touchesField(off, size, field)).toBe(expected);
  });
});
