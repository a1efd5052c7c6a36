// Guest pressure read from the stats virtqueue. Stock guest kernels have no
// message queue: they show pressure only through these numbers (and through
// deflate-on-OOM). Levels (MemAvailable) are judged on the sample alone;
// counters (swap-in, major faults, stalls, reclaim, OOM kills) by their growth
// since the previous sample.
import type { GuestStats } from '../device/stats.js';
import type { PolicyParams } from './params.js';
import { mibText } from '../units.js';

export interface StatsPressure {
  /** Every threshold crossed, in words ("swap-in +8192 KiB; major faults +4990"). */
  why: string;
  /** How far MemAvailable is below its threshold (bytes); 0 for counter signals. */
  shortfallBytes: number;
}

const mib = mibText;

/**
 * Growth of a counter between two samples; 0 when either sample lacks it or
 * it went down (a rebooted guest restarts its counters).
 */
function delta(prev: GuestStats, cur: GuestStats, key: keyof GuestStats): number {
  const a = prev[key];
  const b = cur[key];
  if (a === undefined || b === undefined || b < a) return 0;
  return b - a;
}

/** Is the baseline usable for deltas? */
export function baselineUsable(p: PolicyParams, prevAt: number | null, now: number): boolean {
  if (prevAt === null) return false;
  return p.stats.maxSampleGapMs === 0 || now - prevAt <= p.stats.maxSampleGapMs;
}

/**
 * The guest-pressure signals in `cur`, or null. `prev` is the previous sample
 * (null: none, or too old to compare with).
 */
export function statsPressure(p: PolicyParams, prev: GuestStats | null, cur: GuestStats): StatsPressure | null {
  const t = p.stats;
  const why: string[] = [];
  let shortfallBytes = 0;

  const avail = cur.available_memory;
  if (avail !== undefined) {
    const total = cur.total_memory;
    const byPercent = t.availablePercent > 0 && total ? (total * t.availablePercent) / 100 : 0;
    const threshold = Math.max(byPercent, t.availableBytes);
    if (threshold > 0 && avail < threshold) {
      shortfallBytes = threshold - avail;
      why.push(`MemAvailable ${mib(avail)} < ${byPercent >= t.availableBytes ? `${t.availablePercent}% of ${mib(total!)}` : mib(t.availableBytes)}`);
    }
  }

  if (prev) {
    const oom = delta(prev, cur, 'oom_kills');
    if (t.oomKills > 0 && oom >= t.oomKills) why.push(`OOM kills +${oom}`);
    const swapIn = delta(prev, cur, 'swap_in');
    if (t.swapInBytes > 0 && swapIn >= t.swapInBytes) why.push(`swap-in +${Math.round(swapIn / 1024)} KiB`);
    const majflt = delta(prev, cur, 'major_faults');
    if (t.majorFaults > 0 && majflt >= t.majorFaults) why.push(`major faults +${majflt}`);
    const stalls = delta(prev, cur, 'alloc_stalls');
    if (t.stalls > 0 && stalls >= t.stalls) why.push(`allocation stalls +${stalls}`);
    const direct = delta(prev, cur, 'direct_reclaims');
    if (t.directReclaimBytes > 0 && direct >= t.directReclaimBytes) why.push(`direct reclaim +${mib(direct)}`);
  }

  return why.length ? { why: why.join('; '), shortfallBytes } : null;
}
