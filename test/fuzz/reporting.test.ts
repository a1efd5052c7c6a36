// Fuzz target "reporting" (targets/reporting.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { reportingTarget } from './targets/reporting.js';

describe('fuzz', () => {
  fuzzTest(reportingTarget);
});
