// The unbacked memory a deflation gave back (src/policy/returned.ts), sample by sample.
import { describe, expect, it } from 'vitest';
import { returnedOf } from '../../src/policy/returned.js';

const MiB = 2 ** 20;

describe('returnedOf', () => {
  // Each row: samples in order as [unbacked MiB, settled]; expected returned MiB after each.
  it.each([
    ['first settled sample: it is the baseline, nothing returned', [[108, true]], [0]],
    ['a deflation of 64 MiB comes back unbacked: 64 returned', [[108, true], [172, true]], [0, 64]],
    ['the guest touches its never-touched memory: the baseline falls with it', [[108, true], [60, true], [124, true]], [0, 0, 64]],
    ['the guest uses 32 MiB of what came back: 32 left', [[108, true], [172, true], [140, true]], [0, 64, 32]],
    ['the guest uses all of it and more: 0, and the baseline falls', [[108, true], [172, true], [90, true], [122, true]], [0, 64, 0, 32]],
    ['an inflation under way dips the figure: not taken as the baseline', [[108, true], [0, false], [108, true], [172, true]], [0, 0, 0, 64]],
    ['nothing settled yet: nothing returned', [[0, false], [200, false]], [0, 0]],
    ['a negative reading counts as 0', [[-5, true], [64, true]], [0, 64]],
  ] as const)('%s', (_n, samples, want) => {
    let baseline: number | undefined;
    const got: number[] = [];
    for (const [mib, settled] of samples) {
      const r = returnedOf(baseline, { unbackedFreeBytes: mib * MiB, settled });
      baseline = r.baselineBytes;
      got.push(r.returnedBytes / MiB);
    }
    expect(got).toEqual(want);
  });
});
