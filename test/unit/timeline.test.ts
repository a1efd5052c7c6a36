import { describe, expect, it, vi } from 'vitest';
import { ColumnRing, type Columns, History, Ring } from '../../src/control/timeline.js';

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

/** Numbers as one-column records, to run Ring's table against ColumnRing. */
const ONE: Columns<number> = { width: 1, write: (x, b, at) => { b[at] = x; }, read: (b, at) => b[at]! };

describe('ColumnRing', () => {
  it.each([
    [3, [1, 2], [1, 2]],
    [3, [1, 2, 3], [1, 2, 3]],
    [3, [1, 2, 3, 4, 5], [3, 4, 5]],
    [3, [1, 2, 3, 4, 5, 6, 7], [5, 6, 7]],
    [100, Array.from({ length: 250 }, (_, i) => i), Array.from({ length: 100 }, (_, i) => 150 + i)],
  ])('capacity %i after pushing %j keeps what Ring keeps', (cap, pushed, kept) => {
    const r = new ColumnRing<number>(cap, ONE);
    const ref = new Ring<number>(cap);
    for (const x of pushed) {
      r.push(x);
      ref.push(x);
      expect(r.peek()).toBe(ref.peek());
    }
    expect(r.last()).toEqual(kept);
    expect(r.last()).toEqual(ref.last());
    expect(r.last(2)).toEqual(kept.slice(-2));
    expect(r.last(0)).toEqual([]);
    expect(r.length).toBe(kept.length);
  });

  it('replaceLast changes the newest record only, before and after wrapping', () => {
    const r = new ColumnRing<number>(3, ONE);
    r.replaceLast(9); // empty: a push
    expect(r.last()).toEqual([9]);
    for (const x of [1, 2, 3]) r.push(x);
    r.replaceLast(30);
    expect(r.last()).toEqual([1, 2, 30]);
    r.push(4);
    r.replaceLast(40);
    expect(r.last()).toEqual([2, 30, 40]);
  });

  it('an empty ring has nothing', () => {
    const r = new ColumnRing<number>(5, ONE);
    expect(r.peek()).toBeUndefined();
    expect(r.last()).toEqual([]);
    expect(r.length).toBe(0);
  });

  it('History keeps samples and marks exactly, availableBytes only when given', () => {
    const h = new History();
    h.samples.push({ t: 0.123456789, targetBytes: 2 ** 40 + 4096, actualBytes: 33554432 });
    h.samples.push({ t: 1.5, targetBytes: 0, actualBytes: 0, availableBytes: 123 * 4096 });
    h.marks.push({ t: 2.25, kind: 'guest' });
    h.marks.push({ t: 3, kind: 'host' });
    expect(h.samples.last()).toEqual([
      { t: 0.123456789, targetBytes: 2 ** 40 + 4096, actualBytes: 33554432 },
      { t: 1.5, targetBytes: 0, actualBytes: 0, availableBytes: 123 * 4096 },
    ]);
    expect('availableBytes' in h.samples.last()[0]!).toBe(false);
    expect(h.marks.last()).toEqual([{ t: 2.25, kind: 'guest' }, { t: 3, kind: 'host' }]);
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
