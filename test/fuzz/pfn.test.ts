// Fuzz target "pfn" (targets/pfn.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { pfnTarget } from './targets/pfn.js';

describe('fuzz', () => {
  fuzzTest(pfnTarget);
});
