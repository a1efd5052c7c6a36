// The bounded decision ring for the CLI.
import { describe, expect, it } from 'vitest';
import { DecisionHistory } from '../../src/policy/history.js';
import type { Decision } from '../../src/policy/types.js';
import { host, ready, run, series, size } from './policy-helpers.js';
import { SEED_FIXED_PARAMS } from '../../src/policy/params.js';

const d = (at: number, over: Partial<Decision> = {}): Decision => ({
  at, rule: 'host-pressure-inflate', cause: null, ignored: false, event: `e${at}`, oldTargetPages: at, newTargetPages: at + 1, reason: `r${at}`, ...over,
});
const ignored = (at: number, cause: Decision['cause'] = 'rate-limit'): Decision =>
  d(at, { rule: 'host-pressure-ignored', cause, ignored: true, oldTargetPages: 7, newTargetPages: 7 });

describe('DecisionHistory', () => {
  it('keeps the newest `capacity` entries, oldest first, with increasing seq', () => {
    const h = new DecisionHistory(3);
    for (let i = 0; i < 5; i++) h.push(d(i));
    expect(h.length).toBe(3);
    expect(h.total).toBe(5);
    expect(h.last().map((e) => [e.seq, e.at])).toEqual([[3, 2], [4, 3], [5, 4]]);
    expect(h.last(2).map((e) => e.at)).toEqual([3, 4]);
    expect(h.last(0)).toEqual([]);
  });

  it('folds repeated ignored decisions with the same rule and cause into one entry with a count', () => {
    const h = new DecisionHistory(10);
    h.push(d(0));
    for (let t = 1; t <= 50; t++) h.push(ignored(t));
    h.push(ignored(51, 'guest-pressure'));
    h.push(d(52));
    const e = h.last();
    expect(e.map((x) => [x.rule, x.cause, x.count])).toEqual([
      ['host-pressure-inflate', null, 1], ['host-pressure-ignored', 'rate-limit', 50], ['host-pressure-ignored', 'guest-pressure', 1], ['host-pressure-inflate', null, 1],
    ]);
    expect(e[1]).toMatchObject({ firstAt: 1, at: 50, reason: 'r50' });
    expect(h.total).toBe(53);
  });

  it('never folds decisions that moved the target', () => {
    const h = new DecisionHistory(10);
    h.push(d(1, { oldTargetPages: 5, newTargetPages: 5 }));
    h.push(d(2, { oldTargetPages: 5, newTargetPages: 5 }));
    expect(h.length).toBe(2);
  });

  it('folding can be turned off', () => {
    const h = new DecisionHistory(10, false);
    h.push(ignored(1));
    h.push(ignored(2));
    expect(h.length).toBe(2);
  });

  it('since(seq) returns what a client has not seen; returned entries are copies', () => {
    const h = new DecisionHistory(10);
    for (let i = 0; i < 4; i++) h.push(d(i));
    expect(h.since(2).map((e) => e.seq)).toEqual([3, 4]);
    h.last()[0]!.reason = 'changed';
    expect(h.last()[0]!.reason).toBe('r0');
  });

  it('clear empties the ring; seq keeps increasing', () => {
    const h = new DecisionHistory(2);
    h.push(d(0));
    h.clear();
    expect(h.last()).toEqual([]);
    expect(h.push(d(1)).seq).toBe(2);
  });

  it.each([0, -1, 1.5])('rejects capacity %s', (c) => {
    expect(() => new DecisionHistory(c)).toThrow(RangeError);
  });

  it('a vmpressure storm under the default rate limit stays a handful of entries', () => {
    // 261 events in ~4 s (the figure measured on a 64 MiB memcg).
    const events = series(261, host(), 15);
    const r = run(ready(SEED_FIXED_PARAMS), [...events.slice(0, 100), [1499, size(8192)], ...events.slice(100)]);
    const h = new DecisionHistory(100);
    for (const dec of r.decisions) h.push(dec);
    expect(h.total).toBe(261);
    expect(h.length).toBeLessThanOrEqual(12);
    expect(h.last().filter((e) => e.rule === 'host-pressure-inflate')).toHaveLength(r.pushed.length);
  });
});
