// Guest pressure derived from the stats queue (stock guests: no message queue).
import { describe, expect, it } from 'vitest';
import type { GuestStats } from '../../src/device/stats.js';
import { guestInPressure, step } from '../../src/policy/step.js';
import { statsPressure } from '../../src/policy/stats.js';
import { DEFAULT_PARAMS, host, SEED_FIXED_PARAMS, MiB, P, params, ready, run, SEED_PARAMS, size, STEP } from './policy-helpers.js';

const total = 1024 * MiB;
const stats = (s: GuestStats) => ({ type: 'stats' as const, stats: s });

describe('statsPressure thresholds (defaults)', () => {
  it.each<[string, GuestStats | null, GuestStats, RegExp | null]>([
    ['plenty available', null, { total_memory: total, available_memory: 500 * MiB }, null],
    ['MemAvailable under 10% of MemTotal', null, { total_memory: total, available_memory: 50 * MiB }, /^MemAvailable 50 MiB < 10% of 1024 MiB$/],
    ['MemAvailable just at 10%: not under', null, { total_memory: 1000 * MiB, available_memory: 100 * MiB }, null],
    ['MemAvailable without MemTotal: the percentage cannot apply', null, { available_memory: 1 }, null],
    ['swap-in +8 MiB', { swap_in: 0 }, { swap_in: 8 * MiB }, /^swap-in \+8192 KiB$/],
    ['swap-in +4 KiB is noise', { swap_in: 0 }, { swap_in: 4096 }, null],
    ['major faults +4990', { major_faults: 10 }, { major_faults: 5000 }, /^major faults \+4990$/],
    ['major faults +1999: under 2000', { major_faults: 0 }, { major_faults: 1999 }, null],
    ['allocation stalls +100 (tag 11)', { alloc_stalls: 3 }, { alloc_stalls: 103 }, /^allocation stalls \+100$/],
    ['allocation stalls +99', { alloc_stalls: 3 }, { alloc_stalls: 102 }, null],
    ['direct reclaim +64 MiB (tag 15, bytes)', { direct_reclaims: 0 }, { direct_reclaims: 64 * MiB }, /^direct reclaim \+64 MiB$/],
    ['an OOM kill in the guest (tag 10)', { oom_kills: 2 }, { oom_kills: 3 }, /^OOM kills \+1$/],
    ['the first sample has no deltas', null, { major_faults: 99999, swap_in: 1e12 }, null],
    ['a counter that went down (guest rebooted) is no growth', { major_faults: 1e9 }, { major_faults: 5 }, null],
    ['a tag missing from one sample is no growth', { swap_in: 0 }, { major_faults: 1e9 }, null],
    ['several signals are all named', { swap_in: 0, major_faults: 0 }, { swap_in: 8 * MiB, major_faults: 3000, total_memory: total, available_memory: 0 },
      /^MemAvailable 0 MiB < 10% of 1024 MiB; swap-in \+8192 KiB; major faults \+3000$/],
  ])('%s', (_n, prev, cur, expected) => {
    const r = statsPressure(DEFAULT_PARAMS, prev, cur);
    if (expected === null) expect(r).toBeNull();
    else expect(r?.why).toMatch(expected);
  });

  it.each([
    ['availablePercent', { total_memory: total, available_memory: 0 }],
    ['swapInBytes', { swap_in: 1e12 }],
    ['majorFaults', { major_faults: 1e12 }],
    ['stalls', { alloc_stalls: 1e12 }],
    ['directReclaimBytes', { direct_reclaims: 1e12 }],
    ['oomKills', { oom_kills: 1e6 }],
  ])('stats.%s = 0 disables that signal', (name, cur) => {
    const zero = { swap_in: 0, major_faults: 0, alloc_stalls: 0, direct_reclaims: 0, oom_kills: 0 };
    expect(statsPressure(DEFAULT_PARAMS, zero, { ...zero, ...cur })).not.toBeNull();
    expect(statsPressure(params({ stats: { [name]: 0 } }, DEFAULT_PARAMS), zero, { ...zero, ...cur })).toBeNull();
  });

  it('an absolute MemAvailable threshold applies when larger than the percentage', () => {
    const p = params({ stats: { availableBytes: 256 * MiB } }, DEFAULT_PARAMS);
    const r = statsPressure(p, null, { total_memory: total, available_memory: 200 * MiB });
    expect(r).toEqual({ why: 'MemAvailable 200 MiB < 256 MiB', shortfallBytes: 56 * MiB });
    expect(statsPressure(p, null, { total_memory: total, available_memory: 300 * MiB })).toBeNull();
  });
});

describe('stats samples through step()', () => {
  it('no pressure: no actions, the sample becomes the baseline', () => {
    const r = step(ready(), stats({ major_faults: 5 }), 0);
    expect(r.actions).toEqual([]);
    expect(r.state.prevStats).toEqual({ major_faults: 5 });
  });

  it('counters rising between samples deflate one step and start the hysteresis', () => {
    const r = run(ready(SEED_PARAMS, { target: P(256) }), [[0, stats({ swap_in: 0 })], [5000, stats({ swap_in: 64 * MiB })], [5001, host()]]);
    expect(r.pushed).toEqual([P(224)]);
    expect(r.decisions[0]).toMatchObject({ rule: 'guest-pressure-deflate', event: 'guest pressure (stats: swap-in +65536 KiB)' });
    expect(r.state.lastGuestPressureSource).toBe('stats');
    expect(r.decisions[1]).toMatchObject({ rule: 'host-pressure-ignored', cause: 'guest-pressure' });
  });

  it('stats pressure while inflating cancels the inflation', () => {
    const r = run(ready(SEED_PARAMS, { target: P(256), balloon: P(100) }), [[0, stats({ total_memory: total, available_memory: 90 * MiB })]]);
    expect(r.pushed).toEqual([P(100)]);
    expect(r.decisions[0]!.rule).toBe('guest-pressure-cancel');
  });

  it('MemAvailable far under its threshold deflates the shortfall, not just one step', () => {
    const s = ready(SEED_PARAMS, { ramMiB: 1024, target: P(512) });
    const r = step(s, stats({ total_memory: total, available_memory: 2 * MiB }), 0);
    // 10% of 1 GiB = 102.4 MiB wanted, 2 MiB there: 100.4 MiB short (> the 32 MiB step).
    expect(r.decision!.rule).toBe('guest-pressure-deflate');
    expect(r.state.targetPages).toBe(P(512) - Math.ceil((0.1 * total - 2 * MiB) / 4096));
    expect(guestInPressure(r.state, 1)).toBe(true);
  });

  it('a shortfall smaller than a step deflates one step', () => {
    const r = step(ready(SEED_PARAMS, { ramMiB: 1024, target: P(512) }), stats({ total_memory: total, available_memory: 100 * MiB }), 0);
    expect(r.state.targetPages).toBe(P(512) - STEP);
  });

  it.each([
    ['a baseline within maxSampleGapMs is compared', 120_000, [P(224)]],
    ['a baseline older than maxSampleGapMs is not (the growth may span hours)', 120_001, []],
  ])('%s', (_n, gap, pushed) => {
    const r = run(ready(SEED_FIXED_PARAMS, { target: P(256) }), [[0, stats({ major_faults: 0 })], [gap, stats({ major_faults: 1e6 })]]);
    expect(r.pushed).toEqual(pushed);
  });

  it('maxSampleGapMs 0 compares with a baseline of any age', () => {
    const p = params({ stats: { maxSampleGapMs: 0 } }, DEFAULT_PARAMS);
    expect(run(ready(p, { target: P(256) }), [[0, stats({ major_faults: 0 })], [1e9, stats({ major_faults: 1e6 })]]).pushed).toEqual([P(224)]);
  });

  it('continued pressure keeps deflating, sample after sample, down to 0', () => {
    const samples = [0, 5000, 10_000, 15_000].map((t, i) => [t, stats({ major_faults: i * 10_000 })] as [number, ReturnType<typeof stats>]);
    const r = run(ready(SEED_PARAMS, { target: P(80) }), [[0, size(P(80))], ...samples]);
    expect(r.pushed).toEqual([P(48), P(16), 0]);
  });
});
