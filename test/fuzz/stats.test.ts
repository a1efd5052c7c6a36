// Fuzz target "stats" (targets/stats.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { statsTarget } from './targets/stats.js';

describe('fuzz', () => {
  fuzzTest(statsTarget);
});
