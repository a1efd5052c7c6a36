// Guest RAM on huge pages (hugetlbfs): a discard frees memory only where it
// covers whole huge pages. The balloon protocol names 4 KiB pages, and Linux
// sends at most 256 of them (1 MiB) per element, so a 2 MiB page is never
// whole in one element (QEMU's virtio-balloon tracks partial huge pages
// within one element only, and so frees none). With MUST_TELL_HOST the guest
// does not touch a ballooned page before it deflates it, so the balloon's
// page set (ledger.ts) can say, across elements, when all of a huge page is
// ballooned: only then is it discarded, whole. Pure: no I/O.
import type { PfnRange, RamRegion } from './pfn.js';
import { BALLOON_PAGE_SIZE } from '../virtio/constants.js';

/** The region holding pfn, or undefined. */
function regionOf(pfn: number, ram: readonly RamRegion[]): RamRegion | undefined {
  const gpa = pfn * BALLOON_PAGE_SIZE;
  return ram.find((r) => gpa >= r.gpa && gpa < r.gpa + r.size);
}

/** 4 KiB pages per backing page of the region (1: not huge). */
const pagesPer = (r: RamRegion | undefined): number => Math.max(1, Math.floor((r?.pageBytes ?? BALLOON_PAGE_SIZE) / BALLOON_PAGE_SIZE));

/** Whether any region is backed by pages larger than 4 KiB. */
export const hasHugePages = (ram: readonly RamRegion[]): boolean => ram.some((r) => pagesPer(r) > 1);

/** The huge pages (as page runs, ascending, each once) that `ranges` touch; 4 KiB regions give their ranges as they are. */
export function hugeSpans(ranges: readonly PfnRange[], ram: readonly RamRegion[]): PfnRange[] {
  const out: PfnRange[] = [];
  for (const r of ranges) {
    const reg = regionOf(r.pfn, ram);
    const hp = pagesPer(reg);
    if (!reg || hp === 1) {
      out.push(r);
      continue;
    }
    // Huge pages lie on the region's boundaries (hugetlbfs mappings and offsets are huge-aligned).
    const base = reg.gpa / BALLOON_PAGE_SIZE;
    const regionEnd = base + reg.size / BALLOON_PAGE_SIZE;
    const first = base + Math.floor((r.pfn - base) / hp) * hp;
    const end = Math.min(regionEnd, base + Math.ceil((r.pfn + r.count - base) / hp) * hp);
    for (let p = first; p < end; p += hp) {
      const last = out[out.length - 1];
      if (last && last.pfn <= p && p < last.pfn + last.count) continue;
      out.push({ pfn: p, count: Math.min(hp, regionEnd - p) });
    }
  }
  return out;
}

/**
 * What of `ranges` (just added to the balloon) can be freed now: on huge-page
 * regions the huge pages they touch that are now wholly in the balloon
 * (`whole(span)`), merged; elsewhere the ranges themselves.
 */
export function freeable(ranges: readonly PfnRange[], ram: readonly RamRegion[], whole: (r: PfnRange) => boolean): PfnRange[] {
  const out: PfnRange[] = [];
  for (const s of hugeSpans(ranges, ram)) {
    const hp = pagesPer(regionOf(s.pfn, ram));
    if (hp > 1 && (s.count < hp || !whole(s))) continue; // partial: waits for the rest (or a region's short tail)
    const last = out[out.length - 1];
    if (last && last.pfn + last.count === s.pfn) last.count += s.count;
    else out.push({ ...s });
  }
  return out;
}

/**
 * A free page report's range (host address, bytes) cut to the whole huge
 * pages inside it: a hole punched in part of a huge page frees nothing.
 * `pageBytes` is the backing page size there (4 KiB: the range as it is).
 */
export function wholePagesOf(addr: bigint, len: number, pageBytes: number): { addr: bigint; len: number } | null {
  if (pageBytes <= BALLOON_PAGE_SIZE) return { addr, len };
  const hp = BigInt(pageBytes);
  const start = ((addr + hp - 1n) / hp) * hp;
  const end = ((addr + BigInt(len)) / hp) * hp;
  return end > start ? { addr: start, len: Number(end - start) } : null;
}
