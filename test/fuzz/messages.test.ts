// Fuzz target "messages" (targets/messages.ts), for a few seconds in the suite.
import { describe } from 'vitest';
import { fuzzTest } from './fuzz-test.js';
import { messagesTarget } from './targets/messages.js';

describe('fuzz', () => {
  fuzzTest(messagesTarget);
});
