import { describe, expect, it } from 'vitest';
import { type CyclePeak, reuseBytes } from '../../src/policy/reuse.js';

const MiB = 2 ** 20;
const series = (...mib: number[]): number[] => mib.map((m) => m * MiB);

describe('reuseBytes', () => {
  // [case, samples (MiB, oldest first), want with the window's peak, want with the last round's peak]
  it.each([
    ['too few samples', series(100, 400), 0, 0],
    ['idle: steady use', series(200, 200, 200, 200), 0, 0],
    ['idle: small noise below the threshold', series(200, 230, 190, 240, 200), 0, 0],
    ['one rise (a guest filling up)', series(100, 200, 300, 400), 0, 0],
    ['one touch-and-free (the idle guests of the benchmarks)', series(100, 800, 800, 100, 100), 0, 0],
    ['a fall then a rise: rounds of work (vm-up between runs)', series(300, 100, 100, 350, 100), 250, 250],
    ['a fall then a rise, now at the peak: nothing more to expect', series(300, 100, 400), 0, 0],
    ['a fall, a rise smaller than the threshold: no cycle', series(300, 100, 150, 100), 0, 0],
    ['a fall smaller than the threshold, then a rise: no cycle', series(300, 250, 400, 350), 0, 0],
    ['growing rounds (vm-up), between rounds: the last round is the highest', series(112, 20, 212, 20, 312, 20), 292, 292],
    ['growing rounds, in a round: at its use so far', series(112, 20, 212, 20, 312), 0, 0],
    // Once it has risen by the threshold it is in its next round, whose peak is not known yet: a rising
    // guest keeps what it is about to use through its use rate (guestHorizonMs), not through this rule.
    ['growing rounds, rising into the next one: the new round counts from its start', series(212, 20, 312, 20, 100, 200), 112, 0],
    ['a rise below the threshold is not a new round yet', series(212, 20, 312, 20, 60), 252, 252],
    ['steady rounds, between rounds', series(300, 50, 300, 50, 300, 50), 250, 250],
    ['steady rounds, in a round', series(300, 50, 300, 50, 300), 0, 0],
    ['shrinking rounds (vm-down), between rounds: the last round, not the largest', series(512, 20, 412, 20, 312, 20), 492, 292],
    ['shrinking rounds, in a round: nothing beyond its use now', series(512, 20, 412, 20, 312), 200, 0],
    ['shrinking rounds, two samples into a round', series(412, 20, 312, 300), 112, 12],
    ['shrinking rounds (the old table row)', series(400, 50, 300, 50), 350, 250],
    ['a round with a dip below the threshold stays one round', series(300, 50, 300, 260, 300, 50), 250, 250],
  ] as const)('%s', (_, samples, windowMiB, lastMiB) => {
    for (const [peak, want] of [['window', windowMiB], ['last', lastMiB]] as [CyclePeak, number][]) {
      expect(reuseBytes(samples, 64 * MiB, peak), peak).toBe(want * MiB);
    }
  });
  it('the window\'s peak is the default', () => expect(reuseBytes(series(400, 50, 300, 50), 64 * MiB)).toBe(350 * MiB));
  it('a threshold of 0 turns it off', () => {
    expect(reuseBytes(series(300, 100, 350, 100), 0)).toBe(0);
    expect(reuseBytes(series(300, 100, 350, 100), 0, 'last')).toBe(0);
  });
});
