import { describe, expect, it } from 'vitest';
import { reuseBytes } from '../../src/policy/reuse.js';

const MiB = 2 ** 20;
const series = (...mib: number[]): number[] => mib.map((m) => m * MiB);

describe('reuseBytes', () => {
  it.each([
    ['too few samples', series(100, 400), 0],
    ['steady use', series(200, 200, 200, 200), 0],
    ['one rise (a guest filling up)', series(100, 200, 300, 400), 0],
    ['one rise then one fall (touched once, freed: the idle guests of the benchmarks)', series(100, 800, 800, 100, 100), 0],
    ['a fall then a rise: rounds of work (vm-up between runs)', series(300, 100, 100, 350, 100), 250],
    ['a fall then a rise, now at the peak: nothing more to expect', series(300, 100, 400), 0],
    ['a fall, a rise smaller than the threshold: no cycle', series(300, 100, 150, 100), 0],
    ['a fall smaller than the threshold, then a rise: no cycle', series(300, 250, 400, 350), 0],
    ['shrinking rounds (vm-down): the highest peak still in the window counts', series(400, 50, 300, 50), 350],
  ])('%s', (_, samples, wantMiB) => {
    expect(reuseBytes(samples, 64 * MiB)).toBe(wantMiB * MiB);
  });
  it('a threshold of 0 turns it off', () => expect(reuseBytes(series(300, 100, 350, 100), 0)).toBe(0));
});
