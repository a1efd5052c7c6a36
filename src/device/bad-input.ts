// Bad guest input: counted per kind, logged at most once per kind per window
// so a hostile guest cannot flood the log.
import type { Logger } from '../log.js';

export type BadInputKind =
  | 'pfn_outside_ram'       // inflate/deflate PFN not in guest RAM
  | 'pfn_buffer_odd_length' // PFN buffer length not a multiple of 4
  | 'pfn_already_ballooned' // inflate of a page already in the balloon (counted once)
  | 'pfn_not_ballooned'     // deflate of a page that was never inflated
  | 'wrong_direction'       // descriptor writable where readable expected (or reverse)
  | 'empty_buffer'          // element with no usable bytes
  | 'oversized_buffer'      // more data than the driver may send
  | 'truncated_stats'       // stats buffer with a partial entry
  | 'unknown_stats_tag'     // tag above VIRTIO_BALLOON_S_NR
  | 'unknown_message'       // message other than MSG_PRESSURE
  | 'message_odd_length'    // message buffer length not a multiple of 4
  | 'reporting_outside_ram' // reported range not wholly in guest RAM
  | 'reporting_unaligned'   // reported range not page-aligned, or empty
  | 'oversized_report'      // report with more entries than the device reads
  | 'discard_failed'        // madvise(MADV_REMOVE) refused a range
  | 'device_error'          // libvhost-user marked the device broken
  | 'bad_device_state'      // a migration's device state failed its checks (device-state.ts)
  | 'second_frontend';      // another frontend tried to connect

export class BadInputCounter {
  readonly counts = new Map<BadInputKind, number>();
  private readonly lastLog = new Map<BadInputKind, number>();
  private readonly suppressed = new Map<BadInputKind, number>();

  constructor(private readonly log: Logger, private readonly windowMs = 10_000, private readonly now = () => performance.now()) {}

  record(kind: BadInputKind, detail: Record<string, unknown> = {}, n = 1): void {
    this.counts.set(kind, (this.counts.get(kind) ?? 0) + n);
    const t = this.now();
    const last = this.lastLog.get(kind);
    if (last !== undefined && t - last < this.windowMs) {
      this.suppressed.set(kind, (this.suppressed.get(kind) ?? 0) + n);
      return;
    }
    const suppressed = this.suppressed.get(kind) ?? 0;
    this.suppressed.set(kind, 0);
    this.lastLog.set(kind, t);
    this.log.warn({ kind, ...detail, count: n, suppressedSinceLastLog: suppressed, total: this.counts.get(kind) },
      `bad guest input: ${kind}`);
  }

  get(kind: BadInputKind): number {
    return this.counts.get(kind) ?? 0;
  }

  toJSON(): Record<string, number> {
    return Object.fromEntries(this.counts);
  }
}
