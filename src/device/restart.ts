// What pages acknowledged but not yet discarded (and the balloon count)
// become when the queues stop and start again, or the frontend reconnects.
// With MUST_TELL_HOST a ballooned page is the host's until the guest
// deflates it, but only for the guest that ballooned it: after a device
// reset (a reboot) every page is the guest's again. Discarding one then
// loses guest data, so the rules lean to keeping pages whenever unsure.
//
// - Queue stop: a VM pause or a device reset; QEMU sends GET_VRING_BASE
//   either way. The shim suspends the discard thread before the reply.
// - Queue start: a pause resumes with the ring index it stopped at; a reset
//   starts from index 0 (virtio_reset), and our QEMU device forwards
//   actual = 0 when the guest had a balloon (vhost_user_balloon_reset).
// - Reconnect: QEMU re-sends a non-zero `actual` before it starts the
//   queues when it reconnects to the running guest. A new or reset guest
//   sends nothing.
import type { PfnRange } from './pfn.js';

/** How the inflate queue stopped. */
export interface QueueStop {
  /** Its avail index at GET_VRING_BASE. */
  base: number;
  /** actual = 0 came after the stop (our QEMU device's reset). */
  resetSeen: boolean;
}

export type RestartVerdict = 'resume' | 'reset';

/**
 * The inflate queue starts again at `startBase`: was it a pause? An index of
 * 0 at the stop could be either (or 65536 buffers later): reset, to be safe.
 */
export function restartVerdict(stop: QueueStop, startBase: number): RestartVerdict {
  if (stop.resetSeen || stop.base === 0 || startBase !== stop.base) return 'reset';
  return 'resume';
}

export type ReconnectVerdict = 'same-guest' | 'new-guest';

/** A new frontend's first queue start: `reportedActual` is the last actual it wrote before (null: none). */
export function reconnectVerdict(reportedActual: number | null): ReconnectVerdict {
  return reportedActual !== null && reportedActual > 0 ? 'same-guest' : 'new-guest';
}

/** What the device does about the balloon and the pages it has not discarded yet. */
export type ContinuityAction =
  /** A pause ended: the suspended discards go on. */
  | { kind: 'resume' }
  /** A reset: every page is the guest's again; forget the balloon and what was pending. */
  | { kind: 'reset'; why: string }
  /** The same guest reconnected: its balloon is `actual`; `carried` pages may be discarded now. */
  | { kind: 'same-guest'; actual: number; carried: PfnRange[] }
  /** A new guest: nothing of the last connection's balloon is its. */
  | { kind: 'new-guest'; carried: PfnRange[] };

/**
 * The rules above as one state machine, per device. The device tells it
 * what the frontend did; it answers with what to do.
 */
export class GuestContinuity {
  /** The inflate queue stopped and has not started again: pause or reset? */
  private stopped: QueueStop | null = null;
  /** This connection has started no queue yet: is it the guest of the last one? */
  private awaitingFirstStart = false;
  /** `actual` the frontend wrote before its first queue start. */
  private reportedActual: number | null = null;
  /** Pages acknowledged on an earlier connection and not discarded yet. */
  private carried: PfnRange[] = [];

  /** Before the first queue start the balloon is whatever the frontend reported (null: not yet known). */
  get provisionalBalloon(): number | null {
    return this.awaitingFirstStart ? this.reportedActual ?? 0 : null;
  }

  get carriedPages(): number {
    return this.carried.reduce((n, r) => n + r.count, 0);
  }

  /** A new frontend connection. */
  attached(): void {
    this.stopped = null;
    this.awaitingFirstStart = true;
    this.reportedActual = null;
  }

  /** The connection is going: what it had not discarded waits for the next one. */
  closing(pending: PfnRange[]): void {
    for (const r of pending) this.carried.push(r);
    this.stopped = null;
  }

  /** The frontend wrote `actual`: 'reported' while it counts as the reconnect report, or what to do. */
  actualWritten(actual: number): ContinuityAction | 'reported' | null {
    if (this.awaitingFirstStart) {
      this.reportedActual = actual;
      return 'reported';
    }
    if (this.stopped && actual === 0 && !this.stopped.resetSeen) {
      // Our QEMU device's reset handler: the guest's balloon is empty.
      this.stopped.resetSeen = true;
      this.carried = [];
      return { kind: 'reset', why: 'the device was reset (actual = 0 after the queues stopped)' };
    }
    return null;
  }

  queueStopped(isInflate: boolean, base: number): void {
    if (isInflate) this.stopped = { base, resetSeen: this.stopped?.resetSeen ?? false };
  }

  /** A queue started; `base` is its avail index now. */
  queueStarted(isInflate: boolean, base: number): ContinuityAction[] {
    const out: ContinuityAction[] = [];
    if (this.awaitingFirstStart) {
      this.awaitingFirstStart = false;
      const carried = this.carried;
      this.carried = [];
      out.push(reconnectVerdict(this.reportedActual) === 'same-guest'
        ? { kind: 'same-guest', actual: this.reportedActual!, carried }
        : { kind: 'new-guest', carried });
    }
    if (isInflate && this.stopped) {
      const stop = this.stopped;
      this.stopped = null;
      if (restartVerdict(stop, base) === 'resume') out.push({ kind: 'resume' });
      else if (!stop.resetSeen) out.push({ kind: 'reset', why: 'the device was reset (the inflate queue restarted from another index)' });
    }
    return out;
  }
}
