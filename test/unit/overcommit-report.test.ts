import { describe, expect, it } from 'vitest';
import {
  type ArmRun, changePercent, markdownTable, mean, procFaults, seedTable, stdev, summarize, timelineSvg, vmstatSwap,
} from '../../bench/overcommit/report.js';

describe('procFaults', () => {
  const cases: Array<[string, string, { minflt: number; majflt: number }]> = [
    ['plain comm', '123 (qemu-system-x86) S 1 123 123 0 -1 4194560 5000 0 42 0 10 20', { minflt: 5000, majflt: 42 }],
    ['comm with spaces and parens', '9 (a (b) c) R 1 9 9 0 -1 0 7 1 3 0 0 0', { minflt: 7, majflt: 3 }],
  ];
  it.each(cases)('%s', (_n, line, want) => expect(procFaults(line)).toEqual(want));
  it('refuses a truncated line', () => expect(() => procFaults('1 (x) S 1')).toThrow());
});

describe('vmstatSwap', () => {
  it('reads pswpin and pswpout, not prefixes of other counters', () => {
    expect(vmstatSwap('pswpin_x 9\npswpin 10\npswpout 20\n')).toEqual({ pswpin: 10, pswpout: 20 });
  });
  it('throws without the counters', () => expect(() => vmstatSwap('nr_free_pages 1\n')).toThrow(/pswpin/));
});

describe('mean and changePercent', () => {
  it.each([[[1, 2, 3], 2], [[5], 5], [[], NaN]] as Array<[number[], number]>)('mean %j', (xs, want) => expect(mean(xs)).toBe(want));
  it.each([[100, 2, -98], [372551, 8225, (8225 - 372551) / 372551 * 100], [0, 0, 0], [0, 5, Infinity]])(
    'change %d -> %d', (a, b, want) => expect(changePercent(a, b)).toBeCloseTo(want, 6));
  it.each([[[2, 4, 4, 4, 5, 5, 7, 9], Math.sqrt(32 / 7)], [[3, 3], 0], [[1], NaN], [[], NaN]] as Array<[number[], number]>)(
    'stdev %j', (xs, want) => (Number.isNaN(want) ? expect(stdev(xs)).toBeNaN() : expect(stdev(xs)).toBeCloseTo(want, 9)));
});

const run = (arm: string, r: number, swapOut: number, majDown: number, recsUp: number): ArmRun => ({
  arm, run: r, swapIn: swapOut / 10, swapOut,
  guests: [
    { name: 'vm-down', majorFaults: majDown, minorFaults: 1000, totalRecs: 500, elapsedSeconds: 100, failedRuns: 0 },
    { name: 'vm-up', majorFaults: 1, minorFaults: 2000, totalRecs: recsUp, elapsedSeconds: 110, failedRuns: r === 1 ? 1 : 0 },
  ],
});

describe('summarize and tables', () => {
  const runs = [run('vanilla', 1, 1000, 30, 400), run('auto', 1, 10, 3, 450), run('vanilla', 2, 3000, 10, 600), run('auto', 2, 30, 1, 350)];
  const s = summarize(runs);
  it('means per arm, arms in first-seen order', () => {
    expect(s.map((a) => [a.arm, a.runs, a.swapOut, a.swapIn])).toEqual([['vanilla', 2, 2000, 200], ['auto', 2, 20, 2]]);
    expect(s[0]?.guests.map((g) => [g.name, g.majorFaults, g.totalRecs, g.failedRuns])).toEqual([['vm-down', 20, 500, 0], ['vm-up', 1, 500, 0.5]]);
    expect(s[1]?.guests[1]?.totalRecs).toBe(400);
  });
  it('markdown compares swap-out with the first arm', () => {
    const md = markdownTable(s);
    expect(md).toContain('| vanilla | 2 | 200 | 2000 |');
    expect(md).toContain('| auto | 2 | 2 | 20 (-99.0 %) | 2 / 1 | 500 ± 0 / 400 ± 71 | 0.0 / 0.5 | - / - |');
  });
  it('guest swap: means of the runs that have it, a Guest section in the seed layout', () => {
    const withSwap = runs.map((r) => ({ ...r, guests: r.guests.map((g, i) => ({ ...g, guestSwapIn: 10 * r.run, guestSwapOut: 100 * r.run + i })) }));
    const sw = summarize(withSwap);
    expect(sw[1]?.guests.map((g) => [g.guestSwapIn, g.guestSwapOut])).toEqual([[15, 150], [15, 151]]);
    expect(markdownTable(sw)).toContain('| 150 / 151 |');
    expect(seedTable(sw)).toMatch(/Guest \(bizzy run in the guest\)[\s\S]*vm-up: +500\.00 +15\.00 +151\.00/);
    expect(seedTable(s)).not.toContain('Guest (bizzy');
  });
  it('seed layout names both QEMUs per arm', () => {
    const t = seedTable(s);
    expect(t.match(/vm-down:/g)).toHaveLength(2);
    expect(t).toContain('swap out: 2000.00');
  });
});

describe('timelineSvg', () => {
  it('one polyline per guest, scaled into the frame', () => {
    const svg = timelineSvg('t', [{ t: 0, guest: 'a', balloonMiB: 0 }, { t: 10, guest: 'a', balloonMiB: 64 }, { t: 10, guest: 'b', balloonMiB: 0 }]);
    expect(svg.match(/<polyline/g)).toHaveLength(2);
    expect(svg).toContain('64 MiB');
    for (const m of svg.matchAll(/points="([^"]*)"/g)) {
      for (const p of (m[1] ?? '').split(' ')) {
        const [x, y] = p.split(',').map(Number);
        expect(x).toBeGreaterThanOrEqual(50); expect(x).toBeLessThanOrEqual(630);
        expect(y).toBeGreaterThanOrEqual(25); expect(y).toBeLessThanOrEqual(210);
      }
    }
  });
});
