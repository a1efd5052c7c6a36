import { describe, expect, it } from 'vitest';
import { type IsolationResults, type IsolationRun, markdownTable, scenarioRows, showSpread, spread } from '../../bench/isolation/report.js';
import { ackFigures } from '../sim/neighbour.js';

const acks = (p50: number, p99: number, max: number) => ({ n: 500, p50, p99, max });
const run = (scenario: string, n: number, aloneP99: number, p99: number, max = p99 * 2): IsolationRun => ({
  scenario, label: `label of ${scenario}`, run: n, loadAvg: 1 + n, alone: acks(0.2, aloneP99, 3), during: acks(0.3, p99, max), ackedWhileNoisy: 400, neighbourMs: 900,
});

describe('spread', () => {
  it.each([
    [[3], { median: 3, min: 3, max: 3 }],
    [[4, 1, 3], { median: 3, min: 1, max: 4 }],
    [[1, 2, 3, 10], { median: 2.5, min: 1, max: 10 }],
  ])('%j -> %j', (xs, want) => expect(spread(xs)).toEqual(want));
  it('prints median [min-max]', () => expect(showSpread({ median: 2.5, min: 1, max: 10 })).toBe('2.50 [1.00-10.00]'));
});

describe('ackFigures', () => {
  it('takes nearest-rank percentiles of the sorted latencies', () => {
    const ms = Array.from({ length: 200 }, (_, i) => 200 - i); // 200 .. 1
    expect(ackFigures(ms)).toEqual({ n: 200, p50: 100, p99: 198, max: 200 });
  });
  it('an empty run has no figures, not zeros', () => expect(ackFigures([]).p99).toBeNaN());
});

describe('scenarioRows', () => {
  const runs = [run('a', 1, 1, 2), run('b', 1, 1, 9.4), run('a', 2, 1.5, 4.99), run('b', 2, 2, 5), run('a', 3, 0.9, 6)];
  const rows = scenarioRows(runs);
  it('one row per scenario, in first-seen order', () => expect(rows.map((r) => [r.scenario, r.runs])).toEqual([['a', 3], ['b', 2]]));
  it.each([
    ['a', { median: 4.99, min: 2, max: 6 }, 2],
    ['b', { median: 7.2, min: 5, max: 9.4 }, 0],
  ])('%s: p99 spread %j, target met (strictly under 5 ms) in %i runs', (s, p99, met) => {
    const row = rows.find((r) => r.scenario === s)!;
    expect(row.duringP99).toEqual(p99);
    expect(row.met).toBe(met);
  });
  it('the table names each scenario and its count of runs that met the target', () => {
    const r: IsolationResults = {
      command: 'x', startedAt: '', finishedAt: '', machine: { cpus: 2, memTotalMiB: 1, kernel: 'k', node: 'v20' }, options: { runs: 3, scenarios: ['a', 'b'], aloneMs: 1500 }, runs,
    };
    const t = markdownTable(r);
    expect(t).toContain('| label of a | 1.00 [0.90-1.50] | 0.30 [0.30-0.30] | 4.99 [2.00-6.00] | 9.98 [4.00-12.00] | 2 of 3 |');
    expect(t).toContain('| label of b |');
    expect(t).toContain('0 of 2 |');
  });
});
