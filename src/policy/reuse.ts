// A guest that frees memory and takes it back, over and over (a batch job,
// a cache it rebuilds, a workload in rounds), looks spare between rounds
// and is ballooned just before it needs the memory again: it then swaps or
// asks for it back at once. Its recent use says more than its use now: once
// its use fell and rose again by `cycleBytes` within the window, it works in
// rounds, and the memory up to a peak is not spare. Which peak:
//
// - `window`: the highest use in the window. A guest whose rounds shrink
//   keeps the peak of an earlier, larger round as long as it is in the window.
// - `last`: the peak of its last round, the most recent rise of `cycleBytes`
//   after a fall of `cycleBytes` and everything up to now: during a round,
//   its use so far (so nothing beyond its use now while it is still rising
//   or holding); between rounds, the peak of the round it just finished. A
//   guest whose rounds hold or grow keeps that peak; one whose rounds shrink
//   has the memory of its earlier, larger rounds counted as spare again.
//
// One rise or one fall (a guest that touched memory once and freed it, an
// idle guest) is not a cycle. Pure: the guest's use at its recent stats
// samples (RAM - balloon - MemAvailable, oldest first) in, bytes out.

/** Which peak a guest in rounds keeps: the window's, or its last round's. */
export type CyclePeak = 'window' | 'last';

/**
 * What the guest is expected to use again beyond its use now: its peak (of
 * the window, or of its last round) less its latest use, once the window
 * holds a fall and then a rise of at least `cycleBytes` each; 0 otherwise.
 */
export function reuseBytes(usedBytes: readonly number[], cycleBytes: number, peakOf: CyclePeak = 'window'): number {
  if (usedBytes.length < 3 || cycleBytes <= 0) return 0;
  let peak = -Infinity; // window: the highest use so far; last: the highest use since the last round began
  let low: number | null = null; // the lowest use since the last fall of cycleBytes
  let cyclic = false;
  for (const u of usedBytes) {
    if (low === null) {
      if (u <= peak - cycleBytes) low = u;
    } else {
      low = Math.min(low, u);
      if (u >= low + cycleBytes) {
        cyclic = true;
        if (peakOf === 'last') {
          // A new round: its peak starts here, and the next fall is measured from it.
          peak = u;
          low = null;
        }
      }
    }
    peak = Math.max(peak, u);
  }
  if (!cyclic) return 0;
  return Math.max(0, peak - usedBytes.at(-1)!);
}
