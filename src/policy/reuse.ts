// A guest that frees memory and takes it back, over and over (a batch job,
// a cache it rebuilds, a workload in rounds), looks spare between rounds
// and is ballooned just before it needs the memory again: it then swaps or
// asks for it back at once. Its recent use says more than its use now: once
// its use fell and rose again by `cycleBytes` within the window, the memory
// up to its peak in the window is not spare. One rise or one fall (a guest
// that touched memory once and freed it, an idle guest) is not a cycle.
// Pure: samples in, bytes out.

export interface UseSample {
  at: number;
  /** Guest RAM in use: RAM - balloon - MemAvailable. */
  usedBytes: number;
}

/** `samples` with `s` appended and those older than `windowMs` before it dropped. */
export function recordUse(samples: readonly UseSample[], s: UseSample, windowMs: number): UseSample[] {
  return [...samples.filter((x) => s.at - x.at <= windowMs && x.at <= s.at), s];
}

/**
 * What the guest is expected to use again beyond its use now: its peak in
 * the window less its latest use, once the window holds a fall and then a
 * rise of at least `cycleBytes` each; 0 otherwise.
 */
export function reuseBytes(samples: readonly UseSample[], cycleBytes: number): number {
  if (samples.length < 3 || cycleBytes <= 0) return 0;
  let peak = -Infinity;
  let low: number | null = null; // the lowest use since the first fall of cycleBytes
  let cyclic = false;
  for (const { usedBytes: u } of samples) {
    if (low === null) {
      if (u <= peak - cycleBytes) low = u;
    } else {
      low = Math.min(low, u);
      if (u >= low + cycleBytes) cyclic = true;
    }
    peak = Math.max(peak, u);
  }
  if (!cyclic) return 0;
  return Math.max(0, peak - samples.at(-1)!.usedBytes);
}
