import { describe, expect, it, vi } from 'vitest';
import { DeferredDiscard, discardRanges } from '../../src/device/discard.js';
import { PageSet } from '../../src/device/page-set.js';

describe('PageSet', () => {
  it.each([
    ['one run', [[10, 5]], [{ pfn: 10, count: 5 }]],
    ['adjacent adds merge', [[10, 5], [15, 5]], [{ pfn: 10, count: 10 }]],
    ['overlaps count once', [[10, 5], [12, 5]], [{ pfn: 10, count: 7 }]],
    ['out-of-order singles merge', [[7, 1], [5, 1], [6, 1], [9, 1]], [{ pfn: 5, count: 3 }, { pfn: 9, count: 1 }]],
    ['a run across a 1 GiB chunk edge', [[(1 << 18) - 2, 4]], [{ pfn: (1 << 18) - 2, count: 4 }]],
    ['far apart chunks, ascending', [[5 << 18, 1], [3, 1]], [{ pfn: 3, count: 1 }, { pfn: 5 << 18, count: 1 }]],
    ['bit 31 of a word', [[31, 2]], [{ pfn: 31, count: 2 }]],
  ])('%s', (_n, adds, runs) => {
    const s = new PageSet();
    for (const [pfn, count] of adds) s.add({ pfn: pfn!, count: count! });
    expect(s.size).toBe(runs.reduce((n, r) => n + r.count, 0));
    expect(s.take()).toEqual(runs);
    expect(s.size).toBe(0);
    expect(s.take()).toEqual([]);
  });

  it('delete removes only present pages and splits runs', () => {
    const s = new PageSet();
    s.add({ pfn: 100, count: 10 });
    expect(s.delete({ pfn: 104, count: 2 })).toBe(2);
    expect(s.delete({ pfn: 104, count: 2 })).toBe(0);
    expect(s.delete({ pfn: 9 << 18, count: 1 })).toBe(0); // absent chunk
    expect(s.take()).toEqual([{ pfn: 100, count: 4 }, { pfn: 106, count: 4 }]);
  });

  it('a shuffled 1 GiB inflate collapses to one run', () => {
    const n = 1 << 18;
    const pfns = Array.from({ length: n }, (_, i) => i);
    for (let i = n - 1; i > 0; i--) {
      const j = (i * 7919) % (i + 1);
      [pfns[i], pfns[j]] = [pfns[j]!, pfns[i]!];
    }
    const s = new PageSet();
    for (const pfn of pfns) s.add({ pfn, count: 1 });
    expect(s.take()).toEqual([{ pfn: 0, count: n }]);
  });
});

describe('discardRanges', () => {
  it('calls discard once per range with byte addresses and collects failures', () => {
    const calls: Array<[number, number]> = [];
    const r = discardRanges([{ pfn: 1, count: 2 }, { pfn: 10, count: 1 }], (gpa, len) => {
      calls.push([gpa, len]);
      return gpa === 10 * 4096 ? -22 : len;
    });
    expect(calls).toEqual([[4096, 8192], [40960, 4096]]);
    expect(r).toEqual({ bytes: 8192, calls: 2, failures: [{ gpa: 40960, len: 4096, errno: 22 }] });
  });
});

describe('DeferredDiscard', () => {
  const timing = { idleMs: 5, maxDelayMs: 50, maxPendingPages: 1000 };

  function setup() {
    const discarded: Array<[number, number]> = [];
    let t = 0;
    const flushed = vi.fn();
    const d = new DeferredDiscard((gpa, len) => { discarded.push([gpa / 4096, len / 4096]); return len; }, flushed, timing, () => t);
    return { d, discarded, flushed, advance: (ms: number) => { t += ms; } };
  }

  it('flushes merged runs after the queue goes idle', async () => {
    vi.useFakeTimers();
    const { d, discarded, flushed } = setup();
    d.add([{ pfn: 12, count: 4 }]);
    d.add([{ pfn: 8, count: 4 }]);
    expect(discarded).toEqual([]);
    vi.advanceTimersByTime(5);
    expect(discarded).toEqual([[8, 8]]);
    expect(flushed).toHaveBeenCalledWith({ bytes: 8 * 4096, calls: 1, failures: [] });
    vi.useRealTimers();
  });

  it('never discards a page deflated before the flush', () => {
    vi.useFakeTimers();
    const { d, discarded } = setup();
    d.add([{ pfn: 0, count: 10 }]);
    expect(d.remove([{ pfn: 3, count: 2 }, { pfn: 50, count: 1 }])).toBe(2);
    d.flush();
    expect(discarded).toEqual([[0, 3], [5, 5]]);
    vi.useRealTimers();
  });

  it('flushes at once past maxPendingPages or maxDelayMs', () => {
    vi.useFakeTimers();
    const { d, discarded, advance } = setup();
    d.add([{ pfn: 0, count: 999 }]);
    expect(discarded).toEqual([]);
    d.add([{ pfn: 2000, count: 1 }]);
    expect(discarded).toEqual([[0, 999], [2000, 1]]);
    d.add([{ pfn: 5000, count: 1 }]);
    advance(49);
    d.add([{ pfn: 6000, count: 1 }]);
    expect(discarded).toHaveLength(2);
    advance(1);
    d.add([{ pfn: 7000, count: 1 }]);
    expect(discarded).toHaveLength(5);
    vi.useRealTimers();
  });

  it('drop forgets pending pages without discarding', () => {
    vi.useFakeTimers();
    const { d, discarded } = setup();
    d.add([{ pfn: 0, count: 10 }]);
    expect(d.drop()).toBe(10);
    vi.advanceTimersByTime(100);
    d.flush();
    expect(discarded).toEqual([]);
    vi.useRealTimers();
  });
});
