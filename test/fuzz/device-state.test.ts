// Fuzz target "device-state" (targets/device-state.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { deviceStateTarget } from './targets/device-state.js';

describe('fuzz', () => {
  fuzzTest(deviceStateTarget);
});
