// Every fuzz target, for bench/fuzz-ts.ts. A new target: a module here
// exporting a FuzzTarget (see ../harness.ts), listed below, and a
// test/fuzz/NAME.test.ts calling fuzzTest() on it.
import type { FuzzTarget } from '../harness.js';
import { deviceStateTarget } from './device-state.js';
import { readOutTarget } from './element-io.js';
import { messagesTarget } from './messages.js';
import { pageSetTarget } from './page-set.js';
import { pfnTarget } from './pfn.js';
import { reportingTarget } from './reporting.js';
import { statsTarget } from './stats.js';

export const TARGETS: ReadonlyArray<FuzzTarget<unknown>> = [
  pfnTarget, statsTarget, messagesTarget, readOutTarget, pageSetTarget, reportingTarget, deviceStateTarget,
];
