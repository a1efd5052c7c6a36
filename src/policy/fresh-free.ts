// A guest that has just freed memory may take it back at once: a job in
// rounds frees its memory at the end of a round and allocates it again a
// second later, and a stats sample taken in that gap shows the memory free.
// Asked for it then, the guest swaps in its next round (benchmark (a),
// docs/policy-bench/2026-12-02-last-round). So a fresh fall of its use is
// not spare yet: when its use (RAM - balloon - MemAvailable) fell by at
// least `cycleBytes` from one sample to the next, the fall is held back from
// its spare until a later sample, at least `holdMs` after the one that
// showed the fall, was taken. From then on the ordinary rules apply to what
// that sample and later ones show: a guest that still has the memory free
// (an idle guest that touched memory once and freed it) can give it; one
// that took it back has it in use. No history of rounds is needed.
//
// Pure: the guest's use at its recent stats samples, oldest first, each with
// its age (ms, as HostView.recentUse), in; bytes out.

export interface UseSample {
  /** Age of the sample (ms): larger is older. */
  ageMs: number;
  /** The guest's use at that sample (RAM - balloon - MemAvailable). */
  usedBytes: number;
}

/**
 * What the guest freed so recently that it is not spare yet: over every fall
 * of at least `cycleBytes` between two consecutive samples that no sample
 * `holdMs` or more after it has followed yet, its use before the fall less
 * its use now (the largest, never below 0). 0 when `holdMs` or `cycleBytes`
 * is 0 (off).
 */
export function freshFreeBytes(samples: readonly UseSample[], cycleBytes: number, holdMs: number): number {
  if (holdMs <= 0 || cycleBytes <= 0 || samples.length < 2) return 0;
  const last = samples.at(-1)!;
  let held = 0;
  for (let i = 1; i < samples.length; i++) {
    const before = samples[i - 1]!.usedBytes;
    const fall = samples[i]!;
    if (before - fall.usedBytes < cycleBytes) continue;
    // Settled once a sample at least holdMs after the fall came (the newest is the latest such candidate).
    if (fall.ageMs - last.ageMs >= holdMs) continue;
    held = Math.max(held, before - last.usedBytes);
  }
  return Math.max(0, held);
}
