// The driver side of the stats queue, as Linux 6.1 runs it: init_vqs()
// primes one buffer with update_balloon_stats() and kicks; from then on the
// device holds it and "asks" for fresh stats by returning it, and
// stats_request() -> stats_handle_request() refills and re-adds it. Refills
// happen on every request (auto, like the driver's work item) or when a test
// calls serveOnce().
import type { GuestMemory } from './guest-memory.js';
import { STAT_SIZE, StatEntries, encodeStats, linuxStats } from './linux.js';
import type { SplitRing } from './split-ring.js';

const MAX_ENTRIES = 32;

/** A guest's memory counters for the default stats (bytes and events). */
export interface GuestVmCounters {
  usedBytes: number;
  cacheBytes: number;
  swapInBytes: number;
  swapOutBytes: number;
  majorFaults: number;
  minorFaults: number;
}

export function newGuestVm(ramBytes: number): GuestVmCounters {
  const eighth = Math.floor(ramBytes / 8);
  return { usedBytes: eighth, cacheBytes: eighth, swapInBytes: 0, swapOutBytes: 0, majorFaults: 0, minorFaults: 0 };
}

/** update_balloon_stats() of a quiet guest: minor faults tick on every sample. */
export function vmStats(vm: GuestVmCounters, ramBytes: number, balloonBytes: number, deflateOnOom: boolean): StatEntries {
  vm.minorFaults += 1000;
  return linuxStats({ ...vm, totalBytes: ramBytes, balloonBytes, deflateOnOom });
}

export class StatsQueue {
  private readonly buf: number;
  private head = -1;
  private refills = 0;
  private waiters: Array<() => void> = [];
  private closed = false;

  constructor(private readonly mem: GuestMemory, private readonly ring: SplitRing, private readonly entries: () => StatEntries, readonly auto: boolean) {
    this.buf = mem.alloc(STAT_SIZE * MAX_ENTRIES, 8);
    if (auto) ring.onInterrupt = () => this.onRequest();
    this.add();
  }

  /** Requests served so far. */
  get served(): number {
    return this.refills;
  }

  /** The head of the buffer the device holds now. */
  get currentHead(): number {
    return this.head;
  }

  /** update_balloon_stats() + virtqueue_add_outbuf() + virtqueue_kick(). */
  private add(): void {
    const b = encodeStats(this.entries());
    if (b.length > STAT_SIZE * MAX_ENTRIES) throw new RangeError('too many stats entries for the buffer');
    b.copy(this.mem.slice(this.buf, b.length));
    this.head = this.ring.add([{ gpa: this.buf, len: b.length }]);
    this.ring.kick();
  }

  /** stats_handle_request(): refill only if the device really returned the buffer. */
  private onRequest(): void {
    if (this.closed || !this.ring.take(this.head)) return;
    this.refills++;
    this.add();
    for (const w of this.waiters.splice(0)) w();
  }

  /** Wait for one request and serve it; false if none came within timeoutMs. */
  async serveOnce(timeoutMs = 3000): Promise<boolean> {
    const before = this.refills;
    if (this.auto) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, timeoutMs);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
      return this.refills > before;
    }
    try {
      await this.ring.waitFor(this.head, timeoutMs);
    } catch {
      return false;
    }
    this.refills++;
    this.add();
    return true;
  }

  close(): void {
    this.closed = true;
    this.ring.onInterrupt = undefined;
    for (const w of this.waiters.splice(0)) w();
  }
}
