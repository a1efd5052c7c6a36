import { describe, expect, it } from 'vitest';
import { parseMessages } from '../../src/device/messages.js';
import { encodeStats, parseStats } from '../../src/device/stats.js';

describe('parseStats', () => {
  it('parses every known tag (0-15) by its Linux name', () => {
    const entries: Array<[number, number]> = Array.from({ length: 16 }, (_, t) => [t, 1000 + t]);
    const { stats, unknownTags, trailingBytes } = parseStats(encodeStats(entries));
    expect(stats).toEqual({
      swap_in: 1000, swap_out: 1001, major_faults: 1002, minor_faults: 1003, free_memory: 1004,
      total_memory: 1005, available_memory: 1006, disk_caches: 1007, hugetlb_allocations: 1008,
      hugetlb_failures: 1009, oom_kills: 1010, alloc_stalls: 1011, async_scans: 1012,
      direct_scans: 1013, async_reclaims: 1014, direct_reclaims: 1015,
    });
    expect(unknownTags).toBe(0);
    expect(trailingBytes).toBe(0);
  });

  it('ignores unknown tags and counts them', () => {
    const r = parseStats(encodeStats([[5, 1 << 30], [16, 1], [0xffff, 2]]));
    expect(r.stats).toEqual({ total_memory: 1 << 30 });
    expect(r.unknownTags).toBe(2);
  });

  it('keeps whole entries of a truncated buffer and reports the rest', () => {
    const b = encodeStats([[4, 123], [6, 456]]).subarray(0, 15);
    const r = parseStats(b);
    expect(r.stats).toEqual({ free_memory: 123 });
    expect(r.trailingBytes).toBe(5);
  });

  it('clamps values beyond 2^53', () => {
    expect(parseStats(encodeStats([[0, 2n ** 64n - 1n]])).stats.swap_in).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('later entries of a tag win (the driver never repeats one)', () => {
    expect(parseStats(encodeStats([[6, 1], [6, 2]])).stats.available_memory).toBe(2);
  });
});

describe('parseMessages', () => {
  const le32 = (...v: number[]) => Buffer.from(new Uint32Array(v).buffer);
  it.each([
    ['one pressure', le32(1), { pressure: 1, unknown: 0, trailingBytes: 0 }],
    ['pressure and unknown', le32(1, 2, 1, 0), { pressure: 2, unknown: 2, trailingBytes: 0 }],
    ['odd length', Buffer.concat([le32(1), Buffer.from([1])]), { pressure: 1, unknown: 0, trailingBytes: 1 }],
    ['empty', Buffer.alloc(0), { pressure: 0, unknown: 0, trailingBytes: 0 }],
  ])('%s', (_n, buf, expected) => {
    expect(parseMessages(buf)).toEqual(expected);
  });
});
