// Fuzz target "page-set" (targets/page-set.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { pageSetTarget } from './targets/page-set.js';

describe('fuzz', () => {
  fuzzTest(pageSetTarget);
});
