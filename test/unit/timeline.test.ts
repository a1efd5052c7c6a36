import { describe, expect, it, vi } from 'vitest';
import { History, Ring } from '../../src/control/timeline.js';

describe('Ring', () => {
  it.each([
    [3, [1, 2], [1, 2]],
    [3, [1, 2, 3], [1, 2, 3]],
    [3, [1, 2, 3, 4, 5], [3, 4, 5]],
    [3, [1, 2, 3, 4, 5, 6, 7], [5, 6, 7]],
  ])('capacity %i after pushing %j keeps %j, oldest first', (cap, pushed, kept) => {
    const r = new Ring<number>(cap);
    for (const x of pushed) r.push(x);
    expect(r.last()).toEqual(kept);
    expect(r.last(2)).toEqual(kept.slice(-2));
    expect(r.last(0)).toEqual([]);
    expect(r.peek()).toBe(pushed[pushed.length - 1]);
    expect(r.length).toBe(kept.length);
  });

  it('replaceLast changes the newest item only, also after wrapping', () => {
    const r = new Ring<number>(3);
    for (const x of [1, 2, 3, 4]) r.push(x);
    r.replaceLast(40);
    expect(r.last()).toEqual([2, 3, 40]);
  });
});

describe('History.sample', () => {
  it('samples within 100 ms at the same target collapse into one; a target change always gets its own', () => {
    vi.useFakeTimers();
    try {
      const h = new History();
      h.sample(0, 0);
      vi.advanceTimersByTime(10);
      h.sample(0, 4096);                    // same target, 10 ms later: replaces
      vi.advanceTimersByTime(10);
      h.sample(8192, 4096);                 // target changed: new sample
      vi.advanceTimersByTime(150);
      h.sample(8192, 8192);                 // 150 ms later: new sample
      expect(h.samples.last().map((s) => [s.targetBytes, s.actualBytes])).toEqual([[0, 4096], [8192, 4096], [8192, 8192]]);
    } finally {
      vi.useRealTimers();
    }
  });
});
