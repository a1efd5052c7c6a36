// decodePfns + pfnsToRanges on inflate/deflate buffers: any bytes the guest
// writes, against any RAM layout the memory table may describe.
import fc from 'fast-check';
import { decodePfns, pfnsToRanges } from '../../../src/device/pfn.js';
import { type Region, leBytes, PAGE, pfnList, placed, placement, ramLayout, trailing, U32_MAX } from '../arbitraries.js';
import { defineTarget, invariant, sameValue } from '../harness.js';

export interface PfnInput {
  ram: Region[];
  /** The le32 entries the guest wrote. */
  pfns: number[];
  /** Bytes after the last whole entry (0-3). */
  tail: number[];
  at: { offset: number; slack: number };
}

/** Reference: the whole pages of each region, [first, end) (stated as pages, not as byte bounds). */
function wholePages(ram: readonly Region[]): Array<[number, number]> {
  return ram.map((r) => [Math.ceil(r.gpa / PAGE), Math.floor((r.gpa + r.size) / PAGE)]);
}

function inRam(p: number, pages: ReadonlyArray<[number, number]>): boolean {
  for (const [first, end] of pages) if (p >= first && p < end) return true;
  return false;
}

export const pfnTarget = defineTarget<PfnInput>({
  name: 'pfn',
  about: 'decodePfns/pfnsToRanges: entries decoded as written, ranges inside RAM, sorted, disjoint, maximal, covering exactly the distinct valid PFNs; rejected = invalid entries',
  input: ramLayout.chain((ram) => fc.record({
    ram: fc.constant(ram),
    pfns: pfnList(ram),
    tail: trailing(3),
    at: placement,
  })),
  examples: [
    { ram: [], pfns: [], tail: [], at: { offset: 0, slack: 0 } },
    { ram: [{ gpa: 0, size: 0xa0000 }, { gpa: 0x100000, size: 0x3ff00000 }], pfns: [0x9f, 0xa0, 0x100, 0x3ffff, 0x40000, U32_MAX, 0x9f], tail: [1, 2, 3], at: { offset: 1, slack: 0 } },
    // Two abutting regions: one merged range may span both.
    { ram: [{ gpa: 0, size: 2 * PAGE }, { gpa: 2 * PAGE, size: 2 * PAGE }], pfns: [3, 2, 1, 0, 4], tail: [], at: { offset: 3, slack: 1 } },
    // The top PFN in a region reaching past it.
    { ram: [{ gpa: (U32_MAX - 1) * PAGE, size: 4 * PAGE }], pfns: [U32_MAX, U32_MAX - 1, U32_MAX - 2, 0], tail: [0xff], at: { offset: 0, slack: 0 } },
  ],
  check({ ram, pfns, tail, at }) {
    const bytes: number[] = [];
    for (const p of pfns) leBytes(p, 4, bytes);
    bytes.push(...tail);
    const buf = placed(bytes, at);
    const before = Buffer.from(buf);

    const decoded = decodePfns(buf);
    invariant(decoded.trailingBytes === tail.length, 'trailingBytes is the partial entry', () => ({ got: decoded.trailingBytes, tail: tail.length }));
    sameValue(Array.from(decoded.pfns), pfns, 'decoded PFNs');
    invariant(buf.equals(before), 'decodePfns left the buffer alone');

    const { ranges, rejected } = pfnsToRanges(decoded.pfns, ram);
    const pages = wholePages(ram);
    const valid = new Set<number>();
    let invalid = 0;
    for (const p of pfns) {
      if (inRam(p, pages)) valid.add(p);
      else invalid++;
    }
    invariant(rejected === invalid, 'rejected counts the entries outside RAM (with repeats)', () => ({ rejected, invalid }));
    invariant(ranges.length <= valid.size, 'no more ranges than distinct valid PFNs');
    let inRanges = 0;
    let prevEnd = -1;
    for (const r of ranges) {
      invariant(Number.isInteger(r.pfn) && Number.isInteger(r.count) && r.count >= 1, 'a range is at least one whole page', () => r);
      invariant(r.pfn >= 0 && r.pfn + r.count - 1 <= U32_MAX, 'a range stays within le32 PFNs', () => r);
      // Sorted, not overlapping, and maximal: adjacent ranges would have been merged.
      invariant(r.pfn > prevEnd, 'ranges ascending, disjoint and merged', () => ({ r, prevEnd, ranges }));
      for (let p = r.pfn; p < r.pfn + r.count; p++) {
        invariant(inRam(p, pages), 'every page of every range lies inside guest RAM', () => ({ p, r, ram }));
        invariant(valid.has(p), 'every page of every range was sent by the guest', () => ({ p, r }));
      }
      inRanges += r.count;
      prevEnd = r.pfn + r.count;
    }
    // Pages are distinct (disjoint ranges), all valid and sent: equal counts mean equal sets.
    invariant(inRanges === valid.size, 'pages in ranges = distinct valid PFNs', () => ({ inRanges, distinct: valid.size }));
  },
});
