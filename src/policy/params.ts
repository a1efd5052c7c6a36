// Policy settings: defaults, and validation that names the option and its
// allowed range. Sizes are bytes, times milliseconds.
import { BalloonError } from '../errors.js';

export interface StatsPressureParams {
  /** Guest pressure when MemAvailable falls below this share of MemTotal (%); 0 disables. */
  availablePercent: number;
  /** ... or when swap-in grows by at least this many bytes between samples; 0 disables. */
  swapInBytes: number;
  /** ... or major faults grow by at least this many between samples; 0 disables. */
  majorFaults: number;
  /** ... or allocation stalls / direct reclaims grow by at least this many (tags 11, 15); 0 disables. */
  stalls: number;
}

export interface PolicyParams {
  /** Balloon change per host-pressure event and per guest-pressure deflate (seed: 32 MiB). */
  stepBytes: number;
  /** After a guest-pressure signal the guest counts as in pressure this long; host events are ignored meanwhile (seed: 60 s). */
  hysteresisMs: number;
  /** Never balloon the guest below this size; 0 = no floor. */
  floorBytes: number;
  /** Largest balloon; 0 = no limit but the floor and guest RAM. */
  maxBalloonBytes: number;
  /** At most one host-driven step per interval; bursts collapse into one step. 0 = the seed's behaviour (every event steps). */
  rateLimitMs: number;
  stats: StatsPressureParams;
}

const MiB = 2 ** 20;

export const DEFAULT_PARAMS: PolicyParams = {
  stepBytes: 32 * MiB,
  hysteresisMs: 60_000,
  floorBytes: 0,
  maxBalloonBytes: 0,
  rateLimitMs: 1000,
  stats: { availablePercent: 10, swapInBytes: 4 * MiB, majorFaults: 2000, stalls: 1 },
};

type Range = [min: number, max: number, unit: string];
const RANGES: Record<string, Range> = {
  stepBytes: [4096, 64 * 2 ** 30, 'bytes (4 KiB to 64 GiB)'],
  hysteresisMs: [0, 24 * 3600_000, 'ms (0 to 24 h)'],
  floorBytes: [0, 2 ** 50, 'bytes'],
  maxBalloonBytes: [0, 2 ** 50, 'bytes (0 = no limit)'],
  rateLimitMs: [0, 3600_000, 'ms (0 to 1 h)'],
  'stats.availablePercent': [0, 100, '% (0 disables)'],
  'stats.swapInBytes': [0, 2 ** 50, 'bytes (0 disables)'],
  'stats.majorFaults': [0, 2 ** 40, 'faults (0 disables)'],
  'stats.stalls': [0, 2 ** 40, 'events (0 disables)'],
};

export const PARAM_NAMES = Object.keys(RANGES);

function check(name: string, value: unknown): number {
  const [min, max, unit] = RANGES[name]!;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max) {
    throw new BalloonError('EBALLOON_CONFIG', `${name} = ${JSON.stringify(value)} is out of range`, `allowed: ${min} to ${max} ${unit}`);
  }
  return value;
}

/** Merge a partial update into params, validating every field given. */
export function mergeParams(base: PolicyParams, update: Record<string, unknown>): PolicyParams {
  const out: PolicyParams = { ...base, stats: { ...base.stats } };
  for (const [key, value] of Object.entries(update)) {
    if (key === 'stats') {
      if (typeof value !== 'object' || value === null) throw new BalloonError('EBALLOON_CONFIG', 'stats must be an object');
      for (const [k, v] of Object.entries(value)) {
        const name = `stats.${k}`;
        if (!(name in RANGES)) throw new BalloonError('EBALLOON_CONFIG', `unknown setting ${name}`, `settings: ${PARAM_NAMES.join(', ')}`);
        (out.stats as unknown as Record<string, number>)[k] = check(name, v);
      }
      continue;
    }
    if (!(key in RANGES)) throw new BalloonError('EBALLOON_CONFIG', `unknown setting ${key}`, `settings: ${PARAM_NAMES.join(', ')}`);
    (out as unknown as Record<string, number>)[key] = check(key, value);
  }
  if (out.maxBalloonBytes !== 0 && out.maxBalloonBytes < out.stepBytes) {
    throw new BalloonError('EBALLOON_CONFIG', `maxBalloonBytes (${out.maxBalloonBytes}) is smaller than one step (${out.stepBytes})`, 'raise maxBalloonBytes or lower stepBytes');
  }
  return out;
}
