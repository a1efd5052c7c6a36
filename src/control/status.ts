// What `status` returns: the contract between the daemon and balloonctl.
import type { DeviceCounters } from '../device/counters.js';
import type { GuestStats } from '../device/stats.js';
import type { HostShareInfo } from '../policy/types.js';
import type { LatencySnapshot } from './latency.js';

export type Mode = 'auto' | 'manual' | 'off';

export interface DecisionRecord {
  /** Wall-clock time, ISO 8601. */
  time: string;
  /** The rule that decided, e.g. host-pressure-inflate, guest-pressure-cancel. */
  rule: string;
  /** What happened: the event that led here. */
  event: string;
  oldTargetBytes: number;
  newTargetBytes: number;
  /** Why, in words (ignored events say why they were ignored). */
  reason: string;
  /** Host-wide decisions: the need, this VM's spare and its share. */
  host?: HostShareInfo;
}

/** One decision of the host-wide runner for the VMs of one memcg (balloonctl history, no VM). */
export interface HostDecisionRecord {
  seq: number;
  time: string;
  /** The memcg (or host memory) the VMs share. */
  group: string;
  policy: string;
  /** What woke the runner: "sample", "pressure vmpressure low", "round" (baselines). */
  trigger: string;
  needBytes: number;
  headroomBytes: number;
  freeBytes: number;
  limitBytes: number;
  usageBytes: number;
  growthBps: number;
  psiSomeAvg10: number | null;
  /** Inflation asked for and not done yet, counted against the need. */
  outstandingBytes: number;
  reason: string;
  vms: Array<{
    vm: string; weight: number; spareBytes: number; cacheSpareBytes: number; stale: boolean; excluded: string | null;
    shareBytes: number; oldTargetBytes: number; newTargetBytes: number;
    /** The VM's free memory the host never backed (ballooning it frees nothing); absent: 0. */
    unbackedBytes?: number;
    /** Of that, what its balloon gave back that the guest has not used since, counted in its weighted share (returned.ts); absent: 0. */
    returnedBytes?: number;
    /** Of the share, what is asked on top for that memory (a share beyond the VM's backed free memory takes it on the way); absent: 0. */
    shareUnbackedBytes?: number;
    /** What the guest freed so recently that it was not counted as spare (--guest-fresh-free); absent: 0. */
    freshFreeBytes?: number;
  }>;
  /** Decisions folded into this one (no target changed in any of them). */
  count: number;
}

export interface DaemonStatus {
  vm: string;
  pid: number;
  version: string;
  vhostSocket: string | null;
  connected: boolean;
  features: string[];
  guestRamBytes: number;
  targetBytes: number;
  actualBytes: number;
  balloonBytes: number;
  mode: Mode;
  hold: { owner: string; sinceTime: string } | null;
  pressure: {
    host: {
      source: string;
      events: number;
      lastEventTime: string | null;
      /** Wake-up on a host pressure event to CONFIG_CHANGE_MSG sent, for events that changed the target. */
      toConfigChange: LatencySnapshot;
    };
    guest: { inPressure: boolean; untilTime: string | null; lastSignal: string | null };
  };
  stats: { time: string; values: GuestStats } | null;
  params: Record<string, unknown>;
  decisions: DecisionRecord[];
  counters: DeviceCounters;
  /** VHOST_USER_SLAVE_CONFIG_CHANGE_MSG: sent whole, sends that waited for room, one waiting now. */
  configChange: { sent: number; waits: number; pending: boolean };
}
