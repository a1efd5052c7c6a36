import { describe, expect, it } from 'vitest';
import { clipToRam, countPages, decodePfns, pfnInRam, pfnsToRanges, rangeBytes } from '../../src/device/pfn.js';

const le32 = (...v: number[]) => {
  const b = Buffer.alloc(v.length * 4);
  v.forEach((x, i) => b.writeUInt32LE(x, i * 4));
  return b;
};
// 1 GiB q35-like layout: low RAM below the VGA hole, then the rest.
const RAM = [{ gpa: 0, size: 0xa0000 }, { gpa: 0x100000, size: 0x40000000 - 0x100000 }];

describe('decodePfns', () => {
  it('decodes le32 entries', () => {
    expect(Array.from(decodePfns(le32(1, 0xffffffff, 300)).pfns)).toEqual([1, 0xffffffff, 300]);
  });
  it('reports a trailing partial entry without reading it', () => {
    const r = decodePfns(Buffer.concat([le32(5), Buffer.from([1, 2])]));
    expect(Array.from(r.pfns)).toEqual([5]);
    expect(r.trailingBytes).toBe(2);
  });
});

describe('pfnInRam', () => {
  it.each([
    [0, true], [0x9f, true], [0xa0, false], [0xff, false], [0x100, true], [0x3ffff, true], [0x40000, false], [0xffffffff, false],
  ])('pfn %i -> %s', (pfn, inRam) => {
    expect(pfnInRam(pfn, RAM)).toBe(inRam);
  });
});

describe('pfnsToRanges', () => {
  it.each([
    ['empty', [], [], 0],
    ['one page', [0x200], [{ pfn: 0x200, count: 1 }], 0],
    ['contiguous ascending', [10, 11, 12, 13], [{ pfn: 10, count: 4 }], 0],
    ['contiguous descending (Linux order)', [13, 12, 11, 10], [{ pfn: 10, count: 4 }], 0],
    ['shuffled with gaps', [20, 3, 21, 5, 4, 40], [{ pfn: 3, count: 3 }, { pfn: 20, count: 2 }, { pfn: 40, count: 1 }], 0],
    ['duplicates collapse', [7, 7, 8, 7], [{ pfn: 7, count: 2 }], 0],
    ['outside RAM rejected', [0xa0, 0x100, 0x40000, 0xffffffff], [{ pfn: 0x100, count: 1 }], 3],
    ['never merges across the hole', [0x9f, 0xa0, 0x100], [{ pfn: 0x9f, count: 1 }, { pfn: 0x100, count: 1 }], 1],
  ] as const)('%s', (_name, pfns, ranges, rejected) => {
    const r = pfnsToRanges(Uint32Array.from(pfns), RAM);
    expect(r.ranges).toEqual(ranges);
    expect(r.rejected).toBe(rejected);
    expect(countPages(r.ranges)).toBe(ranges.reduce((n, x) => n + x.count, 0));
  });

  it('turns a range into bytes with 4 KiB pages', () => {
    expect(rangeBytes({ pfn: 0x100, count: 256 })).toEqual({ gpa: 0x100000, len: 0x100000 });
  });

  it('handles PFNs whose byte address exceeds 2^32', () => {
    const big = [{ gpa: 0x100000000, size: 0x40000000 }];
    expect(pfnsToRanges(Uint32Array.from([0x100000, 0x100001]), big).ranges).toEqual([{ pfn: 0x100000, count: 2 }]);
    expect(rangeBytes({ pfn: 0x100000, count: 1 }).gpa).toBe(0x100000000);
  });
});

describe('clipToRam', () => {
  it.each([
    ['inside one region', [{ pfn: 0x200, count: 16 }], [{ pfn: 0x200, count: 16 }], []],
    ['across the VGA hole', [{ pfn: 0x90, count: 0x80 }], [{ pfn: 0x90, count: 0x10 }, { pfn: 0x100, count: 0x10 }], [{ pfn: 0xa0, count: 0x60 }]],
    ['past the end of RAM', [{ pfn: 0x3fff0, count: 0x20 }], [{ pfn: 0x3fff0, count: 0x10 }], [{ pfn: 0x40000, count: 0x10 }]],
    ['wholly outside', [{ pfn: 0xffff_0000, count: 5 }], [], [{ pfn: 0xffff_0000, count: 5 }]],
    ['empty', [], [], []],
  ])('%s', (_n, runs, inside, outside) => {
    expect(clipToRam(runs, RAM)).toEqual({ inside, outside });
  });

  it('regions that touch (two memory backends) keep a run whole, in two parts', () => {
    const two = [{ gpa: 0, size: 0x100000 }, { gpa: 0x100000, size: 0x100000 }];
    expect(clipToRam([{ pfn: 0xf0, count: 0x20 }], two)).toEqual({ inside: [{ pfn: 0xf0, count: 0x10 }, { pfn: 0x100, count: 0x10 }], outside: [] });
  });
});
