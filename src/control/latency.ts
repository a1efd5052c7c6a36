// Host pressure to CONFIG_CHANGE latency: from the first line of JavaScript
// that handled a pressure eventfd wake-up (vmpressure or PSI) to the return
// of the VHOST_USER_BACKEND_CONFIG_CHANGE_MSG send that tells QEMU about the
// target that event caused. Only events that changed the target while QEMU
// was connected count; the kernel-to-libuv wake-up before the first line is
// not in it (JavaScript cannot see it).
export const PRESSURE_TO_CONFIG_CHANGE_METRIC = 'vub_host_pressure_to_config_change_seconds';

/** Events whose exact percentiles status reports (the Summary keeps its own estimate of all of them). */
export const STATUS_WINDOW = 1024;

export interface LatencySnapshot {
  /** Events measured since the daemon started. */
  count: number;
  /** Nearest-rank percentiles of the last STATUS_WINDOW events; null before the first. */
  p50Seconds: number | null;
  p99Seconds: number | null;
}

/** The q-quantile (0 < q <= 1) of ascending `sorted` by nearest rank; NaN when empty. */
export function percentile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil(q * sorted.length)));
  return sorted[rank - 1] as number;
}

export class PressureLatency {
  /** `sink` also gets every observation (the daemon's labelled Summary, metrics.ts). */
  constructor(private readonly sink: (seconds: number) => void = () => undefined) {}

  private readonly recent = new Float64Array(STATUS_WINDOW);
  private n = 0;

  /** One event woken at `wokeAt` (process.hrtime.bigint()) whose target change was just sent; returns seconds. */
  observeSince(wokeAt: bigint, now: bigint = process.hrtime.bigint()): number {
    const seconds = Number(now - wokeAt) / 1e9;
    this.sink(seconds);
    this.recent[this.n % STATUS_WINDOW] = seconds;
    this.n++;
    return seconds;
  }

  get count(): number {
    return this.n;
  }

  snapshot(): LatencySnapshot {
    const kept = Math.min(this.n, STATUS_WINDOW);
    if (kept === 0) return { count: 0, p50Seconds: null, p99Seconds: null };
    const sorted = Array.from(this.recent.subarray(0, kept)).sort((a, b) => a - b);
    return { count: this.n, p50Seconds: percentile(sorted, 0.5), p99Seconds: percentile(sorted, 0.99) };
  }
}
