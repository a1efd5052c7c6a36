// Device counters: monotonic totals that metrics and the CLI read.
import type { BadInputKind } from './bad-input.js';

export interface DeviceCounters {
  inflatedPages: number;
  deflatedPages: number;
  reportedPages: number;
  discardedBytes: number;
  discardCalls: number;
  statsSamples: number;
  unknownStatsTags: number;
  guestPressure: { message: number; 'deflate-on-oom': number };
  badInput: Partial<Record<BadInputKind, number>>;
}

export function newCounters(): DeviceCounters {
  return {
    inflatedPages: 0, deflatedPages: 0, reportedPages: 0, discardedBytes: 0, discardCalls: 0,
    statsSamples: 0, unknownStatsTags: 0, guestPressure: { message: 0, 'deflate-on-oom': 0 }, badInput: {},
  };
}
