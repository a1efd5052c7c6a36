// Huge-page discards, pure parts (src/device/huge-pages.ts) and the page set's hasAll.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { freeable, hasHugePages, hugeSpans, wholePagesOf } from '../../src/device/huge-pages.js';
import { PageSet } from '../../src/device/page-set.js';

const MiB = 2 ** 20;
const HP = 512; // 4 KiB pages per 2 MiB page
// 64 MiB on 2 MiB pages at gpa 0, and 64 MiB of 4 KiB pages at 4 GiB.
const RAM = [{ gpa: 0, size: 64 * MiB, pageBytes: 2 * MiB }, { gpa: 4 * 2 ** 30, size: 64 * MiB, pageBytes: 4096 }];
const HIGH = (4 * 2 ** 30) / 4096;

describe('hugeSpans: the huge pages a range touches', () => {
  it.each([
    ['inside one huge page', [{ pfn: 10, count: 5 }], [{ pfn: 0, count: HP }]],
    ['across two', [{ pfn: HP - 1, count: 2 }], [{ pfn: 0, count: HP }, { pfn: HP, count: HP }]],
    ['two ranges in one huge page: it once', [{ pfn: 1, count: 1 }, { pfn: 9, count: 1 }], [{ pfn: 0, count: HP }]],
    ['a 4 KiB region: the range itself', [{ pfn: HIGH + 3, count: 2 }], [{ pfn: HIGH + 3, count: 2 }]],
  ] as const)('%s', (_n, ranges, want) => expect(hugeSpans(ranges, RAM)).toEqual(want));
});

describe('freeable: what may be discarded once ranges joined the balloon', () => {
  const setOf = (...ranges: Array<{ pfn: number; count: number }>) => {
    const s = new PageSet();
    for (const r of ranges) s.add(r);
    return (r: { pfn: number; count: number }) => s.hasAll(r);
  };
  it.each([
    ['a huge page not whole yet: nothing', [{ pfn: 0, count: 256 }], setOf({ pfn: 0, count: 256 }), []],
    ['its last pages come: all of it', [{ pfn: 256, count: 256 }], setOf({ pfn: 0, count: HP }), [{ pfn: 0, count: HP }]],
    ['two whole neighbours merge into one run', [{ pfn: HP - 1, count: 2 }], setOf({ pfn: 0, count: 2 * HP }), [{ pfn: 0, count: 2 * HP }]],
    ['one whole, its neighbour not', [{ pfn: HP - 1, count: 2 }], setOf({ pfn: 0, count: HP + 1 }), [{ pfn: 0, count: HP }]],
    ['4 KiB RAM: the ranges as they are', [{ pfn: HIGH, count: 3 }], setOf(), [{ pfn: HIGH, count: 3 }]],
  ] as const)('%s', (_n, ranges, whole, want) => expect(freeable(ranges, RAM, whole)).toEqual(want));

  it('a region ending inside a huge page: its short tail is never freed (no whole page there)', () => {
    const ram = [{ gpa: 0, size: 3 * MiB, pageBytes: 2 * MiB }];
    expect(freeable([{ pfn: HP, count: 256 }], ram, () => true)).toEqual([]);
  });

  it('hasHugePages', () => {
    expect(hasHugePages(RAM)).toBe(true);
    expect(hasHugePages([{ gpa: 0, size: MiB }])).toBe(false);
  });
});

describe('wholePagesOf: a free page report cut to whole huge pages', () => {
  it.each([
    ['4 KiB RAM: as it is', 0x1000n, 0x3000, 4096, { addr: 0x1000n, len: 0x3000 }],
    ['aligned whole pages', 0x40000000n, 4 * MiB, 2 * MiB, { addr: 0x40000000n, len: 4 * MiB }],
    ['half a page on each side: the whole one inside', 0x40100000n, 4 * MiB, 2 * MiB, { addr: 0x40200000n, len: 2 * MiB }],
    ['less than a whole page: nothing', 0x40100000n, 2 * MiB, 2 * MiB, null],
  ] as const)('%s', (_n, addr, len, page, want) => expect(wholePagesOf(addr, len, page)).toEqual(want));
});

describe('PageSet.hasAll', () => {
  it('agrees with a model for random sets and ranges (word edges, chunk edges)', () => {
    const pfn = fc.integer({ min: (1 << 18) - 600, max: (1 << 18) + 600 }); // around the 1 GiB chunk edge
    fc.assert(fc.property(fc.array(fc.record({ pfn, count: fc.integer({ min: 1, max: 300 }) }), { maxLength: 8 }),
      fc.record({ pfn, count: fc.integer({ min: 1, max: 700 }) }), (adds, q) => {
        const s = new PageSet();
        const model = new Set<number>();
        for (const a of adds) {
          s.add(a);
          for (let p = a.pfn; p < a.pfn + a.count; p++) model.add(p);
        }
        let all = true;
        for (let p = q.pfn; p < q.pfn + q.count; p++) all &&= model.has(p);
        expect(s.hasAll(q)).toBe(all);
      }), { numRuns: 2000, seed: 3 });
  });

  it('a range inside what was added is whole; one page taken out of it is not', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 1 << 19 }), fc.integer({ min: 1, max: 2000 }), fc.nat(), (start, count, cut) => {
      const s = new PageSet();
      s.add({ pfn: start, count });
      expect(s.hasAll({ pfn: start, count })).toBe(true);
      s.delete({ pfn: start + (cut % count), count: 1 });
      expect(s.hasAll({ pfn: start, count })).toBe(false);
    }), { numRuns: 1000, seed: 5 });
  });
});
