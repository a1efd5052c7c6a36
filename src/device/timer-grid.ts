// Timers on a shared grid. With one timer per device, 100 devices asking
// for stats every 5 s wake the daemon 20 times a second; an idle daemon's
// CPU is mostly those wake-ups, not the work. Deadlines here are rounded to
// the nearest point of a grid and every timer due at the same point fires
// from one setTimeout, so the devices' requests come in a few bursts per
// interval instead.

/** The clock and timers a grid runs on (injectable for tests). */
export interface GridClock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: GridClock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/** Largest grid step: requests at a 5 s interval fall on at most 5 points. */
export const MAX_GRID_STEP_MS = 1000;

/**
 * The grid step for a delay: a fifth of it, at most MAX_GRID_STEP_MS, at
 * least 1 ms. A timer then fires within ±10 % of its delay.
 */
export function gridStep(delayMs: number): number {
  return Math.max(1, Math.min(MAX_GRID_STEP_MS, Math.floor(delayMs / 5)));
}

/**
 * When a timer set at `now` for `delayMs` fires: the grid point nearest to
 * now + delayMs. Nearest, not the next one up: a device that re-arms a few
 * ms after each firing keeps its period instead of drifting a step late
 * every time. Never at or before `now`.
 */
export function gridDue(now: number, delayMs: number, step = gridStep(delayMs)): number {
  const due = Math.round((now + delayMs) / step) * step;
  return due > now ? due : due + step * (Math.floor((now - due) / step) + 1);
}

interface Slot {
  handle: unknown;
  fns: Set<() => void>;
}

export class TimerGrid {
  /** Pending timers by due time (ms on the clock). */
  private readonly slots = new Map<number, Slot>();

  constructor(private readonly clock: GridClock = realClock) {}

  /** Run `fn` about `delayMs` from now (see gridDue); returns a cancel function. */
  after(delayMs: number, fn: () => void): () => void {
    const now = this.clock.now();
    const due = gridDue(now, delayMs);
    let slot = this.slots.get(due);
    if (!slot) {
      const s: Slot = { handle: null, fns: new Set() };
      s.handle = this.clock.setTimeout(() => this.fire(due, s), Math.max(0, due - now));
      this.slots.set(due, s);
      slot = s;
    }
    // A wrapper per call: the same fn armed twice is two timers, each cancelled alone.
    const entry = () => fn();
    const owner = slot;
    owner.fns.add(entry);
    return () => {
      if (!owner.fns.delete(entry) || owner.fns.size > 0) return;
      this.clock.clearTimeout(owner.handle);
      if (this.slots.get(due) === owner) this.slots.delete(due);
    };
  }

  /** Timers pending (tests). */
  get pending(): number {
    let n = 0;
    for (const s of this.slots.values()) n += s.fns.size;
    return n;
  }

  /** setTimeouts pending: one per grid point in use. */
  get pendingSlots(): number {
    return this.slots.size;
  }

  private fire(due: number, slot: Slot): void {
    if (this.slots.get(due) === slot) this.slots.delete(due);
    let failure: { err: unknown } | null = null;
    // One device's failing callback must not cost the others their turn.
    for (const fn of slot.fns) {
      try {
        fn();
      } catch (err) {
        failure ??= { err };
      }
    }
    slot.fns.clear();
    if (failure) throw failure.err;
  }
}

/** The process's grid: every device of a host daemon shares it. */
export const sharedGrid = new TimerGrid();
