// When inflated pages are handed back to the host.
//
// Immediate: discard each merged range before acknowledging the buffer. Used
// when the guest did not negotiate MUST_TELL_HOST (it may reuse a page before
// telling us) and for free page reporting (the guest reuses reported pages as
// soon as we acknowledge them).
//
// Deferred (MUST_TELL_HOST negotiated): the guest will not touch a ballooned
// page before it deflates it and we acknowledge the deflate. So inflated
// pages are acknowledged at once and collected; a thread of the shim
// (native/vub-discard.c, at nice 10) discards them while the event loop goes
// on. The collected pages go to the thread, merged, as one job whenever it is
// idle and they are worth it: 16 MiB in runs of 64+ pages on average
// (contiguous inflates), or the inflate went quiet for 20 ms, or they waited
// 1 s, or 1 GiB waits. Scattered PFNs (the guest's free pages are
// fragmented) thus wait for the burst to end and merge back towards a few
// runs: one madvise per 4 KiB page costs ~10x more than per 1 MiB run. Fewer,
// longer jobs also save wake-ups (two per job). Deflated pages leave
// the set and are cut out of the job under way before the deflate is
// acknowledged, so nothing the guest uses again is ever discarded.
// A queue stop suspends both (the shim stops the thread before QEMU gets
// its reply); the device then resumes them after a VM pause or drops them
// after a reset. On a disconnect the device takes them out (exportPending)
// to hand to the next connection of the same guest.
import { PageSet } from './page-set.js';
import { PfnRange, rangeBytes } from './pfn.js';

const EBUSY = 16;

/** Discards [gpa, gpa+len): bytes done, or -errno. */
export type DiscardFn = (gpa: number, len: number) => number;

export interface DiscardFailure {
  gpa: number;
  len: number;
  errno: number;
  /** Failed calls this entry stands for (the thread reports its last one). */
  count?: number;
}

export interface DiscardResult {
  bytes: number;
  calls: number;
  failures: DiscardFailure[];
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

/** The discard thread as BackgroundDiscard needs it (a connection, or a test double). */
export interface DiscardWorker {
  /** Start a job; 0, or -errno (-EBUSY while one runs). */
  submit(ranges: readonly PfnRange[]): number;
  /** Cut a range out of the job; pages cut. Waits for a chunk under way that overlaps it. */
  cancel(r: PfnRange): number;
  /**
   * cancel() that never waits: -1 while a chunk under way overlaps the
   * range; the thread then starts no next chunk and says so (its done
   * eventfd) once this one is finished, so that the next try goes through.
   */
  tryCancel?(r: PfnRange): number;
  /** Forget the job; pages left undone. */
  drop(): number;
  /** Block until the job is done (returns at once while suspended). */
  waitIdle(): void;
  /** Let a job suspended by a queue stop go on. */
  resume(): void;
  /** What is left of the job, as page runs (the job stays). */
  exportJob(): PfnRange[];
  /** Totals since the last call, and whether a job is still pending. */
  collect(): { result: DiscardResult; pending: boolean };
}

/** When collected pages go to an idle thread (see the top of this file). */
export interface HandOverRule {
  /** Average pages per merged run at which a call per run is cheap enough. */
  denseRunPages: number;
  /** Dense pages go once this many wait: fewer, longer jobs (each costs two wake-ups). */
  minJobPages: number;
  /** No inflate for this long: the burst is over. */
  idleMs: number;
  /** Oldest waiting page: hand over by then whatever the density. */
  maxDelayMs: number;
  maxPendingPages: number;
}

export const DEFAULT_HAND_OVER: HandOverRule = { denseRunPages: 64, minJobPages: 4096, idleMs: 20, maxDelayMs: 1000, maxPendingPages: 1 << 18 };

/** Time and timers, replaceable in tests. */
export interface Clock {
  now(): number;
  /** Run fn after ms; returns a cancel function. */
  after(ms: number, fn: () => void): () => void;
}

export const realClock: Clock = {
  now: () => performance.now(),
  after(ms, fn) {
    const t = setTimeout(fn, ms);
    t.unref();
    return () => clearTimeout(t);
  },
};

export class BackgroundDiscard {
  private readonly waiting = new PageSet();
  /** Bounds and size of the job the worker has, or null when it is idle. */
  private job: { lo: number; hi: number; pages: number } | null = null;
  private firstWaitAt = 0;
  private lastAddAt = 0;
  private cancelTimer: (() => void) | null = null;
  private suspended = false;

  constructor(
    private readonly worker: DiscardWorker,
    private readonly onResult: (r: DiscardResult) => void,
    private readonly rule: HandOverRule = DEFAULT_HAND_OVER,
    private readonly clock: Clock = realClock,
  ) {}

  /** Pages not yet handed over plus the pages of the job under way. */
  get pendingPages(): number {
    return this.waiting.size + (this.job?.pages ?? 0);
  }

  get busy(): boolean {
    return this.job !== null;
  }

  get isSuspended(): boolean {
    return this.suspended;
  }

  /** The inflate queue stopped (the shim already holds the thread): hand nothing over. */
  suspend(): void {
    this.stopTimer();
    this.suspended = true;
  }

  /** The queue runs again with the same guest (a VM pause ended). */
  resume(): void {
    if (!this.suspended) return;
    this.suspended = false;
    this.worker.resume();
    this.maybeHandOver();
  }

  /** Everything not yet discarded, as page runs; this object keeps nothing. */
  exportPending(): PfnRange[] {
    this.stopTimer();
    const out = this.waiting.take();
    if (this.job) {
      for (const r of this.worker.exportJob()) out.push(r);
      this.worker.drop();
      this.settle();
      this.job = null;
    }
    this.suspended = false;
    return out;
  }

  add(ranges: readonly PfnRange[]): void {
    const now = this.clock.now();
    if (this.waiting.size === 0) this.firstWaitAt = now;
    this.lastAddAt = now;
    for (const r of ranges) this.waiting.add(r);
    this.maybeHandOver();
  }

  /** The worker finished its job (its eventfd fired). */
  onJobDone(): void {
    this.settle();
    this.maybeHandOver();
  }

  /** Deflated pages: never discard them. Returns how many were still pending. */
  remove(ranges: readonly PfnRange[]): number {
    let n = 0;
    for (const r of ranges) {
      n += this.waiting.delete(r);
      const job = this.job;
      if (job && r.pfn < job.hi && r.pfn + r.count > job.lo) {
        const cut = this.worker.cancel(r);
        job.pages = Math.max(0, job.pages - cut); // 0 for a job we did not submit (EBUSY)
        n += cut;
      }
    }
    return n;
  }

  /**
   * remove() of one range without waiting for the thread: false while the
   * thread's chunk under way overlaps it (try again once it said it is done,
   * see DiscardWorker.tryCancel); true once it is out, never to be discarded.
   */
  tryRemove(r: PfnRange): boolean {
    this.waiting.delete(r);
    const job = this.job;
    if (job && r.pfn < job.hi && r.pfn + r.count > job.lo) {
      const cut = this.worker.tryCancel ? this.worker.tryCancel(r) : this.worker.cancel(r);
      if (cut < 0) return false;
      job.pages = Math.max(0, job.pages - cut);
    }
    return true;
  }

  /** Discard everything pending before returning (shutdown, tests); not while suspended. */
  flush(): void {
    if (this.suspended) return;
    this.stopTimer();
    while (this.job || this.waiting.size > 0) {
      if (this.job) {
        this.worker.waitIdle();
        this.settle();
      }
      if (!this.job) this.handOver();
    }
  }

  /** Forget pending pages without discarding them (a reset); the thread takes new jobs again. */
  drop(): number {
    this.stopTimer();
    const wasSuspended = this.suspended;
    this.suspended = false;
    let n = this.waiting.size;
    this.waiting.clear();
    if (this.job || wasSuspended) {
      n += this.worker.drop(); // also lifts the shim's suspension
      this.settle();
      this.job = null;
    }
    return n;
  }

  private settle(): void {
    const { result, pending } = this.worker.collect();
    if (result.calls > 0) this.onResult(result);
    if (!pending) this.job = null;
  }

  /** Whether the waiting pages should go now (the thread being idle). */
  private due(now: number): boolean {
    const w = this.waiting;
    const r = this.rule;
    return (w.size >= w.runs * r.denseRunPages && w.size >= r.minJobPages) || w.size >= r.maxPendingPages
      || now - this.lastAddAt >= r.idleMs || now - this.firstWaitAt >= r.maxDelayMs;
  }

  private maybeHandOver(): void {
    if (this.suspended || this.job || this.waiting.size === 0) return; // onJobDone() comes back here
    const now = this.clock.now();
    if (this.due(now)) {
      this.stopTimer();
      this.handOver();
      return;
    }
    if (this.cancelTimer) return;
    const at = Math.min(this.lastAddAt + this.rule.idleMs, this.firstWaitAt + this.rule.maxDelayMs);
    this.cancelTimer = this.clock.after(Math.max(0, at - now), () => {
      this.cancelTimer = null;
      this.maybeHandOver();
    });
  }

  private stopTimer(): void {
    this.cancelTimer?.();
    this.cancelTimer = null;
  }

  private handOver(): void {
    if (this.waiting.size === 0) return;
    const pages = this.waiting.size;
    const runs = this.waiting.take();
    const ret = this.worker.submit(runs);
    if (ret === -EBUSY) {
      // A job we did not see finish yet: keep the pages, and treat the whole
      // of RAM as under way so that deflates still cut into it.
      for (const r of runs) this.waiting.add(r);
      this.job = { lo: 0, hi: Number.MAX_SAFE_INTEGER, pages: 0 };
      return;
    }
    if (ret < 0) {
      // No thread to give them to: the pages stay in the guest's balloon but
      // are not freed. Safe, and counted as failed discards.
      const failures = runs.map((r) => ({ ...rangeBytes(r), errno: -ret }));
      this.onResult({ bytes: 0, calls: 0, failures });
      return;
    }
    const last = runs[runs.length - 1]!;
    this.job = { lo: runs[0]!.pfn, hi: last.pfn + last.count, pages };
  }
}
