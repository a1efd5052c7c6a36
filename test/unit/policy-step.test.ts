import { describe, expect, it } from 'vitest';
import { DEFAULT_PARAMS, mergeParams, PolicyParams } from '../../src/policy/params.js';
import { ceilingPages, guestInPressure, initialState, mode, PolicyEvent, PolicyState, step, statsPressure } from '../../src/policy/step.js';

const MiB = 2 ** 20;
const P = (mib: number) => (mib * MiB) / 4096; // MiB -> pages
const STEP = P(32);
// The seed's behaviour: every event steps (no rate limit).
const SEED: PolicyParams = { ...DEFAULT_PARAMS, rateLimitMs: 0 };

function run(state: PolicyState, events: Array<[number, PolicyEvent]>) {
  const decisions = [];
  for (const [t, ev] of events) {
    const r = step(state, ev, t);
    state = r.state;
    if (r.decision) decisions.push(r.decision);
  }
  return { state, decisions };
}
const host = (count = 1): PolicyEvent => ({ type: 'host-pressure', source: 'vmpressure', level: 'low', count });
const guest = (source: 'message' | 'deflate-on-oom' = 'message'): PolicyEvent => ({ type: 'guest-pressure', source, count: 1 });
const size = (pages: number): PolicyEvent => ({ type: 'balloon-size', pages });
const withRam = (params: PolicyParams = SEED, ramMiB = 4096) => step(initialState(params), { type: 'guest-ram', bytes: ramMiB * MiB }, 0).state;

describe('host pressure', () => {
  it('each event inflates one step; 10 events = 320 MiB (the seed)', () => {
    const { state, decisions } = run(withRam(), Array.from({ length: 10 }, (_, i) => [i, host()] as [number, PolicyEvent]));
    expect(state.targetPages).toBe(P(320));
    expect(decisions.every((d) => d.rule === 'host-pressure-inflate')).toBe(true);
  });

  it('an eventfd count of 3 is three events without a rate limit', () => {
    expect(run(withRam(), [[0, host(3)]]).state.targetPages).toBe(3 * STEP);
  });

  it.each([
    ['burst within the interval collapses to one step', [0, 10, 500, 999], 1],
    ['one step per interval', [0, 1000, 2000, 2500], 3],
    ['a counted burst is one step', [0], 1],
  ])('rate limit 1000 ms: %s', (_n, times, steps) => {
    const s0 = withRam({ ...SEED, rateLimitMs: 1000 });
    const evs = times.map((t) => [t, host(_n.includes('counted') ? 50 : 1)] as [number, PolicyEvent]);
    const { state, decisions } = run(s0, evs);
    expect(state.targetPages).toBe(steps * STEP);
    expect(decisions.filter((d) => d.rule === 'host-pressure-ignored').every((d) => d.reason.includes('rate limit'))).toBe(true);
  });

  it('stops at the ceiling: floor and max balloon', () => {
    const s0 = withRam({ ...SEED, floorBytes: 4000 * MiB }); // 96 MiB above the floor
    const { state, decisions } = run(s0, [[0, host()], [1, host()], [2, host()], [3, host()]]);
    expect(state.targetPages).toBe(P(96));
    expect(decisions.at(-1)).toMatchObject({ rule: 'host-pressure-ignored' });
    expect(decisions.at(-1)!.reason).toMatch(/ceiling 96 MiB/);
    const s1 = withRam({ ...SEED, maxBalloonBytes: 64 * MiB });
    expect(run(s1, [[0, host()], [1, host()], [2, host()]]).state.targetPages).toBe(P(64));
  });
});

describe('guest pressure', () => {
  it('cancels an inflation in progress: target = current balloon size', () => {
    const { state, decisions } = run(withRam(), [[0, host()], [1, host()], [2, host()], [3, size(P(40))], [4, guest()]]);
    expect(state.targetPages).toBe(P(40));
    expect(decisions.at(-1)).toMatchObject({ rule: 'guest-pressure-cancel', oldTargetPages: P(96), newTargetPages: P(40) });
  });

  it('deflates one step when no inflation is in progress', () => {
    const { state, decisions } = run(withRam(), [[0, host()], [1, host()], [2, size(P(64))], [3, guest()]]);
    expect(state.targetPages).toBe(P(32));
    expect(decisions.at(-1)!.rule).toBe('guest-pressure-deflate');
  });

  it.each([
    ['less than one step ballooned', P(10), 0],
    ['nothing ballooned', 0, 0],
  ])('never underflows: %s', (_n, pages, expected) => {
    const s0 = { ...withRam(), targetPages: pages, balloonPages: pages };
    const r = step(s0, guest(), 5);
    expect(r.state.targetPages).toBe(expected);
    expect(r.state.targetPages).toBeGreaterThanOrEqual(0);
  });

  it('deflate-on-OOM cancels re-inflation to the old target', () => {
    const s0 = { ...withRam(), targetPages: P(256), balloonPages: P(256) };
    const { state } = run(s0, [[0, size(P(200))], [1, guest('deflate-on-oom')]]);
    expect(state.targetPages).toBe(P(200));
  });
});

describe('hysteresis', () => {
  const H = DEFAULT_PARAMS.hysteresisMs;
  it.each([
    ['just inside the period', H - 1, 0],
    ['exactly at the boundary (out of pressure)', H, STEP],
    ['after the period', H + 5000, STEP],
  ])('host event %s', (_n, dt, expected) => {
    const s0 = { ...withRam(), lastGuestPressureAt: 1000 };
    expect(step(s0, host(), 1000 + dt).state.targetPages).toBe(expected);
  });

  it('each guest signal restarts the period', () => {
    let s = withRam();
    s = step(s, guest(), 0).state;
    s = step(s, guest(), 50_000).state;
    expect(guestInPressure(s, 100_000)).toBe(true);
    expect(guestInPressure(s, 110_000)).toBe(false);
  });
});

describe('manual ownership and modes', () => {
  it('a manual target holds: host and guest pressure do not move it until released', () => {
    const { state, decisions } = run(withRam(), [
      [0, { type: 'manual-target', pages: P(512), owner: 'ops' }], [1, host()], [2, guest()],
    ]);
    expect(mode(state)).toBe('manual');
    expect(state.targetPages).toBe(P(512));
    expect(decisions.map((d) => d.rule)).toEqual(['manual-target', 'host-pressure-ignored', 'guest-pressure-ignored']);
    // hysteresis still started: right after release host events stay ignored
    const released = run(state, [[3, { type: 'release' }], [4, host()]]);
    expect(mode(released.state)).toBe('auto');
    expect(released.state.targetPages).toBe(P(512));
    expect(released.decisions.at(-1)!.rule).toBe('host-pressure-ignored');
    expect(step(released.state, host(), 2 + DEFAULT_PARAMS.hysteresisMs).state.targetPages).toBe(P(544));
  });

  it('a manual target above the ceiling is clamped', () => {
    const s0 = withRam({ ...SEED, floorBytes: 3 * 1024 * MiB });
    expect(step(s0, { type: 'manual-target', pages: P(2048), owner: 'x' }, 0).state.targetPages).toBe(P(1024));
  });

  it('auto off freezes the target; on resumes', () => {
    const { state } = run(withRam(), [[0, host()], [1, { type: 'auto', enabled: false }], [2, host()], [3, guest()]]);
    expect(mode(state)).toBe('off');
    expect(state.targetPages).toBe(STEP);
    const on = run(state, [[4, { type: 'auto', enabled: true }], [3 + DEFAULT_PARAMS.hysteresisMs, host()]]);
    expect(on.state.targetPages).toBe(2 * STEP);
  });

  it('tuning a smaller ceiling clamps the target', () => {
    const s0 = { ...withRam(), targetPages: P(256) };
    const r = step(s0, { type: 'tune', params: mergeParams(SEED, { maxBalloonBytes: 128 * MiB }) }, 0);
    expect(r.state.targetPages).toBe(P(128));
    expect(r.setTarget).toBe(P(128));
  });

  it('ceiling without guest RAM known is the max balloon or u32', () => {
    expect(ceilingPages(initialState(SEED))).toBe(0xffffffff);
  });
});

describe('stats-derived guest pressure', () => {
  const total = 1024 * MiB;
  it.each([
    ['plenty available', null, { total_memory: total, available_memory: 500 * MiB }, null],
    ['MemAvailable under 10%', null, { total_memory: total, available_memory: 50 * MiB }, /MemAvailable 50 MiB/],
    ['swap-in grows', { swap_in: 0 }, { swap_in: 8 * MiB }, /swap-in/],
    ['swap-in grows a little', { swap_in: 0 }, { swap_in: 4096 }, null],
    ['major faults jump', { major_faults: 10 }, { major_faults: 5000 }, /major faults \+4990/],
    ['allocation stalls', { alloc_stalls: 3 }, { alloc_stalls: 4 }, /stalls/],
    ['direct reclaim', { direct_reclaims: 0 }, { direct_reclaims: 2 }, /direct reclaim/],
    ['first sample has no deltas', null, { major_faults: 99999 }, null],
  ])('%s', (_n, prev, cur, expected) => {
    const r = statsPressure(DEFAULT_PARAMS, prev, cur);
    if (expected === null) expect(r).toBeNull();
    else expect(r?.why).toMatch(expected);
  });

  it('deflates at least the shortfall under the MemAvailable threshold', () => {
    const s0 = { ...withRam(SEED, 1024), targetPages: P(512), balloonPages: P(512) };
    const r = step(s0, { type: 'stats', stats: { total_memory: total, available_memory: 2 * MiB } }, 0);
    // want 10% of 1 GiB = 102.4 MiB; shortfall ~100.4 MiB > 32 MiB step
    expect(r.decision!.rule).toBe('guest-pressure-deflate');
    expect(P(512) - r.state.targetPages).toBeGreaterThan(P(100));
    expect(guestInPressure(r.state, 1)).toBe(true);
  });
});

describe('params', () => {
  it.each([
    [{ stepBytes: 0 }, /stepBytes = 0 is out of range/],
    [{ hysteresisMs: -1 }, /hysteresisMs/],
    [{ bogus: 1 }, /unknown setting bogus/],
    [{ stats: { availablePercent: 150 } }, /stats.availablePercent/],
    [{ maxBalloonBytes: 4096, stepBytes: 8192 }, /smaller than one step/],
  ])('rejects %o', (update, msg) => {
    expect(() => mergeParams(DEFAULT_PARAMS, update)).toThrow(msg);
  });
  it('merges nested stats settings', () => {
    expect(mergeParams(DEFAULT_PARAMS, { stats: { majorFaults: 5 } }).stats).toEqual({ ...DEFAULT_PARAMS.stats, majorFaults: 5 });
  });
});
