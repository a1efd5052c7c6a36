// The balloon device's options and events (what the controller and tests see).
import type { Logger } from '../log.js';
import type { QueueRole } from '../virtio/constants.js';
import type { FeatureChoice } from '../virtio/features.js';
import type { GuestStats } from './stats.js';

export interface BalloonDeviceOptions {
  features?: FeatureChoice;
  /** How often to ask the guest for fresh stats; 0 disables. */
  statsIntervalMs?: number;
  /** Elements handled per queue before yielding to other fds. */
  maxElementsPerTurn?: number;
  /**
   * 'deferred' (default): with MUST_TELL_HOST, acknowledge inflations at once
   * and discard on the shim's thread; 'immediate': discard before every
   * acknowledgement, on the event loop.
   */
  discard?: 'deferred' | 'immediate';
  /**
   * shmem RAM with transparent huge pages: 'any' (default) discards every
   * ballooned 4 KiB page, splitting a huge page covered in part; 'whole'
   * treats it like hugetlbfs, discarding only whole PMD-sized pages.
   */
  shmemHugeDiscard?: 'any' | 'whole';
  log: Logger;
}

export interface StatsSample {
  stats: GuestStats;
  /** performance.now() when the sample arrived. */
  at: number;
  /** Wall-clock time of the sample, for operators. */
  wallTime: string;
}

export type GuestPressureSource = 'message' | 'deflate-on-oom';

export interface DeviceEvents {
  /** A frontend took the device after another one: the last guest's balloon is not this one's until it says so. */
  attached: [];
  connected: [info: { features: bigint; roles: QueueRole[] }];
  disconnected: [reason: string];
  inflated: [pages: number];
  deflated: [pages: number, requested: boolean];
  reported: [pages: number];
  stats: [sample: StatsSample];
  guestPressure: [info: { source: GuestPressureSource; count: number }];
  actual: [pages: number];
  /** Guest RAM from the memory table (bytes), when it changes. */
  memory: [bytes: number];
  /** A new connection reported a non-zero `actual` before starting its queues: the same guest, reconnected. */
  recovered: [pages: number];
  /** A new connection started its queues without reporting a balloon: a new (or reset) guest. */
  newGuest: [];
  /** The balloon count changed outside inflate/deflate (reset, reconnect verdict). */
  balloonChanged: [pages: number];
  /** The frontend wrote num_pages (QMP `balloon` through our QEMU device). */
  frontendTarget: [pages: number];
  /** An incoming migration brought the source's num_pages (SET_CONFIG of type MIGRATION). */
  incomingTarget: [pages: number];
  /** An incoming migration brought the source daemon's state (before its num_pages): the hold and the hysteresis. */
  incomingState: [state: { targetPages: number; hold: { owner: string } | null; guestPressureAgeMs: number | null }];
}

/** What the policy adds to the state a migration carries (device-state.ts). */
export interface PolicyHandover {
  hold: { owner: string } | null;
  guestPressureAgeMs: number | null;
}
