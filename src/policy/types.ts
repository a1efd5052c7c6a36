// The policy's vocabulary: state, events in, actions out. Sizes in the state
// are 4 KiB pages (virtio-balloon's unit whatever the guest page size);
// times are the caller's monotonic clock in milliseconds.
import type { GuestStats } from '../device/stats.js';
import type { PolicyParams } from './params.js';

/** virtio-balloon page: num_pages and actual count 4 KiB units. */
export { PAGE } from '../units.js';
/** num_pages is a le32. */
export const MAX_PAGES = 0xffffffff;

export type Mode = 'auto' | 'manual' | 'off';
export type GuestPressureSource = 'message' | 'stats' | 'deflate-on-oom';

export interface PolicyState {
  params: PolicyParams;
  /** num_pages we ask for. */
  targetPages: number;
  /** Current balloon size (pages counted from the queues, or the guest's `actual`). */
  balloonPages: number;
  /** 0 until known (memory table or MemTotal). */
  guestRamBytes: number;
  /** Automatic mode wanted (a manual hold suspends it without clearing this). */
  autoEnabled: boolean;
  hold: { owner: string; since: number } | null;
  lastGuestPressureAt: number | null;
  lastGuestPressureSource: GuestPressureSource | null;
  lastHostStepAt: number | null;
  prevStats: GuestStats | null;
  prevStatsAt: number | null;
  /** Balloon size when prevStats came: MemAvailable in it was measured with this much ballooned. */
  prevStatsBalloonPages: number;
  /** How fast the guest itself used up MemAvailable between its last two stats samples (bytes/s; 0: not falling or unknown). */
  guestUseBps: number;
  /** Latest time seen: a `now` that goes backwards is read as this. */
  clockMs: number;
  /**
   * What belonged to the guest of the last frontend, set aside when a new
   * one attached: restored if it turns out to be the same guest (it reports
   * its balloon), forgotten if a new guest starts its queues.
   */
  previousGuest: PreviousGuest | null;
}

export interface PreviousGuest {
  targetPages: number;
  hold: { owner: string; since: number } | null;
  lastGuestPressureAt: number | null;
  lastGuestPressureSource: GuestPressureSource | null;
}

export type PolicyEvent =
  /** A host pressure source fired; `count` events folded into one read (default 1). */
  | { type: 'host-pressure'; source: string; level: string; count?: number }
  /** The guest signalled pressure; `count` messages in one batch apply one after another, as in the seed. */
  | { type: 'guest-pressure'; source: GuestPressureSource; count?: number }
  /** A stats-queue sample; pressure is derived from it and the previous sample. */
  | { type: 'stats'; stats: GuestStats }
  /** The balloon size changed: pages counted from the queues or the guest's `actual`. */
  | { type: 'balloon-size'; pages: number; from?: 'queues' | 'actual' }
  /** A new frontend attached: until it reports a balloon, its guest is not the last one's. */
  | { type: 'frontend-attached' }
  /** A new connection reported a balloon we did not see being filled. */
  | { type: 'recover'; pages: number }
  /** The new frontend started its queues without reporting a balloon: a new guest. */
  | { type: 'new-guest' }
  | { type: 'guest-ram'; bytes: number }
  | { type: 'manual-target'; pages: number; owner: string }
  /** An incoming migration brought the source's target: the guest's own, not a hold. */
  | { type: 'incoming-target'; pages: number }
  /**
   * An incoming migration brought the source daemon's own state (before its
   * num_pages): the operator's hold and how long ago the guest was last in
   * pressure (the hysteresis goes on).
   */
  | { type: 'incoming-state'; pages: number; hold: { owner: string } | null; guestPressureAgeMs: number | null }
  | { type: 'release' }
  | { type: 'auto'; enabled: boolean }
  /** New, already validated settings (mergeParams / validateParams). */
  | { type: 'tune'; params: PolicyParams }
  /** The host-wide runner (host policy, or the mom / proxmox baselines) sets a new target. */
  | { type: 'host-target'; pages: number; event: string; reason: string; host?: HostShareInfo };

/** What the host-wide policy saw of one VM when it decided (for the history). */
export interface HostShareInfo {
  /** Host decision this share belongs to (its seq in the host history). */
  decision?: number;
  policy: string;
  /** What the memcg needed back (host policy), or the baseline's goal. */
  needBytes: number;
  /** What this VM could give (cache + free tiers), and of that its reclaimable cache. */
  spareBytes: number;
  cacheSpareBytes: number;
  weight: number;
  /** Stats missing or stale: asked for at most one step. */
  stale: boolean;
  /** What the VM was asked for (negative: given back). */
  shareBytes: number;
}

export type Rule =
  | 'host-pressure-inflate' | 'host-pressure-ignored'
  | 'guest-pressure-cancel' | 'guest-pressure-deflate' | 'guest-pressure-ignored'
  /** deflate-on-OOM during a manual hold or with auto off: the inflation is still cancelled. */
  | 'oom-cancel'
  | 'manual-target' | 'release' | 'auto-on' | 'auto-off' | 'tune' | 'clamp' | 'recover' | 'new-frontend' | 'incoming-target' | 'incoming-state'
  /** The host-wide runner moved the target: host policy need / give-back, or a baseline's round. */
  | 'host-policy-inflate' | 'host-policy-deflate' | 'host-policy-ignored';

/** Machine-readable why, for ignored events and limits (the CLI groups on it). */
export type Cause =
  | 'auto-off' | 'manual-hold' | 'guest-pressure' | 'rate-limit' | 'guest-behind' | 'ceiling'
  | 'guest-ram-unknown' | 'balloon-empty'
  /** mom / proxmox: the published algorithm has no guest-pressure rule. */
  | 'baseline';

export interface Decision {
  /** The (monotonic) time of the step. */
  at: number;
  rule: Rule;
  /** Set when the event was ignored or a limit applied. */
  cause: Cause | null;
  /** true when the event changed nothing (the reason says why). */
  ignored: boolean;
  /** What happened, in words. */
  event: string;
  oldTargetPages: number;
  newTargetPages: number;
  /** Why, in words. */
  reason: string;
  /** Host-wide decisions: the need, this VM's spare and its share. */
  host?: HostShareInfo;
}

export type Action =
  /** Write num_pages = pages to the config space and notify the guest. */
  | { type: 'set-target'; pages: number; decision: Decision }
  /** Nothing to push: log and keep the decision (ignored events, mode changes). */
  | { type: 'record'; decision: Decision };

export interface StepResult {
  state: PolicyState;
  /** At most one action per step; empty when there is nothing worth recording. */
  actions: Action[];
  /** Shorthand: the set-target pages, or null. */
  setTarget: number | null;
  /** Shorthand: the decision of the action, or null. */
  decision: Decision | null;
}
