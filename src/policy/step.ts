// The automatic ballooning policy as a pure function: step(state, event, now)
// returns the next state and the actions to take. No I/O, no timers; `now` is
// a monotonic clock in milliseconds supplied by the caller.
//
// The seed design's rules:
// - host pressure while the guest is not in pressure: target += step
//   (events accumulate: 10 events = 10 steps);
// - guest pressure: remember when; if an inflation is in progress (target
//   above the current balloon) cancel it (target = balloon), else deflate
//   one step;
// - for `hysteresisMs` after each guest-pressure signal the guest is in
//   pressure and host events are ignored. The period is half-open: a signal
//   at t covers [t, t + hysteresisMs); a host event at exactly
//   t + hysteresisMs inflates again.
// Its defects fixed: no unsigned underflow (clamped at 0), the cancellation
// is an action like any other, and time is monotonic (a `now` that goes
// backwards is read as the latest time seen).
// Beyond the seed: floor and ceiling, rate limit and wait-for-guest on host
// steps, manual ownership, runtime on/off, stats-derived guest pressure.
// docs/policy.md explains each with its default.
import type { GuestStats } from '../device/stats.js';
import type { PolicyParams } from './params.js';
import { mibText } from '../units.js';
import { giveBack } from './give-back.js';
import { reserveOf } from './host.js';
import { baselineUsable, statsPressure } from './stats.js';
import {
  Action, Cause, Decision, GuestPressureSource, MAX_PAGES, Mode, PAGE, PolicyEvent, PolicyState, Rule, StepResult,
} from './types.js';

export { PAGE, MAX_PAGES } from './types.js';
export type { Action, Cause, Decision, GuestPressureSource, Mode, PolicyEvent, PolicyState, Rule, StepResult } from './types.js';
export { statsPressure } from './stats.js';

/**
 * The guest counts as having reached a target within this many pages: one
 * Linux inflate buffer (256 PFNs). Guests with pages larger than 4 KiB
 * round num_pages down to whole pages.
 */
export const GUEST_SLACK_PAGES = 256;

export function initialState(params: PolicyParams, autoEnabled = params.enabled): PolicyState {
  return {
    params: { ...params, enabled: autoEnabled }, targetPages: 0, balloonPages: 0, guestRamBytes: 0, autoEnabled, hold: null,
    lastGuestPressureAt: null, lastGuestPressureSource: null, lastHostStepAt: null, prevStats: null, prevStatsAt: null, prevStatsBalloonPages: 0, guestUseBps: 0,
    clockMs: Number.NEGATIVE_INFINITY, previousGuest: null,
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
  let max = MAX_PAGES;
  if (s.guestRamBytes > 0) max = Math.min(max, Math.max(0, Math.floor((s.guestRamBytes - p.floorBytes) / PAGE)));
  if (p.maxBalloonBytes > 0) max = Math.min(max, Math.floor(p.maxBalloonBytes / PAGE));
  return max;
}

export const stepPages = (p: PolicyParams): number => Math.max(1, Math.floor(p.stepBytes / PAGE));
const mib = (pages: number) => mibText(pages * PAGE);
const pagesOf = (n: number) => (Number.isFinite(n) ? Math.min(MAX_PAGES, Math.max(0, Math.floor(n))) : 0);
const times = (count: number | undefined) => (count === undefined || !Number.isFinite(count) ? 1 : Math.max(1, Math.floor(count)));

function decide(state: PolicyState, old: PolicyState, now: number, rule: Rule, cause: Cause | null, event: string, reason: string): StepResult {
  const decision: Decision = {
    at: now, rule, cause, ignored: rule.endsWith('-ignored'), event,
    oldTargetPages: old.targetPages, newTargetPages: state.targetPages, reason,
  };
  const changed = state.targetPages !== old.targetPages;
  const action: Action = changed ? { type: 'set-target', pages: state.targetPages, decision } : { type: 'record', decision };
  return { state, actions: [action], setTarget: changed ? state.targetPages : null, decision };
}

const quiet = (state: PolicyState): StepResult => ({ state, actions: [], setTarget: null, decision: null });

export function step(prev: PolicyState, ev: PolicyEvent, nowIn: number): StepResult {
  const now = Number.isFinite(nowIn) ? Math.max(nowIn, prev.clockMs) : prev.clockMs;
  const s = now === prev.clockMs ? prev : { ...prev, clockMs: now };
  switch (ev.type) {
    case 'host-pressure':
      // Only the seed steps per host event; the other policies hear host
      // pressure through the host-wide runner (service/policy-runner.ts).
      return s.params.policy === 'seed' ? hostPressure(s, ev, now) : quiet(s);
    case 'host-target':
      return hostTarget(s, ev, now);
    case 'guest-pressure': {
      const n = times(ev.count);
      return guestPressure(s, now, ev.source, n, 0, `guest pressure (${ev.source}${n > 1 ? ` x${n}` : ''})`);
    }
    case 'stats':
      return statsSample(s, ev.stats, now);
    case 'balloon-size':
      return quiet({ ...s, balloonPages: pagesOf(ev.pages) });
    case 'frontend-attached':
      return frontendAttached(s, now);
    case 'recover':
      return recover(s, pagesOf(ev.pages), now);
    case 'new-guest':
      return quiet({ ...s, previousGuest: null, balloonPages: 0 });
    case 'guest-ram':
      return clampTarget({ ...s, guestRamBytes: Math.max(0, ev.bytes) }, s, now, `guest RAM ${mib(ev.bytes / PAGE)}`);
    case 'manual-target': {
      const max = ceilingPages(s);
      const pages = pagesOf(ev.pages);
      const next = { ...s, hold: { owner: ev.owner, since: now }, targetPages: Math.min(pages, max) };
      return decide(next, s, now, 'manual-target', pages > max ? 'ceiling' : null, `manual target ${mib(pages)} by ${ev.owner}`,
        `held by ${ev.owner}: automatic changes suspended until released${pages > max ? `; lowered to the ceiling ${mib(max)}` : ''}`);
    }
    case 'incoming-target': {
      // The source decided it; our own hold, if any, decides here.
      if (s.hold) return decide(s, s, now, 'incoming-target', 'manual-hold', `incoming target ${mib(pagesOf(ev.pages))}`, `held by ${s.hold.owner}: the hold's target stays`);
      const max = ceilingPages(s);
      const pages = pagesOf(ev.pages);
      return decide({ ...s, previousGuest: null, targetPages: Math.min(pages, max) }, s, now, 'incoming-target', pages > max ? 'ceiling' : null,
        `incoming target ${mib(pages)}`, 'the migrated guest keeps its target; automatic mode goes on from it');
    }
    case 'incoming-state': {
      const max = ceilingPages(s);
      const pages = pagesOf(ev.pages);
      const age = ev.guestPressureAgeMs;
      const pressure = age !== null && age < s.params.hysteresisMs
        ? { lastGuestPressureAt: now - age, lastGuestPressureSource: s.lastGuestPressureSource ?? ('message' as const) } : {};
      // A hold set here before the guest arrived wins over the source's.
      if (s.hold) {
        return decide({ ...s, previousGuest: null, ...pressure }, s, now, 'incoming-state', 'manual-hold',
          `incoming state: target ${mib(pages)}${ev.hold ? `, held by ${ev.hold.owner}` : ''}`, `held here by ${s.hold.owner}: this hold's target stays`);
      }
      const next: PolicyState = {
        ...s, previousGuest: null, ...pressure, targetPages: Math.min(pages, max),
        hold: ev.hold ? { owner: ev.hold.owner, since: now } : null,
      };
      const why = ev.hold ? `held by ${ev.hold.owner} on the source: the hold comes along` : 'the migrated guest keeps its target; automatic mode goes on from it';
      return decide(next, s, now, 'incoming-state', pages > max ? 'ceiling' : null,
        `incoming state: target ${mib(pages)}${age !== null ? `, guest pressure ${Math.round(age / 1000)} s ago` : ''}`, why);
    }
    case 'release':
      if (!s.hold) return quiet(s);
      return decide({ ...s, hold: null }, s, now, 'release', null, `release by ${s.hold.owner}`,
        s.autoEnabled ? 'automatic mode decides again from the current target' : 'automatic mode is off: the target stays');
    case 'auto':
      if (ev.enabled === s.autoEnabled) return quiet(s);
      return decide({ ...s, autoEnabled: ev.enabled, params: { ...s.params, enabled: ev.enabled } }, s, now,
        ev.enabled ? 'auto-on' : 'auto-off', null, `automatic mode ${ev.enabled ? 'on' : 'off'}`, autoReason(s, ev.enabled));
    case 'tune':
      return tune(s, ev.params, now);
  }
}

/**
 * A new frontend: nothing of the last guest (target, hold, hysteresis)
 * applies to it unless it proves to be the same guest (recover).
 */
function frontendAttached(s: PolicyState, now: number): StepResult {
  const previousGuest = s.previousGuest ?? {
    targetPages: s.targetPages, hold: s.hold, lastGuestPressureAt: s.lastGuestPressureAt, lastGuestPressureSource: s.lastGuestPressureSource,
  };
  const next: PolicyState = {
    ...s, previousGuest, targetPages: 0, balloonPages: 0, hold: null, lastGuestPressureAt: null, lastGuestPressureSource: null,
    lastHostStepAt: null, prevStats: null, prevStatsAt: null, guestUseBps: 0,
  };
  if (s.targetPages === 0 && !s.hold) return quiet(next);
  return decide(next, s, now, 'new-frontend', null, 'a new frontend attached',
    'target and hold of the last guest set aside until this one reports a balloon of its own');
}

/** The frontend reported `pages` ballooned before it started: the same guest, reconnected. */
function recover(s: PolicyState, pages: number, now: number): StepResult {
  const prev = s.previousGuest;
  const max = ceilingPages(s);
  if (prev?.hold) {
    const next = {
      ...s, previousGuest: null, balloonPages: pages, hold: prev.hold, targetPages: Math.min(prev.targetPages, max),
      lastGuestPressureAt: prev.lastGuestPressureAt, lastGuestPressureSource: prev.lastGuestPressureSource,
    };
    return decide(next, s, now, 'recover', null, `frontend reconnected with ${mib(pages)} ballooned`,
      `the same guest: its manual target ${mib(next.targetPages)} held by ${prev.hold.owner} applies again`);
  }
  const next = {
    ...s, previousGuest: null, balloonPages: pages, targetPages: Math.min(pages, max),
    lastGuestPressureAt: prev?.lastGuestPressureAt ?? s.lastGuestPressureAt, lastGuestPressureSource: prev?.lastGuestPressureSource ?? s.lastGuestPressureSource,
  };
  return decide(next, s, now, 'recover', null, `frontend reconnected with ${mib(pages)} ballooned`,
    'keep the balloon the guest already has instead of assuming it is empty');
}

function autoReason(s: PolicyState, enabled: boolean): string {
  if (s.hold) return `takes effect when ${s.hold.owner} releases the manual target`;
  return enabled ? 'host and guest pressure move the balloon' : 'target frozen until turned on or set by hand (deflate-on-OOM still cancels inflation)';
}

function tune(s: PolicyState, params: PolicyParams, now: number): StepResult {
  const next = { ...s, params, autoEnabled: params.enabled };
  const clamped = clampTarget(next, s, now, 'policy tuned');
  if (clamped.decision) return clamped;
  const onOff = params.enabled !== s.autoEnabled ? `; automatic mode ${params.enabled ? 'on' : 'off'}` : '';
  return decide(next, s, now, 'tune', null, 'policy tuned', `new settings apply from the next event${onOff}`);
}

function clampTarget(next: PolicyState, old: PolicyState, now: number, event: string): StepResult {
  const max = ceilingPages(next);
  if (next.targetPages <= max) return quiet(next);
  const p = next.params;
  return decide({ ...next, targetPages: max }, old, now, 'clamp', 'ceiling', event,
    `target lowered to the ceiling ${mib(max)} (floor ${mib(p.floorBytes / PAGE)}, max balloon ${p.maxBalloonBytes ? mib(p.maxBalloonBytes / PAGE) : 'none'})`);
}

function hostPressure(s: PolicyState, ev: { source: string; level: string; count?: number }, now: number): StepResult {
  const count = times(ev.count);
  const event = `host pressure ${ev.source} ${ev.level}${count > 1 ? ` x${count}` : ''}`;
  const ignore = (cause: Cause, reason: string) => decide(s, s, now, 'host-pressure-ignored', cause, event, reason);
  const p = s.params;
  const m = mode(s);
  if (m === 'manual') return ignore('manual-hold', `manual target held by ${s.hold!.owner}`);
  if (m === 'off') return ignore('auto-off', 'automatic mode is off');
  if (guestInPressure(s, now)) {
    const left = s.lastGuestPressureAt! + p.hysteresisMs - now;
    return ignore('guest-pressure', `guest in pressure (${s.lastGuestPressureSource}) for another ${Math.ceil(left / 1000)} s`);
  }
  if (p.rateLimitMs > 0 && s.lastHostStepAt !== null && now - s.lastHostStepAt < p.rateLimitMs) {
    return ignore('rate-limit', `rate limit: one step per ${p.rateLimitMs} ms, next in ${Math.ceil(p.rateLimitMs - (now - s.lastHostStepAt))} ms`);
  }
  if (s.guestRamBytes === 0 && p.floorBytes > 0) return ignore('guest-ram-unknown', 'guest RAM not known yet: the floor cannot be checked');
  if (p.waitForGuest && s.targetPages - s.balloonPages > GUEST_SLACK_PAGES) {
    return ignore('guest-behind', `guest still inflating: balloon ${mib(s.balloonPages)} of target ${mib(s.targetPages)}`);
  }
  const max = ceilingPages(s);
  if (s.targetPages >= max) return ignore('ceiling', `balloon at its ceiling ${mib(max)}`);
  // The seed steps once per event; with a rate limit a burst is one step.
  const steps = p.rateLimitMs > 0 ? 1 : count;
  const wanted = s.targetPages + steps * stepPages(p);
  const target = Math.min(max, wanted);
  return decide({ ...s, targetPages: target, lastHostStepAt: now }, s, now, 'host-pressure-inflate', wanted > max ? 'ceiling' : null, event,
    `guest not in pressure: inflate ${steps > 1 ? `${steps} steps` : 'one step'} of ${mib(stepPages(p))}${wanted > max ? `, stopped at the ceiling ${mib(max)}` : ''}`);
}

/**
 * The seed's guest-pressure rule, once per signal: cancel an inflation in
 * progress, else deflate max(step, extraPages), never below zero.
 */
function guestPressure(s: PolicyState, now: number, source: GuestPressureSource, count: number, extraPages: number, event: string): StepResult {
  const noted: PolicyState = { ...s, lastGuestPressureAt: now, lastGuestPressureSource: source };
  const until = `in pressure until +${Math.round(s.params.hysteresisMs / 1000)} s`;
  const m = mode(s);
  const policy = s.params.policy;
  if ((policy === 'mom' || policy === 'proxmox') && m === 'auto') {
    // The published algorithms read guest memory each round and nothing else.
    return decide(noted, s, now, 'guest-pressure-ignored', 'baseline', event, `--policy ${policy} has no guest-pressure rule: its next round decides`);
  }
  if (m !== 'auto') {
    const why = m === 'manual' ? `manual target held by ${s.hold!.owner}` : 'automatic mode is off';
    // The guest gave pages back to survive an OOM: asking for them again
    // would fight its OOM handling, whoever owns the target.
    if (source === 'deflate-on-oom' && s.targetPages > s.balloonPages) {
      return decide({ ...noted, targetPages: s.balloonPages }, s, now, 'oom-cancel', m === 'manual' ? 'manual-hold' : 'auto-off', event,
        `${why}, but deflate-on-OOM is honoured: inflation cancelled at the current size ${mib(s.balloonPages)}`);
    }
    return decide(noted, s, now, 'guest-pressure-ignored', m === 'manual' ? 'manual-hold' : 'auto-off', event, `${why}; the guest counts as ${until}`);
  }
  if (policy === 'host') return hostGiveBack(noted, s, now, source, event, until);
  let target = s.targetPages;
  let cancelled = false;
  let deflated = 0;
  for (let i = 0; i < count; i++) {
    if (target > s.balloonPages) {
      target = s.balloonPages;
      cancelled = true;
    } else {
      const next = Math.max(0, target - Math.max(stepPages(s.params), extraPages)); // clamp: never below zero
      deflated += target - next;
      target = next;
      if (target === 0) break;
    }
  }
  const next = { ...noted, targetPages: target };
  if (deflated > 0) {
    return decide(next, s, now, 'guest-pressure-deflate', null, event,
      `${cancelled ? `inflation cancelled at ${mib(s.balloonPages)}, then ` : ''}deflate ${mib(deflated)}; ${until}`);
  }
  if (cancelled) {
    return decide(next, s, now, 'guest-pressure-cancel', null, event,
      `inflation in progress (balloon ${mib(s.balloonPages)} < target ${mib(s.targetPages)}): cancelled at the current size; ${until}`);
  }
  return decide(next, s, now, 'guest-pressure-ignored', 'balloon-empty', event, `nothing ballooned to give back; ${until}`);
}

/**
 * How fast the guest itself is using up MemAvailable: its fall since the last
 * sample, less what the balloon took meanwhile (an inflate lowers it too).
 */
export function guestUseRate(s: Pick<PolicyState, 'prevStats' | 'prevStatsAt' | 'prevStatsBalloonPages' | 'balloonPages'>, stats: GuestStats, now: number): number {
  const before = s.prevStats?.available_memory;
  const after = stats.available_memory;
  if (before === undefined || after === undefined || s.prevStatsAt === null || now <= s.prevStatsAt) return 0;
  const byBalloon = (s.balloonPages - s.prevStatsBalloonPages) * PAGE;
  return Math.max(0, ((before - after - byBalloon) * 1000) / (now - s.prevStatsAt));
}

function statsSample(s: PolicyState, stats: GuestStats, now: number): StepResult {
  const prev = baselineUsable(s.params, s.prevStatsAt, now) ? s.prevStats : null;
  let pressure = statsPressure(s.params, prev, stats);
  const next = { ...s, prevStats: stats, prevStatsAt: now, prevStatsBalloonPages: s.balloonPages, guestUseBps: guestUseRate(s, stats, now) };
  if (s.params.policy === 'host' && stats.available_memory !== undefined) {
    // The host policy keeps each guest's reserve available: below it, the guest is short.
    const reserve = reserveOf(s.guestRamBytes || stats.total_memory || 0, s.params.reserveBytes);
    if (stats.available_memory < reserve) {
      const why = `MemAvailable ${mibText(stats.available_memory)} < reserve ${mibText(reserve)}`;
      pressure = { why: pressure ? `${pressure.why}; ${why}` : why, shortfallBytes: Math.max(pressure?.shortfallBytes ?? 0, reserve - stats.available_memory) };
    }
  }
  if (!pressure) return quiet(next);
  return guestPressure(next, now, 'stats', 1, Math.ceil(pressure.shortfallBytes / PAGE), `guest pressure (stats: ${pressure.why})`);
}

/** The host policy's answer to guest pressure: cancel, then give back the guest's shortfall at once (give-back.ts). */
function hostGiveBack(noted: PolicyState, s: PolicyState, now: number, source: GuestPressureSource, event: string, until: string): StepResult {
  const afterCancel = Math.min(s.targetPages, s.balloonPages);
  const stats = s.prevStats;
  const avail = stats?.available_memory;
  // The sample saw the balloon at prevStatsBalloonPages; what moved since comes back (or went) too.
  const availablePages = avail === undefined ? null : Math.max(0, Math.floor(avail / PAGE) + s.prevStatsBalloonPages - afterCancel);
  const reservePages = Math.ceil(reserveOf(s.guestRamBytes || stats?.total_memory || 0, s.params.reserveBytes) / PAGE);
  const g = giveBack({ targetPages: s.targetPages, balloonPages: s.balloonPages, stepPages: stepPages(s.params), reservePages, availablePages, source });
  const next = { ...noted, targetPages: g.targetPages };
  const short = g.shortfallPages > 0 ? `shortfall ${mib(g.shortfallPages)} against its reserve ${mib(reservePages)}` : `no shortfall known${availablePages === null ? ' (no stats)' : ''}: one step`;
  if (g.deflatedPages > 0) {
    return decide(next, s, now, 'guest-pressure-deflate', null, event,
      `${g.cancelledPages ? `inflation cancelled at ${mib(s.balloonPages)}, then ` : ''}deflate ${mib(g.deflatedPages)} at once (${short}); ${until}`);
  }
  if (g.cancelledPages) {
    return decide(next, s, now, 'guest-pressure-cancel', null, event,
      `inflation in progress (balloon ${mib(s.balloonPages)} < target ${mib(s.targetPages)}): cancelled at the current size; ${until}`);
  }
  return decide(next, s, now, 'guest-pressure-ignored', 'balloon-empty', event, `nothing ballooned to give back; ${until}`);
}

/**
 * A target from the host-wide runner. Manual holds and auto off win; the
 * host policy does not inflate a guest in pressure (hysteresis; the runner
 * leaves such guests out, this catches a race); the baselines have no such
 * rule. Always within the ceiling.
 */
function hostTarget(s: PolicyState, ev: Extract<PolicyEvent, { type: 'host-target' }>, now: number): StepResult {
  const host = ev.host;
  const withHost = (r: StepResult): StepResult => {
    if (!host || !r.decision) return r;
    const decision = { ...r.decision, host };
    return { ...r, decision, actions: r.actions.map((a) => ({ ...a, decision })) };
  };
  const ignore = (cause: Cause, reason: string) => withHost(decide(s, s, now, 'host-policy-ignored', cause, ev.event, reason));
  const m = mode(s);
  if (m === 'manual') return ignore('manual-hold', `manual target held by ${s.hold!.owner}`);
  if (m === 'off') return ignore('auto-off', 'automatic mode is off');
  const wanted = pagesOf(ev.pages);
  if (wanted > s.targetPages) {
    if (s.params.policy === 'host' && guestInPressure(s, now)) {
      const left = s.lastGuestPressureAt! + s.params.hysteresisMs - now;
      return ignore('guest-pressure', `guest in pressure (${s.lastGuestPressureSource}) for another ${Math.ceil(left / 1000)} s`);
    }
    if (s.guestRamBytes === 0) return ignore('guest-ram-unknown', 'guest RAM not known yet: the floor cannot be checked');
  }
  const max = ceilingPages(s);
  const target = Math.min(max, wanted);
  if (target === s.targetPages) return wanted > max ? ignore('ceiling', `balloon at its ceiling ${mib(max)}`) : quiet(s);
  const rule = target > s.targetPages ? 'host-policy-inflate' : 'host-policy-deflate';
  return withHost(decide({ ...s, targetPages: target, lastHostStepAt: now }, s, now, rule, wanted > max ? 'ceiling' : null, ev.event,
    `${ev.reason}${wanted > max ? `; stopped at the ceiling ${mib(max)}` : ''}`));
}
