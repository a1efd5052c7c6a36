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

/** How a record of numbers is laid out in a ColumnRing: `width` doubles. */
export interface Columns<T> {
  width: number;
  write(item: T, into: Float64Array, at: number): void;
  read(from: Float64Array, at: number): T;
}

/**
 * A Ring of records of numbers kept in one Float64Array, `width` doubles
 * per record: a full timeline of objects with their heap numbers cost
 * ~636 KiB per VM, this ~190 KiB. Storage grows by doubling up to the
 * capacity, so a new VM pays for what it holds, not for what it may hold.
 */
export class ColumnRing<T> {
  private buf = new Float64Array(0);
  private count = 0;
  /** Index of the oldest record once the ring is full. */
  private head = 0;

  constructor(readonly capacity: number, private readonly cols: Columns<T>) {}

  push(item: T): void {
    const w = this.cols.width;
    if (this.count < this.capacity) {
      if ((this.count + 1) * w > this.buf.length) {
        const grown = new Float64Array(Math.min(this.capacity, Math.max(16, this.count * 2)) * w);
        grown.set(this.buf);
        this.buf = grown;
      }
      this.cols.write(item, this.buf, this.count * w);
      this.count++;
    } else {
      this.cols.write(item, this.buf, this.head * w);
      this.head = (this.head + 1) % this.capacity;
    }
  }

  private slot(k: number): number {
    return ((this.head + k) % this.count) * this.cols.width;
  }

  /** Replace the newest record (or push into an empty ring). */
  replaceLast(item: T): void {
    if (this.count === 0) this.push(item);
    else this.cols.write(item, this.buf, this.slot(this.count - 1));
  }

  /** The newest record. */
  peek(): T | undefined {
    return this.count ? this.cols.read(this.buf, this.slot(this.count - 1)) : undefined;
  }

  /** The newest n records, oldest first. */
  last(n = this.capacity): T[] {
    const k = Math.max(0, Math.min(n, this.count));
    const out: T[] = [];
    for (let i = this.count - k; i < this.count; i++) out.push(this.cols.read(this.buf, this.slot(i)));
    return out;
  }

  get length(): number {
    return this.count;
  }
}

const SAMPLE_COLUMNS: Columns<Sample> = {
  width: 4,
  write(s, b, at) {
    b[at] = s.t;
    b[at + 1] = s.targetBytes;
    b[at + 2] = s.actualBytes;
    b[at + 3] = s.availableBytes ?? Number.NaN;
  },
  read(b, at) {
    const avail = b[at + 3]!;
    return { t: b[at]!, targetBytes: b[at + 1]!, actualBytes: b[at + 2]!, ...(Number.isNaN(avail) ? {} : { availableBytes: avail }) };
  },
};

const MARK_KINDS: readonly Mark['kind'][] = ['host', 'guest'];
const MARK_COLUMNS: Columns<Mark> = {
  width: 2,
  write(m, b, at) {
    b[at] = m.t;
    b[at + 1] = MARK_KINDS.indexOf(m.kind);
  },
  read(b, at) {
    return { t: b[at]!, kind: MARK_KINDS[b[at + 1]!]! };
  },
};

/** Samples closer together than this replace each other: a 1 GiB inflation is 2,048 events. */
const SAMPLE_SPACING_S = 0.1;

export class History {
  readonly decisions = new Ring<DecisionRecord>(1000);
  readonly samples = new ColumnRing<Sample>(4000, SAMPLE_COLUMNS);
  readonly marks = new ColumnRing<Mark>(4000, MARK_COLUMNS);
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
