// Option values as operators write them (sizes, durations, counts) and the
// config files that carry them; every error names the option.
import { readFileSync } from 'node:fs';
import { parseSize } from '../units.js';
import { BalloonError } from '../errors.js';
import { selfDescription, selfName } from '../host/privileges.js';
import { PARAM_SPECS } from '../policy/params.js';

export function bytesOption(name: string, text: string): number {
  let s;
  try {
    s = parseSize(String(text));
  } catch (err) {
    const e = err as BalloonError;
    throw new BalloonError(e.code, `--${name} ${text}: ${e.message.split('\n')[0]}`, e.hint);
  }
  if (!('bytes' in s)) throw new BalloonError('EBALLOON_CONFIG', `--${name} ${text}: give an absolute size (e.g. 512M)`);
  return s.bytes;
}

/** 0 stays 0 (the option's "off"), anything else is a size. */
export const bytesOrZero = (name: string, text: string): number => (String(text) === '0' ? 0 : bytesOption(name, text));

export function durationMs(name: string, text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(String(text).trim());
  if (!m) throw new BalloonError('EBALLOON_CONFIG', `--${name} ${text}: not a duration`, 'use 500ms, 60s, 2m or 1h');
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m[2] ?? 's') as 'ms']);
}

/** Policy parameter names as operators type them. */
export const OPTION_OF_PARAM: Record<string, string> = {
  policy: '--policy', weight: '--weight', reserveBytes: '--reserve',
  stepBytes: '--step', hysteresisMs: '--hysteresis', floorBytes: '--floor', maxBalloonBytes: '--max-balloon',
  rateLimitMs: '--rate-limit', enabled: '--auto', waitForGuest: '--wait-for-guest',
  'stats.availablePercent': '--stats-available-percent', 'stats.availableBytes': '--stats-available',
  'stats.swapInBytes': '--stats-swap-in', 'stats.majorFaults': '--stats-major-faults', 'stats.stalls': '--stats-stalls',
  'stats.directReclaimBytes': '--stats-direct-reclaim', 'stats.oomKills': '--stats-oom-kills', 'stats.maxSampleGapMs': '--stats-max-sample-gap',
};

/** A numeric flag that is not a number (yargs gives NaN): name it and the allowed range. */
export function countOption(name: string, param: string, value: number): number {
  if (Number.isFinite(value)) return value;
  const spec = PARAM_SPECS[param];
  const range = spec?.kind === 'number' ? `from ${spec.min} to ${spec.max} ${spec.unit}` : 'a number';
  throw new BalloonError('EBALLOON_CONFIG', `--${name}: not a number`, `allowed: ${range}`);
}

/** Validation errors name the command-line option, not the internal parameter. */
export function withOptionNames<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (!(err instanceof BalloonError)) throw err;
    const m = /^([\w.]+) = /.exec(err.message);
    const option = m ? OPTION_OF_PARAM[m[1] ?? ''] : undefined;
    if (!option) throw err;
    const what = (err.message.split('\n')[0] ?? '').slice((m?.[1] ?? '').length + 3);
    throw new BalloonError(err.code, `${option}: ${what}`, err.hint);
  }
}

/** A config file: a JSON object whose keys are long option names. */
export function readConfigFile(path: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') {
      throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: not readable by ${selfDescription()}`,
        `make it readable by the daemon's user, e.g. chgrp ${selfName()} ${path} && chmod 0640 ${path}`);
    }
    if (code === 'ENOENT') throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: no such file`, 'check the path');
    throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: ${(err as Error).message}`,
      'it must be a JSON object whose keys are the long option names, e.g. {"step": "32M", "memcg": "/sys/fs/cgroup/memory/machine.slice"}');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new BalloonError('EBALLOON_CONFIG', `config file ${path}: not a JSON object`, 'write {"option-name": value, ...}');
  }
  return value as Record<string, unknown>;
}

/** The closest known name, for "did you mean" (edit distance at most 2). */
export function closest(name: string, known: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = 3;
  for (const k of known) {
    const d = editDistance(name, k);
    if (d < bestD) {
      bestD = d;
      best = k;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}
