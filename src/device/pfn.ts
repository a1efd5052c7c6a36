// Balloon PFN handling: decode le32 PFN arrays, validate them against guest
// RAM, and merge them into sorted ranges so each range costs one discard.
import { BALLOON_PAGE_SIZE, VIRTIO_BALLOON_PFN_SHIFT } from '../virtio/constants.js';

/** A run of 4 KiB balloon pages: [pfn, pfn + count). */
export interface PfnRange {
  pfn: number;
  count: number;
}

/** Guest RAM as [gpa, gpa + size) byte ranges. */
export interface RamRegion {
  gpa: number;
  size: number;
  /** Page size of its backing (hugetlbfs: the huge page; absent: 4 KiB). */
  pageBytes?: number;
}

/** Decode a le32 PFN array; a trailing partial entry is reported, not read. */
export function decodePfns(buf: Buffer): { pfns: Uint32Array; trailingBytes: number } {
  const n = buf.length >>> 2;
  const pfns = new Uint32Array(n);
  for (let i = 0; i < n; i++) pfns[i] = buf.readUInt32LE(i * 4);
  return { pfns, trailingBytes: buf.length & 3 };
}

/** Does [pfn, pfn+1) lie wholly inside guest RAM? */
export function pfnInRam(pfn: number, ram: readonly RamRegion[]): boolean {
  const gpa = pfn * BALLOON_PAGE_SIZE;
  for (const r of ram) {
    if (gpa >= r.gpa && gpa + BALLOON_PAGE_SIZE <= r.gpa + r.size) return true;
  }
  return false;
}

/**
 * Split PFNs into valid ones (inside guest RAM) and the count of rejected
 * ones, then sort and merge valid PFNs into ranges. Duplicates collapse.
 */
export function pfnsToRanges(pfns: Uint32Array, ram: readonly RamRegion[]): { ranges: PfnRange[]; rejected: number } {
  const valid = new Uint32Array(pfns.length);
  let n = 0;
  let rejected = 0;
  for (const pfn of pfns) {
    if (pfnInRam(pfn, ram)) valid[n++] = pfn;
    else rejected++;
  }
  const sorted = valid.subarray(0, n).sort();
  const ranges: PfnRange[] = [];
  let cur: PfnRange | undefined;
  for (const pfn of sorted) {
    if (cur && pfn < cur.pfn + cur.count) continue; // duplicate
    if (cur && pfn === cur.pfn + cur.count) {
      cur.count++;
    } else {
      cur = { pfn, count: 1 };
      ranges.push(cur);
    }
  }
  return { ranges, rejected };
}

/**
 * Page runs cut at guest RAM's edges: the parts inside a region, and the
 * parts outside all of them (runs need not be sorted; regions must not
 * overlap).
 */
export function clipToRam(runs: readonly PfnRange[], ram: readonly RamRegion[]): { inside: PfnRange[]; outside: PfnRange[] } {
  const regions = ram
    .map((r) => ({ lo: Math.ceil(r.gpa / BALLOON_PAGE_SIZE), hi: Math.floor((r.gpa + r.size) / BALLOON_PAGE_SIZE) }))
    .filter((r) => r.hi > r.lo)
    .sort((a, b) => a.lo - b.lo);
  const inside: PfnRange[] = [];
  const outside: PfnRange[] = [];
  for (const run of runs) {
    let at = run.pfn;
    const end = run.pfn + run.count;
    for (const r of regions) {
      if (r.hi <= at) continue;
      if (r.lo >= end) break;
      if (r.lo > at) outside.push({ pfn: at, count: r.lo - at });
      const stop = Math.min(end, r.hi);
      inside.push({ pfn: Math.max(at, r.lo), count: stop - Math.max(at, r.lo) });
      at = stop;
      if (at >= end) break;
    }
    if (at < end) outside.push({ pfn: at, count: end - at });
  }
  return { inside, outside };
}

export function rangeBytes(r: PfnRange): { gpa: number; len: number } {
  return { gpa: r.pfn * 2 ** VIRTIO_BALLOON_PFN_SHIFT, len: r.count * BALLOON_PAGE_SIZE };
}

export function countPages(ranges: readonly PfnRange[]): number {
  let n = 0;
  for (const r of ranges) n += r.count;
  return n;
}
