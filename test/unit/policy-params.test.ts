// Policy settings: defaults, and errors that name the option and the range.
import { describe, expect, it } from 'vitest';
import { BalloonError } from '../../src/errors.js';
import { DEFAULT_PARAMS, mergeParams, PARAM_NAMES, SEED_PARAMS, validateParams } from '../../src/policy/params.js';

const MiB = 2 ** 20;

describe('defaults', () => {
  it('are the documented values', () => {
    expect(DEFAULT_PARAMS).toEqual({
      enabled: true, policy: 'host', weight: 1, reserveBytes: 0, stepBytes: 32 * MiB, hysteresisMs: 60_000, floorBytes: 0, maxBalloonBytes: 0, rateLimitMs: 1000, waitForGuest: true,
      stats: { availablePercent: 10, availableBytes: 0, swapInBytes: 4 * MiB, majorFaults: 2000, stalls: 100, directReclaimBytes: 64 * MiB, oomKills: 1, maxSampleGapMs: 120_000 },
    });
  });

  it('pass their own validation, and cannot be changed by accident', () => {
    expect(validateParams({})).toEqual({ ok: true, params: DEFAULT_PARAMS });
    expect(Object.isFrozen(DEFAULT_PARAMS) && Object.isFrozen(DEFAULT_PARAMS.stats)).toBe(true);
  });

  it('SEED_PARAMS are the seed policy without rate limit or waiting for the guest', () => {
    expect(SEED_PARAMS).toEqual({ ...DEFAULT_PARAMS, policy: 'seed', rateLimitMs: 0, waitForGuest: false });
  });

  it.each([
    ['policy', 'hots', /policy = "hots" is not allowed/, /one of host, seed, mom, proxmox/],
    ['policy', 3, /policy = 3 is not allowed/, /one of host/],
    ['weight', -1, /weight = -1 is out of range/, /0 to 1000/],
    ['weight', 1001, /weight = 1001 is out of range/, /0 to 1000/],
    ['reserveBytes', 1.5, /reserveBytes = 1.5 is out of range/, /integer/],
  ])('%s = %j is refused with the allowed values', (name, value, message, hint) => {
    const r = validateParams({ [name]: value });
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.error.message).toMatch(message);
      expect(r.error.hint).toMatch(hint);
    }
  });

  it('weight may be a fraction; policy names are taken as they are', () => {
    expect(mergeParams(DEFAULT_PARAMS, { weight: 0.5, policy: 'mom', reserveBytes: 512 * MiB })).toMatchObject({ weight: 0.5, policy: 'mom', reserveBytes: 512 * MiB });
  });

  it('every setting has a name listed for error hints', () => {
    const names = [...Object.keys(DEFAULT_PARAMS).filter((k) => k !== 'stats'), ...Object.keys(DEFAULT_PARAMS.stats).map((k) => `stats.${k}`)];
    expect([...PARAM_NAMES].sort()).toEqual(names.sort());
  });
});

describe('validation errors name the option and the allowed range', () => {
  it.each<[string, Record<string, unknown>, RegExp, RegExp]>([
    ['step 0', { stepBytes: 0 }, /^stepBytes = 0 is out of range/, /allowed: an integer from 4096 to 68719476736 bytes/],
    ['step not an integer', { stepBytes: 4096.5 }, /^stepBytes = 4096.5/, /an integer/],
    ['step as a string', { stepBytes: '32M' }, /^stepBytes = "32M"/, /allowed: an integer from 4096/],
    ['negative hysteresis', { hysteresisMs: -1 }, /^hysteresisMs = -1/, /from 0 to 86400000 ms/],
    ['rate limit over an hour', { rateLimitMs: 3600_001 }, /^rateLimitMs = 3600001/, /0 = step on every event/],
    ['NaN floor', { floorBytes: Number.NaN }, /^floorBytes = null/, /0 = no floor/],
    ['enabled not a boolean', { enabled: 'yes' }, /^enabled = "yes" is not allowed/, /allowed: true or false/],
    ['waitForGuest not a boolean', { waitForGuest: 1 }, /^waitForGuest = 1/, /true or false/],
    ['unknown setting', { bogus: 1 }, /^unknown setting bogus/, /settings: enabled, policy, weight, reserveBytes, stepBytes/],
    ['percent over 100', { stats: { availablePercent: 150 } }, /^stats.availablePercent = 150/, /from 0 to 100 %/],
    ['unknown stats setting', { stats: { nope: 1 } }, /^unknown setting stats.nope/, /stats.majorFaults/],
    ['stats not an object', { stats: 5 }, /^stats = 5 is not allowed/, /object of stats/],
    ['dotted name out of range', { 'stats.majorFaults': -3 }, /^stats.majorFaults = -3/, /faults \(0 disables\)/],
    ['max balloon below one step', { maxBalloonBytes: 4096, stepBytes: 8192 }, /^maxBalloonBytes = 4096 is smaller than one step/, /0 \(no limit\) or at least stepBytes/],
  ])('%s', (_n, update, message, hint) => {
    const r = validateParams(update);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.error).toBeInstanceOf(BalloonError);
    expect(r.error.code).toBe('EBALLOON_CONFIG');
    expect(r.error.message.split('\n')[0]).toMatch(message);
    expect(r.error.hint).toMatch(hint);
  });

  it('mergeParams throws the same error', () => {
    expect(() => mergeParams(DEFAULT_PARAMS, { hysteresisMs: -1 })).toThrow(/hysteresisMs = -1 is out of range/);
  });
});

describe('merging', () => {
  it('keeps what is not given, merges nested and dotted stats settings', () => {
    const r = mergeParams(DEFAULT_PARAMS, { rateLimitMs: 0, stats: { majorFaults: 5 }, 'stats.oomKills': 0, floorBytes: undefined });
    expect(r).toEqual({ ...DEFAULT_PARAMS, rateLimitMs: 0, stats: { ...DEFAULT_PARAMS.stats, majorFaults: 5, oomKills: 0 } });
  });

  it('does not modify the base', () => {
    const base = mergeParams(DEFAULT_PARAMS, {});
    mergeParams(base, { stepBytes: 4096, stats: { stalls: 1 } });
    expect(base).toEqual(DEFAULT_PARAMS);
  });

  it('validates against the given base', () => {
    const base = mergeParams(DEFAULT_PARAMS, { stepBytes: 4096 });
    expect(validateParams({ maxBalloonBytes: 8192 }, base).ok).toBe(true);
    expect(validateParams({ maxBalloonBytes: 8192 }).ok).toBe(false);
  });
});
