// A guest that frees memory and takes it back, over and over (a batch job,
// a cache it rebuilds, a workload in rounds), looks spare between rounds
// and is ballooned just before it needs the memory again: it then swaps or
// asks for it back at once. Its recent use says more than its use now: once
// its use fell and rose again by `cycleBytes` within the window, the memory
// up to its peak in the window is not spare. One rise or one fall (a guest
// that touched memory once and freed it, an idle guest) is not a cycle.
// Pure: the guest's use at its recent stats samples (RAM - balloon -
// MemAvailable, oldest first) in, bytes out.

/**
 * What the guest is expected to use again beyond its use now: its peak in
 * the window less its latest use, once the window holds a fall and then a
 * rise of at least `cycleBytes` each; 0 otherwise.
 */
export function reuseBytes(usedBytes: readonly number[], cycleBytes: number): number {
  if (usedBytes.length < 3 || cycleBytes <= 0) return 0;
  let peak = -Infinity;
  let low: number | null = null; // the lowest use since the first fall of cycleBytes
  let cyclic = false;
  for (const u of usedBytes) {
    if (low === null) {
      if (u <= peak - cycleBytes) low = u;
    } else {
      low = Math.min(low, u);
      if (u >= low + cycleBytes) cyclic = true;
    }
    peak = Math.max(peak, u);
  }
  if (!cyclic) return 0;
  return Math.max(0, peak - usedBytes.at(-1)!);
}
