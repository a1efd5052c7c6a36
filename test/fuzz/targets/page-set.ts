// PageSet (the deferred discards' bitmap) against a model: sequences of
// add/delete/has/take/clear over ranges the guest's inflates and deflates
// make, clustered so that they overlap, and placed at chunk boundaries
// (1 GiB of pages per chunk) and at the top of the le32 PFN space.
import fc from 'fast-check';
import { PageSet } from '../../../src/device/page-set.js';
import type { PfnRange } from '../../../src/device/pfn.js';
import { U32_MAX } from '../arbitraries.js';
import { defineTarget, invariant, sameValue } from '../harness.js';

const CHUNK = 2 ** 18;

export type PageSetOp =
  | { op: 'add' | 'delete'; pfn: number; count: number }
  | { op: 'has'; pfn: number }
  | { op: 'take' }
  | { op: 'clear' };

export interface PageSetInput {
  ops: PageSetOp[];
}

/** The model: disjoint, ascending, non-adjacent [start, end) intervals. */
class IntervalModel {
  runs: Array<[number, number]> = [];

  add(s: number, e: number): void {
    if (e <= s) return;
    const out: Array<[number, number]> = [];
    for (const [a, b] of this.runs) {
      if (b < s || a > e) out.push([a, b]);
      else {
        s = Math.min(s, a);
        e = Math.max(e, b);
      }
    }
    out.push([s, e]);
    this.runs = out.sort((x, y) => x[0] - y[0]);
  }

  /** Returns how many pages were in the set. */
  delete(s: number, e: number): number {
    if (e <= s) return 0;
    let removed = 0;
    const out: Array<[number, number]> = [];
    for (const [a, b] of this.runs) {
      if (b <= s || a >= e) {
        out.push([a, b]);
        continue;
      }
      removed += Math.min(b, e) - Math.max(a, s);
      if (a < s) out.push([a, s]);
      if (b > e) out.push([e, b]);
    }
    this.runs = out;
    return removed;
  }

  has(p: number): boolean {
    return this.runs.some(([a, b]) => p >= a && p < b);
  }

  get size(): number {
    return this.runs.reduce((n, [a, b]) => n + b - a, 0);
  }

  ranges(): PfnRange[] {
    return this.runs.map(([a, b]) => ({ pfn: a, count: b - a }));
  }
}

/** Ranges near `base`: mostly short, sometimes long enough to cross a chunk. */
function opNear(base: number): fc.Arbitrary<PageSetOp> {
  const count = fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 70 }), weight: 1600 },
    { arbitrary: fc.integer({ min: 0, max: 2100 }), weight: 400 },
    { arbitrary: fc.integer({ min: CHUNK - 40, max: CHUNK + 40 }), weight: 1 },
  );
  const pfn = fc.integer({ min: -300, max: 300 }).map((d) => Math.min(U32_MAX, Math.max(0, base + d)));
  const range = fc.record({ pfn, count }).map(({ pfn: p, count: c }) => ({ pfn: p, count: Math.min(c, U32_MAX + 1 - p) }));
  return fc.oneof(
    { arbitrary: range.map((r) => ({ op: 'add' as const, ...r })), weight: 50 },
    { arbitrary: range.map((r) => ({ op: 'delete' as const, ...r })), weight: 30 },
    { arbitrary: pfn.map((p) => ({ op: 'has' as const, pfn: p })), weight: 20 },
    { arbitrary: fc.constant({ op: 'take' as const }), weight: 10 },
    { arbitrary: fc.constant({ op: 'clear' as const }), weight: 3 },
  );
}

export const pageSetTarget = defineTarget<PageSetInput>({
  name: 'page-set',
  about: 'PageSet vs an interval model: size, runs, has, delete\'s count and take\'s merged ascending runs agree after every operation',
  input: fc.oneof(
    fc.integer({ min: 0, max: 2 ** 14 }).map((k) => k * CHUNK), // a chunk boundary (2^14 chunks reach the le32 top)
    fc.integer({ min: 0, max: U32_MAX }),
    fc.constantFrom(0, U32_MAX),
  ).chain((base) => fc.record({ ops: fc.array(opNear(base), { maxLength: 40, size: 'medium' }) })),
  examples: [
    { ops: [{ op: 'add', pfn: CHUNK - 2, count: 4 }, { op: 'delete', pfn: CHUNK - 1, count: 2 }, { op: 'add', pfn: CHUNK - 1, count: 1 }, { op: 'take' }] },
    { ops: [{ op: 'add', pfn: U32_MAX - 3, count: 4 }, { op: 'delete', pfn: U32_MAX, count: 1 }, { op: 'has', pfn: U32_MAX - 1 }, { op: 'take' }] },
    { ops: [{ op: 'add', pfn: 0, count: 1 }, { op: 'add', pfn: 2, count: 1 }, { op: 'add', pfn: 1, count: 1 }, { op: 'delete', pfn: 1, count: 1 }, { op: 'clear' }, { op: 'add', pfn: 5, count: 0 }] },
  ],
  check({ ops }) {
    const set = new PageSet();
    const model = new IntervalModel();
    for (const [i, o] of ops.entries()) {
      const at = () => ({ step: i, op: o, model: model.runs });
      switch (o.op) {
        case 'add':
          set.add({ pfn: o.pfn, count: o.count });
          model.add(o.pfn, o.pfn + o.count);
          break;
        case 'delete': {
          const removed = set.delete({ pfn: o.pfn, count: o.count });
          const want = model.delete(o.pfn, o.pfn + o.count);
          invariant(removed === want, 'delete returns the pages that were in the set', () => ({ removed, want, ...at() }));
          break;
        }
        case 'has':
          for (const p of [o.pfn - 1, o.pfn, o.pfn + 1]) {
            if (p < 0 || p > U32_MAX) continue;
            invariant(set.has(p) === model.has(p), 'has agrees', () => ({ p, has: set.has(p), ...at() }));
          }
          break;
        case 'take':
          sameValue(set.take(), model.ranges(), `take() at step ${i}`);
          model.runs = [];
          break;
        case 'clear':
          set.clear();
          model.runs = [];
          break;
      }
      invariant(set.size === model.size, 'size agrees', () => ({ size: set.size, want: model.size, ...at() }));
      invariant(set.runs === model.runs.length, 'runs agrees', () => ({ runs: set.runs, want: model.runs.length, ...at() }));
      // The edges of every run: the pages where an off-by-one shows.
      for (const [a, b] of model.runs.slice(0, 8)) {
        invariant(set.has(a) && set.has(b - 1), 'a run\'s first and last pages are in', () => ({ a, b, ...at() }));
        if (a > 0) invariant(!set.has(a - 1), 'the page before a run is out', () => ({ a, ...at() }));
        if (b <= U32_MAX) invariant(!set.has(b), 'the page after a run is out', () => ({ b, ...at() }));
      }
    }
    sameValue(set.take(), model.ranges(), 'take() at the end');
    invariant(set.size === 0 && set.runs === 0, 'take() empties the set');
  },
});
