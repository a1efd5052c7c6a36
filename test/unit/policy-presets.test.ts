// The per-VM half of the presets (step()): which events each policy acts
// on, host-runner targets, and the host policy's give-back by shortfall.
import { describe, expect, it } from 'vitest';
import { giveBack, type GiveBackInput } from '../../src/policy/give-back.js';
import { DEFAULT_PARAMS } from '../../src/policy/params.js';
import { step } from '../../src/policy/step.js';
import type { PolicyEvent, PolicyState } from '../../src/policy/types.js';
import { guest, H, host, manual, MiB, P, params, ready, run, SEED_PARAMS, STEP } from './policy-helpers.js';

const HOST = DEFAULT_PARAMS;
const target = (pages: number, reason = 'need 100 MiB'): PolicyEvent => ({ type: 'host-target', pages, event: 'host policy sample', reason });
const stats = (available: number, total = 1024 * MiB): PolicyEvent => ({ type: 'stats', stats: { total_memory: total, available_memory: available } });

describe('presets: who acts on a host-pressure event', () => {
  it.each([
    ['seed', SEED_PARAMS, 3 * STEP],
    ['host', HOST, 0],
    ['mom', params({ policy: 'mom' }, HOST), 0],
    ['proxmox', params({ policy: 'proxmox' }, HOST), 0],
  ])('%s: an event counted 3 moves the target to %s pages', (_n, p, expected) => {
    const r = run(ready(p), [[0, host(3)]]);
    expect(r.state.targetPages).toBe(expected);
    // Non-seed policies leave host events to the host-wide runner: nothing recorded per VM.
    if (expected === 0) expect(r.decisions).toEqual([]);
  });

  it('seed reproduces the source design: a step per event, no rate limit, no waiting, cancellation, 60 s hysteresis', () => {
    expect(SEED_PARAMS).toMatchObject({ policy: 'seed', stepBytes: 32 * MiB, rateLimitMs: 0, waitForGuest: false, hysteresisMs: 60_000 });
    const r = run(ready(SEED_PARAMS), [
      [0, host()], [1, host()], [2, host()], // 3 steps, guest not caught up: no waiting
      [3, { type: 'balloon-size', pages: STEP }], [4, guest('message')], // cancel at the current size
      [5, host()], [H + 4, host()], // ignored inside the hysteresis, steps again at its end
    ]);
    expect(r.pushed).toEqual([STEP, 2 * STEP, 3 * STEP, STEP, 2 * STEP]);
    expect(r.decisions.map((d) => d.rule)).toEqual([
      'host-pressure-inflate', 'host-pressure-inflate', 'host-pressure-inflate', 'guest-pressure-cancel', 'host-pressure-ignored', 'host-pressure-inflate',
    ]);
  });
});

describe('host-runner targets (host-target events)', () => {
  it.each<[string, PolicyState, number, number, string, string | null]>([
    ['inflates to the runner\'s target', ready(HOST), P(96), P(96), 'host-policy-inflate', null],
    ['gives back (host policy room)', ready(HOST, { target: P(256) }), P(192), P(192), 'host-policy-deflate', null],
    ['stops at the ceiling', ready(params({ floorBytes: 4000 * MiB }, HOST)), P(200), P(96), 'host-policy-inflate', 'ceiling'],
    ['a manual hold wins', step(ready(HOST), manual(P(64)), 0).state, P(128), P(64), 'host-policy-ignored', 'manual-hold'],
    ['auto off wins', step(ready(HOST), { type: 'auto', enabled: false }, 0).state, P(128), 0, 'host-policy-ignored', 'auto-off'],
  ])('%s', (_n, s, pages, expected, rule, cause) => {
    const r = step(s, target(pages), 10);
    expect(r.state.targetPages).toBe(expected);
    expect(r.decision).toMatchObject({ rule, cause });
  });

  it('the host policy does not inflate a guest in pressure (hysteresis), but a baseline does', () => {
    const inPressure = (p = HOST) => step(ready(p, { target: P(64) }), guest('message'), 0).state;
    expect(step(inPressure(), target(P(128)), 1000).decision).toMatchObject({ rule: 'host-policy-ignored', cause: 'guest-pressure' });
    expect(step(inPressure(), target(P(128)), H).decision).toMatchObject({ rule: 'host-policy-inflate' });
    const mom = params({ policy: 'mom' }, HOST);
    const s = step(ready(mom, { target: P(64) }), guest('message'), 0);
    expect(s.decision).toMatchObject({ rule: 'guest-pressure-ignored', cause: 'baseline' });
    expect(step(s.state, target(P(128)), 1000).state.targetPages).toBe(P(128));
  });

  it('the decision carries what the host saw: need, spare, share', () => {
    const host = { policy: 'host', needBytes: 200 * MiB, spareBytes: 600 * MiB, cacheSpareBytes: 400 * MiB, weight: 2, stale: false, shareBytes: 96 * MiB };
    const r = step(ready(HOST), { ...target(P(96)), host } as PolicyEvent, 5);
    expect(r.decision?.host).toEqual(host);
    expect(r.actions[0]).toMatchObject({ type: 'set-target', pages: P(96), decision: { host } });
  });
});

describe('give-back: guest pressure deflates by the shortfall against the reserve, at once', () => {
  const base: GiveBackInput = { targetPages: P(512), balloonPages: P(512), stepPages: STEP, reservePages: P(100), availablePages: P(80), source: 'stats' };
  it.each<[string, Partial<GiveBackInput>, { targetPages: number; cancelledPages: number; deflatedPages: number; shortfallPages: number }]>([
    ['small shortfall: still at least one step', {}, { targetPages: P(480), cancelledPages: 0, deflatedPages: STEP, shortfallPages: P(20) }],
    ['large shortfall: all of it in one go', { availablePages: P(10), reservePages: P(400) }, { targetPages: P(122), cancelledPages: 0, deflatedPages: P(390), shortfallPages: P(390) }],
    ['no stats: one step', { availablePages: null }, { targetPages: P(480), cancelledPages: 0, deflatedPages: STEP, shortfallPages: 0 }],
    ['above the reserve (swap-in, stalls): one step', { availablePages: P(300) }, { targetPages: P(480), cancelledPages: 0, deflatedPages: STEP, shortfallPages: 0 }],
    ['inflation in progress: cancelled, plus the shortfall', { targetPages: P(600), availablePages: P(40) }, { targetPages: P(452), cancelledPages: P(88), deflatedPages: P(60), shortfallPages: P(60) }],
    ['inflation in progress, no shortfall: only cancelled', { targetPages: P(600), availablePages: P(300) }, { targetPages: P(512), cancelledPages: P(88), deflatedPages: 0, shortfallPages: 0 }],
    ['deflate-on-OOM: the guest had nothing left, the whole reserve comes back', { source: 'deflate-on-oom', availablePages: P(500) }, { targetPages: P(412), cancelledPages: 0, deflatedPages: P(100), shortfallPages: P(100) }],
    ['never below 0', { balloonPages: P(50), targetPages: P(50), availablePages: 0 }, { targetPages: 0, cancelledPages: 0, deflatedPages: P(50), shortfallPages: P(100) }],
    ['empty balloon: nothing to give', { balloonPages: 0, targetPages: 0 }, { targetPages: 0, cancelledPages: 0, deflatedPages: 0, shortfallPages: P(20) }],
  ])('%s', (_n, over, expected) => {
    expect(giveBack({ ...base, ...over })).toEqual(expected);
  });

  it('in step(): MemAvailable below the reserve is guest pressure, and one sample gives the whole shortfall back', () => {
    // 1 GiB guest: reserve 10 % = 102.4 MiB; --reserve 300M is larger.
    const p = params({ reserveBytes: 300 * MiB }, HOST);
    const r = run(ready(p, { ramMiB: 1024, target: P(600) }), [[0, stats(100 * MiB)]]);
    expect(r.state.targetPages).toBe(P(400));
    expect(r.decisions[0]).toMatchObject({ rule: 'guest-pressure-deflate', event: expect.stringMatching(/MemAvailable 100 MiB < reserve 300 MiB/) });
    expect(r.decisions[0]!.reason).toMatch(/deflate 200 MiB at once \(shortfall 200 MiB against its reserve 300 MiB\)/);
  });

  it('later signals count what was already given back since the sample: no double give-back', () => {
    const p = params({ reserveBytes: 300 * MiB }, HOST);
    const r = run(ready(p, { ramMiB: 1024, target: P(600) }), [
      [0, stats(100 * MiB)], // -> 400 MiB: 200 MiB back
      [10, guest('message')], // the same sample, 200 MiB already on the way: one step only
    ]);
    expect(r.pushed).toEqual([P(400), P(368)]);
  });

  it('seed keeps one step per signal (MemAvailable shortfall against its own threshold)', () => {
    const r = run(ready(SEED_PARAMS, { ramMiB: 1024, target: P(600) }), [[0, guest('message', 3)]]);
    expect(r.pushed).toEqual([P(600) - 3 * STEP]);
  });
});
