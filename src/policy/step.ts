// The automatic ballooning policy as a pure function: step(state, event, now)
// returns the next state and, when the target moves or an event is ignored,
// a decision with its reason. No I/O, no timers; `now` is a monotonic clock
// in milliseconds supplied by the caller.
//
// The source design's rules:
// - host pressure while the guest is not in pressure: target += step
//   (events accumulate: 10 events = 10 steps);
// - guest pressure: remember when; if an inflation is in progress (target
//   above the current balloon) cancel it (target = balloon), else deflate
//   one step;
// - for `hysteresisMs` after each guest-pressure signal the guest is in
//   pressure and host events are ignored.
// Its defects fixed: no unsigned underflow (clamped at 0), the cancellation
// is an action like any other, and time is monotonic.
import type { GuestStats } from '../device/stats.js';
import { PolicyParams } from './params.js';

export const PAGE = 4096;

export type Mode = 'auto' | 'manual' | 'off';

export interface PolicyState {
  params: PolicyParams;
  /** num_pages we ask for. */
  targetPages: number;
  /** Current balloon size (the guest's `actual`). */
  balloonPages: number;
  guestRamBytes: number;
  /** Automatic mode wanted (a manual hold suspends it without clearing this). */
  autoEnabled: boolean;
  hold: { owner: string; since: number } | null;
  lastGuestPressureAt: number | null;
  lastGuestPressureSource: string | null;
  lastHostStepAt: number | null;
  prevStats: GuestStats | null;
}

export type PolicyEvent =
  | { type: 'host-pressure'; source: string; level: string; count: number }
  | { type: 'guest-pressure'; source: 'message' | 'deflate-on-oom'; count: number }
  | { type: 'stats'; stats: GuestStats }
  | { type: 'balloon-size'; pages: number }
  /** A new connection reported a balloon we did not see being filled. */
  | { type: 'recover'; pages: number }
  | { type: 'guest-ram'; bytes: number }
  | { type: 'manual-target'; pages: number; owner: string }
  | { type: 'release' }
  | { type: 'auto'; enabled: boolean }
  | { type: 'tune'; params: PolicyParams };

export type Rule =
  | 'host-pressure-inflate' | 'host-pressure-ignored'
  | 'guest-pressure-cancel' | 'guest-pressure-deflate' | 'guest-pressure-ignored'
  | 'manual-target' | 'release' | 'auto-on' | 'auto-off' | 'tune' | 'clamp' | 'recover';

export interface Decision {
  rule: Rule;
  event: string;
  oldTargetPages: number;
  newTargetPages: number;
  reason: string;
}

export interface StepResult {
  state: PolicyState;
  /** Set when num_pages must change (push it to the device). */
  setTarget: number | null;
  decision: Decision | null;
}

export function initialState(params: PolicyParams, autoEnabled = true): PolicyState {
  return {
    params, targetPages: 0, balloonPages: 0, guestRamBytes: 0, autoEnabled, hold: null,
    lastGuestPressureAt: null, lastGuestPressureSource: null, lastHostStepAt: null, prevStats: null,
  };
}

export function mode(s: PolicyState): Mode {
  if (s.hold) return 'manual';
  return s.autoEnabled ? 'auto' : 'off';
}

/** In pressure while now < last signal + hysteresis (the boundary itself is out). */
export function guestInPressure(s: PolicyState, now: number): boolean {
  return s.lastGuestPressureAt !== null && now < s.lastGuestPressureAt + s.params.hysteresisMs;
}

/** Largest target the floor and the ceiling allow, in pages. */
export function ceilingPages(s: PolicyState): number {
  const p = s.params;
  let max = Number.MAX_SAFE_INTEGER;
  if (s.guestRamBytes > 0) max = Math.max(0, Math.floor((s.guestRamBytes - p.floorBytes) / PAGE));
  if (p.maxBalloonBytes > 0) max = Math.min(max, Math.floor(p.maxBalloonBytes / PAGE));
  return Math.min(max, 0xffffffff);
}

const stepPages = (s: PolicyState) => Math.max(1, Math.floor(s.params.stepBytes / PAGE));
const mib = (pages: number) => `${Math.round((pages * PAGE) / 2 ** 20)} MiB`;

function result(state: PolicyState, old: PolicyState, rule: Rule, event: string, reason: string): StepResult {
  return {
    state,
    setTarget: state.targetPages !== old.targetPages ? state.targetPages : null,
    decision: { rule, event, oldTargetPages: old.targetPages, newTargetPages: state.targetPages, reason },
  };
}

const quiet = (state: PolicyState): StepResult => ({ state, setTarget: null, decision: null });

export function step(s: PolicyState, ev: PolicyEvent, now: number): StepResult {
  switch (ev.type) {
    case 'host-pressure':
      return hostPressure(s, ev, now);
    case 'guest-pressure':
      return guestPressure(s, `guest pressure (${ev.source}${ev.count > 1 ? ` x${ev.count}` : ''})`, ev.source, now, 0);
    case 'stats':
      return statsSample(s, ev.stats, now);
    case 'balloon-size':
      return quiet({ ...s, balloonPages: ev.pages });
    case 'recover': {
      const next = { ...s, balloonPages: ev.pages, targetPages: Math.min(ev.pages, ceilingPages(s)) };
      return result(next, s, 'recover', `frontend reconnected with ${mib(ev.pages)} ballooned`,
        'keep the balloon the guest already has instead of assuming it is empty');
    }
    case 'guest-ram': {
      const next = { ...s, guestRamBytes: ev.bytes };
      return clampTarget(next, s, 'guest RAM known');
    }
    case 'manual-target': {
      const next = { ...s, hold: { owner: ev.owner, since: now }, targetPages: Math.min(ev.pages, ceilingPages(s)) };
      return result(next, s, 'manual-target', `manual target ${mib(ev.pages)} by ${ev.owner}`,
        `held by ${ev.owner}: automatic changes suspended until released`);
    }
    case 'release':
      if (!s.hold) return quiet(s);
      return result({ ...s, hold: null }, s, 'release', `release by ${s.hold.owner}`,
        s.autoEnabled ? 'automatic mode decides again from here' : 'automatic mode is off: target stays');
    case 'auto':
      if (ev.enabled === s.autoEnabled) return quiet(s);
      return result({ ...s, autoEnabled: ev.enabled }, s, ev.enabled ? 'auto-on' : 'auto-off', `automatic mode ${ev.enabled ? 'on' : 'off'}`,
        s.hold ? `takes effect when ${s.hold.owner} releases the manual target` : ev.enabled ? 'host and guest pressure move the balloon' : 'target frozen until turned on or set by hand');
    case 'tune': {
      const next = { ...s, params: ev.params };
      const clamped = clampTarget(next, s, 'policy tuned');
      return clamped.decision ? clamped : result(next, s, 'tune', 'policy tuned', 'new settings apply from the next event');
    }
  }
}

function clampTarget(next: PolicyState, old: PolicyState, event: string): StepResult {
  const max = ceilingPages(next);
  if (next.targetPages <= max) return quiet(next);
  return result({ ...next, targetPages: max }, old, 'clamp', event, `target lowered to the ceiling ${mib(max)} (floor ${mib(next.params.floorBytes / PAGE)}, max balloon ${next.params.maxBalloonBytes ? mib(next.params.maxBalloonBytes / PAGE) : 'none'})`);
}

function hostPressure(s: PolicyState, ev: { source: string; level: string; count: number }, now: number): StepResult {
  const event = `host pressure ${ev.source} ${ev.level}${ev.count > 1 ? ` x${ev.count}` : ''}`;
  const ignore = (reason: string) => result(s, s, 'host-pressure-ignored', event, reason);
  const m = mode(s);
  if (m === 'manual') return ignore(`manual target held by ${s.hold!.owner}`);
  if (m === 'off') return ignore('automatic mode is off');
  if (guestInPressure(s, now)) {
    const left = s.lastGuestPressureAt! + s.params.hysteresisMs - now;
    return ignore(`guest in pressure (${s.lastGuestPressureSource}) for another ${Math.ceil(left / 1000)} s`);
  }
  const rl = s.params.rateLimitMs;
  let steps = Math.max(1, ev.count);
  if (rl > 0) {
    if (s.lastHostStepAt !== null && now - s.lastHostStepAt < rl) return ignore(`rate limit: one step per ${rl} ms`);
    steps = 1; // a burst collapses into one step
  }
  const max = ceilingPages(s);
  if (s.targetPages >= max) return ignore(`balloon at its ceiling ${mib(max)}`);
  const target = Math.min(max, s.targetPages + steps * stepPages(s));
  return result({ ...s, targetPages: target, lastHostStepAt: now }, s, 'host-pressure-inflate', event,
    `guest not in pressure: inflate ${steps > 1 ? `${steps} steps` : 'one step'} of ${mib(stepPages(s))}`);
}

/** Cancel an inflation in progress, else deflate by max(step, extra). */
function guestPressure(s: PolicyState, event: string, source: string, now: number, extraPages: number): StepResult {
  const noted = { ...s, lastGuestPressureAt: now, lastGuestPressureSource: source };
  const m = mode(s);
  if (m !== 'auto') {
    return result(noted, s, 'guest-pressure-ignored', event,
      m === 'manual' ? `manual target held by ${s.hold!.owner}; hysteresis still starts` : 'automatic mode is off; hysteresis still starts');
  }
  if (s.targetPages > s.balloonPages) {
    return result({ ...noted, targetPages: s.balloonPages }, s, 'guest-pressure-cancel', event,
      `inflation in progress (balloon ${mib(s.balloonPages)} < target ${mib(s.targetPages)}): cancelled at the current size`);
  }
  const by = Math.max(stepPages(s), extraPages);
  const target = Math.max(0, s.targetPages - by); // never below zero
  return result({ ...noted, targetPages: target }, s, 'guest-pressure-deflate', event,
    target === s.targetPages ? 'balloon already empty' : `deflate ${mib(s.targetPages - target)}`);
}

/** Guest pressure read from the stats queue (stock guests have no message queue). */
export function statsPressure(p: PolicyParams, prev: GuestStats | null, cur: GuestStats): { why: string; shortfallBytes: number } | null {
  const t = p.stats;
  const total = cur.total_memory;
  const avail = cur.available_memory;
  if (t.availablePercent > 0 && total && avail !== undefined && avail < (total * t.availablePercent) / 100) {
    const want = (total * t.availablePercent) / 100;
    return { why: `MemAvailable ${Math.round(avail / 2 ** 20)} MiB < ${t.availablePercent}% of ${Math.round(total / 2 ** 20)} MiB`, shortfallBytes: want - avail };
  }
  if (!prev) return null;
  const delta = (k: keyof GuestStats) => (cur[k] !== undefined && prev[k] !== undefined ? cur[k]! - prev[k]! : 0);
  if (t.swapInBytes > 0 && delta('swap_in') >= t.swapInBytes) return { why: `swap-in +${Math.round(delta('swap_in') / 1024)} KiB`, shortfallBytes: 0 };
  if (t.majorFaults > 0 && delta('major_faults') >= t.majorFaults) return { why: `major faults +${delta('major_faults')}`, shortfallBytes: 0 };
  const stalls = delta('alloc_stalls') + delta('direct_reclaims');
  if (t.stalls > 0 && stalls >= t.stalls) return { why: `allocation stalls / direct reclaim +${stalls}`, shortfallBytes: 0 };
  return null;
}

function statsSample(s: PolicyState, stats: GuestStats, now: number): StepResult {
  const pressure = statsPressure(s.params, s.prevStats, stats);
  const next = { ...s, prevStats: stats };
  if (!pressure) return quiet(next);
  return guestPressure(next, `guest pressure (stats: ${pressure.why})`, 'stats', now, Math.ceil(pressure.shortfallBytes / PAGE));
}
