// A fuzz target as one vitest test with a time budget (a few seconds: the
// suite runs them all; bench/fuzz-ts.ts runs them for >= 10^6 executions).
// VUB_FUZZ_MS overrides the budget; VUB_FUZZ_SEED fixes the seed.
import { expect, it } from 'vitest';
import { describeResult, type FuzzTarget, runTarget } from './harness.js';

export const FUZZ_MS = Number(process.env.VUB_FUZZ_MS ?? 3000);

export function fuzzTest<T>(target: FuzzTarget<T>, opts: { timeMs?: number; minExecutions?: number } = {}): void {
  const timeMs = opts.timeMs ?? FUZZ_MS;
  it(`${target.name}: ${target.about}`, () => {
    const seed = process.env.VUB_FUZZ_SEED !== undefined ? Number(process.env.VUB_FUZZ_SEED) : undefined;
    const r = runTarget(target, { timeMs, ...(seed !== undefined ? { seed } : {}) });
    console.log(describeResult(r));
    expect(r.finding, describeResult(r)).toBeNull();
    // A budget that ran almost nothing tested nothing (a generator gone slow).
    expect(r.executions).toBeGreaterThanOrEqual(opts.minExecutions ?? 1000);
  }, timeMs + 30_000);
}
