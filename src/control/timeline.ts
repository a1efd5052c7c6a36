// Bounded in-memory history for operators: policy decisions with reasons,
// and a timeline of balloon samples for `balloonctl plot`.
import type { DecisionRecord } from './status.js';

export interface Sample {
  /** Seconds since the daemon started. */
  t: number;
  targetBytes: number;
  actualBytes: number;
  availableBytes?: number;
}

export interface Mark {
  t: number;
  kind: 'host' | 'guest';
}

/** A fixed-capacity ring that keeps the newest items (O(1) push). */
export class Ring<T> {
  private readonly items: T[] = [];
  /** Index of the oldest item once the ring is full. */
  private head = 0;
  constructor(readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) {
      this.items.push(item);
    } else {
      this.items[this.head] = item;
      this.head = (this.head + 1) % this.capacity;
    }
  }

  /** Replace the newest item (or push into an empty ring). */
  replaceLast(item: T): void {
    if (this.items.length === 0) this.push(item);
    else this.items[(this.head + this.items.length - 1) % this.items.length] = item;
  }

  /** The newest item. */
  peek(): T | undefined {
    return this.items.length ? this.items[(this.head + this.items.length - 1) % this.items.length] : undefined;
  }

  /** The newest n items, oldest first. */
  last(n = this.capacity): T[] {
    const ordered = this.head === 0 ? this.items : [...this.items.slice(this.head), ...this.items.slice(0, this.head)];
    return n <= 0 ? [] : ordered.slice(-n);
  }

  get length(): number {
    return this.items.length;
  }
}

/** Samples closer together than this replace each other: a 1 GiB inflation is 2,048 events. */
const SAMPLE_SPACING_S = 0.1;

export class History {
  readonly decisions = new Ring<DecisionRecord>(1000);
  readonly samples = new Ring<Sample>(4000);
  readonly marks = new Ring<Mark>(4000);
  private readonly t0 = performance.now();

  /** Seconds since the daemon started (monotonic). */
  now(): number {
    return (performance.now() - this.t0) / 1000;
  }

  sample(targetBytes: number, actualBytes: number, availableBytes?: number): void {
    const s = { t: this.now(), targetBytes, actualBytes, ...(availableBytes !== undefined ? { availableBytes } : {}) };
    const prev = this.samples.peek();
    // Keep the first sample after a target change, so plots show each step.
    if (prev && s.t - prev.t < SAMPLE_SPACING_S && prev.targetBytes === targetBytes) this.samples.replaceLast({ ...s, t: prev.t });
    else this.samples.push(s);
  }

  mark(kind: Mark['kind']): void {
    this.marks.push({ t: this.now(), kind });
  }
}
