import { describe, expect, it } from 'vitest';
import { HOST_POLICY_OPTIONS, parseHostPolicy } from '../../src/options/host-policy.js';
import { DEFAULT_GIVE_BACK, DEFAULT_HOST_PARAMS } from '../../src/policy/host.js';

const MiB = 2 ** 20;

describe('parseHostPolicy', () => {
  it('no options: the policy\'s own defaults, exactly', () => {
    expect(parseHostPolicy({})).toEqual({ sampleIntervalMs: 1000, hostParams: { ...DEFAULT_HOST_PARAMS }, giveBack: { ...DEFAULT_GIVE_BACK } });
  });

  it('every option\'s default as --help shows it parses back to the same value', () => {
    const typed = Object.fromEntries(HOST_POLICY_OPTIONS.map((o) => [o.name, o.default]));
    expect(parseHostPolicy(typed)).toEqual(parseHostPolicy({}));
  });

  it.each([
    [{ horizon: '5s' }, 'hostParams', { horizonMs: 5000 }],
    [{ horizon: '0' }, 'hostParams', { horizonMs: 0 }],
    [{ 'growth-window': '250ms' }, 'hostParams', { growthWindowMs: 250 }],
    [{ 'guest-reserve': '20%' }, 'hostParams', { guestReservePercent: 20 }],
    [{ 'guest-reserve': '15' }, 'hostParams', { guestReservePercent: 15 }],
    [{ 'guest-cache-keep': '0%' }, 'hostParams', { guestCacheKeepPercent: 0 }],
    [{ 'guest-horizon': '2m' }, 'hostParams', { guestHorizonMs: 120_000 }],
    [{ 'guest-cycle-window': '30s' }, 'hostParams', { guestCycleWindowMs: 30_000 }],
    [{ 'guest-cycle-peak': 'last' }, 'hostParams', { guestCyclePeak: 'last' }],
    [{ 'guest-cycle-peak': 'window' }, 'hostParams', { guestCyclePeak: 'window' }],
    [{ 'guest-fresh-free': '2s' }, 'hostParams', { guestFreshFreeMs: 2000 }],
    [{ 'guest-fresh-free': '0' }, 'hostParams', { guestFreshFreeMs: 0 }],
    [{ 'rebalance-after': '30s' }, 'hostParams', { rebalanceAfterMs: 30_000 }],
    [{ 'rebalance-after': '0' }, 'hostParams', { rebalanceAfterMs: 0 }],
    [{ 'stall-psi': '0%' }, 'hostParams', { stallPercent: 0 }],
    [{ 'stall-need': '64M' }, 'hostParams', { stallNeedBytes: 64 * MiB }],
    [{ headroom: '20%' }, 'hostParams', { headroomPercent: 20, headroomBytes: DEFAULT_HOST_PARAMS.headroomBytes }],
    [{ headroom: '512M' }, 'hostParams', { headroomPercent: 0, headroomBytes: 512 * MiB }],
    [{ 'give-back-room': '3' }, 'giveBack', { roomFactor: 3 }],
    [{ 'give-back-room': '1.5' }, 'giveBack', { roomFactor: 1.5 }],
    [{ 'give-back-after': '2m' }, 'giveBack', { afterMs: 120_000 }],
    [{ 'give-back-step': '128M' }, 'giveBack', { stepBytes: 128 * MiB }],
  ] as const)('%j sets %s %j and nothing else', (args, part, want) => {
    const base = parseHostPolicy({});
    expect(parseHostPolicy(args)).toEqual({ ...base, [part]: { ...base[part], ...want } });
  });

  it('--sample-interval 500ms', () => expect(parseHostPolicy({ 'sample-interval': '500ms' }).sampleIntervalMs).toBe(500));

  it.each([
    [{ 'sample-interval': '10ms' }, /--sample-interval 10ms is out of range/, /100ms to 60s/],
    [{ horizon: '2h' }, /--horizon 2h is out of range/, /0 to 60s \(default 2s\)/],
    [{ horizon: 'later' }, /--horizon later: not a duration/, /500ms/],
    [{ 'growth-window': '50ms' }, /out of range/, /100ms to 60s/],
    [{ 'guest-reserve': '95%' }, /--guest-reserve 95% is out of range/, /0% to 90% \(default 10%\)/],
    [{ 'guest-reserve': 'some' }, /--guest-reserve some: not a percentage/, /e\.g\. 10%/],
    [{ 'stall-psi': '101%' }, /out of range/, /0% to 100%/],
    [{ 'stall-need': '-1M' }, /--stall-need -1M/, /.+/],
    [{ 'stall-need': '65G' }, /out of range/, /0 to 64G/],
    [{ 'give-back-room': '0.5' }, /--give-back-room 0\.5 is out of range/, /1 to 100 \(default 2\)/],
    [{ 'give-back-room': 'twice' }, /not a number/, /1 to 100/],
    [{ 'give-back-after': '0' }, /out of range/, /1s to 60m/],
    [{ 'give-back-step': '4k' }, /out of range/, /1M to 64G/],
    [{ 'guest-fresh-free': '11m' }, /--guest-fresh-free 11m is out of range/, /0 to 10m \(default 2s\)/],
    [{ 'rebalance-after': '2h' }, /--rebalance-after 2h is out of range/, /0 to 60m \(default 10s\)/],
    [{ 'rebalance-after': 'soon' }, /--rebalance-after soon: not a duration/, /500ms/],
    [{ 'guest-cycle-peak': 'highest' }, /--guest-cycle-peak highest: not one of window, last/, /window, last \(default window\)/],
    [{ headroom: '95%' }, /--headroom 95% is out of range/, /0% to 90% of the memcg limit, or a size such as 512M/],
    [{ headroom: 'lots' }, /--headroom lots: "lots" is not a size/, /a share of the memcg limit \(10%\) or a size \(512M\)/],
  ])('%j is refused: %s, with a hint %s', (args, message, hint) => {
    let err: (Error & { hint?: string; code?: string }) | undefined;
    try {
      parseHostPolicy(args);
    } catch (e) {
      err = e as Error & { hint?: string };
    }
    expect(err?.code).toBe('EBALLOON_CONFIG');
    expect(err?.message).toMatch(message);
    expect(err?.hint).toMatch(hint);
  });
});
