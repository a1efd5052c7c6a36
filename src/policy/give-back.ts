// Guest pressure under the host policy: give the guest what it is short of,
// at once. The seed gives back one step (32 MiB) per signal, so a guest that
// needs 500 MiB back waits for 16 signals (16 s with the patched driver's
// 1 s message interval, 80 s with stats every 5 s) while it pages. Here one
// signal deflates by the guest's shortfall against its reserve; the step is
// only the least a signal gives back. Pure: the caller supplies MemAvailable
// as best known now.
import type { GuestPressureSource } from './types.js';

export interface GiveBackInput {
  targetPages: number;
  /** The balloon now (pages counted from the queues). */
  balloonPages: number;
  stepPages: number;
  /** The guest's reserve: what it keeps available whatever the host needs. */
  reservePages: number;
  /**
   * MemAvailable expected once the balloon is at min(target, balloon): the
   * last stats sample corrected by what the balloon moved since. null: no stats.
   */
  availablePages: number | null;
  source: GuestPressureSource;
}

export interface GiveBack {
  targetPages: number;
  /** Inflation asked for and not done, dropped (target was above the balloon). */
  cancelledPages: number;
  /** Pages the balloon gives back beyond the cancellation. */
  deflatedPages: number;
  /** How far the guest is below its reserve (deflate-on-OOM: the whole reserve). */
  shortfallPages: number;
}

/**
 * - an inflation in progress is cancelled (target = balloon), as in the seed;
 * - then the balloon shrinks by the shortfall: reserve - MemAvailable, or the
 *   whole reserve after deflate-on-OOM (the guest had nothing left);
 * - with no inflation to cancel, at least one step: the guest said it is
 *   short even when its stats do not show it (swap-in, stalls, a message);
 * - never below 0.
 */
export function giveBack(i: GiveBackInput): GiveBack {
  const shortfallPages = i.source === 'deflate-on-oom'
    ? i.reservePages
    : i.availablePages === null ? 0 : Math.max(0, i.reservePages - i.availablePages);
  let target = i.targetPages;
  let cancelledPages = 0;
  if (target > i.balloonPages) {
    cancelledPages = target - i.balloonPages;
    target = i.balloonPages;
  }
  const want = cancelledPages > 0 ? shortfallPages : Math.max(i.stepPages, shortfallPages);
  const next = Math.max(0, target - want);
  return { targetPages: next, cancelledPages, deflatedPages: target - next, shortfallPages };
}
