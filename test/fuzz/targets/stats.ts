// parseStats on stats-queue buffers: packed { le16 tag; le64 val } entries,
// any tags and values, a partial entry at the end.
import fc from 'fast-check';
import { parseStats } from '../../../src/device/stats.js';
import { anyU64, leBytes, placed, placement, trailing } from '../arbitraries.js';
import { defineTarget, invariant, sameValue } from '../harness.js';

/** Tag names as include/uapi/linux/virtio_balloon.h numbers them (the reference, written out again). */
const LINUX_TAGS = [
  'swap_in', 'swap_out', 'major_faults', 'minor_faults', 'free_memory', 'total_memory', 'available_memory', 'disk_caches',
  'hugetlb_allocations', 'hugetlb_failures', 'oom_kills', 'alloc_stalls', 'async_scans', 'direct_scans', 'async_reclaims',
  'direct_reclaims',
];
const ENTRY = 10;

export interface StatsInput {
  entries: Array<{ tag: number; val: bigint }>;
  tail: number[];
  at: { offset: number; slack: number };
}

export const statsTarget = defineTarget<StatsInput>({
  name: 'stats',
  about: 'parseStats: known tags decoded as written (last one wins, clamped to 2^53-1), unknown tags and the partial entry counted',
  input: fc.record({
    entries: fc.array(fc.record({
      tag: fc.oneof(
        { arbitrary: fc.integer({ min: 0, max: 15 }), weight: 6 },
        { arbitrary: fc.constantFrom(16, 17, 0xff, 0x100, 0xfffe, 0xffff), weight: 1 },
        { arbitrary: fc.integer({ min: 0, max: 0xffff }), weight: 1 },
      ),
      val: anyU64,
    }), { maxLength: 40 }),
    tail: trailing(ENTRY - 1),
    at: placement,
  }),
  examples: [
    { entries: [], tail: [], at: { offset: 0, slack: 0 } },
    { entries: [{ tag: 6, val: 2n ** 64n - 1n }, { tag: 6, val: 5n }, { tag: 16, val: 1n }], tail: [6, 0, 1], at: { offset: 1, slack: 3 } },
    { entries: [{ tag: 15, val: 2n ** 53n - 1n }, { tag: 0, val: 2n ** 53n }], tail: [1, 2, 3, 4, 5, 6, 7, 8, 9], at: { offset: 7, slack: 0 } },
  ],
  check({ entries, tail, at }) {
    const bytes: number[] = [];
    for (const e of entries) leBytes(e.val, 8, leBytes(e.tag, 2, bytes));
    bytes.push(...tail);
    const buf = placed(bytes, at);
    const got = parseStats(buf);

    const want = new Map<string, number>();
    let unknown = 0;
    for (const { tag, val } of entries) {
      if (tag >= LINUX_TAGS.length) unknown++;
      else want.set(LINUX_TAGS[tag]!, val > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(val));
    }
    invariant(got.unknownTags === unknown, 'unknownTags counts the entries with a tag >= 16', () => ({ got: got.unknownTags, unknown }));
    invariant(got.trailingBytes === tail.length, 'trailingBytes is the partial entry', () => ({ got: got.trailingBytes, tail: tail.length }));
    const keys = Object.keys(got.stats).sort();
    sameValue(keys, [...want.keys()].sort(), 'stats names present');
    for (const k of keys) {
      const v = (got.stats as Record<string, unknown>)[k];
      invariant(typeof v === 'number' && Number.isSafeInteger(v) && v >= 0, 'each value is a safe non-negative integer', () => ({ k, v }));
      invariant(v === want.get(k), 'each value as the last entry with that tag says', () => ({ k, v, want: want.get(k) }));
    }
  },
});
