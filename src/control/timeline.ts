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

/** A fixed-capacity ring that keeps the newest items. */
export class Ring<T> {
  private readonly items: T[] = [];
  constructor(readonly capacity: number) {}

  push(item: T): void {
    this.items.push(item);
    if (this.items.length > this.capacity) this.items.splice(0, this.items.length - this.capacity);
  }

  last(n = this.capacity): T[] {
    return this.items.slice(-n);
  }

  get length(): number {
    return this.items.length;
  }
}

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
    this.samples.push({ t: this.now(), targetBytes, actualBytes, ...(availableBytes !== undefined ? { availableBytes } : {}) });
  }

  mark(kind: Mark['kind']): void {
    this.marks.push({ t: this.now(), kind });
  }
}
