// A bounded ring of policy decisions for the CLI (`balloonctl history`).
// Storms of ignored events (hundreds of vmpressure events a second, most of
// them inside the rate limit or the hysteresis) fold into the entry before
// them when nothing but the time differs, so the ring keeps the decisions
// that matter instead of the last thousand "rate limit" lines.
import type { Decision } from './types.js';

export interface HistoryEntry extends Decision {
  /** Increases by one per entry; a client asks for entries after the last seq it saw. */
  seq: number;
  /** Decisions folded into this entry (1 when none were). */
  count: number;
  /** `at` of the first folded decision (`at` is the latest). */
  firstAt: number;
}

/** Ignored decisions with the same rule and cause fold together. */
function foldable(last: HistoryEntry, d: Decision): boolean {
  return d.ignored && last.ignored && last.rule === d.rule && last.cause === d.cause && last.newTargetPages === d.newTargetPages;
}

export class DecisionHistory {
  private readonly ring: Array<HistoryEntry | undefined>;
  private head = 0; // next slot to write
  private size = 0;
  private nextSeq = 1;
  /** Decisions pushed, folded ones included. */
  total = 0;

  constructor(readonly capacity = 1000, private readonly fold = true) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`history capacity must be a positive integer, not ${capacity}`);
    this.ring = new Array<HistoryEntry | undefined>(capacity);
  }

  get length(): number {
    return this.size;
  }

  /** Add a decision; returns the entry it went into (a new one or the folded one). */
  push(d: Decision): HistoryEntry {
    this.total++;
    const last = this.newest();
    if (this.fold && last && foldable(last, d)) {
      // Keep the latest words ("next in 200 ms") and time; count the fold.
      Object.assign(last, { at: d.at, event: d.event, reason: d.reason, count: last.count + 1 });
      return last;
    }
    const entry: HistoryEntry = { ...d, seq: this.nextSeq++, count: 1, firstAt: d.at };
    this.ring[this.head] = entry;
    this.head = (this.head + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
    return entry;
  }

  newest(): HistoryEntry | undefined {
    return this.size === 0 ? undefined : this.ring[(this.head - 1 + this.capacity) % this.capacity];
  }

  /** The newest `n` entries, oldest first. */
  last(n = this.capacity): HistoryEntry[] {
    const k = Math.max(0, Math.min(Math.floor(n), this.size));
    const out: HistoryEntry[] = [];
    for (let i = k; i > 0; i--) out.push({ ...this.ring[(this.head - i + this.capacity) % this.capacity]! });
    return out;
  }

  /**
   * Entries with seq > `seq`, oldest first. An entry that was folded into
   * after the caller saw it keeps its seq; callers that need every fold
   * re-read the newest entry.
   */
  since(seq: number): HistoryEntry[] {
    return this.last().filter((e) => e.seq > seq);
  }

  clear(): void {
    this.ring.fill(undefined);
    this.head = 0;
    this.size = 0;
  }
}
