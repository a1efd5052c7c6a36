// The balloon as the daemon counts it: every 4 KiB page the guest named on
// the inflate queue and has not deflated since, so a page inflated twice
// counts once and a deflate of a page never inflated is bad input, not the
// guest taking memory back. A frontend that reconnects reports only the
// size (`actual`), not the pages: those are kept as a count of unnamed pages
// that deflates of pages we cannot name draw from.
//
// Memory: PageSet's sparse bitmap, 32 KiB per GiB of guest-physical space
// that holds a ballooned page (a fully ballooned 1 TiB guest: 32 MiB).
import { PageSet } from './page-set.js';
import type { PfnRange } from './pfn.js';

export interface InflateCount {
  /** Pages that joined the balloon. */
  added: number;
  /** Pages that were in it already. */
  duplicate: number;
}

export interface DeflateCount {
  /** Named pages that left the balloon. */
  removed: number;
  /** Pages we could not name, taken from the recovered count. */
  unnamed: number;
  /** Pages that were never in the balloon. */
  unknown: number;
}

export class BalloonLedger {
  private readonly pages = new PageSet();
  private unnamedPages = 0;

  /** Pages in the balloon. */
  get size(): number {
    return this.pages.size + this.unnamedPages;
  }

  /** Pages known by number only (recovered from `actual`). */
  get unnamed(): number {
    return this.unnamedPages;
  }

  has(pfn: number): boolean {
    return this.pages.has(pfn);
  }

  /** Every page of the range named in the balloon (unnamed pages do not count: we cannot tell where they are). */
  hasAll(r: PfnRange): boolean {
    return this.pages.hasAll(r);
  }

  /** The named pages as ascending merged runs (a migration carries them: device-state.ts). */
  runs(): PfnRange[] {
    return this.pages.runsOf();
  }

  inflate(ranges: readonly PfnRange[]): InflateCount {
    let added = 0;
    let total = 0;
    for (const r of ranges) {
      added += this.pages.add(r);
      total += r.count;
    }
    return { added, duplicate: total - added };
  }

  deflate(ranges: readonly PfnRange[]): DeflateCount {
    let removed = 0;
    let total = 0;
    for (const r of ranges) {
      removed += this.pages.delete(r);
      total += r.count;
    }
    const unnamed = Math.min(this.unnamedPages, total - removed);
    this.unnamedPages -= unnamed;
    return { removed, unnamed, unknown: total - removed - unnamed };
  }

  /**
   * The frontend says the balloon holds `actual` pages: what we cannot name
   * is counted as unnamed. An `actual` below the named pages is not taken
   * (the guest writes it after each buffer; it lags, it never leads).
   */
  recover(actual: number): void {
    this.unnamedPages = Math.max(0, Math.floor(actual) - this.pages.size);
  }

  clear(): void {
    this.pages.clear();
    this.unnamedPages = 0;
  }
}
