// Fuzz target "read-out" (targets/element-io.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { readOutTarget } from './targets/element-io.js';

describe('fuzz', () => {
  fuzzTest(readOutTarget);
});
