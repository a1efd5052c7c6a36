// step(): the seed's rules, its defects fixed, and the limits beyond it.
import { describe, expect, it } from 'vitest';
import { ceilingPages, guestInPressure, GUEST_SLACK_PAGES, initialState, mode, step } from '../../src/policy/step.js';
import type { PolicyEvent } from '../../src/policy/types.js';
import {
  SEED_FIXED_PARAMS, guest, H, host, manual, MiB, P, params, ready, run, SEED_PARAMS, series, size, STEP,
} from './policy-helpers.js';

describe('host pressure (seed: target += step while the guest is not in pressure)', () => {
  it('events accumulate: 10 events = 320 MiB, each pushed with its reason', () => {
    const r = run(ready(), series(10, host()));
    expect(r.state.targetPages).toBe(P(320));
    expect(r.pushed).toEqual(Array.from({ length: 10 }, (_, i) => (i + 1) * STEP));
    expect(r.decisions.every((d) => d.rule === 'host-pressure-inflate' && !d.ignored)).toBe(true);
    expect(r.decisions[3]).toMatchObject({ oldTargetPages: 3 * STEP, newTargetPages: 4 * STEP, event: 'host pressure vmpressure low', cause: null });
  });

  it.each([
    ['seed (no rate limit): an eventfd count of 3 is three steps', SEED_PARAMS, 3, 3 * STEP],
    ['rate limit on: a counted burst of 50 is one step', params({ rateLimitMs: 1000 }), 50, STEP],
  ])('%s', (_n, p, count, expected) => {
    const r = run(ready(p), [[0, host(count)]]);
    expect(r.state.targetPages).toBe(expected);
    expect(r.decisions[0]!.event).toBe(`host pressure vmpressure low x${count}`);
  });

  it.each([
    ['a burst inside the interval collapses to one step', [0, 10, 500, 999], 1],
    ['exactly one interval later steps again (boundary is out)', [0, 1000], 2],
    ['one step per interval under a storm', [0, 400, 1000, 1400, 2000, 2999], 3],
  ])('rate limit 1000 ms: %s', (_n, times, steps) => {
    const r = run(ready(params({ rateLimitMs: 1000 })), times.map((t) => [t, host()] as [number, PolicyEvent]));
    expect(r.state.targetPages).toBe(steps * STEP);
    const ignored = r.decisions.filter((d) => d.ignored);
    expect(ignored).toHaveLength(times.length - steps);
    expect(ignored.every((d) => d.rule === 'host-pressure-ignored' && d.cause === 'rate-limit')).toBe(true);
  });

  it('wait for the guest: no new step while the previous one is not done', () => {
    const p = params({ rateLimitMs: 0, waitForGuest: true });
    const r1 = run(ready(p), [[0, host()], [1, host()]]);
    expect(r1.state.targetPages).toBe(STEP);
    expect(r1.decisions[1]).toMatchObject({ rule: 'host-pressure-ignored', cause: 'guest-behind' });
    // Within one Linux inflate buffer (256 pages) of the target counts as done.
    const r2 = run(r1.state, [[2, size(STEP - GUEST_SLACK_PAGES - 1)], [3, host()], [4, size(STEP - GUEST_SLACK_PAGES)], [5, host()]]);
    expect(r2.decisions.map((d) => d.cause)).toEqual(['guest-behind', null]);
    expect(r2.state.targetPages).toBe(2 * STEP);
  });

  it.each([
    ['floor: a 4 GiB guest with a 4000 MiB floor balloons 96 MiB at most', { floorBytes: 4000 * MiB }, P(96)],
    ['max balloon 64 MiB', { maxBalloonBytes: 64 * MiB }, P(64)],
    ['max balloon not a multiple of the step: the last step is partial', { maxBalloonBytes: 80 * MiB }, P(80)],
  ])('ceiling, %s', (_n, update, ceiling) => {
    const r = run(ready(params(update)), series(6, host()));
    expect(r.state.targetPages).toBe(ceiling);
    expect(Math.max(...r.pushed)).toBe(ceiling);
    const last = r.decisions.at(-1)!;
    expect(last).toMatchObject({ rule: 'host-pressure-ignored', cause: 'ceiling' });
    expect(last.reason).toContain(`ceiling ${ceiling / 256} MiB`);
  });

  it('the step that crosses the ceiling stops at it and says so', () => {
    const r = run(ready(params({ maxBalloonBytes: 48 * MiB })), [[0, host()], [1, host()]]);
    expect(r.pushed).toEqual([STEP, P(48)]);
    expect(r.decisions[1]).toMatchObject({ rule: 'host-pressure-inflate', cause: 'ceiling' });
  });

  it('with a floor and guest RAM unknown, host pressure waits (the floor cannot be checked)', () => {
    const s = initialState(params({ floorBytes: 512 * MiB }));
    const r = run(s, [[0, host()]]);
    expect(r.pushed).toEqual([]);
    expect(r.decisions[0]).toMatchObject({ rule: 'host-pressure-ignored', cause: 'guest-ram-unknown' });
    expect(run(r.state, [[1, { type: 'guest-ram', bytes: 1024 * MiB }], [2, host()]]).pushed).toEqual([STEP]);
  });

  it('without guest RAM and limits, the ceiling is num_pages\' u32 range', () => {
    expect(ceilingPages(initialState(SEED_PARAMS))).toBe(0xffffffff);
  });
});

describe('guest pressure (seed: cancel an inflation in progress, else deflate one step)', () => {
  it('cancels: target = current balloon size, and the cancellation is pushed', () => {
    const r = run(ready(), [[0, host()], [1, host()], [2, host()], [3, size(P(40))], [4, guest()]]);
    expect(r.state.targetPages).toBe(P(40));
    expect(r.actions.at(-1)).toMatchObject({ type: 'set-target', pages: P(40) });
    expect(r.decisions.at(-1)).toMatchObject({ rule: 'guest-pressure-cancel', oldTargetPages: P(96), newTargetPages: P(40) });
  });

  it.each([
    ['target reached: deflate one step', P(64), P(64), P(32)],
    ['deflation already under way (target < balloon): one more step down from the target', P(64), P(100), P(32)],
    ['less than one step ballooned: clamps at 0, no underflow', P(10), P(10), 0],
    ['exactly one step: to 0', STEP, STEP, 0],
  ])('%s', (_n, target, balloon, expected) => {
    const r = step(ready(SEED_PARAMS, { target, balloon }), guest(), 5);
    expect(r.state.targetPages).toBe(expected);
    expect(r.actions).toEqual([{ type: 'set-target', pages: expected, decision: r.decision }]);
    expect(r.decision!.rule).toBe('guest-pressure-deflate');
  });

  it('nothing ballooned: nothing to push, recorded as ignored, hysteresis still starts', () => {
    const r = step(ready(), guest(), 5);
    expect(r.actions).toHaveLength(1);
    expect(r.actions[0]).toMatchObject({ type: 'record', decision: { rule: 'guest-pressure-ignored', cause: 'balloon-empty', newTargetPages: 0 } });
    expect(guestInPressure(r.state, 6)).toBe(true);
  });

  it('two messages in one batch apply one after another: cancel, then deflate a step (the seed\'s loop)', () => {
    const r = step(ready(SEED_PARAMS, { target: P(256), balloon: P(200) }), guest('message', 2), 0);
    expect(r.state.targetPages).toBe(P(168));
    expect(r.decision).toMatchObject({ rule: 'guest-pressure-deflate', newTargetPages: P(168) });
    expect(r.decision!.reason).toMatch(/cancelled at 200 MiB, then deflate 32 MiB/);
  });

  it('a flood of messages deflates to 0 and stops there, with one push', () => {
    const r = step(ready(SEED_PARAMS, { target: P(100) }), guest('message', 1_000_000), 0);
    expect(r.state.targetPages).toBe(0);
    expect(r.actions).toHaveLength(1);
  });

  it('deflate-on-OOM: the guest gave pages back, so re-inflation to the old target is cancelled', () => {
    const r = run(ready(SEED_PARAMS, { target: P(256) }), [[0, size(P(255))], [1, guest('deflate-on-oom')]]);
    expect(r.state.targetPages).toBe(P(255));
    expect(r.decisions.at(-1)).toMatchObject({ rule: 'guest-pressure-cancel', event: 'guest pressure (deflate-on-oom)' });
    expect(r.state.lastGuestPressureSource).toBe('deflate-on-oom');
  });
});

describe('hysteresis: in pressure for [t, t + hysteresisMs) after each signal', () => {
  it.each([
    ['just inside the period', H - 1, 0, 'guest-pressure'],
    ['exactly at the boundary: out of pressure, inflates', H, STEP, null],
    ['after the period', H + 5000, STEP, null],
  ])('host event %s', (_n, dt, expected, cause) => {
    const s = step(ready(), guest(), 1000).state; // nothing ballooned: only the time is noted
    const r = step(s, host(), 1000 + dt);
    expect(r.state.targetPages).toBe(expected);
    expect(r.decision!.cause).toBe(cause);
    expect(guestInPressure(s, 1000 + dt)).toBe(cause !== null);
  });

  it('each guest signal restarts the period', () => {
    const r = run(ready(), [[0, guest()], [50_000, guest()]]);
    expect(guestInPressure(r.state, 50_000 + H - 1)).toBe(true);
    expect(guestInPressure(r.state, 50_000 + H)).toBe(false);
  });

  it('hysteresis 0: a guest signal never blocks host events', () => {
    const r = run(ready(params({ hysteresisMs: 0 })), [[0, guest()], [0, host()]]);
    expect(r.state.targetPages).toBe(STEP);
  });

  it('guest pressure during the period still acts (cancel/deflate each time)', () => {
    const r = run(ready(SEED_PARAMS, { target: P(128) }), [[0, guest()], [1000, guest()]]);
    expect(r.pushed).toEqual([P(96), P(64)]);
  });
});

describe('monotonic time', () => {
  it('a clock that goes backwards is read as the latest time seen', () => {
    // Guest pressure stamped at a time in the past would end its hysteresis early.
    const r = run(ready(), [[100_000, size(0)], [50, guest()], [100_000 + H - 1, host()]]);
    expect(r.state.lastGuestPressureAt).toBe(100_000);
    expect(r.decisions.at(-1)).toMatchObject({ rule: 'host-pressure-ignored', cause: 'guest-pressure' });
  });

  it('a NaN clock does not poison the state', () => {
    const r = run(ready(), [[10, size(0)], [Number.NaN, host()]]);
    expect(r.decisions[0]!.at).toBe(10);
    expect(r.state.lastHostStepAt).toBe(10);
  });
});

describe('manual ownership and modes', () => {
  it('a manual target holds: host pressure and guest messages do not move it; hysteresis still starts', () => {
    const r = run(ready(), [[0, manual(P(512))], [1, size(P(512))], [2, host()], [3, guest()], [4, guest('stats')]]);
    expect(mode(r.state)).toBe('manual');
    expect(r.pushed).toEqual([P(512)]);
    expect(r.decisions.map((d) => [d.rule, d.cause])).toEqual([
      ['manual-target', null], ['host-pressure-ignored', 'manual-hold'], ['guest-pressure-ignored', 'manual-hold'], ['guest-pressure-ignored', 'manual-hold'],
    ]);
    expect(guestInPressure(r.state, 5)).toBe(true);
  });

  it('deflate-on-OOM is honoured during a hold: inflation cancelled, the hold stays', () => {
    const r = run(ready(), [[0, manual(P(512))], [1, size(P(400))], [2, guest('deflate-on-oom')]]);
    expect(r.pushed).toEqual([P(512), P(400)]);
    expect(r.decisions.at(-1)).toMatchObject({ rule: 'oom-cancel', cause: 'manual-hold' });
    expect(mode(r.state)).toBe('manual');
  });

  it('release: automatic mode resumes from the current target, after the hysteresis', () => {
    const held = run(ready(), [[0, manual(P(512))], [1, size(P(512))], [2, guest()]]).state;
    const r = run(held, [[3, { type: 'release' }], [4, host()], [2 + H, host()]]);
    expect(mode(r.state)).toBe('auto');
    expect(r.decisions.map((d) => d.rule)).toEqual(['release', 'host-pressure-ignored', 'host-pressure-inflate']);
    expect(r.state.targetPages).toBe(P(544));
  });

  it('release without a hold does nothing', () => {
    expect(step(ready(), { type: 'release' }, 0).actions).toEqual([]);
  });

  it('a manual target above the ceiling is lowered to it', () => {
    const r = step(ready(params({ floorBytes: 3072 * MiB })), manual(P(2048)), 0);
    expect(r.state.targetPages).toBe(P(1024));
    expect(r.decision).toMatchObject({ rule: 'manual-target', cause: 'ceiling' });
  });

  it('auto off freezes the target; deflate-on-OOM still cancels; on resumes', () => {
    const r = run(ready(), [[0, host()], [1, size(STEP)], [2, { type: 'auto', enabled: false }], [3, host()], [4, guest()],
      [5, { type: 'manual-target', pages: P(64), owner: 'x' }], [6, { type: 'release' }], [7, size(P(40))], [8, guest('deflate-on-oom')]]);
    expect(mode(r.state)).toBe('off');
    expect(r.decisions.map((d) => [d.rule, d.cause])).toEqual([
      ['host-pressure-inflate', null], ['auto-off', null], ['host-pressure-ignored', 'auto-off'], ['guest-pressure-ignored', 'auto-off'],
      ['manual-target', null], ['release', null], ['oom-cancel', 'auto-off'],
    ]);
    expect(r.state.targetPages).toBe(P(40));
    const on = run(r.state, [[9, { type: 'auto', enabled: true }], [8 + H, host()]]);
    expect(on.state.targetPages).toBe(P(72));
    expect(on.state.params.enabled).toBe(true);
  });

  it('auto on while held takes effect at release', () => {
    const s = initialState(SEED_PARAMS, false);
    const r = run(s, [[0, manual(P(10))], [1, { type: 'auto', enabled: true }]]);
    expect(mode(r.state)).toBe('manual');
    expect(r.decisions[1]!.reason).toMatch(/when ops releases/);
    expect(mode(step(r.state, { type: 'release' }, 2).state)).toBe('auto');
  });

  it('initialState honours params.enabled and an explicit override', () => {
    expect(mode(initialState(params({ enabled: false })))).toBe('off');
    expect(mode(initialState(params({ enabled: false }), true))).toBe('auto');
  });
});

describe('tune, guest RAM, recover', () => {
  it('tuning a smaller ceiling clamps the target and pushes it', () => {
    const r = step(ready(SEED_PARAMS, { target: P(256) }), { type: 'tune', params: params({ maxBalloonBytes: 128 * MiB }) }, 0);
    expect(r.actions).toEqual([{ type: 'set-target', pages: P(128), decision: r.decision }]);
    expect(r.decision).toMatchObject({ rule: 'clamp', cause: 'ceiling' });
  });

  it('tuning without a clamp is recorded; the new step applies from the next event', () => {
    const r = run(ready(), [[0, { type: 'tune', params: params({ stepBytes: 8 * MiB }) }], [1, host()]]);
    expect(r.decisions.map((d) => d.rule)).toEqual(['tune', 'host-pressure-inflate']);
    expect(r.state.targetPages).toBe(P(8));
  });

  it('tune with enabled: false turns automatic mode off', () => {
    const r = step(ready(), { type: 'tune', params: params({ enabled: false }) }, 0);
    expect(mode(r.state)).toBe('off');
  });

  it('guest RAM smaller than floor + target clamps the target', () => {
    const s = ready(params({ floorBytes: 512 * MiB }), { target: P(1024) });
    const r = step(s, { type: 'guest-ram', bytes: 1024 * MiB }, 0);
    expect(r.state.targetPages).toBe(P(512));
    expect(r.decision!.rule).toBe('clamp');
  });

  it('guest RAM below the floor: ceiling 0', () => {
    expect(ceilingPages(ready(params({ floorBytes: 8192 * MiB })))).toBe(0);
  });

  it('recover keeps the balloon a reconnecting guest already has', () => {
    const r = step(ready(), { type: 'recover', pages: P(300) }, 0);
    expect(r.state).toMatchObject({ targetPages: P(300), balloonPages: P(300) });
    expect(r.decision!.rule).toBe('recover');
  });

  it('a new frontend sets the last guest aside: target 0, no hold, no hysteresis', () => {
    const s = run(ready(), [[0, manual(P(512))], [10, guest()]]).state;
    const r = step(s, { type: 'frontend-attached' }, 20);
    expect(r.state).toMatchObject({ targetPages: 0, hold: null, lastGuestPressureAt: null });
    expect(r.setTarget).toBe(0);
    expect(r.decision!.rule).toBe('new-frontend');
    expect(r.state.previousGuest).toMatchObject({ targetPages: P(512), hold: { owner: 'ops' } });
  });

  it('the same guest reconnecting gets its manual hold back', () => {
    const s = run(ready(), [[0, manual(P(512))], [20, { type: 'frontend-attached' }]]).state;
    const r = step(s, { type: 'recover', pages: P(400) }, 30);
    expect(r.state).toMatchObject({ targetPages: P(512), balloonPages: P(400), hold: { owner: 'ops' }, previousGuest: null });
  });

  it('a new guest forgets the last one: the hold does not come back', () => {
    const s = run(ready(), [[0, manual(P(512))], [20, { type: 'frontend-attached' }], [30, { type: 'new-guest' }]]).state;
    expect(s).toMatchObject({ targetPages: 0, hold: null, previousGuest: null });
    const r = step(s, { type: 'recover', pages: P(100) }, 40);
    expect(r.state.hold).toBeNull();
    expect(r.state.targetPages).toBe(P(100));
  });

  it('a frontend attaching with nothing to set aside is quiet', () => {
    expect(step(ready(), { type: 'frontend-attached' }, 0).decision).toBeNull();
  });

  it('balloon-size is quiet and clamps nonsense to the u32 page range', () => {
    const r = run(ready(), [[0, size(-5)]]);
    expect(r.actions).toEqual([]);
    expect(r.state.balloonPages).toBe(0);
  });
});

describe('defaults', () => {
  it('default params: one step per second, waiting for the guest', () => {
    const r = run(ready(SEED_FIXED_PARAMS), [[0, host(40)], [10, host()], [1000, host()], [1001, size(STEP)], [1002, host()], [2001, host()]]);
    expect(r.decisions.map((d) => d.cause)).toEqual([null, 'rate-limit', 'guest-behind', null, 'rate-limit']);
    expect(r.state.targetPages).toBe(2 * STEP);
  });
});

describe('incoming-state (a migration brought the source daemon\'s state)', () => {
  const incoming = (pages: number, owner: string | null, guestPressureAgeMs: number | null = null): PolicyEvent =>
    ({ type: 'incoming-state', pages, hold: owner ? { owner } : null, guestPressureAgeMs });

  it.each([
    ['the source\'s hold comes along with its target', incoming(P(512), 'operator'), 'manual', P(512), 'operator', null],
    ['no hold: the target, automatic', incoming(P(256), null), 'auto', P(256), null, null],
    ['a target above the ceiling is lowered to it, the hold kept', incoming(P(900), 'operator'), 'manual', P(768), 'operator', 'ceiling'],
  ])('%s', (_n, ev, wantMode, wantTarget, wantOwner, cause) => {
    const r = run(ready(params({ maxBalloonBytes: 768 * MiB })), [[0, ev]]);
    expect([mode(r.state), r.state.targetPages, r.state.hold?.owner ?? null]).toEqual([wantMode, wantTarget, wantOwner]);
    expect(r.decisions[0]).toMatchObject({ rule: 'incoming-state', cause });
  });

  it('a hold set here before the guest arrived wins over the source\'s', () => {
    const r = run(ready(), [[0, manual(P(64), 'here')], [1, incoming(P(512), 'source')]]);
    expect([r.state.targetPages, r.state.hold?.owner]).toEqual([P(64), 'here']);
    expect(r.decisions[1]).toMatchObject({ rule: 'incoming-state', cause: 'manual-hold' });
  });

  it.each([
    ['20 s ago: 40 s of the 60 s hysteresis are left', 20_000, 1000, true, 40_999, true, 41_000, false],
    ['70 s ago: over', 70_000, 1000, false, 1001, false, 1001, false],
  ])('guest pressure %s', (_n, age, at, inAt, t1, in1, t2, in2) => {
    const r = run(ready(params({ hysteresisMs: 60_000 })), [[at, incoming(P(32), null, age)]]);
    expect(guestInPressure(r.state, at)).toBe(inAt);
    expect(guestInPressure(r.state, t1)).toBe(in1);
    expect(guestInPressure(r.state, t2)).toBe(in2);
  });

  it('the incoming num_pages that follows does not undo the hold', () => {
    const r = run(ready(), [[0, incoming(P(512), 'operator')], [1, { type: 'incoming-target', pages: P(512) }]]);
    expect([mode(r.state), r.state.targetPages]).toEqual(['manual', P(512)]);
    expect(r.decisions[1]).toMatchObject({ rule: 'incoming-target', cause: 'manual-hold' });
  });
});
