import { describe, expect, it } from 'vitest';
import { freshFreeBytes, type UseSample } from '../../src/policy/fresh-free.js';

const MiB = 2 ** 20;
/** Samples as [age in s, use in MiB], oldest first. */
const at = (...rows: Array<[number, number]>): UseSample[] => rows.map(([s, mib]) => ({ ageMs: s * 1000, usedBytes: mib * MiB }));

describe('freshFreeBytes', () => {
  // [case, samples, want (MiB) with a 2 s hold, want (MiB) with a 5 s hold]
  it.each([
    ['no samples', at(), 0, 0],
    ['one sample', at([0, 300]), 0, 0],
    ['idle: steady use', at([15, 200], [10, 200], [5, 200], [0, 200]), 0, 0],
    ['idle: small noise below the threshold', at([20, 200], [15, 230], [10, 190], [5, 240], [0, 200]), 0, 0],
    ['a fall smaller than the threshold', at([5, 300], [0, 250]), 0, 0],
    ['just fell (vm-up between rounds): the fall is held', at([5, 500], [0, 100]), 400, 400],
    ['just fell, a refresh 1 s later still shows it free: too early', at([6, 500], [1, 100], [0, 100]), 400, 400],
    ['fell, confirmed by a sample 2 s later', at([7, 500], [2, 100], [0, 100]), 0, 400],
    ['fell, confirmed by the next 5 s sample', at([10, 500], [5, 100], [0, 100]), 0, 0],
    ['fell and rose again before any later sample: only what is still free', at([6, 500], [1, 100], [0, 450]), 50, 50],
    ['fell and rose again beyond its old use: nothing held', at([6, 500], [1, 100], [0, 520]), 0, 0],
    ['fell, rose, confirmed by then: the rise is its use now', at([10, 500], [5, 100], [0, 450]), 0, 0],
    ['fell in two steps, both fresh: from the use before the first', at([2, 500], [1, 300], [0, 100]), 400, 400],
    ['fell in two steps, the first settled (2 s): from the use before the second', at([8, 500], [3, 300], [0, 100]), 200, 400],
    ['rounds: fell, rose, fell again: the new fall is held', at([15, 500], [10, 100], [5, 480], [0, 90]), 390, 390],
    ['touched once and freed long ago (the idle neighbour of (b)): spare again', at([60, 100], [55, 800], [50, 100], [0, 100]), 0, 0],
    ['a rise only (a guest filling up)', at([10, 100], [5, 300], [0, 500]), 0, 0],
  ] as const)('%s', (_, samples, want2s, want5s) => {
    expect(freshFreeBytes(samples, 64 * MiB, 2000), '2 s').toBe(want2s * MiB);
    expect(freshFreeBytes(samples, 64 * MiB, 5000), '5 s').toBe(want5s * MiB);
  });
  it('a hold of 0 or a threshold of 0 turns it off', () => {
    expect(freshFreeBytes(at([5, 500], [0, 100]), 64 * MiB, 0)).toBe(0);
    expect(freshFreeBytes(at([5, 500], [0, 100]), 0, 2000)).toBe(0);
  });
});
