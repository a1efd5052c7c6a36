import { describe, expect, it } from 'vitest';
import { type GridClock, gridDue, gridStep, MAX_GRID_STEP_MS, TimerGrid } from '../../src/device/timer-grid.js';

/** A manual clock: advance() fires what is due, in due order. */
class FakeClock implements GridClock {
  t = 0;
  private timers: Array<{ at: number; fn: () => void; id: number }> = [];
  private nextId = 0;
  setCalls = 0;

  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    this.setCalls++;
    const id = this.nextId++;
    this.timers.push({ at: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== h);
  }
  get armed(): number {
    return this.timers.length;
  }
  advance(ms: number): void {
    const end = this.t + ms;
    for (;;) {
      this.timers.sort((a, b) => a.at - b.at);
      const next = this.timers[0];
      if (!next || next.at > end) break;
      this.timers.shift();
      this.t = next.at;
      next.fn();
    }
    this.t = end;
  }
}

describe('gridStep', () => {
  it.each([
    [5000, MAX_GRID_STEP_MS], [60_000, MAX_GRID_STEP_MS], [1000, 200], [200, 40], [100, 20], [3, 1], [0, 1],
  ])('delay %d ms -> step %d ms', (delay, step) => expect(gridStep(delay)).toBe(step));
});

describe('gridDue', () => {
  it.each([
    // now, delay, due: the nearest grid point to now + delay
    [0, 5000, 5000],
    [12, 5000, 5000], // re-armed 12 ms after a firing: the period stays 5 s
    [499, 5000, 5000],
    [501, 5000, 6000],
    [10_003.7, 5000, 15_000],
    [7, 100, 100], // 107 -> 100 on a 20 ms grid
    [11, 100, 120],
  ])('now %d + %d -> %d', (now, delay, due) => expect(gridDue(now, delay)).toBe(due));

  it('stays within a tenth of the delay', () => {
    for (const delay of [5, 37, 100, 200, 999, 1000, 4999, 5000, 30_000]) {
      for (let now = 0; now < 3000; now += 13.3) {
        const d = gridDue(now, delay) - now;
        expect(d).toBeGreaterThan(0);
        expect(Math.abs(d - delay)).toBeLessThanOrEqual(Math.max(1, delay / 10));
      }
    }
  });

  it('is never at or before now', () => {
    expect(gridDue(10, 0, 1)).toBe(11);
    expect(gridDue(10.3, 0, 1)).toBe(11);
    expect(gridDue(999, 1, 1000)).toBe(1000);
    expect(gridDue(1000, 1, 1000)).toBe(2000);
  });
});

describe('TimerGrid', () => {
  it('timers due on the same grid point share one setTimeout and fire together', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    const fired: number[] = [];
    for (let i = 0; i < 100; i++) {
      clock.t = i * 3; // armed over 300 ms: all round to 5000
      grid.after(5000, () => fired.push(i));
    }
    expect(grid.pendingSlots).toBe(1);
    expect(clock.setCalls).toBe(1);
    clock.advance(5000 - clock.t - 1);
    expect(fired).toEqual([]);
    clock.advance(1);
    expect(fired).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(grid.pending).toBe(0);
    expect(grid.pendingSlots).toBe(0);
  });

  it('100 devices re-arming after each request wake the loop at most 5 times per 5 s interval', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    let wakeups = 0;
    const counts = new Array<number>(100).fill(0);
    const arm = (i: number) => grid.after(5000, () => {
      counts[i]!++;
      // The guest's refill comes back a little later; the device re-arms then.
      clock.t += 0.01;
      arm(i);
    });
    for (let i = 0; i < 100; i++) {
      clock.t = i * 50; // spread over 5 s
      arm(i);
    }
    const start = clock.t;
    const orig = clock.setTimeout.bind(clock);
    clock.setTimeout = (fn, ms) => orig(() => { wakeups++; fn(); }, ms);
    clock.advance(60_000 - (clock.t - start));
    expect(wakeups).toBeLessThanOrEqual(5 * 12 + 5);
    for (const c of counts) expect(c).toBeGreaterThanOrEqual(11); // the period stayed 5 s
  });

  it('cancel removes one timer; the last one of a point clears its setTimeout', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    const fired: string[] = [];
    const a = grid.after(5000, () => fired.push('a'));
    grid.after(5000, () => fired.push('b'));
    a();
    a(); // twice: nothing more
    expect(grid.pending).toBe(1);
    clock.advance(5000);
    expect(fired).toEqual(['b']);
    const c = grid.after(5000, () => fired.push('c'));
    expect(clock.armed).toBe(1);
    c();
    expect(clock.armed).toBe(0);
    expect(grid.pendingSlots).toBe(0);
    clock.advance(10_000);
    expect(fired).toEqual(['b']);
  });

  it('the same function armed twice is two timers', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    let n = 0;
    const fn = () => { n++; };
    const c1 = grid.after(1000, fn);
    grid.after(1000, fn);
    c1();
    clock.advance(1000);
    expect(n).toBe(1);
  });

  it('a timer cancelled by another of the same point does not fire', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    const fired: string[] = [];
    let cancelB = () => {};
    grid.after(5000, () => { fired.push('a'); cancelB(); });
    cancelB = grid.after(5000, () => fired.push('b'));
    clock.advance(5000);
    expect(fired).toEqual(['a']);
  });

  it('a throwing timer does not stop the others of its point; the error still surfaces', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    const fired: string[] = [];
    grid.after(5000, () => { throw new Error('boom'); });
    grid.after(5000, () => fired.push('b'));
    expect(() => clock.advance(5000)).toThrow('boom');
    expect(fired).toEqual(['b']);
    expect(grid.pending).toBe(0);
  });

  it('a timer armed from a firing one lands on a later point', () => {
    const clock = new FakeClock();
    const grid = new TimerGrid(clock);
    const at: number[] = [];
    const arm = () => grid.after(200, () => { at.push(clock.t); if (at.length < 3) arm(); });
    arm();
    clock.advance(1000);
    expect(at).toEqual([200, 400, 600]);
  });
});
