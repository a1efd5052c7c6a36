// When inflated pages are handed back to the host.
//
// Immediate: discard each merged range before acknowledging the buffer. Used
// when the guest did not negotiate MUST_TELL_HOST (it may reuse a page before
// telling us) and for free page reporting (the guest reuses reported pages as
// soon as we acknowledge them).
//
// Deferred (MUST_TELL_HOST negotiated): the guest will not touch a ballooned
// page before it deflates it and we acknowledge the deflate. So inflated
// pages are acknowledged at once and collected; a flush discards the set as
// merged runs shortly after the guest stops inflating. Deflated pages leave
// the set first, so nothing the guest uses again is ever discarded; a queue
// stop or disconnect drops the set (after a reset the pages are the guest's).
import { PageSet } from './page-set.js';
import { PfnRange, rangeBytes } from './pfn.js';

export interface DiscardTiming {
  /** Flush after the inflate queue has been quiet this long. */
  idleMs: number;
  /** Never hold a page longer than this. */
  maxDelayMs: number;
  /** Flush at once beyond this many pending pages. */
  maxPendingPages: number;
}

export const DEFAULT_DISCARD_TIMING: DiscardTiming = { idleMs: 2, maxDelayMs: 50, maxPendingPages: 1 << 18 };

/** Discards [gpa, gpa+len): bytes done, or -errno. */
export type DiscardFn = (gpa: number, len: number) => number;

export interface DiscardResult {
  bytes: number;
  calls: number;
  failures: Array<{ gpa: number; len: number; errno: number }>;
}

export function discardRanges(ranges: readonly PfnRange[], discard: DiscardFn): DiscardResult {
  const res: DiscardResult = { bytes: 0, calls: 0, failures: [] };
  for (const r of ranges) {
    const { gpa, len } = rangeBytes(r);
    const ret = discard(gpa, len);
    res.calls++;
    if (ret < 0) res.failures.push({ gpa, len, errno: -ret });
    else res.bytes += ret;
  }
  return res;
}

export class DeferredDiscard {
  private readonly pending = new PageSet();
  private idleTimer: NodeJS.Timeout | null = null;
  private oldestAt = 0;

  constructor(
    private readonly discard: DiscardFn,
    private readonly onFlushed: (r: DiscardResult) => void,
    private readonly timing: DiscardTiming = DEFAULT_DISCARD_TIMING,
    private readonly now: () => number = () => performance.now(),
  ) {}

  get pendingPages(): number {
    return this.pending.size;
  }

  add(ranges: readonly PfnRange[]): void {
    if (this.pending.size === 0) this.oldestAt = this.now();
    for (const r of ranges) this.pending.add(r);
    if (this.pending.size >= this.timing.maxPendingPages || this.now() - this.oldestAt >= this.timing.maxDelayMs) {
      this.flush();
      return;
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.flush(), this.timing.idleMs);
  }

  /** Deflated pages leave the set; returns how many were still pending. */
  remove(ranges: readonly PfnRange[]): number {
    let n = 0;
    for (const r of ranges) n += this.pending.delete(r);
    if (this.pending.size === 0) this.cancelTimer();
    return n;
  }

  flush(): void {
    this.cancelTimer();
    if (this.pending.size === 0) return;
    this.onFlushed(discardRanges(this.pending.take(), this.discard));
  }

  /** Forget pending pages without discarding them (reset, disconnect). */
  drop(): number {
    this.cancelTimer();
    const n = this.pending.size;
    this.pending.clear();
    return n;
  }

  private cancelTimer(): void {
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }
}
