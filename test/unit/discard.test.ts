import { describe, expect, it } from 'vitest';
import {
  BackgroundDiscard, Clock, DEFAULT_HAND_OVER, DiscardResult, discardRanges, HandOverRule,
} from '../../src/device/discard.js';
import type { PfnRange } from '../../src/device/pfn.js';
import { PageSet } from '../../src/device/page-set.js';
import { FakeWorker } from './fake-transport.js';

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

  it.each([
    ['adds: single, extend, join', [['add', 10, 1], ['add', 11, 1], ['add', 13, 1], ['add', 12, 1]], 1],
    ['deletes: split, shorten, end', [['add', 0, 10], ['del', 5, 1], ['del', 9, 1], ['add', 20, 1], ['del', 20, 1]], 2],
    ['overlapping add', [['add', 0, 4], ['add', 2, 4]], 1],
    ['delete of absent pages', [['add', 0, 4], ['del', 10, 4]], 1],
  ])('runs are counted as pages come and go: %s', (_n, ops, runs) => {
    const s = new PageSet();
    for (const [op, pfn, count] of ops as Array<[string, number, number]>) {
      if (op === 'add') s.add({ pfn, count });
      else s.delete({ pfn, count });
    }
    expect(s.runs).toBe(runs);
    expect(s.take()).toHaveLength(runs);
    expect(s.runs).toBe(0);
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

class FakeClock implements Clock {
  t = 0;
  private timers: Array<{ at: number; fn: () => void }> = [];
  now(): number {
    return this.t;
  }
  after(ms: number, fn: () => void): () => void {
    const e = { at: this.t + ms, fn };
    this.timers.push(e);
    return () => { this.timers = this.timers.filter((x) => x !== e); };
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      const next = this.timers.filter((x) => x.at <= end).sort((a, b) => a.at - b.at)[0];
      if (!next) break;
      this.timers = this.timers.filter((x) => x !== next);
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
  get armed(): number {
    return this.timers.length;
  }
}

/** Every page goes at once: the tests of what is discarded, not when. */
const AT_ONCE: HandOverRule = { ...DEFAULT_HAND_OVER, denseRunPages: 1, minJobPages: 1 };

function setup(rule = AT_ONCE) {
  const w = new FakeWorker();
  const clock = new FakeClock();
  const results: DiscardResult[] = [];
  const bg = new BackgroundDiscard(w, (r) => results.push(r), rule, clock);
  return { w, bg, results, clock };
}

const run = (pfn: number, count: number): PfnRange => ({ pfn, count });

describe('BackgroundDiscard', () => {
  it('hands pages to an idle thread at once, merged', () => {
    const { w, bg } = setup();
    bg.add([run(12, 4), run(8, 4)]);
    expect(w.submitted).toEqual([[run(8, 8)]]);
    expect(bg.busy).toBe(true);
    expect(bg.pendingPages).toBe(8);
  });

  it('collects pages while the thread works and hands them over merged when it is done', () => {
    const { w, bg, results } = setup();
    bg.add([run(0, 1)]);
    for (const pfn of [7, 5, 6, 3, 4]) bg.add([run(pfn, 1)]);
    expect(w.submitted).toHaveLength(1);
    expect(bg.pendingPages).toBe(6);
    w.finish();
    bg.onJobDone();
    expect(results).toEqual([{ bytes: 4096, calls: 1, failures: [] }]);
    expect(w.submitted[1]).toEqual([run(3, 5)]);
    w.finish();
    bg.onJobDone();
    expect(bg.busy).toBe(false);
    expect(bg.pendingPages).toBe(0);
    expect(w.discarded).toEqual([run(0, 1), run(3, 5)]);
  });

  it.each([
    // name, inflated runs, deflated runs, pages still pending that the deflate took, discarded in the end
    ['deflate inside the running job', [[0, 10]], [[3, 2]], 2, [[0, 3], [5, 5]]],
    ['deflate of the whole job', [[0, 10]], [[0, 10]], 10, []],
    ['deflate of pages never inflated', [[0, 10]], [[50, 5]], 0, [[0, 10]]],
    ['deflate across the job and waiting pages', [[0, 4], [100, 4]], [[2, 100]], 4, [[0, 2], [102, 2]]],
  ])('%s: the deflated pages are never discarded', (_n, inflated, deflated, pending, discarded) => {
    const { w, bg } = setup();
    bg.add([run(inflated[0]![0]!, inflated[0]![1]!)]);
    for (const [p, c] of inflated.slice(1)) bg.add([run(p!, c!)]); // these wait: the job runs
    expect(bg.remove(deflated.map(([p, c]) => run(p!, c!)))).toBe(pending);
    bg.flush();
    expect(w.discarded).toEqual(discarded.map(([p, c]) => run(p!, c!)));
  });

  it('does not bother the thread for a deflate outside its job', () => {
    const { w, bg } = setup();
    bg.add([run(100, 10)]);
    bg.add([run(5, 1)]);
    expect(bg.remove([run(5, 1), run(200, 3)])).toBe(1);
    expect(w.cancels).toEqual([]);
  });

  it('a busy thread it did not know about (EBUSY): keeps the pages and cancels any deflate', () => {
    const { w, bg } = setup();
    w.job = [run(1000, 1)];
    bg.add([run(0, 4)]);
    expect(bg.busy).toBe(true);
    expect(bg.remove([run(1000, 1)])).toBe(1);
    expect(w.cancels).toEqual([run(1000, 1)]);
    bg.onJobDone();
    expect(w.submitted).toEqual([[run(0, 4)]]);
  });

  it('no thread (submit fails): nothing is discarded and every range is reported failed', () => {
    const { w, bg, results } = setup();
    w.submitRet = -107;
    bg.add([run(0, 2), run(10, 1)]);
    expect(w.discarded).toEqual([]);
    expect(bg.busy).toBe(false);
    expect(results).toEqual([{ bytes: 0, calls: 0, failures: [
      { gpa: 0, len: 8192, errno: 107 }, { gpa: 40960, len: 4096, errno: 107 }] }]);
  });

  it('passes the thread\'s failures on with their count', () => {
    const { w, bg, results } = setup();
    w.failNext = { errno: 22 };
    bg.add([run(0, 2)]);
    w.finish();
    bg.onJobDone();
    expect(results).toEqual([{ bytes: 0, calls: 1, failures: [{ gpa: 0, len: 8192, errno: 22, count: 1 }] }]);
  });

  it('drop forgets the job and the waiting pages without discarding them', () => {
    const { w, bg } = setup();
    bg.add([run(0, 10)]);
    bg.add([run(20, 5)]);
    expect(bg.drop()).toBe(15);
    expect(bg.busy).toBe(false);
    bg.flush();
    expect(w.discarded).toEqual([]);
  });

  it('flush discards the job and everything waiting', () => {
    const { w, bg } = setup();
    bg.add([run(0, 1)]);
    bg.add([run(1, 1)]);
    bg.flush();
    expect(w.discarded).toEqual([run(0, 1), run(1, 1)]);
    expect(bg.pendingPages).toBe(0);
  });
});

describe('BackgroundDiscard across queue stops and disconnects', () => {
  it('suspended: waiting pages stay, nothing is handed over until resume', () => {
    const { w, bg, clock } = setup();
    bg.add([run(0, 4)]);            // job 1 to the thread
    w.suspended = true;             // the shim's queue-stop callback
    bg.suspend();
    bg.add([run(10, 4)]);           // cannot happen with stopped queues, but must not leak through
    w.finish();
    bg.onJobDone();
    clock.advance(5000);
    expect(w.submitted).toEqual([[run(0, 4)]]);
    expect(bg.pendingPages).toBe(4);
    bg.resume();
    expect(w.resumes).toBe(1);
    expect(w.submitted).toEqual([[run(0, 4)], [run(10, 4)]]);
  });

  it('flush does nothing while suspended (the thread would never finish)', () => {
    const { w, bg } = setup();
    bg.add([run(0, 4)]);
    w.suspended = true;
    bg.suspend();
    bg.flush();
    expect(w.discarded).toEqual([]);
    expect(bg.pendingPages).toBe(4);
  });

  it('drop after a suspend lifts the suspension even with no job of ours under way', () => {
    const { w, bg } = setup();
    bg.suspend();
    let dropped = 0;
    const origDrop = w.drop.bind(w);
    w.drop = () => { dropped++; w.suspended = false; return origDrop(); };
    bg.drop();
    expect(dropped).toBe(1);
    bg.add([run(3, 1)]);
    expect(w.submitted).toEqual([[run(3, 1)]]);
  });

  it('exportPending returns the job remainder and the waiting pages, and forgets both', () => {
    const { w, bg } = setup();
    bg.add([run(0, 8)]);
    bg.add([run(100, 2)]);          // waits: the thread is busy
    bg.remove([run(2, 2)]);         // a deflate cut into the job
    const out = bg.exportPending();
    expect(out).toEqual(expect.arrayContaining([run(0, 2), run(4, 4), run(100, 2)]));
    expect(out.reduce((n, r) => n + r.count, 0)).toBe(8);
    expect(bg.pendingPages).toBe(0);
    expect(w.job).toEqual([]);
  });
});

describe('BackgroundDiscard hand-over rule (defaults: 16 MiB in runs of 64 pages, 20 ms quiet, 1 s, 1 GiB)', () => {
  const scattered = (n: number, from = 0) => Array.from({ length: n }, (_, i) => run(from + 2 * i, 1));

  it.each([
    ['16 MiB of contiguous pages go at once', [run(0, 4096)], 0, 1],
    ['one contiguous buffer waits for more', [run(0, 256)], 19, 0],
    ['... or for 20 ms of quiet', [run(0, 256)], 20, 1],
    ['256 scattered pages wait while the inflate goes on', scattered(256), 19, 0],
    ['... and go once it has been quiet for 20 ms', scattered(256), 20, 1],
    ['16 MiB in runs of 64 pages on average go at once', Array.from({ length: 64 }, (_, i) => run(100 * i, 64)), 0, 1],
    ['16 MiB in runs of 63 wait', Array.from({ length: 65 }, (_, i) => run(100 * i, 63)), 0, 0],
  ])('%s', (_n, ranges, advanceMs, jobs) => {
    const { w, bg, clock } = setup(DEFAULT_HAND_OVER);
    bg.add(ranges);
    clock.advance(advanceMs);
    expect(w.submitted).toHaveLength(jobs);
  });

  it('a steady trickle of scattered pages goes after 1 s at the latest', () => {
    const { w, bg, clock } = setup(DEFAULT_HAND_OVER);
    for (let ms = 0; ms < 999; ms++) {
      bg.add(scattered(1, 4 * ms));
      clock.advance(1);
    }
    expect(w.submitted).toHaveLength(0);
    bg.add(scattered(1, 8000));
    clock.advance(1);
    expect(w.submitted).toHaveLength(1);
    expect(w.submitted[0]).toHaveLength(1000);
  });

  it('1 GiB of scattered pages goes without waiting for quiet', () => {
    const { w, bg } = setup(DEFAULT_HAND_OVER);
    bg.add(scattered((1 << 18) - 1));
    expect(w.submitted).toHaveLength(0);
    bg.add([run(1 << 20, 1)]);
    expect(w.submitted).toHaveLength(1);
  });

  it('scattered pages that merge as the burst goes on are handed over as few runs', () => {
    const { w, bg, clock } = setup(DEFAULT_HAND_OVER);
    // A shuffled 1 MiB: every other page, then the gaps.
    bg.add(scattered(2048));
    bg.add(scattered(2048).map((r) => run(r.pfn + 1, 1)));
    expect(w.submitted).toEqual([[run(0, 4096)]]);
    clock.advance(50);
    expect(w.submitted).toHaveLength(1);
  });

  it('pages that wait while a job runs go when it is done, if due', () => {
    const { w, bg, clock } = setup(DEFAULT_HAND_OVER);
    bg.add([run(0, 4096)]);
    bg.add(scattered(10, 10000));
    w.finish();
    bg.onJobDone();
    expect(w.submitted).toHaveLength(1); // scattered and not quiet yet
    clock.advance(20);
    expect(w.submitted).toHaveLength(2);
  });

  it('leaves no timer behind after drop or flush', () => {
    const { bg, clock } = setup(DEFAULT_HAND_OVER);
    bg.add(scattered(3));
    expect(clock.armed).toBe(1);
    bg.drop();
    expect(clock.armed).toBe(0);
    bg.add(scattered(3));
    bg.flush();
    expect(clock.armed).toBe(0);
  });
});
