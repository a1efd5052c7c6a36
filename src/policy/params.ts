// Policy settings: defaults, and validation that names the option and its
// allowed range (code EBALLOON_CONFIG). Sizes are bytes, times milliseconds.
// Why each default is what it is: docs/policy.md.
import { BalloonError } from '../errors.js';
import { GiB, KiB, MiB } from '../units.js';

export interface StatsPressureParams {
  /** Guest pressure when MemAvailable < this % of MemTotal (tags 6, 5); 0 disables. */
  availablePercent: number;
  /** ... or when MemAvailable < this many bytes; 0 disables. */
  availableBytes: number;
  /** ... or swap-in (tag 0) grows by at least this many bytes between two samples; 0 disables. */
  swapInBytes: number;
  /** ... or major faults (tag 2) grow by at least this many between two samples; 0 disables. */
  majorFaults: number;
  /** ... or allocation stalls (tag 11, ALLOC_STALL, a count) grow by at least this many; 0 disables. */
  stalls: number;
  /** ... or direct reclaim (tag 15, DIRECT_RECLAIM, bytes) grows by at least this much; 0 disables. */
  directReclaimBytes: number;
  /** ... or the guest OOM killer ran (tag 10, OOM_KILL) at least this many times; 0 disables. */
  oomKills: number;
  /** Deltas against a sample older than this are not used (the baseline restarts); 0 = any age. */
  maxSampleGapMs: number;
}

/**
 * Who moves the balloon on host pressure: `host` (the host-wide policy:
 * need, spare, weighted split; the default), `seed` (the source design: a
 * step per host event), or the `mom` / `proxmox` baselines.
 */
export type PolicyName = 'host' | 'seed' | 'mom' | 'proxmox';
export const POLICY_NAMES: readonly PolicyName[] = Object.freeze(['host', 'seed', 'mom', 'proxmox']);

export interface PolicyParams {
  /** Automatic mode at start; runtime changes go through the `auto` event. */
  enabled: boolean;
  policy: PolicyName;
  /** Share of the host's need this VM gives, relative to the other VMs of its memcg (host policy; Proxmox: shares / 1000). */
  weight: number;
  /** Memory the guest keeps available whatever the need (host policy); 0: 10 % of its RAM. The larger of the two applies. */
  reserveBytes: number;
  /** Balloon change per host-pressure event and per guest-pressure deflate (seed: 32 MiB). */
  stepBytes: number;
  /** After a guest-pressure signal the guest counts as in pressure this long; host events are ignored meanwhile (seed: 60 s). */
  hysteresisMs: number;
  /** Never balloon the guest below this size; 0 = no floor. */
  floorBytes: number;
  /** Largest balloon; 0 = no limit but the floor and guest RAM. */
  maxBalloonBytes: number;
  /** At most one host-driven step per interval; bursts collapse into one step. 0 = the seed (every event steps). */
  rateLimitMs: number;
  /** Take a host-driven step only once the guest has (nearly) reached the previous target. false = the seed. */
  waitForGuest: boolean;
  stats: StatsPressureParams;
}


export const DEFAULT_PARAMS: Readonly<PolicyParams> = Object.freeze({
  enabled: true,
  policy: 'host',
  weight: 1,
  reserveBytes: 0,
  stepBytes: 32 * MiB,
  hysteresisMs: 60_000,
  floorBytes: 0,
  maxBalloonBytes: 0,
  rateLimitMs: 1000,
  waitForGuest: true,
  stats: Object.freeze({
    availablePercent: 10,
    availableBytes: 0,
    swapInBytes: 4 * MiB,
    majorFaults: 2000,
    stalls: 100,
    directReclaimBytes: 64 * MiB,
    oomKills: 1,
    maxSampleGapMs: 120_000,
  }),
}) as PolicyParams;

/** The seed design's behaviour: every host event steps, no wait for the guest. */
export const SEED_PARAMS: Readonly<PolicyParams> = Object.freeze({ ...DEFAULT_PARAMS, policy: 'seed', rateLimitMs: 0, waitForGuest: false });

/** The step policy with this project's fixes (rate limit, wait for the guest): the defaults of --policy seed --rate-limit 1s --wait-for-guest. */
export const SEED_FIXED_PARAMS: Readonly<PolicyParams> = Object.freeze({ ...DEFAULT_PARAMS, policy: 'seed' });

type NumberRange = { kind: 'number'; min: number; max: number; integer: boolean; unit: string };
type Spec = NumberRange | { kind: 'boolean' } | { kind: 'choice'; values: readonly string[] };

const num = (min: number, max: number, unit: string, integer = true): NumberRange => ({ kind: 'number', min, max, integer, unit });
const bool: Spec = { kind: 'boolean' };

/** Every setting, by its dotted name, with the range validation enforces. */
export const PARAM_SPECS: Readonly<Record<string, Spec>> = {
  enabled: bool,
  policy: { kind: 'choice', values: POLICY_NAMES },
  weight: num(0, 1000, '(0 to 1000; 0 = never asked by the host policy)', false),
  reserveBytes: num(0, 2 ** 50, 'bytes (0 = 10 % of guest RAM)'),
  stepBytes: num(4 * KiB, 64 * GiB, 'bytes (4 KiB to 64 GiB)'),
  hysteresisMs: num(0, 24 * 3600_000, 'ms (0 to 24 h)'),
  floorBytes: num(0, 2 ** 50, 'bytes (0 = no floor)'),
  maxBalloonBytes: num(0, 2 ** 50, 'bytes (0 = no limit)'),
  rateLimitMs: num(0, 3600_000, 'ms (0 to 1 h; 0 = step on every event)'),
  waitForGuest: bool,
  'stats.availablePercent': num(0, 100, '% (0 disables)', false),
  'stats.availableBytes': num(0, 2 ** 50, 'bytes (0 disables)'),
  'stats.swapInBytes': num(0, 2 ** 50, 'bytes (0 disables)'),
  'stats.majorFaults': num(0, 2 ** 40, 'faults (0 disables)'),
  'stats.stalls': num(0, 2 ** 40, 'stalls (0 disables)'),
  'stats.directReclaimBytes': num(0, 2 ** 50, 'bytes (0 disables)'),
  'stats.oomKills': num(0, 2 ** 40, 'kills (0 disables)'),
  'stats.maxSampleGapMs': num(0, 24 * 3600_000, 'ms (0 = any age)'),
};

export const PARAM_NAMES: readonly string[] = Object.freeze(Object.keys(PARAM_SPECS));

function describeRange(spec: Spec): string {
  if (spec.kind === 'choice') return `one of ${spec.values.join(', ')}`;
  return spec.kind === 'boolean' ? 'true or false' : `${spec.integer ? 'an integer ' : ''}from ${spec.min} to ${spec.max} ${spec.unit}`;
}

function configError(message: string, hint: string): BalloonError {
  return new BalloonError('EBALLOON_CONFIG', message, hint);
}

function checked(name: string, value: unknown): number | boolean | string {
  const spec = PARAM_SPECS[name];
  if (!spec) throw configError(`unknown setting ${name}`, `settings: ${PARAM_NAMES.join(', ')}`);
  if (spec.kind === 'choice') {
    if (typeof value !== 'string' || !spec.values.includes(value)) throw configError(`${name} = ${JSON.stringify(value)} is not allowed`, `allowed: ${describeRange(spec)}`);
    return value;
  }
  if (spec.kind === 'boolean') {
    if (typeof value !== 'boolean') throw configError(`${name} = ${JSON.stringify(value)} is not allowed`, `allowed: ${describeRange(spec)}`);
    return value;
  }
  const bad = typeof value !== 'number' || !Number.isFinite(value) || value < spec.min || value > spec.max || (spec.integer && !Number.isInteger(value));
  if (bad) throw configError(`${name} = ${JSON.stringify(value)} is out of range`, `allowed: ${describeRange(spec)}`);
  return value as number;
}

/** Merge a partial update into `base`, validating every field given; throws BalloonError EBALLOON_CONFIG. */
export function mergeParams(base: Readonly<PolicyParams>, update: Readonly<Record<string, unknown>>): PolicyParams {
  const out: PolicyParams = { ...base, stats: { ...base.stats } };
  for (const [key, value] of Object.entries(update)) {
    if (value === undefined) continue;
    if (key === 'stats') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) {
        throw configError(`stats = ${JSON.stringify(value)} is not allowed`, 'give an object of stats.* settings, e.g. { "majorFaults": 5000 }');
      }
      for (const [k, v] of Object.entries(value)) {
        if (v === undefined) continue;
        (out.stats as unknown as Record<string, unknown>)[k] = checked(`stats.${k}`, v);
      }
      continue;
    }
    // Dotted names ("stats.majorFaults") are accepted too, as the CLI spells them.
    if (key.startsWith('stats.')) {
      (out.stats as unknown as Record<string, unknown>)[key.slice(6)] = checked(key, value);
      continue;
    }
    (out as unknown as Record<string, unknown>)[key] = checked(key, value);
  }
  if (out.maxBalloonBytes !== 0 && out.maxBalloonBytes < out.stepBytes) {
    throw configError(`maxBalloonBytes = ${out.maxBalloonBytes} is smaller than one step (stepBytes = ${out.stepBytes})`,
      'allowed: 0 (no limit) or at least stepBytes; raise maxBalloonBytes or lower stepBytes');
  }
  return out;
}

export type ValidationResult = { ok: true; params: PolicyParams } | { ok: false; error: BalloonError };

/** Like mergeParams, but returns the error instead of throwing. */
export function validateParams(update: Readonly<Record<string, unknown>>, base: Readonly<PolicyParams> = DEFAULT_PARAMS): ValidationResult {
  try {
    return { ok: true, params: mergeParams(base, update) };
  } catch (err) {
    if (err instanceof BalloonError) return { ok: false, error: err };
    throw err;
  }
}
