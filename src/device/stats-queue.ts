// The stats queue protocol: the driver primes one buffer; the device keeps it
// and returns it (push + notify) whenever it wants a fresh sample; the driver
// refills it and adds it again. The interval timers of all devices share
// one grid (timer-grid.ts): an idle daemon wakes per grid point, not per device.
import { sharedGrid, type TimerGrid } from './timer-grid.js';
import type { DeviceTransport, Element } from './transport.js';

export class StatsBuffer {
  private held: Element | null = null;
  private cancelTimer: (() => void) | null = null;

  constructor(private readonly intervalMs: number, private readonly grid: TimerGrid = sharedGrid) {}

  get holding(): boolean {
    return this.held !== null;
  }

  /**
   * Keep a newly filled buffer. A buffer already held goes back unfilled
   * (a driver has only one in flight; a second one is not ours to keep).
   * Returns true when something was pushed and needs a notify.
   */
  keep(conn: DeviceTransport, qidx: number, elem: Element): boolean {
    const old = this.held;
    this.held = elem;
    if (old) {
      conn.push(qidx, old, 0);
      return true;
    }
    this.arm(conn, qidx);
    return false;
  }

  /** Return the buffer now: the guest refills it with current stats. */
  request(conn: DeviceTransport, qidx: number): boolean {
    this.cancel();
    const elem = this.held;
    if (!elem || !conn.open) return false;
    this.held = null;
    conn.push(qidx, elem, 0);
    conn.notify(qidx);
    return true;
  }

  /** The queue or the connection is gone: free the element. */
  release(conn: DeviceTransport | null): void {
    this.cancel();
    if (this.held && conn) conn.drop(this.held);
    this.held = null;
  }

  private arm(conn: DeviceTransport, qidx: number): void {
    if (this.cancelTimer || this.intervalMs <= 0) return;
    this.cancelTimer = this.grid.after(this.intervalMs, () => {
      this.cancelTimer = null;
      this.request(conn, qidx);
    });
  }

  private cancel(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
  }
}
