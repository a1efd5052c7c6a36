// Shared scaffolding for the policy tests: sizes in MiB, event builders and a
// runner that feeds timed events through step() and collects the actions.
import { DEFAULT_PARAMS, mergeParams, PolicyParams, SEED_FIXED_PARAMS, SEED_PARAMS } from '../../src/policy/params.js';
import { initialState, step } from '../../src/policy/step.js';
import type { Action, Decision, GuestPressureSource, PolicyEvent, PolicyState } from '../../src/policy/types.js';

export const MiB = 2 ** 20;
/** MiB -> 4 KiB pages */
export const P = (mib: number): number => (mib * MiB) / 4096;
export const STEP = P(32);
export const H = DEFAULT_PARAMS.hysteresisMs;

export { DEFAULT_PARAMS, SEED_FIXED_PARAMS, SEED_PARAMS };
export const params = (update: Record<string, unknown>, base: PolicyParams = SEED_PARAMS): PolicyParams => mergeParams(base, update);

export const host = (count?: number): PolicyEvent => ({ type: 'host-pressure', source: 'vmpressure', level: 'low', ...(count ? { count } : {}) });
export const guest = (source: GuestPressureSource = 'message', count?: number): PolicyEvent => ({ type: 'guest-pressure', source, ...(count ? { count } : {}) });
export const size = (pages: number): PolicyEvent => ({ type: 'balloon-size', pages, from: 'queues' });
export const manual = (pages: number, owner = 'ops'): PolicyEvent => ({ type: 'manual-target', pages, owner });

/** A state with guest RAM known (4 GiB unless said), balloon and target as given. */
export function ready(p: PolicyParams = SEED_PARAMS, opts: { ramMiB?: number; target?: number; balloon?: number } = {}): PolicyState {
  const s = step(initialState(p), { type: 'guest-ram', bytes: (opts.ramMiB ?? 4096) * MiB }, 0).state;
  return { ...s, targetPages: opts.target ?? 0, balloonPages: opts.balloon ?? opts.target ?? 0 };
}

export interface Run {
  state: PolicyState;
  actions: Action[];
  decisions: Decision[];
  /** num_pages pushed, in order. */
  pushed: number[];
}

export function run(state: PolicyState, events: Array<[number, PolicyEvent]>): Run {
  const actions: Action[] = [];
  for (const [t, ev] of events) {
    const r = step(state, ev, t);
    state = r.state;
    actions.push(...r.actions);
  }
  return {
    state, actions,
    decisions: actions.map((a) => a.decision),
    pushed: actions.flatMap((a) => (a.type === 'set-target' ? [a.pages] : [])),
  };
}

/** `n` events of one kind at times start, start + every, ... */
export const series = (n: number, ev: PolicyEvent, every = 1, start = 0): Array<[number, PolicyEvent]> =>
  Array.from({ length: n }, (_, i) => [start + i * every, ev] as [number, PolicyEvent]);
