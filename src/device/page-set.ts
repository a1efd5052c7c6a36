// A set of 4 KiB balloon pages as a sparse bitmap: 1 GiB of guest RAM per
// 32 KiB chunk, allocated on first use. Taking it out yields merged runs, so
// pages inflated in any order are discarded with as few calls as possible.
import type { PfnRange } from './pfn.js';

const CHUNK_SHIFT = 18; // pages per chunk: 2^18 = 1 GiB of 4 KiB pages
const CHUNK_PAGES = 1 << CHUNK_SHIFT;
const WORDS = CHUNK_PAGES / 32;

export class PageSet {
  private readonly chunks = new Map<number, Uint32Array>();
  private count = 0;
  private runCount = 0;

  get size(): number {
    return this.count;
  }

  /** Maximal runs of adjacent pages: what take() would return, kept as pages come and go. */
  get runs(): number {
    return this.runCount;
  }

  has(pfn: number): boolean {
    if (pfn < 0) return false;
    const key = Math.floor(pfn / CHUNK_PAGES);
    const words = this.chunks.get(key);
    if (!words) return false;
    const off = pfn - key * CHUNK_PAGES;
    return (words[off >>> 5]! & ((1 << (off & 31)) >>> 0)) !== 0;
  }

  /** Whether every page of the range is in the set (whole words at a time). */
  hasAll(r: PfnRange): boolean {
    let pfn = r.pfn;
    const end = r.pfn + r.count;
    while (pfn < end) {
      const key = Math.floor(pfn / CHUNK_PAGES);
      const words = this.chunks.get(key);
      if (!words) return false;
      const off = pfn - key * CHUNK_PAGES;
      const w = off >>> 5;
      const bit = off & 31;
      const n = Math.min(32 - bit, end - pfn);
      const mask = n === 32 ? 0xffffffff : (((1 << n) - 1) << bit) >>> 0;
      if ((words[w]! & mask) >>> 0 !== mask) return false;
      pfn += n;
    }
    return true;
  }

  /** Add pages; returns how many were not in the set yet. */
  add(r: PfnRange): number {
    let added = 0;
    this.forEachPage(r, (words, w, mask, pfn) => {
      if ((words[w]! & mask) === 0) {
        // A new page starts a run, extends one, or joins two.
        this.runCount += 1 - (this.near(words, pfn, -1) ? 1 : 0) - (this.near(words, pfn, 1) ? 1 : 0);
        words[w]! |= mask;
        added++;
      }
    }, true);
    this.count += added;
    return added;
  }

  /** All pages as ascending merged runs, leaving the set as it is. */
  runsOf(): PfnRange[] {
    const out = this.take();
    for (const r of out) this.add(r);
    return out;
  }

  /** Remove pages; returns how many were present. */
  delete(r: PfnRange): number {
    let removed = 0;
    this.forEachPage(r, (words, w, mask, pfn) => {
      if ((words[w]! & mask) !== 0) {
        words[w]! &= ~mask;
        removed++;
        // A page leaving splits its run, shortens it, or ends it.
        const left = this.near(words, pfn, -1);
        const right = this.near(words, pfn, 1);
        this.runCount += left && right ? 1 : !left && !right ? -1 : 0;
      }
    }, false);
    this.count -= removed;
    return removed;
  }

  /** Whether pfn+delta is in the set; `words` is pfn's chunk (no lookup unless delta crosses it). */
  private near(words: Uint32Array, pfn: number, delta: 1 | -1): boolean {
    const off = (pfn % CHUNK_PAGES) + delta;
    if (off < 0 || off >= CHUNK_PAGES) return this.has(pfn + delta);
    return (words[off >>> 5]! & ((1 << (off & 31)) >>> 0)) !== 0;
  }

  /** All pages as ascending merged runs; empties the set. */
  take(): PfnRange[] {
    const out: PfnRange[] = [];
    let cur: PfnRange | undefined;
    for (const key of [...this.chunks.keys()].sort((a, b) => a - b)) {
      const words = this.chunks.get(key)!;
      const base = key * CHUNK_PAGES;
      for (let w = 0; w < WORDS; w++) {
        let bits = words[w]!;
        if (bits === 0) continue;
        while (bits !== 0) {
          const low = bits & -bits;
          const b = 31 - Math.clz32(low);
          const pfn = base + w * 32 + b;
          if (cur && pfn === cur.pfn + cur.count) cur.count++;
          else out.push((cur = { pfn, count: 1 }));
          bits ^= low;
        }
      }
    }
    this.chunks.clear();
    this.count = 0;
    this.runCount = 0;
    return out;
  }

  clear(): void {
    this.chunks.clear();
    this.count = 0;
    this.runCount = 0;
  }

  private forEachPage(r: PfnRange, fn: (words: Uint32Array, w: number, mask: number, pfn: number) => void, create: boolean): void {
    for (let pfn = r.pfn, end = r.pfn + r.count; pfn < end; pfn++) {
      const key = Math.floor(pfn / CHUNK_PAGES);
      let words = this.chunks.get(key);
      if (!words) {
        if (!create) {
          pfn = (key + 1) * CHUNK_PAGES - 1; // skip the absent chunk
          continue;
        }
        words = new Uint32Array(WORDS);
        this.chunks.set(key, words);
      }
      const off = pfn - key * CHUNK_PAGES;
      fn(words, off >>> 5, (1 << (off & 31)) >>> 0, pfn);
    }
  }
}
