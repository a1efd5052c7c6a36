// Memory a deflation gave back comes back unbacked: the host has not lost it
// until the guest touches it, and ballooning it again frees nothing, so the
// VM's backed spare does not count it. For the VM's weighted share of the
// balloons (rebalance.ts) it must count, or each deflation would shrink what
// the VM could hold, lower its share and call for the next deflation
// (benchmark (d), docs/policy-bench/2026-12-02-final: 224 -> 160 -> 128 ->
// 96 MiB on a weight-1 VM). What the guest never touched is unbacked too and
// is not its balloon's to count; it is the lowest unbacked free memory seen
// while the balloon sat at its target (a balloon on the way to a new target
// holds pages the guest has not yet handed over, which dips the figure).
// Unbacked memory above that is what the balloon (or free page reporting,
// the same thing to the host) gave back and the guest has not used since.
//
// Pure: the last baseline and this sample in, the new baseline and the
// returned bytes out; the runner keeps the baseline per VM.

export interface ReturnedSample {
  /** Guest RAM neither ballooned nor backed (HostView: RAM - held - backed). */
  unbackedFreeBytes: number;
  /** Is the balloon at its target (actual = target)? */
  settled: boolean;
}

export interface Returned {
  /** The never-touched baseline after this sample (undefined: none seen settled yet). */
  baselineBytes: number | undefined;
  /** Unbacked free memory above the baseline. */
  returnedBytes: number;
}

export function returnedOf(baselineBytes: number | undefined, s: ReturnedSample): Returned {
  const unbacked = Math.max(0, s.unbackedFreeBytes);
  const baseline = s.settled ? Math.min(baselineBytes ?? unbacked, unbacked) : baselineBytes;
  return { baselineBytes: baseline, returnedBytes: baseline === undefined ? 0 : Math.max(0, unbacked - baseline) };
}
