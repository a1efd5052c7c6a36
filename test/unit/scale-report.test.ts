import { describe, expect, it } from 'vitest';
import {
  aloneKiB, type Arm, cellText, inflateFigures, marginalPss, markdownTables, parseRssFile, parseSmapsRollup, type RunResult, schedstatNs, spread,
  summarize,
} from '../../bench/scale/report.js';

const ROLLUP = `55d0c0000000-7ffc5a9f3000 ---p 00000000 00:00 0                          [rollup]
Rss:               61116 kB
Pss:               23790 kB
Pss_Anon:          15720 kB
Pss_File:           7905 kB
Pss_Shmem:           165 kB
Shared_Clean:      44280 kB
`;

describe('parseSmapsRollup', () => {
  it('reads Rss and the Pss split', () => {
    expect(parseSmapsRollup(ROLLUP)).toEqual({ rssKiB: 61116, pssKiB: 23790, pssAnonKiB: 15720, pssFileKiB: 7905, pssShmemKiB: 165 });
  });
  it('does not take Pss_Anon for Pss', () => expect(parseSmapsRollup(ROLLUP).pssKiB).toBe(23790));
  it('throws without a field', () => expect(() => parseSmapsRollup('Rss: 1 kB\n')).toThrow(/Pss/));
});

describe('parseRssFile and aloneKiB', () => {
  it('reads RssFile, not RssAnon', () => expect(parseRssFile('RssAnon:\t   16000 kB\nRssFile:\t   41000 kB\nRssShmem:\t 10 kB\n')).toBe(41000));
  it('throws without it', () => expect(() => parseRssFile('VmRSS: 1 kB\n')).toThrow(/RssFile/));
  it('counts resident file pages whole', () => {
    expect(aloneKiB({ rssKiB: 0, pssKiB: 0, pssAnonKiB: 16000, pssFileKiB: 7000, pssShmemKiB: 10, rssFileKiB: 41000 })).toBe(57010);
  });
});

describe('schedstatNs', () => {
  it('takes the on-CPU field', () => expect(schedstatNs('123456789 2000 31\n')).toBe(123456789));
  it('throws on garbage', () => expect(() => schedstatNs('x')).toThrow());
});

describe('inflateFigures', () => {
  it('pools devices for p50/p99 and keeps the worst device p99', () => {
    const f = inflateFigures([[1, 2, 3, 4], [10, 20], []]);
    expect(f).toEqual({ p50Ms: 3, p99Ms: 20, maxMs: 20, worstDeviceP99Ms: 20 });
  });
  it('is NaN with no samples', () => expect(inflateFigures([[]]).worstDeviceP99Ms).toBeNaN());
});

describe('spread and cellText', () => {
  it('median with min and max', () => expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 }));
  it('ignores NaN', () => expect(spread([Number.NaN, 4])).toEqual({ median: 4, min: 4, max: 4 }));
  it.each([
    [{ median: 2, min: 1, max: 3 }, '2.0 (1.0-3.0)'],
    [{ median: 2, min: 2, max: 2 }, '2.0'],
    [{ median: Number.NaN, min: Number.NaN, max: Number.NaN }, '-'],
  ])('%j -> %s', (s, want) => expect(cellText(s, 1)).toBe(want));
});

const mem = (pssMiB: number) => ({ rssKiB: pssMiB * 2048, pssKiB: pssMiB * 1024, pssAnonKiB: pssMiB * 512, pssFileKiB: 0, pssShmemKiB: 0, rssFileKiB: 4096 });
const run = (arm: Arm, n: number, r: number, pssMiB: number): RunResult => ({
  arm, n, run: r, processes: arm === 'host' ? 1 : n, loadAvg: 1, setupSeconds: 1, memory: mem(pssMiB),
  idlePssKiB: { min: (pssMiB - 1) * 1024, max: (pssMiB + 2) * 1024, samples: 6 }, memoryAfterInflate: mem(pssMiB),
  idle: { seconds: 30, ticks: 3, ticksPerSecond: 100, cpuPercent: 0.1, mainThreadMs: 10, allThreadsMs: 20, statsServed: n * 6 },
  inflate: { buffersPerDevice: 8, pfnsPerBuffer: 256, p50Ms: 1, p99Ms: 2, maxMs: 3, worstDeviceP99Ms: 2, wallMs: 10 },
});

describe('summarize and marginalPss', () => {
  const runs = [
    run('host', 1, 1, 20), run('host', 1, 2, 22), run('host', 1, 3, 21),
    run('host', 11, 1, 30), run('host', 11, 2, 31), run('host', 11, 3, 32),
    run('host', 21, 1, 40), run('host', 21, 2, 41), run('host', 21, 3, 42),
    run('per-vm', 1, 1, 25),
  ];
  it('groups by arm and N with median and spread', () => {
    const cells = summarize(runs);
    expect(cells.map((c) => [c.arm, c.n, c.runs])).toEqual([['host', 1, 3], ['host', 11, 3], ['host', 21, 3], ['per-vm', 1, 1]]);
    expect(cells[0]!.pssMiB).toEqual({ median: 21, min: 20, max: 22 });
    expect(cells[0]!.mainThreadMsPer30s.median).toBe(10);
    expect([cells[0]!.idlePssMinMiB, cells[0]!.idlePssMaxMiB]).toEqual([19, 24]);
    expect(cells[0]!.aloneMiB.median).toBe(21 / 2 + 4);
  });
  it('slopes between consecutive sizes and over the whole range', () => {
    const m = marginalPss(summarize(runs));
    expect(m.map((x) => [x.from, x.to])).toEqual([[1, 11], [11, 21], [1, 21]]);
    expect(m[0]!.kibPerDevice).toBeCloseTo((10 * 1024) / 10);
    expect(m[0]!.minKiB).toBeCloseTo(((30 - 22) * 1024) / 10);
    expect(m[0]!.maxKiB).toBeCloseTo(((32 - 20) * 1024) / 10);
    expect(m[2]!.kibPerDevice).toBeCloseTo((20 * 1024) / 20);
  });
  it('renders one row per (N, arm) and the marginal table', () => {
    const t = markdownTables({ runs });
    expect(t).toContain('| 1 | host | 3 | 21.0 (20.0-22.0) | 19.0-24.0 | 14.5 (14.0-15.0) |');
    expect(t).toContain('| 1 | per-vm | 1 | 25.0 |');
    expect(t).toContain('| host | 1 -> 21 | 1024 |');
  });
});
