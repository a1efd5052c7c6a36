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
