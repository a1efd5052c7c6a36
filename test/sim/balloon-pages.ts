// The guest pages the simulated driver puts in the balloon. Like
// balloon_page_alloc() + the balloon's page list: pages are taken from free
// guest RAM (here: top-down below the reserved area, skipping memory holes)
// and handed back last-in first-out, as balloon_page_dequeue() does.
import { GuestMemory, PAGE } from './guest-memory.js';

export class BalloonPages {
  /** Pages in the balloon, in the order they went in. */
  readonly stack: number[] = [];
  /** Membership, one byte per page of guest RAM (a Set of 256k numbers cost ~0.1 ms per batch). */
  private readonly members: Uint8Array;
  /** PFNs beyond RAM that a test put in on purpose (hostile guests). */
  private readonly outside = new Set<number>();
  /** Every free balloonable page is at or below this PFN. */
  private cursor: number;

  constructor(private readonly mem: GuestMemory) {
    this.cursor = mem.usableEnd / PAGE - 1;
    this.members = new Uint8Array(Math.ceil(mem.ramEnd / PAGE));
  }

  get size(): number {
    return this.stack.length;
  }

  has(pfn: number): boolean {
    return pfn < this.members.length ? this.members[pfn] === 1 : this.outside.has(pfn);
  }

  private mark(pfn: number, on: boolean): void {
    if (pfn < this.members.length) this.members[pfn] = on ? 1 : 0;
    else if (on) this.outside.add(pfn);
    else this.outside.delete(pfn);
  }

  /** Allocate up to n free pages (fewer when guest RAM runs out: "Out of puff!"). */
  take(n: number): number[] {
    const out: number[] = [];
    while (out.length < n && this.cursor >= 0) {
      const pfn = this.cursor;
      const r = this.mem.regionOf(pfn * PAGE, PAGE);
      if (!r) {
        // In a hole: jump to the top page of the next region below.
        const below = this.mem.regions.filter((x) => x.gpa + x.size <= pfn * PAGE);
        const top = below.reduce((m, x) => Math.max(m, x.gpa + x.size), 0);
        this.cursor = top / PAGE - 1;
        continue;
      }
      this.cursor--;
      if (!this.has(pfn)) out.push(pfn);
    }
    this.add(out);
    return out;
  }

  /** Record caller-chosen pages as ballooned (inflate with explicit PFNs). */
  add(pfns: readonly number[]): void {
    for (const p of pfns) {
      this.stack.push(p);
      this.mark(p, true);
    }
  }

  /** Take up to n pages back out, most recent first. */
  release(n: number): number[] {
    const out = this.stack.splice(Math.max(0, this.stack.length - n)).reverse();
    for (const p of out) {
      this.mark(p, false);
      if (p > this.cursor && this.mem.isRam(p * PAGE, PAGE) && p * PAGE < this.mem.usableEnd) this.cursor = p;
    }
    return out;
  }

  /** Take one specific page out (balloon compaction moving it). */
  remove(pfn: number): boolean {
    const i = this.stack.lastIndexOf(pfn);
    if (i < 0) return false;
    this.stack.splice(i, 1);
    this.mark(pfn, false);
    if (pfn > this.cursor && this.mem.isRam(pfn * PAGE, PAGE) && pfn * PAGE < this.mem.usableEnd) this.cursor = pfn;
    return true;
  }

  /** Forget everything (the guest rebooted: its RAM is all its own again). */
  clear(): void {
    this.stack.length = 0;
    this.members.fill(0);
    this.outside.clear();
    this.cursor = this.mem.usableEnd / PAGE - 1;
  }
}
